"""Faults on a running local Airflow (the four components started as `make run` starts them):
a scheduler killed outright mid-run, `make stop` in the middle of training, and ten triggers at
once, on the default SQLite database and on PostgreSQL.

Processes are followed here with psutil and os.getsid, by session and start time, apart from
how `freshcast.local` finds them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from freshcast.local import api, config, processes
from tests.conftest import PROJECT_ROOT
from tests.e2e.test_scheduler import free_port
from tests.helpers import LEARNING_MODELS, lagged_series, write_tiny_pipeline

pytestmark = pytest.mark.slow

DAG = "train_tiny"
# One model that trains for about ten seconds (no early stop), so a test can act mid-training,
# and one that would train for minutes.
SLOW_MODEL = {"type": "gru", "units": [8], "epochs": 150, "batch_size": 16, "patience": 150}
LONG_MODEL = {**SLOW_MODEL, "epochs": 3000, "patience": 3000}


@contextlib.contextmanager
def configured(af, monkeypatch):
    """`af` with its airflow.cfg written, as the test's AIRFLOW_HOME; stopped afterwards."""
    monkeypatch.setenv("AIRFLOW_HOME", str(af.home))
    config.write_config(af, dags_folder=PROJECT_ROOT / "dags")
    try:
        yield af
    finally:
        processes.stop(af, say=lambda _: None)


@pytest.fixture
def airflow(tmp_path, tiny, monkeypatch):
    with configured(
        config.Airflow(home=tmp_path / "airflow-home", port=free_port()), monkeypatch
    ) as af:
        yield af


def session(leader: int) -> set[tuple[int, float]]:
    """The live processes of the session `leader` leads or led, as (pid, start time)."""
    found = set()
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getsid(process.pid) == leader and process.status() != psutil.STATUS_ZOMBIE:
                found.add((process.pid, process.create_time()))
    return found


def still_alive(processes: set[tuple[int, float]]) -> set[tuple[int, float]]:
    """Those of `processes` that run yet (a zombie has ended; a reused pid is another)."""
    alive = set()
    for pid, started in processes:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            if process.create_time() == started and process.status() != psutil.STATUS_ZOMBIE:
                alive.add((pid, started))
    return alive


def task_processes(scheduler: int) -> set[tuple[int, float]]:
    """The task processes under the scheduler: in its session, in process groups of their own
    (Airflow's task supervisor puts them there), so a signal to its group misses them."""
    return {(pid, t) for pid, t in session(scheduler) if os.getpgid(pid) != scheduler}


def wait_for_training(client: api.Client, run_id: str, scheduler: int) -> None:
    """Until the run's train task is running and its task process exists."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        states = {ti["task_id"]: ti["state"] for ti in client.task_instances(DAG, run_id)}
        if states.get("train") == "running" and task_processes(scheduler):
            return
        assert states.get("train") not in ("success", "failed"), states
        time.sleep(0.3)
    raise AssertionError("the train task never started")


def file_times(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in folder.rglob("*") if p.is_file()}


def assert_private(af: config.Airflow) -> None:
    """AIRFLOW_HOME and all in it are the owner's alone; the password is in no log."""
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [af.home, *af.home.iterdir()]}
    assert {name: mode for name, mode in modes.items() if mode & 0o077} == {}, modes
    assert af.passwords_file.name in modes and "api-server.log" in modes
    secret = config.password(af)
    assert not [log.name for log in af.home.glob("*.log") if secret in log.read_text()]


def start_training(airflow):
    """Start Airflow, trigger the tiny pipeline and return once its train task runs:
    (client, run id, the scheduler's pid)."""
    processes.up(airflow, pools={"training": 1}, say=lambda _: None)
    client = api.Client(airflow)
    client.wait_for_dag(DAG)
    client.unpause(DAG)
    run_id = client.trigger(DAG, {})
    scheduler = processes.read_pid(airflow, "scheduler")
    wait_for_training(client, run_id, scheduler)
    return client, run_id, scheduler


def test_killed_scheduler_leaves_nothing_behind_a_restart(airflow, tiny):
    """SIGKILL of the scheduler mid-training orphans its executor workers and the task process;
    starting again (`make run`'s first step) ends them first, and the run still succeeds."""
    write_tiny_pipeline(tiny["pipelines"], models=[SLOW_MODEL])
    client, run_id, scheduler = start_training(airflow)

    left = session(scheduler) - {(scheduler, psutil.Process(scheduler).create_time())}
    os.kill(scheduler, signal.SIGKILL)
    time.sleep(1)
    orphans = still_alive(left)
    assert orphans, "the killed scheduler's workers and task exited by themselves"

    said: list[str] = []
    processes.up(airflow, pools={"training": 1}, say=said.append)
    assert still_alive(orphans) == set(), "\n".join(said)
    assert any("left running when it died" in line for line in said), said
    assert processes.read_pid(airflow, "scheduler") not in (None, scheduler)
    assert_private(airflow)

    # The new scheduler retries the task that lost its process; nobody else finishes it.
    assert client.follow(DAG, run_id, say=lambda _: None, timeout=600) == "success"
    tries = [ti["try_number"] for ti in client.task_instances(DAG, run_id)]
    assert max(tries) >= 2


