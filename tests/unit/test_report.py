from __future__ import annotations

import html
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
        "per_step", "per_step_rmse", "training", "gate", "tuning", "sweeps", "intervals",
        "bands", "backtest", "explain", "images",
    }  # fmt: skip
    assert summary["title"] == f"demo: run {RUN_ID}"
    assert (summary["horizon"], summary["test_points"], summary["zoom"]) == (2, 12, 10)
    assert summary["shown"] == ["gru", "ridge", "lstm"]
    assert summary["per_step"]["gru"] == pytest.approx([0.5, 1.0])
    # Errors of +-0.5 and +-1.0: the RMSE per step equals the MAE.
    assert summary["per_step_rmse"]["gru"] == pytest.approx([0.5, 1.0])
    assert summary["tuning"] is None and summary["sweeps"] == []
    # Without intervals or a backtest in the leaderboard: none of their sections.
    assert summary["intervals"] == [] and summary["bands"] is None and summary["backtest"] is None
    assert summary["explain"] == report.EXPLAIN
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
        tuning={"trials": [{"name": EVIL, "model": EVIL, "params": {EVIL: EVIL}, "val_mae": 1.0}]},
        sweeps={f"../{EVIL}": _sweep(rule=EVIL)},
        explain={"mase": EVIL},
    )
    page = page_head(summary["title"]) + render_run(summary, files='x"/')
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert 'src="x&quot;/loss.png"' in page
    # The sweep's file is named from safe characters only.
    assert summary["sweeps"][0]["image"] == "lr_sweep_script_alert_1_script.png"


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


# ------------------------------------------- ensembles, seeds, per-step lists, search, sweeps


def _ensemble_board():
    """Ranked by MAE (°C, data to 0.1, so 2 decimals): the lstm ensemble of three seeds (spread
    0.05), its seeds scattered through the ranks, gru, ridge with its alpha, persistence. The
    per-step lists differ from what the predictions give, so the page must show these."""

    def row(rank, name, kind, mae, **extra):
        return {
            "rank": rank, "name": name, "kind": kind, "mae": mae, "rmse": 2 * mae,
            "mape": 3.0, "smape": 4.0, "mase": mae / 2.5, "mase_seasonal": mae / 2.0, **extra,
        }  # fmt: skip

    seeds = ["lstm-s1", "lstm-s2", "lstm-s3"]
    return [
        row(1, "lstm", "ensemble", 1.4, members=seeds, spread=0.05,
            mae_by_step=[1.2, 1.6], rmse_by_step=[1.5, 2.5]),
        row(2, "lstm-s2", "seed", 1.45, of="lstm", seed=43,
            mae_by_step=[0.1, 0.1], rmse_by_step=[0.1, 0.1]),
        row(3, "gru", "model", 1.5, mae_by_step=[1.25, 1.75], rmse_by_step=[1.5, 2.1]),
        row(4, "lstm-s1", "seed", 1.5, of="lstm", seed=42),
        row(5, "ridge", "baseline", 1.8, alpha=10.0,
            mae_by_step=[1.5, 2.1], rmse_by_step=[1.9, 2.7]),
        row(6, "lstm-s3", "seed", 1.55, of="lstm", seed=44),
        row(7, "persistence", "baseline", 2.0, mae_by_step=[1.0, 3.0], rmse_by_step=[1.25, None]),
    ]  # fmt: skip


def _tuning():
    """Four trials of two models; gru-t1 is marked chosen by `models` alone, gru-t2 failed."""
    return {
        "metric": "mae",
        "models": {
            "lstm": {"chosen": "lstm-t2", "params": {"learning_rate": 0.003}, "val_mae": 1.1},
            "gru": {"chosen": "gru-t1", "params": {"learning_rate": 0.01}, "val_mae": 1.3},
        },
        "trials": [
            {"name": "lstm-t1", "model": "lstm", "params": {"learning_rate": 0.03, "units": 16,
             "dropout": 0.0}, "val_mae": 1.6, "val_loss": 0.05, "epochs_run": 8, "chosen": False},
            {"name": "gru-t2", "model": "gru", "params": {"learning_rate": 0.1, "units": 128},
             "val_mae": None, "val_loss": None, "epochs_run": 2, "chosen": False},
            {"name": "lstm-t2", "model": "lstm", "params": {"learning_rate": 0.003, "units": 32,
             "dropout": 0.1}, "val_mae": 1.1, "val_loss": 0.01234, "epochs_run": 12,
             "chosen": True},
            {"name": "gru-t1", "model": "gru", "params": {"learning_rate": 0.01, "units": 64},
             "val_mae": 1.3, "val_loss": 0.02, "epochs_run": 10},
        ],
    }  # fmt: skip


