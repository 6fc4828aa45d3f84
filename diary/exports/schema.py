"""The export contract: every table, its columns, types, units and allowed values.

This one description drives the writers (column order, Parquet types) and the data dictionary,
so the files and the dictionary cannot disagree. Table and column names are a contract that
analysts' scripts rely on (DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..vocabulary import (
    AssessmentState,
    DecidedBy,
    ItemType,
    ParticipantStatus,
    Role,
    Severity,
    SignatureStatus,
    Source,
    SubmissionMode,
    WithdrawalReason,
    listed,
)

STRING, INTEGER, NUMBER, BOOLEAN, DATETIME = "string", "integer", "number", "boolean", "datetime"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    unit: str = ""
    allowed: str = ""
    # How derived numbers are rounded; every other number is given at full precision.
    precision: str = ""
    # Free text a participant or staff member typed: it may carry a name, a phone number or an
    # email whatever the form asked, so it is flagged in the dictionary and blanked by
    # ``--no-free-text`` for sharing outside the site.
    free_text: bool = False


PARTICIPANT = Column("participant_id", STRING, "Pseudonymous participant code (random; not derived from identity).")
SITE = Column("site", STRING, "Site code.")
# Columns whose allowed values come from the loaded protocol (see ``dictionary_rows``) say so
# here; the protocol's own codes replace this text in the dictionary.
FROM_PROTOCOL = "from the protocol"
SEQUENCE = Column(
    "sequence", STRING, "Randomized sequence of masked treatments, in period order.", allowed=FROM_PROTOCOL
)
PERIOD = Column("period", INTEGER, "Dosing period (1 = first infusion).", allowed=FROM_PROTOCOL)
TREATMENT_CODE = Column(
    "treatment_code",
    STRING,
    "Masked treatment code of this period, always given. Before "
    "unblinding a blinded role's export carries the dummy allocation here and in sequence "
    "(see allocation_is_dummy).",
    allowed=FROM_PROTOCOL,
)
TREATMENT = Column(
    "treatment",
    STRING,
    "Drug name of this period. Empty until the study is unblinded "
    "(manifest.json 'blinded'); scripts written on blinded data use treatment_code.",
    allowed=FROM_PROTOCOL,
)
TIMEPOINT = Column("timepoint", STRING, "Protocol time point code.", allowed=FROM_PROTOCOL)
TIMEPOINT_ORDER = Column(
    "timepoint_order",
    INTEGER,
    "Position of the time point in the protocol (1 = the "
    "first, BL): sort by it, since the codes do not sort in time order.",
    allowed=FROM_PROTOCOL,
)
DUMMY = Column(
    "allocation_is_dummy",
    BOOLEAN,
    "TRUE when sequence and treatment_code are the dummy allocation "
    "(the randomization list's sequences shuffled once over the participants and stored, so blinded "
    "statisticians can write and test their programs on real data); FALSE when they are the true "
    "allocation (the unblinded role, or any role after unblinding).",
    allowed="TRUE; FALSE",
)
SUBMITTED = Column(
    "submitted_utc",
    DATETIME,
    "When the entry reached the server (ISO 8601, UTC). Empty when nothing was entered.",
    unit="UTC",
)
COLLECTED = Column(
    "collected_utc",
    DATETIME,
    "When the answers were given (ISO 8601, UTC): the same moment "
    "as submitted_utc for a participant's own entry; the paper's date or the interview's time "
    "for an entry made by staff. States, minutes_from_dose and the endpoints use it. Empty "
    "when nothing was entered.",
    unit="UTC",
)
MINUTES = Column(
    "minutes_from_dose",
    NUMBER,
    "Minutes from the infusion start to when the answers were "
    "given (collected_utc; negative before the start). Empty when nothing was entered or the "
    "infusion is not yet recorded.",
    unit="minutes",
    precision="rounded to 0.1 minute",
)
MODE = Column(
    "submission_mode",
    STRING,
    "How the entry reached the server: online (sent from the phone as it "
    "was made), offline_sync (made on the phone without a connection and sent when it came back; "
    "collected_utc is the phone's time of making it, corrected by the clock offset measured at "
    "sending) or staff (entered on the participant's behalf). Empty when nothing was entered.",
    allowed=listed(SubmissionMode),
)
SOURCE = Column(
    "source",
    STRING,
    "Who entered the data: the participant on their phone, or staff on "
    "their behalf from the named source (with a reason in the audit trail).",
    allowed=listed(Source),
)


CODE_BROKEN = Column(
    "code_broken_utc",
    DATETIME,
    "When this participant's treatment code was broken for an "
    "emergency (ISO 8601, UTC); the rest of the study stays blinded. Empty when it was not.",
    unit="UTC",
)


TABLES: dict[str, list[Column]] = {
    "assessments": [
        PARTICIPANT,
        SITE,
        SEQUENCE,
        PERIOD,
        TREATMENT_CODE,
        TREATMENT,
        Column(
            "planned_dose_utc",
            DATETIME,
            "When the infusion was planned to start (ISO 8601, UTC). Empty when it was recorded without a plan.",
            unit="UTC",
        ),
        Column(
            "dose_start_utc",
            DATETIME,
            "Actual infusion start of the period (ISO 8601, UTC). Empty while "
            "only planned; windows then follow the planned start.",
            unit="UTC",
        ),
        TIMEPOINT,
        TIMEPOINT_ORDER,
        Column(
            "nominal_offset_min",
            INTEGER,
            "Target time of the time point after the infusion start, as the protocol states it.",
            unit="minutes",
        ),
        Column("window_open_utc", DATETIME, "When the entry window opened (ISO 8601, UTC).", unit="UTC"),
        Column(
            "window_close_utc",
            DATETIME,
            "When the entry window closed (ISO 8601, UTC); entries after it "
            "and inside the protocol's late grace are completed_late. Windows always follow the current "
            "infusion time.",
            unit="UTC",
        ),
        Column(
            "status",
            STRING,
            "State of the assessment at export time, judged by collected_utc: after_dose "
            "is a pre-dose entry given after the infusion started; out_of_window an entry a corrected "
            "infusion time left outside its window. Both are kept and left out of the endpoints. "
            "not_done: an optional time point (such as D2) left unanswered, which is not missed.",
            allowed=listed(list(AssessmentState) + ["not_done"]),
        ),
        SUBMITTED,
        COLLECTED,
        MINUTES,
        Column("source", STRING, SOURCE.description + " Empty when nothing was entered.", allowed=SOURCE.allowed),
        MODE,
        Column(
            "offline_delay_min",
            NUMBER,
            "For an entry made without a connection: minutes from when the phone "
            "says the answers were given (collected_utc) to when the diary received them (submitted_utc). The "
            "phone's clock cannot be proven: a long delay is worth a look. Empty for other entries.",
            unit="minutes",
            precision="rounded to 0.1 minute",
        ),
        Column(
            "viewport_width",
            INTEGER,
            "Width of the page the entry was answered on, in CSS pixels (1/96 inch at "
            "default zoom), as the participant's browser reported it. Empty for staff entries and older entries.",
            unit="CSS px",
        ),
        Column("viewport_height", INTEGER, "Height of that page, in CSS pixels.", unit="CSS px"),
        Column("device_pixel_ratio", NUMBER, "Screen pixels per CSS pixel on that device.", precision="3 decimals"),
        Column(
            "zoom",
            NUMBER,
            "Pinch zoom when the entry was saved (1 = none), where the browser tells.",
            precision="3 decimals",
        ),
        Column(
            "text_scale",
            NUMBER,
            "The browser's text size relative to its default (1 = default), where it tells.",
            precision="3 decimals",
        ),
        Column(
            "browser",
            STRING,
            "Browser family and major version, from its User-Agent (nothing more is kept about the device).",
            allowed="Chrome N; Safari N; Firefox N; Edge N; Samsung Internet N",
        ),
        CODE_BROKEN,
        Column(
            "protocol_version",
            STRING,
            "The protocol version this entry was scheduled under, and answered under once made: an "
            "amendment moves entries still to come to its version and leaves answered ones as they were.",
            allowed=FROM_PROTOCOL,
        ),
        DUMMY,
    ],
    "responses": [
        PARTICIPANT,
        SEQUENCE,
        PERIOD,
        TREATMENT_CODE,
        TREATMENT,
        TIMEPOINT,
        TIMEPOINT_ORDER,
        Column(
            "instrument",
            STRING,
            "Instrument id from the protocol (the side-effect checklist is in side_effects instead).",
            allowed=FROM_PROTOCOL,
        ),
        Column("item", STRING, "Item id within the instrument.", allowed=FROM_PROTOCOL),
        Column(
            "value",
            STRING,
            "The answer as entered: a whole number for vas and nrs items, a code for "
            "choices, text for free text (free-text answers are blanked by --no-free-text). CAN REVEAL "
            "TREATMENT: the answers to instruments marked may_reveal_treatment in the protocol (the "
            "participants' blinding guess) point to the drug in aggregate, whatever the allocation "
            "shown; --without-side-effects leaves them out.",
            allowed=FROM_PROTOCOL,
            free_text=True,
        ),
        Column(
            "value_as_entered",
            STRING,
            "The answer as the participant (or the study team) first stored it; equal to value unless an "
            "approved change request or a staff correction changed it since. Run the analysis on this "
            "column for the as-entered data.",
            allowed=FROM_PROTOCOL,
            free_text=True,
        ),
        Column(
            "change_request_id",
            INTEGER,
            "The approved change request that set value (see audit_trail, entity change_request). Empty "
            "when the value was never changed, or was corrected by the study team on its own entry.",
        ),
        Column(
            "days_entry_to_change",
            NUMBER,
            "Days from when the answers were given (collected_utc) to the last change of this value. "
            "Empty when never changed.",
            unit="days",
            precision="rounded to 2 decimals",
        ),
        SUBMITTED,
        COLLECTED,
        MINUTES,
        SOURCE,
        MODE,
        DUMMY,
    ],
    "side_effects": [
        PARTICIPANT,
        PERIOD,
        TREATMENT_CODE,
        TREATMENT,
        Column("timepoint", STRING, TIMEPOINT.description, allowed=FROM_PROTOCOL),
        TIMEPOINT_ORDER,
        Column(
            "term",
            STRING,
            "Side effect code from the solicited checklist, or 'other' for a free-text "
            "report. CAN REVEAL TREATMENT: side effects typical of one drug (such as dissociation or "
            "sedation) point to it whatever the allocation shown; --without-side-effects "
            "leaves this table empty.",
            allowed=FROM_PROTOCOL,
        ),
        Column(
            "severity",
            STRING,
            "Severity as reported. Empty for free-text reports.",
            allowed=listed(Severity.reported()),
        ),
        Column(
            "solicited", BOOLEAN, "true for a checklist answer, false for a free-text report.", allowed="true; false"
        ),
        Column("verbatim", STRING, "The participant's own words for a free-text report.", free_text=True),
        Column(
            "coded_term",
            STRING,
            "The term in the protocol's coding dictionary (its name and version are in the data "
            "dictionary's description of sdtm/ae AEDECOD and in define.xml): the protocol's own for a "
            "checklist answer, the study team's for a free-text report (empty until coded).",
        ),
        Column(
            "reported_utc",
            DATETIME,
            "When the participant reported it: the collection time of the entry that carried it (ISO 8601, UTC).",
            unit="UTC",
        ),
        MINUTES,
        DUMMY,
    ],
    "adherence": [
        PARTICIPANT,
        PERIOD,
        Column(
            "scheduled",
            INTEGER,
            "Assessments scheduled in the period, excluding not_applicable ones "
            "and optional time points (D2) that were not answered.",
            unit="count",
        ),
        Column("completed", INTEGER, "Entered inside the window.", unit="count"),
        Column(
            "completed_late", INTEGER, "Entered after the window closed, inside the protocol's grace.", unit="count"
        ),
        Column(
            "missed",
            INTEGER,
            "Window and grace passed with no valid entry: none was made, or a corrected "
            "infusion time left it outside its window (after_dose, out_of_window). Optional time points "
            "excluded.",
            unit="count",
        ),
        Column(
            "compliance_pct",
            NUMBER,
            "(completed + completed_late) / (completed + completed_late + missed) "
            "x 100. Empty when no window has passed yet.",
            unit="%",
            precision="rounded to 1 decimal",
        ),
    ],
    "participants": [
        PARTICIPANT,
        SITE,
        Column(
            "timezone", STRING, "The participant's time zone (IANA name): their windows and reminders follow its clock."
        ),
        SEQUENCE,
        Column("enrolled_utc", DATETIME, "When the participant was enrolled (ISO 8601, UTC).", unit="UTC"),
        Column("status", STRING, "Participant status at export time.", allowed=listed(ParticipantStatus)),
        Column(
            "withdrawn_utc", DATETIME, "When the participant withdrew (ISO 8601, UTC). Empty when active.", unit="UTC"
        ),
        Column(
            "withdrawal_reason",
            STRING,
            "Why the participant withdrew, as a category (the coordinator's "
            "words are in audit_trail). Empty when active.",
            allowed=listed(WithdrawalReason),
        ),
        Column(
            "withdrawal_decided_by",
            STRING,
            "Who decided the withdrawal. Empty when not withdrawn.",
            allowed=listed(DecidedBy),
        ),
        Column(
            "discontinued_utc",
            DATETIME,
            "When treatment was discontinued while the diary continued (ISO 8601, UTC). Empty otherwise.",
            unit="UTC",
        ),
        Column(
            "discontinuation_reason",
            STRING,
            "Why treatment was discontinued, as a category. Empty otherwise.",
            allowed=listed(WithdrawalReason),
        ),
        Column(
            "discontinuation_decided_by",
            STRING,
            "Who decided to discontinue treatment. Empty otherwise.",
            allowed=listed(DecidedBy),
        ),
        Column("periods_dosed", INTEGER, "Periods whose infusion start is recorded.", unit="count"),
        Column(
            "has_baseline_all_periods",
            BOOLEAN,
            "TRUE when every period of the protocol has a baseline {short} "
            "that counts (both periods, in a two-period crossover).",
            allowed="TRUE; FALSE",
        ),
        Column(
            "has_primary_both_periods",
            BOOLEAN,
            "TRUE when {primary} (the primary endpoint) can be "
            "computed in every period of the protocol: the complete-case population of the {design}"
            "analysis.",
            allowed="TRUE; FALSE",
        ),
        CODE_BROKEN,
        DUMMY,
    ],
    "audit_trail": [
        Column("event_id", INTEGER, "Order of the event in the audit trail."),
        Column("time_utc", DATETIME, "When it happened (ISO 8601, UTC).", unit="UTC"),
        Column(
            "actor_role",
            STRING,
            "Who did it, by role, never by name: a staff role, participant, operator "
            "(the server's command line) or system.",
            allowed=listed([*Role, "participant", "operator", "system"]),
        ),
        Column(
            "action",
            STRING,
            "What was done (enroll, submit, proxy_entry, correct_value, record_dose, "
            "correct_dose, withdraw, export, ...).",
        ),
        Column("entity", STRING, "Kind of record it changed."),
        Column(
            "participant_id", STRING, "The participant it concerns (pseudonymous code). Empty for study-level events."
        ),
        Column("field", STRING, "The field changed, where one was."),
        Column(
            "old_value",
            STRING,
            "The value before. Withheld for events that would reveal the allocation.",
            free_text=True,
        ),
        Column(
            "new_value",
            STRING,
            "The value after. Withheld for events that would reveal the allocation.",
            free_text=True,
        ),
        Column("reason", STRING, "Why, in the words of the person who did it.", free_text=True),
    ],
    # The risk-based review of the audit trail (ICH E6(R3) 4.2.3): each check a reviewer looked at.
    "audit_reviews": [
        Column("review_id", INTEGER, "Order of the review."),
        Column("check", STRING, "The named check the reviewer looked at (see docs/coordinator-guide.md)."),
        Column("cases", INTEGER, "How many cases the check listed when it was reviewed.", unit="count"),
        Column("reviewer_role", STRING, "Who reviewed, by role.", allowed=listed(Role)),
        Column("reviewed_utc", DATETIME, "When (ISO 8601, UTC).", unit="UTC"),
        Column("note", STRING, "What the reviewer concluded.", free_text=True),
    ],
    # Only in an identified export, asked for by an authorised user (rule 7).
    "participants_identified": [
        PARTICIPANT,
        SITE,
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
        Column("precision", STRING, "For numbers: full precision, or how the value is rounded."),
        Column(
            "may_contain_identifiers",
            BOOLEAN,
            "TRUE for free text typed by a person: it may name someone "
            "or carry a phone number or email whatever it was asked for. export --no-free-text blanks "
            "these columns.",
            allowed="TRUE; FALSE",
        ),
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
            if item.type in (ItemType.VAS, ItemType.NRS):
                low, high = item.range
                values.append(f"{item.id}: {low}-{high}")
            elif item.type == ItemType.SINGLE_CHOICE:
                values.append(f"{item.id}: {', '.join(c.code for c in item.choices)}")
            else:
                values.append(f"{item.id}: free text")
    return {
        (None, "timepoint"): listed(tp.code for tp in protocol.timepoints),
        (None, "timepoint_order"): listed(f"{order} = {tp.code}" for order, tp in enumerate(protocol.timepoints, 1)),
        (None, "treatment_code"): listed(treatments),
        ("side_effects", "timepoint"): listed(
            tp.code for tp in protocol.timepoints if checklist_instruments & set(tp.instruments)
        ),
        (None, "sequence"): listed(protocol.sequences),
        (None, "period"): listed(range(1, protocol.periods + 1)),
        # Sorted by name, never in code order: the dictionary of a blinded export must not map A/B.
        (None, "treatment"): "empty while blinded; after unblinding " + listed(sorted(protocol.treatments.values())),
        (None, "instrument"): listed(i.id for i in response_instruments),
        (None, "item"): listed(item.id for i in response_instruments for item in i.items),
        (None, "value"): listed(values),
        (None, "term"): listed(terms + ["other"]),
        ("assessments", "protocol_version"): "the study's protocol versions (see the protocol files)",
        ("scores", "instrument"): listed(name for name, i in protocol.instruments.items() if i.score),
        ("scores", "score"): listed(
            f"{name}.{i.score.name} = {' + '.join(item if item not in i.score.reverse else f'reversed {item}' for item in i.score.items)}"
            for name, i in protocol.instruments.items()
            if i.score
        ),
    }


def dictionary_rows(protocol, identified: bool = False):
    """Every column of every table in the bundle; codes from the protocol are listed from it, so a
    study's own protocol file yields its own dictionary."""
    allowed = protocol_allowed(protocol)
    for table, columns in tables_for(protocol).items():
        if table in IDENTIFIED_ONLY and not identified:
            continue
        for column in columns:
            values = column.allowed
            if values == FROM_PROTOCOL:
                values = allowed.get((table, column.name)) or allowed.get((None, column.name), "")
            if column.type == BOOLEAN:
                values = "TRUE; FALSE"  # as the files spell them
            precision = column.precision or ("full precision" if column.type == NUMBER else "")
            yield (
                table,
                column.name,
                column.type,
                column.unit,
                values,
                precision,
                column.free_text,
                column.description,
            )


