"""The command line, `python -m freshcast.local`: where it takes the database from, and `status
--json`."""

from __future__ import annotations

import json
import subprocess
import sys

from freshcast.local import __main__ as cli
from freshcast.local import status
from freshcast.local.config import Airflow
from tests.conftest import PROJECT_ROOT

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


def test_login_prints_the_address_user_and_password_the_readme_promises(af, monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW_HOME", str(af.home))
    monkeypatch.setenv("AIRFLOW_PORT", "8793")
    assert cli.main(["login"]) == 0
    assert capsys.readouterr().out == "http://127.0.0.1:8793  user: admin  password: s3cret\n"
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "`.venv/bin/python -m freshcast.local login`" in readme


def test_a_module_run_as_a_script_is_the_command_line():
    done = subprocess.run(
        [sys.executable, "-m", "freshcast.local", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert "usage: python -m freshcast.local" in done.stdout
    for command in ("run", "stop", "status", "login", "rollback", "replay"):
        assert command in done.stdout
