"""Every refusal of a rule module, called directly (not through a view): each test names the
rule it breaks and asserts the refusal, so deleting the rule's check fails a test here.

``make mutation`` measures how many small breakages of the rule packages these tests catch."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from diary.dosing.infusions import plan_dose, record_dose
from diary.errors import Refused
from diary.extensions import db
from diary.models import AuditEvent
from diary.participants.enrolment import withdraw
from diary.study.trial import protocol_of

from .conftest import NOW, answers_for, assessment_of

GAP = timedelta(days=13)  # the shipped protocol's min_days_between_doses


def _last_action(participant) -> AuditEvent:
    return db.session.scalars(
        select(AuditEvent).where(AuditEvent.participant_id == participant.id).order_by(AuditEvent.id.desc())
    ).first()


# --- dosing: plan_dose and record_dose ------------------------------------------------------


def test_record_dose_refuses_a_withdrawn_participant(enrolled):
    participant, _ = enrolled
    withdraw(participant, actor="test", now=NOW - timedelta(days=1), reason="moved away")
    with pytest.raises(Refused, match="withdrawn") as refusal:
        record_dose(participant, 1, NOW - timedelta(hours=1), actor="test", now=NOW)
    assert refusal.value.status == 409
    with pytest.raises(Refused, match="withdrawn"):
        plan_dose(participant, 1, NOW + timedelta(days=1), actor="test", now=NOW)


def test_record_dose_refuses_a_period_the_protocol_does_not_have(enrolled):
    participant, _ = enrolled
    with pytest.raises(Refused, match="Infusion 3 does not exist; the protocol has 2 infusions"):
        record_dose(participant, 3, NOW - timedelta(hours=1), actor="test", now=NOW)


def test_record_dose_refuses_a_start_before_enrolment_day_and_takes_the_enrolment_day(enrolled):
    participant, _ = enrolled  # enrolled NOW - 10 days, New York time
    enrolled_day = participant.enrolled_at
    with pytest.raises(Refused, match="before P-TEST01 was enrolled"):
        record_dose(participant, 1, enrolled_day - timedelta(days=1), actor="test", now=NOW)
    assert record_dose(participant, 1, enrolled_day, actor="test", now=NOW).dose_start == enrolled_day


def test_record_dose_refuses_the_future_but_takes_now(enrolled):
    participant, _ = enrolled
    with pytest.raises(Refused, match="cannot be in the future"):
        record_dose(participant, 1, NOW + timedelta(seconds=1), actor="test", now=NOW)
    assert record_dose(participant, 1, NOW, actor="test", now=NOW).dose_start == NOW


def test_record_dose_refuses_a_naive_time(enrolled):
    participant, _ = enrolled
    with pytest.raises(ValueError, match="timezone-aware"):
        record_dose(participant, 1, NOW.replace(tzinfo=None), actor="test", now=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_dose(participant, 1, NOW.replace(tzinfo=None) + timedelta(days=1), actor="test", now=NOW)


def test_correcting_a_recorded_start_needs_a_reason_and_is_audited_as_a_correction(dosed):
    participant, _ = dosed
    start = participant.periods[0].dose_start
    for reason in (None, "   "):
        with pytest.raises(Refused, match="Correcting its time needs a reason"):
            record_dose(participant, 1, start - timedelta(minutes=30), actor="test", now=NOW, reason=reason)
    record_dose(participant, 1, start - timedelta(minutes=30), actor="test", now=NOW, reason="pump clock")
    event = _last_action(participant)
    assert (event.action, event.reason, event.old_value) == ("correct_dose", "pump clock", start.isoformat())


def test_record_dose_refuses_infusion_2_before_infusion_1_is_recorded(enrolled):
    participant, _ = enrolled
    with pytest.raises(Refused, match="Record infusion 1 before infusion 2"):
        record_dose(participant, 2, NOW - timedelta(hours=1), actor="test", now=NOW)
    plan_dose(participant, 1, NOW + timedelta(days=1), actor="test", now=NOW)
    with pytest.raises(Refused, match="Record infusion 1 before infusion 2"):  # a plan is not a start
        record_dose(participant, 2, NOW - timedelta(hours=1), actor="test", now=NOW)


def test_plan_dose_refuses_infusion_2_before_infusion_1_is_planned_or_recorded(enrolled):
    participant, _ = enrolled
    with pytest.raises(Refused, match="Plan or record infusion 1 before infusion 2"):
        plan_dose(participant, 2, NOW + timedelta(days=20), actor="test", now=NOW)
    plan_dose(participant, 1, NOW + timedelta(days=1), actor="test", now=NOW)
    assert plan_dose(participant, 2, NOW + timedelta(days=1) + GAP, actor="test", now=NOW).planned_start


def test_record_dose_holds_the_minimum_gap_after_the_previous_infusion_to_the_second(study):
    from diary.participants.enrolment import enroll

    participant, _ = enroll(
        study, site="NIH-CC", timezone="UTC", sequence="AB", actor="test", now=NOW - timedelta(days=40), code="P-GAP001"
    )
    first = NOW - timedelta(days=30)
    record_dose(participant, 1, first, actor="test", now=NOW)
    with pytest.raises(Refused, match="at least 13 days after infusion 1"):
        record_dose(participant, 2, first + GAP - timedelta(seconds=1), actor="test", now=NOW)
    assert record_dose(participant, 2, first + GAP, actor="test", now=NOW).dose_start == first + GAP


def test_plan_dose_holds_the_minimum_gap_after_the_previous_plan(enrolled):
    participant, _ = enrolled
    first = NOW + timedelta(days=1)
    plan_dose(participant, 1, first, actor="test", now=NOW)
    with pytest.raises(Refused, match="at least 13 days after infusion 1"):
        plan_dose(participant, 2, first + GAP - timedelta(minutes=1), actor="test", now=NOW)


def test_correcting_infusion_1_holds_the_minimum_gap_before_infusion_2(study):
    from diary.participants.enrolment import enroll

    participant, _ = enroll(
        study, site="NIH-CC", timezone="UTC", sequence="AB", actor="test", now=NOW - timedelta(days=40), code="P-GAP002"
    )
    first, second = NOW - timedelta(days=30), NOW - timedelta(days=30) + GAP
    record_dose(participant, 1, first, actor="test", now=NOW)
    record_dose(participant, 2, second, actor="test", now=NOW)
    with pytest.raises(Refused, match="at least 13 days before infusion 2"):
        record_dose(participant, 1, first + timedelta(seconds=1), actor="test", now=NOW, reason="typo")
    # Exactly the gap is allowed (and moving earlier is always allowed by this rule).
    assert record_dose(participant, 1, first, actor="test", now=NOW, reason="same").dose_start == first


def test_plan_dose_refuses_a_recorded_period_the_past_and_a_replan_without_reason(enrolled):
    participant, _ = enrolled
    for when in (NOW, NOW - timedelta(minutes=1)):
        with pytest.raises(Refused, match="must be in the future"):
            plan_dose(participant, 1, when, actor="test", now=NOW)
    plan_dose(participant, 1, NOW + timedelta(seconds=1), actor="test", now=NOW)
    assert _last_action(participant).action == "plan_dose"
    with pytest.raises(Refused, match="Changing the plan needs a reason"):
        plan_dose(participant, 1, NOW + timedelta(days=2), actor="test", now=NOW)
    with pytest.raises(Refused, match="Changing the plan needs a reason"):
        plan_dose(participant, 1, NOW + timedelta(days=2), actor="test", now=NOW, reason="  ")
    plan_dose(participant, 1, NOW + timedelta(days=2), actor="test", now=NOW, reason="clinic moved")
    assert (_last_action(participant).action, _last_action(participant).reason) == ("replan_dose", "clinic moved")
    record_dose(participant, 1, NOW - timedelta(hours=1), actor="test", now=NOW)
    with pytest.raises(Refused, match="already been recorded; correct its start instead") as refusal:
        plan_dose(participant, 1, NOW + timedelta(days=3), actor="test", now=NOW, reason="again")
    assert refusal.value.status == 409


def test_recording_infusion_2_closes_the_previous_periods_last_window_at_its_start(study):
    """The re-scheduling of the previous period: D14 of period 1 closes when infusion 2 starts."""
    from diary.participants.enrolment import enroll

    participant, _ = enroll(
        study, site="NIH-CC", timezone="UTC", sequence="AB", actor="test", now=NOW - timedelta(days=40), code="P-NEXT01"
    )
    first = NOW - timedelta(days=30)
    record_dose(participant, 1, first, actor="test", now=NOW)
    before = assessment_of(participant, 1, "D14").window_close
    second = first + GAP + timedelta(hours=3)
    record_dose(participant, 2, second, actor="test", now=NOW)
    d14 = assessment_of(participant, 1, "D14")
    assert before != second and d14.window_close == second
    assert d14.late_close == second + (d14.late_close - d14.window_close)


def test_correcting_a_start_re_judges_the_entries_and_says_so_in_the_audit_trail(dosed):
    participant, _ = dosed
    protocol = protocol_of(participant.study.current_protocol_version)
    from diary.entries.recording import record_submission

    baseline = assessment_of(participant, 1, "BL")
    record_submission(
        baseline, answers_for(protocol, "BL"), now=baseline.window_close - timedelta(minutes=5), actor="test"
    )
    start = participant.periods[0].dose_start
    record_dose(participant, 1, start - timedelta(minutes=30), actor="test", now=NOW, reason="pump clock")
    assert "entries re-judged: BL completed -> after_dose" in _last_action(participant).new_value


# --- safety: reviews, the code break, follow-up tasks, alert recipients -----------------------

from diary.entries.recording import record_submission  # noqa: E402
from diary.models import FollowUpTask, SideEffectReport, StaffMessage  # noqa: E402
from diary.participants.enrolment import withdraw  # noqa: E402,F811
from diary.safety.alerts import (  # noqa: E402
    alert_severe_answers,
    break_code,
    broken_code,
    review,
    review_due,
    site_recipients,
)
from diary.safety.follow_up import close_task  # noqa: E402
from diary.vocabulary import FollowUpOutcome, ReviewState, Role, StaffMessageKind  # noqa: E402

from .staff_helpers import make_staff  # noqa: E402


def _reports(dosed, **severities):
    """Side-effect reports of the dosed participant's M40 entry, with the given severities."""
    participant, _ = dosed
    protocol = protocol_of(participant.study.current_protocol_version)
    entry = assessment_of(participant, 1, "M40")
    answers = {f"side_effects.symptoms.{term}": severity for term, severity in severities.items()}
    record_submission(entry, answers_for(protocol, "M40", **answers), now=entry.window_open, actor="test")
    db.session.commit()
    return {report.term: report for report in db.session.scalars(select(SideEffectReport))}


