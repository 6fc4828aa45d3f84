"""Follow-up tasks: the protocol's rules for when a coordinator should phone a participant.

A scheduler pass calls ``create_tasks(now)``; each rule that fires adds a task with a key naming
what raised it, inserted with ON CONFLICT DO NOTHING, so a task exists once however many passes
(or schedulers) see the same thing. Coordinators close a task by recording how the call went.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..database import reading_only
from ..dosing import assessments, changes
from ..errors import Refused
from ..extensions import db
from ..governance import audit
from ..localtime import local_datetime
from ..models import Assessment, FollowUpTask, Participant, Period, SideEffectReport, StaffUser, Submission
from ..protocol.model import FollowUpRule, Protocol
from ..study.trial import protocol_of
from ..vocabulary import (
    CALL_OUTCOMES,
    AssessmentState,
    AuditAction,
    FollowUpOutcome,
    ParticipantStatus,
    ReviewState,
    Severity,
)

MISSED = AssessmentState.MISSED


def _task(participant_id: int, rule: FollowUpRule, key: str, reason: str, fired_at: datetime, now: datetime) -> dict:
    return {
        "participant_id": participant_id,
        "rule": rule.rule,
        "key": key[:200],
        "reason": reason,
        "due_at": fired_at + rule.due_within.nominal,
        "created_at": now,
    }


def missed_timepoint(rule: FollowUpRule, rows, now: datetime) -> list[dict]:
    """A named time point (the primary one, say) was missed."""
    return [
        _task(
            row.participant_id,
            rule,
            f"missed_timepoint:{row.id}",
            f"Missed {row.timepoint} ({row.label}) of infusion {row.period}; its window closed "
            f"{local_datetime(row.late_close, row.timezone)}.",
            row.late_close,
            now,
        )
        for row in rows
        if row.state == MISSED and row.timepoint in rule.timepoints
    ]


def missed_in_a_row(rule: FollowUpRule, rows, now: datetime, home: set[str]) -> list[dict]:
    """``count`` home entries missed one after the other (optional ones do not count)."""
    tasks, run = [], []
    for row in rows:  # one participant's rows, in time order
        if (
            row.timepoint not in home
            or row.optional
            or row.state in (AssessmentState.UPCOMING, AssessmentState.OPEN, AssessmentState.NOT_APPLICABLE)
        ):
            continue
        run = run + [row] if row.state == MISSED else []
        if len(run) == rule.count:
            codes = ", ".join(f"infusion {r.period} {r.timepoint}" for r in run)
            tasks.append(
                _task(
                    row.participant_id,
                    rule,
                    f"missed_in_a_row:{row.id}",
                    f"{rule.count} home entries missed in a row: {codes}.",
                    row.late_close,
                    now,
                )
            )
            run = []
    return tasks


def silent(rule: FollowUpRule, rows, now: datetime, last_entry: datetime | None) -> list[dict]:
    """No entry for ``after`` while entries were due (at least one missed in that time)."""
    if not rows:
        return []
    starts = [row.dose_start for row in rows if row.dose_start is not None]
    if not starts:
        return []
    since = last_entry or min(starts)  # the last entry, or the first infusion if none yet
    fired_at = since + rule.after.nominal
    if now < fired_at:
        return []
    missed = [row for row in rows if row.state == MISSED and since <= row.late_close <= now]
    if not missed:
        return []
    hours = int(rule.after.nominal.total_seconds() // 3600)
    return [
        _task(
            rows[0].participant_id,
            rule,
            f"silent:{rows[0].participant_id}:{since.isoformat()}",
            f"No diary entry for more than {hours} hours while entries were due "
            f"(last entry {local_datetime(since, rows[0].timezone) if last_entry else 'none yet'}; "
            f"{len(missed)} missed since).",
            fired_at,
            now,
        )
    ]


def severe_unreviewed(rule: FollowUpRule, now: datetime, study_id: int) -> list[dict]:
    """A severe side effect not reviewed ``after`` it was reported."""
    late = now - rule.after.nominal
    reports = db.session.execute(
        select(
            SideEffectReport.id,
            SideEffectReport.term,
            SideEffectReport.reported_at,
            Period.participant_id,
            Period.number,
        )
        .join(Period, SideEffectReport.period_id == Period.id)
        .join(Participant, Period.participant_id == Participant.id)
        .where(
            Participant.study_id == study_id,
            Participant.status.in_(ParticipantStatus.in_diary()),
            SideEffectReport.review_state == ReviewState.NEW,
            SideEffectReport.reported_at <= late,
            (SideEffectReport.severity == Severity.SEVERE) | SideEffectReport.alert.is_(True),
        )
    ).all()
    return [
        _task(
            report.participant_id,
            rule,
            f"severe_unreviewed:{report.id}",
            f"Severe {report.term.replace('_', ' ')} (infusion {report.number}) not reviewed "
            f"{int(rule.after.nominal.total_seconds() // 60)} minutes after it was reported.",
            report.reported_at + rule.after.nominal,
            now,
        )
        for report in reports
    ]


# Tasks written per transaction when the scheduler works in short transactions (SQLite: each
# holds the one write lock a participant's submit needs).
WRITE_BATCH = 500


def create_tasks(study, now: datetime, *, short_transactions: bool = False) -> int:
    """Evaluate every follow-up rule of the protocol at ``now`` for every participant; returns
    the tasks added. ``short_transactions``: the rules are judged in read transactions (on
    SQLite, without the write lock) and the new tasks written in batches, each committed. The
    scheduler's pass calls ``judge`` instead, which looks only at what changed."""
    protocol: Protocol = protocol_of(study.current_protocol_version)
    return _create(study.id, protocol, now, changes.Since(full=True), short_transactions=short_transactions)


