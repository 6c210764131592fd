"""The fitting steps: the same model twice, a killed task resumed from its backup, seeds and their
ensemble, and the search."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from freshcast import steps
from tests.helpers import LEARNING_MODELS as LEARNING_MODELS_FOR_TESTS
from tests.helpers import (
    prepare_run,
    serving_spec,
    train_run,
    write_tiny_pipeline,
)


@pytest.mark.slow
def test_training_twice_gives_the_same_model(spec_file):
    run = prepare_run(spec_file)
    first = steps.training.train(run, "lstm", epochs=2)
    history = (run / "train" / "lstm" / "history.json").read_text()
    from freshcast.models import load_model

    weights = load_model(Path(first["path"]), sha256=first["sha256"]).get_weights()
    second = steps.training.train(run, "lstm", epochs=2)
    assert (run / "train" / "lstm" / "history.json").read_text() == history
    again = load_model(Path(second["path"]), sha256=second["sha256"]).get_weights()
    for a, b in zip(weights, again, strict=True):
        np.testing.assert_array_equal(a, b)


# --- serving: the gate, the registry and forecasts, on a series the models can learn ----------


@pytest.mark.slow
def test_a_training_task_killed_outright_resumes_from_its_backup(tmp_path, monkeypatch):
    """SIGKILL mid-fit (no cleanup runs), then the retry: it resumes at the next epoch."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers import LEARNING_MODELS, lagged_series

    monkeypatch.setenv("FRESHCAST_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    slow_gru = {**LEARNING_MODELS[-1], "epochs": 400, "patience": 1000}
    spec_file = write_tiny_pipeline(tmp_path / "pipelines", data=lagged_series(), models=[slow_gru])
    run = prepare_run(spec_file)
    epochs = run / "train_work" / "gru" / "epochs.csv"
    task = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from freshcast import steps; steps.training.train({str(run)!r}, 'gru')",
        ],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and task.poll() is None:
            if epochs.exists() and len(epochs.read_text().splitlines()) > 3:  # header + 3 epochs
                break
            time.sleep(0.1)
        assert task.poll() is None, "training ended before it could be killed"
        task.send_signal(signal.SIGKILL)
        task.wait()
    finally:
        if task.poll() is None:
            task.kill()
    done_before = len(epochs.read_text().splitlines()) - 1
    assert 3 <= done_before < 400 and not (run / "train" / "gru" / "manifest.json").exists()

    resumed = steps.training.train(run, "gru", epochs=done_before + 2)  # the retry, two epochs more
    history = json.loads(Path(resumed["path"]).with_name("history.json").read_text())
    assert history["epoch"] == list(range(done_before + 2))  # no epoch trained twice or lost
    assert (run / "train" / "gru" / "manifest.json").exists()


# --- issue 12: tuned ridge in the gate, seeds and ensembles, the search, calendar inputs -------


@pytest.mark.slow
def test_seeds_train_apart_and_their_ensemble_is_served_as_one_keras_model(tmp_path, monkeypatch):
    from freshcast.registry import Registry, verify_in_fresh_process
    from freshcast.serving import load_bundle

    seeded = {**LEARNING_MODELS_FOR_TESTS[-1], "name": "gru", "seeds": 3}
    spec_file, _ = serving_spec(tmp_path, monkeypatch, models=1, calendar=["dayofweek"], horizon=2)
    text = spec_file.read_text()
    import yaml

    fields = yaml.safe_load(text)
    fields["models"] = [seeded]
    spec_file.write_text(yaml.safe_dump(fields, sort_keys=False))
    decided = train_run(spec_file, "run1", verify=verify_in_fresh_process)
    run = tmp_path / "artifacts" / "tiny" / "runs" / "run1"
    board = json.loads((run / "evaluate" / "leaderboard.json").read_text())
    rows = {r["name"]: r for r in board}
    assert {"gru-s1", "gru-s2", "gru-s3", "gru"} <= set(rows)
    assert [rows[f"gru-s{k}"]["seed"] for k in (1, 2, 3)] == [42, 43, 44]
    assert {rows[f"gru-s{k}"]["kind"] for k in (1, 2, 3)} == {"seed"}
    assert rows["gru"]["kind"] == "ensemble" and rows["gru"]["members"] == [
        "gru-s1",
        "gru-s2",
        "gru-s3",
    ]
    seeds = [rows[f"gru-s{k}"]["mase"] for k in (1, 2, 3)]
    assert rows["gru"]["spread"] == pytest.approx(np.std(seeds, ddof=1))
    assert len(rows["gru"]["mae_by_step"]) == 2 and rows["gru"]["mase_seasonal"] is not None
    # The seeds differ, and the ensemble's forecast is their mean.
    predictions = pd.read_parquet(run / "evaluate" / "predictions.parquet")
    by_name = {n: g["prediction"].to_numpy() for n, g in predictions.groupby("name")}
    assert not np.allclose(by_name["gru-s1"], by_name["gru-s2"])
    mean = np.mean([by_name[f"gru-s{k}"] for k in (1, 2, 3)], axis=0)
    np.testing.assert_allclose(by_name["gru"], mean, rtol=1e-6)
    assert decided["candidate"] == "gru" and decided["promote"]
    # Served as one .keras model, checked in a fresh process, with the calendar inputs.
    bundle = load_bundle(Registry("tiny").bundle_dir(1))
    assert bundle.meta["model"]["members"] == ["gru-s1", "gru-s2", "gru-s3"]
    assert bundle.columns == ["load", "temp", "cal_dayofweek_sin", "cal_dayofweek_cos"]
    layers = {type(layer).__name__ for layer in bundle.model.layers}
    assert "Average" in layers and "Lambda" not in layers
    checked = Registry("tiny").history()[-1]["verified"]
    assert checked["max_abs_error"] < 1e-4


