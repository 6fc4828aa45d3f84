"""Server-rendered SVG charts: no JavaScript, no library, nothing from a CDN.

Time runs on a log-like axis (hours from the infusion start) so that the first hours and the
second week are both readable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 44
TICKS = [(-1, "pre"), (1, "1 h"), (4, "4 h"), (24, "1 d"), (72, "3 d"), (168, "7 d"), (336, "14 d")]
PERIOD_STYLES = {1: ("#0b5cad", ""), 2: ("#a1262d", "6 4"), 3: ("#1d6b35", "2 3"), 4: ("#8a5a00", "8 3 2 3")}


def _x(hours: float) -> float:
    """Hours to pixels on a signed log scale from -2 h to 16 days."""

    def scale(h):
        return math.copysign(math.log1p(abs(h)), h)

    low, high = scale(-2), scale(16 * 24)
    return LEFT + (scale(hours) - low) / (high - low) * (WIDTH - LEFT - RIGHT)


def _y(value: float, top_value: float = 100, bottom_value: float = 0) -> float:
    return TOP + (top_value - value) / (top_value - bottom_value) * (HEIGHT - TOP - BOTTOM)


@dataclass
class Point:
    hours: float
    value: float
    label: str
    spread: float | None = None  # standard deviation, drawn as an error bar


def _frame(y_ticks, y_label: str, y_top: float, y_bottom: float) -> list[str]:
    parts = [
        f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" '
        f'fill="#fff" stroke="#c9d1da"/>'
    ]
    for value in y_ticks:
        y = _y(value, y_top, y_bottom)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eef0f2"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{value:g}</text>')
    for hours, label in TICKS:
        x = _x(hours)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{HEIGHT - BOTTOM}" y2="{HEIGHT - BOTTOM + 4}" stroke="#4a5561"/>'
        )
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="11">{label}</text>')
    parts.append(
        f'<text x="{(LEFT + WIDTH) / 2:.0f}" y="{HEIGHT - 6}" text-anchor="middle" font-size="11">'
        f"time since infusion start</text>"
    )
    parts.append(
        f'<text x="12" y="{TOP + (HEIGHT - TOP - BOTTOM) / 2:.0f}" font-size="11" '
        f'transform="rotate(-90 12 {TOP + (HEIGHT - TOP - BOTTOM) / 2:.0f})" text-anchor="middle">'
        f"{escape(y_label)}</text>"
    )
    return parts


def line_chart(
    series: dict[str, list[Point]], *, title: str, y_label: str, y_range=(0, 100), y_ticks=(0, 25, 50, 75, 100)
) -> str:
    """One line per series; each point a circle with a tooltip; error bars where given."""
    y_bottom, y_top = y_range
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
    ]
    parts += _frame(y_ticks, y_label, y_top, y_bottom)
    for index, (name, points) in enumerate(series.items(), start=1):
        colour, dash = PERIOD_STYLES.get(index, ("#1b1f24", ""))
        points = sorted(points, key=lambda p: p.hours)
        coords = [(_x(p.hours), _y(p.value, y_top, y_bottom)) for p in points]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>'
            )
        for point, (x, y) in zip(points, coords):
            if point.spread is not None:
                low = _y(max(y_bottom, point.value - point.spread), y_top, y_bottom)
                high = _y(min(y_top, point.value + point.spread), y_top, y_bottom)
                parts.append(
                    f'<line class="error-bar" x1="{x:.1f}" x2="{x:.1f}" y1="{low:.1f}" '
                    f'y2="{high:.1f}" stroke="{colour}"/>'
                )
            parts.append(
                f'<circle class="point" data-series="{escape(name)}" cx="{x:.1f}" cy="{y:.1f}" r="4" '
                f'fill="{colour}"><title>{escape(name)}: {escape(point.label)}</title></circle>'
            )
        legend_y = TOP + 14 * index
        parts.append(
            f'<line x1="{WIDTH - RIGHT - 150}" x2="{WIDTH - RIGHT - 126}" y1="{legend_y}" y2="{legend_y}" '
            f'stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>'
        )
        parts.append(f'<text x="{WIDTH - RIGHT - 120}" y="{legend_y + 4}" font-size="11">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
