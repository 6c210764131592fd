"""The run report (three PNG plots, the gate's decision, one HTML page) and the forecast
report (the forecast history against the actuals, accuracy per model version).

Figures are built as `matplotlib.figure.Figure` objects, never through pyplot, so no global
figure state or GUI backend is touched inside a worker process.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from freshcast.artifacts import atomic_path, write_bytes

PREDICTION_COLUMNS = ("time", "step", "name", "actual", "prediction")
FILES = {
    "loss": "loss.png",
    "forecast": "forecast.png",
    "leaderboard": "leaderboard.png",
    "html": "index.html",
}
_NOT_METRICS = ("rank", "name", "kind")
_KIND_COLOURS = {"model": "tab:blue", "baseline": "tab:gray"}


def write_report(
    out_dir: Path,
    *,
    pipeline: str,
    run_id: str,
    metric: str,
    leaderboard: Sequence[Mapping[str, Any]],
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    predictions: pd.DataFrame,
    target: str = "target",
    top: int = 3,
    decision: Mapping[str, Any] | None = None,
    promoted: int | None = None,
) -> dict[str, Path]:
    """Draw the plots and write `index.html` into `out_dir`, each file atomically.

    Args:
        out_dir: an existing folder.
        pipeline: pipeline name, shown in the title.
        run_id: Airflow run id, shown in the title (escaped).
        metric: the metric the leaderboard is ranked by.
        leaderboard: rows from `evaluation.leaderboard`, best first.
        histories: model name -> {"loss": [...], "val_loss": [...]}, one value per epoch.
        predictions: long form (rows, 5) with columns "time" (tz-aware UTC of the target step),
            "step" (1..horizon), "name", "actual", "prediction", test split, original units.
        target: the forecast column's name, for the forecast plot's axis.
        top: how many of the best entries the forecast plot shows.
        decision: the gate's decision (`gate.Decision.to_json()`), shown with its figures.
        promoted: the registry version the run's candidate became, if it did.

    Returns:
        {"html", "loss", "forecast", "leaderboard"} -> path of each written file.

    Raises:
        ValueError: on missing prediction columns, an unknown `metric` or `top` < 1.
    """
    out_dir = Path(out_dir)
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
    if top < 1:
        raise ValueError(f"`top` must be > 0. Received: top={top}")

    paths = {key: out_dir / name for key, name in FILES.items()}
    _save(_loss_figure(histories), paths["loss"])
    best = [row["name"] for row in leaderboard[:top]]
    _save(_forecast_figure(predictions, best, target), paths["forecast"])
    _save(_leaderboard_figure(leaderboard, metric), paths["leaderboard"])
    # The page goes last: a folder whose index.html exists has all its images.
    page = _html(
        pipeline=pipeline,
        run_id=run_id,
        metric=metric,
        leaderboard=leaderboard,
        gate="" if decision is None else _gate_html(decision, promoted),
    )
    write_bytes(paths["html"], page.encode("utf-8"))
    return {key: paths[key] for key in ("html", "loss", "forecast", "leaderboard")}


def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _loss_figure(histories: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure:
    """One subplot per model: training and validation loss per epoch."""
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
            curve = np.asarray(history.get(key, ()), dtype=np.float64)
            if curve.size:
                ax.plot(np.arange(1, curve.size + 1), curve, marker=".", label=label)
                values.append(curve)
        # Log scale shows late-epoch differences, but only holds for positive losses.
        if values and all(np.all(np.isfinite(v) & (v > 0)) for v in values):
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss")
        if values:
            ax.legend()
    return fig


def _forecast_figure(predictions: pd.DataFrame, names: list[str], target: str) -> Figure:
    """Actual vs predicted at step 1 on the test split, for the given entries."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.add_subplot()
    step1 = predictions[predictions["step"] == 1]
    step1 = step1.assign(time=_utc_naive(step1["time"])).sort_values("time", kind="stable")
    actual = step1.drop_duplicates("time")  # every entry carries the same actuals
    ax.plot(
        actual["time"].to_numpy(),
        actual["actual"].to_numpy(),
        color="black",
        linewidth=1.5,
        label="actual",
    )
    for name in names:
        rows = step1[step1["name"] == name]
        if not rows.empty:
            ax.plot(rows["time"].to_numpy(), rows["prediction"].to_numpy(), linewidth=1, label=name)
    ax.set_title("test split, one step ahead")
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel(target)
    ax.legend()
    return fig


