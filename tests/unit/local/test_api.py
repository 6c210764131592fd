"""The REST client over real HTTP (a stand-in api-server, `fake_api`): what it sends through
apache-airflow-client, what it sends again while SQLite's database is busy, and what it reads."""

from __future__ import annotations

import json
import re

import pytest

from freshcast.local import api
from freshcast.local.config import LocalRunError
from tests.conftest import PROJECT_ROOT
from tests.unit.local.conftest import TOKEN

BUSY = {"detail": {"reason": "Database error", "statement": "hidden", "message": "see log"}}
RUNS = "/api/v2/dags/train_tiny/dagRuns"


def client(api_af, **kwargs) -> api.Client:
    return api.Client(api_af, backoff=0, **kwargs)


def test_the_client_library_is_pinned_to_the_servers_version():
    requirements = (PROJECT_ROOT / "requirements.txt").read_text()
    pins = dict(re.findall(r"^(apache-airflow(?:-client)?)==(\S+)$", requirements, re.M))
    assert pins["apache-airflow-client"] == pins["apache-airflow"]


def test_a_trigger_that_met_a_locked_database_is_sent_again_with_the_same_run_id(api_af, fake_api):
    fake_api.routes[("POST", RUNS)] = [(500, BUSY), (503, {"detail": "locked"}), (200, {})]
    run_id = client(api_af).trigger("train_tiny", {"epochs": 2})
    bodies = [r.body for r in fake_api.seen]
    assert len(bodies) == 3 and all(b == bodies[0] for b in bodies)
    assert bodies[0] == {"dag_run_id": run_id, "logical_date": None, "conf": {"epochs": 2}}
    assert run_id.startswith("manual__")
    assert fake_api.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_409_after_a_lost_answer_means_the_first_attempt_created_the_run(api_af, fake_api):
    fake_api.routes[("POST", RUNS)] = [(500, BUSY), (409, {"detail": {"reason": "Unique"}})]
    run_id = client(api_af).trigger("train_tiny", {})
    assert [r.body["dag_run_id"] for r in fake_api.seen] == [run_id, run_id]


def test_other_errors_are_not_sent_again_and_retries_end(api_af, fake_api):
    fake_api.routes[("POST", RUNS)] = [(400, {"detail": "Invalid input for param epochs"})]
    with pytest.raises(LocalRunError, match="refused: Invalid input for param epochs"):
        client(api_af).trigger("train_tiny", {"epochs": 0})
    fake_api.routes[("GET", RUNS)] = [(500, {"detail": "Internal Server Error"})]
    with pytest.raises(LocalRunError, match="500 Internal Server Error"):
        client(api_af).dag_runs("train_tiny")
    assert len(fake_api.seen) == 2
    fake_api.seen.clear()
    fake_api.routes[("GET", RUNS)] = [(503, {})] * 3
    with pytest.raises(LocalRunError, match="503"):
        client(api_af, attempts=3).dag_runs("train_tiny")
    assert len(fake_api.seen) == 3


def test_reads_and_unpause_are_sent_again_while_the_database_is_busy(api_af, fake_api):
    fake_api.routes[("GET", RUNS)] = [(500, BUSY), (200, {"dag_runs": [], "total_entries": 0})]
    fake_api.routes[("PATCH", "/api/v2/dags/train_tiny")] = [(503, {}), (200, {})]
    af_client = client(api_af)
    assert af_client.dag_runs("train_tiny") == []
    af_client.unpause("train_tiny")
    assert [r.method for r in fake_api.seen] == ["GET", "GET", "PATCH", "PATCH"]
    assert fake_api.seen[0].query == {"order_by": ["run_after"], "limit": ["1000"], "offset": ["0"]}
    assert fake_api.seen[-1].body == {"is_paused": False}


