"""The investigator's control of the data: change requests, sign-off, the lock before unblinding,
two ways to stop, and the risk-based review of the audit trail."""

from __future__ import annotations

import csv
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import func, select

from diary.dosing.infusions import record_dose
from diary.entries.change_requests import decide, open_request
from diary.entries.recording import record_submission
from diary.errors import Refused
from diary.exports import export_study
from diary.extensions import db
from diary.governance.lock import lock_study, refuse_until_ready_for_the_truth, unlock_study
from diary.governance.signoff import sign_period, statuses, unsigned_periods
from diary.models import (
    AuditEvent,
    ChangeRequest,
    ItemValue,
    Participant,
    Reminder,
    StaffMessage,
    now_utc,
)
from diary.participants.enrolment import discontinue, enroll, withdraw
from diary.reminders.dispatch import run_pass
from diary.reporting.audit_review import CHECKS, record_review, run_checks
from diary.study.trial import protocol_of, unblind
from diary.vocabulary import (
    ChangeRequestState,
    ChangeRequestType,
    DecidedBy,
    ParticipantStatus,
    Role,
    SignatureKind,
    SignatureStatus,
    Source,
    WithdrawalReason,
)

from .conftest import answers_for, assessment_of
from .participant_helpers import participant_with_day1_open, zone_at
from .staff_helpers import PASSWORD, TOTP_SECRET, any_csrf, login_as, make_staff

VAS = "fatigue_vas.fatigue"


class Clock:
    """Successive moments 31 s apart, each with its own authenticator code (a code signs once)."""

    def __init__(self, start):
        self.now = start

    def tick(self):
        self.now += timedelta(seconds=31)
        return self.now, pyotp.TOTP(TOTP_SECRET).at(self.now)


def _dosed_with_entries(study, code, *, days_ago=10, timepoints=("BL", "M40", "M80", "D1", "D3", "D7")):
    """A participant dosed ``days_ago`` days ago with participant entries at ``timepoints``.

    Dosed at noon UTC (the participant's clock) whatever the hour the suite runs at, so entries
    at the opening of their windows fall in the day (D1 at 08:00, D3 at 06:00), never in the
    unusual-hours check's night: dosed at the hour of a run between 23:00 and 05:00, they did."""
    now = now_utc()
    dosed_at = (now - timedelta(days=days_ago)).replace(hour=12, minute=0, second=0, microsecond=0)
    participant, _ = enroll(
        study,
        site="NIH-CC",
        timezone="UTC",
        sequence="AB",
        actor="t",
        now=now - timedelta(days=days_ago + 2),
        code=code,
    )
    record_dose(participant, 1, dosed_at, actor="t", now=now)
    protocol = protocol_of(study.current_protocol_version)
    for timepoint in timepoints:
        entry = assessment_of(participant, 1, timepoint)
        record_submission(entry, answers_for(protocol, timepoint, vas=50), now=entry.window_open, actor="t")
    db.session.commit()
    return participant


def _request(submission, value, by, now, kind=ChangeRequestType.ENTERED_IN_ERROR):
    return open_request(
        submission,
        VAS,
        value,
        kind=kind,
        source="phone call with the participant",
        source_at=now - timedelta(minutes=5),
        reason="the participant said they tapped 5, not 50",
        by=by,
        now=now,
    )


# --- Change requests ---------------------------------------------------------------------------


def test_a_coordinators_direct_edit_of_a_participant_value_is_refused_403(client, study):
    participant = _dosed_with_entries(study, "P-DCR001", timepoints=("M40",))
    entry = assessment_of(participant, 1, "M40")
    login_as(client, "coordinator")
    response = client.post(
        f"/staff/assessments/{entry.id}/correct",
        data={"csrf_token": any_csrf(client), "item": VAS, "value": "5", "reason": "phone"},
    )
    assert response.status_code == 403 and "never edited in place" in response.get_data(as_text=True)
    assert client.get(f"/staff/assessments/{entry.id}/correct").headers["Location"].endswith("/request-change")
    db.session.expire_all()
    assert {v.value for v in entry.submission.values if v.item == "fatigue"} == {"50"}


