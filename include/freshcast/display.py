"""How figures are shown to a person: rounded to what the data supports, with their units.

One place for it, so the report, the Airflow UI pages, the task logs and `make status` print the
same figure the same way. Pure functions of plain values; numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

# Metrics in the data's own units; the others are ratios or percentages.
UNIT_METRICS = ("mae", "rmse", "bias")
PERCENT_METRICS = ("mape", "smape", "skill")
RATIO_DECIMALS = 3
PERCENT_DECIMALS = 1
MAX_DECIMALS = 6
SIGNIFICANT = 4  # digits a figure shows at most: more is noise to a reader


def data_decimals(values: Iterable[float] | np.ndarray, *, limit: int = MAX_DECIMALS) -> int:
    """The decimals the data is recorded with: the fewest `d` for which every finite value
    equals itself rounded to `d` places (0.1-degree readings give 1, whole counts 0).

    Args:
        values: the series' values, any shape; NaN and inf are ignored.
        limit: the most decimals reported (float noise would otherwise give 15+).
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    array = array[np.isfinite(array)]
    if array.size == 0:
        return 2
    for d in range(limit + 1):
        scale = np.maximum(np.abs(array), 1.0) * 1e-9
        if np.all(np.abs(np.round(array, d) - array) <= scale):
            return d
    return limit


def metric_decimals(metric: str, data: int) -> int:
    """Decimals for a metric: one more than the data's for errors in its units (an average of
    0.1-degree errors resolves 0.01), fixed ones for ratios and percentages."""
    metric = metric.lower()
    if metric in UNIT_METRICS or metric.startswith("champion"):
        return min(data + 1, MAX_DECIMALS)
    if metric in PERCENT_METRICS:
        return PERCENT_DECIMALS
    return RATIO_DECIMALS


def number(value: Any, decimals: int, *, significant: int | None = SIGNIFICANT) -> str:
    """`value` to at most `decimals` places and at most `significant` significant digits (a
    float series recorded to 6 places shows an error of 1.136, not 1.135927); None, NaN and inf
    as "n/a"."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(value):
        return "n/a"
    if significant and value != 0:
        decimals = min(decimals, max(significant - 1 - math.floor(math.log10(abs(value))), 0))
    text = f"{value:,.{max(decimals, 0)}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text.replace(",", "")) == 0 else text


def with_unit(text: str, unit: str) -> str:
    """ "2.17" and "°C" -> "2.17 °C"; no unit or "n/a" stays as it is."""
    if not unit or text == "n/a":
        return text
    return f"{text}{unit}" if unit in ("%", "°") else f"{text} {unit}"


def metric_value(metric: str, value: Any, *, decimals: int, unit: str = "") -> str:
    """A metric as a person reads it: an error in the data's units with its unit, a MASE as a
    plain ratio, a percentage with %."""
    metric = metric.lower()
    text = number(value, metric_decimals(metric, decimals))
    if metric in UNIT_METRICS or metric.startswith("champion"):
        return with_unit(text, unit)
    if metric in PERCENT_METRICS:
        return with_unit(text, "%")
    return text


def metric_label(metric: str, unit: str = "") -> str:
    """A column header: "MAE (°C)", "MASE", "sMAPE (%)"."""
    names = {"smape": "sMAPE", "skill": "skill vs persistence", "bias": "bias"}
    name = names.get(metric.lower(), metric.upper())
    if metric.lower() in UNIT_METRICS and unit:
        return f"{name} ({unit})"
    if metric.lower() in PERCENT_METRICS:
        return f"{name} (%)"
    return name


def column_label(name: str, unit: str = "") -> str:
    """A data column's header with its unit: "temp_max (°C)"."""
    return f"{name} ({unit})" if unit else name


def skill(score: Any, reference: Any) -> float:
    """Skill against a reference, in %: the reduction of the error, 100 * (1 - score / ref).
    Positive beats the reference; NaN when either is missing or the reference is 0."""
    try:
        score, reference = float(score), float(reference)
    except (TypeError, ValueError):
        return float("nan")
    if not (math.isfinite(score) and math.isfinite(reference)) or reference == 0:
        return float("nan")
    return 100.0 * (1.0 - score / reference)


def table(rows: list[list[str]], header: list[str], *, indent: str = "  ") -> str:
    """Rows of text as a fixed-width table: the first column left-aligned, the rest right."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = str(cells[0]).ljust(widths[0])
        rest = [str(c).rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return indent + "  ".join([first, *rest]).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def version_label(version: Any) -> str:
    """A registry version as people read it: "v3", or "no champion" where there was none."""
    return "no champion" if version is None else f"v{version}"


def when(iso: str) -> str:
    """An ISO time as a person reads it: the date alone at midnight, else date and time."""
    text = str(iso).replace("T", " ")
    date, _, clock = text.partition(" ")
    clock = clock[:5]
    return date if clock in ("", "00:00") else f"{date} {clock}"