@pytest.mark.slow
def test_a_search_scores_trials_on_validation_only_and_trains_the_winner(tmp_path, monkeypatch):
    import yaml

    spec_file, _ = serving_spec(tmp_path, monkeypatch)
    fields = yaml.safe_load(spec_file.read_text())
    search = {
        "trials": 3,
        "learning_rate": [0.005, 0.05],
        "units": [4, 12],
        "window": [5, 9],
        "lr_sweep": {"epochs": 6, "low": 1e-4, "high": 1.0},
    }
    fields["models"] = [{**LEARNING_MODELS_FOR_TESTS[-1], "name": "gru", "tune": search}]
    spec_file.write_text(yaml.safe_dump(fields, sort_keys=False))
    run_id = "run1"
    run = Path(steps.prepare.ingest(spec_file, run_id=run_id, cutoff=None)["run_dir"])
    for step in (steps.prepare.validate, steps.prepare.split_scale, steps.prepare.window):
        step(run)
    steps.training.plan_trials(run)

    # The trials never read the test split: with its rows replaced by NaN they still score.
    real_load = np.load
    test_start = sum(
        v["rows"]
        for k, v in json.loads((run / "split_scale" / "splits.json").read_text()).items()
        if k != "test"
    )

    def without_test(path, *args, **kwargs):
        array = real_load(path, *args, **kwargs)
        if str(path).endswith("scaled.npy"):
            array = np.array(array)
            array[test_start:] = np.nan
        return array

    monkeypatch.setattr(np, "load", without_test)
    results = [steps.training.trial(run, name) for name in ("gru-t1", "gru-t2", "gru-t3")]
    assert all(np.isfinite(r["val_mae"]) for r in results)
    sweep = steps.training.trial(run, "gru-lr")
    monkeypatch.setattr(np, "load", real_load)

    chosen = steps.training.select(run)["chosen"]["gru"]
    best = min(results, key=lambda r: r["val_mae"])
    assert chosen["trial"] == best["trial"] and chosen["val_mae"] == best["val_mae"]
    planned = json.loads((run / "plan" / "trials.json").read_text())
    trained = steps.training.train(run, "gru")
    manifest = json.loads((run / "train" / "gru" / "manifest.json").read_text())
    for field, value in planned[chosen["trial"]]["params"].items():
        got = manifest["params"]["model"][field]
        assert (got[0] if field == "units" else got) == pytest.approx(value), field
    assert manifest["params"]["timesteps"] == planned[chosen["trial"]]["params"]["window"]
    assert 1e-4 <= sweep["suggested"] <= 1.0
    steps.scoring.evaluate(run, [trained])
    steps.serving.gate(run, run_id=run_id)
    html = Path(steps.reporting.report(run, run_id=run_id)["html"]).read_text()
    assert "gru-t1" in html and "validation" in html


# --- issue 13: intervals, backtest, drift --------------------------------------------------
