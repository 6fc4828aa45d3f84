"""The trial's fatigue endpoints, per participant and period (TRIAL.md). Pure functions."""

from __future__ import annotations

from dataclasses import dataclass

AUC_END_HOURS = 168.0
RESPONDER_THRESHOLD = -20.0


@dataclass(frozen=True)
class Endpoints:
    baseline_vas: int | None
    vas_d1: int | None
    vas_d3: int | None
    vas_d7: int | None
    pct_change_d1: float | None
    pct_change_d3: float | None
    pct_change_d7: float | None
    responder_d3: bool | None
    auc_pct_change_0_7d: float | None
    hours_from_dose_d1: float | None = None
    hours_from_dose_d3: float | None = None
    hours_from_dose_d7: float | None = None
    auc_n_points: int | None = None


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


def compute_endpoints(vas_by_timepoint: dict[str, tuple[float, int]], auc_timepoints: list[str]) -> Endpoints:
    """Endpoints from {time point code: (hours from dose, VAS)} of one participant's period.

    ``auc_timepoints`` are the post-dose time points up to D7 that enter the area.
    """

    def vas(code):
        entry = vas_by_timepoint.get(code)
        return None if entry is None else entry[1]

    baseline = vas("BL")
    d1, d3, d7 = vas("D1"), vas("D3"), vas("D7")
    pct_d1, pct_d3, pct_d7 = (pct_change(v, baseline) for v in (d1, d3, d7))
    auc = n_points = None
    if pct_d7 is not None:
        points = [
            (vas_by_timepoint[code][0], pct_change(vas_by_timepoint[code][1], baseline))
            for code in auc_timepoints
            if code in vas_by_timepoint
        ]
        auc, n_points = auc_pct_change(points), auc_points_used(points)

    def hours(code):
        entry = vas_by_timepoint.get(code)
        return None if entry is None else _round(entry[0], 2)

    return Endpoints(
        baseline_vas=baseline,
        vas_d1=d1,
        vas_d3=d3,
        vas_d7=d7,
        pct_change_d1=_round(pct_d1),
        pct_change_d3=_round(pct_d3),
        pct_change_d7=_round(pct_d7),
        responder_d3=None if pct_d3 is None else pct_d3 <= RESPONDER_THRESHOLD,
        auc_pct_change_0_7d=_round(auc, 1),
        hours_from_dose_d1=hours("D1"),
        hours_from_dose_d3=hours("D3"),
        hours_from_dose_d7=hours("D7"),
        auc_n_points=n_points,
    )


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
