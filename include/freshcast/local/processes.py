"""Starting, watching and stopping Airflow's components on this machine.

The four components `airflow standalone` runs (api-server, scheduler, dag-processor,
triggerer), and Celery workers when the executor is Celery, each start as a session of its own
with a pid file and a log in the home. Started this way rather than through `airflow
standalone` so that the scheduler's and triggerer's log servers, which bind every interface,
stay off (`--skip-serve-logs`): with LocalExecutor the api-server reads task logs from disk.
`stop` ends every process of those sessions, task processes included, and waits until they are
gone; `up` first ends what a component that died left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from freshcast.local.config import (
    PROJECT_ROOT,
    WORKER_NAME_ENV,
    Airflow,
    LocalRunError,
    database_label,
    ensure_database,
    ensure_password,
    secure_home,
    write_config,
    write_private,
)

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


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
            f"AIRFLOW__DATABASE__{key}": "freshcast.local.config.SQLITE_CONNECT_ARGS"
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
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "freshcast.local.config.worker_hostname",
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
    """Airflow's health report (`/api/v2/monitor/health`, no login); None when the api-server
    does not answer. The client library is imported here, not by `make stop`, which needs none."""
    from freshcast.local.api import health_report

    return health_report(af)


def healthy(report: dict[str, Any] | None) -> bool:
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
    if all(running.values()) and healthy(health(af)):
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
        if healthy(report):
            return
        dead = [c for c in COMPONENTS if read_pid(af, c) is None]
        if dead:
            logs = ", ".join(str(af.log_file(c)) for c in dead)
            raise LocalRunError(f"{', '.join(dead)} exited while starting; see {logs}")
        time.sleep(1)
    raise LocalRunError(f"Airflow not healthy after {timeout:.0f}s: {report}; logs in {af.home}")
