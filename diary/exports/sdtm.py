"""SDTM-shaped domains (DM, SE, EX, QS, AE) for a sponsor's data manager, as CSV and as CDISC
Dataset-JSON v1.1.

They are built from the same export context as the analysis tables, so they carry the same
allocation (true or dummy), the same blinding and the same free-text choice. Dates follow SDTM's
habit: ISO 8601 on the participant's own clock as collected (no offset), and study days counted
from the first infusion (RFSTDTC), day 1 being that day and no day 0.

The variables, names and codes of the SDTM Implementation Guide 3.4 for these domains, described
by a Define-XML 2.1 file (``define.py``) written beside them; no controlled-terminology review,
which a sponsor adds.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from itertools import islice
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from ..dosing.assessments import read_model
from ..models import Assessment, ItemValue, Participant, Period, Submission
from ..settings import setting
from ..vocabulary import WITHDRAWAL_LABELS, ItemType, WithdrawalReason
from .define import DomainFile, DomainProfile, write_define
from .tables import ExportContext, responses_query, side_effects

DATASET_JSON_VERSION = "1.1.0"


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    type: str = "string"  # Dataset-JSON dataType: string, integer, double, datetime
    key: int | None = None  # keySequence


def _vars(*specs) -> list[Variable]:
    return [Variable(*spec) for spec in specs]


COMMON = (
    ("STUDYID", "Study Identifier", "string", 1),
    ("DOMAIN", "Domain Abbreviation"),
    ("USUBJID", "Unique Subject Identifier", "string", 2),
)
DOMAINS: dict[str, tuple[str, list[Variable]]] = {
    "DM": (
        "Demographics",
        _vars(
            *COMMON,
            ("SUBJID", "Subject Identifier for the Study"),
            ("RFSTDTC", "Subject Reference Start Date/Time", "datetime"),
            ("RFENDTC", "Subject Reference End Date/Time", "datetime"),
            ("RFXSTDTC", "Date/Time of First Study Treatment", "datetime"),
            ("RFXENDTC", "Date/Time of Last Study Treatment", "datetime"),
            ("RFICDTC", "Date/Time of Informed Consent", "datetime"),
            ("SITEID", "Study Site Identifier"),
            ("BRTHDTC", "Date/Time of Birth", "datetime"),
            ("AGE", "Age", "integer"),
            ("AGEU", "Age Units"),
            ("SEX", "Sex"),
            ("ARMCD", "Planned Arm Code"),
            ("ARM", "Description of Planned Arm"),
            ("ACTARMCD", "Actual Arm Code"),
            ("ACTARM", "Description of Actual Arm"),
            ("ARMNRS", "Reason Arm and/or Actual Arm is Null"),
            ("ACTARMUD", "Description of Unplanned Actual Arm"),
            ("COUNTRY", "Country"),
        ),
    ),
    "SE": (
        "Subject Elements",
        _vars(
            *COMMON,
            ("SESEQ", "Sequence Number", "integer", 3),
            ("ETCD", "Element Code"),
            ("ELEMENT", "Description of Element"),
            ("TAETORD", "Planned Order of Element within Arm", "integer"),
            ("EPOCH", "Epoch"),
            ("SESTDTC", "Start Date/Time of Element", "datetime"),
            ("SEENDTC", "End Date/Time of Element", "datetime"),
            ("SESTDY", "Study Day of Start of Element", "integer"),
            ("SEENDY", "Study Day of End of Element", "integer"),
        ),
    ),
    "EX": (
        "Exposure",
        _vars(
            *COMMON,
            ("EXSEQ", "Sequence Number", "integer", 3),
            ("EXTRT", "Name of Treatment"),
            ("EXDOSE", "Dose", "double"),
            ("EXDOSU", "Dose Units"),
            ("EXDOSFRM", "Dose Form"),
            ("EXROUTE", "Route of Administration"),
            ("VISITNUM", "Visit Number", "integer"),
            ("VISIT", "Visit Name"),
            ("EPOCH", "Epoch"),
            ("EXSTDTC", "Start Date/Time of Treatment", "datetime"),
            ("EXENDTC", "End Date/Time of Treatment", "datetime"),
            ("EXSTDY", "Study Day of Start of Treatment", "integer"),
            ("EXENDY", "Study Day of End of Treatment", "integer"),
        ),
    ),
    "QS": (
        "Questionnaires",
        _vars(
            *COMMON,
            ("QSSEQ", "Sequence Number", "integer", 3),
            ("QSTESTCD", "Question Short Name"),
            ("QSTEST", "Question Name"),
            ("QSCAT", "Category of Question"),
            ("QSORRES", "Finding in Original Units"),
            ("QSSTRESC", "Character Result/Finding in Std Format"),
            ("QSSTRESN", "Numeric Finding in Standard Units", "double"),
            ("QSLOBXFL", "Last Observation Before Exposure Flag"),
            ("VISITNUM", "Visit Number", "integer"),
            ("VISIT", "Visit Name"),
            ("EPOCH", "Epoch"),
            ("QSDTC", "Date/Time of Finding", "datetime"),
            ("QSDY", "Study Day of Finding", "integer"),
        ),
    ),
    "AE": (
        "Adverse Events",
        _vars(
            *COMMON,
            ("AESEQ", "Sequence Number", "integer", 3),
            ("AETERM", "Reported Term for the Adverse Event"),
            ("AEDECOD", "Dictionary-Derived Term"),
            ("AECAT", "Category for Adverse Event"),
            ("AEPRESP", "Pre-Specified Adverse Event"),
            ("AESEV", "Severity/Intensity"),
            ("AESER", "Serious Event"),
            ("AEACN", "Action Taken with Study Treatment"),
            ("AEREL", "Causality"),
            ("AEOUT", "Outcome of Adverse Event"),
            ("AESTDTC", "Start Date/Time of Adverse Event", "datetime"),
            ("AEENDTC", "End Date/Time of Adverse Event", "datetime"),
            ("AESTDY", "Study Day of Start of Adverse Event", "integer"),
            ("AEENDY", "Study Day of End of Adverse Event", "integer"),
            ("EPOCH", "Epoch"),
        ),
    ),
    "SV": (
        "Subject Visits",
        _vars(
            *COMMON,
            ("VISITNUM", "Visit Number", "integer", 3),
            ("VISIT", "Visit Name"),
            ("EPOCH", "Epoch"),
            ("SVSTDTC", "Start Date/Time of Observation", "datetime"),
            ("SVENDTC", "End Date/Time of Observation", "datetime"),
            ("SVSTDY", "Study Day of Start of Observation", "integer"),
            ("SVENDY", "Study Day of End of Observation", "integer"),
        ),
    ),
    "DS": (
        "Disposition",
        _vars(
            *COMMON,
            ("DSSEQ", "Sequence Number", "integer", 3),
            ("DSTERM", "Reported Term for the Disposition Event"),
            ("DSDECOD", "Standardized Disposition Term"),
            ("DSCAT", "Category for Disposition Event"),
            ("DSSCAT", "Subcategory for Disposition Event"),
            ("EPOCH", "Epoch"),
            ("DSSTDTC", "Start Date/Time of Disposition Event", "datetime"),
            ("DSSTDY", "Study Day of Start of Disposition Event", "integer"),
        ),
    ),
}

# The trial design domains: the planned trial, from the protocol (no subject in them).
DESIGN = ("STUDYID", "Study Identifier", "string", 1), ("DOMAIN", "Domain Abbreviation")
DOMAINS.update(
    {
        "TE": (
            "Trial Elements",
            _vars(
                *DESIGN,
                ("ETCD", "Element Code", "string", 2),
                ("ELEMENT", "Description of Element"),
                ("TESTRL", "Rule for Start of Element"),
                ("TEENRL", "Rule for End of Element"),
            ),
        ),
        "TA": (
            "Trial Arms",
            _vars(
                *DESIGN,
                ("ARMCD", "Planned Arm Code", "string", 2),
                ("ARM", "Description of Planned Arm"),
                ("TAETORD", "Planned Order of Element within Arm", "integer", 3),
                ("ETCD", "Element Code"),
                ("ELEMENT", "Description of Element"),
                ("TABRANCH", "Branch"),
                ("EPOCH", "Epoch"),
            ),
        ),
        "TV": (
            "Trial Visits",
            _vars(
                *DESIGN,
                ("VISITNUM", "Visit Number", "integer", 2),
                ("VISIT", "Visit Name"),
                ("TVSTRL", "Visit Start Rule"),
                ("TVENRL", "Visit End Rule"),
            ),
        ),
        "TS": (
            "Trial Summary",
            _vars(
                *DESIGN,
                ("TSSEQ", "Sequence Number", "integer", 3),
                ("TSPARMCD", "Trial Summary Parameter Short Name", "string", 2),
                ("TSPARM", "Trial Summary Parameter"),
                ("TSVAL", "Parameter Value"),
            ),
        ),
    }
)

# The stop reasons as CDISC's NCOMPLT codelist words them.
DSDECOD = {
    WithdrawalReason.PARTICIPANT_DECISION: "WITHDRAWAL BY SUBJECT",
    WithdrawalReason.ADVERSE_EVENT: "ADVERSE EVENT",
    WithdrawalReason.LOST_TO_FOLLOW_UP: "LOST TO FOLLOW-UP",
    WithdrawalReason.INVESTIGATOR_DECISION: "PHYSICIAN DECISION",
    WithdrawalReason.PROTOCOL_DEVIATION: "PROTOCOL DEVIATION",
    WithdrawalReason.OTHER: "OTHER",
}


@dataclass
class Subject:
    usubjid: str
    tz: ZoneInfo
    enrolled: datetime
    doses: dict[int, datetime]  # period -> infusion start (UTC)
    codes: dict[int, str]  # period -> treatment code under this export's allocation
    ends: dict[int, datetime]  # period -> when its last window closes
    sequence: str
    withdrawn: datetime | None
    site: str
    withdrawal_reason: str | None = None
    discontinued: datetime | None = None
    discontinuation_reason: str | None = None
    sex: str = "U"
    birth_year: int | None = None

    def __post_init__(self):
        # Worked out once: every QS, AE and SV record asks for its epoch and study day.
        self.first_dose = self.doses.get(1) or (min(self.doses.values()) if self.doses else None)
        self.epochs = [(start, f"TREATMENT {number}") for number, start in sorted(self.doses.items())]


def age_at(subject: Subject) -> int:
    """Age in whole years at consent (RFICDTC) from the year of birth alone: the year of consent
    minus the year of birth, which is one year more than the exact age until the birthday."""
    return subject.enrolled.astimezone(subject.tz).year - subject.birth_year


@lru_cache(maxsize=8192)
def local_dtc(moment: datetime | None, tz: ZoneInfo) -> str:
    """ISO 8601 on the participant's clock, as collected (SDTM keeps no offset). Cached: the
    answers of one entry share their time."""
    if moment is None:
        return ""
    return moment.astimezone(tz).strftime("%Y-%m-%dT%H:%M:%S")


def study_day(moment: datetime | None, subject: Subject) -> int | None:
    """SDTM study day: day 1 is the first infusion's date, the day before it -1 (no day 0)."""
    first = subject.first_dose
    if moment is None or first is None:
        return None
    return _study_day(moment, first, subject.tz)


