"""Every participant in their own language and their own clock's conventions: complete Spanish
catalogs, Spanish pages with nothing left in English, reminders, calendar and printed sheet in
the participant's language, 12-hour US times and 24-hour Spanish ones, protocol texts checked
for every declared language."""

from __future__ import annotations

import email
import email.policy
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.pofile import read_po
from sqlalchemy import select

from diary.extensions import db
from diary.i18n import when
from diary.models import AuditEvent, Participant, now_utc
from diary.participants.enrolment import enroll
from diary.protocol.loader import ProtocolError, parse_protocol
from diary.reminders.dispatch import run_pass
from diary.study.trial import protocol_of

from .conftest import answers_for, assessment_of
from .participant_helpers import csrf_from, key_from, participant_with_day1_open, sign_in
from .staff_helpers import login_as
from .test_reminders import smtp, text_of  # noqa: F401  (the SMTP server fixture)

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "diary" / "translations" / "es" / "LC_MESSAGES" / "messages.po"


def extracted(tmp_path) -> list:
    """Every participant-facing text in the code and templates, extracted as pybabel does."""
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "pybabel"),
            "extract",
            "-F",
            str(ROOT / "babel.cfg"),
            "-k",
            "_",
            "-k",
            "gettext",
            "-k",
            "ngettext:1,2",
            "--no-location",
            "-o",
            str(pot),
            str(ROOT),
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    with open(pot, "rb") as handle:
        return [message for message in read_po(handle) if message.id]


def test_every_participant_facing_text_has_a_spanish_translation(tmp_path):
    messages = extracted(tmp_path)
    assert len(messages) > 100
    with open(CATALOG, "rb") as handle:
        spanish = read_po(handle)
    problems = []
    for message in messages:
        translated = spanish.get(message.id)
        if (
            translated is None
            or not translated.string
            or (isinstance(translated.string, tuple) and not all(translated.string))
        ):
            problems.append(f"missing: {message.id!r}")
        elif translated.fuzzy:
            problems.append(f"fuzzy: {message.id!r}")
        else:
            # Placeholders survive translation, or the page would crash or lose the value.
            ids = message.id if isinstance(message.id, tuple) else (message.id,)
            strings = translated.string if isinstance(translated.string, tuple) else (translated.string,)
            wanted = set(re.findall(r"%\(\w+\)\w", " ".join(ids)))
            if any(set(re.findall(r"%\(\w+\)\w", text)) != wanted for text in strings):
                problems.append(f"placeholders differ: {message.id!r}")
    assert problems == []


def test_the_check_catches_a_missing_translation(tmp_path):
    """The catalog test is not vacuous: a new English text with no Spanish is reported."""
    with open(CATALOG, "rb") as handle:
        spanish = read_po(handle)
    spanish.delete("Fill in now")
    assert spanish.get("Fill in now") is None
    assert "Fill in now" in {m.id for m in extracted(tmp_path)}


# --- Times -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])  # formatting only: no database involved
def test_us_english_reads_a_12_hour_clock_and_spanish_a_24_hour_one(app):
    now = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # 10:00 in New York
    tomorrow_early = datetime(2026, 11, 26, 7, 30, tzinfo=UTC)  # 2:30 in New York
    noon_today = datetime(2026, 11, 25, 17, 30, tzinfo=UTC)  # 12:30 in New York
    far = datetime(2026, 12, 3, 19, 0, tzinfo=UTC)  # Thursday 3 December, 14:00
    tz = "America/New_York"
    with app.test_request_context():
        assert when(tomorrow_early, tz, now, "en") == "tomorrow 2:30 am"
        assert when(noon_today, tz, now, "en") == "today 12:30 pm"
        assert when(far, tz, now, "en") == "Thursday, December 3, 2:00 pm"
        from flask_babel import force_locale

        with force_locale("es"):
            assert when(tomorrow_early, tz, now, "es") == "mañana 2:30"
            assert when(noon_today, tz, now, "es") == "hoy 12:30"
            assert when(far, tz, now, "es") == "jueves, 3 de diciembre, 14:00"


# --- Spanish pages -----------------------------------------------------------------------------


def _visible_text(html: str) -> str:
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#39;", "'").replace("&amp;", "&")