def judge(study, now: datetime) -> tuple[int, int]:
    """The scheduler's pass: (tasks raised, tasks resolved by data) for the participants
    something happened to since the last pass (``dosing/changes.py``), a chunk at a time, in
    short transactions. A pass with nothing new costs a few statements at any study size."""
    version = study.current_protocol_version
    protocol: Protocol = protocol_of(version)
    study_id, version_id = study.id, version.id
    lookbacks = [rule.after.nominal for rule in protocol.follow_up if rule.rule == "silent"]
    scope = changes.since_last_pass(WATERMARK, study_id, now, version_id, lookbacks=lookbacks)
    created = _create(study_id, protocol, now, scope, short_transactions=True) if protocol.follow_up else 0
    db.session.commit()
    resolved = resolve_tasks(study, now, participant_ids=None if scope.full else scope.participant_ids)
    changes.passed(WATERMARK, now, scope, version_id)
    db.session.commit()
    return created, resolved


def _create(study_id: int, protocol: Protocol, now: datetime, scope: changes.Since, *, short_transactions: bool):
    if not protocol.follow_up:
        return 0
    added = _insert_tasks(_severe_unreviewed_tasks(protocol, now, study_id), commit_each=short_transactions)
    for chunk in changes.chunks(study_id, scope):
        if short_transactions:
            db.session.commit()  # whatever came before is done: the read starts its own transaction
            with reading_only():
                fired = _fired(study_id, protocol, now, chunk)
                db.session.commit()  # the read transaction ends before any write begins
        else:
            fired = _fired(study_id, protocol, now, chunk)
        added += _insert_tasks(fired, commit_each=short_transactions)
    return added


# The name of the follow-up rules' watermark (``PassWatermark``).
WATERMARK = "follow_up"


def _severe_unreviewed_tasks(protocol: Protocol, now: datetime, study_id: int) -> list[dict]:
    """Tasks for severe reports left unreviewed (one query over the unreviewed reports)."""
    tasks = []
    for rule in protocol.follow_up:
        if rule.rule == "severe_unreviewed":
            tasks += severe_unreviewed(rule, now, study_id)
    return _not_yet_known(tasks)


