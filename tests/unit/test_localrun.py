"""What `make run`, `make status` and `make replay` print, without starting Airflow: the links
into the Airflow UI, the leaderboard and forecast lines, and the status text from plain data."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from freshcast import localrun
from freshcast.localrun import Airflow, LocalRunError
from freshcast.registry import Registry
from freshcast.spec import load_spec
from tests.helpers import write_tiny_pipeline

RUN_ID = "manual__2024-08-27T12:45:36.582898+00:00"
QUOTED = "manual__2024-08-27T12%3A45%3A36.582898%2B00%3A00"


@pytest.fixture
def af(tmp_path) -> Iterator[Airflow]:
    af = Airflow(home=tmp_path / "airflow-home", port=8793)
    af.home.mkdir()
    af.passwords_file.write_text(json.dumps({"admin": "s3cret"}))
    yield af
    localrun.stop(af, say=lambda _: None, grace=0.5)  # what a failed test started


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


def test_leaderboard_shows_an_ensembles_seed_spread_beside_it():
    ensemble = {**board_row(1, "gru", "ensemble", 2.0, 2.5, 0.9), "spread": 0.0234}
    seed = {**board_row(2, "gru-s1", "seed", 2.01, 2.6, 0.91), "of": "gru", "seed": 42}
    lines = localrun.format_leaderboard([ensemble, seed], "mae", unit="°C", decimals=1)
    header, first, second = lines.split("\n")[1:]
    assert header.endswith("seed spread, MAE (°C)")
    assert first.endswith("± 0.023") and not second.rstrip().endswith("0.023")


def test_leaderboard_shows_interval_coverage_and_the_backtest_beside_each_entry():
    intervals = {"80": {"coverage": 0.8125}, "95": {"coverage": 0.95}}
    backtest = {"mean": {"mae": 2.04, "rmse": 2.5}, "spread": 0.061, "folds": [2.0, 2.08]}
    ensemble = {**board_row(1, "gru", "ensemble", 2.0, 2.5, 0.9), "intervals": intervals,
                "backtest": backtest}  # fmt: skip
    naive = {**board_row(2, "persistence", "baseline", 2.2, 2.7, 1.0)}
    lines = localrun.format_leaderboard([ensemble, naive], "mae", unit="°C", decimals=1)
    header, first, second = lines.split("\n")[1:]
    assert re.split(r" {2,}", header.strip())[-3:] == [
        "80% interval coverage (%)",
        "95% interval coverage (%)",
        "backtest mean ± spread, MAE (°C)",
    ]
    assert first.split()[-5:] == ["81.2", "95.0", "2.04", "±", "0.06"]
    assert second.split()[-3:] == ["n/a", "n/a", "n/a"]


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


# ---------------------------------------------------------------- processes: make stop, make run
# A fake component in place of an Airflow one: like the scheduler, it starts children that sit in
# process groups of their own (as Airflow's task supervisor puts task processes) and ignore
# SIGTERM, each with a child of its own. Every process appends its pid to `pids`.

COMPONENT = r"""
import os, signal, sys, time
from pathlib import Path

home = Path(sys.argv[1])
(home / "made-by-component").write_text("a secret")


def note():
    with open(home / "pids", "a") as fh:
        fh.write(f"{os.getpid()}\n")


