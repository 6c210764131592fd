from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from freshcast import report
from freshcast.forecasts import accuracy_by_version, accuracy_over_time, score_history
from freshcast.report import forecast as forecast_report
from freshcast.report import page_head, render_forecast, write_forecast_plot, write_forecast_report
from tests.unit.report.inputs import EVIL, bands_of


def _forecast_inputs(*, arrived=True):
    """Two forecast runs of two steps; the actuals reach 03:00 (or stop before any forecast).

    v1 (f1, made 00:00): 10.0 at 01:00, 12.0 at 02:00 vs actuals 11.0, 12.5 -> errors -1.0, -0.5
    v2 (f2, made 02:00): 13.0 at 03:00, 15.0 at 04:00 vs actual 14.0, none -> error -1.0
    """
    t = pd.date_range("2025-01-01", periods=5, freq="h", tz="UTC")
    history = pd.DataFrame(
        {
            "run_id": ["f1", "f1", "f2", "f2"],
            "made_at": [t[0], t[0], t[2], t[2]],
            "origin": [t[0], t[0], t[2], t[2]],
            "time": [t[1], t[2], t[3], t[4]],
            "step": [1, 2, 1, 2],
            "target": "temp",
            "forecast": [10.0, 12.0, 13.0, 15.0],
            "model_version": [1, 1, 2, 2],
            "model_name": ["lstm", "lstm", "gru", "gru"],
        }
    )
    values = [9.0, 11.0, 12.5, 14.0] if arrived else [9.0]
    actuals = pd.Series(values, index=t[: len(values)], name="temp")
    scored = score_history(history, actuals)
    return dict(
        target="temp",
        scored=scored,
        actuals=actuals,
        by_version=accuracy_by_version(scored),
        over_time=accuracy_over_time(scored),
        latest=history[history["run_id"] == "f2"].reset_index(drop=True),
    )


def test_forecast_report_files_summary_and_page(tmp_path):
    paths = write_forecast_report(
        tmp_path, pipeline="demo", run_id="f2", unit="°C", decimals=1, **_forecast_inputs()
    )
    assert set(paths) == {"html", "summary", "history"}
    assert {p.name for p in tmp_path.iterdir()} == {"index.html", "summary.json", "history.png"}
    assert paths["history"].read_bytes().startswith(b"\x89PNG")
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert {
        "pipeline", "run_id", "target", "unit", "decimals", "latest", "by_version",
        "over_time", "scored_steps", "images",
    } <= set(summary)  # fmt: skip
    assert summary["title"] == "demo: forecasts of temp"
    assert summary["scored_steps"] == 3 and summary["forecasts"] == 2
    assert summary["latest"] == [
        {"time": "2025-01-01T03:00:00+00:00", "step": 1, "forecast": 13.0, "model_version": 2},
        {"time": "2025-01-01T04:00:00+00:00", "step": 2, "forecast": 15.0, "model_version": 2},
    ]
    v1, v2 = summary["by_version"]
    assert v1["mae"] == pytest.approx(0.75) and v1["bias"] == pytest.approx(-0.75)
    assert v1["rmse"] == pytest.approx(math.sqrt((1.0 + 0.25) / 2))
    assert v2["mae"] == pytest.approx(1.0) and v2["scored_steps"] == 1

    page = paths["html"].read_text(encoding="utf-8")
    assert page == page_head(summary["title"]) + render_forecast(summary) + "</body>\n</html>\n"
    assert "<h1>demo: forecasts of temp</h1>" in page
    assert "<th>forecast (°C)</th>" in page
    assert "<td>2025-01-01 03:00</td><td>1</td><td>13.0</td><td>v2</td>" in page
    assert "Accuracy per model version" in page
    assert "<th>MAE (°C)</th><th>RMSE (°C)</th><th>bias (°C)</th>" in page
    # v1: MAE 0.75, RMSE 0.79, bias -0.75, two decimals for 0.1-degree data.
    assert "<td>v1</td><td>lstm</td><td>1</td><td>2</td>" in page
    assert "<td>0.75</td><td>0.79</td><td>-0.75</td>" in page
    # Over time, newest first: f2 (MAE 1.00 over 1 step) before f1 (0.75 over 2).
    assert page.index("<td>f2</td>") < page.index("<td>f1</td>")
    assert "No actuals have arrived yet" not in page
    assert 'src="history.png"' in page


