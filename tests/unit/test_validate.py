from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from freshcast.scaling import MAX_ABS_VALUE
from freshcast.spec import PipelineSpec
from freshcast.validate import DataValidationError, validate_frame

SOURCE = "data/series.csv"
Y = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0]
X = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


def make_spec(**changes) -> PipelineSpec:
    fields = {
        "name": "demo",
        "source": {"path": "series.csv"},
        "timestamp": "ts",
        "frequency": "D",
        "target": "y",
        "features": ["x"],
        "window": 2,
        "split": {"val": 2, "test": 2},
        "models": [{"type": "lstm"}],
    }
    return PipelineSpec.model_validate({**fields, **changes})


def days(n: int, start: str = "2024-01-01") -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in pd.date_range(start, periods=n, freq="D")]


def make_raw(y=Y, x=X, ts=None) -> pd.DataFrame:
    """Ingest-shaped rows: timestamps as text, target before the feature as in the file."""
    return pd.DataFrame({"ts": ts or days(len(y)), "y": y, "x": x})


def error(raw: pd.DataFrame, spec: PipelineSpec) -> str:
    with pytest.raises(DataValidationError) as info:
        validate_frame(raw, spec, source=SOURCE)
    message = str(info.value)
    assert message.startswith(f"{SOURCE}: ")
    return message


