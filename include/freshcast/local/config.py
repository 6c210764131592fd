"""One local Airflow installation: its home, URLs and environment, the airflow.cfg `make run`
writes, the admin's generated password, and the metadata database (SQLite in the home, or
PostgreSQL from FRESHCAST_DATABASE_URL, created when missing).

Everything in the home is readable by its owner only; every address is 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import socket
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

PROJECT_ROOT = Path(__file__).resolve().parents[3]  # include/freshcast/local/config.py


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
    text = f"""# Written by `make run` (freshcast.local). Random secrets: never commit.
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


def password(af: Airflow, *, timeout: float = 60.0) -> str:
    """The generated password of the admin user (`ensure_password` writes it before the
    api-server starts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            return json.loads(af.passwords_file.read_text())[USER]
        time.sleep(0.5)
    raise LocalRunError(f"no password for {USER!r} in {af.passwords_file}")
