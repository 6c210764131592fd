from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from freshcast.calendar import encode
from freshcast.scaling import ScalerParams
from freshcast.serving import Bundle, SchemaError, forecast_rows, incompatibility

COLUMNS = ["x", "cal_hour_sin", "cal_hour_cos", "y"]  # features, calendar, target


class LastInput:
    """A stand-in model: forecasts input column `column` of each window's last step."""

    def __init__(self, column: int) -> None:
        self.column = column

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        return x[:, -1, self.column : self.column + 1]  # [B, horizon=1]


def make_bundle(column: int, *, timesteps: int = 3) -> Bundle:
    meta = {
        "version": 1,
        "pipeline": "demo",
        "window": {"timesteps": timesteps, "horizon": 1, "inputs": 3},
        "schema": {"columns": COLUMNS, "target": "y", "frequency": "h"},
    }
    # scale 1, offset 0: the scaled values are the data's, so the stub's output is exact.
    scaler = ScalerParams(kind="minmax", columns=COLUMNS, scale=[1.0] * 4, offset=[0.0] * 4)
    return Bundle(Path("bundle"), meta, scaler, LastInput(column))


def series(rows: int = 8) -> pd.DataFrame:
    """Hourly values without calendar columns, as data validated by a spec without them is."""
    index = pd.date_range("2024-01-01 02:00", periods=rows, freq="h", tz="UTC", name="ts")
    return pd.DataFrame({"x": np.arange(rows, dtype=float), "y": np.arange(rows) * 10.0}, index)


def test_a_frame_without_the_calendar_columns_is_compatible():
    bundle = make_bundle(1)
    assert incompatibility(bundle.meta, series(), frequency="h") is None
    problem = incompatibility(bundle.meta, series().drop(columns=["x"]), frequency="h")
    assert problem == "the data lacks column(s) ['x'] that the model was trained on"


def test_forecast_rows_derives_the_calendar_inputs_from_the_index():
    frame = series()
    hours = encode(frame.index, ["hour"])
    target_rows = np.array([3, 5, len(frame)])  # the last one: the first step after the data
    for column, name in ((1, "cal_hour_sin"), (2, "cal_hour_cos")):
        got = forecast_rows(make_bundle(column), frame, target_rows)
        # each forecast is the calendar value of the last input row, target row - 1, as the
        # model sees it (float32)
        assert got.shape == (3, 1)
        expected = hours[name].to_numpy()[target_rows - 1].astype(np.float32)
        np.testing.assert_array_equal(got[:, 0], expected)
    assert list(frame.columns) == ["x", "y"]  # not modified


def test_forecast_rows_uses_calendar_columns_the_frame_has():
    frame = series().assign(cal_hour_sin=0.5, cal_hour_cos=-0.5)
    got = forecast_rows(make_bundle(1), frame, np.array([len(frame)]))
    assert got.tolist() == [[0.5]]


def test_forecast_rows_needs_the_history():
    with pytest.raises(SchemaError, match=r"need 3 rows of history within the 8 rows given"):
        forecast_rows(make_bundle(1), series(), np.array([2]))
