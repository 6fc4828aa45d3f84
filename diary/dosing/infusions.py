"""Dosing: planning an infusion ahead, and recording (or correcting) its actual start.

Both materialise the period's assessments: a plan against the planned start, so the baseline
(BL) opens before the infusion; the actual start re-anchors every assessment to the truth.
Windows in the database always follow the current anchor, and submitted entries are re-judged
against them (``state_at``): a corrected start can leave an entry ``out_of_window`` or a
baseline ``after_dose``, and the correction's audit event lists each change.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from ..errors import Refused
from ..extensions import db
from ..governance import audit
from ..governance.lock import refuse_if_locked
from ..models import Assessment, Participant, Period
from ..protocol.schedule import schedule_period
from ..study.trial import protocol_of
from ..vocabulary import AuditAction, ParticipantStatus
from .assessments import state_of_assessment


def refuse_without_infusions(protocol) -> None:
    """A protocol anchored to randomization has no infusion to plan, record or correct."""
    if not protocol.has_infusions:
        raise Refused(
            "This protocol has no infusions: its schedule counts from randomization (day 1 is the randomization date).",
            status=409,
        )


def start_at_randomization(participant: Participant, *, actor: str, now: datetime) -> Period:
    """A protocol without infusions: period 1's schedule counts from randomization (``now``, the
    enrolment): day 1 is the randomization date, so the anchor is that date's start on the
    participant's clock and every time point (its evening entry included) falls after it. The
    assessments exist from the start. Audited as the period's anchor."""
    version = participant.study.current_protocol_version
    period = participant.periods[0]
    tz = ZoneInfo(participant.timezone)
    day_one = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    period.dose_start = day_one.replace(tzinfo=tz, fold=0).astimezone(now.tzinfo)
    period.dose_recorded_at = now
    _materialise(period, participant, version, None)
    audit.record(
        actor=actor,
        action=AuditAction.RECORD_DOSE,
        entity="period",
        entity_id=period.id,
        participant_id=participant.id,
        field="period 1 dose_start",
        now=now,
        new=period.dose_start.isoformat(),
        reason=f"day 1 is the randomization date ({day_one:%Y-%m-%d}); the protocol has no infusions",
    )
    return period


