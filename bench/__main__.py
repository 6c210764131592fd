"""`make bench` (`python -m bench`): the benchmark suite, its goals, a table and a JSON file.

Every figure is the median over repeats, each measured in a fresh process; every comparison is a
ratio of two figures measured in this run, on this machine. Cases:

    windowing      the window step at 1e5, 1e6, 1e7 rows x 8 features, 48 timesteps, against a
                   row-by-row loop (where it fits): time and peak memory
    feeding        windows/s our input pipeline delivers, against timeseries_dataset_from_array
    training       samples/s of our train step against plain model.fit on numpy arrays; XLA
                   and thread settings
    parse          dags/ through DagBag against plain-Airflow DAGs of the same shape; heavy
                   imports; 1,000 generated pipelines: each of the eight DAG files, all in one
                   file, their plain twins, and a task process's parse (the parsing context)
    orchestration  the bundled pipeline through a real scheduler as `make run` runs it
                   (LocalExecutor, SQLite), and with Airflow's plain LocalExecutor, against its
                   steps in one process; where each task's time went
    scheduling     N tiny pipelines triggered at once on LocalExecutor, and on CeleryExecutor
                   with one and two workers (PostgreSQL, Redis): runs/min, scheduler CPU,
                   database size, per-task overhead (bench/scheduling.py)
    scale          2,000,000 rows x 8 features end to end, each step in its own process: peak
                   memory
    accuracy       each bundled pipeline, trained in-process, its served model against its
                   peers on the same test targets: persistence, seasonal naive, ridge,
                   statsforecast's AutoETS and AutoARIMA, plain Keras LSTM and GRU (see
                   bench/peers.py): test MAE, margin over the best peer, seed spread. Runs once
                   per pipeline whatever --repeats says (the seeds give the spread)

Usage: python -m bench [--cases windowing,feeding,...] [--repeats N] [--out bench/results.json]
                       [--pipelines seattle_weather,...] [--parse-pipelines 1000]
                       [--sizes 10,50,100] [--setups local,celery-1,celery-2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import PROJECT_ROOT, ProbeError, machine, median_of, probe
from bench.peers import MAX_ORIGINS, PEER_EPOCHS

TIMESTEPS = 48
CASES = (
    "windowing",
    "feeding",
    "training",
    "parse",
    "orchestration",
    "scheduling",
    "scale",
    "accuracy",
)
MINIMAL_DAG = """
from airflow.sdk import dag, task


@dag(schedule=None, tags=["bench"])
def minimal():
    @task
    def hello():
        return 1

    hello()


minimal()
"""


# Every pipeline in one DAG file: what the eight shard files replace (the parse case's baseline).
ONE_FILE_DAG = """\"\"\"Airflow DAGs of every pipeline spec in one file (bench baseline).\"\"\"
import forecast_pipelines

forecast_pipelines.SHARDS = 1
forecast_pipelines.define_pipelines(globals(), shard=0)
"""


def airflow_setting(section: str, key: str) -> str:
    """A setting as Airflow reads it (airflow.cfg, env), in a fresh process."""
    return probe("setting", section=section, key=key)["value"]


def _dag_file_of(pipeline: str) -> Path:
    """The DAG file (dags/pipelines_<k>.py) that defines `pipeline`'s DAGs."""
    from freshcast.spec import shard_of

    files = sorted((PROJECT_ROOT / "dags").glob("pipelines_*.py"))
    return PROJECT_ROOT / "dags" / f"pipelines_{shard_of(pipeline, len(files))}.py"