def _english_fragments(tmp_path, protocol) -> set[str]:
    """Pieces of English long enough to be a sentence's worth: every catalog text split at its
    placeholders, and the protocol's English texts."""
    fragments = set()
    for message in extracted(tmp_path):
        for text in message.id if isinstance(message.id, tuple) else (message.id,):
            fragments |= {part.strip(" .,:;()“”") for part in re.split(r"%\(\w+\)\w", text)}
    for instrument in protocol.instruments.values():
        fragments.add(instrument.title)
        for item in instrument.items:
            fragments |= {item.text, item.min_label, item.max_label}
            fragments |= {c.label for c in item.choices + item.terms}
    for timepoint in protocol.timepoints:
        fragments |= {str(timepoint.participant_label), timepoint.label}
    # A fragment must be a few words long to count as English, not a name or a number.
    return {f for f in fragments if len(f) >= 12 and len(f.split()) >= 2}


def test_a_spanish_participants_pages_are_spanish_through_and_through(client, study, tmp_path):
    protocol = protocol_of(study.current_protocol_version)
    participant, token = participant_with_day1_open(study, code="P-ESP001", language="es")
    day1 = assessment_of(participant, 1, "D1")
    english = _english_fragments(tmp_path, protocol)
    assert "How fatigued do you feel right now?" in english and "Nothing to fill in right now. Thank you!" in english

    pages = {}
    first = client.get(f"/p/{token}")
    pages["pin"] = first
    pages["today"] = sign_in(client, token)
    pages["entry"] = client.get(f"/p/entry/{day1.id}")
    key = key_from(pages["entry"].get_data(as_text=True))
    form = {
        **answers_for(protocol, "D1", vas=40),
        "csrf_token": csrf_from(pages["entry"].get_data(as_text=True)),
        "idempotency_key": key,
    }
    invalid = {k: v for k, v in form.items() if not k.startswith("fatigue_vas")}
    pages["errors"] = client.post(f"/p/entry/{day1.id}", data={**invalid, "step": "review"})
    pages["review"] = client.post(f"/p/entry/{day1.id}", data={**form, "step": "review"})
    saved = client.post(f"/p/entry/{day1.id}", data={**form, "step": "submit"}, follow_redirects=True)
    pages["saved"] = saved
    pages["history"] = client.get("/p/history")
    pages["settings"] = client.get("/p/settings")
    closed = assessment_of(participant, 1, "M40")
    pages["closed"] = client.get(f"/p/entry/{closed.id}")
    pages["not found"] = client.get("/p/entry/999999")
    assert pages["errors"].status_code == 422 and pages["closed"].status_code == 409
    for name, response in pages.items():
        html = response.get_data(as_text=True)
        assert '<html lang="es">' in html, name
        text = _visible_text(html)
        leftovers = sorted(f for f in english if f in text)
        assert leftovers == [], (name, leftovers)
    # The check finds English where there is English: an English participant's pages are full of it.
    other, other_token = participant_with_day1_open(study, code="P-ENG002")
    english_client = client.application.test_client()
    english_today = _visible_text(sign_in(english_client, other_token).get_data(as_text=True))
    assert len([f for f in english if f in english_today]) >= 3
    assert "Por favor mueva el control deslizante" in _visible_text(pages["errors"].get_data(as_text=True))
    assert "Volver a Hoy" in _visible_text(pages["closed"].get_data(as_text=True))  # no dead end
    assert "¿Qué medicamento cree que recibió hoy?" in _visible_text(pages["entry"].get_data(as_text=True))
    assert "Ketamina" in _visible_text(pages["entry"].get_data(as_text=True))


def test_an_english_participant_reads_us_times_and_no_staff_words(client, study):
    participant, token = participant_with_day1_open(study, code="P-ENG001")
    today = _visible_text(sign_in(client, token).get_data(as_text=True))
    assert re.search(r"Open until (today|tomorrow) \d{1,2}:\d{2} (am|pm)\.", today), today
    entry = client.get(f"/p/entry/{assessment_of(participant, 1, 'D1').id}").get_data(as_text=True)
    assert "Infusion 1 · Day 1" in entry and "(primary)" not in entry
    # The blinding guess names the two medicines of the consent form, never "the first one".
    assert "Ketamine" in entry and "Midazolam" in entry and "first medicine" not in entry


def test_the_link_page_follows_the_browser_before_the_participant_is_known(client, study):
    page = client.get("/p/not-a-real-link", headers={"Accept-Language": "es-US,es;q=0.9,en;q=0.5"})
    assert page.status_code == 404 and '<html lang="es">' in page.get_data(as_text=True)
    assert "Este enlace no funciona" in page.get_data(as_text=True)
    english = client.get("/p/not-a-real-link", headers={"Accept-Language": "en-US"})
    assert "This link does not work" in english.get_data(as_text=True)
    # Once the link is known, the participant's own language wins over the browser's.
    participant, token = participant_with_day1_open(study, code="P-ESP002", language="es")
    assert "Elija un PIN" in client.get(f"/p/{token}", headers={"Accept-Language": "en"}).get_data(as_text=True)