def test_twenty_requests_approved_by_another_investigator_apply_exactly_twenty_changes(study):
    people = [_dosed_with_entries(study, f"P-DCR{n:03d}", timepoints=("D1", "D3")) for n in range(10)]
    coordinator, investigator = make_staff(Role.COORDINATOR), make_staff(Role.INVESTIGATOR)
    clock = Clock(now_utc())
    requests = []
    for participant in people:
        for timepoint in ("D1", "D3"):
            requests.append(_request(assessment_of(participant, 1, timepoint).submission, "5", coordinator, clock.now))
    db.session.commit()
    assert db.session.scalar(select(func.count(ItemValue.id)).where(ItemValue.changed_at.is_not(None))) == 0
    for change_request in requests:
        now, code = clock.tick()
        decide(change_request, approve=True, note="", by=investigator, password=PASSWORD, code=code, now=now)
    db.session.commit()
    changed = db.session.scalars(select(ItemValue).where(ItemValue.changed_at.is_not(None))).all()
    assert len(changed) == 20
    assert {(v.value, v.original_value) for v in changed} == {("5", "50")}
    assert {v.change_request_id for v in changed} == {r.id for r in requests}
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "approve_change")) == 20


def test_the_requester_cannot_approve_their_own_request_even_as_investigator(study):
    participant = _dosed_with_entries(study, "P-SELF01", timepoints=("D1",))
    investigator = make_staff(Role.INVESTIGATOR)
    clock = Clock(now_utc())
    change_request = _request(assessment_of(participant, 1, "D1").submission, "5", investigator, clock.now)
    now, code = clock.tick()
    with pytest.raises(Refused, match="other than the one who asked") as refusal:
        decide(change_request, approve=True, note="", by=investigator, password=PASSWORD, code=code, now=now)
    assert refusal.value.status == 403 and change_request.state == ChangeRequestState.OPEN


def test_a_request_is_refused_without_source_kind_or_reason_and_for_staff_entries(study):
    participant = _dosed_with_entries(study, "P-DCR900", timepoints=("D1",))
    submission = assessment_of(participant, 1, "D1").submission
    coordinator, now = make_staff(Role.COORDINATOR), now_utc()
    base = dict(
        kind=ChangeRequestType.ENTERED_IN_ERROR,
        source="call",
        source_at=now - timedelta(hours=1),
        reason="typo",
        by=coordinator,
        now=now,
    )
    for changed, message in (
        ({"kind": "whim"}, "what kind of error"),
        ({"source": "  "}, "Name the source"),
        ({"source_at": None}, "date and time of the source"),
        ({"source_at": now + timedelta(minutes=1)}, "cannot be in the future"),
        ({"reason": ""}, "why the value should change"),
        ({"by": make_staff(Role.ANALYST)}, "Only the study team"),
    ):
        with pytest.raises(Refused, match=message):
            open_request(submission, VAS, "5", **{**base, **changed})
    with pytest.raises(Refused, match="whole number from 0 to 100"):
        open_request(submission, VAS, "500", **base)
    with pytest.raises(Refused, match="same as the stored one"):
        open_request(submission, VAS, "50", **base)
    open_request(submission, VAS, "5", **base)
    with pytest.raises(Refused, match="still waiting for an investigator") as refusal:
        open_request(submission, VAS, "6", **base)
    assert refusal.value.status == 409
    submission.source = Source.PHONE_INTERVIEW
    with pytest.raises(Refused, match="correct it directly"):
        open_request(submission, VAS, "7", **base)


