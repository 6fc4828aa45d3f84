"""Helpers for the participant tests: data around the real clock, and a signed-in phone."""

from __future__ import annotations

import re
from datetime import timedelta

from diary.dosing.infusions import record_dose
from diary.extensions import db
from diary.models import now_utc
from diary.participants.enrolment import enroll


def csrf_from(html: str) -> str:
    tag = re.search(r'<input[^>]*name="csrf_token"[^>]*>', html).group(0)
    return re.search(r'value="([^"]+)"', tag).group(1)


def action_key_from(html: str) -> str:
    """The hidden key of a staff form that must act once."""
    return re.search(r'name="action_key"[^>]*value="([^"]+)"', html).group(1)


def stamp_from(html: str) -> str:
    """The server's signed stamp an entry form carries (an offline entry needs it)."""
    return re.search(r'name="stamp" value="([^"]+)"', html).group(1)


def key_from(html: str) -> str:
    return re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1)


def zone_at(now, hour: int) -> str:
    """A fixed-offset zone whose clock reads ``hour``:xx at ``now`` (Etc/GMT names count the other
    way round: Etc/GMT-5 is five hours ahead of UTC). Tests whose reminders must go out now use
    the afternoon: in New York, run between 05:00 and 14:00 UTC, Day 1 had opened in the
    protocol's quiet hours (22:00 to 07:00) and its reminder waited for the morning."""
    offset = (hour - now.hour) % 24
    offset = offset - 24 if offset > 14 else offset
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def participant_with_day1_open(
    study, code="P-DAY1", hours_ago=22, sequence="AB", language="en", timezone="America/New_York"
):
    """A participant whose infusion 1 started ``hours_ago`` hours ago (Day 1 opens at 20 h)."""
    now = now_utc()
    participant, token = enroll(
        study,
        site="NIH-CC",
        timezone=timezone,
        sequence=sequence,
        actor="test",
        now=now - timedelta(days=5),
        code=code,
        email=f"{code.lower()}@example.org",
        language=language,
    )
    dose_start = (now - timedelta(hours=hours_ago)).replace(second=0, microsecond=0)
    record_dose(participant, 1, dose_start, actor="test", now=now)
    db.session.commit()
    return participant, token


def sign_in(client, token, pin="4821"):
    """Open the link, choose a PIN, and land on Today. Returns the Today response."""
    page = client.get(f"/p/{token}")
    assert page.status_code == 200, page.status_code
    return client.post(
        f"/p/{token}",
        data={"pin": pin, "confirm": pin, "csrf_token": csrf_from(page.get_data(as_text=True))},
        follow_redirects=True,
    )


def open_form(client, assessment):
    """GET the entry form; return the hidden fields a real browser would send back."""
    html = client.get(f"/p/entry/{assessment.id}").get_data(as_text=True)
    return {"csrf_token": csrf_from(html), "idempotency_key": key_from(html)}


def day1_form(protocol, **overrides) -> dict:
    from .conftest import answers_for

    form = answers_for(protocol, "D1", vas=63)
    form.update(overrides)
    return form