def test_a_participant_changes_their_language_in_settings(client, study):
    participant, token = participant_with_day1_open(study, code="P-SWITCH")
    sign_in(client, token)
    settings = client.get("/p/settings").get_data(as_text=True)
    response = client.post(
        "/p/settings",
        data={"csrf_token": csrf_from(settings), "language": "es", "push": "on", "calendar": "on", "email": "on"},
    )
    assert response.status_code == 302
    assert "Hoy" in client.get("/p/today").get_data(as_text=True)
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "change_language")).one()
    assert (event.old_value, event.new_value) == ("en", "es")
    refused = client.post("/p/settings", data={"csrf_token": csrf_from(settings), "language": "xx"})
    assert refused.status_code == 302  # an unknown language is ignored, nothing stored
    db.session.refresh(participant)
    assert participant.language == "es"


# --- Reminders, calendar and the printed sheet -------------------------------------------------


def test_a_spanish_participants_reminder_email_and_calendar_are_spanish(app, smtp, study, client):  # noqa: F811
    # The pass runs at the last 18:00 UTC (afternoon in New York, the participant's zone), so the
    # reminder is never held back by the quiet hours when the suite runs at night.
    now = now_utc()
    at = now.replace(hour=18, minute=0, second=0, microsecond=0)
    at -= timedelta(days=1) if at > now else timedelta(0)
    participant, token = participant_with_day1_open(
        study, code="P-ESMAIL", language="es", hours_ago=22 + (now - at).total_seconds() / 3600
    )
    result = run_pass(app, now=at)
    assert result.sent >= 1, result
    message = email.message_from_bytes(smtp.inbox.messages[0].as_bytes(), policy=email.policy.default)
    assert str(message["Subject"]) == "Su diario: hay una entrada abierta"
    body = text_of(message)
    assert body.startswith("Hola:") and "Infusión 1 · Día 1 está abierta ahora" in body
    assert re.search(r"antes de (hoy|mañana) \d{1,2}:\d{2}\.", body) and " am" not in body and " pm" not in body
    html = message.get_body(("html",)).get_content()
    assert "Abra su diario" in html

    sign_in(client, token)
    settings = client.get("/p/settings").get_data(as_text=True)
    feed_url = re.search(r"<code>(http[^<]+\.ics)</code>", settings).group(1)
    feed = client.get(feed_url.replace(app.config["BASE_URL"], "")).get_data(as_text=True)
    assert "Diario: Infusión 1 · Día" in feed and "Por favor complete su entrada" in feed
    assert "Su entrada del diario" in feed and "Infusion 1" not in feed


