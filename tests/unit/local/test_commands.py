"""What `make run`, `make rollback` and `make replay` print, without starting Airflow: the links
into the Airflow UI and the leaderboard and forecast lines."""

from __future__ import annotations

import re
from typing import Any

from freshcast.local import commands
from freshcast.local.config import Airflow
from freshcast.registry import Registry
from tests.helpers import write_tiny_pipeline

RUN_ID = "manual__2024-08-27T12:45:36.582898+00:00"
QUOTED = "manual__2024-08-27T12%3A45%3A36.582898%2B00%3A00"


def board_row(rank: int, name: str, kind: str, mae: float, rmse: float, mase: float) -> dict:
    return {
        "rank": rank,
        "name": name,
        "kind": kind,
        "mae": mae,
        "rmse": rmse,
        "mape": 9.87654,
        "smape": 8.76543,
        "mase": mase,
    }


BOARD = [
    board_row(1, "lstm", "model", 2.1712, 2.7011, 0.96712),
    board_row(2, "persistence", "baseline", 2.2531, 2.9288, 1.00412),
    board_row(3, "seasonal_naive_365", "baseline", 3.6432, 4.6471, 1.62333),
]


LEADERBOARD = """\
Leaderboard: test split, in the data's units, ranked by mae
  rank  name                kind      MAE (°C)  RMSE (°C)   MASE  skill vs persistence (%)
     1  lstm                model         2.17       2.70  0.967                       3.6
     2  persistence         baseline      2.25       2.93  1.004                       0.0
     3  seasonal_naive_365  baseline      3.64       4.65  1.623                     -61.7
"""


def test_leaderboard_rounds_to_the_data_and_puts_the_unit_in_the_header():
    text = commands.format_leaderboard(BOARD, "mae", unit="°C", decimals=1)
    assert text + "\n" == LEADERBOARD


def test_leaderboard_without_a_unit_shows_the_ranked_metric_too():
    lines = commands.format_leaderboard(BOARD, "smape", decimals=0).split("\n")
    assert lines[0].endswith("ranked by smape")
    header = re.split(r" {2,}", lines[1].strip())
    assert header[-3:] == ["MASE", "sMAPE (%)", "skill vs persistence (%)"]
    assert "(" not in lines[1].split("MASE")[0]  # no unit: plain MAE and RMSE
    assert lines[2].split()[3:] == ["2.2", "2.7", "0.967", "8.8", "3.6"]


def test_leaderboard_without_persistence_or_with_a_missing_figure_says_n_a():
    board = [board_row(1, "gru", "model", 1.0, float("nan"), 0.5)]
    row = commands.format_leaderboard(board, "mase").split("\n")[2]
    assert row.split()[3:] == ["1.000", "n/a", "0.500", "n/a"]


def test_leaderboard_shows_an_ensembles_seed_spread_beside_it():
    ensemble = {**board_row(1, "gru", "ensemble", 2.0, 2.5, 0.9), "spread": 0.0234}
    seed = {**board_row(2, "gru-s1", "seed", 2.01, 2.6, 0.91), "of": "gru", "seed": 42}
    lines = commands.format_leaderboard([ensemble, seed], "mae", unit="°C", decimals=1)
    header, first, second = lines.split("\n")[1:]
    assert header.endswith("seed spread, MAE (°C)")
    assert first.endswith("± 0.023") and not second.rstrip().endswith("0.023")


def test_leaderboard_shows_interval_coverage_and_the_backtest_beside_each_entry():
    intervals = {"80": {"coverage": 0.8125}, "95": {"coverage": 0.95}}
    backtest = {"mean": {"mae": 2.04, "rmse": 2.5}, "spread": 0.061, "folds": [2.0, 2.08]}
    ensemble = {**board_row(1, "gru", "ensemble", 2.0, 2.5, 0.9), "intervals": intervals,
                "backtest": backtest}  # fmt: skip
    naive = {**board_row(2, "persistence", "baseline", 2.2, 2.7, 1.0)}
    lines = commands.format_leaderboard([ensemble, naive], "mae", unit="°C", decimals=1)
    header, first, second = lines.split("\n")[1:]
    assert re.split(r" {2,}", header.strip())[-3:] == [
        "80% interval coverage (%)",
        "95% interval coverage (%)",
        "backtest mean ± spread, MAE (°C)",
    ]
    assert first.split()[-5:] == ["81.2", "95.0", "2.04", "±", "0.06"]
    assert second.split()[-3:] == ["n/a", "n/a", "n/a"]


def test_forecast_line_shows_dates_at_midnight_and_times_otherwise():
    made = {
        "version": 4,
        "origin": "2015-12-31T00:00:00+00:00",
        "forecast": {"2016-01-01T00:00:00+00:00": 6.2391, "2016-01-01T13:30:00+00:00": -0.04},
    }
    assert (
        commands.format_forecast(made, unit="°C", decimals=1)
        == "Forecast:   2016-01-01: 6.24 °C, 2016-01-01 13:30: -0.04 °C "
        "(version 4, data up to 2015-12-31)"
    )
    assert commands.format_forecast(made, decimals=0).startswith("Forecast:   2016-01-01: 6.2, ")


def test_times_read_in_utc_and_data_times_keep_their_seconds():
    assert commands.clock_time("2026-11-22T14:46:33+02:00") == "2026-11-22 12:46 UTC"
    assert commands.clock_time("2026-11-23T00:00:00Z") == "2026-11-23 00:00 UTC"
    assert commands.clock_time(None) == "n/a"
    assert commands.data_time("2024-08-28T00:00:00") == "2024-08-28"
    assert commands.data_time("2024-08-28T06:00:05+00:00") == "2024-08-28 06:00:05"


