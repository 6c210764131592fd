"""The metrics, intervals and leaderboard: hand-computed values, no value as None, strict JSON at
the largest values validation accepts."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from freshcast import baselines as bl
from freshcast import evaluation as ev
from freshcast.artifacts import write_json
from freshcast.scaling import MAX_ABS_VALUE, fit_scaler
from freshcast.spec import PipelineSpec
from freshcast.validate import DataValidationError, validate_frame
from freshcast.windowing import make_windows, split_ranges

Y = np.array([1.0, 2.0, 3.0])


P = np.array([2.0, 2.0, 5.0])


def test_metrics_match_hand_computed_values():
    # errors |y - p| = [1, 0, 2]
    assert ev.mae(Y, P) == pytest.approx(1.0)
    assert ev.rmse(Y, P) == pytest.approx(math.sqrt(5 / 3))
    assert ev.mape(Y, P) == pytest.approx(100 * (1 / 1 + 0 / 2 + 2 / 3) / 3)
    assert ev.smape(Y, P) == pytest.approx((200 * 1 / 3 + 0 + 200 * 2 / 8) / 3)
    assert ev.mase(Y, P, scale=0.5) == pytest.approx(2.0)


def test_metrics_flatten_any_equal_shape():
    y2, p2 = Y.reshape(3, 1), P.reshape(3, 1)
    assert ev.mae(y2, p2) == pytest.approx(1.0)
    assert ev.rmse(y2, p2) == pytest.approx(math.sqrt(5 / 3))


def test_mape_ignores_zero_targets():
    y, p = np.array([0.0, 2.0, 4.0]), np.array([5.0, 1.0, 5.0])
    assert ev.mape(y, p) == pytest.approx(100 * (1 / 2 + 1 / 4) / 2)


def test_mape_is_nan_when_every_target_is_zero():
    assert math.isnan(ev.mape(np.zeros(3), np.ones(3)))


def test_smape_counts_zero_over_zero_as_zero():
    y, p = np.array([0.0, 1.0]), np.array([0.0, 3.0])
    assert ev.smape(y, p) == pytest.approx((0 + 200 * 2 / 4) / 2)
    assert ev.smape(np.zeros(4), np.zeros(4)) == 0.0


@pytest.mark.parametrize("scale", [0.0, math.nan, math.inf, None])
def test_mase_is_nan_for_a_degenerate_scale(scale):
    assert math.isnan(ev.mase(Y, P, scale=scale))


def test_score_has_every_metric():
    scores = ev.score(Y, P, scale=0.5)
    assert tuple(scores) == (*ev.METRICS, *ev.EXTRA_METRICS, "per_step")
    assert scores["mae"] == pytest.approx(1.0)
    assert scores["mase"] == pytest.approx(2.0)
    assert scores["mase_seasonal"] is None  # no seasonal scale given
    assert scores["per_step"] == {
        "mae": [pytest.approx(1.0)],
        "rmse": [pytest.approx((5 / 3) ** 0.5)],
    }


def test_score_per_step_and_seasonal_mase_match_hand_computed_values():
    y = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # [samples=2, horizon=3]
    p = np.array([[2.0, 2.0, 3.0], [4.0, 8.0, 2.0]])  # errors [[1, 0, 0], [0, 3, 4]]
    scores = ev.score(y, p, scale=0.5, seasonal_scale=4.0)
    assert scores["mae"] == pytest.approx(8 / 6)
    assert scores["mase"] == pytest.approx(8 / 6 / 0.5)
    assert scores["mase_seasonal"] == pytest.approx(8 / 6 / 4.0)
    assert scores["per_step"]["mae"] == pytest.approx([0.5, 1.5, 2.0])
    assert scores["per_step"]["rmse"] == pytest.approx([0.5**0.5, 4.5**0.5, 8**0.5])
    assert ev.score(y, p, scale=0.5, seasonal_scale=0.0)["mase_seasonal"] is None


def test_score_rejects_more_than_two_dimensions():
    with pytest.raises(ValueError, match=r"\(samples, horizon\) or \(samples,\)"):
        ev.score(np.ones((2, 3, 1)), np.ones((2, 3, 1)), scale=1.0)


def test_every_figure_has_an_explanation():
    assert set(ev.EXPLAIN) == {
        *ev.METRICS,
        *ev.EXTRA_METRICS,
        "per_step",
        "spread",
        "coverage",
        "width",
        "backtest",
    }
    assert all(isinstance(text, str) and "\n" not in text for text in ev.EXPLAIN.values())
    assert "one-step naive" in ev.EXPLAIN["mase"]
    assert "seasonal naive" in ev.EXPLAIN["mase_seasonal"]


def test_spread_is_the_sample_standard_deviation_of_the_finite_values():
    assert ev.spread([1.0, 2.0, 3.0, 4.0]) == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert ev.spread([1.0, None, math.nan, 3.0, math.inf]) == pytest.approx(2**0.5)
    assert ev.spread(np.array([2.0, 2.0])) == 0.0
    assert ev.spread([1.0, None, math.nan]) is None
    assert ev.spread([]) is None


def test_score_holds_none_for_a_metric_without_a_value():
    scores = ev.score(np.zeros(3), np.ones(3), scale=0.0)  # every target 0, a zero MASE scale
    assert scores["mape"] is None and scores["mase"] is None
    assert scores["mae"] == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_forecast_with_a_non_finite_value_has_no_score(bad):
    # A diverged model: the metrics say so instead of raising, and the gate refuses it.
    p = P.copy()
    p[1] = bad
    with np.errstate(invalid="ignore"):  # inf - inf, inf / inf
        for metric in (ev.mae, ev.rmse, ev.mape, ev.smape):
            assert not math.isfinite(metric(Y, p)), metric.__name__
    assert ev.score(Y, p, scale=1.0, seasonal_scale=1.0) == {
        **dict.fromkeys((*ev.METRICS, *ev.EXTRA_METRICS)),
        "per_step": {"mae": [None], "rmse": [None]},
    }
    steps = ev.score(np.ones((2, 3)), np.where(np.eye(2, 3), bad, 1.0), scale=1.0)["per_step"]
    assert steps == {"mae": [None] * 3, "rmse": [None] * 3}  # one per step, every one None


def test_rmse_whose_squares_overflow_has_no_value():
    y, p = np.zeros(2), np.array([1e200, 0.0])
    assert ev.rmse(y, p) == math.inf
    assert ev.score(y, p, scale=1.0)["rmse"] is None


@pytest.mark.parametrize(
    "metric",
    [ev.mae, ev.rmse, ev.mape, ev.smape, lambda y, p: ev.mase(y, p, scale=1.0)],
)
def test_metrics_reject_mismatched_shapes_and_empty_input(metric):
    with pytest.raises(ValueError, match=r"y.shape=\(3,\), p.shape=\(2,\)"):
        metric(Y, P[:2])
    with pytest.raises(ValueError, match="must not be empty"):
        metric(np.array([]), np.array([]))


def test_metrics_do_not_mutate_inputs():
    y, p = Y.copy(), P.copy()
    ev.score(y, p, scale=1.0)
    np.testing.assert_array_equal(y, Y)
    np.testing.assert_array_equal(p, P)


def test_naive_scale():
    y = np.array([1.0, 3.0, 2.0, 6.0])
    assert ev.naive_scale(y) == pytest.approx((2 + 1 + 4) / 3)
    assert ev.naive_scale(y, lag=2) == pytest.approx((1 + 3) / 2)
    assert ev.naive_scale(np.arange(10.0)) == pytest.approx(1.0)


def test_naive_scale_errors():
    with pytest.raises(ValueError, match=r"at least lag \+ 1 = 3 values\. Received: 2"):
        ev.naive_scale(np.array([1.0, 2.0]), lag=2)
    with pytest.raises(ValueError, match=r"`lag` must be > 0\. Received: lag=0"):
        ev.naive_scale(np.arange(5.0), lag=0)
    with pytest.raises(ValueError, match="must be 1D"):
        ev.naive_scale(np.ones((3, 2)))


def _scores():
    return {
        "lstm": {"kind": "model", "mae": 2.0, "rmse": 3.0, "mape": 1.0, "smape": 1.0, "mase": 0.8},
        "gru": {"kind": "model", "mae": 1.0, "rmse": 4.0, "mape": 1.0, "smape": 1.0, "mase": 0.4},
        "broken": {
            "kind": "model",
            "mae": math.nan,
            "rmse": 1.0,
            "mape": 1.0,
            "smape": 1.0,
            "mase": math.nan,
        },
        "persistence": {
            "kind": "baseline",
            "mae": 2.0,
            "rmse": 2.0,
            "mape": 1.0,
            "smape": 1.0,
            "mase": 0.8,
        },
    }


def test_leaderboard_sorts_ascending_with_nan_last_and_ties_by_name():
    scores = _scores()
    before = repr(scores)  # repr compares nan equal to nan
    rows = ev.leaderboard(scores, metric="mae")
    assert [r["name"] for r in rows] == ["gru", "lstm", "persistence", "broken"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert rows[3]["mae"] is None and rows[3]["mase"] is None  # no value: null in JSON
    assert list(rows[0]) == [
        "rank",
        "name",
        "kind",
        *ev.METRICS,
        "mase_seasonal",
        "mae_by_step",
        "rmse_by_step",
    ]
    assert rows[2]["kind"] == "baseline"
    assert [r["name"] for r in ev.leaderboard(scores, metric="rmse")] == [
        "broken",
        "persistence",
        "lstm",
        "gru",
    ]
    assert repr(scores) == before


def test_leaderboard_takes_none_and_missing_metrics_as_no_value():
    scores = {
        "a": {"kind": "model", "mae": None},
        "b": {"kind": "model", "mae": 2.0},
        "c": {"kind": "baseline"},
        "d": {"kind": "baseline", "mae": math.inf},
    }
    rows = ev.leaderboard(scores, metric="mae")
    assert [(r["name"], r["mae"]) for r in rows] == [
        ("b", 2.0),
        ("a", None),
        ("c", None),
        ("d", None),
    ]
    assert rows[1]["rmse"] is None


def test_leaderboard_carries_seasonal_mase_steps_and_extras():
    y = np.array([[1.0, 2.0], [3.0, 4.0]])
    scores = {
        "gru": {"kind": "model", **ev.score(y, y + np.array([1.0, 2.0]), scale=1.0)},
        "gru_seed_1": {"kind": "seed", "of": "gru", "seed": np.int64(1), "mae": 1.4},
        "mean_of_2": {
            "kind": "ensemble",
            "members": ("gru", "lstm"),
            "spread": np.float64(0.25),
            "mae": 1.2,
            "mae_by_step": [1.0, math.nan],
        },
        "ridge": {
            "kind": "baseline",
            "alpha": 10.0,
            **ev.score(y, y + 3.0, scale=1.0, seasonal_scale=2.0),
        },
        "tuned": {"kind": "model", "trial": 7, "mae": 3.5, "spread": math.nan},
    }
    rows = {row["name"]: row for row in ev.leaderboard(scores, metric="mae")}
    assert [row["name"] for row in ev.leaderboard(scores, metric="mae")] == [
        "mean_of_2",
        "gru_seed_1",
        "gru",
        "ridge",
        "tuned",
    ]
    assert rows["gru"]["mae_by_step"] == [1.0, 2.0] and rows["gru"]["rmse_by_step"] == [1.0, 2.0]
    assert rows["gru"]["mase_seasonal"] is None
    assert rows["ridge"]["mase_seasonal"] == pytest.approx(1.5) and rows["ridge"]["alpha"] == 10.0
    assert rows["gru_seed_1"] | {} == {
        "rank": 2,
        "name": "gru_seed_1",
        "kind": "seed",
        **dict.fromkeys(ev.METRICS),
        "mae": 1.4,
        "mase_seasonal": None,
        "mae_by_step": None,
        "rmse_by_step": None,
        "of": "gru",
        "seed": 1,
    }
    assert type(rows["gru_seed_1"]["seed"]) is int  # numpy scalars leave as plain JSON
    assert rows["mean_of_2"]["members"] == ["gru", "lstm"]
    assert rows["mean_of_2"]["spread"] == 0.25 and type(rows["mean_of_2"]["spread"]) is float
    assert rows["mean_of_2"]["mae_by_step"] == [1.0, None]
    assert rows["tuned"]["trial"] == 7 and rows["tuned"]["spread"] is None
    assert "alpha" not in rows["gru"]  # only the extras an entry has
    json.dumps(list(rows.values()), allow_nan=False)


def test_leaderboard_errors():
    with pytest.raises(ValueError, match="Received: metric='r2'"):
        ev.leaderboard(_scores(), metric="r2")
    with pytest.raises(ValueError, match="Received: kind='oracle'"):
        ev.leaderboard({"x": {"kind": "oracle", "mae": 1.0}}, metric="mae")


def _strict(path) -> object:
    """The JSON file's contents, refusing the NaN and Infinity that Python's json accepts."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{path} holds {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _extreme_frame(rows: int = 60) -> pd.DataFrame:
    """Ingest-shaped rows whose target and feature swing between -MAX_ABS_VALUE and
    +MAX_ABS_VALUE, the largest values validation accepts."""
    t = np.arange(rows)
    return pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=rows, freq="D").strftime("%Y-%m-%d"),
            "y": MAX_ABS_VALUE * np.cos(np.pi * t / 3),  # exactly +-MAX at every third row
            "x": MAX_ABS_VALUE * np.where(t % 2, 1.0, -1.0),
        }
    )


