"""What the freshcast pages in the Airflow UI show: the page data (`freshcast.views` renders it).

The plugin (`plugins/freshcast_ui.py`) does Airflow's part: the login, the user's permissions,
the routes, and what only Airflow knows (its DAG runs, their states and notes, the next
scheduled run), passed in as plain dicts (`AirflowRun`-shaped: dag_id, run_id, state, run_type,
run_after, note). Everything else is read here from the artifact store and the registry, through
the same `artifacts.store()` the tasks write, so the pages work with a folder root and an
`s3://` root alike. This module never imports airflow.

Nothing in a URL becomes a path: a pipeline is looked up by name among the loaded specs, a run
among the run folders the store lists, and a file among the outputs its step's manifest lists.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from freshcast import artifacts, display
from freshcast.artifacts import MANIFEST, ArtifactError, read_json
from freshcast.spec import PipelineSpec, load_valid_specs

RUN_KINDS = ("train", "forecast", "rollback")
# Step folders whose listed outputs the pages may serve, per kind of run.
SERVED_STEPS = {"train": ("report",), "forecast": ("forecast", "score")}
SERVED_SUFFIXES = {".png": "image/png", ".csv": "text/csv; charset=utf-8"}
MAX_RUNS = 40  # runs on the leaderboard-over-runs chart and table


class NotFound(LookupError):
    """No such pipeline, run or file (or one the URL may not name); the plugin answers 404."""


# ------------------------------------------------------------------------------ lookups


def specs() -> dict[str, PipelineSpec]:
    """Every loaded pipeline spec by name (the same specs the DAG file builds DAGs from)."""
    return {spec.name: spec for spec in load_valid_specs()}


def pipeline(name: str) -> PipelineSpec:
    """The spec named `name`; NotFound for anything else (`..`, a path, an unknown name)."""
    found = specs().get(name)
    if found is None:
        raise NotFound(f"no pipeline named {name!r}")
    return found


def dag_pipeline(dag_id: str) -> tuple[PipelineSpec, str]:
    """The pipeline a DAG belongs to and the DAG's kind (train, forecast, rollback)."""
    for spec in specs().values():
        for kind, owned in zip(RUN_KINDS, dag_ids(spec), strict=True):
            if owned == dag_id:
                return spec, kind
    raise NotFound(f"{dag_id!r} is not a freshcast DAG")


def dag_ids(spec: PipelineSpec) -> tuple[str, str, str]:
    """The pipeline's training, forecast and rollback DAG ids, in RUN_KINDS order."""
    return spec.dag_id, spec.forecast_dag_id, spec.rollback_dag_id


def _runs_root(spec: PipelineSpec, kind: str) -> Path:
    root = artifacts.artifact_root() / spec.name
    return root / "runs" if kind == "train" else root / "forecasts" / "runs"


def run_dir(spec: PipelineSpec, kind: str, run_id: str) -> Path:
    """The run's folder in the working copy, if the store lists it; NotFound otherwise.

    A run id that looks like a path (a slash, a backslash, `..`, a leading dot) is refused;
    the rest goes through `safe_run_id` (letters, digits, `._-` only) and must then be a folder
    the store holds.
    """
    if kind not in SERVED_STEPS:
        raise NotFound(f"{kind} runs keep no files")
    if re.search(r"[/\\\x00]|\.\.", run_id) or run_id.startswith("."):
        raise NotFound(f"no run {run_id!r}")  # no Airflow run id looks like a path
    try:
        folder = artifacts.safe_run_id(run_id)
    except ValueError:
        raise NotFound(f"no run {run_id!r}") from None
    root = _runs_root(spec, kind)
    if folder not in artifacts.store().names(root):
        raise NotFound(f"{spec.name} has no {kind} run {run_id!r}")
    return root / folder


def read_output(step_dir: Path, name: str) -> Path | None:
    """One output of a finished step, fetched alone (not the whole folder) and checked against
    its manifest's sha256; None when the step has not finished (no manifest)."""
    store = artifacts.store()
    if not store.get(step_dir / MANIFEST):
        return None
    entry = read_json(step_dir / MANIFEST)["outputs"].get(name)
    if entry is None:
        return None
    path = step_dir / entry["path"]
    if not (path.exists() and artifacts.sha256_file(path) == entry["sha256"]):
        store.get(path)
    return artifacts.verify_file(path, entry["sha256"], what=f"{step_dir.name}.{name}")