def test_review_needs_a_note_and_a_known_outcome(dosed):
    report = _reports(dosed, nausea="severe")["nausea"]
    coordinator = make_staff(Role.COORDINATOR)
    for note in ("", "   ", None):
        with pytest.raises(Refused, match="A review needs a note"):
            review(report, note, by=coordinator, now=NOW)
    with pytest.raises(Refused, match="Choose reviewed or AE recorded"):
        review(report, "called", state="dismissed", by=coordinator, now=NOW)
    assert report.acknowledged_at is None


def test_review_happens_once_and_the_second_is_told_who_was_first(dosed):
    report = _reports(dosed, nausea="severe")["nausea"]
    first, second = make_staff(Role.COORDINATOR, "first@site.test"), make_staff(Role.COORDINATOR, "second@site.test")
    review(report, "called: resolved", state=ReviewState.AE_RECORDED, by=first, now=NOW)
    assert _last_action(report.period.participant).field == "nausea (severe)"
    with pytest.raises(Refused, match="already acknowledged by first@site.test") as refusal:
        review(report, "me too", by=second, now=NOW)
    assert refusal.value.status == 409
    assert (report.review_state, report.acknowledged_by_id) == (ReviewState.AE_RECORDED, first.id)


def test_a_review_after_the_deadline_says_so_and_one_at_the_deadline_does_not(dosed):
    reports = _reports(dosed, nausea="severe", headache="severe")
    coordinator = make_staff(Role.COORDINATOR)
    due = reports["nausea"].review_due_at
    review(reports["nausea"], "on time", by=coordinator, now=due)
    assert "after its review deadline" not in _last_action(dosed[0]).new_value
    review(reports["headache"], "late", by=coordinator, now=due + timedelta(seconds=1))
    assert "after its review deadline" in _last_action(dosed[0]).new_value


def test_review_due_only_for_severe_or_alerting_reports(dosed):
    participant, _ = dosed
    protocol = protocol_of(participant.study.current_protocol_version)
    deadline = protocol.severe_review_within.nominal
    severe = SideEffectReport(severity="severe", alert=False)
    alerting = SideEffectReport(severity=None, alert=True)
    mild = SideEffectReport(severity="mild", alert=False)
    assert review_due(severe, protocol, NOW) == NOW + deadline
    assert review_due(alerting, protocol, NOW) == NOW + deadline
    assert review_due(mild, protocol, NOW) is None


def test_only_the_unblinded_and_emergency_roles_break_a_code_with_a_sentence_of_reason(dosed):
    participant, _ = dosed
    for role in (Role.COORDINATOR, Role.ANALYST, Role.ADMIN):
        with pytest.raises(Refused, match="Only the unblinded or emergency role") as refusal:
            break_code(participant, "anaphylaxis in the clinic", by=make_staff(role), now=NOW)
        assert refusal.value.status == 403
    emergency = make_staff(Role.EMERGENCY)
    for reason in ("", "too short", "         x"):
        with pytest.raises(Refused, match="Say why the code must be broken"):
            break_code(participant, reason, by=emergency, now=NOW)
    assert participant.code_broken_at is None
    revealed = break_code(participant, "anaphylaxi", by=emergency, now=NOW)  # ten characters
    assert [period for period, _code, _drug in revealed] == [1, 2]
    assert participant.code_broken_at == NOW and participant.code_broken_by_id == emergency.id