@lru_cache(maxsize=8192)
def _study_day(moment: datetime, first: datetime, tz: ZoneInfo) -> int:
    days = (moment.astimezone(tz).date() - first.astimezone(tz).date()).days
    return days + 1 if days >= 0 else days


def epoch(moment: datetime | None, subject: Subject) -> str:
    """SCREENING before the first infusion, then TREATMENT n from infusion n on."""
    if moment is None:
        return ""
    current = "SCREENING"
    for start, name in subject.epochs:
        if moment >= start:
            current = name
    return current


class Builder:
    def __init__(self, ctx: ExportContext):
        self.ctx = ctx
        self.studyid = ctx.protocol.id
        self.subjects = self._subjects()

    def _subjects(self) -> dict[str, Subject]:
        connection = self.ctx.connection
        people = connection.execute(
            select(
                Participant.id,
                Participant.code,
                Participant.timezone,
                Participant.enrolled_at,
                Participant.sequence,
                Participant.withdrawn_at,
                Participant.site,
                Participant.withdrawal_reason,
                Participant.discontinued_at,
                Participant.discontinuation_reason,
                Participant.sex,
                Participant.birth_year,
            )
            .where(self.ctx.in_scope)
            .order_by(Participant.code)
        ).all()
        periods = connection.execute(
            select(
                Period.participant_id,
                Period.number,
                Period.treatment,
                Period.dose_start,
                func.max(Assessment.late_close),
            )
            .join(Assessment, Assessment.period_id == Period.id, isouter=True)
            .join(Participant, Participant.id == Period.participant_id)
            .where(self.ctx.in_scope)
            .group_by(Period.participant_id, Period.number, Period.treatment, Period.dose_start)
        ).all()
        by_participant: dict[int, list] = {}
        for row in periods:
            by_participant.setdefault(row[0], []).append(row)
        subjects = {}
        for person in people:
            doses, codes, ends = {}, {}, {}
            for _, number, treatment, dose_start, last_close in by_participant.get(person.id, []):
                # Blank when the allocation is withheld (a site's archive before unblinding).
                codes[number] = self.ctx.allocation(person.code, person.sequence, number, treatment)[1] or ""
                if dose_start is not None:
                    doses[number] = dose_start
                    ends[number] = last_close
            subjects[person.code] = Subject(
                usubjid=f"{self.studyid}-{person.code}",
                tz=ZoneInfo(person.timezone),
                enrolled=person.enrolled_at,
                doses=doses,
                codes=codes,
                ends=ends,
                sequence=self.ctx.sequence(person.code, person.sequence),
                withdrawn=person.withdrawn_at,
                site=person.site,
                withdrawal_reason=person.withdrawal_reason,
                discontinued=person.discontinued_at,
                discontinuation_reason=person.discontinuation_reason,
                sex=person.sex,
                birth_year=person.birth_year,
            )
        return subjects

    def _treatment_name(self, code: str) -> str:
        name = self.ctx.treatment(code)
        return name if name else f"TREATMENT {code}"

    def _period_end(self, subject: Subject, number: int) -> datetime | None:
        """An element ends where the next begins; the last at its last window, or at withdrawal."""
        end = subject.doses.get(number + 1) or subject.ends.get(number)
        if subject.withdrawn and end and subject.withdrawn < end:
            end = subject.withdrawn
        return end

    def dm(self):
        """SDTMIG 3.4's null rules for the arms: not treated, ACTARMCD and ACTARM are null and
        ARMNRS says why; treated along the planned sequence (fully or not), the actual arm is the
        planned one; any other order is UNPLAN, described in ACTARMUD. Withheld allocation: null."""
        sequences = self.ctx.protocol.sequences
        countries = setting("SITE_COUNTRIES", None) or {}
        for code, subject in self.subjects.items():
            doses = [subject.doses[n] for n in sorted(subject.doses)]
            planned = subject.sequence
            received = tuple(subject.codes[n] for n in sorted(subject.doses))
            arm = " then ".join(self._treatment_name(c) for c in sequences.get(planned, ()))
            actual_code = actual = unplanned = None
            reason = None if received else "ASSIGNED, NOT TREATED"
            if self.ctx.allocation_withheld:
                planned = arm = None
            elif received and tuple(sequences.get(planned, ()))[: len(received)] == received:
                actual_code, actual = planned, arm
            elif received:
                actual_code, actual = "UNPLAN", "Unplanned Treatment"
                unplanned = " then ".join(self._treatment_name(c) for c in received)
            last = self._period_end(subject, max(subject.doses)) if subject.doses else None
            yield [
                self.studyid,
                "DM",
                subject.usubjid,
                code,
                local_dtc(doses[0] if doses else None, subject.tz),
                local_dtc(last, subject.tz),
                local_dtc(doses[0] if doses else None, subject.tz),
                local_dtc(doses[-1] if doses else None, subject.tz),
                local_dtc(subject.enrolled, subject.tz),
                subject.site,
                str(subject.birth_year) if subject.birth_year else None,
                age_at(subject) if subject.birth_year else None,
                "YEARS" if subject.birth_year else None,
                subject.sex,
                planned,
                arm,
                actual_code,
                actual,
                reason,
                unplanned,
                countries.get(subject.site),
            ]

    def se(self):
        for subject in self.subjects.values():
            elements = [("SCRN", "Screening", "SCREENING", subject.enrolled, subject.doses.get(1) or subject.withdrawn)]
            for number in sorted(subject.doses):
                code = subject.codes[number]
                elements.append(
                    (
                        code or None,
                        self._treatment_name(code) if code else None,
                        f"TREATMENT {number}",
                        subject.doses[number],
                        self._period_end(subject, number),
                    )
                )
            for seq, (etcd, element, epoch_name, start, end) in enumerate(elements, start=1):
                yield [
                    self.studyid,
                    "SE",
                    subject.usubjid,
                    seq,
                    etcd,
                    element,
                    seq,
                    epoch_name,
                    local_dtc(start, subject.tz),
                    local_dtc(end, subject.tz),
                    study_day(start, subject),
                    study_day(end, subject),
                ]

    def ex(self):
        """One record per infusion. Dose and unit differ between the drugs, so they are given only
        where the drug names are (after unblinding); form and route when every treatment shares
        them or the treatment is known. The end is the start plus the protocol's infusion length."""
        first = self.ctx.protocol.timepoints[0].code
        doses = self.ctx.protocol.doses

        def shared(attribute):
            values = {getattr(dose, attribute) for dose in doses.values()}
            return values.pop() if len(values) == 1 and len(doses) == len(self.ctx.protocol.treatments) else None

        for subject in self.subjects.values():
            for seq, number in enumerate(sorted(subject.doses), start=1):
                start = subject.doses[number]
                code = subject.codes[number]
                dose = doses.get(code)
                named = bool(code) and self.ctx.treatment(code) is not None
                duration = dose.duration if dose else shared("duration")
                end = start + duration.nominal if duration else None
                yield [
                    self.studyid,
                    "EX",
                    subject.usubjid,
                    seq,
                    self._treatment_name(code) if code else "MASKED",
                    dose.dose if dose and named else None,
                    (dose.unit or None) if dose and named else None,
                    (dose.form if dose else shared("form")) or None,
                    (dose.route if dose else shared("route")) or None,
                    # The visit of the infusion day, numbered as QS numbers it (the pre-dose entry).
                    number * 100 + self.ctx.order[first],
                    f"PERIOD {number} {first}",
                    f"TREATMENT {number}",
                    local_dtc(start, subject.tz),
                    local_dtc(end, subject.tz) if end else None,
                    study_day(start, subject),
                    study_day(end, subject) if end else None,
                ]

    def qs(self):
        """One record per VAS or NRS answer: exactly the scored items of ``responses``."""
        items = {
            (instrument.id, item.id): (instrument, item)
            for instrument in self.ctx.protocol.instruments.values()
            for item in instrument.items
            if item.type in (ItemType.VAS, ItemType.NRS) and instrument.id not in self.ctx.withheld
        }
        # The responses table's rows, reading only the columns QS writes (each time read is
        # converted: 140,000 rows for 5,000 participants).
        query = (
            responses_query(self.ctx, sorted({instrument for instrument, _ in items}))
            .with_only_columns(
                Participant.code,
                Period.number,
                Assessment.timepoint,
                ItemValue.instrument,
                ItemValue.item,
                ItemValue.value,
                Submission.collected_at,
            )
            .where(ItemValue.item.in_(sorted({item for _, item in items})))
            .order_by(Participant.code, Period.number, Assessment.target, ItemValue.id)
        )
        order = self.ctx.order
        sequence, code_seen, held = 0, None, []
        for code, period, timepoint, instrument_id, item_id, value, collected in self.ctx.stream(query):
            found = items.get((instrument_id, item_id))
            if found is None or value is None:
                continue
            instrument, item = found
            if code != code_seen:
                yield from _flag_last_before_exposure(held)
                subject, code_seen, sequence, held = self.subjects[code], code, 0, []
            sequence += 1
            held.append(
                (
                    subject,
                    collected,
                    [
                        self.studyid,
                        "QS",
                        subject.usubjid,
                        sequence,
                        item_id.upper()[:8],
                        item.text[:40],
                        instrument.title,
                        value,
                        value,
                        float(value),
                        None,
                        period * 100 + order.get(timepoint, 0),
                        f"PERIOD {period} {timepoint}",
                        epoch(collected, subject),
                        local_dtc(collected, subject.tz),
                        study_day(collected, subject),
                    ],
                )
            )
        yield from _flag_last_before_exposure(held)

    def ae(self):
        labels = {
            term.code: term.label
            for instrument in self.ctx.protocol.instruments.values()
            for item in instrument.items
            for term in item.terms
        }
        sequence: dict[str, int] = {}
        for row in side_effects(self.ctx):
            code, term, severity, solicited, verbatim, coded, reported = row[0], *row[6:12]
            subject = self.subjects[code]
            sequence[code] = sequence.get(code, 0) + 1
            # AETERM is never empty: the participant's words, or (free text withheld) the coded
            # term, or a placeholder saying the words were withheld.
            reported_term = labels.get(term, "") if solicited else (verbatim or coded or "OTHER (VERBATIM WITHHELD)")
            yield [
                self.studyid,
                "AE",
                subject.usubjid,
                sequence[code],
                reported_term,
                coded,
                "SOLICITED" if solicited else "UNSOLICITED",
                "Y" if solicited else "",
                (severity or "").upper(),
                # Seriousness, action, causality, outcome and end are not collected by the diary
                # (the site's AE form holds them): null, with the reason in define.xml.
                None,
                None,
                None,
                None,
                local_dtc(reported, subject.tz),
                None,
                study_day(reported, subject),
                None,
                epoch(reported, subject),
            ]

    def sv(self):
        """One record per visit a subject had: each time point with an entry, numbered as QS
        numbers it; the pre-dose time point's visit also spans the infusion (EX's visit)."""
        first = self.ctx.protocol.timepoints[0].code
        order = self.ctx.order
        entries = self.ctx.stream(
            read_model(Participant.code, Period.number.label("period"), Assessment.timepoint, Submission.collected_at)
            .where(self.ctx.in_scope, Submission.id.is_not(None))
            .order_by(Participant.code, Period.number, Assessment.target),
            named=True,
        )
        visits: dict[tuple[str, int], list] = {}
        for row in entries:
            visits.setdefault((row.code, row.period * 100 + order.get(row.timepoint, 0)), [row.timepoint, []])[
                1
            ].append(row.collected_at)
        for code, subject in self.subjects.items():
            for number, start in subject.doses.items():
                visits.setdefault((code, number * 100 + order[first]), [first, []])[1].append(start)
        for (code, visitnum), (timepoint, moments) in sorted(visits.items()):
            subject = self.subjects[code]
            begin, end = min(moments), max(moments)
            yield [
                self.studyid,
                "SV",
                subject.usubjid,
                visitnum,
                f"PERIOD {visitnum // 100} {timepoint}",
                epoch(begin, subject),
                local_dtc(begin, subject.tz),
                local_dtc(end, subject.tz),
                study_day(begin, subject),
                study_day(end, subject),
            ]

    # --- The trial design, from the protocol ---------------------------------------------------

    def _element(self, code: str) -> str:
        return self._treatment_name(code)

    def te(self):
        protocol = self.ctx.protocol
        yield [self.studyid, "TE", "SCRN", "Screening", "Informed consent", "Start of the first infusion"]
        for code in sorted(protocol.treatments):
            yield [
                self.studyid,
                "TE",
                code,
                self._element(code),
                f"Start of an infusion of treatment {code}",
                f"Start of the next infusion, or the close of the last diary window of this one "
                f"(infusions at least {protocol.min_days_between_doses} days apart)",
            ]

    def ta(self):
        for arm, codes in sorted(self.ctx.protocol.sequences.items()):
            description = " then ".join(self._element(c) for c in codes)
            yield [self.studyid, "TA", arm, description, 1, "SCRN", "Screening", f"Randomized to {arm}", "SCREENING"]
            for order, code in enumerate(codes, start=2):
                yield [
                    self.studyid,
                    "TA",
                    arm,
                    description,
                    order,
                    code,
                    self._element(code),
                    None,
                    f"TREATMENT {order - 1}",
                ]

    def tv(self):
        protocol = self.ctx.protocol
        order = self.ctx.order
        for number in range(1, protocol.periods + 1):
            for timepoint in protocol.timepoints:
                window = timepoint.window
                close = (
                    f"{_offset_text(window.close)} from the start of infusion {number}"
                    if window.close is not None
                    else f"the start of infusion {number + 1}"
                    if number < protocol.periods
                    else f"{_offset_text(window.fallback_close)} from the start of infusion {number}"
                    if window.fallback_close is not None
                    else ""
                )
                yield [
                    self.studyid,
                    "TV",
                    number * 100 + order[timepoint.code],
                    f"PERIOD {number} {timepoint.code}",
                    f"Diary window opens {_offset_text(window.open)} from the start of infusion {number} "
                    f"({timepoint.label})",
                    f"Window closes at {close}" if close else None,
                ]

    def ts(self):
        protocol = self.ctx.protocol
        parameters = [
            ("TITLE", "Trial Title", protocol.title),
            ("STYPE", "Study Type", "INTERVENTIONAL"),
            ("INTMODEL", "Intervention Model", "CROSS-OVER" if protocol.periods > 1 else "PARALLEL"),
            ("RANDOM", "Trial is Randomized", "Y"),
            ("TBLIND", "Trial Blinding Schema", "DOUBLE BLIND"),
            ("NARMS", "Planned Number of Arms", str(len(protocol.sequences))),
            ("ROUTE", "Route of Administration", "INTRAVENOUS"),
        ]
        parameters += [
            ("TRT", "Investigational Therapy or Treatment", self._element(c)) for c in sorted(protocol.treatments)
        ]
        for number, (code, name, value) in enumerate(parameters, start=1):
            yield [self.studyid, "TS", number, code, name, value]

    def ds(self):
        """Consent, then how the subject left treatment and the study: discontinued treatment
        (the diary continued), withdrawn, or completed (every infusion given and its last window
        closed); a subject still in the study has only the consent record."""
        for subject in self.subjects.values():
            events = [
                ("INFORMED CONSENT OBTAINED", "INFORMED CONSENT OBTAINED", "PROTOCOL MILESTONE", "", subject.enrolled)
            ]
            if subject.discontinued:
                reason = subject.discontinuation_reason or WithdrawalReason.OTHER
                events.append(
                    (
                        WITHDRAWAL_LABELS[reason],
                        DSDECOD[reason],
                        "DISPOSITION EVENT",
                        "STUDY TREATMENT",
                        subject.discontinued,
                    )
                )
            if subject.withdrawn:
                reason = subject.withdrawal_reason or WithdrawalReason.OTHER
                events.append(
                    (
                        WITHDRAWAL_LABELS[reason],
                        DSDECOD[reason],
                        "DISPOSITION EVENT",
                        "STUDY PARTICIPATION",
                        subject.withdrawn,
                    )
                )
            elif len(subject.doses) == self.ctx.protocol.periods:
                end = self._period_end(subject, max(subject.doses))
                if end is not None and end <= self.ctx.now:
                    events.append(("COMPLETED", "COMPLETED", "DISPOSITION EVENT", "STUDY PARTICIPATION", end))
            for number, (term, decoded, category, subcategory, moment) in enumerate(events, start=1):
                yield [
                    self.studyid,
                    "DS",
                    subject.usubjid,
                    number,
                    term,
                    decoded,
                    category,
                    subcategory,
                    epoch(moment, subject) if category == "DISPOSITION EVENT" else "SCREENING",
                    local_dtc(moment, subject.tz),
                    study_day(moment, subject),
                ]


