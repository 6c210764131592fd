"""Run Airflow on this machine for `make run` / `make stop`, and drive it over its REST API.

Starts the four Airflow 3 components that `airflow standalone` would (api-server, scheduler,
dag-processor, triggerer) with LocalExecutor and SQLite (or PostgreSQL, FRESHCAST_DATABASE_URL),
each as a session of its own with a pid file and a log in AIRFLOW_HOME, which only its owner can
read. Started this way rather than through `airflow standalone` so the scheduler's and
triggerer's log servers, which bind every interface, stay off (`--skip-serve-logs`): with
LocalExecutor the api-server reads task logs from disk. Everything listens on 127.0.0.1.
`stop` ends every process of those sessions, task processes included, and waits until they are
gone; `up` first ends what a component that died left running.

The same code runs the CeleryExecutor on this machine (PostgreSQL metadata database, Redis
broker, Celery workers as further components), which the distributed tests use.

This module never imports airflow: it runs the `airflow` CLI and talks HTTP.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import re
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from freshcast import display
from freshcast.artifacts import ArtifactError

if TYPE_CHECKING:
    from freshcast.spec import PipelineSpec

PROJECT_ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL = {"success", "failed", "skipped", "upstream_failed", "removed"}
USER = "admin"


class LocalRunError(RuntimeError):
    """Something the user can fix; the message says what."""


WORKER_NAME_ENV = "FRESHCAST_WORKER_NAME"
# The metadata database's SQLAlchemy URL for `make run`, e.g.
# postgresql+psycopg2://postgres@127.0.0.1:5432/freshcast; unset or empty: SQLite in the home.
DATABASE_ENV = "FRESHCAST_DATABASE_URL"


def worker_hostname() -> str:
    """`[core] hostname_callable` for Celery workers started here: each reports its own name,
    so task instances show which worker ran them even on one machine."""
    return os.environ.get(WORKER_NAME_ENV) or socket.getfqdn()


@dataclass(frozen=True)
class Airflow:
    """One local Airflow installation: its home, where its API listens and how to call its CLI.

    `database` is the metadata database's SQLAlchemy URL (PostgreSQL, say); None is SQLite in
    the home. With `executor="CeleryExecutor"`, `broker` and `result_backend` say where the
    Celery queue lives.
    """

    home: Path
    host: str = "127.0.0.1"
    port: int = 8080
    executor: str = "LocalExecutor"
    database: str | None = None
    broker: str | None = None
    result_backend: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def cli(self) -> str:
        return str(Path(sys.executable).with_name("airflow"))

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{self.home / 'airflow.db'}"

    def env(self) -> dict[str, str]:
        """The environment of every Airflow process started here. The database is set here
        rather than in airflow.cfg, so one home can move between SQLite and PostgreSQL."""
        return {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "PYTHONUNBUFFERED": "1",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
        }

    def pid_file(self, component: str) -> Path:
        return self.home / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        return self.home / f"{component}.log"

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"


# ---------------------------------------------------------------- pages in the Airflow UI
# The freshcast plugin adds these to Airflow's own UI (plugins/); they need the UI's login.


def overview_url(af: Airflow) -> str:
    """The page of every pipeline: champions, last runs, forecasts."""
    return f"{af.url}/plugin/forecasts"


def pipeline_url(af: Airflow, pipeline: str) -> str:
    """One pipeline's page, a tab of its training DAG."""
    return f"{af.url}/dags/train_{pipeline}/plugin/freshcast-pipeline"


def run_url(af: Airflow, dag_id: str, run_id: str) -> str:
    """A DAG run in the Airflow UI: its tasks, their logs."""
    return f"{af.url}/dags/{dag_id}/runs/{quote(run_id, safe='')}"


def report_url(af: Airflow, dag_id: str, run_id: str) -> str:
    """The report tab of a run: a training run's leaderboard, a forecast run's forecasts."""
    return f"{run_url(af, dag_id, run_id)}/plugin/freshcast-report"


# ---------------------------------------------------------------- set-up

# How long the scheduler's, dag-processor's and triggerer's SQLite connections wait for another
# connection's write lock before failing with "database is locked" (Python's default is 5 s),
# which ends the component. Under a burst of REST calls the api-server holds the lock in turns
# for up to its own 5 s: in Airflow 3.3 its audit log is written from an async dependency, on
# the event loop, so that write waiting for the lock stalls the requests that hold it until
# the wait gives up. The api-server keeps the short wait, which bounds that stall (the request
# fails with a 500 that `Client` sends again); the other components wait it out. Airflow
# imports this dict by name ([database] sql_alchemy_connect_args, see `start_component`).
SQLITE_CONNECT_ARGS: dict[str, Any] = {"timeout": 60}


def write_private(path: Path, text: str) -> None:
    """Write `path` readable by its owner only, from the moment it exists."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(handle, "w") as fh:
        fh.write(text)
    path.chmod(0o600)  # O_CREAT's mode does not apply to a file that existed


def secure_home(af: Airflow) -> None:
    """Make AIRFLOW_HOME its owner's alone: the home 0700, and every file or folder in it
    readable by the owner only. It holds the admin password, airflow.cfg's secrets, the
    database and logs; the components write theirs with umask 077 (see `spawn`)."""
    af.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in [af.home, *af.home.iterdir()]:
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        private = 0o700 if path.is_dir() else mode & 0o700
        if mode != private:
            path.chmod(private)


def ensure_password(af: Airflow) -> None:
    """Write the admin user's password file before the api-server starts: Airflow's simple auth
    manager prints a password that it generates into the api-server's log, one it finds it
    does not."""
    with contextlib.suppress(FileExistsError):
        handle = os.open(af.passwords_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "w") as fh:
            fh.write(json.dumps({USER: secrets.token_urlsafe(16)}) + "\n")


# What `executor = LocalExecutor` runs: Airflow's LocalExecutor, with the task steps' imports paid
# once in the scheduler before it forks the workers (plugins/freshcast_executor.py).
EXECUTORS = {"LocalExecutor": "freshcast_executor.PreloadingLocalExecutor"}
CELERY_CONFIG = "freshcast_celery.CELERY_CONFIG"


def write_config(
    af: Airflow,
    *,
    dags_folder: Path | None = None,
    parallelism: int = 4,
    extra: dict[str, dict[str, str]] | None = None,
) -> Path:
    """Write AIRFLOW_HOME/airflow.cfg once, with fresh secrets; an existing one is kept.

    `extra` adds settings as {section: {key: value}} (tests shorten timeouts this way).
    """
    cfg = af.home / "airflow.cfg"
    if cfg.exists():
        return cfg
    secure_home(af)
    fernet_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    text = f"""# Written by `make run` (freshcast.localrun). Random secrets: never commit.
