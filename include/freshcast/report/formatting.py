"""How the report writes its values, shared by the summaries, the pages and the figures:
numbers parsed leniently and rounded by `freshcast.display`, axis and entry labels, prose lists,
interval levels and entries in leaderboard order, and summaries made strict JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from freshcast import display


def cell(metric: str, value: Any, decimals: int) -> str:
    """A metric in a table cell: rounded by `display`, its unit in the column's header."""
    return display.number(value, display.metric_decimals(metric, decimals))


def axis_label(name: str, unit: str) -> str:
    """A name with its unit in brackets: "temp (°C)"; the name alone without a unit."""
    return f"{name} ({unit})" if unit else name


def row_label(row: Mapping[str, Any]) -> str:
    """An entry as the tables and plots name it: "lstm-s2 (seed 43)", "ridge (alpha 10)"."""
    name = str(row["name"])
    if row.get("kind") == "seed" and row.get("seed") is not None:
        return f"{name} (seed {row['seed']})"
    if row.get("alpha") is not None:
        return f"{name} (alpha {compact(row['alpha'])})"
    return name


def compact(value: Any) -> str | None:
    """A parameter or rate in a few characters: 0.003, 1e-05, 32; None stays None (blank)."""
    if value is None or isinstance(value, str | bool):
        return value if value is None else str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    number = as_float(value)
    if math.isnan(number) and not isinstance(value, float | np.floating):
        return str(value)
    return f"{number:.3g}" if math.isfinite(number) else "n/a"


def ordered(by_name: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The keys of `by_name` in leaderboard order, any others after them by name (JSON stores
    objects with sorted keys, so the order has to come from the leaderboard)."""
    ranked = [row["name"] for row in rows if row["name"] in by_name]
    return ranked + sorted(set(by_name) - set(ranked))


def join(items: Sequence[str]) -> str:
    """Joined as in prose: `a`, `a and b`, `a, b and c`."""
    items = list(items)
    if len(items) < 2:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def as_float(value: Any) -> float:
    """`value` as a float; NaN for None or anything that is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def finite(value: Any) -> bool:
    """Whether `value` is a finite number."""
    return math.isfinite(as_float(value))


def sorted_levels(keys: Sequence[str]) -> list[str]:
    """Interval level keys ("95", "80") from the narrowest level to the widest."""
    return sorted(keys, key=lambda key: as_float(key))


def plain(obj: Any) -> Any:
    """`obj` as strict JSON values: numpy and pandas scalars as Python ones, times as ISO 8601,
    NaN, inf and NaT as None."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [plain(v) for v in obj]
    if obj is None or isinstance(obj, str | bool):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if obj is pd.NaT:
        return None
    if isinstance(obj, datetime | pd.Timestamp):
        return obj.isoformat()
    return str(obj)
