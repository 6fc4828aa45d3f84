"""Dosing: recording an infusion start materialises that period's assessments."""
from __future__ import annotations

from datetime import datetime, timedelta

from . import audit
from .errors import Refused
from .extensions import db
from .models import Assessment, Participant, Period
from .protocol.schedule import schedule_period
from .study import protocol_of


def record_dose(participant: Participant, period_number: int, dose_start: datetime, *,
                actor: str, now: datetime, reason: str | None = None) -> Period:
    """Record (or, with a reason, correct) a period's infusion start.

    Refuses a time in the future, a period out of order, and a period closer to its neighbours
    than the protocol allows. A correction re-anchors the assessments not yet submitted, and the
    previous period's windows that close at this dose.
    """
    if dose_start.tzinfo is None:
        raise ValueError("dose_start must be timezone-aware")
    version = participant.study.current_protocol_version
    protocol = protocol_of(version)
    if participant.status != "active":
        raise Refused("This participant has withdrawn; no dose can be recorded.", status=409)
    periods = {period.number: period for period in participant.periods}
    period = periods.get(period_number)
    if period is None:
        raise Refused(f"Infusion {period_number} does not exist; the protocol has "
                      f"{protocol.periods} infusions.")
    if dose_start > now:
        raise Refused("The infusion start cannot be in the future. Record it once it has begun.")
    correcting = period.dose_start is not None
    if correcting and not (reason and reason.strip()):
        raise Refused(f"Infusion {period_number} is already recorded. Correcting its time needs a reason.")
    min_gap = timedelta(days=protocol.min_days_between_doses)
    previous, following = periods.get(period_number - 1), periods.get(period_number + 1)
    if previous is not None:
        if previous.dose_start is None:
            raise Refused(f"Record infusion {period_number - 1} before infusion {period_number}.")
        if dose_start - previous.dose_start < min_gap:
            raise Refused(f"Infusion {period_number} must be at least {protocol.min_days_between_doses} "
                          f"days after infusion {period_number - 1}.")
    if following is not None and following.dose_start is not None:
        if following.dose_start - dose_start < min_gap:
            raise Refused(f"Infusion {period_number} must be at least {protocol.min_days_between_doses} "
                          f"days before infusion {period_number + 1}.")

    old = period.dose_start
    period.dose_start = dose_start
    period.dose_recorded_at = now
    next_dose = following.dose_start if following is not None else None
    _materialise(period, participant, version, next_dose)
    if previous is not None:
        _materialise(previous, participant, version, dose_start)
    audit.record(actor=actor, action="correct_dose" if correcting else "record_dose",
                 entity="period", entity_id=period.id, participant_id=participant.id,
                 field=f"period {period_number} dose_start", now=now,
                 old=old.isoformat() if old else None, new=dose_start.isoformat(),
                 reason=reason.strip() if reason else None)
    return period


def _materialise(period: Period, participant: Participant, version, next_dose) -> None:
    """Create the period's assessments, or re-anchor the unsubmitted ones to its dose start."""
    protocol = protocol_of(version)
    windows = schedule_period(protocol, period.dose_start, participant.timezone, next_dose)
    existing = {assessment.timepoint: assessment for assessment in period.assessments}
    for window in windows:
        assessment = existing.get(window.timepoint)
        if assessment is None:
            assessment = Assessment(period=period, timepoint=window.timepoint,
                                    protocol_version=version,
                                    not_applicable=participant.status != "active")
            db.session.add(assessment)
        elif assessment.submission is not None:
            continue  # a submitted entry was judged against its window; it keeps it
        assessment.target = window.target
        assessment.window_open = window.window_open
        assessment.window_close = window.window_close
        assessment.late_close = window.late_close
