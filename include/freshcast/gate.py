"""The champion/challenger gate: may this run's best model replace the one in service?

A pure function of scores that were all measured on the same, newest test window: the run's
candidate, the champion re-scored on that window, and the naive baselines. Every metric here is
lower-is-better (MAE, RMSE, MAPE, sMAPE, MASE).

Rules, in order:
0. a run whose data ends before the champion's data ended never replaces it (a backfill into
   the past, run after a newer champion);
1. the candidate's score must be a finite number (a broken model is refused);
2. it must beat persistence and seasonal naive (strictly);
3. with a comparable champion, it must beat the champion's score by the spec's margin:
   relative: (champion - candidate) / champion >= margin; absolute: champion - candidate >=
   margin; and in both cases strictly better than the champion.
   Without a champion (first run, or a champion that cannot forecast this data because the spec
   changed its target, horizon or columns), rule 2 is enough.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from freshcast.spec import GateSpec


@dataclass
class Decision:
    """The gate's verdict and its reasons, with every figure it used side by side."""

    promote: bool
    metric: str
    candidate: str | None
    reasons: list[str]
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    champion_version: int | None = None
    improvement: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _figure(value: float | None) -> float:
    """A metric as a float; one without a value (None, JSON's null) is nan."""
    return math.nan if value is None else float(value)


def decide(
    *,
    metric: str,
    candidate: tuple[str, Mapping[str, float]] | None,
    champion: tuple[int, Mapping[str, float]] | None,
    baselines: Mapping[str, Mapping[str, float]],
    gate: GateSpec,
    champion_note: str | None = None,
    data_end: str | None = None,
    champion_data_end: str | None = None,
) -> Decision:
    """Apply the rules above.

    Args:
        metric: the primary metric, a key of every score mapping.
        candidate: (model name, its scores) or None when no model trained.
        champion: (version, its scores re-measured on the same window) or None.
        baselines: baseline name -> scores; must hold "persistence" and a "seasonal_naive_*".
        gate: margin and margin type from the spec.
        champion_note: why there is no comparable champion, when there is a champion in service
            that could not be compared; recorded among the reasons.
        data_end, champion_data_end: ISO times of the last row this run and the champion saw.

    Returns:
        The decision; `scores` holds "candidate", "champion" (if any) and each baseline.
    """
    scores: dict[str, dict[str, Any]] = {
        name: {"role": "baseline", **s} for name, s in baselines.items()
    }
    if candidate is None:
        return Decision(False, metric, None, ["no trained model to consider"], scores)
    name, cand = candidate
    scores[name] = {"role": "candidate", **cand}
    if champion is not None:
        scores[f"champion_v{champion[0]}"] = {"role": "champion", **champion[1]}
    decision = Decision(
        False, metric, name, [], scores, champion_version=champion[0] if champion else None
    )
    if data_end and champion_data_end and _time(data_end) < _time(champion_data_end):
        decision.reasons.append(
            f"the champion was trained on data up to {champion_data_end}, newer than this run's "
            f"(up to {data_end}): a run on older data never replaces it; refuse"
        )
        return decision
    value = _figure(cand.get(metric))
    if not math.isfinite(value):
        decision.reasons.append(f"candidate {name} has no finite {metric} ({value}): refused")
        return decision

    beaten = True
    for base in _required_baselines(baselines):
        other = _figure(baselines[base][metric])
        if value < other or not math.isfinite(other):
            decision.reasons.append(f"{name} {metric} {value:.4g} beats {base} {other:.4g}")
        else:
            beaten = False
            decision.reasons.append(f"{name} {metric} {value:.4g} does not beat {base} {other:.4g}")

    promote = beaten
    if champion is None:
        decision.reasons.append(champion_note or "no champion yet: beating the baselines suffices")
    else:
        version, champ = champion
        held = _figure(champ[metric])
        if not math.isfinite(held):
            decision.reasons.append(
                f"champion v{version} has no finite {metric}: any candidate wins"
            )
        else:
            gain = held - value
            improvement = gain / abs(held) if gate.margin_type == "relative" and held else gain
            decision.improvement = improvement
            unit = "" if gate.margin_type == "absolute" else " (relative)"
            shown = f"{improvement:.2%}" if gate.margin_type == "relative" else f"{improvement:.4g}"
            wanted = (
                f"{gate.margin:.2%}" if gate.margin_type == "relative" else f"{gate.margin:.4g}"
            )
            # isclose: 1.2 - 1.1 is 0.0999... in floating point, and should meet a 0.1 margin
            meets = improvement >= gate.margin or math.isclose(improvement, gate.margin)
            if gain > 0 and meets:
                decision.reasons.append(
                    f"{name} {metric} {value:.4g} beats champion v{version} {held:.4g} by "
                    f"{shown}{unit}, margin {wanted}"
                )
            else:
                promote = False
                decision.reasons.append(
                    f"{name} {metric} {value:.4g} vs champion v{version} {held:.4g}: improvement "
                    f"{shown}{unit} is below the margin {wanted}; the champion stays"
                )
    decision.promote = promote
    decision.reasons.append("promote" if promote else "refuse")
    return decision


def _time(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def _required_baselines(baselines: Mapping[str, Any]) -> list[str]:
    required = ["persistence", *sorted(b for b in baselines if b.startswith("seasonal_naive"))]
    missing = [b for b in required if b not in baselines]
    if missing or len(required) < 2:
        raise ValueError(
            "the gate needs persistence and seasonal naive scores. "
            f"Received baselines: {sorted(baselines)}"
        )
    return required


def verdict(
    decision: Mapping[str, Any], *, promoted: int | None = None, unit: str = "", decimals: int = 2
) -> str:
    """The decision in one sentence a person reads in the UI (a DAG-run note, a page, a log):
    "champion v3 kept: candidate gru 2.31 °C vs 2.25 °C (mae, margin not met)".

    Args:
        decision: `Decision.to_json()`, possibly with "current_champion" added by the gate step.
        promoted: the registry version the candidate became, when it did.
        unit, decimals: the target's unit and the decimals its data is recorded with.
    """
    from freshcast.display import metric_value

    metric, name = decision["metric"], decision.get("candidate")
    if name is None:
        return "nothing to decide: no model trained"
    scores = decision.get("scores", {})

    def shown(entry: str) -> str:
        value = scores.get(entry, {}).get(metric)
        return metric_value(metric, value, decimals=decimals, unit=unit)

    champion = decision.get("champion_version")
    held = decision.get("current_champion", champion)
    versus = f" vs champion v{champion} {shown(f'champion_v{champion}')}" if champion else ""
    if decision["promote"]:
        head = f"{name} promoted to v{promoted}" if promoted else f"{name} passed the gate"
        tail = versus or ", beats the naive baselines (no champion to compare)"
        return f"{head}: {metric} {shown(name)}{tail}"
    reasons = [r for r in decision.get("reasons", []) if r not in ("promote", "refuse")]
    why = reasons[-1] if reasons else "refused"
    if champion:
        lost = [r for r in reasons if "does not beat" in r]  # a baseline it lost to
        return (
            f"champion v{champion} kept: candidate {name} {shown(name)} vs "
            f"{shown(f'champion_v{champion}')} ({metric})" + (f"; {lost[0]}" if lost else "")
        )
    keeps = f"champion v{held} kept" if held else "no champion yet"
    return f"{keeps}: candidate {name} ({metric} {shown(name)}) refused: {why}"