def test_forecast_report_before_any_actual_arrives_says_so(tmp_path):
    paths = write_forecast_report(
        tmp_path, pipeline="demo", run_id="f2", **_forecast_inputs(arrived=False)
    )
    page = paths["html"].read_text(encoding="utf-8")
    assert (
        "No actuals have arrived yet: the first forecast is for 2025-01-01 01:00 UTC; "
        "accuracy appears here once the data reaches it."
    ) in page
    assert "Accuracy per model version" not in page and "Accuracy over time" not in page
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert summary["scored_steps"] == 0
    assert summary["by_version"] == [] and summary["over_time"] == []
    assert summary["first_forecast"] == "2025-01-01T01:00:00+00:00"


def test_forecast_page_escapes_and_prefixes_files():
    inputs = _forecast_inputs()
    inputs["latest"] = inputs["latest"].assign(model_name=EVIL)
    inputs.pop("actuals")
    summary = report.forecast_summary(pipeline=EVIL, run_id=EVIL, unit=EVIL, **inputs)
    summary["target"] = EVIL
    page = page_head(EVIL) + render_forecast(summary, files="/files/")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'src="/files/history.png"' in page


def test_forecast_errors(tmp_path):
    inputs = _forecast_inputs()
    with pytest.raises(ValueError, match="Received: 0 rows"):
        write_forecast_report(
            tmp_path, pipeline="p", run_id="r", **{**inputs, "latest": inputs["latest"][:0]}
        )
    with pytest.raises(ValueError, match="Received: tail=0"):
        write_forecast_report(tmp_path, pipeline="p", run_id="r", tail=0, **inputs)
    assert list(tmp_path.iterdir()) == []


def test_forecast_plot_is_a_png(tmp_path):
    inputs = _forecast_inputs()
    path = write_forecast_plot(
        tmp_path / "forecast.png",
        actuals=inputs["actuals"],
        latest=inputs["latest"],
        target="temp",
        unit="°C",
    )
    assert path.read_bytes().startswith(b"\x89PNG")


def _with_intervals(inputs):
    """`_forecast_inputs` with 80% bounds served with v2's forecast (f2) only: v1's forecasts
    were made before intervals existed. f2's 03:00 forecast 13.0 [12.0, 14.5] holds the actual
    14.0."""
    history = inputs["scored"].drop(columns=["actual", "error", "abs_error"])
    f2 = (history["run_id"] == "f2").to_numpy()
    history = history.assign(
        lower_80=np.where(f2, history["forecast"] - 1.0, np.nan),
        upper_80=np.where(f2, history["forecast"] + 1.5, np.nan),
    )
    scored = score_history(history, inputs["actuals"])
    return {
        **inputs,
        "scored": scored,
        "by_version": accuracy_by_version(scored),
        "latest": history[history["run_id"] == "f2"].reset_index(drop=True),
    }


DRIFT = {
    "drift": False, "version": 2, "live_mae": 2.1, "test_mae": 1.75, "threshold": 1.5,
    "steps": 50, "ratio": 1.2, "actuals_end": "2025-01-01T03:00:00+00:00",
    "reason": "v2's live MAE over its latest 50 scored steps is 2.1, 1.20 x its test MAE 1.75",
}  # fmt: skip


