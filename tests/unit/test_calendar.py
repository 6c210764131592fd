from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from freshcast.calendar import (
    COMPONENTS,
    add_calendar,
    column_names,
    cycle_fraction,
    encode,
    ensure_calendar,
    is_calendar_column,
    parse_column,
)
from freshcast.spec import PipelineSpec


def utc(*stamps: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(stamps, tz="UTC", name="ts")


def pair(frame: pd.DataFrame, component: str, row: int = 0) -> tuple[float, float]:
    return (
        float(frame[f"cal_{component}_sin"].iloc[row]),
        float(frame[f"cal_{component}_cos"].iloc[row]),
    )


def angle(fraction: float) -> tuple[float, float]:
    return math.sin(2 * math.pi * fraction), math.cos(2 * math.pi * fraction)


# --- exact values at known timestamps -----------------------------------------------------------


def test_hour_six_is_a_quarter_of_the_day():
    sin, cos = pair(encode(utc("2024-01-01 06:00"), ["hour"]), "hour")
    assert sin == 1.0
    assert cos == pytest.approx(0.0, abs=1e-15)


def test_hour_counts_the_minutes():
    frame = encode(utc("2024-01-01 18:30"), ["hour"])
    assert pair(frame, "hour") == pytest.approx(angle(18.5 / 24))


def test_hour_is_the_utc_hour_of_an_index_converted_to_utc():
    # 07:00 in Paris (UTC+1 in January) is 06:00 UTC.
    index = pd.DatetimeIndex([pd.Timestamp("2024-01-01T07:00+01:00")]).tz_convert("UTC")
    assert pair(encode(index, ["hour"]), "hour") == pytest.approx(angle(6 / 24))


def test_minute_of_the_hour():
    frame = encode(utc("2024-01-01 00:15", "2024-01-01 10:45"), ["minute"])
    assert pair(frame, "minute", 0) == pytest.approx((1.0, 0.0))
    assert pair(frame, "minute", 1) == pytest.approx((-1.0, 0.0))


def test_dayofweek_monday_is_zero_and_sunday_six():
    frame = encode(utc("2024-01-01", "2024-01-07"), ["dayofweek"])  # a Monday, a Sunday
    assert pair(frame, "dayofweek", 0) == (0.0, 1.0)
    assert pair(frame, "dayofweek", 1) == pytest.approx(angle(6 / 7))
    assert pair(frame, "dayofweek", 1)[0] < 0  # the last day of the cycle, just before Monday


def test_dayofyear_dec_31_of_a_leap_year_and_of_another():
    frame = encode(utc("2024-12-31", "2023-12-31", "2024-01-01"), ["dayofyear"])
    assert pair(frame, "dayofyear", 0) == pytest.approx(angle(365 / 366))  # day 366 of 366
    assert pair(frame, "dayofyear", 1) == pytest.approx(angle(364 / 365))  # day 365 of 365
    assert pair(frame, "dayofyear", 2) == (0.0, 1.0)


def test_dayofmonth_divides_by_the_days_of_that_month():
    frame = encode(utc("2024-02-29", "2023-02-28", "2024-03-16"), ["dayofmonth"])
    assert pair(frame, "dayofmonth", 0) == pytest.approx(angle(28 / 29))
    assert pair(frame, "dayofmonth", 1) == pytest.approx(angle(27 / 28))
    assert pair(frame, "dayofmonth", 2) == pytest.approx(angle(15 / 31))


def test_month():
    frame = encode(utc("2024-01-31", "2024-04-15", "2024-12-01"), ["month"])
    assert pair(frame, "month", 0) == (0.0, 1.0)
    assert pair(frame, "month", 1) == pytest.approx((1.0, 0.0))  # April: (4 - 1) / 12
    assert pair(frame, "month", 2) == pytest.approx(angle(11 / 12))


def test_cycle_fraction_matches_the_definitions():
    index = utc("2024-03-10 13:20")  # a Sunday, day 70 of a leap year
    assert cycle_fraction(index, "minute").tolist() == [20 / 60]
    assert cycle_fraction(index, "hour").tolist() == [(13 + 20 / 60) / 24]
    assert cycle_fraction(index, "dayofweek").tolist() == [6 / 7]
    assert cycle_fraction(index, "dayofmonth").tolist() == [9 / 31]
    assert cycle_fraction(index, "dayofyear").tolist() == [69 / 366]
    assert cycle_fraction(index, "month").tolist() == [2 / 12]


# --- shapes, names, no NaN, no leakage ----------------------------------------------------------


def test_shape_names_dtype_and_index():
    index = pd.date_range("2023-12-25", periods=24 * 30, freq="h", tz="UTC", name="ts")
    frame = encode(index, ["hour", "dayofweek", "month"])
    assert frame.shape == (720, 6)
    assert list(frame.columns) == [
        "cal_hour_sin",
        "cal_hour_cos",
        "cal_dayofweek_sin",
        "cal_dayofweek_cos",
        "cal_month_sin",
        "cal_month_cos",
    ]
    assert (frame.dtypes == np.float64).all()
    assert frame.index.equals(index)
    values = frame.to_numpy()
    assert np.isfinite(values).all()
    assert np.abs(values).max() <= 1.0
    np.testing.assert_allclose(values[:, 0::2] ** 2 + values[:, 1::2] ** 2, 1.0)


def test_every_component_on_a_long_index_has_no_nan():
    index = pd.date_range("2020-01-01", "2024-12-31 23:59", freq="37min", tz="UTC")
    frame = encode(index, list(COMPONENTS))
    assert frame.shape == (len(index), 12)
    assert not frame.isna().to_numpy().any()


def test_no_components_give_no_columns():
    index = utc("2024-01-01")
    assert encode(index, []).shape == (1, 0)


def test_a_row_depends_only_on_its_own_timestamp():
    index = pd.date_range("2024-02-27", periods=200, freq="7h", tz="UTC", name="ts")
    whole = encode(index, list(COMPONENTS))
    for k in (1, 50, 199):
        pd.testing.assert_frame_equal(encode(index[:k], list(COMPONENTS)), whole.iloc[:k])
    order = np.random.default_rng(0).permutation(len(index))
    shuffled = encode(index[order], list(COMPONENTS))
    np.testing.assert_array_equal(shuffled.to_numpy(), whole.to_numpy()[order])


def test_column_names_agree_with_the_spec():
    spec = PipelineSpec.model_validate(
        {
            "name": "demo",
            "source": {"path": "s.csv"},
            "timestamp": "ts",
            "frequency": "h",
            "target": "y",
            "calendar": ["hour", "dayofweek"],
            "window": 2,
            "models": [{"type": "lstm"}],
        }
    )
    assert column_names(spec.calendar) == spec.calendar_columns


def test_parse_column():
    assert parse_column("cal_dayofweek_cos") == ("dayofweek", "cos")
    assert parse_column("cal_week_sin") is None
    assert parse_column("cal_hour_tan") is None
    assert parse_column("hour_sin") is None
    assert is_calendar_column("cal_month_sin") and not is_calendar_column("y")


# --- add_calendar, ensure_calendar --------------------------------------------------------------


def series(rows: int = 5) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=rows, freq="h", tz="UTC", name="ts")
    return pd.DataFrame({"x": np.arange(rows, dtype=float)}, index=index)


