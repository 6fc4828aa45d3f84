"""The protocol as plain, frozen data. ``loader`` builds it from YAML and validates it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

from ..vocabulary import ItemType

ITEM_TYPES = tuple(ItemType)
SETTINGS = ("clinic", "home", "clinic_or_home")

_OFFSET = re.compile(r"^([+-]?)(\d+)\s*(m|min|h|d)$")
_CLOCK_OFFSET = re.compile(r"^(\d+)\s*d\s*@\s*(\d{1,2}):(\d{2})$")


@dataclass(frozen=True)
class Offset:
    """A time offset from the dose start.

    Minutes and hours are elapsed time. Days are calendar days on the participant's local clock,
    so "Day 7" stays at the dose's clock time across a daylight-saving change.
    """

    amount: int
    unit: str  # "m", "h" or "d"
    # "HH:MM" for a day offset at a clock time ("6d@18:00": six calendar days after the anchor's
    # date, at 18:00 on the participant's clock), as a daily diary's evening entry needs.
    clock: str | None = None

    @classmethod
    def parse(cls, text) -> Offset:
        if isinstance(text, int) and text == 0:
            return cls(0, "m")
        clocked = _CLOCK_OFFSET.match(str(text).strip())
        if clocked:
            days, hours, minutes = (int(part) for part in clocked.groups())
            if hours > 23 or minutes > 59:
                raise ValueError(f"'{text}' names no clock time (00:00 to 23:59)")
            return cls(days, "d", f"{hours:02d}:{minutes:02d}")
        match = _OFFSET.match(str(text).strip())
        if not match:
            raise ValueError(f"'{text}' is not an offset like -60m, 24h, 7d or 6d@18:00")
        sign, number, unit = match.groups()
        amount = -int(number) if sign == "-" else int(number)
        return cls(amount, "m" if unit == "min" else unit)

    @property
    def nominal(self) -> timedelta:
        """The offset as elapsed time, ignoring daylight saving (for ordering and checks). A clock
        offset counts from the anchor's midnight (its protocol anchors on a date)."""
        base = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}[self.unit] * self.amount
        if self.clock is None:
            return base
        hours, minutes = self.clock.split(":")
        return base + timedelta(hours=int(hours), minutes=int(minutes))

    @property
    def nominal_minutes(self) -> int:
        return int(self.nominal.total_seconds() // 60)

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}" + (f"@{self.clock}" if self.clock else "")


class Text(str):
    """A participant-facing text. As a string it is the study's first language (what staff pages,
    exports and the data dictionary show); ``in_language`` gives a participant's own."""

    translations: dict[str, str]

    def __new__(cls, translations: dict[str, str], default: str):
        text = super().__new__(cls, translations[default])
        text.translations, text.default = dict(translations), default
        return text

    def in_language(self, language: str | None) -> str:
        return self.translations.get(language or "", str(self))

    def __reduce__(self):
        return (Text, (self.translations, self.default))


def in_language(text, language: str | None) -> str:
    """Any protocol text (a ``Text`` or a plain string) in ``language`` where it has one."""
    return text.in_language(language) if isinstance(text, Text) else text


@dataclass(frozen=True)
class Dose:
    """How one masked treatment is given, for SDTM EX: dose and unit (withheld while blinded, as
    they differ between the drugs), the dose form, the route and how long the infusion lasts."""

    dose: float | None = None
    unit: str = ""
    form: str = ""
    route: str = ""
    duration: Offset | None = None


@dataclass(frozen=True)
class Choice:
    code: str
    label: str
    # A solicited side effect's term in the protocol's coding dictionary (``Protocol.coding``).
    coded: str = ""


@dataclass(frozen=True)
class Item:
    id: str
    type: str
    text: str
    required: bool = True
    min_label: str = ""
    max_label: str = ""
    choices: tuple[Choice, ...] = ()
    terms: tuple[Choice, ...] = ()  # severity checklist: the solicited side effects
    max_length: int = 0  # free text
    # Answers that put the site's contact on screen and alert the coordinators.
    alert_values: tuple[str, ...] = ()
    # A free-text item whose answer is an unsolicited side-effect report.
    unsolicited_report: bool = False
    # A vas item shows the number once the mark is placed (a paper VAS shows none: default off).
    show_value: bool = False

    @property
    def range(self) -> tuple[int, int]:
        return {ItemType.VAS: (0, 100), ItemType.NRS: (0, 10)}.get(self.type, (0, 0))