# --- The endpoint tables, from the protocol's declaration (``EndpointPlan``) ------------------


def tables_for(protocol) -> dict[str, list[Column]]:
    """Every table of a bundle in order, with the two endpoint tables (named and shaped by the
    protocol's ``endpoints:``) after responses; none when the protocol declares no endpoints."""
    plan = protocol.endpoints
    tables = {}
    for table, columns in TABLES.items():
        if table == "participants":
            columns = [_participants_column(column, plan) for column in columns]
        tables[table] = columns
        if table == "responses" and any(i.score for i in protocol.instruments.values()):
            tables["scores"] = SCORES
        if table == "responses" and plan is not None:
            tables[plan.endpoints_table] = endpoints_columns(plan)
            tables[plan.timecourse_table] = timecourse_columns(plan)
    return tables


SCORES = [
    PARTICIPANT,
    SEQUENCE,
    PERIOD,
    TREATMENT_CODE,
    TREATMENT,
    TIMEPOINT,
    TIMEPOINT_ORDER,
    Column(
        "instrument", STRING, "The scale (an instrument of the protocol that declares a score).", allowed=FROM_PROTOCOL
    ),
    Column("score", STRING, "The score's name, as the protocol declares it (e.g. total).", allowed=FROM_PROTOCOL),
    Column(
        "value",
        INTEGER,
        "The sum of the score's items, each reverse-scored item counted as its range's top minus the "
        "answer (the protocol's score.reverse), from the values as they stand (after any change). "
        "Empty unless every item of the score is answered.",
    ),
    Column("items_answered", INTEGER, "How many of the score's items were answered.", unit="count"),
    Column("items", INTEGER, "How many items the score adds up.", unit="count"),
    Column("min", INTEGER, "The lowest value the score can take."),
    Column("max", INTEGER, "The highest value the score can take."),
    Column("collected_utc", DATETIME, "When the answers were given (ISO 8601, UTC).", unit="UTC"),
    DUMMY,
]