def _offset_text(offset) -> str:
    units = {"m": "minutes", "h": "hours", "d": "days"}
    return f"{offset.amount:+d} {units[offset.unit]}"


QSLOBXFL = 10  # the flag's place in a QS record


def _flag_last_before_exposure(held: list) -> list:
    """One subject's QS records with QSLOBXFL "Y" on the last one of each test before the first
    infusion (RFXSTDTC), as SDTMIG defines the baseline flag."""
    last: dict[str, list] = {}
    for subject, collected, record in held:
        first = min(subject.doses.values()) if subject.doses else None
        if first is not None and collected < first:
            last[record[4]] = record
    for record in last.values():
        record[QSLOBXFL] = "Y"
    return [record for _, _, record in held]


JSON_TYPES = {"integer": int, "double": float}


def write_domains(
    out_dir: Path, ctx: ExportContext, *, now: datetime, app_version: str, progress=None
) -> dict[str, int]:
    """Write sdtm/<domain>.csv and sdtm/<domain>.json for each domain; return the row counts.

    Each row is written once, to the CSV and (as the Dataset-JSON row it reads back as) to a
    temporary file, while the counts and string lengths the Dataset-JSON header needs are taken;
    the JSON file is then the header followed by that file's rows, so memory stays flat.
    """
    folder = Path(out_dir) / "sdtm"
    folder.mkdir(parents=True, exist_ok=True)
    builder = Builder(ctx)
    # One encoder for every row: json.dumps builds a new one at each call (half its time here),
    # and writes the same text.
    encode = json.JSONEncoder(ensure_ascii=False).encode
    counts, domains = {}, []
    for name, (label, variables) in DOMAINS.items():
        profile, count = DomainProfile(variables), 0
        csv_path = folder / f"{name.lower()}.csv"
        # A JSON row holds what its CSV row reads back as: an empty cell is null, and a number's
        # text is converted to the number.
        numbers = [(index, JSON_TYPES[v.type]) for index, v in enumerate(variables) if v.type in JSON_TYPES]
        with (
            open(csv_path, "w", encoding="utf-8", newline="") as handle,
            tempfile.TemporaryFile("w+", encoding="utf-8") as json_rows,
        ):
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow([v.name for v in variables])
            rows = getattr(builder, name.lower())()
            # A batch at a time: one write to each file and one profile step for a thousand rows.
            while batch := [["" if value is None else str(value) for value in row] for row in islice(rows, 1000)]:
                profile.add(batch)
                writer.writerows(batch)
                json_text = []
                for cells in batch:
                    values = [cell or None for cell in cells]
                    for index, convert in numbers:
                        if values[index] is not None:
                            values[index] = convert(values[index])
                    json_text.append(("," if count else "") + "\n" + encode(values))
                    count += 1
                json_rows.write("".join(json_text))
            domains.append(DomainFile(name, label, variables, profile))
            header = dataset_json_header(
                name, label, variables, profile.lengths, count, ctx=ctx, now=now, app_version=app_version
            )
            with open(folder / f"{name.lower()}.json", "w", encoding="utf-8") as target:
                target.write(json.dumps(header, ensure_ascii=False)[:-1] + ', "rows": [')
                json_rows.seek(0)
                shutil.copyfileobj(json_rows, target)
                target.write("\n]}\n")
        counts[name] = count
        if progress:
            progress(f"sdtm/{name.lower()}", count)
    version = ctx.study.current_protocol_version
    write_define(
        folder,
        domains,
        study_oid=ctx.protocol.id,
        study_name=ctx.study.name,
        mdv=f"MDV.{ctx.protocol.id}.{version.version}",
        now=now,
        app_version=app_version,
        coding=ctx.protocol.coding,
    )
    return counts


