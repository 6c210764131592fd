"""The training DAG's last step: `report` draws the losses, forecasts and leaderboard into one HTML
page (what the run's Report tab shows) and logs the run to MLflow when tracking is on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from freshcast import artifacts
from freshcast.artifacts import output_path, read_json, write_manifest
from freshcast.evaluation import EXPLAIN
from freshcast.registry import Registry
from freshcast.spec import MEMBER_SEPARATOR, PipelineSpec
from freshcast.steps.run_folder import data_display, run_spec, timed

log = logging.getLogger(__name__)


@timed
def report(run_dir: str | Path, *, run_id: str) -> dict[str, Any]:
    """Draw the loss curves, the forecasts and the leaderboard, tied together in one HTML page."""
    from freshcast.report import write_report

    run = artifacts.local(run_dir)
    spec = run_spec(run)
    board = read_json(output_path(run / "evaluate", "leaderboard"))
    predictions = pd.read_parquet(output_path(run / "evaluate", "predictions"))
    histories = {}
    for row in board:
        if row["kind"] in ("model", "seed"):
            histories[row["name"]] = read_json(output_path(run / "train" / row["name"], "history"))
    tuning, sweeps = None, {}
    if artifacts.store().published(run / "select"):  # a tuned spec
        tuning = read_json(output_path(run / "select", "trials"))
    for name in spec.trials:
        if name.endswith(f"{MEMBER_SEPARATOR}lr") and artifacts.store().published(
            run / "tune" / name
        ):
            sweep = read_json(output_path(run / "tune" / name, "sweep"))
            sweeps[sweep["model"]] = sweep
    decision, promoted = None, None
    if artifacts.store().published(run / "gate"):  # absent when the gate did not run
        decision = read_json(output_path(run / "gate", "decision"))
        event = Registry(spec.name).find_event(run_id=run_id, kinds=("promoted",))
        promoted = event["version"] if event else None
    with artifacts.step_output(run / "report") as out:
        files = write_report(
            out,
            pipeline=spec.name,
            run_id=run_id,
            metric=spec.metric,
            leaderboard=board,
            histories=histories,
            predictions=predictions,
            target=spec.target,
            decision=decision,
            promoted=promoted,
            tuning=tuning,
            sweeps=sweeps or None,
            explain=EXPLAIN,
            backtest=read_json(output_path(run / "evaluate", "metrics")).get("backtest"),
            **data_display(run),
        )
        write_manifest(
            out,
            step="report",
            inputs={"leaderboard": artifacts.recorded(run / "evaluate", "leaderboard")},
            outputs={k: Path(v) for k, v in files.items()},
        )
    tracked = _track(run, spec, run_id=run_id, board=board, histories=histories,
                     decision=decision, promoted=promoted)  # fmt: skip
    return {
        "run_dir": artifacts.where(run),
        "html": artifacts.where(files["html"]),
        "best": board[0]["name"],
        "promoted": promoted,
        "mlflow": tracked,
    }


def _track(
    run: Path,
    spec: PipelineSpec,
    *,
    run_id: str,
    board: list[dict[str, Any]],
    histories: dict[str, Any],
    decision: dict[str, Any] | None,
    promoted: int | None,
) -> dict[str, Any] | None:
    """Log the run to MLflow when a tracking URI is set (spec or MLFLOW_TRACKING_URI); None
    otherwise, and mlflow is not imported."""
    from freshcast import tracking

    uri = tracking.tracking_uri(spec.tracking.mlflow_uri)
    if uri is None:
        return None
    bundle = None
    if promoted is not None:
        bundle = {
            "version": promoted,
            "bundle_dir": Registry(spec.name).bundle_dir(promoted),
            "model": decision["candidate"] if decision else None,
        }
    tracked = tracking.log_training_run(
        uri=uri,
        pipeline=spec.name,
        run_id=run_id,
        params={"spec": spec.model_dump(mode="json")},
        histories=histories,
        leaderboard=board,
        metric=spec.metric,
        report_dir=run / "report",
        decision=decision,
        promoted=bundle,
    )
    log.info("logged to MLflow at %s: %s", uri, tracked)
    return tracked
