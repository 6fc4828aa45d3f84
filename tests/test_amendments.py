"""Amending the protocol of a running study: classified changes, a second person for critical
ones, entries already made left as they were, entries still to come re-windowed, reminders of
unchanged time points neither lost nor doubled, later participants on the new version."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import func, select

from diary.dosing import amendments
from diary.dosing.amendments import approve_amendment, check_amendment, propose_amendment, withdraw_amendment
from diary.dosing.infusions import record_dose
from diary.entries.recording import record_submission
from diary.errors import Refused
from diary.exports import write_bundle
from diary.extensions import db
from diary.models import AuditEvent, ProtocolAmendment, ProtocolVersion, Reminder, now_utc
from diary.participants.enrolment import enroll
from diary.protocol import parse_protocol, shipped_protocol_path
from diary.protocol.diff import ADDITIVE, CRITICAL, REFUSED, classification, compare
from diary.reminders.planning import plan, quiet_hours, quiet_shift
from diary.study.trial import protocol_of
from diary.vocabulary import AmendmentState, Role

from .conftest import answers_for, assessment_of
from .staff_helpers import PASSWORD, TOTP_SECRET, any_csrf, login_as, make_staff
from .test_exports import read_csv
from .test_races import race

SHIPPED = shipped_protocol_path("ketamine-fatigue-crossover").read_text(encoding="utf-8")
D3_LINE = "target: 72h, window: {open: 66h, close: 78h}"
D7_LINE = """  - {code: D7, label: Day 7,"""
D5 = """  - {code: D5, label: Day 5, participant_label: {en: "Day 5", es: "Día 5"}, target: 5d,
     window: {open: 108h, close: 132h}, late_grace: 2h, optional: true, setting: home, instruments: [fatigue_vas]}
"""


def amended(*, version="1.4", d3_window=True, d5=True, wording=False) -> str:
    text = SHIPPED.replace('version: "1.3"', f'version: "{version}"')
    if d3_window:
        text = text.replace(D3_LINE, "target: 72h, window: {open: 60h, close: 84h}")
    if d5:
        text = text.replace(D7_LINE, D5 + D7_LINE)
    if wording:
        text = text.replace('"Before your infusion"', '"Before your infusion starts"')
    return text


def mid_study(study, code="P-AMEND1"):
    """A participant dosed 50 hours ago: the clinic entries and D1 made, D2 open now, D3 and
    later to come."""
    now = now_utc()
    participant, _ = enroll(
        study,
        site="NIH-CC",
        timezone="UTC",
        sequence="AB",
        actor="t",
        now=now - timedelta(days=9),
        code=code,
        email=f"{code.lower()}@example.org",
    )
    record_dose(participant, 1, (now - timedelta(hours=50)).replace(microsecond=0), actor="t", now=now)
    protocol = protocol_of(study.current_protocol_version)
    for timepoint in ("BL", "M40", "M80", "D1"):
        entry = assessment_of(participant, 1, timepoint)
        at = entry.window_open + timedelta(minutes=1)
        record_submission(entry, answers_for(protocol, timepoint), now=at, actor="t")
    db.session.commit()
    return participant


# --- The classification, called directly ----------------------------------------------------


def test_compare_classifies_each_kind_of_change():
    old = parse_protocol(SHIPPED)
    assert classification(compare(old, parse_protocol(amended(d3_window=False, d5=True)))) == ADDITIVE
    assert classification(compare(old, parse_protocol(amended(d3_window=False, d5=False, wording=True)))) == ADDITIVE
    changes = compare(old, parse_protocol(amended()))
    assert [str(c) for c in changes if c.kind == CRITICAL] == [
        "critical: timepoints D3.window: 66h to 78h -> 60h to 84h"
    ]
    assert "additive: timepoints D5: new optional time point" in [str(c) for c in changes]
    more = dataclasses.replace(old, version="2", languages=("en", "es", "fr"))
    assert [str(c) for c in compare(old, more)] == ["additive: languages: added fr"]
    fewer_items = dataclasses.replace(
        old,
        version="2",
        instruments={**old.instruments, "energy_nrs": dataclasses.replace(old.instruments["energy_nrs"], items=())},
    )
    assert classification(compare(old, fewer_items)) == CRITICAL
    required = parse_protocol(amended(d3_window=False, d5=False).replace("D2, label: Day 2,", "D2, label: Day 2,", 1))
    assert compare(old, required) == []  # only the version changed: nothing to amend
    no_endpoint = dataclasses.replace(old, version="2", endpoints=None)
    assert [c.kind for c in compare(old, no_endpoint)] == [CRITICAL]
    design = dataclasses.replace(old, version="2", periods=3)
    assert classification(compare(old, design)) == REFUSED
    renamed = dataclasses.replace(old, version="2", treatments={**old.treatments, "A": "another drug"})
    said = " ".join(str(c) for c in compare(old, renamed))
    assert "treatments: [A, B] -> [A, B]" in said  # a blinded admin reads it: codes, never names
    assert "ketamine" not in said and "another drug" not in said
    assert [c.kind for c in compare(old, old)] == [REFUSED]  # the same version twice
    other = dataclasses.replace(old, id="another")
    assert [c.text for c in compare(old, other)] == [
        "ketamine-fatigue-crossover -> another: another protocol is another study"
    ]


# --- The rules' refusals, called directly -----------------------------------------------------


def test_propose_refuses_what_cannot_be_an_amendment(study):
    admin, coordinator = make_staff("admin", "a1@site.test"), make_staff("coordinator", "c1@site.test")
    mid_study(study)
    now = now_utc()
    with pytest.raises(Refused, match="needs a reason") as refusal:
        propose_amendment(study, amended(), reason=" ", actor="t", proposed_by=admin, now=now)
    assert refusal.value.status == 422
    with pytest.raises(Refused, match="Only an admin") as refusal:
        propose_amendment(study, amended(), reason="r", actor="t", proposed_by=coordinator, now=now)
    assert refusal.value.status == 403
    with pytest.raises(Refused, match="periods: must be at least 1") as refusal:
        propose_amendment(
            study, amended().replace("periods: 2", "periods: 0"), reason="r", actor="t", proposed_by=admin, now=now
        )
    assert refusal.value.status == 422
    with pytest.raises(Refused, match="the running protocol, unchanged"):
        check_amendment(study, SHIPPED)
    with pytest.raises(Refused, match="only in layout or comments"):
        check_amendment(study, amended(d3_window=False, d5=False))
    with pytest.raises(Refused, match="the design of a running study cannot be amended"):
        check_amendment(study, amended().replace("min_days_between_doses: 13", "min_days_between_doses: 10"))
    with pytest.raises(Refused, match="an amendment is a new version"):
        check_amendment(study, amended(version="1.3"))
    waiting = propose_amendment(study, amended(), reason="r", actor="t", proposed_by=admin, now=now)
    assert waiting.state == AmendmentState.PROPOSED
    with pytest.raises(Refused, match=f"Amendment {waiting.id} waits for approval") as refusal:
        propose_amendment(study, amended(version="1.5"), reason="r", actor="t", proposed_by=admin, now=now)
    assert refusal.value.status == 409
    assert db.session.scalar(select(func.count(ProtocolAmendment.id))) == 1


def test_a_critical_amendment_needs_a_second_person(study):
    proposer, other, coordinator = (
        make_staff("admin", "p@site.test"),
        make_staff("investigator", "i@site.test"),
        make_staff("coordinator", "c@site.test"),
    )
    mid_study(study)
    now = now_utc()
    amendment = propose_amendment(
        study, amended(), reason="ethics approval 2026-12", actor="t", proposed_by=proposer, now=now
    )
    assert (amendment.classification, amendment.state) == (CRITICAL, AmendmentState.PROPOSED)
    assert study.current_protocol_version.version == "1.3"  # nothing applied yet
    with pytest.raises(Refused, match="its proposer cannot approve it") as refusal:
        approve_amendment(amendment, approver=proposer, actor="t", now=now)
    assert refusal.value.status == 403
    with pytest.raises(Refused, match="Only an admin or an investigator") as refusal:
        approve_amendment(amendment, approver=coordinator, actor="t", now=now)
    assert refusal.value.status == 403
    version = approve_amendment(amendment, approver=other, actor="t", now=now)
    assert version.version == "1.4" and study.current_protocol_version.id == version.id
    assert (amendment.state, amendment.approved_by_id) == (AmendmentState.APPLIED, other.id)
    with pytest.raises(Refused, match="is applied") as refusal:
        approve_amendment(amendment, approver=other, actor="t", now=now)
    assert refusal.value.status == 409
    actions = db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.entity.in_(("protocol_amendment", "protocol_version")))
    ).all()
    assert actions == ["propose_amendment", "approve_amendment", "apply_amendment"]


def test_an_additive_amendment_applies_at_once_and_a_waiting_one_can_be_withdrawn(study):
    admin, coordinator = make_staff("admin", "a@site.test"), make_staff("coordinator", "c@site.test")
    mid_study(study)
    now = now_utc()
    additive = propose_amendment(
        study, amended(d3_window=False), reason="a diary day 5", actor="t", proposed_by=admin, now=now
    )
    assert (additive.classification, additive.state, additive.approved_by_id) == (
        ADDITIVE,
        AmendmentState.APPLIED,
        None,
    )
    assert study.current_protocol_version.version == "1.4"
    waiting = propose_amendment(
        study,
        amended(version="1.5", d5=False).replace(D7_LINE, D5 + D7_LINE),
        reason="wider D3",
        actor="t",
        proposed_by=admin,
        now=now,
    )
    assert waiting.state == AmendmentState.PROPOSED
    with pytest.raises(Refused, match="Only an admin"):
        withdraw_amendment(waiting, by=coordinator, actor="t", reason="no", now=now)
    with pytest.raises(Refused, match="needs a reason"):
        withdraw_amendment(waiting, by=admin, actor="t", reason="", now=now)
    withdraw_amendment(waiting, by=admin, actor="t", reason="the committee asked for changes", now=now)
    assert waiting.state == AmendmentState.WITHDRAWN
    with pytest.raises(Refused, match="no longer waiting"):
        withdraw_amendment(waiting, by=admin, actor="t", reason="again", now=now)
    with pytest.raises(Refused, match="nothing to approve"):
        approve_amendment(waiting, approver=make_staff("investigator", "i@site.test"), actor="t", now=now)


# --- Applying it mid-study -----------------------------------------------------------------------


def test_an_amendment_applied_mid_study_moves_only_what_is_to_come(study, tmp_path):
    """Submitted entries keep their version and window; D3 (unsubmitted) moves to the new window;
    D7 keeps its window under the new version; D5 is added; D2's reminders (its window
    unchanged) are neither lost nor doubled; one audit event says what moved; the export names
    each entry's version; a participant enrolled afterwards is scheduled under it."""
    participant = mid_study(study)
    dose = participant.periods[0].dose_start
    now = now_utc()
    plan(now)
    db.session.commit()
    d2 = assessment_of(participant, 1, "D2")
    reminders_before = sorted(
        (r.kind, r.channel, r.due_at)
        for r in db.session.scalars(select(Reminder).where(Reminder.assessment_id == d2.id))
    )
    assert reminders_before, "D2 is open now: its reminders are planned"
    made = {
        tp: (a.protocol_version_id, a.window_open, a.window_close)
        for tp in ("BL", "M40", "M80", "D1")
        for a in [assessment_of(participant, 1, tp)]
    }
    old_version = study.current_protocol_version.id
    d7_window = (assessment_of(participant, 1, "D7").window_open, assessment_of(participant, 1, "D7").window_close)

    proposer, approver = make_staff("admin", "p@site.test"), make_staff("admin", "q@site.test")
    amendment = propose_amendment(
        study, amended(), reason="ethics approval", actor="staff:p", proposed_by=proposer, now=now
    )
    approve_amendment(amendment, approver=approver, actor="staff:q", now=now)
    db.session.commit()
    new_version = study.current_protocol_version.id
    assert new_version != old_version

    for tp, before in made.items():
        entry = assessment_of(participant, 1, tp)
        assert (entry.protocol_version_id, entry.window_open, entry.window_close) == before
        assert before[0] == old_version
    d3 = assessment_of(participant, 1, "D3")
    assert (d3.window_open, d3.window_close) == (dose + timedelta(hours=60), dose + timedelta(hours=84))
    assert d3.protocol_version_id == new_version
    d7 = assessment_of(participant, 1, "D7")
    assert (d7.window_open, d7.window_close) == d7_window and d7.protocol_version_id == new_version
    d5 = assessment_of(participant, 1, "D5")
    assert d5.window_open == dose + timedelta(hours=108) and d5.protocol_version_id == new_version

    plan(now)
    plan(now + timedelta(minutes=1))
    db.session.commit()
    reminders_after = sorted(
        (r.kind, r.channel, r.due_at)
        for r in db.session.scalars(select(Reminder).where(Reminder.assessment_id == d2.id))
    )
    assert reminders_after == reminders_before  # one each, as they were
    d3_reminders = db.session.scalars(select(Reminder).where(Reminder.assessment_id == d3.id)).all()
    # Due as its new window opens, or when the participant's quiet hours end if it opens in them
    # (the test runs at any hour: D3 opens 60 hours after a dose given 50 hours before now).
    quiet = quiet_hours(
        participant.reminder_from, participant.reminder_until, protocol_of(study.current_protocol_version)
    )
    expected = quiet_shift(d3.window_open, participant.timezone, *quiet)
    assert {r.due_at for r in d3_reminders if r.kind == "window_open"} == {expected}
    assert len(d3_reminders) == len({(r.kind, r.channel) for r in d3_reminders})

    moved = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "rewindow_by_amendment", AuditEvent.participant_id == participant.id
        )
    ).one()
    assert "period 1 D3 window" in moved.new_value and "period 1 D5 added" in moved.new_value
    assert "D7" not in moved.new_value and "M40" not in moved.new_value  # unchanged: not listed

    write_bundle(tmp_path, study=study, now=now)
    versions = {
        (r["participant_id"], r["period"], r["timepoint"]): r["protocol_version"]
        for r in read_csv(tmp_path, "assessments")
    }
    code = participant.code
    assert versions[(code, "1", "M40")] == "1.3" and versions[(code, "1", "D3")] == "1.4"
    assert versions[(code, "1", "D5")] == "1.4"
    assert not any(key[1] == "2" for key in versions)  # infusion 2 is not planned: nothing scheduled yet

    later, _ = enroll(study, site="NIH-CC", timezone="UTC", sequence="BA", actor="t", now=now, code="P-AFTER")
    record_dose(later, 1, now, actor="t", now=now)
    db.session.commit()
    assert {a.protocol_version_id for a in later.periods[0].assessments} == {new_version}
    assert "D5" in {a.timepoint for a in later.periods[0].assessments}