def test_the_forecast_report_shows_bounds_coverage_and_the_drift_check(tmp_path):
    inputs = _with_intervals(_forecast_inputs())
    figures = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            forecast_report, "save", lambda fig, path: figures.setdefault(Path(path).name, fig)
        )
        paths = write_forecast_report(
            tmp_path, pipeline="demo", run_id="f2", unit="°C", decimals=1, drift=DRIFT, **inputs
        )
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert summary["levels"] == ["80"] and summary["drift"] == DRIFT
    assert summary["latest"][0]["lower_80"] == 12.0 and summary["latest"][0]["upper_80"] == 14.5
    assert summary["by_version"][0]["coverage_80"] is None  # v1 had no bounds
    assert summary["by_version"][1]["coverage_80"] == 1.0

    page = paths["html"].read_text(encoding="utf-8")
    assert (
        "<th>forecast (°C)</th><th>80% lower (°C)</th><th>80% upper (°C)</th><th>model version</th>"
    ) in page
    assert "<td>2025-01-01 03:00</td><td>1</td><td>13.0</td><td>12.0</td><td>14.5</td>" in page
    assert "The 80% prediction interval(s) served with the forecast" in page
    assert "<th>bias (°C)</th><th>80% interval coverage (%)</th>" in page
    assert "<td>-0.75</td><td>n/a</td>" in page and "<td>-1.00</td><td>100.0</td>" in page
    assert (
        '<p class="meta">Drift check: v2&#x27;s live MAE 2.10 °C over its latest 50 scored '
        "steps is 1.20 × its test MAE 1.75 °C: within the drift ratio 1.5.</p>"
    ) in page
    (ax,) = figures["history.png"].axes
    assert set(bands_of(ax)) == {"80% interval"}  # the newest forecast's band


def test_the_drift_line_says_a_drift_and_a_check_that_could_not_judge():
    drifted = {**DRIFT, "drift": True, "ratio": 1.6, "live_mae": 2.8}
    assert report.drift_text(drifted, unit="kW", decimals=0) == (
        "Drift check: v2's live MAE 2.8 kW over its latest 50 scored steps is 1.60 × its test "
        "MAE 1.8 kW: above the drift ratio 1.5; a retraining is signalled."
    )
    early = {**DRIFT, "ratio": None, "reason": "v2 has 3 scored forecast step(s): too few"}
    assert report.drift_text(early) == (
        "Drift check: not judged: v2 has 3 scored forecast step(s): too few."
    )
    assert report.drift_text(None) is None
    summary = report.forecast_summary(pipeline="p", run_id="r", drift=drifted, **{
        k: v for k, v in _forecast_inputs().items() if k != "actuals"})  # fmt: skip
    assert '<p class="bad">Drift check: v2' in render_forecast(summary)


def test_an_older_forecast_summary_without_levels_or_drift_still_renders(tmp_path):
    paths = write_forecast_report(tmp_path, pipeline="demo", run_id="f2", **_forecast_inputs())
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert summary["levels"] == [] and summary["drift"] is None
    del summary["levels"], summary["drift"]
    page = render_forecast(summary)
    assert "lower" not in page and "coverage" not in page and "Drift check" not in page


def test_the_forecast_plot_shades_the_served_intervals(tmp_path, monkeypatch):
    inputs = _with_intervals(_forecast_inputs())
    latest = inputs["latest"].assign(lower_95=inputs["latest"]["forecast"] - 3.0,
                                     upper_95=inputs["latest"]["forecast"] + 3.0)  # fmt: skip
    figures = {}
    monkeypatch.setattr(forecast_report, "save", lambda fig, path: figures.setdefault("fig", fig))
    write_forecast_plot(tmp_path / "f.png", actuals=inputs["actuals"], latest=latest, target="t")
    (ax,) = figures["fig"].axes
    bands = bands_of(ax)
    assert set(bands) == {"80% interval", "95% interval"}
    assert bands["95% interval"].get_alpha() < bands["80% interval"].get_alpha()
    figures.clear()
    write_forecast_plot(
        tmp_path / "f.png", actuals=inputs["actuals"], latest=_forecast_inputs()["latest"],
        target="t",
    )  # fmt: skip
    assert not bands_of(figures["fig"].axes[0])  # an old forecast without bounds
