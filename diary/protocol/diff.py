"""What an amendment changes, each change classified: pure, from two parsed protocols.

``additive`` changes leave every entry already made, every window and every endpoint as they
were (a new optional time point, a new language, wording); they are applied at once.
``critical`` ones change what an entry means or when it counts (a window, an instrument's items,
an endpoint, a required time point, the safety rules): a second person must approve them.
``refused`` ones change the design of a running study (its periods, sequences, treatments or
anchor): no amendment can do that, it is another study.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Instrument, Item, Protocol, TimePoint

ADDITIVE, CRITICAL, REFUSED = "additive", "critical", "refused"


@dataclass(frozen=True)
class Change:
    kind: str  # ADDITIVE, CRITICAL or REFUSED
    path: str  # where in the file: "timepoints D3.window"
    text: str  # what changed, old -> new

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.text}"


def _words(value) -> object:
    """A text as all its languages say it (a ``Text`` compares as its first language only)."""
    return getattr(value, "translations", value)


def _timepoint_changes(old: TimePoint, new: TimePoint) -> list[Change]:
    path = f"timepoints {old.code}"
    changes = []
    for name, kind in (
        ("target", CRITICAL),
        ("window", CRITICAL),
        ("late_grace", CRITICAL),
        ("offline_grace", CRITICAL),
        ("setting", CRITICAL),
        ("instruments", CRITICAL),
        ("optional", CRITICAL),
    ):
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            changes.append(Change(kind, f"{path}.{name}", f"{_show(before)} -> {_show(after)}"))
    for name in ("label", "participant_label"):
        if _words(getattr(old, name)) != _words(getattr(new, name)):
            changes.append(Change(ADDITIVE, f"{path}.{name}", "wording"))
    return changes


def _show(value) -> str:
    if hasattr(value, "open") and hasattr(value, "close"):  # a Window
        close = value.close if value.close is not None else f"next dose (or {value.fallback_close})"
        return f"{value.open} to {close}"
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


# An item's fields that change what its answers mean, and those that are only its wording.
_ITEM_MEANING = ("type", "required", "max_length", "alert_values", "unsolicited_report", "show_value")
_ITEM_WORDING = ("text", "min_label", "max_label")


def _item_changes(path: str, old: Item, new: Item) -> list[Change]:
    changes = []
    for name in _ITEM_MEANING:
        if getattr(old, name) != getattr(new, name):
            changes.append(Change(CRITICAL, f"{path}.{name}", f"{getattr(old, name)} -> {getattr(new, name)}"))
    for name in ("choices", "terms"):
        before, after = getattr(old, name), getattr(new, name)
        if [c.code for c in before] != [c.code for c in after]:
            changes.append(
                Change(CRITICAL, f"{path}.{name}", f"{[c.code for c in before]} -> {[c.code for c in after]}")
            )
        elif [_words(c.label) for c in before] != [_words(c.label) for c in after]:
            changes.append(Change(ADDITIVE, f"{path}.{name}", "wording"))
        elif [c.coded for c in before] != [c.coded for c in after]:
            changes.append(Change(ADDITIVE, f"{path}.{name}", "dictionary terms"))
    for name in _ITEM_WORDING:
        if _words(getattr(old, name)) != _words(getattr(new, name)):
            changes.append(Change(ADDITIVE, f"{path}.{name}", "wording"))
    return changes


def _instrument_changes(old: Instrument, new: Instrument) -> list[Change]:
    path = f"instruments.{old.id}"
    changes = []
    before, after = [i.id for i in old.items], [i.id for i in new.items]
    if before != after:
        changes.append(Change(CRITICAL, f"{path}.items", f"{before} -> {after}"))
    for item in old.items:
        match = next((i for i in new.items if i.id == item.id), None)
        if match is not None:
            changes += _item_changes(f"{path}.items {item.id}", item, match)
    if old.score != new.score:
        changes.append(Change(CRITICAL, f"{path}.score", f"{old.score} -> {new.score}"))
    if old.may_reveal_treatment != new.may_reveal_treatment:
        changes.append(
            Change(
                CRITICAL, f"{path}.may_reveal_treatment", f"{old.may_reveal_treatment} -> {new.may_reveal_treatment}"
            )
        )
    if _words(old.title) != _words(new.title):
        changes.append(Change(ADDITIVE, f"{path}.title", "wording"))
    return changes


def compare(old: Protocol, new: Protocol) -> list[Change]:
    """Every difference between the running protocol and its amendment, classified."""
    changes: list[Change] = []
    if old.id != new.id:
        return [Change(REFUSED, "id", f"{old.id} -> {new.id}: another protocol is another study")]
    if old.version == new.version:
        changes.append(Change(REFUSED, "version", f"still {new.version}: an amendment is a new version"))
    for name in ("periods", "anchor", "sequences", "treatments", "min_days_between_doses"):
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            if name == "treatments":  # the masked codes only: a blinded admin reads this
                before, after = tuple(sorted(before)), tuple(sorted(after))
            changes.append(
                Change(
                    REFUSED, name, f"{_show(before)} -> {_show(after)}: the design of a running study cannot be amended"
                )
            )
    old_codes, new_codes = [tp.code for tp in old.timepoints], [tp.code for tp in new.timepoints]
    for timepoint in old.timepoints:
        match = next((tp for tp in new.timepoints if tp.code == timepoint.code), None)
        if match is None:
            changes.append(Change(CRITICAL, f"timepoints {timepoint.code}", "removed"))
        else:
            changes += _timepoint_changes(timepoint, match)
    for timepoint in new.timepoints:
        if timepoint.code not in old_codes:
            kind = ADDITIVE if timepoint.optional else CRITICAL
            note = "new optional time point" if timepoint.optional else "new required time point (adherence counts it)"
            changes.append(Change(kind, f"timepoints {timepoint.code}", note))
    if [c for c in old_codes if c in new_codes] != [c for c in new_codes if c in old_codes]:
        changes.append(Change(CRITICAL, "timepoints", "order changed"))
    for name, instrument in old.instruments.items():
        if name not in new.instruments:
            changes.append(Change(CRITICAL, f"instruments.{name}", "removed"))
        else:
            changes += _instrument_changes(instrument, new.instruments[name])
    for name in new.instruments:
        if name not in old.instruments:
            changes.append(
                Change(ADDITIVE, f"instruments.{name}", "new instrument (asked only where a time point names it)")
            )
    if old.endpoints != new.endpoints:
        changes.append(Change(CRITICAL, "endpoints", "the declared endpoints changed"))
    added = [code for code in new.languages if code not in old.languages]
    removed = [code for code in old.languages if code not in new.languages]
    if added:
        changes.append(Change(ADDITIVE, "languages", f"added {', '.join(added)}"))
    if removed:
        changes.append(Change(CRITICAL, "languages", f"removed {', '.join(removed)}"))
    for name, kind in (
        ("follow_up", CRITICAL),
        ("severe_review_within", CRITICAL),
        ("offline_grace", CRITICAL),
        ("late_change_days", CRITICAL),
        ("reminders", ADDITIVE),
        ("coding", ADDITIVE),
        ("doses", ADDITIVE),
        ("min_viewport_px", ADDITIVE),
    ):
        if getattr(old, name) != getattr(new, name):
            changes.append(Change(kind, name, "changed"))
    if old.title != new.title:
        changes.append(Change(ADDITIVE, "title", "wording"))
    return changes


def classification(changes: list[Change]) -> str:
    """The amendment's class: refused if any change is, else critical if any is, else additive."""
    kinds = {change.kind for change in changes}
    return REFUSED if REFUSED in kinds else CRITICAL if CRITICAL in kinds else ADDITIVE
