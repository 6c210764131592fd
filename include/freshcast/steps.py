"""One function per pipeline task: paths in, small JSON-able dict out.

Each step reads the finished outputs of the step before it (checked against that step's manifest),
writes its own outputs atomically into `<run dir>/<step>/`, and writes its manifest last. Running
a step again for the same run replaces its folder with the same result. Only `train` and
`evaluate` import TensorFlow, and only inside the function.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from freshcast import artifacts, display
from freshcast.artifacts import ArtifactError, output_path, read_json, read_manifest, write_manifest
from freshcast.errors import BadInputError
from freshcast.evaluation import EXPLAIN
from freshcast.ingest import data_fingerprint, load_source, source_files
from freshcast.registry import Registry, RegistryError
from freshcast.scaling import ScalerParams, fit_scaler
from freshcast.spec import MEMBER_SEPARATOR, ModelSpec, PipelineSpec, load_spec, source_location
from freshcast.validate import validate_frame
from freshcast.windowing import SPLITS, Windows, make_windows, split_ranges

log = logging.getLogger(__name__)

# Leaderboard kinds the gate may pick its candidate from (not "seed", not "baseline").
CANDIDATE_KINDS = ("model", "ensemble")


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


def load_windows(
    run: Path, *, timesteps: int | None = None
) -> tuple[dict[str, Windows], dict[str, Any]]:
    """The window views of each split over the scaled array (memory-mapped, nothing copied).

    Args:
        timesteps: a model's own input length; default the spec's `window`. Every length gives
            the same target rows in each split (a split's samples are the targets inside it).

    Returns:
        ({split: Windows}, the layout with "timesteps" and "ranges" for that length).
    """
    layout = read_json(output_path(run / "window", "layout"))
    if timesteps is not None and timesteps != layout["timesteps"]:
        splits = read_json(output_path(run / "split_scale", "splits"))
        ranges = split_ranges(
            tuple(splits[s]["rows"] for s in SPLITS), timesteps=timesteps, horizon=layout["horizon"]
        )
        layout = {
            **layout,
            "timesteps": timesteps,
            "ranges": {s: list(r) for s, r in ranges.items()},
        }
    scaled = np.load(output_path(run / "split_scale", "scaled"), mmap_mode="r", allow_pickle=False)
    windows = make_windows(
        scaled,
        timesteps=layout["timesteps"],
        horizon=layout["horizon"],
        inputs=layout["inputs"],
        target=layout["target"],
    )
    return {s: windows[slice(*layout["ranges"][s])] for s in SPLITS}, layout


def test_targets(series: np.ndarray, layout: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The test windows' first target rows [n] and their actual values [n, horizon]."""
    return split_targets(series, layout, "test")


def split_targets(
    series: np.ndarray, layout: dict[str, Any], split: str
) -> tuple[np.ndarray, np.ndarray]:
    """A split's windows' first target rows [n] and their actual values [n, horizon]."""
    start, stop = layout["ranges"][split]
    target_rows = np.arange(start, stop) + layout["timesteps"]  # [n]
    actual = series[target_rows[:, None] + np.arange(layout["horizon"])]  # [n, horizon]
    return target_rows, actual


def _timed(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        result["seconds"] = round(time.perf_counter() - start, 3)
        return result

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


class ConfError(BadInputError, ValueError):
    """A run's conf names a key its DAG does not take."""


def check_conf(conf: Mapping[str, Any] | None, *, known: Iterable[str], dag_id: str) -> None:
    """Refuse conf keys that are not parameters of the DAG (Airflow keeps them silently, so a
    typo such as `epoch` would train with the spec's epochs).

    Raises:
        ConfError: naming each unknown key, the closest known one and every known key.
    """
    known = sorted(known)
    unknown = sorted(set(conf or {}) - set(known))
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), known, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    takes = ", ".join(known) if known else "no conf at all"
    raise ConfError(
        f"{dag_id}: unknown conf key(s) {', '.join(hints)}; it takes {takes}. Trigger it again "
        "with the keys spelled as listed."
    )


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
        fingerprint = {
            "data_sha256": data_fingerprint(frame),
            "spec_sha256": artifacts.sha256_file(spec_json),
        }
        manifest = write_manifest(
            out,
            step="ingest",
            inputs={f"source_{i}": f for i, f in enumerate(files)} | {"spec_file": spec.spec_path},
            outputs={"snapshot": snapshot, "spec": spec_json},
            params={
                "cutoff": cutoff.isoformat() if cutoff else None,
                "source": source_location(spec),
                "fingerprint": fingerprint,
            },
            shapes={"snapshot": list(frame.shape)},
        )
        log.info("ingested %d rows from %s up to %s", len(frame), source_location(spec), cutoff)
    return {
        "run_dir": artifacts.where(run),
        "rows": len(frame),
        "snapshot_sha256": read_json(manifest)["outputs"]["snapshot"]["sha256"],
        **fingerprint,
    }


@_timed
def validate(run_dir: str | Path) -> dict[str, Any]:
    """Check the snapshot and store the series on its regular grid, gaps filled per the spec."""
    run = artifacts.local(run_dir)
    spec = run_spec(run)
    ingested = read_manifest(run / "ingest")  # checks every output's sha256 once
    raw = pd.read_parquet(ingested["outputs"]["snapshot"]["path"])
    frame, report = validate_frame(raw, spec, source=ingested["params"]["source"])
    with artifacts.step_output(run / "validate") as out:
        series = _save_parquet(out / "series.parquet", frame)
        write_manifest(
            out,
            step="validate",
            inputs={"snapshot": artifacts.recorded(run / "ingest", "snapshot")},
            outputs={"series": series},
            params={"report": vars(report)},
            shapes={"series": list(frame.shape)},
        )
    return {"run_dir": artifacts.where(run), **vars(report)}


@_timed
def split_scale(
    run_dir: str | Path, *, sizes: tuple[int, int, int] | None = None
) -> dict[str, Any]:
    """Split chronologically, fit the scaler on the training rows only, scale the whole series.

    Args:
        sizes: rows of (train, val, test); default the spec's `split` (a backtest fold names
            its own).
    """
    run = artifacts.local(run_dir)
    spec = run_spec(run)
    frame = load_series(run)
    train, val, test = sizes or spec.split.sizes(len(frame))
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
            inputs={"series": artifacts.recorded(run / "validate", "series")},
            outputs=outputs,
            params={"scaler": spec.scaler, "columns": spec.columns},
            shapes={"scaled": list(scaled.shape)},
        )
    return {
        "run_dir": artifacts.where(run),
        "splits": {k: v["rows"] for k, v in splits.items()},
        "scaled_shape": list(scaled.shape),
    }


class WindowError(BadInputError, ValueError):
    """A model's window (or a searched window range) leaves a split without a full target."""


def _window_lengths(spec: PipelineSpec) -> dict[int, str]:
    """Every input length a model of the spec may use -> the spec field that asks for it."""
    lengths = {spec.window: "field 'window'"}
    for m in spec.models:
        if m.window is not None:
            lengths.setdefault(m.window, f"model {m.name!r}: field 'window'")
        if m.tune is not None and m.tune.window is not None:
            lengths.setdefault(m.tune.window[1], f"model {m.name!r}: field 'tune.window'")
    return lengths


@_timed
def window(run_dir: str | Path) -> dict[str, Any]:
    """Lay out the windows of each split as views and check that no target leaves its split."""
    run = artifacts.local(run_dir)
    spec = run_spec(run)
    splits = read_json(output_path(run / "split_scale", "splits"))
    # Only the array's shape is read here (a memory map reads the header): its sha256 is checked
    # by the steps that read its values, so a large series is not hashed for nothing.
    scaled_path = output_path(run / "split_scale", "scaled", verify=False)
    scaled = np.load(scaled_path, mmap_mode="r", allow_pickle=False)
    rows = tuple(splits[s]["rows"] for s in SPLITS)
    ranges = split_ranges(rows, timesteps=spec.window, horizon=spec.horizon)
    for length, who in sorted(_window_lengths(spec).items()):
        try:  # each model's window (and a searched range's longest) must fit every split
            split_ranges(rows, timesteps=length, horizon=spec.horizon)
        except ValueError as err:
            raise WindowError(f"{spec.spec_path or spec.name}: {who}: {err}; shorten it") from None
        for fold in backtest_folds(splits, spec):  # and every backtest fold's splits
            try:
                split_ranges(fold["sizes"], timesteps=length, horizon=spec.horizon)
            except ValueError as err:
                raise WindowError(
                    f"{spec.spec_path or spec.name}: field 'backtest.folds': fold {fold['fold']} "
                    f"of {len(fold['sizes'])} splits {fold['sizes']} with {who}: {err}; use "
                    "fewer folds or a larger test split"
                ) from None
    layout = {
        "timesteps": spec.window,
        "horizon": spec.horizon,
        "inputs": len(spec.input_columns),
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
            inputs={"scaled": artifacts.recorded(run / "split_scale", "scaled")},
            outputs={"layout": layout_path},
            params={"timesteps": spec.window, "horizon": spec.horizon},
            shapes=shapes,
        )
    return {"run_dir": artifacts.where(run), "shapes": shapes}


