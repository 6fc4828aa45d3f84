"""Study figures at any size: counted by the database in one pass, kept as a snapshot.

Judging the state of every assessment takes the database a few hundred milliseconds at 5,000
participants (100,000 assessments): too slow for every page view. The scheduler counts them
once a minute (``refresh``) and keeps the result: each participant's figures (what the grid
sorts and filters on), the counts per site, period, time point and state (the adherence
figures) and the VAS sums (the summary). Pages read the snapshot while it is at most
``FIGURES_MAX_AGE_SECONDS`` old and say its time; otherwise (no scheduler running) they count
at the request, as before. The participants shown on a page are always judged at the request.

The counting is ``adherence.count_states`` and ``summary.vas_sums``, the same code the live
pages run: the snapshot only keeps their answer. It is derived data, replaced whole by each
refresh, not a record.

A new count is written as a new *generation* of rows beside the current one, in batches each
committed (on SQLite every write transaction holds the one write lock a participant's submit
needs, and 50,000 participants' rows in one would hold it for seconds); one short transaction
then moves the snapshot to it. The generation before stays until the next count, so a page
that read the snapshot just before the move still finds its rows.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, insert, select, text, update

from ..database import reading_only
from ..extensions import db
from ..models import FiguresSnapshot, Participant, ParticipantFigures, Study, TimepointFigures, VasFigures
from ..settings import setting
from ..study.trial import protocol_of
from .adherence import clamp_page

TABLES = (ParticipantFigures, TimepointFigures, VasFigures)
# Rows written per transaction (each commit lets a waiting submit in).
WRITE_BATCH = 2000
CLOCK_SKEW = timedelta(seconds=60)  # between the scheduler's host and a web server's
# PostgreSQL's memory for each sort or hash of the count (its default, 4 MB, spills them to disk
# from a few thousand participants on). Set for the count's own transaction, once a minute.
COUNT_WORK_MEM = "64MB"


@dataclass
class Snapshot:
    as_of: datetime
    took_ms: int


def fresh(study_id: int, now: datetime) -> Snapshot | None:
    """The study's snapshot if it is recent enough to show, else None (count at the request)."""
    max_age = setting("FIGURES_MAX_AGE_SECONDS", 180)
    row = db.session.execute(
        select(FiguresSnapshot.as_of, FiguresSnapshot.took_ms).where(FiguresSnapshot.study_id == study_id)
    ).first()
    # A count stamped a little after ``now`` came from a scheduler on a host whose clock is ahead.
    if row is None or max_age <= 0 or not (now - timedelta(seconds=max_age) <= row.as_of <= now + CLOCK_SKEW):
        return None
    return Snapshot(row.as_of, row.took_ms)


def refresh(study: Study, now: datetime) -> Snapshot | None:
    """Count the study's figures at ``now`` and keep them. Returns the snapshot, or None when a
    newer one was stored meanwhile (another scheduler).

    The counting runs in a read transaction (on SQLite it holds no write lock, so submits go on);
    only the replacing of the rows takes the study's lock, briefly. Two refreshes at once both
    count; the later ``now`` is kept whole and the other stores nothing. It ends the session's
    transaction: call it with nothing of your own pending (the scheduler's job, a command).
    """
    from . import adherence, summary

    if db.session.new or db.session.dirty or db.session.deleted:
        raise RuntimeError("figures.refresh ends the session's transaction: commit your own changes first")
    db.session.rollback()  # any transaction open now might hold the write lock through the counting
    started = time.perf_counter()
    with reading_only():
        study_id = study.id  # read here: after the rollback below, touching ``study`` would begin the write early
        if db.session.get_bind().dialect.name == "postgresql":
            # For this read transaction only: the count's sorts and hashes of a million assessments
            # fit in memory instead of spilling to disk (5.2 s to 3.0 s for the states at 50,000).
            db.session.execute(text(f"SET LOCAL work_mem = '{COUNT_WORK_MEM}'"))
        protocol = protocol_of(study.current_protocol_version)
        optional_codes = [tp.code for tp in protocol.timepoints if tp.optional]
        in_study = [Participant.study_id == study.id]
        counted = adherence.count_states(now, optional_codes, in_study)
        unacknowledged = adherence.unacknowledged_counts(in_study)
        vas = summary.vas_sums(study, protocol, now)
        db.session.rollback()  # the read transaction ends here; the writes below take the lock
    counted.add_unacknowledged(unacknowledged)
    participants = [
        {
            "participant_id": pid,
            "study_id": study_id,
            "scheduled": row.tally.scheduled,
            "completed": row.tally.completed,
            "completed_late": row.tally.completed_late,
            "missed": row.tally.missed,
            "compliance_pct": row.tally.compliance_pct,
            "missed_required": row.missed,
            "overdue": row.overdue,
            "flagged": row.flagged,
            "unacknowledged": row.unacknowledged,
            "states": counted.states.get(pid, 0),
            "needs_attention": row.needs_attention,
        }
        for pid, row in counted.participants.items()
    ]
    timepoints = [
        {
            "study_id": study_id,
            "site": site,
            "period": number,
            "timepoint": code,
            "state": state,
            "optional": optional,
            "count": count,
        }
        for site, number, code, state, optional, count in counted.by_site
    ]
    sums = [
        {
            "study_id": study_id,
            "sequence": sequence,
            "dummy_sequence": dummy,
            "treatment": treatment,
            "period": number,
            "timepoint": code,
            "n": n,
            "total": total,
            "squares": squares,
        }
        for sequence, dummy, treatment, number, code, n, total, squares in vas
    ]
    took_ms = round((time.perf_counter() - started) * 1000)

    # Unique, and ordered as the counts' moments are (to the microsecond; two counts of one
    # moment cannot both be kept): the generations before the one shown are the smaller numbers.
    generation = round(now.timestamp() * 1_000_000) * 1000 + secrets.randbelow(1000)
    for model, rows in ((ParticipantFigures, participants), (TimepointFigures, timepoints), (VasFigures, sums)):
        for index in range(0, len(rows), WRITE_BATCH):
            batch = [{**row, "generation": generation} for row in rows[index : index + WRITE_BATCH]]
            db.session.connection().execute(insert(model.__table__), batch)
            db.session.commit()

    connection = db.session.connection()
    # The study's row is the lock (PostgreSQL); on SQLite the write transaction is the lock.
    connection.execute(select(Study.id).where(Study.id == study_id).with_for_update())
    stored = connection.execute(
        select(FiguresSnapshot.as_of, FiguresSnapshot.generation).where(FiguresSnapshot.study_id == study_id)
    ).first()
    if stored is not None and stored.as_of >= now:
        db.session.rollback()
        _drop_generations(study_id, only=generation)  # a newer count is kept
        return None
    if stored is None:
        connection.execute(
            insert(FiguresSnapshot.__table__).values(
                study_id=study_id, as_of=now, took_ms=took_ms, generation=generation
            )
        )
    else:
        connection.execute(
            update(FiguresSnapshot.__table__)
            .where(FiguresSnapshot.study_id == study_id)
            .values(as_of=now, took_ms=took_ms, generation=generation)
        )
    db.session.commit()
    if stored is not None:
        # The generation before the one just replaced, and any a stopped count left behind.
        _drop_generations(study_id, older_than=stored.generation)
    return Snapshot(now, took_ms)


