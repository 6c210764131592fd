"""The data steps (ingest, validate, split_scale, window): reruns give the same files, a cutoff
keeps only what was known, and a changed input is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from freshcast import artifacts, steps
from tests.helpers import (
    prepare_run,
    step_outputs,
)

PREP = ("ingest", "validate", "split_scale", "window")


def test_rerunning_the_data_steps_gives_the_same_files(spec_file):
    run = prepare_run(spec_file)
    first = {step: step_outputs(run, step) for step in PREP}
    (run / "validate" / "stale.txt").write_text("left by an earlier attempt")
    assert prepare_run(spec_file) == run
    assert {step: step_outputs(run, step) for step in PREP} == first
    assert not (run / "validate" / "stale.txt").exists()


def test_cutoff_keeps_only_rows_known_at_the_run(spec_file):
    from datetime import UTC, datetime

    result = steps.prepare.ingest(
        spec_file, run_id="scheduled__1", cutoff=datetime(2024, 3, 1, tzinfo=UTC)
    )
    assert result["rows"] == 31 + 29 + 1  # January, leap-year February, 1 March


def test_later_steps_use_the_spec_as_the_run_saw_it(spec_file):
    run = prepare_run(spec_file)
    spec_file.write_text(spec_file.read_text().replace("window: 7", "window: 3"))
    steps.prepare.window(run)  # rerun after the spec file changed
    layout = json.loads((run / "window" / "layout.json").read_text())
    assert layout["timesteps"] == 7


def test_window_layout_matches_the_splits(spec_file):
    run = prepare_run(spec_file)
    splits = json.loads((run / "split_scale" / "splits.json").read_text())
    layout = json.loads((run / "window" / "layout.json").read_text())
    assert {k: v["rows"] for k, v in splits.items()} == {"train": 144, "val": 48, "test": 48}
    # Sample i predicts rows i+7, i+8: each split's targets stay inside the split.
    assert layout["ranges"] == {"train": [0, 136], "val": [137, 184], "test": [185, 232]}


def test_a_downstream_step_refuses_a_changed_input(spec_file):
    run = prepare_run(spec_file)
    scaled = run / "split_scale" / "scaled.npy"
    array = np.load(scaled)
    array[0, 0] += 1
    np.save(scaled, array)
    steps.prepare.window(run)  # the layout reads only the array's shape, not its values ...
    with pytest.raises(artifacts.ArtifactError, match="changed after it was written"):
        steps.training.train(run, "lstm")  # ... the step that reads the values refuses them