def _extreme_spec(scaler: str) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": "extreme",
            "source": {"path": "extreme.csv"},
            "timestamp": "ts",
            "frequency": "D",
            "target": "y",
            "features": ["x", "y"],
            "window": 4,
            "horizon": 2,
            "season_length": 3,
            "split": {"val": 10, "test": 10},
            "scaler": scaler,
            "models": [{"type": "lstm"}],
        }
    )


@pytest.mark.parametrize("scaler", ["minmax", "standard"])
def test_the_largest_values_validation_accepts_score_finitely_as_strict_json(tmp_path, scaler):
    # validate -> split_scale -> window -> evaluate's scoring, as the steps run them, with a
    # worst-case finite model (float32's largest output) and a diverged one (NaN) beside the
    # baselines: every finite forecast scores finitely, and nothing non-finite reaches JSON.
    spec = _extreme_spec(scaler)
    frame, report = validate_frame(_extreme_frame(), spec, source="extreme.csv")
    assert np.abs(frame.to_numpy()).max() == MAX_ABS_VALUE
    sizes = tuple(report.split_rows[s] for s in ("train", "val", "test"))
    values = frame[spec.columns].to_numpy(dtype=np.float64)  # [rows, columns]
    scaler_params = fit_scaler(spec.scaler, values[: sizes[0]], spec.columns)
    scaled = scaler_params.transform(values)  # float32, as split_scale stores it
    assert np.isfinite(scaled).all() and np.abs(scaled).max() <= MAX_ABS_VALUE
    ranges = split_ranges(sizes, timesteps=spec.window, horizon=spec.horizon)
    windows = make_windows(
        scaled,
        timesteps=spec.window,
        horizon=spec.horizon,
        inputs=len(spec.features),
        target=spec.columns.index(spec.target),
    )
    train, test = windows[slice(*ranges["train"])], windows[slice(*ranges["test"])]
    series = values[:, spec.columns.index(spec.target)]
    target_rows = np.arange(*ranges["test"]) + spec.window  # [n]
    actual = series[target_rows[:, None] + np.arange(spec.horizon)]  # [n, horizon]

    def to_units(p: np.ndarray) -> np.ndarray:
        return scaler_params.inverse(p, column=spec.target)

    wild = np.full(actual.shape, np.finfo(np.float32).max)
    forecasts = {
        "wild": ("model", to_units(wild)),
        "diverged": ("model", to_units(np.full(actual.shape, np.nan))),
        "persistence": ("baseline", bl.persistence(series, target_rows, horizon=spec.horizon)),
        "seasonal_naive_3": (
            "baseline",
            bl.seasonal_naive(series, target_rows, horizon=spec.horizon, season=3),
        ),
        "ridge": ("baseline", to_units(bl.ridge_forecast(train.x, train.y, test.x))),
    }
    scale = ev.naive_scale(series[: sizes[0]])
    scores = {
        name: {"kind": kind, **ev.score(actual, p, scale=scale)}
        for name, (kind, p) in forecasts.items()
    }
    for name in ("wild", "persistence", "seasonal_naive_3", "ridge"):
        assert all(math.isfinite(scores[name][m]) for m in ev.METRICS), scores[name]
    assert all(scores["diverged"][m] is None for m in ev.METRICS)
    board = ev.leaderboard(scores, metric="rmse")
    assert board[-1]["name"] == "diverged"

    metrics = {"mase_scale": scale, "scores": scores}
    assert _strict(write_json(tmp_path / "metrics.json", metrics)) == metrics
    assert _strict(write_json(tmp_path / "leaderboard.json", board)) == board


