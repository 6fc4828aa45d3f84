"""FHIR R4: the protocol's instruments as ``Questionnaire`` resources and every entry as one
``QuestionnaireResponse`` per instrument, written as NDJSON (one resource a line, as FHIR Bulk
Data does).

Subjects are referenced by the pseudonymous participant code only; answers keep the protocol's
item ids as ``linkId`` and its codes as ``Coding`` values, so a receiving system can map them.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import orjson
from sqlalchemy import select

from ..models import Assessment, ItemValue, Participant, Period, Submission
from ..protocol import Protocol
from ..vocabulary import ItemType, Severity
from .tables import ExportContext, answers_object
from .writers import iso_utc

SEVERITIES = tuple(Severity)


_NOT_IN_AN_ID = re.compile(r"[^A-Za-z0-9.-]")


def fhir_id(*parts: str) -> str:
    """A valid FHIR id ([A-Za-z0-9-.]{1,64}) from the parts."""
    return _NOT_IN_AN_ID.sub("-", "-".join(parts))[:64]


def questionnaire_url(protocol: Protocol, instrument_id: str) -> str:
    return _questionnaire_url(protocol.id, instrument_id)


def _system(protocol: Protocol, what: str) -> str:
    return _system_url(protocol.id, what)


# Cached by the protocol's id: an export of 5,000 participants asks for these 1.5 million times.
@lru_cache(maxsize=512)
def _questionnaire_url(protocol_id: str, instrument_id: str) -> str:
    return f"urn:diary:{fhir_id(protocol_id)}:questionnaire:{fhir_id(instrument_id)}"


@lru_cache(maxsize=512)
def _system_url(protocol_id: str, what: str) -> str:
    return f"urn:diary:{fhir_id(protocol_id)}:{what}"


def questionnaires(protocol: Protocol):
    for instrument in protocol.instruments.values():
        items = []
        for item in instrument.items:
            entry = {"linkId": item.id, "text": item.text, "required": bool(item.required)}
            if item.type in (ItemType.VAS, ItemType.NRS):
                low, high = item.range
                entry.update(
                    type="integer",
                    extension=[
                        {"url": "http://hl7.org/fhir/StructureDefinition/minValue", "valueInteger": low},
                        {"url": "http://hl7.org/fhir/StructureDefinition/maxValue", "valueInteger": high},
                    ],
                )
            elif item.type == ItemType.SINGLE_CHOICE:
                entry.update(
                    type="choice",
                    answerOption=[
                        {
                            "valueCoding": {
                                "system": _system(protocol, item.id),
                                "code": choice.code,
                                "display": choice.label,
                            }
                        }
                        for choice in item.choices
                    ],
                )
            elif item.type == ItemType.SEVERITY_CHECKLIST:
                entry.update(
                    type="group",
                    item=[
                        {
                            "linkId": f"{item.id}.{term.code}",
                            "text": term.label,
                            "type": "choice",
                            "required": False,
                            "answerOption": [
                                {"valueCoding": {"system": _system(protocol, "severity"), "code": severity}}
                                for severity in SEVERITIES
                            ],
                        }
                        for term in item.terms
                    ],
                )
            else:
                entry.update(type="text", maxLength=item.max_length or None)
                if entry["maxLength"] is None:
                    del entry["maxLength"]
            items.append(entry)
        yield {
            "resourceType": "Questionnaire",
            "id": fhir_id(protocol.id, instrument.id),
            "url": questionnaire_url(protocol, instrument.id),
            "version": str(protocol.version),
            "name": re.sub(r"[^A-Za-z0-9]", "", instrument.id.title()) or "Instrument",
            "title": instrument.title,
            "status": "active",
            "subjectType": ["Patient"],
            "item": items,
        }


def _answer(protocol: Protocol, item, value: str):
    if item.type in (ItemType.VAS, ItemType.NRS):
        return {"valueInteger": int(value)}
    if item.type == ItemType.SINGLE_CHOICE:
        label = next((c.label for c in item.choices if c.code == value), None)
        coding = {"system": _system(protocol, item.id), "code": value}
        if label:
            coding["display"] = label
        return {"valueCoding": coding}
    return {"valueString": value}


def questionnaire_responses(ctx: ExportContext):
    """One resource per entry and instrument, in participant, period and time order."""
    protocol = ctx.protocol
    instruments = protocol.instruments
    # One row per entry and instrument, its answers as one JSON object (item -> value): the
    # database groups them, so Python reads a quarter of the rows it would read an answer a row.
    query = (
        select(
            Participant.code,
            Period.number,
            Assessment.timepoint,
            Submission.collected_at,
            Submission.source,
            ItemValue.instrument,
            answers_object(ItemValue.item, ItemValue.value),
        )
        .join(Period, Period.participant_id == Participant.id)
        .join(Assessment, Assessment.period_id == Period.id)
        .join(Submission, Submission.assessment_id == Assessment.id)
        .join(ItemValue, ItemValue.submission_id == Submission.id)
        .where(ctx.in_scope)
        # Grouped by each joined table's key, so PostgreSQL lets the query read their columns.
        .group_by(Participant.id, Period.id, Assessment.id, Submission.id, ItemValue.instrument)
        .order_by(Participant.code, Period.number, Assessment.target, ItemValue.instrument)
    )
    severity = _system(protocol, "severity")
    # Worked out once, not for each of the 230,000 resources of 5,000 participants.
    participant, entry, entered_by = (_system(protocol, what) for what in ("participant", "entry", "source"))
    versioned = {name: f"{questionnaire_url(protocol, name)}|{protocol.version}" for name in instruments}
    # Each checklist's terms as (link id, label), worked out once: 380,000 resources for 5,000
    # participants, each checklist with ten terms.
    terms = {
        item.id: [(f"{item.id}.{term.code}", term.label) for term in item.terms]
        for instrument in instruments.values()
        for item in instrument.items
        if item.type == ItemType.SEVERITY_CHECKLIST
    }
    for code, number, timepoint, collected_at, source, instrument_id, answers in ctx.stream(query):
        instrument = instruments.get(instrument_id)
        if instrument is None or instrument_id in ctx.withheld:
            continue
        values = orjson.loads(answers)
        items = []
        for item in instrument.items:
            if item.type == ItemType.SEVERITY_CHECKLIST:
                answered = [
                    {
                        "linkId": link,
                        "text": label,
                        "answer": [{"valueCoding": {"system": severity, "code": values[link]}}],
                    }
                    for link, label in terms[item.id]
                    if values.get(link)
                ]
                if answered:
                    items.append({"linkId": item.id, "text": item.text, "item": answered})
                continue
            value = values.get(item.id)
            if value in (None, "") or (ctx.no_free_text and (instrument.id, item.id) in ctx.free_text_items):
                continue
            items.append({"linkId": item.id, "text": item.text, "answer": [_answer(protocol, item, value)]})
        resource = {
            "resourceType": "QuestionnaireResponse",
            "id": fhir_id(code, f"p{number}", timepoint, instrument_id),
            "questionnaire": versioned[instrument_id],
            "status": "completed",
            "subject": {"identifier": {"system": participant, "value": code}},
            "authored": iso_utc(collected_at),
            "identifier": {"system": entry, "value": f"{code}/{number}/{timepoint}"},
            # Who entered it: the participant, or staff from a named source (paper, phone...).
            "extension": [{"url": entered_by, "valueCode": source}],
        }
        if items:
            resource["item"] = items
        yield resource


def write_fhir(out_dir: Path, ctx: ExportContext, progress=None) -> dict[str, int]:
    folder = Path(out_dir) / "fhir"
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, resources in (
        ("Questionnaire", questionnaires(ctx.protocol)),
        ("QuestionnaireResponse", questionnaire_responses(ctx)),
    ):
        count = 0
        # orjson writes what json.dumps(ensure_ascii=False, separators=(",", ":")) writes, as
        # UTF-8 bytes (tests/test_export_pace.py holds the two equal).
        with open(folder / f"{name}.ndjson", "wb") as handle:
            for resource in resources:
                handle.write(orjson.dumps(resource, option=orjson.OPT_APPEND_NEWLINE))
                count += 1
        counts[name] = count
        if progress:
            progress(f"fhir/{name}", count)
    return counts