def _sweep(**changes):
    sweep = {
        "rates": [1e-4, 1e-3, 1e-2, 1e-1],
        "losses": [0.9, 0.5, None, 3.0],
        "suggested": 0.001,
        "rule": "steepest descent / 10",
        "low": 1e-4,
        "high": 0.1,
    }
    return {**sweep, **changes}


def _ensemble_page(tmp_path, **changes):
    kwargs = dict(
        leaderboard=_ensemble_board(),
        predictions=_predictions(names=("gru", "ridge", "persistence")),
        histories={},
        decision=None,
    )
    paths = _write(tmp_path, **{**kwargs, **changes})
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    return paths, summary, paths["html"].read_text(encoding="utf-8")


def test_seeds_sit_under_their_ensemble_with_its_spread_and_ridge_shows_its_alpha(tmp_path):
    _, summary, page = _ensemble_page(tmp_path)
    assert summary["best"] == "lstm"
    assert summary["shown"] == ["lstm", "gru", "ridge"]  # seeds are not plotted on their own
    board = page[page.index("Leaderboard, ranked") : page.index("Error per forecast step")]
    assert "<th>MASE</th><th>MASE (seasonal)</th><th>skill vs persistence (%)</th>" in board
    # lstm: MAE 1.40 ± 0.05, RMSE 2.80, MAPE 3.0, sMAPE 4.0, MASE 0.560, seasonal 0.700, skill 30.
    assert (
        '<tr class="best"><td class="name">1</td><td class="name">lstm</td>'
        '<td class="name">ensemble</td><td>1.40 ± 0.05</td><td>2.80</td><td>3.0</td>'
        "<td>4.0</td><td>0.560</td><td>0.700</td><td>30.0</td></tr>"
    ) in board
    # The seeds follow their ensemble in seed order, indented and muted, then gru.
    order = ["lstm</td>", "lstm-s1 (seed 42)", "lstm-s2 (seed 43)", "lstm-s3 (seed 44)",
             ">gru</td>", "ridge (alpha 10)", ">persistence</td>"]  # fmt: skip
    positions = [board.index(s) for s in order]
    assert positions == sorted(positions)
    assert (
        '<tr class="seed"><td class="name">2</td><td class="name seed">lstm-s2 (seed 43)</td>'
        '<td class="name">seed</td><td>1.45</td>'
    ) in board
    assert board.count(" ± ") == 1  # the spread is the ensemble's alone
    assert '<tr class="baseline"><td class="name">5</td><td class="name">ridge (alpha 10)</td>' in (
        board
    )


def test_explanations_under_the_leaderboard_come_from_explain_or_the_defaults(tmp_path):
    explain = {"mase": "MAE over the one-step naive MAE <b>", "per_step": "per step, 1 = first"}
    _, summary, page = _ensemble_page(tmp_path, explain=explain)
    assert summary["explain"] == {**report.EXPLAIN, **explain}
    notes = page[page.index('<ul class="notes">') : page.index("Error per forecast step")]
    assert "<li><strong>MASE</strong>: MAE over the one-step naive MAE &lt;b&gt;</li>" in notes
    assert "<li><strong>Per-step errors</strong>: per step, 1 = first</li>" in notes
    for term, key in (("MASE (seasonal)", "mase_seasonal"), ("skill vs persistence", "skill"),
                      ("± (spread)", "spread")):  # fmt: skip
        line = f"<li><strong>{term}</strong>: {html.escape(report.EXPLAIN[key])}</li>"
        assert line in notes
    # A text that already names its term is not led by it again.
    _, _, page = _ensemble_page(tmp_path, explain={"mase": "MASE: below 1 beats naive"})
    assert "<li>MASE: below 1 beats naive</li>" in page


