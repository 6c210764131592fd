"""The task steps without Airflow: idempotent reruns, manifests, and the run's own spec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from freshcast import artifacts, steps
from tests.helpers import LEARNING_MODELS as LEARNING_MODELS_FOR_TESTS
from tests.helpers import add_partition, serving_spec, train_run, write_tiny_pipeline

PREP = ("ingest", "validate", "split_scale", "window")


def outputs(run, step):
    manifest = json.loads((run / step / "manifest.json").read_text())
    return {name: entry["sha256"] for name, entry in manifest["outputs"].items()}


def prepare(spec_file, run_id="manual__1"):
    run = steps.prepare.ingest(spec_file, run_id=run_id, cutoff=None)["run_dir"]
    for step in (steps.prepare.validate, steps.prepare.split_scale, steps.prepare.window):
        step(run)
    return Path(run)


@pytest.fixture
def spec_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FRESHCAST_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    return write_tiny_pipeline(tmp_path / "pipelines")


def test_rerunning_the_data_steps_gives_the_same_files(spec_file):
    run = prepare(spec_file)
    first = {step: outputs(run, step) for step in PREP}
    (run / "validate" / "stale.txt").write_text("left by an earlier attempt")
    assert prepare(spec_file) == run
    assert {step: outputs(run, step) for step in PREP} == first
    assert not (run / "validate" / "stale.txt").exists()


def test_cutoff_keeps_only_rows_known_at_the_run(spec_file):
    from datetime import UTC, datetime

    result = steps.prepare.ingest(
        spec_file, run_id="scheduled__1", cutoff=datetime(2024, 3, 1, tzinfo=UTC)
    )
    assert result["rows"] == 31 + 29 + 1  # January, leap-year February, 1 March


def test_later_steps_use_the_spec_as_the_run_saw_it(spec_file):
    run = prepare(spec_file)
    spec_file.write_text(spec_file.read_text().replace("window: 7", "window: 3"))
    steps.prepare.window(run)  # rerun after the spec file changed
    layout = json.loads((run / "window" / "layout.json").read_text())
    assert layout["timesteps"] == 7


def test_window_layout_matches_the_splits(spec_file):
    run = prepare(spec_file)
    splits = json.loads((run / "split_scale" / "splits.json").read_text())
    layout = json.loads((run / "window" / "layout.json").read_text())
    assert {k: v["rows"] for k, v in splits.items()} == {"train": 144, "val": 48, "test": 48}
    # Sample i predicts rows i+7, i+8: each split's targets stay inside the split.
    assert layout["ranges"] == {"train": [0, 136], "val": [137, 184], "test": [185, 232]}


def test_a_downstream_step_refuses_a_changed_input(spec_file):
    run = prepare(spec_file)
    scaled = run / "split_scale" / "scaled.npy"
    array = np.load(scaled)
    array[0, 0] += 1
    np.save(scaled, array)
    steps.prepare.window(run)  # the layout reads only the array's shape, not its values ...
    with pytest.raises(artifacts.ArtifactError, match="changed after it was written"):
        steps.training.train(run, "lstm")  # ... the step that reads the values refuses them


@pytest.mark.slow
def test_training_twice_gives_the_same_model(spec_file):
    run = prepare(spec_file)
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
def test_retraining_promotes_refuses_and_skips_as_the_figures_say(tmp_path, monkeypatch):
    from freshcast.registry import Registry, verify_in_fresh_process

    spec_file, landing = serving_spec(tmp_path, monkeypatch, models=2)
    first = train_run(spec_file, "run1", verify=verify_in_fresh_process)
    assert first["promote"] and first["champion"] is None
    assert first["promoted"]["version"] == 1
    registry = Registry("tiny")
    checked = registry.history()[0]["verified"]  # what the fresh process reported
    assert checked["version"] == 1 and checked["samples"] == 16
    assert checked["max_abs_error"] < 1e-4
    bundle = registry.bundle(1)
    assert bundle["lineage"]["run_id"] == "run1" and bundle["lineage"]["compared_to"] is None
    assert bundle["schema"]["columns"] == ["load", "temp"] and bundle["window"]["timesteps"] == 7
    assert set(bundle["lineage"]) >= {"data_sha256", "spec_sha256", "snapshot_sha256", "versions"}
    names = {p.name for p in registry.bundle_dir(1).iterdir()}
    assert {"model.keras", "scaler.json", "spec.json", "bundle.json", "manifest.json"} <= names
    html = Path(first["report"]["html"]).read_text()
    assert "Gate: promoted" in html and "champion v1" in html

    # Same data, same spec: skipped, visibly, with the reason.
    same = train_run(spec_file, "run2")
    assert same["changed"] is False and "identical to run run1" in same["reason"]
    assert train_run(spec_file, "run2f", force=True)["champion"] == 1  # force trains anyway

    # New partitions land: the champion is re-scored on the new, newest test window.
    add_partition(landing, "part-001.csv", slice(200, 240))
    decided = train_run(spec_file, "run3")
    decision = json.loads((Path(decided["run_dir"]) / "gate" / "decision.json").read_text())
    scores = decision["scores"]
    candidate, champion = scores[decision["candidate"]]["mase"], scores["champion_v1"]["mase"]
    baselines = min(scores["persistence"]["mase"], scores["seasonal_naive_7"]["mase"])
    assert decision["promote"] == (candidate < champion and candidate < baselines)
    expected = 2 if decision["promote"] else 1
    assert registry.champion()["version"] == expected
    kinds = [e["kind"] for e in registry.history()]
    assert kinds == ["promoted", "refused", "promoted" if decision["promote"] else "refused"]


@pytest.mark.slow
def test_a_margin_the_candidate_cannot_meet_keeps_the_champion(tmp_path, monkeypatch):
    from freshcast.registry import Registry

    spec_file, landing = serving_spec(tmp_path, monkeypatch, gate={"margin": 0.9})
    assert train_run(spec_file, "run1")["promote"]  # first run: only the baselines count
    add_partition(landing, "part-001.csv", slice(200, 240))
    decided = train_run(spec_file, "run2")
    assert not decided["promote"]
    assert any("below the margin 90.00%" in r for r in decided["reasons"])
    assert Registry("tiny").champion()["version"] == 1
    assert "Gate: refused: champion v1 stays" in Path(decided["report"]["html"]).read_text()


@pytest.mark.slow
def test_a_bundle_that_fails_its_fresh_process_check_is_never_served(tmp_path, monkeypatch):
    from freshcast.registry import Registry, RegistryError

    spec_file, landing = serving_spec(tmp_path, monkeypatch)
    train_run(spec_file, "run1")
    add_partition(landing, "part-001.csv", slice(200, 240))

    def swap_the_candidate(run: Path) -> None:
        """The sample no longer matches the model: as if another model had been evaluated."""
        sample = run / "gate" / "sample_output.npy"
        np.save(sample, np.load(sample) + 1.0)
        manifest = json.loads((run / "gate" / "manifest.json").read_text())
        manifest["outputs"]["sample_output"]["sha256"] = artifacts.sha256_file(sample)
        (run / "gate" / "manifest.json").write_text(json.dumps(manifest))

    from freshcast.registry import verify_in_fresh_process

    registry = Registry("tiny")
    with pytest.raises(RegistryError, match="failed its check in a fresh process"):
        train_run(
            spec_file,
            "run2",
            force=True,
            tamper=swap_the_candidate,
            verify=verify_in_fresh_process,
        )
    assert registry.champion()["version"] == 1
    assert registry.history()[-1]["kind"] == "promoted" and len(registry.history()) == 1


@pytest.mark.slow
def test_a_lost_pointer_or_a_damaged_champion_heals_or_says_what_to_do(tmp_path, monkeypatch):
    from freshcast.errors import BadInputError
    from freshcast.registry import Registry, RegistryError

    spec_file, _ = serving_spec(tmp_path, monkeypatch)
    train_run(spec_file, "run1")
    registry = Registry("tiny")

    # A lost champion.json: forecasting rebuilds it from the history instead of skipping.
    (registry.dir / "champion.json").unlink()
    made = steps.forecasting.forecast(spec_file, run_id="f1", cutoff=None)
    assert made["version"] == 1 and "rebuilt it from event #1: v1" in made["registry"][0]
    # ... and the gate compares with v1, never with "no champion yet".
    (registry.dir / "champion.json").unlink()
    decided = train_run(spec_file, "run2", force=True)
    assert decided["champion"] == 1
    assert not any("no champion yet" in r for r in decided["reasons"])
    assert registry.champion()["version"] == 1  # the same model does not beat itself

    # A few flipped bytes in the only version: reported once, with the fix; not retryable.
    model = registry.bundle_dir(1) / "model.keras"
    data = bytearray(model.read_bytes())
    data[200:204] = b"\xff\xff\xff\xff"
    model.write_bytes(bytes(data))
    for run_id in ("f2", "f3"):
        with pytest.raises(RegistryError, match=r'conf \{"force": true\}') as err:
            steps.forecasting.forecast(spec_file, run_id=run_id, cutoff=None)
        assert isinstance(err.value, BadInputError)  # the DAG fails it at once, no retries
    assert [e["kind"] for e in registry.history()].count("damaged") == 1

    # The advice works: a forced run is compared with the baselines only and becomes v2.
    decided = train_run(spec_file, "run3", force=True)
    assert decided["champion"] is None and decided["promoted"]["version"] == 2
    assert any("fails its check" in r for r in decided["reasons"])
    assert steps.forecasting.forecast(spec_file, run_id="f4", cutoff=None)["version"] == 2


@pytest.mark.slow
def test_a_broken_candidate_fails_the_run_and_keeps_the_champion(tmp_path, monkeypatch):
    from freshcast.registry import Registry

    spec_file, landing = serving_spec(tmp_path, monkeypatch)
    train_run(spec_file, "run1")
    add_partition(landing, "part-001.csv", slice(200, 240))
    run = steps.prepare.ingest(spec_file, run_id="run2", cutoff=None)["run_dir"]
    for step in (steps.prepare.validate, steps.prepare.split_scale, steps.prepare.window):
        step(run)
    trained = [steps.training.train(run, "gru")]
    (Path(trained[0]["path"])).write_bytes(b"not a keras file")
    with pytest.raises(artifacts.ArtifactError, match="changed after it was written"):
        steps.scoring.evaluate(run, trained)
    assert Registry("tiny").champion()["version"] == 1


@pytest.mark.slow
def test_forecasts_are_published_and_scored_once_actuals_arrive(tmp_path, monkeypatch):
    import pandas as pd

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


def test_runs_outside_a_replay_skip_while_it_is_on(spec_file):
    from freshcast.registry import Registry

    run = steps.prepare.ingest(spec_file, run_id="scheduled__1", cutoff=None)["run_dir"]
    registry = Registry("tiny")
    registry.start_replay(start="2024-03-01", end="2024-06-01")
    outside = steps.serving.data_changed(run)
    assert outside["changed"] is False and "a replay of tiny is in progress" in outside["reason"]
    assert steps.serving.data_changed(run, replay=True)["changed"] is True
    registry.end_replay()
    assert steps.serving.data_changed(run)["changed"] is True


@pytest.mark.slow
def test_every_step_on_its_own_worker_through_an_s3_store(tmp_path, monkeypatch, s3_root):
    """The training and forecast steps over `s3://` (a real S3 protocol server on loopback),
    each step on a new worker with an empty working copy: all it reads comes from the store."""
    import boto3

    spec_file, _ = serving_spec(tmp_path, monkeypatch)
    monkeypatch.setenv(artifacts.ARTIFACT_ROOT_ENV, s3_root)
    workers = iter(range(100))

    def on_a_new_worker(step):
        def run(*args, **kwargs):
            monkeypatch.setenv(artifacts.CACHE_DIR_ENV, str(tmp_path / f"worker-{next(workers)}"))
            return step(*args, **kwargs)

        return run

    for module, names in (
        (steps.prepare, ("ingest", "validate", "split_scale", "window")),
        (steps.training, ("train",)),
        (steps.scoring, ("evaluate",)),
        (steps.serving, ("data_changed", "gate", "promote")),
        (steps.reporting, ("report",)),
        (steps.forecasting, ("forecast", "score_forecasts")),
    ):
        for name in names:
            monkeypatch.setattr(module, name, on_a_new_worker(getattr(module, name)))

    from freshcast.registry import verify_in_fresh_process

    decided = train_run(spec_file, "run1", verify=verify_in_fresh_process)  # the real child
    assert decided["promote"] and decided["promoted"]["version"] == 1
    made = steps.forecasting.forecast(spec_file, run_id="f1", cutoff=None)
    scored = steps.forecasting.score_forecasts(made["forecast_dir"], run_id="f1")
    assert made["version"] == 1 and scored["scored_steps"] == 0
    assert train_run(spec_file, "run2")["changed"] is False  # the fingerprint is in the store

    bucket, prefix = s3_root.removeprefix("s3://").split("/", 1)
    keys = {
        o["Key"].removeprefix(prefix + "/")
        for page in boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    }
    model = steps.run_folder.run_spec(artifacts.local(decided["run_dir"])).model_names[0]
    for step in ("ingest", "validate", "split_scale", "window", f"train/{model}", "evaluate"):
        assert f"tiny/runs/run1/{step}/manifest.json" in keys
    assert {"tiny/runs/run1/gate/manifest.json", "tiny/runs/run1/report/manifest.json"} <= keys
    assert decided["run_dir"] == f"{s3_root}/tiny/runs/run1"  # XCom names the store
    assert "tiny/registry/champion.json" in keys
    assert "tiny/registry/versions/v0001/model.keras" in keys
    assert "tiny/forecasts/history.parquet" in keys
    assert "tiny/forecasts/runs/f1/score/index.html" in keys
    assert not any("train_work" in k or "/." in k for k in keys)  # scratch and temp files stay


def test_unknown_conf_keys_are_refused_with_the_known_ones():
    from freshcast.errors import BadInputError

    steps.run_folder.check_conf(
        {"epochs": 2, "force": True}, known=["epochs", "models", "force"], dag_id="d"
    )
    steps.run_folder.check_conf(None, known=[], dag_id="forecast_x")
    with pytest.raises(BadInputError) as err:
        steps.run_folder.check_conf(
            {"epoch": 2}, known=["epochs", "models", "force"], dag_id="train_x"
        )
    assert str(err.value).startswith(
        "train_x: unknown conf key(s) 'epoch' (did you mean 'epochs'?); it takes epochs, force, "
        "models."
    )
    with pytest.raises(BadInputError, match="it takes no conf at all"):
        steps.run_folder.check_conf({"x": 1}, known=[], dag_id="forecast_x")


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
    run = prepare(spec_file)
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
def test_the_gate_refuses_a_candidate_that_loses_to_tuned_ridge(tmp_path, monkeypatch):
    from freshcast.registry import Registry

    # The default gate: persistence, seasonal naive and ridge. On a series linear in its inputs
    # the network beats both naive baselines, and ridge (alpha chosen on validation) beats it.
    default_gate = {"beat": ["persistence", "seasonal_naive", "ridge"]}
    spec_file, _ = serving_spec(tmp_path, monkeypatch, gate=default_gate)
    decided = train_run(spec_file, "run1")
    run = tmp_path / "artifacts" / "tiny" / "runs" / "run1"
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    scores = metrics["scores"]
    assert scores["gru"]["mase"] < scores["persistence"]["mase"]
    assert scores["gru"]["mase"] < scores["seasonal_naive_7"]["mase"]
    assert scores["ridge"]["mase"] < scores["gru"]["mase"]
    assert metrics["ridge_alpha"] == scores["ridge"]["alpha"]
    validation = metrics["ridge_validation_mae"]  # the choice, from the validation split alone
    finite = {a: v for a, v in validation.items() if v is not None}
    assert len(finite) >= 2 and min(finite, key=finite.get) == f"{metrics['ridge_alpha']:g}"
    assert not decided["promote"]
    assert any("does not beat ridge" in r for r in decided["reasons"])
    assert "ridge" in decided["verdict"]
    assert Registry("tiny").champion() is None
    event = Registry("tiny").history()[-1]
    assert event["kind"] == "refused" and "ridge" in event["decision"]["figures"]


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