def test_a_dag_that_does_not_exist_is_none_and_a_broken_spec_is_named(api_af, fake_api):
    trace = 'Traceback...\nfreshcast.spec.SpecError: /x/tiny.yaml: units.0: "W" is not a unit'
    fake_api.routes[("GET", "/api/v2/importErrors")] = (
        200,
        {"import_errors": [{"filename": "spec_errors.py", "stack_trace": trace}]},
    )
    af_client = client(api_af)
    assert af_client.dag("train_tiny") is None
    with pytest.raises(LocalRunError, match=r"(?s)train_tiny is not loaded.*SpecError: /x/tiny"):
        af_client.wait_for_dag("train_tiny", timeout=5)
    assert "Traceback" not in api._spec_error({"filename": "f", "stack_trace": trace})


def test_dag_details_are_the_apis_json(api_af, fake_api):
    details = {"dag_id": "train_tiny", "params": {"epochs": {"value": None}}}
    fake_api.routes[("GET", "/api/v2/dags/train_tiny/details")] = (200, details)
    assert client(api_af).dag_details("train_tiny") == details


def test_replay_creates_a_backfill_and_reads_it(api_af, fake_api):
    fake_api.routes[("POST", "/api/v2/backfills")] = (200, {"id": 7})
    fake_api.routes[("GET", "/api/v2/backfills/7")] = (200, {"id": 7, "completed_at": None})
    af_client = client(api_af)
    assert af_client.create_backfill("train_tiny", start="2024-08-21", end="2024-08-22") == {
        "id": 7
    }
    assert af_client.backfill(7)["completed_at"] is None
    assert fake_api.seen[0].body == {  # no dag_run_conf: a replay's runs take none
        "dag_id": "train_tiny",
        "from_date": "2024-08-21T00:00:00+00:00",
        "to_date": "2024-08-22T00:00:00+00:00",
        "max_active_runs": 1,
        "reprocess_behavior": "completed",
        "run_backwards": False,
    }


def test_a_failed_tasks_error_is_read_from_its_log(api_af, fake_api):
    run = "manual__1"
    tis = [
        {"task_id": "train", "state": "failed", "try_number": 2, "map_index": 0},
        {"task_id": "window", "state": "success", "try_number": 1, "map_index": -1},
    ]
    fake_api.routes[("GET", f"/api/v2/dags/train_tiny/dagRuns/{run}/taskInstances")] = (
        200,
        {"task_instances": tis, "total_entries": 2},
    )
    detail = [
        {"exc_type": "AirflowFailException", "exc_value": "wrapped", "is_cause": False},
        {
            "exc_type": "BadInputError",
            "exc_value": "row 3: not a number",
            "is_cause": True,
        },
    ]
    log = f"/api/v2/dags/train_tiny/dagRuns/{run}/taskInstances/train/logs/2"
    fake_api.routes[("GET", log)] = (200, {"content": [{"event": "x", "error_detail": detail}]})
    assert client(api_af).failures("train_tiny", run) == [
        "train: BadInputError: row 3: not a number"
    ]
    assert fake_api.seen[-1].query == {"full_content": ["true"], "map_index": ["0"]}


def test_busy_database_reads_airflows_answer():
    assert api.busy_database(503, b"")
    assert api.busy_database(500, json.dumps(BUSY).encode())
    assert not api.busy_database(500, b'{"detail": "boom"}')
    assert not api.busy_database(500, b"<html>")
    assert not api.busy_database(409, json.dumps(BUSY).encode())


def test_health_is_none_when_nothing_answers_and_the_report_otherwise(api_af, fake_api):
    report = {"metadatabase": {"status": "healthy"}}
    fake_api.routes[("GET", "/api/v2/monitor/health")] = (200, report)
    assert api.health_report(api_af) == report
    fake_api.routes[("GET", "/api/v2/monitor/health")] = (503, {})
    assert api.health_report(api_af) is None
    closed = type(api_af)(home=api_af.home, port=1)  # nothing listens on port 1
    assert api.health_report(closed) is None