def _participants_column(column: Column, plan) -> Column:
    if "{" not in column.description:
        return column
    if plan is None:  # a protocol without endpoints: the columns are there, and always FALSE
        text = column.description.format(short="value", primary="the primary endpoint (none declared)", design="")
    else:
        design = "crossover " if plan.split == "period" else ""
        text = column.description.format(short=_short(plan), primary=plan.primary, design=design)
    return Column(column.name, column.type, text, allowed=column.allowed)


def _short(plan) -> str:
    """The measure as a sentence names it: 'VAS' of "Fatigue VAS"."""
    return plan.label.split()[-1]


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _number(value: float) -> str:
    return f"{value:g}"


def _rounded(plan) -> str:
    judged = [responder.name for responder in plan.responders]
    return "rounded to 2 decimals" + (f" ({', '.join(judged)} is judged before rounding)" if judged else "")


def _hours_text(plan) -> str:
    return _number(plan.auc.hours) if plan.auc else ""


def _change_column(plan, kind: str, code: str) -> Column:
    day, name = code.lower(), plan.name
    lower = f"; {plan.negative}" if plan.negative else ""
    if kind == "pct_change":
        return Column(
            f"pct_change_{day}",
            NUMBER,
            f"% change of the {_lower_first(plan.label)} from baseline at {code}: ({name}_{day} - baseline_{name}) / "
            f"baseline_{name} x 100{lower}. Empty when the baseline is missing or 0, "
            f"or {code} was not entered.",
            unit="%",
            precision=_rounded(plan),
        )
    return Column(
        f"change_{day}",
        NUMBER,
        f"Change of the {_lower_first(plan.label)} from baseline at {code}: {name}_{day} - baseline_{name}{lower}. "
        f"Empty when the baseline is missing or {code} was not entered.",
        unit=plan.unit,
        precision=_rounded(plan),
    )


