"""One measurement in a fresh process: `python -m bench.probe <name> '<json args>'`.

Prints a JSON object as its last line. Each probe imports what it needs itself, so what a
measurement pays in imports and memory is its own.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Timer, peak_rss_mb, reset_peak, rss_mb

FEATURES = 8
PROBES = {}


def probe(fn):
    PROBES[fn.__name__] = fn
    return fn


def synthetic(rows: int, features: int = FEATURES, *, seed: int = 0):
    """A scaled-like float32 series: smooth daily and weekly cycles plus noise, in chunks."""
    import numpy as np

    out = np.empty((rows, features), dtype=np.float32)
    rng = np.random.default_rng(seed)
    chunk = 1_000_000
    for start in range(0, rows, chunk):
        t = np.arange(start, min(start + chunk, rows), dtype=np.float64)[:, None]
        phase = np.arange(features)[None, :]
        block = 0.5 + 0.3 * np.sin(2 * np.pi * t / 24 + phase) + 0.1 * np.sin(2 * np.pi * t / 168)
        out[start : start + len(t)] = block + 0.05 * rng.standard_normal(block.shape)
    return out


def bench_spec(*, rows: int, timesteps: int, horizon: int = 1, source: str = "data.parquet"):
    """A PipelineSpec for `rows` rows of FEATURES columns named f0..f7 (target f0)."""
    from freshcast.spec import PipelineSpec

    columns = [f"f{i}" for i in range(FEATURES)]
    return PipelineSpec.model_validate(
        {
            "name": "bench",
            "description": f"synthetic {rows:,} x {FEATURES}",
            "source": {"path": source},
            "timestamp": "time",
            "frequency": "h",
            "target": "f0",
            "features": columns,
            "split": {"val": 0.15, "test": 0.15},
            "window": timesteps,
            "horizon": horizon,
            "season_length": 24,
            "metric": "mae",
            "schedule": None,
            "models": [
                {"type": "lstm", "units": [64], "epochs": 1, "batch_size": 256, "patience": 5}
            ],
        }
    )


# ------------------------------------------------------------------------------ windowing


@probe
def prepare_window_run(root: str, rows: int, timesteps: int) -> dict[str, Any]:
    """A run whose ingest and split_scale steps are done: the scaled (rows, 8) float32 array,
    its splits and the spec, each with its manifest, as the real steps leave them."""
    import numpy as np

    from freshcast import artifacts
    from freshcast.windowing import SPLITS

    os.environ[artifacts.ARTIFACT_ROOT_ENV] = root
    spec = bench_spec(rows=rows, timesteps=timesteps)
    run = artifacts.run_dir("bench", f"windows_{rows}")
    train, val, test = spec.split.sizes(rows)
    with artifacts.step_output(run / "ingest") as out:
        spec_json = artifacts.write_json(out / "spec.json", spec.model_dump(mode="json"))
        artifacts.write_manifest(out, step="ingest", outputs={"spec": spec_json})
    with artifacts.step_output(run / "split_scale") as out:
        scaled = out / "scaled.npy"
        with artifacts.atomic_path(scaled) as tmp, open(tmp, "wb") as fh:
            np.save(fh, synthetic(rows), allow_pickle=False)
        bounds = np.cumsum([0, train, val, test])
        splits = {
            s: {"rows": int(bounds[i + 1] - bounds[i]), "first_row": int(bounds[i])}
            for i, s in enumerate(SPLITS)
        }
        splits_json = artifacts.write_json(out / "splits.json", splits)
        artifacts.write_manifest(
            out, step="split_scale", outputs={"scaled": scaled, "splits": splits_json}
        )
    return {"run": str(run), "array_mb": scaled.stat().st_size / 2**20}


@probe
def window_step(root: str, run: str, batch_size: int = 256) -> dict[str, Any]:
    """The real window step (steps.prepare.window) on a prepared run, then one shuffled pass over
    every training window in batches, as training reads them; peak memory above the start."""
    from freshcast import artifacts, steps

    os.environ[artifacts.ARTIFACT_ROOT_ENV] = root
    reset_peak()
    base = rss_mb()
    with Timer() as step:
        result = steps.prepare.window(run)
    step_peak = peak_rss_mb() - base
    windows, _ = steps.run_folder.load_windows(Path(run))
    train = windows["train"]
    with Timer() as gather:
        seen = 0
        for x, _y in train.batches(batch_size, shuffle=True, seed=0):
            seen += len(x)
    return {
        "seconds": step.seconds,
        "step_peak_mb": step_peak,
        "pass_seconds": gather.seconds,
        "pass_peak_mb": peak_rss_mb() - base,
        "windows": seen,
        "shapes": result["shapes"],
    }


@probe
def window_loop(root: str, run: str, timesteps: int) -> dict[str, Any]:
    """The row-by-row way: a Python loop copying each window into a (samples, T, F) array."""
    import numpy as np

    scaled = np.load(Path(run) / "split_scale" / "scaled.npy", allow_pickle=False)
    reset_peak()
    base = rss_mb()
    with Timer() as loop:
        samples = len(scaled) - timesteps
        out = np.empty((samples, timesteps, scaled.shape[1]), dtype=scaled.dtype)
        for i in range(samples):
            out[i] = scaled[i : i + timesteps]
    return {"seconds": loop.seconds, "peak_mb": peak_rss_mb() - base, "bytes": out.nbytes}


# ------------------------------------------------------------------------------ feeding


@probe
def feed(rows: int, timesteps: int, batch_size: int, way: str) -> dict[str, Any]:
    """Windows per second delivered by one input pipeline over one shuffled epoch.

    way: "ours" (freshcast.training.window_dataset, the tf.data pipeline that fit() and
    predict() read) or "keras" (keras.utils.timeseries_dataset_from_array). Both deliver
    float32 tensors of (batch, timesteps, 8) inputs and their targets, shuffled.
    """
    data = synthetic(rows)
    samples = rows - timesteps
    if way == "keras":
        import keras

        dataset = keras.utils.timeseries_dataset_from_array(
            data[:-1, :],
            data[timesteps:, 0],
            sequence_length=timesteps,
            batch_size=batch_size,
            shuffle=True,
            seed=0,
        )
    else:
        from freshcast.training import window_dataset
        from freshcast.windowing import make_windows

        windows = make_windows(data, timesteps=timesteps, horizon=1, inputs=FEATURES, target=0)
        dataset = window_dataset(windows, batch_size=batch_size, shuffle=True, seed=0)
    import tensorflow as tf

    # Consumed in graph mode, as fit() consumes it (an eager Python loop would time itself).
    def count(dataset):
        return dataset.reduce(
            tf.constant(0, tf.int64), lambda n, b: n + tf.shape(b[0], tf.int64)[0]
        )

    count(dataset.take(2))  # build the pipeline and its functions once
    first = time.perf_counter()
    delivered = int(count(dataset))
    seconds = time.perf_counter() - first
    return {
        "windows": delivered,
        "expected": samples,
        "seconds": seconds,
        "windows_per_s": delivered / seconds,
    }


# ------------------------------------------------------------------------------ training


@probe
def train(
    rows: int,
    timesteps: int,
    units: int,
    batch_size: int,
    epochs: int,
    way: str,
    jit: bool | str = "auto",
    threads: int | None = None,
) -> dict[str, Any]:
    """Samples per second of training, epochs after the first (which traces the graph).

    way: "ours" (freshcast.training.fit: WindowBatches and the callbacks) or "plain"
    (model.fit on in-memory numpy arrays of the same windows, same model and batch size).
    """
    import numpy as np

    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    from freshcast.models import build_model
    from freshcast.spec import ModelSpec
    from freshcast.windowing import make_windows

    data = synthetic(rows)
    windows = make_windows(data, timesteps=timesteps, horizon=1, inputs=FEATURES, target=0)
    cut = int(len(windows) * 0.85)
    train_w, val_w = windows[:cut], windows[cut:]
    spec = ModelSpec(type="lstm", units=[units], batch_size=batch_size, epochs=epochs, patience=100)
    model = build_model(spec, timesteps=timesteps, features=FEATURES, horizon=1, seed=0)
    if jit != "auto":
        model.jit_compile = bool(jit)
    times: list[float] = []

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    if way == "plain":
        x, y = np.ascontiguousarray(train_w.x), np.ascontiguousarray(train_w.y)
        xv, yv = np.ascontiguousarray(val_w.x), np.ascontiguousarray(val_w.y)
        model.fit(
            x,
            y,
            batch_size=batch_size,
            epochs=epochs,
            validation_data=(xv, yv),
            shuffle=True,
            verbose=0,
            callbacks=[EpochTimes()],
        )
    else:
        from freshcast import training

        original = keras.Model.fit

        def fit_with_timer(self, *args, **kwargs):
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), EpochTimes()]
            return original(self, *args, **kwargs)

        keras.Model.fit = fit_with_timer
        with tempfile.TemporaryDirectory() as work:
            training.fit(
                model,
                train_w,
                val_w,
                batch_size=batch_size,
                epochs=epochs,
                patience=100,
                work_dir=Path(work),
                seed=0,
                log=lambda _: None,
            )
    steady = times[1:] or times
    return {
        "samples_per_s": len(train_w) / (sum(steady) / len(steady)),
        "epoch_seconds": times,
        "samples": len(train_w),
        "jit_compile": str(model.jit_compile),
        "device": _device(),
    }


def _device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return f"GPU ({', '.join(g.name for g in gpus)})" if gpus else "CPU"


@probe
def device() -> dict[str, Any]:
    """Which device TensorFlow trains on, and whether the LSTM layer would use cuDNN."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    details = [tf.config.experimental.get_device_details(g) for g in gpus]
    return {
        "device": _device(),
        "gpus": [d.get("device_name", "GPU") for d in details],
        "tensorflow": tf.__version__,
    }