[core]
dags_folder = {dags_folder or PROJECT_ROOT / "dags"}
plugins_folder = {PROJECT_ROOT / "plugins"}
executor = {EXECUTORS.get(af.executor, af.executor)}
parallelism = {parallelism}
load_examples = False
fernet_key = {fernet_key}
simple_auth_manager_users = {USER}:admin
simple_auth_manager_all_admins = False
execution_api_server_url = {af.url}/execution/

[api]
host = {af.host}
port = {af.port}
workers = 1

[api_auth]
jwt_secret = {secrets.token_urlsafe(64)}

[logging]
base_log_folder = {af.home / "logs"}
file_task_handler_new_file_permissions = 0o600
file_task_handler_new_folder_permissions = 0o700

[dag_processor]
refresh_interval = 30
min_file_process_interval = 30
"""
    # A scheduler started after one that died takes over the dead one's tasks once that one's
    # heartbeat is older than scheduler_health_check_threshold (30 s): look every 30 s for
    # them, not every 5 minutes, so a run goes on soon after `make run` restarts a scheduler.
    sections: dict[str, dict[str, str]] = {"scheduler": {"orphaned_tasks_check_interval": "30"}}
    if af.broker:
        sections["celery"] = {
            "broker_url": af.broker,
            "result_backend": af.result_backend or "",
            "worker_concurrency": "2",
            # Airflow's Celery settings, and the task steps' imports paid once per worker
            # (plugins/freshcast_celery.py).
            "celery_config_options": CELERY_CONFIG,
        }
    for section, values in (extra or {}).items():
        sections.setdefault(section, {}).update(values)
    for section, values in sections.items():
        text += f"\n[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
    write_private(cfg, text)
    return cfg


# ---------------------------------------------------------------- processes
# Each component starts as the leader of a session of its own, and its pid file records the
# leader's pid, its start time (clock ticks after boot) and the boot. Whatever the component
# starts stays in that session: LocalExecutor workers, task supervisors and the task processes,
# which Airflow's supervisor moves into a process group of their own (`os.setpgid(0, 0)` in
# airflow/sdk/execution_time/supervisor.py), so a signal to the component's group misses them.
# The session still holds them after the leader died (a killed scheduler's workers and tasks),
# and the kernel does not give the session's number to a new process while any of them lives.
# The start time tells the leader from a process that got its pid later. Processes are told
# apart by their pid files and /proc, never by their names.

PRIVATE_UMASK = 0o077  # what the components create (logs, password file, database) is 0600


@dataclass(frozen=True)
class Proc:
    """One process, as /proc/<pid>/stat describes it."""

    pid: int
    pgid: int
    sid: int
    state: str  # "R", "S", ...; "Z" a zombie: dead, waiting for its parent to reap it
    started: int  # clock ticks after boot

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")


def proc(pid: int) -> Proc | None:
    """The process `pid`, or None when there is none."""
    try:
        line = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name in parentheses may hold spaces and parentheses: split after the last.
    fields = line[line.rindex(")") + 2 :].split()
    return Proc(pid, int(fields[2]), int(fields[3]), fields[0], int(fields[19]))


def _processes() -> list[Proc]:
    found = (proc(int(entry.name)) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [p for p in found if p is not None]


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


@dataclass(frozen=True)
class Started:
    """What a component's pid file records.

    `started` and `boot` are None in a pid file of an older version, which held the pid only.
    """

    pid: int
    started: int | None = None
    boot: str | None = None


def _record(af: Airflow, component: str) -> Started | None:
    try:
        fields = af.pid_file(component).read_text().split()
        if len(fields) >= 3:
            return Started(int(fields[0]), int(fields[1]), fields[2])
        return Started(int(fields[0]))
    except (OSError, ValueError, IndexError):
        return None


def _reap(pid: int) -> None:
    """Collect `pid`'s exit status when it is our own child (tests start Airflow in-process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _airflow_process(found: Proc, af: Airflow) -> bool:
    """Whether `found` is an Airflow process of this home: its environment names the home, or
    (Airflow rewrites the titles of its processes, and with them their /proc environ) its
    command line is Airflow's or Celery's."""
    with contextlib.suppress(OSError):
        if f"AIRFLOW_HOME={af.home}".encode() in Path(f"/proc/{found.pid}/environ").read_bytes():
            return True
    with contextlib.suppress(OSError):
        cmdline = Path(f"/proc/{found.pid}/cmdline").read_bytes().decode(errors="replace")
        return "airflow" in cmdline or "celery" in cmdline
    return False


def _leader(af: Airflow, record: Started) -> Proc | None:
    """The component's leader if it is alive and is the process this module started (a leader
    that is our own child and has exited is reaped here)."""
    _reap(record.pid)
    found = proc(record.pid)
    if found is None or not found.alive:
        return None
    if record.started is None:  # an older pid file: no start time to compare
        return found if _airflow_process(found, af) else None
    if record.boot != _boot_id() or found.started != record.started:
        return None  # the pid names another process now
    return found


def read_pid(af: Airflow, component: str) -> int | None:
    """The pid in the component's pid file if that process is alive and is the one started."""
    record = _record(af, component)
    leader = _leader(af, record) if record else None
    return leader.pid if leader else None


def session_processes(af: Airflow, component: str) -> list[Proc]:
    """Every live process of the component's session: its leader and all it started, task
    processes included, whether the leader still lives or not.

    With the leader gone, a process counts only when it started after the leader, in the same
    boot, and is an Airflow process of this home (`_airflow_process`), so that a session number
    reused after all of ours ended names nobody of ours.
    """
    record = _record(af, component)
    if record is None:
        return []
    members = [p for p in _processes() if p.sid == record.pid and p.alive]
    if _leader(af, record) is not None:
        return members
    if record.boot is not None and record.boot != _boot_id():
        return []  # written before a reboot: nothing of ours survives one
    return [p for p in members if p.started >= (record.started or 0) and _airflow_process(p, af)]


def _signal(found: Proc, signum: signal.Signals) -> None:
    """Send `signum` to `found`, unless its pid has meanwhile passed to another process."""
    try:
        handle = os.pidfd_open(found.pid)
    except ProcessLookupError:
        return
    try:
        now = proc(found.pid)
        if now is not None and now.started == found.started:
            signal.pidfd_send_signal(handle, signum)
    except ProcessLookupError:
        pass
    finally:
        os.close(handle)


