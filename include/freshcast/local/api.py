"""Airflow's REST API, driven through the official `apache-airflow-client` (pinned to the
server's version in requirements.txt).

`Client` logs in as the generated admin user and adds what the commands need on top of the
generated API classes: a request sent again while SQLite's database is busy, a DAG waited for
with its spec's import error surfaced, a run triggered under an id made here (so a repeated
trigger is harmless), and a run followed task by task.

Every request is built and sent by the client library (its endpoints, parameters, request
models, bearer token and connection pool), through the `*_without_preload_content` variants,
and the answer is read as the JSON the API documents rather than as the generated models. The
reason, checked with apache-airflow-client 3.3.2: a model's state is an Enum member that prints
as `DagRunState.SUCCESS` (`str()` and f-strings), which is what `make run` would print, and
`to_dict()` drops the fields that are unset, so a caller could not tell a missing `start_date`
from a task that has not started. The status of every answer stays in reach, too: a busy
database is recognised from it, and a 409 on a repeated trigger is the success it is.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import urllib3
from airflow_client.client import ApiClient, Configuration
from airflow_client.client.api import (
    AssetApi,
    BackfillApi,
    DAGApi,
    DagRunApi,
    ImportErrorApi,
    MonitorApi,
    TaskInstanceApi,
    XComApi,
)
from airflow_client.client.models import BackfillPostBody, DAGPatchBody, TriggerDAGRunPostBody

from freshcast.local.config import USER, Airflow, LocalRunError, password

TERMINAL = {"success", "failed", "skipped", "upstream_failed", "removed"}
TIMEOUT = 30.0  # seconds for one request


def busy_database(status: int, body: bytes) -> bool:
    """Whether Airflow answered that its metadata database was busy, having changed nothing:
    a 503, or a 500 whose reason is "Database error" (SQLite's "database is locked"; Airflow
    names the cause in the api-server's log only)."""
    if status == 503:
        return True
    if status != 500:
        return False
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return False
    return isinstance(detail, dict) and detail.get("reason") == "Database error"


def _detail(response: Any) -> str:
    """What Airflow said about a refused request: its `detail`, else the body."""
    text = response.data.decode(errors="replace")
    try:
        return str(json.loads(text).get("detail", text))
    except (ValueError, AttributeError):
        return text


def health_report(af: Airflow) -> dict[str, Any] | None:
    """Airflow's health report (no login needed); None when the api-server does not answer."""
    configuration = Configuration(host=af.url)
    configuration.retries = 0  # a poll: the next one is the retry
    monitor = MonitorApi(ApiClient(configuration))
    try:
        response = monitor.get_health_without_preload_content(_request_timeout=5)
    except urllib3.exceptions.HTTPError:
        return None
    return json.loads(response.data) if response.status == 200 else None


class Client:
    """Airflow's REST API v2 through apache-airflow-client, logged in as the generated admin.

    Every request it sends is one that may be sent twice: it is sent again, up to `attempts`
    times in all after pauses that double from `backoff` seconds (to 8 s at most), while Airflow
    answers that its database is busy (`busy_database`) or the connection fails. Answers are
    the API's JSON: dicts with the documented field names.
    """

    def __init__(
        self,
        af: Airflow,
        *,
        password_timeout: float = 60.0,
        attempts: int = 8,
        backoff: float = 0.5,
    ) -> None:
        self.af, self.attempts, self.backoff = af, attempts, backoff
        secret = password(af, timeout=password_timeout)
        self.api = ApiClient(Configuration(host=af.url))
        # The token endpoint is the auth manager's, outside the API the library generates.
        login = self._send(
            self.api.call_api,
            "POST",
            f"{af.url}/auth/token",
            header_params={"Content-Type": "application/json"},
            body={"username": USER, "password": secret},
        )
        if login.status not in (200, 201):
            raise LocalRunError(f"login to {af.url} failed: {login.status} {_detail(login)}")
        self.api.configuration.access_token = json.loads(login.data)["access_token"]
        self.dags, self.runs = DAGApi(self.api), DagRunApi(self.api)
        self.tasks, self.xcoms = TaskInstanceApi(self.api), XComApi(self.api)
        self.errors, self.backfills = ImportErrorApi(self.api), BackfillApi(self.api)
        self.assets = AssetApi(self.api)

    def _send(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`method(*args, **kwargs)`, a request, sent again while the database is busy; the
        urllib3 response (`.status`, `.data`).

        Raises:
            urllib3.exceptions.HTTPError: when the last attempt cannot reach the api-server.
        """
        attempt = 1
        while True:
            try:
                response = method(*args, **kwargs, _request_timeout=TIMEOUT)
                response = getattr(response, "response", response)  # call_api's wrapper
            except urllib3.exceptions.HTTPError:
                if attempt >= self.attempts:
                    raise
            else:
                if attempt >= self.attempts or not busy_database(response.status, response.data):
                    return response
            # Jitter: clients that met the same lock should not come back at the same moment.
            pause = min(self.backoff * 2 ** (attempt - 1), 8.0)
            time.sleep(pause * random.uniform(0.5, 1.0))
            attempt += 1

    def _json(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The JSON answer of a request; LocalRunError naming `what` when Airflow refused it."""
        response = self._send(method, *args, **kwargs)
        if response.status >= 400:
            raise LocalRunError(f"{what}: {response.status} {_detail(response)}")
        return json.loads(response.data)

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG as Airflow knows it; None when no DAG has that id."""
        response = self._send(self.dags.get_dag_without_preload_content, dag_id)
        if response.status == 404:
            return None
        if response.status >= 400:
            raise LocalRunError(f"reading DAG {dag_id}: {response.status} {_detail(response)}")
        return json.loads(response.data)

    def dag_details(self, dag_id: str) -> dict[str, Any]:
        """The DAG with its details: its params (with their schemas), its schedule, its file."""
        method = self.dags.get_dag_details_without_preload_content
        return self._json(f"reading DAG {dag_id}", method, dag_id)

    def import_errors(self) -> list[dict[str, Any]]:
        """The DAG files that failed to load, with their tracebacks."""
        method = self.errors.get_import_errors_without_preload_content
        return self._json("listing import errors", method, limit=1000)["import_errors"]

    def wait_for_dag(self, dag_id: str, *, timeout: float = 180.0) -> dict[str, Any]:
        """Wait until the dag-processor has parsed `dag_id`; fail early when its spec is broken."""
        spec_file = f"/{dag_id.removeprefix('train_')}.yaml"
        deadline = time.monotonic() + timeout
        errors: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            dag = self.dag(dag_id)
            if dag is not None and not dag.get("is_stale"):
                return dag
            errors = self.import_errors()
            ours = [e for e in errors if spec_file in e["stack_trace"]]
            if ours:
                raise LocalRunError(f"{dag_id} is not loaded:\n{_spec_error(ours[0])}")
            time.sleep(2)
        details = "".join(f"\n{_spec_error(e)}" for e in errors)
        raise LocalRunError(
            f"{dag_id} did not appear within {timeout:.0f}s; see the dag-processor log{details}"
        )

    def unpause(self, dag_id: str) -> None:
        method = self.dags.patch_dag_without_preload_content
        self._json(f"unpausing {dag_id}", method, dag_id, DAGPatchBody(is_paused=False))

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """Create a run of `dag_id` with `conf` now; returns its run id.

        The run id is made here, new and random, so the request is safe to send again: a 409
        (the id exists) means that an earlier attempt created the run.
        """
        run_id = f"manual__{datetime.now(UTC).isoformat()}_{secrets.token_hex(4)}"
        body = TriggerDAGRunPostBody(dag_run_id=run_id, logical_date=None, conf=conf)
        response = self._send(self.runs.trigger_dag_run_without_preload_content, dag_id, body)
        if response.status >= 400 and response.status != 409:
            raise LocalRunError(f"triggering {dag_id} was refused: {_detail(response)}")
        return run_id

    def dag_runs(
        self, dag_id: str, *, newest_first: bool = False, limit: int = 1000, offset: int = 0
    ) -> list[dict[str, Any]]:
        """The DAG's runs, oldest first (`dag_id` "~": every DAG's)."""
        order = "-run_after" if newest_first else "run_after"
        method = self.runs.get_dag_runs_without_preload_content
        answer = self._json(
            f"listing runs of {dag_id}",
            method,
            dag_id,
            order_by=[order],
            limit=limit,
            offset=offset,
        )
        return answer["dag_runs"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        method = self.runs.get_dag_run_without_preload_content
        return self._json(f"reading run {run_id}", method, dag_id, run_id)["state"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        method = self.tasks.get_task_instances_without_preload_content
        answer = self._json(f"listing the tasks of {run_id}", method, dag_id, run_id, limit=1000)
        return answer["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """What the task returned (its `return_value` XCom)."""
        method = self.xcoms.get_xcom_entry_without_preload_content
        answer = self._json(
            f"reading what {task_id} returned", method, dag_id, task_id, run_id, "return_value"
        )
        return answer["value"]

    def create_backfill(
        self, dag_id: str, *, start: str, end: str, reprocess: str = "completed"
    ) -> dict[str, Any]:
        """A backfill of `dag_id` over [start, end] (dates), one run at a time, with no run
        conf; `reprocess` says which ticks that already have a run run again (Airflow's
        `reprocess_behavior`: "completed" reruns those whose runs ended, "none" none)."""
        body = BackfillPostBody(
            dag_id=dag_id,
            from_date=f"{start}T00:00:00Z",
            to_date=f"{end}T00:00:00Z",
            max_active_runs=1,
            reprocess_behavior=reprocess,
        )
        method = self.backfills.create_backfill_without_preload_content
        return self._json(f"backfill of {dag_id} was refused", method, body)

    def backfill(self, backfill_id: int) -> dict[str, Any]:
        method = self.backfills.get_backfill_without_preload_content
        return self._json(f"reading backfill {backfill_id}", method, backfill_id)

    def asset_events(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Asset events, oldest first."""
        method = self.assets.get_asset_events_without_preload_content
        answer = self._json("listing asset events", method, order_by=["timestamp"], limit=limit)
        return answer["asset_events"]

    def failures(self, dag_id: str, run_id: str) -> list[str]:
        """`task: error` for each failed task of a run, read from the task's log."""
        found = []
        for ti in self.task_instances(dag_id, run_id):
            if ti["state"] != "failed":
                continue
            try:
                content = self._json(
                    f"reading the log of {ti['task_id']}",
                    self.tasks.get_log_without_preload_content,
                    dag_id,
                    run_id,
                    ti["task_id"],
                    ti["try_number"],
                    full_content=True,
                    map_index=ti["map_index"],
                )["content"]
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
