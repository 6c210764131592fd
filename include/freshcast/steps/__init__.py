"""One function per pipeline task: paths in, small JSON-able dict out, grouped by the DAG served.

- `prepare`: ingest, validate, split_scale, window (the training DAG's data, no TensorFlow);
- `training`: train, plan_trials, trial, select (the only steps that fit models);
- `scoring`: evaluate, backtest; `reporting`: report;
- `serving`: data_changed, gate, promote, and the rollback DAG's rollback;
- `forecasting`: the forecast DAG's forecast, score_forecasts, signal_drift;
- `run_folder`: what they share; `in_process`: every training step in one process.

Each step reads the finished outputs of the step before it (checked against that step's
manifest), writes its own outputs atomically into `<run dir>/<step>/`, and writes its manifest
last. Running a step again for the same run replaces its folder with the same result. Only the
steps that run a model import TensorFlow, and only inside the function.

Importing this package imports every step module and what they need (pandas, pyarrow, SciPy,
scikit-learn, not TensorFlow): the executors preload it once before they fork the task processes.
"""

from __future__ import annotations

from freshcast.steps import (
    forecasting,
    in_process,
    prepare,
    reporting,
    run_folder,
    scoring,
    serving,
    training,
)

__all__ = [
    "forecasting",
    "in_process",
    "prepare",
    "reporting",
    "run_folder",
    "scoring",
    "serving",
    "training",
]