# --- Concurrency: two approvers at once -----------------------------------------------------------


def approve_in_process(worker: int, amendment_id: int, email: str):
    from diary.models import StaffUser

    amendment = db.session.get(ProtocolAmendment, amendment_id)
    approver = db.session.scalar(select(StaffUser).where(StaffUser.email == email))
    _ = amendment.state, amendment.study_id
    db.session.commit()  # both have read "proposed"
    time.sleep(0.3)
    try:
        version = approve_amendment(amendment, approver=approver, actor=f"staff:{email}", now=now_utc())
        db.session.commit()
        return version.version
    except Refused as refusal:
        db.session.rollback()
        return refusal.status


def test_two_approvers_at_once_apply_the_amendment_once(app, study):
    mid_study(study)
    proposer = make_staff("admin", "p@site.test")
    make_staff("admin", "q0@site.test")
    make_staff("investigator", "q1@site.test")
    amendment = propose_amendment(study, amended(), reason="r", actor="t", proposed_by=proposer, now=now_utc())
    db.session.commit()
    results = race(app, approve_in_process, (0, amendment.id, "q0@site.test"), (1, amendment.id, "q1@site.test"))
    assert sorted(results, key=str) == ["1.4", 409]
    assert db.session.scalar(select(func.count(ProtocolVersion.id))) == 2
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "apply_amendment")) == 1
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "rewindow_by_amendment")) == 1


