"""The whole training DAG through Airflow's `dag.test()` on a tiny synthetic series."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

STEPS = ("ingest", "validate", "split_scale", "window", "evaluate", "report")


def run_dag(conf: dict):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags["train_tiny"].test(logical_date=None, run_conf=conf)


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
            assert Path(entry["path"]).is_file()
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
    assert tis["train"].state == "upstream_failed"
    run = only_run_dir(tiny["artifacts"])
    assert not (run / "validate").exists()  # a failed step leaves no half-written folder
    assert not (run / "split_scale").exists()
