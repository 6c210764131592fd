"""The run report (the gate's decision and what started the run, the leaderboard against the
baselines with its ensembles and their seeds, the prediction intervals, the backtest, the error
per forecast step, the hyperparameter search, the learning-rate sweeps, the training curves) and
the forecast report (the newest forecast with its intervals, the drift check, the forecast
history against the actuals, accuracy and interval coverage per model version and over time).

Data and rendering are kept apart: each writer draws its PNG figures, stores `summary.json` with
everything the page shows (plain JSON, NaN as null), then renders that summary to `index.html`,
last, so a folder with an `index.html` is complete. `render_run` and `render_forecast` are pure
functions of a summary: the Airflow UI plugin renders the same fragment from the stored file.
Every figure a person reads is rounded and labelled by `freshcast.display`.

Figures are `matplotlib.figure.Figure` objects, never pyplot, so no global figure state or GUI
backend is touched inside a worker process.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from freshcast import display
from freshcast.artifacts import atomic_path, write_bytes, write_json
from freshcast.evaluation import CANDIDATE_KINDS
from freshcast.forecasts import interval_keys

PREDICTION_COLUMNS = ("time", "step", "name", "actual", "prediction")
LATEST_COLUMNS = ("time", "step", "forecast", "model_version")
FILES = {
    "loss": "loss.png",
    "forecast": "forecast.png",
    "leaderboard": "leaderboard.png",
    "steps": "steps.png",
    "summary": "summary.json",
    "html": "index.html",
}
FORECAST_FILES = {"history": "history.png", "summary": "summary.json", "html": "index.html"}
SWEEP_FILE = "lr_sweep_{}.png"  # one learning-rate sweep figure per model
LEADERBOARD_METRICS = ("mae", "rmse", "mape", "smape", "mase", "mase_seasonal")
GATE_METRICS = ("mae", "rmse", "mase", "smape")
STEP_METRICS = ("mae", "rmse")  # the errors listed per forecast step
# Keys a leaderboard row may carry beside its figures: an ensemble's members and spread, a
# seed's ensemble and seed, ridge's alpha, a tuned model's trial.
ROW_KEYS = ("members", "spread", "of", "seed", "alpha", "trial")
REFERENCE = "persistence"  # the baseline the skill score is measured against
OVER_TIME_ROWS = 30  # newest forecast runs listed; summary.json holds them all
PAGE_END = "</body>\n</html>\n"
_KIND_COLOURS = {
    "model": "tab:blue",
    "ensemble": "tab:purple",
    "seed": "lightsteelblue",
    "baseline": "tab:gray",
}
SEARCH_NOTE = (
    "Trials are scored on the validation split only; the test split scores only the chosen "
    "configuration."
)
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
# Why a training run started (its decision's "trigger"), in words.
TRIGGERS = {
    "schedule": "the training DAG's schedule",
    "drift": "the champion's live error drifted past its drift ratio",
    "manual": "a person triggered it",
    "replay": "a replay of past data",
}
# The explanations shown under the leaderboard, in order, each with its term.
_EXPLAINED = {
    "mase": "MASE",
    "mase_seasonal": "MASE (seasonal)",
    "skill": "skill vs persistence",
    "per_step": "Per-step errors",
    "spread": "± (spread)",
    "mape": "MAPE",
}

ZOOM = 300  # a test split longer than this is also drawn zoomed to its last ZOOM steps

STYLESHEET = """\
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
  line-height: 1.45; max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.8em; padding-bottom: 0.2em; border-bottom: 1px solid #d0d7de; }