def _drop_generations(study_id: int, *, only: int | None = None, older_than: int | None = None) -> None:
    """Delete the figures rows of one generation (``only``) or of those before ``older_than``,
    a batch per transaction."""
    for model in TABLES:
        table = model.__table__
        chosen = table.c.generation == only if only is not None else table.c.generation < older_than
        key = table.c.participant_id if model is ParticipantFigures else table.c.id
        while True:
            rows = db.session.execute(
                select(key, table.c.generation).where(table.c.study_id == study_id, chosen).limit(WRITE_BATCH)
            ).all()
            if not rows:
                break
            for generation in {row[1] for row in rows}:
                keys = [row[0] for row in rows if row[1] == generation]
                db.session.execute(delete(table).where(table.c.generation == generation, key.in_(keys)))
            db.session.commit()


def _current_generation(study_id_column):
    """The generation of the study's snapshot, as a subquery (correlated to ``study_id_column``)."""
    return select(FiguresSnapshot.generation).where(FiguresSnapshot.study_id == study_id_column).scalar_subquery()


def timepoint_rows(study_id: int, site: str | None = None):
    """(site, period, time point, state, optional, count) rows of the snapshot, one site or all."""
    t = TimepointFigures
    query = select(t.site, t.period, t.timepoint, t.state, t.optional, t.count).where(
        t.study_id == study_id, t.generation == _current_generation(t.study_id)
    )
    if site:
        query = query.where(t.site == site)
    return db.session.execute(query).all()


def vas_rows(study_id: int):
    v = VasFigures
    return [
        tuple(row)
        for row in db.session.execute(
            select(v.sequence, v.dummy_sequence, v.treatment, v.period, v.timepoint, v.n, v.total, v.squares).where(
                v.study_id == study_id, v.generation == _current_generation(v.study_id)
            )
        )
    ]


def page_of_participants(
    participant_filter: list, *, attention_only: bool, state_bit: int | None, sort: str, page: int, page_size: int
) -> tuple[int, list[int], int]:
    """(total, participant ids of the page, page) sorted and filtered on the snapshot's figures.

    Every participant of the filter is listed, with or without figures (one enrolled since the
    last count has none yet: it sorts last and needs no attention until counted).
    """
    f = ParticipantFigures
    query = (
        select(Participant.id)
        .outerjoin(
            f,
            and_(f.participant_id == Participant.id, f.generation == _current_generation(Participant.study_id)),
        )
        .where(*participant_filter)
    )
    if attention_only:
        query = query.where(f.needs_attention.is_(True))
    if state_bit:
        query = query.where(f.states.op("&")(state_bit) != 0)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    page = clamp_page(page, total, page_size)[0]
    if sort in ("compliance", "-compliance"):
        value = f.compliance_pct if sort == "compliance" else -f.compliance_pct
        order = (f.compliance_pct.is_(None), value, Participant.code)
    else:
        order = (Participant.code,)
    ids = db.session.scalars(query.order_by(*order).limit(page_size).offset((page - 1) * page_size)).all()
    return total, list(ids), page


def refresh_all(now: datetime) -> list[tuple[int, Snapshot | None]]:
    """Refresh every study's figures (the scheduler's job)."""
    with reading_only():
        study_ids = db.session.scalars(select(Study.id)).all()
    return [(study_id, refresh(db.session.get(Study, study_id), now)) for study_id in study_ids]
