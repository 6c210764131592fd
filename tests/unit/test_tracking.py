"""MLflow tracking against a real tracking server on loopback (`mlflow server`, SQLite store,
artifacts proxied into a temporary folder): what a training run logs, read back through
MlflowClient; idempotent retries; the champion alias across promotions and a rollback."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from freshcast import tracking

ROOT = Path(__file__).resolve().parents[2]
# The server's pages and jobs are not needed; its job runner also wants `huey`, not installed.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def _require_mlflow() -> None:
    if importlib.util.find_spec("mlflow") is None:
        message = "mlflow is not installed (make install-dev installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    """The URI of a fresh tracking server, stopped after the module."""
    _require_mlflow()
    home = tmp_path_factory.mktemp("mlflow")
    uri = f"http://127.0.0.1:{_free_port()}"
    log = home / "server.log"
    command = [
        *(sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"),
        *("--port", uri.rsplit(":", 1)[1], "--workers", "1"),
        *("--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}"),
        *("--artifacts-destination", str(home / "artifacts")),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **SERVER_ENV},
            start_new_session=True,  # its own process group: uvicorn runs in a child
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def client(server):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=server, registry_uri=server)


def report_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "report"
    (folder / "plots").mkdir(parents=True)
    (folder / "index.html").write_text("<h1>demo</h1>")
    (folder / "plots" / "forecast.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(16))
    return folder


def bundle_dir(tmp_path: Path, version: int) -> Path:
    folder = tmp_path / f"v{version:04d}"
    folder.mkdir()
    (folder / "model.keras").write_bytes(f"model {version}".encode())
    (folder / "bundle.json").write_text(json.dumps({"version": version}))
    return folder


def training_run(uri, tmp_path, *, pipeline, run_id, version=None, **overrides):
    """log_training_run with a realistic two-member run; `version`: the bundle it promoted."""
    kwargs = {
        "uri": uri,
        "pipeline": pipeline,
        "run_id": run_id,
        "params": {
            "metric": "mae",
            "window": {"timesteps": 24, "horizon": 6},
            "models": [{"name": "lstm", "units": 32}, {"name": "gru", "units": 16}],
            "note": "x" * 7000,
        },
        "histories": {
            "lstm": {"loss": [1.0, 0.5, 0.25], "val_loss": [1.1, None, 0.3]},
            "gru": {"loss": [2.0, 1.0], "val_loss": [2.1, 1.2]},
        },
        "leaderboard": [
            {
                **{"rank": 1, "name": "lstm", "kind": "model", "mae": 0.5, "rmse": 0.7},
                **{"mape": None, "smape": 9.5, "mase": 0.8, "mase_seasonal": 0.9},
                **{"mae_by_step": [0.4, 0.6], "intervals": {"coverage": 0.8}},
            },
            {"rank": 2, "name": "gru", "kind": "model", "mae": 0.6, "rmse": float("nan")},
            {"rank": 3, "name": "persistence", "kind": "baseline", "mae": 1.5, "mase": None},
        ],
        "metric": "mae",
        "report_dir": report_dir(tmp_path),
        "decision": {"promote": version is not None, "metric": "mae", "reasons": ["promote"]},
        "promoted": None,
    }
    if version is not None:
        folder = bundle_dir(tmp_path, version)
        kwargs["promoted"] = {"version": version, "bundle_dir": folder, "model": "lstm"}
    return tracking.log_training_run(**{**kwargs, **overrides})


def versions(client, pipeline):
    return client.search_model_versions(f"name = '{tracking.model_name(pipeline)}'")


def champion(client, pipeline) -> str:
    return client.get_model_version_by_alias(tracking.model_name(pipeline), "champion").version


def test_a_training_run_is_logged_and_its_bundle_registered(server, client, tmp_path):
    result = training_run(server, tmp_path / "a", pipeline="demo", run_id="manual__1", version=1)

    run = client.get_run(result["mlflow_run_id"])
    assert run.info.experiment_id == result["experiment_id"]
    assert client.get_experiment(result["experiment_id"]).name == "freshcast/demo"
    assert run.info.run_name == "manual__1" and run.info.status == "FINISHED"
    params = run.data.params
    assert params["metric"] == "mae" and params["window.timesteps"] == "24"
    assert params["models"].startswith("[{'name': 'lstm'")
    assert len(params["note"]) == 6000  # cut to MLflow's limit
    tags = run.data.tags
    assert tags["freshcast.run_id"] == "manual__1" and tags["freshcast.pipeline"] == "demo"
    assert tags["freshcast.promote"] == "true" and tags["freshcast.version"] == "1"

    def history(key):
        points = client.get_metric_history(run.info.run_id, key)
        return sorted((m.step, m.value) for m in points)

    assert history("lstm.loss") == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert history("lstm.val_loss") == [(0, 1.1), (2, 0.3)]  # the None epoch is skipped
    assert history("gru.val_loss") == [(0, 2.1), (1, 1.2)]
    metrics = run.data.metrics
    assert metrics["lstm.mae"] == 0.5 and metrics["lstm.mase_seasonal"] == 0.9
    assert metrics["persistence.mae"] == 1.5 and metrics["best.mae"] == 0.5
    for absent in ("lstm.mape", "gru.rmse", "persistence.mase", "lstm.rank", "lstm.mae_by_step"):
        assert absent not in metrics

    def listed(path):
        return sorted(f.path for f in client.list_artifacts(run.info.run_id, path))

    assert listed("report") == ["report/index.html", "report/plots"]
    assert listed("report/plots") == ["report/plots/forecast.png"]
    assert listed("bundle") == ["bundle/bundle.json", "bundle/model.keras"]
    decision = client.download_artifacts(run.info.run_id, "gate/decision.json", str(tmp_path))
    assert json.loads(Path(decision).read_text())["promote"] is True

    (registered,) = versions(client, "demo")
    assert registered.version == result["model_version"]
    assert registered.run_id == run.info.run_id and registered.source.endswith("/bundle")
    assert registered.tags["freshcast.version"] == "1"
    assert registered.tags["freshcast.run_id"] == "manual__1"
    assert registered.tags["freshcast.model"] == "lstm"
    assert champion(client, "demo") == result["model_version"]

    again = training_run(server, tmp_path / "b", pipeline="demo", run_id="manual__1", version=1)
    assert again == result
    assert len(client.search_runs([result["experiment_id"]])) == 1
    assert len(versions(client, "demo")) == 1


def test_the_alias_follows_promotions_and_rollbacks(server, client, tmp_path):
    first = training_run(server, tmp_path / "1", pipeline="roll", run_id="r1", version=1)
    second = training_run(server, tmp_path / "2", pipeline="roll", run_id="r2", version=2)
    assert second["model_version"] != first["model_version"]
    assert champion(client, "roll") == second["model_version"]

    # A retry of the older run keeps the alias on the newer promotion.
    training_run(server, tmp_path / "1b", pipeline="roll", run_id="r1", version=1)
    assert champion(client, "roll") == second["model_version"]
    assert len(versions(client, "roll")) == 2

    assert tracking.set_champion(uri=server, pipeline="roll", version=1) == first["model_version"]
    assert champion(client, "roll") == first["model_version"]
    assert tracking.set_champion(uri=server, pipeline="roll", version=9) is None
    assert tracking.set_champion(uri=server, pipeline="never_trained", version=1) is None


def test_a_refused_run_registers_nothing(server, client, tmp_path):
    result = training_run(server, tmp_path, pipeline="refused", run_id="r1", report_dir=None)
    assert result["model_version"] is None
    run = client.get_run(result["mlflow_run_id"])
    assert run.data.tags["freshcast.promote"] == "false"
    assert "freshcast.version" not in run.data.tags
    assert sorted(f.path for f in client.list_artifacts(run.info.run_id)) == ["gate"]
    assert client.search_registered_models(f"name = '{tracking.model_name('refused')}'") == []


def test_an_unreachable_server_raises_naming_it(tmp_path, monkeypatch):
    _require_mlflow()
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(MlflowException, match=uri):
        training_run(uri, tmp_path, pipeline="demo", run_id="r1")


def test_importing_the_module_does_not_import_mlflow():
    code = "import sys, freshcast.tracking; print('mlflow' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "False"


def test_tracking_uri_prefers_the_spec_then_the_environment(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri() is None
    assert tracking.tracking_uri(None) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert tracking.tracking_uri() == "http://env:5000"
    assert tracking.tracking_uri("http://spec:5000") == "http://spec:5000"


@pytest.mark.slow
def test_the_pipelines_report_and_rollback_steps_log_to_mlflow(
    server, client, tmp_path, monkeypatch
):
    """The real steps with MLFLOW_TRACKING_URI set: a training run that promotes logs its
    losses, leaderboard and report and registers v1 as the champion; a refused run registers
    nothing; a rollback moves the alias."""
    from freshcast import steps
    from tests.helpers import add_partition, serving_spec, train_run

    monkeypatch.setenv(tracking.URI_ENV, server)
    spec_file, landing = serving_spec(tmp_path, monkeypatch, name="tracked")
    first = train_run(spec_file, "run1")
    assert first["promoted"]["version"] == 1
    logged = first["report"]["mlflow"]
    run = client.get_run(logged["mlflow_run_id"])
    assert run.data.tags[tracking.RUN_TAG] == "run1"
    assert "gru.mae" in run.data.metrics and "persistence.mae" in run.data.metrics
    losses = client.get_metric_history(logged["mlflow_run_id"], "gru.loss")
    assert len(losses) >= 2 and [m.step for m in losses] == sorted(m.step for m in losses)
    listed = {a.path for a in client.list_artifacts(logged["mlflow_run_id"], "report")}
    assert "report/index.html" in listed
    assert champion(client, "tracked") == logged["model_version"]

    add_partition(landing, "part-001.csv", slice(200, 240))
    second = train_run(spec_file, "run2", force=True)
    if second.get("promoted"):
        assert champion(client, "tracked") == second["report"]["mlflow"]["model_version"]
        steps.serving.rollback(spec_file, 1, run_id="rb1", reason="test")
        assert champion(client, "tracked") == logged["model_version"]
    else:  # refused: nothing registered, the alias stays on v1
        assert len(versions(client, "tracked")) == 1
        assert champion(client, "tracked") == logged["model_version"]
