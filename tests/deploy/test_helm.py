"""deploy/helm/values.yaml, checked without Helm or a cluster: it parses, validates against the
official chart's vendored values.schema.json, names the chart version recorded next to that
schema, holds no literal secret, and serves the training queue the pipeline specs use."""

from __future__ import annotations

import ast
import copy
import hashlib
import importlib.util
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from freshcast.spec import PipelineSpec
from tests.conftest import PROJECT_ROOT

HELM = PROJECT_ROOT / "deploy" / "helm"
VALUES = HELM / "values.yaml"
SCHEMA = HELM / "values.schema.json"
README = HELM / "README.md"
CHART_VERSION = HELM / "chart-version.txt"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"

EXECUTORS = {"CeleryExecutor", "KubernetesExecutor"}
OBJECT_STORE = re.compile(r"^(s3|s3a|gs|gcs|abfs|abfss|az)://[^/]+")
# Keys (or env var names) whose string value would be the secret itself.
SECRET_KEY = re.compile(
    r"pass(word|wd)?$|secret|token|fernet|jwt|connection|api_?key|private_?key|^AIRFLOW_CONN_",
    re.IGNORECASE,
)
# ... unless the key names where the secret is: a Secret's name, a key inside it, or an Airflow
# setting that points elsewhere (a file, a command, a secrets backend) or names a connection id.
REFERENCE_KEY = re.compile(
    r"secretname$|^secretkey$|_file$|_cmd$|_secret$|_conn_id$|_conn_name$", re.IGNORECASE
)
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
CREDENTIALS_IN_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@", re.IGNORECASE)


@cache
def _values_text() -> str:
    return VALUES.read_text()


@cache
def _values() -> dict:
    return yaml.load(_values_text(), Loader=LOADER)


@cache
def _schema() -> dict:
    return json.loads(SCHEMA.read_text())


@pytest.fixture
def values() -> dict:
    return copy.deepcopy(_values())  # a fresh copy: tests change it


def validation_errors(values: dict) -> list[str]:
    schema = _schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(values), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def unknown_keys(values: dict) -> list[str]:
    """Keys the chart would ignore that its schema lets through, in the objects the schema leaves
    open: the top level, `workers.celery` and each Celery worker set (which the chart merges over
    `workers` and `workers.celery`, so it takes their keys and a `name`)."""
    properties = _schema()["properties"]
    unknown = [key for key in values if key not in properties]
    workers = properties["workers"]["properties"]
    celery_keys = set(workers["celery"]["properties"])
    celery = values.get("workers", {}).get("celery", {})
    unknown += [f"workers.celery.{key}" for key in celery if key not in celery_keys]
    allowed = {"name"} | set(workers) | celery_keys
    for worker_set in celery.get("sets") or []:
        name = worker_set.get("name")
        unknown += [f"workers.celery.sets[{name}].{k}" for k in worker_set if k not in allowed]
    return unknown


@cache
def _airflow_settings() -> dict[str, set[str]]:
    """{section: option names} that the installed Airflow core and providers define, read from
    core's config.yml and each provider's get_provider_info.py without importing Airflow."""
    spec = importlib.util.find_spec("airflow")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("Airflow is not installed")
    root = Path(spec.submodule_search_locations[0])
    sections = [yaml.load((root / "config_templates" / "config.yml").read_text(), Loader=LOADER)]
    for info in sorted(root.glob("providers/**/get_provider_info.py")):
        tree = ast.parse(info.read_text())
        function = next(n for n in tree.body if getattr(n, "name", "") == "get_provider_info")
        returned = next(n.value for n in ast.walk(function) if isinstance(n, ast.Return))
        sections.append(ast.literal_eval(returned).get("config", {}))
    known: dict[str, set[str]] = {}
    for section_map in sections:
        for section, body in section_map.items():
            known.setdefault(section, set()).update(body.get("options") or {})
    return known


def unknown_airflow_settings(values: dict) -> list[str]:
    """`config` sections and keys that Airflow does not define (the chart's schema takes any)."""
    known = _airflow_settings()
    return [
        f"config.{section}.{key}"
        for section, settings in (values.get("config") or {}).items()
        for key in settings
        if key not in known.get(section, set())
    ]


def literal_secrets(node: object, path: str = "", key: str = "") -> Iterator[str]:
    """Where a secret is written into the values rather than referenced: a non-empty string under
    a secret-like key (an env entry's `name` counts as the key of its `value`), or any string with
    credentials in a URL (`scheme://user:password@host`)."""
    if isinstance(node, dict):
        env_name = node.get("name") if isinstance(node.get("name"), str) else None
        for child_key, child in node.items():
            effective = env_name if env_name and child_key == "value" else str(child_key)
            yield from literal_secrets(child, f"{path}.{child_key}".lstrip("."), effective)
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from literal_secrets(child, f"{path}[{index}]", key)
    elif isinstance(node, str):
        if CREDENTIALS_IN_URL.search(node):
            yield f"{path}: credentials in a URL"
        elif node.strip() and SECRET_KEY.search(key) and not REFERENCE_KEY.search(key):
            yield f"{path}: literal value for {key!r}"


