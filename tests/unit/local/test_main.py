"""The command line, `python -m freshcast.local`: where it takes the database from, and `status
--json`."""

from __future__ import annotations

import json

from freshcast.local import __main__ as cli
from freshcast.local import status
from freshcast.local.config import Airflow

PIDS = {"api-server": 11, "scheduler": 12, "dag-processor": 13, "triggerer": 14}


def test_make_run_takes_the_database_from_freshcast_database_url(af, monkeypatch):
    seen: list[Airflow] = []
    monkeypatch.setattr(cli, "stop", lambda af: seen.append(af))
    monkeypatch.setenv("AIRFLOW_HOME", str(af.home))
    monkeypatch.setenv("FRESHCAST_DATABASE_URL", "postgresql+psycopg2://u@h:5432/d")
    assert cli.main(["stop"]) == 0
    monkeypatch.setenv("FRESHCAST_DATABASE_URL", "")
    assert cli.main(["stop"]) == 0
    assert [a.database_url for a in seen] == [
        "postgresql+psycopg2://u@h:5432/d",
        f"sqlite:///{af.home / 'airflow.db'}",
    ]


def test_status_json_keeps_pids_and_health_for_scripts(af, monkeypatch, capsys):
    monkeypatch.setattr(
        status, "airflow_status", lambda af: {"pids": dict.fromkeys(PIDS), "health": None}
    )
    monkeypatch.setenv("AIRFLOW_HOME", str(af.home))
    assert cli.main(["status", "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {"pids": dict.fromkeys(PIDS), "health": None}
