"""Every step of the training DAG one after another in this process, wired as the DAG wires
them: the benchmark's in-process baseline and the tests' way to a finished run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from freshcast import artifacts

# The steps are looked up on their modules at each call, so a test can wrap one.
from freshcast.steps import prepare, reporting, run_folder, scoring, serving, training


def run_all(
    spec_file: str | Path,
    *,
    run_id: str,
    cutoff: datetime | None = None,
    epochs: int | None = None,
    promote_candidate: bool = True,
    skip_unchanged: bool = False,
    force: bool = False,
    trigger: str | None = None,
    verify: Callable[[Path], dict[str, Any]] | None = None,
    before_promote: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """The training DAG's steps one after another in this process, as the DAG wires them.

    Args:
        skip_unchanged: run `data_changed` after ingest (with `force`) and stop there when the
            data and spec are the last decided run's, as the DAG does; off, train regardless.
        trigger: what started the run, recorded with the gate's decision.
        verify: the bundle check `promote` runs (default: in a fresh process).
        before_promote: called with the run folder between the gate and promote.

    Returns:
        {"run_dir", "seconds": {step: s}, "changed": data_changed's result or None,
        "evaluated": evaluate's result, "decided": gate's, "promoted": promote's or None,
        "report": report's}; the last four are None when the run was skipped.
    """
    times: dict[str, float] = {}

    def timed(name: str, result: dict[str, Any]) -> dict[str, Any]:
        times[name] = result.get("seconds", 0.0)
        return result

    ingested = timed("ingest", prepare.ingest(spec_file, run_id=run_id, cutoff=cutoff))
    run = ingested["run_dir"]
    out: dict[str, Any] = dict.fromkeys(("changed", "evaluated", "decided", "promoted", "report"))
    out.update(run_dir=run, seconds=times)
    if skip_unchanged:
        out["changed"] = timed("data_changed", serving.data_changed(run, force=force))
        if not out["changed"]["changed"]:
            return out
    for step in (prepare.validate, prepare.split_scale, prepare.window):
        timed(step.__name__, step(run))
    spec = run_folder.run_spec(artifacts.local(run))
    if spec.trials:
        timed("plan_trials", training.plan_trials(run))
        for name in spec.trials:
            timed(f"trial[{name}]", training.trial(run, name, epochs=epochs))
        timed("select", training.select(run))
    trained = [
        timed(f"train[{m}]", training.train(run, m, epochs=epochs)) for m in spec.member_names
    ]
    for fold in range(1, spec.backtest.folds + 1 if spec.backtest else 1):
        timed(f"backtest[{fold}]", scoring.backtest(run, fold, epochs=epochs))
    out["evaluated"] = timed("evaluate", scoring.evaluate(run, trained))
    out["decided"] = timed("gate", serving.gate(run, run_id=run_id, trigger=trigger))
    if before_promote is not None:
        before_promote(artifacts.local(run))
    if out["decided"]["promote"] and promote_candidate:
        promoted = serving.promote(run, run_id=run_id, verify=verify)
        out["promoted"] = timed("promote", promoted)
    out["report"] = timed("report", reporting.report(run, run_id=run_id))
    return out
