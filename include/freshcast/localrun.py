"""Run Airflow on this machine for `make run` / `make stop`, and drive it over its REST API.

Starts the four Airflow 3 components that `airflow standalone` would (api-server, scheduler,
dag-processor, triggerer) with LocalExecutor and SQLite, each as its own process group with a pid
file and a log in AIRFLOW_HOME. Started this way rather than through `airflow standalone` so the
scheduler's and triggerer's log servers, which bind every interface, stay off
(`--skip-serve-logs`): with LocalExecutor the api-server reads task logs from disk. Everything
listens on 127.0.0.1.

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
import secrets
import signal
import socket
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


def worker_hostname() -> str:
    """`[core] hostname_callable` for Celery workers started here: each reports its own name,
    so task instances show which worker ran them even on one machine."""
    return os.environ.get(WORKER_NAME_ENV) or socket.getfqdn()


@dataclass(frozen=True)
class Airflow:
    """One local Airflow installation: its home, where its API listens and how to call its CLI.

    With `executor="CeleryExecutor"`, `database` (a SQLAlchemy URL), `broker` and
    `result_backend` say where the metadata and the Celery queue live.
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

    def env(self) -> dict[str, str]:
        return {**os.environ, "AIRFLOW_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}

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
    af.home.mkdir(parents=True, exist_ok=True)
    fernet_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    text = f"""# Written by `make run` (freshcast.localrun). Random secrets: never commit.
[core]
dags_folder = {dags_folder or PROJECT_ROOT / "dags"}
plugins_folder = {PROJECT_ROOT / "plugins"}
executor = {af.executor}
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

[dag_processor]
refresh_interval = 30
min_file_process_interval = 30
"""
    sections: dict[str, dict[str, str]] = {}
    if af.database:
        sections["database"] = {"sql_alchemy_conn": af.database}
    if af.broker:
        sections["celery"] = {
            "broker_url": af.broker,
            "result_backend": af.result_backend or "",
            "worker_concurrency": "2",
        }
    for section, values in (extra or {}).items():
        sections.setdefault(section, {}).update(values)
    for section, values in sections.items():
        text += f"\n[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
    cfg.write_text(text)
    cfg.chmod(0o600)
    return cfg


def airflow_cli(af: Airflow, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [af.cli, *args], env=af.env(), capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    if check and result.returncode != 0:
        raise LocalRunError(
            f"`airflow {' '.join(args)}` failed ({result.returncode}):\n{result.stderr[-3000:]}"
        )
    return result


# ---------------------------------------------------------------- processes


def read_pid(af: Airflow, component: str) -> int | None:
    """The pid in the component's pid file if that process is alive and is an airflow process."""
    try:
        pid = int(af.pid_file(component).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return None
    # A reused pid is somebody else's. Celery retitles its worker process ("[celeryd: ...]").
    return pid if "airflow" in cmdline or "celery" in cmdline else None


def start_component(af: Airflow, component: str, *, env: dict[str, str] | None = None) -> int:
    args = {
        "api-server": ["api-server", "--host", af.host, "--port", str(af.port), "--workers", "1"],
        "scheduler": ["scheduler", "--skip-serve-logs"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer", "--skip-serve-logs"],
    }[component]
    return _spawn(af, component, args, env=env)


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
    return _spawn(af, f"worker-{name}", args, env=env)


def _components(af: Airflow) -> list[str]:
    """Every component with a pid file: the four, plus any Celery workers."""
    workers = sorted(p.stem for p in af.home.glob("worker-*.pid"))
    return [*COMPONENTS, *workers]


def _spawn(af: Airflow, component: str, args: list[str], *, env: dict[str, str] | None) -> int:
    with open(af.log_file(component), "ab") as log:
        proc = subprocess.Popen(
            [af.cli, *args],
            env={**af.env(), **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
            start_new_session=True,  # its own process group, so stop() takes its children too
        )
    af.pid_file(component).write_text(f"{proc.pid}\n")
    return proc.pid


def stop(af: Airflow, *, say: Callable[[str], None] = print, grace: float = 30.0) -> list[int]:
    """Stop the processes this module started, by their pid files, and nothing else."""
    stopped = []
    components = _components(af)
    for component in components:
        pid = read_pid(af, component)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            stopped.append(pid)
            say(f"stopping {component} (pid {pid})")
    deadline = time.monotonic() + grace
    for pid in stopped:
        while _group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            # SIGKILL is delivered at once, but the processes leave the table only when they
            # are reaped: wait for that, so "stopped" means gone.
            gone_by = time.monotonic() + 15
            while _group_alive(pid) and time.monotonic() < gone_by:
                time.sleep(0.1)
    for component in components:
        af.pid_file(component).unlink(missing_ok=True)
    if not stopped:
        say(f"nothing to stop: no running component has a pid file in {af.home}")
    return stopped


def _group_alive(pgid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # reap the leader when it is our own child
        os.waitpid(pgid, os.WNOHANG)
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
    """Start whatever component is not running (reusing those that are) and wait until healthy."""
    running = {c: read_pid(af, c) for c in COMPONENTS}
    if all(running.values()) and _healthy(health(af)):
        say(f"Airflow is already up at {af.url} (pids {', '.join(map(str, running.values()))})")
        _set_pools(af, pools or {})
        return
    write_config(af)
    if running["api-server"] is None and _port_open(af.host, af.port):
        raise LocalRunError(
            f"port {af.port} on {af.host} is taken by a program this project did not start; "
            "stop it, or run with AIRFLOW_PORT=<free port>"
        )
    say(f"migrating the metadata database in {af.home}")
    airflow_cli(af, "db", "migrate")
    _set_pools(af, pools or {})
    for component in COMPONENTS:
        if running[component] is None:
            pid = start_component(af, component)
            say(f"started {component} (pid {pid}, log {af.log_file(component)})")
    wait_healthy(af, timeout=timeout)
    say(f"Airflow is up at {af.url}")


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


class Client:
    """A small client of Airflow's REST API v2, logged in as the generated admin user."""

    def __init__(self, af: Airflow, *, password_timeout: float = 60.0) -> None:
        self.af = af
        secret = password(af, timeout=password_timeout)
        response = httpx.post(
            f"{af.url}/auth/token", json={"username": USER, "password": secret}, timeout=30
        )
        if response.status_code not in (200, 201):
            raise LocalRunError(f"login to {af.url} failed: {response.status_code} {response.text}")
        token = response.json()["access_token"]
        self.http = httpx.Client(
            base_url=f"{af.url}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        if response.status_code >= 400:
            raise LocalRunError(f"GET {path}: {response.status_code} {response.text}")
        return response.json()

    def wait_for_dag(self, dag_id: str, *, timeout: float = 180.0) -> dict[str, Any]:
        """Wait until the dag-processor has parsed `dag_id`; fail early when its spec is broken."""
        spec_file = f"/{dag_id.removeprefix('train_')}.yaml"
        deadline = time.monotonic() + timeout
        errors: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            response = self.http.get(f"/dags/{dag_id}")
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
        response = self.http.patch(f"/dags/{dag_id}", json={"is_paused": False})
        if response.status_code >= 400:
            raise LocalRunError(f"unpausing {dag_id}: {response.status_code} {response.text}")

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        response = self.http.post(
            f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf}
        )
        if response.status_code >= 400:
            detail = response.json().get("detail", response.text)
            raise LocalRunError(f"triggering {dag_id} was refused: {detail}")
        return response.json()["dag_run_id"]

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