def test_per_step_tables_take_the_rows_lists_and_leave_seeds_out(tmp_path):
    paths, summary, page = _ensemble_page(tmp_path)
    assert set(summary["per_step"]) == {"lstm", "gru", "ridge", "persistence"}
    assert summary["per_step"]["gru"] == [1.25, 1.75]  # the row's list, not the predictions'
    assert summary["per_step_rmse"]["persistence"] == [1.25, None]
    section = page[page.index("Error per forecast step") : page.index("<h2>Training")]
    assert "MAE (°C) and RMSE (°C) of each model, ensemble and baseline" in section
    assert "seed" not in section
    mae = section[section.index("<h3>MAE (°C) per step</h3>") : section.index("<h3>RMSE")]
    rmse = section[section.index("<h3>RMSE (°C) per step</h3>") :]
    assert '<th class="name">name</th><th>step 1</th><th>step 2</th>' in mae
    assert '<td class="name">lstm</td><td>1.20</td><td class="low">1.60</td>' in mae
    assert '<td class="name">gru</td><td>1.25</td><td>1.75</td>' in mae
    assert '<td class="name">ridge (alpha 10)</td><td>1.50</td><td>2.10</td>' in mae
    assert '<td class="name">persistence</td><td class="low">1.00</td><td>3.00</td>' in mae
    assert '<td class="name">lstm</td><td>1.50</td><td>2.50</td>' in rmse
    assert '<td class="name">gru</td><td>1.50</td><td class="low">2.10</td>' in rmse
    assert '<td class="name">persistence</td><td class="low">1.25</td><td>n/a</td>' in rmse
    assert 'src="steps.png"' in section and paths["steps"].stat().st_size > 0
    positions = [mae.index(n) for n in (">lstm<", ">gru<", ">ridge", ">persistence<")]
    assert positions == sorted(positions)


def test_a_row_without_lists_gets_its_per_step_errors_from_the_predictions():
    board = _ensemble_board()
    for row in board:
        if row["name"] == "gru":
            del row["mae_by_step"], row["rmse_by_step"]
    summary = run_summary(
        pipeline="p", run_id="r", metric="mae", leaderboard=board, histories={},
        predictions=_predictions(names=("gru", "lstm")).replace({"name": {"lstm": "lstm-s1"}}),
    )  # fmt: skip
    assert summary["per_step"]["gru"] == pytest.approx([0.5, 1.0])  # ERROR["gru"] * step
    assert summary["per_step_rmse"]["gru"] == pytest.approx([0.5, 1.0])
    assert "lstm-s1" not in summary["per_step"]  # a seed, even with predictions


def test_step_errors_give_the_rmse_per_step_too():
    frame = pd.DataFrame(
        {
            "step": [1, 1, 2, 2],
            "name": "m",
            "actual": [0.0, 0.0, 0.0, 0.0],
            "prediction": [1.0, -3.0, 2.0, 2.0],
        }
    )
    assert step_errors(frame)["m"] == pytest.approx([2.0, 2.0])
    assert step_errors(frame, metric="rmse")["m"] == pytest.approx([math.sqrt(5.0), 2.0])
    with pytest.raises(ValueError, match="Received: metric='mape'"):
        step_errors(frame, metric="mape")


def test_an_ensemble_is_judged_against_the_baselines_and_a_seed_is_not():
    board = [
        {"rank": 1, "name": "lstm-s1", "kind": "seed", "mae": 1.0, "of": "lstm", "seed": 42},
        {"rank": 2, "name": "ridge", "kind": "baseline", "mae": 1.8, "alpha": 1.0},
        {"rank": 3, "name": "lstm", "kind": "ensemble", "mae": 2.1, "spread": 0.5},
    ]
    assert baseline_flags(board, "mae", unit="°C", decimals=1) == [
        "lstm loses to ridge on mae: 2.10 °C vs 1.80 °C."
    ]
    summary = run_summary(
        pipeline="p", run_id="r", metric="mae", leaderboard=board, histories={},
        predictions=_predictions(horizon=1, names=("ridge",)),
    )  # fmt: skip
    assert summary["best"] == "ridge"  # a seed ranked first is not the best entry


