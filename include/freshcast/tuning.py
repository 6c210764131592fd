"""The hyperparameter search: which configurations to try, and which one won on validation.

Optuna's ask-and-tell interface lets the search live in Airflow instead of in a loop: `plan`
asks for every trial's configuration up front (Optuna's QMCSampler: the first trial random, the
rest a scrambled Sobol sequence over the ranges, seeded, so the budget covers the space evenly
when all trials train side by side as mapped tasks), and `select` tells Optuna each finished
trial's validation score and takes its best trial. Trials are scored on the validation split
only; the test split never sees them.

Keras Tuner was the other candidate. Its tuners own the training loop (`tuner.search` calls
`fit` itself, in one process, or through its own gRPC chief and workers), so the trials could
not be Airflow tasks with their pools, retries, queues and BackupAndRestore; Optuna only
proposes and records, and the pipeline's own `fit` trains.

numpy and Optuna only: no TensorFlow here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from freshcast.spec import ModelSpec, TuneSpec

log = logging.getLogger(__name__)

# How each searched field is sampled: log-uniform for scales, uniform otherwise.
_LOG_SCALE = {"learning_rate": True, "units": True, "dropout": False, "window": False,
              "batch_size": True}  # fmt: skip
_INTEGER = {"units", "window", "batch_size"}


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def distributions(tune: TuneSpec) -> dict[str, Any]:
    """Optuna distributions of the searched fields, in the spec's order."""
    optuna = _optuna()
    out = {}
    for name, (low, high) in tune.ranges.items():
        kind = (
            optuna.distributions.IntDistribution
            if name in _INTEGER
            else (optuna.distributions.FloatDistribution)
        )
        log_scale = _LOG_SCALE[name] and low > 0
        out[name] = (
            kind(int(low), int(high), log=log_scale)
            if name in _INTEGER
            else kind(float(low), float(high), log=log_scale)
        )
    return out


def plan(tune: TuneSpec, *, seed: int) -> list[dict[str, Any]]:
    """The configurations of `tune.trials` trials, the same for the same ranges and seed.

    Returns:
        One {field: value} per trial, over the fields `tune` searches.
    """
    import warnings

    optuna = _optuna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    space = distributions(tune)
    return [_plain(study.ask(space).params) for _ in range(tune.trials)]


def configure(model: ModelSpec, params: Mapping[str, Any]) -> ModelSpec:
    """`model` with a trial's values: `units` sets every recurrent layer's units."""
    update = dict(params)
    if "units" in update:
        update["units"] = [int(update["units"])] * len(model.units)
    return model.model_copy(update=update)


def select(
    tune: TuneSpec, results: list[dict[str, Any]]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Tell Optuna each finished trial's validation score and take its best trial.

    Args:
        tune: the model's search spec (the trials' distributions).
        results: {"name", "params", "val_mae": float | None, ...} per trial; a trial without a
            finite validation MAE (it failed or diverged) is recorded as failed.

    Returns:
        (the best result or None when no trial finished, every result with "chosen" set).
    """
    optuna = _optuna()
    study = optuna.create_study(direction="minimize")
    space = distributions(tune)
    finished = []
    for result in results:
        value = result.get("val_mae")
        ok = value is not None and math.isfinite(value)
        study.add_trial(
            optuna.trial.create_trial(
                params=result["params"],
                distributions=space,
                value=value if ok else None,
                state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL,
                user_attrs={"name": result["name"]},
            )
        )
        if ok:
            finished.append(result)
    best = None
    if finished:
        best_name = study.best_trial.user_attrs["name"]
        best = next(r for r in results if r["name"] == best_name)
    marked = [{**r, "chosen": best is not None and r["name"] == best["name"]} for r in results]
    return best, marked


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    """Trial values as plain JSON numbers (ints stay ints)."""
    return {k: int(v) if isinstance(v, int) else float(v) for k, v in params.items()}
