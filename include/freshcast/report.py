"""The run report (the gate's decision, the leaderboard against the baselines, the error per
forecast step, the training curves) and the forecast report (the newest forecast, the forecast
history against the actuals, accuracy per model version and over time).

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
LEADERBOARD_METRICS = ("mae", "rmse", "mape", "smape", "mase")
GATE_METRICS = ("mae", "rmse", "mase", "smape")
REFERENCE = "persistence"  # the baseline the skill score is measured against
OVER_TIME_ROWS = 30  # newest forecast runs listed; summary.json holds them all
PAGE_END = "</body>\n</html>\n"
_KIND_COLOURS = {"model": "tab:blue", "baseline": "tab:gray"}

ZOOM = 300  # a test split longer than this is also drawn zoomed to its last ZOOM steps

STYLESHEET = """\
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
  line-height: 1.45; max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.8em; padding-bottom: 0.2em; border-bottom: 1px solid #d0d7de; }
p.meta, p.note { color: #59636e; }
p.note { font-size: 0.92em; max-width: 60em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 0.6em 0; }
th, td { border: 1px solid #d0d7de; padding: 0.3em 0.7em; text-align: right; white-space: nowrap; }
th { background: #f6f8fa; font-weight: 600; }
th.name, td.name { text-align: left; }
tr.best td { background: #dafbe1; font-weight: 600; }
tr.baseline td { color: #59636e; }
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
            histories, predictions, target, unit, decimals, top, decision, promoted, zoom).

    Returns:
        {"html", "summary", "loss", "forecast", "leaderboard"} and "steps" (horizon > 1 only)
        -> path of each written file.

    Raises:
        ValueError: as `run_summary`. Nothing is written then.
    """
    out_dir = Path(out_dir)
    summary = run_summary(**fields)
    target, unit = summary["target"], summary["unit"]
    paths = {key: out_dir / FILES[key] for key in (*summary["images"], "summary", "html")}
    if "steps" not in paths:  # a rewrite for horizon 1 leaves no stale per-step plot behind
        (out_dir / FILES["steps"]).unlink(missing_ok=True)
    _save(_loss_figure(fields["histories"], summary["training"]), paths["loss"])
    forecast = _forecast_figure(
        fields["predictions"],
        summary["shown"],
        target=target,
        unit=unit,
        zoom=fields.get("zoom", ZOOM),
    )
    _save(forecast, paths["forecast"])
    board = _leaderboard_figure(
        summary["leaderboard"], summary["metric"], unit, summary["decimals"]
    )
    _save(board, paths["leaderboard"])
    if "steps" in paths:
        _save(_steps_figure(summary["per_step"], summary["leaderboard"], unit), paths["steps"])
    write_json(paths["summary"], summary)
    # The page goes last: a folder whose index.html exists has all its images.
    page = page_head(summary["title"]) + render_run(summary) + PAGE_END
    write_bytes(paths["html"], page.encode("utf-8"))
    return paths


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
) -> dict[str, Any]:
    """Everything the run report shows, as plain JSON (NaN as None); `write_report` stores it
    as `summary.json`.

    Args:
        pipeline, run_id: named in the title.
        metric: the metric the leaderboard is ranked by (the spec's).
        leaderboard: rows from `evaluation.leaderboard`, best first.
        histories: model name -> {"loss": [...], "val_loss": [...]}, one value per epoch.
        predictions: long form (rows, 5) with columns "time" (tz-aware UTC of the target step),
            "step" (1..horizon), "name", "actual", "prediction", test split, original units.
        target: the forecast column's name, for the plots' axes.
        unit: the target's unit ("°C"), or "".
        decimals: the decimals the data is recorded with (`display.data_decimals`).
        top: how many of the best entries the forecast plot shows.
        decision: the gate's decision (`gate.Decision.to_json()`), shown first.
        promoted: the registry version the run's candidate became, if it did.
        zoom: a test split longer than this many steps is also drawn zoomed to its last `zoom`.

    Returns:
        {"title", "pipeline", "run_id", "target", "unit", "decimals", "metric", "horizon",
        "test_points" (step-1 points of the test split), "zoom" (points in the zoomed panel,
        None without one), "shown" (entries in the forecast plot), "leaderboard" (rows with
        "skill"), "best", "reference", "flags", "per_step", "training", "gate", "images"}.

    Raises:
        ValueError: as `write_report`.
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

    horizon = int(predictions["step"].max()) if len(predictions) else 1
    test_points = int(predictions.loc[predictions["step"] == 1, "time"].nunique())
    reference = next((r for r in leaderboard if r["name"] == REFERENCE), None)
    rows = [
        {
            "rank": row["rank"],
            "name": str(row["name"]),
            "kind": str(row["kind"]),
            **{m: row.get(m) for m in LEADERBOARD_METRICS},
            "skill": display.skill(row.get("mae"), reference["mae"] if reference else None),
        }
        for row in leaderboard
    ]
    best = rows[0]["name"] if rows and _finite(leaderboard[0][metric]) else None
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
        "shown": [row["name"] for row in rows[:top]],
        "leaderboard": rows,
        "best": best,
        "reference": REFERENCE if reference else None,
        "flags": baseline_flags(leaderboard, metric, unit=unit, decimals=decimals),
        "per_step": step_errors(predictions) if horizon > 1 else {},
        "training": best_epochs(histories),
        "gate": None if decision is None else _gate_summary(decision, promoted),
        "images": images,
    }
    return _plain(summary)


def baseline_flags(
    leaderboard: Sequence[Mapping[str, Any]], metric: str, *, unit: str = "", decimals: int = 2
) -> list[str]:
    """One sentence per model that is not strictly better than every baseline on `metric`:
    "gru loses to ridge on mae: 2.25 °C vs 2.24 °C." A tie "does not beat"; a model without a
    finite score loses to every baseline. Baselines without a finite score are left out, as the
    gate leaves them out.

    Args:
        leaderboard: rows with "name", "kind" and `metric`.
        metric: the metric compared (lower is better).
        unit, decimals: the target's unit and data decimals, for the figures.

    Returns:
        The sentences, in leaderboard order; empty when every model beats every baseline.
    """

    def shown(value: Any) -> str:
        return display.metric_value(metric, value, decimals=decimals, unit=unit)

    baselines = sorted(
        (r for r in leaderboard if r["kind"] == "baseline" and _finite(r.get(metric))),
        key=lambda r: (float(r[metric]), str(r["name"])),
    )
    flags = []
    for row in leaderboard:
        if row["kind"] != "model" or not baselines:
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


def step_errors(predictions: pd.DataFrame) -> dict[str, list[float]]:
    """The MAE of every entry at each forecast step.

    Args:
        predictions: long form with "step" (1..horizon), "name", "actual", "prediction".

    Returns:
        name -> [MAE at step 1, ..., MAE at step horizon]; NaN for a step an entry has no rows
        for, or a missing actual or prediction in.
    """
    actual = predictions["actual"].to_numpy(dtype=np.float64)  # [rows]
    predicted = predictions["prediction"].to_numpy(dtype=np.float64)  # [rows]
    frame = pd.DataFrame(
        {
            "name": predictions["name"].astype(str).to_numpy(),
            "step": predictions["step"].to_numpy(dtype=np.int64),
            "abs": np.abs(actual - predicted),
        }
    )
    if frame.empty:
        return {}
    keys = [frame["name"], frame["step"]]
    mae = frame["abs"].groupby(keys, sort=True).mean()  # pandas skips NaN: put them back
    mae = mae.where(~frame["abs"].isna().groupby(keys, sort=True).any())
    out: dict[str, list[float]] = {}
    for (name, step), value in mae.items():
        out.setdefault(str(name), [math.nan] * int(frame["step"].max()))[step - 1] = float(value)
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
    }


def render_run(summary: Mapping[str, Any], *, files: str = "") -> str:
    """The run report as an HTML fragment (no <html>, <head> or <body>; the title is the
    page's): the gate, the leaderboard and its flags, the error per step, training, forecasts.

    Args:
        summary: `run_summary`'s output, or `summary.json` read back.
        files: prefix of every image's src (a URL folder ending in "/" for the UI plugin).
    """
    esc = html.escape
    unit, images = summary.get("unit", ""), summary.get("images", {})
    rows = summary["leaderboard"]
    shown = summary.get("shown", [])
    zoomed = f"; below, the last {summary['zoom']} steps enlarged" if summary.get("zoom") else ""
    parts = [
        f'<p class="meta">Pipeline {esc(summary["pipeline"])}, run {esc(summary["run_id"])}: '
        f"{esc(_axis_label(summary['target'], unit))} forecast {summary['horizon']} step(s) "
        f"ahead, scored on {summary['test_points']} test windows.</p>",
        _gate_section(summary["gate"], unit, summary["decimals"]) if summary.get("gate") else "",
        _leaderboard_section(summary),
        _steps_section(summary, files) if summary.get("per_step") else "",
        "<h2>Training</h2>",
        _training_table(summary.get("training") or {}, rows),
        _image(files, images.get("loss"), "training and validation loss per epoch"),
        "<h2>Forecasts on the test split</h2>",
        f"<p>The actual values and the one-step-ahead forecasts of "
        f"{esc(_join(shown) or 'no entry')} over the whole test split "
        f"({summary['test_points']} steps){zoomed}.</p>",
        _image(files, images.get("forecast"), "actual vs predicted, one step ahead"),
        "<h2>Leaderboard chart</h2>",
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
    return f'<h2 class="{css}">Gate: {esc(gate["verdict"])}</h2>\n<ul>{reasons}</ul>\n{table}'


def _leaderboard_section(summary: Mapping[str, Any]) -> str:
    """The leaderboard (units in the headers, best row marked), the flags, what MASE means."""
    esc = html.escape
    metric, unit, decimals = summary["metric"], summary.get("unit", ""), summary["decimals"]
    rows = summary["leaderboard"]
    columns = [*LEADERBOARD_METRICS, *(["skill"] if summary.get("reference") else [])]
    table = _table(
        ["rank", "name", "kind", *(display.metric_label(m, unit) for m in columns)],
        [
            [
                row["rank"],
                row["name"],
                row["kind"],
                *(_cell(m, row.get(m), decimals) for m in columns),
            ]
            for row in rows
        ],
        text=3,
        classes=[
            "best" if i == 0 and summary.get("best") is not None else row["kind"]
            for i, row in enumerate(rows)
        ],
    )
    flags = summary.get("flags") or []
    models = any(row["kind"] == "model" for row in rows)
    baselines = any(row["kind"] == "baseline" and _finite(row.get(metric)) for row in rows)
    if flags:
        verdict = '<ul class="flags">' + "".join(f"<li>{esc(f)}</li>" for f in flags) + "</ul>"
    elif models and baselines:
        verdict = f'<p class="ok">Every model beats every baseline on {esc(metric)}.</p>'
    else:
        verdict = ""
    skill = (
        "Skill vs persistence is the reduction of MAE against the persistence baseline (repeat "
        "the last value over the horizon): 25% is a quarter less error, below 0 more error. "
        if summary.get("reference")
        else ""
    )
    return (
        f"<h2>Leaderboard, ranked by {esc(display.metric_label(metric))}</h2>\n{table}\n"
        + (verdict + "\n" if verdict else "")
        + '<p class="note">MASE is the test MAE divided by the MAE of the one-step naive '
        "forecast (repeat the previous value) on the training split. MASE &lt; 1 means the "
        "forecast errs less than that naive forecast; MASE &gt; 1 means it errs more. "
        + skill
        + "MAPE leaves out points whose actual value is 0.</p>"
    )


def _steps_section(summary: Mapping[str, Any], files: str) -> str:
    """MAE per forecast step: one row per entry, the lowest of each step in bold, the plot."""
    per_step, rows, decimals = summary["per_step"], summary["leaderboard"], summary["decimals"]
    kinds = {row["name"]: row["kind"] for row in rows}
    names = _ordered(per_step, rows)
    horizon = max(len(v) for v in per_step.values())
    grid = [
        [_float(v) for v in per_step[n]] + [math.nan] * (horizon - len(per_step[n])) for n in names
    ]
    lowest = [
        min((v for v in step if math.isfinite(v)), default=None) for step in zip(*grid, strict=True)
    ]
    table = _table(
        ["name", *(f"step {i}" for i in range(1, horizon + 1))],
        [
            [name]
            + [
                (_cell("mae", v, decimals), "low" if v == low else "")
                for v, low in zip(values, lowest, strict=True)
            ]
            for name, values in zip(names, grid, strict=True)
        ],
        text=1,
        classes=[kinds.get(name, "") for name in names],
    )
    label = html.escape(display.metric_label("mae", summary.get("unit", "")))
    return (
        f"<h2>Error per forecast step</h2>\n<p>{label} of each entry at each step ahead on the "
        f"test split; the lowest of each step in bold.</p>\n{table}"
        + _image(
            files,
            summary.get("images", {}).get("steps"),
            "MAE per forecast step, one line per entry",
        )
    )


def _training_table(
    training: Mapping[str, Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]
) -> str:
    if not training:
        return "<p>No model was trained.</p>"
    table = _table(
        ["model", "epochs run", "best epoch"],
        [
            [name, training[name]["epochs_run"], training[name]["best_epoch"] or "n/a"]
            for name in _ordered(training, rows)
        ],
        text=1,
    )
    return (
        f"{table}\n"
        '<p class="note">The best epoch has the lowest validation loss; early stopping keeps its '
        "weights. The loss curves below mark it on each model's validation curve.</p>"
    )


# ------------------------------------------------------------------------- the forecast report


def write_forecast_report(out_dir: Path, *, actuals: pd.Series, **fields: Any) -> dict[str, Path]:
    """The forecast history page: the newest forecast, recent actuals with every forecast made
    over them (coloured by model version), and the accuracy per version and over time.

    Args:
        out_dir: the report's folder.
        actuals: the target's observed values, indexed by UTC time (for the plot).
        fields: the keyword arguments of `forecast_summary` (pipeline, run_id, target, scored,
            by_version, over_time, latest, unit, decimals, tail).

    Returns:
        {"html", "summary", "history"} -> path of each written file.

    Raises:
        ValueError: as `forecast_summary`. Nothing is written then.
    """
    out_dir = Path(out_dir)
    summary = forecast_summary(**fields)
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
) -> dict[str, Any]:
    """Everything the forecast report shows, as plain JSON (NaN as None, times ISO 8601);
    `write_forecast_report` stores it as `summary.json`.

    Args:
        pipeline, run_id: the pipeline and the forecast run, named on the page.
        target: the forecast column.
        scored: `forecasts.score_history` output.
        by_version, over_time: `forecasts.accuracy_by_version` / `accuracy_over_time`.
        latest: this run's forecast rows (time, step, forecast, model_version[, model_name]).
        unit, decimals: the target's unit and the decimals its data is recorded with.
        tail: how many of the latest actuals the plot shows.

    Returns:
        {"title", "pipeline", "run_id", "target", "unit", "decimals", "model_version",
        "model_name", "latest" ([{time, step, forecast, model_version}]), "forecasts" (runs in
        the history), "scored_steps", "first_forecast" (the earliest forecast's target time),
        "by_version", "over_time" (records), "tail", "images"}.

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
    summary = {
        "title": f"{pipeline}: forecasts of {target}",
        "pipeline": pipeline,
        "run_id": run_id,
        "target": target,
        "unit": unit,
        "decimals": decimals,
        "model_version": latest["model_version"].iloc[-1],
        "model_name": latest["model_name"].iloc[-1] if "model_name" in latest else None,
        "latest": latest[list(LATEST_COLUMNS)].to_dict("records"),
        "forecasts": scored["run_id"].nunique() if "run_id" in scored else 0,
        "scored_steps": int(scored["actual"].notna().sum()) if has_actual else 0,
        "first_forecast": times.min(),
        "by_version": by_version.to_dict("records"),
        "over_time": over_time.to_dict("records"),
        "tail": tail,
        "images": {"history": FORECAST_FILES["history"]},
    }
    return _plain(summary)


def render_forecast(summary: Mapping[str, Any], *, files: str = "") -> str:
    """The forecast report as an HTML fragment (no <html>, <head> or <body>; the title is the
    page's): the newest forecast, the accuracy per model version and over time, the history.

    Args:
        summary: `forecast_summary`'s output, or `summary.json` read back.
        files: prefix of the image's src (a URL folder ending in "/" for the UI plugin).
    """
    esc = html.escape
    unit, decimals = summary.get("unit", ""), summary["decimals"]
    version, name = summary["model_version"], summary.get("model_name")
    model = f"v{version}" + (f" ({name})" if name else "")
    latest = _table(
        ["time (UTC)", "step", _axis_label("forecast", unit), "model version"],
        [
            [
                _utc_text(row["time"]),
                row["step"],
                display.number(row["forecast"], decimals),
                f"v{row['model_version']}",
            ]
            for row in summary["latest"]
        ],
    )
    parts = [
        f'<p class="meta">Pipeline {esc(summary["pipeline"])}, forecast run '
        f"{esc(summary['run_id'])}, model {esc(model)}. The history holds "
        f"{summary['forecasts']} forecast run(s); {summary['scored_steps']} forecast step(s) "
        "have their actual value.</p>",
        f"<h2>Newest forecast of {esc(summary['target'])} (model v{esc(str(version))})</h2>",
        latest,
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
    """Accuracy per model version, then per forecast run, newest first."""
    metrics = ("mae", "rmse", "bias")
    versions = _table(
        [
            "model version",
            "model",
            "forecasts",
            "scored steps",
            *(display.metric_label(m, unit) for m in metrics),
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
        "high.</p>\n"
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
    """One forecast: the last `tail` actuals and the forecast steps after them, as a PNG."""
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
    predictions: pd.DataFrame, names: Sequence[str], *, target: str, unit: str, zoom: int
) -> Figure:
    """Actual vs predicted at step 1 on the test split, for the given entries; a split longer
    than `zoom` steps gets a second panel with its last `zoom` steps, shaded in the first."""
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
                ax.plot(
                    rows["time"].to_numpy(),
                    rows["prediction"].to_numpy(),
                    linewidth=width,
                    label=name,
                )
        ax.set_title(title)
        _time_axis(ax)
        ax.set_ylabel(_axis_label(target, unit))
    # One legend above the panels: inside either one it would hide data.
    fig.legend(
        *axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=len(names) + 1
    )
    return fig


def _leaderboard_figure(
    rows: Sequence[Mapping[str, Any]], metric: str, unit: str, decimals: int
) -> Figure:
    """Horizontal bars of `metric`, best on top, each labelled with its value; baselines grey."""
    fig = Figure(figsize=(7, 0.9 + 0.4 * max(len(rows), 1)), layout="constrained")
    ax = fig.add_subplot()
    names = [str(row["name"]) for row in rows]
    values = np.array([_float(row.get(metric)) for row in rows], dtype=np.float64)
    colours = [_KIND_COLOURS.get(row["kind"], "tab:orange") for row in rows]
    positions = np.arange(len(names))
    bars = ax.barh(positions, np.nan_to_num(values, nan=0.0), color=colours)
    # A zero-length bar would read as a perfect score: its label says n/a.
    ax.bar_label(bars, labels=[" " + _cell(metric, v, decimals) for v in values])
    ax.set_yticks(positions, names)
    ax.invert_yaxis()
    ax.margins(x=0.15)
    ax.set_xlabel(f"{display.metric_label(metric, unit)}, lower is better")
    ax.legend(handles=[Patch(color=c, label=k) for k, c in _KIND_COLOURS.items()])
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
        ax.plot(steps, values, markersize=4, label=name, **style)
    ax.set_title("error per forecast step, test split")
    ax.set_xlabel("forecast step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(display.metric_label("mae", unit))
    ax.legend()
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
    ax.plot(
        _utc_naive(latest["time"]).to_numpy(),
        latest["forecast"].to_numpy(),
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