def test_leaderboard_chart_names_seeds_and_alpha_and_labels_the_spread(tmp_path):
    _, summary, _ = _ensemble_page(tmp_path)
    fig = report._leaderboard_figure(summary["leaderboard"], "mae", "°C", 1)
    (ax,) = fig.axes
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names[:2] == ["lstm", "lstm-s2 (seed 43)"] and "ridge (alpha 10)" in names
    assert " 1.40 ± 0.05" in [t.get_text() for t in ax.texts]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["model", "ensemble", "seed", "baseline"]


def test_search_lists_trials_by_validation_mae_with_the_chosen_marked(tmp_path):
    _, summary, page = _ensemble_page(tmp_path, tuning=_tuning())
    trials = summary["tuning"]["trials"]
    assert [t["name"] for t in trials] == ["lstm-t2", "gru-t1", "lstm-t1", "gru-t2"]
    assert [t["chosen"] for t in trials] == [True, True, False, False]
    search = page[page.index("<h2>Search</h2>") : page.index("<h2>Training")]
    assert (
        "Trials are scored on the validation split only; the test split scores only the "
        "chosen configuration."
    ) in search
    assert (
        '<th class="name">trial</th><th class="name">model</th><th class="name">chosen</th>'
        "<th>dropout</th><th>learning_rate</th><th>units</th><th>validation MAE (°C)</th>"
        "<th>validation loss</th><th>epochs run</th>"
    ) in search
    assert (
        '<tr class="chosen"><td class="name">lstm-t2</td><td class="name">lstm</td>'
        '<td class="name">✓</td><td>0.1</td><td>0.003</td><td>32</td><td>1.10</td>'
        "<td>0.0123</td><td>12</td></tr>"
    ) in search
    assert (  # gru has no dropout: a blank cell
        '<tr class="chosen"><td class="name">gru-t1</td><td class="name">gru</td>'
        '<td class="name">✓</td><td></td><td>0.01</td><td>64</td><td>1.30</td>'
    ) in search
    assert (
        '<tr><td class="name">gru-t2</td><td class="name">gru</td><td class="name"></td>'
        "<td></td><td>0.1</td><td>128</td><td>n/a</td><td>n/a</td><td>2</td></tr>"
    ) in search
    assert search.count('class="chosen"') == 2
    assert page.index("Error per forecast step") < page.index("<h2>Search</h2>")


def test_a_sweep_is_drawn_to_its_png_with_the_suggested_rate(tmp_path):
    paths, summary, page = _ensemble_page(tmp_path, sweeps={"lstm": _sweep()})
    png = tmp_path / "lr_sweep_lstm.png"
    assert paths["sweep_lstm"] == png
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 1000
    (sweep,) = summary["sweeps"]
    assert sweep["image"] == "lr_sweep_lstm.png" and sweep["losses"][2] is None
    section = page[page.index("<h2>Learning-rate sweeps</h2>") : page.index("<h2>Training")]
    assert 'src="lr_sweep_lstm.png"' in section
    assert (
        '<p class="note">lstm, rates 0.0001 to 0.1: steepest descent / 10; '
        "suggested learning rate 0.001.</p>"
    ) in section

    fig = report._sweep_figure(sweep)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"  # losses within 10x
    loss = next(line for line in ax.lines if line.get_label() == "loss")
    np.testing.assert_allclose(loss.get_xdata(), [1e-4, 1e-3, 1e-1])  # the None loss dropped
    (marker,) = [line for line in ax.lines if line.get_label() == "suggested 0.001"]
    assert list(marker.get_xdata()) == [0.001, 0.001] and marker.get_linestyle() == "--"
    assert " suggested 0.001" in [t.get_text() for t in ax.texts]

    # Without a suggestion the line says so; a rewrite without sweeps leaves no stale PNG.
    _, _, page = _ensemble_page(tmp_path, sweeps={"lstm": _sweep(suggested=None)})
    assert "no rate suggested" in page
    _ensemble_page(tmp_path)
    assert not png.exists()
    with pytest.raises(ValueError, match="Received: 4 rates, 3 losses"):
        _ensemble_page(tmp_path, sweeps={"lstm": _sweep(losses=[1.0, 2.0, 3.0])})


