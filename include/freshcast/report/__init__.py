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

The modules, each importing only those listed before it:
- `formatting`: values as text and strict JSON, shared by the summaries, pages and figures;
- `markup`: the HTML pieces both pages are built from (stylesheet, page head, tables, images);
- `figures`: the matplotlib figures;
- `run_records`, `run_summary`: what the run report shows, as data (`run_summary`);
- `run_record_sections`, `run_page`: the run report as HTML (`render_run`);
- `run_report`: `write_report`, the run report's folder;
- `forecast`: the forecast report, its data, page and folder (`write_forecast_report`).

Everything other modules use is importable from `freshcast.report` itself.
"""

from __future__ import annotations

from freshcast.report.forecast import (
    FORECAST_FILES,
    LATEST_COLUMNS,
    OVER_TIME_ROWS,
    drift_text,
    forecast_summary,
    render_forecast,
    write_forecast_plot,
    write_forecast_report,
)
from freshcast.report.markup import PAGE_END, STYLESHEET, page_head
from freshcast.report.run_page import render_run
from freshcast.report.run_record_sections import SEARCH_NOTE
from freshcast.report.run_records import GATE_METRICS, SWEEP_FILE, TRIGGERS, started_by
from freshcast.report.run_report import write_report
from freshcast.report.run_summary import (
    EXPLAIN,
    FILES,
    LEADERBOARD_METRICS,
    PREDICTION_COLUMNS,
    REFERENCE,
    ROW_KEYS,
    STEP_METRICS,
    ZOOM,
    baseline_flags,
    best_epochs,
    run_summary,
    step_errors,
)

__all__ = [
    "EXPLAIN",
    "FILES",
    "FORECAST_FILES",
    "GATE_METRICS",
    "LATEST_COLUMNS",
    "LEADERBOARD_METRICS",
    "OVER_TIME_ROWS",
    "PAGE_END",
    "PREDICTION_COLUMNS",
    "REFERENCE",
    "ROW_KEYS",
    "SEARCH_NOTE",
    "STEP_METRICS",
    "STYLESHEET",
    "SWEEP_FILE",
    "TRIGGERS",
    "ZOOM",
    "baseline_flags",
    "best_epochs",
    "drift_text",
    "forecast_summary",
    "page_head",
    "render_forecast",
    "render_run",
    "run_summary",
    "started_by",
    "step_errors",
    "write_forecast_plot",
    "write_forecast_report",
    "write_report",
]