def served_queues(values: dict) -> set[str]:
    """The Celery queues some worker Deployment listens on, as the chart renders them."""
    celery = values.get("workers", {}).get("celery", {})
    default_queue = celery.get("queue") or "default"
    queues: set[str] = set()
    if celery.get("enableDefault", True):
        queues |= set(default_queue.split(","))
    for worker_set in celery.get("sets") or []:
        queues |= set((worker_set.get("queue") or default_queue).split(","))
    return queues


def env_value(values: dict, name: str) -> str | None:
    return next((e["value"] for e in values.get("env") or [] if e["name"] == name), None)


# --- the schema --------------------------------------------------------------------------------


def test_validates_against_the_charts_schema(values):
    assert _schema()["$schema"].startswith("http://json-schema.org/draft-07/")
    assert validation_errors(values) == []
    assert unknown_keys(values) == []


def test_airflow_settings_exist(values):
    assert unknown_airflow_settings(values) == []
    values["config"]["celery"] = {"worker_concurrency": 8}  # a provider's setting
    assert unknown_airflow_settings(values) == []
    values["config"]["dag_processor"]["parsing_process"] = 4
    values["config"]["loging"] = {"remote_logging": "True"}
    assert unknown_airflow_settings(values) == [
        "config.dag_processor.parsing_process",
        "config.loging.remote_logging",
    ]


@pytest.mark.parametrize(
    "path",
    [
        "scheduler.replica",  # for replicas
        "workers.celery.persistence.enable",  # for enabled
        "data.metadataSecret",  # for metadataSecretName
        "dagProcessor.enable",  # for enabled
        "images.airflow.pullpolicy",  # for pullPolicy
    ],
)
def test_a_misspelled_key_fails_validation(values, path):
    *parents, leaf = path.split(".")
    node = values
    for parent in parents:
        node = node[parent]
    node[leaf] = node.get(leaf, 2)
    errors = validation_errors(values)
    assert any(f"'{leaf}' was unexpected" in e for e in errors), errors


def test_a_wrong_type_fails_validation(values):
    values["scheduler"]["replicas"] = "two"
    values["executor"] = "Celery"
    errors = validation_errors(values)
    assert any(e.startswith("scheduler.replicas:") for e in errors), errors
    assert any(e.startswith("executor:") for e in errors), errors


def test_unknown_top_level_and_worker_set_keys_are_caught(values):
    values["fernetKeySecretNmae"] = "x"
    values["workers"]["celery"]["enableDefaults"] = True
    values["workers"]["celery"]["sets"][0]["queues"] = "training"
    assert validation_errors(values) == []  # the chart's schema lets these through ...
    assert unknown_keys(values) == [  # ... so the test checks them itself
        "fernetKeySecretNmae",
        "workers.celery.enableDefaults",
        "workers.celery.sets[training].queues",
    ]


# --- the chart version -------------------------------------------------------------------------


def test_the_chart_version_agrees_everywhere():
    version = CHART_VERSION.read_text().strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    header = _values_text().splitlines()[0]
    assert re.search(rf"chart version {re.escape(version)}\b", header), header
    readme = README.read_text()
    assert f"chart version {version}" in " ".join(readme.replace("*", "").split())
    installs = re.findall(r"helm install \S+ apache-airflow/airflow --version (\S+)", readme)
    assert installs == [version], installs
    assert f"`version: {version}`" in readme


def test_the_vendored_schema_is_the_one_recorded():
    recorded = re.findall(r"sha256 `([0-9a-f]{64})`", README.read_text())
    assert recorded == [hashlib.sha256(SCHEMA.read_bytes()).hexdigest()], (
        "values.schema.json changed: vendor it unchanged and record its sha256 in README.md"
    )


