"""The training DAG's fitting steps: `train` one member (a model, or one seed of a model), and the
hyper-parameter search (`plan_trials`, one `trial` per candidate, `select`).

Each imports TensorFlow inside the function; the task that calls it is the only one that pays.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from freshcast import artifacts
from freshcast.artifacts import output_path, read_json, write_manifest
from freshcast.spec import MEMBER_SEPARATOR, ModelSpec, PipelineSpec
from freshcast.steps.run_folder import load_scaler, load_windows, run_spec, timed
from freshcast.windowing import Windows

log = logging.getLogger(__name__)


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
    from freshcast import baselines

    if mspec.base == "none":
        return None
    if mspec.base == "ridge":
        train, val = windows["train"], windows["val"]
        chosen = baselines.ridge_select(train.x, train.y, val.x, val.y, val.x[:1])
        return chosen.normal.solve(chosen.alpha)
    season = run_spec(run).season_length if mspec.base == "seasonal_naive" else 1
    return baselines.naive_kernel(
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


@timed
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


@timed
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


@timed
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


@timed
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