def _baseline_text(plan) -> str:
    if len(plan.baseline) == 1:
        return f"{plan.label} at {plan.baseline[0]} of this period"
    return f"Mean {_lower_first(plan.label)} over {', '.join(plan.baseline)} of this period (those entered)"


def endpoints_columns(plan) -> list[Column]:
    primary = plan.primary_at
    columns = [
        PARTICIPANT,
        SEQUENCE,
        PERIOD,
        TREATMENT_CODE,
        TREATMENT,
        Column(
            f"baseline_{plan.name}",
            INTEGER if len(plan.baseline) == 1 else NUMBER,
            f"{_baseline_text(plan)} (the baseline). Empty when {' and '.join(plan.baseline)} was not entered.",
            unit=plan.unit,
        ),
    ]
    for code in plan.at:
        marker = " (the primary time point)" if code == primary else ""
        columns.append(
            Column(
                f"{plan.name}_{code.lower()}",
                INTEGER,
                f"{plan.label} at {code}{marker}. Empty when not entered.",
                unit=plan.unit,
            )
        )
    for kind in plan.changes:
        columns += [_change_column(plan, kind, code) for code in plan.at]
    for responder in plan.responders:
        bounds = []
        if responder.at_most is not None:
            bounds.append(f"{responder.of} <= {_number(responder.at_most)}")
        if responder.at_least is not None:
            bounds.append(f"{responder.of} >= {_number(responder.at_least)}")
        meaning = (
            f" (a reduction of at least {_number(-responder.at_most)}%)"
            if responder.change == "pct_change"
            and responder.at_most is not None
            and responder.at_most < 0
            and responder.at_least is None
            else ""
        )
        columns.append(
            Column(
                responder.name,
                BOOLEAN,
                f"{' and '.join(bounds)}{meaning}. Empty when {responder.of} is empty.",
                allowed="true; false",
            )
        )
    auc = plan.auc
    if auc is not None:
        hours, pct = _hours_text(plan), auc.change == "pct_change"
        needs = f", or {auc.requires} was not entered" if auc.requires else ""
        fewer = f", or fewer than {auc.min_points} points were measured" if auc.min_points > 1 else ""
        columns.append(
            Column(
                auc.name,
                NUMBER,
                f"Trapezoidal area under the {'% change' if pct else 'change'} curve over hours 0-{hours} "
                f"after {plan.anchor_words}, using actual entry times, with {' and '.join(plan.baseline)} at "
                f"{'0%' if pct else '0'} at hour 0; entries after {hours} h are interpolated to {hours} h, and the last "
                f"value before {hours} h is carried to {hours} h. Empty when the baseline is missing"
                f"{' or 0' if pct else ''}{needs}{fewer}.",
                unit=f"{'%' if pct else plan.unit.split(' (')[0]} x hours",
                precision="rounded to 1 decimal",
            )
        )
    for code in plan.at:
        columns.append(
            Column(
                f"{plan.hours_stem}_{code.lower()}",
                NUMBER,
                f"Hours from {plan.anchor_words} to when the {code} "
                f"answers were given (collected_utc), as used in the endpoints. Empty when {plan.name}_{code.lower()} is.",
                unit="hours",
                precision="rounded to 2 decimals (the endpoints use the exact time)",
            )
        )
    columns += [
        Column(
            f"status_{primary.lower()}",
            STRING,
            f"State of the {primary} assessment (the primary time point) at export time.",
            allowed=listed(AssessmentState),
        ),
        Column(
            f"source_{primary.lower()}",
            STRING,
            f"Who entered {primary}. " + SOURCE.description + f" Empty when {primary} was not entered.",
            allowed=listed(Source),
        ),
    ]
    if auc is not None:
        columns.append(
            Column(
                "auc_n_points",
                INTEGER,
                f"Measured {'post-dose' if plan.anchor == 'infusion' else 'post-randomization'} points the AUC stands on (up to {_hours_text(plan)} h, plus the "
                "first one after it, towards which the curve is interpolated). Empty when the AUC is.",
                unit="count",
            )
        )
    columns += [
        Column(
            "excluded_reason",
            STRING,
            "Entries of this period left out of the endpoints and why (a BL "
            "given after the infusion started; an entry a corrected infusion time left outside its "
            "window). Empty when nothing was excluded.",
        ),
        Column(
            "values_changed_late",
            BOOLEAN,
            f"True when a {_short(plan)} these endpoints use was changed more than the protocol's late_change_days "
            "(default 7) after it was given: run the analysis with and without these periods, or on "
            "responses.value_as_entered.",
        ),
        Column(
            "signature_status",
            STRING,
            "The investigator's sign-off of this participant-period: signed, waived, invalid (changed "
            "after signing, to re-sign) or not_signed.",
            allowed=listed(SignatureStatus),
        ),
        CODE_BROKEN,
        DUMMY,
    ]
    return columns


