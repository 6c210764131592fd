"""What the run report shows, as data: `run_summary` gathers it into plain JSON (stored as
`summary.json`); from the leaderboard it derives the flags against the baselines, the error per
forecast step, the prediction intervals and the entry whose bands are shaded, and from the
training histories the best epochs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from freshcast import display
from freshcast.evaluation import CANDIDATE_KINDS
from freshcast.forecasts import interval_keys
from freshcast.report.formatting import as_float, finite, join, plain, row_label, sorted_levels
from freshcast.report.run_records import (
    backtest_summary,
    gate_summary,
    sweep_summaries,
    tuning_summary,
)

PREDICTION_COLUMNS = ("time", "step", "name", "actual", "prediction")
FILES = {
    "loss": "loss.png",
    "forecast": "forecast.png",
    "leaderboard": "leaderboard.png",
    "steps": "steps.png",
    "summary": "summary.json",
    "html": "index.html",
}
LEADERBOARD_METRICS = ("mae", "rmse", "mape", "smape", "mase", "mase_seasonal")
STEP_METRICS = ("mae", "rmse")  # the errors listed per forecast step
# Keys a leaderboard row may carry beside its figures: an ensemble's members and spread, a
# seed's ensemble and seed, ridge's alpha, a tuned model's trial.
ROW_KEYS = ("members", "spread", "of", "seed", "alpha", "trial")
REFERENCE = "persistence"  # the baseline the skill score is measured against
ZOOM = 300  # a test split longer than this is also drawn zoomed to its last ZOOM steps
# One line per figure a reader may not know, shown under the leaderboard; `run_summary`'s
# `explain` (the evaluation module's `EXPLAIN`) overrides any of them.
EXPLAIN = {
    "mase": "the test MAE divided by the MAE of the one-step naive forecast (repeat the "
    "previous value) on the training split. MASE < 1 means the forecast errs less than that "
    "naive forecast; MASE > 1 means it errs more.",
    "mase_seasonal": "the test MAE divided by the MAE of the seasonal naive forecast (repeat "
    "the value one season earlier) on the training split: below 1 beats the season's pattern "
    "repeated.",
    "skill": "the reduction of MAE against the persistence baseline (repeat the last value "
    "over the horizon): 25% is a quarter less error, below 0 more error.",
    "per_step": "the MAE and RMSE at each step ahead over the test windows: error usually grows "
    "with the step, and a step where a model falls behind a baseline shows there.",
    "spread": "the sample standard deviation of the ranked figure over an ensemble's seeds: a "
    "gap between rows smaller than it may be chance.",
    "mape": "leaves out points whose actual value is 0.",
    "coverage": "the share of test targets inside the prediction interval: near its nominal "
    "level (80% for the 80% interval) means the interval can be trusted at that level; well "
    "below it, the interval is too narrow.",
    "width": "the mean width of the prediction interval (upper minus lower bound), in the "
    "target's units: at the same coverage, narrower is more useful.",
    "backtest": "the ranking metric on each consecutive block (fold) of the test split, every "
    "model and baseline re-fit on all rows before its block; the mean over the folds and their "
    "spread show how steady an entry is, not just how it did on one window.",
}


def run_summary(
    *,
    pipeline: str,
    run_id: str,
    metric: str,
    leaderboard: Sequence[Mapping[str, Any]],
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    predictions: pd.DataFrame,
    target: str = "target",
    unit: str = "",
    decimals: int = 2,
    top: int = 3,
    decision: Mapping[str, Any] | None = None,
    promoted: int | None = None,
    zoom: int = ZOOM,
    tuning: Mapping[str, Any] | None = None,
    sweeps: Mapping[str, Mapping[str, Any]] | None = None,
    explain: Mapping[str, str] | None = None,
    backtest: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the run report shows, as plain JSON (NaN as None); `write_report` stores it
    as `summary.json`.

    Args:
        pipeline, run_id: named in the title.
        metric: the metric the leaderboard is ranked by (the spec's).
        leaderboard: rows from `evaluation.leaderboard`, best first. Each has "rank", "name",
            "kind" ("model", "ensemble", "seed" or "baseline") and its metrics; optionally
            "mase_seasonal", "mae_by_step" and "rmse_by_step" (one figure per step, None
            where there is none), an ensemble's "members" and "spread" (the sample standard
            deviation of its seeds' `metric`), a seed's "of" (its ensemble) and "seed", a
            baseline's "alpha" (ridge's penalty), "intervals" (level key -> {"level",
            "coverage", "width", ...}, `evaluation.interval_scores`) and "backtest" ({"metric",
            "folds": [value per fold, None without one], "mean": {metric: ...}, "spread"}).
        histories: model name -> {"loss": [...], "val_loss": [...]}, one value per epoch.
        predictions: long form (rows, 5) with columns "time" (tz-aware UTC of the target step),
            "step" (1..horizon), "name", "actual", "prediction", test split, original units,
            and optionally the interval bounds "lower_<key>", "upper_<key>" (NaN without one).
            The per-step errors of a row without "mae_by_step" / "rmse_by_step" come from it.
        target: the forecast column's name, for the plots' axes.
        unit: the target's unit ("°C"), or "".
        decimals: the decimals the data is recorded with (`display.data_decimals`).
        top: how many of the best entries (seeds left out) the forecast plot shows.
        decision: the gate's decision (`gate.Decision.to_json()`), shown first, with its
            "trigger" (what started the run) and "basis" ("test" or "backtest") when it has them.
        promoted: the registry version the run's candidate became, if it did.
        zoom: a test split longer than this many steps is also drawn zoomed to its last `zoom`.
        tuning: the hyperparameter search's record (`select/trials.json`): {"metric",
            "models": {model: {"chosen", "params", "val_mae"}}, "trials": [{"name", "model",
            "params", "val_mae", "val_loss", "epochs_run", "chosen"}]}; None without a search.
        sweeps: model -> its learning-rate sweep {"rates": [...], "losses": [...] (None where
            the loss has no value), "suggested", "rule", "low", "high"}; None without one.
        explain: term -> one line explaining it ("mase", "mase_seasonal", "skill",
            "per_step", "spread", "mape", "coverage", "width", "backtest"), over the built-in
            `EXPLAIN`.
        backtest: the evaluation's backtest record (`metrics["backtest"]`: {"folds": [{"fold",
            "start", "end", "rows", "done", ...}], "gate", "metric"}), for the folds' date
            ranges; default the decision's "backtest", if it has one.

    Returns:
        {"title", "pipeline", "run_id", "target", "unit", "decimals", "metric", "horizon",
        "test_points" (step-1 points of the test split), "zoom" (points in the zoomed panel,
        None without one), "shown" (entries in the forecast plot), "leaderboard" (rows with
        "skill"), "best", "reference", "flags", "per_step" (name -> MAE per step),
        "per_step_rmse" (name -> RMSE per step), "training", "gate", "tuning" (trials sorted by
        validation MAE, or None), "sweeps" (a list, each with its "model" and "image"),
        "intervals" (per entry with intervals, seeds left out: its levels' coverage and width),
        "bands" ({"name", "levels"}: the best model or ensemble, whose intervals the forecast
        plot shades; None without bounds), "backtest" (folds and a row per entry, or None),
        "explain", "images"}.

    Raises:
        ValueError: as `write_report`, and on a sweep whose rates and losses differ in length.
    """
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise ValueError(
            f"`predictions` lacks columns {missing}. Received: {list(predictions.columns)}"
        )
    if leaderboard and metric not in leaderboard[0]:
        raise ValueError(
            f"`metric` must be a leaderboard column. Received: metric={metric!r}, "
            f"columns={list(leaderboard[0])}"
        )
    for name, value, least in (("top", top, 1), ("zoom", zoom, 1), ("decimals", decimals, 0)):
        if value < least:
            raise ValueError(f"`{name}` must be >= {least}. Received: {name}={value}")

    listed = [len(row.get(f"{m}_by_step") or ()) for row in leaderboard for m in STEP_METRICS]
    horizon = max(int(predictions["step"].max()) if len(predictions) else 1, *listed, 1)
    test_points = int(predictions.loc[predictions["step"] == 1, "time"].nunique())
    reference = next((r for r in leaderboard if r["name"] == REFERENCE), None)
    rows = [
        {
            "rank": row["rank"],
            "name": str(row["name"]),
            "kind": str(row["kind"]),
            **{m: row.get(m) for m in LEADERBOARD_METRICS},
            "skill": display.skill(row.get("mae"), reference["mae"] if reference else None),
            **{key: row[key] for key in ROW_KEYS if row.get(key) is not None},
        }
        for row in leaderboard
    ]
    entries = [row for row in leaderboard if row["kind"] != "seed"]
    best = str(entries[0]["name"]) if entries and finite(entries[0][metric]) else None
    shown = [str(row["name"]) for row in entries[:top]]
    bands = _bands(leaderboard, predictions, metric)
    if bands and bands["name"] not in shown:  # the shaded entry is drawn too
        shown.append(bands["name"])
    per_step = _per_step(leaderboard, predictions) if horizon > 1 else {}
    images = {key: FILES[key] for key in ("forecast", "leaderboard", "loss")}
    if horizon > 1:
        images["steps"] = FILES["steps"]
    summary = {
        "title": f"{pipeline}: run {run_id}",
        "pipeline": pipeline,
        "run_id": run_id,
        "target": target,
        "unit": unit,
        "decimals": decimals,
        "metric": metric,
        "horizon": horizon,
        "test_points": test_points,
        "zoom": zoom if test_points > zoom else None,
        "shown": shown,
        "leaderboard": rows,
        "best": best,
        "reference": REFERENCE if reference else None,
        "flags": baseline_flags(leaderboard, metric, unit=unit, decimals=decimals),
        "per_step": per_step.get("mae", {}),
        "per_step_rmse": per_step.get("rmse", {}),
        "training": best_epochs(histories),
        "gate": None if decision is None else gate_summary(decision, promoted),
        "tuning": None if tuning is None else tuning_summary(tuning),
        "sweeps": sweep_summaries(sweeps or {}, leaderboard),
        "intervals": _interval_summary(leaderboard),
        "bands": bands,
        "backtest": backtest_summary(leaderboard, backtest, decision),
        "explain": {**EXPLAIN, **{str(k): str(v) for k, v in (explain or {}).items()}},
        "images": images,
    }
    return plain(summary)


