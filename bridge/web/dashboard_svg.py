"""Small server-rendered SVG charts for the dashboard: lines and bars, as strings.

The pages allow nothing to load and no script (their Content-Security-Policy), so a chart
is plain inline SVG: one polyline per series (its points in `points` and, as the numbers
drawn, in `data-values`), a dot with a `<title>` per value, axes with a few ticks, and a
`<title>`/`<desc>` pair for screen readers. Missing values (a week without replies) break
the line rather than drawing zero. Text is escaped; colours keep a 4.5:1 contrast on white.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 640, 254
#: The legend sits in the top margin, above the plot, so a line at the top never hides it.
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 26, 36
#: Dark enough on white for text and lines (WCAG AA for graphics and text).
COLOURS = ("#1d4e89", "#a4161a", "#2d6a4f", "#6a4c93")


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float | None]


def _fmt(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def nice_max(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above `value` (1 for <= 0)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def _frame(
    title: str,
    desc: str,
    y_max: float,
    unit: str,
    labels: Sequence[str],
    x: Callable[[int, int], float],
) -> list[str]:
    plot_h = HEIGHT - _TOP - _BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" class="chart" data-y-max="{_fmt(y_max)}">',
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>",
        f'<g stroke="#8a94a3" stroke-width="1"><line x1="{_LEFT}" y1="{_TOP + plot_h}" '
        f'x2="{WIDTH - _RIGHT}" y2="{_TOP + plot_h}"/>'
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + plot_h}"/></g>',
        '<g font-size="11" fill="#333" font-family="system-ui, sans-serif">',
    ]
    for i in range(5):
        value = y_max * i / 4
        y = _TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<text x="{_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(value)}{unit}</text>'
        )
    step = max(1, math.ceil(len(labels) / 8))
    for i, label in enumerate(labels):
        if i % step == 0:
            parts.append(
                f'<text x="{x(i, len(labels)):.1f}" y="{HEIGHT - 14}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    parts.append("</g>")
    return parts


def _x(index: int, count: int) -> float:
    plot_w = WIDTH - _LEFT - _RIGHT
    if count <= 1:
        return _LEFT + plot_w / 2
    return _LEFT + plot_w * index / (count - 1)


def _band(index: int, count: int) -> float:
    """The middle of the index-th of `count` equal bands (bars stay inside the axes)."""
    plot_w = WIDTH - _LEFT - _RIGHT
    return _LEFT + plot_w * (index + 0.5) / max(1, count)


def _y(value: float, y_max: float) -> float:
    plot_h = HEIGHT - _TOP - _BOTTOM
    return _TOP + plot_h - plot_h * min(value, y_max) / y_max


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    unit: str = "",
    y_max: float | None = None,
) -> str:
    """A line chart of `series` over `labels` (one x position per label)."""
    values = [v for s in series for v in s.values if v is not None]
    top = y_max if y_max is not None else nice_max(max(values, default=0.0))
    desc = "; ".join(
        f"{s.name}: " + ", ".join("none" if v is None else _fmt(v) + unit for v in s.values)
        for s in series
    )
    parts = _frame(title, desc, top, unit, labels, _x)
    for n, s in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        segments: list[list[str]] = [[]]
        dots: list[str] = []
        for i, v in enumerate(s.values):
            if v is None:
                segments.append([])
                continue
            x, y = _x(i, len(labels)), _y(v, top)
            segments[-1].append(f"{x:.1f},{y:.1f}")
            dots.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{escape(labels[i])}: '
                f"{_fmt(v)}{escape(unit)}</title></circle>"
            )
        data = " ".join("" if v is None else _fmt(v) for v in s.values)
        parts.append(
            f'<g class="series" data-name="{escape(s.name)}" data-values="{data}" '
            f'stroke="{colour}" fill="{colour}">'
        )
        for points in segments:
            if points:
                parts.append(
                    f'<polyline fill="none" stroke-width="2" points="{" ".join(points)}"/>'
                )
        parts.extend(dots)
        parts.append("</g>")
    parts.append(_legend(series))
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    title: str, labels: Sequence[str], series: Series, *, unit: str = "", y_max: float | None = None
) -> str:
    """A bar per label (a missing value draws no bar)."""
    values = [v for v in series.values if v is not None]
    top = y_max if y_max is not None else nice_max(max(values, default=0.0))
    desc = f"{series.name}: " + ", ".join(
        "none" if v is None else _fmt(v) + unit for v in series.values
    )
    parts = _frame(title, desc, top, unit, labels, _band)
    plot_w = WIDTH - _LEFT - _RIGHT
    width = max(2.0, plot_w / max(1, len(labels)) * 0.6)
    data = " ".join("" if v is None else _fmt(v) for v in series.values)
    parts.append(
        f'<g class="series" data-name="{escape(series.name)}" data-values="{data}" '
        f'fill="{COLOURS[1]}">'
    )
    base = _y(0, top)
    for i, v in enumerate(series.values):
        if v is None:
            continue
        x, y = _band(i, len(labels)), _y(v, top)
        parts.append(
            f'<rect x="{x - width / 2:.1f}" y="{y:.1f}" width="{width:.1f}" '
            f'height="{base - y:.1f}"><title>{escape(labels[i])}: {_fmt(v)}{escape(unit)}'
            "</title></rect>"
        )
    parts.append("</g></svg>")
    return "".join(parts)


def _legend(series: Sequence[Series]) -> str:
    items = []
    for n, s in enumerate(series):
        x = _LEFT + 8 + n * 120
        colour = COLOURS[n % len(COLOURS)]
        items.append(
            f'<rect x="{x}" y="2" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="11" font-size="11" fill="#333">'
            f"{escape(s.name)}</text>"
        )
    return "<g>" + "".join(items) + "</g>"


__all__ = ["COLOURS", "Series", "bar_chart", "line_chart", "nice_max"]