def test_a_decision_needs_the_password_a_fresh_code_and_a_note_to_reject(study):
    participant = _dosed_with_entries(study, "P-DEC001", timepoints=("D1",))
    coordinator, investigator = make_staff(Role.COORDINATOR), make_staff(Role.INVESTIGATOR)
    clock = Clock(now_utc())
    change_request = _request(assessment_of(participant, 1, "D1").submission, "5", coordinator, clock.now)
    now, code = clock.tick()
    with pytest.raises(Refused, match="password is not right"):
        decide(change_request, approve=True, note="", by=investigator, password="wrong", code=code, now=now)
    with pytest.raises(Refused, match="code is not right"):
        decide(change_request, approve=True, note="", by=investigator, password=PASSWORD, code="000000", now=now)
    with pytest.raises(Refused, match="why the change is rejected"):
        decide(change_request, approve=False, note=" ", by=investigator, password=PASSWORD, code=code, now=now)
    other_site = make_staff(Role.INVESTIGATOR, "elsewhere@site.test")
    other_site.site = "ELSEWHERE"
    with pytest.raises(Refused, match="investigator of this participant's site") as refusal:
        decide(change_request, approve=True, note="", by=other_site, password=PASSWORD, code=code, now=now)
    assert refusal.value.status == 403
    decide(
        change_request,
        approve=False,
        note="the paper diary says 50",
        by=investigator,
        password=PASSWORD,
        code=code,
        now=now,
    )
    assert change_request.state == ChangeRequestState.REJECTED
    now, code = clock.tick()
    with pytest.raises(Refused, match="already rejected") as refusal:
        decide(change_request, approve=True, note="", by=investigator, password=PASSWORD, code=code, now=now)
    assert refusal.value.status == 409
    db.session.refresh(change_request.submission)
    assert {v.value for v in change_request.submission.values if v.item == "fatigue"} == {"50"}


def test_the_export_alone_recovers_every_original_value_and_flags_late_changes(app, study, tmp_path):
    participant = _dosed_with_entries(study, "P-EXP001", days_ago=12)
    coordinator, investigator = make_staff(Role.COORDINATOR), make_staff(Role.INVESTIGATOR)
    clock = Clock(now_utc())
    for timepoint, value in (("D1", "5"), ("D3", "20")):
        change_request = _request(assessment_of(participant, 1, timepoint).submission, value, coordinator, clock.now)
        now, code = clock.tick()
        decide(change_request, approve=True, note="", by=investigator, password=PASSWORD, code=code, now=now)
    db.session.commit()
    export_study(tmp_path, study=study, now=now_utc(), actor="test", role=Role.ANALYST)
    with open(tmp_path / "responses.csv", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["item"] == "fatigue"]
    assert {row["timepoint"]: row["value_as_entered"] for row in rows} == {
        tp: "50" for tp in ("BL", "M40", "M80", "D1", "D3", "D7")
    }
    changed = {
        row["timepoint"]: (row["value"], row["change_request_id"] != "", float(row["days_entry_to_change"]))
        for row in rows
        if row["days_entry_to_change"]
    }
    assert set(changed) == {"D1", "D3"} and changed["D1"][:2] == ("5", True) and changed["D1"][2] > 7
    with open(tmp_path / "fatigue_endpoints.csv", encoding="utf-8") as handle:
        endpoint = next(csv.DictReader(handle))
    assert endpoint["values_changed_late"] == "TRUE" and endpoint["signature_status"] == "not_signed"


# --- Sign-off ----------------------------------------------------------------------------------


def test_a_signature_goes_invalid_on_a_later_change_and_the_period_is_listed_to_re_sign(study):
    participant = _dosed_with_entries(study, "P-SIG001", timepoints=("D1", "D3"))
    coordinator, investigator = make_staff(Role.COORDINATOR), make_staff(Role.INVESTIGATOR)
    period = participant.periods[0]
    clock = Clock(now_utc())
    now, code = clock.tick()
    signature = sign_period(period, by=investigator, password=PASSWORD, code=code, now=now)
    db.session.commit()
    assert statuses([period.id])[period.id] == (SignatureStatus.SIGNED, signature)
    assert period.id not in [p.id for p, _ in unsigned_periods(study.id)]
    change_request = _request(assessment_of(participant, 1, "D3").submission, "5", coordinator, clock.now)
    now, code = clock.tick()
    decide(change_request, approve=True, note="", by=investigator, password=PASSWORD, code=code, now=now)
    db.session.commit()
    assert statuses([period.id])[period.id][0] == SignatureStatus.INVALID
    assert (period.id, SignatureStatus.INVALID) in [(p.id, s) for p, s in unsigned_periods(study.id)]
    now, code = clock.tick()
    sign_period(period, by=investigator, password=PASSWORD, code=code, now=now)
    assert statuses([period.id])[period.id][0] == SignatureStatus.SIGNED