def served_file(spec: PipelineSpec, kind: str, run_id: str, step: str, name: str) -> Path:
    """A picture or table a page shows: a listed output of one of the run's served steps."""
    if step not in SERVED_STEPS.get(kind, ()) or Path(name).suffix not in SERVED_SUFFIXES:
        raise NotFound(f"{step}/{name} is not served")
    step_dir = run_dir(spec, kind, run_id) / step
    store = artifacts.store()
    if not store.get(step_dir / MANIFEST):
        raise NotFound(f"{step} of run {run_id!r} has not finished")
    outputs = read_json(step_dir / MANIFEST)["outputs"]
    for key, entry in outputs.items():
        if entry["path"] == name:  # relative to the step folder: a plain file name
            path = read_output(step_dir, key)
            if path is not None:
                return path
    raise NotFound(f"{step} of run {run_id!r} has no file {name!r}")


def _json_output(step_dir: Path, name: str) -> Any:
    path = read_output(step_dir, name)
    return None if path is None else read_json(path)


# ------------------------------------------------------------------------------ page data


def champion(spec: PipelineSpec) -> dict[str, Any] | None:
    """The model in service: version, model, metric, score, since, run and data end."""
    from freshcast.registry import Registry

    registry = Registry(spec.name)
    pointer = registry.champion()
    if pointer is None and (event := registry.last_champion_event()):  # the history's word
        pointer = {"version": event["version"], "since": event["at"]}
    if pointer is None:
        return None
    meta = registry.meta(pointer["version"])
    metric = meta.get("metric", spec.metric)
    return {
        "version": pointer["version"],
        "since": pointer["since"],
        "problems": registry.problems(verify=False),  # the files are checked by every run
        "model": meta["model"]["name"],
        "type": meta["model"].get("type"),
        "metric": metric,
        "score": meta.get("scores", {}).get(metric),
        "run_id": meta["lineage"]["run_id"],
        "data_end": meta["lineage"].get("data_end"),
        **(meta.get("display") or {"unit": spec.unit, "decimals": 2}),
    }


def run_decision(spec: PipelineSpec, run_id: str) -> dict[str, Any] | None:
    """A training run's gate decision with its verdict in words, if its gate finished."""
    try:
        folder = run_dir(spec, "train", run_id)
    except NotFound:
        return None
    return _decision(spec, folder, _promotions(spec))


def _promotions(spec: PipelineSpec) -> dict[str, int]:
    """Run folder -> the registry version its promotion made (the history read once)."""
    from freshcast.registry import Registry

    return {
        artifacts.safe_run_id(e["run_id"]): e["version"]
        for e in Registry(spec.name).history()
        if e["kind"] == "promoted" and e.get("run_id")
    }


def _decision(
    spec: PipelineSpec,
    folder: Path,
    promotions: Mapping[str, int],
    metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The decision in a run folder, with "promoted" and its "verdict" in words; `metrics`
    when the caller has read them already."""
    from freshcast.gate import verdict

    decision = _json_output(folder / "gate", "decision")
    if decision is None:
        return None
    if metrics is None:
        metrics = _json_output(folder / "evaluate", "metrics") or {}
    promoted = promotions.get(folder.name)
    decision["verdict"] = verdict(
        decision,
        promoted=promoted,
        unit=metrics.get("unit", spec.unit),
        decimals=metrics.get("decimals", 2),
    )
    decision["promoted"] = promoted
    return decision


def _records(frame: Any) -> list[dict[str, Any]]:
    """A frame's rows as dicts, NaN as None (the pages' JSON is strict)."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _bounds(frame: Any) -> tuple[list[str], list[str]]:
    """The interval level keys of a forecast frame (narrowest first) and their bound columns."""
    from freshcast.forecasts import interval_keys

    levels = sorted(interval_keys(frame), key=float)
    return levels, [f"{side}_{key}" for key in levels for side in ("lower", "upper")]


