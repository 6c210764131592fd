"""The champion/challenger gate: may this run's best model replace the one in service?

A pure function of scores that were all measured on the same, newest test window: the run's
candidate (a model or an ensemble: its kind plays no part), the champion re-scored on that
window, and the baselines. Every metric here is lower-is-better (MAE, RMSE, MAPE, sMAPE, MASE).

Rules, in order:
0. a run whose data ends before the champion's data ended never replaces it (a backfill into
   the past, run after a newer champion);
1. the candidate's score must be a finite number (a broken model is refused);
2. it must beat (strictly) each baseline the spec's `gate.beat` lists: persistence, seasonal
   naive (the "seasonal_naive_<season>" score), ridge (alpha chosen on the validation split);
   a baseline without a finite score counts as beaten, and `beat: []` skips this rule;
3. with a comparable champion, it must beat the champion's score by the spec's margin:
   relative: (champion - candidate) / champion >= margin; absolute: champion - candidate >=
   margin; and in both cases strictly better than the champion.
   Without a champion (first run, or a champion that cannot forecast this data because the spec
   changed its target, horizon or columns), rule 2 is enough.
A baseline that `gate.beat` lists but the scores lack is an error, not a pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
    must_beat: list[str] = field(default_factory=list)  # baseline names rule 2 compared
    lost_to: list[str] = field(default_factory=list)  # those the candidate did not beat, best first

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
        baselines: baseline name -> scores; must hold each one `gate.beat` lists ("persistence",
            "seasonal_naive_<season>", "ridge"); the others are recorded, not compared.
        gate: margin, margin type and the baselines to beat, from the spec.
        champion_note: why there is no comparable champion, when there is a champion in service
            that could not be compared; recorded among the reasons.
        data_end, champion_data_end: ISO times of the last row this run and the champion saw.

    Returns:
        The decision; `scores` holds "candidate", "champion" (if any) and each baseline;
        `must_beat` the baselines rule 2 compares, `lost_to` those that beat the candidate.

    Raises:
        ValueError: when `baselines` lacks one that `gate.beat` lists.
    """
    must_beat = _baselines_to_beat(gate.beat, baselines)
    scores: dict[str, dict[str, Any]] = {
        name: {"role": "baseline", **s} for name, s in baselines.items()
    }
    if candidate is None:
        reasons = ["no trained model to consider"]
        return Decision(False, metric, None, reasons, scores, must_beat=must_beat)
    name, cand = candidate
    scores[name] = {"role": "candidate", **cand}
    if champion is not None:
        scores[f"champion_v{champion[0]}"] = {"role": "champion", **champion[1]}
    decision = Decision(
        False,
        metric,
        name,
        [],
        scores,
        champion_version=champion[0] if champion else None,
        must_beat=must_beat,
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

    lost = []
    for base in must_beat:
        other = _figure(baselines[base][metric])
        if value < other or not math.isfinite(other):
            decision.reasons.append(f"{name} {metric} {value:.4g} beats {base} {other:.4g}")
        else:
            lost.append(base)
            decision.reasons.append(f"{name} {metric} {value:.4g} does not beat {base} {other:.4g}")
    decision.lost_to = sorted(lost, key=lambda base: _figure(baselines[base][metric]))

    promote = not lost
    if champion is None:
        alone = (
            "no champion yet: beating the baselines suffices"
            if must_beat
            else "no champion yet and no baseline to beat (gate.beat is empty): a finite score "
            "suffices"
        )
        decision.reasons.append(champion_note or alone)
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


def _baselines_to_beat(beat: Sequence[str], baselines: Mapping[str, Any]) -> list[str]:
    """The score names of the baselines `beat` lists, in its order: "seasonal_naive" is the
    "seasonal_naive_<season>" score."""
    names: list[str] = []
    for wanted in dict.fromkeys(beat):
        if wanted == "seasonal_naive":
            found = sorted(b for b in baselines if b.startswith("seasonal_naive_"))
        else:
            found = [wanted] if wanted in baselines else []
        if not found:
            key = "seasonal_naive_<season>" if wanted == "seasonal_naive" else wanted
            raise ValueError(
                f"the gate must beat {wanted} (gate.beat={list(beat)}), but no {key!r} baseline "
                f"was scored. Received baselines: {sorted(baselines)}"
            )
        names += found
    return names


def verdict(
    decision: Mapping[str, Any], *, promoted: int | None = None, unit: str = "", decimals: int = 2
) -> str:
    """The decision in one sentence a person reads in the UI (a DAG-run note, a page, a log):
    "champion v3 kept: candidate gru 2.31 °C vs 2.25 °C (mae, margin not met)", or for a
    baseline that won, "no champion yet: candidate gru (mae 2.22 °C) refused: ridge 2.19 °C
    beats it".

    Args:
        decision: `Decision.to_json()`, possibly with "current_champion" added by the gate step;
            one recorded before "must_beat" and "lost_to" existed is told from its reasons.
        promoted: the registry version the candidate became, when it did.
        unit, decimals: the target's unit and the decimals its data is recorded with.
    """
    from freshcast.display import metric_value

    metric, name = decision["metric"], decision.get("candidate")
    if name is None:
        return "nothing to decide: no model trained"
    if decision.get("basis") == "backtest":  # the figures are the folds' means
        metric = f"backtest mean {metric}"
    scores = decision.get("scores", {})

    def shown(entry: str) -> str:
        value = scores.get(entry, {}).get(decision["metric"])
        return metric_value(decision["metric"], value, decimals=decimals, unit=unit)

    champion = decision.get("champion_version")
    held = decision.get("current_champion", champion)
    versus = f" vs champion v{champion} {shown(f'champion_v{champion}')}" if champion else ""
    if decision["promote"]:
        head = f"{name} promoted to v{promoted}" if promoted else f"{name} passed the gate"
        if "must_beat" not in decision:
            alone = ", beats the naive baselines (no champion to compare)"
        elif decision["must_beat"]:
            alone = f", beats {_listed(decision['must_beat'])} (no champion to compare)"
        else:
            alone = " (no champion, and no baseline to beat)"
        return f"{head}: {metric} {shown(name)}{versus or alone}"
    reasons = [r for r in decision.get("reasons", []) if r not in ("promote", "refuse")]
    winners = [f"{base} {shown(base)}" for base in decision.get("lost_to", [])]
    # Recorded before "lost_to" existed: the first baseline it lost to, as the reasons say.
    old = [r for r in reasons if "does not beat" in r] if "lost_to" not in decision else []
    if champion:
        lost = f"does not beat {_listed(winners, 'or')}" if winners else next(iter(old), "")
        return (
            f"champion v{champion} kept: candidate {name} {shown(name)} vs "
            f"{shown(f'champion_v{champion}')} ({metric})" + (f"; {lost}" if lost else "")
        )
    if winners:
        why = f"{_listed(winners)} {'beats' if len(winners) == 1 else 'beat'} it"
    else:
        why = next(iter(old), reasons[-1] if reasons else "refused")
    keeps = f"champion v{held} kept" if held else "no champion yet"
    return f"{keeps}: candidate {name} ({metric} {shown(name)}) refused: {why}"


def _listed(items: Sequence[str], word: str = "and") -> str:
    """["a", "b", "c"] -> "a, b and c"."""
    items = list(items)
    return f"{', '.join(items[:-1])} {word} {items[-1]}" if len(items) > 1 else "".join(items)
