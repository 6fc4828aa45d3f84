"""Load a protocol from YAML and validate it.

Every problem is reported at once, each naming the file, the path inside it and what is wrong,
so a study team can fix a protocol in one round instead of one error at a time.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import yaml

from ..vocabulary import ItemType
from .model import (
    ANCHORS,
    CHANGES,
    FOLLOW_UP_RULES,
    ITEM_TYPES,
    SETTINGS,
    SPLITS,
    AreaUnderCurve,
    Choice,
    Dose,
    EndpointPlan,
    FollowUpRule,
    Instrument,
    Item,
    Offset,
    Protocol,
    ReminderRules,
    Responder,
    Score,
    Text,
    TimePoint,
    Window,
)

SHIPPED = Path(__file__).resolve().parent.parent / "protocols"


class ProtocolError(ValueError):
    """A protocol file that cannot be used. ``problems`` lists (path, message) pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {path}: {message}" for path, message in problems]
        super().__init__("\n".join(lines))


def shipped_protocol_path(name: str) -> Path:
    return SHIPPED / f"{name}.yaml"


def shipped_protocols() -> list[str]:
    """The names of the protocols the diary ships (``flask diary demo --protocol NAME``)."""
    return sorted(path.stem for path in SHIPPED.glob("*.yaml"))


def load_protocol(path: str | Path) -> Protocol:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ProtocolError(str(path), [("(file)", f"cannot be read: {error.strerror}")]) from None
    return parse_protocol(text, source=str(path))


def protocol_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_protocol(text: str, source: str = "<protocol>") -> Protocol:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ProtocolError(source, [(where, f"is not valid YAML: {getattr(error, 'problem', error)}")]) from None
    problems: list[tuple[str, str]] = []
    protocol = _Builder(problems).protocol(data)
    if problems:
        raise ProtocolError(source, problems)
    return Protocol(**{**protocol.__dict__, "source_text": text})


