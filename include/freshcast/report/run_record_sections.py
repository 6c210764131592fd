"""The run report's sections on the run's records, as HTML from the run summary: the gate's
verdict and figures, the backtest per fold, the hyperparameter search and the learning-rate
sweeps.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from freshcast import display
from freshcast.report import markup
from freshcast.report.formatting import as_float, cell, compact, finite, join
from freshcast.report.run_records import GATE_METRICS, started_by

SEARCH_NOTE = (
    "Trials are scored on the validation split only; the test split scores only the chosen "
    "configuration."
)


def gate_section(gate: Mapping[str, Any], unit: str, decimals: int) -> str:
    """The verdict as the heading, the reasons, the figures compared side by side."""
    esc = html.escape
    columns = list(dict.fromkeys((gate["metric"], *GATE_METRICS)))
    table = markup.table(
        ["name", "role", *(display.metric_label(m, unit) for m in columns)],
        [
            [row["name"], row["role"], *(cell(m, row.get(m), decimals) for m in columns)]
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


def backtest_section(summary: Mapping[str, Any], explain: Mapping[str, str]) -> str:
    """The metric per fold, its mean and spread per entry (the lowest of each column in bold),
    the folds' date ranges, and whether the gate decided on it."""
    esc, unit, decimals = html.escape, summary.get("unit", ""), summary["decimals"]
    backtest = summary["backtest"]
    metric, folds, rows = backtest["metric"], backtest["folds"], backtest["rows"]
    grid = [
        [as_float(v) for v in row["folds"]]
        + [math.nan] * (len(folds) - len(row["folds"]))
        + [as_float(row["mean"])]
        for row in rows
    ]  # [rows, folds + 1]
    lowest = [
        min((v for v in c if math.isfinite(v)), default=None) for c in zip(*grid, strict=True)
    ]
    table = markup.table(
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
                    (cell(metric, v, decimals), "low" if v == low else "")
                    for v, low in zip(values, lowest, strict=True)
                ),
                cell(metric, row["spread"], decimals),
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
        f"<li>{markup.explained('backtest', explain['backtest'])}</li>"
        if explain.get("backtest")
        else ""
    )
    return (
        f"<h2>Backtest: {esc(display.metric_label(metric, unit))} on {len(folds)} folds</h2>\n"
        f"<p>{esc(basis)} Ranked by the mean; the lowest of each column in bold.</p>\n"
        + (f'<p class="note">{esc("; ".join(spans))}.</p>\n' if spans else "")
        + f'{table}\n<ul class="notes">{note}</ul>'
    )


def search_section(tuning: Mapping[str, Any], unit: str, decimals: int) -> str:
    """The hyperparameter search: every trial, best validation MAE first, the chosen marked."""
    esc = html.escape
    trials = tuning.get("trials") or []
    params = sorted({name for trial in trials for name in trial.get("params") or {}})
    table = markup.table(
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
                *(compact(trial.get("params", {}).get(p)) for p in params),
                cell("mae", trial.get("val_mae"), decimals),
                compact(trial["val_loss"]) if finite(trial.get("val_loss")) else "n/a",
                trial.get("epochs_run"),
            ]
            for trial in trials
        ],
        text=3,
        classes=["chosen" if trial.get("chosen") else "" for trial in trials],
    )
    models = sorted({str(trial.get("model")) for trial in trials})
    return (
        f"<h2>Search</h2>\n<p>{len(trials)} trial(s) of {esc(join(models) or 'no model')}, "
        "sorted by validation MAE; the configuration chosen for each model is marked ✓.</p>\n"
        f'<p class="note">{esc(SEARCH_NOTE)}</p>\n{table}'
    )


def sweeps_section(sweeps: Sequence[Mapping[str, Any]], files: str) -> str:
    """One figure per learning-rate sweep, each with its rule and suggested rate below it."""
    esc = html.escape
    parts = [
        "<h2>Learning-rate sweeps</h2>\n<p>The loss at each learning rate tried, the rates on a "
        "log scale; the dashed line marks the suggested rate.</p>"
    ]
    for sweep in sweeps:
        model, rule = sweep["model"], str(sweep.get("rule") or "").strip().rstrip(".")
        swept = (
            f", rates {compact(sweep['low'])} to {compact(sweep['high'])}"
            if finite(sweep.get("low")) and finite(sweep.get("high"))
            else ""
        )
        suggested = sweep.get("suggested")
        said = (
            f"suggested learning rate {compact(suggested)}"
            if finite(suggested)
            else "no rate suggested"
        )
        parts.append(
            markup.image(files, sweep.get("image"), f"loss against learning rate, {model}")
            + f'\n<p class="note">{esc(model)}{esc(swept)}: '
            + (f"{esc(rule)}; " if rule else "")
            + f"{esc(said)}.</p>"
        )
    return "\n".join(parts)