def backtest_folds(splits: Mapping[str, Any], spec: PipelineSpec) -> list[dict[str, Any]]:
    """The rolling-origin folds of a spec's `backtest` over a run's splits ([] without one).

    The test split is cut into `folds` consecutive blocks (the last takes the remainder). Fold
    k fits on every row before its block, the last `val` of them validating (as many as the
    run's validation split), and scores the block: an expanding window, each fold knowing only
    the past of its block.

    Returns:
        [{"fold": k (1-based), "first_row": the block's first row, "stop": one past its last,
        "sizes": (train, val, test) rows of the fold's series (its rows up to `stop`)}].
    """
    if spec.backtest is None:
        return []
    first, rows = splits["test"]["first_row"], splits["test"]["rows"]
    val, block = splits["val"]["rows"], rows // spec.backtest.folds
    folds = []
    for k in range(spec.backtest.folds):
        start = first + k * block
        stop = first + rows if k == spec.backtest.folds - 1 else start + block
        folds.append(
            {
                "fold": k + 1,
                "first_row": start,
                "stop": stop,
                "sizes": (start - val, val, stop - start),
            }
        )
    return folds


def member_spec(run: Path, spec: PipelineSpec, member: str) -> tuple[ModelSpec, int]:
    """The configuration and seed a member trains with: its model's spec, with the search's
    chosen values when the model is tuned (from `select`), and the member's seed."""
    model, seed = spec.members[member]
    mspec = spec.model(model)
    if mspec.tune is not None:
        from freshcast.tuning import configure

        chosen = read_json(output_path(run / "select", "trials"))["models"].get(model)
        if chosen is not None:  # None: no trial finished, the spec's configuration trains
            mspec = configure(mspec, chosen["params"])
    return mspec, seed


def _build(
    run: Path, mspec: ModelSpec, *, name: str, seed: int
) -> tuple[Any, dict[str, Windows], dict[str, Any]]:
    """A compiled model for `mspec` (Keras name: `name` with underscores) and the run's window
    views at its input length."""
    from freshcast.models import build_model

    windows, layout = load_windows(run, timesteps=mspec.window)
    model = build_model(
        mspec,
        timesteps=layout["timesteps"],
        features=layout["inputs"],
        horizon=layout["horizon"],
        seed=seed,
        name=name.replace(MEMBER_SEPARATOR, "_"),
        base=_base(run, mspec, windows, layout),
    )
    return model, windows, layout


def _base(
    run: Path, mspec: ModelSpec, windows: dict[str, Windows], layout: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray] | None:
    """The linear forecast a model with `base` corrects, as (kernel, bias) over its flattened
    window in scaled units: ridge fit on the training windows with alpha chosen on validation,
    or (seasonal) naive."""
    from freshcast import evaluation

    if mspec.base == "none":
        return None
    if mspec.base == "ridge":
        train, val = windows["train"], windows["val"]
        chosen = evaluation.ridge_select(train.x, train.y, val.x, val.y, val.x[:1])
        return chosen.normal.solve(chosen.alpha)
    season = run_spec(run).season_length if mspec.base == "seasonal_naive" else 1
    return evaluation.naive_kernel(
        timesteps=layout["timesteps"],
        features=layout["inputs"],
        target=layout["target"],
        horizon=layout["horizon"],
        season=season,
    )


def _fit_and_save(
    run: Path,
    out: Path,
    work: Path,
    mspec: ModelSpec,
    *,
    name: str,
    seed: int,
    epochs: int,
    step: str,
) -> tuple[Any, dict[str, list[float]], dict[str, Windows], dict[str, Any]]:
    """Build, fit and save one model into `out` (model.keras, history.json; the manifest is
    the caller's). Returns (model, history, windows, layout)."""
    from freshcast.training import fit

    model, windows, layout = _build(run, mspec, name=name, seed=seed)
    log.info(
        "%s %s on %s windows, validating on %s",
        step,
        name,
        windows["train"].x.shape,
        windows["val"].x.shape,
    )
    history = fit(
        model,
        windows["train"],
        windows["val"],
        batch_size=mspec.batch_size,
        epochs=epochs,
        patience=mspec.patience,
        work_dir=work,
        seed=seed,
        log=log.info,
    )
    with artifacts.atomic_path(out / "model.keras") as tmp:
        model.save(tmp)
    return model, history, windows, layout


def _finite_history(history: dict[str, list[float]]) -> dict[str, list[float | None]]:
    """A diverging fit logs NaN or inf losses: no value, null in strict JSON."""
    return {k: [v if np.isfinite(v) else None for v in vs] for k, vs in history.items()}


def _best_epoch(history: dict[str, list[float]]) -> tuple[int, float | None]:
    val_loss = history.get("val_loss", [float("nan")])
    best = int(np.nanargmin(val_loss)) if np.isfinite(val_loss).any() else -1
    return best + 1, float(val_loss[best]) if best >= 0 else None


@_timed
def train(run_dir: str | Path, model_name: str, *, epochs: int | None = None) -> dict[str, Any]:
    """Fit one member (a model, or one seed of it) on the train windows; save `.keras` + history.

    Args:
        model_name: a member name of the spec (`lstm`, or `lstm-s2` for a model's second seed).
        epochs: overrides the spec's max epochs.
    """
    from freshcast.training import attempt_lock, describe_model

    run = artifacts.local(run_dir)
    spec = run_spec(run)
    if model_name not in spec.members:
        raise KeyError(f"pipeline {spec.name!r} has no member {model_name!r}: {spec.member_names}")
    mspec, seed = member_spec(run, spec, model_name)
    max_epochs = epochs or mspec.epochs
    out = run / "train" / model_name
    work = run / "train_work" / model_name  # survives a retry, so BackupAndRestore can resume
    with attempt_lock(work), artifacts.step_output(out) as out:
        model, history, windows, layout = _fit_and_save(
            run, out, work, mspec, name=model_name, seed=seed, epochs=max_epochs, step="training"
        )
        history_path = artifacts.write_json(out / "history.json", _finite_history(history))
        best_epoch, best_val_loss = _best_epoch(history)
        manifest = write_manifest(
            out,
            step="train",
            inputs={
                "scaled": artifacts.recorded(run / "split_scale", "scaled"),
                "layout": artifacts.recorded(run / "window", "layout"),
            },
            outputs={"model": out / "model.keras", "history": history_path},
            params={
                "model": mspec.model_dump(mode="json"),
                "of": spec.members[model_name][0],
                "max_epochs": max_epochs,
                "seed": seed,
                "timesteps": layout["timesteps"],
                **describe_model(model),
            },
            shapes={"train": list(windows["train"].x.shape), "val": list(windows["val"].x.shape)},
        )
    return {
        "model": model_name,
        "of": spec.members[model_name][0],
        "seed": seed,
        "type": mspec.type,
        "path": artifacts.where(out / "model.keras"),
        "sha256": read_json(manifest)["outputs"]["model"]["sha256"],
        "epochs_run": len(history.get("val_loss", [])),
        "best_epoch": best_epoch,
        "best_val_loss": best_val_loss,
    }


# ---------------------------------------------------------------- the search: plan, trials, select


@_timed
def plan_trials(run_dir: str | Path) -> dict[str, Any]:
    """Ask Optuna for every trial's configuration of every tuned model (`tuning.plan`)."""
    from freshcast.tuning import plan

    run = artifacts.local(run_dir)
    spec = run_spec(run)
    trials = {}
    for m in spec.models:
        if m.tune is None:
            continue
        names = [t for t in m.trial_names if not t.endswith(f"{MEMBER_SEPARATOR}lr")]
        for name, params in zip(names, plan(m.tune, seed=spec.seed), strict=True):
            trials[name] = {"model": m.name, "params": params}
    with artifacts.step_output(run / "plan") as out:
        path = artifacts.write_json(out / "trials.json", trials)
        write_manifest(out, step="plan", outputs={"trials": path}, params={"seed": spec.seed})
    return {"run_dir": artifacts.where(run), "trials": len(trials)}