def end_sessions(
    af: Airflow, components: Iterable[str], *, grace: float, gone_by: float = 15.0
) -> list[Proc]:
    """End every process of the components' sessions and wait until they are gone: SIGTERM,
    up to `grace` seconds to exit, then SIGKILL. A process that appears meanwhile (a task the
    executor was starting) gets the same. Returns what was signalled.

    Raises:
        LocalRunError: when some process outlives SIGKILL by `gone_by` seconds.
    """
    components = list(components)
    deadline = time.monotonic() + grace
    signalled: dict[tuple[int, int], Proc] = {}
    killed: set[tuple[int, int]] = set()
    while True:
        live = [p for c in components for p in session_processes(af, c)]
        if not live:
            return list(signalled.values())
        late = time.monotonic() > deadline
        if late and time.monotonic() > deadline + gone_by:
            pids = ", ".join(str(p.pid) for p in live)
            raise LocalRunError(f"processes {pids} are still alive after SIGKILL; see {af.home}")
        for found in live:
            key = (found.pid, found.started)
            if key not in signalled:
                signalled[key] = found
                _signal(found, signal.SIGTERM)
            elif late and key not in killed:
                killed.add(key)
                _signal(found, signal.SIGKILL)
        time.sleep(0.1)


def airflow_cli(af: Airflow, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [af.cli, *args],
        env=af.env(),
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        umask=PRIVATE_UMASK,
    )
    if check and result.returncode != 0:
        raise LocalRunError(
            f"`airflow {' '.join(args)}` failed ({result.returncode}):\n{result.stderr[-3000:]}"
        )
    return result


def start_component(af: Airflow, component: str, *, env: dict[str, str] | None = None) -> int:
    args = {
        "api-server": ["api-server", "--host", af.host, "--port", str(af.port), "--workers", "1"],
        "scheduler": ["scheduler", "--skip-serve-logs"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer", "--skip-serve-logs"],
    }[component]
    if component != "api-server" and af.database_url.startswith("sqlite"):
        waits = {
            f"AIRFLOW__DATABASE__{key}": "freshcast.localrun.SQLITE_CONNECT_ARGS"
            for key in ("SQL_ALCHEMY_CONNECT_ARGS", "SQL_ALCHEMY_CONNECT_ARGS_ASYNC")
        }
        env = {**waits, **(env or {})}
    return spawn(af, component, [af.cli, *args], env=env)


def start_worker(
    af: Airflow,
    name: str,
    *,
    queues: list[str],
    concurrency: int = 2,
    env: dict[str, str] | None = None,
) -> int:
    """A Celery worker `name` serving `queues`, as component `worker-<name>`; `env` adds to
    its environment (say, its own FRESHCAST_CACHE_DIR).

    Its log server is off (`--skip-serve-logs`, it would bind every interface): on one machine
    the api-server reads task logs from disk.
    """
    args = [
        "celery",
        "worker",
        "--celery-hostname",
        name,
        "--queues",
        ",".join(queues),
        "--concurrency",
        str(concurrency),
        "--skip-serve-logs",
    ]
    env = {
        **(env or {}),
        WORKER_NAME_ENV: name,
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "freshcast.localrun.worker_hostname",
    }
    return spawn(af, f"worker-{name}", [af.cli, *args], env=env)


def _components(af: Airflow) -> list[str]:
    """Every component with a pid file: the four, plus any Celery workers."""
    workers = sorted(p.stem for p in af.home.glob("worker-*.pid"))
    return [*COMPONENTS, *workers]


def spawn(
    af: Airflow, component: str, argv: list[str], *, env: dict[str, str] | None = None
) -> int:
    """Start `argv` as `component`: the leader of a new session, with umask 077 and its output
    in the component's log (0600); its pid file records it. Returns its pid."""
    secure_home(af)
    log = os.open(af.log_file(component), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        child = subprocess.Popen(
            argv,
            env={**af.env(), **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
            start_new_session=True,  # a session of its own: stop() finds all it starts there
            umask=PRIVATE_UMASK,
        )
    finally:
        os.close(log)
    started = proc(child.pid)
    ticks = started.started if started else 0
    write_private(af.pid_file(component), f"{child.pid} {ticks} {_boot_id()}\n")
    return child.pid


def stop(af: Airflow, *, say: Callable[[str], None] = print, grace: float = 30.0) -> list[int]:
    """Stop every process this module started for `af`, and nothing else, and return when they
    are gone: the components, what they started (task processes included), and what is left
    of a component that died. Each gets SIGTERM, then SIGKILL after `grace` seconds. The
    api-server goes last, so that task processes can still report how they ended.

    Returns the pids of the components' leaders that had processes to stop.
    """
    components = _components(af)
    busy = {c: session_processes(af, c) for c in components}
    busy = {c: found for c, found in busy.items() if found}
    for component, found in busy.items():
        leader = _record(af, component).pid  # busy: it has a pid file
        state = "" if read_pid(af, component) else ", its leader is gone"
        say(f"stopping {component} (pid {leader}, {len(found)} process(es){state})")
    first = [c for c in busy if c != "api-server"]
    for wave in (first, [c for c in busy if c == "api-server"]):
        end_sessions(af, wave, grace=grace)
    leaders = [_record(af, c).pid for c in busy]
    # The killed leave the process table once reaped (their parents are gone: init reaps them
    # at once); wait for that too, so that nothing is left in the leaders' groups.
    settled = time.monotonic() + 5
    while time.monotonic() < settled and any(
        p.pgid in leaders and p.pid not in leaders for p in _processes()
    ):
        time.sleep(0.05)
    for pid in leaders:
        _reap(pid)
    for component in components:
        af.pid_file(component).unlink(missing_ok=True)
    if not busy:
        say(f"nothing to stop: no running component has a pid file in {af.home}")
    return leaders


def _group_alive(pgid: int) -> bool:
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def health(af: Airflow) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{af.url}/api/v2/monitor/health", timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def _healthy(report: dict[str, Any] | None) -> bool:
    if not report:
        return False
    parts = ("metadatabase", "scheduler", "dag_processor", "triggerer")
    return all((report.get(p) or {}).get("status") == "healthy" for p in parts)


def up(
    af: Airflow,
    *,
    pools: dict[str, int] | None = None,
    timeout: float = 300.0,
    say: Callable[[str], None] = print,
) -> None:
    """Start whatever component is not running (reusing those that are) and wait until healthy.

    What a component that died left running (a killed scheduler's executor workers and task
    processes) is stopped before it starts again, so that no task runs twice.
    """
    running = {c: read_pid(af, c) for c in COMPONENTS}
    if all(running.values()) and _healthy(health(af)):
        secure_home(af)
        say(f"Airflow is already up at {af.url} (pids {', '.join(map(str, running.values()))})")
        _set_pools(af, pools or {})
        return
    write_config(af)
    secure_home(af)
    for component in COMPONENTS:
        if running[component] is None:
            _end_leftovers(af, component, say=say)
    if running["api-server"] is None and _port_open(af.host, af.port):
        raise LocalRunError(
            f"port {af.port} on {af.host} is taken by a program this project did not start; "
            "stop it, or run with AIRFLOW_PORT=<free port>"
        )
    ensure_database(af.database_url)
    ensure_password(af)
    say(f"migrating the metadata database ({database_label(af.database_url)})")
    airflow_cli(af, "db", "migrate")
    _set_pools(af, pools or {})
    for component in COMPONENTS:
        if running[component] is None:
            pid = start_component(af, component)
            say(f"started {component} (pid {pid}, log {af.log_file(component)})")
    wait_healthy(af, timeout=timeout)
    say(f"Airflow is up at {af.url}")


# Seconds that what a dead component left running gets to exit after SIGTERM.
LEFTOVER_GRACE = 5.0


def _end_leftovers(af: Airflow, component: str, *, say: Callable[[str], None]) -> None:
    record = _record(af, component)
    ended = end_sessions(af, [component], grace=LEFTOVER_GRACE)
    if record and ended:
        pids = ", ".join(str(p.pid) for p in ended)
        say(f"stopped what the {component} (pid {record.pid}) left running when it died: {pids}")


def database_label(url: str) -> str:
    """`url` without its password, for messages."""
    return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", url)


def ensure_database(url: str) -> None:
    """Create the database of a PostgreSQL `url` when its server has none of that name yet;
    any other URL is left alone (SQLite makes its file)."""
    if not url.startswith("postgresql"):
        return
    from sqlalchemy.engine import make_url

    try:
        import psycopg2
        from psycopg2 import sql
    except ImportError as err:
        raise LocalRunError(
            "PostgreSQL needs the psycopg2 and asyncpg drivers: `make run` installs them when "
            "FRESHCAST_DATABASE_URL is set (pins in requirements-distributed.txt)"
        ) from err
    parsed = make_url(url)
    server = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
    }
    try:
        conn = psycopg2.connect(dbname="postgres", **{k: v for k, v in server.items() if v})
    except psycopg2.Error as err:
        raise LocalRunError(f"cannot reach PostgreSQL at {database_label(url)}: {err}") from err
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,))
            if cursor.fetchone() is None:
                create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(parsed.database))
                cursor.execute(create)
    except psycopg2.Error as err:
        raise LocalRunError(
            f"cannot create database {parsed.database!r} at {database_label(url)}: {err}"
        ) from err
    finally:
        conn.close()


