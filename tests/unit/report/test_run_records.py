from __future__ import annotations

import html
import math

import numpy as np
import pytest

from freshcast import evaluation as ev
from freshcast import report
from freshcast.report import render_run, run_summary
from freshcast.report.figures import sweep_figure
from tests.unit.report.inputs import (
    ensemble_page,
    entry_scores,
    gate_decision,
    leaderboard_rows,
    lr_sweep,
    step_predictions,
)


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
        pipeline="p", run_id="r", metric="mae", leaderboard=leaderboard_rows(), histories={},
        predictions=step_predictions(horizon=1), decision=gate_decision(promote=True), promoted=2,
    )  # fmt: skip
    assert "Gate: promoted: gru is now champion v2" in render_run(promoted)


def test_the_gate_says_what_started_the_run(tmp_path):
    _, summary, page = ensemble_page(tmp_path, decision=gate_decision(trigger="drift"))
    assert summary["gate"]["trigger"] == "drift"
    gate = page[page.index("Gate:") : page.index("Leaderboard, ranked")]
    assert (
        "Run started by: drift (the champion&#x27;s live error drifted past its drift ratio)."
    ) in gate
    assert report.started_by("schedule") == "schedule (the training DAG's schedule)"
    assert report.started_by("something new") == "something new"
    assert report.started_by(None) is None
    _, _, page = ensemble_page(tmp_path, decision=gate_decision())  # recorded before triggers
    assert "Run started by" not in page


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
    scores = entry_scores()
    scores["gru"]["backtest"] = _backtest([1.4, 1.6, None], 1.5, 0.1414)
    scores["lstm"]["backtest"] = _backtest([1.8, 2.0, None], 1.9, 0.1414)
    scores["persistence"]["backtest"] = _backtest([2.1, 1.9, None], 2.0, 0.1414)
    return ev.leaderboard(scores, metric="mae")


def _backtest_decision(**changes):
    decision = gate_decision(trigger="drift", basis="backtest", backtest=_backtest_record())
    decision["scores"]["champion_v1"] = {"role": "champion", "mae": 1.7, "rmse": 3.4,
                                         "folds": [1.5, 1.9, None]}  # fmt: skip
    return {**decision, **changes}


def test_the_backtest_table_has_each_fold_the_mean_and_spread_and_the_champion(tmp_path):
    _, summary, page = ensemble_page(
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
    decision = gate_decision(basis="test")  # the folds' dates come from the `backtest` record
    _, summary, page = ensemble_page(
        tmp_path, leaderboard=_backtest_board(), decision=decision, backtest=_backtest_record()
    )
    assert [r["name"] for r in summary["backtest"]["rows"]] == ["gru", "lstm", "persistence"]
    assert "The gate decided on the test split; the backtest is shown beside it." in page
    assert "fold 2: 2025-01-11 to 2025-01-20 (10 rows)" in page
    # Without a decision or a record: the folds are numbered from the rows, without dates.
    _, summary, page = ensemble_page(tmp_path, leaderboard=_backtest_board())
    assert [f["fold"] for f in summary["backtest"]["folds"]] == [1, 2, 3]
    assert "<th>fold 3</th>" in page and "2025-01-11" not in page


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


def test_search_lists_trials_by_validation_mae_with_the_chosen_marked(tmp_path):
    _, summary, page = ensemble_page(tmp_path, tuning=_tuning())
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
    paths, summary, page = ensemble_page(tmp_path, sweeps={"lstm": lr_sweep()})
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

    fig = sweep_figure(sweep)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"  # losses within 10x
    loss = next(line for line in ax.lines if line.get_label() == "loss")
    np.testing.assert_allclose(loss.get_xdata(), [1e-4, 1e-3, 1e-1])  # the None loss dropped
    (marker,) = [line for line in ax.lines if line.get_label() == "suggested 0.001"]
    assert list(marker.get_xdata()) == [0.001, 0.001] and marker.get_linestyle() == "--"
    assert " suggested 0.001" in [t.get_text() for t in ax.texts]

    # Without a suggestion the line says so; a rewrite without sweeps leaves no stale PNG.
    _, _, page = ensemble_page(tmp_path, sweeps={"lstm": lr_sweep(suggested=None)})
    assert "no rate suggested" in page
    ensemble_page(tmp_path)
    assert not png.exists()
    with pytest.raises(ValueError, match="Received: 4 rates, 3 losses"):
        ensemble_page(tmp_path, sweeps={"lstm": lr_sweep(losses=[1.0, 2.0, 3.0])})