def test_a_first_code_break_tells_the_site_once_and_a_second_look_only_is_audited(app, dosed):
    participant, _ = dosed
    app.config["SITE_ALERTS"] = {"*": ["oncall@site.test"]}
    emergency = make_staff(Role.EMERGENCY)
    break_code(participant, "anaphylaxis in the clinic", by=emergency, now=NOW)
    assert _last_action(participant).new_value == "first break"
    break_code(participant, "checking the drug again", by=emergency, now=NOW + timedelta(minutes=5))
    assert _last_action(participant).new_value == "viewed again after an earlier break"
    messages = db.session.scalars(select(StaffMessage).where(StaffMessage.kind == StaffMessageKind.CODE_BREAK)).all()
    assert [m.recipient for m in messages] == ["oncall@site.test"]
    assert participant.code_broken_at == NOW  # the first break's time stays


def test_a_broken_code_is_shown_only_to_who_broke_it_or_the_unblinded_role(dosed):
    participant, _ = dosed
    breaker, other = make_staff(Role.EMERGENCY, "er1@site.test"), make_staff(Role.EMERGENCY, "er2@site.test")
    with pytest.raises(Refused, match="has not been broken by you"):
        broken_code(participant, breaker)  # not broken yet
    break_code(participant, "anaphylaxis in the clinic", by=breaker, now=NOW)
    assert broken_code(participant, breaker) == broken_code(participant, make_staff(Role.UNBLINDED))
    for reader in (other, make_staff(Role.COORDINATOR)):
        with pytest.raises(Refused, match="has not been broken by you") as refusal:
            broken_code(participant, reader)
        assert refusal.value.status == 403


def test_site_recipients_by_site_then_the_fallback_without_blanks(app, study):
    app.config["SITE_ALERTS"] = {"NIH-CC": [" pi@site.test ", ""], "*": ["oncall@site.test"]}
    assert site_recipients("NIH-CC") == ["pi@site.test"]
    assert site_recipients("ELSEWHERE") == ["oncall@site.test"]
    app.config["SITE_ALERTS"] = {}
    assert site_recipients("NIH-CC") == []


def test_only_an_alerting_report_sends_a_message_and_only_once(app, dosed):
    participant, _ = dosed
    app.config["SITE_ALERTS"] = {"*": ["oncall@site.test", "pi@site.test"]}
    reports = _reports(dosed, headache="mild", nausea="severe")
    submission = reports["nausea"].submission
    count = lambda: db.session.scalar(select(func.count(StaffMessage.id)))  # noqa: E731
    assert count() == 2  # the submit sent the severe one: each on-call address once
    alert_severe_answers(submission, [reports["headache"]], participant, timepoint_label="40 min", period=1, now=NOW)
    alert_severe_answers(submission, [reports["nausea"]], participant, timepoint_label="40 min", period=1, now=NOW)
    assert count() == 2
    body = db.session.scalars(select(StaffMessage.body)).first()
    assert "nausea: severe" in body and "headache" not in body


def _task(participant) -> FollowUpTask:
    task = FollowUpTask(
        participant_id=participant.id, rule="missed_timepoint", key="test:1", reason="D3 missed", due_at=NOW
    )
    db.session.add(task)
    db.session.flush()
    return task


def test_closing_a_follow_up_needs_an_outcome_and_a_note_and_happens_once(dosed):
    participant, _ = dosed
    task, coordinator = _task(participant), make_staff(Role.COORDINATOR)
    with pytest.raises(Refused, match="Choose how the call went"):
        close_task(task, "nonsense", "called", by=coordinator, now=NOW)
    with pytest.raises(Refused, match="Choose how the call went"):  # not a call's outcome
        close_task(task, FollowUpOutcome.RESOLVED_BY_DATA, "called", by=coordinator, now=NOW)
    for note in ("", "  "):
        with pytest.raises(Refused, match="A note is required"):
            close_task(task, FollowUpOutcome.REACHED, note, by=coordinator, now=NOW)
    close_task(task, FollowUpOutcome.REACHED, "will do D7", by=coordinator, now=NOW)
    assert (task.outcome, task.closed_by_id) == (FollowUpOutcome.REACHED, coordinator.id)
    with pytest.raises(Refused, match="already closed") as refusal:
        close_task(task, FollowUpOutcome.REACHED, "again", by=coordinator, now=NOW)
    assert refusal.value.status == 409


# --- entries: the window, staff entries on a participant's behalf, offline entries, answers ---

from diary.entries.corrections import correct_value  # noqa: E402
from diary.entries.recording import (  # noqa: E402
    OUTSIDE_WINDOW,
    InvalidAnswers,
    collection_refusal,
    entry_stamp,
    offline_refusal,
    stamp_refusal,
    validate_answers,
    window_refusal,
)
from diary.models import Submission  # noqa: E402
from diary.protocol.schedule import accepting_entries  # noqa: E402
from diary.vocabulary import AssessmentState, Source  # noqa: E402

SECRET = "test-secret"


def _submissions() -> int:
    return db.session.scalar(select(func.count(Submission.id)))


def test_window_refusal_at_each_edge(dosed):
    participant, _ = dosed
    entry = assessment_of(participant, 1, "M80")
    assert "not open yet" in window_refusal(entry, entry.window_open - timedelta(seconds=1))
    assert "It opens 10:05" in window_refusal(entry, entry.window_open - timedelta(seconds=1), opens="10:05")
    assert window_refusal(entry, entry.window_open) is None
    assert window_refusal(entry, entry.late_close - timedelta(seconds=1)) is None
    assert "time for this entry has passed" in window_refusal(entry, entry.late_close)
    entry.not_applicable = True
    assert "no longer needed" in window_refusal(entry, entry.window_open)


def test_window_refusal_for_an_entry_waiting_for_its_infusion(enrolled):
    participant, _ = enrolled
    plan_dose(participant, 1, NOW + timedelta(hours=1), actor="test", now=NOW)
    after = assessment_of(participant, 1, "M40")
    assert "opens after your infusion has started" in window_refusal(after, after.window_open)
    baseline = assessment_of(participant, 1, "BL")
    assert window_refusal(baseline, NOW) is None  # the pre-dose entry opens with the plan


def test_record_submission_refuses_and_stores_nothing(dosed):
    participant, _ = dosed
    protocol = protocol_of(participant.study.current_protocol_version)
    entry = assessment_of(participant, 1, "M80")
    with pytest.raises(Refused, match="not open yet") as refusal:
        record_submission(
            entry, answers_for(protocol, "M80"), now=entry.window_open - timedelta(minutes=1), actor="test"
        )
    assert refusal.value.status == 409
    with pytest.raises(InvalidAnswers):
        record_submission(
            entry, answers_for(protocol, "M80", **{"fatigue_vas.fatigue": "101"}), now=entry.window_open, actor="test"
        )
    entry.not_applicable = True
    with pytest.raises(Refused, match="no longer needed"):
        record_submission(entry, answers_for(protocol, "M80"), now=entry.window_open, actor="test")
    assert _submissions() == 0


