"""The serving steps on a series the models can learn: the gate promotes, refuses and skips as the
figures say, and a failed or refused run never touches the champion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from freshcast import artifacts, steps
from tests.helpers import (
    add_partition,
    serving_spec,
    train_run,
)


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
