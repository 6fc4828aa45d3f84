"""Printed documents: a page template rendered to PDF/A by WeasyPrint, in a given language.

The one module outside ``diary.web`` that renders a template: the command line prints a site's
archive as the web does, and neither may import the other's layer (tests/test_architecture.py).

The templates under templates/archive/ are print pages (A4, no navigation, the fonts on the
server): the site's paper diaries and a participant's copy of their own answers. PDF/A-3b embeds
every font and carries no clock of its own, so the same page renders to the same bytes.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import current_app, render_template
from flask_babel import force_locale

from .i18n import locale_of


def paper_time(moment: datetime | None, tz_name: str) -> str:
    """'2026-11-25 09:30:12 EST': the participant's clock to the second, with its zone."""
    if moment is None:
        return ""
    local = moment.astimezone(ZoneInfo(tz_name))
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


def utc_time(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment.astimezone(ZoneInfo('UTC')):%Y-%m-%d %H:%M:%S} UTC"


def render_pdf(template: str, language: str, **context) -> bytes:
    """``template`` rendered in ``language`` and written as PDF/A-3b."""
    # Imported here: WeasyPrint needs the system's Pango, and a server without it should still
    # serve the diary (only the PDFs then fail, saying why).
    from weasyprint import CSS, HTML

    with force_locale(locale_of(language)):
        html = render_template(template, language=language, paper_time=paper_time, utc_time=utc_time, **context)
    style = CSS(filename=str(Path(current_app.static_folder) / "print.css"))
    return HTML(string=html).write_pdf(stylesheets=[style], pdf_variant="pdf/a-3b")
