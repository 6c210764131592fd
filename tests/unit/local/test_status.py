"""`make status` from plain data: the text, the champion read from the registry, and the DAG's runs
asked of the API."""

from __future__ import annotations

from typing import Any

from freshcast.local import api, commands, config, status
from freshcast.registry import Registry
from freshcast.spec import load_spec
from tests.helpers import promote, write_tiny_pipeline

RUN_ID = "manual__2024-08-27T12:45:36.582898+00:00"


HEALTHY = {
    part: {"status": "healthy"}
    for part in ("metadatabase", "scheduler", "dag_processor", "triggerer")
}


PIDS = {"api-server": 11, "scheduler": 12, "dag-processor": 13, "triggerer": 14}


def pipeline_status(**changes: Any) -> dict[str, Any]:
    return {
        "name": "seattle_weather",
        "metric": "mae",
        "unit": "°C",
        "url": "http://127.0.0.1:8080/dags/train_seattle_weather/plugin/freshcast-pipeline",
        "champion": {
            "version": 3,
            "model": "lstm",
            "score": 2.1712,
            "decimals": 1,
            "since": "2026-11-22T12:46:33+00:00",
        },
        "dag": {
            "loaded": True,
            "paused": False,
            "next_run": "2026-11-23T00:00:00Z",
            "last_run": {
                "run_id": "scheduled__2026-11-22T00:00:00+00:00",
                "state": "success",
                "run_after": "2026-11-22T00:00:00Z",
                "note": "champion v3 kept: gru mae 2.25 does not beat v3 2.17",
            },
        },
        **changes,
    }


def status_of(**changes: Any) -> dict[str, Any]:
    return {
        "url": "http://127.0.0.1:8080",
        "overview": "http://127.0.0.1:8080/plugin/forecasts",
        "pids": PIDS,
        "health": HEALTHY,
        "api": True,
        "problems": [],
        "pipelines": [pipeline_status()],
        **changes,
    }


def test_status_text_names_processes_champion_runs_and_the_page():
    assert status.format_status(status_of()) == "\n".join(
        [
            "Airflow at http://127.0.0.1:8080: up",
            "  component      pid     health",
            "  api-server      11  answering",
            "  scheduler       12    healthy",
            "  dag-processor   13    healthy",
            "  triggerer       14    healthy",
            "  metadatabase     -    healthy",
            "",
            "seattle_weather",
            "  champion:  v3 lstm, MAE 2.17 °C, since 2026-11-22 12:46 UTC",
            "  last run:  success, 2026-11-22 00:00 UTC (scheduled__2026-11-22T00:00:00+00:00)",
            "  note:      champion v3 kept: gru mae 2.25 does not beat v3 2.17",
            "  next run:  2026-11-23 00:00 UTC",
            "  page:      http://127.0.0.1:8080/dags/train_seattle_weather/plugin/freshcast-pipeline",
            "",
            "All pipelines: http://127.0.0.1:8080/plugin/forecasts",
        ]
    )


def test_status_with_airflow_down_still_shows_the_registry():
    down = status_of(pids=dict.fromkeys(PIDS), health=None, api=False)
    down["pipelines"] = [pipeline_status(dag=None)]
    assert status.format_status(down).split("\n") == [
        "Airflow at http://127.0.0.1:8080: not running (start it with `make run`)",
        "",
        "seattle_weather",
        "  champion:  v3 lstm, MAE 2.17 °C, since 2026-11-22 12:46 UTC",
    ]
    assert not status.components_up(down)


def test_status_of_a_dead_component_a_new_pipeline_and_a_broken_spec():
    half = status_of(
        pids={**PIDS, "triggerer": None},
        health={**HEALTHY, "triggerer": {"status": "unhealthy"}},
        problems=["/specs/broken.yaml: 1 problem(s) in the pipeline spec\n  field 'x': ..."],
        pipelines=[
            pipeline_status(
                name="tiny",
                metric="mase",
                unit="",
                champion=None,
                dag={"loaded": True, "paused": True, "next_run": None, "last_run": None},
            ),
            pipeline_status(name="new", dag={"loaded": False}),
        ],
    )
    text = status.format_status(half)
    assert text.startswith("Airflow at http://127.0.0.1:8080: partly up\n")
    assert "  triggerer      not running  unhealthy" in text
    assert (
        "tiny\n  champion:  none yet\n  last run:  none yet\n  next run:  none (paused)\n" in text
    )
    assert "  runs:      train_new is not loaded by Airflow yet" in text
    assert "\nnot loaded: /specs/broken.yaml: 1 problem(s) in the pipeline spec\n" in text
    assert not status.components_up(half)


