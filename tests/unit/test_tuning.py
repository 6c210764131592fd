"""The search without TensorFlow: Optuna's plan, a trial's values on a model, the choice."""

from __future__ import annotations

import math

import pytest

from freshcast.spec import ModelSpec, TuneSpec
from freshcast.tuning import configure, plan, select

TUNE = TuneSpec(
    trials=6,
    learning_rate=(1e-4, 1e-2),
    units=(8, 64),
    dropout=(0.0, 0.3),
    window=(7, 28),
    batch_size=(16, 128),
)


def test_the_plan_is_the_same_for_the_same_seed_and_inside_the_ranges():
    first = plan(TUNE, seed=42)
    assert first == plan(TUNE, seed=42)
    assert first != plan(TUNE, seed=43)
    assert len(first) == 6 and len({tuple(sorted(p.items())) for p in first}) == 6
    for params in first:
        assert list(params) == ["learning_rate", "units", "dropout", "window", "batch_size"]
        for name, (low, high) in TUNE.ranges.items():
            assert low <= params[name] <= high, (name, params[name])
        assert all(isinstance(params[n], int) for n in ("units", "window", "batch_size"))


def test_a_plan_searches_only_the_fields_given():
    only_rate = TuneSpec(trials=3, learning_rate=(1e-3, 1e-1))
    assert [list(p) for p in plan(only_rate, seed=0)] == [["learning_rate"]] * 3


def test_a_trial_sets_every_recurrent_layer_and_keeps_the_rest():
    model = ModelSpec(name="lstm", type="lstm", units=[32, 16], epochs=40, dropout=0.1)
    tried = configure(model, {"units": 24, "learning_rate": 0.005, "window": 10})
    assert tried.units == [24, 24] and tried.learning_rate == 0.005 and tried.window == 10
    assert tried.epochs == 40 and tried.dropout == 0.1 and tried.name == "lstm"


def test_select_takes_the_lowest_validation_error_and_skips_failed_trials():
    params = plan(TUNE, seed=1)
    scores = [2.5, None, 1.25, math.nan, 1.5, 3.0]
    results = [
        {"name": f"lstm-t{i + 1}", "params": p, "val_mae": v}
        for i, (p, v) in enumerate(zip(params, scores, strict=True))
    ]
    best, marked = select(TUNE, results)
    assert best["name"] == "lstm-t3"
    assert [r["chosen"] for r in marked] == [False, False, True, False, False, False]


def test_select_without_a_finished_trial_chooses_nothing():
    params = plan(TUNE, seed=1)[:2]
    results = [{"name": f"t{i}", "params": p, "val_mae": None} for i, p in enumerate(params)]
    best, marked = select(TUNE, results)
    assert best is None and not any(r["chosen"] for r in marked)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"trials": 4}, "at least one range"),
        ({"learning_rate": (0.1, 0.01)}, "low <= high"),
        ({"learning_rate": (0.0, 0.01)}, "must be > 0"),
        ({"dropout": (0.1, 1.0)}, r"\[0, 1\)"),
    ],
)
def test_a_search_spec_that_cannot_run_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        TuneSpec(**fields)