# --- The web page and the command line -------------------------------------------------------------


def _next_code() -> str:
    return pyotp.TOTP(TOTP_SECRET).at(now_utc() + timedelta(seconds=30))


def test_the_admin_checks_then_proposes_on_the_web_and_another_approves(client, study):
    mid_study(study)
    login_as(client, Role.ADMIN, "admin1@site.test")
    checked = client.post(
        "/staff/protocol/amend", data={"csrf_token": any_csrf(client), "text": amended(), "action": "check"}
    )
    html = checked.get_data(as_text=True)
    assert checked.status_code == 200 and "This amendment is critical" in html
    assert "timepoints D3.window: 66h to 78h -&gt; 60h to 84h" in html
    assert db.session.scalar(select(func.count(ProtocolAmendment.id))) == 0  # a check stores nothing
    no_code = client.post(
        "/staff/protocol/amend",
        data={"csrf_token": any_csrf(client), "text": amended(), "reason": "r", "action": "propose"},
    )
    assert no_code.status_code == 401 and db.session.scalar(select(func.count(ProtocolAmendment.id))) == 0
    code = _next_code()  # the sign-in used this step's code: a code is good once
    proposed = client.post(
        "/staff/protocol/amend",
        data={
            "csrf_token": any_csrf(client),
            "text": amended(),
            "reason": "ethics",
            "action": "propose",
            "password": PASSWORD,
            "code": code,
        },
    )
    assert proposed.status_code == 303
    amendment = db.session.scalars(select(ProtocolAmendment)).one()
    page = client.get("/staff/protocol").get_data(as_text=True)
    assert "Waiting for a second person" in page and "Approve and apply" not in page
    client.post("/staff/logout", data={"csrf_token": any_csrf(client)})
    login_as(client, Role.INVESTIGATOR, "investigator1@site.test")
    assert "Approve and apply" in client.get("/staff/protocol").get_data(as_text=True)
    approved = client.post(
        f"/staff/protocol/amendments/{amendment.id}/approve",
        data={"csrf_token": any_csrf(client), "password": PASSWORD, "code": _next_code()},
    )
    assert approved.status_code == 303
    db.session.expire_all()
    assert db.session.get(ProtocolAmendment, amendment.id).state == AmendmentState.APPLIED
    assert study.current_protocol_version.version == "1.4"


