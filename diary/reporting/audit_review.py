"""Risk-based review of the audit trail and the data's metadata (ICH E6(R3) 4.2.3).

Each check is named, says what it looks for, and lists the cases it finds (participant, when,
what). A reviewer records a review of a check with a note (``record_review``); the export
carries the review log. The checks read; they change nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from ..errors import Refused
from ..extensions import db
from ..governance import audit
from ..models import (
    Assessment,
    AuditEvent,
    AuditReview,
    ItemValue,
    Participant,
    Period,
    StaffUser,
    Study,
    Submission,
)
from ..study.trial import protocol_of
from ..vocabulary import AuditAction, Role, Source, SubmissionMode

# Thresholds a reviewer can read on the page: what counts as unusual.
NIGHT = (0, 5)  # entries given between midnight and 5 am on the participant's clock
STAFF_SHARE, STAFF_MIN_ENTRIES = 0.3, 3  # more than 30 % of a participant's entries made by staff
OFFLINE_GAP = timedelta(hours=1)  # an offline entry arriving over an hour after it was made
BURST, BURST_SIZE = timedelta(minutes=10), 3  # three entries of one participant within ten minutes
SAME_DEVICE = timedelta(minutes=30)  # different participants' entries on an identical device this close
REVIEWERS = (Role.ADMIN, Role.COORDINATOR, Role.INVESTIGATOR)


@dataclass(frozen=True)
class Case:
    participant: str | None
    at: datetime | None
    what: str


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    looks_for: str
    find: object  # (study, now) -> list[Case]


def _submissions(study: Study, *where):
    return db.session.execute(
        select(
            Participant.code,
            Participant.timezone,
            Assessment.timepoint,
            Period.number,
            Submission.collected_at,
            Submission.submitted_at,
            Submission.source,
            Submission.submission_mode,
        )
        .join(Assessment, Submission.assessment_id == Assessment.id)
        .join(Period, Assessment.period_id == Period.id)
        .join(Participant, Period.participant_id == Participant.id)
        .where(Participant.study_id == study.id, *where)
        .order_by(Participant.code, Submission.submitted_at)
    ).all()


def unusual_hours(study: Study, now: datetime) -> list[Case]:
    cases = []
    for row in _submissions(study, Submission.source == Source.PARTICIPANT):
        local = row.collected_at.astimezone(ZoneInfo(row.timezone))
        if NIGHT[0] <= local.hour < NIGHT[1]:
            cases.append(
                Case(
                    row.code,
                    row.collected_at,
                    f"infusion {row.number} {row.timepoint} given at {local:%H:%M} on their clock",
                )
            )
    return cases


def staff_entered_share(study: Study, now: datetime) -> list[Case]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in _submissions(study):
        counts[row.code][0] += 1
        counts[row.code][1] += row.source != Source.PARTICIPANT
    return [
        Case(code, None, f"{staff} of {total} entries made by the study team ({100 * staff / total:.0f} %)")
        for code, (total, staff) in counts.items()
        if total >= STAFF_MIN_ENTRIES and staff / total > STAFF_SHARE
    ]


def late_offline_entries(study: Study, now: datetime) -> list[Case]:
    return [
        Case(
            row.code,
            row.collected_at,
            f"infusion {row.number} {row.timepoint} made offline, received "
            f"{(row.submitted_at - row.collected_at).total_seconds() / 3600:.1f} h later",
        )
        for row in _submissions(study, Submission.submission_mode == SubmissionMode.OFFLINE_SYNC)
        if row.submitted_at - row.collected_at > OFFLINE_GAP
    ]


def shared_devices(study: Study, now: datetime) -> list[Case]:
    """One phone used for several participants' diaries. The diary keeps no device identifier,
    so this reads what each entry's page reported (browser and version, screen size, pixel
    ratio): entries of different participants made within SAME_DEVICE of each other on
    identical devices are listed together. A hint for a look, not proof: two people can own
    the same model."""
    rows = db.session.execute(
        select(
            Participant.code,
            Submission.collected_at,
            Submission.browser,
            Submission.viewport_width,
            Submission.viewport_height,
            Submission.device_pixel_ratio,
        )
        .join(Assessment, Submission.assessment_id == Assessment.id)
        .join(Period, Assessment.period_id == Period.id)
        .join(Participant, Period.participant_id == Participant.id)
        .where(
            Participant.study_id == study.id,
            Submission.source == Source.PARTICIPANT,
            Submission.browser.is_not(None),
            Submission.viewport_width.is_not(None),
        )
        .order_by(Submission.collected_at)
    ).all()
    by_device: dict[tuple, list] = defaultdict(list)
    for row in rows:
        by_device[(row.browser, row.viewport_width, row.viewport_height, row.device_pixel_ratio)].append(row)
    cases = []
    for (browser, width, height, ratio), entries in by_device.items():
        for index, first in enumerate(entries):
            near = {row.code for row in entries[index:] if row.collected_at - first.collected_at <= SAME_DEVICE}
            if len(near) > 1:
                cases.append(
                    Case(
                        ", ".join(sorted(near)),
                        first.collected_at,
                        f"entries of {len(near)} participants within {SAME_DEVICE.seconds // 60} minutes "
                        f"on one kind of device ({browser}, {width}x{height} at {ratio}x)",
                    )
                )
                break
    return cases


def late_changes(study: Study, now: datetime) -> list[Case]:
    limit = timedelta(days=protocol_of(study.current_protocol_version).late_change_days)
    rows = db.session.execute(
        select(
            Participant.code,
            Period.number,
            Assessment.timepoint,
            ItemValue.instrument,
            ItemValue.item,
            ItemValue.changed_at,
            Submission.collected_at,
        )
        .join(Submission, ItemValue.submission_id == Submission.id)
        .join(Assessment, Submission.assessment_id == Assessment.id)
        .join(Period, Assessment.period_id == Period.id)
        .join(Participant, Period.participant_id == Participant.id)
        .where(Participant.study_id == study.id, ItemValue.changed_at.is_not(None))
    ).all()
    return [
        Case(
            row.code,
            row.changed_at,
            f"infusion {row.number} {row.timepoint} {row.instrument}.{row.item} changed "
            f"{(row.changed_at - row.collected_at).days} days after it was given",
        )
        for row in rows
        if row.changed_at - row.collected_at > limit
    ]


def _events(study: Study, *where):
    return db.session.execute(
        select(Participant.code, AuditEvent.at, AuditEvent.field, AuditEvent.old_value, AuditEvent.new_value)
        .join(Participant, AuditEvent.participant_id == Participant.id)
        .where(Participant.study_id == study.id, *where)
        .order_by(AuditEvent.id)
    ).all()


def timezone_changes(study: Study, now: datetime) -> list[Case]:
    return [
        Case(row.code, row.at, f"time zone {row.old_value} -> {row.new_value}")
        for row in _events(study, AuditEvent.field == "timezone")
    ]


def rejudging_corrections(study: Study, now: datetime) -> list[Case]:
    return [
        Case(row.code, row.at, f"{row.field} corrected: {row.new_value.split('; ', 1)[1]}")
        for row in _events(
            study, AuditEvent.action == AuditAction.CORRECT_DOSE, AuditEvent.new_value.contains("entries re-judged")
        )
    ]


def bursts(study: Study, now: datetime) -> list[Case]:
    cases = []
    for code, rows in _by_participant(_submissions(study)).items():
        times = [row.submitted_at for row in rows]
        start = 0
        for end in range(len(times)):
            while times[end] - times[start] > BURST:
                start += 1
            if end - start + 1 == BURST_SIZE:
                cases.append(
                    Case(code, times[start], f"{BURST_SIZE} or more entries within {BURST.seconds // 60} minutes")
                )
                break
    return cases


def _by_participant(rows) -> dict[str, list]:
    grouped: dict[str, list] = defaultdict(list)
    for row in rows:
        grouped[row.code].append(row)
    return grouped


CHECKS = (
    Check(
        "unusual_hours",
        "Entries at unusual hours",
        "participant entries given between midnight and 5 am on their own clock",
        unusual_hours,
    ),
    Check(
        "staff_entered_share",
        "Entries made by the study team",
        "participants with more than 30 % of at least 3 entries made by the study team",
        staff_entered_share,
    ),
    Check(
        "late_offline_entries",
        "Offline entries received late",
        "entries made without a connection that arrived more than an hour after they were made",
        late_offline_entries,
    ),
    Check(
        "shared_devices",
        "One phone, several participants",
        "a phone's notifications registered for more than one participant's diary",
        shared_devices,
    ),
    Check(
        "late_changes",
        "Changes long after entry",
        "values changed more than the protocol's late_change_days after they were given",
        late_changes,
    ),
    Check(
        "timezone_changes", "Time zone changes", "a participant's time zone changed after enrolment", timezone_changes
    ),
    Check(
        "rejudging_corrections",
        "Infusion corrections that re-judged entries",
        "an infusion time corrected so that entries already given changed state",
        rejudging_corrections,
    ),
    Check("bursts", "Bursts of entries", "three or more entries of one participant within ten minutes", bursts),
)
BY_NAME = {check.name: check for check in CHECKS}


def run_checks(study: Study, now: datetime) -> dict[str, list[Case]]:
    return {check.name: check.find(study, now) for check in CHECKS}


def record_review(study: Study, check: str, note: str, *, by: StaffUser, now: datetime) -> AuditReview:
    """A reviewer's note on one check, with how many cases it listed at that moment."""
    if by.role not in REVIEWERS:
        raise Refused("Only the study team and investigators review the audit trail.", status=403)
    if check not in BY_NAME:
        raise Refused(f"Unknown check '{check}'.", status=404)
    note = (note or "").strip()
    if not note:
        raise Refused("A review needs a note: what was looked at and concluded.", field="note")
    review = AuditReview(
        study_id=study.id,
        check=check,
        cases=len(BY_NAME[check].find(study, now)),
        note=note,
        reviewed_by_id=by.id,
        reviewed_at=now,
    )
    db.session.add(review)
    db.session.flush()
    audit.record(
        actor=audit.staff_actor(by),
        action=AuditAction.REVIEW_AUDIT_CHECK,
        entity="audit_review",
        entity_id=review.id,
        field=check,
        new=f"{review.cases} cases: {note}",
        now=now,
    )
    return review


def reviews(study: Study) -> list[AuditReview]:
    return list(
        db.session.scalars(select(AuditReview).where(AuditReview.study_id == study.id).order_by(AuditReview.id.desc()))
    )