def dataset_json_header(
    name: str,
    label: str,
    variables: list[Variable],
    lengths: list[int],
    records: int,
    *,
    ctx: ExportContext,
    now: datetime,
    app_version: str,
) -> dict:
    """A domain's CDISC Dataset-JSON v1.1 metadata (the rows follow it in the file).

    Missing values are null (an empty string is a value in Dataset-JSON); datetimes stay ISO 8601
    strings, as the standard asks.
    """
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    version = ctx.study.current_protocol_version
    columns = []
    for variable, length in zip(variables, lengths):
        column = {
            "itemOID": f"IT.{name}.{variable.name}",
            "name": variable.name,
            "label": variable.label,
            "dataType": variable.type,
        }
        if variable.type == "string":
            column["length"] = max(1, length)
        if variable.key:
            column["keySequence"] = variable.key
        columns.append(column)
    return {
        "datasetJSONCreationDateTime": stamp,
        "datasetJSONVersion": DATASET_JSON_VERSION,
        "fileOID": f"diary.{ctx.protocol.id}.{name}",
        "dbLastModifiedDateTime": stamp,
        "originator": "diary",
        "sourceSystem": {"name": "diary", "version": app_version},
        "studyOID": ctx.protocol.id,
        "metaDataVersionOID": f"MDV.{ctx.protocol.id}.{version.version}",
        "itemGroupOID": f"IG.{name}",
        "records": records,
        "name": name,
        "label": label,
        "columns": columns,
    }
