"""The scoring steps: intervals calibrated on validation, and backtest folds refit before each
block."""

from __future__ import annotations

import json
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


def test_intervals_are_calibrated_on_validation_served_and_published(tmp_path, monkeypatch):
    from freshcast.evaluation import conformal_radius
    from freshcast.models import load_model
    from freshcast.registry import Registry
    from freshcast.training import predict

    spec_file, landing = serving_spec(tmp_path, monkeypatch)
    train_run(spec_file, "run1")
    run = tmp_path / "artifacts" / "tiny" / "runs" / "run1"
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    assert metrics["intervals"] == [0.8, 0.95]
    gru = metrics["scores"]["gru"]["intervals"]
    # The radii are the conformal quantiles of the validation windows' residuals: the model's
    # own forecasts of the validation split, nothing of the test split.
    scaler, spec = steps.run_folder.load_scaler(run), steps.run_folder.run_spec(run)
    windows, layout = steps.run_folder.load_windows(run)
    series = steps.run_folder.load_series(run)[spec.target].to_numpy(np.float64)
    _, val_actual = steps.run_folder.split_targets(series, layout, "val")
    entry = json.loads((run / "train" / "gru" / "manifest.json").read_text())["outputs"]["model"]
    model = load_model(run / "train" / "gru" / entry["path"], sha256=entry["sha256"])
    val_pred = scaler.inverse(predict(model, windows["val"], batch_size=64), column="load")
    for key, level in (("80", 0.8), ("95", 0.95)):
        expected = conformal_radius(val_actual - val_pred, level)
        np.testing.assert_allclose(gru[key]["radius_by_step"], expected, rtol=1e-5)
        assert 0 <= gru[key]["coverage"] <= 1
    for baseline in ("persistence", "seasonal_naive_7", "ridge"):
        assert set(metrics["scores"][baseline]["intervals"]) == {"80", "95"}
    # The test predictions carry the bounds the coverage measured.
    predictions = pd.read_parquet(run / "evaluate" / "predictions.parquet")
    mine = predictions[predictions["name"] == "gru"]
    radius = np.array(gru["80"]["radius_by_step"])[mine["step"].to_numpy() - 1]
    np.testing.assert_allclose(mine["upper_80"] - mine["prediction"], radius, rtol=1e-6)
    inside = (mine["lower_80"] <= mine["actual"]) & (mine["actual"] <= mine["upper_80"])
    assert inside.mean() == pytest.approx(gru["80"]["coverage"])
    board = pd.read_csv(run / "evaluate" / "leaderboard.csv")
    assert {"coverage_80", "width_80", "coverage_95", "width_95"} <= set(board.columns)

    # The bundle serves the radii recalibrated on validation and test, and every forecast
    # carries the bounds; the live coverage is scored once the actuals arrive.
    served = Registry("tiny").meta(1)["intervals"]
    assert served["95"]["radius_by_step"] == gru["95"]["served_radius_by_step"]
    assert served["95"]["test_coverage"] == gru["95"]["coverage"]
    made = steps.forecasting.forecast(spec_file, run_id="f1", cutoff=None)
    assert made["intervals"] == ["80", "95"]
    csv = pd.read_csv(Path(made["forecast_dir"]) / "forecast.csv")
    for key in ("80", "95"):
        np.testing.assert_allclose(
            csv[f"upper_{key}"] - csv["forecast"], served[key]["radius_by_step"], rtol=1e-6
        )
        np.testing.assert_allclose(
            csv["forecast"] - csv[f"lower_{key}"], served[key]["radius_by_step"], rtol=1e-6
        )
    add_partition(landing, "part-001.csv", slice(200, 205))
    later = steps.forecasting.forecast(spec_file, run_id="f2", cutoff=None)
    scored = steps.forecasting.score_forecasts(
        later["forecast_dir"], run_id="f2", spec_file=spec_file
    )
    by_version = pd.read_csv(Path(scored["html"]).parent / "accuracy_by_version.csv")
    assert 0 <= by_version["coverage_95"].iloc[0] <= 1
    assert scored["drift"]["steps"] == 2 and scored["drift"]["drift"] is False  # min_steps 10


def test_backtest_folds_refit_before_each_block_and_the_gate_decides_on_their_mean(
    tmp_path, monkeypatch
):
    from freshcast.registry import Registry
    from freshcast.scaling import fit_scaler

    spec_file, landing = serving_spec(tmp_path, monkeypatch, backtest={"folds": 2, "gate": True})
    train_run(spec_file, "run1", trigger="manual")
    run = tmp_path / "artifacts" / "tiny" / "runs" / "run1"
    splits = json.loads((run / "split_scale" / "splits.json").read_text())
    first = splits["test"]["first_row"]
    assert splits["test"]["rows"] == 40
    frame = steps.run_folder.load_series(run)
    for fold, (start, stop) in enumerate(((first, first + 20), (first + 20, first + 40)), 1):
        sub = run / "backtest" / f"fold{fold}"
        sub_splits = json.loads((sub / "split_scale" / "splits.json").read_text())
        # The fold knows the rows before its block and scores the block; its scaler is fit on
        # its own training rows (expanding window), not on anything later.
        assert len(steps.run_folder.load_series(sub)) == stop
        assert sub_splits["test"]["first_row"] == start and sub_splits["test"]["rows"] == 20
        assert sub_splits["val"]["rows"] == splits["val"]["rows"]
        train_rows = sub_splits["train"]["rows"]
        assert train_rows == start - splits["val"]["rows"]
        columns = steps.run_folder.run_spec(sub).columns
        expected = fit_scaler("minmax", frame[columns].to_numpy()[:train_rows], columns)
        assert steps.run_folder.load_scaler(sub).to_json() == expected.to_json()
        assert (sub / "train" / "gru" / "model.keras").exists()
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    assert [f["fold"] for f in metrics["backtest"]["folds"]] == [1, 2]
    for name in ("gru", "persistence", "seasonal_naive_7", "ridge"):
        summary = metrics["scores"][name]["backtest"]
        assert len(summary["folds"]) == 2 and None not in summary["folds"]
        assert summary["mean"]["mase"] == pytest.approx(np.mean(summary["folds"]))
        fold_one = json.loads(
            (run / "backtest" / "fold1" / "evaluate" / "metrics.json").read_text()
        )
        assert summary["folds"][0] == fold_one["scores"][name]["mase"]
    decision = json.loads((run / "gate" / "decision.json").read_text())
    assert decision["basis"] == "backtest" and decision["trigger"] == "manual"
    assert decision["scores"]["gru"]["mase"] == metrics["scores"]["gru"]["backtest"]["mean"]["mase"]
    assert "decided on the backtest" in decision["reasons"][0]

    # The next run compares with the champion's forecasts of its own folds' blocks.
    add_partition(landing, "part-001.csv", slice(200, 240))
    decided = train_run(spec_file, "run2", trigger="drift")
    assert "backtest mean mase" in decided["verdict"]
    decision = json.loads(
        (tmp_path / "artifacts" / "tiny" / "runs" / "run2" / "gate" / "decision.json").read_text()
    )
    champion = decision["scores"]["champion_v1"]
    assert len(champion["folds"]) == 2 and champion["mase"] == pytest.approx(
        np.mean(champion["folds"])
    )
    event = Registry("tiny").history()[-1]
    assert event["run_id"] == "run2" and event["decision"]["trigger"] == "drift"