@_timed
def trial(run_dir: str | Path, name: str, *, epochs: int | None = None) -> dict[str, Any]:
    """Train one trial of the search (or a model's learning-rate sweep) and score it on the
    validation split only: `tune/<name>/result.json` (or `sweep.json`). The test split is
    never read."""
    from freshcast.training import attempt_lock, lr_sweep, predict

    run = artifacts.local(run_dir)
    spec = run_spec(run)
    if name not in spec.trials:
        raise KeyError(f"pipeline {spec.name!r} has no trial {name!r}: {list(spec.trials)}")
    mspec = spec.model(spec.trials[name])
    out, work = run / "tune" / name, run / "tune_work" / name
    if name.endswith(f"{MEMBER_SEPARATOR}lr"):
        sweep = mspec.tune.lr_sweep
        model, windows, _ = _build(run, mspec, name=name, seed=spec.seed)
        found = lr_sweep(
            model,
            windows["train"],
            low=sweep.low,
            high=sweep.high,
            epochs=sweep.epochs,
            batch_size=mspec.batch_size,
            seed=spec.seed,
            log=log.info,
        )
        found = {"model": mspec.name, "low": sweep.low, "high": sweep.high, **found}
        with artifacts.step_output(out) as folder:
            path = artifacts.write_json(folder / "sweep.json", found)
            write_manifest(folder, step="sweep", outputs={"sweep": path})
        log.info("learning-rate sweep of %s: suggested %s (%s)", mspec.name, found["suggested"],
                 found["rule"])  # fmt: skip
        return {"trial": name, "model": mspec.name, "suggested": found["suggested"]}

    from freshcast.tuning import configure

    params = read_json(output_path(run / "plan", "trials"))[name]["params"]
    config = configure(mspec, params)
    max_epochs = epochs or config.epochs
    scaler = load_scaler(run)
    with attempt_lock(work), artifacts.step_output(out) as folder:
        model, history, windows, _ = _fit_and_save(
            run, folder, work, config, name=name, seed=spec.seed, epochs=max_epochs, step="trial"
        )
        val = windows["val"]
        predicted = scaler.inverse(predict(model, val, batch_size=256), column=spec.target)
        actual = scaler.inverse(np.asarray(val.y, dtype=np.float64), column=spec.target)
        from freshcast.evaluation import mae

        val_mae = mae(actual, predicted) if np.isfinite(predicted).all() else None
        best_epoch, best_val_loss = _best_epoch(history)
        result = {
            "name": name,
            "model": mspec.name,
            "params": params,
            "val_mae": val_mae,
            "val_loss": best_val_loss,
            "epochs_run": len(history.get("val_loss", [])),
            "best_epoch": best_epoch,
        }
        path = artifacts.write_json(folder / "result.json", result)
        history_path = artifacts.write_json(folder / "history.json", _finite_history(history))
        write_manifest(
            folder,
            step="trial",
            outputs={"result": path, "history": history_path, "model": folder / "model.keras"},
            params={"model": config.model_dump(mode="json"), "max_epochs": max_epochs},
        )
    log.info("trial %s %s: validation MAE %s", name, params, val_mae)
    return {"trial": name, "model": mspec.name, "val_mae": val_mae}


@_timed
def select(run_dir: str | Path) -> dict[str, Any]:
    """Pick each tuned model's best trial on the validation split (`tuning.select`) and write
    `select/trials.json`, which the members' training reads. A model whose trials all failed
    trains with the spec's own configuration."""
    from freshcast.tuning import select as best_of

    run = artifacts.local(run_dir)
    spec = run_spec(run)
    planned = read_json(output_path(run / "plan", "trials"))
    chosen, rows = {}, []
    for m in spec.models:
        if m.tune is None:
            continue
        results = []
        for name, entry in planned.items():
            if entry["model"] != m.name:
                continue
            folder = run / "tune" / name
            if artifacts.store().published(folder):
                results.append(read_json(output_path(folder, "result")))
            else:  # the trial failed or was skipped
                results.append({"name": name, "model": m.name, "params": entry["params"],
                                "val_mae": None})  # fmt: skip
        best, marked = best_of(m.tune, results)
        rows.extend(marked)
        if best is not None:
            chosen[m.name] = {"trial": best["name"], "params": best["params"],
                              "val_mae": best["val_mae"]}  # fmt: skip
            log.info("search of %s: %s wins with validation MAE %.4g %s", m.name, best["name"],
                     best["val_mae"], best["params"])  # fmt: skip
        else:
            log.warning("search of %s: no trial finished; its spec's configuration trains", m.name)
    tuning = {"metric": "mae", "unit": spec.unit, "models": chosen, "trials": rows}
    with artifacts.step_output(run / "select") as out:
        path = artifacts.write_json(out / "trials.json", tuning)
        write_manifest(out, step="select", outputs={"trials": path})
    return {"run_dir": artifacts.where(run), "chosen": chosen}


@_timed
def evaluate(run_dir: str | Path, trained: Iterable[dict[str, Any] | None]) -> dict[str, Any]:
    """Score every trained member, each seeded model's ensemble and three baselines on the test
    windows, in the data's units; save each ensemble as one `.keras` model."""
    from freshcast import evaluation
    from freshcast.models import build_ensemble, load_model
    from freshcast.training import predict

    run = artifacts.local(run_dir)
    spec = run_spec(run)
    trained = [t for t in trained if t]  # skipped mapped tasks leave no result
    if not trained:
        raise ArtifactError("no trained model to evaluate: every train task was skipped or failed")
    frame = load_series(run)
    scaler = load_scaler(run)
    windows, layout = load_windows(run)
    splits = read_json(output_path(run / "split_scale", "splits"))
    series = frame[spec.target].to_numpy(dtype=np.float64)  # [rows], original units
    horizon = layout["horizon"]
    target_rows, actual = test_targets(series, layout)
    val_rows, val_actual = split_targets(series, layout, "val")
    train_target = series[: splits["train"]["rows"]]
    scale = evaluation.naive_scale(train_target)
    seasonal_scale = (
        evaluation.naive_scale(train_target, lag=spec.season_length)
        if train_target.size > spec.season_length
        else None
    )

    def to_units(scaled: np.ndarray) -> np.ndarray:
        return scaler.inverse(scaled, column=spec.target)

    forecasts: dict[str, tuple[str, np.ndarray]] = {}
    on_val: dict[str, np.ndarray] = {}  # name -> its forecasts of the validation windows
    extras: dict[str, dict[str, Any]] = {}
    models: dict[str, dict[str, Any]] = {}  # member -> loaded model, by model name below
    by_model: dict[str, list[str]] = {}
    for result in sorted(trained, key=lambda t: t["model"]):
        member = result["model"]
        of, seed = spec.members[member]
        path = output_path(run / "train" / member, "model", verify=False)  # fetched
        model = load_model(path, sha256=result["sha256"])
        timesteps = int(model.input_shape[1])
        views = (
            windows
            if timesteps == layout["timesteps"]
            else load_windows(run, timesteps=timesteps)[0]
        )
        models[member] = {"model": model}
        by_model.setdefault(of, []).append(member)
        seeded = spec.model(of).seeds > 1
        forecasts[member] = (
            "seed" if seeded else "model",
            to_units(predict(model, views["test"], batch_size=256)),
        )
        on_val[member] = to_units(predict(model, views["val"], batch_size=256))
        if seeded:
            extras[member] = {"of": of, "seed": seed}
    ensembles = {}
    for of, members in by_model.items():
        if spec.model(of).seeds == 1:
            continue
        forecasts[of] = ("ensemble", np.mean([forecasts[m][1] for m in members], axis=0))
        on_val[of] = np.mean([on_val[m] for m in members], axis=0)
        extras[of] = {"members": members, "seeds": len(members)}
        ensembles[of] = build_ensemble([models[m]["model"] for m in members], name=of)
    naive = {"persistence": 1, f"seasonal_naive_{spec.season_length}": spec.season_length}
    for name, season in naive.items():
        forecasts[name] = (
            "baseline",
            evaluation.seasonal_naive(series, target_rows, horizon=horizon, season=season),
        )
        if val_rows[0] >= season:  # the validation windows' origins reach a season back
            on_val[name] = evaluation.seasonal_naive(
                series, val_rows, horizon=horizon, season=season
            )
    ridge = evaluation.ridge_select(
        windows["train"].x, windows["train"].y, windows["val"].x, windows["val"].y,
        windows["test"].x,
    )  # fmt: skip
    forecasts["ridge"] = ("baseline", to_units(ridge.predictions))
    on_val["ridge"] = to_units(ridge.normal.predict(windows["val"].x, ridge.alpha))
    extras["ridge"] = {"alpha": ridge.alpha}
    if spec.intervals:  # split conformal: radii from the validation residuals of each forecaster
        for name, (_, pred) in forecasts.items():
            if name in on_val:
                extras.setdefault(name, {})["intervals"] = evaluation.interval_scores(
                    (val_actual, on_val[name]),
                    (actual, pred),
                    levels=spec.intervals,
                    serve=(np.vstack([val_actual, actual]), np.vstack([on_val[name], pred])),
                )
    folds = _backtest_scores(run, spec) if spec.backtest else None

    scores = {
        name: {
            "kind": kind,
            **evaluation.score(actual, pred, scale=scale, seasonal_scale=seasonal_scale),
            **extras.get(name, {}),
        }
        for name, (kind, pred) in forecasts.items()
    }
    for of, members in by_model.items():
        if of in ensembles:
            scores[of]["spread"] = evaluation.spread([scores[m][spec.metric] for m in members])
    for name, summary in (folds or {}).get("scores", {}).items():
        if name in scores:
            scores[name]["backtest"] = summary
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
                **_bounds(pred, scores[name].get("intervals"), spec.intervals, "radius_by_step"),
            }
        )
        for name, (_, pred) in forecasts.items()
    )
    decimals = display.data_decimals(series)
    for of, ensemble in ensembles.items():
        _save_ensemble(run, of, ensemble, members=by_model[of], spec=spec)
    with artifacts.step_output(run / "evaluate") as out:
        metrics = {
            "metric": spec.metric,
            "unit": spec.unit,
            "decimals": decimals,
            "mase_scale": scale,
            "mase_seasonal_scale": seasonal_scale,
            "season_length": spec.season_length,
            "ridge_alpha": ridge.alpha,
            "ridge_validation_mae": ridge.validation,
            "test_windows": len(target_rows),
            "validation_windows": len(val_rows),
            "intervals": spec.intervals,
            "backtest": {k: v for k, v in folds.items() if k != "scores"} if folds else None,
            "horizon": horizon,
            "scores": scores,
        }
        outputs = {
            "metrics": artifacts.write_json(out / "metrics.json", metrics),
            "leaderboard": artifacts.write_json(out / "leaderboard.json", board),
            "leaderboard_csv": _save_csv(out / "leaderboard.csv", _flat_board(board)),
            "predictions": _save_parquet(
                out / "predictions.parquet", predictions.reset_index(drop=True)
            ),
        }
        write_manifest(
            out,
            step="evaluate",
            inputs={
                t["model"]: artifacts.recorded(run / "train" / t["model"], "model") for t in trained
            },
            outputs=outputs,
            params={"metric": spec.metric, "season_length": spec.season_length},
            shapes={"test": [len(target_rows), horizon]},
        )
    log.info(
        "leaderboard on %d test windows of %s, ranked by %s:\n%s",
        len(target_rows),
        spec.target,
        spec.metric,
        leaderboard_table(board, unit=spec.unit, decimals=decimals),
    )
    return {
        "run_dir": artifacts.where(run),
        "metric": spec.metric,
        "unit": spec.unit,
        "decimals": decimals,
        "best": board[0]["name"],
        "leaderboard": board,
        "test_windows": len(target_rows),
    }


