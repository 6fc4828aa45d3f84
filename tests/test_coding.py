"""Coding side effects (issue 30): the protocol codes the checklist, the study team codes what
participants write in their own words; the export carries AEDECOD, never an empty AETERM."""

from __future__ import annotations

import csv
from datetime import timedelta

import pytest
from sqlalchemy import select

from diary.entries.recording import record_submission
from diary.errors import Refused
from diary.exports import write_bundle
from diary.extensions import db
from diary.governance.lock import lock_study, unlock_study
from diary.models import AuditEvent, SideEffectReport, now_utc
from diary.safety.coding import code_side_effect
from diary.study.trial import protocol_of
from diary.vocabulary import AuditAction, Role

from .conftest import answers_for, assessment_of
from .participant_helpers import participant_with_day1_open
from .staff_helpers import any_csrf, login_as, make_staff


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def reports(study):
    """A participant's Day 1 with a headache from the checklist and 'a strange metallic taste' in
    their own words. Returns (solicited report, verbatim report)."""
    participant, _ = participant_with_day1_open(study)
    protocol = protocol_of(study.current_protocol_version)
    day1 = assessment_of(participant, 1, "D1")
    form = answers_for(
        protocol, "D1", **{"side_effects.symptoms.headache": "mild", "side_effects.other": "a strange metallic taste"}
    )
    record_submission(day1, form, now=day1.window_open + timedelta(minutes=5), actor="t")
    db.session.commit()
    made = db.session.scalars(select(SideEffectReport).order_by(SideEffectReport.id)).all()
    solicited = next(r for r in made if r.solicited)
    verbatim = next(r for r in made if not r.solicited)
    return solicited, verbatim


def test_coding_refusals_where_the_rule_lives(study, reports):
    solicited, verbatim = reports
    coordinator, analyst = make_staff(Role.COORDINATOR), make_staff(Role.ANALYST)
    now = now_utc()
    cases = [
        (verbatim, "Dysgeusia", "matches the LLT metallic taste", analyst, 403, None),
        (solicited, "Headache", "already", coordinator, 409, None),
        (verbatim, "  ", "why", coordinator, 422, "term"),
        (verbatim, "x" * 201, "why", coordinator, 422, "term"),
        (verbatim, "Dysgeusia", " ", coordinator, 422, "reason"),
    ]
    for report, term, reason, by, status, field in cases:
        with pytest.raises(Refused) as refused:
            code_side_effect(report, term, reason=reason, by=by, now=now)
        assert (refused.value.status, refused.value.field) == (status, field), (term, reason, by.role)
    lock_study(study, reason="lock", actor="t", by_id=None, now=now)
    with pytest.raises(Refused) as refused:
        code_side_effect(verbatim, "Dysgeusia", reason="LLT metallic taste", by=coordinator, now=now)
    assert refused.value.status == 423
    unlock_study(study, reason="again", actor="t", now=now)
    code_side_effect(verbatim, "Dysgeusia", reason="LLT metallic taste", by=coordinator, now=now)
    with pytest.raises(Refused) as refused:
        code_side_effect(verbatim, "Dysgeusia", reason="again", by=coordinator, now=now)
    assert refused.value.status == 409
    # A coder who saw the report before someone else coded it is told, not obeyed.
    db.session.commit()
    db.session.execute(
        SideEffectReport.__table__.update()
        .where(SideEffectReport.id == verbatim.id)
        .values(coded_term="Taste disorder")
    )
    with pytest.raises(Refused) as refused:  # this coder's page showed Dysgeusia
        code_side_effect(verbatim, "Ageusia", reason="recoded", by=coordinator, now=now, seen="Dysgeusia")
    assert refused.value.status == 409 and "meanwhile" in refused.value.message


def test_coded_terms_reach_the_export_and_the_audit_trail(study, reports, tmp_path):
    solicited, verbatim = reports
    coordinator = make_staff(Role.COORDINATOR)
    write_bundle(tmp_path / "before", study=study, now=now_utc(), standards=True)
    ae = {row["AECAT"]: row for row in read_csv(tmp_path / "before" / "sdtm" / "ae.csv")}
    assert ae["SOLICITED"]["AEDECOD"] == "Headache" and ae["UNSOLICITED"]["AEDECOD"] == ""
    assert ae["UNSOLICITED"]["AETERM"] == "a strange metallic taste"

    code_side_effect(verbatim, "Dysgeusia", reason="LLT metallic taste", by=coordinator, now=now_utc())
    db.session.commit()
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == AuditAction.CODE_SIDE_EFFECT)).one()
    assert (event.old_value, event.new_value, event.reason) == (None, "Dysgeusia", "LLT metallic taste")
    write_bundle(tmp_path / "after", study=study, now=now_utc(), standards=True, free_text=False)
    side_effects = {row["solicited"]: row for row in read_csv(tmp_path / "after" / "side_effects.csv")}
    assert (side_effects["TRUE"]["coded_term"], side_effects["FALSE"]["coded_term"]) == ("Headache", "Dysgeusia")
    ae = {row["AECAT"]: row for row in read_csv(tmp_path / "after" / "sdtm" / "ae.csv")}
    assert ae["UNSOLICITED"]["AEDECOD"] == "Dysgeusia"
    # Free text withheld: the participant's words are gone, AETERM is the coded term, never empty.
    assert ae["UNSOLICITED"]["AETERM"] == "Dysgeusia" and side_effects["FALSE"]["verbatim"] == ""


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_coding_page_is_the_sites_coordinators_and_investigators(app, client, study, reports, backend):
    _, verbatim = reports
    login_as(client, Role.COORDINATOR)
    page = client.get("/staff/coding").get_data(as_text=True)
    assert "a strange metallic taste" in page and "MedDRA 27.1" in page
    posted = client.post(
        f"/staff/coding/{verbatim.id}",
        data={"csrf_token": any_csrf(client), "term": "Dysgeusia", "reason": "LLT", "seen": ""},
    )
    assert posted.status_code == 303
    stale = client.post(
        f"/staff/coding/{verbatim.id}",
        data={"csrf_token": any_csrf(client), "term": "Ageusia", "reason": "LLT", "seen": ""},
    )
    assert stale.status_code == 409  # the page still showed it uncoded
    db.session.expire_all()
    assert db.session.get(SideEffectReport, verbatim.id).coded_term == "Dysgeusia"
    analyst = app.test_client()
    login_as(analyst, Role.ANALYST)
    assert analyst.get("/staff/coding").status_code == 403
    elsewhere = make_staff(Role.INVESTIGATOR, "elsewhere@site.test")
    elsewhere.site = "HUVH"
    db.session.commit()
    other = app.test_client()
    login_as(other, Role.INVESTIGATOR, "elsewhere@site.test")
    assert "a strange metallic taste" not in other.get("/staff/coding").get_data(as_text=True)
    refused = other.post(
        f"/staff/coding/{verbatim.id}", data={"csrf_token": any_csrf(other), "term": "Ageusia", "reason": "x"}
    )
    assert refused.status_code == 403
