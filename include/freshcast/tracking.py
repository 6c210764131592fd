"""Optional MLflow experiment tracking: one MLflow run per training run, promoted bundles as
registered model versions, the champion as the alias "champion".

Tracking is on when the spec or the environment (MLFLOW_TRACKING_URI) names a tracking server;
otherwise nothing here runs and mlflow is never imported (it is imported inside the functions,
from the optional extra `tracking`). The artifact store and the registry stay the source of
truth: MLflow gets a copy to compare runs and follow versions.

Layout in MLflow, for pipeline `p`:

    experiment "freshcast/p"   one run per Airflow run (tag freshcast.run_id), named after it:
                               params, per-epoch "<member>.<loss>" metrics, "<name>.<metric>"
                               per leaderboard row, "best.<metric>", artifacts report/ and
                               gate/decision.json, and bundle/ when the run promoted one
    model "freshcast-p"        one version per promoted registry version (tag freshcast.version),
                               made from the run's bundle/; alias "champion" on the one served

Every call is keyed by (pipeline, run_id) and registry version, so a retried task reuses the run
and the model version instead of making new ones. A server that cannot be reached raises
MLflow's error, which names the URL (the task retries).
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

URI_ENV = "MLFLOW_TRACKING_URI"
ALIAS = "champion"
RUN_TAG = "freshcast.run_id"
VERSION_TAG = "freshcast.version"
# Leaderboard fields that are not figures of the model (the rank is `best.<metric>`'s business).
_ROW_FIELDS = ("name", "kind", "rank")


def tracking_uri(spec_uri: str | None = None) -> str | None:
    """spec_uri if set, else os.environ MLFLOW_TRACKING_URI, else None (tracking off)."""
    return spec_uri or os.environ.get(URI_ENV) or None


def experiment_name(pipeline: str) -> str:
    return f"freshcast/{pipeline}"


def model_name(pipeline: str) -> str:
    return f"freshcast-{pipeline}"


def log_training_run(
    *,
    uri: str,
    pipeline: str,
    run_id: str,
    params: dict[str, Any],
    histories: dict[str, dict[str, list[float | None]]],
    leaderboard: list[dict[str, Any]],
    metric: str,
    report_dir: Path | None,
    decision: dict[str, Any] | None,
    promoted: dict[str, Any] | None,
) -> dict[str, Any]:
    """Log one training run to MLflow; a second call with the same run_id reuses its run.

    Args:
        uri: the tracking server (also the model registry).
        pipeline: the pipeline name; experiment "freshcast/<pipeline>".
        run_id: the Airflow run id, tag `freshcast.run_id` of the MLflow run.
        params: spec parameters; nested mappings are flattened to "a.b" keys.
        histories: member -> {"loss": [...], "val_loss": [...], ...}, one value per epoch
            (None where there is none); logged as "<member>.<key>" with step = epoch index.
        leaderboard: rows {"rank", "name", "kind", <metric>: float | None, ...}; every finite
            number is logged as "<name>.<field>", lists and mappings are not.
        metric: the ranking metric; rank 1's value is also logged as "best.<metric>".
        report_dir: a folder of report files, logged under "report/"; None: none.
        decision: the gate decision, logged as "gate/decision.json" and tag freshcast.promote.
        promoted: {"version": int, "bundle_dir": Path, "model": str} when the run promoted a
            bundle: its files go under "bundle/" and become a model version, alias "champion".

    Returns:
        {"mlflow_run_id": str, "experiment_id": str, "model_version": str | None}.

    Raises:
        MlflowException: when the server cannot be reached (after MLflow's own retries); the
            message names the request's URL, which starts with `uri`.
    """
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    client = _client(uri)
    experiment = client.get_experiment_by_name(experiment_name(pipeline))
    if experiment is None:
        experiment_id = client.create_experiment(experiment_name(pipeline))
    else:
        experiment_id = experiment.experiment_id
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run_id}'", max_results=1
    )
    if found:
        mlflow_run_id = found[0].info.run_id
    else:
        run = client.create_run(
            experiment_id, run_name=run_id, tags={RUN_TAG: run_id, "freshcast.pipeline": pipeline}
        )
        mlflow_run_id = run.info.run_id

    now = int(time.time() * 1000)
    metrics = [
        Metric(_key(f"{member}.{key}"), float(value), now, step)
        for member, history in histories.items()
        for key, values in history.items()
        for step, value in enumerate(values)
        if _finite(value)
    ]
    for row in leaderboard:
        metrics += [
            Metric(_key(f"{row['name']}.{field}"), float(value), now, 0)
            for field, value in row.items()
            if field not in _ROW_FIELDS and _finite(value)
        ]
        if row.get("rank") == 1 and _finite(row.get(metric)):
            metrics.append(Metric(f"best.{metric}", float(row[metric]), now, 0))
    tags = [RunTag("freshcast.metric", metric)]
    if decision is not None:
        tags.append(RunTag("freshcast.promote", str(bool(decision.get("promote"))).lower()))
    if promoted is not None:
        tags.append(RunTag(VERSION_TAG, str(promoted["version"])))
    client.log_batch(
        mlflow_run_id,
        metrics=metrics,
        params=[
            Param(_key(key), str(value)[:MAX_PARAM_VAL_LENGTH])
            for key, value in _flatten(params).items()
        ],
        tags=tags,
    )
    if report_dir is not None:
        client.log_artifacts(mlflow_run_id, str(report_dir), "report")
    if decision is not None:
        client.log_dict(mlflow_run_id, decision, "gate/decision.json")

    model_version = None
    if promoted is not None:
        client.log_artifacts(mlflow_run_id, str(promoted["bundle_dir"]), "bundle")
        model_version = _register(client, pipeline, mlflow_run_id, run_id, promoted)
    client.set_terminated(mlflow_run_id, "FINISHED")
    return {
        "mlflow_run_id": mlflow_run_id,
        "experiment_id": experiment_id,
        "model_version": model_version,
    }


def set_champion(*, uri: str, pipeline: str, version: int) -> str | None:
    """Point the registered model's alias "champion" at the MLflow model version tagged
    freshcast.version == version (after a rollback). Returns that MLflow version, or None when
    none is registered."""
    client = _client(uri)
    found = _find_version(client, model_name(pipeline), version)
    if found is None:
        return None
    client.set_registered_model_alias(model_name(pipeline), ALIAS, found.version)
    return found.version


def _client(uri: str):
    import mlflow

    # Explicit URIs, no global state: the process's own MLflow settings stay untouched.
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _register(client, pipeline: str, mlflow_run_id: str, run_id: str, promoted: Mapping) -> str:
    """The model version of this registry version (made once), with the alias on it unless a
    newer registry version already holds the alias."""
    from mlflow.exceptions import MlflowException

    name = model_name(pipeline)
    version = int(promoted["version"])
    found = _find_version(client, name, version)
    if found is None:
        try:
            client.create_registered_model(name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        artifact_uri = client.get_run(mlflow_run_id).info.artifact_uri
        found = client.create_model_version(
            name,
            f"{artifact_uri}/bundle",
            run_id=mlflow_run_id,
            tags={VERSION_TAG: str(version), RUN_TAG: run_id, "freshcast.model": promoted["model"]},
        )
    # A retry of an older run must not take the alias back from a newer promotion.
    holder = client.get_registered_model(name).aliases.get(ALIAS)
    held = holder and int(client.get_model_version(name, holder).tags.get(VERSION_TAG, 0))
    if not held or held <= version:
        client.set_registered_model_alias(name, ALIAS, found.version)
    return found.version


def _find_version(client, name: str, version: int):
    """The model version tagged freshcast.version == version, or None."""
    found = client.search_model_versions(f"name = '{name}' and tags.`{VERSION_TAG}` = '{version}'")
    return found[0] if found else None


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; other values are kept as they are."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _key(name: str) -> str:
    # MLflow's names allow letters, digits, "_", "-", ".", " ", "/" only.
    return re.sub(r"[^\w\-. /]", "_", name)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
