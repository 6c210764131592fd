"""The real scheduler path: api-server, scheduler, dag-processor and triggerer with LocalExecutor,
started by the same code as `make run`, run the tiny pipeline; success is read over REST."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from freshcast.local import api, commands, config, processes, status
from tests.conftest import PROJECT_ROOT
from tests.helpers import LEARNING_MODELS, lagged_series, write_tiny_pipeline

pytestmark = pytest.mark.slow


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def airflow(tmp_path, tiny, monkeypatch):
    af = config.Airflow(home=tmp_path / "airflow-home", port=free_port())
    monkeypatch.setenv("AIRFLOW_HOME", str(af.home))
    config.write_config(af, dags_folder=PROJECT_ROOT / "dags")
    bystander = subprocess.Popen(["sleep", "3600"])  # not ours: stop() must leave it alone
    try:
        yield af
    finally:
        stopped = processes.stop(af, say=lambda _: None)
        assert bystander.poll() is None, "stop() killed a process it did not start"
        bystander.kill()
        for pid in stopped:
            assert not processes._group_alive(pid)


def test_scheduler_runs_the_tiny_pipeline(airflow, tiny):
    # Data the models learn in two epochs, so the run promotes a champion and its Asset event
    # triggers the forecast DAG through the real scheduler. The GRU has two seeds and a small
    # search with a learning-rate sweep, and every model sees the day of the week: the whole
    # issue-12 path through the scheduler, as `make run PIPELINE=...` runs it.
    search = {"trials": 2, "learning_rate": [0.01, 0.03], "lr_sweep": {"epochs": 3}}
    gru = {**LEARNING_MODELS[1], "seeds": 2, "tune": search}
    write_tiny_pipeline(
        tiny["pipelines"],
        data=lagged_series(),
        models=[LEARNING_MODELS[0], gru],
        calendar=["dayofweek"],
    )
    # A broken spec beside the good one: reported as an import error, the good DAG still runs.
    write_tiny_pipeline(tiny["pipelines"], name="broken", models=[{"type": "lstm", "units": [0]}])
    # And a pipeline whose data has a bad value, for make run's failure path.
    csv = write_tiny_pipeline(tiny["pipelines"], name="bad").with_suffix(".csv")
    lines = csv.read_text().splitlines()
    lines[50] = lines[50].split(",")[0] + ",oops,5.0"
    csv.write_text("\n".join(lines) + "\n")
    lines: list[str] = []
    code = commands.run_pipeline(
        airflow, "tiny", conf={"epochs": 2}, pools={"training": 1}, say=lines.append
    )
    output = "\n".join(lines)
    assert code == 0, output
    lines = output.splitlines()  # one `say` may print several lines (the leaderboard)
    # The tiny pipeline has no unit: plain headers; persistence is its own skill's zero.
    assert "Leaderboard: test split, in the data's units, ranked by mase" in lines, output
    assert any(
        re.fullmatch(
            r" +rank +name +kind +MAE +RMSE +MASE +skill vs persistence \(%\) +seed spread, MASE"
            r" +80% interval coverage \(%\) +95% interval coverage \(%\)",
            line,
        )
        for line in lines
    ), output
    # MAE, RMSE, MASE, then its skill against itself, then its intervals' coverage.
    persistence = r" +\d +persistence +baseline +[\d.]+ +[\d.]+ +[\d.]+ +0\.0 +\d+\.\d +\d+\.\d"
    assert any(re.fullmatch(persistence, line) for line in lines), output
    for task in (
        "ingest",
        "data_changed",
        "validate",
        "split_scale",
        "window",
        "plan_trials",
        "trial[gru-lr]",
        "trial[gru-t1]",
        "trial[gru-t2]",
        "select",
        "train[lstm]",
        "train[gru-s1]",
        "train[gru-s2]",
        "evaluate",
        "gate",
        "promote",
        "report",
        "forecast",
        "score_forecasts",
    ):
        assert f"] {task} " in output, task
    assert "Gate: " in output and "no champion yet: beating the baselines suffices" in output
    assert "is now version 1" in output
    # The champion Asset's event started the forecast DAG: a run the scheduler created.
    assert "The new champion triggered forecast_tiny run asset_triggered__" in output
    number = r"-?\d+\.\d+"  # no unit after it
    assert any(
        re.fullmatch(
            rf"Forecast:   2024-08-28: {number}, 2024-08-29: {number} "
            r"\(version 1, data up to 2024-08-27\)",
            line,
        )
        for line in lines
    ), output
    # Every component listens on loopback only, and the log servers are off.
    assert f"127.0.0.1:{airflow.port}" in output
    client = api.Client(airflow)
    runs = client.dag_runs("train_tiny")
    assert [r["state"] for r in runs] == ["success"]  # no surprise scheduled run beside it
    # Every link is a page in the Airflow UI, the pipeline's page last.
    run_id = runs[0]["dag_run_id"]
    (forecast_run,) = (
        r for r in client.dag_runs("forecast_tiny") if r["run_type"] == "asset_triggered"
    )
    forecasts = config.report_url(airflow, "forecast_tiny", forecast_run["dag_run_id"])
    assert f"Forecasts:  {forecasts}" in lines, output
    assert f"Report:     {config.report_url(airflow, 'train_tiny', run_id)}" in lines, output
    assert lines[-3:] == [
        f"Airflow UI: {config.run_url(airflow, 'train_tiny', run_id)}",
        f"Results:    {config.pipeline_url(airflow, 'tiny')}  "
        f"(login: admin / {config.password(airflow)})",
        "Stop it with `make stop`.",
    ], output
    run_dir = Path(client.xcom("train_tiny", run_id, "report")["html"]).parents[1]
    assert run_dir.parent == tiny["artifacts"] / "tiny" / "runs"
    # The pool that make run creates is the one train and the trials used.
    tis = client.task_instances("train_tiny", run_id)
    assert {ti["pool"] for ti in tis if ti["task_id"] in ("train", "trial")} == {"training"}
    board = json.loads((run_dir / "evaluate" / "leaderboard.json").read_text())
    kinds = {row["name"]: row["kind"] for row in board}
    assert kinds["gru"] == "ensemble" and kinds["gru-s1"] == kinds["gru-s2"] == "seed"
    chosen = json.loads((run_dir / "select" / "trials.json").read_text())["models"]["gru"]
    assert chosen["trial"] in ("gru-t1", "gru-t2")
    assert (run_dir / "report" / "lr_sweep_gru.png").stat().st_size > 0

    # Bad data: make run's exit code says so and its output names the row and the fix.
    failed: list[str] = []
    code = commands.run_pipeline(
        airflow, "bad", conf={"epochs": 1}, pools={"training": 1}, say=failed.append
    )
    output = "\n".join(failed)
    assert code == 1, output
    assert "] validate                 failed" in output
    assert "failed validate: DataValidationError:" in output
    assert "column 'load', row 50: value 'oops' is not a number" in output
    assert failed[-2] == (
        f"Results:    {config.pipeline_url(airflow, 'bad')}  "
        f"(login: admin / {config.password(airflow)})"
    )

    # make status: the champion from the registry, the runs over REST, the broken spec named.
    found = status.gather_status(airflow)
    assert status.components_up(found)
    blocks = {b.split("\n")[0]: b for b in status.format_status(found).split("\n\n")}
    assert blocks[f"Airflow at {airflow.url}: up"].count("healthy") == 4
    assert blocks["tiny"].split("\n")[1].startswith("  champion:  v1 ")
    assert "  last run:  success, " in blocks["tiny"] and f"({run_id})" in blocks["tiny"]
    assert "  next run:  none scheduled (triggered runs only)" in blocks["tiny"]
    assert f"  page:      {config.pipeline_url(airflow, 'tiny')}" in blocks["tiny"]
    assert "  last run:  failed, " in blocks["bad"]
    assert any(b.startswith("not loaded: ") and "broken.yaml" in b for b in blocks)

    errors = client.import_errors()
    assert [e["filename"] for e in errors] == ["spec_errors.py"]
    assert "broken.yaml" in errors[0]["stack_trace"]
    assert "field 'models.0.units.0'" in errors[0]["stack_trace"]
    dag = client.dag("train_tiny")
    assert dag["has_import_errors"] is False and dag["is_stale"] is False
    assert client.dag("train_broken") is None  # a 404
    with pytest.raises(config.LocalRunError, match=r"(?s)train_broken is not loaded.*units\.0"):
        client.wait_for_dag("train_broken", timeout=10)

    # Everything the four components (and their children) listen on is loopback.
    groups = {processes.read_pid(airflow, c) for c in processes.COMPONENTS}
    listening = {
        (conn.laddr.ip, conn.laddr.port)
        for conn in psutil.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.pid and _pgid(conn.pid) in groups
    }
    assert listening == {("127.0.0.1", airflow.port)}

    # The executor paid the steps' imports once, before it forked the workers that ran them.
    scheduler_log = airflow.log_file("scheduler").read_text()
    assert "PreloadingLocalExecutor" in (airflow.home / "airflow.cfg").read_text()
    assert "Preloaded freshcast.steps for the task processes" in scheduler_log

    # A second `up` reuses the running components.
    again: list[str] = []
    processes.up(airflow, pools={"training": 1}, say=again.append)
    assert "already up" in again[0]

    # The CLI refuses a conf that does not match the Params, with the reason.
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("airflow")),
            "dags",
            "trigger",
            "train_tiny",
            "--conf",
            json.dumps({"epochs": "abc"}),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "AIRFLOW_HOME": str(airflow.home)},
    )
    assert result.returncode != 0
    assert "Invalid input for param epochs" in result.stdout + result.stderr
    with pytest.raises(config.LocalRunError, match="epochs"):
        client.trigger("train_tiny", {"epochs": 0})


def test_replay_backfills_past_ticks_each_on_its_own_data(airflow, tiny):
    """`make replay`: a backfill over two daily ticks through the real scheduler; each run
    sees only the rows up to its tick, and the decisions are printed per run."""
    from freshcast.registry import Registry

    write_tiny_pipeline(
        tiny["pipelines"], data=lagged_series(), models=LEARNING_MODELS[-1:], schedule="@daily"
    )
    lines: list[str] = []
    code = commands.replay(
        airflow,
        "tiny",
        start="2024-08-21",
        end="2024-08-22",
        pools={"training": 1},
        say=lines.append,
        poll=2.0,
    )
    output = "\n".join(lines)
    assert code == 0, output
    rows = [line for line in lines if line.startswith("  2024-08-")]
    assert [r.split()[0] for r in rows] == ["2024-08-21", "2024-08-22"], output
    assert "promoted gru -> v1" in rows[0]
    registry = Registry("tiny")
    decided = [e for e in registry.history() if e["kind"] in ("promoted", "refused")]
    assert [e["run_id"][:20] for e in decided] == ["backfill__2024-08-21", "backfill__2024-08-22"]
    # Each run ingested the rows up to its own tick, not the whole file.
    ends = [registry.bundle(v)["lineage"]["data_end"][:10] for v in registry.versions()]
    assert ends[0] == "2024-08-21"
    assert registry.active_replay() is None  # the marker is gone once the replay ends
    client = api.Client(airflow)
    others = [r for r in client.dag_runs("train_tiny") if r["run_type"] != "backfill"]
    for run in others:  # the schedule's catch-up tick, if Airflow made one, trained nothing
        states = {
            t["task_id"]: t["state"] for t in client.task_instances("train_tiny", run["dag_run_id"])
        }
        assert states.get("gate") in (None, "skipped"), states


def _wait_for_run(client, dag_id: str, run_type: str, *, timeout: float = 900.0) -> dict:
    """The first run of `dag_id` of `run_type` once it has ended."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in client.dag_runs(dag_id) if r["run_type"] == run_type]
        if runs and runs[0]["state"] in ("success", "failed"):
            return runs[0]
        time.sleep(3)
    raise AssertionError(f"no {run_type} run of {dag_id} ended in {timeout:.0f}s")


