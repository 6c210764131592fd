from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view

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


def test_persistence_repeats_the_last_observed_value():
    series = np.arange(10.0) * 10
    got = ev.persistence(series, np.array([1, 4, 9]), horizon=3)
    expected = np.array([[0.0, 0.0, 0.0], [30.0, 30.0, 30.0], [80.0, 80.0, 80.0]])
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.float64


def test_seasonal_naive_reuses_the_last_known_season():
    series = np.arange(20)
    # season 3, t0 = 6: steps at rows 6..10 read rows 3, 4, 5, then 3, 4 again (7 and 8 are
    # not known at the origin, row 5).
    got = ev.seasonal_naive(series, np.array([6, 7]), horizon=5, season=3)
    expected = np.array([[3, 4, 5, 3, 4], [4, 5, 6, 4, 5]], dtype=np.float64)
    np.testing.assert_array_equal(got, expected)


def test_seasonal_naive_with_season_one_is_persistence():
    series = np.arange(12.0)
    rows = np.array([3, 5, 11])
    np.testing.assert_array_equal(
        ev.seasonal_naive(series, rows, horizon=4, season=1),
        ev.persistence(series, rows, horizon=4),
    )


def test_seasonal_naive_horizon_shorter_than_season():
    got = ev.seasonal_naive(np.arange(30), np.array([24]), horizon=2, season=24)
    np.testing.assert_array_equal(got, [[0.0, 1.0]])


def test_seasonal_naive_rejects_rows_before_the_start():
    with pytest.raises(ValueError, match=r"sample 1 \(t0=2\) needs row -1 .*season=3"):
        ev.seasonal_naive(np.arange(10), np.array([3, 2]), horizon=2, season=3)
    with pytest.raises(ValueError, match=r"sample 0 .* needs row -1"):
        ev.persistence(np.arange(10), np.array([0]), horizon=1)


def test_seasonal_naive_argument_errors():
    with pytest.raises(ValueError, match=r"`season` must be > 0\. Received: season=0"):
        ev.seasonal_naive(np.arange(10), np.array([5]), horizon=1, season=0)
    with pytest.raises(ValueError, match=r"`horizon` must be > 0\. Received: horizon=0"):
        ev.persistence(np.arange(10), np.array([5]), horizon=0)
    with pytest.raises(ValueError, match="integer array"):
        ev.persistence(np.arange(10), np.array([5.0]), horizon=1)
    with pytest.raises(ValueError, match="`series` must be 1D"):
        ev.persistence(np.ones((10, 2)), np.array([5]), horizon=1)
    with pytest.raises(ValueError, match="past the end"):
        ev.persistence(np.arange(10), np.array([11]), horizon=1)


def test_baselines_do_not_mutate_inputs():
    series, rows = np.arange(10.0), np.array([4, 5])
    ev.seasonal_naive(series, rows, horizon=3, season=2)
    np.testing.assert_array_equal(series, np.arange(10.0))
    np.testing.assert_array_equal(rows, [4, 5])


def test_ridge_forecast_recovers_a_linear_relation_from_window_views():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(80, 3))
    # Non-contiguous (samples, timesteps=4, features=3) views, as windowing builds them.
    x = sliding_window_view(data, 4, axis=0).transpose(0, 2, 1)
    assert not x.flags.c_contiguous
    last = x[:, -1, :].sum(axis=1)  # [samples]
    y = np.stack([last, 2 * last], axis=1)  # [samples, horizon=2]
    before = data.copy()
    got = ev.ridge_forecast(x[:60], y[:60], x[60:], alpha=1e-6)
    assert got.shape == (x.shape[0] - 60, 2)
    np.testing.assert_allclose(got, y[60:], atol=1e-3)
    np.testing.assert_array_equal(data, before)


def test_ridge_forecast_keeps_a_horizon_of_one():
    x = np.arange(24.0).reshape(6, 2, 2)
    got = ev.ridge_forecast(x[:4], x[:4, -1, :1], x[4:])
    assert got.shape == (2, 1)