# ------------------------------------------------------------------------------ parse time


HEAVY = ("tensorflow", "keras", "pandas", "sklearn", "matplotlib", "pyarrow", "scipy")


DAGS = Path(__file__).resolve().parents[1] / "dags"


def _dagbag(path: str):
    """A DAG file or folder as the dag-processor and task runner parse it: a bundle whose
    folder is on sys.path (the project's dags/ too, for files the bench writes elsewhere)."""
    from airflow.dag_processing.dagbag import BundleDagBag

    if str(DAGS) not in sys.path:
        sys.path.append(str(DAGS))
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    return BundleDagBag(dag_folder=path, bundle_path=folder)


@probe
def parse(path: str) -> dict[str, Any]:
    """One DAG file (or folder) through Airflow's DagBag, in a process that already imported
    Airflow. The parsing context, if any, comes from the environment, as in a task process."""
    # What the dag-processor and the task runner have imported before they parse a file.
    import airflow.sdk  # noqa: F401
    from airflow.dag_processing.dagbag import BundleDagBag  # noqa: F401

    before = set(sys.modules)
    with Timer() as parsing:
        bag = _dagbag(path)
    loaded = sorted({m.split(".")[0] for m in set(sys.modules) - before} & set(HEAVY))
    return {
        "seconds": parsing.seconds,
        "dags": len(bag.dags),
        "tasks": sum(len(d.tasks) for d in bag.dags.values()),
        "errors": len(bag.import_errors),
        "heavy_modules": loaded,
    }


