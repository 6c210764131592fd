"""One function per pipeline task: paths in, small JSON-able dict out.

Each step reads the finished outputs of the step before it (checked against that step's manifest),
writes its own outputs atomically into `<run dir>/<step>/`, and writes its manifest last. Running
a step again for the same run replaces its folder with the same result. Only `train` and
`evaluate` import TensorFlow, and only inside the function.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from freshcast import artifacts
from freshcast.artifacts import ArtifactError, output_path, read_json, read_manifest, write_manifest
from freshcast.ingest import load_source, source_files
from freshcast.scaling import ScalerParams, fit_scaler
from freshcast.spec import PipelineSpec, load_spec, source_location
from freshcast.validate import validate_frame
from freshcast.windowing import SPLITS, Windows, make_windows, split_ranges

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- helpers shared by the steps


def run_spec(run: Path) -> PipelineSpec:
    """The spec as the run's ingest step saved it, so every step of a run sees the same spec."""
    return PipelineSpec.model_validate(read_json(output_path(run / "ingest", "spec")))


def _save_parquet(path: Path, frame: pd.DataFrame) -> Path:
    with artifacts.atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=True)
    return path


def _save_npy(path: Path, array: np.ndarray) -> Path:
    with artifacts.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
    return path


def load_series(run: Path) -> pd.DataFrame:
    """The validated series in the data's units: (steps, columns) with a UTC DatetimeIndex."""
    return pd.read_parquet(output_path(run / "validate", "series"))


def load_scaler(run: Path) -> ScalerParams:
    return ScalerParams.from_json(read_json(output_path(run / "split_scale", "scaler")))


def load_windows(run: Path) -> tuple[dict[str, Windows], dict[str, Any]]:
    """The window views of each split over the scaled array (memory-mapped, nothing copied)."""
    layout = read_json(output_path(run / "window", "layout"))
    scaled = np.load(output_path(run / "split_scale", "scaled"), mmap_mode="r", allow_pickle=False)
    windows = make_windows(
        scaled,
        timesteps=layout["timesteps"],
        horizon=layout["horizon"],
        inputs=layout["inputs"],
        target=layout["target"],
    )
    return {s: windows[slice(*layout["ranges"][s])] for s in SPLITS}, layout