def latest_forecast(spec: PipelineSpec, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The newest forecast run (of `runs`, newest first) whose forecast folder is published:
    its rows with their interval bounds, and the live accuracy, interval coverage and drift
    check from its scoring when that finished."""
    import pandas as pd

    for run in runs:
        try:
            folder = run_dir(spec, "forecast", run["run_id"])
        except NotFound:
            continue
        path = read_output(folder / "forecast", "forecast_csv")
        if path is None:
            continue
        rows = pd.read_csv(path)
        params = read_json(folder / "forecast" / MANIFEST)["params"]
        accuracy, drift = None, None
        by_version = read_output(folder / "score", "by_version")
        if by_version is not None:
            accuracy = _records(pd.read_csv(by_version))
            drift = _json_output(folder / "score", "drift")  # null without a drift check
        levels, bounds = _bounds(rows)
        return {
            "run_id": run["run_id"],
            "dag_id": spec.forecast_dag_id,
            "version": params.get("version"),
            "made_at": str(rows["made_at"].iloc[0]),
            "origin": str(rows["origin"].iloc[0]),
            "rows": _records(rows[["time", "step", "forecast", *bounds]]),
            "levels": levels,
            "accuracy": accuracy,
            "scored": by_version is not None,
            "drift": drift,
            **(params.get("display") or {"unit": spec.unit, "decimals": 2}),
        }
    return None


def overview_row(spec: PipelineSpec, airflow: Mapping[str, Any]) -> dict[str, Any]:
    """One pipeline on the overview: champion, last training run and its outcome, next run,
    latest forecast and its live accuracy.

    Args:
        airflow: {"train_runs": [run, ...] newest first, "forecast_runs": [...],
            "next_run": ISO time or None, "paused": bool}.
    """
    champ = champion(spec)
    train_runs = list(airflow.get("train_runs") or [])
    last = dict(train_runs[0]) if train_runs else None
    if last is not None:
        decision = run_decision(spec, last["run_id"])
        last["outcome"] = (decision or {}).get("verdict") or last.get("note") or ""
        last["trigger"] = (decision or {}).get("trigger")
    return {
        "name": spec.name,
        "description": spec.description,
        "target": spec.target,
        "unit": spec.unit,
        "metric": spec.metric,
        "dag_ids": dag_ids(spec),
        "champion": champ,
        "last_run": last,
        "next_run": airflow.get("next_run"),
        "paused": airflow.get("paused"),
        "forecast": latest_forecast(spec, airflow.get("forecast_runs") or []),
    }


def runs_over_time(spec: PipelineSpec, airflow_runs: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Every evaluated training run, oldest first: its candidate, the champion re-scored on
    its test window, every model and baseline on the spec's metric, and the decision."""
    known = {artifacts.safe_run_id(r["run_id"]): r for r in airflow_runs}
    promotions = _promotions(spec)
    rows = []
    root = _runs_root(spec, "train")
    for folder in artifacts.store().names(root):
        metrics = _json_output(root / folder / "evaluate", "metrics")
        if metrics is None:
            continue
        run = known.get(folder, {"run_id": folder, "state": None})
        decision = _decision(spec, root / folder, promotions, metrics)
        written = read_json(root / folder / "evaluate" / MANIFEST).get("written_at", "")
        metric = metrics["metric"]
        # One line per model, ensemble and baseline; an ensemble's seeds stay in the run report.
        shown = {n: s for n, s in metrics["scores"].items() if s["kind"] != "seed"}
        scores = {name: s.get(metric) for name, s in shown.items()}
        champion_score = None
        if decision:
            held = [s.get(metric) for s in decision["scores"].values() if s["role"] == "champion"]
            champion_score = held[0] if held else None
        candidate = _candidate(shown, metric, decision)
        figures = shown.get(candidate) or {}
        backtest = figures.get("backtest") or {}
        rows.append(
            {
                "run_id": run["run_id"],
                "state": run.get("state"),
                "written_at": written,
                "metric": metric,
                "unit": metrics.get("unit", spec.unit),
                "decimals": metrics.get("decimals", 2),
                "kinds": {name: s["kind"] for name, s in shown.items()},
                "scores": scores,
                "candidate": (decision or {}).get("candidate"),
                "champion_version": (decision or {}).get("champion_version"),
                "champion_score": champion_score,
                "promoted": (decision or {}).get("promoted"),
                "verdict": (decision or {}).get("verdict", ""),
                "trigger": (decision or {}).get("trigger"),
                "basis": (decision or {}).get("basis", "test"),
                # The candidate's (the best model's, before a decision) intervals and backtest.
                "intervals": {
                    key: {k: entry.get(k) for k in ("level", "coverage", "width")}
                    for key, entry in (figures.get("intervals") or {}).items()
                    if entry
                },
                "backtest_mean": (backtest.get("mean") or {}).get(backtest.get("metric", metric)),
                "backtest_folds": len(backtest.get("folds") or []),
            }
        )
    rows.sort(key=lambda r: r["written_at"])
    return rows[-MAX_RUNS:]


def _candidate(
    scores: Mapping[str, Mapping[str, Any]], metric: str, decision: Mapping[str, Any] | None
) -> str | None:
    """The run's candidate: the decision's, or before a decision the model or ensemble with
    the lowest `metric`."""
    if decision and decision.get("candidate"):
        return decision["candidate"]
    ranked = sorted(
        (s[metric], name)
        for name, s in scores.items()
        if s["kind"] in ("model", "ensemble") and isinstance(s.get(metric), int | float)
    )
    return ranked[0][1] if ranked else None


def registry_view(spec: PipelineSpec) -> dict[str, Any]:
    """Versions with their lineage and every event (promoted, refused, rolled back)."""
    from freshcast.registry import Registry

    registry = Registry(spec.name)
    pointer = registry.champion()
    versions = []
    for version in registry.versions():
        try:
            meta = registry.meta(version)
        except ArtifactError:
            continue
        metric = meta.get("metric", spec.metric)
        lineage = meta.get("lineage", {})
        versions.append(
            {
                "version": version,
                "model": meta["model"]["name"],
                "type": meta["model"].get("type"),
                "metric": metric,
                "score": meta.get("scores", {}).get(metric),
                "run_id": lineage.get("run_id"),
                "data_start": lineage.get("data_start"),
                "data_end": lineage.get("data_end"),
                "compared_to": lineage.get("compared_to"),
                "git_commit": lineage.get("git_commit"),
                "data_sha256": lineage.get("data_sha256"),
                "serving": bool(pointer and pointer["version"] == version),
                **(meta.get("display") or {"unit": spec.unit, "decimals": 2}),
            }
        )
    events = []
    for event in reversed(registry.history()):
        decision = event.get("decision") or {}
        if event["kind"] in ("rolled_back", "restored"):
            what = f"{display.version_label(event.get('from_version'))} → v{event['version']}"
            why = [event.get("reason") or ""]
        elif event["kind"] == "damaged":
            what = f"v{event.get('version')} fails its check"
            why = [event.get("problem") or ""]
        elif event["kind"] == "repaired":
            what = "registry repaired"
            why = list(event.get("actions", []))
        elif event["kind"] == "promoted":
            what = f"{decision.get('candidate')} → v{event['version']}"
            why = decision.get("reasons", [])
        elif event["kind"] == "drift":  # recorded by a forecast run; it triggers a retraining
            ratio = event.get("ratio")
            times = f": live MAE {ratio:.2f} × test MAE" if isinstance(ratio, int | float) else ""
            what = f"v{event.get('version')} drifted{times}"
            why = [event.get("reason") or ""]
        else:
            what = f"{decision.get('candidate')} refused"
            why = decision.get("reasons", [])
        events.append(
            {
                "seq": event["seq"],
                "at": event["at"],
                "kind": event["kind"],
                "run_id": event.get("run_id"),
                "what": what,
                "reasons": [r for r in why if r and r not in ("promote", "refuse")],
                "trigger": decision.get("trigger"),
            }
        )
    return {
        "champion": (pointer or registry.last_champion_event() or {}).get("version"),
        "versions": versions,
        "events": events,
    }


def forecast_table(spec: PipelineSpec, limit: int = 30) -> list[dict[str, Any]]:
    """The newest forecast rows of the history, with the actual value where it has arrived
    (from the latest scoring) and the interval bounds served with it ("bounds": level key ->
    [lower, upper], empty for a forecast served without), newest target time first."""
    import pandas as pd

    from freshcast.forecasts import history_path, read_history

    path = history_path(spec.name)
    if not artifacts.store().get(path):
        return []
    history = read_history(path)
    if history.empty:
        return []
    actual = {}
    newest = history.sort_values("made_at").iloc[-1]["run_id"]
    try:
        scored_path = read_output(run_dir(spec, "forecast", newest) / "score", "scored")
    except NotFound:
        scored_path = None
    if scored_path is not None:
        scored = pd.read_parquet(scored_path).dropna(subset=["actual"])
        actual = {(r.run_id, str(r.time), int(r.step)): r.actual for r in scored.itertuples()}
    recent = history.sort_values(["time", "made_at"], ascending=False).head(limit)
    levels, _ = _bounds(recent)
    out = []
    for r in _records(recent):
        bounds = {key: [r[f"lower_{key}"], r[f"upper_{key}"]] for key in levels}
        out.append(
            {
                "time": str(r["time"]),
                "step": int(r["step"]),
                "forecast": float(r["forecast"]),
                "actual": actual.get((r["run_id"], str(r["time"]), int(r["step"]))),
                "version": int(r["model_version"]),
                "made_at": str(r["made_at"]),
                "run_id": r["run_id"],
                "bounds": {k: v for k, v in bounds.items() if None not in v},
            }
        )
    return out


def pipeline_detail(spec: PipelineSpec, airflow: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the pipeline page shows (also its JSON endpoint)."""
    summary = overview_row(spec, airflow)
    runs = runs_over_time(spec, airflow.get("train_runs") or [])
    return {
        **summary,
        "runs": runs,
        "registry": registry_view(spec),
        "forecasts": forecast_table(spec),
    }


# ------------------------------------------------------------------------------ DAG-run notes


def run_note(kind: str, states: Mapping[str, str], results: Mapping[str, Any]) -> str | None:
    """The note a finished run gets in Airflow's grid: what it did, in one sentence.

    Args:
        kind: "train", "forecast" or "rollback".
        states: task id -> state of the run's task instances (mapped tasks: any one).
        results: task id -> its XCom return value; "data_changed.reason" -> why it trains or
            not; "<task>.reason" -> why a task failed at once (a failure no retry can change).
    """
    repaired = [a for t in ("gate", "forecast") for a in (results.get(t) or {}).get("registry", [])]
    said = _what_the_run_did(kind, states, results)
    if repaired:  # the registry healed itself: said once, in the run that did it
        return "registry: " + "; ".join(repaired) + (f" | {said}" if said else "")
    return said


def _what_the_run_did(
    kind: str, states: Mapping[str, str], results: Mapping[str, Any]
) -> str | None:
    failed = sorted(t for t, s in states.items() if s in ("failed", "upstream_failed"))
    if failed:
        said = [results[f"{t}.reason"] for t in failed if results.get(f"{t}.reason")]
        why = said[0] if said else "see the task log for the error and its fix"
        return f"failed at {', '.join(failed)}: {why}"
    if kind == "train":
        reason = results.get("data_changed.reason")
        # A short-circuit that returns False pushes no return value: its skipped tasks say it.
        if results.get("data_changed") is False or (reason and states.get("validate") == "skipped"):
            return f"trained nothing: {reason or 'nothing changed'}"
        promoted = results.get("promote") or {}
        if promoted.get("verdict"):
            return promoted["verdict"]
        gate = results.get("gate") or {}
        return gate.get("verdict")
    if kind == "forecast":
        made = results.get("forecast")
        if not made:
            return "forecast nothing: the pipeline has no champion yet" if states else None
        unit, decimals = made.get("unit", ""), int(made.get("decimals", 2))
        steps = list(made["forecast"].items())
        shown = ", ".join(
            f"{display.when(t)}: {display.with_unit(display.number(v, decimals + 1), unit)}"
            for t, v in steps[:3]
        )
        more = f" (+{len(steps) - 3} more)" if len(steps) > 3 else ""
        return f"v{made['version']} forecast {shown}{more}"
    if kind == "rollback":
        done = results.get("rollback") or {}
        if done:
            return (
                f"champion {display.version_label(done.get('from_version'))} → v{done['version']} "
                f"({done.get('model', '')}): {done.get('reason', '')}"
            )
    return None


def report_summary(spec: PipelineSpec, kind: str, run_id: str, step: str) -> dict[str, Any] | None:
    """The `summary.json` of a run's report (step "report") or forecast page ("score"), if
    that step finished."""
    try:
        folder = run_dir(spec, kind, run_id)
    except NotFound:
        return None
    return _json_output(folder / step, "summary")