def timecourse_columns(plan) -> list[Column]:
    name, baseline = plan.name, " and ".join(plan.baseline)
    changes = {
        "change": Column(
            "change",
            NUMBER,
            f"{name} - baseline_{name}, as in {plan.endpoints_table}; 0 at {baseline}. Empty when either is "
            "missing or the entry does not count (status after_dose or out_of_window).",
            unit=plan.unit,
            precision=_rounded(plan),
        ),
        "pct_change": Column(
            "pct_change",
            NUMBER,
            f"({name} - baseline_{name}) / baseline_{name} x 100, as in {plan.endpoints_table}; 0 at "
            f"{baseline}. Empty when either is missing, the baseline is 0, or the entry does not count (status "
            "after_dose or out_of_window).",
            unit="%",
            precision=_rounded(plan),
        ),
    }
    return [
        PARTICIPANT,
        SEQUENCE,
        PERIOD,
        TREATMENT_CODE,
        TREATMENT,
        TIMEPOINT,
        TIMEPOINT_ORDER,
        Column(
            f"baseline_{name}",
            INTEGER if len(plan.baseline) == 1 else NUMBER,
            f"{_baseline_text(plan)}. Empty when {baseline} was not entered or "
            f"does not count (status of {baseline} after_dose).",
            unit=plan.unit,
        ),
        Column(name, INTEGER, f"{plan.label} at this time point as entered. Empty when not entered.", unit=plan.unit),
        *(changes[kind] for kind in plan.changes),
        Column(
            plan.hours_stem,
            NUMBER,
            f"Hours from {plan.anchor_words} to when the answers were given "
            "(negative before it). Empty when nothing was entered.",
            unit="hours",
            precision="rounded to 2 decimals",
        ),
        Column(
            "status",
            STRING,
            "State of the assessment at export time (as in assessments).",
            allowed=listed(list(AssessmentState) + ["not_done"]),
        ),
        Column("source", STRING, SOURCE.description + " Empty when nothing was entered.", allowed=SOURCE.allowed),
        DUMMY,
    ]