def _timed(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        result["seconds"] = round(time.perf_counter() - start, 3)
        return result

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


# ---------------------------------------------------------------- the steps, in DAG order


@_timed
def ingest(spec_file: str | Path, *, run_id: str, cutoff: datetime | None) -> dict[str, Any]:
    """Read the source up to `cutoff` and store a Parquet snapshot plus the spec as it was."""
    spec = load_spec(spec_file)
    run = artifacts.run_dir(spec.name, run_id)
    with artifacts.step_output(run / "ingest") as out:
        files = source_files(spec)
        frame = load_source(spec, cutoff=cutoff, files=files)
        snapshot = _save_parquet(out / "snapshot.parquet", frame)
        spec_json = artifacts.write_json(out / "spec.json", spec.model_dump(mode="json"))
        manifest = write_manifest(
            out,
            step="ingest",
            inputs={f"source_{i}": f for i, f in enumerate(files)} | {"spec_file": spec.spec_path},
            outputs={"snapshot": snapshot, "spec": spec_json},
            params={
                "cutoff": cutoff.isoformat() if cutoff else None,
                "source": source_location(spec),
            },
            shapes={"snapshot": list(frame.shape)},
        )
        log.info("ingested %d rows from %s up to %s", len(frame), source_location(spec), cutoff)
    return {
        "run_dir": str(run),
        "rows": len(frame),
        "snapshot_sha256": read_json(manifest)["outputs"]["snapshot"]["sha256"],
    }


@_timed
def validate(run_dir: str | Path) -> dict[str, Any]:
    """Check the snapshot and store the series on its regular grid, gaps filled per the spec."""
    run = Path(run_dir)
    spec = run_spec(run)
    ingested = read_manifest(run / "ingest")  # checks every output's sha256 once
    raw = pd.read_parquet(ingested["outputs"]["snapshot"]["path"])
    frame, report = validate_frame(raw, spec, source=ingested["params"]["source"])
    with artifacts.step_output(run / "validate") as out:
        series = _save_parquet(out / "series.parquet", frame)
        write_manifest(
            out,
            step="validate",
            inputs={"snapshot": output_path(run / "ingest", "snapshot", verify=False)},
            outputs={"series": series},
            params={"report": vars(report)},
            shapes={"series": list(frame.shape)},
        )
    return {"run_dir": str(run), **vars(report)}


@_timed
def split_scale(run_dir: str | Path) -> dict[str, Any]:
    """Split chronologically, fit the scaler on the training rows only, scale the whole series."""
    run = Path(run_dir)
    spec = run_spec(run)
    frame = load_series(run)
    train, val, test = spec.split.sizes(len(frame))
    values = frame[spec.columns].to_numpy(dtype=np.float64)  # [rows, columns]
    scaler = fit_scaler(spec.scaler, values[:train], spec.columns)
    scaled = scaler.transform(values)  # float32 [rows, columns]
    bounds = np.cumsum([0, train, val, test])
    splits = {
        name: {
            "rows": int(bounds[i + 1] - bounds[i]),
            "first_row": int(bounds[i]),
            "start": frame.index[bounds[i]].isoformat(),
            "end": frame.index[bounds[i + 1] - 1].isoformat(),
        }
        for i, name in enumerate(SPLITS)
    }
    with artifacts.step_output(run / "split_scale") as out:
        outputs = {
            "scaled": _save_npy(out / "scaled.npy", scaled),
            "scaler": artifacts.write_json(out / "scaler.json", scaler.to_json()),
            "splits": artifacts.write_json(out / "splits.json", splits),
        }
        write_manifest(
            out,
            step="split_scale",
            inputs={"series": output_path(run / "validate", "series", verify=False)},
            outputs=outputs,
            params={"scaler": spec.scaler, "columns": spec.columns},
            shapes={"scaled": list(scaled.shape)},
        )
    return {
        "run_dir": str(run),
        "splits": {k: v["rows"] for k, v in splits.items()},
        "scaled_shape": list(scaled.shape),
    }


@_timed
def window(run_dir: str | Path) -> dict[str, Any]:
    """Lay out the windows of each split as views and check that no target leaves its split."""
    run = Path(run_dir)
    spec = run_spec(run)
    splits = read_json(output_path(run / "split_scale", "splits"))
    scaled = np.load(output_path(run / "split_scale", "scaled"), mmap_mode="r", allow_pickle=False)
    rows = tuple(splits[s]["rows"] for s in SPLITS)
    ranges = split_ranges(rows, timesteps=spec.window, horizon=spec.horizon)
    layout = {
        "timesteps": spec.window,
        "horizon": spec.horizon,
        "inputs": len(spec.features),
        "target": spec.columns.index(spec.target),
        "columns": spec.columns,
        "ranges": {s: list(r) for s, r in ranges.items()},
    }
    windows = make_windows(
        scaled,
        timesteps=spec.window,
        horizon=spec.horizon,
        inputs=layout["inputs"],
        target=layout["target"],
    )
    shapes = {}
    for s in SPLITS:
        start, stop = ranges[s]
        first_target, last_target = start + spec.window, stop - 1 + spec.window + spec.horizon - 1
        lo, hi = splits[s]["first_row"], splits[s]["first_row"] + splits[s]["rows"] - 1
        if not (lo <= first_target and last_target <= hi):  # the contract of split_ranges
            raise AssertionError(f"{s} targets rows {first_target}..{last_target} leave {lo}..{hi}")
        part = windows[start:stop]
        shapes[s] = {"x": list(part.x.shape), "y": list(part.y.shape)}
    with artifacts.step_output(run / "window") as out:
        layout_path = artifacts.write_json(out / "layout.json", layout)
        write_manifest(
            out,
            step="window",
            inputs={"scaled": output_path(run / "split_scale", "scaled", verify=False)},
            outputs={"layout": layout_path},
            params={"timesteps": spec.window, "horizon": spec.horizon},
            shapes=shapes,
        )
    return {"run_dir": str(run), "shapes": shapes}


@_timed
def train(run_dir: str | Path, model_name: str, *, epochs: int | None = None) -> dict[str, Any]:
    """Build the named model from the spec, fit it on the train windows, save `.keras` + history."""
    from freshcast.models import build_model
    from freshcast.training import describe_model, fit

    run = Path(run_dir)
    spec = run_spec(run)
    mspec = spec.model(model_name)
    windows, layout = load_windows(run)
    max_epochs = epochs or mspec.epochs
    model = build_model(
        mspec,
        timesteps=layout["timesteps"],
        features=layout["inputs"],
        horizon=layout["horizon"],
        seed=spec.seed,
    )
    out = run / "train" / model_name
    work = run / "train_work" / model_name  # survives a retry, so BackupAndRestore can resume
    with artifacts.step_output(out) as out:
        log.info(
            "training %s on %s windows, validating on %s",
            model_name,
            windows["train"].x.shape,
            windows["val"].x.shape,
        )
        history = fit(
            model,
            windows["train"],
            windows["val"],
            batch_size=mspec.batch_size,
            epochs=max_epochs,
            patience=mspec.patience,
            work_dir=work,
            seed=spec.seed,
            log=log.info,
        )
        model_path = out / "model.keras"
        with artifacts.atomic_path(model_path) as tmp:
            model.save(tmp)
        history_path = artifacts.write_json(out / "history.json", history)
        val_loss = history.get("val_loss", [float("nan")])
        best = int(np.nanargmin(val_loss)) if np.isfinite(val_loss).any() else -1
        manifest = write_manifest(
            out,
            step="train",
            inputs={
                "scaled": output_path(run / "split_scale", "scaled", verify=False),
                "layout": output_path(run / "window", "layout", verify=False),
            },
            outputs={"model": model_path, "history": history_path},
            params={
                "model": mspec.model_dump(mode="json"),
                "max_epochs": max_epochs,
                "seed": spec.seed,
                **describe_model(model),
            },
            shapes={"train": list(windows["train"].x.shape), "val": list(windows["val"].x.shape)},
        )
    return {
        "model": model_name,
        "type": mspec.type,
        "path": str(model_path),
        "sha256": read_json(manifest)["outputs"]["model"]["sha256"],
        "epochs_run": len(val_loss),
        "best_epoch": best + 1,
        "best_val_loss": float(val_loss[best]) if best >= 0 else None,
    }


@_timed
def evaluate(run_dir: str | Path, trained: Iterable[dict[str, Any] | None]) -> dict[str, Any]:
    """Score every trained model and three baselines on the test windows, in the data's units."""
    from freshcast import evaluation
    from freshcast.models import load_model
    from freshcast.training import predict

    run = Path(run_dir)
    spec = run_spec(run)
    trained = [t for t in trained if t]  # skipped mapped tasks leave no result
    if not trained:
        raise ArtifactError("no trained model to evaluate: every train task was skipped or failed")
    frame = load_series(run)
    scaler = load_scaler(run)
    windows, layout = load_windows(run)
    splits = read_json(output_path(run / "split_scale", "splits"))
    series = frame[spec.target].to_numpy(dtype=np.float64)  # [rows], original units
    horizon, timesteps = layout["horizon"], layout["timesteps"]
    test_start = layout["ranges"]["test"][0]
    target_rows = np.arange(test_start, test_start + len(windows["test"])) + timesteps  # [n]
    actual = series[target_rows[:, None] + np.arange(horizon)]  # [n, horizon]
    scale = evaluation.naive_scale(series[: splits["train"]["rows"]])

    def to_units(scaled: np.ndarray) -> np.ndarray:
        return scaler.inverse(scaled, column=spec.target)

    forecasts: dict[str, tuple[str, np.ndarray]] = {}
    for result in sorted(trained, key=lambda t: t["model"]):
        model = load_model(Path(result["path"]), sha256=result["sha256"])
        forecasts[result["model"]] = (
            "model",
            to_units(predict(model, windows["test"], batch_size=256)),
        )
    forecasts["persistence"] = (
        "baseline",
        evaluation.persistence(series, target_rows, horizon=horizon),
    )
    forecasts[f"seasonal_naive_{spec.season_length}"] = (
        "baseline",
        evaluation.seasonal_naive(series, target_rows, horizon=horizon, season=spec.season_length),
    )
    forecasts["ridge"] = (
        "baseline",
        to_units(
            evaluation.ridge_forecast(windows["train"].x, windows["train"].y, windows["test"].x)
        ),
    )

    scores = {
        name: {"kind": kind, **evaluation.score(actual, pred, scale=scale)}
        for name, (kind, pred) in forecasts.items()
    }
    board = evaluation.leaderboard(scores, metric=spec.metric)
    times = frame.index[(target_rows[:, None] + np.arange(horizon)).ravel()]  # [n * horizon]
    predictions = pd.concat(
        pd.DataFrame(
            {
                "time": times,
                "step": np.tile(np.arange(1, horizon + 1), len(target_rows)),
                "name": name,
                "actual": actual.ravel(),
                "prediction": pred.ravel(),
            }
        )
        for name, (_, pred) in forecasts.items()
    )
    with artifacts.step_output(run / "evaluate") as out:
        metrics = {
            "metric": spec.metric,
            "mase_scale": scale,
            "test_windows": len(target_rows),
            "horizon": horizon,
            "scores": scores,
        }
        outputs = {
            "metrics": artifacts.write_json(out / "metrics.json", metrics),
            "leaderboard": artifacts.write_json(out / "leaderboard.json", board),
            "leaderboard_csv": _save_csv(out / "leaderboard.csv", pd.DataFrame(board)),
            "predictions": _save_parquet(
                out / "predictions.parquet", predictions.reset_index(drop=True)
            ),
        }
        write_manifest(
            out,
            step="evaluate",
            inputs={t["model"]: Path(t["path"]) for t in trained},
            outputs=outputs,
            params={"metric": spec.metric, "season_length": spec.season_length},
            shapes={"test": [len(target_rows), horizon]},
        )
    return {
        "run_dir": str(run),
        "metric": spec.metric,
        "best": board[0]["name"],
        "leaderboard": board,
        "test_windows": len(target_rows),
    }


@_timed
def report(run_dir: str | Path, *, run_id: str) -> dict[str, Any]:
    """Draw the loss curves, the forecasts and the leaderboard, tied together in one HTML page."""
    from freshcast.report import write_report

    run = Path(run_dir)
    spec = run_spec(run)
    board = read_json(output_path(run / "evaluate", "leaderboard"))
    predictions = pd.read_parquet(output_path(run / "evaluate", "predictions"))
    histories = {}
    for row in board:
        if row["kind"] == "model":
            histories[row["name"]] = read_json(output_path(run / "train" / row["name"], "history"))
    with artifacts.step_output(run / "report") as out:
        files = write_report(
            out,
            pipeline=spec.name,
            run_id=run_id,
            metric=spec.metric,
            leaderboard=board,
            histories=histories,
            predictions=predictions,
            target=spec.target,
        )
        write_manifest(
            out,
            step="report",
            inputs={"leaderboard": output_path(run / "evaluate", "leaderboard", verify=False)},
            outputs={k: Path(v) for k, v in files.items()},
        )
    return {"run_dir": str(run), "html": str(files["html"]), "best": board[0]["name"]}


def _save_csv(path: Path, frame: pd.DataFrame) -> Path:
    with artifacts.atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path