@probe
def setting(section: str, key: str) -> dict[str, Any]:
    from airflow.configuration import conf

    return {"value": conf.get(section, key)}


@probe
def make_pipelines(folder: str, count: int, template: str) -> dict[str, Any]:
    """`count` copies of the spec `template` in `folder`, named store_0000, store_0001, ..."""
    text = Path(template).read_text()
    Path(folder).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (Path(folder) / f"store_{i:04d}.yaml").write_text(text)
    return {"count": count}


def _default(param: Any) -> Any:
    try:
        return param.resolve(suppress_exception=True)
    except Exception:
        return None


@probe
def equivalent_dag_file(path: str, out: str) -> dict[str, Any]:
    """Write a plain Airflow DAG file with the same DAGs, task ids, mapped tasks, params and
    dependencies as the file at `path`, and nothing else: no spec, no package, no assets.
    What Airflow itself costs to parse DAGs of that shape."""
    bag = _dagbag(path)
    lines = ["from airflow.sdk import Param, dag, task", ""]
    for n, (dag_id, parsed) in enumerate(sorted(bag.dags.items())):
        # Airflow copies Params into every task and checks their JSON schemas: the twin has the
        # same Params, with the same schemas.
        params = ", ".join(
            f"{k!r}: Param({_default(parsed.params.get_param(k))!r}, "
            f"**{parsed.params.get_param(k).schema!r})"
            for k in parsed.params
        )
        lines += [
            f"@dag(dag_id={dag_id!r}, schedule=None, params={{{params}}})",
            f"def dag_{n}():",
            "    made = {}",
        ]
        for task in parsed.tasks:
            mapped = type(task).__name__ == "MappedOperator"
            lines += [
                f"    @task(task_id={task.task_id!r})",
                f"    def t_{task.task_id}({'x' if mapped else ''}):",
                "        return 1",
                f"    made[{task.task_id!r}] = t_{task.task_id}"
                + (".expand(x=[1, 2])" if mapped else "()"),
            ]
        for task in parsed.tasks:
            for down in sorted(task.downstream_task_ids):
                lines.append(f"    made[{task.task_id!r}] >> made[{down!r}]")
        lines += ["", f"dag_{n}()", ""]
    Path(out).write_text("\n".join(lines))
    return {"dags": len(bag.dags), "tasks": sum(len(d.tasks) for d in bag.dags.values())}


