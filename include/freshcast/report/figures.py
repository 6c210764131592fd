"""The report's PNG figures: training curves, the test forecasts with their interval bands, the
leaderboard chart, the error per forecast step, the learning-rate sweeps and the forecast
history.

Figures are `matplotlib.figure.Figure` objects, never pyplot, so no global figure state or GUI
backend is touched inside a worker process.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from freshcast import display
from freshcast.artifacts import atomic_path
from freshcast.forecasts import interval_keys
from freshcast.report.formatting import (
    as_float,
    axis_label,
    cell,
    compact,
    finite,
    ordered,
    row_label,
    sorted_levels,
)

_KIND_COLOURS = {
    "model": "tab:blue",
    "ensemble": "tab:purple",
    "seed": "lightsteelblue",
    "baseline": "tab:gray",
}


def save(fig: Figure, path: Path) -> None:
    """Write `fig` to `path` as a PNG, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def loss_figure(
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


def forecast_figure(
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
        ax.set_ylabel(axis_label(target, unit))
    # One legend above the panels: inside either one it would hide data.
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=min(len(labels), 6))
    return fig


def _shade(ax: Any, rows: pd.DataFrame, levels: Sequence[str], colour: str, of: str = "") -> None:
    """Fill between each level's "lower_<key>" and "upper_<key>" of `rows` (sorted by time),
    the widest level first and palest; a level without a finite bound is left out."""
    times = rows["time"].to_numpy()
    keys = sorted_levels([k for k in levels if f"lower_{k}" in rows and f"upper_{k}" in rows])
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


def leaderboard_figure(
    rows: Sequence[Mapping[str, Any]], metric: str, unit: str, decimals: int
) -> Figure:
    """Horizontal bars of `metric`, best on top, each labelled with its value (an ensemble's
    with its spread); colours by kind, baselines grey and seeds pale."""
    fig = Figure(figsize=(7, 0.9 + 0.4 * max(len(rows), 1)), layout="constrained")
    ax = fig.add_subplot()
    names = [row_label(row) for row in rows]
    values = np.array([as_float(row.get(metric)) for row in rows], dtype=np.float64)  # [rows]
    colours = [_KIND_COLOURS.get(row["kind"], "tab:orange") for row in rows]
    positions = np.arange(len(names))
    bars = ax.barh(positions, np.nan_to_num(values, nan=0.0), color=colours)
    # A zero-length bar would read as a perfect score: its label says n/a.
    labels = [" " + cell(metric, v, decimals) for v in values]
    for i, row in enumerate(rows):
        if row["kind"] == "ensemble" and finite(row.get("spread")):
            labels[i] += " ± " + cell(metric, row["spread"], decimals)
    ax.bar_label(bars, labels=labels)
    ax.set_yticks(positions, names)
    ax.invert_yaxis()
    ax.margins(x=0.2)
    ax.set_xlabel(f"{display.metric_label(metric, unit)}, lower is better")
    kinds = {row["kind"] for row in rows} | {"model", "baseline"}
    ax.legend(handles=[Patch(color=c, label=k) for k, c in _KIND_COLOURS.items() if k in kinds])
    return fig


def steps_figure(
    per_step: Mapping[str, Sequence[float | None]],
    rows: Sequence[Mapping[str, Any]],
    unit: str,
) -> Figure:
    """MAE against the forecast step, one line per entry; baselines dashed and grey."""
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.add_subplot()
    kinds = {row["name"]: row["kind"] for row in rows}
    labels = {row["name"]: row_label(row) for row in rows}
    greys, markers = ("0.3", "0.5", "0.65", "0.8"), ("s", "^", "v", "D")
    baselines = 0
    for name in ordered(per_step, rows):
        values = np.array([as_float(v) for v in per_step[name]], dtype=np.float64)  # [horizon]
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


def sweep_figure(sweep: Mapping[str, Any]) -> Figure:
    """Loss against learning rate on a log axis, the suggested rate a labelled dashed line."""
    fig = Figure(figsize=(6, 3.4), layout="constrained")
    ax = fig.add_subplot()
    rates = np.array([as_float(r) for r in sweep["rates"]], dtype=np.float64)  # [rates]
    losses = np.array([as_float(v) for v in sweep["losses"]], dtype=np.float64)  # [rates]
    keep = np.isfinite(rates) & (rates > 0) & np.isfinite(losses)
    order = np.argsort(rates[keep], kind="stable")
    rates, losses = rates[keep][order], losses[keep][order]
    if rates.size:
        ax.plot(rates, losses, marker="o", markersize=4, color="tab:blue", label="loss")
    else:
        ax.text(0.5, 0.5, "no finite loss", ha="center", va="center", transform=ax.transAxes)
    suggested = as_float(sweep.get("suggested"))
    if math.isfinite(suggested) and suggested > 0:
        label = f"suggested {compact(suggested)}"
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


def history_figure(
    scored: pd.DataFrame, actuals: pd.Series, latest: pd.DataFrame, ylabel: str
) -> Figure:
    """The actuals as a line, past forecasts as dots coloured by model version, and the newest
    forecast with the bands of its intervals."""
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


def _utc_naive(times: pd.Series) -> pd.Series:
    """Timestamps as naive UTC, which matplotlib's date axis takes without a converter."""
    times = pd.to_datetime(times)
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times