def test_sign_off_refusals(study):
    participant = _dosed_with_entries(study, "P-SIG002", timepoints=("D1",))
    investigator, clock = make_staff(Role.INVESTIGATOR), Clock(now_utc())
    period, undosed = participant.periods
    now, code = clock.tick()
    with pytest.raises(Refused, match="Only an investigator") as refusal:
        sign_period(period, by=make_staff(Role.COORDINATOR), password=PASSWORD, code=code, now=now)
    assert refusal.value.status == 403
    with pytest.raises(Refused, match="Waiving a signature needs a reason"):
        sign_period(period, by=investigator, password=PASSWORD, code=code, now=now, kind=SignatureKind.WAIVED)
    with pytest.raises(Refused, match="not been given"):
        sign_period(undosed, by=investigator, password=PASSWORD, code=code, now=now)
    with pytest.raises(Refused, match="password is not right"):
        sign_period(period, by=investigator, password="nope", code=code, now=now)
    sign_period(
        undosed,
        by=investigator,
        password=PASSWORD,
        code=code,
        now=now,
        kind=SignatureKind.WAIVED,
        reason="withdrew before infusion 2",
    )
    now, code = clock.tick()
    with pytest.raises(Refused, match="code is not right, or was already used"):
        sign_period(
            period,
            by=investigator,
            password=PASSWORD,
            code=pyotp.TOTP(TOTP_SECRET).at(now - timedelta(seconds=31)),
            now=now,
        )
    sign_period(period, by=investigator, password=PASSWORD, code=code, now=now)
    now, code = clock.tick()
    with pytest.raises(Refused, match="already signed") as refusal:
        sign_period(period, by=investigator, password=PASSWORD, code=code, now=now)
    assert refusal.value.status == 409
    assert {status for status, _ in statuses([period.id, undosed.id]).values()} == {
        SignatureStatus.SIGNED,
        SignatureStatus.WAIVED,
    }


def test_an_investigator_signs_a_period_on_the_web(client, study):
    participant = _dosed_with_entries(study, "P-WEB001", timepoints=("D1",))
    login_as(client, "investigator")
    page = client.get("/staff/sign-off").get_data(as_text=True)
    assert "P-WEB001" in page and "I have reviewed these data" in page
    period = participant.periods[0]
    code = pyotp.TOTP(TOTP_SECRET).at(now_utc() + timedelta(seconds=30))  # the sign-in used this step's
    response = client.post(
        f"/staff/periods/{period.id}/sign",
        data={"csrf_token": any_csrf(client), "kind": "signed", "password": PASSWORD, "code": code},
    )
    assert response.status_code == 302
    assert statuses([period.id])[period.id][0] == SignatureStatus.SIGNED
    html = client.get(f"/staff/participants/{participant.code}").get_data(as_text=True)
    assert "sign-off: <strong>signed</strong>" in html


# --- The lock ------------------------------------------------------------------------------------


# What stays open while locked (diary/web/__init__.py WHILE_LOCKED), each for its reason.
def test_while_locked_every_other_post_route_answers_423_and_stores_nothing(app, client, study):
    from diary.web import WHILE_LOCKED

    participant = _dosed_with_entries(study, "P-LCK001", timepoints=("D1",))
    admin = make_staff(Role.ADMIN)
    lock_study(study, reason="database lock before unblinding", actor="test", by_id=admin.id, now=now_utc())
    db.session.commit()
    login_as(client, "coordinator")
    rules = [rule for rule in app.url_map.iter_rules() if "POST" in rule.methods]
    walked = 0
    before = db.session.scalar(select(func.count(AuditEvent.id)))
    for rule in rules:
        if rule.endpoint in WHILE_LOCKED:
            continue
        values = {argument: participant.code if argument in ("code", "token") else 1 for argument in rule.arguments}
        path = rule.build(values, append_unknown=False)[1]
        response = client.post(path, data={"csrf_token": any_csrf(client)})
        assert response.status_code == 423, (rule.endpoint, response.status_code)
        walked += 1
    assert walked == len([rule for rule in rules if rule.endpoint not in WHILE_LOCKED]) >= 20
    assert db.session.scalar(select(func.count(AuditEvent.id))) == before  # nothing stored
    with pytest.raises(Refused, match="locked") as refusal:
        record_dose(participant, 2, now_utc(), actor="t", now=now_utc())
    assert refusal.value.status == 423