@dataclass(frozen=True)
class Score:
    """A multi-item scale's total the protocol declares: the sum of ``items``, each of
    ``reverse`` counted the other way round (its range's top minus the answer). Undefined
    unless every item is answered."""

    name: str
    items: tuple[str, ...]
    reverse: tuple[str, ...] = ()


@dataclass(frozen=True)
class Instrument:
    id: str
    title: str
    items: tuple[Item, ...]
    # The side-effect checklist is exported as reports, not as responses.
    side_effects: bool = False
    # Answers that can point to the drug through their content (side effects such as
    # dissociation, the participants' guesses), whatever the software hides: the data
    # dictionary says so, and an export --without-side-effects leaves them out.
    may_reveal_treatment: bool = False
    score: Score | None = None

    def score_of(self, answers: dict[str, str]) -> int | None:
        """The declared total from {item id: answer}, or None (no score, or an item unanswered)."""
        if self.score is None:
            return None
        total = 0
        for item in self.items:
            if item.id not in self.score.items:
                continue
            answer = answers.get(item.id)
            if answer is None or answer == "" or not str(answer).lstrip("-").isdigit():
                return None
            value = int(answer)
            total += item.range[1] - value if item.id in self.score.reverse else value
        return total

    def score_range(self) -> tuple[int, int]:
        """The lowest and highest total the score can take."""
        items = [item for item in self.items if self.score and item.id in self.score.items]
        return sum(item.range[0] for item in items), sum(item.range[1] for item in items)


@dataclass(frozen=True)
class Window:
    open: Offset
    close: Offset | None  # None: closes at the next dose (or ``fallback_close``)
    fallback_close: Offset | None = None


@dataclass(frozen=True)
class TimePoint:
    code: str
    label: str  # the staff's label ("Day 3 (primary)")
    target: Offset
    window: Window
    setting: str
    instruments: tuple[str, ...]
    optional: bool = False
    late_grace: Offset = Offset(0, "m")
    # How long an entry made offline may wait on the phone (the protocol's offline_grace when
    # None): a primary time point may be stricter.
    offline_grace: Offset | None = None
    # What the participant reads ("Day 3"): no staff words such as "primary".
    participant_label: str = ""

    @property
    def at_home(self) -> bool:
        return self.setting in ("home", "clinic_or_home")


@dataclass(frozen=True)
class ReminderRules:
    on_open: bool = True
    closing_soon_before: Offset | None = Offset(2, "h")
    settings: tuple[str, ...] = ("home", "clinic_or_home")
    quiet_start: str = "22:00"
    quiet_end: str = "07:00"


# What the schedule counts from: each period's infusion start (recorded by the study team), or,
# for a study without infusions, randomization (day 1 is the randomization date).
ANCHORS = ("infusion", "randomization")

FOLLOW_UP_RULES = ("missed_timepoint", "missed_in_a_row", "silent", "severe_unreviewed")


@dataclass(frozen=True)
class FollowUpRule:
    """When a coordinator should follow a participant up (a task on their home page).

    ``missed_timepoint``: one of ``timepoints`` was missed. ``missed_in_a_row``: ``count`` home
    entries missed one after another. ``silent``: no entry for ``after`` while entries were due.
    ``severe_unreviewed``: a severe side effect not reviewed ``after`` it was reported.
    """

    rule: str
    timepoints: tuple[str, ...] = ()
    count: int = 2
    after: Offset = Offset(48, "h")
    due_within: Offset = Offset(24, "h")  # the task's own deadline, from when it is created


CHANGES = ("change", "pct_change")
SPLITS = ("period", "arm")


@dataclass(frozen=True)
class Responder:
    """A participant-period responds when one change at one time point passes a threshold."""

    change: str  # "change" or "pct_change"
    at: str  # a time point code
    at_most: float | None = None
    at_least: float | None = None

    @property
    def of(self) -> str:
        return f"{self.change}_{self.at.lower()}"

    @property
    def name(self) -> str:
        return f"responder_{self.at.lower()}"

    def responds(self, value: float) -> bool:
        if self.at_most is not None and value > self.at_most:
            return False
        return self.at_least is None or value >= self.at_least


@dataclass(frozen=True)
class AreaUnderCurve:
    """The area under one change's curve from the anchor (0 at hour 0) to ``to``, by the
    trapezoid rule over the measured points; computed only when ``requires`` has a value and at
    least ``min_points`` points carry it."""

    change: str
    to: Offset
    requires: str | None = None
    min_points: int = 1

    @property
    def name(self) -> str:
        return f"auc_{self.change}_0_{self.to}"

    @property
    def hours(self) -> float:
        return self.to.nominal.total_seconds() / 3600