def test_a_1e308_cell_is_refused_at_validate_before_any_metric():
    raw = _extreme_frame()
    raw.loc[41, "x"] = 1e308
    with pytest.raises(DataValidationError) as info:
        validate_frame(raw, _extreme_spec("minmax"), source="extreme.csv")
    assert "extreme.csv: column 'x', row 42: value 1e+308 is beyond ±1e+15" in str(info.value)


def test_conformal_radius_is_the_finite_sample_quantile_per_step():
    # Step 1's |residuals| are 1..9, step 2's twice that: with n = 9 the 80 % radius is the
    # ceil(10 * 0.8) = 8th smallest; 95 % needs the 10th of 9, which no finite radius is.
    residuals = np.stack([np.arange(1, 10.0), -2 * np.arange(1, 10.0)], axis=1)  # [9, 2]
    assert ev.conformal_radius(residuals, 0.8).tolist() == [8.0, 16.0]
    assert np.isinf(ev.conformal_radius(residuals, 0.95)).all()
    assert ev.conformal_radius(np.arange(1, 10.0), 0.5).tolist() == [5.0]  # one step, 1D
    with pytest.raises(ValueError, match="level"):
        ev.conformal_radius(residuals, 1.0)
    with pytest.raises(ValueError, match="finite"):
        ev.conformal_radius(np.array([[1.0], [np.nan]]), 0.8)


