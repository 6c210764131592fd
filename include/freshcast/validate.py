"""Checks with messages a user can act on, then the series on a regular grid.

Every failure names the source, the column or row, what was found and what to do about it.

The steps, in order: the spec's columns are present; timestamps parse (with `timestamp_format`
when the spec gives one), ascend and are unique; values are numbers within ±MAX_ABS_VALUE; the
rows are resampled or put on the grid; gaps that touch the first or last row are handled by
`gaps.edges` (refused, filled with the nearest known value, or trimmed), the others filled by
`gaps.fill`; the calendar inputs are appended; then the finite, constant, size and scale checks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from freshcast.calendar import add_calendar, column_names
from freshcast.errors import BadInputError
from freshcast.ingest import SourceError, join_timestamp, timestamp_format, to_utc
from freshcast.scaling import MAX_ABS_VALUE, fit_scaler
from freshcast.spec import PipelineSpec, quote

log = logging.getLogger(__name__)


class DataValidationError(BadInputError, ValueError):
    """The data cannot be used as it is; the message says where and how to fix it."""


@dataclass
class ValidationReport:
    """What validation found and changed; JSON-able, as it is written to the manifest.

    Attributes:
        rows, start, end: the series returned: its steps and its first and last time (ISO).
        filled: column -> steps filled by `gaps.fill` (inside the series).
        split_rows: rows of the train, val and test splits.
        edges_filled: column -> {"start": n, "end": n}, the first and last n steps that
            `gaps.edges: fill` gave the nearest known value; only columns it filled.
        trimmed: {"start": n, "end": n}, the steps `gaps.edges: trim` dropped before the first
            and after the last complete step.
    """

    rows: int
    start: str
    end: str
    filled: dict[str, int] = field(default_factory=dict)
    split_rows: dict[str, int] = field(default_factory=dict)
    edges_filled: dict[str, dict[str, int]] = field(default_factory=dict)
    trimmed: dict[str, int] = field(default_factory=lambda: {"start": 0, "end": 0})


def validate_frame(
    raw: pd.DataFrame, spec: PipelineSpec, *, source: str, for_training: bool = True
) -> tuple[pd.DataFrame, ValidationReport]:
    """Check the ingested rows and return the series on a regular grid.

    Args:
        raw: (rows, columns) as ingested: the timestamp column `spec.timestamp_name` (or the
            columns that make it up) unparsed, then the spec's `data_columns`, rows in file
            order.
        spec: the pipeline spec.
        source: how to name the data in messages (file path or package resource).
        for_training: check that the series fills the spec's splits; a forecast only needs
            one window of history.

    Returns:
        (frame, report): frame is (steps, len(spec.columns)) float64, columns in the order of
        `spec.columns` (features, calendar inputs, target), with a UTC DatetimeIndex named
        `spec.timestamp_name`, resampled, edge gaps handled and gaps filled per the spec. Every
        value is within ±`MAX_ABS_VALUE`, and so is every value scaled as `split_scale` will
        scale it (for training), so no later step can overflow.

    Raises:
        DataValidationError: on the first problem found, with the fix.
    """

    def fail(message: str) -> DataValidationError:
        return DataValidationError(f"{source}: {message}")

    name = spec.timestamp_name
    _check_columns(raw, spec, fail)
    try:  # the messages name the spec field, or the source, column and row
        form = timestamp_format(spec)
        if name not in raw.columns:  # the parts, as a frame not read by `load_source` has them
            raw = join_timestamp(raw, spec, source=source)
    except SourceError as err:
        raise DataValidationError(str(err)) from None
    if raw.empty:
        raise fail("no rows up to the run's cutoff; check the source and the run's data interval")
    stamps = _parse_timestamps(raw[name], spec, form, fail)
    values = _numeric(raw[spec.data_columns], fail)
    frame = values.set_axis(pd.DatetimeIndex(stamps, name=name), axis=0)

    if spec.resample:
        how = spec.resample.aggregation
        resampler = frame.resample(spec.resample.frequency)
        # An empty bin is a gap, not a zero: sum needs min_count=1 to say so.
        frame = resampler.sum(min_count=1) if how == "sum" else getattr(resampler, how)()
    else:
        frame = _on_grid(frame, spec.frequency, fail)

    frame, trimmed, edges_filled = _edges(frame, spec, fail)
    frame, filled = _fill_gaps(frame, spec, fail)
    # After filling, so every step has a row; from each row's own time, so nothing leaks.
    frame = add_calendar(frame, spec.calendar)[spec.columns]
    _check_finite(frame, fail)
    _check_not_constant(frame, spec, fail, for_training=for_training)
    if for_training:
        sizes = _check_enough_rows(len(frame), spec, fail)
        _check_scaled(frame, spec, sizes[0], fail)
    elif len(frame) < spec.window:
        raise fail(f"{len(frame)} rows are fewer than one window of {spec.window}")
    else:
        sizes = (len(frame), 0, 0)
    report = ValidationReport(
        rows=len(frame),
        start=frame.index[0].isoformat(),
        end=frame.index[-1].isoformat(),
        filled=filled,
        split_rows=dict(zip(("train", "val", "test"), sizes, strict=True)),
        edges_filled=edges_filled,
        trimmed=trimmed,
    )
    return frame, report


def _check_columns(raw: pd.DataFrame, spec: PipelineSpec, fail) -> None:
    """Refuse a raw frame without a source column: the timestamp (combined, or each of the
    columns that make it up), the target, each feature; the message names the spec field."""
    stamp = [] if spec.timestamp_name in raw.columns else spec.timestamp_columns
    fields = dict.fromkeys(stamp, "timestamp") | {spec.target: "target"}
    for column in spec.features:
        fields.setdefault(column, "features")
    present = list(raw.columns)
    for column, spec_field in fields.items():
        if column not in present:
            raise fail(
                f"column {column!r} (spec field '{spec_field}') is missing; the data has "
                f"{present}. Fix the spec field or the data's header."
            )


def _parse_timestamps(column: pd.Series, spec: PipelineSpec, form: str | None, fail) -> pd.Series:
    """(rows,) UTC times of the timestamp column, parsed with `form` (strftime, or None for
    ISO 8601 or what pandas infers); refuses a row that does not parse, and times that do not
    ascend or repeat."""
    stamps = to_utc(column, format=form, errors="coerce")
    name = spec.timestamp_name
    where = f"column {name!r}"
    if len(spec.timestamp_columns) > 1:
        where += f" (made of {spec.timestamp_columns})"
    bad = np.flatnonzero(stamps.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        if form is None:
            fix = (
                "Use ISO 8601, e.g. 2024-01-31 or 2024-01-31T13:00:00Z, or set `timestamp_format` "
                "to the data's format, e.g. '%d/%m/%Y %H:%M'."
            )
            said = "cannot be parsed"
        else:
            fix = "Fix the row, or set `timestamp_format` to match the data."
            said = f"does not match timestamp_format {quote(form)}"
        raise fail(
            f"{where}, row {i + 1}: timestamp {column.iloc[i]!r} {said} ({bad.size} such "
            f"row(s)). {fix}"
        )
    ns = stamps.to_numpy(dtype="datetime64[ns]").astype("int64")
    steps = np.diff(ns)
    if (steps < 0).any():
        i = int(np.flatnonzero(steps < 0)[0]) + 1
        raise fail(
            f"{where}, row {i + 1}: timestamp {stamps.iloc[i]} comes before row {i}'s "
            f"{stamps.iloc[i - 1]}; timestamps must be sorted ascending. Sort the data by {name!r}."
        )
    if (steps == 0).any():
        i = int(np.flatnonzero(steps == 0)[0]) + 1
        raise fail(
            f"{where}, rows {i} and {i + 1}: duplicate timestamp {stamps.iloc[i]}; "
            "each timestamp must appear once. Remove or aggregate the duplicates."
        )
    return stamps


def _numeric(values: pd.DataFrame, fail) -> pd.DataFrame:
    out = {}
    for column in values.columns:
        raw = values[column]
        if pd.api.types.is_bool_dtype(raw):
            raise fail(f"column {column!r} is boolean; features and target must be numbers")
        numbers = pd.to_numeric(raw, errors="coerce")
        bad = np.flatnonzero((numbers.isna() & raw.notna()).to_numpy())
        if bad.size:
            i = int(bad[0])
            raise fail(
                f"column {column!r}, row {i + 1}: value {raw.iloc[i]!r} is not a number "
                f"({bad.size} such row(s)). Features and target must be numeric columns."
            )
        # An inf is left to `_check_finite`, which tells it apart from a gap left unfilled.
        big = np.flatnonzero((np.isfinite(numbers) & (numbers.abs() > MAX_ABS_VALUE)).to_numpy())
        if big.size:
            i = int(big[0])
            raise fail(
                f"column {column!r}, row {i + 1}: value {float(numbers.iloc[i])!r} is beyond "
                f"±{MAX_ABS_VALUE:g} ({big.size} such row(s)), the limit within which the scaler, "
                "the float32 model and its squared-error loss cannot overflow. Fix the value, "
                "or record the column in larger units (thousands, millions)."
            )
        out[column] = numbers.astype("float64")
    return pd.DataFrame(out, index=values.index)


def _on_grid(frame: pd.DataFrame, frequency: str, fail) -> pd.DataFrame:
    grid = pd.date_range(frame.index[0], frame.index[-1], freq=frequency, name=frame.index.name)
    off = ~frame.index.isin(grid)
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise fail(
            f"row {i + 1}: timestamp {frame.index[i]} is not on the {frequency!r} grid that starts "
            f"at {frame.index[0]} ({int(off.sum())} such row(s)). Fix `frequency` in the spec, or "
            "add `resample` to aggregate onto a regular grid."
        )
    return frame.reindex(grid)


def _edges(
    frame: pd.DataFrame, spec: PipelineSpec, fail
) -> tuple[pd.DataFrame, dict[str, int], dict[str, dict[str, int]]]:
    """Apply `gaps.edges` to gaps that touch the first or last step, which interpolation
    cannot fill.

    Args:
        frame: (steps, columns) on the grid, NaN where a value or a timestamp is missing.

    Returns:
        (frame, trimmed, edges_filled): for `trim`, the steps from the first to the last step
        with a value in every column, and how many were dropped before and after them; for
        `fill`, each leading (trailing) gap given the column's first (last) known value, and
        per column filled how many steps at the start and the end; for `error`, `frame` as it
        is (`_check_finite` refuses what remains).
    """
    trimmed = {"start": 0, "end": 0}
    edges_filled: dict[str, dict[str, int]] = {}
    if spec.gaps.edges == "trim":
        complete = np.flatnonzero(frame.notna().all(axis=1).to_numpy())
        if not complete.size:
            raise fail(
                f"no step has a value in every column {list(frame.columns)}, so `gaps.edges: "
                "trim` would leave nothing; check that the columns cover the same period."
            )
        first, last = int(complete[0]), int(complete[-1])
        trimmed = {"start": first, "end": len(frame) - 1 - last}
        if first or last < len(frame) - 1:
            log.info(
                "gaps.edges=trim: dropped %d step(s) before %s and %d after %s, where a column "
                "had no value",
                trimmed["start"],
                frame.index[first],
                trimmed["end"],
                frame.index[last],
            )
        frame = frame.iloc[first : last + 1]
    elif spec.gaps.edges == "fill":
        limit = spec.gaps.max_missing
        frame = frame.copy()
        for column in frame.columns:
            known = np.flatnonzero(frame[column].notna().to_numpy())
            if not known.size:
                raise fail(
                    f"column {column!r} has no value in any of the {len(frame)} steps; "
                    "`gaps.edges: fill` needs one. Check the data, or remove the column from "
                    "`features`."
                )
            lead, trail = int(known[0]), len(frame) - 1 - int(known[-1])
            for where, n, rows in (
                ("first", lead, slice(0, lead)),
                ("last", trail, slice(len(frame) - trail, len(frame))),
            ):
                if n > limit:
                    span = frame.index[rows]
                    raise fail(
                        f"column {column!r}: its {where} {n} step(s), {span[0]} to {span[-1]}, "
                        f"have no value, more than gaps.max_missing={limit} that `gaps.edges: "
                        f"fill` may fill. Set gaps.max_missing to {n}, set `gaps.edges: trim` "
                        "to drop those steps, or repair the data."
                    )
            if lead or trail:
                values = frame[column].to_numpy(copy=True)
                values[:lead] = values[lead]
                values[len(values) - trail :] = values[len(values) - 1 - trail]
                frame[column] = values
                edges_filled[column] = {"start": lead, "end": trail}
                log.info(
                    "gaps.edges=fill: column %r: the first %d and last %d step(s) took the "
                    "nearest known value",
                    column,
                    lead,
                    trail,
                )
    return frame, trimmed, edges_filled


def _fill_gaps(
    frame: pd.DataFrame, spec: PipelineSpec, fail
) -> tuple[pd.DataFrame, dict[str, int]]:
    limit = spec.gaps.max_missing
    filled: dict[str, int] = {}
    for column in frame.columns:
        missing = frame[column].isna().to_numpy()
        if not missing.any():
            continue
        start, length = _longest_run(missing)
        if length > limit:
            first, last = frame.index[start], frame.index[start + length - 1]
            raise fail(
                f"column {column!r} has {length} consecutive missing step(s) from {first} to "
                f"{last} (missing timestamps or empty values); the spec allows gaps.max_missing="
                f"{limit} with gaps.fill={spec.gaps.fill!r}. Repair the data or set "
                f"gaps: {{fill: interpolate, max_missing: {length}}}."
            )
        filled[column] = int(missing.sum())
    if filled and spec.gaps.fill == "ffill":
        frame = frame.ffill(limit=limit)
    elif filled and spec.gaps.fill == "interpolate":
        frame = frame.interpolate(method="time", limit=limit, limit_area="inside")
    return frame, filled


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """(start, length) of the longest run of True in a 1D bool mask."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    starts, ends = edges[::2], edges[1::2]
    k = int(np.argmax(ends - starts))
    return int(starts[k]), int(ends[k] - starts[k])