def test_while_locked_the_scheduler_sends_nothing_and_opens_no_task(app, study):
    participant, _ = participant_with_day1_open(study, code="P-LCK002")
    lock_study(study, reason="lock", actor="test", by_id=None, now=now_utc())
    db.session.commit()
    result = run_pass(app)
    assert result.locked and result.planned == result.sent == result.follow_up_tasks == 0
    assert db.session.scalar(select(func.count(Reminder.id))) == 0
    assert db.session.scalar(select(func.count(StaffMessage.id))) == 0
    unlock_study(study, reason="a late query from the monitor", actor="test", now=now_utc())
    db.session.commit()
    assert run_pass(app).planned > 0


def test_lock_and_unlock_need_a_reason_and_happen_once(study):
    with pytest.raises(Refused, match="needs a reason"):
        lock_study(study, reason=" ", actor="t", by_id=None, now=now_utc())
    with pytest.raises(Refused, match="not locked") as refusal:
        unlock_study(study, reason="why", actor="t", now=now_utc())
    assert refusal.value.status == 409
    lock_study(study, reason="lock", actor="t", by_id=None, now=now_utc())
    with pytest.raises(Refused, match="already locked"):
        lock_study(study, reason="again", actor="t", by_id=None, now=now_utc())
    with pytest.raises(Refused, match="needs a reason"):
        unlock_study(study, reason="", actor="t", now=now_utc())


def test_the_true_allocation_is_refused_before_lock_and_sign_off(study, tmp_path):
    participant = _dosed_with_entries(study, "P-TRU001", timepoints=("D1",))
    unblinded, investigator = make_staff(Role.UNBLINDED), make_staff(Role.INVESTIGATOR)
    with pytest.raises(Refused, match="Lock the study first"):
        export_study(tmp_path / "a", study=study, now=now_utc(), actor="cli", role="operator", true_allocation=True)
    with pytest.raises(Refused, match="Lock the study first"):
        unblind(study, user=unblinded, now=now_utc())
    lock_study(study, reason="lock", actor="t", by_id=None, now=now_utc())
    with pytest.raises(Refused, match="2 participant-periods are not signed or waived: P-TRU001 infusion 1"):
        refuse_until_ready_for_the_truth(study)
    clock = Clock(now_utc())
    for period in participant.periods:
        now, code = clock.tick()
        sign_period(
            period,
            by=investigator,
            password=PASSWORD,
            code=code,
            now=now,
            kind=SignatureKind.SIGNED if period.dose_start else SignatureKind.WAIVED,
            reason="not given",
        )
    manifest = export_study(
        tmp_path / "b", study=study, now=now_utc(), actor="cli", role="operator", true_allocation=True
    )
    assert not manifest["allocation_is_dummy"] and manifest["locked_utc"] and manifest["snapshot"].startswith("audit")
    unblind(study, user=unblinded, now=now_utc())
    assert study.unblinded_at is not None


# --- Two ways to stop ----------------------------------------------------------------------------


def test_a_discontinued_participant_keeps_open_entries_and_reminders(app, study, client):
    from .participant_helpers import sign_in

    # In the participant's afternoon: Day 1's reminder is not held for quiet hours past its close.
    participant, token = participant_with_day1_open(study, code="P-DSC001", timezone=zone_at(now_utc(), 14))
    discontinue(
        participant,
        actor="t",
        now=now_utc(),
        reason="nausea after infusion 1",
        category=WithdrawalReason.ADVERSE_EVENT,
        decided_by=DecidedBy.INVESTIGATOR,
    )
    db.session.commit()
    assert participant.status == ParticipantStatus.DISCONTINUED
    day1 = assessment_of(participant, 1, "D1")
    assert not day1.not_applicable
    assert run_pass(app).planned > 0
    assert db.session.scalar(select(func.count(Reminder.id)).where(Reminder.assessment_id == day1.id)) > 0
    sign_in(client, token)
    assert client.get("/p/today").status_code == 200
    with pytest.raises(Refused, match="stopped their infusions") as refusal:
        record_dose(participant, 2, now_utc(), actor="t", now=now_utc())
    assert refusal.value.status == 409
    with pytest.raises(Refused, match="already discontinued"):
        discontinue(participant, actor="t", now=now_utc(), reason="again")
    closed = withdraw(
        participant,
        actor="t",
        now=now_utc(),
        reason="no further contact",
        category=WithdrawalReason.PARTICIPANT_DECISION,
        decided_by=DecidedBy.PARTICIPANT,
    )
    assert closed > 0 and participant.status == ParticipantStatus.WITHDRAWN


