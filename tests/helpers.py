"""Shared test data: a tiny synthetic pipeline that trains in seconds."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import yaml


def project_dagbag():
    """The project's dags/ as Airflow's dag-processor and task runner parse it: a bundle, whose
    folder is on sys.path (the DAG files import the factory, forecast_pipelines.py)."""
    from airflow.dag_processing.dagbag import BundleDagBag

    from tests.conftest import PROJECT_ROOT

    dags = PROJECT_ROOT / "dags"
    return BundleDagBag(dag_folder=str(dags), bundle_path=dags)


def tiny_series(rows: int = 240, *, seed: int = 0) -> pd.DataFrame:
    """A daily series: a weekly sine plus noise as the target, and a lagged helper feature."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    load = 10 + 3 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 0.3, rows)
    temp = 5 + np.cos(2 * np.pi * t / 30) + rng.normal(0, 0.1, rows)
    stamps = pd.date_range("2024-01-01", periods=rows, freq="D")
    return pd.DataFrame({"day": stamps.strftime("%Y-%m-%d"), "load": load, "temp": temp})


def lagged_series(rows: int = 240, *, seed: int = 0, start: str = "2024-01-01") -> pd.DataFrame:
    """A daily series a small network learns in a few epochs and the naive baselines cannot:
    the target follows yesterday's helper feature, which is noise."""
    rng = np.random.default_rng(seed)
    temp = rng.normal(0, 1, rows + 1)
    load = 10 + 2 * temp[:-1] + rng.normal(0, 0.1, rows)  # load[t] ~ temp[t - 1]
    stamps = pd.date_range(start, periods=rows, freq="D")
    return pd.DataFrame({"day": stamps.strftime("%Y-%m-%d"), "load": load, "temp": temp[1:]})


# A spec whose models beat the baselines on `lagged_series` in a couple of seconds.
LEARNING_MODELS = [
    {
        "type": "lstm",
        "units": [8],
        "epochs": 15,
        "batch_size": 16,
        "patience": 15,
        "learning_rate": 0.02,
    },
    {
        "type": "gru",
        "units": [8],
        "epochs": 15,
        "batch_size": 16,
        "patience": 15,
        "learning_rate": 0.02,
    },
]