class _Builder:
    """Turns parsed YAML into a ``Protocol``, collecting problems instead of stopping at one."""

    def __init__(self, problems):
        self.problems = problems

    def fail(self, path, message):
        self.problems.append((path, message))

    def require(self, mapping, key, path, kind=str):
        if not isinstance(mapping, dict) or key not in mapping:
            self.fail(f"{path}.{key}" if path else key, "is required")
            return None
        value = mapping[key]
        if kind is not None and not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            self.fail(f"{path}.{key}" if path else key, f"must be {_kind_name(kind)}")
            return None
        return value

    def offset(self, value, path):
        try:
            return Offset.parse(value)
        except ValueError as error:
            self.fail(path, str(error))
            return None

    def protocol(self, data) -> Protocol:
        if not isinstance(data, dict):
            self.fail("(top)", "must be a mapping with id, version, periods, timepoints, ...")
            data = {}
        protocol_id = self.require(data, "id", "") or "?"
        version = data.get("version")
        if version is None or isinstance(version, (dict, list)):
            self.fail("version", "is required (a number or text such as 1.0)")
        title = data.get("title", protocol_id)
        languages = data.get("languages", ["en"])
        if (
            not isinstance(languages, list)
            or not languages
            or not all(isinstance(code, str) and code.isalpha() and len(code) == 2 for code in languages)
        ):
            self.fail("languages", "must list two-letter language codes, the default first (e.g. [en, es])")
            languages = ["en"]
        self.languages = tuple(languages)
        periods = self.require(data, "periods", "", int) or 0
        if periods < 1:
            self.fail("periods", "must be at least 1")
        anchor = data.get("anchor", "infusion")
        if anchor not in ANCHORS:
            self.fail("anchor", f"must be one of {', '.join(ANCHORS)}")
            anchor = "infusion"
        elif anchor == "randomization" and periods != 1:
            self.fail("anchor", "randomization anchors one period: a study without infusions has periods: 1")
        treatments = self.treatments(data.get("treatments"))
        doses = self.doses(data.get("treatments"))
        sequences = self.sequences(data.get("sequences"), treatments, periods)
        min_days = data.get("min_days_between_doses", 0)
        if not isinstance(min_days, int) or isinstance(min_days, bool) or min_days < 0:
            self.fail("min_days_between_doses", "must be a whole number of days, 0 or more")
            min_days = 0
        self.anchor = anchor
        instruments = self.instruments(data.get("instruments"))
        timepoints = self.timepoints(data.get("timepoints"), instruments, periods, min_days)
        reminders = self.reminders(data.get("reminders", {}))
        follow_up = self.follow_up(data.get("follow_up", []), {tp.code for tp in timepoints})
        safety = data.get("safety", {}) or {}
        if not isinstance(safety, dict):
            self.fail("safety", "must be a mapping")
            safety = {}
        review_within = self.offset(safety.get("severe_review_within", "24h"), "safety.severe_review_within")
        offline_grace = self.offset(data.get("offline_grace", "24h"), "offline_grace")
        min_viewport = data.get("min_viewport_px", 320)
        if isinstance(min_viewport, bool) or not isinstance(min_viewport, int) or not 200 <= min_viewport <= 2000:
            self.fail("min_viewport_px", "must be a whole number of CSS pixels from 200 to 2000")
            min_viewport = 320
        late_change_days = data.get("late_change_days", 7)
        if (
            isinstance(late_change_days, bool)
            or not isinstance(late_change_days, int)
            or not 0 <= late_change_days <= 365
        ):
            self.fail("late_change_days", "must be a whole number of days from 0 to 365")
            late_change_days = 7
        coding = data.get("coding")
        if coding is not None:
            if not isinstance(coding, dict) or not coding.get("dictionary") or not coding.get("version"):
                self.fail(
                    "coding", "must name the dictionary and its version, e.g. {dictionary: MedDRA, version: '27.1'}"
                )
                coding = None
            else:
                coding = (str(coding["dictionary"]), str(coding["version"]))
        return Protocol(
            id=str(protocol_id),
            version=str(version),
            title=str(title),
            periods=periods,
            treatments=treatments,
            sequences=sequences,
            min_days_between_doses=min_days,
            timepoints=tuple(timepoints),
            instruments=instruments,
            reminders=reminders,
            follow_up=tuple(follow_up),
            severe_review_within=review_within or Offset(24, "h"),
            offline_grace=offline_grace or Offset(24, "h"),
            min_viewport_px=min_viewport,
            late_change_days=late_change_days,
            coding=coding,
            doses=doses,
            languages=self.languages,
            endpoints=self.endpoints(data.get("endpoints"), instruments, timepoints),
            anchor=anchor,
        )

    def text(self, value, path) -> str:
        """A participant-facing text: a plain string when the study has one language, else a
        mapping with every language the study declares ({en: ..., es: ...})."""
        languages = getattr(self, "languages", ("en",))
        if isinstance(value, dict):
            missing = [code for code in languages if not str(value.get(code) or "").strip()]
            if missing:
                self.fail(
                    path, f"has no {', '.join(missing)} text (the study declares languages {', '.join(languages)})"
                )
            translations = {code: str(value.get(code) or "") for code in languages}
            return Text(translations, languages[0])
        if len(languages) > 1 and str(value or "").strip():
            self.fail(
                path,
                f"is only in one language; give {{{', '.join(f'{c}: ...' for c in languages)}}} "
                f"(the study declares languages {', '.join(languages)})",
            )
        return str(value if value is not None else "")

    def treatments(self, data) -> dict[str, str]:
        if not isinstance(data, dict) or not data:
            self.fail("treatments", "must map each masked code (A, B, ...) to its sealed name")
            return {}
        result = {}
        for code, value in data.items():
            path = f"treatments.{code}"
            name = value.get("sealed_name") if isinstance(value, dict) else None
            if not isinstance(name, str) or not name:
                self.fail(path, "needs a sealed_name (shown only after unblinding)")
            result[str(code)] = name or ""
        return result

    def doses(self, data) -> dict[str, Dose]:
        """Optional per treatment: dose (a number), unit, form, route, duration (an offset)."""
        result = {}
        for code, value in (data or {}).items() if isinstance(data, dict) else ():
            if not isinstance(value, dict):
                continue
            path = f"treatments.{code}"
            dose = value.get("dose")
            if dose is not None and (isinstance(dose, bool) or not isinstance(dose, (int, float)) or dose <= 0):
                self.fail(f"{path}.dose", "must be a positive number (its unit in unit)")
                dose = None
            duration = self.offset(value["duration"], f"{path}.duration") if "duration" in value else None
            words = {}
            for key in ("unit", "form", "route"):
                word = value.get(key, "")
                if not isinstance(word, str):
                    self.fail(f"{path}.{key}", "must be text")
                    word = ""
                words[key] = word.strip()
            if dose is not None and not words["unit"]:
                self.fail(f"{path}.unit", "is required with a dose")
            result[str(code)] = Dose(dose=dose, duration=duration, **words)
        return result

    def sequences(self, data, treatments, periods) -> dict[str, tuple[str, ...]]:
        if not isinstance(data, dict) or not data:
            self.fail("sequences", "must map each sequence name to its treatments in order")
            return {}
        result = {}
        for name, order in data.items():
            path = f"sequences.{name}"
            if not isinstance(order, list):
                self.fail(path, "must be a list of treatment codes")
                continue
            if len(order) != periods:
                self.fail(path, f"has {len(order)} treatments but the protocol has {periods} periods")
            for index, code in enumerate(order):
                if str(code) not in treatments:
                    self.fail(f"{path}[{index}]", f"unknown treatment '{code}'")
            result[str(name)] = tuple(str(code) for code in order)
        return result

    def instruments(self, data) -> dict[str, Instrument]:
        if not isinstance(data, dict) or not data:
            self.fail("instruments", "must define at least one instrument")
            return {}
        result = {}
        for name, spec in data.items():
            path = f"instruments.{name}"
            if not isinstance(spec, dict):
                self.fail(path, "must be a mapping with title and items")
                continue
            items = []
            seen = set()
            raw_items = spec.get("items")
            if not isinstance(raw_items, list) or not raw_items:
                self.fail(f"{path}.items", "must list at least one item")
                raw_items = []
            for index, raw in enumerate(raw_items):
                item = self.item(raw, f"{path}.items[{index}]")
                if item is None:
                    continue
                if item.id in seen:
                    self.fail(f"{path}.items[{index}].id", f"duplicate item id '{item.id}'")
                seen.add(item.id)
                items.append(item)
            result[str(name)] = Instrument(
                id=str(name),
                title=self.text(spec.get("title", name), f"instruments.{name}.title"),
                items=tuple(items),
                score=self.score(spec.get("score"), items, path),
                side_effects=any(item.type == ItemType.SEVERITY_CHECKLIST for item in items),
                may_reveal_treatment=(
                    any(item.type == ItemType.SEVERITY_CHECKLIST for item in items)
                    or self.flag(spec, "may_reveal_treatment", path)
                ),
            )
        return result

    def score(self, spec, items, path) -> Score | None:
        """An instrument's declared total: its name, the items summed, the ones reversed."""
        if spec is None:
            return None
        path = f"{path}.score"
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
            self.fail(path, "must be {name: total, items: [ITEM, ...], reverse: [ITEM, ...]}")
            return None
        numeric = {item.id for item in items if item.type in (ItemType.VAS, ItemType.NRS)}
        summed = spec.get("items")
        if not isinstance(summed, list) or len(summed) < 2:
            self.fail(f"{path}.items", "must list the two or more items the total adds up")
            summed = []
        for name in summed:
            if name not in numeric:
                self.fail(f"{path}.items", f"'{name}' is not a vas or nrs item of this instrument")
        reverse = spec.get("reverse", []) or []
        if not isinstance(reverse, list):
            self.fail(f"{path}.reverse", "must list items of the score")
            reverse = []
        for name in reverse:
            if name not in summed:
                self.fail(f"{path}.reverse", f"'{name}' is not one of the score's items")
        if spec["name"] in {item.id for item in items}:
            self.fail(f"{path}.name", f"'{spec['name']}' is already an item of this instrument")
        return Score(name=spec["name"], items=tuple(str(n) for n in summed), reverse=tuple(str(n) for n in reverse))

    def flag(self, spec: dict, key: str, path: str) -> bool:
        value = spec.get(key, False)
        if not isinstance(value, bool):
            self.fail(f"{path}.{key}", "must be true or false")
            return False
        return value

    def item(self, raw, path) -> Item | None:
        if not isinstance(raw, dict):
            self.fail(path, "must be a mapping with id, type and text")
            return None
        item_id = self.require(raw, "id", path)
        item_type = self.require(raw, "type", path)
        if item_type is not None and item_type not in ITEM_TYPES:
            self.fail(f"{path}.type", f"unknown item type '{item_type}' (use one of {', '.join(ITEM_TYPES)})")
            return None
        if item_id is None or item_type is None:
            return None
        choices = self.choices(raw.get("choices"), f"{path}.choices") if item_type == ItemType.SINGLE_CHOICE else ()
        terms = self.choices(raw.get("terms"), f"{path}.terms") if item_type == ItemType.SEVERITY_CHECKLIST else ()
        max_length = raw.get("max_length", 0)
        if item_type == ItemType.FREE_TEXT and (not isinstance(max_length, int) or max_length < 1):
            self.fail(f"{path}.max_length", "free text needs a max_length of at least 1")
        if item_type in (ItemType.VAS, ItemType.NRS):
            for key in ("min_label", "max_label"):
                if not raw.get(key):
                    self.fail(f"{path}.{key}", f"a {item_type} item needs its end anchors")
        alert_values = raw.get("alert_values", [])
        if not isinstance(alert_values, list):
            self.fail(f"{path}.alert_values", "must be a list of answers")
            alert_values = []
        return Item(
            id=str(item_id),
            type=item_type,
            text=self.text(raw.get("text", ""), f"{path}.text"),
            required=bool(raw.get("required", True)),
            min_label=self.text(raw.get("min_label", ""), f"{path}.min_label"),
            max_label=self.text(raw.get("max_label", ""), f"{path}.max_label"),
            choices=choices,
            terms=terms,
            max_length=max_length if isinstance(max_length, int) else 0,
            alert_values=tuple(str(value) for value in alert_values),
            unsolicited_report=bool(raw.get("unsolicited_report", False)),
            show_value=self.flag(raw, "show_value", path) if item_type == ItemType.VAS else False,
        )

    def choices(self, raw, path) -> tuple[Choice, ...]:
        if not isinstance(raw, list) or not raw:
            self.fail(path, "must list at least one {code, label}")
            return ()
        result, seen = [], set()
        for index, entry in enumerate(raw):
            if not isinstance(entry, dict) or "code" not in entry or "label" not in entry:
                self.fail(f"{path}[{index}]", "needs a code and a label")
                continue
            if entry["code"] in seen:
                self.fail(f"{path}[{index}].code", f"duplicate code '{entry['code']}'")
            seen.add(entry["code"])
            coded = entry.get("coded", "")
            if not isinstance(coded, str):
                self.fail(f"{path}[{index}].coded", "must be the term as the coding dictionary words it")
                coded = ""
            result.append(
                Choice(str(entry["code"]), self.text(entry["label"], f"{path}[{index}].label"), coded.strip())
            )
        return tuple(result)

    def timepoints(self, data, instruments, periods, min_days) -> list[TimePoint]:
        if not isinstance(data, list) or not data:
            self.fail("timepoints", "must list at least one time point")
            return []
        result, seen = [], set()
        for index, raw in enumerate(data):
            path = f"timepoints[{index}]"
            if not isinstance(raw, dict):
                self.fail(path, "must be a mapping")
                continue
            code = self.require(raw, "code", path)
            if code is not None:
                path = f"timepoints[{index}] ({code})"
                if code in seen:
                    self.fail(f"{path}.code", f"duplicate time point code '{code}'")
                seen.add(code)
            target = self.offset(raw.get("target"), f"{path}.target")
            window = raw.get("window")
            if not isinstance(window, dict):
                self.fail(f"{path}.window", "is required, with open and close offsets")
                continue
            window_open = self.offset(window.get("open"), f"{path}.window.open")
            close_raw = window.get("close")
            fallback = None
            if close_raw == "next_dose":
                window_close = None
                fallback = self.offset(window.get("fallback_close"), f"{path}.window.fallback_close")
            else:
                window_close = self.offset(close_raw, f"{path}.window.close")
            setting = raw.get("setting", "home")
            if setting not in SETTINGS:
                self.fail(f"{path}.setting", f"must be one of {', '.join(SETTINGS)}")
            names = raw.get("instruments")
            if not isinstance(names, list) or not names:
                self.fail(f"{path}.instruments", "must list at least one instrument")
                names = []
            for name in names:
                if name not in instruments:
                    self.fail(f"{path}.instruments", f"unknown instrument '{name}'")
            grace = self.offset(raw.get("late_grace", 0), f"{path}.late_grace")
            offline_grace = (
                self.offset(raw["offline_grace"], f"{path}.offline_grace")
                if raw.get("offline_grace") is not None
                else None
            )
            if None in (code, target, window_open, grace) or (window_close is None and fallback is None):
                continue
            close = window_close or fallback
            if close.nominal <= window_open.nominal:
                self.fail(f"{path}.window", f"closes ({close}) before it opens ({window_open})")
            elif not (window_open.nominal <= target.nominal <= close.nominal):
                self.fail(f"{path}.target", f"{target} lies outside its window {window_open} to {close}")
            if grace.nominal < timedelta(0):
                self.fail(f"{path}.late_grace", "cannot be negative")
            # A window that runs past the earliest next dose would mix two periods' data.
            if (
                window_close is not None
                and periods > 1
                and min_days
                and window_close.nominal + grace.nominal > timedelta(days=min_days)
            ):
                self.fail(
                    f"{path}.window.close",
                    f"{window_close} (plus grace {grace}) overlaps the next dose, which may "
                    f"come {min_days} days after this one; close it earlier or use next_dose",
                )
            label = str(raw.get("label", code))
            result.append(
                TimePoint(
                    code=str(code),
                    label=label,
                    target=target,
                    participant_label=self.text(raw.get("participant_label", label), f"{path}.participant_label"),
                    window=Window(open=window_open, close=window_close, fallback_close=fallback),
                    setting=setting,
                    instruments=tuple(str(name) for name in names),
                    optional=bool(raw.get("optional", False)),
                    late_grace=grace,
                    offline_grace=offline_grace,
                )
            )
        if self.anchor == "randomization":
            for timepoint in result:
                if timepoint.window.open.nominal < timedelta(0):
                    self.fail(
                        f"timepoints ({timepoint.code}).window.open",
                        "opens before randomization, which anchors this protocol (nothing comes before day 1)",
                    )
        targets = [tp.target.nominal for tp in result]
        if targets != sorted(targets):
            self.fail("timepoints", "must be listed in order of their target time")
        return result

    def reminders(self, data) -> ReminderRules:
        if not isinstance(data, dict):
            self.fail("reminders", "must be a mapping")
            return ReminderRules()
        before = data.get("closing_soon_before", "2h")
        closing = None if before in (None, False) else self.offset(before, "reminders.closing_soon_before")
        settings = data.get("settings", ["home", "clinic_or_home"])
        if not isinstance(settings, list) or any(s not in SETTINGS for s in settings):
            self.fail("reminders.settings", f"must list settings from {', '.join(SETTINGS)}")
            settings = []
        quiet = data.get("quiet_hours", {"start": "22:00", "end": "07:00"})
        start, end = "22:00", "07:00"
        if quiet:
            start, end = str(quiet.get("start", "")), str(quiet.get("end", ""))
            for key, value in (("start", start), ("end", end)):
                if not _is_clock(value):
                    self.fail(f"reminders.quiet_hours.{key}", f"'{value}' is not a time like 22:00")
        return ReminderRules(
            on_open=bool(data.get("on_open", True)),
            closing_soon_before=closing,
            settings=tuple(settings),
            quiet_start=start,
            quiet_end=end,
        )

    def follow_up(self, data, codes: set[str]) -> list[FollowUpRule]:
        if not isinstance(data, list):
            self.fail("follow_up", "must be a list of rules")
            return []
        rules = []
        for index, raw in enumerate(data):
            path = f"follow_up[{index}]"
            if not isinstance(raw, dict) or raw.get("rule") not in FOLLOW_UP_RULES:
                self.fail(f"{path}.rule", f"must be one of {', '.join(FOLLOW_UP_RULES)}")
                continue
            timepoints = tuple(str(code) for code in raw.get("timepoints", []) or [])
            for code in timepoints:
                if code not in codes:
                    self.fail(f"{path}.timepoints", f"'{code}' is not a time point of this protocol")
            if raw["rule"] == "missed_timepoint" and not timepoints:
                self.fail(f"{path}.timepoints", "names the time points whose miss needs a call")
            count = raw.get("count", 2)
            if not isinstance(count, int) or count < 1:
                self.fail(f"{path}.count", "must be a whole number of at least 1")
                count = 2
            after = self.offset(raw.get("after", "48h"), f"{path}.after") or Offset(48, "h")
            due = self.offset(raw.get("due_within", "24h"), f"{path}.due_within") or Offset(24, "h")
            rules.append(
                FollowUpRule(rule=raw["rule"], timepoints=timepoints, count=count, after=after, due_within=due)
            )
        return rules

    def endpoints(self, data, instruments, timepoints) -> EndpointPlan | None:
        """The ``endpoints:`` section: every name in it must be the protocol's own."""
        if data is None:
            return None
        if not isinstance(data, dict):
            self.fail("endpoints", "must be a mapping (table, measure, baseline, at, primary, ...)")
            return None
        codes = [tp.code for tp in timepoints]
        problems = len(self.problems)
        table = self.require(data, "table", "endpoints")
        if table is not None and not table.replace("_", "").isalnum():
            self.fail("endpoints.table", "must be a name of letters, digits and _ (files <table>_endpoints.csv)")
        measure = self.require(data, "measure", "endpoints", dict) or {}
        instrument_id, _, item_id = str(measure.get("item", "")).partition(".")
        item = None
        if instrument_id not in instruments:
            self.fail(
                "endpoints.measure.item", f"'{measure.get('item')}' must name an instrument's item (instrument.item)"
            )
        else:
            item = next((i for i in instruments[instrument_id].items if i.id == item_id), None)
            if item is None:
                self.fail("endpoints.measure.item", f"instrument '{instrument_id}' has no item '{item_id}'")
            elif item.type not in (ItemType.VAS, ItemType.NRS):
                self.fail(
                    "endpoints.measure.item", f"'{measure['item']}' is {item.type}: endpoints need a vas or nrs item"
                )
        name = str(measure.get("name", item_id or "value"))
        label = str(measure.get("label", name))

        def timepoint_list(key, value):
            listed = value if isinstance(value, list) else [value]
            if not listed or not all(isinstance(code, str) for code in listed):
                self.fail(f"endpoints.{key}", "must name one or more time points")
                return ()
            for code in listed:
                if code not in codes:
                    self.fail(f"endpoints.{key}", f"'{code}' is not a time point of this protocol")
            return tuple(listed)

        baseline = data.get("baseline")
        if isinstance(baseline, dict) and "mean_of" in baseline:
            baseline = timepoint_list("baseline.mean_of", baseline["mean_of"])
        elif isinstance(baseline, dict) and "timepoint" in baseline:
            baseline = timepoint_list("baseline.timepoint", baseline["timepoint"])[:1]
        else:
            self.fail("endpoints.baseline", "must be {timepoint: CODE} or {mean_of: [CODE, ...]}")
            baseline = ()
        at = timepoint_list("at", data.get("at", []))
        changes = data.get("changes", ["pct_change"])
        if not isinstance(changes, list) or not changes or any(change not in CHANGES for change in changes):
            self.fail("endpoints.changes", f"must list one or both of {', '.join(CHANGES)}")
            changes = ["pct_change"]
        changes = [change for change in CHANGES if change in changes]  # the columns' fixed order

        def change_at(spec, path):
            if not isinstance(spec, dict):
                self.fail(path, "must be a mapping such as {change: pct_change, at: D3}")
                return None, None
            change, code = spec.get("change"), spec.get("at")
            if change not in changes:
                self.fail(f"{path}.change", f"must be one of the changes declared: {', '.join(changes)}")
            if code not in at:
                self.fail(f"{path}.at", f"'{code}' must be one of endpoints.at: {', '.join(at)}")
            return change, code

        responders = []
        for index, spec in enumerate(data.get("responders", []) or []):
            path = f"endpoints.responders[{index}]"
            change, code = change_at(spec, path)
            bounds = {key: spec.get(key) for key in ("at_most", "at_least")} if isinstance(spec, dict) else {}
            if not any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bounds.values()):
                self.fail(path, "needs a threshold: at_most or at_least, a number")
            responders.append(Responder(change=change, at=code, **bounds))
        auc = None
        if data.get("auc") is not None:
            spec = data["auc"]
            if not isinstance(spec, dict) or spec.get("change") not in changes:
                self.fail("endpoints.auc.change", f"must be one of the changes declared: {', '.join(changes)}")
                spec = spec if isinstance(spec, dict) else {}
            to = self.offset(spec.get("to"), "endpoints.auc.to")
            if to is not None and to.nominal.total_seconds() <= 0:
                self.fail("endpoints.auc.to", "must be after the anchor (e.g. 7d)")
            requires = spec.get("requires")
            if requires is not None and requires not in codes:
                self.fail("endpoints.auc.requires", f"'{requires}' is not a time point of this protocol")
            min_points = spec.get("min_points", 1)
            if isinstance(min_points, bool) or not isinstance(min_points, int) or min_points < 1:
                self.fail("endpoints.auc.min_points", "must be a whole number of at least 1")
                min_points = 1
            auc = AreaUnderCurve(
                change=spec.get("change"), to=to or Offset(1, "d"), requires=requires, min_points=min_points
            )
        primary = data.get("primary")
        primary_change, primary_at = change_at(primary, "endpoints.primary")
        split = data.get("split", "period")
        if split not in SPLITS:
            self.fail("endpoints.split", f"must be one of {', '.join(SPLITS)}")
        if len(self.problems) > problems:
            return None
        unit = str(measure.get("unit") or {ItemType.VAS: "mm (0-100)", ItemType.NRS: "points (0-10)"}[item.type])
        return EndpointPlan(
            table=table,
            instrument=instrument_id,
            item=item_id,
            name=name,
            label=label,
            baseline=baseline,
            at=at,
            changes=tuple(changes),
            responders=tuple(responders),
            auc=auc,
            primary_change=primary_change,
            primary_at=primary_at,
            split=split,
            unit=unit,
            negative=str(measure.get("negative", "")),
            anchor=self.anchor,
        )


def _is_clock(value: str) -> bool:
    parts = value.split(":")
    return len(parts) == 2 and all(p.isdigit() for p in parts) and 0 <= int(parts[0]) < 24 and 0 <= int(parts[1]) < 60


def _kind_name(kind) -> str:
    return {str: "text", int: "a whole number", list: "a list", dict: "a mapping"}.get(kind, str(kind))