def test_champion_score_is_on_the_spec_metric_and_a_ratio_has_no_unit():
    ratio = pipeline_status(metric="mase")
    ratio["champion"]["score"] = 0.96712
    text = status.format_status(status_of(pipelines=[ratio]))
    assert "  champion:  v3 lstm, MASE 0.967, since 2026-11-22 12:46 UTC" in text
    broken = pipeline_status(champion={"version": 2, "since": None, "error": "no bundle.json"})
    text = status.format_status(status_of(pipelines=[broken]))
    assert "  champion:  v2 since n/a; its bundle cannot be read: no bundle.json" in text


def champion_meta(scores: dict[str, float], shown: dict | None = None) -> dict:
    """A bundle's metadata as steps.serving.promote stores it; `shown` its {"unit",
    "decimals"} (older bundles have none)."""
    return {
        "model": {"name": "gru"},
        "metric": "mase",
        "scores": scores,
        "lineage": {"run_id": "r1"},
        **({"display": shown} if shown else {}),
    }


def test_champion_status_reads_the_registry(tmp_path):
    registry = Registry("demo", root=tmp_path / "artifacts")
    assert status.champion_status(registry, metric="mae") is None
    promote(
        registry, tmp_path, "r1", meta=champion_meta({"kind": "model", "mae": 2.5, "mase": 0.9})
    )
    found = status.champion_status(registry, metric="mae")
    assert found == {
        "version": 1,
        "model": "gru",
        "score": 2.5,
        "decimals": commands.DEFAULT_DECIMALS,
        "since": registry.champion()["since"],
    }
    (registry.bundle_dir(1) / "bundle.json").unlink()
    unreadable = status.champion_status(registry, metric="mae")
    assert unreadable["version"] == 1 and "bundle.json" in unreadable["error"]


def test_dag_status_asks_for_the_newest_run_and_the_next_tick(api_af, fake_api):
    run = {
        "dag_run_id": RUN_ID,
        "state": "failed",
        "run_after": "2024-08-27T12:45:36Z",
        "note": "trained nothing: data unchanged",
        "conf": {},
    }
    fake_api.routes[("GET", "/api/v2/dags/train_x")] = (
        200,
        {"is_paused": False, "next_dagrun_run_after": "2024-08-28T00:00:00Z"},
    )
    fake_api.routes[("GET", "/api/v2/dags/train_x/dagRuns")] = (
        200,
        {"dag_runs": [run], "total_entries": 5},
    )
    client = api.Client(api_af)
    assert status.dag_status(client, "train_x") == {
        "loaded": True,
        "paused": False,
        "next_run": "2024-08-28T00:00:00Z",
        "last_run": {
            "run_id": RUN_ID,
            "state": "failed",
            "run_after": "2024-08-27T12:45:36Z",
            "note": "trained nothing: data unchanged",
        },
    }
    assert fake_api.seen[1].query == {"order_by": ["-run_after"], "limit": ["1"], "offset": ["0"]}
    assert status.dag_status(client, "train_y") == {"loaded": False}


def test_gather_status_takes_each_loaded_spec_with_its_unit(
    api_af, fake_api, tmp_path, monkeypatch
):
    spec = load_spec(write_tiny_pipeline(tmp_path / "pipelines", unit="MW"))
    registry = Registry("tiny", root=tmp_path / "artifacts")
    shown = {"unit": "MW", "decimals": 1}
    promote(
        registry,
        tmp_path,
        "r1",
        meta=champion_meta({"kind": "model", "mae": 2.5, "mase": 0.9}, shown),
    )
    monkeypatch.setattr(status, "airflow_status", lambda af: {"pids": PIDS, "health": HEALTHY})
    fake_api.routes[("GET", "/api/v2/dags/train_tiny")] = (200, {"is_paused": True})
    fake_api.routes[("GET", "/api/v2/dags/train_tiny/dagRuns")] = (200, {"dag_runs": []})
    found = status.gather_status(
        api_af,
        specs=[spec],
        problems=[],
        registry=lambda name: registry,
        client=api.Client(api_af),
    )
    (pipeline,) = found["pipelines"]
    assert pipeline["unit"] == "MW" and pipeline["metric"] == "mase"
    assert pipeline["champion"]["score"] == 0.9 and pipeline["champion"]["decimals"] == 1
    assert pipeline["url"] == config.pipeline_url(api_af, "tiny")
    assert pipeline["dag"] == {"loaded": True, "paused": True, "next_run": None, "last_run": None}
    assert found["api"] and status.components_up(found)


def test_an_unreadable_registry_is_reported_not_raised(tmp_path):
    class Broken:
        def champion(self) -> dict:
            raise OSError("bucket unreachable")

    found = status.champion_status(Broken(), metric="mae")
    assert found == {"version": None, "since": None, "error": "bucket unreachable"}
    text = status.format_status(status_of(pipelines=[pipeline_status(champion=found)]))
    assert "  champion:  unknown, the registry cannot be read: bucket unreachable" in text


# A fake component in place of an Airflow one: like the scheduler, it starts children that sit in
# process groups of their own (as Airflow's task supervisor puts task processes) and ignore
# SIGTERM, each with a child of its own. Every process appends its pid to `pids`.