def test_a_stored_entry_is_refused_again_but_its_own_retry_returns_it(dosed):
    participant, _ = dosed
    protocol = protocol_of(participant.study.current_protocol_version)
    entry = assessment_of(participant, 1, "M80")
    stored, created = record_submission(
        entry, answers_for(protocol, "M80"), now=entry.window_open, actor="test", idempotency_key="k-1"
    )
    assert created
    again, created = record_submission(
        entry, answers_for(protocol, "M80"), now=entry.window_open, actor="test", idempotency_key="k-1"
    )
    assert (again.id, created) == (stored.id, False)
    for key in ("k-2", None):
        with pytest.raises(Refused, match="already been saved") as refusal:
            record_submission(
                entry, answers_for(protocol, "M80"), now=entry.window_open, actor="test", idempotency_key=key
            )
        assert refusal.value.status == 409
    assert _submissions() == 1


def test_staff_entries_need_a_known_source_a_reason_and_a_collection_time_in_the_window(dosed):
    participant, _ = dosed
    protocol = protocol_of(participant.study.current_protocol_version)
    entry = assessment_of(participant, 1, "M80")
    inside = entry.window_open + timedelta(minutes=1)
    common = dict(now=NOW + timedelta(hours=3), actor="test", collected_at=inside)
    with pytest.raises(Refused, match="Unknown source 'fax'"):
        record_submission(entry, answers_for(protocol, "M80"), source="fax", reason="paper", **common)
    for reason in (None, "  "):
        with pytest.raises(Refused, match="needs a reason"):
            record_submission(entry, answers_for(protocol, "M80"), source=Source.PAPER, reason=reason, **common)
    with pytest.raises(Refused, match="outside this entry's window") as refusal:
        record_submission(
            entry,
            answers_for(protocol, "M80"),
            source=Source.PAPER,
            reason="paper",
            now=NOW + timedelta(hours=3),
            actor="test",
            collected_at=entry.late_close,
        )
    assert refusal.value.status == 409
    with pytest.raises(Refused, match="Give the date and time") as refusal:
        record_submission(
            entry,
            answers_for(protocol, "M80"),
            source=Source.PAPER,
            reason="paper",
            now=NOW + timedelta(hours=3),
            actor="test",
        )
    assert refusal.value.status == 422
    assert _submissions() == 0
    stored, _ = record_submission(entry, answers_for(protocol, "M80"), source=Source.PAPER, reason=" paper ", **common)
    assert (stored.collected_at, stored.reason, stored.submission_mode) == (inside, "paper", "staff")


def test_collection_refusal_at_each_edge(enrolled):
    participant, _ = enrolled
    plan_dose(participant, 1, NOW + timedelta(hours=1), actor="test", now=NOW)
    waiting = assessment_of(participant, 1, "M40")
    later = NOW + timedelta(days=2)
    assert "Record the infusion start" in collection_refusal(waiting, waiting.window_open, later)
    baseline = assessment_of(participant, 1, "BL")
    assert "Give the date and time" in collection_refusal(baseline, None, NOW)
    assert "in the future" in collection_refusal(baseline, NOW + timedelta(seconds=1), NOW)
    assert collection_refusal(baseline, NOW, NOW) is None
    assert collection_refusal(baseline, baseline.window_open, later) is None
    assert collection_refusal(baseline, baseline.window_open - timedelta(seconds=1), later) == OUTSIDE_WINDOW
    # Until the infusion is recorded, BL's window closes at a start nobody knows yet.
    assert collection_refusal(baseline, baseline.late_close, later) is None
    record_dose(participant, 1, NOW + timedelta(hours=1, minutes=30), actor="test", now=later)
    assert collection_refusal(baseline, baseline.late_close, later) == OUTSIDE_WINDOW
    assert collection_refusal(baseline, baseline.late_close - timedelta(seconds=1), later) is None


def test_a_baseline_waiting_for_its_infusion_takes_entries_past_the_planned_start(enrolled):
    """window_refusal, stamp_refusal and accepting_entries keep BL open until the start is recorded."""
    participant, _ = enrolled
    planned = NOW + timedelta(hours=1)
    plan_dose(participant, 1, planned, actor="test", now=NOW)
    baseline = assessment_of(participant, 1, "BL")
    late = planned + timedelta(minutes=10)
    assert window_refusal(baseline, late) is None
    stamp = entry_stamp(baseline, participant.id, late, SECRET)
    assert stamp_refusal(baseline, participant.id, stamp, late, SECRET) is None
    assert accepting_entries(window_open=baseline.window_open, late_close=baseline.late_close, now=late) is False
    assert accepting_entries(
        window_open=baseline.window_open, late_close=baseline.late_close, now=late, until_the_infusion=True
    )
    assert not accepting_entries(
        window_open=baseline.window_open,
        late_close=baseline.late_close,
        now=baseline.window_open - timedelta(seconds=1),
        until_the_infusion=True,
    )
    record_dose(participant, 1, planned + timedelta(minutes=30), actor="test", now=planned + timedelta(hours=1))
    assert window_refusal(baseline, late) is None  # before the actual start
    assert "has passed" in window_refusal(baseline, planned + timedelta(minutes=30))
    assert "not open" in stamp_refusal(
        baseline,
        participant.id,
        entry_stamp(baseline, participant.id, planned + timedelta(minutes=31), SECRET),
        planned + timedelta(minutes=31),
        SECRET,
    )


def test_stamp_refusal_takes_only_this_entrys_form_served_while_it_was_open(dosed):
    participant, _ = dosed
    entry, other = assessment_of(participant, 1, "M80"), assessment_of(participant, 1, "M120")
    served = entry.window_open + timedelta(minutes=1)
    stamp = entry_stamp(entry, participant.id, served, SECRET)
    assert stamp_refusal(entry, participant.id, stamp, served, SECRET) is None
    assert stamp_refusal(entry, participant.id, stamp, served + timedelta(minutes=5), SECRET) is None
    for refused in (
        stamp_refusal(entry, participant.id, stamp, served, "another secret"),
        stamp_refusal(entry, participant.id, None, served, SECRET),
        stamp_refusal(other, participant.id, stamp, served, SECRET),
        stamp_refusal(entry, participant.id + 1, stamp, served, SECRET),
    ):
        assert "not made on a form the diary gave for it" in refused
    assert "before the form was opened" in stamp_refusal(
        entry, participant.id, stamp, served - timedelta(seconds=1), SECRET
    )
    for edge in (entry.window_open, entry.late_close):
        assert (
            stamp_refusal(entry, participant.id, entry_stamp(entry, participant.id, edge, SECRET), edge, SECRET) is None
        )
    for outside in (entry.window_open - timedelta(seconds=1), entry.late_close + timedelta(seconds=1)):
        early = entry_stamp(entry, participant.id, outside, SECRET)
        assert "opened when the entry was not open" in stamp_refusal(entry, participant.id, early, outside, SECRET)


