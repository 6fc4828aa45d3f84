"""Staff pages a coordinator reads at a glance: times with their zone (UTC on hover), answers by
their labels, "needs attention" only for what needs an action now, the infusion time's shortcuts,
and a link sheet with the site's phone and a Print button."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from diary.dosing.infusions import plan_dose, record_dose
from diary.entries.recording import record_submission
from diary.extensions import db
from diary.models import Participant, now_utc
from diary.participants.enrolment import enroll
from diary.reporting.adherence import load_grid
from diary.study.trial import protocol_of

from .conftest import answers_for, assessment_of
from .participant_helpers import participant_with_day1_open
from .staff_helpers import login_as


def test_times_on_the_participant_page_carry_their_zone_and_utc_on_hover(client, study):
    participant, _ = participant_with_day1_open(study, code="P-ZONE1")
    login_as(client, "coordinator")
    page = client.get(f"/staff/participants/{participant.code}").get_data(as_text=True)
    stamps = re.findall(r'<time datetime="([^"]+)" title="([^"]+) UTC">(\w{3} [\d-]+ [\d:]+) (E[SD]T)</time>', page)
    assert stamps, "times are labelled with the participant's zone"
    assert all(title.replace(" ", "T") in iso for iso, title, _, _ in stamps)


def test_answers_are_shown_by_their_labels_not_item_codes(client, study):
    protocol = protocol_of(study.current_protocol_version)
    participant, _ = participant_with_day1_open(study, code="P-LABEL1")
    day1 = assessment_of(participant, 1, "D1")
    record_submission(
        day1, answers_for(protocol, "D1", vas=63, **{"blinding_guess.guess": "midazolam"}), now=now_utc(), actor="t"
    )
    db.session.commit()
    login_as(client, "coordinator")
    page = client.get(f"/staff/participants/{participant.code}").get_data(as_text=True)
    timeline = page.split('aria-label="Timeline"', 1)[1].split("</table>", 1)[0]
    assert "Fatigue right now: <strong>63</strong>" in timeline and "Your guess: <strong>Midazolam</strong>" in timeline
    assert "fatigue_vas" not in timeline and "blinding_guess" not in timeline


def test_needs_attention_marks_only_what_needs_an_action_now(study):
    """Entries missed more than two days ago are history (their follow-up tasks carry them); an
    entry missed an hour ago needs attention."""
    now = now_utc()
    old, _ = enroll(
        study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=now - timedelta(days=20), code="P-OLDMISS"
    )
    record_dose(old, 1, now - timedelta(days=11), actor="t", now=now)  # D7 closed three days ago, D14 not open
    fresh, _ = enroll(
        study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=now - timedelta(days=20), code="P-NEWMISS"
    )
    record_dose(fresh, 1, now - timedelta(hours=81), actor="t", now=now)  # D3 closed an hour ago
    db.session.commit()
    rows = {row.participant.code: row for row in load_grid(study, now).rows}
    assert rows["P-OLDMISS"].tally.missed > 0 and not rows["P-OLDMISS"].needs_attention
    assert rows["P-NEWMISS"].needs_attention and rows["P-NEWMISS"].missed >= 1


def test_the_infusion_form_offers_now_and_the_planned_time(client, study):
    participant, _ = enroll(
        study,
        site="NIH-CC",
        timezone="America/New_York",
        sequence="AB",
        actor="t",
        now=now_utc() - timedelta(days=2),
        code="P-DOSE1",
    )
    plan_dose(participant, 1, now_utc() + timedelta(hours=1), actor="t", now=now_utc())
    db.session.commit()
    login_as(client, "coordinator")
    page = client.get(f"/staff/participants/{participant.code}/dose/1").get_data(as_text=True)
    assert 'data-fill-for="start" data-timezone="America/New_York"' in page and "data-fill-now" in page
    planned = re.search(r'data-fill-value="(\d{4}-\d\d-\d\d \d\d:\d\d)"', page).group(1)
    period = db.session.scalar(select(Participant).where(Participant.code == "P-DOSE1")).periods[0]
    from zoneinfo import ZoneInfo

    assert planned == period.planned_start.astimezone(ZoneInfo("America/New_York")).strftime("%Y-%m-%d %H:%M")


def test_the_link_sheet_carries_the_sites_phone_and_a_print_button(client, study):
    from diary.models import RandomizationSlot

    from .participant_helpers import action_key_from, csrf_from

    db.session.add(RandomizationSlot(study_id=study.id, site="NIH-CC", position=1, sequence="AB", dummy_sequence="BA"))
    db.session.commit()
    login_as(client, "coordinator")
    page = client.get("/staff/enrol").get_data(as_text=True)
    response = client.post(
        "/staff/enrol",
        data={
            "csrf_token": csrf_from(page),
            "action_key": action_key_from(page),
            "site": "NIH-CC",
            "timezone": "America/New_York",
            "language": "en",
            "reminder_from": "08:00",
            "reminder_until": "21:00",
        },
        follow_redirects=True,
    )
    sheet = response.get_data(as_text=True)
    assert "Your study team:" in sheet and "+1 301 555 0100" in sheet and "data-print" in sheet
