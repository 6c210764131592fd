"""Three DAGs per pipeline spec (`include/pipelines/<name>.yaml`):

- `train_<name>`: ingest, validate, train, evaluate, gate and promote the champion;
- `forecast_<name>`: forecast with the champion on its schedule and whenever it changes;
- `rollback_<name>`: make an earlier registry version the champion again.

Wiring only: every task body imports its step from the `freshcast` package and calls it. This
file defines no DAG itself: `pipelines_<k>.py` call `define_pipelines`, each for its share of the
specs. Parsing reads the YAML specs and nothing heavier (no TensorFlow, pandas or scikit-learn).
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from airflow.sdk import (
    DAG,
    Asset,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    dag,
    get_current_context,
    get_parsing_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from freshcast.spec import PipelineSpec, pipeline_of, specs_to_build

TRAINING_POOL = "training"
# One slot: promote and rollback change a registry one at a time, across every worker.
REGISTRY_POOL = "registry"


def _steps():
    """The `freshcast.steps` package (every step module), with the artifact store set up for
    this task process: a URL root (`s3://...`) is reached through Airflow's ObjectStoragePath
    and the connection named by FRESHCAST_STORAGE_CONN_ID."""
    from freshcast import artifacts, steps

    artifacts.use_url_store(_object_storage_path)
    return steps


def _object_storage_path(root: str, conn_id: str | None):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(root, conn_id=conn_id)


def _cutoff(context: Any):
    """Data known up to here: when the run was due (a scheduled or backfilled run's data interval
    end, a manual run's trigger time), never the wall clock."""
    return context["dag_run"].run_after


def _schedule(schedule: str | None):
    """A cron or preset schedule as a CronTriggerTimetable that never fires a missed tick at
    unpause: the first run waits for the next tick, so `make run` and a user's first trigger are
    not queued behind a surprise run. `None` and `@once` pass through."""
    if schedule is None or schedule == "@once":
        return schedule
    return CronTriggerTimetable(schedule, timezone="UTC", run_immediately=timedelta(0))


def dataset_asset(spec: PipelineSpec) -> Asset:
    """The pipeline's ingested dataset: an event per ingest, with the run's data hash."""
    return Asset(
        name=f"{spec.name}.dataset", uri=f"x-freshcast://{spec.name}/dataset", group="data"
    )


def champion_asset(spec: PipelineSpec) -> Asset:
    """The model in service: an event each time the champion pointer moves."""
    return Asset(
        name=f"{spec.name}.champion", uri=f"x-freshcast://{spec.name}/champion", group="model"
    )


def forecast_asset(spec: PipelineSpec) -> Asset:
    """The published forecasts: an event per forecast run, so other DAGs can schedule on them."""
    return Asset(
        name=f"{spec.name}.forecast", uri=f"x-freshcast://{spec.name}/forecast", group="forecast"
    )


def drift_asset(spec: PipelineSpec) -> Asset:
    """The champion's live error drifted from its test error: an event schedules a retraining."""
    return Asset(name=f"{spec.name}.drift", uri=f"x-freshcast://{spec.name}/drift", group="model")


# Why a training run started, as the registry history records it, by Airflow's run type.
TRIGGERS = {
    "scheduled": "schedule",
    "asset_triggered": "drift",
    "manual": "manual",
    "backfill": "replay",
}


def _training_schedule(spec: PipelineSpec):
    """The spec's schedule OR the drift Asset (with `drift.enabled`): a drifting champion is
    retrained at the next forecast run that sees it, not at the next tick."""
    timetable = _schedule(spec.schedule)
    if not spec.drift.enabled:
        return timetable
    if timetable is None or timetable == "@once":
        return drift_asset(spec) if timetable is None else timetable
    return AssetOrTimeSchedule(timetable=timetable, assets=drift_asset(spec))


def _default_args(spec: PipelineSpec) -> dict[str, Any]:
    return {
        "owner": spec.owner,
        "retries": 2,
        "retry_delay": timedelta(seconds=20),
        "execution_timeout": timedelta(minutes=15),
    }


def _check_conf(steps: Any, context: Any) -> None:
    """Refuse a run whose conf has keys the DAG's Params do not declare (first task)."""
    with _fail_at_once():
        steps.run_folder.check_conf(
            context["dag_run"].conf,
            known=context["dag"].params.keys(),
            dag_id=context["dag"].dag_id,
        )


@contextmanager
def _fail_at_once():
    """A failure that a retry cannot change (bad input, a damaged file, a refused check) fails
    the task at once, with its message; anything else is retried."""
    from freshcast.errors import PermanentError

    try:
        yield
    except PermanentError as err:
        said = f"{type(err).__name__}: {err}"
        # For the run's note: the failure in words, not just "see the log".
        get_current_context()["ti"].xcom_push(key="reason", value=said[:1000])
        raise AirflowFailException(said) from err


def _doc(spec: PipelineSpec) -> str:
    models = "\n".join(
        f"| `{m.name}` | {m.type} | {m.units} | {m.loss} | {m.epochs} | {m.patience} | {m.seeds} "
        f"| {m.tune.trials if m.tune else 0} |"
        for m in spec.models
    )
    return f"""
### `{spec.dag_id}`: train and evaluate forecasters for `{spec.name}`

{spec.description}

Spec: `{spec.spec_path}`. Predicts `{spec.target}` {spec.horizon} step(s) ahead from
{spec.window} steps of {spec.features} (grid `{spec.grid_frequency}`), scored on the test split
against persistence, seasonal naive (season {spec.season_length}) and ridge (alpha chosen on
validation), ranked by `{spec.metric}` in the data's own units; the gate requires beating
{", ".join(spec.gate.beat) or "no baseline"}. Calendar inputs: {spec.calendar or "none"}.

Tasks: ingest -> data_changed -> validate -> split_scale -> window -> [plan_trials -> trial (one
mapped task per trial of a `tune` search, validation split only) -> select] -> train (one mapped
task per model and seed, pool `{TRAINING_POOL}`) -> evaluate (seeds, ensembles, baselines) ->
gate -> promote -> report.
{_backtest_doc(spec)}
Runs on `{spec.schedule}`{_drift_doc(spec)}; the registry history records why each run
started (schedule, drift, manual, replay).
`data_changed` skips the rest when the data and spec equal the last decided run's (conf
`force: true`, or an explicit `epochs` or `models`, trains anyway); the run's note says why.
`gate` re-scores the champion on this run's test window beside the best new model; `promote`
runs only when the candidate beats the champion by the margin ({spec.gate.margin}
{spec.gate.margin_type}) and beats the baselines listed above.
Artifacts: `$FRESHCAST_ARTIFACT_ROOT/{spec.name}/runs/<run_id>/`; registry:
`$FRESHCAST_ARTIFACT_ROOT/{spec.name}/registry/`. Results: the **Forecasts** tab of this DAG
(leaderboard over runs, registry, forecasts) and the **Report** tab of each run.

| model | type | units | loss | max epochs | patience | seeds | search trials |
|---|---|---|---|---|---|---|---|
{models}

Trigger with options:
`airflow dags trigger {spec.dag_id} --conf '{{"epochs": 3, "models": ["{spec.models[0].name}"]}}'`
"""


def _backtest_doc(spec: PipelineSpec) -> str:
    if spec.backtest is None:
        return "No backtest (spec `backtest`)."
    decides = (
        "decides on the folds' mean" if spec.backtest.gate else "informs; the test split decides"
    )
    return (
        f"Backtest: {spec.backtest.folds} folds (mapped `backtest` tasks, pool `{TRAINING_POOL}`) "
        f"re-fit every model and baseline before each block of the test split; the gate {decides}."
    )


def _drift_doc(spec: PipelineSpec) -> str:
    if not spec.drift.enabled:
        return " (drift checks are off)"
    return f" and whenever `{spec.name}.drift` says the champion's live error drifted"


def _training_task(spec: PipelineSpec, map_index_template: str):
    """A mapped task that fits models: the training pool and queue, a two-hour limit."""
    return task(
        pool=TRAINING_POOL,
        queue=spec.training_queue,
        map_index_template=map_index_template,
        execution_timeout=timedelta(hours=2),
    )


def _promoting(context: Any) -> bool:
    return bool(context["ti"].xcom_pull(task_ids="gate")["promote"])


def _run_type(context: Any) -> str:
    run_type = context["dag_run"].run_type
    return str(getattr(run_type, "value", run_type))


def _forced_by(context: Any) -> str | None:
    """Why this run trains whatever changed: conf `force`, or an explicit `epochs` or `models`
    (a user who asks for 2 epochs wants a model trained), or None."""
    conf = context["dag_run"].conf or {}
    if context["params"]["force"]:
        return "conf force=true"
    explicit = [key for key in ("epochs", "models") if conf.get(key) is not None]
    if explicit:
        return f"conf sets {' and '.join(explicit)}, which trains even when nothing changed"
    return None


def _champion_extra(result: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The champion Asset event's extra: what is now in service, so other DAGs and the UI's
    Asset page say which model, how good, and from which run."""
    keys = ("version", "model", "metric", "score", "unit", "from_version", "reason")
    return {"run_id": run_id, **{k: result[k] for k in keys if result.get(k) is not None}}


def build_training_dag(spec: PipelineSpec) -> DAG:
    """The training DAG of one pipeline spec."""
    spec_file = str(spec.spec_path)

    @dag(
        dag_id=spec.dag_id,
        schedule=_training_schedule(spec),
        # No start_date: with catchup off, the first scheduled run is the schedule's next tick
        # (see _schedule). Manual runs and backfills name their own dates.
        catchup=False,
        max_active_runs=1,
        tags=["freshcast", "training", *spec.tags],
        doc_md=_doc(spec),
        default_args=_default_args(spec),
        params={
            "epochs": Param(
                None,
                type=["null", "integer"],
                minimum=1,
                maximum=10_000,
                title="Max epochs",
                description="Overrides every model's max epochs; empty keeps the spec's.",
            ),
            "models": Param(
                spec.model_names,
                type="array",
                items={"type": "string", "enum": spec.model_names},
                minItems=1,
                uniqueItems=True,
                title="Models",
                description="Which of the spec's models to train; the others are skipped.",
            ),
            "force": Param(
                False,
                type="boolean",
                title="Train even if nothing changed",
                description="Train although data and spec equal the last decided run's. "
                "Setting epochs or models trains anyway.",
            ),
        },
    )
    def training():
        dataset, champion = dataset_asset(spec), champion_asset(spec)

        @task(outlets=[dataset])
        def ingest() -> dict[str, Any]:
            steps = _steps()

            context = get_current_context()
            _check_conf(steps, context)
            with _fail_at_once():
                result = steps.prepare.ingest(
                    spec_file, run_id=context["run_id"], cutoff=_cutoff(context)
                )
            context["outlet_events"][dataset].extra = {
                k: result[k] for k in ("run_dir", "rows", "data_sha256")
            }
            return result

        @task.short_circuit
        def data_changed(ingested: dict[str, Any]) -> bool:
            steps = _steps()

            context = get_current_context()
            forced_by = _forced_by(context)
            result = steps.serving.data_changed(
                ingested["run_dir"],
                force=forced_by is not None,
                forced_by=forced_by or "",
                replay=_run_type(context) == "backfill",  # `make replay` runs a backfill
            )
            # The reason, for the DAG-run note and the pipeline page (the return value is the
            # short-circuit's condition).
            context["ti"].xcom_push(key="reason", value=result["reason"])
            return result["changed"]

        @task
        def validate(ingested: dict[str, Any]) -> dict[str, Any]:
            steps = _steps()

            with _fail_at_once():
                return steps.prepare.validate(ingested["run_dir"])

        @task
        def split_scale(validated: dict[str, Any]) -> dict[str, Any]:
            steps = _steps()

            with _fail_at_once():
                return steps.prepare.split_scale(validated["run_dir"])

        @task
        def window(scaled: dict[str, Any]) -> dict[str, Any]:
            steps = _steps()

            with _fail_at_once():
                return steps.prepare.window(scaled["run_dir"])

        @_training_task(spec, "{{ task.op_kwargs['member'] }}")
        def train(windowed: dict[str, Any], member: str) -> dict[str, Any]:
            """One model, or one seed of a model (`lstm-s2`)."""
            steps = _steps()

            params = get_current_context()["params"]
            model = spec.members[member][0]
            if model not in params["models"]:
                raise AirflowSkipException(f"{model} is not in this run's conf 'models'")
            with _fail_at_once():
                return steps.training.train(windowed["run_dir"], member, epochs=params["epochs"])

        @task
        def plan_trials(windowed: dict[str, Any]) -> dict[str, Any]:
            steps = _steps()

            with _fail_at_once():
                return steps.training.plan_trials(windowed["run_dir"])

        @_training_task(spec, "{{ task.op_kwargs['name'] }}")
        def trial(planned: dict[str, Any], name: str) -> dict[str, Any]:
            """One configuration of the search (`lstm-t3`), or a learning-rate sweep (`lstm-lr`),
            scored on the validation split."""
            steps = _steps()

            params = get_current_context()["params"]
            if spec.trials[name] not in params["models"]:
                raise AirflowSkipException(
                    f"{spec.trials[name]} is not in this run's conf 'models'"
                )
            with _fail_at_once():
                return steps.training.trial(planned["run_dir"], name, epochs=params["epochs"])

        # Runs when some trials failed: their configurations are left out of the choice.
        @task(trigger_rule="all_done")
        def select(planned: dict[str, Any], tried: list[dict[str, Any]]) -> dict[str, Any]:
            steps = _steps()

            with _fail_at_once():
                return steps.training.select(planned["run_dir"])

        @task(trigger_rule="none_failed_min_one_success", execution_timeout=timedelta(minutes=30))
        def evaluate(windowed: dict[str, Any], trained: list[dict[str, Any]]) -> dict[str, Any]:
            steps = _steps()

            with _fail_at_once():
                return steps.scoring.evaluate(windowed["run_dir"], trained)

        @_training_task(spec, "fold {{ task.op_kwargs['fold'] }}")
        def backtest(windowed: dict[str, Any], fold: int) -> dict[str, Any]:
            """One fold of the rolling-origin backtest: every model re-fit before its block."""
            steps = _steps()

            params = get_current_context()["params"]
            with _fail_at_once():
                return steps.scoring.backtest(
                    windowed["run_dir"], fold, epochs=params["epochs"], models=params["models"]
                )

        @task(execution_timeout=timedelta(minutes=30))
        def gate(evaluated: dict[str, Any]) -> dict[str, Any]:
            steps = _steps()

            context = get_current_context()
            with _fail_at_once():  # e.g. a candidate that predicts non-finite values
                return steps.serving.gate(
                    evaluated["run_dir"],
                    run_id=context["run_id"],
                    trigger=TRIGGERS.get(_run_type(context), _run_type(context)),
                )

        @task.run_if(_promoting, skip_message="the gate refused the candidate; the champion stays")
        @task(outlets=[champion], pool=REGISTRY_POOL)
        def promote(decided: dict[str, Any]) -> dict[str, Any]:
            steps = _steps()

            context = get_current_context()
            with _fail_at_once():  # a bundle that fails its check stays failed
                result = steps.serving.promote(decided["run_dir"], run_id=context["run_id"])
            if result["version"] is None:  # the champion moved since the gate: no event
                raise AirflowSkipException(result["refused"])
            context["outlet_events"][champion].extra = _champion_extra(result, context["run_id"])
            return result

        @task(trigger_rule="none_failed")
        def report(decided: dict[str, Any]) -> dict[str, Any]:
            steps = _steps()

            with _fail_at_once():
                return steps.reporting.report(
                    decided["run_dir"], run_id=get_current_context()["run_id"]
                )

        ingested = ingest()
        validated = validate(ingested)
        data_changed(ingested) >> validated
        windowed = window(split_scale(validated))
        if spec.trials:  # a search first: its trials, then the members with the chosen values
            planned = plan_trials(windowed)
            tried = trial.partial(planned=planned).expand(name=list(spec.trials))
            windowed = select(planned, tried)
        trained = train.partial(windowed=windowed).expand(member=spec.member_names)
        evaluated = evaluate(windowed, trained)
        if spec.backtest:  # its folds in the training pool beside the members
            folds = list(range(1, spec.backtest.folds + 1))
            backtest.partial(windowed=windowed).expand(fold=folds) >> evaluated
        decided = gate(evaluated)
        promote(decided) >> report(decided)

    return training()


def build_forecast_dag(spec: PipelineSpec) -> DAG:
    """The forecast DAG of one pipeline: on its own schedule and on every new champion."""
    spec_file = str(spec.spec_path)
    champion = champion_asset(spec)
    timetable = _schedule(spec.forecast.schedule)
    schedule = AssetOrTimeSchedule(timetable=timetable, assets=champion) if timetable else champion

    @dag(
        dag_id=spec.forecast_dag_id,
        schedule=schedule,
        catchup=False,
        max_active_runs=1,
        tags=["freshcast", "forecast", *spec.tags],
        doc_md=f"""
### `{spec.forecast_dag_id}`: publish forecasts of `{spec.name}` with its champion model

Runs on `{spec.forecast.schedule}` and whenever `{spec.dag_id}` or `{spec.rollback_dag_id}`
moves the champion. `forecast` loads the champion bundle (sha256 checked, safe_mode on), checks
the data against its input schema and forecasts `{spec.target}` {spec.horizon} step(s) past the
data known at the run's time, with prediction intervals at the levels the champion serves.
`score_forecasts` scores every earlier forecast whose actuals have arrived and writes the
forecast report; `drift` emits `{spec.name}.drift` (which schedules `{spec.dag_id}`) when the
champion's live MAE exceeds {spec.drift.ratio} x its test MAE over at least
{spec.drift.min_steps} scored steps{"" if spec.drift.enabled else " (drift checks are off)"}.
Artifacts: `$FRESHCAST_ARTIFACT_ROOT/{spec.name}/forecasts/` (`history.parquet`, and
`runs/<run_id>/forecast/forecast.csv|parquet`, `runs/<run_id>/score/index.html`).
""",
        default_args=_default_args(spec),
    )
    def forecasting():
        published = forecast_asset(spec)

        @task(outlets=[published])
        def forecast() -> dict[str, Any]:
            steps = _steps()

            context = get_current_context()
            _check_conf(steps, context)
            try:
                with _fail_at_once():
                    result = steps.forecasting.forecast(
                        spec_file, run_id=context["run_id"], cutoff=_cutoff(context)
                    )
            except steps.forecasting.NoChampionError as err:
                raise AirflowSkipException(str(err)) from err
            times = list(result["forecast"])
            context["outlet_events"][published].extra = {
                "run_id": context["run_id"],
                "version": result["version"],
                "origin": result["origin"],
                "first": times[0],
                "last": times[-1],
                "location": result["forecast_dir"],
            }
            return result

        @task
        def score_forecasts(made: dict[str, Any]) -> dict[str, Any]:
            steps = _steps()

            with _fail_at_once():
                return steps.forecasting.score_forecasts(
                    made["forecast_dir"],
                    run_id=get_current_context()["run_id"],
                    spec_file=spec_file,
                )

        scored = score_forecasts(forecast())
        if spec.drift.enabled:
            drifted = drift_asset(spec)

            # Skipped (no Asset event) unless the champion drifted.
            @task(outlets=[drifted])
            def drift(scored: dict[str, Any]) -> dict[str, Any]:
                steps = _steps()

                context = get_current_context()
                result = steps.forecasting.signal_drift(
                    spec_file, scored["drift"], run_id=context["run_id"]
                )
                if not result["signal"]:
                    raise AirflowSkipException(result["reason"])
                keys = ("version", "live_mae", "test_mae", "ratio", "steps", "actuals_end")
                context["outlet_events"][drifted].extra = {
                    "run_id": context["run_id"],
                    **{k: result[k] for k in keys},
                }
                return result

            drift(scored)

    return forecasting()


def build_rollback_dag(spec: PipelineSpec) -> DAG:
    """Rollback: `airflow dags trigger rollback_<name> --conf '{"version": 3}'`."""
    spec_file = str(spec.spec_path)
    champion = champion_asset(spec)

    @dag(
        dag_id=spec.rollback_dag_id,
        schedule=None,
        catchup=False,
        max_active_runs=1,
        tags=["freshcast", "registry", *spec.tags],
        doc_md=f"""
### `{spec.rollback_dag_id}`: put an earlier model of `{spec.name}` back in service

`airflow dags trigger {spec.rollback_dag_id} --conf '{{"version": 2, "reason": "..."}}'`.
The version's bundle is checked (sha256 of every file) and loaded in a fresh process before the
champion pointer moves; the change is recorded in the registry history and triggers
`{spec.forecast_dag_id}`. List versions with `python -m freshcast.registry show {spec.name}`.
""",
        default_args={**_default_args(spec), "retries": 0},
        params={
            "version": Param(type="integer", minimum=1, title="Registry version to serve"),
            "reason": Param("manual rollback", type="string", minLength=1, title="Why"),
        },
    )
    def rolling_back():
        @task(outlets=[champion], pool=REGISTRY_POOL)
        def rollback() -> dict[str, Any]:
            steps = _steps()

            context = get_current_context()
            _check_conf(steps, context)
            params = context["params"]
            with _fail_at_once():
                result = steps.serving.rollback(
                    spec_file, params["version"], run_id=context["run_id"], reason=params["reason"]
                )
            context["outlet_events"][champion].extra = _champion_extra(result, context["run_id"])
            return result

        rollback()

    return rolling_back()


# How many DAG files share the pipelines (dags/pipelines_<k>.py, k < SHARDS). The dag-processor
# parses files in parallel and times each out on its own: a thousand pipelines cost eight files
# of about 125 each, not one file past `dagbag_import_timeout` that takes every pipeline with it.
SHARDS = 8
BUILDERS = {
    "dag_id": build_training_dag,
    "forecast_dag_id": build_forecast_dag,
    "rollback_dag_id": build_rollback_dag,
}


def define_pipelines(namespace: dict[str, Any], *, shard: int) -> list[str]:
    """Put the DAGs of every pipeline in shard `shard` into `namespace` (a DAG file's globals)
    and return their ids.

    In a task's process Airflow's parsing context names the task's DAG: only that pipeline's
    spec is read and only that DAG is built, so a task starts as fast with a thousand pipelines
    as with one. A spec that does not validate is left out here and reported as an import error
    by spec_errors.py, so one broken file never hides the other pipelines' DAGs.
    """
    wanted = get_parsing_context().dag_id
    built = []
    for spec in specs_to_build(wanted, shard=shard, shards=SHARDS):
        for attribute, build in BUILDERS.items():
            dag_id = getattr(spec, attribute)
            if wanted in (None, dag_id) or pipeline_of(wanted) != spec.name:
                namespace[dag_id] = build(spec)
                built.append(dag_id)
    return built