def test_offline_refusal_checks_the_clock_the_grace_and_the_window(dosed):
    participant, _ = dosed
    entry = assessment_of(participant, 1, "M80")
    made = entry.window_open + timedelta(minutes=5)
    tolerance, grace = timedelta(minutes=10), timedelta(hours=24)

    def judge(made_at, device_now, now):
        return offline_refusal(
            entry, made_at=made_at, device_now=device_now, now=now, grace=grace, clock_tolerance=tolerance
        )

    later = made + timedelta(hours=2)
    assert judge(made, later, later) is None
    # The phone's clock 10 minutes slow is corrected; 11 minutes is refused.
    assert judge(made - tolerance, later - tolerance, later) is None
    assert "clock is 11 minutes away" in judge(made, later - timedelta(minutes=11), later)
    assert "clock is 11 minutes away" in judge(made, later + timedelta(minutes=11), later)
    assert "in the future" in judge(later + timedelta(seconds=1), later, later)
    assert judge(made, made + grace, made + grace) is None
    assert "more than 24 hours" in judge(made, made + grace + timedelta(seconds=1), made + grace + timedelta(seconds=1))
    assert "not open yet" in judge(entry.window_open - timedelta(seconds=1), later, later)


def test_validate_answers_refuses_each_kind_of_bad_answer(study):
    protocol = protocol_of(study.current_protocol_version)
    good = answers_for(protocol, "D1")
    assert validate_answers(protocol, "D1", good).errors == {}

    def errors(**changed):
        return validate_answers(protocol, "D1", {**good, **changed}).errors

    vas = "fatigue_vas.fatigue"
    assert errors(**{f"{vas}.touched": ""}) == {vas: "Please move the slider to answer."}
    for value in ("0", "100"):
        assert errors(**{vas: value}) == {}
    for value in ("-1", "101", "4.5", "forty", " "):
        assert vas in errors(**{vas: value})
    assert errors(**{"energy_nrs.energy": "11"}) == {"energy_nrs.energy": "Please give a whole number from 0 to 10."}
    assert errors(**{"energy_nrs.energy": ""}) == {"energy_nrs.energy": "Please answer this question."}
    assert errors(**{"blinding_guess.guess": "placebo"}) == {"blinding_guess.guess": "Please pick one of the choices."}
    assert "nausea" in errors(**{"side_effects.symptoms.nausea": ""})["side_effects.symptoms.nausea"]
    assert "side_effects.symptoms.nausea" in errors(**{"side_effects.symptoms.nausea": "awful"})
    assert errors(**{"side_effects.other": "x" * 500}) == {}
    assert "500 characters" in errors(**{"side_effects.other": "x" * 501})["side_effects.other"]
    assert errors(**{"side_effects.other": ""}) == {}  # optional
    severe = validate_answers(protocol, "D1", {**good, "side_effects.symptoms.nausea": "severe"})
    assert len(severe.alerts) == 1 and "severe" in severe.alerts[0]
    assert severe.values[("side_effects", "symptoms.nausea")] == "severe"
    assert validate_answers(protocol, "D1", good).alerts == []
    mild = validate_answers(protocol, "D1", {**good, "side_effects.symptoms.nausea": "mild"})
    assert mild.alerts == [] and mild.values[("side_effects", "symptoms.nausea")] == "mild"


def test_correct_value_refuses_a_participants_own_entry(dosed):
    """A value the participant entered changes only through a change request (403 here)."""
    participant, _ = dosed
    protocol = protocol_of(participant.study.current_protocol_version)
    entry = assessment_of(participant, 1, "M80")
    submission, _ = record_submission(entry, answers_for(protocol, "M80", vas=40), now=entry.window_open, actor="test")
    with pytest.raises(Refused, match="never edited in place") as refusal:
        correct_value(submission, "fatigue_vas.fatigue", "41", reason="phone call", actor="test", now=NOW)
    assert refusal.value.status == 403
    assert {v.value for v in submission.values if v.item == "fatigue"} == {"40"}


def test_correct_value_refuses_without_reason_unknown_items_bad_or_same_values(dosed):
    participant, _ = dosed
    protocol = protocol_of(participant.study.current_protocol_version)
    entry = assessment_of(participant, 1, "M80")
    submission, _ = record_submission(  # entered by the study team from the paper sheet
        entry,
        answers_for(protocol, "M80", vas=40, **{"side_effects.symptoms.nausea": "mild"}),
        now=NOW + timedelta(days=1),
        actor="test",
        source=Source.PAPER,
        reason="paper sheet",
        collected_at=entry.window_open,
    )
    vas, nausea = "fatigue_vas.fatigue", "side_effects.symptoms.nausea"
    common = dict(actor="test", now=NOW + timedelta(days=1))
    for reason in ("", "  "):
        with pytest.raises(Refused, match="needs a reason"):
            correct_value(submission, vas, "41", reason=reason, **common)
    with pytest.raises(Refused, match="cannot be corrected here"):
        correct_value(submission, "energy_nrs.energy", "3", reason="phone call", **common)
    with pytest.raises(Refused, match="whole number from 0 to 100"):
        correct_value(submission, vas, "101", reason="phone call", **common)
    with pytest.raises(Refused, match="same as the stored one"):
        correct_value(submission, vas, "40", reason="phone call", **common)
    with pytest.raises(Refused, match="Give one of"):
        correct_value(submission, nausea, "awful", reason="phone call", **common)
    with pytest.raises(Refused, match="kept as reported"):
        correct_value(submission, nausea, "none", reason="phone call", **common)
    with pytest.raises(Refused, match="Give the new value"):
        correct_value(submission, "side_effects.other", "", reason="phone call", **common)
    correct_value(submission, vas, "41", reason=" phone call ", **common)
    event = _last_action(participant)
    assert (event.action, event.old_value, event.new_value, event.reason) == ("correct_value", "40", "41", "phone call")
    correct_value(submission, nausea, "severe", reason="phone call", **common)
    report = db.session.scalars(select(SideEffectReport).where(SideEffectReport.term == "nausea")).one()
    assert (report.severity, report.alert) == ("severe", True) and report.review_due_at is not None


# --- endpoints: percentage change, the area under the curve, responders -----------------------

from types import SimpleNamespace  # noqa: E402

from diary.exports import endpoints as endpoint_rules  # noqa: E402
from diary.exports.endpoints import auc_pct_change, auc_points_used, pct_change  # noqa: E402
from diary.protocol import load_protocol, shipped_protocol_path  # noqa: E402

SHIPPED_PLAN = load_protocol(shipped_protocol_path("ketamine-fatigue-crossover")).endpoints


def compute_endpoints(values, curve):
    """The shipped protocol's endpoints of one period, as attributes (``pct_change_d3``)."""
    return SimpleNamespace(**endpoint_rules.compute_endpoints(SHIPPED_PLAN, values, curve))


def test_pct_change_is_undefined_without_a_score_or_a_non_zero_baseline():
    assert pct_change(30, 40) == -25.0
    assert pct_change(50, 40) == 25.0
    assert pct_change(None, 40) is None and pct_change(30, None) is None and pct_change(30, 0) is None


