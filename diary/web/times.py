"""Times as staff pages show them: on a clock people at the site read (the participant's own
zone on their pages, the site's elsewhere), labelled with the zone, and the UTC instant on hover."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import current_app
from markupsafe import Markup, escape


def site_zone() -> str:
    """The site's clock for lists that mix participants: the only site's configured zone, or the
    installation's default."""
    zones = current_app.config.get("SITE_TIMEZONES") or {}
    return next(iter(zones.values())) if len(zones) == 1 else current_app.config["DEFAULT_TIMEZONE"]


def staff_time(moment: datetime | None, tz_name: str | None = None) -> Markup:
    """'Wed 2026-11-25 09:30 EST' in a <time> whose title gives the same instant in UTC."""
    if moment is None:
        return Markup("")
    local = moment.astimezone(ZoneInfo(tz_name or site_zone()))
    utc = moment.astimezone(ZoneInfo("UTC"))
    return Markup('<time datetime="{}" title="{} UTC">{} {}</time>').format(
        utc.isoformat(timespec="minutes"),
        f"{utc:%Y-%m-%d %H:%M}",
        f"{local:%a %Y-%m-%d %H:%M}",
        escape(local.tzname() or tz_name),
    )