def baseline_flags(
    leaderboard: Sequence[Mapping[str, Any]], metric: str, *, unit: str = "", decimals: int = 2
) -> list[str]:
    """One sentence per model or ensemble that is not strictly better than every baseline on
    `metric`: "gru loses to ridge on mae: 2.25 °C vs 2.24 °C." A tie "does not beat"; an entry
    without a finite score loses to every baseline. Seeds are parts of their ensemble and are
    not judged alone. Baselines without a finite score are left out, as the gate leaves them out.

    Args:
        leaderboard: rows with "name", "kind" and `metric`.
        metric: the metric compared (lower is better).
        unit, decimals: the target's unit and data decimals, for the figures.

    Returns:
        The sentences, in leaderboard order; empty when every entry beats every baseline.
    """

    def shown(value: Any) -> str:
        return display.metric_value(metric, value, decimals=decimals, unit=unit)

    baselines = sorted(
        (r for r in leaderboard if r["kind"] == "baseline" and finite(r.get(metric))),
        key=lambda r: (float(r[metric]), str(r["name"])),
    )
    flags = []
    for row in leaderboard:
        if row["kind"] not in CANDIDATE_KINDS or not baselines:
            continue
        value = as_float(row.get(metric))
        if not math.isfinite(value):
            flags.append(
                f"{row['name']} has no {metric} ({shown(value)}), so it loses to every baseline."
            )
            continue
        winners = [b for b in baselines if float(b[metric]) <= value]
        if winners:
            verb = "loses to" if all(float(b[metric]) < value for b in winners) else "does not beat"
            names = join([str(b["name"]) for b in winners])
            values = join([shown(b[metric]) for b in winners])
            flags.append(f"{row['name']} {verb} {names} on {metric}: {shown(value)} vs {values}.")
    return flags


