"""What changed since a scheduler step last judged the study: its work follows the change.

A step (reminder planning, the follow-up rules) keeps a watermark: the ``now`` of its last
pass. The next pass judges only the participants something happened to since then:

- an audited change: an entry (online, synced offline or by staff), an infusion recorded or
  corrected, enrolment, withdrawal, reminder preferences, a push subscription, windows moved
  by an amendment (every one of these writes an audit event naming the participant);
- a moment the rules react to passing: a window opening (``horizon`` ahead, for planning) or
  its late close (an entry becoming missed), and, for a rule that waits (``lookbacks``), the
  last entry or the first infusion that long ago.

Each is one indexed query, so a pass with nothing new costs a few statements whatever the size
of the study. Writes that committed after a pass read past their own ``now`` are caught by
looking back ``OVERLAP`` further (judging someone twice adds nothing: tasks and reminders are
keyed). As a net for anything that changes without an audit event, everything is judged again
once ``FULL_EVERY`` has passed, when there is no watermark yet, or when the protocol changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, union, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..extensions import db
from ..models import Assessment, AuditEvent, Participant, PassWatermark, Period, Submission

# Longer than a web request's write transaction lasts (statements time out at 30 s). Each pass
# judges again whoever changed in this much time before the last one, so it is kept short: at
# 50,000 participants 10 minutes meant some 1,800 participants judged again every pass. A
# longer transaction (a command's) whose changes it misses is caught by the hourly full pass.
OVERLAP = timedelta(minutes=2)
FULL_EVERY = timedelta(hours=1)
# Participants judged together: a full pass over a large study holds this many at a time.
CHUNK = 2000


@dataclass(frozen=True)
class Since:
    """What a pass must judge: everyone (``full``), or ``participant_ids``."""

    full: bool
    participant_ids: frozenset[int] = frozenset()


def since_last_pass(
    name: str,
    study_id: int | None,
    now: datetime,
    protocol_version_id: int | None,
    *,
    horizon: timedelta | None = None,
    lookbacks: Iterable[timedelta] = (),
) -> Since:
    """Who step ``name`` must judge at ``now``; see the module's docstring."""
    mark = db.session.get(PassWatermark, name)
    if (
        mark is None
        or mark.protocol_version_id != protocol_version_id
        or now - mark.full_at >= FULL_EVERY
        or mark.through > now  # the clock went back: judge everything rather than guess
    ):
        return Since(full=True)
    since = mark.through - OVERLAP
    return Since(
        full=False,
        participant_ids=frozenset(changed_participants(study_id, since, now, horizon=horizon, lookbacks=lookbacks)),
    )


def changed_participants(
    study_id: int | None,
    since: datetime,
    now: datetime,
    *,
    horizon: timedelta | None = None,
    lookbacks: Iterable[timedelta] = (),
) -> set[int]:
    """The participants (of the study, or of every study) something happened to in (``since``,
    ``now``], in one query."""
    assessments = select(Period.participant_id).join(Assessment, Assessment.period_id == Period.id)
    parts = [
        select(AuditEvent.participant_id).where(AuditEvent.at > since, AuditEvent.participant_id.is_not(None)),
        assessments.where(Assessment.late_close > since, Assessment.late_close <= now),
    ]
    if horizon is not None:
        parts.append(
            assessments.where(Assessment.window_open > since + horizon, Assessment.window_open <= now + horizon)
        )
    for lookback in lookbacks:
        parts.append(
            assessments.join(Submission, Submission.assessment_id == Assessment.id).where(
                Submission.collected_at > since - lookback, Submission.collected_at <= now - lookback
            )
        )
        parts.append(
            select(Period.participant_id).where(
                Period.dose_start > since - lookback, Period.dose_start <= now - lookback
            )
        )
    changed = union(*parts).subquery()
    query = select(Participant.id).where(Participant.id.in_(select(changed.c[0])))
    if study_id is not None:
        query = query.where(Participant.study_id == study_id)
    return set(db.session.scalars(query))


def chunks(study_id: int | None, scope: Since) -> Iterator[list[int]]:
    """The participants to judge, a chunk at a time (none at all when nothing changed)."""
    if not scope.full:
        ids = sorted(scope.participant_ids)
        for start in range(0, len(ids), CHUNK):
            yield ids[start : start + CHUNK]
        return
    last = 0
    while True:
        query = select(Participant.id).where(Participant.id > last).order_by(Participant.id).limit(CHUNK)
        if study_id is not None:
            query = query.where(Participant.study_id == study_id)
        ids = list(db.session.scalars(query))
        if not ids:
            return
        yield ids
        last = ids[-1]


def passed(name: str, now: datetime, scope: Since, protocol_version_id: int | None) -> None:
    """Record that step ``name`` judged the study at ``now`` (only ever forward; a full pass
    also moves ``full_at``). Two schedulers finishing together: the later ``now`` stays."""
    values = {"through": now, "protocol_version_id": protocol_version_id}
    if scope.full:
        values["full_at"] = now
    done = db.session.execute(
        update(PassWatermark)
        .where(PassWatermark.name == name, PassWatermark.through <= now)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount == 0 and db.session.get(PassWatermark, name) is None:
        insert = sqlite_insert if db.engine.dialect.name == "sqlite" else postgresql_insert
        db.session.execute(
            insert(PassWatermark).on_conflict_do_nothing(index_elements=["name"]),
            [{"name": name, "through": now, "full_at": now, "protocol_version_id": protocol_version_id}],
        )
