"""A participant's own answers, for them to keep (ICH E6(R3); the EMA's guideline on computerised
systems): the export's own ``responses`` rows for that participant, with every question and
answer in their language and times on their clock. Nothing of the allocation is in it."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from ..protocol.model import in_language
from ..study.trial import protocol_of
from ..vocabulary import ItemType
from .bundle import snapshot
from .schema import TABLES
from .tables import ExportContext, responses

OWN_COLUMNS = [
    "infusion",
    "time_point",
    "time_point_label",
    "answered",
    "instrument",
    "item",
    "question",
    "answer",
    "answer_text",
]


def own_answers(study, participant, now: datetime, severity_text=str) -> list[dict]:
    """Every answer the participant gave, side effects included, in time order: one dict per
    answer with OWN_COLUMNS, in the participant's language (``severity_text`` names a side
    effect's severity in it: the caller's translation)."""
    protocol = protocol_of(study.current_protocol_version)
    language = participant.language
    zone = ZoneInfo(participant.timezone)
    names = [column.name for column in TABLES["responses"]]
    with snapshot() as connection:
        ctx = ExportContext(
            connection=connection,
            study=study,
            protocol=protocol,
            blinded=True,
            now=now,
            participant_code=participant.code,
            allocation_withheld=True,
        )
        raw = [dict(zip(names, row)) for row in responses(ctx, list(protocol.instruments))]
    raw.sort(key=lambda row: (row["collected_utc"], row["timepoint_order"] or 0))
    items = {
        (instrument.id, item.id): (instrument, item)
        for instrument in protocol.instruments.values()
        for item in instrument.items
    }
    rows = []
    for row in raw:
        timepoint = protocol.timepoint(row["timepoint"]) if row["timepoint"] in ctx.order else None
        question, answer_text, checklist = _question_and_answer(
            items, row["instrument"], row["item"], row["value"], language
        )
        if checklist:
            answer_text = severity_text(answer_text)
        rows.append(
            {
                "infusion": row["period"],
                "time_point": row["timepoint"],
                "time_point_label": in_language(timepoint.participant_label or timepoint.label, language)
                if timepoint
                else "",
                "answered": row["collected_utc"].astimezone(zone).isoformat(timespec="seconds"),
                "instrument": row["instrument"],
                "item": row["item"],
                "question": question,
                "answer": row["value"],
                "answer_text": answer_text,
            }
        )
    return rows


def _question_and_answer(items, instrument_id: str, item_id: str, value, language: str) -> tuple[str, str, bool]:
    """The question as the participant read it, the answer by its label where it has one, and
    whether it is one side effect of a checklist (its answer a severity)."""
    found = items.get((instrument_id, item_id))
    if found is None and "." in item_id:  # one term of a side-effect checklist: symptoms.headache
        parent, term_code = item_id.split(".", 1)
        found_parent = items.get((instrument_id, parent))
        if found_parent is not None:
            term = next((t for t in found_parent[1].terms if t.code == term_code), None)
            if term is not None:
                return in_language(term.label, language), value or "", True
    if found is None:
        return f"{instrument_id}.{item_id}", value or "", False
    _, item = found
    if item.type == ItemType.SINGLE_CHOICE:
        label = next((in_language(c.label, language) for c in item.choices if c.code == value), value or "")
        return in_language(item.text, language), label, False
    return in_language(item.text, language), value or "", False
