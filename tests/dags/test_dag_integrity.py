"""DAG integrity: every DAG file imports, every DAG follows the project's conventions, and
parsing imports nothing heavy."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from datetime import timedelta

import pytest

from tests.conftest import PROJECT_ROOT
from tests.helpers import project_dagbag, write_tiny_pipeline

HEAVY = ("tensorflow", "keras", "pandas", "sklearn", "matplotlib")


def dagbag(pipelines_dir=None, monkeypatch=None):
    if pipelines_dir is not None:
        monkeypatch.setenv("FRESHCAST_PIPELINES_DIR", str(pipelines_dir))
    return project_dagbag()


@pytest.fixture(scope="module")
def bundled():
    return dagbag()


PIPELINES = ("co2_monthly", "seattle_hourly", "seattle_weather", "seattle_weekly")
ALL_DAGS = [f"{kind}_{p}" for p in PIPELINES for kind in ("train", "forecast", "rollback")]


def test_bundled_dags_import_without_errors(bundled):
    assert bundled.import_errors == {}
    assert set(ALL_DAGS) <= set(bundled.dag_ids)


@pytest.mark.parametrize("dag_id", ALL_DAGS)
def test_dag_conventions(bundled, dag_id):
    dag = bundled.dags[dag_id]
    assert dag.doc_md and dag_id in dag.doc_md
    kind_tag = {"train": "training", "forecast": "forecast", "rollback": "registry"}
    assert {"freshcast", kind_tag[dag_id.split("_")[0]]} <= set(dag.tags)
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.default_args["owner"] == "freshcast"
    # A rollback is one deliberate act: it is not retried behind the user's back.
    retries = 0 if dag_id.startswith("rollback") else 2
    for task in dag.tasks:
        assert task.retries >= retries, task.task_id
        assert task.execution_timeout is not None and task.execution_timeout <= timedelta(hours=2)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_training_dag_shape(bundled, pipeline):
    dag = bundled.dags[f"train_{pipeline}"]
    order = ["ingest", "data_changed", "validate", "split_scale", "window", "train", "evaluate"]
    order += ["gate", "promote", "report"]
    if pipeline == "seattle_hourly":  # its GRU has a search
        order += ["plan_trials", "trial", "select"]
    assert sorted(t.task_id for t in dag.tasks) == sorted(order)
    assert dag.get_task("data_changed").downstream_task_ids == {"validate"}
    assert dag.get_task("gate").downstream_task_ids == {"promote", "report"}
    assert dag.get_task("promote").downstream_task_ids == {"report"}
    assert dag.get_task("report").trigger_rule == "none_failed"  # runs when promote is skipped
    assert dag.get_task("train").pool == "training"
    assert dag.get_task("train").queue == "training"  # the spec's training_queue (default)
    assert dag.get_task("evaluate").queue == "default"
    # Registry changes go one at a time through a one-slot pool, on whatever worker.
    assert dag.get_task("promote").pool == "registry"
    assert bundled.dags[f"rollback_{pipeline}"].get_task("rollback").pool == "registry"
    # `make replay` runs a backfill, which data_changed recognises: no switch in the form.
    assert set(dag.params.keys()) == {"epochs", "models", "force"}


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_assets_link_training_rollback_and_forecasts(bundled, pipeline):
    champion = f"x-freshcast://{pipeline}/champion"
    train = bundled.dags[f"train_{pipeline}"]
    assert [a.uri for a in train.get_task("promote").outlets] == [champion]
    assert [a.uri for a in train.get_task("ingest").outlets] == [
        f"x-freshcast://{pipeline}/dataset"
    ]
    rollback = bundled.dags[f"rollback_{pipeline}"]
    assert [a.uri for a in rollback.get_task("rollback").outlets] == [champion]
    forecast = bundled.dags[f"forecast_{pipeline}"]
    assert forecast.timetable.asset_condition.uri == champion  # a new champion forecasts at once
    # Other DAGs can schedule on new forecasts.
    assert [a.uri for a in forecast.get_task("forecast").outlets] == [
        f"x-freshcast://{pipeline}/forecast"
    ]
    assert forecast.timetable.timetable.expression == "0 0 * * *"  # and @daily, the default


def test_schedules_come_from_the_specs(bundled):
    weather = bundled.dags["train_seattle_weather"].timetable
    weekly = bundled.dags["train_seattle_weekly"].timetable
    # The spec's schedule OR the pipeline's drift Asset (drift checks are on by default).
    assert weather.timetable.expression == "0 0 * * 0"  # @weekly
    assert weekly.timetable.expression == "0 0 1 * *"  # @monthly
    assert weather.asset_condition.name == "seattle_weather.drift"
    # A missed tick is not fired at unpause (see forecast_pipelines._schedule).
    assert weather.timetable.run_immediately == timedelta(0)


def test_drift_signals_retraining_and_is_optional(tmp_path, monkeypatch):
    write_tiny_pipeline(tmp_path, name="watched")  # schedule None: the drift Asset alone
    write_tiny_pipeline(tmp_path, name="unwatched", drift={"enabled": False})
    write_tiny_pipeline(tmp_path, name="timed", schedule="@daily", drift={"enabled": False})
    bag = dagbag(tmp_path, monkeypatch)
    watched = bag.dags["train_watched"]
    assert watched.timetable.asset_condition.name == "watched.drift"
    forecast = bag.dags["forecast_watched"]
    drift = forecast.get_task("drift")
    assert drift.upstream_task_ids == {"score_forecasts"}
    assert [o.name for o in drift.outlets] == ["watched.drift"]
    # Off: no drift task, and the training DAG keeps only its own schedule.
    assert "drift" not in bag.dags["forecast_unwatched"].task_ids
    assert bag.dags["train_unwatched"].schedule is None
    assert bag.dags["train_timed"].timetable.expression == "0 0 * * *"


def test_backtest_folds_are_mapped_in_the_training_pool_only_when_asked(tmp_path, monkeypatch):
    write_tiny_pipeline(tmp_path, name="folded", backtest={"folds": 3})
    write_tiny_pipeline(tmp_path, name="plain")
    bag = dagbag(tmp_path, monkeypatch)
    dag = bag.dags["train_folded"]
    backtest = dag.get_task("backtest")
    assert backtest.op_kwargs_expand_input.value == {"fold": [1, 2, 3]}
    assert backtest.pool == "training"
    assert "backtest" in dag.get_task("evaluate").upstream_task_ids
    assert "backtest" not in bag.dags["train_plain"].task_ids


def test_train_is_mapped_over_the_specs_models(bundled):
    dag = bundled.dags["train_seattle_weather"]
    members = [f"{m}-s{k}" for m in ("lstm", "gru") for k in (1, 2, 3)]  # three seeds each
    assert dag.get_task("train").op_kwargs_expand_input.value == {"member": members}
    assert "trial" not in dag.task_ids and "select" not in dag.task_ids  # no search: no tasks


def test_seeds_and_a_search_are_mapped_tasks_in_the_training_pool(bundled):
    dag = bundled.dags["train_seattle_hourly"]
    members = [f"{m}-s{k}" for m in ("lstm", "gru") for k in (1, 2, 3)]
    assert dag.get_task("train").op_kwargs_expand_input.value == {"member": members}
    trial = dag.get_task("trial")
    assert trial.op_kwargs_expand_input.value == {
        "name": ["gru-lr", "gru-t1", "gru-t2", "gru-t3", "gru-t4"]
    }
    assert trial.pool == dag.get_task("train").pool == "training"
    assert dag.get_task("select").upstream_task_ids == {"plan_trials", "trial"}
    assert dag.get_task("train").upstream_task_ids == {"select"}


def test_parsing_imports_no_heavy_module():
    """A fresh interpreter parses dags/ and must not have loaded TensorFlow, pandas or sklearn."""
    code = (
        "import sys, json\n"
        "from airflow.dag_processing.dagbag import BundleDagBag\n"
        f"dags = {str(PROJECT_ROOT / 'dags')!r}\n"
        "bag = BundleDagBag(dags, bundle_path=dags)\n"
        f"print(json.dumps({{'dags': sorted(bag.dag_ids), 'errors': bag.import_errors,"
        f" 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert "train_seattle_weather" in result["dags"]
    assert result["heavy"] == []


def test_broken_spec_is_an_import_error_and_other_pipelines_still_load(tmp_path, monkeypatch):
    write_tiny_pipeline(tmp_path, name="good")
    write_tiny_pipeline(tmp_path, name="broken", models=[{"type": "lstm", "units": [0]}])
    bag = dagbag(tmp_path, monkeypatch)
    assert "train_good" in bag.dag_ids
    assert "train_broken" not in bag.dag_ids
    assert list(bag.import_errors) == ["spec_errors.py"]  # relative to the bundle
    message = next(iter(bag.import_errors.values()))
    assert str(tmp_path / "broken.yaml") in message
    assert "models.0.units.0" in message
    assert "greater than 0" in message


def test_hostile_or_ambiguous_specs_cost_only_their_own_dags(tmp_path, monkeypatch):
    write_tiny_pipeline(tmp_path, name="good")
    laughs = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    laughs += [
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    (tmp_path / "laughs.yaml").write_text("\n".join(laughs) + "\n")  # a 1 KB billion laughs
    twin = write_tiny_pipeline(tmp_path, name="twin")
    twin.with_suffix(".yml").write_text(twin.read_text())
    bag = dagbag(tmp_path, monkeypatch)
    assert {"train_good", "forecast_good", "rollback_good"} <= set(bag.dag_ids)
    assert not any("laughs" in d or "twin" in d for d in bag.dag_ids)
    message = bag.import_errors["spec_errors.py"]
    assert len(message) < 3000  # bounded, not the expanded document
    assert "laughs.yaml" in message and "alias" in message
    assert str(tmp_path / "twin.yaml") in message and str(tmp_path / "twin.yml") in message


def test_conf_is_validated_against_params(bundled):
    from airflow.sdk.exceptions import ParamValidationError

    def validated(conf):
        params = copy.deepcopy(bundled.dags["train_seattle_weather"].params)
        params.update(conf)
        return params.validate()

    assert validated({"epochs": 3, "models": ["gru"]}) == {
        "epochs": 3,
        "models": ["gru"],
        "force": False,
    }
    assert validated({}) == {"epochs": None, "models": ["lstm", "gru"], "force": False}
    assert validated({"force": True})["force"] is True
    bad_confs = ({"epochs": "abc"}, {"epochs": 0}, {"models": ["transformer"]}, {"models": []})
    for bad in (*bad_confs, {"force": "yes"}):
        with pytest.raises(ParamValidationError):
            validated(bad)


def test_rollback_needs_a_version(bundled):
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(bundled.dags["rollback_seattle_weather"].params)
    with pytest.raises(ParamValidationError):
        params.validate()  # no version given
    params.update({"version": 2})
    assert params.validate() == {"version": 2, "reason": "manual rollback"}


def _context(conf, *, force=False, run_type="manual"):
    from types import SimpleNamespace

    run = SimpleNamespace(conf=conf, run_type=run_type)
    return {"dag_run": run, "params": {"force": force}}


def test_an_explicit_epochs_or_models_in_the_conf_trains_even_when_nothing_changed():
    sys.path.insert(0, str(PROJECT_ROOT / "dags"))
    try:
        import forecast_pipelines as dags
    finally:
        sys.path.remove(str(PROJECT_ROOT / "dags"))
    assert dags._forced_by(_context({})) is None
    assert dags._forced_by(_context({"epochs": None})) is None  # the form's empty default
    assert dags._forced_by(_context({}, force=True)) == "conf force=true"
    assert dags._forced_by(_context({"epochs": 2})) == (
        "conf sets epochs, which trains even when nothing changed"
    )
    assert "epochs and models" in dags._forced_by(_context({"epochs": 2, "models": ["gru"]}))
    assert dags._run_type(_context({}, run_type="backfill")) == "backfill"


def test_the_ui_plugin_loads_with_its_views_and_imports_nothing_heavy():
    """Every task process imports the plugins: this one must cost nothing (FastAPI, pandas,
    TensorFlow load on the first page request in the api-server)."""
    heavy = ("fastapi", "pandas", "matplotlib", "tensorflow", "freshcast.pages")
    code = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(PROJECT_ROOT / 'plugins')!r})\n"
        "from freshcast_ui import FreshcastPlugin as P\n"
        "views = [(v['destination'], v['url_route'], v['href']) for v in P.external_views]\n"
        "apps = [a['url_prefix'] for a in P.fastapi_apps]\n"
        f"heavy = [m for m in {heavy!r} if m in sys.modules]\n"
        "print(json.dumps({'views': views, 'heavy': heavy, 'apps': apps}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["apps"] == ["/freshcast"]
    assert result["views"] == [
        ["nav", "forecasts", "freshcast/"],
        ["dag", "freshcast-pipeline", "freshcast/dags/{DAG_ID}"],
        ["dag_run", "freshcast-report", "freshcast/dags/{DAG_ID}/runs/{RUN_ID}"],
    ]
    # Relative hrefs (no leading slash): the UI resolves them under its base URL, so a reverse
    # proxy's prefix works.
    assert not any(href.startswith("/") for _, _, href in result["views"])


def test_tensorflow_starts_without_chatter_on_stderr():
    """Airflow shows a task's stderr as red ERROR lines: importing TensorFlow through the
    package must print nothing there, even when TF_CPP_MIN_LOG_LEVEL is not set."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = "import freshcast.models, tensorflow as tf; tf.constant(1.0) + 1.0"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == ""