def write_tiny_pipeline(
    folder: Path, *, name: str = "tiny", data: pd.DataFrame | None = None, **overrides: object
) -> Path:
    """Write `<folder>/<name>.yaml` and its CSV (`data`, default `tiny_series()`); returns the
    spec path. `overrides` replace top-level spec fields."""
    folder.mkdir(parents=True, exist_ok=True)
    if "source" not in overrides:
        (tiny_series() if data is None else data).to_csv(folder / f"{name}.csv", index=False)
    spec = {
        "description": "Tiny synthetic series for the tests.",
        "source": {"path": f"{name}.csv"},
        "timestamp": "day",
        "frequency": "D",
        "target": "load",
        "features": ["load", "temp"],
        "split": {"val": 0.2, "test": 0.2},
        "window": 7,
        "horizon": 2,
        "season_length": 7,
        "metric": "mase",
        "schedule": None,
        "models": [
            {"type": "lstm", "units": [4], "epochs": 2, "batch_size": 32, "patience": 2},
            {"type": "gru", "units": [4], "epochs": 2, "batch_size": 32, "patience": 2},
        ],
        **overrides,
        # These series are linear in their inputs, ridge's home ground: a few epochs of a tiny
        # network do not beat it, and these tests are about the rest of the gate. The ridge
        # gate has its own tests (`gate={"beat": [...]}` overrides this).
        "gate": {"beat": ["persistence", "seasonal_naive"], **overrides.get("gate", {})},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# --- serving: the gate, the registry and forecasts, on a series the models can learn ----------


def serving_spec(tmp_path, monkeypatch, *, models=1, **overrides):
    """A tiny pipeline on `lagged_series` in a landing folder (its first 200 rows), artifacts under
    tmp_path; returns (spec file, landing folder)."""
    monkeypatch.setenv("FRESHCAST_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    landing = tmp_path / "pipelines" / "landing"
    landing.mkdir(parents=True)
    lagged_series(240).iloc[:200].to_csv(landing / "part-000.csv", index=False)
    fields = {"source": {"path": "landing/"}, "models": LEARNING_MODELS[-models:], **overrides}
    return write_tiny_pipeline(tmp_path / "pipelines", **fields), landing


def add_partition(landing, name, rows):
    """Land rows `rows` of `lagged_series(240)` as a new file of the landing folder."""
    lagged_series(240).iloc[rows].to_csv(landing / name, index=False)


def in_process(path: Path) -> dict:
    """The bundle check without the fresh process (test_steps runs the real one too)."""
    from freshcast.serving import verify

    return verify(path)


def train_run(spec_file, run_id, *, force=False, verify=in_process, tamper=None, trigger=None):
    """Every step of the training DAG in order (`steps.in_process.run_all`, skipping as the DAG
    does); returns the gate's result with "promoted" and "report" added, or the skip."""
    from freshcast.steps.in_process import run_all

    ran = run_all(
        spec_file,
        run_id=run_id,
        skip_unchanged=True,
        force=force,
        trigger=trigger,
        verify=verify,
        before_promote=tamper,
    )
    if not ran["changed"]["changed"]:
        return ran["changed"]
    decided = ran["decided"]
    if ran["promoted"] is not None:
        decided["promoted"] = ran["promoted"]
    decided["report"] = ran["report"]
    return decided


def step_outputs(run: Path, step: str) -> dict[str, str]:
    """The sha256 of each output a step's manifest lists."""
    manifest = json.loads((run / step / "manifest.json").read_text())
    return {name: entry["sha256"] for name, entry in manifest["outputs"].items()}


def prepare_run(spec_file, run_id="manual__1") -> Path:
    """A run through the data steps (ingest, validate, split_scale, window); its folder."""
    from freshcast import steps

    run = steps.prepare.ingest(spec_file, run_id=run_id, cutoff=None)["run_dir"]
    for step in (steps.prepare.validate, steps.prepare.split_scale, steps.prepare.window):
        step(run)
    return Path(run)


def file_mode(path: Path) -> int:
    """The permission bits of `path` (0o600: its owner reads and writes it, nobody else)."""
    return stat.S_IMODE(path.stat().st_mode)


def bundle_files(folder: Path, tag: str) -> dict[str, Path]:
    """A stand-in bundle's files (a model and a scaler, tagged), for the registry without Keras."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.keras").write_bytes(f"model {tag}".encode())
    (folder / "scaler.json").write_text(json.dumps({"tag": tag}))
    return {"model": folder / "model.keras", "scaler": folder / "scaler.json"}


def bundle_meta(run_id: str) -> dict:
    """A stand-in bundle's metadata: an lstm scored on MAE, trained by `run_id`."""
    return {
        "model": {"name": "lstm"},
        "metric": "mae",
        "scores": {"mae": 1.0},
        "lineage": {"run_id": run_id, "data_end": "2024-01-01"},
    }


def promote(registry, tmp_path: Path, run_id: str, *, meta=None, verify=None) -> int:
    """A stand-in bundle promoted in the same order as steps.serving.promote: add, verify, move
    the pointer. `meta` replaces `bundle_meta(run_id)`; returns the new version."""
    with registry.lock():
        version = registry.add_version(
            bundle_files(tmp_path / run_id, run_id),
            meta=bundle_meta(run_id) if meta is None else meta,
            run_id=run_id,
        )
        check = (verify or (lambda path: {"ok": True}))(registry.bundle_dir(version))
        registry.set_champion(version, event={"kind": "promoted", "run_id": run_id, "check": check})
    return version
