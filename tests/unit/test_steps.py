"""The task steps without Airflow: idempotent reruns, manifests, and the run's own spec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from freshcast import artifacts, steps
from tests.helpers import write_tiny_pipeline

PREP = ("ingest", "validate", "split_scale", "window")


def outputs(run, step):
    manifest = json.loads((run / step / "manifest.json").read_text())
    return {name: entry["sha256"] for name, entry in manifest["outputs"].items()}


def prepare(spec_file, run_id="manual__1"):
    run = steps.ingest(spec_file, run_id=run_id, cutoff=None)["run_dir"]
    for step in (steps.validate, steps.split_scale, steps.window):
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

    result = steps.ingest(spec_file, run_id="scheduled__1", cutoff=datetime(2024, 3, 1, tzinfo=UTC))
    assert result["rows"] == 31 + 29 + 1  # January, leap-year February, 1 March


def test_later_steps_use_the_spec_as_the_run_saw_it(spec_file):
    run = prepare(spec_file)
    spec_file.write_text(spec_file.read_text().replace("window: 7", "window: 3"))
    steps.window(run)  # rerun after the spec file changed
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
    with pytest.raises(artifacts.ArtifactError, match="changed after it was written"):
        steps.window(run)


@pytest.mark.slow
def test_training_twice_gives_the_same_model(spec_file):
    run = prepare(spec_file)
    first = steps.train(run, "lstm", epochs=2)
    history = (run / "train" / "lstm" / "history.json").read_text()
    from freshcast.models import load_model

    weights = load_model(Path(first["path"]), sha256=first["sha256"]).get_weights()
    second = steps.train(run, "lstm", epochs=2)
    assert (run / "train" / "lstm" / "history.json").read_text() == history
    again = load_model(Path(second["path"]), sha256=second["sha256"]).get_weights()
    for a, b in zip(weights, again, strict=True):
        np.testing.assert_array_equal(a, b)
