"""The training DAG's scoring steps: `evaluate` every member, ensemble and baseline on the test
split in the data's units (the leaderboard), and `backtest` them over rolling-origin folds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from freshcast import artifacts, display
from freshcast.artifacts import ArtifactError, output_path, read_json, read_manifest, write_manifest
from freshcast.evaluation import interval_columns
from freshcast.spec import PipelineSpec
from freshcast.steps.prepare import WindowError, split_scale, window
from freshcast.steps.run_folder import (
    backtest_folds,
    load_scaler,
    load_series,
    load_windows,
    run_spec,
    save_csv,
    save_parquet,
    split_targets,
    test_targets,
    timed,
)
from freshcast.steps.training import train

log = logging.getLogger(__name__)


@timed
def evaluate(run_dir: str | Path, trained: Iterable[dict[str, Any] | None]) -> dict[str, Any]:
    """Score every trained member, each seeded model's ensemble and three baselines on the test
    windows, in the data's units; save each ensemble as one `.keras` model."""
    from freshcast import baselines, evaluation
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
            baselines.seasonal_naive(series, target_rows, horizon=horizon, season=season),
        )
        if val_rows[0] >= season:  # the validation windows' origins reach a season back
            on_val[name] = baselines.seasonal_naive(
                series, val_rows, horizon=horizon, season=season
            )
    ridge = baselines.ridge_select(
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
                **interval_columns(
                    pred, scores[name].get("intervals"), spec.intervals, "radius_by_step"
                ),
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
            "leaderboard_csv": save_csv(out / "leaderboard.csv", _flat_board(board)),
            "predictions": save_parquet(
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


@timed
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
            outputs={"series": save_parquet(out / "series.parquet", frame)},
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