def test_conformal_intervals_cover_exchangeable_errors_at_their_level():
    """Errors drawn alike on the calibration and test windows: the coverage lands on the
    nominal level (the guarantee), per step, though step 2's errors are three times wider."""
    rng = np.random.default_rng(7)
    scale = np.array([1.0, 3.0])
    actual_val, actual_test = rng.normal(size=(2000, 2)), rng.normal(size=(20000, 2))
    forecast_val = actual_val + rng.standard_t(4, size=(2000, 2)) * scale
    forecast_test = actual_test + rng.standard_t(4, size=(20000, 2)) * scale
    got = ev.interval_scores(
        (actual_val, forecast_val), (actual_test, forecast_test), levels=[0.8, 0.95]
    )
    assert set(got) == {"80", "95"}
    for key, level in (("80", 0.8), ("95", 0.95)):
        entry = got[key]
        assert entry["level"] == level
        assert abs(entry["coverage"] - level) < 0.015
        assert all(abs(c - level) < 0.02 for c in entry["coverage_by_step"])
        radius = entry["radius_by_step"]
        assert radius[1] == pytest.approx(3 * radius[0], rel=0.15)
        assert entry["width"] == pytest.approx(radius[0] + radius[1])  # mean of 2r over steps
        assert entry["served_radius_by_step"] == radius  # served: the same residuals here
        assert entry["calibration_windows"] == 2000
    assert got["95"]["width"] > got["80"]["width"]


def test_served_radii_come_from_the_serving_residuals_and_a_diverged_model_has_none():
    y = np.zeros((50, 1))
    small, large = np.full((50, 1), 0.5), np.full((50, 1), 2.0)
    got = ev.interval_scores((y, small), (y, small), levels=[0.8], serve=(y, large))
    assert got["80"]["radius_by_step"] == [0.5]
    assert got["80"]["served_radius_by_step"] == [2.0]
    assert got["80"]["coverage"] == 1.0
    broken = np.full((50, 1), np.nan)
    assert ev.interval_scores((y, small), (y, broken), levels=[0.8]) is None
    assert ev.level_key(0.8) == "80" and ev.level_key(0.975) == "97.5"