def _fired(study_id: int, protocol: Protocol, now: datetime, participant_ids: list[int]) -> list[dict]:
    """The tasks the rules call for at ``now`` for these participants that do not exist yet."""
    home = {tp.code for tp in protocol.timepoints if tp.setting in protocol.reminders.settings}
    rows_by_participant: dict[int, list] = defaultdict(list)
    for row in assessments.load(
        now,
        study_id=study_id,
        participant_ids=participant_ids,
        where=(Participant.status.in_(ParticipantStatus.in_diary()),),
        order_by=(Participant.id, Period.number, Assessment.target),
    ):
        rows_by_participant[row.participant_id].append(row)
    if not rows_by_participant:
        return []
    last_entries = dict(
        db.session.execute(
            select(Period.participant_id, func.max(Submission.collected_at))
            .join(Assessment, Assessment.period_id == Period.id)
            .join(Submission, Submission.assessment_id == Assessment.id)
            .where(Period.participant_id.in_(list(rows_by_participant)))
            .group_by(Period.participant_id)
        ).all()
    )
    tasks = []
    for rule in protocol.follow_up:
        for participant_id, rows in rows_by_participant.items():
            if rule.rule == "missed_timepoint":
                tasks += missed_timepoint(rule, rows, now)
            elif rule.rule == "missed_in_a_row":
                tasks += missed_in_a_row(rule, rows, now, home)
            elif rule.rule == "silent":
                tasks += silent(rule, rows, now, last_entries.get(participant_id))
    return _not_yet_known(tasks)


def _not_yet_known(tasks: list[dict]) -> list[dict]:
    if not tasks:
        return []
    keys = [t["key"] for t in tasks]
    known = set()
    for start in range(0, len(keys), 5000):  # keep each IN list a reasonable size
        known.update(
            db.session.scalars(select(FollowUpTask.key).where(FollowUpTask.key.in_(keys[start : start + 5000])))
        )
    return [task for task in tasks if task["key"] not in known]


def _insert_tasks(new: list[dict], *, commit_each: bool) -> int:
    # Another scheduler may be adding the same tasks right now: the unique key decides.
    insert = sqlite_insert if db.engine.dialect.name == "sqlite" else postgresql_insert
    for start in range(0, len(new), WRITE_BATCH):
        db.session.execute(
            insert(FollowUpTask).on_conflict_do_nothing(index_elements=["key"]), new[start : start + WRITE_BATCH]
        )
        if commit_each:
            db.session.commit()
    return len(new)


# Rules whose task key names the assessment that was missed ("rule:assessment id").
ASSESSMENT_KEYED = ("missed_timepoint", "missed_in_a_row")


def resolve_tasks(study, now: datetime, *, participant_ids=None) -> int:
    """Close the open tasks whose cause is gone, as "resolved by data" (audited; a pass never
    reopens them, since their keys stay taken): the missed entry arrived (online, by offline sync
    or entered by staff), the severe report was reviewed, the participant spoke again after a
    silence, or the participant withdrew. Returns how many closed.

    Every open task of the study, or (``participant_ids``: the scheduler's pass) those of the
    participants something happened to; each cause above is an audited change of its
    participant. A fixed number of queries per chunk of participants."""
    study_id = study.id
    if participant_ids is None:
        return _resolve(study_id, now, ())
    ids = sorted(participant_ids)
    return sum(
        _resolve(study_id, now, (FollowUpTask.participant_id.in_(ids[start : start + changes.CHUNK]),))
        for start in range(0, len(ids), changes.CHUNK)
    )