def test_stopping_needs_a_reason_a_category_and_who_decided(study):
    participant, _ = enroll(
        study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=now_utc(), code="P-DSC2"
    )
    for changed, message in (
        ({"reason": " "}, "A reason is required"),
        ({"category": "bored"}, "Choose why"),
        ({"decided_by": "nobody"}, "Say who decided"),
    ):
        arguments = {"reason": "r", "category": WithdrawalReason.OTHER, "decided_by": DecidedBy.PARTICIPANT, **changed}
        with pytest.raises(Refused, match=message):
            discontinue(participant, actor="t", now=now_utc(), **arguments)
        with pytest.raises(Refused, match=message):
            withdraw(participant, actor="t", now=now_utc(), **arguments)


def test_disposition_is_exported_as_an_sdtm_ds_domain(study, tmp_path):
    _dosed_with_entries(study, "P-DS0001", timepoints=("D1",))
    stops = _dosed_with_entries(study, "P-DS0002", timepoints=("D1",))
    leaves = _dosed_with_entries(study, "P-DS0003", timepoints=("D1",))
    discontinue(stops, actor="t", now=now_utc(), reason="rash", category=WithdrawalReason.ADVERSE_EVENT)
    withdraw(leaves, actor="t", now=now_utc(), reason="moved", category=WithdrawalReason.LOST_TO_FOLLOW_UP)
    db.session.commit()
    export_study(tmp_path, study=study, now=now_utc(), actor="test", role=Role.ANALYST, standards=True)
    with open(tmp_path / "sdtm" / "ds.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    by_subject = {}
    for row in rows:
        by_subject.setdefault(row["USUBJID"].rsplit("-", 1)[-1], []).append((row["DSDECOD"], row["DSSCAT"]))
    assert by_subject["P-DS0001".rsplit("-", 1)[-1]] == [("INFORMED CONSENT OBTAINED", "")]
    assert ("ADVERSE EVENT", "STUDY TREATMENT") in by_subject["P-DS0002".rsplit("-", 1)[-1]]
    assert ("LOST TO FOLLOW-UP", "STUDY PARTICIPATION") in by_subject["P-DS0003".rsplit("-", 1)[-1]]
    assert all(row["DSSTDTC"] for row in rows)


# --- The audit-trail review ----------------------------------------------------------------------


def test_every_check_finds_nothing_in_a_clean_study_and_its_planted_case(app, study):
    clean = _dosed_with_entries(study, "P-CLEAN1", timepoints=("D1",))
    assert {name: cases for name, cases in run_checks(study, now_utc()).items() if cases} == {}
    now = now_utc()
    protocol = protocol_of(study.current_protocol_version)
    # unusual_hours: an entry given at 02:30 on the participant's clock
    night = _dosed_with_entries(study, "P-NIGHT1", timepoints=())
    entry = assessment_of(night, 1, "D7")  # a two-day window: it holds a 02:30
    at_night = entry.window_open.replace(hour=2, minute=30)
    if at_night < entry.window_open:
        at_night += timedelta(days=1)
    record_submission(entry, answers_for(protocol, "D7"), now=at_night, actor="t")
    # staff_entered_share: three entries made from paper
    paper = _dosed_with_entries(study, "P-PAPER1", timepoints=())
    for timepoint in ("M40", "M80", "D1"):
        a = assessment_of(paper, 1, timepoint)
        record_submission(
            a,
            answers_for(protocol, timepoint),
            now=now,
            actor="t",
            source=Source.PAPER,
            reason="paper",
            collected_at=a.window_open,
        )
    # late_offline_entries: an offline entry received three hours after it was made
    other = _dosed_with_entries(study, "P-OTHER1", timepoints=("D1", "D3"))
    late = assessment_of(other, 1, "D3").submission
    late.submission_mode = "offline_sync"
    late.submitted_at = late.collected_at + timedelta(hours=3)
    # shared_devices: two participants' entries ten minutes apart on one identical phone
    phone = dict(browser="Chrome 120", viewport_width=390, viewport_height=844, device_pixel_ratio=3.0)
    for code, minutes in (("P-PHONE1", 0), ("P-PHONE2", 10)):
        submission = assessment_of(_dosed_with_entries(study, code, timepoints=("D1",)), 1, "D1").submission
        for name, value in phone.items():
            setattr(submission, name, value)
        submission.collected_at = (now - timedelta(days=1)).replace(hour=14, minute=minutes)
    # late_changes: a value changed twelve days after it was given
    value = db.session.scalars(select(ItemValue).where(ItemValue.item == "fatigue")).first()
    value.original_value, value.value = value.value, "7"
    value.changed_at = value.submission.collected_at + timedelta(days=12)
    # timezone_changes: the audit trail records a participant's time zone changing
    from diary.governance import audit

    audit.record(
        actor="staff:x@y",
        action="change_contact",
        entity="participant",
        entity_id=clean.id,
        participant_id=clean.id,
        field="timezone",
        old="UTC",
        new="Europe/Madrid",
        now=now,
    )
    # rejudging_corrections: an infusion time corrected after entries were given
    record_dose(other, 1, other.periods[0].dose_start - timedelta(hours=30), actor="t", now=now, reason="typo")
    db.session.commit()
    found = run_checks(study, now_utc())
    assert {name for name, cases in found.items() if cases} == {check.name for check in CHECKS}
    assert [case.participant for case in found["unusual_hours"]] == ["P-NIGHT1"]
    assert [case.participant for case in found["staff_entered_share"]] == ["P-PAPER1"]
    assert [case.participant for case in found["shared_devices"]] == ["P-PHONE1, P-PHONE2"]
    assert [case.participant for case in found["late_offline_entries"]] == ["P-OTHER1"]
    assert [case.participant for case in found["timezone_changes"]] == ["P-CLEAN1"]
    assert [case.participant for case in found["rejudging_corrections"]] == ["P-OTHER1"]


def test_a_review_of_a_check_is_recorded_with_its_cases_and_exported(study, tmp_path):
    paper = _dosed_with_entries(study, "P-REV001", timepoints=())
    protocol, now = protocol_of(study.current_protocol_version), now_utc()
    for timepoint in ("M40", "M80", "D1"):  # keyed from paper in one sitting: a burst
        a = assessment_of(paper, 1, timepoint)
        record_submission(
            a,
            answers_for(protocol, timepoint),
            now=now,
            actor="t",
            source=Source.PAPER,
            reason="paper",
            collected_at=a.window_open,
        )
    with pytest.raises(Refused, match="needs a note"):
        record_review(study, "bursts", " ", by=make_staff(Role.COORDINATOR), now=now_utc())
    with pytest.raises(Refused, match="Unknown check"):
        record_review(study, "astrology", "n", by=make_staff(Role.COORDINATOR), now=now_utc())
    with pytest.raises(Refused, match="Only the study team") as refusal:
        record_review(study, "bursts", "n", by=make_staff(Role.ANALYST), now=now_utc())
    assert refusal.value.status == 403
    review = record_review(
        study,
        "bursts",
        "three paper sheets keyed in one sitting",
        by=make_staff(Role.INVESTIGATOR),
        now=now_utc(),
    )
    db.session.commit()
    assert review.cases == 1  # the six entries were stored in one go
    export_study(tmp_path, study=study, now=now_utc(), actor="test", role=Role.ANALYST)
    with open(tmp_path / "audit_reviews.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["check"], row["cases"], row["reviewer_role"]) for row in rows] == [("bursts", "1", "investigator")]


def test_the_cli_locks_unlocks_and_runs_the_review(runner, study):
    result = runner.invoke(args=["diary", "lock", "--reason", "end of data collection"])
    assert result.exit_code == 0 and "Locked at" in result.output
    assert runner.invoke(args=["diary", "lock", "--reason", "again"]).exit_code == 1
    assert db.session.scalar(select(Participant.id)) is None
    result = runner.invoke(args=["diary", "audit-review"])
    assert result.exit_code == 0 and all(f"{check.name}: 0 cases" in result.output for check in CHECKS)
    assert runner.invoke(args=["diary", "unlock", "--reason", "query"]).exit_code == 0
    assert db.session.scalar(select(func.count(ChangeRequest.id))) == 0


def test_open_requests_lists_the_waiting_ones_of_a_site_oldest_first(study):
    from diary.entries.change_requests import open_requests

    here = _dosed_with_entries(study, "P-LST001", timepoints=("D1", "D3"))
    there, _ = enroll(
        study,
        site="ELSEWHERE",
        timezone="UTC",
        sequence="BA",
        actor="t",
        now=now_utc() - timedelta(days=12),
        code="P-LST002",
    )
    record_dose(there, 1, now_utc() - timedelta(days=10), actor="t", now=now_utc())
    protocol = protocol_of(study.current_protocol_version)
    d1 = assessment_of(there, 1, "D1")
    record_submission(d1, answers_for(protocol, "D1", vas=50), now=d1.window_open, actor="t")
    coordinator, investigator, now = make_staff(Role.COORDINATOR), make_staff(Role.INVESTIGATOR), now_utc()
    first = _request(assessment_of(here, 1, "D1").submission, "5", coordinator, now - timedelta(minutes=2))
    second = _request(d1.submission, "6", coordinator, now - timedelta(minutes=1))
    third = _request(assessment_of(here, 1, "D3").submission, "7", coordinator, now)
    db.session.commit()
    assert [r.id for r in open_requests(study.id)] == [first.id, second.id, third.id]
    assert [r.id for r in open_requests(study.id, site="NIH-CC")] == [first.id, third.id]
    assert open_requests(study.id + 1) == []
    clock = Clock(now)
    moment, code = clock.tick()
    decide(first, approve=False, note="no source", by=investigator, password=PASSWORD, code=code, now=moment)
    assert [r.id for r in open_requests(study.id, site="NIH-CC")] == [third.id]


def test_a_request_whose_value_changed_since_is_not_applied(study):
    participant = _dosed_with_entries(study, "P-STALE1", timepoints=("D1",))
    submission = assessment_of(participant, 1, "D1").submission
    coordinator, investigator = make_staff(Role.COORDINATOR), make_staff(Role.INVESTIGATOR)
    now = now_utc()
    source_now = open_request(
        submission,
        VAS,
        "5",
        kind=ChangeRequestType.OTHER,
        source="call",
        source_at=now,
        reason="the source is now",
        by=coordinator,
        now=now,
    )  # a source at this very moment
    db.session.commit()
    value = next(v for v in submission.values if v.item == "fatigue")
    value.value = "49"  # changed by another way since the request was made
    db.session.commit()
    clock = Clock(now)
    moment, code = clock.tick()
    with pytest.raises(Refused, match="value changed after this request") as refusal:
        decide(source_now, approve=True, note="", by=investigator, password=PASSWORD, code=code, now=moment)
    assert refusal.value.status == 409


def test_the_lock_every_post_reads_is_when_and_why_or_nothing(study):
    """``current_lock``, the one light query before every data-changing request."""
    from diary.governance.lock import current_lock, lock_study, unlock_study

    assert current_lock() is None
    lock_study(study, reason="database lock for analysis", actor="admin", by_id=None, now=now_utc())
    db.session.commit()
    lock = current_lock()
    assert lock is not None and lock.lock_reason == "database lock for analysis" and lock.locked_at is not None
    unlock_study(study, reason="query to resolve", actor="admin", now=now_utc())
    db.session.commit()
    assert current_lock() is None