def test_auc_by_the_trapezoid_rule_carried_and_cut_at_the_end():
    # From (0, 0) to (24 h, -10 %): a triangle, then -10 % carried to hour 48.
    assert auc_pct_change([(24.0, -10.0)], end=48.0) == 24 * -10 / 2 + 24 * -10
    # A point after the end is interpolated to the end: (0,0)-(20,-20) cut at hour 10 gives -10 at 10.
    assert auc_pct_change([(20.0, -20.0)], end=10.0) == 10 * -10 / 2
    # Points exactly at the end count whole, later ones are ignored past the first one.
    assert auc_pct_change([(10.0, -20.0), (30.0, 40.0)], end=10.0) == 10 * -20 / 2
    # Points at or before hour 0 are not part of the curve.
    assert auc_pct_change([(0.0, 99.0), (-1.0, 50.0), (10.0, 0.0)], end=10.0) == 0.0
    assert auc_pct_change([], end=10.0) == 0.0


def test_auc_points_used_counts_the_points_inside_and_the_first_one_after():
    assert auc_points_used([(0.0, 5.0), (10.0, 1.0), (20.0, 2.0)], end=20.0) == 2
    assert auc_points_used([(10.0, 1.0), (20.0, 2.0), (30.0, 3.0), (40.0, 4.0)], end=20.0) == 3
    assert auc_points_used([(30.0, 3.0)], end=20.0) == 1
    assert auc_points_used([], end=20.0) == 0


def test_compute_endpoints_needs_a_baseline_and_d7_for_the_area():
    full = compute_endpoints(
        {"BL": (-1.0, 50), "D1": (24.0, 45), "D3": (72.0, 40), "D7": (168.0, 45)}, ["D1", "D3", "D7"]
    )
    assert (full.pct_change_d1, full.pct_change_d3, full.pct_change_d7) == (-10.0, -20.0, -10.0)
    assert full.responder_d3 is True and full.auc_n_points == 3
    assert full.auc_pct_change_0_7d == round(24 * -10 / 2 + 48 * (-10 - 20) / 2 + 96 * (-20 - 10) / 2, 1)
    assert (full.hours_from_dose_d1, full.hours_from_dose_d3, full.hours_from_dose_d7) == (24.0, 72.0, 168.0)
    not_responding = compute_endpoints({"BL": (-1.0, 50), "D3": (72.0, 41)}, ["D3"])
    assert not_responding.responder_d3 is False and not_responding.auc_pct_change_0_7d is None
    no_d7 = compute_endpoints({"BL": (-1.0, 50), "D1": (24.0, 45), "D3": (72.0, 40)}, ["D1", "D3"])
    assert no_d7.auc_pct_change_0_7d is None and no_d7.auc_n_points is None
    no_baseline = compute_endpoints({"D1": (24.0, 45), "D3": (72.0, 40), "D7": (168.0, 45)}, ["D1", "D3", "D7"])
    assert (no_baseline.baseline_vas, no_baseline.pct_change_d3, no_baseline.responder_d3) == (None, None, None)
    assert no_baseline.vas_d3 == 40 and no_baseline.hours_from_dose_d7 == 168.0
    empty = compute_endpoints({}, [])
    assert empty.hours_from_dose_d1 is None and empty.vas_d1 is None


# --- The read model of assessments, and the edges the mutation run found untested -------------

from diary.dosing import assessments as read_model  # noqa: E402
from diary.entries import recording  # noqa: E402
from diary.entries.recording import device_facts  # noqa: E402


def test_load_filters_by_study_and_participants_and_reads_values_only_when_asked(dosed, study):
    participant, _ = dosed
    other, _ = enroll_other(study)
    protocol = protocol_of(participant.study.current_protocol_version)
    entry = assessment_of(participant, 1, "M80")
    record_submission(entry, answers_for(protocol, "M80", vas=33), now=entry.window_open, actor="test")
    db.session.commit()
    every = read_model.load(NOW, study_id=study.id)
    assert {row.participant_id for row in every} == {participant.id, other.id}
    mine = read_model.load(NOW, participant_ids=[participant.id], with_values=True)
    assert {row.participant_id for row in mine} == {participant.id}
    assert next(row for row in mine if row.id == entry.id).values[("fatigue_vas", "fatigue")] == "33"
    bare = read_model.load(NOW, participant_ids=[participant.id])
    assert next(row for row in bare if row.id == entry.id).values == {}
    assert read_model.load(NOW, participant_ids=[]) == []


def enroll_other(study):
    from diary.participants.enrolment import enroll

    other = enroll(
        study, site="NIH-CC", timezone="UTC", sequence="BA", actor="test", now=NOW - timedelta(days=5), code="P-OTHER9"
    )
    record_dose(other[0], 1, NOW - timedelta(days=1), actor="test", now=NOW)
    return other


def test_is_late_only_for_an_open_entry_from_its_windows_close():
    from types import SimpleNamespace

    row = SimpleNamespace(window_close=NOW, target=NOW - timedelta(hours=1), dose_start=NOW, planned_start=None)
    assert read_model.is_late(row, AssessmentState.OPEN, NOW) is True
    assert read_model.is_late(row, AssessmentState.OPEN, NOW - timedelta(seconds=1)) is False
    assert read_model.is_late(row, AssessmentState.MISSED, NOW + timedelta(hours=1)) is False
    # A baseline waiting for its planned infusion is open past its close, and not late.
    waiting = SimpleNamespace(**{**vars(row), "dose_start": None, "planned_start": NOW})
    assert read_model.is_late(waiting, AssessmentState.OPEN, NOW + timedelta(hours=1)) is False


def test_a_staff_entry_for_an_entry_no_longer_needed_is_refused(dosed):
    participant, _ = dosed
    protocol = protocol_of(participant.study.current_protocol_version)
    entry = assessment_of(participant, 1, "M80")
    entry.not_applicable = True
    with pytest.raises(Refused, match="no longer needed") as refusal:
        record_submission(
            entry,
            answers_for(protocol, "M80"),
            now=NOW + timedelta(hours=3),
            actor="test",
            source=Source.PAPER,
            reason="paper",
            collected_at=entry.window_open,
        )
    assert refusal.value.status == 409


def test_a_staff_entry_is_audited_as_a_proxy_entry_with_when_it_was_given(dosed):
    participant, _ = dosed
    protocol = protocol_of(participant.study.current_protocol_version)
    entry = assessment_of(participant, 1, "M80")
    stored, _ = record_submission(
        entry,
        answers_for(protocol, "M80"),
        now=NOW + timedelta(hours=3),
        actor="test",
        source=Source.PAPER,
        reason="paper",
        collected_at=entry.window_open,
        device_time="x" * 100,
    )
    event = _last_action(participant)
    assert event.action == "proxy_entry" and f"; collected {entry.window_open.isoformat()}" in event.new_value
    assert stored.device_time == "x" * 64


def test_a_participants_own_entry_is_audited_as_submit_without_a_collection_note(dosed):
    participant, _ = dosed
    protocol = protocol_of(participant.study.current_protocol_version)
    entry = assessment_of(participant, 1, "M80")
    stored, _ = record_submission(
        entry, answers_for(protocol, "M80"), now=entry.window_open, actor="test", device_time=""
    )
    event = _last_action(participant)
    assert event.action == "submit" and "collected" not in event.new_value and stored.device_time is None