def test_the_command_line_proposes_and_a_second_person_approves(runner, study, tmp_path):
    mid_study(study)
    make_staff("admin", "p@site.test")
    make_staff("investigator", "i@site.test")
    db.session.commit()
    path = tmp_path / "amended.yaml"
    path.write_text(amended(), encoding="utf-8")
    result = runner.invoke(args=["diary", "protocol", "amend", str(path), "--reason", "ethics", "--by", "p@site.test"])
    assert result.exit_code == 0, result.output
    assert "critical: timepoints D3.window: 66h to 78h -> 60h to 84h" in result.output
    assert "waits for a second person's approval" in result.output
    amendment = db.session.scalars(select(ProtocolAmendment)).one()
    own = runner.invoke(args=["diary", "protocol", "approve", str(amendment.id), "--by", "p@site.test"])
    assert own.exit_code != 0 and "its proposer cannot approve it" in own.output
    approved = runner.invoke(args=["diary", "protocol", "approve", str(amendment.id), "--by", "i@site.test"])
    assert approved.exit_code == 0 and "version 1.4 is current" in approved.output
    # A changed file at start-up is no back door once participants exist.
    from diary.study.trial import ensure_study

    other = tmp_path / "other.yaml"
    other.write_text(amended(version="1.9"), encoding="utf-8")
    with pytest.raises(Refused, match="amend it instead"):
        ensure_study(other)


def test_amendments_module_names_its_approvers():
    assert set(amendments.APPROVERS) == {Role.ADMIN, Role.INVESTIGATOR}