def test_airflow_version_matches_the_image(values):
    pinned = re.search(r"^ARG AIRFLOW_VERSION=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert pinned, "Dockerfile: ARG AIRFLOW_VERSION"
    assert values["airflowVersion"] == pinned.group(1)


# --- secrets -----------------------------------------------------------------------------------


def test_no_literal_secrets(values):
    assert list(literal_secrets(values)) == []


def test_secrets_come_from_kubernetes_secrets(values):
    assert values["postgresql"]["enabled"] is False
    assert values["redis"]["enabled"] is False
    data = values["data"]
    for key in ("metadataSecretName", "resultBackendSecretName", "brokerUrlSecretName"):
        assert data.get(key), key
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert values.get(key), key
    for key in ("fernetKey", "apiSecretKey", "jwtSecret", "webserverSecretKey"):
        assert not values.get(key), key
    for key in ("brokerUrl", "resultBackendConnection"):
        assert not data.get(key), key
    assert values["createUserJob"]["enabled"] is False
    assert not values["createUserJob"]["defaultUser"]["password"]
    # The storage connection: an AIRFLOW_CONN_ variable filled from a Secret, never from `env`.
    conn_id = env_value(values, "FRESHCAST_STORAGE_CONN_ID")
    assert conn_id
    assert f"AIRFLOW_CONN_{conn_id.upper()}" in {s["envName"] for s in values["secret"]}
    assert not any(e["name"].startswith("AIRFLOW_CONN_") for e in values["env"])


LITERAL_SECRETS = {
    "fernetKey": lambda v: v.update(fernetKey="cNJ3t6sUOoJmm9Nq3VJbZQ0VB4Vf4Ayo2ghKVT5Yc9Q="),
    "jwtSecret": lambda v: v.update(jwtSecret="s3cr3t"),
    "password": lambda v: v["createUserJob"]["defaultUser"].update(password="admin"),
    "pass": lambda v: v["data"]["metadataConnection"].update({"pass": "postgres"}),
    "brokerUrl": lambda v: v["data"].update(brokerUrl="redis://:hunter2@redis:6379/0"),
    "sql_alchemy_conn": lambda v: v["config"]["core"].update(
        sql_alchemy_conn="postgresql://airflow:pw@db/airflow"
    ),
    "env[3].value": lambda v: v["env"].append({"name": "MY_API_TOKEN", "value": "abc"}),
}


@pytest.mark.parametrize("where", LITERAL_SECRETS)
def test_the_secret_check_bites(values, where):
    LITERAL_SECRETS[where](values)
    found = list(literal_secrets(values))
    assert any(where in f for f in found), found


def test_a_connection_in_env_is_a_literal_secret(values):
    values["env"].append({"name": "AIRFLOW_CONN_X", "value": '{"conn_type": "aws"}'})
    assert list(literal_secrets(values)) == ["env[3].value: literal value for 'AIRFLOW_CONN_X'"]


def test_every_secret_named_is_created_in_the_readme(values):
    names = set()

    def collect(node: object) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                if isinstance(child, str) and key.lower().endswith("secretname"):
                    names.add(child)
                collect(child)
        elif isinstance(node, list):
            for child in node:
                collect(child)

    collect(values)
    created = set(re.findall(r"create secret generic (\S+)", README.read_text()))
    assert names and names == created, (names, created)


def test_references_are_not_secrets():
    references = {
        "fernetKeySecretName": "keys",
        "secret": [{"envName": "AIRFLOW_CONN_S3", "secretName": "conn", "secretKey": "connection"}],
        "config": {
            "core": {"simple_auth_manager_passwords_file": "/x/passwords.json"},
            "database": {"sql_alchemy_conn_cmd": "cat /run/db-url"},
            "logging": {"remote_log_conn_id": "freshcast_s3"},
        },
        "env": [{"name": "FRESHCAST_STORAGE_CONN_ID", "value": "freshcast_s3"}],
        "createUserJob": {"defaultUser": {"password": ""}},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
    }
    assert list(literal_secrets(references)) == []


# --- what freshcast needs ----------------------------------------------------------------------


def test_the_executor(values):
    executors = values["executor"].split(",")
    assert set(executors) <= EXECUTORS, executors


def test_the_default_training_queue_is_served(values):
    # Queues route tasks only under Celery: the first executor listed is every task's default.
    if values["executor"].split(",")[0] != "CeleryExecutor":
        pytest.skip("tasks run under KubernetesExecutor, which ignores queues")
    training_queue = PipelineSpec.model_fields["training_queue"].default
    queues = served_queues(values)
    assert training_queue in queues, (training_queue, queues)
    assert "default" in queues  # every other task


def test_the_queue_check_bites(values):
    values["workers"]["celery"]["sets"] = []
    assert PipelineSpec.model_fields["training_queue"].default not in served_queues(values)


def test_artifacts_and_logs_on_object_storage(values):
    root = env_value(values, "FRESHCAST_ARTIFACT_ROOT")
    assert root and OBJECT_STORE.match(root), root
    logging = values["config"]["logging"]
    assert logging["remote_logging"] == "True"
    assert OBJECT_STORE.match(logging["remote_base_log_folder"])
    assert logging["remote_log_conn_id"] == env_value(values, "FRESHCAST_STORAGE_CONN_ID")
    assert env_value(values, "FRESHCAST_PIPELINES_DIR")


def test_the_airflow_3_components(values):
    assert values["dagProcessor"]["enabled"] is True
    assert values["scheduler"]["replicas"] == 2
    assert values["dags"]["gitSync"]["enabled"] is False
    assert int(values["config"]["dag_processor"]["parsing_processes"]) >= 2
    core = values["config"]["core"]
    assert core["auth_manager"].endswith(".SimpleAuthManager")


def test_the_pools_are_created(values):
    script = "\n".join(values["migrateDatabaseJob"]["args"])
    assert re.search(r"^airflow db migrate$", script, re.MULTILINE)
    assert re.search(r'^airflow pools set training \d+ "', script, re.MULTILINE)
    assert re.search(r'^airflow pools set registry 1 "', script, re.MULTILINE)