def test_a_submission_row_missing_a_column_is_refused_before_anything_is_stored(dosed, monkeypatch):
    participant, _ = dosed
    protocol = protocol_of(participant.study.current_protocol_version)
    entry = assessment_of(participant, 1, "M80")
    monkeypatch.setattr(recording, "SUBMISSION_COLUMNS", (*recording.SUBMISSION_COLUMNS, "a_new_column"))
    with pytest.raises(RuntimeError, match="a_new_column"):
        record_submission(entry, answers_for(protocol, "M80"), now=entry.window_open, actor="test")
    assert _submissions() == 0


def _stored_elsewhere(entry, key):
    """A submission for ``entry`` written by another connection after ``entry`` was read (a
    double tap that raced this request): the session still believes it has none."""
    from sqlalchemy import insert

    session = db.session()
    assert entry.submission is None and entry.period.participant  # read (and cached) now
    session.expire_on_commit = False
    try:
        session.commit()  # ends the read, keeping what was read
    finally:
        session.expire_on_commit = True
    with db.engine.begin() as other:
        other.execute(
            insert(Submission).values(
                assessment_id=entry.id,
                submitted_at=NOW,
                collected_at=NOW,
                source=Source.PARTICIPANT,
                idempotency_key=key,
                alert=False,
                submission_mode="online",
            )
        )


@pytest.mark.parametrize("backend", ["sqlite"], indirect=False)
def test_a_submit_that_lost_the_race_is_told_or_given_the_winners_entry(dosed, backend):
    participant, _ = dosed
    protocol = protocol_of(participant.study.current_protocol_version)
    db.session.commit()
    entry = assessment_of(participant, 1, "M80")
    _stored_elsewhere(entry, "key-1")
    earlier, created = record_submission(
        entry, answers_for(protocol, "M80"), now=entry.window_open, actor="test", idempotency_key="key-1"
    )
    assert created is False and earlier.assessment_id == entry.id
    db.session.commit()
    other = assessment_of(participant, 1, "M120")
    _stored_elsewhere(other, "key-2")
    with pytest.raises(Refused, match="already been saved") as refusal:
        record_submission(
            other, answers_for(protocol, "M120"), now=other.window_open, actor="test", idempotency_key="key-3"
        )
    assert refusal.value.status == 409
    db.session.commit()
    third = assessment_of(participant, 1, "M230")
    with pytest.raises(Refused, match="already used for another entry"):
        record_submission(
            third, answers_for(protocol, "M230"), now=third.window_open, actor="test", idempotency_key="key-1"
        )


def test_device_facts_read_json_keep_the_plausible_and_name_the_browser():
    agent = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/120.0.0.0 Mobile Safari/537.36"
    facts = device_facts(
        '{"viewport_width": 390.4, "viewport_height": 100, "device_pixel_ratio": 10.0, '
        '"zoom": 0.05, "text_scale": true}',
        agent,
    )
    assert facts == {"viewport_width": 390, "viewport_height": 100, "device_pixel_ratio": 10.0, "browser": "Chrome 120"}
    assert device_facts("x" * 600, None) == {}
    assert device_facts("{not json", "") == {}
    assert device_facts({"viewport_width": float("nan"), "zoom": 10.0}, "curl/8") == {"zoom": 10.0}
    assert device_facts(["not", "a", "mapping"], "Mozilla/5.0 Firefox/121.0") == {"browser": "Firefox 121"}


def test_offline_refusal_takes_an_entry_made_exactly_now(dosed):
    participant, _ = dosed
    entry = assessment_of(participant, 1, "M80")
    now = entry.window_open + timedelta(minutes=5)
    assert (
        offline_refusal(
            entry,
            made_at=now,
            device_now=now,
            now=now,
            grace=timedelta(hours=24),
            clock_tolerance=timedelta(minutes=10),
        )
        is None
    )


# --- Follow-up tasks: created at their edges, resolved by data --------------------------------

from datetime import UTC, datetime  # noqa: E402

from diary.models import AuditEvent as _Event  # noqa: E402
from diary.safety.follow_up import create_tasks, resolve_tasks  # noqa: E402

DOSE = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def _dosed_at(study, code, dose=DOSE, status=None):
    from diary.participants.enrolment import enroll

    participant, _ = enroll(
        study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=dose - timedelta(days=2), code=code
    )
    record_dose(participant, 1, dose, actor="t", now=dose + timedelta(minutes=5))
    db.session.commit()
    return participant


def _tasks(participant, rule=None):
    query = select(FollowUpTask).where(FollowUpTask.participant_id == participant.id)
    if rule:
        query = query.where(FollowUpTask.rule == rule)
    return db.session.scalars(query.order_by(FollowUpTask.id)).all()


def test_a_silent_task_fires_exactly_48_hours_after_the_last_entry_for_what_was_missed_since(study):
    protocol = protocol_of(study.current_protocol_version)
    participant = _dosed_at(study, "P-SIL001")
    m230 = assessment_of(participant, 1, "M230")
    last = m230.window_open + timedelta(minutes=5)
    record_submission(m230, answers_for(protocol, "M230"), now=last, actor="t")
    db.session.commit()
    assert create_tasks(study, last + timedelta(hours=48) - timedelta(seconds=1)) == 0 or not _tasks(
        participant, "silent"
    )
    create_tasks(study, last + timedelta(hours=48))
    assert len(_tasks(participant, "silent")) == 1


def test_a_severe_report_task_fires_exactly_at_its_hour_and_only_for_severe_or_alerting_new_reports(study):
    protocol = protocol_of(study.current_protocol_version)
    participant = _dosed_at(study, "P-SEV001")
    d1 = assessment_of(participant, 1, "D1")
    at = d1.window_open + timedelta(minutes=5)
    record_submission(
        d1,
        answers_for(
            protocol, "D1", **{"side_effects.symptoms.vomiting": "severe", "side_effects.symptoms.headache": "moderate"}
        ),
        now=at,
        actor="t",
    )
    db.session.commit()
    create_tasks(study, at + timedelta(hours=1))
    created = _tasks(participant, "severe_unreviewed")
    assert len(created) == 1 and "vomiting" in created[0].reason and "headache" not in created[0].reason


