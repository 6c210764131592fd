from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_tiny_pipeline


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The session's AIRFLOW_HOME with a migrated SQLite metadata database."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ)
    return Path(os.environ["AIRFLOW_HOME"])


@pytest.fixture
def tiny(tmp_path, monkeypatch) -> dict[str, Path]:
    """The tiny pipeline as the only spec, artifacts under tmp_path."""
    pipelines, artifacts = tmp_path / "pipelines", tmp_path / "artifacts"
    write_tiny_pipeline(pipelines)
    monkeypatch.setenv("FRESHCAST_PIPELINES_DIR", str(pipelines))
    monkeypatch.setenv("FRESHCAST_ARTIFACT_ROOT", str(artifacts))
    return {"pipelines": pipelines, "artifacts": artifacts}
