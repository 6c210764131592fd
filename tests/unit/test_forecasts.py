"""The forecast history: appending runs, scoring against late actuals, accuracy per version."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from freshcast.forecasts import (
    HISTORY_COLUMNS,
    accuracy_by_version,
    accuracy_over_time,
    append_history,
    drift_check,
    read_history,
    score_history,
)


def rows(run_id: str, made: str, values: list[float], version: int) -> pd.DataFrame:
    made_at = pd.Timestamp(made, tz="UTC")
    times = pd.date_range(made_at + pd.Timedelta(days=1), periods=len(values), freq="D")
    return pd.DataFrame(
        {
            "run_id": run_id,
            "made_at": made_at,
            "origin": made_at,
            "time": times,
            "step": np.arange(1, len(values) + 1),
            "target": "load",
            "forecast": values,
            "model_version": version,
            "model_name": "lstm",
        }
    )


def test_empty_history_has_the_columns(tmp_path):
    assert tuple(read_history(tmp_path / "none.parquet").columns) == HISTORY_COLUMNS


def test_append_adds_runs_and_a_rerun_replaces_its_rows(tmp_path):
    path = tmp_path / "history.parquet"
    append_history(path, rows("r1", "2024-01-01", [1.0, 2.0], 1))
    append_history(path, rows("r2", "2024-01-02", [3.0, 4.0], 1))
    history = append_history(path, rows("r1", "2024-01-01", [1.5, 2.5], 1))  # a retry of r1
    assert len(history) == 4
    assert history["forecast"].tolist() == [1.5, 2.5, 3.0, 4.0]  # ordered by made_at
    assert read_history(path)["run_id"].tolist() == ["r1", "r1", "r2", "r2"]


def test_append_refuses_rows_of_two_runs(tmp_path):
    both = pd.concat([rows("a", "2024-01-01", [1.0], 1), rows("b", "2024-01-02", [1.0], 1)])
    with pytest.raises(ValueError, match="one run's forecast"):
        append_history(tmp_path / "h.parquet", both)


def test_scoring_uses_only_actuals_that_have_arrived():
    history = pd.concat(
        [rows("r1", "2024-01-01", [11.0, 13.0], 1), rows("r2", "2024-01-02", [12.0, 9.0], 2)],
        ignore_index=True,
    )
    # Actuals up to 3 January: r1's two steps (2nd, 3rd) and r2's first step (3rd) are known.
    actuals = pd.Series(
        [10.0, 12.0, 10.0],
        index=pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC"),
        name="load",
    )
    scored = score_history(history, actuals)
    assert scored["actual"].tolist()[:3] == [12.0, 10.0, 10.0]
    assert np.isnan(scored["actual"].iloc[3])  # 4 January has not happened yet
    assert scored["error"].tolist()[:3] == [-1.0, 3.0, 2.0]

    by_version = accuracy_by_version(scored)
    assert by_version["model_version"].tolist() == [1, 2]
    assert by_version["scored_steps"].tolist() == [2, 1]
    assert by_version["mae"].tolist() == pytest.approx([2.0, 2.0])
    assert by_version["rmse"].tolist() == pytest.approx([np.sqrt((1 + 9) / 2), 2.0])
    assert by_version["bias"].tolist() == pytest.approx([1.0, 2.0])

    over_time = accuracy_over_time(scored)
    assert over_time["run_id"].tolist() == ["r1", "r2"]
    assert over_time["mae"].tolist() == pytest.approx([2.0, 2.0])
    assert over_time["scored_steps"].tolist() == [2, 1]


def test_nothing_scored_before_actuals_arrive():
    history = rows("r1", "2024-01-01", [1.0], 1)
    actuals = pd.Series([5.0], index=pd.DatetimeIndex([pd.Timestamp("2024-01-01", tz="UTC")]))
    scored = score_history(history, actuals)
    assert scored["actual"].isna().all()
    assert accuracy_by_version(scored).empty


def test_bounds_are_kept_in_the_history_and_scored_as_live_coverage(tmp_path):
    path = tmp_path / "history.parquet"
    append_history(path, rows("old", "2024-01-01", [10.0, 10.0], 1))  # served before intervals
    bounded = rows("new", "2024-01-03", [10.0, 10.0], 2)
    bounded["lower_80"], bounded["upper_80"] = [9.0, 9.0], [11.0, 11.0]
    history = append_history(path, bounded)
    assert history["lower_80"].isna().tolist() == [True, True, False, False]
    actuals = pd.Series(
        [10.5, 20.0, 10.5, 12.0], index=pd.date_range("2024-01-02", periods=4, freq="D", tz="UTC")
    )
    by_version = accuracy_by_version(score_history(history, actuals))
    assert by_version["coverage_80"].isna().tolist() == [True, False]  # v1 served no bounds
    assert by_version["coverage_80"].iloc[1] == 0.5  # 10.5 inside 9..11, 12.0 outside


def _scored(errors: list[float], *, version: int = 1) -> pd.DataFrame:
    history = rows("r", "2024-01-01", [10.0 + e for e in errors], version)
    actuals = pd.Series(10.0, index=pd.DatetimeIndex(history["time"]))
    return score_history(history, actuals)


def test_drift_needs_enough_scored_steps_and_a_ratio_above_the_threshold():
    settings = {"ratio": 1.5, "min_steps": 3, "recent": 4}
    few = drift_check(_scored([5.0, 5.0]), version=1, test_mae=1.0, **settings)
    assert few["drift"] is False and "fewer than drift.min_steps (3)" in few["reason"]
    calm = drift_check(_scored([1.0, -1.2, 1.4]), version=1, test_mae=1.0, **settings)
    assert calm["drift"] is False and calm["ratio"] == pytest.approx(1.2)
    assert "is within the drift ratio 1.5" in calm["reason"]
    # Only the latest `recent` steps count: an old miss is forgotten, a new one is not.
    moved = drift_check(_scored([9.0, 0.1, 0.1, 2.0, 2.0, 2.0, 2.0]), version=1, test_mae=1.0,
                        **settings)  # fmt: skip
    assert moved["drift"] is True and moved["steps"] == 4 and moved["live_mae"] == 2.0
    assert moved["actuals_end"].startswith("2024-01-08")
    assert "exceeds the drift ratio 1.5" in moved["reason"]


def test_drift_judges_only_the_champions_own_forecasts():
    scored = pd.concat([_scored([9.0] * 5, version=1), _scored([0.5] * 5, version=2)])
    assert (
        drift_check(scored, version=2, test_mae=1.0, ratio=1.5, min_steps=3, recent=50)["drift"]
        is False
    )
    assert (
        drift_check(scored, version=1, test_mae=1.0, ratio=1.5, min_steps=3, recent=50)["drift"]
        is True
    )
    nothing = drift_check(scored, version=2, test_mae=None, ratio=1.5, min_steps=3, recent=50)
    assert nothing["drift"] is False and "no positive test MAE" in nothing["reason"]
