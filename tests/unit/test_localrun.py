"""What `make run`, `make status` and `make replay` print, without starting Airflow: the links
into the Airflow UI, the leaderboard and forecast lines, and the status text from plain data."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from freshcast import localrun
from freshcast.localrun import Airflow, LocalRunError
from freshcast.registry import Registry
from freshcast.spec import load_spec
from tests.helpers import write_tiny_pipeline

RUN_ID = "manual__2024-08-27T12:45:36.582898+00:00"
QUOTED = "manual__2024-08-27T12%3A45%3A36.582898%2B00%3A00"


@pytest.fixture
def af(tmp_path) -> Airflow:
    af = Airflow(home=tmp_path / "airflow-home", port=8793)
    af.home.mkdir()
    af.passwords_file.write_text(json.dumps({"admin": "s3cret"}))
    return af


# ---------------------------------------------------------------- links into the Airflow UI


def test_links_are_pages_of_the_airflow_ui_with_the_run_id_quoted(af):
    assert localrun.overview_url(af) == "http://127.0.0.1:8793/plugin/forecasts"
    assert (
        localrun.pipeline_url(af, "seattle_weather")
        == "http://127.0.0.1:8793/dags/train_seattle_weather/plugin/freshcast-pipeline"
    )
    assert (
        localrun.run_url(af, "train_seattle_weather", RUN_ID)
        == f"http://127.0.0.1:8793/dags/train_seattle_weather/runs/{QUOTED}"
    )
    # "+" and ":" are quoted, and so is "/" (a run id is free text): one path segment.
    assert (
        localrun.report_url(af, "forecast_tiny", "asset_triggered__a/b+c:d")
        == "http://127.0.0.1:8793/dags/forecast_tiny/runs/asset_triggered__a%2Fb%2Bc%3Ad"
        "/plugin/freshcast-report"
    )


# ---------------------------------------------------------------- the leaderboard


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
    text = localrun.format_leaderboard(BOARD, "mae", unit="°C", decimals=1)
    assert text + "\n" == LEADERBOARD


def test_leaderboard_without_a_unit_shows_the_ranked_metric_too():
    lines = localrun.format_leaderboard(BOARD, "smape", decimals=0).split("\n")
    assert lines[0].endswith("ranked by smape")
    header = re.split(r" {2,}", lines[1].strip())
    assert header[-3:] == ["MASE", "sMAPE (%)", "skill vs persistence (%)"]
    assert "(" not in lines[1].split("MASE")[0]  # no unit: plain MAE and RMSE
    assert lines[2].split()[3:] == ["2.2", "2.7", "0.967", "8.8", "3.6"]


def test_leaderboard_without_persistence_or_with_a_missing_figure_says_n_a():
    board = [board_row(1, "gru", "model", 1.0, float("nan"), 0.5)]
    row = localrun.format_leaderboard(board, "mase").split("\n")[2]
    assert row.split()[3:] == ["1.000", "n/a", "0.500", "n/a"]


# ---------------------------------------------------------------- the forecast line


def test_forecast_line_shows_dates_at_midnight_and_times_otherwise():
    made = {
        "version": 4,
        "origin": "2015-12-31T00:00:00+00:00",
        "forecast": {"2016-01-01T00:00:00+00:00": 6.2391, "2016-01-01T13:30:00+00:00": -0.04},
    }
    assert (
        localrun.format_forecast(made, unit="°C", decimals=1)
        == "Forecast:   2016-01-01: 6.24 °C, 2016-01-01 13:30: -0.04 °C "
        "(version 4, data up to 2015-12-31)"
    )
    assert localrun.format_forecast(made, decimals=0).startswith("Forecast:   2016-01-01: 6.2, ")


def test_times_read_in_utc_and_data_times_keep_their_seconds():
    assert localrun.clock_time("2026-11-22T14:46:33+02:00") == "2026-11-22 12:46 UTC"
    assert localrun.clock_time("2026-11-23T00:00:00Z") == "2026-11-23 00:00 UTC"
    assert localrun.clock_time(None) == "n/a"
    assert localrun.data_time("2024-08-28T00:00:00") == "2024-08-28"
    assert localrun.data_time("2024-08-28T06:00:05+00:00") == "2024-08-28 06:00:05"


# ---------------------------------------------------------------- make run, with a fake Airflow


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
    monkeypatch.setattr(localrun, "up", lambda *args, **kwargs: None)
    monkeypatch.setattr(localrun, "Client", lambda af: FakeClient(af, xcoms))
    lines: list[str] = []
    code = localrun.run_pipeline(af, "seattle_weather", conf={}, pools={}, say=lines.append)
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
    monkeypatch.setattr(localrun, "up", lambda *args, **kwargs: None)
    monkeypatch.setattr(localrun, "Client", lambda af: client)
    lines: list[str] = []
    assert localrun.run_pipeline(af, "tiny", conf={}, pools={}, say=lines.append) == 0
    assert "     1  lstm                model     2.171  2.701  0.967" in "\n".join(lines)
    assert "Champion:   version 2 (unchanged)" in lines


# ---------------------------------------------------------------- make replay


def test_replay_backfills_without_a_run_conf(af, tmp_path, monkeypatch):
    write_tiny_pipeline(tmp_path / "pipelines")
    monkeypatch.setenv("FRESHCAST_PIPELINES_DIR", str(tmp_path / "pipelines"))
    monkeypatch.setenv("FRESHCAST_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    posted: list[dict] = []

    class Response:
        status_code = 200

        def json(self) -> dict:
            return {"id": 7, "from_date": "2024-08-21T00:00:00Z", "to_date": "2024-08-22T00:00:00Z"}

    class Http:
        def post(self, path: str, json: dict) -> Response:
            posted.append(json)
            return Response()

    client = FakeClient(af, {})
    client.http = Http()
    client.get = lambda path: {"completed_at": "2024-08-22T00:00:00Z"}
    monkeypatch.setattr(localrun, "up", lambda *args, **kwargs: None)
    monkeypatch.setattr(localrun, "Client", lambda af: client)
    lines: list[str] = []
    code = localrun.replay(
        af, "tiny", start="2024-08-21", end="2024-08-22", pools={}, say=lines.append, poll=0
    )
    assert code == 0
    assert posted == [
        {
            "dag_id": "train_tiny",
            "from_date": "2024-08-21T00:00:00Z",
            "to_date": "2024-08-22T00:00:00Z",
            "max_active_runs": 1,
            "reprocess_behavior": "completed",
        }
    ]
    assert lines[1] == "  run (data up to)   decision                   figures, MASE"
    assert Registry("tiny").active_replay() is None


# ---------------------------------------------------------------- make status


HEALTHY = {
    part: {"status": "healthy"}
    for part in ("metadatabase", "scheduler", "dag_processor", "triggerer")
}
PIDS = {"api-server": 11, "scheduler": 12, "dag-processor": 13, "triggerer": 14}


def pipeline_status(**changes: Any) -> dict[str, Any]:
    return {
        "name": "seattle_weather",
        "metric": "mae",
        "unit": "°C",
        "url": "http://127.0.0.1:8080/dags/train_seattle_weather/plugin/freshcast-pipeline",
        "champion": {
            "version": 3,
            "model": "lstm",
            "score": 2.1712,
            "decimals": 1,
            "since": "2026-11-22T12:46:33+00:00",
        },
        "dag": {
            "loaded": True,
            "paused": False,
            "next_run": "2026-11-23T00:00:00Z",
            "last_run": {
                "run_id": "scheduled__2026-11-22T00:00:00+00:00",
                "state": "success",
                "run_after": "2026-11-22T00:00:00Z",
                "note": "champion v3 kept: gru mae 2.25 does not beat v3 2.17",
            },
        },
        **changes,
    }


def status_of(**changes: Any) -> dict[str, Any]:
    return {
        "url": "http://127.0.0.1:8080",
        "overview": "http://127.0.0.1:8080/plugin/forecasts",
        "pids": PIDS,
        "health": HEALTHY,
        "api": True,
        "problems": [],
        "pipelines": [pipeline_status()],
        **changes,
    }


def test_status_text_names_processes_champion_runs_and_the_page():
    assert localrun.format_status(status_of()) == "\n".join(
        [
            "Airflow at http://127.0.0.1:8080: up",
            "  component      pid     health",
            "  api-server      11  answering",
            "  scheduler       12    healthy",
            "  dag-processor   13    healthy",
            "  triggerer       14    healthy",
            "  metadatabase     -    healthy",
            "",
            "seattle_weather",
            "  champion:  v3 lstm, MAE 2.17 °C, since 2026-11-22 12:46 UTC",
            "  last run:  success, 2026-11-22 00:00 UTC (scheduled__2026-11-22T00:00:00+00:00)",
            "  note:      champion v3 kept: gru mae 2.25 does not beat v3 2.17",
            "  next run:  2026-11-23 00:00 UTC",
            "  page:      http://127.0.0.1:8080/dags/train_seattle_weather/plugin/freshcast-pipeline",
            "",
            "All pipelines: http://127.0.0.1:8080/plugin/forecasts",
        ]
    )


def test_status_with_airflow_down_still_shows_the_registry():
    down = status_of(pids=dict.fromkeys(PIDS), health=None, api=False)
    down["pipelines"] = [pipeline_status(dag=None)]
    assert localrun.format_status(down).split("\n") == [
        "Airflow at http://127.0.0.1:8080: not running (start it with `make run`)",
        "",
        "seattle_weather",
        "  champion:  v3 lstm, MAE 2.17 °C, since 2026-11-22 12:46 UTC",
    ]
    assert not localrun.components_up(down)


def test_status_of_a_dead_component_a_new_pipeline_and_a_broken_spec():
    half = status_of(
        pids={**PIDS, "triggerer": None},
        health={**HEALTHY, "triggerer": {"status": "unhealthy"}},
        problems=["/specs/broken.yaml: 1 problem(s) in the pipeline spec\n  field 'x': ..."],
        pipelines=[
            pipeline_status(
                name="tiny",
                metric="mase",
                unit="",
                champion=None,
                dag={"loaded": True, "paused": True, "next_run": None, "last_run": None},
            ),
            pipeline_status(name="new", dag={"loaded": False}),
        ],
    )
    text = localrun.format_status(half)
    assert text.startswith("Airflow at http://127.0.0.1:8080: partly up\n")
    assert "  triggerer      not running  unhealthy" in text
    assert (
        "tiny\n  champion:  none yet\n  last run:  none yet\n  next run:  none (paused)\n" in text
    )
    assert "  runs:      train_new is not loaded by Airflow yet" in text
    assert "\nnot loaded: /specs/broken.yaml: 1 problem(s) in the pipeline spec\n" in text
    assert not localrun.components_up(half)


def test_champion_score_is_on_the_spec_metric_and_a_ratio_has_no_unit():
    ratio = pipeline_status(metric="mase")
    ratio["champion"]["score"] = 0.96712
    text = localrun.format_status(status_of(pipelines=[ratio]))
    assert "  champion:  v3 lstm, MASE 0.967, since 2026-11-22 12:46 UTC" in text
    broken = pipeline_status(champion={"version": 2, "since": None, "error": "no bundle.json"})
    text = localrun.format_status(status_of(pipelines=[broken]))
    assert "  champion:  v2 since n/a; its bundle cannot be read: no bundle.json" in text


def promote(
    registry: Registry, tmp_path: Path, *, scores: dict[str, float], shown: dict | None = None
) -> None:
    """A bundle as steps.promote stores it; `shown` its {"unit", "decimals"} (older: none)."""
    model = tmp_path / "model.keras"
    model.write_bytes(b"model")
    meta = {
        "model": {"name": "gru"},
        "metric": "mase",
        "scores": scores,
        "lineage": {"run_id": "r1"},
        **({"display": shown} if shown else {}),
    }
    with registry.lock():
        version = registry.add_version({"model": model}, meta=meta, run_id="r1")
        registry.set_champion(version, event={"kind": "promoted", "run_id": "r1"})


def test_champion_status_reads_the_registry(tmp_path):
    registry = Registry("demo", root=tmp_path / "artifacts")
    assert localrun.champion_status(registry, metric="mae") is None
    promote(registry, tmp_path, scores={"kind": "model", "mae": 2.5, "mase": 0.9})
    found = localrun.champion_status(registry, metric="mae")
    assert found == {
        "version": 1,
        "model": "gru",
        "score": 2.5,
        "decimals": localrun.DEFAULT_DECIMALS,
        "since": registry.champion()["since"],
    }
    (registry.bundle_dir(1) / "bundle.json").unlink()
    unreadable = localrun.champion_status(registry, metric="mae")
    assert unreadable["version"] == 1 and "bundle.json" in unreadable["error"]


class RestClient:
    """`Client.get` over canned answers; an unknown path is a 404."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers, self.asked = answers, []

    def get(self, path: str, **params: Any) -> Any:
        self.asked.append((path, params))
        if path not in self.answers:
            raise LocalRunError(f"GET {path}: 404")
        return self.answers[path]