# The DAGs' promote and rollback tasks change a registry one at a time, on any worker.
REGISTRY_POOL_SLOTS = {"registry": 1}


def _set_pools(af: Airflow, pools: dict[str, int]) -> None:
    for name, slots in {**REGISTRY_POOL_SLOTS, **pools}.items():
        airflow_cli(af, "pools", "set", name, str(slots), f"freshcast {name} slots")


def wait_healthy(af: Airflow, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    report = None
    while time.monotonic() < deadline:
        report = health(af)
        if _healthy(report):
            return
        dead = [c for c in COMPONENTS if read_pid(af, c) is None]
        if dead:
            logs = ", ".join(str(af.log_file(c)) for c in dead)
            raise LocalRunError(f"{', '.join(dead)} exited while starting; see {logs}")
        time.sleep(1)
    raise LocalRunError(f"Airflow not healthy after {timeout:.0f}s: {report}; logs in {af.home}")


# ---------------------------------------------------------------- REST client


def password(af: Airflow, *, timeout: float = 60.0) -> str:
    """The generated password of the admin user (the api-server writes it on first start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            return json.loads(af.passwords_file.read_text())[USER]
        time.sleep(0.5)
    raise LocalRunError(f"no password for {USER!r} in {af.passwords_file}")


def busy_database(response: httpx.Response) -> bool:
    """Whether Airflow answered that its metadata database was busy, having changed nothing:
    a 503, or a 500 whose reason is "Database error" (SQLite's "database is locked"; Airflow
    names the cause in the api-server's log only)."""
    if response.status_code == 503:
        return True
    if response.status_code != 500:
        return False
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return False
    return isinstance(detail, dict) and detail.get("reason") == "Database error"


class Client:
    """A small client of Airflow's REST API v2, logged in as the generated admin user.

    Every request it sends is one that may be sent twice: it is sent again, up to `attempts`
    times in all after pauses that double from `backoff` seconds (to 8 s at most), while Airflow
    answers that its database is busy (`busy_database`) or the connection fails. `transport`
    replaces httpx's (tests answer with `httpx.MockTransport`).
    """

    def __init__(
        self,
        af: Airflow,
        *,
        password_timeout: float = 60.0,
        attempts: int = 8,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.af, self.attempts, self.backoff = af, attempts, backoff
        secret = password(af, timeout=password_timeout)
        self.http = httpx.Client(base_url=f"{af.url}/api/v2", timeout=30, transport=transport)
        login = {"username": USER, "password": secret}
        response = self.request("POST", f"{af.url}/auth/token", json=login)
        if response.status_code not in (200, 201):
            raise LocalRunError(f"login to {af.url} failed: {response.status_code} {response.text}")
        self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request that is safe to repeat, again while the database is busy.

        Raises:
            httpx.TransportError: when the last attempt cannot reach the api-server.
        """
        attempt = 1
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError:
                if attempt >= self.attempts:
                    raise
            else:
                if attempt >= self.attempts or not busy_database(response):
                    return response
            # Jitter: clients that met the same lock should not come back at the same moment.
            pause = min(self.backoff * 2 ** (attempt - 1), 8.0)
            time.sleep(pause * random.uniform(0.5, 1.0))
            attempt += 1

    def get(self, path: str, **params: Any) -> Any:
        response = self.request("GET", path, params=params)
        if response.status_code >= 400:
            raise LocalRunError(f"GET {path}: {response.status_code} {response.text}")
        return response.json()

    def wait_for_dag(self, dag_id: str, *, timeout: float = 180.0) -> dict[str, Any]:
        """Wait until the dag-processor has parsed `dag_id`; fail early when its spec is broken."""
        spec_file = f"/{dag_id.removeprefix('train_')}.yaml"
        deadline = time.monotonic() + timeout
        errors: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            response = self.request("GET", f"/dags/{dag_id}")
            if response.status_code == 200 and not response.json().get("is_stale"):
                return response.json()
            errors = self.get("/importErrors").get("import_errors", [])
            ours = [e for e in errors if spec_file in e["stack_trace"]]
            if ours:
                raise LocalRunError(f"{dag_id} is not loaded:\n{_spec_error(ours[0])}")
            time.sleep(2)
        details = "".join(f"\n{_spec_error(e)}" for e in errors)
        raise LocalRunError(
            f"{dag_id} did not appear within {timeout:.0f}s; see the dag-processor log{details}"
        )

    def unpause(self, dag_id: str) -> None:
        response = self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        if response.status_code >= 400:
            raise LocalRunError(f"unpausing {dag_id}: {response.status_code} {response.text}")

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """Create a run of `dag_id` with `conf` now; returns its run id.

        The run id is made here, new and random, so the request is safe to send again: a 409
        (the id exists) means that an earlier attempt created the run.
        """
        run_id = f"manual__{datetime.now(UTC).isoformat()}_{secrets.token_hex(4)}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        response = self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)
        if response.status_code == 409:
            return run_id
        if response.status_code >= 400:
            detail = response.json().get("detail", response.text)
            raise LocalRunError(f"triggering {dag_id} was refused: {detail}")
        return run_id

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """The DAG's runs, oldest first."""
        return self.get(f"/dags/{dag_id}/dagRuns", order_by="run_after", limit=1000)["dag_runs"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.get(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")["state"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return self.get(path, limit=1000)["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        path = (
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
            "/xcomEntries/return_value"
        )
        return self.get(path)["value"]

    def failures(self, dag_id: str, run_id: str) -> list[str]:
        """`task: error` for each failed task of a run, read from the task's log."""
        found = []
        for ti in self.task_instances(dag_id, run_id):
            if ti["state"] != "failed":
                continue
            path = (
                f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/"
                f"{ti['task_id']}/logs/{ti['try_number']}"
            )
            try:
                content = self.get(path, full_content=True, map_index=ti["map_index"])["content"]
            except LocalRunError:
                content = []
            details = [
                d
                for e in content
                if isinstance(e, dict)
                for d in e.get("error_detail") or []
                if d.get("exc_value")
            ]
            # The root cause reads best: a bad-input error wrapped in AirflowFailException.
            causes = [d for d in details if d.get("is_cause")] or details
            error = f"{causes[-1]['exc_type']}: {causes[-1]['exc_value']}" if causes else None
            found.append(f"{ti['task_id']}: {error or 'see its log'}")
        return found

    def follow(
        self,
        dag_id: str,
        run_id: str,
        *,
        say: Callable[[str], None] = print,
        timeout: float = 3600.0,
        poll: float = 2.0,
    ) -> str:
        """Print a line per task as it ends (or retries) until the run ends; return its state."""
        start, seen = time.monotonic(), {}
        while True:
            for ti in sorted(
                self.task_instances(dag_id, run_id),
                key=lambda t: (t.get("start_date") or "~", t["map_index"]),
            ):
                key = (ti["task_id"], ti["map_index"])
                label = ti["task_id"]
                if ti["map_index"] >= 0:
                    label += f"[{ti.get('rendered_map_index') or ti['map_index']}]"
                state = ti["state"]
                if state in TERMINAL | {"up_for_retry"} and seen.get(key) != (
                    state,
                    ti["try_number"],
                ):
                    seen[key] = (state, ti["try_number"])
                    took = f"{ti['duration']:.1f}s" if ti.get("duration") else "-"
                    say(f"  [{time.monotonic() - start:6.0f}s] {label:<24} {state:<16} {took}")
            state = self.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                return state
            if time.monotonic() - start > timeout:
                raise LocalRunError(f"run {run_id} still {state} after {timeout:.0f}s")
            time.sleep(poll)


def _spec_error(error: dict[str, Any]) -> str:
    """An import error without the traceback's frames: the message is what the user needs."""
    trace = error["stack_trace"]
    marker = "SpecError: "
    return f"{error['filename']}: {trace[trace.index(marker) :] if marker in trace else trace}"


# Columns of the leaderboard besides the ranked metric, which is shown too when it is another.
BOARD_METRICS = ("mae", "rmse", "mase")
DEFAULT_DECIMALS = 2  # an XCom written before the data's decimals were recorded


def format_leaderboard(
    board: list[dict[str, Any]], metric: str, *, unit: str = "", decimals: int = DEFAULT_DECIMALS
) -> str:
    """The evaluate task's leaderboard as text: errors in the data's units, rounded to what data
    recorded with `decimals` places supports, and each entry's skill against persistence.

    Args:
        board: rows {"rank", "name", "kind", <metric>: float, ...}, best first.
        metric: the metric the board is ranked by.
        unit: the data's unit ("°C"), shown in the headers; "" for none.
        decimals: the decimals the data is recorded with.
    """
    shown = [*BOARD_METRICS, *([metric] if metric not in BOARD_METRICS else [])]
    persistence = next((row for row in board if row["name"] == "persistence"), {})
    names = max([len("name"), *(len(row["name"]) for row in board)])
    kinds = max([len("kind"), *(len(row["kind"]) for row in board)])

    # table() left-aligns only its first column: rank, name and kind share it.
    def first(rank: Any, name: str, kind: str) -> str:
        return f"{rank:>4}  {name:<{names}}  {kind:<{kinds}}"

    header = [first("rank", "name", "kind"), *(display.metric_label(m, unit) for m in shown)]
    header.append(display.metric_label("skill"))
    rows = [
        [
            first(row["rank"], row["name"], row["kind"]),
            *(display.number(row.get(m), display.metric_decimals(m, decimals)) for m in shown),
            display.number(
                display.skill(row.get("mae"), persistence.get("mae")),
                display.metric_decimals("skill", decimals),
            ),
        ]
        for row in board
    ]
    if any(row.get("spread") is not None for row in board):  # seeds: their ensembles' spread
        header.append(f"seed spread, {display.metric_label(metric, unit)}")
        places = display.metric_decimals(metric, decimals) + 1
        for row, line in zip(board, rows, strict=True):
            spread = row.get("spread")
            line.append("" if spread is None else f"± {display.number(spread, places)}")
    levels = sorted({k for row in board for k in row.get("intervals") or {}}, key=float)
    for key in levels:  # prediction intervals: the test split's coverage of each level
        header.append(f"{key}% interval coverage (%)")
        for row, line in zip(board, rows, strict=True):
            entry = (row.get("intervals") or {}).get(key)
            coverage = None if entry is None else 100 * entry["coverage"]
            line.append(display.number(coverage, display.PERCENT_DECIMALS))
    if any(row.get("backtest") for row in board):  # the folds' mean of the ranking metric
        header.append(f"backtest mean ± spread, {display.metric_label(metric, unit)}")
        places = display.metric_decimals(metric, decimals)
        for row, line in zip(board, rows, strict=True):
            backtest = row.get("backtest") or {}
            mean = display.number((backtest.get("mean") or {}).get(metric), places)
            spread = backtest.get("spread")
            line.append(mean + ("" if spread is None else f" ± {display.number(spread, places)}"))
    title = f"Leaderboard: test split, in the data's units, ranked by {metric}"
    return f"{title}\n{display.table(rows, header)}"


def data_time(stamp: str) -> str:
    """A timestamp of the data, on the data's own clock: its ISO date at midnight, else date
    and time."""
    moment = datetime.fromisoformat(stamp)
    if moment.time() == datetime.min.time():
        return moment.date().isoformat()
    return moment.replace(tzinfo=None).isoformat(
        sep=" ", timespec="minutes" if not moment.second else "seconds"
    )


def clock_time(stamp: str | None) -> str:
    """When something happened or will happen, to the minute in UTC."""
    if not stamp:
        return "n/a"
    moment = datetime.fromisoformat(stamp)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def format_forecast(
    made: dict[str, Any], *, unit: str = "", decimals: int = DEFAULT_DECIMALS
) -> str:
    """The forecast task's result as one line: each step's time and its value to one decimal
    more than the data is recorded with (as the forecast task logs it)."""
    steps = ", ".join(
        f"{data_time(t)}: {display.with_unit(display.number(v, decimals + 1), unit)}"
        for t, v in made["forecast"].items()
    )
    return (
        f"Forecast:   {steps} (version {made['version']}, data up to {data_time(made['origin'])})"
    )


def run_pipeline(
    af: Airflow,
    pipeline: str,
    *,
    conf: dict[str, Any],
    pools: dict[str, int],
    say: Callable[[str], None] = print,
) -> int:
    """`make run`: bring Airflow up, unpause and trigger the pipeline, follow it, report."""
    dag_id, forecast_id = f"train_{pipeline}", f"forecast_{pipeline}"
    started = time.monotonic()
    up(af, pools=pools, say=say)
    client = Client(af)
    client.wait_for_dag(dag_id)
    # The forecast DAG runs on every new champion, the rollback DAG when asked: both unpaused.
    for other in (forecast_id, f"rollback_{pipeline}"):
        client.wait_for_dag(other)
        client.unpause(other)
    client.unpause(dag_id)
    forecasts_before = {r["dag_run_id"] for r in client.dag_runs(forecast_id)}
    run_id = client.trigger(dag_id, conf)
    say(f"triggered {dag_id} run {run_id} with conf {json.dumps(conf)}")
    state = client.follow(dag_id, run_id, say=say)
    say(f"run {run_id}: {state} after {time.monotonic() - started:.0f}s")
    if state != "success":
        for failure in client.failures(dag_id, run_id):
            say(f"  failed {failure}")
        say(f"Task logs:  {af.home / 'logs' / f'dag_id={dag_id}'}")
    else:
        states = {ti["task_id"]: ti["state"] for ti in client.task_instances(dag_id, run_id)}
        say("")
        if states.get("evaluate") != "success":
            say(
                "Nothing changed since the last decided run (same data, same spec): training "
                "was skipped. Trigger with CONF='{\"force\": true}' to train anyway."
            )
        else:
            evaluated = client.xcom(dag_id, run_id, "evaluate")
            unit = evaluated.get("unit", "")
            decimals = evaluated.get("decimals", DEFAULT_DECIMALS)
            decided = client.xcom(dag_id, run_id, "gate")
            say(
                format_leaderboard(
                    evaluated["leaderboard"], evaluated["metric"], unit=unit, decimals=decimals
                )
            )
            say("")
            say("Gate: " + "; ".join(decided["reasons"]))
            if states.get("promote") == "success":
                promoted = client.xcom(dag_id, run_id, "promote")
                say(f"Champion:   {promoted['model']} is now version {promoted['version']}")
                _report_forecast(
                    client, forecast_id, forecasts_before, unit=unit, decimals=decimals, say=say
                )
            else:
                held = decided.get("champion")
                say(f"Champion:   {'version ' + str(held) if held else 'none yet'} (unchanged)")
            say(f"Report:     {report_url(af, dag_id, run_id)}")
        say(f"Registry:   make registry PIPELINE={pipeline}")
    say(f"Airflow UI: {run_url(af, dag_id, run_id)}")
    say(f"Results:    {pipeline_url(af, pipeline)}  (login: {USER} / {password(af)})")
    say("Stop it with `make stop`.")
    return 0 if state == "success" else 1


def _report_forecast(
    client: Client,
    forecast_id: str,
    before: set[str],
    *,
    unit: str,
    decimals: int,
    say: Callable[[str], None],
    timeout: float = 300.0,
) -> None:
    """Follow the forecast run that the new champion's Asset event triggers and print it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [r for r in client.dag_runs(forecast_id) if r["dag_run_id"] not in before]
        if new:
            break
        time.sleep(2)
    else:
        say(f"no {forecast_id} run appeared within {timeout:.0f}s; see the scheduler log")
        return
    run_id = new[-1]["dag_run_id"]
    say(f"The new champion triggered {forecast_id} run {run_id}:")
    if client.follow(forecast_id, run_id, say=say) != "success":
        for failure in client.failures(forecast_id, run_id):
            say(f"  failed {failure}")
        return
    made = client.xcom(forecast_id, run_id, "forecast")
    # The forecast's own unit and decimals where its XCom carries them (they are the data's).
    unit, decimals = made.get("unit", unit), made.get("decimals", decimals)
    say(format_forecast(made, unit=unit, decimals=decimals))
    say(f"Forecasts:  {report_url(client.af, forecast_id, run_id)}")


def rollback_pipeline(
    af: Airflow, pipeline: str, *, version: int, reason: str, say: Callable[[str], None] = print
) -> int:
    """`make rollback`: run rollback_<pipeline> with the version as conf and follow it."""
    dag_id, forecast_id = f"rollback_{pipeline}", f"forecast_{pipeline}"
    client = Client(af)
    client.wait_for_dag(dag_id)
    client.unpause(dag_id)
    forecasts_before = {r["dag_run_id"] for r in client.dag_runs(forecast_id)}
    run_id = client.trigger(dag_id, {"version": version, "reason": reason})
    say(f"triggered {dag_id} run {run_id}")
    state = client.follow(dag_id, run_id, say=say)
    if state != "success":
        for failure in client.failures(dag_id, run_id):
            say(f"  failed {failure}")
        return 1
    result = client.xcom(dag_id, run_id, "rollback")
    say(f"Champion:   version {result['version']} (was {result['from_version']})")
    if not client.get(f"/dags/{forecast_id}")["is_paused"]:
        unit, decimals = result.get("unit", ""), result.get("decimals", DEFAULT_DECIMALS)
        _report_forecast(
            client, forecast_id, forecasts_before, unit=unit, decimals=decimals, say=say
        )
    return 0


def replay(
    af: Airflow,
    pipeline: str,
    *,
    start: str,
    end: str,
    pools: dict[str, int],
    say: Callable[[str], None] = print,
    poll: float = 5.0,
) -> int:
    """`make replay`: backfill the training DAG over [start, end] as scheduled runs, each
    seeing only the data up to its own date, and print each run's gate decision as it ends."""
    from freshcast.registry import Registry

    dag_id = f"train_{pipeline}"
    up(af, pools=pools, say=say)
    client = Client(af)
    client.wait_for_dag(dag_id)
    client.unpause(dag_id)
    # The REST API rather than `airflow backfill create`: the CLI writes to SQLite directly and
    # can meet "database is locked" while the scheduler runs.
    registry = Registry(pipeline)
    # Airflow also runs the schedule's latest tick once a DAG has backfilled runs (catchup is
    # off); the marker makes that run skip, so it cannot promote today's model mid-replay.
    registry.start_replay(start=start, end=end)
    # No run conf: the DAG takes every run of type "backfill" as part of a replay.
    response = client.http.post(
        "/backfills",
        json={
            "dag_id": dag_id,
            "from_date": f"{start}T00:00:00Z",
            "to_date": f"{end}T00:00:00Z",
            "max_active_runs": 1,
            "reprocess_behavior": "completed",
        },
    )
    if response.status_code >= 400:
        registry.end_replay()
        raise LocalRunError(f"backfill of {dag_id} was refused: {response.text}")
    backfill = response.json()
    try:
        return _follow_replay(client, registry, dag_id, backfill, say=say, poll=poll)
    finally:
        registry.end_replay()


def _follow_replay(
    client: Client,
    registry: Any,
    dag_id: str,
    backfill: dict[str, Any],
    *,
    say: Callable[[str], None],
    poll: float,
) -> int:
    start, end, pipeline = backfill["from_date"][:10], backfill["to_date"][:10], registry.pipeline
    spec = _spec(pipeline)
    say(f"backfill {backfill['id']} of {dag_id} from {start} to {end}: one run per schedule tick")
    figures = display.metric_label(spec.metric, spec.unit)
    say(f"  {'run (data up to)':<18} {'decision':<26} figures, {figures}")
    done, failed = set(), 0
    while True:
        runs = [r for r in client.dag_runs(dag_id) if r["run_type"] == "backfill"]
        for run in runs:
            if run["state"] in ("success", "failed") and run["dag_run_id"] not in done:
                done.add(run["dag_run_id"])
                failed += run["state"] == "failed"
                say(_replay_line(client, registry, dag_id, run, metric=spec.metric))
        finished = client.get(f"/backfills/{backfill['id']}").get("completed_at")
        if finished and all(r["state"] in ("success", "failed") for r in runs):
            break
        time.sleep(poll)
    say("")
    say(f"Champion now: {_champion(registry)}. Full history: make registry PIPELINE={pipeline}")
    return 1 if failed else 0


def _spec(pipeline: str) -> PipelineSpec:
    from freshcast.spec import load_spec, pipelines_dir

    return load_spec(pipelines_dir() / f"{pipeline}.yaml")


def _champion(registry: Any) -> str:
    pointer = registry.champion()
    return f"v{pointer['version']}" if pointer else "none"


def _replay_line(
    client: Client, registry: Any, dag_id: str, run: dict[str, Any], *, metric: str
) -> str:
    when = (run.get("logical_date") or run["run_after"])[:10]
    if run["state"] == "failed":
        return f"  {when:<18} failed: " + "; ".join(client.failures(dag_id, run["dag_run_id"]))
    event = registry.find_event(run_id=run["dag_run_id"], kinds=("promoted", "refused"))
    if event is None:
        return f"  {when:<18} {'skipped: data unchanged':<26} champion stays {_champion(registry)}"
    decision = event["decision"]
    if event["kind"] == "promoted":
        verdict = f"promoted {decision['candidate']} -> v{event['version']}"
    else:
        verdict = f"refused {decision['candidate']}"
    decimals = DEFAULT_DECIMALS
    with contextlib.suppress(LocalRunError):
        decimals = client.xcom(dag_id, run["dag_run_id"], "evaluate").get("decimals", decimals)
    figures = dict(decision["figures"])
    first = [decision["candidate"], *(k for k in figures if k.startswith("champion_"))]
    ordered = [k for k in first if k in figures] + sorted(k for k in figures if k not in first)
    shown = ", ".join(
        f"{name.replace('_v', ' v', 1) if name.startswith('champion_') else name} "
        f"{display.number(figures[name], display.metric_decimals(metric, decimals))}"
        for name in ordered
        if figures[name] is not None
    )
    return f"  {when:<18} {verdict:<26} {shown}"


# ---------------------------------------------------------------- make status
# Gathering (processes, REST, registry) and formatting are apart: format_status reads plain
# dicts, so its text is tested without Airflow.

# The health report's name of each component; the api-server answers the report itself.
HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}


def airflow_status(af: Airflow) -> dict[str, Any]:
    """{"pids": {component: pid or None}, "health": the health report or None}."""
    return {"pids": {c: read_pid(af, c) for c in COMPONENTS}, "health": health(af)}


def champion_status(registry: Any, *, metric: str) -> dict[str, Any] | None:
    """The champion in service and its test score on `metric`; None before the first one.

    Returns:
        {"version", "model", "score", "decimals", "since"}, or {"version", "since", "error"}
        when the registry cannot be read (version and since None if the pointer cannot).
    """
    pointer = None
    try:
        pointer = registry.champion()
        meta = registry.meta(pointer["version"]) if pointer else {}
    except (OSError, ValueError, KeyError, ArtifactError) as err:
        known = pointer or {}
        return {"version": known.get("version"), "since": known.get("since"), "error": str(err)}
    if pointer is None:
        return None
    return {
        "version": pointer["version"],
        "model": meta["model"]["name"],
        "score": meta.get("scores", {}).get(metric),
        "decimals": (meta.get("display") or {}).get("decimals", DEFAULT_DECIMALS),
        "since": pointer.get("since"),
    }


def dag_status(client: Any, dag_id: str) -> dict[str, Any]:
    """The DAG's newest run and its next scheduled one, over REST.

    Returns:
        {"loaded": False} when Airflow has not loaded the DAG, else {"loaded": True,
        "paused", "next_run" (ISO or None), "last_run" ({"run_id", "state", "run_after",
        "note"} or None)}.
    """
    try:
        dag = client.get(f"/dags/{dag_id}")
    except LocalRunError:
        return {"loaded": False}
    runs = client.get(f"/dags/{dag_id}/dagRuns", order_by="-run_after", limit=1)["dag_runs"]
    last = None
    if runs:
        run = runs[0]
        last = {
            "run_id": run["dag_run_id"],
            "state": run["state"],
            "run_after": run.get("run_after"),
            "note": run.get("note"),
        }
    return {
        "loaded": True,
        "paused": dag.get("is_paused", False),
        "next_run": dag.get("next_dagrun_run_after"),
        "last_run": last,
    }


def gather_status(
    af: Airflow,
    *,
    specs: Iterable[PipelineSpec] | None = None,
    problems: list[str] | None = None,
    registry: Callable[[str], Any] | None = None,
    client: Any = None,
) -> dict[str, Any]:
    """Everything `make status` shows, as plain data: Airflow's processes and health, and per
    pipeline its champion (from the registry, even with Airflow down) and its runs (over REST).

    `specs`, `problems`, `registry` (pipeline name -> Registry) and `client` default to the
    loaded specs, their errors, the artifact store's registries and a client logged in to `af`.
    """
    from freshcast.registry import Registry
    from freshcast.spec import load_valid_specs, spec_problems

    status = {"url": af.url, "overview": overview_url(af), **airflow_status(af)}
    if client is None and status["health"] is not None:
        try:
            client = Client(af, password_timeout=1)
        except (LocalRunError, httpx.HTTPError) as err:
            status["api_error"] = str(err)
    status["api"] = client is not None
    status["problems"] = spec_problems() if problems is None else problems
    status["pipelines"] = [
        {
            "name": spec.name,
            "metric": spec.metric,
            "unit": spec.unit,
            "url": pipeline_url(af, spec.name),
            "champion": champion_status((registry or Registry)(spec.name), metric=spec.metric),
            "dag": dag_status(client, spec.dag_id) if client is not None else None,
        }
        for spec in (load_valid_specs() if specs is None else specs)
    ]
    return status


def components_up(status: dict[str, Any]) -> bool:
    """Whether all four components run (`make status`'s exit code)."""
    return all(status["pids"].get(c) for c in COMPONENTS)


def format_status(status: dict[str, Any]) -> str:
    """`gather_status`'s data as the text `make status` prints."""
    pids, report = status["pids"], status["health"]
    if not any(pids.values()) and report is None:
        lines = [f"Airflow at {status['url']}: not running (start it with `make run`)"]
    else:
        word = "up" if components_up(status) and _healthy(report) else "partly up"
        lines = [f"Airflow at {status['url']}: {word}"]
        rows = []
        for component in COMPONENTS:
            pid = pids.get(component)
            if component == "api-server":
                state = "answering" if report is not None else "not answering"
            else:
                state = ((report or {}).get(HEALTH_KEYS[component]) or {}).get("status") or "n/a"
            rows.append([component, str(pid) if pid else "not running", state])
        database = ((report or {}).get("metadatabase") or {}).get("status") or "n/a"
        rows.append(["metadatabase", "-", database])
        lines.append(display.table(rows, ["component", "pid", "health"]))
        if status.get("api_error"):
            lines.append(f"  REST API: {status['api_error']}")
    for pipeline in status["pipelines"]:
        lines += ["", *_pipeline_lines(pipeline, api=status.get("api", False))]
    for problem in status.get("problems", []):
        lines += ["", f"not loaded: {problem.splitlines()[0]}"]
    if status.get("api"):
        lines += ["", f"All pipelines: {status['overview']}"]
    return "\n".join(lines)


def _pipeline_lines(pipeline: dict[str, Any], *, api: bool) -> list[str]:
    lines = [pipeline["name"], f"  champion:  {_champion_text(pipeline)}"]
    dag = pipeline.get("dag")
    if not api or dag is None:
        return lines  # the header says that Airflow is not running
    if not dag["loaded"]:
        return [*lines, f"  runs:      train_{pipeline['name']} is not loaded by Airflow yet"]
    last = dag["last_run"]
    if last is None:
        lines.append("  last run:  none yet")
    else:
        lines.append(
            f"  last run:  {last['state']}, {clock_time(last.get('run_after'))} ({last['run_id']})"
        )
        if last.get("note"):
            lines.append(f"  note:      {last['note']}")
    if dag["paused"]:
        lines.append("  next run:  none (paused)")
    elif dag["next_run"]:
        lines.append(f"  next run:  {clock_time(dag['next_run'])}")
    else:
        lines.append("  next run:  none scheduled (triggered runs only)")
    lines.append(f"  page:      {pipeline['url']}")
    return lines


def _champion_text(pipeline: dict[str, Any]) -> str:
    champion = pipeline["champion"]
    if champion is None:
        return "none yet"
    since = f"since {clock_time(champion['since'])}"
    if "error" in champion:
        if champion["version"] is None:
            return f"unknown, the registry cannot be read: {champion['error']}"
        return f"v{champion['version']} {since}; its bundle cannot be read: {champion['error']}"
    metric = pipeline["metric"]
    score = display.metric_value(
        metric, champion["score"], decimals=champion["decimals"], unit=pipeline["unit"]
    )
    label = display.metric_label(metric)
    return f"v{champion['version']} {champion['model']}, {label} {score}, {since}"


def status(af: Airflow, *, as_json: bool = False, say: Callable[[str], None] = print) -> int:
    """`make status`: 0 when all four components run, else 1. `as_json` prints only the pids
    and the health report, for scripts."""
    if as_json:
        found = airflow_status(af)
        say(json.dumps(found, indent=2))
    else:
        found = gather_status(af)
        say(format_status(found))
    return 0 if components_up(found) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m freshcast.localrun", description=__doc__)
    parser.add_argument(
        "command", choices=["up", "run", "stop", "status", "login", "rollback", "replay"]
    )
    parser.add_argument("--pipeline", default="seattle_weather")
    parser.add_argument("--conf", default="", help='JSON run conf, e.g. {"epochs": 3}')
    parser.add_argument("--version", type=int, help="rollback: the registry version to serve")
    parser.add_argument("--reason", default="manual rollback", help="rollback: why")
    parser.add_argument("--start", help="replay: first date, YYYY-MM-DD")
    parser.add_argument("--end", help="replay: last date, YYYY-MM-DD")
    parser.add_argument(
        "--json", action="store_true", help="status: the pids and health report as JSON"
    )
    parser.add_argument(
        "--training-slots", type=int, default=int(os.environ.get("TRAINING_POOL_SLOTS", "2"))
    )
    args = parser.parse_args(argv)
    af = Airflow(
        home=Path(os.environ.get("AIRFLOW_HOME") or PROJECT_ROOT / ".airflow"),
        port=int(os.environ.get("AIRFLOW_PORT", "8080")),
        database=os.environ.get(DATABASE_ENV) or None,
    )
    pools = {"training": args.training_slots}
    try:
        if args.command == "stop":
            stop(af)
        elif args.command == "up":
            up(af, pools=pools)
        elif args.command == "status":
            return status(af, as_json=args.json)
        elif args.command == "rollback":
            if not args.version:
                raise LocalRunError("rollback needs --version N (make rollback VERSION=N)")
            return rollback_pipeline(af, args.pipeline, version=args.version, reason=args.reason)
        elif args.command == "replay":
            if not (args.start and args.end):
                raise LocalRunError(
                    "replay needs --start and --end (make replay START=... END=...)"
                )
            return replay(af, args.pipeline, start=args.start, end=args.end, pools=pools)
        elif args.command == "login":
            print(f"{af.url}  user: {USER}  password: {password(af, timeout=1)}")
        else:
            try:
                conf = json.loads(args.conf) if args.conf.strip() else {}
            except json.JSONDecodeError as err:
                raise LocalRunError(
                    f"CONF is not valid JSON: {err}. Received: {args.conf}"
                ) from err
            return run_pipeline(af, args.pipeline, conf=conf, pools=pools)
    except LocalRunError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nstopped following; Airflow goes on at {af.url} (`make stop` stops it)")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
