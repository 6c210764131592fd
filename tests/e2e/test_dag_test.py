"""The whole training DAG through Airflow's `dag.test()` on a tiny synthetic series."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import project_dagbag

pytestmark = pytest.mark.slow

STEPS = ("ingest", "validate", "split_scale", "window", "evaluate", "report")


def run_dag(conf: dict, dag_id: str = "train_tiny"):
    bag = project_dagbag()
    assert bag.import_errors == {}
    return bag.dags[dag_id].test(logical_date=None, run_conf=conf)


def only_run_dir(artifacts: Path) -> Path:
    runs = list((artifacts / "tiny" / "runs").iterdir())
    assert len(runs) == 1
    return runs[0]


def states(dag_run) -> dict[tuple[str, int], str]:
    return {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}


def test_dag_test_trains_evaluates_and_reports(airflow_db, tiny):
    dag_run = run_dag({"epochs": 1})
    assert dag_run.state == "success", states(dag_run)
    run = only_run_dir(tiny["artifacts"])
    for step in STEPS:
        manifest = json.loads((run / step / "manifest.json").read_text())
        assert manifest["step"] == step
        for entry in manifest["outputs"].values():
            assert (run / step / entry["path"]).is_file()  # relative to the step folder
    for model in ("lstm", "gru"):
        history = json.loads((run / "train" / model / "history.json").read_text())
        assert len(history["loss"]) == 1  # the conf's epochs override the spec's 2
        assert (run / "train" / model / "model.keras").stat().st_size > 0
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    assert set(metrics["scores"]) == {"lstm", "gru", "persistence", "seasonal_naive_7", "ridge"}
    assert metrics["horizon"] == 2 and metrics["mase_scale"] > 0
    board = json.loads((run / "evaluate" / "leaderboard.json").read_text())
    mase = [row["mase"] for row in board]
    assert mase == sorted(mase)
    # The weekly sine makes the seasonal baseline beat persistence on this series.
    scores = metrics["scores"]
    assert scores["seasonal_naive_7"]["mae"] < scores["persistence"]["mae"]
    html = (run / "report" / "index.html").read_text()
    assert all(row["name"] in html for row in board)


def test_conf_selects_models_and_skips_the_rest(airflow_db, tiny):
    dag_run = run_dag({"epochs": 1, "models": ["gru"]})
    assert dag_run.state == "success"
    got = states(dag_run)
    assert got[("train", 0)] == "skipped"  # lstm
    assert got[("train", 1)] == "success"  # gru
    assert got[("evaluate", -1)] == "success"
    board = json.loads(
        (only_run_dir(tiny["artifacts"]) / "evaluate" / "leaderboard.json").read_text()
    )
    assert {row["name"] for row in board if row["kind"] == "model"} == {"gru"}


def test_wrong_conf_is_refused(airflow_db, tiny):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="epochs"):
        run_dag({"epochs": "many"})


def test_an_unknown_conf_key_fails_the_run_at_once(airflow_db, tiny):
    dag_run = run_dag({"epoch": 2})  # a typo of epochs: Airflow itself keeps it silently
    assert dag_run.state == "failed"
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert tis["ingest"].state == "failed" and tis["ingest"].try_number == 1  # not retried
    assert not (tiny["artifacts"] / "tiny" / "runs").exists()  # nothing was read or trained


def test_bad_data_fails_validate_at_once_and_leaves_nothing_behind(airflow_db, tiny):
    csv = tiny["pipelines"] / "tiny.csv"
    lines = csv.read_text().splitlines()
    lines[50] = lines[50].split(",")[0] + ",not-a-number,5.0"
    csv.write_text("\n".join(lines) + "\n")
    dag_run = run_dag({"epochs": 1})
    assert dag_run.state == "failed"
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert tis["ingest"].state == "success"
    assert tis["validate"].state == "failed"
    assert tis["validate"].try_number == 1  # bad input is not retried
    said = tis["validate"].xcom_pull(task_ids="validate", key="reason")
    assert said.startswith("DataValidationError: ") and "not-a-number" in said  # for the note
    assert tis["train"].state == "upstream_failed"
    run = only_run_dir(tiny["artifacts"])
    assert not (run / "validate").exists()  # a failed step leaves no half-written folder
    assert not (run / "split_scale").exists()


def test_retraining_from_a_landing_folder_gates_skips_forecasts_and_rolls_back(
    airflow_db, tmp_path, monkeypatch
):
    """The issue's story through the real DAGs: a first run that loses to the baselines, a
    first champion, a skipped run on unchanged data, new partitions that promote a better
    model, its forecast, and a rollback that the next forecast follows."""
    from freshcast import artifacts
    from freshcast.registry import Registry
    from tests.helpers import LEARNING_MODELS, lagged_series, write_tiny_pipeline

    pipelines, landing = tmp_path / "pipelines", tmp_path / "pipelines" / "landing"
    landing.mkdir(parents=True)
    data = lagged_series(240)
    data.iloc[:200].to_csv(landing / "part-000.csv", index=False)
    write_tiny_pipeline(pipelines, source={"path": "landing/"}, models=LEARNING_MODELS)
    monkeypatch.setenv("FRESHCAST_PIPELINES_DIR", str(pipelines))
    monkeypatch.setenv("FRESHCAST_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    registry = Registry("tiny")

    # 1. Two epochs on the first partition: they beat the baselines and become v1.
    first = run_dag({"epochs": 2})
    assert first.state == "success" and states(first)[("promote", -1)] == "success"
    assert registry.champion()["version"] == 1
    assert registry.bundle(1)["lineage"]["compared_to"] is None

    # 2. Nothing changed: the run succeeds with training and evaluation visibly skipped.
    second = run_dag({})
    got = states(second)
    assert second.state == "success" and got[("data_changed", -1)] == "success"
    skipped = ("validate", "split_scale", "window", "evaluate", "gate", "promote", "report")
    assert all(got[(t, -1)] == "skipped" for t in skipped), got
    assert {s for (t, _), s in got.items() if t == "train"} == {"skipped"}

    # 3. Forced on the same data: the same model again ties with the champion, so the gate
    # refuses; the report still runs and the champion stays.
    third = run_dag({"epochs": 2, "force": True})
    got = states(third)
    assert third.state == "success" and got[("gate", -1)] == "success"
    assert got[("promote", -1)] == "skipped" and got[("report", -1)] == "success"
    assert registry.champion()["version"] == 1
    assert [e["kind"] for e in registry.history()] == ["promoted", "refused"]
    assert "the champion stays" in " ".join(registry.history()[-1]["decision"]["reasons"])

    # 4. New partitions land; the champion is re-scored on the new test window.
    data.iloc[200:].to_csv(landing / "part-001.csv", index=False)
    fourth = run_dag({})
    assert fourth.state == "success"
    run_dir = artifacts.run_dir("tiny", fourth.run_id)
    decision = json.loads((run_dir / "gate" / "decision.json").read_text())
    scores = decision["scores"]
    best, champion = scores[decision["candidate"]]["mase"], scores["champion_v1"]["mase"]
    naive = min(scores["persistence"]["mase"], scores["seasonal_naive_7"]["mase"])
    assert decision["promote"] == (best < champion and best < naive)
    assert decision["promote"], scores  # 15 epochs beat 2 by far on this series
    assert registry.champion()["version"] == 2
    assert registry.bundle(2)["lineage"]["compared_to"] == 1

    # 5. The forecast DAG publishes with the champion.
    forecast = run_dag({}, "forecast_tiny")
    assert forecast.state == "success", states(forecast)
    runs = tmp_path / "artifacts" / "tiny" / "forecasts" / "runs"
    (made,) = list(runs.iterdir())
    import pandas as pd

    published = pd.read_csv(made / "forecast" / "forecast.csv")
    assert published["step"].tolist() == [1, 2]
    assert set(published["model_version"]) == {2} and set(published["run_id"]) == {forecast.run_id}
    assert (made / "score" / "index.html").exists()

    # 6. Rollback to v1 is one DAG run with the version as conf, and is recorded.
    rolled = run_dag({"version": 1, "reason": "v2 drifts"}, "rollback_tiny")
    assert rolled.state == "success"
    assert registry.champion()["version"] == 1
    event = registry.history()[-1]
    assert (event["kind"], event["from_version"], event["reason"]) == (
        "rolled_back",
        2,
        "v2 drifts",
    )
    again = run_dag({}, "forecast_tiny")
    assert again.state == "success"
    from freshcast.forecasts import read_history

    history = read_history(tmp_path / "artifacts" / "tiny" / "forecasts" / "history.parquet")
    assert history.groupby("run_id")["model_version"].first().sort_values().tolist() == [1, 2]

    # An unknown version fails the rollback and leaves the champion alone.
    bad = run_dag({"version": 9}, "rollback_tiny")
    assert bad.state == "failed" and registry.champion()["version"] == 1


def test_the_dags_keep_their_artifacts_in_s3_through_an_airflow_connection(
    airflow_db, tiny, s3_root, tmp_path, monkeypatch
):
    """FRESHCAST_ARTIFACT_ROOT=s3://...: the tasks reach the store through ObjectStoragePath
    with the credentials and endpoint of an Airflow connection (none in the environment)."""
    import os

    import boto3

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name)
    connection = {
        "conn_type": "aws",
        "login": key,
        "password": secret,
        "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_FRESHCAST_S3", json.dumps(connection))
    monkeypatch.setenv("FRESHCAST_STORAGE_CONN_ID", "freshcast_s3")
    monkeypatch.setenv("FRESHCAST_ARTIFACT_ROOT", s3_root)
    monkeypatch.setenv("FRESHCAST_CACHE_DIR", str(tmp_path / "cache"))

    dag_run = run_dag({"epochs": 1})
    assert dag_run.state == "success", states(dag_run)
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret
    )
    bucket, prefix = s3_root.removeprefix("s3://").split("/", 1)
    keys = {
        o["Key"].removeprefix(f"{prefix}/tiny/")
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    }
    from freshcast.artifacts import safe_run_id

    run = f"runs/{safe_run_id(dag_run.run_id)}"
    for step in (*STEPS, "train/lstm", "train/gru", "gate"):
        assert f"{run}/{step}/manifest.json" in keys, sorted(keys)
    assert any(k.startswith("registry/history/") for k in keys)  # the gate's decision
    ingest = dag_run.get_task_instance("ingest").xcom_pull(task_ids="ingest")
    assert ingest["run_dir"] == f"{s3_root}/tiny/{run}"  # XCom names the store, not a disk
