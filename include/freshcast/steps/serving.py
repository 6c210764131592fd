"""The steps that decide what is served: `data_changed` (skip a run whose data and spec were
already decided), `gate` (the candidate must beat the baselines and the champion), `promote`
(publish the bundle and move the registry's pointer) and the rollback DAG's `rollback`.

A failed or refused run never touches the model in service.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from freshcast import artifacts
from freshcast.artifacts import ArtifactError, output_path, read_json, read_manifest, write_manifest
from freshcast.evaluation import CANDIDATE_KINDS
from freshcast.registry import Registry
from freshcast.spec import PipelineSpec, load_spec
from freshcast.steps.run_folder import (
    backtest_folds,
    candidate_dir,
    data_display,
    fingerprint,
    load_series,
    load_windows,
    run_spec,
    save_npy,
    test_targets,
    timed,
)

log = logging.getLogger(__name__)


@timed
def data_changed(
    run_dir: str | Path,
    *,
    force: bool = False,
    forced_by: str = "conf force=true",
    replay: bool = False,
) -> dict[str, Any]:
    """Whether this run must train: its data or spec differ from the last decided run's.

    Args:
        force: train whatever the fingerprint says.
        forced_by: why `force` is set, for the reason (an explicit `epochs` in the conf, say).
        replay: the run is part of a replay (a backfill, as `make replay` starts); other runs
            skip while one is on.

    Returns:
        {"changed": bool, "reason": str, ...}; `changed` False means skip training.
    """
    run = artifacts.local(run_dir)
    spec = run_spec(run)
    mine = fingerprint(run)
    registry = Registry(spec.name)
    last = registry.last_decision()
    ongoing = registry.active_replay()
    if ongoing and not replay:
        changed = False
        reason = (
            f"a replay of {spec.name} is in progress ({ongoing['start']} to {ongoing['end']}, "
            f"started {ongoing['at']}); this run would train on newer data in the middle of "
            f"it. If no replay is running, delete {registry.replay_marker}"
        )
    elif force:
        changed, reason = True, forced_by
    elif not spec.gate.skip_unchanged:
        changed, reason = True, "the spec's gate.skip_unchanged is false"
    elif last is None:
        changed, reason = True, "no earlier run reached a decision"
    elif last.get("fingerprint") == mine:
        changed, reason = (
            False,
            (
                f"data and spec are identical to run {last['run_id']} (decided {last['at']}: "
                f"{last['kind']}); trigger with conf force=true to train anyway"
            ),
        )
    else:
        what = [k.split("_")[0] for k in mine if (last.get("fingerprint") or {}).get(k) != mine[k]]
        changed, reason = True, f"{' and '.join(what)} changed since run {last['run_id']}"
    log.info("changed=%s: %s", changed, reason)
    return {"changed": changed, "reason": reason, **mine}


def _candidate_model(run: Path, name: str) -> tuple[Path, str]:
    entry = read_manifest(candidate_dir(run, name), verify=False)["outputs"]["model"]
    return Path(entry["path"]), entry["sha256"]


@timed
def gate(
    run_dir: str | Path, *, run_id: str, sample_size: int = 16, trigger: str | None = None
) -> dict[str, Any]:
    """Score the champion on this run's test window beside the run's best model and decide.

    With `backtest.gate` the figures compared are the backtest's means over its folds (the
    candidate: the best model or ensemble by that mean; the champion: its forecasts of each
    fold's block). `trigger` (schedule, drift, manual, replay) is recorded with the decision.

    Writes `gate/decision.json` (every figure side by side) and, for a candidate, a sample of
    its inputs and outputs that the bundle's fresh-process check must reproduce. A refusal is
    recorded in the registry history here; a promotion is recorded by `promote`.
    """
    from freshcast import evaluation
    from freshcast.gate import decide, verdict
    from freshcast.models import load_model
    from freshcast.serving import forecast_rows, incompatibility, load_bundle

    run = artifacts.local(run_dir)
    spec = run_spec(run)
    metrics = read_json(output_path(run / "evaluate", "metrics"))
    board = read_json(output_path(run / "evaluate", "leaderboard"))
    # A metric without a value is null in leaderboard.json (NaN in files written before).
    # Candidates are models and ensembles; a single seed of an ensemble is never picked on the
    # test split.
    on_backtest = bool(spec.backtest and spec.backtest.gate and metrics.get("backtest"))

    def figures(name: str) -> dict[str, Any]:
        """The scores the gate compares: the test split's, or the backtest's means."""
        scored = metrics["scores"][name]
        if not on_backtest:
            return scored
        summary = scored.get("backtest") or {"mean": {}, "folds": []}
        return {"kind": scored["kind"], **summary["mean"], "folds": summary["folds"]}

    def ranked(name: str) -> tuple[bool, float]:
        value = figures(name).get(spec.metric)
        return value is None or not np.isfinite(value), value or 0.0

    entries = sorted((r["name"] for r in board if r["kind"] in CANDIDATE_KINDS), key=ranked)
    models = [n for n in entries if not ranked(n)[0]]
    broken = [n for n in entries if n not in models]
    baselines = {n: figures(n) for n, s in metrics["scores"].items() if s["kind"] == "baseline"}
    candidate = (models[0], figures(models[0])) if models else None
    if candidate is None and broken:
        candidate = (broken[0], figures(broken[0]))  # refused as broken, with figures

    registry = Registry(spec.name)
    with registry.lock():
        healed = registry.heal(run_id=run_id)  # the history's champion, or its fallback
    pointer = healed["pointer"]
    champion, note = None, None
    if healed["problem"]:
        note = f"{healed['problem']} Compared with the baselines only."
    frame = load_series(run)
    layout = read_json(output_path(run / "window", "layout"))
    if pointer is not None:
        version = pointer["version"]
        meta = registry.meta(version)  # its files were just checked by `heal`
        target_rows, actual = test_targets(frame[spec.target].to_numpy(np.float64), layout)
        problem = incompatibility(meta, frame, frequency=spec.grid_frequency)
        if meta["schema"]["target"] != spec.target or meta["window"]["horizon"] != spec.horizon:
            problem = (
                f"it forecasts {meta['schema']['target']} {meta['window']['horizon']} step(s) "
                f"ahead, this run {spec.target} {spec.horizon}"
            )
        elif problem is None and meta["window"]["timesteps"] > target_rows[0]:
            problem = "its window reaches before the first row"
        if problem:
            note = f"champion v{version} cannot forecast this run's data ({problem}): compared "
            note += "with the baselines only"
        else:
            bundle = load_bundle(registry.bundle_dir(version))
            if on_backtest:
                champion = (version, _champion_backtest(run, spec, bundle, frame))
            else:
                predicted = forecast_rows(bundle, frame, target_rows)
                champion = (
                    version,
                    evaluation.score(
                        actual,
                        predicted,
                        scale=metrics["mase_scale"],
                        seasonal_scale=metrics.get("mase_seasonal_scale"),
                    ),
                )
    decision = decide(
        metric=spec.metric,
        candidate=candidate,
        champion=champion,
        baselines=baselines,
        gate=spec.gate,
        champion_note=note,
        data_end=frame.index[-1].isoformat(),
        champion_data_end=meta["lineage"].get("data_end") if pointer else None,
    ).to_json()
    decision["fingerprint"] = fingerprint(run)
    decision["current_champion"] = pointer["version"] if pointer else None
    decision["registry"] = healed["actions"]
    decision["trigger"] = trigger
    decision["basis"] = "backtest" if on_backtest else "test"
    if on_backtest:
        done = sum(f["done"] for f in metrics["backtest"]["folds"])
        decision["reasons"].insert(
            0,
            f"decided on the backtest: each figure is the mean {spec.metric} over {done} "
            f"fold(s) of the test split, every model and baseline re-fit before its block",
        )
        decision["backtest"] = metrics["backtest"]

    with artifacts.step_output(run / "gate") as out:
        outputs = {"decision": artifacts.write_json(out / "decision.json", decision)}
        if decision["promote"]:
            path, sha = _candidate_model(run, decision["candidate"])
            model = load_model(path, sha256=sha)
            test = load_windows(run, timesteps=int(model.input_shape[1]))[0]["test"]
            x = np.ascontiguousarray(test.x[-sample_size:])  # [S, timesteps, inputs]
            y = np.asarray(model(x, training=False), dtype=np.float64)  # [S, horizon], scaled
            if not np.all(np.isfinite(y)):
                raise ArtifactError(f"candidate {decision['candidate']} predicts non-finite values")
            outputs["sample_input"] = save_npy(out / "sample_input.npy", x)
            outputs["sample_output"] = save_npy(out / "sample_output.npy", y)
        write_manifest(out, step="gate", outputs=outputs, params={"gate": spec.gate.model_dump()})
    if not decision["promote"]:
        with registry.lock():
            if registry.find_event(run_id=run_id, kinds=("refused",)) is None:
                registry.record(
                    "refused",
                    run_id=run_id,
                    decision=_event_decision(decision),
                    fingerprint=decision["fingerprint"],
                )
    for action in healed["actions"]:
        log.warning("registry: %s", action)
    for reason in decision["reasons"]:
        log.info("gate: %s", reason)
    shown = {"unit": metrics.get("unit", ""), "decimals": metrics.get("decimals", 2)}
    said = verdict(decision, **shown)
    log.info("gate decision: %s", said)
    return {
        "run_dir": artifacts.where(run),
        "promote": decision["promote"],
        "candidate": decision["candidate"],
        "champion": decision["current_champion"],
        "reasons": decision["reasons"],
        "verdict": said,
        "registry": healed["actions"],
        **shown,
    }


def _champion_backtest(run: Path, spec: PipelineSpec, bundle: Any, frame: pd.DataFrame) -> dict:
    """The champion's figures on the backtest: its forecasts of each finished fold's block
    (no re-fit: it is the model in service), scored like the fold's models; every metric's
    mean over the folds and the ranking metric per fold."""
    from freshcast import evaluation
    from freshcast.serving import forecast_rows

    series = frame[spec.target].to_numpy(np.float64)
    per_fold: list[dict[str, Any] | None] = []
    for fold in backtest_folds(read_json(output_path(run / "split_scale", "splits")), spec):
        sub = run / "backtest" / f"fold{fold['fold']}"
        if not artifacts.store().published(sub / "evaluate"):
            per_fold.append(None)
            continue
        scales = read_json(output_path(sub / "evaluate", "metrics"))
        rows, actual = test_targets(series, read_json(output_path(sub / "window", "layout")))
        per_fold.append(
            evaluation.score(
                actual,
                forecast_rows(bundle, frame, rows),
                scale=scales["mase_scale"],
                seasonal_scale=scales.get("mase_seasonal_scale"),
            )
        )
    done = [f for f in per_fold if f is not None]
    means = {}
    for m in (*evaluation.METRICS, "mase_seasonal"):
        values = [f[m] for f in done]
        means[m] = None if not done or None in values else float(np.mean(values))
    return {**means, "folds": [f[spec.metric] if f else None for f in per_fold]}


def _event_decision(decision: dict[str, Any]) -> dict[str, Any]:
    """The part of a decision the registry history keeps (figures of the primary metric)."""
    metric = decision["metric"]
    return {
        "trigger": decision.get("trigger"),
        "basis": decision.get("basis", "test"),
        "metric": metric,
        "candidate": decision["candidate"],
        "champion_version": decision["champion_version"],
        "improvement": decision["improvement"],
        "figures": {name: s.get(metric) for name, s in decision["scores"].items()},
        "reasons": decision["reasons"],
    }


@timed
def promote(
    run_dir: str | Path,
    *,
    run_id: str,
    verify: Callable[[Path], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Register the gate's candidate as a new version and make it the champion.

    Order, each step safe to crash after: bundle stored as the next version; bundle loaded
    and checked in a fresh process; pointer moved atomically; history written; old versions
    pruned. A retry of the same run finds its version and event and does not add another.
    """
    from freshcast.gate import verdict
    from freshcast.registry import git_commit, verify_in_fresh_process

    verify = verify or verify_in_fresh_process
    run = artifacts.local(run_dir)
    spec = run_spec(run)
    decision = read_json(output_path(run / "gate", "decision"))
    if not decision["promote"]:
        raise ArtifactError(f"{run}: the gate refused this run's candidate; nothing to promote")
    registry = Registry(spec.name)
    with registry.lock():
        done = registry.find_event(run_id=run_id, kinds=("promoted",))
        if done is not None:
            return {"version": done["version"], "pruned": [], "already": True}
        now_serving = registry.heal(run_id=run_id)["version"]
        if now_serving != decision["current_champion"]:
            why = (
                f"the champion changed to v{now_serving} after the gate compared with "
                f"v{decision['current_champion']}; retrain to compare with it"
            )
            registry.record(
                "refused",
                run_id=run_id,
                decision={**_event_decision(decision), "reasons": [why]},
                fingerprint=decision["fingerprint"],
            )
            return {"version": None, "pruned": [], "refused": why}
        name = decision["candidate"]
        model_path, _ = _candidate_model(run, name)
        gate_dir, train_dir = run / "gate", candidate_dir(run, name)
        files = {
            "model": model_path,
            "scaler": output_path(run / "split_scale", "scaler"),
            "spec": output_path(run / "ingest", "spec"),
            "history": output_path(train_dir, "history"),
            "sample_input": output_path(gate_dir, "sample_input"),
            "sample_output": output_path(gate_dir, "sample_output"),
        }
        layout = read_json(output_path(run / "window", "layout"))
        tested = read_json(output_path(run / "evaluate", "metrics"))["scores"][name]
        series = read_manifest(run / "validate", verify=False)["params"]["report"]
        trained = read_manifest(train_dir, verify=False)
        meta = {
            "model": {"name": name, "type": spec.model(name).type, **trained["params"]},
            "window": {
                "timesteps": trained["params"].get("timesteps", layout["timesteps"]),
                "horizon": layout["horizon"],
                "inputs": layout["inputs"],
            },
            "schema": {
                "timestamp": spec.timestamp_name,
                "columns": layout["columns"],
                "features": spec.features,
                "target": spec.target,
                "frequency": spec.grid_frequency,
                "dtype": "float64",
            },
            "metric": spec.metric,
            "display": data_display(run),
            "scores": decision["scores"][name],
            "test_scores": {k: v for k, v in tested.items() if k not in ("intervals", "backtest")},
            "intervals": _served_intervals(tested.get("intervals")),
            "backtest": tested.get("backtest"),
            "gate": _event_decision(decision),
            "lineage": {
                "run_id": run_id,
                "run_dir": artifacts.where(run),
                **decision["fingerprint"],
                "snapshot_sha256": read_manifest(run / "ingest", verify=False)["outputs"][
                    "snapshot"
                ]["sha256"],
                "data_start": series["start"],
                "data_end": series["end"],
                "compared_to": decision["current_champion"],
                "git_commit": git_commit(),
                "versions": trained["versions"],
            },
        }
        version = registry.add_version(files, meta=meta, run_id=run_id)
        check = verify(registry.bundle_dir(version))
        registry.set_champion(
            version,
            event={
                "kind": "promoted",
                "run_id": run_id,
                "from_version": decision["current_champion"],
                "decision": _event_decision(decision),
                "fingerprint": decision["fingerprint"],
                "verified": check,
            },
        )
        pruned = registry.prune(spec.gate.keep)
    log.info("promoted %s as v%d (checked in a fresh process: %s)", name, version, check)
    return {
        "version": version,
        "model": name,
        "metric": spec.metric,
        "score": decision["scores"][name].get(spec.metric),
        **meta["display"],
        "verdict": verdict(decision, promoted=version, **meta["display"]),
        "pruned": pruned,
    }


