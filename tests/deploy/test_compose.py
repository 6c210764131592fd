"""docker-compose.yaml, the Dockerfile and `make env`, checked without a Docker engine: the file
parses, matches the compose specification's JSON schema, mounts what each service needs,
has a healthcheck on every service, publishes nothing beyond 127.0.0.1 and holds no secret."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from importlib import resources

import pytest
import yaml

from freshcast import deploy
from tests.conftest import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yaml"
CODE = {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include"}
ARTIFACTS = "freshcast-artifacts:/opt/airflow/artifacts"
# Services whose processes run Airflow tasks (Celery workers) or task code (triggers).
TASK_SERVICES = ("airflow-worker", "airflow-triggerer")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$|BASIC_AUTH", re.IGNORECASE)
REFERENCE = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*(:?[-?][^}]*)?\}$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # resolves the anchors and `<<` merges


def test_matches_the_compose_specification_schema(compose):
    import jsonschema

    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_the_official_shape(compose):
    services = compose["services"]
    for name in (
        "postgres",
        "redis",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "airflow-init",
        "flower",
        "minio",
    ):
        assert name in services, name
    assert services["flower"]["profiles"] == ["flower"]
    assert services["minio"]["profiles"] == ["s3"]
    worker = services["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker  # so --scale works
    assert worker["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    assert "celery worker" in worker["command"] and "--queues" in worker["command"]
    env = worker["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].endswith("@redis:6379/0")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
    assert (
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    )
    init = services["airflow-init"]["command"][-1]
    assert "airflow db migrate" in init and "pools set training" in init
    assert "pools set registry 1" in init  # promote and rollback, one at a time
    assert "AIRFLOW_ADMIN_PASSWORD" in init  # the admin's password comes from .env


def test_every_service_has_a_healthcheck(compose):
    missing = [
        n for n, s in compose["services"].items() if not s.get("healthcheck", {}).get("test")
    ]
    assert missing == []


def test_nothing_is_published_beyond_loopback(compose):
    published = []
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                published.append((name, port.get("host_ip")))
            else:
                published.append(
                    (name, str(port).split(":")[0] if str(port).count(":") == 2 else None)
                )
    assert published, "the api-server must be published"
    assert all(host == "127.0.0.1" for _, host in published), published
    assert ("airflow-apiserver", "127.0.0.1") in published


def test_task_services_mount_the_code_and_the_artifact_volume(compose):
    for name, service in compose["services"].items():
        if not name.startswith("airflow-"):
            continue
        targets = {v.split(":")[1] for v in service["volumes"]}
        assert CODE <= targets, name  # every Airflow service parses the same DAGs
    for name in TASK_SERVICES:
        assert ARTIFACTS in compose["services"][name]["volumes"], name
    # The UI plugin's pages read the same artifacts, and only read them.
    assert f"{ARTIFACTS}:ro" in compose["services"]["airflow-apiserver"]["volumes"]
    assert "freshcast-artifacts" in compose["volumes"]
    assert compose["services"]["airflow-worker"]["environment"]["FRESHCAST_ARTIFACT_ROOT"].endswith(
        "/opt/airflow/artifacts}"
    )


def _settings(compose):
    """Every environment value and command of every service, with where it is."""
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            yield f"{name}.environment.{key}", key, str(value)
        command = service.get("command")
        text = " ".join(command) if isinstance(command, list) else str(command or "")
        yield f"{name}.command", "", text


def test_no_secret_has_a_literal_value(compose):
    for where, key, value in _settings(compose):
        if key and SECRET_NAME.search(key) and not key.endswith("_FILE"):  # a path, not a secret
            assert REFERENCE.match(value), f"{where} = {value!r} is not a ${{VAR}} reference"
        # Credentials inside URLs: user:password@host must take the password from a variable.
        for password in re.findall(r"://[^:/@\s]*:(\$\{[^}]*\}|[^@\s]+)@", value):
            assert REFERENCE.match(password), f"{where} has a literal password in a URL"
        for auth in re.findall(r"--basic-auth\s+\"?[^:\s]+:(\$\{[^}]*\}|[^\"\s]+)", value):
            assert REFERENCE.match(auth), f"{where} has a literal basic-auth password"
        # Airflow connections as JSON: their password fields too.
        for password in re.findall(r'"password":\s*"([^"]*)"', value):
            assert REFERENCE.match(password), f"{where} has a literal connection password"


def test_every_required_variable_comes_from_make_env(compose, tmp_path):
    required = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?", COMPOSE.read_text()))
    env_file = tmp_path / ".env"
    assert deploy.write_env(env_file, uid=1000)
    written = dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if not line.startswith("#")
    )
    assert required <= set(written), required - set(written)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert written["AIRFLOW_UID"] == "1000"
    # Fresh random values each time, and a second `make env` keeps the first file.
    other = tmp_path / "other.env"
    deploy.write_env(other, uid=1000)
    again = dict(line.split("=", 1) for line in other.read_text().splitlines() if "=" in line)
    for name in deploy.SECRETS:
        assert len(written[name]) >= 24 and written[name] != again[name], name
    before = env_file.read_text()
    assert deploy.write_env(env_file) is False and env_file.read_text() == before


def test_env_file_is_never_committed():
    assert ".env" in (PROJECT_ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
    tracked = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "ls-files", ".env"], capture_output=True, text=True
    )
    assert tracked.stdout.strip() == ""


def test_dockerfile_extends_the_pinned_official_image():
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    pinned = re.search(
        r"^apache-airflow==(\S+)$", (PROJECT_ROOT / "requirements.txt").read_text(), re.M
    )
    assert f"ARG AIRFLOW_VERSION={pinned.group(1)}" in dockerfile
    assert "FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}" in dockerfile
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in dockerfile
    assert "-r /tmp/freshcast/requirements-distributed.txt" in dockerfile
    distributed = (PROJECT_ROOT / "requirements-distributed.txt").read_text()
    assert "-r requirements.txt" in distributed
    for package in ("apache-airflow-providers-celery", "apache-airflow-providers-postgres", "s3fs"):
        assert re.search(rf"^{package}==\S+$", distributed, re.M), package


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="needs Docker with the compose plugin (CI has neither)",
)
def test_docker_compose_config_accepts_it(tmp_path):
    env_file = tmp_path / ".env"
    deploy.write_env(env_file)
    result = subprocess.run(
        ["docker", "compose", "--env-file", str(env_file), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_init_creates_the_bucket_of_an_s3_artifact_root(compose, s3_endpoint, monkeypatch):
    """The init service's bucket step, run as compose would run it, against a real S3 protocol
    server on loopback, with the MinIO connection that compose defines (its endpoint moved)."""
    import boto3

    init = compose["services"]["airflow-init"]["command"][-1]
    snippet = re.search(r"python -c '\n(.*?)\n' && break", init, re.DOTALL).group(1)
    template = compose["services"]["airflow-worker"]["environment"]["AIRFLOW_CONN_FRESHCAST_MINIO"]
    connection = json.loads(
        template.replace("${MINIO_ROOT_USER:?run make env}", "freshcast")
        .replace("${MINIO_ROOT_PASSWORD:?run make env}", "not-a-real-secret")
        .replace("http://minio:9000", s3_endpoint)
    )
    env = {
        "AIRFLOW_CONN_FRESHCAST_MINIO": json.dumps(connection),
        "FRESHCAST_STORAGE_CONN_ID": "freshcast_minio",
        "FRESHCAST_ARTIFACT_ROOT": "s3://freshcast-init-test/artifacts",
    }
    for _ in range(2):  # a second `up` finds the bucket there
        done = subprocess.run(
            [sys.executable, "-c", snippet],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="freshcast",
        aws_secret_access_key="not-a-real-secret",
        region_name="us-east-1",
    )
    assert "freshcast-init-test" in {b["Name"] for b in client.list_buckets()["Buckets"]}