p.meta, p.note { color: #59636e; }
p.note { font-size: 0.92em; max-width: 60em; }
ul.notes { color: #59636e; font-size: 0.92em; max-width: 60em; padding-left: 1.2em; }
h3 { font-size: 1em; margin: 1.2em 0 0.2em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 0.6em 0; }
th, td { border: 1px solid #d0d7de; padding: 0.3em 0.7em; text-align: right; white-space: nowrap; }
th { background: #f6f8fa; font-weight: 600; }
th.name, td.name { text-align: left; }
tr.best td { background: #dafbe1; font-weight: 600; }
tr.baseline td, tr.seed td { color: #59636e; }
td.seed { padding-left: 2em; }
tr.chosen td { background: #dafbe1; font-weight: 600; }
td.low { font-weight: 600; }
h2.promoted { color: #1a7f37; }
h2.refused { color: #9a6700; }
.bad { color: #cf222e; }
ul.flags { background: #fff8c5; border-left: 4px solid #d4a72c; padding: 0.5em 1em 0.5em 2em; }
p.ok { background: #dafbe1; border-left: 4px solid #1a7f37; padding: 0.5em 1em; }
figure { margin: 1em 0; }
img { max-width: 100%; height: auto; }
"""


def page_head(title: str) -> str:
    """The start of a standalone page, up to and including its `<h1>`: end it with `PAGE_END`.

    Args:
        title: the page's title and heading; escaped here.
    """
    title = html.escape(title)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>\n{STYLESHEET}</style>\n</head>\n<body>\n"
        f"<h1>{title}</h1>\n"
    )


# ------------------------------------------------------------------------------ the run report


def write_report(out_dir: Path, **fields: Any) -> dict[str, Path]:
    """Draw the plots, store `summary.json` and write `index.html` into `out_dir`, atomically.

    Args:
        out_dir: the report's folder.
        fields: the keyword arguments of `run_summary` (pipeline, run_id, metric, leaderboard,
            histories, predictions, target, unit, decimals, top, decision, promoted, zoom,
            tuning, sweeps, explain, backtest).

    Returns:
        {"html", "summary", "loss", "forecast", "leaderboard"}, "steps" (horizon > 1 only) and
        "sweep_<model>" per learning-rate sweep -> path of each written file.

    Raises:
        ValueError: as `run_summary`. Nothing is written then.
    """
    out_dir = Path(out_dir)
    summary = run_summary(**fields)
    target, unit = summary["target"], summary["unit"]
    paths = {key: out_dir / FILES[key] for key in (*summary["images"], "summary", "html")}
    sweeps = {f"sweep_{s['model']}": out_dir / s["image"] for s in summary["sweeps"]}
    # A rewrite leaves no stale plot behind: no per-step plot for horizon 1, no old sweeps.
    if "steps" not in paths:
        (out_dir / FILES["steps"]).unlink(missing_ok=True)
    if out_dir.is_dir():
        for old in out_dir.glob(SWEEP_FILE.format("*")):
            if old not in sweeps.values():
                old.unlink(missing_ok=True)
    _save(_loss_figure(fields["histories"], summary["training"]), paths["loss"])
    forecast = _forecast_figure(
        fields["predictions"],
        summary["shown"],
        target=target,
        unit=unit,
        zoom=fields.get("zoom", ZOOM),
        bands=summary["bands"],
    )
    _save(forecast, paths["forecast"])
    board = _leaderboard_figure(
        summary["leaderboard"], summary["metric"], unit, summary["decimals"]
    )
    _save(board, paths["leaderboard"])
    if "steps" in paths:
        _save(_steps_figure(summary["per_step"], summary["leaderboard"], unit), paths["steps"])
    for sweep, path in zip(summary["sweeps"], sweeps.values(), strict=True):
        _save(_sweep_figure(sweep), path)
    write_json(paths["summary"], summary)
    # The page goes last: a folder whose index.html exists has all its images.
    page = page_head(summary["title"]) + render_run(summary) + PAGE_END
    write_bytes(paths["html"], page.encode("utf-8"))
    return {**paths, **sweeps}


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
    best = str(entries[0]["name"]) if entries and _finite(entries[0][metric]) else None
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
        "gate": None if decision is None else _gate_summary(decision, promoted),
        "tuning": None if tuning is None else _tuning_summary(tuning),
        "sweeps": _sweep_summaries(sweeps or {}, leaderboard),
        "intervals": _interval_summary(leaderboard),
        "bands": bands,
        "backtest": _backtest_summary(leaderboard, backtest, decision),
        "explain": {**EXPLAIN, **{str(k): str(v) for k, v in (explain or {}).items()}},
        "images": images,
    }
    return _plain(summary)


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
        (r for r in leaderboard if r["kind"] == "baseline" and _finite(r.get(metric))),
        key=lambda r: (float(r[metric]), str(r["name"])),
    )
    flags = []
    for row in leaderboard:
        if row["kind"] not in CANDIDATE_KINDS or not baselines:
            continue
        value = _float(row.get(metric))
        if not math.isfinite(value):
            flags.append(
                f"{row['name']} has no {metric} ({shown(value)}), so it loses to every baseline."
            )
            continue
        winners = [b for b in baselines if float(b[metric]) <= value]
        if winners:
            verb = "loses to" if all(float(b[metric]) < value for b in winners) else "does not beat"
            names = _join([str(b["name"]) for b in winners])
            values = _join([shown(b[metric]) for b in winners])
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
            str(row["name"]): [_float(v) for v in row[key]] for row in leaderboard if row.get(key)
        }
        named = set(predictions["name"].astype(str).unique()) - seeds
        computed = step_errors(predictions, metric=metric) if named - set(given) else {}
        out[metric] = {n: v for n, v in {**computed, **given}.items() if n not in seeds}
    return out


def _levels(keys: Sequence[str]) -> list[str]:
    """Interval level keys ("95", "80") from the narrowest level to the widest."""
    return sorted(keys, key=lambda key: _float(key))


def _bands(
    leaderboard: Sequence[Mapping[str, Any]], predictions: pd.DataFrame, metric: str
) -> dict[str, Any] | None:
    """The entry whose intervals the forecast plot shades, the best model or ensemble (the
    first with a finite `metric`), and its levels with a finite bound at step 1; None when it
    has none."""
    best = next(
        (r for r in leaderboard if r["kind"] in CANDIDATE_KINDS and _finite(r.get(metric))), None
    )
    if best is None:
        return None
    name = str(best["name"])
    rows = predictions[(predictions["step"] == 1) & (predictions["name"].astype(str) == name)]
    levels = [
        key
        for key in _levels(interval_keys(rows))
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
                "level": intervals[key].get("level", _float(key) / 100),
                "coverage": intervals[key].get("coverage"),
                "width": intervals[key].get("width"),
                "calibration_windows": intervals[key].get("calibration_windows"),
            }
            for key in _levels([str(k) for k in intervals if intervals[k]])
        ]
        out.append(
            {
                "name": str(row["name"]),
                "label": _row_label(row),
                "kind": row["kind"],
                "levels": levels,
            }
        )
    return out


def _backtest_summary(
    leaderboard: Sequence[Mapping[str, Any]],
    record: Mapping[str, Any] | None,
    decision: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    """The backtest as the report shows it: its folds (with their date ranges when `record` or
    the decision has them), and per model, ensemble and baseline (and the champion, when the
    gate decided on the backtest) the metric on each fold, the mean and the spread, ranked by
    the mean. None when no row has a backtest."""
    scored = [r for r in leaderboard if r["kind"] != "seed" and r.get("backtest")]
    if not scored:
        return None
    decision = decision or {}
    record = record or decision.get("backtest") or {}
    metric = str(scored[0]["backtest"].get("metric") or record.get("metric") or "mae")
    rows = [
        {
            "name": str(row["name"]),
            "label": _row_label(row),
            "kind": row["kind"],
            "folds": list(row["backtest"].get("folds") or []),
            "mean": (row["backtest"].get("mean") or {}).get(metric),
            "spread": row["backtest"].get("spread"),
        }
        for row in scored
    ]
    basis = decision.get("basis")
    if basis == "backtest":
        for name, entry in (decision.get("scores") or {}).items():
            if entry.get("role") == "champion":
                folds = list(entry.get("folds") or [])
                values = np.array([_float(v) for v in folds], dtype=np.float64)  # [folds]
                values = values[np.isfinite(values)]
                spread = float(np.std(values, ddof=1)) if values.size > 1 else None
                rows.append(
                    {
                        "name": str(name),
                        "label": str(name),
                        "kind": "champion",
                        "folds": folds,
                        "mean": entry.get(metric),
                        "spread": spread,
                    }
                )
    rows.sort(key=lambda r: (not _finite(r["mean"]), _float(r["mean"]), r["name"]))
    count = max([len(r["folds"]) for r in rows] + [len(record.get("folds") or [])])
    given = {int(f["fold"]): f for f in record.get("folds") or [] if f.get("fold") is not None}
    folds = [
        {
            "fold": k,
            **{key: given.get(k, {}).get(key) for key in ("start", "end", "rows", "done")},
        }
        for k in range(1, count + 1)
    ]
    return {
        "metric": metric,
        "gate": record.get("gate"),
        "basis": basis,
        "folds": folds,
        "rows": rows,
    }


def started_by(trigger: Any) -> str | None:
    """What started a training run, in words: "drift (the champion's live error drifted past
    its drift ratio)"; None when the decision does not say."""
    if not trigger:
        return None
    said = TRIGGERS.get(str(trigger))
    return f"{trigger} ({said})" if said else str(trigger)


def drift_text(drift: Mapping[str, Any] | None, *, unit: str = "", decimals: int = 2) -> str | None:
    """A forecast run's drift check in one sentence: "Drift check: v3's live MAE 2.10 °C over
    its latest 50 scored steps is 1.20 × its test MAE 1.75 °C: within the drift ratio 1.5.";
    None without a check.

    Args:
        drift: `forecasts.drift_check`'s result, or None.
        unit, decimals: the target's unit and the decimals its data is recorded with.
    """
    if not drift:
        return None

    def mae(value: Any) -> str:
        return display.metric_value("mae", value, decimals=decimals, unit=unit)

    if drift.get("ratio") is None:
        return f"Drift check: not judged: {drift.get('reason') or 'no reason given'}."
    drifted = bool(drift.get("drift"))
    said = (
        f"Drift check: v{drift.get('version')}'s live MAE {mae(drift.get('live_mae'))} over its "
        f"latest {drift.get('steps')} scored steps is {display.number(drift['ratio'], 2)} × its "
        f"test MAE {mae(drift.get('test_mae'))}: "
        + ("above" if drifted else "within")
        + f" the drift ratio {_compact(drift.get('threshold'))}"
    )
    return said + ("; a retraining is signalled." if drifted else ".")


def _tuning_summary(tuning: Mapping[str, Any]) -> dict[str, Any]:
    """The search's trials sorted by validation MAE (none last), each chosen one marked."""
    models = {
        str(model): {
            "chosen": entry.get("chosen"),
            "params": dict(entry.get("params") or {}),
            "val_mae": entry.get("val_mae"),
        }
        for model, entry in (tuning.get("models") or {}).items()
    }
    chosen = {str(m["chosen"]) for m in models.values() if m["chosen"] is not None}
    trials = [
        {
            "name": str(trial["name"]),
            "model": str(trial.get("model", "")),
            "params": dict(trial.get("params") or {}),
            "val_mae": trial.get("val_mae"),
            "val_loss": trial.get("val_loss"),
            "epochs_run": trial.get("epochs_run"),
            "chosen": bool(trial.get("chosen")) or str(trial["name"]) in chosen,
        }
        for trial in tuning.get("trials") or ()
    ]
    trials.sort(key=lambda t: (not _finite(t["val_mae"]), _float(t["val_mae"]), t["name"]))
    return {"metric": str(tuning.get("metric", "mae")), "models": models, "trials": trials}


def _sweep_summaries(
    sweeps: Mapping[str, Mapping[str, Any]], leaderboard: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The sweeps in leaderboard order, each with the name of its figure's file."""
    sweeps = {str(model): sweep for model, sweep in sweeps.items()}
    out, files = [], set()
    for model in _ordered(sweeps, leaderboard):
        sweep = sweeps[model]
        rates, losses = list(sweep.get("rates") or ()), list(sweep.get("losses") or ())
        if len(rates) != len(losses):
            raise ValueError(
                f"The sweep of {model!r} needs one loss per rate. Received: {len(rates)} rates, "
                f"{len(losses)} losses"
            )
        # A file name from a model name: safe characters only, and one file per model.
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", model).strip("._") or "model"
        name, n = SWEEP_FILE.format(stem), 1
        while name in files:
            n += 1
            name = SWEEP_FILE.format(f"{stem}-{n}")
        files.add(name)
        out.append(
            {
                "model": model,
                "rates": rates,
                "losses": losses,
                "suggested": sweep.get("suggested"),
                "rule": str(sweep.get("rule") or ""),
                "low": sweep.get("low"),
                "high": sweep.get("high"),
                "image": name,
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


def _gate_summary(decision: Mapping[str, Any], promoted: int | None) -> dict[str, Any]:
    """The gate's verdict in words, its reasons and its figures sorted by its metric."""
    metric = decision["metric"]
    if decision["promote"] and promoted is not None:
        verdict = f"promoted: {decision['candidate']} is now champion v{promoted}"
    elif decision["promote"]:
        verdict = f"promote {decision['candidate']} (not registered: see the promote task)"
    else:
        held = decision.get("current_champion")
        verdict = "refused: " + (f"champion v{held} stays" if held else "no champion yet")
    scores = [
        {
            "name": str(name),
            "role": str(entry.get("role", "")),
            **{m: entry.get(m) for m in dict.fromkeys((metric, *GATE_METRICS))},
        }
        for name, entry in decision.get("scores", {}).items()
    ]
    scores.sort(key=lambda row: (not _finite(row[metric]), _float(row[metric]), row["name"]))
    return {
        "verdict": verdict,
        "promote": bool(decision["promote"]),
        "promoted": promoted,
        "candidate": decision.get("candidate"),
        "metric": metric,
        "reasons": [str(r) for r in decision.get("reasons", [])],
        "scores": scores,
        "trigger": decision.get("trigger"),
        "basis": decision.get("basis", "test"),
    }


def render_run(summary: Mapping[str, Any], *, files: str = "") -> str:
    """The run report as an HTML fragment (no <html>, <head> or <body>; the title is the
    page's): the gate, the leaderboard and its flags, the prediction intervals, the backtest,
    the error per step, the search, the learning-rate sweeps, training, forecasts.

    Args:
        summary: `run_summary`'s output, or `summary.json` read back (an older one without
            the search, the sweeps, the RMSE per step, the intervals or the backtest renders
            too).
        files: prefix of every image's src (a URL folder ending in "/" for the UI plugin).
    """
    esc = html.escape
    unit, images = summary.get("unit", ""), summary.get("images", {})
    rows = summary["leaderboard"]
    shown = summary.get("shown", [])
    zoomed = f"; below, the last {summary['zoom']} steps enlarged" if summary.get("zoom") else ""
    explain = {**EXPLAIN, **(summary.get("explain") or {})}
    bands = summary.get("bands")
    shaded = (
        f" Shaded: the {_join([f'{key}%' for key in bands['levels']])} prediction interval(s) "
        f"of {bands['name']}, lighter for wider."
        if bands
        else ""
    )
    parts = [
        f'<p class="meta">Pipeline {esc(summary["pipeline"])}, run {esc(summary["run_id"])}: '
        f"{esc(_axis_label(summary['target'], unit))} forecast {summary['horizon']} step(s) "
        f"ahead, scored on {summary['test_points']} test windows.</p>",
        _gate_section(summary["gate"], unit, summary["decimals"]) if summary.get("gate") else "",
        _leaderboard_section(summary),
        _intervals_section(summary, explain) if summary.get("intervals") else "",
        _backtest_section(summary, explain) if summary.get("backtest") else "",
        _steps_section(summary, files) if summary.get("per_step") else "",
        _search_section(summary["tuning"], unit, summary["decimals"])
        if summary.get("tuning")
        else "",
        _sweeps_section(summary["sweeps"], files) if summary.get("sweeps") else "",
        "<h2>Training</h2>",
        _training_table(summary.get("training") or {}, rows),
        _image(files, images.get("loss"), "training and validation loss per epoch"),
        "<h2>Forecasts on the test split</h2>",
        f"<p>The actual values and the one-step-ahead forecasts of "
        f"{esc(_join(shown) or 'no entry')} over the whole test split "
        f"({summary['test_points']} steps){zoomed}.{esc(shaded)}</p>",
        _image(files, images.get("forecast"), "actual vs predicted, one step ahead"),
        "<h2>Leaderboard chart</h2>",
        f'<p class="note">{esc(display.metric_label(summary["metric"], unit))} of every entry, '
        "lower is better: models blue, ensembles purple, their seeds pale, baselines grey.</p>",
        _image(files, images.get("leaderboard"), f"{summary['metric']} per model and baseline"),
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _gate_section(gate: Mapping[str, Any], unit: str, decimals: int) -> str:
    """The verdict as the heading, the reasons, the figures compared side by side."""
    esc = html.escape
    columns = list(dict.fromkeys((gate["metric"], *GATE_METRICS)))
    table = _table(
        ["name", "role", *(display.metric_label(m, unit) for m in columns)],
        [
            [row["name"], row["role"], *(_cell(m, row.get(m), decimals) for m in columns)]
            for row in gate["scores"]
        ],
        text=2,
    )
    reasons = "".join(f"<li>{esc(r)}</li>" for r in gate["reasons"])
    css = "promoted" if gate["promote"] else "refused"
    said = started_by(gate.get("trigger"))
    started = f'<p class="meta">Run started by: {esc(said)}.</p>\n' if said else ""
    basis = (
        "<p class=\"note\">The figures below are each entry's mean over the backtest's folds.</p>\n"
        if gate.get("basis") == "backtest"
        else ""
    )
    return (
        f'<h2 class="{css}">Gate: {esc(gate["verdict"])}</h2>\n{started}<ul>{reasons}</ul>\n'
        f"{basis}{table}"
    )


def _leaderboard_section(summary: Mapping[str, Any]) -> str:
    """The leaderboard (units in the headers, best row marked, each seed under its ensemble,
    an ensemble's spread beside its figure), the flags, a line on each figure a reader may not
    know."""
    esc = html.escape
    metric, unit, decimals = summary["metric"], summary.get("unit", ""), summary["decimals"]
    rows = _grouped(summary["leaderboard"])
    seasonal = any(_finite(row.get("mase_seasonal")) for row in rows)
    columns = [
        *(m for m in LEADERBOARD_METRICS if m != "mase_seasonal" or seasonal),
        *(["skill"] if summary.get("reference") else []),
    ]
    spread = any(row["kind"] == "ensemble" and _finite(row.get("spread")) for row in rows)

    def figure(row: Mapping[str, Any], column: str) -> str:
        text = _cell(column, row.get(column), decimals)
        if column == metric and row["kind"] == "ensemble" and _finite(row.get("spread")):
            text += " ± " + _cell(column, row["spread"], decimals)
        return text

    table = _table(
        ["rank", "name", "kind", *(_label(m, unit) for m in columns)],
        [
            [
                row["rank"],
                (_row_label(row), "seed" if row["kind"] == "seed" else ""),
                row["kind"],
                *(figure(row, m) for m in columns),
            ]
            for row in rows
        ],
        text=3,
        classes=["best" if row["name"] == summary.get("best") else row["kind"] for row in rows],
    )
    flags = summary.get("flags") or []
    models = any(row["kind"] in CANDIDATE_KINDS for row in rows)
    baselines = any(row["kind"] == "baseline" and _finite(row.get(metric)) for row in rows)
    if flags:
        verdict = '<ul class="flags">' + "".join(f"<li>{esc(f)}</li>" for f in flags) + "</ul>"
    elif models and baselines:
        verdict = f'<p class="ok">Every model beats every baseline on {esc(metric)}.</p>'
    else:
        verdict = ""
    wanted = {
        "mase": True,
        "mase_seasonal": seasonal,
        "skill": bool(summary.get("reference")),
        "per_step": bool(summary.get("per_step")),
        "spread": spread,
        "mape": True,
    }
    explain = {**EXPLAIN, **(summary.get("explain") or {})}
    notes = "".join(
        f"<li>{_explained(term, explain[key])}</li>"
        for key, term in _EXPLAINED.items()
        if wanted[key] and explain.get(key)
    )
    return (
        f"<h2>Leaderboard, ranked by {esc(display.metric_label(metric))}</h2>\n{table}\n"
        + (verdict + "\n" if verdict else "")
        + f'<ul class="notes">{notes}</ul>'
    )


def _intervals_section(summary: Mapping[str, Any], explain: Mapping[str, str]) -> str:
    """Per entry and level: the nominal coverage, the test coverage and the mean width."""
    unit, decimals = summary.get("unit", ""), summary["decimals"]
    rows = [(entry, level) for entry in summary["intervals"] for level in entry["levels"]]
    table = _table(
        [
            "name",
            "kind",
            "level (%)",
            "test coverage (%)",
            _axis_label("mean width", unit),
            "calibration windows",
        ],
        [
            [
                entry["label"],
                entry["kind"],
                level["key"],
                display.number(_float(level["coverage"]) * 100, display.PERCENT_DECIMALS),
                _cell("mae", level["width"], decimals),
                level.get("calibration_windows"),
            ]
            for entry, level in rows
        ],
        text=2,
        classes=[entry["kind"] for entry, _ in rows],
    )
    notes = "".join(
        f"<li>{_explained(term, explain[key])}</li>"
        for key, term in (("coverage", "coverage"), ("width", "width"))
        if explain.get(key)
    )
    return (
        "<h2>Prediction intervals</h2>\n<p>Split-conformal intervals of each model, ensemble and "
        "baseline, calibrated on the validation split and scored on the test split (n/a: too "
        "few calibration windows for the level).</p>\n"
        f'{table}\n<ul class="notes">{notes}</ul>'
    )


def _backtest_section(summary: Mapping[str, Any], explain: Mapping[str, str]) -> str:
    """The metric per fold, its mean and spread per entry (the lowest of each column in bold),
    the folds' date ranges, and whether the gate decided on it."""
    esc, unit, decimals = html.escape, summary.get("unit", ""), summary["decimals"]
    backtest = summary["backtest"]
    metric, folds, rows = backtest["metric"], backtest["folds"], backtest["rows"]
    grid = [
        [_float(v) for v in row["folds"]]
        + [math.nan] * (len(folds) - len(row["folds"]))
        + [_float(row["mean"])]
        for row in rows
    ]  # [rows, folds + 1]
    lowest = [
        min((v for v in c if math.isfinite(v)), default=None) for c in zip(*grid, strict=True)
    ]
    table = _table(
        [
            "name",
            "kind",
            *(f"fold {f['fold']}" for f in folds),
            f"mean {display.metric_label(metric, unit)}",
            "spread",
        ],
        [
            [
                row["label"],
                row["kind"],
                *(
                    (_cell(metric, v, decimals), "low" if v == low else "")
                    for v, low in zip(values, lowest, strict=True)
                ),
                _cell(metric, row["spread"], decimals),
            ]
            for row, values in zip(rows, grid, strict=True)
        ],
        text=2,
        classes=[row["kind"] if row["kind"] != "champion" else "" for row in rows],
    )
    spans = []
    for f in folds:
        if f.get("done") is False:
            spans.append(f"fold {f['fold']} did not finish")
        elif f.get("start") and f.get("end"):
            size = f" ({f['rows']} rows)" if f.get("rows") is not None else ""
            spans.append(
                f"fold {f['fold']}: {display.when(f['start'])} to {display.when(f['end'])}{size}"
            )
    if backtest.get("basis") == "backtest":
        basis = (
            f"The gate decided on this backtest: it compared the mean {metric} over the folds, "
            "the champion's (its forecasts of each block, not re-fit) included."
        )
    elif backtest.get("basis") == "test":
        basis = "The gate decided on the test split; the backtest is shown beside it."
    elif backtest.get("gate"):
        basis = "The spec has the gate decide on this backtest (backtest.gate)."
    else:
        basis = "The gate decides on the test split (backtest.gate is off)."
    note = (
        f"<li>{_explained('backtest', explain['backtest'])}</li>" if explain.get("backtest") else ""
    )
    return (
        f"<h2>Backtest: {esc(display.metric_label(metric, unit))} on {len(folds)} folds</h2>\n"
        f"<p>{esc(basis)} Ranked by the mean; the lowest of each column in bold.</p>\n"
        + (f'<p class="note">{esc("; ".join(spans))}.</p>\n' if spans else "")
        + f'{table}\n<ul class="notes">{note}</ul>'
    )


def _explained(term: str, text: str) -> str:
    """One explanation, led by its term unless the text already starts with it; escaped."""
    if text.lower().startswith(term.lower()):
        return html.escape(text)
    return f"<strong>{html.escape(term)}</strong>: {html.escape(text)}"


def _steps_section(summary: Mapping[str, Any], files: str) -> str:
    """MAE and RMSE per forecast step: one row per entry (seeds left out), the lowest of each
    step in bold, then the plot."""
    esc, unit = html.escape, summary.get("unit", "")
    tables = [
        (metric, summary.get(key) or {})
        for metric, key in (("mae", "per_step"), ("rmse", "per_step_rmse"))
    ]
    tables = [(metric, per_step) for metric, per_step in tables if per_step]
    labels = _join([display.metric_label(metric, unit) for metric, _ in tables])
    parts = [
        f"<h2>Error per forecast step</h2>\n<p>{esc(labels)} of each model, ensemble and "
        "baseline at each step ahead on the test split; the lowest of each step in bold.</p>"
    ]
    for metric, per_step in tables:
        label = esc(display.metric_label(metric, unit))
        parts.append(
            f"<h3>{label} per step</h3>\n"
            + _step_table(per_step, summary["leaderboard"], metric, summary["decimals"])
        )
    parts.append(
        _image(
            files,
            summary.get("images", {}).get("steps"),
            "MAE per forecast step, one line per entry",
        )
    )
    return "\n".join(p for p in parts if p)


def _step_table(
    per_step: Mapping[str, Sequence[float | None]],
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    decimals: int,
) -> str:
    """One row per entry, one column per step; the lowest figure of each step in bold."""
    by_name = {row["name"]: row for row in rows}
    names = _ordered(per_step, _grouped(rows))
    horizon = max(len(v) for v in per_step.values())
    grid = [
        [_float(v) for v in per_step[n]] + [math.nan] * (horizon - len(per_step[n])) for n in names
    ]
    lowest = [
        min((v for v in step if math.isfinite(v)), default=None) for step in zip(*grid, strict=True)
    ]
    return _table(
        ["name", *(f"step {i}" for i in range(1, horizon + 1))],
        [
            [_row_label(by_name.get(name, {"name": name}))]
            + [
                (_cell(metric, v, decimals), "low" if v == low else "")
                for v, low in zip(values, lowest, strict=True)
            ]
            for name, values in zip(names, grid, strict=True)
        ],
        text=1,
        classes=[by_name.get(name, {}).get("kind", "") for name in names],
    )


def _search_section(tuning: Mapping[str, Any], unit: str, decimals: int) -> str:
    """The hyperparameter search: every trial, best validation MAE first, the chosen marked."""
    esc = html.escape
    trials = tuning.get("trials") or []
    params = sorted({name for trial in trials for name in trial.get("params") or {}})
    table = _table(
        [
            "trial",
            "model",
            "chosen",
            *params,
            f"validation {display.metric_label('mae', unit)}",
            "validation loss",
            "epochs run",
        ],
        [
            [
                trial["name"],
                trial.get("model"),
                "✓" if trial.get("chosen") else "",
                *(_compact(trial.get("params", {}).get(p)) for p in params),
                _cell("mae", trial.get("val_mae"), decimals),
                _compact(trial["val_loss"]) if _finite(trial.get("val_loss")) else "n/a",
                trial.get("epochs_run"),
            ]
            for trial in trials
        ],
        text=3,
        classes=["chosen" if trial.get("chosen") else "" for trial in trials],
    )
    models = sorted({str(trial.get("model")) for trial in trials})
    return (
        f"<h2>Search</h2>\n<p>{len(trials)} trial(s) of {esc(_join(models) or 'no model')}, "
        "sorted by validation MAE; the configuration chosen for each model is marked ✓.</p>\n"
        f'<p class="note">{esc(SEARCH_NOTE)}</p>\n{table}'
    )


def _sweeps_section(sweeps: Sequence[Mapping[str, Any]], files: str) -> str:
    """One figure per learning-rate sweep, each with its rule and suggested rate below it."""
    esc = html.escape
    parts = [
        "<h2>Learning-rate sweeps</h2>\n<p>The loss at each learning rate tried, the rates on a "
        "log scale; the dashed line marks the suggested rate.</p>"
    ]
    for sweep in sweeps:
        model, rule = sweep["model"], str(sweep.get("rule") or "").strip().rstrip(".")
        swept = (
            f", rates {_compact(sweep['low'])} to {_compact(sweep['high'])}"
            if _finite(sweep.get("low")) and _finite(sweep.get("high"))
            else ""
        )
        suggested = sweep.get("suggested")
        said = (
            f"suggested learning rate {_compact(suggested)}"
            if _finite(suggested)
            else "no rate suggested"
        )
        parts.append(
            _image(files, sweep.get("image"), f"loss against learning rate, {model}")
            + f'\n<p class="note">{esc(model)}{esc(swept)}: '
            + (f"{esc(rule)}; " if rule else "")
            + f"{esc(said)}.</p>"
        )
    return "\n".join(parts)


def _training_table(
    training: Mapping[str, Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]
) -> str:
    if not training:
        return "<p>No model was trained.</p>"
    table = _table(
        ["model", "epochs run", "best epoch"],
        [
            [name, training[name]["epochs_run"], training[name]["best_epoch"] or "n/a"]
            for name in _ordered(training, _grouped(rows))
        ],
        text=1,
    )
    return (
        f"{table}\n"
        '<p class="note">The best epoch has the lowest validation loss; early stopping keeps its '
        "weights. The loss curves below mark it on each model's validation curve.</p>"
    )


# ------------------------------------------------------------------------- the forecast report


def write_forecast_report(
    out_dir: Path,
    *,
    actuals: pd.Series,
    drift: Mapping[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Path]:
    """The forecast history page: the newest forecast with its intervals, the drift check,
    recent actuals with every forecast made over them (coloured by model version), and the
    accuracy and interval coverage per version and over time.

    Args:
        out_dir: the report's folder.
        actuals: the target's observed values, indexed by UTC time (for the plot).
        drift: the run's drift check (`forecasts.drift_check`), or None without one.
        fields: the other keyword arguments of `forecast_summary` (pipeline, run_id, target,
            scored, by_version, over_time, latest, unit, decimals, tail).

    Returns:
        {"html", "summary", "history"} -> path of each written file.

    Raises:
        ValueError: as `forecast_summary`. Nothing is written then.
    """
    out_dir = Path(out_dir)
    summary = forecast_summary(drift=drift, **fields)
    paths = {key: out_dir / FORECAST_FILES[key] for key in ("history", "summary", "html")}
    axis = _axis_label(summary["target"], summary["unit"])
    recent = actuals.iloc[-summary["tail"] :]
    _save(_history_figure(fields["scored"], recent, fields["latest"], axis), paths["history"])
    write_json(paths["summary"], summary)
    page = page_head(summary["title"]) + render_forecast(summary) + PAGE_END
    write_bytes(paths["html"], page.encode("utf-8"))
    return {"html": paths["html"], "summary": paths["summary"], "history": paths["history"]}


def forecast_summary(
    *,
    pipeline: str,
    run_id: str,
    target: str,
    scored: pd.DataFrame,
    by_version: pd.DataFrame,
    over_time: pd.DataFrame,
    latest: pd.DataFrame,
    unit: str = "",
    decimals: int = 2,
    tail: int = 200,
    drift: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the forecast report shows, as plain JSON (NaN as None, times ISO 8601);
    `write_forecast_report` stores it as `summary.json`.

    Args:
        pipeline, run_id: the pipeline and the forecast run, named on the page.
        target: the forecast column.
        scored: `forecasts.score_history` output.
        by_version, over_time: `forecasts.accuracy_by_version` / `accuracy_over_time`
            (by_version's "coverage_<key>" columns, when it has them, are shown too).
        latest: this run's forecast rows (time, step, forecast, model_version[, model_name],
            and the interval bounds "lower_<key>", "upper_<key>" when it was served with any).
        unit, decimals: the target's unit and the decimals its data is recorded with.
        tail: how many of the latest actuals the plot shows.
        drift: the drift check (`forecasts.drift_check`), or None without one.

    Returns:
        {"title", "pipeline", "run_id", "target", "unit", "decimals", "model_version",
        "model_name", "latest" ([{time, step, forecast, model_version, lower_<key>,
        upper_<key>}]), "levels" (the interval keys of `latest`, narrowest first), "forecasts"
        (runs in the history), "scored_steps", "first_forecast" (the earliest forecast's target
        time), "by_version", "over_time" (records), "drift", "tail", "images"}.

    Raises:
        ValueError: on an empty `latest` or one lacking LATEST_COLUMNS, `tail` < 1 or
            `decimals` < 0.
    """
    missing = [c for c in LATEST_COLUMNS if c not in latest.columns]
    if missing or latest.empty:
        raise ValueError(
            f"`latest` must hold the newest forecast's rows with columns {list(LATEST_COLUMNS)}. "
            f"Received: {len(latest)} rows, missing {missing}"
        )
    for name, value, least in (("tail", tail, 1), ("decimals", decimals, 0)):
        if value < least:
            raise ValueError(f"`{name}` must be >= {least}. Received: {name}={value}")
    latest = latest.assign(time=pd.to_datetime(latest["time"], utc=True)).sort_values(
        ["time", "step"], kind="stable"
    )
    times = pd.to_datetime(scored["time"], utc=True) if len(scored) else latest["time"]
    has_actual = "actual" in scored.columns
    levels = _levels(interval_keys(latest))
    bounds = [f"{side}_{key}" for key in levels for side in ("lower", "upper")]
    summary = {
        "title": f"{pipeline}: forecasts of {target}",
        "pipeline": pipeline,
        "run_id": run_id,
        "target": target,
        "unit": unit,
        "decimals": decimals,
        "model_version": latest["model_version"].iloc[-1],
        "model_name": latest["model_name"].iloc[-1] if "model_name" in latest else None,
        "latest": latest[[*LATEST_COLUMNS, *bounds]].to_dict("records"),
        "levels": levels,
        "forecasts": scored["run_id"].nunique() if "run_id" in scored else 0,
        "scored_steps": int(scored["actual"].notna().sum()) if has_actual else 0,
        "first_forecast": times.min(),
        "by_version": by_version.to_dict("records"),
        "over_time": over_time.to_dict("records"),
        "drift": None if drift is None else dict(drift),
        "tail": tail,
        "images": {"history": FORECAST_FILES["history"]},
    }
    return _plain(summary)


def render_forecast(summary: Mapping[str, Any], *, files: str = "") -> str:
    """The forecast report as an HTML fragment (no <html>, <head> or <body>; the title is the
    page's): the drift check, the newest forecast and its intervals, the accuracy and interval
    coverage per model version and over time, the history.

    Args:
        summary: `forecast_summary`'s output, or `summary.json` read back.
        files: prefix of the image's src (a URL folder ending in "/" for the UI plugin).
    """
    esc = html.escape
    unit, decimals = summary.get("unit", ""), summary["decimals"]
    version, name = summary["model_version"], summary.get("model_name")
    model = f"v{version}" + (f" ({name})" if name else "")
    levels = summary.get("levels") or []
    bounds = [(f"{side}_{key}", f"{key}% {side}") for key in levels for side in ("lower", "upper")]
    latest = _table(
        [
            "time (UTC)",
            "step",
            _axis_label("forecast", unit),
            *(_axis_label(label, unit) for _, label in bounds),
            "model version",
        ],
        [
            [
                _utc_text(row["time"]),
                row["step"],
                display.number(row["forecast"], decimals),
                *(display.number(row.get(column), decimals) for column, _ in bounds),
                f"v{row['model_version']}",
            ]
            for row in summary["latest"]
        ],
    )
    served = (
        f'<p class="note">The {esc(_join([f"{key}%" for key in levels]))} prediction '
        "interval(s) served with the forecast: the actual value should fall inside each as "
        f"often as its level says ({esc(levels[0])}% of the time for the {esc(levels[0])}% "
        "interval), if the errors stay as they were where it was calibrated.</p>"
        if levels
        else ""
    )
    drift = drift_text(summary.get("drift"), unit=unit, decimals=decimals)
    drifted = (summary.get("drift") or {}).get("drift")
    parts = [
        f'<p class="meta">Pipeline {esc(summary["pipeline"])}, forecast run '
        f"{esc(summary['run_id'])}, model {esc(model)}. The history holds "
        f"{summary['forecasts']} forecast run(s); {summary['scored_steps']} forecast step(s) "
        "have their actual value.</p>",
        f'<p class="{"bad" if drifted else "meta"}">{esc(drift)}</p>' if drift else "",
        f"<h2>Newest forecast of {esc(summary['target'])} (model v{esc(str(version))})</h2>",
        latest,
        served,
    ]
    if summary["scored_steps"]:
        parts.append(
            _accuracy_sections(summary["by_version"], summary["over_time"], unit, decimals)
        )
    else:
        first = summary.get("first_forecast")
        first = _utc_text(first) + " UTC" if first else "n/a"
        parts.append(
            "<h2>Accuracy</h2>\n<p>No actuals have arrived yet: the first forecast is for "
            f"{esc(first)}; accuracy appears here once the data reaches it.</p>"
        )
    parts += [
        "<h2>Forecasts against actuals</h2>",
        f"<p>The last {summary.get('tail', 'n/a')} actual values, every forecast made over them "
        "by model version, and the newest forecast.</p>",
        _image(
            files,
            summary.get("images", {}).get("history"),
            "past forecasts against the actual values",
        ),
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _accuracy_sections(
    by_version: Sequence[Mapping[str, Any]],
    over_time: Sequence[Mapping[str, Any]],
    unit: str,
    decimals: int,
) -> str:
    """Accuracy (and the served intervals' live coverage) per model version, then per forecast
    run, newest first."""
    metrics = ("mae", "rmse", "bias")
    prefix = "coverage_"
    levels = _levels(
        list(
            dict.fromkeys(
                k[len(prefix) :] for row in by_version for k in row if k.startswith(prefix)
            )
        )
    )
    versions = _table(
        [
            "model version",
            "model",
            "forecasts",
            "scored steps",
            *(display.metric_label(m, unit) for m in metrics),
            *(f"{key}% interval coverage (%)" for key in levels),
            "first made (UTC)",
            "last made (UTC)",
        ],
        [
            [
                f"v{row['model_version']}",
                row.get("model_name"),
                row.get("forecasts"),
                row.get("scored_steps"),
                *(_cell(m, row.get(m), decimals) for m in metrics),
                *(
                    display.number(_float(row.get(prefix + key)) * 100, display.PERCENT_DECIMALS)
                    for key in levels
                ),
                _utc_text(row.get("first")),
                _utc_text(row.get("last")),
            ]
            for row in by_version
        ],
    )
    runs = list(reversed(over_time))  # newest first
    shown = runs[:OVER_TIME_ROWS]
    more = f", the newest {len(shown)} of {len(runs)}" if len(runs) > len(shown) else ""
    per_run = _table(
        [
            "made at (UTC)",
            "forecast run",
            "model version",
            display.metric_label("mae", unit),
            "scored steps",
        ],
        [
            [
                _utc_text(row.get("made_at")),
                row.get("run_id"),
                f"v{row.get('model_version')}",
                _cell("mae", row.get("mae"), decimals),
                row.get("scored_steps"),
            ]
            for row in shown
        ],
    )
    return (
        "<h2>Accuracy per model version (forecasts whose actuals have arrived)</h2>\n"
        f"{versions}\n"
        '<p class="note">Bias is the mean of forecast minus actual: above 0, the forecasts run '
        "high."
        + (
            " Interval coverage is the share of scored steps whose actual fell inside the "
            "interval served with the forecast (n/a: served without one): near its level means "
            "the intervals hold live."
            if levels
            else ""
        )
        + "</p>\n"
        f"<h2>Accuracy over time (MAE of each forecast run{more})</h2>\n{per_run}"
    )


def write_forecast_plot(
    path: Path,
    *,
    actuals: pd.Series,
    latest: pd.DataFrame,
    target: str,
    tail: int = 200,
    unit: str = "",
) -> Path:
    """One forecast: the last `tail` actuals and the forecast steps after them, with the bands
    of the intervals `latest` carries ("lower_<key>", "upper_<key>"), as a PNG."""
    no_history = latest.iloc[0:0]
    figure = _history_figure(no_history, actuals.iloc[-tail:], latest, _axis_label(target, unit))
    _save(figure, Path(path))
    return Path(path)


# ---------------------------------------------------------------------------------- the figures


def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _loss_figure(
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    training: Mapping[str, Mapping[str, Any]],
) -> Figure:
    """One subplot per model: training and validation loss per epoch, the best epoch marked."""
    names = list(histories)
    fig = Figure(figsize=(6, 2.6 * max(len(names), 1)), layout="constrained")
    if not names:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no trained models", ha="center", va="center")
        ax.set_axis_off()
        return fig
    for ax, name in zip(fig.subplots(len(names), 1, squeeze=False)[:, 0], names, strict=True):
        history = histories[name]
        values = []
        for key, label in (("loss", "training"), ("val_loss", "validation")):
            curve = np.asarray(history.get(key, ()), dtype=np.float64)  # [epochs]
            if curve.size:
                ax.plot(np.arange(1, curve.size + 1), curve, marker=".", label=label)
                values.append(curve)
        best = training.get(str(name), {}).get("best_epoch")
        if best is not None:
            val = float(np.asarray(history["val_loss"], dtype=np.float64)[best - 1])
            ax.axvline(best, color="tab:green", linestyle=":", linewidth=1.2)
            ax.plot(
                [best], [val], "*", color="tab:green", markersize=12, label=f"best epoch {best}"
            )
        # Log scale shows late-epoch differences, but only holds for positive losses.
        if values and all(np.all(np.isfinite(v) & (v > 0)) for v in values):
            ax.set_yscale("log")
        ax.set_title(str(name))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss (scaled data)")
        if values:
            ax.legend()
    return fig


def _forecast_figure(
    predictions: pd.DataFrame,
    names: Sequence[str],
    *,
    target: str,
    unit: str,
    zoom: int,
    bands: Mapping[str, Any] | None = None,
) -> Figure:
    """Actual vs predicted at step 1 on the test split, for the given entries; a split longer
    than `zoom` steps gets a second panel with its last `zoom` steps, shaded in the first.
    `bands` ({"name", "levels"}) shades that entry's prediction intervals, lighter for wider."""
    step1 = predictions[predictions["step"] == 1]
    step1 = step1.assign(time=_utc_naive(step1["time"]), name=step1["name"].astype(str))
    step1 = step1.sort_values("time", kind="stable")
    actual = step1.drop_duplicates("time")  # every entry carries the same actuals
    zoomed = len(actual) > zoom
    fig = Figure(figsize=(10, 7.5 if zoomed else 4), layout="constrained")
    axes = fig.subplots(2 if zoomed else 1, 1, squeeze=False)[:, 0]
    panels = [(axes[0], None, f"test split, one step ahead ({len(actual)} steps)")]
    if zoomed:
        start = actual["time"].iloc[-zoom]
        axes[0].axvspan(start, actual["time"].iloc[-1], color="0.85", zorder=0)
        panels.append((axes[1], start, f"last {zoom} steps"))
    for ax, start, title in panels:
        width = 0.8 if zoomed and start is None else 1.2
        shown = actual if start is None else actual[actual["time"] >= start]
        ax.plot(
            shown["time"].to_numpy(),
            shown["actual"].to_numpy(),
            color="black",
            linewidth=width + 0.3,
            label="actual",
        )
        for name in names:
            rows = step1[step1["name"] == name]
            if start is not None:
                rows = rows[rows["time"] >= start]
            if not rows.empty:
                (line,) = ax.plot(
                    rows["time"].to_numpy(),
                    rows["prediction"].to_numpy(),
                    linewidth=width,
                    label=name,
                )
                if bands and name == bands["name"]:
                    _shade(ax, rows, bands["levels"], line.get_color(), f" of {name}")
        ax.set_title(title)
        _time_axis(ax)
        ax.set_ylabel(_axis_label(target, unit))
    # One legend above the panels: inside either one it would hide data.
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=min(len(labels), 6))
    return fig


def _shade(ax: Any, rows: pd.DataFrame, levels: Sequence[str], colour: str, of: str = "") -> None:
    """Fill between each level's "lower_<key>" and "upper_<key>" of `rows` (sorted by time),
    the widest level first and palest; a level without a finite bound is left out."""
    times = rows["time"].to_numpy()
    keys = _levels([k for k in levels if f"lower_{k}" in rows and f"upper_{k}" in rows])
    for rank, key in enumerate(reversed(keys)):  # widest first, under the narrower ones
        lower = rows[f"lower_{key}"].to_numpy(np.float64)  # [times]
        upper = rows[f"upper_{key}"].to_numpy(np.float64)  # [times]
        keep = np.isfinite(lower) & np.isfinite(upper)
        if not keep.any():
            continue
        alpha = 0.35 * 0.55 ** (len(keys) - 1 - rank)  # narrowest 0.35, each wider paler
        ax.fill_between(
            times,
            np.where(keep, lower, np.nan),
            np.where(keep, upper, np.nan),
            color=colour,
            alpha=alpha,
            linewidth=0,
            label=f"{key}% interval{of}",
        )


def _leaderboard_figure(
    rows: Sequence[Mapping[str, Any]], metric: str, unit: str, decimals: int
) -> Figure:
    """Horizontal bars of `metric`, best on top, each labelled with its value (an ensemble's
    with its spread); colours by kind, baselines grey and seeds pale."""
    fig = Figure(figsize=(7, 0.9 + 0.4 * max(len(rows), 1)), layout="constrained")
    ax = fig.add_subplot()
    names = [_row_label(row) for row in rows]
    values = np.array([_float(row.get(metric)) for row in rows], dtype=np.float64)  # [rows]
    colours = [_KIND_COLOURS.get(row["kind"], "tab:orange") for row in rows]
    positions = np.arange(len(names))
    bars = ax.barh(positions, np.nan_to_num(values, nan=0.0), color=colours)
    # A zero-length bar would read as a perfect score: its label says n/a.
    labels = [" " + _cell(metric, v, decimals) for v in values]
    for i, row in enumerate(rows):
        if row["kind"] == "ensemble" and _finite(row.get("spread")):
            labels[i] += " ± " + _cell(metric, row["spread"], decimals)
    ax.bar_label(bars, labels=labels)
    ax.set_yticks(positions, names)
    ax.invert_yaxis()
    ax.margins(x=0.2)
    ax.set_xlabel(f"{display.metric_label(metric, unit)}, lower is better")
    kinds = {row["kind"] for row in rows} | {"model", "baseline"}
    ax.legend(handles=[Patch(color=c, label=k) for k, c in _KIND_COLOURS.items() if k in kinds])
    return fig


def _steps_figure(
    per_step: Mapping[str, Sequence[float | None]],
    rows: Sequence[Mapping[str, Any]],
    unit: str,
) -> Figure:
    """MAE against the forecast step, one line per entry; baselines dashed and grey."""
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.add_subplot()
    kinds = {row["name"]: row["kind"] for row in rows}
    labels = {row["name"]: _row_label(row) for row in rows}
    greys, markers = ("0.3", "0.5", "0.65", "0.8"), ("s", "^", "v", "D")
    baselines = 0
    for name in _ordered(per_step, rows):
        values = np.array([_float(v) for v in per_step[name]], dtype=np.float64)  # [horizon]
        steps = np.arange(1, values.size + 1)
        if kinds.get(name) == "baseline":
            style = {
                "linestyle": "--",
                "color": greys[baselines % len(greys)],
                "marker": markers[baselines % len(markers)],
            }
            baselines += 1
        else:
            style = {"marker": "o"}
        ax.plot(steps, values, markersize=4, label=labels.get(name, name), **style)
    ax.set_title("error per forecast step, test split")
    ax.set_xlabel("forecast step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(display.metric_label("mae", unit))
    ax.legend()
    return fig


def _sweep_figure(sweep: Mapping[str, Any]) -> Figure:
    """Loss against learning rate on a log axis, the suggested rate a labelled dashed line."""
    fig = Figure(figsize=(6, 3.4), layout="constrained")
    ax = fig.add_subplot()
    rates = np.array([_float(r) for r in sweep["rates"]], dtype=np.float64)  # [rates]
    losses = np.array([_float(v) for v in sweep["losses"]], dtype=np.float64)  # [rates]
    keep = np.isfinite(rates) & (rates > 0) & np.isfinite(losses)
    order = np.argsort(rates[keep], kind="stable")
    rates, losses = rates[keep][order], losses[keep][order]
    if rates.size:
        ax.plot(rates, losses, marker="o", markersize=4, color="tab:blue", label="loss")
    else:
        ax.text(0.5, 0.5, "no finite loss", ha="center", va="center", transform=ax.transAxes)
    suggested = _float(sweep.get("suggested"))
    if math.isfinite(suggested) and suggested > 0:
        label = f"suggested {_compact(suggested)}"
        ax.axvline(suggested, color="tab:green", linestyle="--", linewidth=1.2, label=label)
        ax.text(
            suggested,
            0.97,
            f" {label}",
            transform=ax.get_xaxis_transform(),  # x in data, y in axes fraction
            color="tab:green",
            ha="left",
            va="top",
        )
    ax.set_xscale("log")
    # Losses that blow up at high rates would flatten the rest on a linear axis.
    if losses.size and np.all(losses > 0) and losses.max() > 10 * losses.min():
        ax.set_yscale("log")
    ax.set_title(f"learning-rate sweep: {sweep['model']}")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("loss (scaled data)")
    return fig


def _history_figure(
    scored: pd.DataFrame, actuals: pd.Series, latest: pd.DataFrame, ylabel: str
) -> Figure:
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.add_subplot()
    times = _utc_naive(pd.Series(actuals.index))
    ax.plot(times.to_numpy(), actuals.to_numpy(), color="black", linewidth=1.2, label="actual")
    start = times.min() if len(times) else None
    for version, part in scored.groupby("model_version", sort=True):
        t = _utc_naive(part["time"])
        keep = (t >= start).to_numpy() if start is not None else slice(None)
        ax.scatter(
            t[keep].to_numpy(),
            part["forecast"].to_numpy()[keep],
            s=12,
            label=f"forecasts of v{int(version)}",
        )
    newest = latest.assign(time=_utc_naive(latest["time"])).sort_values("time", kind="stable")
    _shade(ax, newest, interval_keys(newest), "tab:red")
    ax.plot(
        newest["time"].to_numpy(),
        newest["forecast"].to_numpy(),
        color="tab:red",
        marker="o",
        linewidth=1.5,
        label="newest forecast",
    )
    _time_axis(ax)
    ax.set_ylabel(ylabel)
    ax.legend()
    return fig


def _time_axis(ax: Any) -> None:
    """Dates on the x axis that never overlap, in UTC."""
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")


# ------------------------------------------------------------------------------------ helpers


def _cell(metric: str, value: Any, decimals: int) -> str:
    """A metric in a table cell: rounded by `display`, its unit in the column's header."""
    return display.number(value, display.metric_decimals(metric, decimals))


def _axis_label(name: str, unit: str) -> str:
    return f"{name} ({unit})" if unit else name


def _label(metric: str, unit: str = "") -> str:
    """A leaderboard column's header: `display.metric_label`'s, and "MASE (seasonal)"."""
    return "MASE (seasonal)" if metric == "mase_seasonal" else display.metric_label(metric, unit)


def _row_label(row: Mapping[str, Any]) -> str:
    """An entry as the tables and plots name it: "lstm-s2 (seed 43)", "ridge (alpha 10)"."""
    name = str(row["name"])
    if row.get("kind") == "seed" and row.get("seed") is not None:
        return f"{name} (seed {row['seed']})"
    if row.get("alpha") is not None:
        return f"{name} (alpha {_compact(row['alpha'])})"
    return name


def _grouped(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Rows in leaderboard order, each seed moved under the entry it belongs to (its "of", or
    the entry whose "members" list it), in seed order. A seed without one keeps its place."""
    names = {row["name"] for row in rows}
    members = {m: row["name"] for row in rows for m in row.get("members") or ()}

    def parent(row: Mapping[str, Any]) -> Any:
        if row["kind"] != "seed":
            return None
        of = row.get("of") if row.get("of") in names else members.get(row["name"])
        return of if of != row["name"] else None

    seeds: dict[Any, list[Mapping[str, Any]]] = {}
    for row in rows:
        if (of := parent(row)) is not None:
            seeds.setdefault(of, []).append(row)
    out = []
    for row in rows:
        if parent(row) is None:
            out.append(row)
            under = seeds.get(row["name"], [])
            out += sorted(under, key=lambda s: (s.get("seed") is None, s.get("seed") or 0))
    return out


def _compact(value: Any) -> str | None:
    """A parameter or rate in a few characters: 0.003, 1e-05, 32; None stays None (blank)."""
    if value is None or isinstance(value, str | bool):
        return value if value is None else str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    number = _float(value)
    if math.isnan(number) and not isinstance(value, float | np.floating):
        return str(value)
    return f"{number:.3g}" if math.isfinite(number) else "n/a"


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    text: int = 0,
    classes: Sequence[str] | None = None,
) -> str:
    """An HTML table, every cell escaped.

    Args:
        header: the column names.
        rows: one list of cells per row; a cell is a value or (value, css class); None is blank.
        text: how many leading columns hold text (left-aligned); the rest are figures.
        classes: a css class per row ("" for none).
    """
    esc = html.escape
    heads = "".join(
        f'<th class="name">{esc(h)}</th>' if i < text else f"<th>{esc(h)}</th>"
        for i, h in enumerate(header)
    )
    body = []
    for r, row in enumerate(rows):
        cells = []
        for i, cell in enumerate(row):
            value, css = cell if isinstance(cell, tuple) else (cell, "")
            css = " ".join(c for c in ("name" if i < text else "", css) if c)
            shown = "" if value is None else esc(str(value))
            cells.append(f'<td class="{css}">{shown}</td>' if css else f"<td>{shown}</td>")
        attr = f' class="{esc(classes[r])}"' if classes and classes[r] else ""
        body.append(f"<tr{attr}>{''.join(cells)}</tr>")
    rows_html = "\n".join(body)
    return (
        f'<div class="scroll"><table>\n<thead><tr>{heads}</tr></thead>\n'
        f"<tbody>\n{rows_html}\n</tbody>\n</table></div>"
    )


def _image(files: str, name: str | None, alt: str) -> str:
    """A figure whose src is `files` + `name`; "" without a name (an image not drawn)."""
    if not name:
        return ""
    src = html.escape(files + name, quote=True)
    return f'<figure><img src="{src}" alt="{html.escape(alt, quote=True)}"></figure>'


def _ordered(by_name: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The keys of `by_name` in leaderboard order, any others after them by name (JSON stores
    objects with sorted keys, so the order has to come from the leaderboard)."""
    ranked = [row["name"] for row in rows if row["name"] in by_name]
    return ranked + sorted(set(by_name) - set(ranked))


def _join(items: Sequence[str]) -> str:
    """Joined as in prose: `a`, `a and b`, `a, b and c`."""
    items = list(items)
    if len(items) < 2:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _finite(value: Any) -> bool:
    return math.isfinite(_float(value))


def _utc_text(value: Any) -> str:
    """An ISO time as "2025-01-01 06:00" in UTC (seconds only when there are any)."""
    if value is None:
        return "n/a"
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S" if when.second else "%Y-%m-%d %H:%M")


def _plain(obj: Any) -> Any:
    """`obj` as strict JSON values: numpy and pandas scalars as Python ones, times as ISO 8601,
    NaN, inf and NaT as None."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, str | bool):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if obj is pd.NaT:
        return None
    if isinstance(obj, datetime | pd.Timestamp):
        return obj.isoformat()
    return str(obj)


def _utc_naive(times: pd.Series) -> pd.Series:
    """Timestamps as naive UTC, which matplotlib's date axis takes without a converter."""
    times = pd.to_datetime(times)
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times
