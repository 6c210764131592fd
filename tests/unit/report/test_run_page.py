from __future__ import annotations

import html
import json

from freshcast import evaluation as ev
from freshcast import report
from freshcast.report import page_head, render_run, run_summary
from tests.unit.report.inputs import (
    EVIL,
    ensemble_page,
    entry_scores,
    gate_decision,
    intervals_page,
    lr_sweep,
    step_predictions,
)


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


def test_every_shown_string_is_escaped():
    scores = entry_scores()
    scores[EVIL] = scores.pop("lstm")
    decision = gate_decision(candidate=EVIL)
    decision["scores"][EVIL] = decision["scores"].pop("gru")
    summary = run_summary(
        pipeline=EVIL,
        run_id=EVIL,
        metric="mae",
        leaderboard=ev.leaderboard(scores, metric="mae"),
        histories={EVIL: {"loss": [1.0], "val_loss": [1.0]}},
        predictions=step_predictions(names=("gru",)).replace({"name": {"gru": EVIL}}),
        target=EVIL,
        unit=EVIL,
        decision=decision,
        tuning={"trials": [{"name": EVIL, "model": EVIL, "params": {EVIL: EVIL}, "val_mae": 1.0}]},
        sweeps={f"../{EVIL}": lr_sweep(rule=EVIL)},
        explain={"mase": EVIL},
    )
    page = page_head(summary["title"]) + render_run(summary, files='x"/')
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert 'src="x&quot;/loss.png"' in page
    # The sweep's file is named from safe characters only.
    assert summary["sweeps"][0]["image"] == "lr_sweep_script_alert_1_script.png"


def test_seeds_sit_under_their_ensemble_with_its_spread_and_ridge_shows_its_alpha(tmp_path):
    _, summary, page = ensemble_page(tmp_path)
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
    _, summary, page = ensemble_page(tmp_path, explain=explain)
    assert summary["explain"] == {**report.EXPLAIN, **explain}
    notes = page[page.index('<ul class="notes">') : page.index("Error per forecast step")]
    assert "<li><strong>MASE</strong>: MAE over the one-step naive MAE &lt;b&gt;</li>" in notes
    assert "<li><strong>Per-step errors</strong>: per step, 1 = first</li>" in notes
    for term, key in (("MASE (seasonal)", "mase_seasonal"), ("skill vs persistence", "skill"),
                      ("± (spread)", "spread")):  # fmt: skip
        line = f"<li><strong>{term}</strong>: {html.escape(report.EXPLAIN[key])}</li>"
        assert line in notes
    # A text that already names its term is not led by it again.
    _, _, page = ensemble_page(tmp_path, explain={"mase": "MASE: below 1 beats naive"})
    assert "<li>MASE: below 1 beats naive</li>" in page


def test_per_step_tables_take_the_rows_lists_and_leave_seeds_out(tmp_path):
    paths, summary, page = ensemble_page(tmp_path)
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


def test_the_intervals_table_lists_each_entrys_levels_coverage_and_width(tmp_path):
    summary, page, _ = intervals_page(tmp_path)
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