def test_ridge_forecast_shape_errors():
    x = np.zeros((5, 2, 3))
    with pytest.raises(ValueError, match=r"\(5, 2, 3\) and \(5, 2, 4\)"):
        ev.ridge_forecast(x, np.zeros((5, 1)), np.zeros((5, 2, 4)))
    with pytest.raises(ValueError, match=r"with 5 samples. Received: shape=\(4, 1\)"):
        ev.ridge_forecast(x, np.zeros((4, 1)), x)
    with pytest.raises(ValueError, match=r"at least one sample. Received: shape=\(0, 2, 3\)"):
        ev.ridge_fit(x[:0], np.zeros((0, 1)))
    with pytest.raises(ValueError, match=r"`batch_size` must be > 0\. Received: batch_size=0"):
        ev.ridge_fit(x, np.zeros((5, 1)), batch_size=0)
    normal = ev.ridge_fit(x, np.zeros((5, 1)))
    with pytest.raises(ValueError, match=r"features \(2, 3\)\. Received: shape=\(5, 3, 2\)"):
        normal.predict(np.zeros((5, 3, 2)), 1.0)
    for alpha in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match=f"Received: alpha={alpha}"):
            normal.solve(alpha)


def _noisy_windows(seed: int = 0):
    """40 inputs per window (10 x 4) and a weak signal under unit noise: ordinary least squares
    on 60 windows fits the noise, a strong penalty does better."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(260, 10, 4))  # [samples, timesteps, features]
    y = (x.reshape(260, -1) @ (0.1 * rng.normal(size=40)))[:, None] + rng.normal(size=(260, 2))
    return x, y


def test_ridge_select_picks_a_large_alpha_for_many_noisy_inputs():
    x, y = _noisy_windows()
    got = ev.ridge_select(x[:60], y[:60], x[60:160], y[60:160], x[160:])
    assert got.alphas == ev.ALPHAS and len(got.val_mae) == len(ev.ALPHAS)
    assert got.alpha > 1.0
    assert got.alpha == got.alphas[int(np.argmin(got.val_mae))]
    np.testing.assert_allclose(
        got.predictions, ev.ridge_forecast(x[:60], y[:60], x[160:], alpha=got.alpha)
    )
    # the recorded figure is the validation MAE of that alpha's forecasts
    val = ev.ridge_forecast(x[:60], y[:60], x[60:160], alpha=got.alpha)
    assert min(got.val_mae) == pytest.approx(ev.mae(y[60:160], val))
    assert list(got.validation) == [
        "0.0001",
        "0.001",
        "0.01",
        "0.1",
        "1",
        "10",
        "100",
        "1000",
        "10000",
    ]
    assert list(got.validation.values()) == list(got.val_mae)
    assert got.to_json() == {"alpha": got.alpha, "validation_mae": got.validation}
    json.dumps(got.to_json(), allow_nan=False)


def test_ridge_select_picks_a_tiny_alpha_for_a_nearly_noise_free_relation():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 10, 4))
    y = x.reshape(200, -1) @ rng.normal(size=(40, 3)) + 1e-6 * rng.normal(size=(200, 3))
    got = ev.ridge_select(x[:100], y[:100], x[100:150], y[100:150], x[150:])
    assert got.alpha == min(ev.ALPHAS)
    assert got.alpha == got.alphas[int(np.argmin(got.val_mae))]
    np.testing.assert_allclose(got.predictions, y[150:], atol=1e-3)


def test_ridge_select_never_reads_the_test_windows_for_the_choice():
    x, y = _noisy_windows()
    got = ev.ridge_select(x[:60], y[:60], x[60:160], y[60:160], x[160:])
    for other in (x[160:] * 100.0, np.zeros((3, 10, 4)), x[:60]):
        again = ev.ridge_select(x[:60], y[:60], x[60:160], y[60:160], other)
        assert (again.alpha, again.val_mae) == (got.alpha, got.val_mae)
        assert again.predictions.shape == (other.shape[0], 2)


def test_ridge_select_breaks_ties_towards_the_larger_alpha():
    # Constant inputs: every alpha forecasts the training mean, and the simplest model wins.
    x = np.ones((20, 3, 2))
    rng = np.random.default_rng(0)
    got = ev.ridge_select(
        x[:10],
        rng.normal(size=(10, 1)),
        x[10:15],
        rng.normal(size=(5, 1)),
        x[15:],
        alphas=(0.1, 10.0, 1.0),
    )
    assert len(set(got.val_mae)) == 1
    assert got.alpha == 10.0


def test_ridge_select_errors():
    x, y = _noisy_windows()
    args = (x[:60], y[:60], x[60:160], y[60:160], x[160:])
    with pytest.raises(ValueError, match=r"`y_val` must be \(samples, horizon\) = \(100, 2\)"):
        ev.ridge_select(*args[:3], y[60:160, :1], args[4])
    with pytest.raises(
        ValueError, match=r"`x_train` and `x_val` .* \(60, 10, 4\) and \(100, 10, 3\)"
    ):
        ev.ridge_select(args[0], args[1], x[60:160, :, :3], *args[3:])
    with pytest.raises(ValueError, match=r"`x_train` and `x_test`"):
        ev.ridge_select(*args[:4], x[160:, :2])
    with pytest.raises(ValueError, match="at least one sample"):
        ev.ridge_select(*args[:2], x[:0], y[:0], args[4])
    with pytest.raises(ValueError, match=r"`alphas` must hold at least one"):
        ev.ridge_select(*args, alphas=())
    with pytest.raises(ValueError, match=r"Received: alpha=-1.0"):
        ev.ridge_select(*args, alphas=(1.0, -1.0))


def test_ridge_normal_equations_are_solved_once_for_any_alpha():
    from sklearn.linear_model import Ridge

    x, y = _noisy_windows()
    flat = x[:60].reshape(60, -1)
    normal = ev.ridge_fit(x[:60], y[:60], batch_size=7)
    for alpha in (1e-4, 1.0, 1e4):
        coef, intercept = normal.solve(alpha)
        want = Ridge(alpha=alpha).fit(flat, y[:60])
        np.testing.assert_allclose(coef, want.coef_.T, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(intercept, want.intercept_, rtol=1e-7, atol=1e-10)
    # alpha=0 with more inputs than windows: the minimum-norm least-squares fit, not inf
    coef, intercept = ev.ridge_fit(x[:20], y[:20]).solve(0.0)
    assert np.isfinite(coef).all()
    np.testing.assert_allclose(x[:20].reshape(20, -1) @ coef + intercept, y[:20], atol=1e-6)


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


@pytest.mark.parametrize("horizon", [1, 3])
def test_ridge_forecast_is_scikit_learns_ridge_in_batches(horizon):
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    series = rng.random((500, 3))
    x = np.lib.stride_tricks.sliding_window_view(series, 6, axis=0).transpose(0, 2, 1)[:-horizon]
    y = np.lib.stride_tricks.sliding_window_view(series[6:, 0], horizon)
    x_train, y_train, x_test = x[:400], y[:400], x[400:]
    want = (
        Ridge(alpha=0.5)
        .fit(x_train.reshape(400, -1), y_train)
        .predict(x_test.reshape(len(x_test), -1))
    )
    got = ev.ridge_forecast(x_train, y_train, x_test, alpha=0.5, batch_size=37)  # ragged batches
    np.testing.assert_allclose(got, want.reshape(len(x_test), horizon), rtol=1e-8, atol=1e-10)


# ---------------------------------------------------------------- from validate to JSON


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
        "persistence": ("baseline", ev.persistence(series, target_rows, horizon=spec.horizon)),
        "seasonal_naive_3": (
            "baseline",
            ev.seasonal_naive(series, target_rows, horizon=spec.horizon, season=3),
        ),
        "ridge": ("baseline", to_units(ev.ridge_forecast(train.x, train.y, test.x))),
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


@pytest.mark.parametrize(("season", "horizon"), [(1, 1), (1, 3), (4, 3), (4, 6), (7, 7)])
def test_naive_kernel_is_the_seasonal_naive_forecast_of_each_window(season, horizon):
    rng = np.random.default_rng(season)
    array = rng.normal(size=(60, 3))  # target in column 1
    windows = make_windows(array, timesteps=8, horizon=horizon, inputs=3, target=1)
    kernel, bias = ev.naive_kernel(
        timesteps=8, features=3, target=1, horizon=horizon, season=season
    )
    got = np.asarray(windows.x).reshape(len(windows), -1) @ kernel + bias
    target_rows = np.arange(len(windows)) + 8
    expected = ev.seasonal_naive(array[:, 1], target_rows, horizon=horizon, season=season)
    np.testing.assert_array_equal(got, expected)


def test_naive_kernel_refuses_a_window_shorter_than_the_season():
    with pytest.raises(ValueError, match="cannot hold the last season of 12 steps"):
        ev.naive_kernel(timesteps=6, features=1, target=0, horizon=1, season=12)


# --- prediction intervals: split conformal ---------------------------------------------------


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


def test_ridge_select_keeps_its_normal_equations():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 4, 2))
    y = x[:, -1, :1] * 2 + 1
    chosen = ev.ridge_select(x[:80], y[:80], x[80:100], y[80:100], x[100:])
    again = chosen.normal.predict(x[100:], chosen.alpha)
    np.testing.assert_allclose(again, chosen.predictions)
