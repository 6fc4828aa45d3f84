"""The randomization list: loading it (unblinded role) and claiming its next free slot at
enrolment."""

from __future__ import annotations

import csv
import io
import random
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import Refused
from ..extensions import db
from ..governance import audit
from ..models import Participant, RandomizationSlot, Study
from ..vocabulary import AuditAction
from .trial import protocol_of

# The site column's width in the database (randomization_slot.site, participant.site).
SITE_LENGTH = 80


def parse_randomization_csv(text: str, sequences) -> list[tuple[str, int, str]]:
    """Rows of (site, position, sequence); every problem is reported with its line number."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or {"site", "position", "sequence"} - {f.strip().lower() for f in reader.fieldnames}:
        raise Refused("The CSV needs a header row with the columns site, position, sequence.")
    rows, problems, seen = [], [], set()
    for line, raw in enumerate(reader, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        site, position, sequence = row.get("site", ""), row.get("position", ""), row.get("sequence", "")
        if not site:
            problems.append(f"line {line}: site is empty")
        elif len(site) > SITE_LENGTH or not site.isprintable():
            problems.append(f"line {line}: a site is a name of at most {SITE_LENGTH} printable characters")
            continue
        if not position.isdigit() or not position.isascii() or len(position) > 9:
            problems.append(f"line {line}: position '{position}' is not a whole number")
            continue
        if sequence not in sequences:
            problems.append(f"line {line}: sequence '{sequence}' is not one of {', '.join(sequences)}")
        if (site, int(position)) in seen:
            problems.append(f"line {line}: position {position} appears twice for site {site}")
        seen.add((site, int(position)))
        rows.append((site, int(position), sequence))
    if problems:
        raise Refused("The randomization list was not loaded: " + "; ".join(problems[:20]))
    if not rows:
        raise Refused("The randomization list has no rows.")
    return rows


def load_randomization_list(study: Study, data: bytes, *, actor: str, now: datetime) -> int:
    """Add the slots of an uploaded CSV. Existing slots are never changed. Returns the count."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Refused("The file is not UTF-8 text.") from None
    protocol = protocol_of(study.current_protocol_version)
    rows = parse_randomization_csv(text, protocol.sequences)
    existing = set(
        db.session.execute(
            select(RandomizationSlot.site, RandomizationSlot.position).where(RandomizationSlot.study_id == study.id)
        ).all()
    )
    clashes = [f"{site} {position}" for site, position, _ in rows if (site, position) in existing]
    if clashes:
        raise Refused("These slots already exist and were not changed: " + ", ".join(clashes[:20]))
    dummies = _shuffled([sequence for _, _, sequence in rows])
    try:
        with db.session.begin_nested():  # the unique (site, position) decides a race with another upload
            for (site, position, sequence), dummy in zip(rows, dummies):
                db.session.add(
                    RandomizationSlot(
                        study_id=study.id, site=site, position=position, sequence=sequence, dummy_sequence=dummy
                    )
                )
    except IntegrityError:
        raise Refused(
            "Another upload added some of these slots at the same time; nothing was changed. "
            "Reload the page to see the list.",
            status=409,
        ) from None
    audit.record(
        actor=actor,
        action=AuditAction.UPLOAD_RANDOMIZATION,
        entity="randomization_slot",
        entity_id=None,
        now=now,
        new=f"{len(rows)} slots",
    )
    return len(rows)


def next_sequence(study: Study, site: str) -> RandomizationSlot:
    """The site's lowest free slot, locked for this transaction.

    On PostgreSQL the row is taken ``FOR UPDATE SKIP LOCKED``: a concurrent enrolment skips it
    and takes the next free one instead of sharing it. SQLite runs one writer at a time
    (``BEGIN IMMEDIATE``). The unique key on the slot's participant is the last word either way.
    """
    slot = db.session.scalars(
        select(RandomizationSlot)
        .where(
            RandomizationSlot.study_id == study.id,
            RandomizationSlot.site == site,
            RandomizationSlot.participant_id.is_(None),
        )
        .order_by(RandomizationSlot.position)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if slot is None:
        raise Refused(
            f"The randomization list has no free slot left for site {site}. "
            "Ask the unblinded team member to upload more."
        )
    return slot


# --- The dummy allocation ----------------------------------------------------------------------
# Before unblinding, blinded analysts' exports carry a dummy allocation instead of the true one,
# so statisticians can write and test their programs on the real data without learning who had
# what (A/B side-effect profiles alone would reveal the drug). The list's sequences are
# shuffled once over its slots, so the dummy keeps the list's AB/BA counts; it is stored, so
# every export shows the same dummy. A participant enrolled without a slot (a sequence given by
# a script) draws a dummy sequence at random.

_draw = random.SystemRandom()


def _shuffled(sequences: list[str]) -> list[str]:
    dummy = list(sequences)
    _draw.shuffle(dummy)
    return dummy


def dummy_for(slot: RandomizationSlot | None, sequences) -> str:
    """A new participant's dummy sequence: their slot's, or one drawn at random without a slot."""
    if slot is not None and slot.dummy_sequence:
        return slot.dummy_sequence
    return _draw.choice(list(sequences))


def ensure_dummy_allocation(study: Study) -> int:
    """Give every slot and participant still without one a dummy sequence; return how many
    participants got one.

    The study's row is locked first, so two exports at once draw one dummy between them (the
    second finds nothing left to draw); each row is also set only where it is still empty.
    """
    db.session.execute(select(Study.id).where(Study.id == study.id).with_for_update())
    protocol = protocol_of(study.current_protocol_version)
    slots = db.session.execute(
        select(RandomizationSlot.id, RandomizationSlot.sequence).where(
            RandomizationSlot.study_id == study.id, RandomizationSlot.dummy_sequence.is_(None)
        )
    ).all()
    connection = db.session.connection()
    if slots:
        table = RandomizationSlot.__table__
        connection.execute(
            update(table)
            .where(table.c.id == bindparam("slot_id"), table.c.dummy_sequence.is_(None))
            .values(dummy_sequence=bindparam("dummy")),
            [
                {"slot_id": slot_id, "dummy": dummy}
                for (slot_id, _), dummy in zip(slots, _shuffled([sequence for _, sequence in slots]))
            ],
        )
    missing = db.session.execute(
        select(Participant.id, RandomizationSlot.dummy_sequence)
        .outerjoin(RandomizationSlot, RandomizationSlot.participant_id == Participant.id)
        .where(Participant.study_id == study.id, Participant.dummy_sequence.is_(None))
    ).all()
    if missing:
        sequences = list(protocol.sequences)
        table = Participant.__table__
        connection.execute(
            update(table)
            .where(table.c.id == bindparam("participant_id"), table.c.dummy_sequence.is_(None))
            .values(dummy_sequence=bindparam("dummy")),
            [
                {"participant_id": participant_id, "dummy": from_slot or _draw.choice(sequences)}
                for participant_id, from_slot in missing
            ],
        )
    return len(missing)
