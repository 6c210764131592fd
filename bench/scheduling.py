"""The scheduling case: N tiny pipelines triggered at once through a real Airflow.

For each size N and each setup, a fresh Airflow (its own AIRFLOW_HOME, artifact root and
metadata database, started by `freshcast.local` as `make run` starts it) gets N generated
pipelines, every `train_<name>` DAG is unpaused and then all N are triggered as fast as the API
takes them; the case polls until every run has ended and stops Airflow before the next. Setups:

    local      LocalExecutor, SQLite in the home (as `make run`); parallelism 2 x cores
    local-pg   LocalExecutor on a fresh PostgreSQL database (not run unless asked)
    celery-1   CeleryExecutor, PostgreSQL (fresh database, dropped after) and Redis (an empty
               db index, flushed after), one worker with concurrency = cores
    celery-2   the same with two workers, each with concurrency = cores: one against two workers
               compares the same concurrency per worker, so two workers on two machines would
               double the slots. On one machine they share its cores (see the goal below).

The `training` pool gets the executor's slots (parallelism, or workers x cores), so the pool is
not the bottleneck; the `registry` pool keeps its one slot (promote tasks of all pipelines take
turns on it, as the DAGs ask). Only the train DAGs run: the forecast DAGs stay paused (the
champion Asset would otherwise start them). Each tiny pipeline: 240 daily rows, one GRU of 4
units, 1 epoch, 1 seed, no search or backtest, drift off, no schedules, and a gate with no
baselines to beat, so every run promotes its model and runs all ten tasks.

Figures per N and setup:

    total s        first trigger to the last run's end (the runs' end_date in the database)
    runs/min       N / total
    sched CPU s    user + system CPU of the scheduler process and its own children (with
                   LocalExecutor its executor workers, which supervise the tasks), not the task
                   processes (each in a process group of its own), over the measured interval
    all CPU s      the same for every Airflow component (api-server, dag-processor, triggerer,
                   Celery workers without their task processes)
    db MiB         the metadata database's size after the runs (SQLite file, pg_database_size)
    overhead       per task: wall time (TaskInstance end - start) minus the step's own time
                   (its XCom `seconds`), median and p90 over the tasks that return one (not the
                   short-circuit data_changed task); start_date is set as the task process is
                   forked, so this holds parsing the DAG file, imports and the API calls
    queued med s   per task: start_date - queued_dttm, median (the executor's pick-up delay);
                   start_date - scheduled_dttm (which adds waiting for a slot) is in the JSON
    others %       the share of the machine's busy CPU time that was not this Airflow's
                   (components and the task processes they reaped): anything else running
                   skews every figure, so a row says how much

LocalExecutor's task processes are forked from a scheduler that imported the steps' libraries
(plugins/freshcast_executor.py), and a Celery worker's from a worker that did
(plugins/freshcast_celery.py); `local-plain` is Airflow's LocalExecutor without that, for the
orchestration case's comparison. `celery-1:10` in `setups` runs that setup at N=10 only.

Goals: two Celery workers' runs/minute >= 1.6 x one worker's (at the largest N); the median
per-task overhead at the largest N <= 1.2 x the smallest N's (it does not grow with N).

Standalone: python -m bench.scheduling [--sizes 2,10] [--setups local,celery-1] [--out f.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import PROJECT_ROOT, ProbeError

CASE = "scheduling"
PG_SERVER = "postgres@127.0.0.1:5432"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PREFIX = "sched"  # pipelines sched_001 ... : DAGs train_sched_001 ...
ROWS = 240
TERMINAL_RUN = ("success", "failed")
TICKS = os.sysconf("SC_CLK_TCK")
SCALING_TARGET = 1.6
GROWTH_TARGET = 1.2


@dataclass(frozen=True)
class Setup:
    name: str
    executor: str
    postgres: bool
    workers: int = 0  # Celery workers


SETUPS = {
    "local": Setup("local", "LocalExecutor", postgres=False),
    # Airflow's LocalExecutor as it ships, without make run's preloading (the orchestration
    # case's comparison).
    "local-plain": Setup(
        "local-plain", "airflow.executors.local_executor.LocalExecutor", postgres=False
    ),
    "local-pg": Setup("local-pg", "LocalExecutor", postgres=True),
    "celery-1": Setup("celery-1", "CeleryExecutor", postgres=True, workers=1),
    "celery-2": Setup("celery-2", "CeleryExecutor", postgres=True, workers=2),
}


class RunsFailed(RuntimeError):
    """Some triggered runs did not succeed; `row` holds what was measured."""

    def __init__(self, message: str, row: dict[str, Any]) -> None:
        super().__init__(message)
        self.row = row


def cores() -> int:
    return len(os.sched_getaffinity(0))


# ------------------------------------------------------------------------------ pipelines


def write_pipelines(folder: Path, n: int, *, model: str = "gru") -> list[str]:
    """N tiny pipeline specs and their CSVs in `folder` (no pandas: the stdlib writes them);
    returns their names. Each series: the target follows yesterday's helper feature."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{PREFIX}_{i:03d}" for i in range(1, n + 1)]
    for i, name in enumerate(names):
        rng = random.Random(i)
        temp = [rng.gauss(0, 1) for _ in range(ROWS + 1)]
        lines = ["day,load,temp"]
        for t in range(ROWS):
            day = datetime.fromordinal(datetime(2024, 1, 1).toordinal() + t).date()
            load = 10 + 2 * temp[t] + rng.gauss(0, 0.1)
            lines.append(f"{day.isoformat()},{load:.4f},{temp[t + 1]:.4f}")
        (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")
        spec = {
            "description": f"Scheduling benchmark pipeline {i + 1} of {n}.",
            "source": {"path": f"{name}.csv"},
            "timestamp": "day",
            "frequency": "D",
            "target": "load",
            "features": ["load", "temp"],
            "split": {"val": 0.2, "test": 0.2},
            "window": 7,
            "horizon": 2,
            "season_length": 7,
            "metric": "mae",
            "schedule": None,
            "forecast": {"schedule": None},
            "drift": {"enabled": False},
            # Nothing to beat: the first run promotes, so every run runs every task.
            "gate": {"beat": []},
            "models": [
                {
                    "type": model,
                    "units": [4],
                    "epochs": 1,
                    "batch_size": 32,
                    "patience": 1,
                    "seeds": 1,
                }
            ],
        }
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return names


# ------------------------------------------------------------------------------ CPU time


def _stat(pid: int) -> tuple[int, int, int, int, int] | None:
    """(pgid, sid, utime + stime, the same of its waited-for children, start time) of `pid`,
    times in ticks, or None."""
    try:
        line = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = line[line.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    own, waited = int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])
    return int(fields[2]), int(fields[3]), own, waited, int(fields[19])


