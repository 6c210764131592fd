"""The UI pages' data and HTML, over real run folders made by the steps (no Airflow): what each
page shows, that nothing in a URL reaches outside the artifact store, that every string is
escaped, and that the pages read an `s3://` store as they read a folder."""

from __future__ import annotations

import re

import pytest

from freshcast import artifacts, pages, steps, views
from tests.helpers import add_partition, promote, serving_spec, train_run

pytestmark = pytest.mark.slow

LINKS = views.Links(root="/airflow", plugin="/airflow/freshcast")


def airflow_runs(*run_ids: str, dag_id: str = "train_tiny", state: str = "success") -> list:
    """What the plugin passes in for these runs (newest first)."""
    return [
        {"dag_id": dag_id, "run_id": r, "state": state, "run_type": "manual", "note": None}
        for r in run_ids
    ]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny pipeline after two training runs (v1 promoted; run2 decided on new data), one
    forecast made before the actuals and one after them."""
    tmp = tmp_path_factory.mktemp("served")
    with pytest.MonkeyPatch.context() as mp:
        spec_file, landing = serving_spec(tmp, mp, unit="kW")
        mp.setenv("FRESHCAST_PIPELINES_DIR", str(spec_file.parent))
        first = train_run(spec_file, "run1")
        made = steps.forecasting.forecast(spec_file, run_id="f1", cutoff=None)
        steps.forecasting.score_forecasts(made["forecast_dir"], run_id="f1")
        add_partition(landing, "part-001.csv", slice(200, 240))
        second = train_run(spec_file, "run2")
        made = steps.forecasting.forecast(spec_file, run_id="f2", cutoff=None)
        steps.forecasting.score_forecasts(made["forecast_dir"], run_id="f2")
        spec = pages.pipeline("tiny")
        airflow = {
            "train_runs": airflow_runs("run2", "run1"),
            "forecast_runs": airflow_runs("f2", "f1", dag_id="forecast_tiny"),
            "next_run": "2024-09-01T00:00:00+00:00",
            "paused": False,
        }
        yield {"spec": spec, "airflow": airflow, "first": first, "second": second, "tmp": tmp}


def test_the_overview_says_champion_last_run_next_run_forecast_and_live_accuracy(served):
    row = pages.overview_row(served["spec"], served["airflow"])
    champion = row["champion"]
    assert champion["model"] == "gru" and champion["unit"] == "kW"
    assert champion["version"] == (2 if served["second"]["promote"] else 1)
    assert row["last_run"]["run_id"] == "run2"
    verdict = row["last_run"]["outcome"]
    assert verdict.startswith(
        "gru promoted to v2" if served["second"]["promote"] else "champion v1"
    )
    assert "kW" not in verdict  # the metric is MASE, a ratio: no unit on it
    made = row["forecast"]
    assert made["run_id"] == "f2" and made["version"] == champion["version"]
    assert [r["step"] for r in made["rows"]] == [1, 2]
    assert made["rows"][0]["time"].startswith("2024-08-28")  # the day after the last row
    # f1 forecast 2024-07-19 and -20, whose actuals arrived with the second partition.
    assert [a["model_version"] for a in made["accuracy"]] == [1]
    assert made["accuracy"][0]["scored_steps"] == 2
    # The spec's default intervals (80% and 95%) are served with every forecast step.
    assert made["levels"] == ["80", "95"]
    for r in made["rows"]:
        assert r["lower_95"] < r["lower_80"] < r["forecast"] < r["upper_80"] < r["upper_95"]
    assert made["drift"] is None  # scored without a spec: no drift check

    html = views.render_overview([row], LINKS)
    assert 'href="/airflow/dags/train_tiny/plugin/freshcast-pipeline" target="_top"' in html
    assert 'href="/airflow/dags/train_tiny/runs/run2" target="_top"' in html
    assert "v1: MAE " in html and " kW over 2 forecast steps" in html
    assert "2024-09-01" in html  # the next run
    assert re.search(r"2024-08-28: \d+\.\d+ kW \(80%: \d+\.\d+ to \d+\.\d+ kW\)", html)


def test_the_pipeline_page_has_runs_over_time_registry_forecasts_and_rollback(served):
    detail = pages.pipeline_detail(served["spec"], served["airflow"])
    runs = detail["runs"]
    assert [r["run_id"] for r in runs] == ["run1", "run2"]  # oldest first
    assert set(runs[0]["scores"]) == {"gru", "persistence", "seasonal_naive_7", "ridge"}
    assert runs[0]["champion_version"] is None and runs[1]["champion_version"] == 1
    # Each run's candidate with its intervals' test coverage and width; no backtest in the spec.
    assert set(runs[0]["intervals"]) == {"80", "95"} and runs[0]["basis"] == "test"
    assert 0 <= runs[0]["intervals"]["80"]["coverage"] <= 1
    assert runs[0]["backtest_mean"] is None and runs[0]["trigger"] is None
    held = _decision("run2")["scores"]["champion_v1"]["mase"]  # v1 re-scored on run2's window
    assert runs[1]["champion_score"] == pytest.approx(held)
    versions = detail["registry"]["versions"]
    assert versions[0]["version"] == 1 and versions[0]["run_id"] == "run1"
    assert versions[0]["data_end"].startswith("2024-07-18")
    kinds = [e["kind"] for e in detail["registry"]["events"]]  # newest first
    assert kinds[-1] == "promoted" and len(kinds) == 2
    table = detail["forecasts"]
    assert {r["run_id"] for r in table} == {"f1", "f2"}
    arrived = [r for r in table if r["run_id"] == "f1"]
    assert all(r["actual"] is not None for r in arrived)  # actuals beside past forecasts
    assert all(r["actual"] is None for r in table if r["run_id"] == "f2")
    assert all(set(r["bounds"]) == {"80", "95"} for r in table)  # served with every forecast

    html = views.render_pipeline(detail, LINKS, can_rollback=True, can_see_forecasts=True)
    assert "Leaderboard over runs" in html and "data:image/png;base64," in html
    assert 'href="/airflow/dags/train_tiny/runs/run1/plugin/freshcast-report"' in html
    assert "Registry: history" in html and "gru → v1" in html
    assert 'data-endpoint="/airflow/api/v2/dags/rollback_tiny/dagRuns"' in html
    assert 'src="/airflow/freshcast/files/tiny/forecast/f2/score/history.png"' in html
    assert "<th>candidate's 80% interval</th>" in html and "% covered, " in html
    assert "<th>80% interval</th><th>95% interval</th><th>actual</th>" in html
    hidden = views.render_pipeline(detail, LINKS, can_rollback=False, can_see_forecasts=False)
    assert "Roll back" not in hidden and "Forecasts (newest first)" not in hidden


def _decision(run_id):
    from freshcast.artifacts import read_json

    return read_json(
        artifacts.artifact_root() / "tiny" / "runs" / run_id / "gate" / "decision.json"
    )


def test_a_run_tab_shows_its_report_or_says_why_there_is_none(served):
    spec = served["spec"]
    train = views.render_run_page(spec, "train", {"run_id": "run1", "state": "success"}, LINKS)
    assert "Leaderboard" in train and "persistence" in train
    assert 'src="/airflow/freshcast/files/tiny/train/run1/report/forecast.png"' in train
    assert "<h2>Prediction intervals</h2>" in train and "Shaded: the 80% and 95%" in train
    assert 'href="/airflow/dags/train_tiny/runs/run1" target="_top"' in train
    forecast = views.render_run_page(spec, "forecast", {"run_id": "f2", "state": "success"}, LINKS)
    assert "Pipeline tiny, forecast run f2" in forecast and "forecast (kW)" in forecast
    assert "<th>80% lower (kW)</th><th>80% upper (kW)</th>" in forecast
    note = "trained nothing: data and spec are identical to run run2"
    skipped = views.render_run_page(
        spec, "train", {"run_id": "run3", "state": "success"}, LINKS, note=note
    )
    assert "has no report" in skipped and note in skipped


def test_only_listed_outputs_of_served_steps_are_files(served):
    spec = served["spec"]
    png = pages.served_file(spec, "train", "run1", "report", "forecast.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert pages.served_file(spec, "forecast", "f2", "score", "history.png").exists()
    for kind, run_id, step, name in [
        ("train", "run1", "evaluate", "leaderboard.csv"),  # not a served step
        ("train", "run1", "report", "manifest.json"),  # not a served suffix
        ("train", "run1", "report", "summary.json"),
        ("train", "run1", "report", "../../registry/champion.json"),
        ("train", "run1", "report", "nothing.png"),  # not listed
        ("train", "..", "report", "forecast.png"),
        ("train", "../run1", "report", "forecast.png"),
        ("train", "/etc/passwd", "report", "forecast.png"),
        ("train", "%2e%2e", "report", "forecast.png"),
        ("train", "run1/../../..", "report", "forecast.png"),
        ("rollback", "run1", "report", "forecast.png"),
        ("forecast", "f2", "report", "forecast.png"),
    ]:
        with pytest.raises(pages.NotFound):
            pages.served_file(spec, kind, run_id, step, name)


@pytest.mark.parametrize(
    "name", ["..", "../tiny", "tiny/..", "/etc/passwd", "%2F", "tiny%2F..", "", "TINY", "tiny "]
)
def test_a_pipeline_name_outside_the_loaded_specs_is_not_found(served, name):
    with pytest.raises(pages.NotFound):
        pages.pipeline(name)


@pytest.mark.parametrize("dag_id", ["train_..", "train_", "forecast_../x", "other_dag", "tiny"])
def test_a_dag_outside_the_pipelines_is_not_found(served, dag_id):
    with pytest.raises(pages.NotFound):
        pages.dag_pipeline(dag_id)


def test_a_dags_kind_is_found_from_its_id(served):
    assert [pages.dag_pipeline(d)[1] for d in pages.dag_ids(served["spec"])] == list(
        pages.RUN_KINDS
    )


def test_the_pages_read_an_s3_store_as_they_read_a_folder(tmp_path, monkeypatch, s3_root):
    """Runs written to `s3://` by one worker; the pages read them from an empty working copy."""
    spec_file, _ = serving_spec(tmp_path, monkeypatch)
    monkeypatch.setenv("FRESHCAST_PIPELINES_DIR", str(spec_file.parent))
    monkeypatch.setenv(artifacts.ARTIFACT_ROOT_ENV, s3_root)
    monkeypatch.setenv(artifacts.CACHE_DIR_ENV, str(tmp_path / "worker"))
    train_run(spec_file, "run1")
    made = steps.forecasting.forecast(spec_file, run_id="f1", cutoff=None)
    steps.forecasting.score_forecasts(made["forecast_dir"], run_id="f1")

    monkeypatch.setenv(artifacts.CACHE_DIR_ENV, str(tmp_path / "api-server"))  # nothing local
    spec = pages.pipeline("tiny")
    airflow = {
        "train_runs": airflow_runs("run1"),
        "forecast_runs": airflow_runs("f1", dag_id="forecast_tiny"),
    }
    detail = pages.pipeline_detail(spec, airflow)
    assert detail["champion"]["version"] == 1 and detail["runs"][0]["run_id"] == "run1"
    assert detail["forecast"]["run_id"] == "f1" and len(detail["forecasts"]) == 2
    png = pages.served_file(spec, "train", "run1", "report", "loss.png")
    assert png.is_relative_to(tmp_path / "api-server") and png.read_bytes()[:4] == b"\x89PNG"
    page = views.render_run_page(spec, "train", {"run_id": "run1", "state": "success"}, LINKS)
    assert "Leaderboard" in page
    # Only what the pages showed was fetched: not the run's snapshot, arrays or models.
    fetched = {p.name for p in (tmp_path / "api-server").rglob("*") if p.is_file()}
    assert not fetched & {"snapshot.parquet", "scaled.npy", "model.keras", "predictions.parquet"}


# ---------------------------------------------------------------- notes (no runs)


def test_run_notes_say_what_each_kind_of_run_did():
    assert pages.run_note(
        "train",
        {"data_changed": "success", "validate": "skipped"},
        {"data_changed": False, "data_changed.reason": "data and spec are identical to run r1"},
    ) == ("trained nothing: data and spec are identical to run r1")
    # As Airflow stores it: a short-circuit that returns False pushes no return value.
    assert pages.run_note(
        "train",
        {"data_changed": "success", "validate": "skipped", "gate": "skipped"},
        {"data_changed.reason": "data and spec are identical to run r1"},
    ) == ("trained nothing: data and spec are identical to run r1")
    refused = "champion v3 kept: candidate gru 2.31 °C vs 2.25 °C (mae)"
    assert pages.run_note("train", {"gate": "success"}, {"gate": {"verdict": refused}}) == refused
    promoted = {"promote": {"verdict": "gru promoted to v4: mae 2.17 °C"}, "gate": {"verdict": "x"}}
    assert pages.run_note("train", {}, promoted) == "gru promoted to v4: mae 2.17 °C"
    assert pages.run_note("train", {"validate": "failed", "window": "upstream_failed"}, {}) == (
        "failed at validate, window: see the task log for the error and its fix"
    )
    why = "RegistryError: champion v1 of tiny fails its check and no other version verifies"
    assert pages.run_note("forecast", {"forecast": "failed"}, {"forecast.reason": why}) == (
        f"failed at forecast: {why}"
    )
    made = {
        "version": 2,
        "unit": "°C",
        "decimals": 1,
        "forecast": {"2016-01-01T00:00:00+00:00": 6.2391, "2016-01-02T06:00:00+00:00": 7.0},
    }
    assert pages.run_note("forecast", {"forecast": "success"}, {"forecast": made}) == (
        "v2 forecast 2016-01-01: 6.24 °C, 2016-01-02 06:00: 7.00 °C"
    )
    assert pages.run_note("forecast", {"forecast": "skipped"}, {}) == (
        "forecast nothing: the pipeline has no champion yet"
    )
    rolled = {"version": 1, "from_version": 2, "model": "lstm", "reason": "v2 drifts"}
    assert pages.run_note("rollback", {"rollback": "success"}, {"rollback": rolled}) == (
        "champion v2 → v1 (lstm): v2 drifts"
    )


def test_a_run_that_healed_the_registry_says_so_in_its_note():
    made = {
        "version": 1,
        "unit": "",
        "decimals": 1,
        "forecast": {"2016-01-01T00:00:00+00:00": 6.0},
        "registry": ["champion v2 fails its check: model.keras changed", "serving v1 instead"],
    }
    assert pages.run_note("forecast", {"forecast": "success"}, {"forecast": made}) == (
        "registry: champion v2 fails its check: model.keras changed; serving v1 instead"
        " | v1 forecast 2016-01-01: 6.00"
    )
    refused = {"gate": {"verdict": "champion v1 kept", "registry": ["champion.json was missing"]}}
    assert pages.run_note("train", {"gate": "success"}, refused) == (
        "registry: champion.json was missing | champion v1 kept"
    )


@pytest.fixture
def tiny_registry(tmp_path, monkeypatch):
    """The tiny pipeline's registry, its v1 promoted by run1 (no training: a stand-in bundle)."""
    from freshcast.registry import Registry
    from tests.helpers import write_tiny_pipeline

    monkeypatch.setenv("FRESHCAST_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("FRESHCAST_PIPELINES_DIR", str(tmp_path / "pipelines"))
    write_tiny_pipeline(tmp_path / "pipelines")
    registry = Registry("tiny")
    promote(registry, tmp_path, "run1")
    return registry


def test_the_pages_show_a_registry_problem_and_the_healing_events(tiny_registry, tmp_path):
    registry = tiny_registry
    promote(registry, tmp_path, "run2")
    (registry.dir / "champion.json").unlink()
    spec = pages.pipeline("tiny")
    airflow = {"train_runs": [], "forecast_runs": [], "next_run": None, "paused": True}

    row = pages.overview_row(spec, airflow)
    assert row["champion"]["version"] == 2  # the history's champion, not "none yet"
    html = views.render_overview([row], LINKS)
    assert "registry problem: champion.json is missing; the history says v2" in html

    (registry.bundle_dir(2) / "model.keras").write_bytes(b"flipped")
    with registry.lock():
        registry.heal(run_id="scheduled__f9")  # as a forecast run does
    detail = pages.pipeline_detail(spec, airflow)
    events = detail["registry"]["events"]
    assert [e["kind"] for e in events[:2]] == ["restored", "damaged"]
    assert events[0]["what"] == "v2 → v1" and events[1]["what"] == "v2 fails its check"
    html = views.render_pipeline(detail, LINKS, can_rollback=False, can_see_forecasts=False)
    assert "scheduled__f9" in html and "runs/scheduled__f9/plugin" not in html  # not a training run


def test_the_history_shows_drift_events_and_what_started_each_decision(tiny_registry):
    registry = tiny_registry
    drift = {"version": 1, "live_mae": 2.4, "test_mae": 1.5, "ratio": 1.6, "threshold": 1.5,
             "steps": 50, "actuals_end": "2024-09-01T00:00:00+00:00",
             "reason": "v1's live MAE exceeds the drift ratio 1.5"}  # fmt: skip
    decision = {"trigger": "drift", "candidate": "gru", "reasons": ["gru does not beat ridge"]}
    with registry.lock():
        registry.record("drift", run_id="scheduled__f7", **drift)
        registry.record("refused", run_id="asset_triggered__r2", decision=decision)
    spec = pages.pipeline("tiny")
    events = pages.registry_view(spec)["events"]  # newest first
    assert [e["kind"] for e in events] == ["refused", "drift", "promoted"]
    assert events[0]["trigger"] == "drift" and events[2]["trigger"] is None
    assert events[1]["what"] == "v1 drifted: live MAE 1.60 × test MAE"
    assert events[1]["reasons"] == ["v1's live MAE exceeds the drift ratio 1.5"]

    airflow = {"train_runs": [], "forecast_runs": [], "next_run": None, "paused": False}
    html = views.render_pipeline(
        pages.pipeline_detail(spec, airflow), LINKS, can_rollback=False, can_see_forecasts=False
    )
    assert '<span class="bad">drift</span>' in html
    assert 'href="/airflow/dags/forecast_tiny/runs/scheduled__f7/plugin/freshcast-report"' in html
    assert "drift (the champion&#x27;s live error drifted past its drift ratio)" in html


def test_a_runs_candidate_is_the_decisions_or_else_the_best_model():
    scores = {
        "gru": {"kind": "model", "mae": 1.2},
        "lstm": {"kind": "ensemble", "mae": 1.1},
        "broken": {"kind": "model", "mae": None},
        "ridge": {"kind": "baseline", "mae": 0.9},
    }
    assert pages._candidate(scores, "mae", {"candidate": "gru"}) == "gru"
    assert pages._candidate(scores, "mae", None) == "lstm"  # a baseline is never the candidate
    assert pages._candidate({"ridge": scores["ridge"]}, "mae", None) is None