def _leaderboard_figure(leaderboard: Sequence[Mapping[str, Any]], metric: str) -> Figure:
    """Horizontal bars of `metric`, best on top; baselines in grey."""
    fig = Figure(figsize=(7, 0.9 + 0.4 * max(len(leaderboard), 1)), layout="constrained")
    ax = fig.add_subplot()
    names = [str(row["name"]) for row in leaderboard]
    values = np.array([float(row[metric]) for row in leaderboard], dtype=np.float64)
    colours = [_KIND_COLOURS.get(row["kind"], "tab:orange") for row in leaderboard]
    positions = np.arange(len(names))
    ax.barh(positions, np.nan_to_num(values, nan=0.0), color=colours)
    for y, value in zip(positions, values, strict=True):
        if math.isnan(value):  # a zero-length bar would read as a perfect score
            ax.text(0, y, " n/a", va="center")
    ax.set_yticks(positions, names)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (lower is better)")
    ax.legend(handles=[Patch(color=c, label=k) for k, c in _KIND_COLOURS.items()])
    return fig


def _head(title: str) -> str:
    """The start of a self-contained page: title and the one stylesheet both reports use."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }}
th {{ background: #f0f0f0; }}
tr.best td {{ background: #dff5df; font-weight: bold; }}
img {{ max-width: 100%; }}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
"""


def _html(
    *,
    pipeline: str,
    run_id: str,
    metric: str,
    leaderboard: Sequence[Mapping[str, Any]],
    gate: str = "",
) -> str:
    """A self-contained page: title, the gate's section (if any), leaderboard table, the three
    images, a note on MASE."""
    esc = html.escape
    metrics = [k for k in (leaderboard[0] if leaderboard else {}) if k not in _NOT_METRICS]
    header = "".join(f"<th>{esc(c)}</th>" for c in ["rank", "name", "kind", *metrics])
    body = []
    for i, row in enumerate(leaderboard):
        # Rank 1 is only "best" when its score exists; nan sorts last, so one check suffices.
        best = i == 0 and math.isfinite(float(row[metric]))
        cells = [str(row["rank"]), str(row["name"]), str(row["kind"])]
        cells += [_format(row[m]) for m in metrics]
        attr = ' class="best"' if best else ""
        body.append(f"<tr{attr}>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    title = f"freshcast report: {pipeline}, run {run_id}"
    return f"""{_head(title)}{gate}<h2>Leaderboard, ranked by {esc(metric)}</h2>
<table>
<thead><tr>{header}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
<p>MASE is the test MAE divided by the MAE of the one-step naive forecast (repeat the previous
value) on the training split. MASE &lt; 1 means the forecast errs less than that naive forecast;
MASE &gt; 1 means it errs more. MAPE leaves out points whose actual value is 0.</p>
<h2>Forecasts</h2>
<img src="{FILES["forecast"]}" alt="actual vs predicted, one step ahead">
<h2>Leaderboard</h2>
<img src="{FILES["leaderboard"]}" alt="{esc(metric)} per model and baseline">
<h2>Training</h2>
<img src="{FILES["loss"]}" alt="training and validation loss per epoch">
</body>
</html>
"""


def _gate_html(decision: Mapping[str, Any], promoted: int | None) -> str:
    """The gate's verdict, its reasons and the figures it compared, side by side."""
    esc = html.escape
    metric = decision["metric"]
    if decision["promote"] and promoted is not None:
        verdict = f"promoted: {decision['candidate']} is now champion v{promoted}"
    elif decision["promote"]:
        verdict = f"promote {decision['candidate']} (not registered: see the promote task)"
    else:
        held = decision.get("current_champion")
        verdict = "refused: " + (f"champion v{held} stays" if held else "no champion yet")
    metrics = [m for m in ("mae", "rmse", "mase", "smape") if m != metric]
    header = "".join(f"<th>{esc(c)}</th>" for c in ["name", "role", metric, *metrics])
    rows = []
    for name, scores in sorted(
        decision["scores"].items(), key=lambda kv: float(kv[1].get(metric, math.inf))
    ):
        cells = [
            name,
            scores.get("role", ""),
            *(_format(scores.get(m)) for m in (metric, *metrics)),
        ]
        rows.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in cells) + "</tr>")
    reasons = "".join(f"<li>{esc(r)}</li>" for r in decision["reasons"])
    return f"""<h2>Gate: {esc(verdict)}</h2>
<ul>{reasons}</ul>
<table>
<thead><tr>{header}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
"""


