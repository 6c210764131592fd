"""A real distributed run: CeleryExecutor with this machine's PostgreSQL (metadata) and Redis
(broker), the api-server, scheduler, dag-processor and triggerer, and Celery workers with their
own names, started by the same code as `make run`.

Without PostgreSQL or Redis these tests skip on a user's machine and fail in CI (CI=true).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import time
from pathlib import Path

import pytest

from freshcast import artifacts
from freshcast.local import api, commands, config, processes
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
    af = config.Airflow(
        home=tmp_path / "airflow-home",
        port=_free_port(),
        executor="CeleryExecutor",
        database=f"postgresql+psycopg2://{PG}/{database}",
        broker=f"redis://127.0.0.1:6379/{redis_db}",
        result_backend=f"db+postgresql://{PG}/{database}",
    )
    monkeypatch.setenv("AIRFLOW_HOME", str(af.home))
    config.write_config(
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
        stopped = processes.stop(af, say=lambda _: None)
        for pid in stopped:  # the workers' process groups too
            assert not processes._group_alive(pid)
        redis.Redis(host="127.0.0.1", port=6379, db=redis_db).flushdb()
        with psycopg.connect(f"postgresql://{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _task_hosts(client, dag_id, run_id):
    return {
        (ti["task_id"], ti["map_index"]): (ti["hostname"], ti["try_number"], ti["state"])
        for ti in client.task_instances(dag_id, run_id)
    }


def test_celery_run_spreads_tasks_over_two_workers(
    celery_airflow, tiny, s3_root, tmp_path, monkeypatch
):
    """Two workers that share nothing but the object store: artifacts on `s3://` (a real S3
    protocol server on loopback, reached through an Airflow connection), each worker with its
    own working copy."""
    af = celery_airflow
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    connection = {
        "conn_type": "aws",
        "login": os.environ["AWS_ACCESS_KEY_ID"],
        "password": os.environ["AWS_SECRET_ACCESS_KEY"],
        "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_FRESHCAST_S3", json.dumps(connection))
    monkeypatch.setenv("FRESHCAST_STORAGE_CONN_ID", "freshcast_s3")
    monkeypatch.setenv("FRESHCAST_ARTIFACT_ROOT", s3_root)
    caches = {name: tmp_path / f"cache-{name}" for name in ("w-train", "w-default")}
    started = time.monotonic()
    processes.up(af, pools={"training": 2}, say=lambda _: None)
    # Only w-train serves the spec's training queue (`training_queue`, default "training").
    for name, queues in (("w-train", ["training"]), ("w-default", ["default"])):
        processes.start_worker(
            af, name, queues=queues, env={"FRESHCAST_CACHE_DIR": str(caches[name])}
        )
    lines: list[str] = []
    code = commands.run_pipeline(
        af, "tiny", conf={"epochs": 2}, pools={"training": 2}, say=lines.append
    )
    output = "\n".join(lines)
    assert code == 0, output
    assert "is now version 1" in output and "Forecast:" in output
    elapsed = time.monotonic() - started

    client = api.Client(af)
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
    # Each worker imported the task steps' libraries once, before its pool forked.
    for name in caches:
        log = af.log_file(f"worker-{name}").read_text()
        assert "Preloaded freshcast.steps for the task processes" in log, name
    # Artifacts are where FRESHCAST_ARTIFACT_ROOT says: in the bucket, written by both workers.
    import boto3

    bucket, prefix = s3_root.removeprefix("s3://").split("/", 1)
    keys = {
        o["Key"].removeprefix(f"{prefix}/tiny/")
        for page in boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    }
    folder = f"runs/{artifacts.safe_run_id(run['dag_run_id'])}"
    for step in ("ingest", "validate", "window", "train/lstm", "evaluate", "gate", "report"):
        assert f"{folder}/{step}/manifest.json" in keys, sorted(keys)
    assert {"registry/champion.json", "registry/versions/v0001/manifest.json"} <= keys
    assert any(k.startswith("forecasts/runs/") for k in keys)
    # The training worker's own copy never held the evaluation, which w-default wrote.
    assert not (caches["w-train"] / "tiny" / folder / "evaluate").exists()
    assert (caches["w-default"] / "tiny" / folder / "train" / "lstm" / "model.keras").exists()
    assert not tiny["artifacts"].exists()  # nothing fell back to the local default


def test_a_killed_worker_costs_a_retry_not_the_run(celery_airflow, tiny):
    af = celery_airflow
    # Training that outlasts the polling below (no early stop), so the kill lands mid-train.
    slow_gru = {**LEARNING_MODELS[-1], "epochs": 200, "patience": 1000}
    write_tiny_pipeline(tiny["pipelines"], data=lagged_series(), models=[slow_gru])
    processes.up(af, pools={"training": 2}, say=lambda _: None)
    for name in ("w1", "w2"):
        processes.start_worker(af, name, queues=["default", "training"], concurrency=1)
    client = api.Client(af)
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
    pid = processes.read_pid(af, f"worker-{victim}")
    os.killpg(pid, signal.SIGKILL)

    state = client.follow("train_tiny", run_id, say=lambda _: None, timeout=600)
    hosts = _task_hosts(client, "train_tiny", run_id)
    assert state == "success", hosts
    survivor = "w2" if victim == "w1" else "w1"
    host, try_number, _ = next(v for k, v in hosts.items() if k[0] == "train" and v[2] == "success")
    assert try_number >= 2 and host == survivor, hosts
    assert Path(tiny["artifacts"] / "tiny" / "registry" / "champion.json").exists()
