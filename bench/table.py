"""A small fixed-width table for benchmark results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

HEADERS = ("benchmark", "value", "unit", "baseline", "ratio")


@dataclass(frozen=True)
class Row:
    """One measured figure, optionally with the baseline it compares to (same unit)."""

    name: str
    value: float
    unit: str
    baseline: float | None = None

    @property
    def ratio(self) -> float | None:
        """value / baseline, when there is a non-zero baseline."""
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline


def format_number(value: float | None) -> str:
    """Three significant figures or so; '-' for nothing."""
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_table(rows: Sequence[Row]) -> str:
    """Render rows as an aligned text table (names left, numbers right)."""
    cells = [
        (
            row.name,
            format_number(row.value),
            row.unit,
            format_number(row.baseline),
            "-" if row.ratio is None else f"{row.ratio:.2f}x",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [HEADERS, *cells]) for i in range(len(HEADERS))]
    left = {0, 2}

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            value.ljust(width) if i in left else value.rjust(width)
            for i, (value, width) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(HEADERS), rule, *(line(values) for values in cells)])
