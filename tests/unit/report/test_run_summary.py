from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from freshcast import evaluation as ev
from freshcast.report import baseline_flags, best_epochs, render_run, run_summary, step_errors
from tests.unit.report.inputs import (
    ERROR,
    ensemble_board,
    entry_scores,
    leaderboard_rows,
    step_predictions,
)


def test_skill_is_the_mae_reduction_against_persistence():
    summary = run_summary(
        pipeline="p",
        run_id="r",
        metric="mae",
        leaderboard=leaderboard_rows(),
        histories={},
        predictions=step_predictions(),
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
    board = ev.leaderboard(
        {k: v for k, v in entry_scores().items() if k != "persistence"}, metric="mae"
    )
    summary = run_summary(
        pipeline="p", run_id="r", metric="mae", leaderboard=board, histories={},
        predictions=step_predictions(horizon=1),
    )  # fmt: skip
    assert summary["reference"] is None
    assert all(row["skill"] is None for row in summary["leaderboard"])
    assert "skill vs persistence" not in render_run(summary)


def test_flags_name_every_model_that_does_not_beat_a_baseline():
    flags = baseline_flags(leaderboard_rows(), "mae", unit="°C", decimals=1)
    assert flags == [
        "lstm loses to ridge on mae: 1.90 °C vs 1.80 °C.",
        "tcn does not beat ridge and persistence on mae: 2.00 °C vs 1.80 °C and 2.00 °C.",
        "broken has no mae (n/a), so it loses to every baseline.",
    ]
    # MASE is a ratio: no unit, three decimals.
    assert baseline_flags(leaderboard_rows(), "mase", unit="°C", decimals=1)[0] == (
        "lstm loses to ridge on mase: 0.760 vs 0.720."
    )


def test_no_flags_when_every_model_beats_every_baseline_and_the_page_says_so():
    scores = {k: v for k, v in entry_scores().items() if k in ("gru", "persistence", "ridge")}
    board = ev.leaderboard(scores, metric="mae")
    assert baseline_flags(board, "mae") == []
    summary = run_summary(
        pipeline="p", run_id="r", metric="mae", leaderboard=board, histories={},
        predictions=step_predictions(horizon=1, names=("gru", "persistence", "ridge")),
    )  # fmt: skip
    assert "Every model beats every baseline on mae." in render_run(summary)
    # Without baselines there is nothing to beat: no sentence either way.
    only = ev.leaderboard({"gru": scores["gru"]}, metric="mae")
    assert baseline_flags(only, "mae") == []
    summary = run_summary(
        pipeline="p", run_id="r", metric="mae", leaderboard=only, histories={},
        predictions=step_predictions(horizon=1, names=("gru",)),
    )  # fmt: skip
    assert "Every model beats" not in render_run(summary)


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
        predictions=step_predictions(horizon=1, names=("ridge",)),
    )  # fmt: skip
    assert summary["best"] == "ridge"  # a seed ranked first is not the best entry


def test_step_errors_are_the_mae_of_each_step():
    errors = step_errors(step_predictions(horizon=3))
    assert set(errors) == set(ERROR)
    for name, error in ERROR.items():
        np.testing.assert_allclose(errors[name], [error, 2 * error, 3 * error])
    # Equal rows per step: their mean is the MAE over every step, as evaluation scores it.
    frame = step_predictions(horizon=3)
    gru = frame[frame["name"] == "gru"]
    assert np.mean(errors["gru"]) == pytest.approx(ev.mae(gru["actual"], gru["prediction"]))


def test_step_errors_keep_a_missing_value_visible():
    frame = step_predictions(horizon=2, names=("gru", "ridge"))
    frame.loc[(frame["name"] == "gru") & (frame["step"] == 2), "actual"] = np.nan
    frame = frame[~((frame["name"] == "ridge") & (frame["step"] == 1))]  # no rows at step 1
    errors = step_errors(frame)
    assert errors["gru"][0] == pytest.approx(0.5) and math.isnan(errors["gru"][1])
    assert math.isnan(errors["ridge"][0]) and errors["ridge"][1] == pytest.approx(1.4)


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


def test_a_row_without_lists_gets_its_per_step_errors_from_the_predictions():
    board = ensemble_board()
    for row in board:
        if row["name"] == "gru":
            del row["mae_by_step"], row["rmse_by_step"]
    summary = run_summary(
        pipeline="p", run_id="r", metric="mae", leaderboard=board, histories={},
        predictions=step_predictions(names=("gru", "lstm")).replace({"name": {"lstm": "lstm-s1"}}),
    )  # fmt: skip
    assert summary["per_step"]["gru"] == pytest.approx([0.5, 1.0])  # ERROR["gru"] * step
    assert summary["per_step_rmse"]["gru"] == pytest.approx([0.5, 1.0])
    assert "lstm-s1" not in summary["per_step"]  # a seed, even with predictions


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
