"""The commands `make run`, `make rollback` and `make replay` run, and what they print.

Each starts Airflow when it is not up (`processes.up`), triggers its DAG through the API,
follows the run to its end and prints the result in the data's units with the links to the
pages in the Airflow UI.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from freshcast import display
from freshcast.local.api import Client
from freshcast.local.config import (
    USER,
    Airflow,
    LocalRunError,
    password,
    pipeline_url,
    report_url,
    run_url,
)
from freshcast.local.processes import up

if TYPE_CHECKING:
    from freshcast.spec import PipelineSpec


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
    if not (client.dag(forecast_id) or {"is_paused": True})["is_paused"]:
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
    try:
        backfill = client.create_backfill(dag_id, start=start, end=end)
    except LocalRunError:
        registry.end_replay()
        raise
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
        finished = client.backfill(backfill["id"]).get("completed_at")
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