def _served_intervals(intervals: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a bundle serves of a candidate's intervals: per level, the radii calibrated on the
    validation and test residuals, and the test coverage measured with validation's radii."""
    if not intervals:
        return None
    return {
        key: {
            "level": entry["level"],
            "radius_by_step": entry["served_radius_by_step"],
            "test_coverage": entry["coverage"],
            "calibration": "split conformal on the validation and test windows' residuals",
        }
        for key, entry in intervals.items()
    }


@timed
def rollback(spec_file: str | Path, version: int, *, run_id: str, reason: str) -> dict[str, Any]:
    """Make `version` the champion again (checked in a fresh process first)."""
    from freshcast.registry import rollback as roll_back
    from freshcast.registry import verify_in_fresh_process

    spec = load_spec(spec_file)
    pointer = roll_back(
        Registry(spec.name),
        version,
        run_id=run_id,
        reason=reason,
        verify=verify_in_fresh_process,
    )
    meta = Registry(spec.name).meta(pointer["version"])
    metric = meta.get("metric", spec.metric)
    from freshcast import tracking

    uri = tracking.tracking_uri(spec.tracking.mlflow_uri)
    if uri is not None:  # the registered model's "champion" alias follows the rollback
        tracking.set_champion(uri=uri, pipeline=spec.name, version=pointer["version"])
    return {
        "version": pointer["version"],
        "from_version": pointer["event"]["from_version"],
        "reason": reason,
        "model": meta["model"]["name"],
        "metric": metric,
        "score": meta.get("scores", {}).get(metric),
        **(meta.get("display") or {"unit": spec.unit, "decimals": 2}),
    }
