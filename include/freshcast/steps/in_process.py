"""Every step of the training DAG one after another in this process, wired as the DAG wires
them: the benchmark's in-process baseline and the tests' way to a finished run.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from freshcast import artifacts
from freshcast.steps.prepare import ingest
from freshcast.steps.reporting import report
from freshcast.steps.run_folder import run_spec
from freshcast.steps.scoring import backtest, evaluate
from freshcast.steps.serving import gate, promote
from freshcast.steps.training import plan_trials, select, train, trial


def run_all(
    spec_file: str | Path,
    *,
    run_id: str,
    cutoff: datetime | None = None,
    epochs: int | None = None,
    promote_candidate: bool = True,
) -> dict[str, Any]:
    """The training DAG's steps one after another in this process, as the DAG wires them (the
    benchmark and tests use it; it trains whatever the fingerprint says).

    Returns:
        {"run_dir", "seconds": {step: s}, "evaluated": evaluate's result, "decided": gate's,
        "promoted": promote's or None}.
    """
    times: dict[str, float] = {}

    def timed(name: str, result: dict[str, Any]) -> dict[str, Any]:
        times[name] = result.get("seconds", 0.0)
        return result

    ingested = timed("ingest", ingest(spec_file, run_id=run_id, cutoff=cutoff))
    run = ingested["run_dir"]
    for name in ("validate", "split_scale", "window"):
        timed(name, globals()[name](run))
    spec = run_spec(artifacts.local(run))
    if spec.trials:
        timed("plan_trials", plan_trials(run))
        for name in spec.trials:
            timed(f"trial[{name}]", trial(run, name, epochs=epochs))
        timed("select", select(run))
    trained = [timed(f"train[{m}]", train(run, m, epochs=epochs)) for m in spec.member_names]
    for fold in range(1, spec.backtest.folds + 1 if spec.backtest else 1):
        timed(f"backtest[{fold}]", backtest(run, fold, epochs=epochs))
    evaluated = timed("evaluate", evaluate(run, trained))
    decided = timed("gate", gate(run, run_id=run_id))
    promoted = None
    if decided["promote"] and promote_candidate:
        promoted = timed("promote", promote(run, run_id=run_id))
    timed("report", report(run, run_id=run_id))
    return {
        "run_dir": run,
        "seconds": times,
        "evaluated": evaluated,
        "decided": decided,
        "promoted": promoted,
    }