def _bounds(
    forecast: np.ndarray, intervals: Mapping[str, Any] | None, levels: Iterable[float], key: str
) -> dict[str, np.ndarray]:
    """`lower_<level>` and `upper_<level>` columns, flattened like `forecast` [n, horizon]:
    the forecast -+ each level's radius per step (`intervals[level][key]`); NaN without one."""
    from freshcast.evaluation import level_key

    out = {}
    for level in levels:
        entry = (intervals or {}).get(level_key(level))
        radius = np.array(
            [np.nan if r is None else r for r in (entry or {}).get(key, [np.nan])], np.float64
        )  # [horizon] (or [1] of NaN)
        pred = np.asarray(forecast, np.float64).reshape(-1, radius.size if entry else 1)
        out[f"lower_{level_key(level)}"] = (pred - radius).ravel()
        out[f"upper_{level_key(level)}"] = (pred + radius).ravel()
    return out


def _backtest_scores(run: Path, spec: PipelineSpec) -> dict[str, Any]:
    """The backtest's folds (as their `backtest` tasks scored them) summed up per name: the
    ranking metric on each fold, every metric's mean over the folds, the spread of the ranking
    metric. A fold without a result (its task failed) is None in the lists and left out of the
    means."""
    from freshcast.evaluation import METRICS, spread

    blocks, scored = [], []
    for fold in backtest_folds(read_json(output_path(run / "split_scale", "splits")), spec):
        sub = run / "backtest" / f"fold{fold['fold']}"
        found = artifacts.store().published(sub / "evaluate")
        metrics = read_json(output_path(sub / "evaluate", "metrics")) if found else None
        splits = read_json(output_path(sub / "split_scale", "splits")) if found else None
        blocks.append(
            {
                "fold": fold["fold"],
                "train_rows": fold["sizes"][0],
                "val_rows": fold["sizes"][1],
                "rows": fold["sizes"][2],
                "start": splits["test"]["start"] if splits else None,
                "end": splits["test"]["end"] if splits else None,
                "test_windows": metrics["test_windows"] if metrics else None,
                "done": found,
            }
        )
        scored.append(metrics["scores"] if metrics else {})
    done = [fold for block, fold in zip(blocks, scored, strict=True) if block["done"]]
    summary = {}
    for name in sorted({n for fold in done for n in fold}):
        # A fold that finished without this name (or without a value) leaves no mean.
        means = {}
        for m in (*METRICS, "mase_seasonal"):
            values = [(fold.get(name) or {}).get(m) for fold in done]
            means[m] = None if None in values else float(np.mean(values))
        folds = [(fold.get(name) or {}).get(spec.metric) for fold in scored]
        summary[name] = {
            "metric": spec.metric,
            "folds": folds,
            "mean": means,
            "spread": spread(folds),
        }
    return {"folds": blocks, "gate": spec.backtest.gate, "metric": spec.metric, "scores": summary}


