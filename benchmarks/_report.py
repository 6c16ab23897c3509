"""Figures (median of rounds, with their spread), targets, and Markdown rendering."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Summary:
    """Several rounds of one measurement: the median, and the spread (lowest, highest)."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("a summary needs at least one round")
        return cls(tuple(float(v) for v in values))

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def lo(self) -> float:
        return min(self.values)

    @property
    def hi(self) -> float:
        return max(self.values)

    def fmt(self, digits: int = 2, unit: str = "") -> str:
        """`1.23 (1.10 to 1.40, 5 rounds)`: the median, then the range over the rounds."""
        text = f"{self.median:.{digits}f}{unit}"
        if len(self.values) > 1:
            text += f" ({self.lo:.{digits}f} to {self.hi:.{digits}f}, {len(self.values)} rounds)"
        return text


@dataclass(frozen=True)
class Figure:
    """One headline figure, with its target when it has one."""

    name: str
    value: str
    target: str = ""
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return {True: "met", False: "**missed**", None: ""}[self.met]


@dataclass
class Section:
    """One benchmark's results: headline figures, the Markdown body, and raw data."""

    key: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    data: dict[str, object] = field(default_factory=dict)

    def add(self, text: str = "") -> None:
        self.body.append(text)

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.body.extend(table(header, rows))
        self.body.append("")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def ratios(a: Sequence[float], b: Sequence[float]) -> Summary:
    """Per-round ratios b/a of measurements taken side by side."""
    return Summary.of([y / x for x, y in zip(a, b, strict=True)])


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), linear between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


Progress = Callable[[str], None]
