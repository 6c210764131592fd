"""The promotion rules of the champion/challenger gate, on hand-made scores."""

from __future__ import annotations

import math

import pytest

from freshcast.gate import decide
from freshcast.spec import GateSpec

BASELINES = {"persistence": {"mae": 2.0}, "seasonal_naive_7": {"mae": 1.8}, "ridge": {"mae": 0.5}}


def run(candidate_mae, champion_mae=None, *, margin=0.0, margin_type="relative", **kw):
    return decide(
        metric="mae",
        candidate=None if candidate_mae is None else ("lstm", {"mae": candidate_mae}),
        champion=None if champion_mae is None else (3, {"mae": champion_mae}),
        baselines=kw.get("baselines", BASELINES),
        gate=GateSpec(margin=margin, margin_type=margin_type),
        champion_note=kw.get("note"),
    )


def test_first_run_promotes_when_the_baselines_are_beaten():
    decision = run(1.0)
    assert decision.promote
    assert decision.champion_version is None
    assert "no champion yet: beating the baselines suffices" in decision.reasons
    assert decision.reasons[-1] == "promote"
    # Ridge is on the leaderboard but is not a gate: only the naive forecasts are.
    assert decision.scores["ridge"] == {"role": "baseline", "mae": 0.5}


def test_first_run_refused_when_a_baseline_is_better():
    decision = run(1.9)  # beats persistence 2.0, not seasonal naive 1.8
    assert not decision.promote
    assert "lstm mae 1.9 does not beat seasonal_naive_7 1.8" in decision.reasons
    assert decision.reasons[-1] == "refuse"


def test_a_tie_with_a_baseline_is_not_a_win():
    assert not run(1.8).promote


def test_better_than_the_champion_promotes():
    decision = run(1.0, 1.2)
    assert decision.promote
    assert decision.champion_version == 3
    assert decision.improvement == pytest.approx((1.2 - 1.0) / 1.2)
    assert decision.scores["champion_v3"] == {"role": "champion", "mae": 1.2}
    assert decision.scores["lstm"] == {"role": "candidate", "mae": 1.0}


def test_worse_than_the_champion_is_refused():
    decision = run(1.3, 1.2)
    assert not decision.promote
    assert decision.improvement == pytest.approx(-0.1 / 1.2)
    assert any("the champion stays" in r for r in decision.reasons)


def test_equal_to_the_champion_is_refused_even_with_zero_margin():
    assert not run(1.2, 1.2).promote


@pytest.mark.parametrize(
    ("candidate", "margin", "promote"),
    [(1.15, 0.05, False), (1.14, 0.05, True), (1.0, 0.2, False), (0.96, 0.2, True)],
)
def test_relative_margin(candidate, margin, promote):
    # champion 1.2: a 5% margin needs <= 1.14, a 20% margin needs <= 0.96
    assert run(candidate, 1.2, margin=margin).promote is promote


@pytest.mark.parametrize(
    ("candidate", "margin", "promote"), [(1.15, 0.1, False), (1.1, 0.1, True), (1.0, 0.3, False)]
)
def test_absolute_margin(candidate, margin, promote):
    decision = run(candidate, 1.2, margin=margin, margin_type="absolute")
    assert decision.promote is promote
    assert decision.improvement == pytest.approx(1.2 - candidate)


def test_better_than_the_champion_but_worse_than_a_baseline_is_refused():
    decision = run(1.9, 2.5)
    assert not decision.promote
    assert any("beats champion v3" in r for r in decision.reasons)
    assert "lstm mae 1.9 does not beat seasonal_naive_7 1.8" in decision.reasons


@pytest.mark.parametrize("broken", [math.nan, math.inf])
def test_a_broken_candidate_is_refused(broken):
    decision = run(broken, 1.2)
    assert not decision.promote
    assert decision.reasons == [f"candidate lstm has no finite mae ({broken}): refused"]


def test_no_candidate_is_refused():
    decision = run(None)
    assert not decision.promote and decision.candidate is None


def test_a_champion_without_a_score_loses_to_any_candidate_that_beats_the_baselines():
    assert run(1.0, math.nan).promote


def test_an_incomparable_champion_is_named_in_the_reasons():
    note = "champion v3 cannot forecast this run's data (horizon changed)"
    decision = run(1.0, note=note)
    assert decision.promote and note in decision.reasons


def test_baselines_are_required():
    with pytest.raises(ValueError, match="needs persistence and seasonal naive"):
        run(1.0, baselines={"persistence": {"mae": 2.0}})


def test_decision_is_json_ready():
    import json

    payload = run(1.0, 1.2).to_json()
    assert json.loads(json.dumps(payload))["promote"] is True


def test_a_run_on_older_data_never_replaces_a_newer_champion():
    decision = decide(
        metric="mae",
        candidate=("lstm", {"mae": 0.1}),
        champion=(3, {"mae": 1.2}),
        baselines=BASELINES,
        gate=GateSpec(),
        data_end="2015-02-01T00:00:00+00:00",
        champion_data_end="2015-12-31T00:00:00+00:00",
    )
    assert not decision.promote
    assert "a run on older data never replaces it" in decision.reasons[-1]


def test_newer_data_is_compared_as_usual():
    decision = decide(
        metric="mae",
        candidate=("lstm", {"mae": 1.0}),
        champion=(3, {"mae": 1.2}),
        baselines=BASELINES,
        gate=GateSpec(),
        data_end="2016-01-01T00:00:00+00:00",
        champion_data_end="2015-12-31T00:00:00+00:00",
    )
    assert decision.promote


def _decision(**changes):
    decision = {
        "promote": False,
        "metric": "mae",
        "candidate": "gru",
        "reasons": ["gru mae 2.31 beats persistence 2.5", "refuse"],
        "scores": {
            "gru": {"role": "candidate", "mae": 2.31},
            "champion_v3": {"role": "champion", "mae": 2.25},
            "persistence": {"role": "baseline", "mae": 2.5},
        },
        "champion_version": 3,
        "current_champion": 3,
    }
    return {**decision, **changes}


def test_the_verdict_says_the_decision_in_one_sentence_with_units():
    from freshcast.gate import verdict

    assert verdict(_decision(), unit="°C", decimals=1) == (
        "champion v3 kept: candidate gru 2.31 °C vs 2.25 °C (mae)"
    )
    lost = _decision(reasons=["gru mae 2.31 does not beat persistence 2.2", "refuse"])
    assert verdict(lost, unit="°C", decimals=1).endswith(
        "; gru mae 2.31 does not beat persistence 2.2"
    )
    won = _decision(promote=True, reasons=["promote"])
    assert verdict(won, promoted=4, unit="°C", decimals=1) == (
        "gru promoted to v4: mae 2.31 °C vs champion v3 2.25 °C"
    )
    first = _decision(promote=True, champion_version=None, current_champion=None)
    first["scores"].pop("champion_v3")
    assert verdict(first, promoted=1, decimals=1) == (
        "gru promoted to v1: mae 2.31, beats the naive baselines (no champion to compare)"
    )
    assert verdict(_decision(candidate=None)) == "nothing to decide: no model trained"