def _storage_mib(pipeline: Path) -> dict[str, float]:
    """MiB on disk of one pipeline's training run, registry version and forecast run."""

    def mib(paths: list[Path]) -> float:
        files = [f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
        return sum(f.stat().st_size for f in files) / 2**20

    return {
        "run": mib(list((pipeline / "runs").glob("*"))),
        "registry_version": mib(list((pipeline / "registry" / "versions").glob("v*"))),
        "forecast_runs": mib(list((pipeline / "forecasts" / "runs").glob("*"))),
    }


def _task_rows(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each task instance of one run, in start order, with where its time went: waiting for
    the scheduler after its last upstream ended, scheduled to queued, queued to running (the
    executor picks it up, forks its process), running, and the step's own part of that."""

    def at(stamp: str | None) -> datetime | None:
        return datetime.fromisoformat(stamp) if stamp else None

    done = [t for t in tasks if t["start"] and t["end"]]
    run_start = min(at(t["queued"] or t["start"]) for t in done)
    ends = {(t["task_id"], t["map_index"]): at(t["end"]) for t in done}
    rows = []
    for t in sorted(done, key=lambda t: t["start"]):
        start, end = at(t["start"]), at(t["end"])
        queued, scheduled = at(t["queued"]) or start, at(t["scheduled"]) or at(t["queued"]) or start
        upstream = [e for (task, _), e in ends.items() if task in t.get("upstream", [])]
        ready = max(upstream) if upstream else run_start
        wall = (end - start).total_seconds()
        name = t["task_id"] if t["map_index"] < 0 else f"{t['task_id']}[{t['map_index']}]"
        rows.append({
            "task": name,
            "after_upstream": max(0.0, (scheduled - ready).total_seconds()),
            "scheduled_to_queued": max(0.0, (queued - scheduled).total_seconds()),
            "queued_to_start": (start - queued).total_seconds(),
            "wall": wall,
            "work": t["work"],
            "overhead": None if t["work"] is None else wall - t["work"],
        })  # fmt: skip
    return rows


class Suite:
    def __init__(
        self, *, repeats: int, work: Path, pipelines: list[str] | None = None, say=print
    ) -> None:
        self.repeats, self.work, self.say = repeats, work, say
        self.pipelines = pipelines  # the accuracy case's; None: every bundled spec
        self.pipelines_to_parse = 1000  # the parse case's generated pipelines
        self.sizes: tuple[int, ...] = (10, 50, 100)  # the scheduling case's pipeline counts
        self.setups: tuple[str, ...] = ("local", "celery-1", "celery-2")
        self.results: dict[str, Any] = {}
        self.goals: list[dict[str, Any]] = []

    def goal(self, case: str, what: str, value: float | None, target: str, met: bool | None):
        self.goals.append(
            {"case": case, "goal": what, "value": value, "target": target, "met": met}
        )
        mark = {True: "met", False: "NOT MET", None: "n/a"}[met]
        shown = "n/a" if value is None else f"{value:,.3g}"
        self.say(f"  goal {case}: {what} = {shown} (target {target}): {mark}")

    def measure(self, name: str, keys: tuple[str, ...], **args: Any) -> dict[str, Any]:
        runs = [probe(name, **args) for _ in range(self.repeats)]
        return {**runs[-1], **median_of(runs, *keys)}

    # ------------------------------------------------------------------------------ cases

    def windowing(self) -> None:
        self.say("windowing: the window step against a row-by-row loop (48 timesteps, 8 features)")
        rows_list = (100_000, 1_000_000, 10_000_000)
        out = {}
        for rows in rows_list:
            root = self.work / f"windows-{rows}"
            prepared = probe("prepare_window_run", root=str(root), rows=rows, timesteps=TIMESTEPS)
            step = self.measure(
                "window_step",
                ("seconds", "step_peak_mb", "pass_seconds", "pass_peak_mb"),
                root=str(root),
                run=prepared["run"],
            )
            loop_bytes = (rows - TIMESTEPS) * TIMESTEPS * 8 * 4
            if loop_bytes < 4 * 2**30:
                loop = self.measure(
                    "window_loop",
                    ("seconds", "peak_mb"),
                    root=str(root),
                    run=prepared["run"],
                    timesteps=TIMESTEPS,
                )
            else:
                loop = {"skipped": f"needs {loop_bytes / 2**30:.0f} GiB for the copied windows"}
            out[rows] = {"array_mb": prepared["array_mb"], "step": step, "loop": loop}
            ratio = loop["seconds"] / step["seconds"] if "seconds" in loop else None
            out[rows]["loop_over_step"] = ratio
            self.say(
                f"  {rows:>10,} rows: step {step['seconds']:.4f}s peak +{step['step_peak_mb']:.0f} "
                f"MiB; pass over train windows {step['pass_seconds']:.2f}s peak "
                f"+{step['pass_peak_mb']:.0f} MiB; loop "
                + (
                    f"{loop['seconds']:.2f}s peak +{loop['peak_mb']:.0f} MiB"
                    if "seconds" in loop
                    else loop["skipped"]
                )
            )
            shutil.rmtree(root, ignore_errors=True)
        self.results["windowing"] = out
        self.goal(
            "windowing",
            "loop time / window step time at 1e6 rows",
            out[1_000_000]["loop_over_step"],
            ">= 100",
            (out[1_000_000]["loop_over_step"] or 0) >= 100,
        )
        big = out[10_000_000]
        fixed = 64.0  # MiB: the interpreter's and libraries' working set beyond the array
        limit = 1.5 * big["array_mb"] + fixed
        peak = max(big["step"]["step_peak_mb"], big["step"]["pass_peak_mb"])
        self.goal(
            "windowing",
            "peak MiB at 1e7 rows (step and a pass over it)",
            peak,
            f"<= 1.5 x {big['array_mb']:.0f} + {fixed:.0f} = {limit:.0f}",
            peak <= limit,
        )

    def feeding(self) -> None:
        self.say("feeding: windows/s delivered, against keras.utils.timeseries_dataset_from_array")
        rows, batch = 200_000, 256
        out = {}
        for way in ("ours", "keras"):
            out[way] = self.measure(
                "feed",
                ("windows_per_s",),
                rows=rows,
                timesteps=TIMESTEPS,
                batch_size=batch,
                way=way,
            )
            self.say(f"  {way:<6} {out[way]['windows_per_s']:>12,.0f} windows/s")
        out["ratio"] = out["ours"]["windows_per_s"] / out["keras"]["windows_per_s"]
        self.results["feeding"] = out
        self.goal(
            "feeding",
            "ours / timeseries_dataset_from_array",
            out["ratio"],
            ">= 50",
            out["ratio"] >= 50,
        )

    def training(self) -> None:
        self.say("training: samples/s of our train step against plain model.fit on numpy arrays")
        common = {
            "rows": 60_000,
            "timesteps": TIMESTEPS,
            "units": 64,
            "batch_size": 256,
            "epochs": 3,
        }
        out = {}
        for label, extra in (
            ("plain", {"way": "plain"}),
            ("ours", {"way": "ours"}),
            ("ours_xla", {"way": "ours", "jit": True}),
            ("ours_threads_1", {"way": "ours", "threads": 1}),
        ):
            out[label] = self.measure("train", ("samples_per_s",), **common, **extra)
            self.say(
                f"  {label:<15} {out[label]['samples_per_s']:>10,.0f} samples/s "
                f"(jit_compile={out[label]['jit_compile']}, {out[label]['device']})"
            )
        out["ratio"] = out["ours"]["samples_per_s"] / out["plain"]["samples_per_s"]
        out["xla_over_default"] = out["ours_xla"]["samples_per_s"] / out["ours"]["samples_per_s"]
        out["threads_1_over_default"] = (
            out["ours_threads_1"]["samples_per_s"] / out["ours"]["samples_per_s"]
        )
        out["device"] = out["ours"]["device"]
        self.say(
            f"  XLA / default {out['xla_over_default']:.2f}, one thread / default "
            f"{out['threads_1_over_default']:.2f}"
        )
        self.results["training"] = out
        self.goal(
            "training",
            "ours / plain model.fit samples/s",
            out["ratio"],
            ">= 0.95",
            out["ratio"] >= 0.95,
        )

    def parse(self) -> None:
        self.say("parse: the bundled DAG files through DagBag against minimal DAG files")
        minimal = self.work / "minimal_dag.py"
        minimal.write_text(MINIMAL_DAG)
        dags = PROJECT_ROOT / "dags"
        twin = self.work / "equivalent_dags.py"
        shape = probe("equivalent_dag_file", path=str(dags), out=str(twin))
        files = {
            "minimal (1 DAG, 1 task)": minimal,
            f"plain Airflow, same {shape['dags']} DAGs and {shape['tasks']} tasks": twin,
            "dags/ (every file)": dags,
        }
        out = {}
        for name, path in files.items():
            out[name] = self.measure("parse", ("seconds",), path=str(path))
            self.say(
                f"  {name:<52} {out[name]['seconds'] * 1000:8.1f} ms, {out[name]['dags']} DAGs, "
                f"heavy modules: {out[name]['heavy_modules'] or 'none'}"
            )
        ours, plain = out["dags/ (every file)"], out[next(k for k in out if k.startswith("plain"))]
        ours["ratio_minimal"] = ours["seconds"] / out["minimal (1 DAG, 1 task)"]["seconds"]
        ours["ratio_equivalent"] = ours["seconds"] / plain["seconds"]
        self.goal(
            "parse",
            "dags/ / the same DAGs as plain Airflow",
            ours["ratio_equivalent"],
            "<= 1.5",
            ours["ratio_equivalent"] <= 1.5,
        )
        self.goal(
            "parse",
            "dags/: heavy modules imported",
            len(ours["heavy_modules"]),
            "0",
            not ours["heavy_modules"],
        )
        out["many"] = self._parse_many(self.pipelines_to_parse)
        self.results["parse"] = out

    def _parse_many(self, count: int) -> dict[str, Any]:
        """`count` copies of the bundled spec: each DAG file as the dag-processor parses it,
        all of them in one file, their plain-Airflow twins, and a task process's parse."""
        from bench.probe import DAGS

        timeout = float(airflow_setting("core", "dagbag_import_timeout"))
        self.say(
            f"parse, {count:,} pipelines (copies of seattle_weather.yaml), each file once in a "
            f"fresh process; dagbag_import_timeout {timeout:.0f}s"
        )
        specs = self.work / f"pipelines-{count}"
        template = PROJECT_ROOT / "include" / "pipelines" / "seattle_weather.yaml"
        probe("make_pipelines", folder=str(specs), count=count, template=str(template))
        env = {"FRESHCAST_PIPELINES_DIR": str(specs)}
        one_file = self.work / "all_pipelines_one_file.py"
        one_file.write_text(ONE_FILE_DAG)
        single = probe("parse", path=str(one_file), env=env, timeout=600)
        shards, twins = {}, {}
        for path in sorted(DAGS.glob("pipelines_*.py")):
            shards[path.name] = probe("parse", path=str(path), env=env, timeout=600)
            twin = self.work / f"equivalent_{path.name}"
            probe("equivalent_dag_file", path=str(path), out=str(twin), env=env, timeout=600)
            twins[path.name] = probe("parse", path=str(twin), timeout=600)
        errors = probe("parse", path=str(DAGS / "spec_errors.py"), env=env, timeout=600)
        slowest = max(shards.values(), key=lambda r: r["seconds"])
        ours = sum(r["seconds"] for r in shards.values())
        plain = sum(r["seconds"] for r in twins.values())
        dags = sum(r["dags"] for r in shards.values())
        self.say(f"  {'file':<34}{'DAGs':>6}{'tasks':>7}{'ours s':>9}{'plain s':>9}")
        for name, got in shards.items():
            self.say(
                f"  {name:<34}{got['dags']:>6}{got['tasks']:>7}{got['seconds']:9.2f}"
                f"{twins[name]['seconds']:9.2f}"
            )
        self.say(
            f"  {'all in one file':<34}{single['dags']:>6}{single['tasks']:>7}"
            f"{single['seconds']:9.2f}\n  {'spec_errors.py (reads every spec)':<34}{0:>6}{0:>7}"
            f"{errors['seconds']:9.2f}"
        )
        # A task's process: the parsing context names its DAG (the last pipeline's training DAG),
        # against the same parse with only that one spec in the folder.
        last = f"store_{count - 1:04d}"
        shard = _dag_file_of(last)
        context = {"_AIRFLOW_PARSING_CONTEXT_DAG_ID": f"train_{last}"}
        alone = self.work / "pipelines-1"
        alone.mkdir(exist_ok=True)
        (alone / f"{last}.yaml").write_text(template.read_text())
        # About 0.1 s each: the median of at least 5, alternating, so noise does not decide.
        many_env, one_env = {**env, **context}, {"FRESHCAST_PIPELINES_DIR": str(alone), **context}
        pairs = [
            (
                probe("parse", path=str(shard), env=many_env),
                probe("parse", path=str(shard), env=one_env),
            )
            for _ in range(max(5, self.repeats))
        ]
        task_many = {**pairs[-1][0], **median_of([m for m, _ in pairs], "seconds")}
        task_one = {**pairs[-1][1], **median_of([o for _, o in pairs], "seconds")}
        self.say(
            f"  a task's process (parsing context train_{last}): {task_many['seconds'] * 1000:.0f}"
            f" ms with {count:,} specs, {task_one['seconds'] * 1000:.0f} ms with its spec alone"
        )
        out = {
            "pipelines": count,
            "dags": dags,
            "dagbag_import_timeout": timeout,
            "one_file": single,
            "shards": shards,
            "plain_shards": twins,
            "spec_errors": errors,
            "ours_seconds": ours,
            "plain_seconds": plain,
            "per_pipeline_ms": 1000 * ours / count,
            "plain_per_pipeline_ms": 1000 * plain / count,
            "task_parse": {"many": task_many, "alone": task_one},
        }
        self.goal(
            "parse",
            f"slowest of {len(shards)} DAG files, {count:,} pipelines (s)",
            slowest["seconds"],
            f"<= {timeout / 3:.0f} (timeout / 3)",
            slowest["seconds"] <= timeout / 3 and dags == 3 * count,
        )
        self.goal(
            "parse",
            f"all {count:,} pipelines in one file (s)",
            single["seconds"],
            f"<= {timeout / 3:.0f} (timeout / 3)",
            single["seconds"] <= timeout / 3,
        )
        self.goal(
            "parse",
            "spec_errors.py, reading every spec (s)",
            errors["seconds"],
            f"<= {timeout / 3:.0f} (timeout / 3)",
            errors["seconds"] <= timeout / 3,
        )
        self.goal(
            "parse",
            "per-pipeline parse, ours / plain Airflow",
            ours / plain,
            "<= 1.5",
            ours / plain <= 1.5,
        )
        ratio = task_many["seconds"] / task_one["seconds"]
        self.goal(
            "parse",
            f"a task's parse, {count:,} specs / its spec alone",
            ratio,
            "<= 1.2",
            ratio <= 1.2,
        )
        return out

    def orchestration(self) -> None:
        """The bundled pipeline through a real scheduler, as `make run` runs it (LocalExecutor,
        SQLite, training pool of 2), against the same steps one after another in one process."""
        from bench.scheduling import SETUPS, run_setup

        self.say(
            "orchestration: train_seattle_weather through the scheduler (as `make run` runs it) "
            "against the same steps in one process"
        )
        spec = PROJECT_ROOT / "include" / "pipelines" / "seattle_weather.yaml"
        runs = []
        for i in range(self.repeats):
            inproc = probe(
                "steps_in_process",
                spec_file=str(spec),
                root=str(self.work / f"inproc-{i}"),
                epochs=None,
            )
            folder = self.work / f"orchestration-{i}"
            (folder / "specs").mkdir(parents=True)
            shutil.copy(spec, folder / "specs" / spec.name)
            got = {"in_process": inproc}
            # make run's executor, then Airflow's LocalExecutor as it ships (no preloading).
            for key, setup in (("scheduler", "local"), ("plain", "local-plain")):
                got[key] = run_setup(
                    SETUPS[setup],
                    1,
                    folder,
                    pipelines=folder / "specs",
                    training_slots=2,
                    keep_tasks=True,
                    say=self.say,
                )
            got["scheduler"]["storage_mib"] = _storage_mib(
                folder / "local-n1" / "artifacts" / "seattle_weather"
            )
            runs.append(got)
            self.say(
                f"  run {i + 1}: in one process {inproc['seconds']:.1f}s, through the scheduler "
                f"{got['scheduler']['total_s']:.1f}s (trigger to the run's end), with Airflow's "
                f"plain LocalExecutor {got['plain']['total_s']:.1f}s"
            )
        seconds_in = statistics.median(r["in_process"]["seconds"] for r in runs)
        seconds_sched = statistics.median(r["scheduler"]["total_s"] for r in runs)
        seconds_plain = statistics.median(r["plain"]["total_s"] for r in runs)
        # What a task process pays before its step runs, each in a fresh process: the DAG file
        # (the parsing context names the task's DAG) and the imports the preloading executor
        # does not pay for it (TensorFlow, in the tasks that fit or load a model).
        dag_file = _dag_file_of("seattle_weather")
        parse = self.measure(
            "parse",
            ("seconds",),
            path=str(dag_file),
            env={"_AIRFLOW_PARSING_CONTEXT_DAG_ID": "train_seattle_weather"},
        )
        steps_import = self.measure("imports", ("seconds",), module="freshcast.steps")
        keras_import = self.measure(
            "imports", ("seconds",), module="freshcast.models", after="freshcast.steps"
        )
        storage = runs[-1]["scheduler"]["storage_mib"]
        self.say(
            f"  on disk: a training run {storage['run']:.1f} MiB, a registry version "
            f"{storage['registry_version']:.1f} MiB, its forecast runs "
            f"{storage['forecast_runs']:.2f} MiB"
        )
        out = {
            "storage_mib": storage,
            "in_process_seconds": seconds_in,
            "scheduler_seconds": seconds_sched,
            "plain_local_executor_seconds": seconds_plain,
            "ratio": seconds_sched / seconds_in,
            "plain_ratio": seconds_plain / seconds_in,
            "task_parse_seconds": parse["seconds"],
            "import_seconds": {
                "freshcast.steps": steps_import["seconds"],
                "freshcast.models after freshcast.steps": keras_import["seconds"],
            },
            "runs": runs,
        }
        overheads = {
            key: sum(t["overhead"] or 0.0 for t in _task_rows(runs[-1][key]["task_records"]))
            for key in ("scheduler", "plain")
        }
        out["task_overhead_seconds"] = overheads
        self.say(
            f"  task overhead (wall - work) summed over the run's tasks: {overheads['plain']:.1f}s "
            f"with the plain LocalExecutor, {overheads['scheduler']:.1f}s with make run's"
        )
        self.say(
            f"  in one process {seconds_in:.1f}s, through the scheduler {seconds_sched:.1f}s; "
            f"a task's DAG parse {parse['seconds'] * 1000:.0f} ms, freshcast.steps import "
            f"{steps_import['seconds']:.2f}s (preloaded by the executor), TensorFlow/Keras "
            f"{keras_import['seconds']:.2f}s (paid by each model task)"
        )
        self.say(
            f"  {'task':<16}{'sched':>7}{'queued':>8}{'start':>8}{'wall':>8}{'work':>8}"
            f"{'overhead':>10}   (last run, s: scheduled after upstream, queued, queued to "
            "running, running; overhead = wall - work)"
        )
        rows = _task_rows(runs[-1]["scheduler"]["task_records"])
        for row in rows:
            work = "-" if row["work"] is None else f"{row['work']:.2f}"
            extra = "-" if row["overhead"] is None else f"{row['overhead']:.2f}"
            self.say(
                f"  {row['task']:<16}{row['after_upstream']:7.2f}{row['scheduled_to_queued']:8.2f}"
                f"{row['queued_to_start']:8.2f}{row['wall']:8.2f}{work:>8}{extra:>10}"
            )
        totals = {
            key: sum(r[key] or 0.0 for r in rows)
            for key in ("after_upstream", "scheduled_to_queued", "queued_to_start", "overhead")
        }
        out["tasks"], out["totals"] = rows, totals
        self.say(
            "  summed over tasks: "
            + ", ".join(f"{k.replace('_', ' ')} {v:.1f}s" for k, v in totals.items())
        )
        self.results["orchestration"] = out
        self.goal(
            "orchestration",
            "through the scheduler / in-process seconds",
            out["ratio"],
            "<= 1.3",
            out["ratio"] <= 1.3,
        )

    def scheduling(self) -> None:
        from bench.scheduling import scheduling

        scheduling(self, sizes=self.sizes, setups=self.setups)

    def scale(self) -> None:
        rows = 2_000_000
        self.say(f"scale: {rows:,} rows x 8 features end to end, each step in its own process")
        folder, root = self.work / "scale", self.work / "scale-artifacts"
        made = probe("make_scale_data", folder=str(folder), rows=rows)
        spec_file = made["spec"]
        out: dict[str, Any] = {"rows": rows, "steps": {}}

        def step(name: str, **args: Any) -> dict[str, Any]:
            got = probe("run_step", root=str(root), step=name, args=args, timeout=3600)
            out["steps"][name] = {"seconds": got["seconds"], "peak_mb": got["peak_mb"]}
            self.say(f"  {name:<12} {got['seconds']:8.1f}s  peak {got['peak_mb']:8.0f} MiB")
            return got["result"]

        run = step("ingest", spec_file=spec_file, run_id="scale", cutoff=None)["run_dir"]
        for name in ("validate", "split_scale", "window"):
            step(name, run_dir=run)
        trained = step("train", run_dir=run, model_name="lstm", epochs=1)
        step("evaluate", run_dir=run, trained=[trained])
        step("gate", run_dir=run, run_id="scale")
        step("report", run_dir=run, run_id="scale")
        worst = max(s["peak_mb"] for s in out["steps"].values())
        out["max_peak_mb"] = worst
        self.results["scale"] = out
        self.goal("scale", "largest task peak memory, MiB", worst, "<= 3072", worst <= 3072)

    def accuracy(self) -> None:
        self.say(
            "accuracy: each bundled pipeline's served model against its peers, test MAE in the "
            "data's units, on the same targets (one run each, seeds for the spread)"
        )
        bundled = sorted((PROJECT_ROOT / "include" / "pipelines").glob("*.yaml"))
        names = self.pipelines or [p.stem for p in bundled]
        unknown = sorted(set(names) - {p.stem for p in bundled})
        if unknown:
            raise ValueError(
                f"no bundled pipeline {unknown}; there are {[p.stem for p in bundled]}"
            )
        out = {}
        for spec_file in (p for p in bundled if p.stem in names):
            name = spec_file.stem
            root = self.work / f"accuracy-{name}"
            env = {"FRESHCAST_ARTIFACT_ROOT": str(root)}
            try:
                ran = probe(
                    "pipeline_run",
                    spec_file=str(spec_file),
                    root=str(root),
                    run_id="bench_accuracy",
                    env=env,
                    timeout=3600,
                )
                peers = probe(
                    "accuracy_peers",
                    root=str(root),
                    run_dir=ran["run_dir"],
                    served=ran["served"],
                    max_origins=MAX_ORIGINS,
                    peer_epochs=PEER_EPOCHS,
                    env=env,
                    timeout=3600,
                )
            except ProbeError as err:  # one series failing must not lose the others
                out[name] = {"error": str(err)}
                self.say(f"  {name} FAILED: {err}")
                self.goal("accuracy", f"{name}: served model over best peer, %", None, "> spread",
                          False)  # fmt: skip
                continue
            out[name] = {"pipeline_seconds": ran["seconds"], "run": ran, **peers}
            self._accuracy_table(name, out[name])
        self.results["accuracy"] = out

    def _accuracy_table(self, name: str, got: dict[str, Any]) -> None:
        c, unit, origins = got["comparison"], got["unit"], got["origins"]
        served = got["served"]
        scored = (
            "all scored"
            if origins["scored"] == origins["of"]
            else f"one in {origins['step']} scored ({origins['scored']}), for every forecaster"
        )
        self.say(
            f"  {name}: {got['target']} ({unit}), {origins['of']} test origins x "
            f"{got['horizon']} step(s), {scored}; pipeline {got['pipeline_seconds']:.0f}s, "
            f"peers {got['seconds']:.0f}s"
        )
        if origins["scored"] < origins["of"]:
            full = got["scores"][served]["full_mae"]
            self.say(f"    {served} on all {origins['of']} origins: MAE {full:.4f}")
        if not got["promoted"]:
            self.say(f"    nothing was promoted: {got['run']['decided']['verdict']}")
            self.say(f"    the run's best model, {served}, stands in for the served model")
        self.say(f"    {'name':<22}{'kind':<10}{'MAE':>10}{'vs served':>11}  fitted form, notes")
        rows = sorted(got["scores"].items(), key=lambda kv: (kv[0] != served, _sortable(kv[1])))
        mine = c["served_mae"]
        for peer, s in rows:
            vs = "" if peer == served or not mine else f"{100 * (s['mae'] / mine - 1):+.1f}%"
            notes = "; ".join(str(s[k]) for k in ("model", "note", "error") if s.get(k)) or (
                "" if peer != served or got["promoted"] else "not promoted"
            )
            self.say(f"    {peer:<22}{s['kind']:<10}{s['mae']:>10.4f}{vs:>11}  {notes}")
        spread = (
            f"{c['spread']:.4f} ({c['spread_pct']:.2f}% of the best peer's MAE)"
            if c["spread"] is not None
            else "none measured (one seed)"
        )
        verdict = {True: "yes", False: "NO", None: "n/a (no seed spread)"}[c["met"]]
        self.say(
            f"    margin of {served} over the best peer ({c['best_peer']}, {c['best_peer_mae']:.4f}"
            f"): {c['margin']:+.4f} {unit} ({c['margin_pct']:+.2f}%); seed spread {spread}; "
            f"served best by more than its seed spread: {verdict}"
        )
        target = (
            f"> spread {c['spread_pct']:.2f}%"
            if c["spread"] is not None
            else "> spread (1 seed: none)"
        )
        self.goal(
            "accuracy",
            f"{name}: {served} over best peer {c['best_peer']}, %",
            c["margin_pct"],
            target,
            c["met"],
        )
        # The served model's prediction intervals: empirical coverage on the test split (radii
        # from the validation residuals) against the nominal level.
        for key, entry in sorted((got.get("intervals") or {}).items(), key=lambda kv: float(kv[0])):
            points = 100 * (entry["coverage"] - entry["level"])
            # The sampling error of a coverage measured on this many test windows (the steps
            # of one window are not independent, so windows, not steps, count).
            error = 100 * (entry["level"] * (1 - entry["level"]) / origins["of"]) ** 0.5
            self.say(
                f"    {key}% interval: coverage {100 * entry['coverage']:.1f}% (standard error "
                f"{error:.1f} points over {origins['of']} test windows), mean width "
                f"{entry['width']:.4g} {unit}"
            )
            self.goal(
                "accuracy",
                f"{name}: {served} {key}% interval coverage - nominal, points",
                points,
                "within +-3",
                abs(points) <= 3,
            )

    def device(self) -> None:
        self.results["device"] = probe("device")
        self.say(f"device: {self.results['device']['device']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(PROJECT_ROOT / "bench" / "results.json"))
    parser.add_argument(
        "--pipelines",
        default="",
        help="the accuracy case's bundled pipelines, comma-separated (default: all)",
    )
    parser.add_argument(
        "--parse-pipelines",
        type=int,
        default=1000,
        help="how many generated pipelines the parse case parses (default 1000)",
    )
    parser.add_argument(
        "--sizes", default="10,50,100", help="the scheduling case's pipeline counts"
    )
    parser.add_argument(
        "--setups",
        default="local,celery-1,celery-2",
        help="the scheduling case's setups (local, local-pg, celery-1, celery-2)",
    )
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {', '.join(CASES)}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="freshcast-bench-") as work:
        pipelines = [p for p in args.pipelines.split(",") if p] or None
        suite = Suite(repeats=args.repeats, work=Path(work), pipelines=pipelines)
        suite.pipelines_to_parse = args.parse_pipelines
        suite.sizes = tuple(int(n) for n in args.sizes.split(",") if n)
        suite.setups = tuple(name for name in args.setups.split(",") if name)
        info = machine()
        print(
            f"machine: {info['cpu']}, {info['usable_cores']} cores, {info['memory_gb']} GB; "
            f"Python {info['python']}; repeats {args.repeats} (medians)"
        )
        suite.device()
        for case in cases:
            try:
                getattr(suite, case)()
            except Exception as err:  # one broken case must not lose the others' figures
                suite.results.setdefault("errors", {})[case] = f"{type(err).__name__}: {err}"
                print(f"  {case} FAILED: {type(err).__name__}: {err}")
    report = {
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make bench" + (f" BENCH_ARGS='{' '.join(argv)}'" if argv else ""),
        "machine": info,
        "repeats": args.repeats,
        "seconds": round(time.perf_counter() - started, 1),
        "results": suite.results,
        "goals": suite.goals,
    }
    Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\n{'case':<15}{'goal':<58}{'value':>12}  {'target':<28}met")
    for g in suite.goals:
        value = "n/a" if g["value"] is None else f"{g['value']:,.3g}"
        print(
            f"{g['case']:<15}{g['goal']:<58}{value:>12}  {g['target']:<28}"
            f"{'yes' if g['met'] else 'NO'}"
        )
    print(f"\nwritten to {args.out} in {report['seconds']:.0f}s")
    return 0


def _sortable(score: dict[str, Any]) -> float:
    """A score's MAE for sorting, a failed peer (NaN) last."""
    value = score.get("mae")
    return value if value is not None and value == value else float("inf")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