def test_a_level_shift_signals_drift_and_the_scheduler_retrains_on_it(airflow, tiny):
    """Through the real scheduler: a champion (chosen on a two-fold backtest) forecasts; the
    series then shifts its level; the next forecast run scores the champion's forecast against
    the new actuals, finds its live error far above its test error and emits `tiny.drift`; the
    scheduler starts train_tiny on that Asset, and the retrained model replaces the champion.
    The registry history says the run started because of drift."""
    from freshcast.registry import Registry

    full = lagged_series(400)
    landing = tiny["pipelines"] / "landing"
    landing.mkdir()
    full.iloc[:200].to_csv(landing / "part-000.csv", index=False)
    write_tiny_pipeline(
        tiny["pipelines"],
        source={"path": "landing/"},
        models=LEARNING_MODELS[-1:],
        backtest={"folds": 2, "gate": True},
        drift={"ratio": 1.5, "min_steps": 2, "recent": 10},
        gate={"beat": []},
    )
    lines: list[str] = []
    code = commands.run_pipeline(
        airflow, "tiny", conf={"epochs": 15}, pools={"training": 2}, say=lines.append
    )
    output = "\n".join(lines)
    assert code == 0, output
    for task in ("backtest[fold 1]", "backtest[fold 2]", "gate", "promote", "forecast"):
        assert f"] {task} " in output, task
    registry = Registry("tiny")
    assert registry.champion()["version"] == 1
    (first,) = [e for e in registry.history() if e["kind"] == "promoted"]
    assert first["decision"]["trigger"] == "manual"
    assert first["decision"]["basis"] == "backtest"

    shifted = full.iloc[200:].copy()
    shifted["load"] += 15.0  # the level moves: the champion's forecasts of it miss by ~15
    shifted.to_csv(landing / "part-001.csv", index=False)
    client = api.Client(airflow)
    run_id = client.trigger("forecast_tiny", {})
    assert client.follow("forecast_tiny", run_id, say=lambda _: None) == "success"
    states = {t["task_id"]: t["state"] for t in client.task_instances("forecast_tiny", run_id)}
    assert states["drift"] == "success", states
    drift = client.xcom("forecast_tiny", run_id, "drift")
    assert drift["version"] == 1 and drift["steps"] == 2 and drift["ratio"] > 1.5

    retrained = _wait_for_run(client, "train_tiny", "asset_triggered")
    assert retrained["state"] == "success", client.failures("train_tiny", retrained["dag_run_id"])
    events = registry.history()
    (signal,) = [e for e in events if e["kind"] == "drift"]
    assert signal["run_id"] == run_id and signal["version"] == 1
    decided = [e for e in events if e["kind"] in ("promoted", "refused")]
    assert decided[-1]["run_id"] == retrained["dag_run_id"]
    assert decided[-1]["kind"] == "promoted", decided[-1]["decision"]["reasons"]
    assert decided[-1]["decision"]["trigger"] == "drift"
    assert registry.champion()["version"] == 2
