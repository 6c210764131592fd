"""One training DAG per pipeline spec (`include/pipelines/<name>.yaml` -> `train_<name>`).

Wiring only: every task body imports its step from the `freshcast` package and calls it. Parsing
this file reads the YAML specs and nothing heavier (no TensorFlow, pandas or scikit-learn).
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, CronTriggerTimetable, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from freshcast.spec import PipelineSpec, load_valid_specs

TRAINING_POOL = "training"


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


@contextmanager
def _no_retry_on_bad_input():
    """Bad data or a bad spec fails the task at once: retrying cannot fix it."""
    from freshcast.errors import BadInputError

    try:
        yield
    except BadInputError as err:
        raise AirflowFailException(f"{type(err).__name__}: {err}") from err


def _doc(spec: PipelineSpec) -> str:
    models = "\n".join(
        f"| `{m.name}` | {m.type} | {m.units} | {m.loss} | {m.epochs} | {m.patience} |"
        for m in spec.models
    )
    return f"""
### `{spec.dag_id}`: train and evaluate forecasters for `{spec.name}`

{spec.description}

Spec: `{spec.spec_path}`. Predicts `{spec.target}` {spec.horizon} step(s) ahead from
{spec.window} steps of {spec.features} (grid `{spec.grid_frequency}`), scored on the test split
against persistence, seasonal naive (season {spec.season_length}) and ridge, ranked by
`{spec.metric}` in the data's own units.

Tasks: ingest -> validate -> split_scale -> window -> train (one mapped task per model, pool
`{TRAINING_POOL}`) -> evaluate -> report.
Artifacts: `$FRESHCAST_ARTIFACT_ROOT/{spec.name}/runs/<run_id>/`.

| model | type | units | loss | max epochs | patience |
|---|---|---|---|---|---|
{models}

Trigger with options:
`airflow dags trigger {spec.dag_id} --conf '{{"epochs": 3, "models": ["{spec.models[0].name}"]}}'`
"""


def build_training_dag(spec: PipelineSpec) -> DAG:
    """The training DAG of one pipeline spec."""
    spec_file = str(spec.spec_path)

    @dag(
        dag_id=spec.dag_id,
        schedule=_schedule(spec.schedule),
        # No start_date: with catchup off, the first scheduled run is the schedule's next tick
        # (see _schedule). Manual runs and backfills name their own dates.
        catchup=False,
        max_active_runs=1,
        tags=["freshcast", "training", *spec.tags],
        doc_md=_doc(spec),
        default_args={
            "owner": spec.owner,
            "retries": 2,
            "retry_delay": timedelta(seconds=20),
            "execution_timeout": timedelta(minutes=15),
        },
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
        },
    )
    def training():
        @task
        def ingest() -> dict[str, Any]:
            from freshcast import steps

            context = get_current_context()
            with _no_retry_on_bad_input():
                return steps.ingest(spec_file, run_id=context["run_id"], cutoff=_cutoff(context))

        @task
        def validate(ingested: dict[str, Any]) -> dict[str, Any]:
            from freshcast import steps

            with _no_retry_on_bad_input():
                return steps.validate(ingested["run_dir"])

        @task
        def split_scale(validated: dict[str, Any]) -> dict[str, Any]:
            from freshcast import steps

            return steps.split_scale(validated["run_dir"])

        @task
        def window(scaled: dict[str, Any]) -> dict[str, Any]:
            from freshcast import steps

            return steps.window(scaled["run_dir"])

        @task(
            pool=TRAINING_POOL,
            map_index_template="{{ task.op_kwargs['model_name'] }}",
            execution_timeout=timedelta(hours=2),
        )
        def train(windowed: dict[str, Any], model_name: str) -> dict[str, Any]:
            from freshcast import steps

            params = get_current_context()["params"]
            if model_name not in params["models"]:
                raise AirflowSkipException(f"{model_name} is not in this run's conf 'models'")
            return steps.train(windowed["run_dir"], model_name, epochs=params["epochs"])

        @task(trigger_rule="none_failed_min_one_success", execution_timeout=timedelta(minutes=30))
        def evaluate(windowed: dict[str, Any], trained: list[dict[str, Any]]) -> dict[str, Any]:
            from freshcast import steps

            return steps.evaluate(windowed["run_dir"], trained)

        @task
        def report(evaluated: dict[str, Any]) -> dict[str, Any]:
            from freshcast import steps

            return steps.report(evaluated["run_dir"], run_id=get_current_context()["run_id"])

        windowed = window(split_scale(validate(ingest())))
        trained = train.partial(windowed=windowed).expand(model_name=spec.model_names)
        report(evaluate(windowed, trained))

    return training()


# A spec that does not validate is left out here and reported as an import error by
# spec_errors.py, so one broken file never hides the other pipelines' DAGs.
for _spec in load_valid_specs():
    globals()[_spec.dag_id] = build_training_dag(_spec)