@dataclass(frozen=True)
class EndpointPlan:
    """The endpoints a protocol declares (``endpoints:``): one measure, its baseline, the changes
    from it at named time points, responders, an area, which of them is primary, and the
    analysis split. Exports, the summary, the data dictionary and the starter programs read it."""

    table: str  # files <table>_endpoints and <table>_timecourse
    instrument: str
    item: str
    name: str  # column stem: baseline_<name>, <name>_<time point>
    label: str  # "Fatigue VAS"
    baseline: tuple[str, ...]  # one time point, or several whose mean is the baseline
    at: tuple[str, ...]
    changes: tuple[str, ...] = ("pct_change",)
    responders: tuple[Responder, ...] = ()
    auc: AreaUnderCurve | None = None
    primary_change: str = "pct_change"
    primary_at: str = ""
    split: str = "period"
    unit: str = ""
    # What a negative change means, in the dictionary's words ("negative = less fatigue").
    negative: str = ""
    # What the hours count from: the protocol's anchor (``ANCHORS``).
    anchor: str = "infusion"

    @property
    def hours_stem(self) -> str:
        """The hours columns' stem: hours_from_dose_<tp>, or hours_from_randomization_<tp>."""
        return "hours_from_dose" if self.anchor == "infusion" else "hours_from_randomization"

    @property
    def anchor_words(self) -> str:
        return "the infusion start" if self.anchor == "infusion" else "the start of day 1 (the randomization date)"

    @property
    def primary(self) -> str:
        return f"{self.primary_change}_{self.primary_at.lower()}"

    @property
    def endpoints_table(self) -> str:
        return f"{self.table}_endpoints"

    @property
    def timecourse_table(self) -> str:
        return f"{self.table}_timecourse"


@dataclass(frozen=True)
class Protocol:
    id: str
    version: str
    title: str
    periods: int
    treatments: dict[str, str]  # masked code -> sealed drug name (shown only after unblinding)
    sequences: dict[str, tuple[str, ...]]
    min_days_between_doses: int
    timepoints: tuple[TimePoint, ...]
    instruments: dict[str, Instrument]
    reminders: ReminderRules = field(default_factory=ReminderRules)
    follow_up: tuple[FollowUpRule, ...] = ()
    # A severe side-effect report must be reviewed by staff within this time.
    severe_review_within: Offset = Offset(24, "h")
    # An entry made on the phone without a connection is accepted only if it reaches the server
    # within this time of being made.
    offline_grace: Offset = Offset(24, "h")
    source_text: str = ""
    # Narrower than this (CSS pixels), the entry form says it cannot be shown as the validated
    # instrument (the fatigue line would be shorter than argued for).
    min_viewport_px: int = 320
    # A participant's value changed more than this many days after it was entered flags the
    # endpoints computed from it (``values_changed_late``), for a sensitivity analysis.
    late_change_days: int = 7
    # The dictionary side effects are coded in, and its version: (name, version), e.g. ("MedDRA",
    # "27.1"); None when the protocol codes nothing. No licensed dictionary ships with the diary.
    coding: tuple[str, str] | None = None
    # Each masked treatment's dose, unit, form, route and infusion length (``Dose``), by code.
    doses: dict[str, Dose] = field(default_factory=dict)
    # Languages the participant-facing texts are given in; the first is the default.
    languages: tuple[str, ...] = ("en",)
    # The declared endpoints (``EndpointPlan``); None for a protocol that declares none.
    endpoints: EndpointPlan | None = None
    # What the schedule counts from (``ANCHORS``).
    anchor: str = "infusion"

    @property
    def has_infusions(self) -> bool:
        """Whether the study team records infusions; else day 1 is the randomization date."""
        return self.anchor == "infusion"

    def timepoint(self, code: str) -> TimePoint:
        for timepoint in self.timepoints:
            if timepoint.code == code:
                return timepoint
        raise KeyError(code)

    def instruments_for(self, timepoint: TimePoint) -> list[Instrument]:
        return [self.instruments[name] for name in timepoint.instruments]

    def revealing_instruments(self) -> list[str]:
        """Instruments whose answers can reveal the treatment by their content."""
        return [name for name, instrument in self.instruments.items() if instrument.may_reveal_treatment]

    def vas_item(self) -> tuple[str, str]:
        """(instrument, item) of the fatigue VAS: the first vas item, the primary outcome."""
        for instrument in self.instruments.values():
            for item in instrument.items:
                if item.type == ItemType.VAS:
                    return instrument.id, item.id
        raise ValueError(f"protocol {self.id} has no vas item for the fatigue endpoints")
