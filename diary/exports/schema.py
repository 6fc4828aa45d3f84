"""The export contract: every table, its columns, types, units and allowed values.

This one description drives the writers (column order, Parquet types) and the data dictionary,
so the files and the dictionary cannot disagree. Table and column names are a contract that
analysts' scripts rely on (DESIGN.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..vocabulary import AssessmentState, ParticipantStatus, Severity, Source, listed

STRING, INTEGER, NUMBER, BOOLEAN, DATETIME = "string", "integer", "number", "boolean", "datetime"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    unit: str = ""
    allowed: str = ""


PARTICIPANT = Column("participant_id", STRING, "Pseudonymous participant code (random; not derived from identity).")
SITE = Column("site", STRING, "Site code.")
# Columns whose allowed values come from the loaded protocol (see ``dictionary_rows``) say so
# here; the protocol's own codes replace this text in the dictionary.
FROM_PROTOCOL = "from the protocol"
SEQUENCE = Column("sequence", STRING, "Randomized sequence of masked treatments, in period order.",
                  allowed=FROM_PROTOCOL)
PERIOD = Column("period", INTEGER, "Dosing period (1 = first infusion).", allowed=FROM_PROTOCOL)
TREATMENT = Column("treatment", STRING, "Treatment of this period: the masked code until the study is "
                   "unblinded, the drug name after (see manifest.json 'blinded').", allowed=FROM_PROTOCOL)
TIMEPOINT = Column("timepoint", STRING, "Protocol time point code.", allowed=FROM_PROTOCOL)
SUBMITTED = Column("submitted_utc", DATETIME, "When the entry reached the server (ISO 8601, UTC). "
                   "Empty when nothing was entered.", unit="UTC")
COLLECTED = Column("collected_utc", DATETIME, "When the answers were given (ISO 8601, UTC): the same moment "
                   "as submitted_utc for a participant's own entry; the paper's date or the interview's time "
                   "for an entry made by staff. States, minutes_from_dose and the endpoints use it. Empty "
                   "when nothing was entered.", unit="UTC")
MINUTES = Column("minutes_from_dose", NUMBER, "Minutes from the infusion start to when the answers were "
                 "given (collected_utc; negative before the start). Empty when nothing was entered or the "
                 "infusion is not yet recorded.", unit="minutes")
SOURCE = Column("source", STRING, "Who entered the data: the participant on their phone, or staff on "
                "their behalf from the named source (with a reason in the audit trail).",
                allowed=listed(Source))


def _pct(day: str) -> Column:
    return Column(f"pct_change_{day}", NUMBER,
                  f"% change of the fatigue VAS from baseline at {day.upper()}: (vas_{day} - baseline_vas) / "
                  "baseline_vas x 100; negative = less fatigue. Empty when the baseline is missing or 0, "
                  f"or {day.upper()} was not entered.", unit="%")


CODE_BROKEN = Column("code_broken_utc", DATETIME, "When this participant's treatment code was broken for an "
                     "emergency (ISO 8601, UTC); the rest of the study stays blinded. Empty when it was not.",
                     unit="UTC")


def _hours(day: str) -> Column:
    return Column(f"hours_from_dose_{day}", NUMBER, f"Hours from the infusion start to when the {day.upper()} "
                  f"answers were given (collected_utc), as used in the endpoints. Empty when vas_{day} is.",
                  unit="hours")


TABLES: dict[str, list[Column]] = {
    "assessments": [
        PARTICIPANT, SITE, SEQUENCE, PERIOD, TREATMENT,
        Column("planned_dose_utc", DATETIME, "When the infusion was planned to start (ISO 8601, UTC). Empty "
               "when it was recorded without a plan.", unit="UTC"),
        Column("dose_start_utc", DATETIME, "Actual infusion start of the period (ISO 8601, UTC). Empty while "
               "only planned; windows then follow the planned start.", unit="UTC"),
        TIMEPOINT,
        Column("nominal_offset_min", INTEGER, "Target time of the time point after the infusion start, "
               "as the protocol states it.", unit="minutes"),
        Column("window_open_utc", DATETIME, "When the entry window opened (ISO 8601, UTC).", unit="UTC"),
        Column("window_close_utc", DATETIME, "When the entry window closed (ISO 8601, UTC); entries after it "
               "and inside the protocol's late grace are completed_late. Windows always follow the current "
               "infusion time.", unit="UTC"),
        Column("status", STRING, "State of the assessment at export time, judged by collected_utc: after_dose "
               "is a pre-dose entry given after the infusion started; out_of_window an entry a corrected "
               "infusion time left outside its window. Both are kept and left out of the endpoints.",
               allowed=listed(AssessmentState)),
        SUBMITTED, COLLECTED, MINUTES,
        Column("source", STRING, SOURCE.description + " Empty when nothing was entered.", allowed=SOURCE.allowed),
        CODE_BROKEN,
    ],
    "responses": [
        PARTICIPANT, SEQUENCE, PERIOD, TREATMENT, TIMEPOINT,
        Column("instrument", STRING, "Instrument id from the protocol (the side-effect checklist is in "
               "side_effects instead).", allowed=FROM_PROTOCOL),
        Column("item", STRING, "Item id within the instrument.", allowed=FROM_PROTOCOL),
        Column("value", STRING, "The answer as entered: a whole number for vas and nrs items, a code for "
               "choices, text for free text.", allowed=FROM_PROTOCOL),
        SUBMITTED, COLLECTED, MINUTES, SOURCE,
    ],
    "fatigue_endpoints": [
        PARTICIPANT, SEQUENCE, PERIOD, TREATMENT,
        Column("baseline_vas", INTEGER, "Fatigue VAS at BL of this period (the baseline). Empty when BL "
               "was not entered.", unit="mm (0-100)"),
        Column("vas_d1", INTEGER, "Fatigue VAS at D1. Empty when not entered.", unit="mm (0-100)"),
        Column("vas_d3", INTEGER, "Fatigue VAS at D3 (the primary time point). Empty when not entered.",
               unit="mm (0-100)"),
        Column("vas_d7", INTEGER, "Fatigue VAS at D7. Empty when not entered.", unit="mm (0-100)"),
        _pct("d1"), _pct("d3"), _pct("d7"),
        Column("responder_d3", BOOLEAN, "pct_change_d3 <= -20 (a reduction of at least 20%). Empty when "
               "pct_change_d3 is empty.", allowed="true; false"),
        Column("auc_pct_change_0_7d", NUMBER, "Trapezoidal area under the % change curve over hours 0-168 "
               "after the infusion start, using actual entry times, with BL at 0% at hour 0; entries after "
               "168 h are interpolated to 168 h, and the last value before 168 h is carried to 168 h. Empty "
               "when the baseline is missing or 0, or D7 was not entered.", unit="% x hours"),
        _hours("d1"), _hours("d3"), _hours("d7"),
        Column("status_d3", STRING, "State of the D3 assessment (the primary time point) at export time.",
               allowed=listed(AssessmentState)),
        Column("source_d3", STRING, "Who entered D3. " + SOURCE.description + " Empty when D3 was not entered.",
               allowed=listed(Source)),
        Column("auc_n_points", INTEGER, "Measured post-dose points the AUC stands on (up to 168 h, plus the "
               "first one after it, towards which the curve is interpolated). Empty when the AUC is.",
               unit="count"),
        Column("excluded_reason", STRING, "Entries of this period left out of the endpoints and why (a BL "
               "given after the infusion started; an entry a corrected infusion time left outside its "
               "window). Empty when nothing was excluded."),
        CODE_BROKEN,
    ],
    "side_effects": [
        PARTICIPANT, PERIOD, TREATMENT,
        Column("timepoint", STRING, TIMEPOINT.description, allowed=FROM_PROTOCOL),
        Column("term", STRING, "Side effect code from the solicited checklist, or 'other' for a free-text "
               "report.", allowed=FROM_PROTOCOL),
        Column("severity", STRING, "Severity as reported. Empty for free-text reports.",
               allowed=listed(Severity.reported())),
        Column("solicited", BOOLEAN, "true for a checklist answer, false for a free-text report.",
               allowed="true; false"),
        Column("verbatim", STRING, "The participant's own words for a free-text report."),
        Column("reported_utc", DATETIME, "When the participant reported it: the collection time of the entry "
               "that carried it (ISO 8601, UTC).", unit="UTC"),
        MINUTES,
    ],
    "adherence": [
        PARTICIPANT, PERIOD,
        Column("scheduled", INTEGER, "Assessments scheduled in the period, excluding not_applicable ones "
               "and optional time points (D2) that were not answered.", unit="count"),
        Column("completed", INTEGER, "Entered inside the window.", unit="count"),
        Column("completed_late", INTEGER, "Entered after the window closed, inside the protocol's grace.",
               unit="count"),
        Column("missed", INTEGER, "Window and grace passed with no valid entry: none was made, or a corrected "
               "infusion time left it outside its window (after_dose, out_of_window). Optional time points "
               "excluded.",
               unit="count"),
        Column("compliance_pct", NUMBER, "(completed + completed_late) / (completed + completed_late + missed) "
               "x 100. Empty when no window has passed yet.", unit="%"),
    ],
    # Only in an identified export, asked for by an authorised user (rule 7).
    "participants_identified": [
        PARTICIPANT, SITE,
        Column("email", STRING, "Email given for reminders. A direct identifier."),
        Column("phone", STRING, "Phone number, if given. A direct identifier."),
        Column("status", STRING, "Participant status at export time.", allowed=listed(ParticipantStatus)),
        Column("enrolled_utc", DATETIME, "When the participant was enrolled (ISO 8601, UTC).", unit="UTC"),
    ],
    "data_dictionary": [
        Column("table", STRING, "Table (file) name."),
        Column("column", STRING, "Column name."),
        Column("type", STRING, "Value type.", allowed="string; integer; number; boolean; datetime"),
        Column("unit", STRING, "Unit of the values, where they have one."),
        Column("allowed_values", STRING, "Codes or range the column may hold."),
        Column("description", STRING, "What the column means, and why a value may be empty."),
    ],
}


IDENTIFIED_ONLY = {"participants_identified"}


def protocol_allowed(protocol) -> dict[tuple[str | None, str], str]:
    """Allowed values that come from the protocol, by (table or None for every table, column)."""
    response_instruments = [i for i in protocol.instruments.values() if not i.side_effects]
    checklist_instruments = {i.id for i in protocol.instruments.values() if i.side_effects}
    terms = [t.code for i in protocol.instruments.values() for item in i.items for t in item.terms]
    treatments = list(protocol.treatments)
    values = []
    for instrument in response_instruments:
        for item in instrument.items:
            if item.type in ("vas", "nrs"):
                low, high = item.range
                values.append(f"{item.id}: {low}-{high}")
            elif item.type == "single_choice":
                values.append(f"{item.id}: {', '.join(c.code for c in item.choices)}")
            else:
                values.append(f"{item.id}: free text")
    return {
        (None, "timepoint"): listed(tp.code for tp in protocol.timepoints),
        ("side_effects", "timepoint"): listed(tp.code for tp in protocol.timepoints
                                              if checklist_instruments & set(tp.instruments)),
        (None, "sequence"): listed(protocol.sequences),
        (None, "period"): listed(range(1, protocol.periods + 1)),
        (None, "treatment"): f"{listed(treatments)} while blinded; drug names after unblinding",
        (None, "instrument"): listed(i.id for i in response_instruments),
        (None, "item"): listed(item.id for i in response_instruments for item in i.items),
        (None, "value"): listed(values),
        (None, "term"): listed(terms + ["other"]),
    }


def dictionary_rows(protocol, identified: bool = False):
    """Every column of every table in the bundle; codes from the protocol are listed from it, so a
    study's own protocol file yields its own dictionary."""
    allowed = protocol_allowed(protocol)
    for table, columns in TABLES.items():
        if table in IDENTIFIED_ONLY and not identified:
            continue
        for column in columns:
            values = column.allowed
            if values == FROM_PROTOCOL:
                values = allowed.get((table, column.name)) or allowed.get((None, column.name), "")
            yield (table, column.name, column.type, column.unit, values, column.description)