class FakeClient:
    """Answers run_pipeline's REST calls from `xcoms`; the forecast run appears once the
    training run has been triggered."""

    def __init__(self, af: Airflow, xcoms: dict[tuple[str, str], Any]) -> None:
        self.af, self.xcoms, self.triggered = af, xcoms, False

    def wait_for_dag(self, dag_id: str) -> dict:
        return {"dag_id": dag_id}

    def unpause(self, dag_id: str) -> None:
        pass

    def trigger(self, dag_id: str, conf: dict) -> str:
        self.triggered = True
        return RUN_ID

    def dag_runs(self, dag_id: str) -> list[dict]:
        return [{"dag_run_id": "asset_triggered__2024-08-27+x"}] if self.triggered else []

    def follow(self, dag_id: str, run_id: str, **kwargs: Any) -> str:
        return "success"

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        tasks = ("evaluate", "gate", "promote", "report")
        return [{"task_id": t, "state": "success"} for t in tasks]

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        return self.xcoms[(dag_id, task_id)]


def test_make_run_ends_with_the_pipeline_page_and_links_each_report(af, monkeypatch):
    xcoms = {
        ("train_seattle_weather", "evaluate"): {
            "metric": "mae",
            "leaderboard": BOARD,
            "unit": "°C",
            "decimals": 1,
        },
        ("train_seattle_weather", "gate"): {"reasons": ["lstm beats persistence", "promote"]},
        ("train_seattle_weather", "promote"): {"model": "lstm", "version": 1},
        ("forecast_seattle_weather", "forecast"): {
            "version": 1,
            "origin": "2015-12-31T00:00:00+00:00",
            "forecast": {"2016-01-01T00:00:00+00:00": 6.2391},
        },
    }
    monkeypatch.setattr(commands, "up", lambda *args, **kwargs: None)
    monkeypatch.setattr(commands, "Client", lambda af: FakeClient(af, xcoms))
    lines: list[str] = []
    code = commands.run_pipeline(af, "seattle_weather", conf={}, pools={}, say=lines.append)
    assert code == 0
    assert "  rank  name                kind      MAE (°C)" in lines[3]
    base = "http://127.0.0.1:8793/dags"
    assert lines[-9:] == [
        "Champion:   lstm is now version 1",
        "The new champion triggered forecast_seattle_weather run asset_triggered__2024-08-27+x:",
        "Forecast:   2016-01-01: 6.24 °C (version 1, data up to 2015-12-31)",
        f"Forecasts:  {base}/forecast_seattle_weather/runs/asset_triggered__2024-08-27%2Bx"
        "/plugin/freshcast-report",
        f"Report:     {base}/train_seattle_weather/runs/{QUOTED}/plugin/freshcast-report",
        "Registry:   make registry PIPELINE=seattle_weather",
        f"Airflow UI: {base}/train_seattle_weather/runs/{QUOTED}",
        f"Results:    {base}/train_seattle_weather/plugin/freshcast-pipeline"
        "  (login: admin / s3cret)",
        "Stop it with `make stop`.",
    ]


def test_an_older_evaluate_xcom_without_unit_or_decimals_still_prints(af, monkeypatch):
    xcoms = {
        ("train_tiny", "evaluate"): {"metric": "mase", "leaderboard": BOARD},
        ("train_tiny", "gate"): {"reasons": ["refused"], "champion": 2},
    }
    client = FakeClient(af, xcoms)
    client.task_instances = lambda dag_id, run_id: [
        {"task_id": "evaluate", "state": "success"},
        {"task_id": "promote", "state": "skipped"},
    ]
    monkeypatch.setattr(commands, "up", lambda *args, **kwargs: None)
    monkeypatch.setattr(commands, "Client", lambda af: client)
    lines: list[str] = []
    assert commands.run_pipeline(af, "tiny", conf={}, pools={}, say=lines.append) == 0
    assert "     1  lstm                model     2.171  2.701  0.967" in "\n".join(lines)
    assert "Champion:   version 2 (unchanged)" in lines


def test_replay_backfills_without_a_run_conf(af, tmp_path, monkeypatch):
    write_tiny_pipeline(tmp_path / "pipelines")
    monkeypatch.setenv("FRESHCAST_PIPELINES_DIR", str(tmp_path / "pipelines"))
    monkeypatch.setenv("FRESHCAST_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    posted: list[dict] = []

    def create_backfill(dag_id: str, *, start: str, end: str) -> dict:
        posted.append({"dag_id": dag_id, "start": start, "end": end})
        return {"id": 7, "from_date": f"{start}T00:00:00Z", "to_date": f"{end}T00:00:00Z"}

    client = FakeClient(af, {})
    client.create_backfill = create_backfill
    client.backfill = lambda backfill_id: {"id": backfill_id, "completed_at": "2024-08-22Z"}
    monkeypatch.setattr(commands, "up", lambda *args, **kwargs: None)
    monkeypatch.setattr(commands, "Client", lambda af: client)
    lines: list[str] = []
    code = commands.replay(
        af, "tiny", start="2024-08-21", end="2024-08-22", pools={}, say=lines.append, poll=0
    )
    assert code == 0
    assert posted == [{"dag_id": "train_tiny", "start": "2024-08-21", "end": "2024-08-22"}]
    assert lines[1] == "  run (data up to)   decision                   figures, MASE"
    assert Registry("tiny").active_replay() is None
