"""Each staff action happens once: posting the same form again (a reload, a double click, a
second tab) stores nothing new, and the link is shown from a one-time page, never re-posted."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from diary.extensions import db
from diary.models import AuditEvent, Participant, RandomizationSlot, now_utc

from .participant_helpers import action_key_from, csrf_from, participant_with_day1_open
from .staff_helpers import login_as


def events(action: str) -> int:
    return db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action))


def post_twice(client, url, form_page, data):
    """Send a form the way a browser does, then send exactly the same body again."""
    html = client.get(form_page).get_data(as_text=True)
    body = {"csrf_token": csrf_from(html), "action_key": action_key_from(html), **data}
    return client.post(url, data=body), client.post(url, data=body)


@pytest.fixture
def someone(study):
    participant, _ = participant_with_day1_open(study)
    return participant


def test_reposting_an_enrolment_enrols_one_participant(client, study):
    """The enrol form sent twice enrols once and takes one slot; the second is told it was done."""
    for position in (1, 2):
        db.session.add(RandomizationSlot(study_id=study.id, site="NIH-CC", position=position, sequence="AB"))
    db.session.commit()
    login_as(client, "coordinator")
    first, second = post_twice(
        client, "/staff/enrol", "/staff/enrol", {"site": "NIH-CC", "timezone": "UTC", "email": "p@example.org"}
    )
    assert first.status_code == 303 and "/link" in first.headers["Location"]
    assert second.status_code == 302
    assert db.session.scalar(select(func.count()).select_from(Participant)) == 1
    assert (
        db.session.scalar(
            select(func.count()).select_from(RandomizationSlot).where(RandomizationSlot.participant_id.is_not(None))
        )
        == 1
    )


def test_the_link_page_shows_the_link_once(client, study):
    """Reloading the page after enrolment shows no link and changes nothing."""
    db.session.add(RandomizationSlot(study_id=study.id, site="NIH-CC", position=1, sequence="AB"))
    db.session.commit()
    login_as(client, "coordinator")
    first, _ = post_twice(client, "/staff/enrol", "/staff/enrol", {"site": "NIH-CC", "timezone": "UTC"})
    sheet = client.get(first.headers["Location"])
    assert sheet.status_code == 200 and "/p/" in sheet.get_data(as_text=True)
    assert sheet.headers["Cache-Control"] == "no-store"
    participant = db.session.scalars(select(Participant)).one()
    link_hash = participant.link_token_hash
    reload = client.get(first.headers["Location"], follow_redirects=True)
    assert "/p/" not in reload.get_data(as_text=True).split("<main")[-1].split("Participant")[0]
    assert "shown only once" in reload.get_data(as_text=True)
    db.session.refresh(participant)
    assert participant.link_token_hash == link_hash


@pytest.mark.parametrize(
    "action, path, event",
    [
        ("reissue", "reissue-link", "reissue_link"),
        ("reset", "reset-pin", "reset_pin"),
        ("withdraw", "withdraw", "withdraw"),
    ],
)
def test_reposting_a_confirmed_action_does_it_once(client, study, someone, action, path, event):
    """Reissue, PIN reset and withdrawal each ask to confirm with a reason, and happen once."""
    login_as(client, "coordinator")
    url = f"/staff/participants/{someone.code}/{path}"
    confirm = client.get(url)
    assert confirm.status_code == 200 and 'name="reason"' in confirm.get_data(as_text=True)
    first, second = post_twice(
        client, url, url, {"reason": "asked by the participant", "category": "participant_decision"}
    )
    assert first.status_code in (302, 303) and second.status_code == 302
    assert events(event) == 1
    assert db.session.scalar(select(AuditEvent.reason).where(AuditEvent.action == event)) == "asked by the participant"


def test_reposting_a_dose_records_it_once(client, study):
    """The dose form sent twice records one infusion and no reason-less correction."""
    from diary.participants.enrolment import enroll

    enroll(
        study,
        site="NIH-CC",
        timezone="UTC",
        sequence="AB",
        actor="t",
        now=now_utc() - timedelta(days=1),
        code="P-TWICE1",
    )
    db.session.commit()
    login_as(client, "coordinator")
    start = (now_utc() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    url = "/staff/participants/P-TWICE1/dose/1"
    first, second = post_twice(client, url, url, {"start": start})
    assert first.status_code == 302 and second.status_code == 302
    assert events("record_dose") == 1 and events("correct_dose") == 0


def test_reposting_a_plan_plans_once(client, study):
    """The plan form sent twice plans once (a second plan would need a reason)."""
    from diary.participants.enrolment import enroll

    enroll(study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=now_utc(), code="P-TWICE2")
    db.session.commit()
    login_as(client, "coordinator")
    url = "/staff/participants/P-TWICE2/plan/1"
    first, second = post_twice(client, url, url, {"start": (now_utc() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")})
    assert first.status_code == 302 and second.status_code == 302
    assert events("plan_dose") == 1 and events("replan_dose") == 0


def test_a_form_without_its_key_is_refused_and_stores_nothing(client, study, someone):
    """A forged post without the form's key: 400, nothing done."""
    login_as(client, "coordinator")
    url = f"/staff/participants/{someone.code}/withdraw"
    html = client.get(url).get_data(as_text=True)
    response = client.post(url, data={"csrf_token": csrf_from(html), "reason": "x", "category": "other"})
    assert response.status_code == 400 and events("withdraw") == 0


def test_a_nul_byte_in_a_form_is_a_clear_400(client, study, someone):
    """PostgreSQL cannot store NUL: the request is refused before any rule runs."""
    login_as(client, "coordinator")
    url = f"/staff/participants/{someone.code}/withdraw"
    html = client.get(url).get_data(as_text=True)
    response = client.post(
        url, data={"csrf_token": csrf_from(html), "action_key": action_key_from(html), "reason": "moved\x00away"}
    )
    assert response.status_code == 400 and events("withdraw") == 0
    assert client.get("/staff/audit?participant=P\x00X").status_code == 400


def test_the_enrol_form_refuses_an_address_reminders_cannot_carry(client, study):
    """A non-ASCII email is refused beside the email field; nobody is enrolled."""
    db.session.add(RandomizationSlot(study_id=study.id, site="NIH-CC", position=1, sequence="AB"))
    db.session.commit()
    login_as(client, "coordinator")
    html = client.get("/staff/enrol").get_data(as_text=True)
    response = client.post(
        "/staff/enrol",
        data={
            "csrf_token": csrf_from(html),
            "action_key": action_key_from(html),
            "site": "NIH-CC",
            "timezone": "UTC",
            "email": "jos\u00e9@example.org",
        },
    )
    assert response.status_code == 422 and "cannot be used for reminders" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Participant)) == 0