def test_stop_mid_training_returns_when_every_process_is_gone(airflow, tiny):
    """`python -m freshcast.local stop` (what `make stop` runs, in another process) during a
    train task: it returns only once every process of every component is gone, the task
    process included, and nothing writes artifacts afterwards."""
    write_tiny_pipeline(tiny["pipelines"], models=[LONG_MODEL])
    _, _, scheduler = start_training(airflow)

    started = set()
    for component in processes.COMPONENTS:
        started |= session(processes.read_pid(airflow, component))
    assert task_processes(scheduler) <= started
    env = {**os.environ, "AIRFLOW_HOME": str(airflow.home), "AIRFLOW_PORT": str(airflow.port)}
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "freshcast.local", "stop"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - began
    assert result.returncode == 0, result.stdout + result.stderr
    assert still_alive(started) == set(), result.stdout
    assert "stopping scheduler" in result.stdout
    assert not list(airflow.home.glob("*.pid"))

    written = file_times(tiny["artifacts"])
    time.sleep(3)
    assert file_times(tiny["artifacts"]) == written, "something still writes artifacts"
    assert took < 60, f"stop took {took:.0f}s"


def test_ten_triggers_at_once_all_run_and_keep_the_registry_in_order(airflow, tiny):
    """Ten REST triggers at the same moment on SQLite: each creates its run (the client sends
    again what met a locked database), all ten succeed one after another, and the registry's
    history has no gap, one decision per run that trained, one champion change per promotion."""
    from freshcast.registry import Registry

    write_tiny_pipeline(tiny["pipelines"], data=lagged_series(), models=LEARNING_MODELS[-1:])
    processes.up(airflow, pools={"training": 1}, say=lambda _: None)
    client = api.Client(airflow)
    client.wait_for_dag(DAG)
    client.unpause(DAG)
    # Two forced: with the data unchanged the others skip training after the first decision.
    confs = [{"epochs": 2, "force": True} if i in (3, 7) else {} for i in range(10)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        run_ids = list(pool.map(lambda conf: client.trigger(DAG, conf), confs))
    assert len(set(run_ids)) == 10
    assert {r["dag_run_id"] for r in client.dag_runs(DAG)} == set(run_ids)

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        states = [r["state"] for r in client.dag_runs(DAG)]
        if all(s in ("success", "failed") for s in states):
            break
        time.sleep(3)
    assert states == ["success"] * 10, states

    registry = Registry("tiny")
    history = registry.history()
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    trained = [
        run_id
        for run_id in run_ids
        if any(
            ti["task_id"] == "gate" and ti["state"] == "success"
            for ti in client.task_instances(DAG, run_id)
        )
    ]
    assert 2 <= len(trained) <= 3, trained
    decisions = [e for e in history if e["kind"] in ("promoted", "refused")]
    assert sorted(e["run_id"] for e in decisions) == sorted(trained)
    promoted = [e for e in history if e["kind"] == "promoted"]
    assert promoted, "no run promoted a champion"
    assert len({e["run_id"] for e in promoted}) == len({e["version"] for e in promoted})
    assert len(promoted) == len({e["run_id"] for e in promoted})
    assert registry.problems() == []
    assert_private(airflow)


@pytest.fixture
def postgres_airflow(tmp_path, tiny, monkeypatch):
    """The same set-up on a fresh PostgreSQL database, as FRESHCAST_DATABASE_URL asks for."""
    import psycopg2

    with socket.socket() as sock:
        sock.settimeout(1)
        if sock.connect_ex(("127.0.0.1", 5432)) != 0:
            if os.environ.get("CI"):
                pytest.fail("PostgreSQL is not listening on 127.0.0.1:5432; .ci/run starts it")
            pytest.skip("PostgreSQL is not listening on 127.0.0.1:5432")
    database = f"freshcast_{secrets.token_hex(4)}"
    af = config.Airflow(
        home=tmp_path / "airflow-home",
        port=free_port(),
        database=f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}",
    )
    try:
        with configured(af, monkeypatch):
            yield af
    finally:
        conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.close()


def test_postgresql_takes_ten_triggers_at_once_without_a_retry(postgres_airflow, tiny):
    """With one setting the local set-up keeps its metadata in PostgreSQL (the database is
    created on first start); there ten simultaneous triggers all land at the first attempt."""
    af = postgres_airflow
    write_tiny_pipeline(tiny["pipelines"])
    said: list[str] = []
    processes.up(af, pools={"training": 1}, say=said.append)
    assert f"migrating the metadata database ({config.database_label(af.database)})" in said
    assert not (af.home / "airflow.db").exists()
    client = api.Client(af, attempts=1)  # no second attempt for anything
    client.wait_for_dag(DAG)
    with ThreadPoolExecutor(max_workers=10) as pool:
        run_ids = list(pool.map(lambda _: client.trigger(DAG, {}), range(10)))
    assert {r["dag_run_id"] for r in client.dag_runs(DAG)} == set(run_ids)
    assert len(set(run_ids)) == 10
    assert_private(af)
