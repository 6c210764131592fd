"""The forecast report: the newest forecast with its intervals, the drift check, the forecast
history against the actuals, accuracy and interval coverage per model version and over time.
`forecast_summary` is the data, `render_forecast` the page, `write_forecast_report` the folder
(figure, `summary.json`, then `index.html`); `write_forecast_plot` draws one forecast alone.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from freshcast import display
from freshcast.artifacts import write_bytes, write_json
from freshcast.forecasts import interval_keys
from freshcast.report import markup
from freshcast.report.figures import history_figure, save
from freshcast.report.formatting import (
    as_float,
    axis_label,
    cell,
    compact,
    join,
    plain,
    sorted_levels,
)

LATEST_COLUMNS = ("time", "step", "forecast", "model_version")
FORECAST_FILES = {"history": "history.png", "summary": "summary.json", "html": "index.html"}
OVER_TIME_ROWS = 30  # newest forecast runs listed; summary.json holds them all


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
    axis = axis_label(summary["target"], summary["unit"])
    recent = actuals.iloc[-summary["tail"] :]
    save(history_figure(fields["scored"], recent, fields["latest"], axis), paths["history"])
    write_json(paths["summary"], summary)
    page = markup.page_head(summary["title"]) + render_forecast(summary) + markup.PAGE_END
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
    levels = sorted_levels(interval_keys(latest))
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
    return plain(summary)


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
    latest = markup.table(
        [
            "time (UTC)",
            "step",
            axis_label("forecast", unit),
            *(axis_label(label, unit) for _, label in bounds),
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
        f'<p class="note">The {esc(join([f"{key}%" for key in levels]))} prediction '
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
        markup.image(
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
    levels = sorted_levels(
        list(
            dict.fromkeys(
                k[len(prefix) :] for row in by_version for k in row if k.startswith(prefix)
            )
        )
    )
    versions = markup.table(
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
                *(cell(m, row.get(m), decimals) for m in metrics),
                *(
                    display.number(as_float(row.get(prefix + key)) * 100, display.PERCENT_DECIMALS)
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
    per_run = markup.table(
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
                cell("mae", row.get("mae"), decimals),
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
        + f" the drift ratio {compact(drift.get('threshold'))}"
    )
    return said + ("; a retraining is signalled." if drifted else ".")


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
    figure = history_figure(no_history, actuals.iloc[-tail:], latest, axis_label(target, unit))
    save(figure, Path(path))
    return Path(path)


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