def _resolve(study_id: int, now: datetime, where) -> int:
    open_tasks = db.session.execute(
        select(FollowUpTask.id, FollowUpTask.rule, FollowUpTask.key, FollowUpTask.participant_id, Participant.status)
        .join(Participant, FollowUpTask.participant_id == Participant.id)
        .where(Participant.study_id == study_id, FollowUpTask.closed_at.is_(None), *where)
    ).all()
    if not open_tasks:
        return 0

    def keyed(rules):
        found = {}
        for task in open_tasks:
            if task.rule in rules:
                try:
                    found[task.id] = int(task.key.split(":")[1])
                except (IndexError, ValueError):
                    continue
        return found

    by_assessment, by_report = keyed(ASSESSMENT_KEYED), keyed(("severe_unreviewed",))
    arrived = (
        dict(
            db.session.execute(
                select(Submission.assessment_id, Submission.submitted_at).where(
                    Submission.assessment_id.in_(set(by_assessment.values()))
                )
            ).all()
        )
        if by_assessment
        else {}
    )
    reviewed = (
        dict(
            db.session.execute(
                select(SideEffectReport.id, SideEffectReport.acknowledged_at).where(
                    SideEffectReport.id.in_(set(by_report.values())), SideEffectReport.review_state != ReviewState.NEW
                )
            ).all()
        )
        if by_report
        else {}
    )
    silent_ids = {task.participant_id for task in open_tasks if task.rule == "silent"}
    last_entry = (
        dict(
            db.session.execute(
                select(Period.participant_id, func.max(Submission.collected_at))
                .join(Assessment, Assessment.period_id == Period.id)
                .join(Submission, Submission.assessment_id == Assessment.id)
                .where(Period.participant_id.in_(silent_ids))
                .group_by(Period.participant_id)
            ).all()
        )
        if silent_ids
        else {}
    )
    closed = 0
    for task in open_tasks:
        when, why = None, None
        if task.status not in ParticipantStatus.in_diary():
            when, why = now, "the participant withdrew"
        elif task.id in by_assessment and by_assessment[task.id] in arrived:
            when, why = arrived[by_assessment[task.id]], "the missing entry arrived"
        elif task.id in by_report and by_report[task.id] in reviewed:
            when, why = reviewed[by_report[task.id]] or now, "the report was reviewed"
        elif task.rule == "silent" and last_entry.get(task.participant_id):
            since = datetime.fromisoformat(task.key.split(":", 2)[2])
            if last_entry[task.participant_id] > since:
                when, why = now, "the participant made an entry since"
        if when is None:
            continue
        done = db.session.execute(
            update(FollowUpTask)
            .where(FollowUpTask.id == task.id, FollowUpTask.closed_at.is_(None))
            .values(
                closed_at=min(when, now), outcome=FollowUpOutcome.RESOLVED_BY_DATA, note=f"Resolved by data: {why}."
            )
            .execution_options(synchronize_session=False)
        )
        if done.rowcount == 1:
            closed += 1
            audit.record(
                actor=audit.SYSTEM,
                action=AuditAction.RESOLVE_FOLLOW_UP,
                entity="follow_up_task",
                entity_id=task.id,
                participant_id=task.participant_id,
                now=now,
                field=task.rule,
                new=f"{FollowUpOutcome.RESOLVED_BY_DATA}: {why}",
            )
    return closed


def close_task(task: FollowUpTask, outcome: str, note: str, *, by: StaffUser, now: datetime) -> None:
    """Record how the follow-up went; the task closes (once: a conditional update)."""
    if outcome not in CALL_OUTCOMES:
        raise Refused("Choose how the call went.", field="outcome")
    note = (note or "").strip()
    if not note:
        raise Refused("A note is required: what was said or done.", field="note")
    done = db.session.execute(
        update(FollowUpTask)
        .where(FollowUpTask.id == task.id, FollowUpTask.closed_at.is_(None))
        .values(closed_at=now, outcome=outcome, note=note, closed_by_id=by.id)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(task)
    if done.rowcount != 1:
        raise Refused("This follow-up was already closed.", status=409)
    audit.record(
        actor=audit.staff_actor(by),
        action=AuditAction.CLOSE_FOLLOW_UP,
        entity="follow_up_task",
        entity_id=task.id,
        participant_id=task.participant_id,
        now=now,
        field=task.rule,
        new=f"{outcome}: {note}",
    )


def tasks(study_id: int, *, limit: int = 50, offset: int = 0, closed: bool = False):
    """Open tasks, the most overdue first (or closed ones, the latest closed first), with their
    participant codes and contact details (for the list to show masked), in one query."""
    query = (
        select(FollowUpTask, Participant.code, Participant.email, Participant.phone)
        .join(Participant, FollowUpTask.participant_id == Participant.id)
        .where(Participant.study_id == study_id)
    )
    if closed:
        query = query.where(FollowUpTask.closed_at.is_not(None)).order_by(
            FollowUpTask.closed_at.desc(), FollowUpTask.id.desc()
        )
    else:
        query = query.where(FollowUpTask.closed_at.is_(None)).order_by(FollowUpTask.due_at, FollowUpTask.id)
    return db.session.execute(query.limit(limit).offset(offset)).all()


def count_tasks(study_id: int, *, closed: bool = False) -> int:
    state = FollowUpTask.closed_at.is_not(None) if closed else FollowUpTask.closed_at.is_(None)
    return db.session.scalar(
        select(func.count()).select_from(FollowUpTask).join(Participant).where(Participant.study_id == study_id, state)
    )