def test_enrol_in_spanish_on_the_web_prints_a_spanish_sheet(client, study):
    from diary.models import RandomizationSlot

    from .participant_helpers import action_key_from

    db.session.add(RandomizationSlot(study_id=study.id, site="NIH-CC", position=1, sequence="AB"))
    db.session.commit()
    login_as(client, "coordinator")
    page = client.get("/staff/enrol").get_data(as_text=True)
    response = client.post(
        "/staff/enrol",
        data={
            "csrf_token": csrf_from(page),
            "action_key": action_key_from(page),
            "site": "NIH-CC",
            "timezone": "America/Chicago",
            "email": "maria@example.org",
            "language": "es",
            "reminder_from": "08:00",
            "reminder_until": "21:00",
        },
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "Su diario de síntomas" in html
    assert "Escanee el código" in html and "This link is shown only now" in html  # staff note stays English
    participant = db.session.scalars(select(Participant)).one()
    assert participant.language == "es"


def test_enroll_language_on_the_command_line(runner, study):
    result = runner.invoke(
        args=["diary", "enroll", "--site", "NIH-CC", "--sequence", "AB", "--code", "P-CLIES", "--language", "es"]
    )
    assert result.exit_code == 0, result.output
    assert db.session.scalar(select(Participant.language).where(Participant.code == "P-CLIES")) == "es"
    refused = runner.invoke(args=["diary", "enroll", "--site", "NIH-CC", "--sequence", "AB", "--language", "fr"])
    assert refused.exit_code != 0


# --- Protocol texts ----------------------------------------------------------------------------

TWO_LANGUAGES = """
id: t
version: "1"
languages: [en, es]
periods: 1
treatments: {A: {sealed_name: a}}
sequences: {A: [A]}
timepoints:
  - {code: D1, label: Day 1, participant_label: {en: Day 1, es: Día 1}, target: 24h,
     window: {open: 20h, close: 28h}, instruments: [vas]}
instruments:
  vas:
    title: {en: Tiredness, es: Cansancio}
    items:
      - {id: tired, type: vas, text: {en: "How tired are you?"}, min_label: {en: None, es: Nada},
         max_label: Worst}
"""


def test_the_loader_reports_a_text_missing_in_a_declared_language():
    with pytest.raises(ProtocolError) as error:
        parse_protocol(TWO_LANGUAGES, source="two.yaml")
    message = str(error.value)
    assert "instruments.vas.items[0].text" in message and "has no es text" in message
    assert "max_label" in message and "only in one language" in message
    fixed = TWO_LANGUAGES.replace(
        '{en: "How tired are you?"}', '{en: "How tired are you?", es: "¿Qué tan cansado está?"}'
    )
    fixed = fixed.replace("max_label: Worst", "max_label: {en: Worst, es: Lo peor}")
    protocol = parse_protocol(fixed, source="two.yaml")
    item = protocol.instruments["vas"].items[0]
    assert item.text == "How tired are you?" and item.text.in_language("es") == "¿Qué tan cansado está?"


def test_the_shipped_protocol_is_complete_in_both_languages(study):
    protocol = protocol_of(study.current_protocol_version)
    assert protocol.languages == ("en", "es")
    texts = [tp.participant_label for tp in protocol.timepoints]
    for instrument in protocol.instruments.values():
        texts.append(instrument.title)
        for item in instrument.items:
            texts += [item.text] + ([item.min_label, item.max_label] if item.type in ("vas", "nrs") else [])
            texts += [c.label for c in item.choices + item.terms]
    assert all(text.in_language("es") and text.in_language("es") != text or text == "Midazolam" for text in texts)
    assert "primary" not in " ".join(str(tp.participant_label) for tp in protocol.timepoints)


# --- Staff date-times: typed as they are shown -------------------------------------------------


def test_staff_type_infusion_times_as_the_pages_show_them(client, study):
    from .participant_helpers import action_key_from

    enroll(
        study,
        site="NIH-CC",
        timezone="America/New_York",
        sequence="AB",
        actor="t",
        now=now_utc() - timedelta(days=3),
        code="P-CLOCK1",
    )
    db.session.commit()
    login_as(client, "coordinator")
    url = "/staff/participants/P-CLOCK1/dose/1"
    page = client.get(url).get_data(as_text=True)
    assert 'placeholder="2026-11-25 14:30"' in page and 'type="datetime-local"' not in page
    start = (now_utc() - timedelta(hours=3)).astimezone(ZoneInfo("America/New_York"))
    us_style = client.post(
        url,
        data={
            "csrf_token": csrf_from(page),
            "action_key": action_key_from(page),
            "start": start.strftime("%m/%d/%Y %I:%M %p"),
        },
    )
    assert us_style.status_code == 422 and "2026-11-25 14:30 (24-hour clock)" in us_style.get_data(as_text=True)
    typed = start.strftime("%Y-%m-%d %H:%M")
    saved = client.post(url, data={"csrf_token": csrf_from(page), "action_key": action_key_from(page), "start": typed})
    assert saved.status_code == 302
    shown = client.get("/staff/participants/P-CLOCK1").get_data(as_text=True)
    assert typed in shown  # what was typed is what the page says


@pytest.mark.parametrize("backend", ["sqlite"])  # formatting only: no database involved
def test_push_texts_follow_the_participants_language(app):
    from diary.reminders.channels import Message

    with app.app_context():
        spanish = Message(
            kind="closing_soon",
            to_email=None,
            label="Infusión 1 · Día 3",
            closes="hoy 20:00",
            link="http://x/p/t",
            language="es",
        )
        english = Message(
            kind="closing_soon",
            to_email=None,
            label="Infusion 1 · Day 3",
            closes="today 8:00 pm",
            link="http://x/p/t",
            language="en",
        )
        assert spanish.subject == "Su diario: una entrada se cierra pronto"
        assert spanish.push_body == (
            "Su entrada del diario Infusión 1 · Día 3 se cierra pronto. Por favor complétela antes de hoy 20:00."
        )
        assert english.push_body == (
            "Your diary entry Infusion 1 · Day 3 closes soon. Please fill it in before today 8:00 pm."
        )
