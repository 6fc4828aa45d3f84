"""Languages and local conventions: which language a participant reads, and times written the
way their locale writes them ("tomorrow 2:30 am" in the United States, "mañana 2:30" in Spanish).

Texts are translated with Flask-Babel (catalogs in ``diary/translations``); protocol texts carry
their own translations (``protocol.model.Text``). This module holds no request state: the web
layer picks the language, the scheduler forces each participant's.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time
from flask_babel import gettext as _

LANGUAGES = ("en", "es")
DEFAULT_LANGUAGE = "en"
LANGUAGE_NAMES = {"en": "English", "es": "Español"}
# The locale each language is written in: the trial's participants are in the United States, so
# English is US English (12-hour clock); Spanish uses the 24-hour clock.
LOCALES = {"en": "en_US", "es": "es"}
# Dates with the weekday written out, as a sentence says them (CLDR's own skeletons abbreviate).
DAY_PATTERNS = {"en": "EEEE, MMMM d", "es": "EEEE, d 'de' MMMM"}
DAY_YEAR_PATTERNS = {"en": "EEEE, MMMM d, y", "es": "EEEE, d 'de' MMMM 'de' y"}
TRANSLATIONS = Path(__file__).parent / "translations"


def locale_of(language: str | None) -> str:
    return LOCALES.get(language or DEFAULT_LANGUAGE, LOCALES[DEFAULT_LANGUAGE])


def clock(local: datetime, language: str | None) -> str:
    """'2:30 am' / '12:30 pm' in US English, '14:30' in Spanish."""
    text = format_time(local, format="short", locale=locale_of(language))
    # CLDR puts a narrow no-break space before AM/PM; lower case reads as a sentence does.
    return text.replace("\u202f", " ").replace("AM", "am").replace("PM", "pm")


def when(moment: datetime, tz_name: str, now: datetime, language: str | None) -> str:
    """'today 12:30 pm', 'tomorrow 2:30 am', 'Thursday 9:00 am' within the week, else
    'Thursday, December 3, 9:00 am' (in Spanish 'hoy 12:30', 'mañana 2:30', 'jueves 9:00',
    'jueves, 3 de diciembre, 9:00')."""
    tz = ZoneInfo(tz_name)
    local, today = moment.astimezone(tz), now.astimezone(tz).date()
    days = (local.date() - today).days
    time = clock(local, language)
    if days == 0:
        return _("today %(time)s", time=time)
    if days == 1:
        return _("tomorrow %(time)s", time=time)
    if days == -1:
        return _("yesterday %(time)s", time=time)
    locale = locale_of(language)
    if 1 < days < 7:
        return f"{format_date(local, 'EEEE', locale=locale)} {time}"
    pattern = DAY_PATTERNS.get(language or DEFAULT_LANGUAGE, DAY_PATTERNS[DEFAULT_LANGUAGE])
    return f"{format_date(local, pattern, locale=locale)}, {time}"


def full_datetime(moment: datetime, tz_name: str, language: str | None) -> str:
    """'Wednesday, November 25, 2026, 2:30 pm' / 'miércoles, 25 de noviembre de 2026, 14:30'."""
    local = moment.astimezone(ZoneInfo(tz_name))
    pattern = DAY_YEAR_PATTERNS.get(language or DEFAULT_LANGUAGE, DAY_YEAR_PATTERNS[DEFAULT_LANGUAGE])
    return f"{format_date(local, pattern, locale=locale_of(language))}, {clock(local, language)}"


def best_language(accept_languages) -> str:
    """The first of our languages a browser's Accept-Language asks for (werkzeug's object)."""
    return accept_languages.best_match(LANGUAGES, default=DEFAULT_LANGUAGE) if accept_languages else DEFAULT_LANGUAGE


def compile_catalogs(folder: Path = TRANSLATIONS) -> list[Path]:
    """Compile each messages.po whose .mo is missing or older (``make install`` does this as
    the build step; the app calls it at start so that a checkout run another way still works).
    Returns the catalogs compiled."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    compiled = []
    for po in sorted(folder.glob("*/LC_MESSAGES/messages.po")):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with open(po, "rb") as handle:
            catalog = read_po(handle)
        with open(mo, "wb") as handle:
            write_mo(handle, catalog)  # fuzzy entries are left out, as pybabel compile does
        compiled.append(mo)
    return compiled