def test_an_older_summary_without_the_new_keys_still_renders(written):
    _, paths = written
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    for key in ("per_step_rmse", "tuning", "sweeps", "explain", "intervals", "bands", "backtest"):
        del summary[key]
    del summary["gate"]["trigger"], summary["gate"]["basis"]
    for row in summary["leaderboard"]:
        del row["mase_seasonal"]
    page = render_run(summary)
    assert "MASE (seasonal)" not in page and "RMSE (°C) per step" not in page
    assert "<h3>MAE (°C) per step</h3>" in page
    assert '<td class="name">gru</td><td class="low">0.50</td><td class="low">1.00</td>' in page
    assert "Search" not in page and "Learning-rate sweeps" not in page
    assert "Prediction intervals" not in page and "Backtest" not in page
    assert "Run started by" not in page
    assert html.escape(report.EXPLAIN["mase"]) in page


# ---------------------------------------------------- prediction intervals, backtest, trigger


def _interval(level, coverage, width, windows=47):
    radius = None if width is None else width / 2
    return {
        "level": level,
        "coverage": coverage,
        "coverage_by_step": [coverage, coverage],
        "width": width,
        "radius_by_step": [radius, radius],
        "served_radius_by_step": [radius, radius],
        "calibration_windows": windows,
    }


def _interval_scores():
    """gru and ridge with 80% and 95% intervals (95% of ridge too wide to calibrate: n/a),
    persistence without; lstm's 95% covers less than its level."""
    scores = _scores()
    scores["gru"]["intervals"] = {
        "80": _interval(0.8, 0.8125, 3.07),
        "95": _interval(0.95, 0.9583, 5.5),
    }
    scores["lstm"]["intervals"] = {"95": _interval(0.95, 0.75, 4.0)}
    scores["ridge"]["intervals"] = {
        "80": _interval(0.8, 0.79, 3.3),
        "95": _interval(0.95, 1.0, None),
    }
    return scores


def _banded_predictions(**kwargs):
    """`_predictions` with bounds: gru's forecast -+ 1 (80%) and -+ 2 (95%); NaN elsewhere."""
    frame = _predictions(**kwargs)
    gru = (frame["name"] == "gru").to_numpy()
    for key, radius in (("80", 1.0), ("95", 2.0)):
        frame[f"lower_{key}"] = np.where(gru, frame["prediction"] - radius, np.nan)
        frame[f"upper_{key}"] = np.where(gru, frame["prediction"] + radius, np.nan)
    return frame


def _intervals_page(tmp_path, **changes):
    kwargs = dict(
        leaderboard=ev.leaderboard(_interval_scores(), metric="mae"),
        predictions=_banded_predictions(),
    )
    figures = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report, "_save", lambda fig, path: figures.setdefault(Path(path).name, fig))
        paths = _write(tmp_path, **{**kwargs, **changes})
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    return summary, paths["html"].read_text(encoding="utf-8"), figures


def _bands_of(ax):
    """The filled areas of an axes (fill_between's PolyCollections), by label."""
    from matplotlib.collections import PolyCollection

    return {c.get_label(): c for c in ax.collections if isinstance(c, PolyCollection)}


def test_the_intervals_table_lists_each_entrys_levels_coverage_and_width(tmp_path):
    summary, page, _ = _intervals_page(tmp_path)
    assert [e["name"] for e in summary["intervals"]] == ["gru", "ridge", "lstm"]
    assert [level["key"] for level in summary["intervals"][0]["levels"]] == ["80", "95"]
    section = page[page.index("<h2>Prediction intervals</h2>") : page.index("Error per forecast")]
    assert (
        '<th class="name">name</th><th class="name">kind</th><th>level (%)</th>'
        "<th>test coverage (%)</th><th>mean width (°C)</th><th>calibration windows</th>"
    ) in section
    # gru: 80% covers 81.2% with a mean width 3.07 °C (two decimals for 0.1-degree data).
    assert (
        '<tr class="model"><td class="name">gru</td><td class="name">model</td><td>80</td>'
        "<td>81.2</td><td>3.07</td><td>47</td></tr>"
    ) in section
    assert "<td>95</td><td>95.8</td><td>5.50</td>" in section
    assert '<td class="name">ridge</td><td class="name">baseline</td><td>95</td>' in section
    assert "<td>100.0</td><td>n/a</td>" in section  # a radius too wide to calibrate
    assert "persistence" not in section  # no intervals, no row
    for key, term in (("coverage", "coverage"), ("width", "width")):
        assert f"<li><strong>{term}</strong>: {html.escape(report.EXPLAIN[key])}</li>" in section
    assert page.index("Leaderboard, ranked") < page.index("<h2>Prediction intervals</h2>")