def step_errors(predictions: pd.DataFrame, *, metric: str = "mae") -> dict[str, list[float]]:
    """The MAE (or RMSE) of every entry at each forecast step.

    Args:
        predictions: long form with "step" (1..horizon), "name", "actual", "prediction".
        metric: "mae" or "rmse".

    Returns:
        name -> [error at step 1, ..., error at step horizon]; NaN for a step an entry has no
        rows for, or a missing actual or prediction in.

    Raises:
        ValueError: on a `metric` other than those in `STEP_METRICS`.
    """
    if metric not in STEP_METRICS:
        raise ValueError(f"`metric` must be one of {STEP_METRICS}. Received: metric={metric!r}")
    actual = predictions["actual"].to_numpy(dtype=np.float64)  # [rows]
    predicted = predictions["prediction"].to_numpy(dtype=np.float64)  # [rows]
    error = actual - predicted  # [rows]
    frame = pd.DataFrame(
        {
            "name": predictions["name"].astype(str).to_numpy(),
            "step": predictions["step"].to_numpy(dtype=np.int64),
            "error": np.abs(error) if metric == "mae" else np.square(error),
        }
    )
    if frame.empty:
        return {}
    keys = [frame["name"], frame["step"]]
    mean = frame["error"].groupby(keys, sort=True).mean()  # pandas skips NaN: put them back
    mean = mean.where(~frame["error"].isna().groupby(keys, sort=True).any())
    if metric == "rmse":
        mean = np.sqrt(mean)
    out: dict[str, list[float]] = {}
    for (name, step), value in mean.items():
        out.setdefault(str(name), [math.nan] * int(frame["step"].max()))[step - 1] = float(value)
    return out


