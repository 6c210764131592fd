"""Every training step in one process (`run_all`), each step on a worker of its own through an S3
store."""

from __future__ import annotations

import pytest

from freshcast import artifacts, steps
from tests.helpers import (
    serving_spec,
    train_run,
)


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
