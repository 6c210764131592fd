"""`make status`: which components run and answer, and per pipeline its champion, its last runs
and whether a DAG failed to load. Reads the pid files, Airflow's health endpoint, the registry
and, when the api-server is up, the API.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import urllib3

from freshcast import display
from freshcast.artifacts import ArtifactError
from freshcast.local.api import Client
from freshcast.local.commands import DEFAULT_DECIMALS, clock_time
from freshcast.local.config import Airflow, LocalRunError, overview_url, pipeline_url
from freshcast.local.processes import COMPONENTS, health, healthy, read_pid

if TYPE_CHECKING:
    from freshcast.spec import PipelineSpec


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
    dag = client.dag(dag_id)
    if dag is None:
        return {"loaded": False}
    runs = client.dag_runs(dag_id, newest_first=True, limit=1)
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
        except (LocalRunError, urllib3.exceptions.HTTPError) as err:
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
        word = "up" if components_up(status) and healthy(report) else "partly up"
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