def test_the_test_forecast_figure_shades_the_best_models_intervals(tmp_path):
    summary, page, figures = _intervals_page(tmp_path)
    assert summary["bands"] == {"name": "gru", "levels": ["80", "95"]}
    assert "Shaded: the 80% and 95% prediction interval(s) of gru, lighter for wider." in page
    whole, last = figures["forecast.png"].axes  # zoom=10 of 12 steps: two panels
    for ax in (whole, last):
        bands = _bands_of(ax)
        assert set(bands) == {"80% interval of gru", "95% interval of gru"}
        assert bands["95% interval of gru"].get_alpha() < bands["80% interval of gru"].get_alpha()
    # The band's edges are gru's step-1 forecast -+ 2 (95%).
    gru = summary["bands"]["name"]
    frame = _banded_predictions()
    step1 = frame[(frame["name"] == gru) & (frame["step"] == 1)]
    band = _bands_of(whole)["95% interval of gru"]
    ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
    assert ys.min() == pytest.approx(step1["lower_95"].min())
    assert ys.max() == pytest.approx(step1["upper_95"].max())
    legend = [t.get_text() for t in figures["forecast.png"].legends[0].get_texts()]
    assert "80% interval of gru" in legend and "95% interval of gru" in legend


def test_no_bands_without_bound_columns_or_finite_bounds(tmp_path):
    summary, page, figures = _intervals_page(tmp_path, predictions=_predictions())
    assert summary["bands"] is None and "Shaded:" not in page
    assert all(not _bands_of(ax) for ax in figures["forecast.png"].axes)
    # The best model's bounds all NaN (e.g. a diverged model): nothing shaded either.
    frame = _banded_predictions()
    frame.loc[frame["name"] == "gru", ["lower_80", "upper_80", "lower_95", "upper_95"]] = np.nan
    summary, _, _ = _intervals_page(tmp_path, predictions=frame)
    assert summary["bands"] is None


def _backtest(folds, mean, spread):
    return {"metric": "mae", "folds": folds, "mean": {"mae": mean, "rmse": 2 * mean},
            "spread": spread}  # fmt: skip


def _backtest_record():
    return {
        "folds": [
            {"fold": 1, "train_rows": 100, "val_rows": 20, "rows": 10,
             "start": "2025-01-01T00:00:00+00:00", "end": "2025-01-10T00:00:00+00:00",
             "test_windows": 9, "done": True},
            {"fold": 2, "train_rows": 110, "val_rows": 20, "rows": 10,
             "start": "2025-01-11T00:00:00+00:00", "end": "2025-01-20T00:00:00+00:00",
             "test_windows": 9, "done": True},
            {"fold": 3, "train_rows": 120, "val_rows": 20, "rows": 12, "start": None,
             "end": None, "test_windows": None, "done": False},
        ],
        "gate": True,
        "metric": "mae",
    }  # fmt: skip


def _backtest_board():
    scores = _scores()
    scores["gru"]["backtest"] = _backtest([1.4, 1.6, None], 1.5, 0.1414)
    scores["lstm"]["backtest"] = _backtest([1.8, 2.0, None], 1.9, 0.1414)
    scores["persistence"]["backtest"] = _backtest([2.1, 1.9, None], 2.0, 0.1414)
    return ev.leaderboard(scores, metric="mae")


def _backtest_decision(**changes):
    decision = _decision(trigger="drift", basis="backtest", backtest=_backtest_record())
    decision["scores"]["champion_v1"] = {"role": "champion", "mae": 1.7, "rmse": 3.4,
                                         "folds": [1.5, 1.9, None]}  # fmt: skip
    return {**decision, **changes}