def _checked_period(participant: Participant, period_number: int, protocol) -> tuple[Period, dict]:
    """The participant's periods, locked and read afresh for this transaction.

    Two coordinators recording the same infusion at once: on PostgreSQL the second waits on the
    row lock and then sees the first's start (so it is a correction and needs a reason); SQLite
    runs one writer at a time.
    """
    refuse_if_locked(participant.study)
    refuse_without_infusions(protocol)
    if participant.status != ParticipantStatus.ACTIVE:
        raise Refused(
            f"This participant has {'withdrawn' if participant.status == ParticipantStatus.WITHDRAWN else 'stopped their infusions'}; "
            "no infusion can be planned or recorded.",
            status=409,
        )
    locked = db.session.scalars(
        select(Period)
        .where(Period.participant_id == participant.id)
        .order_by(Period.number)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    periods = {period.number: period for period in locked}
    period = periods.get(period_number)
    if period is None:
        raise Refused(f"Infusion {period_number} does not exist; the protocol has {protocol.periods} infusions.")
    return period, periods


def _check_not_before_enrolment(participant: Participant, start: datetime) -> None:
    """An infusion before the participant's enrolment day (their clock) is a typing slip."""
    tz = ZoneInfo(participant.timezone)
    if start.astimezone(tz).date() < participant.enrolled_at.astimezone(tz).date():
        raise Refused(
            f"That is before {participant.code} was enrolled "
            f"({participant.enrolled_at.astimezone(tz):%Y-%m-%d}); please check the date."
        )


def _check_spacing(periods: dict, period_number: int, start: datetime, protocol, *, planning: bool) -> None:
    """Refuse a period out of order, or closer to its neighbours than the protocol allows."""
    min_gap = timedelta(days=protocol.min_days_between_doses)
    previous, following = periods.get(period_number - 1), periods.get(period_number + 1)
    if previous is not None:
        earlier = previous.anchor if planning else previous.dose_start
        if earlier is None:
            verb = "Plan or record" if planning else "Record"
            raise Refused(f"{verb} infusion {period_number - 1} before infusion {period_number}.")
        if start - earlier < min_gap:
            raise Refused(
                f"Infusion {period_number} must be at least {protocol.min_days_between_doses} "
                f"days after infusion {period_number - 1}."
            )
    later = following.dose_start if following is not None else None
    if later is not None and later - start < min_gap:
        raise Refused(
            f"Infusion {period_number} must be at least {protocol.min_days_between_doses} "
            f"days before infusion {period_number + 1}."
        )


def plan_dose(
    participant: Participant,
    period_number: int,
    planned_start: datetime,
    *,
    actor: str,
    now: datetime,
    reason: str | None = None,
) -> Period:
    """Plan a period's infusion ahead, so its pre-dose entries open and reminders follow.

    Refuses a time in the past, a period already dosed, and the order and spacing ``record_dose``
    refuses. Re-planning needs a reason.
    """
    if planned_start.tzinfo is None:
        raise ValueError("planned_start must be timezone-aware")
    version = participant.study.current_protocol_version
    protocol = protocol_of(version)
    period, periods = _checked_period(participant, period_number, protocol)
    if period.dose_start is not None:
        raise Refused(f"Infusion {period_number} has already been recorded; correct its start instead.", status=409)
    if planned_start <= now:
        raise Refused("A planned infusion must be in the future. Record an infusion that has begun instead.")
    replanning = period.planned_start is not None
    if replanning and not (reason and reason.strip()):
        raise Refused(f"Infusion {period_number} is already planned. Changing the plan needs a reason.")
    _check_spacing(periods, period_number, planned_start, protocol, planning=True)
    old = period.planned_start
    period.planned_start = planned_start
    _materialise(period, participant, version, _next_anchor(periods.get(period_number + 1)))
    audit.record(
        actor=actor,
        action=AuditAction.REPLAN_DOSE if replanning else AuditAction.PLAN_DOSE,
        entity="period",
        entity_id=period.id,
        participant_id=participant.id,
        field=f"period {period_number} planned_start",
        now=now,
        old=old.isoformat() if old else None,
        new=planned_start.isoformat(),
        reason=reason.strip() if reason else None,
    )
    return period


def record_dose(
    participant: Participant,
    period_number: int,
    dose_start: datetime,
    *,
    actor: str,
    now: datetime,
    reason: str | None = None,
) -> Period:
    """Record (or, with a reason, correct) a period's infusion start.

    Refuses a time in the future, a period out of order, and a period closer to its neighbours
    than the protocol allows. Every assessment of the period is re-anchored to the new start,
    and the previous period's windows that close at this dose; submitted entries are re-judged.
    """
    if dose_start.tzinfo is None:
        raise ValueError("dose_start must be timezone-aware")
    version = participant.study.current_protocol_version
    protocol = protocol_of(version)
    period, periods = _checked_period(participant, period_number, protocol)
    if dose_start > now:
        raise Refused("The infusion start cannot be in the future. Record it once it has begun.")
    correcting = period.dose_start is not None
    if correcting and not (reason and reason.strip()):
        raise Refused(f"Infusion {period_number} is already recorded. Correcting its time needs a reason.")
    _check_spacing(periods, period_number, dose_start, protocol, planning=False)
    _check_not_before_enrolment(participant, dose_start)

    old = period.dose_start
    before = _submitted_states(period, now)
    period.dose_start = dose_start
    period.dose_recorded_at = now
    previous = periods.get(period_number - 1)
    _materialise(period, participant, version, _next_anchor(periods.get(period_number + 1)))
    if previous is not None:
        _materialise(previous, participant, version, dose_start)
    changes = [
        f"{code} {old_state} -> {new_state}"
        for code, (old_state, new_state) in _state_changes(before, _submitted_states(period, now)).items()
    ]
    new = dose_start.isoformat()
    if changes:
        new += "; entries re-judged: " + ", ".join(changes)
    audit.record(
        actor=actor,
        action=AuditAction.CORRECT_DOSE if correcting else AuditAction.RECORD_DOSE,
        entity="period",
        entity_id=period.id,
        participant_id=participant.id,
        field=f"period {period_number} dose_start",
        now=now,
        old=old.isoformat() if old else None,
        new=new,
        reason=reason.strip() if reason else None,
    )
    return period


def _next_anchor(following: Period | None) -> datetime | None:
    """D14 closes at the next infusion: its actual start once recorded, else none yet."""
    return following.dose_start if following is not None else None


def _submitted_states(period: Period, now: datetime) -> dict[str, str]:
    return {
        assessment.timepoint: state_of_assessment(assessment, now)
        for assessment in period.assessments
        if assessment.submission is not None
    }


def _state_changes(before: dict[str, str], after: dict[str, str]) -> dict[str, tuple[str, str]]:
    return {code: (before.get(code), state) for code, state in after.items() if before.get(code) != state}


def _materialise(period: Period, participant: Participant, version, next_dose) -> None:
    """Create the period's assessments, or move every one of them to the period's anchor.

    Submitted entries move too: their window is the protocol's window around the current
    infusion time, and their state follows from when their answers were given.
    """
    protocol = protocol_of(version)
    windows = schedule_period(protocol, period.anchor, participant.timezone, next_dose)
    existing = {assessment.timepoint: assessment for assessment in period.assessments}
    for window in windows:
        assessment = existing.get(window.timepoint)
        if assessment is None:
            assessment = Assessment(
                period=period,
                timepoint=window.timepoint,
                protocol_version=version,
                not_applicable=participant.status != ParticipantStatus.ACTIVE,
            )
            db.session.add(assessment)
        assessment.target = window.target
        assessment.window_open = window.window_open
        assessment.window_close = window.window_close
        assessment.late_close = window.late_close
