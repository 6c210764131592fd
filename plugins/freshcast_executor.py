"""LocalExecutor that pays the task steps' imports once, in the scheduler, before it forks.

On Linux the LocalExecutor forks its worker processes from the scheduler and each worker forks
one process per task, so a module the scheduler imported before `start()` is already loaded in
every task process. `freshcast.steps` pulls in pandas, pyarrow, SciPy and scikit-learn (about
2 s on two cores), which every task would otherwise import again for well under a second of
work. These libraries only import here, they start no threads and hold no connections, so the
forked copies are sound. TensorFlow is not imported: it is not fork-safe, and only the tasks
that fit or load a model import it, in their own process.

`make run` names this class as its executor (`freshcast_executor.PreloadingLocalExecutor`:
Airflow puts the plugins folder on sys.path). It is not a plugin: plugins/.airflowignore keeps
Airflow's plugin loader, which imports every plugin in every task process, away from it.
"""

from __future__ import annotations

import importlib
import time

from airflow.executors.local_executor import LocalExecutor

# What every task's step needs before it starts: the package's steps and what they import.
PRELOAD = ("freshcast.steps",)


class PreloadingLocalExecutor(LocalExecutor):
    """LocalExecutor whose workers (and so every task process) start with PRELOAD imported."""

    def start(self) -> None:
        began = time.perf_counter()
        for module in PRELOAD:
            importlib.import_module(module)
        self.log.info(
            "Preloaded %s for the task processes in %.1fs",
            ", ".join(PRELOAD),
            time.perf_counter() - began,
        )
        super().start()