@probe
def imports(module: str, after: str | None = None) -> dict[str, Any]:
    """Time to import `module` in a fresh process (that imported `after` first, untimed)."""
    import importlib

    if after:
        importlib.import_module(after)
    with Timer() as took:
        importlib.import_module(module)
    return {"seconds": took.seconds}


# ------------------------------------------------------------------------------ the pipeline


@probe
def steps_in_process(spec_file: str, root: str, epochs: int) -> dict[str, Any]:
    """The training DAG's steps called one after another in one Python process."""
    os.environ["FRESHCAST_ARTIFACT_ROOT"] = root
    with Timer() as total:
        from freshcast import steps

        ran = steps.in_process.run_all(spec_file, run_id="in_process", cutoff=None, epochs=epochs)
    return {"seconds": total.seconds, "steps": ran["seconds"]}


@probe
def pipeline_run(spec_file: str, root: str, run_id: str) -> dict[str, Any]:
    """A bundled pipeline's training steps in this process (`steps.in_process.run_all`), in a fresh
    artifact root: its leaderboard, the gate's decision and the model it serves."""
    os.environ["FRESHCAST_ARTIFACT_ROOT"] = root
    with Timer() as total:
        from freshcast import steps

        ran = steps.in_process.run_all(spec_file, run_id=run_id, cutoff=None)
    decided = ran["decided"]
    promoted = bool(ran["promoted"]) and decided["promote"]
    return {
        "run_dir": str(ran["run_dir"]),
        "seconds": total.seconds,
        "step_seconds": ran["seconds"],
        "leaderboard": ran["evaluated"]["leaderboard"],
        "test_windows": ran["evaluated"].get("test_windows"),
        "decided": {k: decided.get(k) for k in ("promote", "candidate", "verdict", "reasons")},
        "served": decided["candidate"] if promoted else None,
    }


@probe
def accuracy_peers(
    root: str, run_dir: str, served: str | None, max_origins: int, peer_epochs: int
) -> dict[str, Any]:
    """Every peer of `bench.peers` on a finished run, scored beside the served model."""
    os.environ["FRESHCAST_ARTIFACT_ROOT"] = root
    from bench.peers import score_run

    with Timer() as total:
        scored = score_run(run_dir, served=served, max_origins=max_origins, peer_epochs=peer_epochs)
    return {**scored, "seconds": total.seconds}


@probe
def make_scale_data(folder: str, rows: int) -> dict[str, Any]:
    """A `rows` x 8 series as Parquet, with its spec (one LSTM, one epoch)."""
    import pandas as pd
    import yaml

    folder_path = Path(folder)
    folder_path.mkdir(parents=True, exist_ok=True)
    data = synthetic(rows)
    frame = pd.DataFrame(data, columns=[f"f{i}" for i in range(FEATURES)])
    frame.insert(0, "time", pd.date_range("2000-01-01", periods=rows, freq="h", tz="UTC"))
    frame.to_parquet(folder_path / "data.parquet", index=False)
    spec = bench_spec(rows=rows, timesteps=48).model_dump(mode="json", exclude={"name"})
    spec_file = folder_path / "bench.yaml"
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    return {
        "spec": str(spec_file),
        "parquet_mb": (folder_path / "data.parquet").stat().st_size / 2**20,
    }


@probe
def run_step(root: str, step: str, args: dict[str, Any]) -> dict[str, Any]:
    """One step in its own process, as an Airflow task runs it: its wall time and peak memory."""
    os.environ["FRESHCAST_ARTIFACT_ROOT"] = root
    with Timer() as wall:
        from freshcast import steps

        result = getattr(steps, step)(**args)
    return {
        "seconds": wall.seconds,
        "peak_mb": peak_rss_mb(),
        "result": json.loads(json.dumps(result, default=str)),
    }


def main(argv: list[str]) -> int:
    name, args = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    result = PROBES[name](**args)
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