def test_the_backtest_table_has_each_fold_the_mean_and_spread_and_the_champion(tmp_path):
    _, summary, page = _ensemble_page(
        tmp_path, leaderboard=_backtest_board(), decision=_backtest_decision()
    )
    backtest = summary["backtest"]
    assert backtest["basis"] == "backtest" and backtest["metric"] == "mae"
    # Ranked by the mean; the champion (its forecasts of the blocks) among them.
    assert [r["name"] for r in backtest["rows"]] == ["gru", "champion_v1", "lstm", "persistence"]
    assert backtest["rows"][1]["spread"] == pytest.approx(math.sqrt(0.08))
    section = page[page.index("<h2>Backtest") : page.index("Error per forecast step")]
    assert "<h2>Backtest: MAE (°C) on 3 folds</h2>" in section
    assert (
        "<th>fold 1</th><th>fold 2</th><th>fold 3</th><th>mean MAE (°C)</th><th>spread</th>"
    ) in section
    assert (
        '<td class="name">gru</td><td class="name">model</td><td class="low">1.40</td>'
        '<td class="low">1.60</td><td>n/a</td><td class="low">1.50</td><td>0.14</td>'
    ) in section
    assert (
        '<tr><td class="name">champion_v1</td><td class="name">champion</td><td>1.50</td>'
        "<td>1.90</td><td>n/a</td><td>1.70</td><td>0.28</td></tr>"
    ) in section
    assert '<td class="name">persistence</td><td class="name">baseline</td>' in section
    assert "The gate decided on this backtest: it compared the mean mae over the folds" in section
    assert (
        "fold 1: 2025-01-01 to 2025-01-10 (10 rows); fold 2: 2025-01-11 to 2025-01-20 "
        "(10 rows); fold 3 did not finish."
    ) in section
    assert html.escape(report.EXPLAIN["backtest"]) in section
    gate = page[page.index("Gate:") : page.index("Leaderboard, ranked")]
    assert "each entry's mean over the backtest's folds" in gate


def test_a_backtest_beside_a_test_split_decision_says_so_and_takes_the_folds_from_its_record(
    tmp_path,
):
    decision = _decision(basis="test")  # the folds' dates come from the `backtest` record
    _, summary, page = _ensemble_page(
        tmp_path, leaderboard=_backtest_board(), decision=decision, backtest=_backtest_record()
    )
    assert [r["name"] for r in summary["backtest"]["rows"]] == ["gru", "lstm", "persistence"]
    assert "The gate decided on the test split; the backtest is shown beside it." in page
    assert "fold 2: 2025-01-11 to 2025-01-20 (10 rows)" in page
    # Without a decision or a record: the folds are numbered from the rows, without dates.
    _, summary, page = _ensemble_page(tmp_path, leaderboard=_backtest_board())
    assert [f["fold"] for f in summary["backtest"]["folds"]] == [1, 2, 3]
    assert "<th>fold 3</th>" in page and "2025-01-11" not in page


def test_the_gate_says_what_started_the_run(tmp_path):
    _, summary, page = _ensemble_page(tmp_path, decision=_decision(trigger="drift"))
    assert summary["gate"]["trigger"] == "drift"
    gate = page[page.index("Gate:") : page.index("Leaderboard, ranked")]
    assert (
        "Run started by: drift (the champion&#x27;s live error drifted past its drift ratio)."
    ) in gate
    assert report.started_by("schedule") == "schedule (the training DAG's schedule)"
    assert report.started_by("something new") == "something new"
    assert report.started_by(None) is None
    _, _, page = _ensemble_page(tmp_path, decision=_decision())  # recorded before triggers
    assert "Run started by" not in page


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
        mp.setattr(report, "_save", lambda fig, path: figures.setdefault(Path(path).name, fig))
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
    assert set(_bands_of(ax)) == {"80% interval"}  # the newest forecast's band


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
    monkeypatch.setattr(report, "_save", lambda fig, path: figures.setdefault("fig", fig))
    write_forecast_plot(tmp_path / "f.png", actuals=inputs["actuals"], latest=latest, target="t")
    (ax,) = figures["fig"].axes
    bands = _bands_of(ax)
    assert set(bands) == {"80% interval", "95% interval"}
    assert bands["95% interval"].get_alpha() < bands["80% interval"].get_alpha()
    figures.clear()
    write_forecast_plot(
        tmp_path / "f.png", actuals=inputs["actuals"], latest=_forecast_inputs()["latest"],
        target="t",
    )  # fmt: skip
    assert not _bands_of(figures["fig"].axes[0])  # an old forecast without bounds


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
