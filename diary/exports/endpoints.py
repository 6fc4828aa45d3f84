"""The endpoints a protocol declares (``EndpointPlan``), per participant and period. Pure functions."""

from __future__ import annotations

from ..protocol.model import EndpointPlan, Protocol

AUC_END_HOURS = 168.0  # the shipped protocol's area: 7 days


def pct_change(score: int | None, baseline: int | None) -> float | None:
    """(score - baseline) / baseline x 100; undefined for a missing or zero baseline."""
    if score is None or baseline is None or baseline == 0:
        return None
    return (score - baseline) / baseline * 100


def auc_points_used(points: list[tuple[float, float]], end: float = AUC_END_HOURS) -> int:
    """How many measured points the area stands on: those after hour 0 up to ``end``, and the
    first one after ``end`` (which the curve is interpolated towards)."""
    hours = sorted(h for h, _ in points if h > 0)
    inside = [h for h in hours if h <= end]
    return len(inside) + (1 if len(inside) < len(hours) else 0)


def auc_pct_change(points: list[tuple[float, float]], end: float = AUC_END_HOURS) -> float:
    """Trapezoidal area of (hours, pct) points from hour 0 (pct 0) to ``end``.

    Points after ``end`` are interpolated to ``end``; if the last point is before ``end``, its
    value is carried to ``end``.
    """
    curve = [(0.0, 0.0)] + sorted((h, p) for h, p in points if h > 0)
    area = 0.0
    # At a point exactly at ``end`` each of the three comparisons below may go either way: the
    # segment it adds or leaves out is zero wide (mutation testing is told so: "no mutate").
    for (h0, p0), (h1, p1) in zip(curve, curve[1:]):
        if h0 >= end:  # pragma: no mutate
            break
        if h1 > end:  # pragma: no mutate
            p1 = p0 + (p1 - p0) * (end - h0) / (h1 - h0)
            h1 = end
        area += (h1 - h0) * (p0 + p1) / 2
    last_hours, last_pct = curve[-1]
    if last_hours < end:  # pragma: no mutate
        area += (end - last_hours) * last_pct
    return area


def change(score: float | None, baseline: float | None) -> float | None:
    """score - baseline; undefined when either is missing."""
    if score is None or baseline is None:
        return None
    return score - baseline


CHANGE = {"change": change, "pct_change": pct_change}


def auc_timepoints(protocol: Protocol) -> list[str]:
    """The time points on the area's curve: after the anchor, up to the area's end."""
    auc = protocol.endpoints.auc
    if auc is None:
        return []
    end = auc.to.nominal_minutes
    return [tp.code for tp in protocol.timepoints if 0 < tp.target.nominal_minutes <= end]


def endpoint_columns(plan: EndpointPlan) -> list[str]:
    """The columns ``compute_endpoints`` fills, in the table's order."""
    at = [code.lower() for code in plan.at]
    columns = [f"baseline_{plan.name}"] + [f"{plan.name}_{code}" for code in at]
    for kind in plan.changes:
        columns += [f"{kind}_{code}" for code in at]
    columns += [responder.name for responder in plan.responders]
    if plan.auc is not None:
        columns.append(plan.auc.name)
    columns += [f"{plan.hours_stem}_{code}" for code in at]
    if plan.auc is not None:
        columns.append("auc_n_points")
    return columns


def baseline_of(plan: EndpointPlan, values: dict[str, tuple[float, float]]) -> float | None:
    """The baseline: the one baseline time point's value, or the mean of those given."""
    given = [values[code][1] for code in plan.baseline if code in values]
    if not given:
        return None
    if len(plan.baseline) == 1:
        return given[0]
    return sum(given) / len(given)


def compute_endpoints(
    plan: EndpointPlan, values: dict[str, tuple[float, int]], curve_timepoints: list[str]
) -> dict[str, object]:
    """Endpoints from {time point code: (hours from the anchor, value)} of one participant's
    period, as {column: value} in ``endpoint_columns`` order.

    ``curve_timepoints`` are the time points that enter the area (``auc_timepoints``).
    """
    baseline = baseline_of(plan, values)
    result: dict[str, object] = {f"baseline_{plan.name}": _round(baseline) if len(plan.baseline) > 1 else baseline}

    def value(code):
        entry = values.get(code)
        return None if entry is None else entry[1]

    exact = {}
    for code in plan.at:
        result[f"{plan.name}_{code.lower()}"] = value(code)
    for kind in plan.changes:
        for code in plan.at:
            exact[f"{kind}_{code.lower()}"] = CHANGE[kind](value(code), baseline)
            result[f"{kind}_{code.lower()}"] = _round(exact[f"{kind}_{code.lower()}"])
    for responder in plan.responders:
        judged = exact[responder.of]
        result[responder.name] = None if judged is None else responder.responds(judged)
    auc = plan.auc
    if auc is not None:
        area = n_points = None
        needed = True if auc.requires is None else CHANGE[auc.change](value(auc.requires), baseline) is not None
        if needed:
            points = [
                (values[code][0], CHANGE[auc.change](values[code][1], baseline))
                for code in curve_timepoints
                if code in values
            ]
            points = [(hours, measured) for hours, measured in points if measured is not None]
            if auc_points_used(points, auc.hours) >= auc.min_points:
                area, n_points = auc_pct_change(points, auc.hours), auc_points_used(points, auc.hours)
        result[auc.name] = _round(area, 1)
    for code in plan.at:
        entry = values.get(code)
        result[f"{plan.hours_stem}_{code.lower()}"] = None if entry is None else _round(entry[0], 2)
    if auc is not None:
        result["auc_n_points"] = n_points
    return result


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
