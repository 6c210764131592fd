"""Test-session settings: an isolated AIRFLOW_HOME, set before anything imports airflow."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

_home = Path(tempfile.mkdtemp(prefix="freshcast-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_home)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(PROJECT_ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
