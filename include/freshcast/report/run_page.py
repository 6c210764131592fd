"""The run report as HTML: `render_run` renders a run summary (fresh, or `summary.json` read
back) to the page's fragment. The leaderboard with its flags, the prediction intervals, the error
per forecast step and training are drawn here; the gate, backtest, search and sweep sections come
from `run_record_sections`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from freshcast import display
from freshcast.evaluation import CANDIDATE_KINDS
from freshcast.report import markup
from freshcast.report.formatting import as_float, axis_label, cell, finite, join, ordered, row_label
from freshcast.report.run_record_sections import (
    backtest_section,
    gate_section,
    search_section,
    sweeps_section,
)
from freshcast.report.run_summary import EXPLAIN, LEADERBOARD_METRICS

# The explanations shown under the leaderboard, in order, each with its term.
_EXPLAINED = {
    "mase": "MASE",
    "mase_seasonal": "MASE (seasonal)",
    "skill": "skill vs persistence",
    "per_step": "Per-step errors",
    "spread": "± (spread)",
    "mape": "MAPE",
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
        f" Shaded: the {join([f'{key}%' for key in bands['levels']])} prediction interval(s) "
        f"of {bands['name']}, lighter for wider."
        if bands
        else ""
    )
    parts = [
        f'<p class="meta">Pipeline {esc(summary["pipeline"])}, run {esc(summary["run_id"])}: '
        f"{esc(axis_label(summary['target'], unit))} forecast {summary['horizon']} step(s) "
        f"ahead, scored on {summary['test_points']} test windows.</p>",
        gate_section(summary["gate"], unit, summary["decimals"]) if summary.get("gate") else "",
        _leaderboard_section(summary),
        _intervals_section(summary, explain) if summary.get("intervals") else "",
        backtest_section(summary, explain) if summary.get("backtest") else "",
        _steps_section(summary, files) if summary.get("per_step") else "",
        search_section(summary["tuning"], unit, summary["decimals"])
        if summary.get("tuning")
        else "",
        sweeps_section(summary["sweeps"], files) if summary.get("sweeps") else "",
        "<h2>Training</h2>",
        _training_table(summary.get("training") or {}, rows),
        markup.image(files, images.get("loss"), "training and validation loss per epoch"),
        "<h2>Forecasts on the test split</h2>",
        f"<p>The actual values and the one-step-ahead forecasts of "
        f"{esc(join(shown) or 'no entry')} over the whole test split "
        f"({summary['test_points']} steps){zoomed}.{esc(shaded)}</p>",
        markup.image(files, images.get("forecast"), "actual vs predicted, one step ahead"),
        "<h2>Leaderboard chart</h2>",
        f'<p class="note">{esc(display.metric_label(summary["metric"], unit))} of every entry, '
        "lower is better: models blue, ensembles purple, their seeds pale, baselines grey.</p>",
        markup.image(
            files, images.get("leaderboard"), f"{summary['metric']} per model and baseline"
        ),
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _leaderboard_section(summary: Mapping[str, Any]) -> str:
    """The leaderboard (units in the headers, best row marked, each seed under its ensemble,
    an ensemble's spread beside its figure), the flags, a line on each figure a reader may not
    know."""
    esc = html.escape
    metric, unit, decimals = summary["metric"], summary.get("unit", ""), summary["decimals"]
    rows = _grouped(summary["leaderboard"])
    seasonal = any(finite(row.get("mase_seasonal")) for row in rows)
    columns = [
        *(m for m in LEADERBOARD_METRICS if m != "mase_seasonal" or seasonal),
        *(["skill"] if summary.get("reference") else []),
    ]
    spread = any(row["kind"] == "ensemble" and finite(row.get("spread")) for row in rows)

    def figure(row: Mapping[str, Any], column: str) -> str:
        text = cell(column, row.get(column), decimals)
        if column == metric and row["kind"] == "ensemble" and finite(row.get("spread")):
            text += " ± " + cell(column, row["spread"], decimals)
        return text

    table = markup.table(
        ["rank", "name", "kind", *(_label(m, unit) for m in columns)],
        [
            [
                row["rank"],
                (row_label(row), "seed" if row["kind"] == "seed" else ""),
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
    baselines = any(row["kind"] == "baseline" and finite(row.get(metric)) for row in rows)
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
        f"<li>{markup.explained(term, explain[key])}</li>"
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
    table = markup.table(
        [
            "name",
            "kind",
            "level (%)",
            "test coverage (%)",
            axis_label("mean width", unit),
            "calibration windows",
        ],
        [
            [
                entry["label"],
                entry["kind"],
                level["key"],
                display.number(as_float(level["coverage"]) * 100, display.PERCENT_DECIMALS),
                cell("mae", level["width"], decimals),
                level.get("calibration_windows"),
            ]
            for entry, level in rows
        ],
        text=2,
        classes=[entry["kind"] for entry, _ in rows],
    )
    notes = "".join(
        f"<li>{markup.explained(term, explain[key])}</li>"
        for key, term in (("coverage", "coverage"), ("width", "width"))
        if explain.get(key)
    )
    return (
        "<h2>Prediction intervals</h2>\n<p>Split-conformal intervals of each model, ensemble and "
        "baseline, calibrated on the validation split and scored on the test split (n/a: too "
        "few calibration windows for the level).</p>\n"
        f'{table}\n<ul class="notes">{notes}</ul>'
    )


def _steps_section(summary: Mapping[str, Any], files: str) -> str:
    """MAE and RMSE per forecast step: one row per entry (seeds left out), the lowest of each
    step in bold, then the plot."""
    esc, unit = html.escape, summary.get("unit", "")
    tables = [
        (metric, summary.get(key) or {})
        for metric, key in (("mae", "per_step"), ("rmse", "per_step_rmse"))
    ]
    tables = [(metric, per_step) for metric, per_step in tables if per_step]
    labels = join([display.metric_label(metric, unit) for metric, _ in tables])
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
        markup.image(
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
    names = ordered(per_step, _grouped(rows))
    horizon = max(len(v) for v in per_step.values())
    grid = [
        [as_float(v) for v in per_step[n]] + [math.nan] * (horizon - len(per_step[n]))
        for n in names
    ]
    lowest = [
        min((v for v in step if math.isfinite(v)), default=None) for step in zip(*grid, strict=True)
    ]
    return markup.table(
        ["name", *(f"step {i}" for i in range(1, horizon + 1))],
        [
            [row_label(by_name.get(name, {"name": name}))]
            + [
                (cell(metric, v, decimals), "low" if v == low else "")
                for v, low in zip(values, lowest, strict=True)
            ]
            for name, values in zip(names, grid, strict=True)
        ],
        text=1,
        classes=[by_name.get(name, {}).get("kind", "") for name in names],
    )


def _training_table(
    training: Mapping[str, Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]
) -> str:
    if not training:
        return "<p>No model was trained.</p>"
    table = markup.table(
        ["model", "epochs run", "best epoch"],
        [
            [name, training[name]["epochs_run"], training[name]["best_epoch"] or "n/a"]
            for name in ordered(training, _grouped(rows))
        ],
        text=1,
    )
    return (
        f"{table}\n"
        '<p class="note">The best epoch has the lowest validation loss; early stopping keeps its '
        "weights. The loss curves below mark it on each model's validation curve.</p>"
    )


def _label(metric: str, unit: str = "") -> str:
    """A leaderboard column's header: `display.metric_label`'s, and "MASE (seasonal)"."""
    return "MASE (seasonal)" if metric == "mase_seasonal" else display.metric_label(metric, unit)


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
