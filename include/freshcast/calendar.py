"""Calendar inputs: each step's position in a cycle (hour of the day, day of the week, ...) as
a (sin, cos) pair, so that the end of a cycle lies next to its start (hour 23 next to hour 0).

A component's value at a row is a fraction `f` of its cycle, in [0, 1), computed from that
row's timestamp alone (no other row is read, so nothing leaks from later rows):

    minute      minute / 60
    hour        (hour + minute / 60) / 24
    dayofweek   dayofweek / 7                       Monday is 0, Sunday 6
    dayofmonth  (day - 1) / days_in_month           28, 29, 30 or 31
    dayofyear   (dayofyear - 1) / (366 if leap year else 365)
    month       (month - 1) / 12

and its columns are `cal_<component>_sin` = sin(2 pi f) and `cal_<component>_cos` = cos(2 pi f).
Seconds are not counted. The fields are read from the index as given: in this project a series'
index is UTC (see `validate`), so `hour` is the UTC hour, not the local hour of the data.

Training (`validate` appends the columns a spec's `calendar` asks for) and serving (a bundle
derives the ones the data lacks, `ensure_calendar`) compute them here, so they always agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from freshcast.spec import CALENDAR_COMPONENTS, CALENDAR_PREFIX

COMPONENTS = tuple(CALENDAR_COMPONENTS)  # minute, hour, dayofweek, dayofmonth, dayofyear, month
FUNCTIONS = ("sin", "cos")

_FRACTIONS: dict[str, Callable[[pd.DatetimeIndex], np.ndarray]] = {
    "minute": lambda ix: ix.minute.to_numpy(np.float64) / 60,
    "hour": lambda ix: (ix.hour.to_numpy(np.float64) + ix.minute.to_numpy(np.float64) / 60) / 24,
    "dayofweek": lambda ix: ix.day_of_week.to_numpy(np.float64) / 7,
    "dayofmonth": lambda ix: (
        (ix.day.to_numpy(np.float64) - 1) / ix.days_in_month.to_numpy(np.float64)
    ),
    "dayofyear": lambda ix: (
        (ix.day_of_year.to_numpy(np.float64) - 1) / np.where(ix.is_leap_year, 366.0, 365.0)
    ),
    "month": lambda ix: (ix.month.to_numpy(np.float64) - 1) / 12,
}


def column_names(components: Sequence[str]) -> list[str]:
    """`cal_<component>_sin`, `cal_<component>_cos` for each component, in order (the same
    names as `PipelineSpec.calendar_columns`)."""
    return [f"{CALENDAR_PREFIX}{c}_{f}" for c in components for f in FUNCTIONS]


def parse_column(name: str) -> tuple[str, str] | None:
    """(component, "sin" or "cos") of a calendar column name, or None for any other name."""
    if not name.startswith(CALENDAR_PREFIX):
        return None
    component, _, function = name[len(CALENDAR_PREFIX) :].rpartition("_")
    if component in COMPONENTS and function in FUNCTIONS:
        return component, function
    return None


def is_calendar_column(name: str) -> bool:
    """Whether `name` is a calendar column this module can derive from a timestamp."""
    return parse_column(name) is not None


def cycle_fraction(index: pd.DatetimeIndex, component: str) -> np.ndarray:
    """The fraction of `component`'s cycle at each timestamp (see the module docstring).

    Args:
        index: (rows,) timestamps, without NaT.
        component: one of COMPONENTS.

    Returns:
        (rows,) float64 in [0, 1).
    """
    _check_components([component])
    return _FRACTIONS[component](_check_index(index))


def encode(index: pd.DatetimeIndex, components: Sequence[str]) -> pd.DataFrame:
    """The calendar columns of each timestamp.

    Args:
        index: (rows,) timestamps without NaT; their fields are read as given (a UTC index
            gives the UTC hour, day and so on).
        components: among COMPONENTS, e.g. ["hour", "dayofweek"]; may be empty.

    Returns:
        (rows, 2 * len(components)) float64 frame on `index`, columns `column_names(components)`:
        `cal_<c>_sin` = sin(2 pi f) and `cal_<c>_cos` = cos(2 pi f) of each component's cycle
        fraction f. Row i depends on `index[i]` only.

    Raises:
        ValueError: an unknown or repeated component, or an index that is not a
            DatetimeIndex or holds NaT.
    """
    _check_components(components)
    index = _check_index(index)
    data = {}
    for component in components:
        angle = 2 * np.pi * _FRACTIONS[component](index)  # [rows]
        data[f"{CALENDAR_PREFIX}{component}_sin"] = np.sin(angle)
        data[f"{CALENDAR_PREFIX}{component}_cos"] = np.cos(angle)
    return pd.DataFrame(data, index=index, columns=column_names(components), dtype=np.float64)


def add_calendar(frame: pd.DataFrame, components: Sequence[str]) -> pd.DataFrame:
    """`frame` with the calendar columns of `components` appended, derived from its index.

    Args:
        frame: (rows, columns) with a DatetimeIndex; not modified.
        components: among COMPONENTS.

    Returns:
        (rows, columns + 2 * len(components)): `frame`'s columns, then `column_names(components)`.

    Raises:
        ValueError: as `encode`, or when `frame` already has one of the columns.
    """
    names = column_names(components)
    taken = [c for c in names if c in frame.columns]
    if taken:
        raise ValueError(
            f"`frame` already has the calendar column(s) {taken}; use `ensure_calendar` to add "
            "only the missing ones"
        )
    if not names:
        return frame
    return pd.concat([frame, encode(frame.index, components)], axis=1)


def ensure_calendar(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """`frame` with every calendar column listed in `columns` that it lacks, derived from its
    index: data a model with calendar inputs forecasts from needs only the values.

    Args:
        frame: (rows, columns) with a DatetimeIndex (UTC, as `validate` returns it); not
            modified.
        columns: column names, e.g. a bundle's; names that are not calendar columns are
            ignored.

    Returns:
        `frame` itself when it lacks none, else a new frame with the missing calendar columns
        appended in the order of `columns`.

    Raises:
        ValueError: as `encode`, when a column must be derived.
    """
    missing = [c for c in columns if c not in frame.columns and is_calendar_column(c)]
    if not missing:
        return frame
    components = list(dict.fromkeys(parse_column(c)[0] for c in missing))
    derived = encode(frame.index, components)[missing]
    return pd.concat([frame, derived], axis=1)


def _check_components(components: Sequence[str]) -> None:
    if isinstance(components, str):
        raise ValueError(
            f"`components` must be a list of names, not a string. Received: {components!r}"
        )
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise ValueError(
            f"`components` must be among {list(COMPONENTS)}. Received: {list(components)!r}"
        )
    if len(set(components)) != len(components):
        raise ValueError(f"`components` lists a component twice. Received: {list(components)!r}")


def _check_index(index: object) -> pd.DatetimeIndex:
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(f"calendar inputs need a DatetimeIndex. Received: {type(index).__name__}")
    if index.hasnans:
        i = int(np.flatnonzero(index.isna())[0])
        raise ValueError(f"the index holds NaT (first at position {i}); calendar inputs need times")
    return index