def write_forecast_report(
    out_dir: Path,
    *,
    pipeline: str,
    run_id: str,
    target: str,
    scored: pd.DataFrame,
    actuals: pd.Series,
    by_version: pd.DataFrame,
    over_time: pd.DataFrame,
    latest: pd.DataFrame,
    tail: int = 200,
) -> dict[str, Path]:
    """The forecast history page: recent actuals, every forecast made over them (coloured by
    model version), the newest forecast, and the accuracy per version and over time.

    Args:
        scored: `forecasts.score_history` output.
        actuals: the target's observed values, indexed by UTC time.
        by_version, over_time: `forecasts.accuracy_by_version` / `accuracy_over_time`.
        latest: this run's forecast rows (time, step, forecast, model_version).
        tail: how many of the latest actuals the plot shows.
    """
    out_dir = Path(out_dir)
    picture = out_dir / "history.png"
    _save(_history_figure(scored, actuals.iloc[-tail:], latest, target), picture)
    esc = html.escape
    title = f"freshcast forecasts: {pipeline}, run {run_id}"
    upcoming = latest.assign(time=latest["time"].astype(str))[["time", "step", "forecast"]]
    version = int(latest["model_version"].iloc[0])
    page = f"""{_head(title)}<h2>Newest forecast of {esc(target)} (model v{version})</h2>
{upcoming.to_html(index=False, float_format=lambda v: f"{v:.4g}")}
<h2>Accuracy per model version (forecasts whose actuals have arrived)</h2>
{by_version.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="n/a")}
<h2>Accuracy over time (MAE of each forecast run)</h2>
{over_time.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="n/a")}
<h2>Forecasts against actuals</h2>
<img src="{picture.name}" alt="past forecasts against the actual values">
</body>
</html>
"""
    page_path = write_bytes(out_dir / "index.html", page.encode("utf-8"))
    return {"html": page_path, "history": picture}


def write_forecast_plot(
    path: Path, *, actuals: pd.Series, latest: pd.DataFrame, target: str, tail: int = 200
) -> Path:
    """One forecast: the last `tail` actuals and the forecast steps after them, as a PNG."""
    no_history = latest.iloc[0:0]
    _save(_history_figure(no_history, actuals.iloc[-tail:], latest, target), Path(path))
    return Path(path)


def _history_figure(
    scored: pd.DataFrame, actuals: pd.Series, latest: pd.DataFrame, target: str
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
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel(target)
    ax.legend()
    return fig


def _format(value: Any) -> str:
    """A metric to 4 significant digits; nan and None as "n/a"."""
    value = float("nan") if value is None else float(value)
    return "n/a" if math.isnan(value) else f"{value:.4g}"


def _utc_naive(times: pd.Series) -> pd.Series:
    """Timestamps as naive UTC, which matplotlib's date axis takes without a converter."""
    times = pd.to_datetime(times)
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times