@_timed
def backtest(
    run_dir: str | Path,
    fold: int,
    *,
    epochs: int | None = None,
    models: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Fold `fold` (1-based) of the spec's rolling-origin backtest: a run of its own in
    `backtest/fold<k>/` over the series' rows up to the end of its block, split as
    `backtest_folds` says (scaler fit on the fold's training rows), every member re-fit (with a
    search's chosen values) and every model, ensemble and baseline scored on the block.

    Args:
        models: the models to re-fit (the run's conf `models`); default all.

    Returns:
        {"fold", "run_dir" (the fold's), "start", "end", "scores": {name: ranking metric}}.
    """
    run = artifacts.local(run_dir)
    spec = run_spec(run)
    splits = read_json(output_path(run / "split_scale", "splits"))
    folds = backtest_folds(splits, spec)
    if not 1 <= fold <= len(folds):
        raise WindowError(f"{spec.name}: no backtest fold {fold}; the spec has {len(folds)}")
    plan = folds[fold - 1]
    sub = run / "backtest" / f"fold{fold}"
    with artifacts.step_output(sub / "ingest") as out:  # the spec, without a backtest of its own
        alone = spec.model_copy(update={"backtest": None}).model_dump(mode="json")
        write_manifest(
            out, step="ingest", outputs={"spec": artifacts.write_json(out / "spec.json", alone)}
        )
    with artifacts.step_output(sub / "validate") as out:
        frame = load_series(run).iloc[: plan["stop"]]
        write_manifest(
            out,
            step="validate",
            inputs={"series": artifacts.recorded(run / "validate", "series")},
            outputs={"series": _save_parquet(out / "series.parquet", frame)},
            params={"fold": fold, "rows": plan["stop"]},
            shapes={"series": list(frame.shape)},
        )
    split_scale(sub, sizes=plan["sizes"])
    window(sub)
    if spec.trials:  # the members re-fit with the values the run's search chose
        with artifacts.step_output(sub / "select") as out:
            chosen = read_json(output_path(run / "select", "trials"))
            write_manifest(
                out,
                step="select",
                outputs={"trials": artifacts.write_json(out / "trials.json", chosen)},
            )
    wanted = set(models or spec.model_names)
    trained = [
        train(sub, member, epochs=epochs)
        for member, (model, _) in spec.members.items()
        if model in wanted
    ]
    evaluated = evaluate(sub, trained)
    block = read_json(output_path(sub / "split_scale", "splits"))["test"]
    log.info("backtest fold %d of %d: %s .. %s", fold, len(folds), block["start"], block["end"])
    return {
        "fold": fold,
        "run_dir": artifacts.where(sub),
        "start": block["start"],
        "end": block["end"],
        "scores": {r["name"]: r[spec.metric] for r in evaluated["leaderboard"]},
    }


def _flat_board(board: list[dict[str, Any]]) -> pd.DataFrame:
    """The leaderboard as CSV columns: per-step lists become `mae_step1`, `mae_step2`, ...;
    intervals `coverage_80`, `width_80`; a backtest `backtest_mean`, `backtest_fold1`, ..."""
    rows = []
    for row in board:
        flat = {k: v for k, v in row.items() if not isinstance(v, list | dict)}
        for key, entry in (row.get("intervals") or {}).items():
            flat[f"coverage_{key}"] = entry["coverage"]
            flat[f"width_{key}"] = entry["width"]
        if row.get("backtest"):
            backtest = row["backtest"]
            flat["backtest_mean"] = backtest["mean"][backtest["metric"]]
            flat["backtest_spread"] = backtest["spread"]
            for fold, value in enumerate(backtest["folds"], start=1):
                flat[f"backtest_fold{fold}"] = value
        for key in ("mae_by_step", "rmse_by_step"):
            for step, value in enumerate(row.get(key) or [], start=1):
                flat[f"{key.split('_')[0]}_step{step}"] = value
        if row.get("members"):
            flat["members"] = " ".join(row["members"])
        rows.append(flat)
    return pd.DataFrame(rows)


def _save_ensemble(
    run: Path, name: str, model: Any, *, members: list[str], spec: PipelineSpec
) -> Path:
    """Save a seeded model's ensemble as one `.keras` model in `ensemble/<name>/`, with the
    members' histories, so the gate and the registry treat it like any trained model."""
    from freshcast.training import describe_model

    with artifacts.step_output(run / "ensemble" / name) as out:
        with artifacts.atomic_path(out / "model.keras") as tmp:
            model.save(tmp)
        histories = {m: read_json(output_path(run / "train" / m, "history")) for m in members}
        history = artifacts.write_json(out / "history.json", {"members": histories})
        first = read_manifest(run / "train" / members[0], verify=False)["params"]
        write_manifest(
            out,
            step="ensemble",
            inputs={m: artifacts.recorded(run / "train" / m, "model") for m in members},
            outputs={"model": out / "model.keras", "history": history},
            params={
                "model": first["model"],
                "of": name,
                "members": members,
                "seeds": [spec.members[m][1] for m in members],
                "max_epochs": first["max_epochs"],
                "seed": spec.seed,
                "timesteps": first["timesteps"],
                **describe_model(model),
            },
        )
    return out


def candidate_dir(run: Path, name: str) -> Path:
    """The folder of a leaderboard entry's model: `ensemble/<name>` or `train/<name>`."""
    ensemble = run / "ensemble" / name
    return ensemble if artifacts.store().published(ensemble) else run / "train" / name


def leaderboard_table(board: list[dict[str, Any]], *, unit: str, decimals: int) -> str:
    """The leaderboard as a fixed-width table for logs, figures in the data's units."""
    metrics = ("mae", "rmse", "mase", "smape")
    persistence = next((r["mae"] for r in board if r["name"] == "persistence"), None)
    rows = [
        [
            f"{r['rank']}. {r['name']}",
            r["kind"],
            *(display.number(r.get(m), display.metric_decimals(m, decimals)) for m in metrics),
            display.number(display.skill(r.get("mae"), persistence), display.PERCENT_DECIMALS),
        ]
        for r in board
    ]
    header = ["name", "kind", *(display.metric_label(m, unit) for m in (*metrics, "skill"))]
    return display.table(rows, header)


@_timed
def report(run_dir: str | Path, *, run_id: str) -> dict[str, Any]:
    """Draw the loss curves, the forecasts and the leaderboard, tied together in one HTML page."""
    from freshcast.report import write_report

    run = artifacts.local(run_dir)
    spec = run_spec(run)
    board = read_json(output_path(run / "evaluate", "leaderboard"))
    predictions = pd.read_parquet(output_path(run / "evaluate", "predictions"))
    histories = {}
    for row in board:
        if row["kind"] in ("model", "seed"):
            histories[row["name"]] = read_json(output_path(run / "train" / row["name"], "history"))
    tuning, sweeps = None, {}
    if artifacts.store().published(run / "select"):  # a tuned spec
        tuning = read_json(output_path(run / "select", "trials"))
    for name in spec.trials:
        if name.endswith(f"{MEMBER_SEPARATOR}lr") and artifacts.store().published(
            run / "tune" / name
        ):
            sweep = read_json(output_path(run / "tune" / name, "sweep"))
            sweeps[sweep["model"]] = sweep
    decision, promoted = None, None
    if artifacts.store().published(run / "gate"):  # absent when the gate did not run
        decision = read_json(output_path(run / "gate", "decision"))
        event = Registry(spec.name).find_event(run_id=run_id, kinds=("promoted",))
        promoted = event["version"] if event else None
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
            decision=decision,
            promoted=promoted,
            tuning=tuning,
            sweeps=sweeps or None,
            explain=EXPLAIN,
            backtest=read_json(output_path(run / "evaluate", "metrics")).get("backtest"),
            **_display(run),
        )
        write_manifest(
            out,
            step="report",
            inputs={"leaderboard": artifacts.recorded(run / "evaluate", "leaderboard")},
            outputs={k: Path(v) for k, v in files.items()},
        )
    tracked = _track(run, spec, run_id=run_id, board=board, histories=histories,
                     decision=decision, promoted=promoted)  # fmt: skip
    return {
        "run_dir": artifacts.where(run),
        "html": artifacts.where(files["html"]),
        "best": board[0]["name"],
        "promoted": promoted,
        "mlflow": tracked,
    }


def _track(
    run: Path,
    spec: PipelineSpec,
    *,
    run_id: str,
    board: list[dict[str, Any]],
    histories: dict[str, Any],
    decision: dict[str, Any] | None,
    promoted: int | None,
) -> dict[str, Any] | None:
    """Log the run to MLflow when a tracking URI is set (spec or MLFLOW_TRACKING_URI); None
    otherwise, and mlflow is not imported."""
    from freshcast import tracking

    uri = tracking.tracking_uri(spec.tracking.mlflow_uri)
    if uri is None:
        return None
    bundle = None
    if promoted is not None:
        bundle = {
            "version": promoted,
            "bundle_dir": Registry(spec.name).bundle_dir(promoted),
            "model": decision["candidate"] if decision else None,
        }
    tracked = tracking.log_training_run(
        uri=uri,
        pipeline=spec.name,
        run_id=run_id,
        params={"spec": spec.model_dump(mode="json")},
        histories=histories,
        leaderboard=board,
        metric=spec.metric,
        report_dir=run / "report",
        decision=decision,
        promoted=bundle,
    )
    log.info("logged to MLflow at %s: %s", uri, tracked)
    return tracked


def _save_csv(path: Path, frame: pd.DataFrame) -> Path:
    with artifacts.atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


# ---------------------------------------------------------------- serving: skip, gate, promote


def fingerprint(run: Path) -> dict[str, str]:
    """The run's input fingerprint: content hashes of the ingested data and of the spec."""
    return read_manifest(run / "ingest", verify=False)["params"]["fingerprint"]


@_timed
def data_changed(
    run_dir: str | Path,
    *,
    force: bool = False,
    forced_by: str = "conf force=true",
    replay: bool = False,
) -> dict[str, Any]:
    """Whether this run must train: its data or spec differ from the last decided run's.

    Args:
        force: train whatever the fingerprint says.
        forced_by: why `force` is set, for the reason (an explicit `epochs` in the conf, say).
        replay: the run is part of a replay (a backfill, as `make replay` starts); other runs
            skip while one is on.

    Returns:
        {"changed": bool, "reason": str, ...}; `changed` False means skip training.
    """
    run = artifacts.local(run_dir)
    spec = run_spec(run)
    mine = fingerprint(run)
    registry = Registry(spec.name)
    last = registry.last_decision()
    ongoing = registry.active_replay()
    if ongoing and not replay:
        changed = False
        reason = (
            f"a replay of {spec.name} is in progress ({ongoing['start']} to {ongoing['end']}, "
            f"started {ongoing['at']}); this run would train on newer data in the middle of "
            f"it. If no replay is running, delete {registry.replay_marker}"
        )
    elif force:
        changed, reason = True, forced_by
    elif not spec.gate.skip_unchanged:
        changed, reason = True, "the spec's gate.skip_unchanged is false"
    elif last is None:
        changed, reason = True, "no earlier run reached a decision"
    elif last.get("fingerprint") == mine:
        changed, reason = (
            False,
            (
                f"data and spec are identical to run {last['run_id']} (decided {last['at']}: "
                f"{last['kind']}); trigger with conf force=true to train anyway"
            ),
        )
    else:
        what = [k.split("_")[0] for k in mine if (last.get("fingerprint") or {}).get(k) != mine[k]]
        changed, reason = True, f"{' and '.join(what)} changed since run {last['run_id']}"
    log.info("changed=%s: %s", changed, reason)
    return {"changed": changed, "reason": reason, **mine}


def _candidate_model(run: Path, name: str) -> tuple[Path, str]:
    entry = read_manifest(candidate_dir(run, name), verify=False)["outputs"]["model"]
    return Path(entry["path"]), entry["sha256"]


@_timed
def gate(
    run_dir: str | Path, *, run_id: str, sample_size: int = 16, trigger: str | None = None
) -> dict[str, Any]:
    """Score the champion on this run's test window beside the run's best model and decide.

    With `backtest.gate` the figures compared are the backtest's means over its folds (the
    candidate: the best model or ensemble by that mean; the champion: its forecasts of each
    fold's block). `trigger` (schedule, drift, manual, replay) is recorded with the decision.

    Writes `gate/decision.json` (every figure side by side) and, for a candidate, a sample of
    its inputs and outputs that the bundle's fresh-process check must reproduce. A refusal is
    recorded in the registry history here; a promotion is recorded by `promote`.
    """
    from freshcast import evaluation
    from freshcast.gate import decide, verdict
    from freshcast.models import load_model
    from freshcast.serving import forecast_rows, incompatibility, load_bundle

    run = artifacts.local(run_dir)
    spec = run_spec(run)
    metrics = read_json(output_path(run / "evaluate", "metrics"))
    board = read_json(output_path(run / "evaluate", "leaderboard"))
    # A metric without a value is null in leaderboard.json (NaN in files written before).
    # Candidates are models and ensembles; a single seed of an ensemble is never picked on the
    # test split.
    on_backtest = bool(spec.backtest and spec.backtest.gate and metrics.get("backtest"))

    def figures(name: str) -> dict[str, Any]:
        """The scores the gate compares: the test split's, or the backtest's means."""
        scored = metrics["scores"][name]
        if not on_backtest:
            return scored
        summary = scored.get("backtest") or {"mean": {}, "folds": []}
        return {"kind": scored["kind"], **summary["mean"], "folds": summary["folds"]}

    def ranked(name: str) -> tuple[bool, float]:
        value = figures(name).get(spec.metric)
        return value is None or not np.isfinite(value), value or 0.0

    entries = sorted((r["name"] for r in board if r["kind"] in CANDIDATE_KINDS), key=ranked)
    models = [n for n in entries if not ranked(n)[0]]
    broken = [n for n in entries if n not in models]
    baselines = {n: figures(n) for n, s in metrics["scores"].items() if s["kind"] == "baseline"}
    candidate = (models[0], figures(models[0])) if models else None
    if candidate is None and broken:
        candidate = (broken[0], figures(broken[0]))  # refused as broken, with figures

    registry = Registry(spec.name)
    with registry.lock():
        healed = registry.heal(run_id=run_id)  # the history's champion, or its fallback
    pointer = healed["pointer"]
    champion, note = None, None
    if healed["problem"]:
        note = f"{healed['problem']} Compared with the baselines only."
    frame = load_series(run)
    layout = read_json(output_path(run / "window", "layout"))
    if pointer is not None:
        version = pointer["version"]
        meta = registry.meta(version)  # its files were just checked by `heal`
        target_rows, actual = test_targets(frame[spec.target].to_numpy(np.float64), layout)
        problem = incompatibility(meta, frame, frequency=spec.grid_frequency)
        if meta["schema"]["target"] != spec.target or meta["window"]["horizon"] != spec.horizon:
            problem = (
                f"it forecasts {meta['schema']['target']} {meta['window']['horizon']} step(s) "
                f"ahead, this run {spec.target} {spec.horizon}"
            )
        elif problem is None and meta["window"]["timesteps"] > target_rows[0]:
            problem = "its window reaches before the first row"
        if problem:
            note = f"champion v{version} cannot forecast this run's data ({problem}): compared "
            note += "with the baselines only"
        else:
            bundle = load_bundle(registry.bundle_dir(version))
            if on_backtest:
                champion = (version, _champion_backtest(run, spec, bundle, frame))
            else:
                predicted = forecast_rows(bundle, frame, target_rows)
                champion = (
                    version,
                    evaluation.score(
                        actual,
                        predicted,
                        scale=metrics["mase_scale"],
                        seasonal_scale=metrics.get("mase_seasonal_scale"),
                    ),
                )
    decision = decide(
        metric=spec.metric,
        candidate=candidate,
        champion=champion,
        baselines=baselines,
        gate=spec.gate,
        champion_note=note,
        data_end=frame.index[-1].isoformat(),
        champion_data_end=meta["lineage"].get("data_end") if pointer else None,
    ).to_json()
    decision["fingerprint"] = fingerprint(run)
    decision["current_champion"] = pointer["version"] if pointer else None
    decision["registry"] = healed["actions"]
    decision["trigger"] = trigger
    decision["basis"] = "backtest" if on_backtest else "test"
    if on_backtest:
        done = sum(f["done"] for f in metrics["backtest"]["folds"])
        decision["reasons"].insert(
            0,
            f"decided on the backtest: each figure is the mean {spec.metric} over {done} "
            f"fold(s) of the test split, every model and baseline re-fit before its block",
        )
        decision["backtest"] = metrics["backtest"]

    with artifacts.step_output(run / "gate") as out:
        outputs = {"decision": artifacts.write_json(out / "decision.json", decision)}
        if decision["promote"]:
            path, sha = _candidate_model(run, decision["candidate"])
            model = load_model(path, sha256=sha)
            test = load_windows(run, timesteps=int(model.input_shape[1]))[0]["test"]
            x = np.ascontiguousarray(test.x[-sample_size:])  # [S, timesteps, inputs]
            y = np.asarray(model(x, training=False), dtype=np.float64)  # [S, horizon], scaled
            if not np.all(np.isfinite(y)):
                raise ArtifactError(f"candidate {decision['candidate']} predicts non-finite values")
            outputs["sample_input"] = _save_npy(out / "sample_input.npy", x)
            outputs["sample_output"] = _save_npy(out / "sample_output.npy", y)
        write_manifest(out, step="gate", outputs=outputs, params={"gate": spec.gate.model_dump()})
    if not decision["promote"]:
        with registry.lock():
            if registry.find_event(run_id=run_id, kinds=("refused",)) is None:
                registry.record(
                    "refused",
                    run_id=run_id,
                    decision=_event_decision(decision),
                    fingerprint=decision["fingerprint"],
                )
    for action in healed["actions"]:
        log.warning("registry: %s", action)
    for reason in decision["reasons"]:
        log.info("gate: %s", reason)
    shown = {"unit": metrics.get("unit", ""), "decimals": metrics.get("decimals", 2)}
    said = verdict(decision, **shown)
    log.info("gate decision: %s", said)
    return {
        "run_dir": artifacts.where(run),
        "promote": decision["promote"],
        "candidate": decision["candidate"],
        "champion": decision["current_champion"],
        "reasons": decision["reasons"],
        "verdict": said,
        "registry": healed["actions"],
        **shown,
    }


def _champion_backtest(run: Path, spec: PipelineSpec, bundle: Any, frame: pd.DataFrame) -> dict:
    """The champion's figures on the backtest: its forecasts of each finished fold's block
    (no re-fit: it is the model in service), scored like the fold's models; every metric's
    mean over the folds and the ranking metric per fold."""
    from freshcast import evaluation
    from freshcast.serving import forecast_rows

    series = frame[spec.target].to_numpy(np.float64)
    per_fold: list[dict[str, Any] | None] = []
    for fold in backtest_folds(read_json(output_path(run / "split_scale", "splits")), spec):
        sub = run / "backtest" / f"fold{fold['fold']}"
        if not artifacts.store().published(sub / "evaluate"):
            per_fold.append(None)
            continue
        scales = read_json(output_path(sub / "evaluate", "metrics"))
        rows, actual = test_targets(series, read_json(output_path(sub / "window", "layout")))
        per_fold.append(
            evaluation.score(
                actual,
                forecast_rows(bundle, frame, rows),
                scale=scales["mase_scale"],
                seasonal_scale=scales.get("mase_seasonal_scale"),
            )
        )
    done = [f for f in per_fold if f is not None]
    means = {}
    for m in (*evaluation.METRICS, "mase_seasonal"):
        values = [f[m] for f in done]
        means[m] = None if not done or None in values else float(np.mean(values))
    return {**means, "folds": [f[spec.metric] if f else None for f in per_fold]}


def _event_decision(decision: dict[str, Any]) -> dict[str, Any]:
    """The part of a decision the registry history keeps (figures of the primary metric)."""
    metric = decision["metric"]
    return {
        "trigger": decision.get("trigger"),
        "basis": decision.get("basis", "test"),
        "metric": metric,
        "candidate": decision["candidate"],
        "champion_version": decision["champion_version"],
        "improvement": decision["improvement"],
        "figures": {name: s.get(metric) for name, s in decision["scores"].items()},
        "reasons": decision["reasons"],
    }


@_timed
def promote(
    run_dir: str | Path,
    *,
    run_id: str,
    verify: Callable[[Path], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Register the gate's candidate as a new version and make it the champion.

    Order, each step safe to crash after: bundle stored as the next version; bundle loaded
    and checked in a fresh process; pointer moved atomically; history written; old versions
    pruned. A retry of the same run finds its version and event and does not add another.
    """
    from freshcast.gate import verdict
    from freshcast.registry import git_commit, verify_in_fresh_process

    verify = verify or verify_in_fresh_process
    run = artifacts.local(run_dir)
    spec = run_spec(run)
    decision = read_json(output_path(run / "gate", "decision"))
    if not decision["promote"]:
        raise ArtifactError(f"{run}: the gate refused this run's candidate; nothing to promote")
    registry = Registry(spec.name)
    with registry.lock():
        done = registry.find_event(run_id=run_id, kinds=("promoted",))
        if done is not None:
            return {"version": done["version"], "pruned": [], "already": True}
        now_serving = registry.heal(run_id=run_id)["version"]
        if now_serving != decision["current_champion"]:
            why = (
                f"the champion changed to v{now_serving} after the gate compared with "
                f"v{decision['current_champion']}; retrain to compare with it"
            )
            registry.record(
                "refused",
                run_id=run_id,
                decision={**_event_decision(decision), "reasons": [why]},
                fingerprint=decision["fingerprint"],
            )
            return {"version": None, "pruned": [], "refused": why}
        name = decision["candidate"]
        model_path, _ = _candidate_model(run, name)
        gate_dir, train_dir = run / "gate", candidate_dir(run, name)
        files = {
            "model": model_path,
            "scaler": output_path(run / "split_scale", "scaler"),
            "spec": output_path(run / "ingest", "spec"),
            "history": output_path(train_dir, "history"),
            "sample_input": output_path(gate_dir, "sample_input"),
            "sample_output": output_path(gate_dir, "sample_output"),
        }
        layout = read_json(output_path(run / "window", "layout"))
        tested = read_json(output_path(run / "evaluate", "metrics"))["scores"][name]
        series = read_manifest(run / "validate", verify=False)["params"]["report"]
        trained = read_manifest(train_dir, verify=False)
        meta = {
            "model": {"name": name, "type": spec.model(name).type, **trained["params"]},
            "window": {
                "timesteps": trained["params"].get("timesteps", layout["timesteps"]),
                "horizon": layout["horizon"],
                "inputs": layout["inputs"],
            },
            "schema": {
                "timestamp": spec.timestamp_name,
                "columns": layout["columns"],
                "features": spec.features,
                "target": spec.target,
                "frequency": spec.grid_frequency,
                "dtype": "float64",
            },
            "metric": spec.metric,
            "display": _display(run),
            "scores": decision["scores"][name],
            "test_scores": {k: v for k, v in tested.items() if k not in ("intervals", "backtest")},
            "intervals": _served_intervals(tested.get("intervals")),
            "backtest": tested.get("backtest"),
            "gate": _event_decision(decision),
            "lineage": {
                "run_id": run_id,
                "run_dir": artifacts.where(run),
                **decision["fingerprint"],
                "snapshot_sha256": read_manifest(run / "ingest", verify=False)["outputs"][
                    "snapshot"
                ]["sha256"],
                "data_start": series["start"],
                "data_end": series["end"],
                "compared_to": decision["current_champion"],
                "git_commit": git_commit(),
                "versions": trained["versions"],
            },
        }
        version = registry.add_version(files, meta=meta, run_id=run_id)
        check = verify(registry.bundle_dir(version))
        registry.set_champion(
            version,
            event={
                "kind": "promoted",
                "run_id": run_id,
                "from_version": decision["current_champion"],
                "decision": _event_decision(decision),
                "fingerprint": decision["fingerprint"],
                "verified": check,
            },
        )
        pruned = registry.prune(spec.gate.keep)
    log.info("promoted %s as v%d (checked in a fresh process: %s)", name, version, check)
    return {
        "version": version,
        "model": name,
        "metric": spec.metric,
        "score": decision["scores"][name].get(spec.metric),
        **meta["display"],
        "verdict": verdict(decision, promoted=version, **meta["display"]),
        "pruned": pruned,
    }


def _served_intervals(intervals: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a bundle serves of a candidate's intervals: per level, the radii calibrated on the
    validation and test residuals, and the test coverage measured with validation's radii."""
    if not intervals:
        return None
    return {
        key: {
            "level": entry["level"],
            "radius_by_step": entry["served_radius_by_step"],
            "test_coverage": entry["coverage"],
            "calibration": "split conformal on the validation and test windows' residuals",
        }
        for key, entry in intervals.items()
    }


def _display(run: Path) -> dict[str, Any]:
    """The target's unit and the decimals its data is recorded with, as evaluate found them."""
    metrics = read_json(output_path(run / "evaluate", "metrics"))
    return {"unit": metrics.get("unit", ""), "decimals": metrics.get("decimals", 2)}


@_timed
def rollback(spec_file: str | Path, version: int, *, run_id: str, reason: str) -> dict[str, Any]:
    """Make `version` the champion again (checked in a fresh process first)."""
    from freshcast.registry import rollback as roll_back
    from freshcast.registry import verify_in_fresh_process

    spec = load_spec(spec_file)
    pointer = roll_back(
        Registry(spec.name),
        version,
        run_id=run_id,
        reason=reason,
        verify=verify_in_fresh_process,
    )
    meta = Registry(spec.name).meta(pointer["version"])
    metric = meta.get("metric", spec.metric)
    from freshcast import tracking

    uri = tracking.tracking_uri(spec.tracking.mlflow_uri)
    if uri is not None:  # the registered model's "champion" alias follows the rollback
        tracking.set_champion(uri=uri, pipeline=spec.name, version=pointer["version"])
    return {
        "version": pointer["version"],
        "from_version": pointer["event"]["from_version"],
        "reason": reason,
        "model": meta["model"]["name"],
        "metric": metric,
        "score": meta.get("scores", {}).get(metric),
        **(meta.get("display") or {"unit": spec.unit, "decimals": 2}),
    }


# ---------------------------------------------------------------- the forecast DAG's steps


class NoChampionError(ArtifactError):
    """The pipeline has no champion yet, so there is nothing to forecast with."""


@_timed
def forecast(spec_file: str | Path, *, run_id: str, cutoff: datetime | None) -> dict[str, Any]:
    """Forecast the next horizon from the data known at `cutoff` with the champion bundle.

    Writes `forecasts/runs/<run_id>/forecast/` (forecast.csv, forecast.parquet, forecast.png,
    actuals.parquet, manifest) and adds the forecast to `forecasts/history.parquet`.

    Raises:
        NoChampionError: before the first promotion.
        SchemaError: the data no longer fits the champion (columns, grid).
    """
    from freshcast.forecasts import append_history, forecasts_dir, history_path
    from freshcast.report import write_forecast_plot
    from freshcast.serving import check_schema, forecast_rows, load_bundle

    spec = load_spec(spec_file)
    registry = Registry(spec.name)
    with registry.lock():
        healed = registry.heal(run_id=run_id)  # a lost pointer or a damaged bundle: repaired
    for action in healed["actions"]:
        log.warning("registry: %s", action)
    if healed["problem"]:
        raise RegistryError(healed["problem"])
    if healed["version"] is None:
        raise NoChampionError(
            f"{spec.name} has no champion yet: run {spec.dag_id} until a model passes the gate"
        )
    bundle = load_bundle(registry.bundle_dir(healed["version"]))
    files = source_files(spec)
    raw = load_source(spec, cutoff=cutoff, files=files)
    frame, _ = validate_frame(raw, spec, source=source_location(spec), for_training=False)
    check_schema(bundle.meta, frame, frequency=spec.grid_frequency)
    predicted = forecast_rows(bundle, frame, np.array([len(frame)]))[0]  # [horizon]
    served = bundle.meta.get("intervals") or {}  # level key -> radii per step
    grid = pd.date_range(frame.index[-1], periods=bundle.horizon + 1, freq=spec.grid_frequency)
    made_at = pd.Timestamp(cutoff).tz_convert("UTC") if cutoff else frame.index[-1]
    rows = pd.DataFrame(
        {
            "run_id": run_id,
            "made_at": made_at,
            "origin": frame.index[-1],
            "time": grid[1:],
            "step": np.arange(1, bundle.horizon + 1),
            "target": bundle.target,
            "forecast": predicted,
            "model_version": bundle.version,
            "model_name": bundle.meta["model"]["name"],
            **_bounds(
                predicted[None, :], served, [e["level"] for e in served.values()], "radius_by_step"
            ),
        }
    )
    out_dir = forecasts_dir(spec.name) / "runs" / artifacts.safe_run_id(run_id) / "forecast"
    with artifacts.step_output(out_dir) as out:
        outputs = {
            "forecast_parquet": _save_parquet(out / "forecast.parquet", rows.set_index("time")),
            "forecast_csv": _save_csv(out / "forecast.csv", rows),
            "actuals": _save_parquet(out / "actuals.parquet", frame[[bundle.target]]),
            "plot": write_forecast_plot(
                out / "forecast.png",
                actuals=frame[bundle.target],
                latest=rows,
                target=bundle.target,
                unit=(bundle.meta.get("display") or {}).get("unit", spec.unit),
            ),
        }
        write_manifest(
            out,
            step="forecast",
            inputs={"model": bundle.path / "model.keras"}
            | {f"source_{i}": f for i, f in enumerate(files)},
            outputs=outputs,
            params={
                "pipeline": spec.name,
                "version": bundle.version,
                "cutoff": str(made_at),
                "run_id": run_id,
                "display": bundle.meta.get("display") or {"unit": spec.unit, "decimals": 2},
            },
            shapes={"forecast": [bundle.horizon]},
        )
        append_history(history_path(spec.name), rows)
    shown = bundle.meta.get("display") or {"unit": spec.unit, "decimals": 2}
    log.info(
        "champion v%d (%s) forecasts %s from data up to %s:\n%s",
        bundle.version,
        bundle.meta["model"]["name"],
        bundle.target,
        frame.index[-1].isoformat(),
        display.table(
            [
                [t.isoformat(), str(step), display.number(v, shown["decimals"] + 1)]
                for step, (t, v) in enumerate(zip(grid[1:], predicted, strict=True), start=1)
            ],
            ["time (UTC)", "step", display.column_label(bundle.target, shown["unit"])],
        ),
    )
    return {
        "forecast_dir": artifacts.where(out_dir),
        "intervals": sorted(served),
        "version": bundle.version,
        "model": bundle.meta["model"]["name"],
        "origin": frame.index[-1].isoformat(),
        "forecast": {t.isoformat(): float(v) for t, v in zip(grid[1:], predicted, strict=True)},
        "registry": healed["actions"],
        **shown,
    }


@_timed
def score_forecasts(
    forecast_dir: str | Path, *, run_id: str, spec_file: str | Path | None = None
) -> dict[str, Any]:
    """Score every past forecast whose actuals have arrived, draw the forecast report and judge
    drift: the champion's live MAE on its latest scored steps against its test MAE (the
    `drift` of the spec in `spec_file`; without one, no drift check)."""
    from freshcast.forecasts import (
        accuracy_by_version,
        accuracy_over_time,
        drift_check,
        read_history,
        score_history,
    )
    from freshcast.report import write_forecast_report

    forecast_dir = artifacts.local(forecast_dir)
    out_root = forecast_dir.parent
    made = read_manifest(forecast_dir)
    latest = pd.read_parquet(made["outputs"]["forecast_parquet"]["path"]).reset_index()
    actuals = pd.read_parquet(made["outputs"]["actuals"]["path"]).iloc[:, 0]
    pipeline = made["params"].get("pipeline") or out_root.parents[2].name  # <p>/forecasts/runs/<r>
    history = read_history(out_root.parent.parent / "history.parquet")
    scored = score_history(history, actuals)
    by_version, over_time = accuracy_by_version(scored), accuracy_over_time(scored)
    version = int(made["params"]["version"])
    settings = load_spec(spec_file).drift if spec_file else None
    drift = None
    if settings is not None and settings.enabled:
        meta = Registry(pipeline).meta(version)
        tested = meta.get("test_scores") or meta.get("scores") or {}
        drift = drift_check(
            scored,
            version=version,
            test_mae=tested.get("mae"),
            ratio=settings.ratio,
            min_steps=settings.min_steps,
            recent=settings.recent,
        )
        log.info("drift: %s", drift["reason"])
    with artifacts.step_output(out_root / "score") as out:
        outputs = {
            "scored": _save_parquet(out / "scored.parquet", scored),
            "by_version": _save_csv(out / "accuracy_by_version.csv", by_version),
            "over_time": _save_csv(out / "accuracy_over_time.csv", over_time),
        }
        files = write_forecast_report(
            out,
            pipeline=pipeline,
            run_id=run_id,
            target=str(actuals.name),
            scored=scored,
            actuals=actuals,
            by_version=by_version,
            over_time=over_time,
            latest=latest,
            drift=drift,
            **made["params"].get("display", {"unit": "", "decimals": 2}),
        )
        outputs["drift"] = artifacts.write_json(out / "drift.json", drift)
        write_manifest(out, step="score_forecasts", outputs={**outputs, **files})
    return {
        "html": artifacts.where(out / "index.html"),
        "drift": drift,
        "scored_steps": int(scored["actual"].notna().sum()),
        "by_version": by_version[["model_version", "scored_steps", "mae"]].to_dict("records"),
    }


@_timed
def signal_drift(spec_file: str | Path, drift: Mapping[str, Any] | None, *, run_id: str) -> dict:
    """Record a drift the forecast run found in the registry history and say whether to signal
    it (the `<name>.drift` Asset event that schedules a retraining). Not again for the same
    champion and the same latest actual: a retraining on the same data would change nothing.

    Returns:
        {"signal": bool, "reason", **drift}.
    """
    spec = load_spec(spec_file)
    if not drift or not drift.get("drift"):
        reason = (drift or {}).get("reason") or f"drift checks are off for {spec.name}"
        return {**(drift or {}), "signal": False, "reason": reason}
    registry = Registry(spec.name)
    with registry.lock():
        for event in reversed(registry.history()):
            if event["kind"] == "drift" and event.get("version") == drift["version"]:
                if event.get("actuals_end") == drift["actuals_end"]:
                    why = (
                        f"drift of v{drift['version']} was signalled by run {event['run_id']} "
                        f"for actuals up to {drift['actuals_end']}; no newer actual since"
                    )
                    return {**drift, "signal": False, "reason": why}
                break
        if registry.find_event(run_id=run_id, kinds=("drift",)) is None:
            registry.record(
                "drift", run_id=run_id, **{k: v for k, v in drift.items() if k != "drift"}
            )
    log.warning("drift: %s; signalling %s.drift to retrain", drift["reason"], spec.name)
    return {"signal": True, **drift}


# ---------------------------------------------------------------- every step in one process


def run_all(
    spec_file: str | Path,
    *,
    run_id: str,
    cutoff: datetime | None = None,
    epochs: int | None = None,
    promote_candidate: bool = True,
) -> dict[str, Any]:
    """The training DAG's steps one after another in this process, as the DAG wires them (the
    benchmark and tests use it; it trains whatever the fingerprint says).

    Returns:
        {"run_dir", "seconds": {step: s}, "evaluated": evaluate's result, "decided": gate's,
        "promoted": promote's or None}.
    """
    times: dict[str, float] = {}

    def timed(name: str, result: dict[str, Any]) -> dict[str, Any]:
        times[name] = result.get("seconds", 0.0)
        return result

    ingested = timed("ingest", ingest(spec_file, run_id=run_id, cutoff=cutoff))
    run = ingested["run_dir"]
    for name in ("validate", "split_scale", "window"):
        timed(name, globals()[name](run))
    spec = run_spec(artifacts.local(run))
    if spec.trials:
        timed("plan_trials", plan_trials(run))
        for name in spec.trials:
            timed(f"trial[{name}]", trial(run, name, epochs=epochs))
        timed("select", select(run))
    trained = [timed(f"train[{m}]", train(run, m, epochs=epochs)) for m in spec.member_names]
    for fold in range(1, spec.backtest.folds + 1 if spec.backtest else 1):
        timed(f"backtest[{fold}]", backtest(run, fold, epochs=epochs))
    evaluated = timed("evaluate", evaluate(run, trained))
    decided = timed("gate", gate(run, run_id=run_id))
    promoted = None
    if decided["promote"] and promote_candidate:
        promoted = timed("promote", promote(run, run_id=run_id))
    timed("report", report(run, run_id=run_id))
    return {
        "run_dir": run,
        "seconds": times,
        "evaluated": evaluated,
        "decided": decided,
        "promoted": promoted,
    }
