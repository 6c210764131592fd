from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import freshcast.report
from freshcast import evaluation as ev
from freshcast import report
from freshcast.forecasts import accuracy_by_version, accuracy_over_time, score_history
from freshcast.report import (
    baseline_flags,
    best_epochs,
    page_head,
    render_forecast,
    render_run,
    run_summary,
    step_errors,
    write_forecast_plot,
    write_forecast_report,
    write_report,
)

RUN_ID = "manual__2025-01-01T00:00<&>"
EVIL = "<script>alert(1)</script>"
# MAE of each entry at step s is ERROR[name] * s (see _predictions); the leaderboard agrees.
ERROR = {
    "gru": 0.5,
    "lstm": 0.6,
    "tcn": 0.8,
    "persistence": 0.8,
    "ridge": 0.7,
    "seasonal_naive_24": 1.0,
}


def _scores():
    """Leaderboard inputs with hand-chosen MAEs (°C, data recorded to 0.1, so 2 decimals):
    gru beats every baseline; lstm loses to ridge; tcn ties persistence and loses to ridge;
    broken has no score."""
    mae = {
        "gru": 1.5,
        "lstm": 1.9,
        "tcn": 2.0,
        "broken": math.nan,
        "persistence": 2.0,
        "ridge": 1.8,
        "seasonal_naive_24": 2.5,
    }
    return {
        name: {
            "kind": "baseline"
            if name in ("persistence", "ridge", "seasonal_naive_24")
            else "model",
            "mae": value,
            "rmse": 2 * value,
            "mape": 3.0,
            "smape": 4.0,
            "mase": value / 2.5,
        }
        for name, value in mae.items()
    }


def _leaderboard():
    return ev.leaderboard(_scores(), metric="mae")