def test_dag_status_asks_for_the_newest_run_and_the_next_tick():
    run = {
        "dag_run_id": RUN_ID,
        "state": "failed",
        "run_after": "2024-08-27T12:45:36Z",
        "note": "trained nothing: data unchanged",
        "conf": {},
    }
    client = RestClient(
        {
            "/dags/train_x": {"is_paused": False, "next_dagrun_run_after": "2024-08-28T00:00:00Z"},
            "/dags/train_x/dagRuns": {"dag_runs": [run], "total_entries": 5},
        }
    )
    assert localrun.dag_status(client, "train_x") == {
        "loaded": True,
        "paused": False,
        "next_run": "2024-08-28T00:00:00Z",
        "last_run": {
            "run_id": RUN_ID,
            "state": "failed",
            "run_after": "2024-08-27T12:45:36Z",
            "note": "trained nothing: data unchanged",
        },
    }
    assert client.asked[1] == ("/dags/train_x/dagRuns", {"order_by": "-run_after", "limit": 1})
    assert localrun.dag_status(client, "train_y") == {"loaded": False}


def test_gather_status_takes_each_loaded_spec_with_its_unit(af, tmp_path, monkeypatch):
    spec = load_spec(write_tiny_pipeline(tmp_path / "pipelines", unit="MW"))
    registry = Registry("tiny", root=tmp_path / "artifacts")
    shown = {"unit": "MW", "decimals": 1}
    promote(registry, tmp_path, scores={"kind": "model", "mae": 2.5, "mase": 0.9}, shown=shown)
    monkeypatch.setattr(localrun, "airflow_status", lambda af: {"pids": PIDS, "health": HEALTHY})
    client = RestClient(
        {"/dags/train_tiny": {"is_paused": True}, "/dags/train_tiny/dagRuns": {"dag_runs": []}}
    )
    found = localrun.gather_status(
        af, specs=[spec], problems=[], registry=lambda name: registry, client=client
    )
    (pipeline,) = found["pipelines"]
    assert pipeline["unit"] == "MW" and pipeline["metric"] == "mase"
    assert pipeline["champion"]["score"] == 0.9 and pipeline["champion"]["decimals"] == 1
    assert pipeline["url"] == localrun.pipeline_url(af, "tiny")
    assert found["api"] and localrun.components_up(found)


def test_status_json_keeps_pids_and_health_for_scripts(af, monkeypatch, capsys):
    monkeypatch.setattr(
        localrun, "airflow_status", lambda af: {"pids": dict.fromkeys(PIDS), "health": None}
    )
    monkeypatch.setenv("AIRFLOW_HOME", str(af.home))
    assert localrun.main(["status", "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {"pids": dict.fromkeys(PIDS), "health": None}


def test_an_unreadable_registry_is_reported_not_raised(tmp_path):
    class Broken:
        def champion(self) -> dict:
            raise OSError("bucket unreachable")

    found = localrun.champion_status(Broken(), metric="mae")
    assert found == {"version": None, "since": None, "error": "bucket unreachable"}
    text = localrun.format_status(status_of(pipelines=[pipeline_status(champion=found)]))
    assert "  champion:  unknown, the registry cannot be read: bucket unreachable" in text
