"""The forecast DAG's steps: forecasts published and scored once actuals arrive, data that no
longer fits refused, drift signalled once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from freshcast import steps
from tests.helpers import (
    add_partition,
    serving_spec,
    train_run,
)


@pytest.mark.slow
def test_forecasts_are_published_and_scored_once_actuals_arrive(tmp_path, monkeypatch):

    from freshcast.forecasts import read_history

    spec_file, landing = serving_spec(tmp_path, monkeypatch)
    with pytest.raises(steps.forecasting.NoChampionError, match="no champion yet"):
        steps.forecasting.forecast(spec_file, run_id="f0", cutoff=None)
    train_run(spec_file, "run1")

    made = steps.forecasting.forecast(spec_file, run_id="f1", cutoff=None)
    assert made["version"] == 1 and made["origin"].startswith("2024-07-18")  # row 200
    folder = Path(made["forecast_dir"])
    csv = pd.read_csv(folder / "forecast.csv")
    assert csv["time"].tolist() == ["2024-07-19 00:00:00+00:00", "2024-07-20 00:00:00+00:00"]
    assert set(csv["model_version"]) == {1} and set(csv["run_id"]) == {"f1"}
    parquet = pd.read_parquet(folder / "forecast.parquet")
    np.testing.assert_allclose(parquet["forecast"].to_numpy(), csv["forecast"].to_numpy())
    assert (folder / "forecast.png").read_bytes()[:4] == b"\x89PNG"
    first = steps.forecasting.score_forecasts(folder, run_id="f1")
    assert first["scored_steps"] == 0  # the future has not happened yet

    add_partition(landing, "part-001.csv", slice(200, 205))  # the actuals arrive
    later = steps.forecasting.forecast(spec_file, run_id="f2", cutoff=None)
    scored = steps.forecasting.score_forecasts(later["forecast_dir"], run_id="f2")
    assert scored["scored_steps"] == 2
    assert [v["model_version"] for v in scored["by_version"]] == [1]
    history = read_history(folder.parents[2] / "history.parquet")
    assert history["run_id"].tolist() == ["f1", "f1", "f2", "f2"]
    # The forecast error is the champion's: far below the series' spread of about 2.
    assert scored["by_version"][0]["mae"] < 1.0
    page = Path(scored["html"]).read_text()
    assert "Accuracy per model version" in page and "history.png" in page


@pytest.mark.slow
def test_forecast_refuses_data_that_no_longer_fits_the_champion(tmp_path, monkeypatch):
    from freshcast.registry import Registry
    from freshcast.serving import SchemaError, check_schema

    spec_file, _ = serving_spec(tmp_path, monkeypatch)
    train_run(spec_file, "run1")
    meta = Registry("tiny").bundle(1)
    run = Path(steps.prepare.ingest(spec_file, run_id="x", cutoff=None)["run_dir"])
    steps.prepare.validate(run)
    frame = steps.run_folder.load_series(run)
    check_schema(meta, frame, frequency="D")
    with pytest.raises(SchemaError, match=r"lacks column\(s\) \['temp'\]"):
        check_schema(meta, frame.drop(columns="temp"), frequency="D")
    with pytest.raises(SchemaError, match="grid is 'h', the model's is 'D'"):
        check_schema(meta, frame, frequency="h")


def test_a_drift_is_signalled_once_per_champion_and_latest_actual(tmp_path, monkeypatch):
    from freshcast.registry import Registry, describe

    spec_file, _ = serving_spec(tmp_path, monkeypatch)
    train_run(spec_file, "run1")
    drift = {"drift": True, "version": 1, "live_mae": 9.0, "test_mae": 1.0, "ratio": 9.0,
             "threshold": 1.5, "steps": 12, "actuals_end": "2024-08-01T00:00:00+00:00",
             "reason": "v1's live MAE ... exceeds the drift ratio 1.5"}  # fmt: skip
    first = steps.forecasting.signal_drift(spec_file, drift, run_id="f1")
    assert first["signal"] is True
    again = steps.forecasting.signal_drift(
        spec_file, drift, run_id="f2"
    )  # no newer actual: no new signal
    assert again["signal"] is False and "no newer actual since" in again["reason"]
    newer = {**drift, "actuals_end": "2024-08-02T00:00:00+00:00"}
    assert steps.forecasting.signal_drift(spec_file, newer, run_id="f3")["signal"] is True
    calm = steps.forecasting.signal_drift(
        spec_file, {**drift, "drift": False, "reason": "within"}, run_id="f4"
    )
    assert calm["signal"] is False and calm["reason"] == "within"
    registry = Registry("tiny")
    signals = [e for e in registry.history() if e["kind"] == "drift"]
    assert [e["run_id"] for e in signals] == ["f1", "f3"]
    assert "exceeds the drift ratio" in describe(registry)