def _predictions(horizon=2, samples=12, names=tuple(ERROR)):
    """actual = 0, 1, 2, ...; each prediction errs by +-ERROR[name] * step, the sign
    alternating over time, so the MAE at step s is exactly ERROR[name] * s."""
    times = pd.date_range("2025-01-01", periods=samples, freq="h", tz="UTC")
    sign = np.where(np.arange(samples) % 2 == 0, 1.0, -1.0)
    frames = []
    for name in names:
        for step in range(1, horizon + 1):
            actual = np.arange(samples, dtype=np.float64) + step - 1
            frames.append(
                pd.DataFrame(
                    {
                        "time": times + pd.Timedelta(hours=step - 1),
                        "step": step,
                        "name": name,
                        "actual": actual,
                        "prediction": actual + sign * ERROR[name] * step,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def _histories():
    return {
        "gru": {"loss": [1.0, 0.5, 0.3, 0.2], "val_loss": [1.2, 0.7, 0.6, 0.65]},
        "lstm": {"loss": [0.9, -0.1], "val_loss": [1.0, 0.8]},  # not all positive: linear axis
    }


def _decision(**changes):
    decision = {
        "promote": False,
        "metric": "mae",
        "candidate": "gru",
        "reasons": ["gru mae 1.5 beats persistence 2", f"odd reason {EVIL}", "refuse"],
        "scores": {
            "persistence": {"role": "baseline", "mae": 2.0, "rmse": 4.0, "mase": 0.8},
            "gru": {"role": "candidate", "mae": 1.5, "rmse": 3.0, "mase": 0.6, "smape": 4.0},
            "champion_v1": {"role": "champion", "mae": 1.25, "rmse": 2.5, "mase": 0.5},
        },
        "current_champion": 1,
    }
    return {**decision, **changes}


def _write(out_dir, **changes):
    kwargs = dict(
        pipeline="demo",
        run_id=RUN_ID,
        metric="mae",
        leaderboard=_leaderboard(),
        histories=_histories(),
        predictions=_predictions(),
        target="temp",
        unit="°C",
        decimals=1,
        decision=_decision(),
        zoom=10,
    )
    return write_report(out_dir, **{**kwargs, **changes})


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("report")
    return out_dir, _write(out_dir)


# ------------------------------------------------------------------------- the run's figures


def test_skill_is_the_mae_reduction_against_persistence():
    summary = run_summary(
        pipeline="p",
        run_id="r",
        metric="mae",
        leaderboard=_leaderboard(),
        histories={},
        predictions=_predictions(),
    )
    skill = {row["name"]: row["skill"] for row in summary["leaderboard"]}
    # 100 * (1 - mae / 2.0), persistence's MAE being 2.0
    assert skill["gru"] == pytest.approx(25.0)
    assert skill["ridge"] == pytest.approx(10.0)
    assert skill["lstm"] == pytest.approx(5.0)
    assert skill["persistence"] == 0.0 and skill["tcn"] == 0.0
    assert skill["seasonal_naive_24"] == pytest.approx(-25.0)
    assert skill["broken"] is None  # NaN stored as null
    assert summary["reference"] == "persistence" and summary["best"] == "gru"


def test_without_persistence_there_is_no_skill_column():
    board = ev.leaderboard({k: v for k, v in _scores().items() if k != "persistence"}, metric="mae")
    summary = run_summary(
        pipeline="p", run_id="r", metric="mae", leaderboard=board, histories={},
        predictions=_predictions(horizon=1),
    )  # fmt: skip
    assert summary["reference"] is None
    assert all(row["skill"] is None for row in summary["leaderboard"])
    assert "skill vs persistence" not in render_run(summary)


def test_flags_name_every_model_that_does_not_beat_a_baseline():
    flags = baseline_flags(_leaderboard(), "mae", unit="°C", decimals=1)
    assert flags == [
        "lstm loses to ridge on mae: 1.90 °C vs 1.80 °C.",
        "tcn does not beat ridge and persistence on mae: 2.00 °C vs 1.80 °C and 2.00 °C.",
        "broken has no mae (n/a), so it loses to every baseline.",
    ]
    # MASE is a ratio: no unit, three decimals.
    assert baseline_flags(_leaderboard(), "mase", unit="°C", decimals=1)[0] == (
        "lstm loses to ridge on mase: 0.760 vs 0.720."
    )


def test_no_flags_when_every_model_beats_every_baseline_and_the_page_says_so():
    scores = {k: v for k, v in _scores().items() if k in ("gru", "persistence", "ridge")}
    board = ev.leaderboard(scores, metric="mae")
    assert baseline_flags(board, "mae") == []
    summary = run_summary(
        pipeline="p", run_id="r", metric="mae", leaderboard=board, histories={},
        predictions=_predictions(horizon=1, names=("gru", "persistence", "ridge")),
    )  # fmt: skip
    assert "Every model beats every baseline on mae." in render_run(summary)
    # Without baselines there is nothing to beat: no sentence either way.
    only = ev.leaderboard({"gru": scores["gru"]}, metric="mae")
    assert baseline_flags(only, "mae") == []
    summary = run_summary(
        pipeline="p", run_id="r", metric="mae", leaderboard=only, histories={},
        predictions=_predictions(horizon=1, names=("gru",)),
    )  # fmt: skip
    assert "Every model beats" not in render_run(summary)


def test_step_errors_are_the_mae_of_each_step():
    errors = step_errors(_predictions(horizon=3))
    assert set(errors) == set(ERROR)
    for name, error in ERROR.items():
        np.testing.assert_allclose(errors[name], [error, 2 * error, 3 * error])
    # Equal rows per step: their mean is the MAE over every step, as evaluation scores it.
    frame = _predictions(horizon=3)
    gru = frame[frame["name"] == "gru"]
    assert np.mean(errors["gru"]) == pytest.approx(ev.mae(gru["actual"], gru["prediction"]))


def test_step_errors_keep_a_missing_value_visible():
    frame = _predictions(horizon=2, names=("gru", "ridge"))
    frame.loc[(frame["name"] == "gru") & (frame["step"] == 2), "actual"] = np.nan
    frame = frame[~((frame["name"] == "ridge") & (frame["step"] == 1))]  # no rows at step 1
    errors = step_errors(frame)
    assert errors["gru"][0] == pytest.approx(0.5) and math.isnan(errors["gru"][1])
    assert math.isnan(errors["ridge"][0]) and errors["ridge"][1] == pytest.approx(1.4)


def test_best_epoch_is_the_first_lowest_validation_loss():
    training = best_epochs(
        {
            "a": {"loss": [1.0, 0.5, 0.3, 0.2], "val_loss": [1.2, 0.7, 0.6, 0.65]},
            "tie": {"loss": [1, 1, 1], "val_loss": [1.0, 0.5, 0.5]},
            "nan": {"loss": [1, 1, 1], "val_loss": [math.nan, 0.9, math.nan]},
            "diverged": {"loss": [1, 2], "val_loss": [math.nan, math.inf]},
            "no_val": {"loss": [1.0, 0.5]},
        }
    )
    assert training["a"] == {"epochs_run": 4, "best_epoch": 3, "best_val_loss": 0.6}
    assert training["tie"]["best_epoch"] == 2
    assert training["nan"]["best_epoch"] == 2 and training["nan"]["best_val_loss"] == 0.9
    assert training["diverged"] == {"epochs_run": 2, "best_epoch": None, "best_val_loss": None}
    assert training["no_val"] == {"epochs_run": 2, "best_epoch": None, "best_val_loss": None}


def test_loss_curves_mark_the_best_epoch():
    fig = report._loss_figure(_histories(), best_epochs(_histories()))
    gru, lstm = fig.axes
    assert "best epoch 3" in gru.get_legend_handles_labels()[1]
    assert "best epoch 2" in lstm.get_legend_handles_labels()[1]
    vertical = [line for line in gru.lines if list(line.get_xdata()) == [3, 3]]
    assert len(vertical) == 1 and vertical[0].get_linestyle() == ":"
    marker = next(line for line in gru.lines if line.get_label() == "best epoch 3")
    assert list(marker.get_ydata()) == [0.6]  # on the validation curve
    assert gru.get_yscale() == "log" and lstm.get_yscale() == "linear"


def test_a_long_test_split_gets_a_zoomed_panel_of_its_last_steps():
    predictions = _predictions(samples=12)  # 12 step-1 points
    one = report._forecast_figure(predictions, ["gru"], target="temp", unit="°C", zoom=12)
    two = report._forecast_figure(predictions, ["gru"], target="temp", unit="°C", zoom=10)
    assert len(one.axes) == 1 and len(two.axes) == 2
    whole, last = two.axes
    assert len(whole.lines[0].get_xdata()) == 12 and len(last.lines[0].get_xdata()) == 10
    np.testing.assert_array_equal(last.lines[0].get_ydata(), np.arange(2, 12))  # the actuals
    assert last.get_title() == "last 10 steps"
    assert whole.get_ylabel() == "temp (°C)" and last.get_ylabel() == "temp (°C)"
    assert [t.get_text() for t in two.legends[0].get_texts()] == ["actual", "gru"]


# ---------------------------------------------------------------------------- the run's page


def test_writes_the_files_and_summary_index_last(written):
    out_dir, paths = written
    assert set(paths) == {"html", "summary", "loss", "forecast", "leaderboard", "steps"}
    assert {p.name for p in out_dir.iterdir()} == {
        "index.html",
        "summary.json",
        "loss.png",
        "forecast.png",
        "leaderboard.png",
        "steps.png",
    }  # and no temp file left behind
    for key in ("loss", "forecast", "leaderboard", "steps"):
        assert paths[key].parent == out_dir
        assert paths[key].read_bytes().startswith(b"\x89PNG")


def test_index_is_written_last(tmp_path, monkeypatch):
    order = []

    def spy(name, where):  # `where`: the position of the path among the arguments
        real = getattr(report, name)

        def record(*args):
            order.append(Path(args[where]).name)
            return real(*args)

        return record

    for name, where in (("_save", 1), ("write_json", 0), ("write_bytes", 0)):
        monkeypatch.setattr(report, name, spy(name, where))
    _write(tmp_path, decision=None)
    assert order[-2:] == ["summary.json", "index.html"]
    assert sorted(order[:-2]) == ["forecast.png", "leaderboard.png", "loss.png", "steps.png"]


def test_summary_is_strict_json_and_renders_the_same_page(written):
    _, paths = written
    text = paths["summary"].read_text(encoding="utf-8")

    def refuse(constant):
        raise AssertionError(f"non-strict JSON constant {constant}")

    summary = json.loads(text, parse_constant=refuse)
    assert set(summary) == {
        "title", "pipeline", "run_id", "target", "unit", "decimals", "metric", "horizon",
        "test_points", "zoom", "shown", "leaderboard", "best", "reference", "flags",
        "per_step", "training", "gate", "images",
    }  # fmt: skip
    assert summary["title"] == f"demo: run {RUN_ID}"
    assert (summary["horizon"], summary["test_points"], summary["zoom"]) == (2, 12, 10)
    assert summary["shown"] == ["gru", "ridge", "lstm"]
    assert summary["per_step"]["gru"] == pytest.approx([0.5, 1.0])
    assert summary["training"]["gru"]["best_epoch"] == 3
    assert summary["images"] == {
        "forecast": "forecast.png",
        "leaderboard": "leaderboard.png",
        "loss": "loss.png",
        "steps": "steps.png",
    }
    # JSON sorts the keys of per_step and training; the page keeps the leaderboard's order.
    page = paths["html"].read_text(encoding="utf-8")
    assert page == page_head(summary["title"]) + render_run(summary) + "</body>\n</html>\n"


def test_page_shows_units_figures_flags_and_sections_in_order(written):
    _, paths = written
    page = paths["html"].read_text(encoding="utf-8")
    for header in ("MAE (°C)", "RMSE (°C)", "MAPE (%)", "sMAPE (%)", "MASE"):
        assert f"<th>{header}</th>" in page
    assert "<th>skill vs persistence (%)</th>" in page
    # gru: MAE 1.50, RMSE 3.00, MAPE 3.0, sMAPE 4.0, MASE 0.600, skill 25.0; best row marked.
    assert (
        '<tr class="best"><td class="name">1</td><td class="name">gru</td>'
        '<td class="name">model</td><td>1.50</td><td>3.00</td><td>3.0</td><td>4.0</td>'
        "<td>0.600</td><td>25.0</td></tr>"
    ) in page
    assert page.count('class="best"') == 1
    assert "<td>n/a</td>" in page  # broken's figures
    assert "<li>lstm loses to ridge on mae: 1.90 °C vs 1.80 °C.</li>" in page
    # Per-step table: MAE at steps 1 and 2, the lowest of each in bold.
    assert '<th class="name">name</th><th>step 1</th><th>step 2</th>' in page
    assert '<td class="name">gru</td><td class="low">0.50</td><td class="low">1.00</td>' in page
    assert '<td class="name">ridge</td><td>0.70</td><td>1.40</td>' in page
    # Training table: epochs run and best epoch.
    assert '<td class="name">gru</td><td>4</td><td>3</td>' in page
    assert "the last 10 steps enlarged" in page
    assert "MASE &lt; 1" in page
    sections = ["Gate: refused: champion v1 stays", "Leaderboard, ranked by MAE",
                "Error per forecast step", "Training", "Forecasts on the test split"]  # fmt: skip
    positions = [page.index(s) for s in sections]
    assert positions == sorted(positions)
    for image in ("loss.png", "forecast.png", "leaderboard.png", "steps.png"):
        assert f'src="{image}"' in page


def test_gate_section_shows_its_figures_with_units(written):
    _, paths = written
    page = paths["html"].read_text(encoding="utf-8")
    gate = page[page.index("Gate:") : page.index("Leaderboard, ranked")]
    assert "<th>MAE (°C)</th><th>RMSE (°C)</th><th>MASE</th><th>sMAPE (%)</th>" in gate
    # Sorted by the gate's metric, lowest first; a figure the gate lacks is n/a.
    rows = [gate.index(f'<td class="name">{n}</td>') for n in ("champion_v1", "gru", "persistence")]
    assert rows == sorted(rows)
    assert (
        '<td class="name">champion_v1</td><td class="name">champion</td>'
        "<td>1.25</td><td>2.50</td><td>0.500</td><td>n/a</td>"
    ) in gate
    promoted = run_summary(
        pipeline="p", run_id="r", metric="mae", leaderboard=_leaderboard(), histories={},
        predictions=_predictions(horizon=1), decision=_decision(promote=True), promoted=2,
    )  # fmt: skip
    assert "Gate: promoted: gru is now champion v2" in render_run(promoted)


def test_every_shown_string_is_escaped():
    scores = _scores()
    scores[EVIL] = scores.pop("lstm")
    decision = _decision(candidate=EVIL)
    decision["scores"][EVIL] = decision["scores"].pop("gru")
    summary = run_summary(
        pipeline=EVIL,
        run_id=EVIL,
        metric="mae",
        leaderboard=ev.leaderboard(scores, metric="mae"),
        histories={EVIL: {"loss": [1.0], "val_loss": [1.0]}},
        predictions=_predictions(names=("gru",)).replace({"name": {"gru": EVIL}}),
        target=EVIL,
        unit=EVIL,
        decision=decision,
    )
    page = page_head(summary["title"]) + render_run(summary, files='x"/')
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert 'src="x&quot;/loss.png"' in page


def test_files_prefixes_every_image_and_horizon_one_has_no_step_section(tmp_path):
    paths = _write(tmp_path, predictions=_predictions(horizon=1), decision=None)
    assert "steps" not in paths
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert summary["per_step"] == {} and "steps" not in summary["images"]
    fragment = render_run(summary, files="/freshcast/runs/demo/r1/")
    assert fragment.count('src="/freshcast/runs/demo/r1/') == 3
    assert "Error per forecast step" not in fragment and "Gate:" not in fragment
    assert "<html" not in fragment and "<body" not in fragment


def test_rewrite_replaces_files_and_leaves_no_stale_or_temp_files(tmp_path):
    _write(tmp_path)
    assert (tmp_path / "steps.png").exists()
    _write(tmp_path, run_id="second", predictions=_predictions(horizon=1), histories={}, top=1)
    assert {p.name for p in tmp_path.iterdir()} == {
        "index.html",
        "summary.json",
        "loss.png",
        "forecast.png",
        "leaderboard.png",
    }
    assert "second" in (tmp_path / "index.html").read_text(encoding="utf-8")


def test_errors(tmp_path):
    kwargs = dict(pipeline="demo", run_id="r", leaderboard=_leaderboard(), histories={})
    with pytest.raises(ValueError, match=r"lacks columns \['actual'\]"):
        write_report(
            tmp_path, metric="mae", predictions=_predictions().drop(columns="actual"), **kwargs
        )
    with pytest.raises(ValueError, match="Received: metric='r2'"):
        write_report(tmp_path, metric="r2", predictions=_predictions(), **kwargs)
    for bad in ({"top": 0}, {"zoom": 0}, {"decimals": -1}):
        name, value = next(iter(bad.items()))
        with pytest.raises(ValueError, match=f"Received: {name}={value}"):
            write_report(tmp_path, metric="mae", predictions=_predictions(), **bad, **kwargs)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------ the forecast report


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


def test_does_not_import_tensorflow_or_pyplot():
    # A fresh interpreter: other tests in this session may have loaded them already.
    code = (
        "import sys, freshcast.report, freshcast.evaluation; "
        "loaded = {'tensorflow', 'keras', 'matplotlib.pyplot'} & set(sys.modules); "
        "sys.exit(str(loaded) if loaded else 0)"
    )
    include = str(Path(freshcast.report.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": include}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