class CpuMeter:
    """User + system CPU of Airflow's components over an interval, task processes left out.

    Every component leads a session of its own (`processes.spawn`); what it starts stays in its
    session, and a task process moves into a process group of its own (Airflow's supervisor
    calls setpgid), so the component's own processes are those in the leader's group. Sampled
    every `interval` seconds; each process counts from its first sample's CPU if it was there
    at the start, from zero if it appeared later. Exited children's CPU is not read (their
    parent's cutime holds it, task processes' too): these components' own processes live on.

    `total` also counts what their processes waited for (cutime + cstime): the task processes
    that ended (their supervisors reap them) and what those ran, for comparing with the
    machine's busy time.
    """

    def __init__(self, leaders: dict[str, int], *, interval: float = 0.5) -> None:
        self.leaders = leaders  # component -> leader pid (= its session and group id)
        self.interval = interval
        self.base: dict[tuple[int, int], tuple[int, int]] = {}
        self.last: dict[tuple[int, int], tuple[str, bool, int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.seconds = self.total = 0.0

    def _sample(self, *, first: bool = False) -> None:
        component_of = {pid: c for c, pid in self.leaders.items()}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            got = _stat(pid)
            if got is None:
                continue
            pgid, sid, ticks, waited, started = got
            if sid not in component_of or pgid != sid:
                continue
            key = (pid, started)
            self.last[key] = (component_of[sid], pid == sid, ticks, waited)
            if first:
                self.base[key] = (ticks, waited)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> CpuMeter:
        self._sample(first=True)
        self._began = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> dict[str, dict[str, float]]:
        """{component: {"main": s, "children": s}} over the interval."""
        self._stop.set()
        self._thread.join()
        self._sample()
        self.seconds = time.monotonic() - self._began
        out: dict[str, dict[str, float]] = {}
        self.total = 0.0
        for key, (component, main, ticks, waited) in self.last.items():
            own, reaped = self.base.get(key, (0, 0))
            entry = out.setdefault(component, {"main": 0.0, "children": 0.0})
            entry["main" if main else "children"] += (ticks - own) / TICKS
            self.total += (ticks - own + waited - reaped) / TICKS
        return out


# ------------------------------------------------------------------------------ services


def _busy_ticks() -> int:
    """The machine's busy CPU time so far (all cores; /proc/stat's first line, idle and
    iowait left out), in ticks."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg(statement: str, *params: Any) -> Any:
    import psycopg

    with psycopg.connect(f"postgresql://{PG_SERVER}/postgres", autocommit=True) as conn:
        cursor = conn.execute(statement, params or None)
        row = cursor.fetchone() if cursor.description else None
        return row[0] if row else None


def _empty_redis_db() -> int:
    """An empty Redis db index other than 0 (0 is what a default install uses)."""
    import redis

    indexes = list(range(1, 16))
    random.shuffle(indexes)
    for index in indexes:
        if redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=index).dbsize() == 0:
            return index
    raise RuntimeError(f"no empty Redis db index on {REDIS_HOST}:{REDIS_PORT}")


def _flush_redis(index: int) -> None:
    import redis

    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=index).flushdb()


def _db_mib(af: Any, pg_database: str | None) -> float:
    if pg_database:
        return _pg("SELECT pg_database_size(%s)", pg_database) / 2**20
    files = af.home.glob("airflow.db*")  # the database and any -wal / -journal beside it
    return sum(p.stat().st_size for p in files) / 2**20


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables (the Airflow processes started meanwhile inherit them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile, so `finally` blocks stop Airflow."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait while Airflow is being stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _wait_worker(af: Any, name: str, *, timeout: float = 180.0) -> None:
    """Until Celery worker `name` says it is ready (in its log)."""
    from freshcast.local import processes

    log = af.log_file(f"worker-{name}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if f"@{name} ready." in log.read_text(errors="replace"):
                return
        if processes.read_pid(af, f"worker-{name}") is None:
            break
        time.sleep(1)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise RuntimeError(f"Celery worker {name} not ready after {timeout:.0f}s; its log:\n{tail}")


# ------------------------------------------------------------------------------ runs


def _all_runs(client: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """Every DAG run of the installation, by (dag_id, run_id)."""
    out, offset = {}, 0
    while True:
        page = client.dag_runs("~", limit=100, offset=offset)
        for run in page:
            out[(run["dag_id"], run["dag_run_id"])] = run
        offset += len(page)
        if len(page) < 100:
            return out


def _wait_runs(
    client: Any,
    run_ids: dict[str, str],
    *,
    timeout: float,
    say: Callable[[str], None],
    poll: float = 2.0,
) -> dict[str, dict[str, Any]]:
    """Poll until every run in {dag_id: run_id} has ended; returns {dag_id: run}."""
    began = time.monotonic()
    deadline, told = began + timeout, began
    while True:
        runs = _all_runs(client)
        mine = {d: runs.get((d, r)) for d, r in run_ids.items()}
        ended = sum(1 for r in mine.values() if r and r["state"] in TERMINAL_RUN)
        if ended == len(run_ids):
            return mine
        now = time.monotonic()
        if now > deadline:
            states: dict[str, int] = {}
            for r in mine.values():
                state = r["state"] if r else "missing"
                states[state] = states.get(state, 0) + 1
            raise RuntimeError(f"runs not done after {timeout:.0f}s: {states}")
        if now - told >= 30:
            told = now
            say(f"    {ended}/{len(run_ids)} runs ended after {now - began:.0f}s")
        time.sleep(poll)


def _records(af: Any, dag_ids: list[str]) -> dict[str, Any]:
    """The runs' task instances, XCom `seconds` and DAG runs, read from the metadata database
    in a fresh process (which imports Airflow; this one does not)."""
    env = {
        "AIRFLOW_HOME": str(af.home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": af.database_url,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scheduling", "--records", json.dumps(dag_ids)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not lines[-1].startswith("{"):
        tail = (proc.stderr.strip().splitlines() or lines)[-15:]
        raise ProbeError(
            f"reading the task instances exited {proc.returncode}:\n" + "\n".join(tail)
        )
    return json.loads(lines[-1])


def read_records(dag_ids: list[str]) -> dict[str, Any]:
    """In a process whose AIRFLOW_HOME and SQL_ALCHEMY_CONN name the installation: every task
    instance of `dag_ids` with its times and XCom `seconds`, their DAG runs, and how many runs
    the forecast DAGs had (none expected: they stay paused)."""
    from airflow.models import DagRun, TaskInstance
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    with create_session() as session:
        seconds = {}
        for dag_id, run_id, task_id, map_index, value in session.query(
            XComModel.dag_id,
            XComModel.run_id,
            XComModel.task_id,
            XComModel.map_index,
            XComModel.value,
        ).filter(XComModel.key == "return_value", XComModel.dag_id.in_(dag_ids)):
            if isinstance(value, str):
                with contextlib.suppress(ValueError):
                    value = json.loads(value)
            if isinstance(value, dict) and isinstance(value.get("seconds"), int | float):
                seconds[(dag_id, run_id, task_id, map_index)] = float(value["seconds"])
        upstream = {}  # (dag_id, task_id) -> its upstream task ids, from the serialized DAGs
        for dag_id in dag_ids:
            dag = SerializedDagModel.get_dag(dag_id, session=session)
            for task in dag.tasks if dag else []:
                upstream[(dag_id, task.task_id)] = sorted(task.upstream_task_ids)
        tasks = [
            {
                "dag_id": ti.dag_id,
                "upstream": upstream.get((ti.dag_id, ti.task_id), []),
                "run_id": ti.run_id,
                "task_id": ti.task_id,
                "map_index": ti.map_index,
                "state": str(ti.state) if ti.state else None,
                "try_number": ti.try_number,
                "hostname": ti.hostname,
                "scheduled": iso(ti.scheduled_dttm),
                "queued": iso(ti.queued_dttm),
                "start": iso(ti.start_date),
                "end": iso(ti.end_date),
                "work": seconds.get((ti.dag_id, ti.run_id, ti.task_id, ti.map_index)),
            }
            for ti in session.query(TaskInstance).filter(TaskInstance.dag_id.in_(dag_ids))
        ]
        runs = [
            {
                "dag_id": r.dag_id,
                "run_id": r.run_id,
                "state": str(r.state),
                "queued_at": iso(r.queued_at),
                "start": iso(r.start_date),
                "end": iso(r.end_date),
            }
            for r in session.query(DagRun).filter(DagRun.dag_id.in_(dag_ids))
        ]
        forecasts = session.query(DagRun).filter(DagRun.dag_id.like("forecast_%")).count()
    return {"tasks": tasks, "runs": runs, "forecast_runs": forecasts}


def _t(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p90": None, "n": 0}
    p90 = (
        statistics.quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 else values[0]
    )
    return {"median": statistics.median(values), "p90": p90, "n": len(values)}


def task_figures(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-task overhead and queueing delays over the runs' task instances."""
    overhead, queued, scheduled, by_task = [], [], [], {}
    hosts: dict[str, int] = {}
    for ti in tasks:
        start, end = _t(ti["start"]), _t(ti["end"])
        if start is None or end is None:
            continue
        if ti["queued"]:
            queued.append((start - _t(ti["queued"])).total_seconds())
        if ti["scheduled"]:
            scheduled.append((start - _t(ti["scheduled"])).total_seconds())
        if ti["hostname"]:
            hosts[ti["hostname"]] = hosts.get(ti["hostname"], 0) + 1
        if ti["state"] == "success" and ti["work"] is not None:
            extra = (end - start).total_seconds() - ti["work"]
            overhead.append(extra)
            by_task.setdefault(ti["task_id"], []).append(extra)
    return {
        "overhead": _quantiles(overhead),
        "queued": _quantiles(queued),
        "scheduled_to_start": _quantiles(scheduled),
        "overhead_by_task": {k: statistics.median(v) for k, v in sorted(by_task.items())},
        "retried": sum(1 for ti in tasks if (ti["try_number"] or 0) > 1),
        "tasks": len(tasks),
        "tasks_per_host": hosts,
    }


# ------------------------------------------------------------------------------ one setup


def run_setup(
    setup: Setup,
    n: int,
    work: Path,
    *,
    say: Callable[[str], None] = print,
    timeout: float | None = None,
    pipelines: Path | None = None,
    training_slots: int | None = None,
    keep_tasks: bool = False,
) -> dict[str, Any]:
    """One fresh Airflow of `setup` with N pipelines: trigger every training DAG, wait, measure,
    stop it (and drop its database, flush its Redis db). Raises RunsFailed when a run failed.

    `pipelines`: a folder of specs to run instead of N generated tiny ones; `training_slots`:
    the `training` pool's slots (default: every slot); `keep_tasks`: the row keeps every task
    instance's times and upstream task ids (`task_records`)."""
    from freshcast.local import api, config, processes

    k = cores()
    base = work / f"{setup.name}-n{n}"
    home, artifacts = base / "airflow-home", base / "artifacts"
    if pipelines is None:
        pipelines = base / "pipelines"
        names = write_pipelines(pipelines, n)
    else:
        names = sorted(p.stem for p in pipelines.glob("*.yaml"))
    dag_ids = [f"train_{name}" for name in names]
    slots = setup.workers * k if setup.workers else 2 * k
    pg_database = f"freshcast_bench_{secrets.token_hex(4)}" if setup.postgres else None
    redis_db = _empty_redis_db() if setup.workers else None
    database = f"postgresql+psycopg2://{PG_SERVER}/{pg_database}" if pg_database else None
    af = config.Airflow(
        home=home,
        port=_free_port(),
        executor=setup.executor,
        database=database,
        broker=f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}" if setup.workers else None,
        result_backend=f"db+postgresql://{PG_SERVER}/{pg_database}" if setup.workers else None,
    )
    env = {
        "FRESHCAST_PIPELINES_DIR": str(pipelines),
        "FRESHCAST_ARTIFACT_ROOT": str(artifacts),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    row: dict[str, Any] = {
        "setup": setup.name,
        "n": n,
        "executor": setup.executor,
        "database": "postgresql" if pg_database else "sqlite",
        "workers": setup.workers,
        "slots": slots,
        "worker_concurrency": k if setup.workers else None,
        "parallelism": slots,
    }
    began = time.monotonic()
    timeout = timeout or 600 + 60 * n
    failure: str | None = None
    try:
        with _environ(env):
            if pg_database:
                _pg(f'CREATE DATABASE "{pg_database}"')
            config.write_config(af, dags_folder=PROJECT_ROOT / "dags", parallelism=slots)
            pools = {"training": training_slots or slots, "registry": 1}
            processes.up(af, pools=pools, say=lambda _: None)
            workers = [f"w{i}" for i in range(1, setup.workers + 1)]
            for name in workers:
                processes.start_worker(af, name, queues=["default", "training"], concurrency=k)
            for name in workers:
                _wait_worker(af, name)
            client = api.Client(af)
            for dag_id in dag_ids:
                client.wait_for_dag(dag_id, timeout=600)
            for dag_id in dag_ids:
                client.unpause(dag_id)
            row["startup_s"] = time.monotonic() - began
            row["db_mib_before"] = _db_mib(af, pg_database)
            components = [*processes.COMPONENTS, *(f"worker-{w}" for w in workers)]
            leaders = {c: processes.read_pid(af, c) for c in components}
            # Anything else busy on the machine skews every figure: say so in the results.
            row["load_before"] = os.getloadavg()[0]
            busy = _busy_ticks()
            meter = CpuMeter({c: pid for c, pid in leaders.items() if pid}).start()
            first = datetime.now(UTC)
            run_ids = {dag_id: client.trigger(dag_id, {}) for dag_id in dag_ids}
            row["trigger_s"] = (datetime.now(UTC) - first).total_seconds()
            say(
                f"  {setup.name} N={n}: up in {row['startup_s']:.0f}s, {n} runs triggered in "
                f"{row['trigger_s']:.1f}s"
            )
            try:
                ended = _wait_runs(client, run_ids, timeout=timeout, say=say)
            finally:
                cpu = meter.stop()
            row["machine_cpu_s"] = (_busy_ticks() - busy) / TICKS
            row["airflow_total_cpu_s"] = meter.total  # its components and the tasks that ended
            row["other_cpu_s"] = row["machine_cpu_s"] - meter.total
            if row["other_cpu_s"] > 0.1 * row["machine_cpu_s"]:
                say(
                    f"    note: other processes used {row['other_cpu_s']:.0f} of the machine's "
                    f"{row['machine_cpu_s']:.0f} busy CPU s meanwhile; these figures are skewed"
                )
            row["cpu"] = cpu
            row["cpu_interval_s"] = meter.seconds
            row["sched_cpu_s"] = sum(cpu.get("scheduler", {}).values())
            row["sched_main_cpu_s"] = cpu.get("scheduler", {}).get("main", 0.0)
            row["all_cpu_s"] = sum(sum(v.values()) for v in cpu.values())
            row["db_mib"] = _db_mib(af, pg_database)
            records = _records(af, dag_ids)
            last_end = max(_t(r["end"]) for r in records["runs"] if r["end"])
            row["total_s"] = (last_end - first).total_seconds()
            row["runs_per_min"] = n / (row["total_s"] / 60)
            row["forecast_runs"] = records["forecast_runs"]
            row.update(task_figures(records["tasks"]))
            if keep_tasks:
                row["task_records"] = records["tasks"]
            row["run_s"] = _quantiles(
                [
                    (_t(r["end"]) - _t(r["start"])).total_seconds()
                    for r in records["runs"]
                    if r["start"] and r["end"]
                ]
            )
            failed = {d: r for d, r in ended.items() if r["state"] != "success"}
            row["failed_runs"] = len(failed)
            if failed:
                dag_id, run = next(iter(sorted(failed.items())))
                first_failure = client.failures(dag_id, run["dag_run_id"])
                failure = (
                    f"{setup.name} N={n}: {len(failed)} of {n} runs did not succeed; first: "
                    f"{dag_id} {run['state']}: {'; '.join(first_failure) or 'no failed task'} "
                    f"(task logs in {home / 'logs'})"
                )
    finally:
        with _uninterrupted():
            _cleanup(af, pg_database, redis_db, say)
        row["wall_s"] = time.monotonic() - began
    if failure:
        raise RunsFailed(failure, row)
    return row


def _cleanup(af: Any, pg_database: str | None, redis_db: int | None, say) -> None:
    from freshcast.local import processes

    problems = []
    try:
        processes.stop(af, say=lambda _: None)
    except Exception as err:
        problems.append(f"stopping Airflow in {af.home}: {err}")
    if redis_db is not None:
        try:
            _flush_redis(redis_db)
        except Exception as err:
            problems.append(f"flushing Redis db {redis_db}: {err}")
    if pg_database:
        try:
            _pg(f'DROP DATABASE IF EXISTS "{pg_database}" WITH (FORCE)')
        except Exception as err:
            problems.append(f"dropping PostgreSQL database {pg_database}: {err}")
    for problem in problems:
        say(f"  CLEANUP FAILED: {problem}")


# ------------------------------------------------------------------------------ the case


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


TABLE_HEADER = (
    f"  {'setup':<10}{'N':>5}{'total s':>9}{'runs/min':>10}{'sched CPU s':>13}{'all CPU s':>11}"
    f"{'db MiB':>8}{'task overhead med/p90 s':>25}{'queued med s':>14}{'wall s':>8}"
    f"{'others %':>10}"
)


def table_row(row: dict[str, Any]) -> str:
    over = row.get("overhead") or {}
    overhead = f"{_num(over.get('median'), '.2f')} / {_num(over.get('p90'), '.2f')}"
    busy = row.get("machine_cpu_s")
    others = 100 * row["other_cpu_s"] / busy if busy else None
    return (
        f"  {row['setup']:<10}{row['n']:>5}{_num(row.get('total_s'), '.1f'):>9}"
        f"{_num(row.get('runs_per_min'), '.2f'):>10}{_num(row.get('sched_cpu_s'), '.1f'):>13}"
        f"{_num(row.get('all_cpu_s'), '.1f'):>11}{_num(row.get('db_mib'), '.1f'):>8}"
        f"{overhead:>25}{_num((row.get('queued') or {}).get('median'), '.2f'):>14}"
        f"{_num(row.get('wall_s'), '.0f'):>8}{_num(others, '.0f'):>10}"
    )


def scheduling(
    suite: Any,
    sizes: tuple[int, ...] = (10, 50, 100),
    setups: tuple[str, ...] = ("local", "celery-1", "celery-2"),
) -> None:
    """The case: every size through every setup, a table, goals; suite.results["scheduling"]."""
    # "celery-1:10" runs that setup at N=10 only; a bare name runs every size.
    only = {
        name: {int(n) for n in at.split("+")}
        for name, _, at in (entry.partition(":") for entry in setups)
        if at
    }
    setups = tuple(entry.partition(":")[0] for entry in setups)
    unknown = sorted(set(setups) - set(SETUPS))
    if unknown:
        raise ValueError(f"unknown setups {unknown}; choose from {', '.join(SETUPS)}")
    k = cores()
    suite.say(
        f"scheduling: N tiny pipelines triggered at once, {', '.join(setups)}; {k} cores: "
        f"LocalExecutor parallelism {2 * k}, Celery concurrency {k} per worker"
    )
    rows: list[dict[str, Any]] = []
    out: dict[str, Any] = {
        "cores": k,
        "sizes": list(sizes),
        "setups": list(setups),
        "rows": rows,
    }
    suite.results[CASE] = out
    try:
        with _terminate_as_interrupt():
            for n in sorted(sizes):
                for name in setups:
                    if name in only and n not in only[name]:
                        continue
                    try:
                        rows.append(run_setup(SETUPS[name], n, suite.work, say=suite.say))
                    except RunsFailed as err:
                        rows.append({**err.row, "error": str(err)})
                        suite.say(f"  {err}")
                        raise
                    if len(rows) == 1:
                        suite.say(TABLE_HEADER)
                    suite.say(table_row(rows[-1]))
    finally:
        if len(rows) > 1:
            suite.say(f"  scheduling, {k} cores:")
            suite.say(TABLE_HEADER)
            for row in rows:
                suite.say(table_row(row))
    _goals(suite, rows, sizes, setups)


def _goals(suite: Any, rows: list[dict[str, Any]], sizes, setups) -> None:
    at = {(r["setup"], r["n"]): r for r in rows}
    both = [n for n in sorted(sizes) if ("celery-1", n) in at and ("celery-2", n) in at]
    ratios = {
        n: at[("celery-2", n)]["runs_per_min"] / at[("celery-1", n)]["runs_per_min"] for n in both
    }
    suite.results[CASE]["celery_2_over_1"] = ratios
    if both:
        n = both[-1]
        suite.say(
            "  two Celery workers / one, runs/min: "
            + ", ".join(f"N={m}: {ratios[m]:.2f}" for m in both)
        )
        suite.goal(
            CASE,
            f"celery 2 workers / 1 worker runs/min, N={n}",
            ratios[n],
            f">= {SCALING_TARGET}",
            ratios[n] >= SCALING_TARGET,
        )
    growth = {}
    for name in setups:
        mine = sorted(n for s, n in at if s == name)
        if len(mine) < 2:
            continue
        small, large = at[(name, mine[0])], at[(name, mine[-1])]
        ratio = large["overhead"]["median"] / small["overhead"]["median"]
        growth[name] = ratio
        suite.goal(
            CASE,
            f"{name}: task overhead median N={mine[-1]} / N={mine[0]}",
            ratio,
            f"<= {GROWTH_TARGET}",
            ratio <= GROWTH_TARGET,
        )
    suite.results[CASE]["overhead_growth"] = growth


# ------------------------------------------------------------------------------ standalone


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--records"]:  # the fresh process of `_records`
        print(json.dumps(read_records(json.loads(argv[1])), default=str))
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m bench.scheduling", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sizes", default="10,50,100", help="pipeline counts, comma-separated")
    parser.add_argument(
        "--setups", default="local,celery-1,celery-2", help=f"from {', '.join(SETUPS)}"
    )
    parser.add_argument("--out", default="", help="also write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(",") if s)
    setups = tuple(s for s in args.setups.split(",") if s)
    work = Path(tempfile.mkdtemp(prefix="freshcast-bench-scheduling-"))
    started = time.monotonic()
    from bench.__main__ import Suite  # its goal() and say(); the case ignores repeats

    suite = Suite(repeats=1, work=work)
    try:
        scheduling(suite, sizes=sizes, setups=setups)
    except KeyboardInterrupt:
        print("interrupted; Airflow stopped")
        return 130
    except Exception as err:
        print(f"scheduling FAILED: {type(err).__name__}: {err}")
        return 1
    finally:
        if args.out:
            report = {
                "results": suite.results,
                "goals": suite.goals,
                "seconds": round(time.monotonic() - started, 1),
            }
            Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    print(f"done in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
