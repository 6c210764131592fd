"""A real distributed run: CeleryExecutor with this machine's PostgreSQL (metadata) and Redis
(broker), the api-server, scheduler, dag-processor and triggerer, and Celery workers with their
own names, started by the same code as `make run`.

Without PostgreSQL or Redis these tests skip on a user's machine and fail in CI (CI=true).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import time
from pathlib import Path

import pytest

from freshcast import localrun
from tests.conftest import PROJECT_ROOT
from tests.helpers import LEARNING_MODELS, lagged_series, write_tiny_pipeline

pytestmark = pytest.mark.slow

PG = "postgres@127.0.0.1:5432"


def _reachable(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _require_services() -> None:
    missing = [
        name for name, port in (("PostgreSQL", 5432), ("Redis", 6379)) if not _reachable(port)
    ]
    if missing:
        message = f"{' and '.join(missing)} not listening on 127.0.0.1"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; .ci/run starts them")
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def celery_airflow(tmp_path, tiny, monkeypatch):
    """A CeleryExecutor installation on a fresh PostgreSQL database and Redis db index."""
    import psycopg
    import redis

    _require_services()
    database = f"freshcast_{secrets.token_hex(4)}"
    with psycopg.connect(f"postgresql://{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    redis_db = 1 + secrets.randbelow(15)
    af = localrun.Airflow(
        home=tmp_path / "airflow-home",
        port=_free_port(),
        executor="CeleryExecutor",
        database=f"postgresql+psycopg2://{PG}/{database}",
        broker=f"redis://127.0.0.1:6379/{redis_db}",
        result_backend=f"db+postgresql://{PG}/{database}",
    )
    monkeypatch.setenv("AIRFLOW_HOME", str(af.home))
    localrun.write_config(
        af,
        dags_folder=PROJECT_ROOT / "dags",
        parallelism=8,
        # A worker that dies is noticed in seconds, not the default 5 minutes.
        extra={
            "scheduler": {
                "task_instance_heartbeat_timeout": "20",
                "task_instance_heartbeat_timeout_detection_interval": "5",
            }
        },
    )
    write_tiny_pipeline(tiny["pipelines"], data=lagged_series(), models=LEARNING_MODELS)
    try:
        yield af
    finally:
        stopped = localrun.stop(af, say=lambda _: None)
        for pid in stopped:  # the workers' process groups too
            assert not localrun._group_alive(pid)
        redis.Redis(host="127.0.0.1", port=6379, db=redis_db).flushdb()
        with psycopg.connect(f"postgresql://{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _task_hosts(client, dag_id, run_id):
    return {
        (ti["task_id"], ti["map_index"]): (ti["hostname"], ti["try_number"], ti["state"])
        for ti in client.task_instances(dag_id, run_id)
    }


def test_celery_run_spreads_tasks_over_two_workers(celery_airflow, tiny):
    af = celery_airflow
    started = time.monotonic()
    localrun.up(af, pools={"training": 2}, say=lambda _: None)
    # Only w-train serves the spec's training queue (`training_queue`, default "training").
    localrun.start_worker(af, "w-train", queues=["training"])
    localrun.start_worker(af, "w-default", queues=["default"])
    lines: list[str] = []
    code = localrun.run_pipeline(
        af, "tiny", conf={"epochs": 2}, pools={"training": 2}, say=lines.append
    )
    output = "\n".join(lines)
    assert code == 0, output
    assert "is now version 1" in output and "Forecast:" in output
    elapsed = time.monotonic() - started

    client = localrun.Client(af)
    (run,) = client.dag_runs("train_tiny")
    hosts = _task_hosts(client, "train_tiny", run["dag_run_id"])
    trains = {k: v for k, v in hosts.items() if k[0] == "train"}
    others = {k: v for k, v in hosts.items() if k[0] != "train" and v[2] == "success"}
    assert {h for h, _, _ in trains.values()} == {"w-train"}, hosts
    assert {h for h, _, _ in others.values()} == {"w-default"}, hosts
    per_worker = {}
    for host, _, state in hosts.values():
        if state == "success":
            per_worker[host] = per_worker.get(host, 0) + 1
    print(f"\ndistributed run: {elapsed:.0f}s from start, tasks per worker: {per_worker}")
    # Artifacts are where the spec's store says, written by both workers.
    run_dir = tiny["artifacts"] / "tiny" / "runs"
    (folder,) = list(run_dir.iterdir())
    for step in ("ingest", "validate", "window", "evaluate", "gate", "report"):
        assert (folder / step / "manifest.json").exists(), step
    assert (folder / "train" / "lstm" / "model.keras").exists()
    assert (tiny["artifacts"] / "tiny" / "registry" / "champion.json").exists()


def test_a_killed_worker_costs_a_retry_not_the_run(celery_airflow, tiny):
    af = celery_airflow
    # Training that outlasts the polling below (no early stop), so the kill lands mid-train.
    slow_gru = {**LEARNING_MODELS[-1], "epochs": 200, "patience": 1000}
    write_tiny_pipeline(tiny["pipelines"], data=lagged_series(), models=[slow_gru])
    localrun.up(af, pools={"training": 2}, say=lambda _: None)
    for name in ("w1", "w2"):
        localrun.start_worker(af, name, queues=["default", "training"], concurrency=1)
    client = localrun.Client(af)
    client.wait_for_dag("train_tiny")
    client.unpause("train_tiny")
    run_id = client.trigger("train_tiny", {})

    # Wait until the train task runs on some worker, then kill that worker outright.
    deadline, victim = time.monotonic() + 300, None
    while time.monotonic() < deadline and victim is None:
        for ti in client.task_instances("train_tiny", run_id):
            if ti["task_id"] == "train" and ti["state"] == "running" and ti["hostname"]:
                victim = ti["hostname"]
        time.sleep(0.5)
    assert victim in ("w1", "w2"), "the train task never started"
    pid = localrun.read_pid(af, f"worker-{victim}")
    os.killpg(pid, signal.SIGKILL)

    state = client.follow("train_tiny", run_id, say=lambda _: None, timeout=600)
    hosts = _task_hosts(client, "train_tiny", run_id)
    assert state == "success", hosts
    survivor = "w2" if victim == "w1" else "w1"
    host, try_number, _ = next(v for k, v in hosts.items() if k[0] == "train" and v[2] == "success")
    assert try_number >= 2 and host == survivor, hosts
    assert Path(tiny["artifacts"] / "tiny" / "registry" / "champion.json").exists()
