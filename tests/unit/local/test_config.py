"""The local Airflow home: links into the Airflow UI, a private home and password, airflow.cfg, and
the metadata database."""

from __future__ import annotations

import os
import re
import secrets
import socket
from pathlib import Path

import pytest

from freshcast.local import config
from freshcast.local.config import Airflow
from tests.helpers import file_mode

RUN_ID = "manual__2024-08-27T12:45:36.582898+00:00"


QUOTED = "manual__2024-08-27T12%3A45%3A36.582898%2B00%3A00"


def test_links_are_pages_of_the_airflow_ui_with_the_run_id_quoted(af):
    assert config.overview_url(af) == "http://127.0.0.1:8793/plugin/forecasts"
    assert (
        config.pipeline_url(af, "seattle_weather")
        == "http://127.0.0.1:8793/dags/train_seattle_weather/plugin/freshcast-pipeline"
    )
    assert (
        config.run_url(af, "train_seattle_weather", RUN_ID)
        == f"http://127.0.0.1:8793/dags/train_seattle_weather/runs/{QUOTED}"
    )
    # "+" and ":" are quoted, and so is "/" (a run id is free text): one path segment.
    assert (
        config.report_url(af, "forecast_tiny", "asset_triggered__a/b+c:d")
        == "http://127.0.0.1:8793/dags/forecast_tiny/runs/asset_triggered__a%2Fb%2Bc%3Ad"
        "/plugin/freshcast-report"
    )


def test_start_makes_an_existing_home_private_and_the_password_never_reaches_a_log(tmp_path):
    old = os.umask(0o022)
    try:
        af = Airflow(home=tmp_path / "home")
        af.home.mkdir(mode=0o755)
        for name in (
            "airflow.db",
            "api-server.log",
            "simple_auth_manager_passwords.json.generated",
        ):
            (af.home / name).write_text("x")
            (af.home / name).chmod(0o644)
        (af.home / "logs").mkdir(mode=0o755)
        config.secure_home(af)
        assert {p.name: file_mode(p) for p in [af.home, *af.home.iterdir()]} == {
            "home": 0o700,
            "airflow.db": 0o600,
            "api-server.log": 0o600,
            "simple_auth_manager_passwords.json.generated": 0o600,
            "logs": 0o700,
        }
        fresh = Airflow(home=tmp_path / "fresh" / "home")
        cfg = config.write_config(fresh)
        assert (file_mode(fresh.home), file_mode(cfg)) == (0o700, 0o600)
        assert "file_task_handler_new_file_permissions = 0o600" in cfg.read_text()
        # Airflow prints only a password that it generates: the one written here stays out
        # of the api-server's log.
        config.ensure_password(fresh)
        secret = config.password(fresh, timeout=1)
        assert file_mode(fresh.passwords_file) == 0o600 and len(secret) >= 16
        config.ensure_password(fresh)
        assert config.password(fresh, timeout=1) == secret
    finally:
        os.umask(old)


def test_ensure_database_creates_a_missing_postgresql_database():
    psycopg2 = pytest.importorskip("psycopg2")
    with socket.socket() as sock:
        sock.settimeout(1)
        if sock.connect_ex(("127.0.0.1", 5432)) != 0:
            pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    name = f"freshcast_test_{secrets.token_hex(4)}"
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    config.ensure_database(url)
    config.ensure_database(url)  # there already: nothing to do
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            assert cursor.fetchone() == (1,)
            cursor.execute(f'DROP DATABASE "{name}"')
    finally:
        conn.close()
    config.ensure_database("sqlite:////nowhere/airflow.db")  # not PostgreSQL: left alone


def test_airflow_cfg_points_at_this_projects_dags_and_plugins(tmp_path):
    cfg = config.write_config(Airflow(home=tmp_path / "home")).read_text()
    folders = dict(re.findall(r"^(dags_folder|plugins_folder) = (.+)$", cfg, re.M))
    assert Path(folders["dags_folder"]) == config.PROJECT_ROOT / "dags"
    assert (Path(folders["dags_folder"]) / "forecast_pipelines.py").is_file()
    assert (Path(folders["plugins_folder"]) / "freshcast_ui.py").is_file()