def test_resolve_tasks_closes_each_kind_by_its_own_data_and_nothing_else(study):
    protocol = protocol_of(study.current_protocol_version)
    coordinator = make_staff(Role.COORDINATOR)
    waiting = _dosed_at(study, "P-RES001")  # misses D3, stays silent: its tasks stay open
    back = _dosed_at(study, "P-RES002")  # misses D3, then the study team enters it from paper
    reviewed = _dosed_at(study, "P-RES003")  # a severe report, reviewed later
    gone = _dosed_at(study, "P-RES004")  # withdraws
    stopped = _dosed_at(study, "P-RES005")  # stops infusions: still followed up
    d1 = assessment_of(reviewed, 1, "D1")
    record_submission(
        d1, answers_for(protocol, "D1", **{"side_effects.symptoms.vomiting": "severe"}), now=d1.window_open, actor="t"
    )
    db.session.commit()
    late = assessment_of(waiting, 1, "D3").late_close + timedelta(minutes=1)
    create_tasks(study, late)
    db.session.commit()
    before = {p.code: {t.rule for t in _tasks(p)} for p in (waiting, back, reviewed, gone, stopped)}
    assert "missed_timepoint" in before["P-RES002"] and "severe_unreviewed" in before["P-RES003"]
    assert resolve_tasks(study, late) == 0  # nothing changed yet

    d3 = assessment_of(back, 1, "D3")
    stored, _ = record_submission(
        d3,
        answers_for(protocol, "D3"),
        now=late + timedelta(hours=1),
        actor="t",
        source=Source.PAPER,
        reason="paper diary",
        collected_at=d3.window_open,
    )
    report = db.session.scalars(select(SideEffectReport).where(SideEffectReport.severity == "severe")).one()
    review(report, "called: better", by=coordinator, now=late + timedelta(hours=2))
    withdraw(gone, actor="t", now=late + timedelta(hours=3), reason="moved away")
    from diary.participants.enrolment import discontinue

    discontinue(stopped, actor="t", now=late + timedelta(hours=3), reason="rash")
    db.session.commit()
    now = late + timedelta(hours=4)
    closed = resolve_tasks(study, now)
    db.session.commit()
    # The missed D3 that arrived, the run of misses it ended and the silence it broke, the reviewed
    # report's task, and every task of the one who left; a run keyed to an entry that never came
    # stays open.
    every = db.session.scalars(select(FollowUpTask)).all()
    assert closed == len([t for t in every if t.closed_at is not None])
    assert {t.rule for t in _tasks(back) if t.closed_at} == {"missed_timepoint", "missed_in_a_row", "silent"}
    assert [t.rule for t in _tasks(back) if t.closed_at is None] == ["missed_in_a_row"]  # the D1-D2 run
    arrived = _tasks(back, "missed_timepoint")[0]
    assert arrived.outcome == "resolved_by_data" and arrived.closed_at == stored.submitted_at
    assert "the missing entry arrived" in arrived.note
    seen = _tasks(reviewed, "severe_unreviewed")[0]
    assert seen.closed_at == late + timedelta(hours=2) and "the report was reviewed" in seen.note
    assert all(t.closed_at == now and "withdrew" in t.note for t in _tasks(gone))
    assert _tasks(waiting) and all(t.closed_at is None for t in _tasks(waiting))
    assert _tasks(stopped) and all(t.closed_at is None for t in _tasks(stopped))
    assert [t.closed_at for t in _tasks(reviewed) if t.rule != "severe_unreviewed"] == [None] * (
        len(_tasks(reviewed)) - 1
    )
    events = db.session.scalars(select(_Event).where(_Event.action == "resolve_follow_up")).all()
    assert len(events) == closed and {e.actor for e in events} == {"system"}
    assert resolve_tasks(study, now + timedelta(hours=1)) == 0  # closed once


def test_a_silent_task_resolves_only_with_an_entry_made_after_its_silence_began(study):
    protocol = protocol_of(study.current_protocol_version)
    participant = _dosed_at(study, "P-RES006")
    m230 = assessment_of(participant, 1, "M230")
    last = m230.window_open + timedelta(minutes=5)
    record_submission(m230, answers_for(protocol, "M230"), now=last, actor="t")
    db.session.commit()
    create_tasks(study, last + timedelta(hours=49))
    db.session.commit()
    silent_task = _tasks(participant, "silent")[0]
    assert resolve_tasks(study, last + timedelta(hours=50)) == 0
    d7 = assessment_of(participant, 1, "D7")
    record_submission(d7, answers_for(protocol, "D7"), now=d7.window_open, actor="t")
    db.session.commit()
    assert resolve_tasks(study, d7.window_open + timedelta(minutes=1)) >= 1
    db.session.refresh(silent_task)
    assert silent_task.closed_at is not None and "made an entry since" in silent_task.note


def test_resolve_tasks_skips_a_task_whose_key_names_no_record(study):
    participant = _dosed_at(study, "P-RES007")
    db.session.add(
        FollowUpTask(
            participant_id=participant.id, rule="missed_timepoint", key="missed_timepoint:x", reason="odd", due_at=DOSE
        )
    )
    db.session.add(
        FollowUpTask(participant_id=participant.id, rule="severe_unreviewed", key="broken", reason="odd", due_at=DOSE)
    )
    db.session.commit()
    assert resolve_tasks(study, DOSE + timedelta(days=1)) == 0


def test_silence_is_measured_from_each_participants_own_last_entry_and_counts_what_they_missed(study):
    from diary.safety.follow_up import count_tasks

    protocol = protocol_of(study.current_protocol_version)
    quiet, busy = _dosed_at(study, "P-QUIET1"), _dosed_at(study, "P-BUSY01")
    m230 = assessment_of(quiet, 1, "M230")
    record_submission(m230, answers_for(protocol, "M230"), now=m230.window_open, actor="t")
    for code in ("M230", "D1", "D2", "D3"):
        entry = assessment_of(busy, 1, code)
        record_submission(entry, answers_for(protocol, code), now=entry.window_open, actor="t")
    db.session.commit()
    d3 = assessment_of(quiet, 1, "D3")
    create_tasks(study, d3.late_close + timedelta(minutes=1))
    db.session.commit()
    silent_tasks = _tasks(quiet, "silent")
    assert len(silent_tasks) == 1 and silent_tasks[0].key.endswith(m230.window_open.isoformat())
    assert "3 missed since" in silent_tasks[0].reason  # D1, D2 and D3 closed since M230
    assert _tasks(busy, "silent") == []
    open_count = len(db.session.scalars(select(FollowUpTask).where(FollowUpTask.closed_at.is_(None))).all())
    assert count_tasks(study.id) == open_count > 0 and count_tasks(study.id, closed=True) == 0


def test_a_phone_cookie_holds_only_while_its_pin_sign_outs_and_link_are_unchanged():
    """``auth.phone_still_holds`` called directly: each change it checks ends the cookie."""
    from types import SimpleNamespace

    from diary.web.auth import phone_still_holds

    def phone(**changed):
        fields = dict(
            pin_hash="hashed",
            pin_generation=2,
            session_generation=1,
            link_revoked_at=None,
            link_token_hash="abcdef0123456789" + "f" * 48,
        )
        return SimpleNamespace(**{**fields, **changed})

    claims = {"p": 1, "g": 2, "s": 1, "l": "abcdef0123456789"}
    assert phone_still_holds(phone(), claims)
    assert not phone_still_holds(phone(pin_hash=None), claims)  # no PIN (reset)
    assert not phone_still_holds(phone(pin_generation=3), claims)  # a new PIN
    assert not phone_still_holds(phone(session_generation=2), claims)  # signed out everywhere
    assert not phone_still_holds(phone(link_revoked_at=NOW), claims)  # the link revoked
    assert not phone_still_holds(phone(link_token_hash="0" * 64), claims)  # the link reissued
    assert not phone_still_holds(phone(session_generation=None), claims)  # never signed out: 0, not 1
    assert phone_still_holds(phone(session_generation=None), {**claims, "s": 0})