def _check_finite(frame: pd.DataFrame, fail) -> None:
    for column in frame.columns:
        values = frame[column].to_numpy()
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            if np.isnan(values[i]):
                raise fail(
                    f"column {column!r} at {frame.index[i]}: NaN left after the gap policy "
                    f"({bad.size} such value(s)); a gap at the start or end cannot be filled. "
                    "Trim or repair the data. Or set `gaps.edges` to 'trim' (drop the steps "
                    "before the first and after the last complete step) or 'fill' (repeat the "
                    "nearest known value, at most gaps.max_missing steps)."
                )
            raise fail(
                f"column {column!r} at {frame.index[i]}: {values[i]} value ({bad.size} "
                "non-finite value(s)); features and target must be finite numbers. Replace it "
                "in the data, or leave the cell empty for the `gaps` policy to fill."
            )
        # Every cell passed `_numeric`'s bound, and gap filling stays between its neighbours:
        # only a `resample` sum can leave it.
        big = np.flatnonzero(np.abs(values) > MAX_ABS_VALUE)
        if big.size:
            i = int(big[0])
            raise fail(
                f"column {column!r} at {frame.index[i]}: the `resample` sum "
                f"{float(values[i])!r} is beyond ±{MAX_ABS_VALUE:g} ({big.size} such value(s)), "
                "the limit within which the scaler and the float32 model cannot overflow. "
                "Aggregate with `mean`, or record the column in larger units."
            )


