"""The forecast DAG's steps: `forecast` with the champion, `score_forecasts` against the actuals
that arrived since, and `signal_drift` when the champion's live error outgrows its test error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from freshcast import artifacts, display
from freshcast.artifacts import ArtifactError, read_manifest, write_manifest
from freshcast.evaluation import interval_columns
from freshcast.ingest import load_source, source_files
from freshcast.registry import Registry, RegistryError
from freshcast.spec import load_spec, source_location
from freshcast.steps.run_folder import save_csv, save_parquet, timed
from freshcast.validate import validate_frame

log = logging.getLogger(__name__)


class NoChampionError(ArtifactError):
    """The pipeline has no champion yet, so there is nothing to forecast with."""


@timed
def forecast(spec_file: str | Path, *, run_id: str, cutoff: datetime | None) -> dict[str, Any]:
    """Forecast the next horizon from the data known at `cutoff` with the champion bundle.

    Writes `forecasts/runs/<run_id>/forecast/` (forecast.csv, forecast.parquet, forecast.png,
    actuals.parquet, manifest) and adds the forecast to `forecasts/history.parquet`.

    Raises:
        NoChampionError: before the first promotion.
        SchemaError: the data no longer fits the champion (columns, grid).
    """
    from freshcast.forecasts import append_history, forecasts_dir, history_path
    from freshcast.report import write_forecast_plot
    from freshcast.serving import check_schema, forecast_rows, load_bundle

    spec = load_spec(spec_file)
    registry = Registry(spec.name)
    with registry.lock():
        healed = registry.heal(run_id=run_id)  # a lost pointer or a damaged bundle: repaired
    for action in healed["actions"]:
        log.warning("registry: %s", action)
    if healed["problem"]:
        raise RegistryError(healed["problem"])
    if healed["version"] is None:
        raise NoChampionError(
            f"{spec.name} has no champion yet: run {spec.dag_id} until a model passes the gate"
        )
    bundle = load_bundle(registry.bundle_dir(healed["version"]))
    files = source_files(spec)
    raw = load_source(spec, cutoff=cutoff, files=files)
    frame, _ = validate_frame(raw, spec, source=source_location(spec), for_training=False)
    check_schema(bundle.meta, frame, frequency=spec.grid_frequency)
    predicted = forecast_rows(bundle, frame, np.array([len(frame)]))[0]  # [horizon]
    served = bundle.meta.get("intervals") or {}  # level key -> radii per step
    grid = pd.date_range(frame.index[-1], periods=bundle.horizon + 1, freq=spec.grid_frequency)
    made_at = pd.Timestamp(cutoff).tz_convert("UTC") if cutoff else frame.index[-1]
    rows = pd.DataFrame(
        {
            "run_id": run_id,
            "made_at": made_at,
            "origin": frame.index[-1],
            "time": grid[1:],
            "step": np.arange(1, bundle.horizon + 1),
            "target": bundle.target,
            "forecast": predicted,
            "model_version": bundle.version,
            "model_name": bundle.meta["model"]["name"],
            **interval_columns(
                predicted[None, :], served, [e["level"] for e in served.values()], "radius_by_step"
            ),
        }
    )
    out_dir = forecasts_dir(spec.name) / "runs" / artifacts.safe_run_id(run_id) / "forecast"
    with artifacts.step_output(out_dir) as out:
        outputs = {
            "forecast_parquet": save_parquet(out / "forecast.parquet", rows.set_index("time")),
            "forecast_csv": save_csv(out / "forecast.csv", rows),
            "actuals": save_parquet(out / "actuals.parquet", frame[[bundle.target]]),
            "plot": write_forecast_plot(
                out / "forecast.png",
                actuals=frame[bundle.target],
                latest=rows,
                target=bundle.target,
                unit=(bundle.meta.get("display") or {}).get("unit", spec.unit),
            ),
        }
        write_manifest(
            out,
            step="forecast",
            inputs={"model": bundle.path / "model.keras"}
            | {f"source_{i}": f for i, f in enumerate(files)},
            outputs=outputs,
            params={
                "pipeline": spec.name,
                "version": bundle.version,
                "cutoff": str(made_at),
                "run_id": run_id,
                "display": bundle.meta.get("display") or {"unit": spec.unit, "decimals": 2},
            },
            shapes={"forecast": [bundle.horizon]},
        )
        append_history(history_path(spec.name), rows)
    shown = bundle.meta.get("display") or {"unit": spec.unit, "decimals": 2}
    log.info(
        "champion v%d (%s) forecasts %s from data up to %s:\n%s",
        bundle.version,
        bundle.meta["model"]["name"],
        bundle.target,
        frame.index[-1].isoformat(),
        display.table(
            [
                [t.isoformat(), str(step), display.number(v, shown["decimals"] + 1)]
                for step, (t, v) in enumerate(zip(grid[1:], predicted, strict=True), start=1)
            ],
            ["time (UTC)", "step", display.column_label(bundle.target, shown["unit"])],
        ),
    )
    return {
        "forecast_dir": artifacts.where(out_dir),
        "intervals": sorted(served),
        "version": bundle.version,
        "model": bundle.meta["model"]["name"],
        "origin": frame.index[-1].isoformat(),
        "forecast": {t.isoformat(): float(v) for t, v in zip(grid[1:], predicted, strict=True)},
        "registry": healed["actions"],
        **shown,
    }


@timed
def score_forecasts(
    forecast_dir: str | Path, *, run_id: str, spec_file: str | Path | None = None
) -> dict[str, Any]:
    """Score every past forecast whose actuals have arrived, draw the forecast report and judge
    drift: the champion's live MAE on its latest scored steps against its test MAE (the
    `drift` of the spec in `spec_file`; without one, no drift check)."""
    from freshcast.forecasts import (
        accuracy_by_version,
        accuracy_over_time,
        drift_check,
        read_history,
        score_history,
    )
    from freshcast.report import write_forecast_report

    forecast_dir = artifacts.local(forecast_dir)
    out_root = forecast_dir.parent
    made = read_manifest(forecast_dir)
    latest = pd.read_parquet(made["outputs"]["forecast_parquet"]["path"]).reset_index()
    actuals = pd.read_parquet(made["outputs"]["actuals"]["path"]).iloc[:, 0]
    pipeline = made["params"].get("pipeline") or out_root.parents[2].name  # <p>/forecasts/runs/<r>
    history = read_history(out_root.parent.parent / "history.parquet")
    scored = score_history(history, actuals)
    by_version, over_time = accuracy_by_version(scored), accuracy_over_time(scored)
    version = int(made["params"]["version"])
    settings = load_spec(spec_file).drift if spec_file else None
    drift = None
    if settings is not None and settings.enabled:
        meta = Registry(pipeline).meta(version)
        tested = meta.get("test_scores") or meta.get("scores") or {}
        drift = drift_check(
            scored,
            version=version,
            test_mae=tested.get("mae"),
            ratio=settings.ratio,
            min_steps=settings.min_steps,
            recent=settings.recent,
        )
        log.info("drift: %s", drift["reason"])
    with artifacts.step_output(out_root / "score") as out:
        outputs = {
            "scored": save_parquet(out / "scored.parquet", scored),
            "by_version": save_csv(out / "accuracy_by_version.csv", by_version),
            "over_time": save_csv(out / "accuracy_over_time.csv", over_time),
        }
        files = write_forecast_report(
            out,
            pipeline=pipeline,
            run_id=run_id,
            target=str(actuals.name),
            scored=scored,
            actuals=actuals,
            by_version=by_version,
            over_time=over_time,
            latest=latest,
            drift=drift,
            **made["params"].get("display", {"unit": "", "decimals": 2}),
        )
        outputs["drift"] = artifacts.write_json(out / "drift.json", drift)
        write_manifest(out, step="score_forecasts", outputs={**outputs, **files})
    return {
        "html": artifacts.where(out / "index.html"),
        "drift": drift,
        "scored_steps": int(scored["actual"].notna().sum()),
        "by_version": by_version[["model_version", "scored_steps", "mae"]].to_dict("records"),
    }


@timed
def signal_drift(spec_file: str | Path, drift: Mapping[str, Any] | None, *, run_id: str) -> dict:
    """Record a drift the forecast run found in the registry history and say whether to signal
    it (the `<name>.drift` Asset event that schedules a retraining). Not again for the same
    champion and the same latest actual: a retraining on the same data would change nothing.

    Returns:
        {"signal": bool, "reason", **drift}.
    """
    spec = load_spec(spec_file)
    if not drift or not drift.get("drift"):
        reason = (drift or {}).get("reason") or f"drift checks are off for {spec.name}"
        return {**(drift or {}), "signal": False, "reason": reason}
    registry = Registry(spec.name)
    with registry.lock():
        for event in reversed(registry.history()):
            if event["kind"] == "drift" and event.get("version") == drift["version"]:
                if event.get("actuals_end") == drift["actuals_end"]:
                    why = (
                        f"drift of v{drift['version']} was signalled by run {event['run_id']} "
                        f"for actuals up to {drift['actuals_end']}; no newer actual since"
                    )
                    return {**drift, "signal": False, "reason": why}
                break
        if registry.find_event(run_id=run_id, kinds=("drift",)) is None:
            registry.record(
                "drift", run_id=run_id, **{k: v for k, v in drift.items() if k != "drift"}
            )
    log.warning("drift: %s; signalling %s.drift to retrain", drift["reason"], spec.name)
    return {"signal": True, **drift}