def test_add_calendar_appends_the_columns_and_leaves_the_input_alone():
    frame = series()
    before = frame.copy()
    out = add_calendar(frame, ["hour"])
    assert list(out.columns) == ["x", "cal_hour_sin", "cal_hour_cos"]
    pd.testing.assert_frame_equal(
        out[["cal_hour_sin", "cal_hour_cos"]], encode(frame.index, ["hour"])
    )
    pd.testing.assert_frame_equal(frame, before)
    assert add_calendar(frame, []) is frame


def test_add_calendar_refuses_a_column_that_exists():
    with pytest.raises(ValueError, match=r"already has the calendar column\(s\) \['cal_hour_sin'"):
        add_calendar(add_calendar(series(), ["hour"]), ["hour"])


def test_ensure_calendar_derives_only_the_missing_columns():
    frame = series()
    columns = ["x", "cal_hour_sin", "cal_hour_cos", "cal_dayofweek_cos", "y"]
    out = ensure_calendar(frame, columns)
    assert list(out.columns) == ["x", "cal_hour_sin", "cal_hour_cos", "cal_dayofweek_cos"]
    expected = encode(frame.index, ["hour", "dayofweek"])
    pd.testing.assert_frame_equal(out.iloc[:, 1:], expected[columns[1:4]])
    assert list(frame.columns) == ["x"]  # not modified
    # present columns are kept as they are, even when they disagree
    given = out.assign(cal_hour_sin=7.0)
    assert ensure_calendar(given, columns) is given


@pytest.mark.parametrize(
    ("components", "match"),
    [
        (["week"], r"`components` must be among \['minute', 'hour'"),
        ("hour", "must be a list of names, not a string"),
        (["hour", "hour"], "lists a component twice"),
    ],
)
def test_bad_components(components, match):
    with pytest.raises(ValueError, match=match):
        encode(utc("2024-01-01"), components)


def test_index_must_be_datetimes_without_nat():
    with pytest.raises(
        ValueError, match=r"calendar inputs need a DatetimeIndex\. Received: RangeIndex"
    ):
        encode(pd.RangeIndex(3), ["hour"])
    index = pd.DatetimeIndex(["2024-01-01", None], tz="UTC")
    with pytest.raises(ValueError, match=r"the index holds NaT \(first at position 1\)"):
        encode(index, ["hour"])
