"""Celery settings for freshcast's workers: Airflow's own, plus the task steps' imports paid once.

A Celery worker forks its pool processes, and each of those forks one process per task (Airflow's
supervisor), so what the worker's main process imported before the pool starts is already loaded
in every task process. `worker_init` runs there, before the pool: it imports `freshcast.steps`
(pandas, pyarrow, SciPy, scikit-learn), as plugins/freshcast_executor.py does for the
LocalExecutor. TensorFlow is not imported: it is not fork-safe.

Named by `[celery] celery_config_options = freshcast_celery.CELERY_CONFIG` (the plugins folder is
on sys.path). Not a plugin: plugins/.airflowignore keeps Airflow's plugin loader away from it.
"""

from __future__ import annotations

import importlib
import logging
import time

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init
from freshcast_executor import PRELOAD

CELERY_CONFIG = DEFAULT_CELERY_CONFIG


@worker_init.connect
def preload(**_: object) -> None:
    """In the worker's main process, before it forks its pool."""
    began = time.perf_counter()
    for module in PRELOAD:
        importlib.import_module(module)
    logging.getLogger(__name__).warning(
        "Preloaded %s for the task processes in %.1fs",
        ", ".join(PRELOAD),
        time.perf_counter() - began,
    )
