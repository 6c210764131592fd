"""The promotion rules of the champion/challenger gate, on hand-made scores."""

from __future__ import annotations

import math

import pytest

from freshcast.gate import decide
from freshcast.spec import GateSpec

BASELINES = {"persistence": {"mae": 2.0}, "seasonal_naive_7": {"mae": 1.8}, "ridge": {"mae": 1.9}}
# seattle_weekly's test window: simple_rnn beats persistence and seasonal naive, not ridge.
SEATTLE = {
    "persistence": {"kind": "baseline", "mae": 2.240},
    "seasonal_naive_52": {"kind": "baseline", "mae": 2.9},
    "ridge": {"kind": "baseline", "mae": 2.186, "alpha": 10.0},
}


def run(candidate_mae, champion_mae=None, *, margin=0.0, margin_type="relative", **kw):
    return decide(
        metric="mae",
        candidate=None if candidate_mae is None else ("lstm", {"mae": candidate_mae}),
        champion=None if champion_mae is None else (3, {"mae": champion_mae}),
        baselines=kw.get("baselines", BASELINES),
        gate=GateSpec(margin=margin, margin_type=margin_type, **kw.get("gate", {})),
        champion_note=kw.get("note"),
    )


def seattle(champion_mae=None, **gate):
    return decide(
        metric="mae",
        candidate=("simple_rnn", {"kind": "model", "mae": 2.216}),
        champion=None if champion_mae is None else (3, {"mae": champion_mae}),
        baselines=SEATTLE,
        gate=GateSpec(**gate),
    )


def test_first_run_promotes_when_the_baselines_are_beaten():
    decision = run(1.0)
    assert decision.promote
    assert decision.champion_version is None
    assert "no champion yet: beating the baselines suffices" in decision.reasons
    assert decision.reasons[-1] == "promote"
    assert decision.must_beat == ["persistence", "seasonal_naive_7", "ridge"]
    assert decision.lost_to == []
    assert decision.scores["ridge"] == {"role": "baseline", "mae": 1.9}


def test_a_candidate_that_loses_to_ridge_only_is_refused_naming_ridge():
    from freshcast.gate import verdict

    decision = seattle()
    assert not decision.promote
    assert "simple_rnn mae 2.216 beats persistence 2.24" in decision.reasons
    assert "simple_rnn mae 2.216 beats seasonal_naive_52 2.9" in decision.reasons
    assert "simple_rnn mae 2.216 does not beat ridge 2.186" in decision.reasons
    assert decision.lost_to == ["ridge"]
    assert verdict(decision.to_json(), unit="°C", decimals=1) == (
        "no champion yet: candidate simple_rnn (mae 2.22 °C) refused: ridge 2.19 °C beats it"
    )
    with_champion = seattle(2.3).to_json()
    assert any("beats champion v3" in r for r in with_champion["reasons"])
    assert verdict(with_champion, unit="°C", decimals=1) == (
        "champion v3 kept: candidate simple_rnn 2.22 °C vs 2.30 °C (mae); "
        "does not beat ridge 2.19 °C"
    )


def test_the_verdict_names_every_baseline_that_won_best_first():
    from freshcast.gate import verdict

    decision = run(1.95).to_json()  # beats persistence 2.0 only
    assert decision["lost_to"] == ["seasonal_naive_7", "ridge"]
    assert verdict(decision, decimals=1) == (
        "no champion yet: candidate lstm (mae 1.95) refused: seasonal_naive_7 1.80 and ridge "
        "1.90 beat it"
    )
    assert verdict(run(1.95, 2.5).to_json(), decimals=1).endswith(
        "; does not beat seasonal_naive_7 1.80 or ridge 1.90"
    )


def test_beat_lists_the_baselines_that_gate():
    decision = seattle(beat=["persistence", "seasonal_naive"])
    assert decision.promote
    assert decision.must_beat == ["persistence", "seasonal_naive_52"]
    assert not any("ridge" in r for r in decision.reasons)
    assert decision.scores["ridge"]["role"] == "baseline"  # still recorded beside the others
    assert not seattle(beat=["ridge"]).promote


def test_an_empty_beat_leaves_the_champion_comparison_only():
    from freshcast.gate import verdict

    first = run(5.0, gate={"beat": []})  # worse than every baseline
    assert first.promote and first.must_beat == []
    assert "no champion yet and no baseline to beat" in first.reasons[-2]
    assert verdict(first.to_json(), promoted=1, decimals=1) == (
        "lstm promoted to v1: mae 5.00 (no champion, and no baseline to beat)"
    )
    assert run(5.0, 6.0, gate={"beat": []}).promote
    assert not run(5.0, 4.0, gate={"beat": []}).promote
    assert not run(math.nan, gate={"beat": []}).promote


NAIVE = {"persistence": {"mae": 2.0}, "seasonal_naive_7": {"mae": 1.8}}


@pytest.mark.parametrize(
    ("gate", "baselines", "missing"),
    [
        ({}, NAIVE, "ridge"),  # the default beat lists all three
        ({"beat": ["ridge"]}, NAIVE, "ridge"),
        ({"beat": ["seasonal_naive"]}, {"persistence": {"mae": 2.0}}, "seasonal_naive_<season>"),
    ],
)
def test_a_listed_baseline_without_scores_is_an_error(gate, baselines, missing):
    with pytest.raises(ValueError, match=f"no '{missing}' baseline was scored"):
        run(1.0, baselines=baselines, gate=gate)
    with pytest.raises(ValueError, match="Received baselines: "):
        run(None, baselines=baselines, gate=gate)  # even with no candidate


def test_the_candidate_kind_plays_no_part():
    as_model = seattle(beat=["persistence"])
    ensemble = decide(
        metric="mae",
        candidate=("mean_of_3", {"kind": "ensemble", "mae": 2.216, "members": ["a", "b", "c"]}),
        champion=None,
        baselines=SEATTLE,
        gate=GateSpec(beat=["persistence"]),
    )
    assert ensemble.promote is as_model.promote is True
    assert ensemble.scores["mean_of_3"]["kind"] == "ensemble"


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
    with pytest.raises(ValueError, match=r"must beat seasonal_naive \(gate.beat=\["):
        run(1.0, baselines={"persistence": {"mae": 2.0}, "ridge": {"mae": 2.0}})


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
    # A decision recorded before "must_beat" and "lost_to" existed reads as it did.
    assert verdict(first, promoted=1, decimals=1) == (
        "gru promoted to v1: mae 2.31, beats the naive baselines (no champion to compare)"
    )
    assert verdict({**first, "must_beat": ["persistence", "ridge"]}, promoted=1, decimals=1) == (
        "gru promoted to v1: mae 2.31, beats persistence and ridge (no champion to compare)"
    )
    old_refusal = _decision(
        champion_version=None,
        current_champion=None,
        reasons=[
            "gru mae 2.31 does not beat persistence 2.2",
            "no champion yet: beating the baselines suffices",
            "refuse",
        ],
    )
    assert verdict(old_refusal, decimals=1) == (
        "no champion yet: candidate gru (mae 2.31) refused: gru mae 2.31 does not beat "
        "persistence 2.2"
    )
    assert verdict(_decision(candidate=None)) == "nothing to decide: no model trained"
