"""The run's records beside its leaderboard, as the run report shows them (plain data): the
gate's decision and what started the run, the backtest's folds, the hyperparameter search's
trials and the learning-rate sweeps.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from freshcast.report.formatting import as_float, finite, ordered, row_label

GATE_METRICS = ("mae", "rmse", "mase", "smape")
SWEEP_FILE = "lr_sweep_{}.png"  # one learning-rate sweep figure per model
# Why a training run started (its decision's "trigger"), in words.
TRIGGERS = {
    "schedule": "the training DAG's schedule",
    "drift": "the champion's live error drifted past its drift ratio",
    "manual": "a person triggered it",
    "replay": "a replay of past data",
}


def started_by(trigger: Any) -> str | None:
    """What started a training run, in words: "drift (the champion's live error drifted past
    its drift ratio)"; None when the decision does not say."""
    if not trigger:
        return None
    said = TRIGGERS.get(str(trigger))
    return f"{trigger} ({said})" if said else str(trigger)


def gate_summary(decision: Mapping[str, Any], promoted: int | None) -> dict[str, Any]:
    """The gate's verdict in words, its reasons and its figures sorted by its metric."""
    metric = decision["metric"]
    if decision["promote"] and promoted is not None:
        verdict = f"promoted: {decision['candidate']} is now champion v{promoted}"
    elif decision["promote"]:
        verdict = f"promote {decision['candidate']} (not registered: see the promote task)"
    else:
        held = decision.get("current_champion")
        verdict = "refused: " + (f"champion v{held} stays" if held else "no champion yet")
    scores = [
        {
            "name": str(name),
            "role": str(entry.get("role", "")),
            **{m: entry.get(m) for m in dict.fromkeys((metric, *GATE_METRICS))},
        }
        for name, entry in decision.get("scores", {}).items()
    ]
    scores.sort(key=lambda row: (not finite(row[metric]), as_float(row[metric]), row["name"]))
    return {
        "verdict": verdict,
        "promote": bool(decision["promote"]),
        "promoted": promoted,
        "candidate": decision.get("candidate"),
        "metric": metric,
        "reasons": [str(r) for r in decision.get("reasons", [])],
        "scores": scores,
        "trigger": decision.get("trigger"),
        "basis": decision.get("basis", "test"),
    }


def backtest_summary(
    leaderboard: Sequence[Mapping[str, Any]],
    record: Mapping[str, Any] | None,
    decision: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    """The backtest as the report shows it: its folds (with their date ranges when `record` or
    the decision has them), and per model, ensemble and baseline (and the champion, when the
    gate decided on the backtest) the metric on each fold, the mean and the spread, ranked by
    the mean. None when no row has a backtest."""
    scored = [r for r in leaderboard if r["kind"] != "seed" and r.get("backtest")]
    if not scored:
        return None
    decision = decision or {}
    record = record or decision.get("backtest") or {}
    metric = str(scored[0]["backtest"].get("metric") or record.get("metric") or "mae")
    rows = [
        {
            "name": str(row["name"]),
            "label": row_label(row),
            "kind": row["kind"],
            "folds": list(row["backtest"].get("folds") or []),
            "mean": (row["backtest"].get("mean") or {}).get(metric),
            "spread": row["backtest"].get("spread"),
        }
        for row in scored
    ]
    basis = decision.get("basis")
    if basis == "backtest":
        for name, entry in (decision.get("scores") or {}).items():
            if entry.get("role") == "champion":
                folds = list(entry.get("folds") or [])
                values = np.array([as_float(v) for v in folds], dtype=np.float64)  # [folds]
                values = values[np.isfinite(values)]
                spread = float(np.std(values, ddof=1)) if values.size > 1 else None
                rows.append(
                    {
                        "name": str(name),
                        "label": str(name),
                        "kind": "champion",
                        "folds": folds,
                        "mean": entry.get(metric),
                        "spread": spread,
                    }
                )
    rows.sort(key=lambda r: (not finite(r["mean"]), as_float(r["mean"]), r["name"]))
    count = max([len(r["folds"]) for r in rows] + [len(record.get("folds") or [])])
    given = {int(f["fold"]): f for f in record.get("folds") or [] if f.get("fold") is not None}
    folds = [
        {
            "fold": k,
            **{key: given.get(k, {}).get(key) for key in ("start", "end", "rows", "done")},
        }
        for k in range(1, count + 1)
    ]
    return {
        "metric": metric,
        "gate": record.get("gate"),
        "basis": basis,
        "folds": folds,
        "rows": rows,
    }


def tuning_summary(tuning: Mapping[str, Any]) -> dict[str, Any]:
    """The search's trials sorted by validation MAE (none last), each chosen one marked."""
    models = {
        str(model): {
            "chosen": entry.get("chosen"),
            "params": dict(entry.get("params") or {}),
            "val_mae": entry.get("val_mae"),
        }
        for model, entry in (tuning.get("models") or {}).items()
    }
    chosen = {str(m["chosen"]) for m in models.values() if m["chosen"] is not None}
    trials = [
        {
            "name": str(trial["name"]),
            "model": str(trial.get("model", "")),
            "params": dict(trial.get("params") or {}),
            "val_mae": trial.get("val_mae"),
            "val_loss": trial.get("val_loss"),
            "epochs_run": trial.get("epochs_run"),
            "chosen": bool(trial.get("chosen")) or str(trial["name"]) in chosen,
        }
        for trial in tuning.get("trials") or ()
    ]
    trials.sort(key=lambda t: (not finite(t["val_mae"]), as_float(t["val_mae"]), t["name"]))
    return {"metric": str(tuning.get("metric", "mae")), "models": models, "trials": trials}


def sweep_summaries(
    sweeps: Mapping[str, Mapping[str, Any]], leaderboard: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The sweeps in leaderboard order, each with the name of its figure's file."""
    sweeps = {str(model): sweep for model, sweep in sweeps.items()}
    out, files = [], set()
    for model in ordered(sweeps, leaderboard):
        sweep = sweeps[model]
        rates, losses = list(sweep.get("rates") or ()), list(sweep.get("losses") or ())
        if len(rates) != len(losses):
            raise ValueError(
                f"The sweep of {model!r} needs one loss per rate. Received: {len(rates)} rates, "
                f"{len(losses)} losses"
            )
        # A file name from a model name: safe characters only, and one file per model.
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", model).strip("._") or "model"
        name, n = SWEEP_FILE.format(stem), 1
        while name in files:
            n += 1
            name = SWEEP_FILE.format(f"{stem}-{n}")
        files.add(name)
        out.append(
            {
                "model": model,
                "rates": rates,
                "losses": losses,
                "suggested": sweep.get("suggested"),
                "rule": str(sweep.get("rule") or ""),
                "low": sweep.get("low"),
                "high": sweep.get("high"),
                "image": name,
            }
        )
    return out