note()
for _ in range(2):
    if os.fork() == 0:
        os.setpgid(0, 0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.fork()
        note()
        time.sleep(600)
        os._exit(0)
time.sleep(600)
"""


def start_fake(af: Airflow, component: str = "scheduler") -> list[int]:
    """Start COMPONENT as `component`; returns the pids of its five processes, leader first."""
    (af.home / "pids").unlink(missing_ok=True)
    leader = localrun.spawn(af, component, [sys.executable, "-c", COMPONENT, str(af.home)])
    noted = af.home / "pids"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = [int(p) for p in noted.read_text().split()] if noted.exists() else []
        if len(pids) == 5:
            assert pids[0] == leader
            return pids
        time.sleep(0.05)
    raise AssertionError("the fake component did not start its processes")


def alive(pids: list[int]) -> list[int]:
    """Those of `pids` that run (a zombie has ended)."""
    found = [localrun.proc(pid) for pid in pids]
    return [p.pid for p in found if p is not None and p.alive]


@pytest.fixture
def bystander():
    """A process of somebody else, leading a session of its own: nothing here may touch it."""
    process = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield process
    assert process.poll() is None, "a process this project did not start was killed"
    process.kill()
    process.wait()


def test_stop_ends_processes_in_groups_of_their_own_and_waits_until_they_are_gone(af, bystander):
    pids = start_fake(af)
    leader = pids[0]
    assert {os.getpgid(pid) for pid in pids[1:]}.isdisjoint({leader})  # killpg would miss them
    assert localrun.read_pid(af, "scheduler") == leader
    lines: list[str] = []
    began = time.monotonic()
    assert localrun.stop(af, say=lines.append, grace=1.0) == [leader]
    assert alive(pids) == []  # when stop returns, not some time later
    assert 1.0 <= time.monotonic() - began < 15  # SIGTERM ignored: SIGKILL after the grace
    assert lines == [f"stopping scheduler (pid {leader}, 5 process(es))"]
    assert not af.pid_file("scheduler").exists()
    assert localrun.stop(af, say=lines.append) == []
    assert lines[-1].startswith("nothing to stop")


def test_what_a_killed_component_left_running_is_stopped_by_stop_and_by_up(
    af, bystander, monkeypatch
):
    pids = start_fake(af)
    os.kill(pids[0], signal.SIGKILL)
    os.waitpid(pids[0], 0)
    assert localrun.read_pid(af, "scheduler") is None
    assert sorted(alive(pids)) == sorted(pids[1:])  # orphans, still in the dead leader's session

    # `make run` after the crash: up() stops them before it starts the scheduler again.
    started_now: list[str] = []
    monkeypatch.setattr(localrun, "LEFTOVER_GRACE", 0.5)
    monkeypatch.setattr(localrun, "airflow_cli", lambda af, *args: None)
    monkeypatch.setattr(localrun, "_port_open", lambda host, port: False)
    monkeypatch.setattr(localrun, "wait_healthy", lambda af, timeout: None)
    monkeypatch.setattr(
        localrun, "start_component", lambda af, component: started_now.append(component) or 1
    )
    lines: list[str] = []
    localrun.up(af, say=lines.append)
    assert alive(pids) == []
    left = f"stopped what the scheduler (pid {pids[0]}) left running when it died: "
    assert [line for line in lines if line.startswith(left)] == [
        left + ", ".join(str(p) for p in sorted(pids[1:]))
    ]
    assert started_now == list(localrun.COMPONENTS)

    # And `make stop` finds them the same way.
    pids = start_fake(af, "triggerer")
    os.kill(pids[0], signal.SIGKILL)
    os.waitpid(pids[0], 0)
    lines = []
    assert localrun.stop(af, say=lines.append, grace=0.5) == [pids[0]]
    assert lines == [f"stopping triggerer (pid {pids[0]}, 4 process(es), its leader is gone)"]
    assert alive(pids) == []


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


@pytest.mark.parametrize(
    "record",
    [
        "{pid} {wrong_start} {boot}",  # the pid was given to another process since
        "{pid} {start} another-boot",  # written before a reboot
        "{pid}",  # an older pid file, and the process is not Airflow's
    ],
)
def test_a_pid_file_naming_somebody_elses_process_stops_nothing(af, bystander, record):
    start = localrun.proc(bystander.pid).started
    text = record.format(pid=bystander.pid, start=start, wrong_start=start - 1, boot=boot_id())
    af.pid_file("scheduler").write_text(text + "\n")
    assert localrun.read_pid(af, "scheduler") is None
    assert localrun.session_processes(af, "scheduler") == []
    lines: list[str] = []
    assert localrun.stop(af, say=lines.append, grace=0.5) == []
    assert lines[-1].startswith("nothing to stop")


# ---------------------------------------------------------------- secrets in AIRFLOW_HOME


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_components_write_their_files_and_logs_for_the_owner_only(af):
    old = os.umask(0o022)
    try:
        start_fake(af)
        assert localrun.stop(af, say=lambda _: None, grace=0.5)
    finally:
        os.umask(old)
    assert mode(af.home / "made-by-component") == 0o600  # umask 077 in the component
    assert mode(af.log_file("scheduler")) == 0o600
    assert mode(af.home) == 0o700


def test_start_makes_an_existing_home_private_and_the_password_never_reaches_a_log(tmp_path):
    old = os.umask(0o022)
    try:
        af = Airflow(home=tmp_path / "home")
        af.home.mkdir(mode=0o755)
        for name in (
            "airflow.db",
            "api-server.log",
            "simple_auth_manager_passwords.json.generated",
        ):
            (af.home / name).write_text("x")
            (af.home / name).chmod(0o644)
        (af.home / "logs").mkdir(mode=0o755)
        localrun.secure_home(af)
        assert {p.name: mode(p) for p in [af.home, *af.home.iterdir()]} == {
            "home": 0o700,
            "airflow.db": 0o600,
            "api-server.log": 0o600,
            "simple_auth_manager_passwords.json.generated": 0o600,
            "logs": 0o700,
        }
        fresh = Airflow(home=tmp_path / "fresh" / "home")
        cfg = localrun.write_config(fresh)
        assert (mode(fresh.home), mode(cfg)) == (0o700, 0o600)
        assert "file_task_handler_new_file_permissions = 0o600" in cfg.read_text()
        # Airflow prints only a password that it generates: the one written here stays out
        # of the api-server's log.
        localrun.ensure_password(fresh)
        secret = localrun.password(fresh, timeout=1)
        assert mode(fresh.passwords_file) == 0o600 and len(secret) >= 16
        localrun.ensure_password(fresh)
        assert localrun.password(fresh, timeout=1) == secret
    finally:
        os.umask(old)


# ---------------------------------------------------------------- the metadata database


def test_sqlite_waits_longer_for_a_lock_except_in_the_api_server(af, monkeypatch):
    spawned: dict[str, dict[str, str]] = {}
    monkeypatch.setattr(
        localrun, "spawn", lambda af, component, argv, env: spawned.update({component: env}) or 1
    )
    for component in localrun.COMPONENTS:
        localrun.start_component(af, component)
    key = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"
    assert {c: (env or {}).get(key) for c, env in spawned.items()} == {
        "api-server": None,
        "scheduler": "freshcast.localrun.SQLITE_CONNECT_ARGS",
        "dag-processor": "freshcast.localrun.SQLITE_CONNECT_ARGS",
        "triggerer": "freshcast.localrun.SQLITE_CONNECT_ARGS",
    }
    assert localrun.SQLITE_CONNECT_ARGS["timeout"] > 5  # Python's default
    sqlite = f"sqlite:///{af.home / 'airflow.db'}"
    assert af.env()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == sqlite

    url = "postgresql+psycopg2://postgres:pw@127.0.0.1:5432/freshcast"
    postgres = Airflow(home=af.home, port=af.port, database=url)
    spawned.clear()
    localrun.start_component(postgres, "scheduler")
    assert spawned["scheduler"] is None
    assert postgres.env()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == url
    assert (
        localrun.database_label(url)
        == "postgresql+psycopg2://postgres:***@127.0.0.1:5432/freshcast"
    )


def test_make_run_takes_the_database_from_freshcast_database_url(af, monkeypatch):
    seen: list[Airflow] = []
    monkeypatch.setattr(localrun, "stop", lambda af: seen.append(af))
    monkeypatch.setenv("AIRFLOW_HOME", str(af.home))
    monkeypatch.setenv("FRESHCAST_DATABASE_URL", "postgresql+psycopg2://u@h:5432/d")
    assert localrun.main(["stop"]) == 0
    monkeypatch.setenv("FRESHCAST_DATABASE_URL", "")
    assert localrun.main(["stop"]) == 0
    assert [a.database_url for a in seen] == [
        "postgresql+psycopg2://u@h:5432/d",
        f"sqlite:///{af.home / 'airflow.db'}",
    ]


def test_ensure_database_creates_a_missing_postgresql_database():
    psycopg2 = pytest.importorskip("psycopg2")
    with socket.socket() as sock:
        sock.settimeout(1)
        if sock.connect_ex(("127.0.0.1", 5432)) != 0:
            pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    name = f"freshcast_test_{secrets.token_hex(4)}"
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    localrun.ensure_database(url)
    localrun.ensure_database(url)  # there already: nothing to do
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            assert cursor.fetchone() == (1,)
            cursor.execute(f'DROP DATABASE "{name}"')
    finally:
        conn.close()
    localrun.ensure_database("sqlite:////nowhere/airflow.db")  # not PostgreSQL: left alone


# ---------------------------------------------------------------- the REST client under load

BUSY = {"detail": {"reason": "Database error", "statement": "hidden", "message": "see log"}}


def client_with(af: Airflow, answers: list[tuple[int, Any]], seen: list[httpx.Request]) -> Any:
    """A Client whose requests after the login get `answers` in turn: (status, JSON body)."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "t"})
        seen.append(request)
        status, body = answers.pop(0)
        return httpx.Response(status, json=body)

    return localrun.Client(af, backoff=0, transport=httpx.MockTransport(handle))


def test_a_trigger_that_met_a_locked_database_is_sent_again_with_the_same_run_id(af):
    seen: list[httpx.Request] = []
    client = client_with(af, [(500, BUSY), (503, {"detail": "locked"}), (200, {})], seen)
    run_id = client.trigger("train_tiny", {"epochs": 2})
    bodies = [json.loads(r.content) for r in seen]
    assert len(bodies) == 3 and all(b == bodies[0] for b in bodies)
    assert bodies[0]["dag_run_id"] == run_id and run_id.startswith("manual__")
    assert bodies[0]["conf"] == {"epochs": 2}
    assert seen[0].headers["Authorization"] == "Bearer t"


def test_a_409_after_a_lost_answer_means_the_first_attempt_created_the_run(af):
    seen: list[httpx.Request] = []
    client = client_with(af, [(500, BUSY), (409, {"detail": {"reason": "Unique"}})], seen)
    run_id = client.trigger("train_tiny", {})
    assert [json.loads(r.content)["dag_run_id"] for r in seen] == [run_id, run_id]


def test_other_errors_are_not_sent_again_and_retries_end(af):
    seen: list[httpx.Request] = []
    client = client_with(af, [(400, {"detail": "Invalid input for param epochs"})], seen)
    with pytest.raises(LocalRunError, match="epochs"):
        client.trigger("train_tiny", {"epochs": 0})
    client = client_with(af, [(500, {"detail": "Internal Server Error"})], seen)
    with pytest.raises(LocalRunError, match="500"):
        client.get("/dags/train_tiny")
    assert len(seen) == 2
    seen.clear()
    client = client_with(af, [(503, {})] * 3, seen)
    client.attempts = 3
    with pytest.raises(LocalRunError, match="503"):
        client.get("/dags")
    assert len(seen) == 3


def test_get_and_unpause_are_sent_again_while_the_database_is_busy(af):
    seen: list[httpx.Request] = []
    client = client_with(af, [(500, BUSY), (200, {"dag_runs": []})], seen)
    assert client.dag_runs("train_tiny") == []
    client = client_with(af, [(503, {}), (200, {})], seen)
    client.unpause("train_tiny")
    assert [r.method for r in seen] == ["GET", "GET", "PATCH", "PATCH"]


def test_busy_database_reads_airflows_answer():
    assert localrun.busy_database(httpx.Response(503))
    assert localrun.busy_database(httpx.Response(500, json=BUSY))
    assert not localrun.busy_database(httpx.Response(500, json={"detail": "boom"}))
    assert not localrun.busy_database(httpx.Response(500, text="<html>"))
    assert not localrun.busy_database(httpx.Response(409, json=BUSY))