def _parse_in_a_fresh_process(dag_file, pipelines, context_dag_id=None):
    """Parse one DAG file as Airflow's task runner does (a bundle, the parsing context in the
    environment) in a fresh interpreter, and list every spec file it opened."""
    import os

    code = (
        "import json, sys\n"
        "opened = []\n"
        "sys.addaudithook(lambda event, args: opened.append(str(args[0]))"
        " if event == 'open' and isinstance(args[0], str) else None)\n"
        "from airflow.dag_processing.dagbag import BundleDagBag\n"
        f"bag = BundleDagBag({str(dag_file)!r}, bundle_path={str(dag_file.parent)!r})\n"
        f"specs = sorted({{p for p in opened if p.startswith({str(pipelines)!r})}})\n"
        "print(json.dumps({'dags': sorted(bag.dag_ids), 'errors': list(bag.import_errors),"
        " 'specs': specs}))\n"
    )
    env = {**os.environ, "FRESHCAST_PIPELINES_DIR": str(pipelines)}
    env.pop("_AIRFLOW_PARSING_CONTEXT_DAG_ID", None)
    if context_dag_id:
        env["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = context_dag_id
        env["_AIRFLOW_PARSING_CONTEXT_TASK_ID"] = "forecast"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_task_process_reads_only_its_own_spec_and_builds_only_its_dag(tmp_path):
    """Airflow's parsing context names the task's DAG: its process reads that pipeline's spec and
    no other (counted by an audit hook on every file open), and builds that one DAG."""
    from freshcast.spec import shard_of

    sys.path.insert(0, str(PROJECT_ROOT / "dags"))
    try:
        from forecast_pipelines import SHARDS
    finally:
        sys.path.remove(str(PROJECT_ROOT / "dags"))
    names = [f"p{i}" for i in range(40)]
    shard = max(range(SHARDS), key=lambda k: sum(shard_of(n, SHARDS) == k for n in names))
    ours = [n for n in names if shard_of(n, SHARDS) == shard]
    assert len(ours) >= 3
    for name in names:
        write_tiny_pipeline(tmp_path, name=name)
    (tmp_path / "broken.yaml").write_text("source: [\n")  # never read by a task process
    dag_file = PROJECT_ROOT / "dags" / f"pipelines_{shard}.py"

    # The dag-processor (no context) builds every pipeline of the shard, and reads their specs.
    everything = _parse_in_a_fresh_process(dag_file, tmp_path)
    assert everything["errors"] == []
    assert everything["dags"] == sorted(
        f"{kind}_{n}" for n in ours for kind in ("train", "forecast", "rollback")
    )
    assert everything["specs"] == sorted(str(tmp_path / f"{n}.yaml") for n in ours)

    target = ours[1]
    task = _parse_in_a_fresh_process(dag_file, tmp_path, context_dag_id=f"forecast_{target}")
    assert task["errors"] == []
    assert task["dags"] == [f"forecast_{target}"]
    assert task["specs"] == [str(tmp_path / f"{target}.yaml")]


def test_every_pipeline_is_defined_by_exactly_one_dag_file(tmp_path, monkeypatch):
    for i in range(12):
        write_tiny_pipeline(tmp_path, name=f"s{i}")
    bag = dagbag(tmp_path, monkeypatch)
    files = {bag.dags[f"train_s{i}"].fileloc for i in range(12)}
    assert len(files) > 1  # spread over the shard files
    for i in range(12):
        locs = {bag.dags[f"{k}_s{i}"].fileloc for k in ("train", "forecast", "rollback")}
        assert len(locs) == 1  # a pipeline's three DAGs share one file
    assert len(bag.dag_ids) == 36 and bag.import_errors == {}