def _per_step(
    leaderboard: Sequence[Mapping[str, Any]], predictions: pd.DataFrame
) -> dict[str, dict[str, list[float]]]:
    """metric -> name -> its error per step: the row's "<metric>_by_step" where it has one, else
    computed from `predictions`. Seeds are left out: their ensemble stands for them."""
    seeds = {str(row["name"]) for row in leaderboard if row["kind"] == "seed"}
    out = {}
    for metric in STEP_METRICS:
        key = f"{metric}_by_step"
        given = {
            str(row["name"]): [as_float(v) for v in row[key]] for row in leaderboard if row.get(key)
        }
        named = set(predictions["name"].astype(str).unique()) - seeds
        computed = step_errors(predictions, metric=metric) if named - set(given) else {}
        out[metric] = {n: v for n, v in {**computed, **given}.items() if n not in seeds}
    return out


def _bands(
    leaderboard: Sequence[Mapping[str, Any]], predictions: pd.DataFrame, metric: str
) -> dict[str, Any] | None:
    """The entry whose intervals the forecast plot shades, the best model or ensemble (the
    first with a finite `metric`), and its levels with a finite bound at step 1; None when it
    has none."""
    best = next(
        (r for r in leaderboard if r["kind"] in CANDIDATE_KINDS and finite(r.get(metric))), None
    )
    if best is None:
        return None
    name = str(best["name"])
    rows = predictions[(predictions["step"] == 1) & (predictions["name"].astype(str) == name)]
    levels = [
        key
        for key in sorted_levels(interval_keys(rows))
        if np.isfinite(rows[f"lower_{key}"].to_numpy(np.float64)).any()
        and np.isfinite(rows[f"upper_{key}"].to_numpy(np.float64)).any()
    ]
    return {"name": name, "levels": levels} if levels else None


def _interval_summary(leaderboard: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per model, ensemble and baseline with intervals (seeds left out), in leaderboard order:
    each level's nominal coverage, test coverage, mean width and calibration windows."""
    out = []
    for row in leaderboard:
        intervals = row.get("intervals") or {}
        if row["kind"] == "seed" or not intervals:
            continue
        levels = [
            {
                "key": str(key),
                "level": intervals[key].get("level", as_float(key) / 100),
                "coverage": intervals[key].get("coverage"),
                "width": intervals[key].get("width"),
                "calibration_windows": intervals[key].get("calibration_windows"),
            }
            for key in sorted_levels([str(k) for k in intervals if intervals[k]])
        ]
        out.append(
            {
                "name": str(row["name"]),
                "label": row_label(row),
                "kind": row["kind"],
                "levels": levels,
            }
        )
    return out


def best_epochs(
    histories: Mapping[str, Mapping[str, Sequence[float]]],
) -> dict[str, dict[str, Any]]:
    """Per model: the epochs it ran and its best epoch, the one whose weights early stopping
    keeps (the first lowest validation loss).

    Args:
        histories: model name -> {"loss": [...], "val_loss": [...]}, one value per epoch.

    Returns:
        name -> {"epochs_run", "best_epoch" (1-based; None without a finite validation loss),
        "best_val_loss"}.
    """
    out = {}
    for name, history in histories.items():
        val = np.asarray(history.get("val_loss", ()), dtype=np.float64)  # [epochs]
        loss = np.asarray(history.get("loss", ()), dtype=np.float64)  # [epochs]
        best, best_val = None, None
        if np.isfinite(val).any():
            index = int(np.argmin(np.where(np.isfinite(val), val, np.inf)))
            best, best_val = index + 1, float(val[index])
        out[str(name)] = {
            "epochs_run": max(val.size, loss.size),
            "best_epoch": best,
            "best_val_loss": best_val,
        }
    return out