def _check_scaled(frame: pd.DataFrame, spec: PipelineSpec, train: int, fail) -> None:
    """Refuse a value that `split_scale` would scale past ±MAX_ABS_VALUE: one far outside the
    training rows' range, when those rows barely vary."""
    values = frame.to_numpy()  # [rows, columns], in the spec's column order
    scaler = fit_scaler(spec.scaler, values[:train], list(frame.columns))
    scaled = scaler.transform(values, dtype=np.float64)
    for j, column in enumerate(frame.columns):
        far = np.flatnonzero(np.abs(scaled[:, j]) > MAX_ABS_VALUE)
        if far.size:
            i = int(far[0])
            raise fail(
                f"column {column!r} at {frame.index[i]}: {float(values[i, j])!r} scales to "
                f"{scaled[i, j]:.3g} ({far.size} such value(s)) with the {spec.scaler!r} scaler "
                f"fit on the {train} training rows, beyond ±{MAX_ABS_VALUE:g}, the limit within "
                "which the float32 model cannot overflow: the training rows barely vary next to "
                "it. Fix the value, or start the data where the column already varies as it "
                "does later."
            )


def _check_not_constant(
    frame: pd.DataFrame, spec: PipelineSpec, fail, *, for_training: bool
) -> None:
    """Refuse a data column with one value; for training, also a calendar component whose
    sin and cos are both the same in every step (a forecast's few steps may well be)."""
    for column in spec.data_columns:
        values = frame[column].to_numpy()
        if values.min() == values.max():
            fix = (
                "Check the source, or choose another `target`."
                if column == spec.target
                else "Remove it from `features`."
            )
            raise fail(
                f"column {column!r} is constant ({float(values[0])!r}); it carries no signal and "
                f"cannot be scaled. {fix}"
            )
    if not for_training:
        return
    for component in spec.calendar:
        pair = frame[column_names([component])].to_numpy()  # [rows, 2]: sin, cos
        if (pair.min(axis=0) == pair.max(axis=0)).all():
            raise fail(
                f"calendar component {component!r} has the same value in every step from "
                f"{frame.index[0]} to {frame.index[-1]}; it carries no signal. Drop it from "
                "`calendar`, or add data that spans more of its cycle."
            )


def _check_enough_rows(rows: int, spec: PipelineSpec, fail) -> tuple[int, int, int]:
    train, val, test = spec.split.sizes(rows)
    need_train, need = spec.window + spec.horizon + 1, spec.horizon
    if train < need_train or val < need or test < need:
        raise fail(
            f"too few rows: {rows} after validation split into train={train}, val={val}, "
            f"test={test}; need train >= window + horizon + 1 = {need_train} and val, test >= "
            f"horizon = {need}. Add data, or lower `window` or the `split` sizes."
        )
    if spec.season_length > train + val:
        raise fail(
            f"season_length={spec.season_length} reaches back past the first row from the test "
            f"split ({train + val} rows before it). Lower `season_length` or add data."
        )
    return train, val, test