def utc_days(n: int, start: str = "2024-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="D", tz="UTC", name="ts")


# --- a clean series ---------------------------------------------------------------------------


def test_clean_daily_frame_passes():
    frame, report = validate_frame(make_raw(), make_spec(), source=SOURCE)
    assert list(frame.columns) == ["x", "y"]  # spec order: features, then the target
    assert str(frame.index.tz) == "UTC"
    assert frame.index.name == "ts"
    assert frame.index.freqstr == "D"
    assert (frame.index == utc_days(10)).all()
    assert frame.dtypes.tolist() == [np.dtype("float64"), np.dtype("float64")]
    assert frame["y"].tolist() == Y
    assert frame["x"].tolist() == [float(v) for v in X]
    assert report.rows == 10
    assert report.start == "2024-01-01T00:00:00+00:00"
    assert report.end == "2024-01-10T00:00:00+00:00"
    assert report.filled == {}
    assert report.split_rows == {"train": 6, "val": 2, "test": 2}


def test_numbers_written_as_text_and_aware_timestamps_are_accepted():
    ts = [f"2024-01-{d:02d}T01:00:00+01:00" for d in range(1, 11)]
    raw = make_raw(y=[str(v) for v in Y], ts=ts)
    frame, _ = validate_frame(raw, make_spec(), source=SOURCE)
    assert (frame.index == utc_days(10)).all()
    assert frame["y"].tolist() == Y


def test_input_frame_is_not_mutated():
    y = [*Y[:3], np.nan, *Y[4:]]
    raw = make_raw(y=y)
    before = raw.copy(deep=True)
    validate_frame(raw, make_spec(gaps={"fill": "interpolate", "max_missing": 1}), source=SOURCE)
    pd.testing.assert_frame_equal(raw, before)


def test_report_split_rows_follow_fractions():
    n = 40
    raw = make_raw(y=[float(i % 7) for i in range(n)], x=list(range(n)))
    _, report = validate_frame(raw, make_spec(split={"val": 0.1, "test": 0.2}), source=SOURCE)
    assert report.split_rows == {"train": 28, "val": 4, "test": 8}


# --- errors: each names the source, the column or row, and a fix ------------------------------


@pytest.mark.parametrize(
    ("drop", "spec_field"),
    [("x", "features"), ("y", "target"), ("ts", "timestamp")],
)
def test_missing_column_names_the_spec_field(drop, spec_field):
    message = error(make_raw().drop(columns=[drop]), make_spec())
    rest = [c for c in ["ts", "y", "x"] if c != drop]
    assert f"column {drop!r} (spec field '{spec_field}') is missing; the data has {rest}" in message
    assert "Fix the spec field or the data's header." in message


def test_no_rows():
    message = error(make_raw().iloc[0:0], make_spec())
    assert "no rows up to the run's cutoff" in message


def test_non_numeric_value_names_the_row():
    y = [str(v) for v in Y]
    y[3], y[7] = "n/a", "??"
    message = error(make_raw(y=y), make_spec())
    assert "column 'y', row 4: value 'n/a' is not a number (2 such row(s))." in message
    assert "Features and target must be numeric columns." in message


def test_boolean_column_is_refused():
    x = [True, False] * 5
    message = error(make_raw(x=x), make_spec())
    assert "column 'x' is boolean; features and target must be numbers" in message


def test_unparseable_timestamp_names_the_row():
    ts = days(10)
    ts[2] = "2024-13-45"
    message = error(make_raw(ts=ts), make_spec())
    assert "column 'ts', row 3: timestamp '2024-13-45' cannot be parsed (1 such row(s))." in message
    assert "Use ISO 8601" in message


def test_empty_timestamp_is_unparseable():
    ts = days(10)
    ts[5] = None
    message = error(make_raw(ts=ts), make_spec())
    assert "column 'ts', row 6: timestamp " in message
    assert "cannot be parsed (1 such row(s))." in message


def test_unsorted_timestamps():
    ts = days(10)
    ts[3], ts[4] = ts[4], ts[3]
    message = error(make_raw(ts=ts), make_spec())
    assert (
        "column 'ts', row 5: timestamp 2024-01-04 00:00:00+00:00 comes before row 4's "
        "2024-01-05 00:00:00+00:00; timestamps must be sorted ascending. Sort the data by 'ts'."
    ) in message


def test_duplicate_timestamps():
    ts = days(10)
    ts[5] = ts[4]
    message = error(make_raw(ts=ts), make_spec())
    assert (
        "column 'ts', rows 5 and 6: duplicate timestamp 2024-01-05 00:00:00+00:00; "
        "each timestamp must appear once. Remove or aggregate the duplicates."
    ) in message


def test_timestamp_off_the_grid():
    ts = days(10)
    ts[2] = "2024-01-03T12:00:00"
    message = error(make_raw(ts=ts), make_spec())
    assert (
        "row 3: timestamp 2024-01-03 12:00:00+00:00 is not on the 'D' grid that starts at "
        "2024-01-01 00:00:00+00:00 (1 such row(s))."
    ) in message
    assert "Fix `frequency` in the spec, or add `resample`" in message


def test_missing_timestamps_longer_than_max_missing():
    raw = make_raw().drop(index=[4, 5]).reset_index(drop=True)  # 2024-01-05 and 2024-01-06
    message = error(raw, make_spec(gaps={"fill": "interpolate", "max_missing": 1}))
    assert (
        "column 'x' has 2 consecutive missing step(s) from 2024-01-05 00:00:00+00:00 to "
        "2024-01-06 00:00:00+00:00 (missing timestamps or empty values); the spec allows "
        "gaps.max_missing=1 with gaps.fill='interpolate'."
    ) in message
    assert "set gaps: {fill: interpolate, max_missing: 2}." in message


def test_empty_values_longer_than_max_missing_reports_the_longest_run():
    y = [*Y]
    y[1] = np.nan  # a run of 1
    y[4] = y[5] = y[6] = np.nan  # a run of 3
    message = error(make_raw(y=y), make_spec())
    assert (
        "column 'y' has 3 consecutive missing step(s) from 2024-01-05 00:00:00+00:00 to "
        "2024-01-07 00:00:00+00:00"
    ) in message
    assert "gaps.max_missing=0 with gaps.fill='none'" in message
    assert "set gaps: {fill: interpolate, max_missing: 3}." in message


def test_any_gap_fails_without_a_fill_policy():
    raw = make_raw().drop(index=[6]).reset_index(drop=True)
    message = error(raw, make_spec())
    assert "column 'x' has 1 consecutive missing step(s) from 2024-01-07" in message


def test_leading_gap_is_nan_left_after_interpolate():
    y = [np.nan, *Y[1:]]
    message = error(make_raw(y=y), make_spec(gaps={"fill": "interpolate", "max_missing": 2}))
    assert (
        "column 'y' at 2024-01-01 00:00:00+00:00: NaN left after the gap policy "
        "(1 such value(s)); a gap at the start or end cannot be filled. Trim or repair the data."
    ) in message


def test_trailing_gap_is_nan_left_after_interpolate():
    y = [*Y[:-1], np.nan]
    message = error(make_raw(y=y), make_spec(gaps={"fill": "interpolate", "max_missing": 1}))
    assert "column 'y' at 2024-01-10 00:00:00+00:00: NaN left after the gap policy" in message


def test_leading_gap_is_nan_left_after_ffill():
    x = [np.nan, *X[1:]]
    message = error(make_raw(x=x), make_spec(gaps={"fill": "ffill", "max_missing": 1}))
    assert "column 'x' at 2024-01-01 00:00:00+00:00: NaN left after the gap policy" in message


@pytest.mark.parametrize("value", [np.inf, "-inf"])
def test_inf_value(value):
    y = [*Y]
    y[6] = value
    message = error(make_raw(y=y), make_spec())
    assert f"column 'y' at 2024-01-07 00:00:00+00:00: {float(value)} value" in message
    assert "gap policy" not in message  # an inf is a bad value, not a gap left unfilled
    assert "Replace it in the data" in message


@pytest.mark.parametrize(
    ("value", "shown"), [(1e308, "1e+308"), ("-1e308", "-1e+308"), (10**16, "1e+16")]
)
def test_value_beyond_the_bound_names_the_column_and_the_row(value, shown):
    # Finite, so `_check_finite` let it through; the scaler and the loss then overflowed.
    y = [*Y]
    y[6] = value
    message = error(make_raw(y=y), make_spec())
    assert f"column 'y', row 7: value {shown} is beyond ±1e+15 (1 such row(s))" in message
    assert "Fix the value, or record the column in larger units" in message


def test_values_at_the_bound_pass():
    y = [*Y]
    y[1], y[4] = MAX_ABS_VALUE, -MAX_ABS_VALUE
    frame, _ = validate_frame(make_raw(y=y), make_spec(), source=SOURCE)
    assert frame["y"].max() == MAX_ABS_VALUE and frame["y"].min() == -MAX_ABS_VALUE


@pytest.mark.parametrize(("scaler", "scaled"), [("minmax", "5e+15"), ("standard", "1.06e+16")])
def test_value_scaled_beyond_the_bound_names_the_column_and_the_time(scaler, scaled):
    # Every value is within the bound, but the training rows vary by 1e-9: the last value,
    # 5e6 away, scales to 5e15.
    y = [1.0, 1.0 + 1e-9, 1.0, 1.0 + 1e-9, 1.0, 1.0, 1.0, 1.0, 1.0, 5e6]
    spec = make_spec(scaler=scaler)
    message = error(make_raw(y=y), spec)
    assert (
        f"column 'y' at 2024-01-10 00:00:00+00:00: 5000000.0 scales to {scaled} (1 such "
        f"value(s)) with the {scaler!r} scaler fit on the 6 training rows, beyond ±1e+15"
    ) in message
    assert "start the data where the column already varies" in message
    # A forecast is scaled by the champion's scaler, not one fit here.
    validate_frame(make_raw(y=y), spec, source=SOURCE, for_training=False)


def test_constant_feature():
    message = error(make_raw(x=[5] * 10), make_spec())
    assert (
        "column 'x' is constant (5.0); it carries no signal and cannot be scaled. "
        "Remove it from `features`."
    ) in message


def test_constant_target():
    message = error(make_raw(y=[2.5] * 10), make_spec())
    assert "column 'y' is constant (2.5); it carries no signal and cannot be scaled." in message
    assert "`features`" not in message  # the target cannot be removed from the features
    assert "choose another `target`" in message


def test_too_few_rows_for_window_horizon_and_splits():
    message = error(make_raw(), make_spec(window=5))
    assert (
        "too few rows: 10 after validation split into train=6, val=2, test=2; need train >= "
        "window + horizon + 1 = 7 and val, test >= horizon = 1."
    ) in message
    assert "Add data, or lower `window` or the `split` sizes." in message


def test_too_few_rows_for_the_horizon_in_val():
    message = error(make_raw(), make_spec(horizon=3, window=1))
    assert "train=6, val=2, test=2; need train >= window + horizon + 1 = 5" in message
    assert "val, test >= horizon = 3" in message


def test_just_enough_rows_pass():
    _, report = validate_frame(make_raw(), make_spec(window=4), source=SOURCE)
    assert report.split_rows == {"train": 6, "val": 2, "test": 2}


def test_season_length_too_long():
    message = error(make_raw(), make_spec(season_length=9))
    assert (
        "season_length=9 reaches back past the first row from the test split "
        "(8 rows before it). Lower `season_length` or add data."
    ) in message
    validate_frame(make_raw(), make_spec(season_length=8), source=SOURCE)  # 8 fits


# --- gap filling ----------------------------------------------------------------------------


def test_ffill_fills_empty_values():
    y = [1.0, 2.0, np.nan, np.nan, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    frame, report = validate_frame(
        make_raw(y=y), make_spec(gaps={"fill": "ffill", "max_missing": 2}), source=SOURCE
    )
    assert frame["y"].tolist() == [1.0, 2.0, 2.0, 2.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert report.filled == {"y": 2}


def test_ffill_fills_a_trailing_gap():
    y = [*Y[:-1], np.nan]
    frame, _ = validate_frame(
        make_raw(y=y), make_spec(gaps={"fill": "ffill", "max_missing": 1}), source=SOURCE
    )
    assert frame["y"].tolist() == [*Y[:-1], 5.0]


def test_interpolate_fills_missing_timestamps():
    y = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
    x = [1, 3, 2, 4, 3, 5, 4, 6, 5, 7]
    raw = make_raw(y=y, x=x).drop(index=[2, 3]).reset_index(drop=True)
    frame, report = validate_frame(
        raw, make_spec(gaps={"fill": "interpolate", "max_missing": 2}), source=SOURCE
    )
    assert (frame.index == utc_days(10)).all()
    assert frame["y"].tolist() == pytest.approx(y)
    # 3 at day 2, 3 at day 5: the two days between are filled on the straight line
    assert frame["x"].tolist() == pytest.approx([1, 3, 3, 3, 3, 5, 4, 6, 5, 7])
    assert report.filled == {"x": 2, "y": 2}


def test_interpolate_fills_empty_values_linearly():
    y = [1.0, 2.0, np.nan, np.nan, 8.0, 6.0, 7.0, 8.0, np.nan, 10.0]
    frame, report = validate_frame(
        make_raw(y=y), make_spec(gaps={"fill": "interpolate", "max_missing": 2}), source=SOURCE
    )
    assert frame["y"].tolist() == pytest.approx([1, 2, 4, 6, 8, 6, 7, 8, 9, 10])
    assert report.filled == {"y": 3}
    assert frame["x"].tolist() == [float(v) for v in X]


# --- resampling -----------------------------------------------------------------------------

WEEKLY = {"resample": {"frequency": "W-SUN"}, "window": 1, "split": {"val": 1, "test": 1}}


def six_weeks(y: list[float] | None = None) -> pd.DataFrame:
    # 2024-01-01 is a Monday: 42 days are six whole weeks ending on Sundays.
    y = y if y is not None else [float(i) for i in range(42)]
    return pd.DataFrame({"ts": days(42), "y": y, "x": [i % 5 + i // 7 for i in range(42)]})


def test_resample_daily_to_weekly_mean():
    frame, report = validate_frame(six_weeks(), make_spec(**WEEKLY), source=SOURCE)
    sundays = pd.date_range("2024-01-07", periods=6, freq="W-SUN", tz="UTC", name="ts")
    assert (frame.index == sundays).all()
    assert frame.index.name == "ts"
    assert frame["y"].tolist() == [3.0, 10.0, 17.0, 24.0, 31.0, 38.0]
    # x = i % 5 + i // 7 over days 0..6 is 0,1,2,3,4,0,1 -> mean 11/7
    assert frame["x"].iloc[0] == pytest.approx(11 / 7)
    assert report.rows == 6
    assert report.start == "2024-01-07T00:00:00+00:00"
    assert report.split_rows == {"train": 4, "val": 1, "test": 1}


def test_resample_skips_the_grid_check_of_the_raw_rows():
    raw = six_weeks().drop(index=[3, 17]).reset_index(drop=True)  # gaps inside weeks
    frame, _ = validate_frame(raw, make_spec(**WEEKLY), source=SOURCE)
    assert frame["y"].iloc[0] == pytest.approx((0 + 1 + 2 + 4 + 5 + 6) / 6)
    assert frame["y"].iloc[2] == pytest.approx((14 + 15 + 16 + 18 + 19 + 20) / 6)


def test_resample_sum_of_an_empty_week_is_a_gap_not_zero():
    raw = six_weeks().drop(index=range(14, 21)).reset_index(drop=True)  # the third week
    spec = make_spec(**{**WEEKLY, "resample": {"frequency": "W-SUN", "aggregation": "sum"}})
    message = error(raw, spec)
    assert (
        "column 'x' has 1 consecutive missing step(s) from 2024-01-21 00:00:00+00:00 to "
        "2024-01-21 00:00:00+00:00"
    ) in message


def test_resample_sum_gap_is_filled_by_the_policy():
    raw = six_weeks().drop(index=range(14, 21)).reset_index(drop=True)
    spec = make_spec(
        **{
            **WEEKLY,
            "resample": {"frequency": "W-SUN", "aggregation": "sum"},
            "gaps": {"fill": "interpolate", "max_missing": 1},
        }
    )
    frame, report = validate_frame(raw, spec, source=SOURCE)
    # week k sums days 7k..7k+6 = 49k + 21; week 2 is interpolated from its neighbours
    assert frame["y"].tolist() == [21.0, 70.0, 119.0, 168.0, 217.0, 266.0]
    assert report.filled == {"x": 1, "y": 1}


def test_resample_sum_beyond_the_bound_names_the_column_and_the_time():
    y = [float(i) for i in range(42)]
    y[1] = y[2] = 6e14  # each within the bound, their week's sum is not
    spec = make_spec(**{**WEEKLY, "resample": {"frequency": "W-SUN", "aggregation": "sum"}})
    message = error(six_weeks(y), spec)
    assert (
        "column 'y' at 2024-01-07 00:00:00+00:00: the `resample` sum 1200000000000018.0 is "
        "beyond ±1e+15 (1 such value(s))"
    ) in message
    assert "Aggregate with `mean`" in message
    validate_frame(six_weeks(y), make_spec(**WEEKLY), source=SOURCE)  # the advice works


@pytest.mark.parametrize(
    ("aggregation", "first_week"),
    [("min", 0.0), ("max", 6.0), ("median", 3.0), ("first", 0.0), ("last", 6.0)],
)
def test_resample_aggregations(aggregation, first_week):
    spec = make_spec(**{**WEEKLY, "resample": {"frequency": "W-SUN", "aggregation": aggregation}})
    frame, _ = validate_frame(six_weeks(), spec, source=SOURCE)
    assert frame["y"].iloc[0] == first_week


def test_interpolation_is_weighted_by_time_on_an_uneven_grid():
    # Day numbers through the first half of 2024 (a leap year), with February missing.
    n = 182
    raw = pd.DataFrame(
        {"ts": days(n), "y": [float(i) for i in range(n)], "x": [i % 7 for i in range(n)]}
    )
    raw = raw[(raw.index < 31) | (raw.index >= 60)].reset_index(drop=True)
    spec = make_spec(
        resample={"frequency": "MS", "aggregation": "first"},
        gaps={"fill": "interpolate", "max_missing": 1},
        window=1,
        split={"val": 1, "test": 1},
    )
    frame, report = validate_frame(raw, spec, source=SOURCE)
    assert frame.index[1] == pd.Timestamp("2024-02-01", tz="UTC")
    # 1 Feb is 31 of the 60 days from 1 Jan (day 0) to 1 Mar (day 60): 31, not the midpoint 30
    assert frame["y"].tolist() == pytest.approx([0.0, 31.0, 60.0, 91.0, 121.0, 152.0])
    assert report.filled == {"x": 1, "y": 1}


# --- gaps at the edges: error, fill, trim ---------------------------------------------------


def test_an_edge_gap_error_suggests_gaps_edges():
    y = [np.nan, *Y[1:]]
    message = error(make_raw(y=y), make_spec(gaps={"fill": "interpolate", "max_missing": 2}))
    assert "Or set `gaps.edges` to 'trim'" in message
    assert "or 'fill' (repeat the nearest known value, at most gaps.max_missing steps)." in message


def test_edges_fill_repeats_the_nearest_known_value_and_reports_the_steps():
    y = [np.nan, np.nan, *Y[2:6], np.nan, *Y[7:]]  # two leading, one inside
    x = [*X[:-1], np.nan]  # one trailing
    spec = make_spec(gaps={"fill": "interpolate", "max_missing": 2, "edges": "fill"})
    frame, report = validate_frame(make_raw(y=y, x=x), spec, source=SOURCE)
    assert frame["y"].tolist() == pytest.approx([4.0, 4.0, 4.0, 1.0, 5.0, 9.0, 7.5, 6.0, 5.0, 3.0])
    assert frame["x"].tolist() == [*map(float, X[:-1]), 90.0]
    assert report.edges_filled == {"x": {"start": 0, "end": 1}, "y": {"start": 2, "end": 0}}
    assert report.filled == {"y": 1}  # the inner gap, filled by `gaps.fill`
    assert report.trimmed == {"start": 0, "end": 0}
    assert report.rows == 10


def test_edges_fill_logs_what_it_filled(caplog):
    spec = make_spec(gaps={"fill": "ffill", "max_missing": 1, "edges": "fill"})
    with caplog.at_level("INFO", logger="freshcast.validate"):
        validate_frame(make_raw(y=[np.nan, *Y[1:]]), spec, source=SOURCE)
    assert "gaps.edges=fill: column 'y': the first 1 and last 0 step(s)" in caplog.text


def test_edges_fill_beyond_max_missing_names_the_column_and_the_steps():
    y = [*Y[:7], np.nan, np.nan, np.nan]
    spec = make_spec(gaps={"fill": "interpolate", "max_missing": 2, "edges": "fill"})
    message = error(make_raw(y=y), spec)
    assert (
        "column 'y': its last 3 step(s), 2024-01-08 00:00:00+00:00 to 2024-01-10 00:00:00+00:00, "
        "have no value, more than gaps.max_missing=2 that `gaps.edges: fill` may fill. Set "
        "gaps.max_missing to 3, set `gaps.edges: trim` to drop those steps, or repair the data."
    ) in message


def test_edges_fill_of_a_column_without_any_value():
    spec = make_spec(gaps={"fill": "interpolate", "max_missing": 2, "edges": "fill"})
    message = error(make_raw(x=[np.nan] * 10), spec)
    assert (
        "column 'x' has no value in any of the 10 steps; `gaps.edges: fill` needs one." in message
    )


def test_edges_trim_drops_the_incomplete_first_and_last_steps():
    y = [np.nan, np.nan, *Y[2:]]
    x = [*X[:-1], np.nan]
    spec = make_spec(gaps={"edges": "trim"}, window=1, split={"val": 2, "test": 2})
    frame, report = validate_frame(make_raw(y=y, x=x), spec, source=SOURCE)
    assert (frame.index == utc_days(7, start="2024-01-03")).all()
    assert frame.index.freqstr == "D"
    assert frame["y"].tolist() == Y[2:9]
    assert frame["x"].tolist() == [float(v) for v in X[2:9]]
    assert report.trimmed == {"start": 2, "end": 1}
    assert report.edges_filled == {} and report.filled == {}
    assert (report.rows, report.start) == (7, "2024-01-03T00:00:00+00:00")
    assert report.split_rows == {"train": 3, "val": 2, "test": 2}


def test_edges_trim_keeps_inner_gaps_for_the_fill_policy(caplog):
    y = [np.nan, *Y[1:4], np.nan, *Y[5:]]
    spec = make_spec(gaps={"fill": "interpolate", "max_missing": 1, "edges": "trim"}, window=1)
    with caplog.at_level("INFO", logger="freshcast.validate"):
        frame, report = validate_frame(make_raw(y=y), spec, source=SOURCE)
    assert frame["y"].tolist() == pytest.approx([1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0])
    assert report.trimmed == {"start": 1, "end": 0}
    assert report.filled == {"y": 1}
    assert "gaps.edges=trim: dropped 1 step(s) before 2024-01-02 00:00:00+00:00" in caplog.text


def test_edges_trim_without_a_complete_step():
    y = [np.nan] * 5 + Y[5:]
    x = X[:5] + [np.nan] * 5
    message = error(make_raw(y=y, x=x), make_spec(gaps={"edges": "trim"}))
    assert "no step has a value in every column ['x', 'y'], so `gaps.edges: trim`" in message


def test_the_report_is_json():
    import json

    spec = make_spec(gaps={"fill": "ffill", "max_missing": 1, "edges": "fill"})
    _, report = validate_frame(make_raw(y=[np.nan, *Y[1:]]), spec, source=SOURCE)
    assert json.loads(json.dumps(vars(report)))["edges_filled"] == {"y": {"start": 1, "end": 0}}


# --- calendar inputs --------------------------------------------------------------------------


def test_calendar_columns_sit_between_the_features_and_the_target():
    from freshcast.calendar import encode

    n = 21
    raw = make_raw(y=[float(i % 5) for i in range(n)], x=list(range(n)))
    spec = make_spec(calendar=["dayofweek", "dayofmonth"])
    frame, _ = validate_frame(raw, spec, source=SOURCE)
    assert (
        list(frame.columns)
        == spec.columns
        == [
            "x",
            "cal_dayofweek_sin",
            "cal_dayofweek_cos",
            "cal_dayofmonth_sin",
            "cal_dayofmonth_cos",
            "y",
        ]
    )
    assert (frame.dtypes == np.float64).all()
    expected = encode(utc_days(n), ["dayofweek", "dayofmonth"])
    pd.testing.assert_frame_equal(frame[spec.calendar_columns], expected, check_freq=False)
    assert frame.loc["2024-01-07", "cal_dayofweek_sin"] == pytest.approx(np.sin(2 * np.pi * 6 / 7))


def test_calendar_after_gap_filling_and_a_target_among_the_features():
    y = [*Y[:3], np.nan, *Y[4:]]
    raw = make_raw(y=y).drop(index=[6]).reset_index(drop=True)  # a missing timestamp too
    spec = make_spec(
        features=["y", "x"], calendar=["dayofweek"], gaps={"fill": "interpolate", "max_missing": 1}
    )
    frame, _ = validate_frame(raw, spec, source=SOURCE)
    assert list(frame.columns) == ["y", "x", "cal_dayofweek_sin", "cal_dayofweek_cos"]
    assert len(frame) == 10 and not frame.isna().to_numpy().any()
    assert frame["cal_dayofweek_cos"].iloc[0] == 1.0  # 2024-01-01 is a Monday


def test_a_calendar_component_constant_over_the_series_is_refused_for_training():
    spec = make_spec(calendar=["month", "dayofweek"])  # ten days of January
    message = error(make_raw(), spec)
    assert (
        "calendar component 'month' has the same value in every step from "
        "2024-01-01 00:00:00+00:00 to 2024-01-10 00:00:00+00:00; it carries no signal. Drop it "
        "from `calendar`, or add data that spans more of its cycle."
    ) in message
    # a forecast's few steps may all lie in one month
    frame, _ = validate_frame(make_raw(), spec, source=SOURCE, for_training=False)
    assert frame["cal_month_cos"].tolist() == [1.0] * 10


# --- timestamp_format and timestamps of several columns ---------------------------------------


def test_timestamp_format_parses_day_first_dates():
    ts = [d.strftime("%d/%m/%Y") for d in pd.date_range("2024-01-01", periods=10)]
    frame, _ = validate_frame(
        make_raw(ts=ts), make_spec(timestamp_format="%d/%m/%Y"), source=SOURCE
    )
    assert (frame.index == utc_days(10)).all()


def test_a_row_that_does_not_match_timestamp_format_is_named():
    ts = [d.strftime("%d/%m/%Y") for d in pd.date_range("2024-01-01", periods=10)]
    ts[4] = "2024-01-05"
    message = error(make_raw(ts=ts), make_spec(timestamp_format="%d/%m/%Y"))
    assert (
        "column 'ts', row 5: timestamp '2024-01-05' does not match timestamp_format '%d/%m/%Y' "
        "(1 such row(s)). Fix the row, or set `timestamp_format` to match the data."
    ) in message


def test_unparseable_timestamp_suggests_timestamp_format():
    ts = days(10)
    ts[2] = "2024-13-45"
    message = error(make_raw(ts=ts), make_spec())
    assert "or set `timestamp_format` to the data's format, e.g. '%d/%m/%Y %H:%M'." in message


def date_time(n: int = 10) -> pd.DataFrame:
    stamps = pd.date_range("2004-03-10 18:00", periods=n, freq="h")
    return pd.DataFrame(
        {
            "Date+Time": [f"{t:%d/%m/%Y} {t:%H.%M.%S}" for t in stamps],
            "y": Y[:n],
            "x": X[:n],
        }
    )


DATE_TIME = {"timestamp": ["Date", "Time"], "timestamp_format": "%d/%m/%Y %H.%M.%S"}


def test_a_joined_timestamp_is_parsed_with_the_format():
    spec = make_spec(**DATE_TIME, frequency="h")
    frame, report = validate_frame(date_time(), spec, source=SOURCE)
    assert frame.index.name == "Date+Time"
    assert frame.index[0] == pd.Timestamp("2004-03-10 18:00", tz="UTC")
    assert report.end == "2004-03-11T03:00:00+00:00"


def test_a_joined_timestamp_error_names_its_columns():
    raw = date_time()
    raw.loc[1, "Date+Time"] = "10/03/2004 19:00:00"
    message = error(raw, make_spec(**DATE_TIME, frequency="h"))
    assert (
        "column 'Date+Time' (made of ['Date', 'Time']), row 2: timestamp '10/03/2004 19:00:00' "
        "does not match timestamp_format '%d/%m/%Y %H.%M.%S' (1 such row(s))."
    ) in message


def test_date_parts_not_yet_combined_are_combined():
    stamps = pd.date_range("2024-01-01", periods=10, freq="h")
    raw = pd.DataFrame(
        {"year": stamps.year, "month": stamps.month, "day": stamps.day, "hour": stamps.hour}
    ).assign(y=Y, x=X)
    spec = make_spec(timestamp=["year", "month", "day", "hour"], frequency="h")
    frame, _ = validate_frame(raw, spec, source=SOURCE)
    assert frame.index.name == "year+month+day+hour"
    assert frame.index[-1] == pd.Timestamp("2024-01-01 09:00", tz="UTC")


def test_a_missing_timestamp_part_names_the_spec_field():
    raw = pd.DataFrame({"year": [2024] * 10, "month": [1] * 10, "y": Y, "x": X})
    message = error(raw, make_spec(timestamp=["year", "month", "day"]))
    assert "column 'day' (spec field 'timestamp') is missing; the data has" in message


def test_timestamp_format_with_date_parts_is_a_spec_error():
    raw = pd.DataFrame({"year+month": [f"2024-{m:02d}-01T00:00:00" for m in range(1, 11)]})
    spec = make_spec(timestamp=["year", "month"], timestamp_format="%Y", frequency="MS")
    with pytest.raises(DataValidationError) as info:
        validate_frame(raw.assign(y=Y, x=X), spec, source=SOURCE)
    assert str(info.value).startswith("pipeline 'demo': field 'timestamp': the date parts")
    assert "`timestamp_format` ('%Y') does not apply; remove it" in str(info.value)
