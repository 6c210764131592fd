"""The baselines: persistence and seasonal naive read only rows up to each origin, ridge matches
scikit-learn and picks its penalty on validation only, and naive as a linear kernel."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from freshcast import baselines as bl
from freshcast import evaluation as ev
from freshcast.windowing import make_windows


def test_persistence_repeats_the_last_observed_value():
    series = np.arange(10.0) * 10
    got = bl.persistence(series, np.array([1, 4, 9]), horizon=3)
    expected = np.array([[0.0, 0.0, 0.0], [30.0, 30.0, 30.0], [80.0, 80.0, 80.0]])
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.float64


def test_seasonal_naive_reuses_the_last_known_season():
    series = np.arange(20)
    # season 3, t0 = 6: steps at rows 6..10 read rows 3, 4, 5, then 3, 4 again (7 and 8 are
    # not known at the origin, row 5).
    got = bl.seasonal_naive(series, np.array([6, 7]), horizon=5, season=3)
    expected = np.array([[3, 4, 5, 3, 4], [4, 5, 6, 4, 5]], dtype=np.float64)
    np.testing.assert_array_equal(got, expected)


def test_seasonal_naive_with_season_one_is_persistence():
    series = np.arange(12.0)
    rows = np.array([3, 5, 11])
    np.testing.assert_array_equal(
        bl.seasonal_naive(series, rows, horizon=4, season=1),
        bl.persistence(series, rows, horizon=4),
    )


def test_seasonal_naive_horizon_shorter_than_season():
    got = bl.seasonal_naive(np.arange(30), np.array([24]), horizon=2, season=24)
    np.testing.assert_array_equal(got, [[0.0, 1.0]])


def test_seasonal_naive_rejects_rows_before_the_start():
    with pytest.raises(ValueError, match=r"sample 1 \(t0=2\) needs row -1 .*season=3"):
        bl.seasonal_naive(np.arange(10), np.array([3, 2]), horizon=2, season=3)
    with pytest.raises(ValueError, match=r"sample 0 .* needs row -1"):
        bl.persistence(np.arange(10), np.array([0]), horizon=1)


def test_seasonal_naive_argument_errors():
    with pytest.raises(ValueError, match=r"`season` must be > 0\. Received: season=0"):
        bl.seasonal_naive(np.arange(10), np.array([5]), horizon=1, season=0)
    with pytest.raises(ValueError, match=r"`horizon` must be > 0\. Received: horizon=0"):
        bl.persistence(np.arange(10), np.array([5]), horizon=0)
    with pytest.raises(ValueError, match="integer array"):
        bl.persistence(np.arange(10), np.array([5.0]), horizon=1)
    with pytest.raises(ValueError, match="`series` must be 1D"):
        bl.persistence(np.ones((10, 2)), np.array([5]), horizon=1)
    with pytest.raises(ValueError, match="past the end"):
        bl.persistence(np.arange(10), np.array([11]), horizon=1)


def test_baselines_do_not_mutate_inputs():
    series, rows = np.arange(10.0), np.array([4, 5])
    bl.seasonal_naive(series, rows, horizon=3, season=2)
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
    got = bl.ridge_forecast(x[:60], y[:60], x[60:], alpha=1e-6)
    assert got.shape == (x.shape[0] - 60, 2)
    np.testing.assert_allclose(got, y[60:], atol=1e-3)
    np.testing.assert_array_equal(data, before)


def test_ridge_forecast_keeps_a_horizon_of_one():
    x = np.arange(24.0).reshape(6, 2, 2)
    got = bl.ridge_forecast(x[:4], x[:4, -1, :1], x[4:])
    assert got.shape == (2, 1)


def test_ridge_forecast_shape_errors():
    x = np.zeros((5, 2, 3))
    with pytest.raises(ValueError, match=r"\(5, 2, 3\) and \(5, 2, 4\)"):
        bl.ridge_forecast(x, np.zeros((5, 1)), np.zeros((5, 2, 4)))
    with pytest.raises(ValueError, match=r"with 5 samples. Received: shape=\(4, 1\)"):
        bl.ridge_forecast(x, np.zeros((4, 1)), x)
    with pytest.raises(ValueError, match=r"at least one sample. Received: shape=\(0, 2, 3\)"):
        bl.ridge_fit(x[:0], np.zeros((0, 1)))
    with pytest.raises(ValueError, match=r"`batch_size` must be > 0\. Received: batch_size=0"):
        bl.ridge_fit(x, np.zeros((5, 1)), batch_size=0)
    normal = bl.ridge_fit(x, np.zeros((5, 1)))
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
    got = bl.ridge_select(x[:60], y[:60], x[60:160], y[60:160], x[160:])
    assert got.alphas == bl.ALPHAS and len(got.val_mae) == len(bl.ALPHAS)
    assert got.alpha > 1.0
    assert got.alpha == got.alphas[int(np.argmin(got.val_mae))]
    np.testing.assert_allclose(
        got.predictions, bl.ridge_forecast(x[:60], y[:60], x[160:], alpha=got.alpha)
    )
    # the recorded figure is the validation MAE of that alpha's forecasts
    val = bl.ridge_forecast(x[:60], y[:60], x[60:160], alpha=got.alpha)
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
    got = bl.ridge_select(x[:100], y[:100], x[100:150], y[100:150], x[150:])
    assert got.alpha == min(bl.ALPHAS)
    assert got.alpha == got.alphas[int(np.argmin(got.val_mae))]
    np.testing.assert_allclose(got.predictions, y[150:], atol=1e-3)


def test_ridge_select_never_reads_the_test_windows_for_the_choice():
    x, y = _noisy_windows()
    got = bl.ridge_select(x[:60], y[:60], x[60:160], y[60:160], x[160:])
    for other in (x[160:] * 100.0, np.zeros((3, 10, 4)), x[:60]):
        again = bl.ridge_select(x[:60], y[:60], x[60:160], y[60:160], other)
        assert (again.alpha, again.val_mae) == (got.alpha, got.val_mae)
        assert again.predictions.shape == (other.shape[0], 2)


def test_ridge_select_breaks_ties_towards_the_larger_alpha():
    # Constant inputs: every alpha forecasts the training mean, and the simplest model wins.
    x = np.ones((20, 3, 2))
    rng = np.random.default_rng(0)
    got = bl.ridge_select(
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
        bl.ridge_select(*args[:3], y[60:160, :1], args[4])
    with pytest.raises(
        ValueError, match=r"`x_train` and `x_val` .* \(60, 10, 4\) and \(100, 10, 3\)"
    ):
        bl.ridge_select(args[0], args[1], x[60:160, :, :3], *args[3:])
    with pytest.raises(ValueError, match=r"`x_train` and `x_test`"):
        bl.ridge_select(*args[:4], x[160:, :2])
    with pytest.raises(ValueError, match="at least one sample"):
        bl.ridge_select(*args[:2], x[:0], y[:0], args[4])
    with pytest.raises(ValueError, match=r"`alphas` must hold at least one"):
        bl.ridge_select(*args, alphas=())
    with pytest.raises(ValueError, match=r"Received: alpha=-1.0"):
        bl.ridge_select(*args, alphas=(1.0, -1.0))


def test_ridge_normal_equations_are_solved_once_for_any_alpha():
    from sklearn.linear_model import Ridge

    x, y = _noisy_windows()
    flat = x[:60].reshape(60, -1)
    normal = bl.ridge_fit(x[:60], y[:60], batch_size=7)
    for alpha in (1e-4, 1.0, 1e4):
        coef, intercept = normal.solve(alpha)
        want = Ridge(alpha=alpha).fit(flat, y[:60])
        np.testing.assert_allclose(coef, want.coef_.T, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(intercept, want.intercept_, rtol=1e-7, atol=1e-10)
    # alpha=0 with more inputs than windows: the minimum-norm least-squares fit, not inf
    coef, intercept = bl.ridge_fit(x[:20], y[:20]).solve(0.0)
    assert np.isfinite(coef).all()
    np.testing.assert_allclose(x[:20].reshape(20, -1) @ coef + intercept, y[:20], atol=1e-6)


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
    got = bl.ridge_forecast(x_train, y_train, x_test, alpha=0.5, batch_size=37)  # ragged batches
    np.testing.assert_allclose(got, want.reshape(len(x_test), horizon), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(("season", "horizon"), [(1, 1), (1, 3), (4, 3), (4, 6), (7, 7)])
def test_naive_kernel_is_the_seasonal_naive_forecast_of_each_window(season, horizon):
    rng = np.random.default_rng(season)
    array = rng.normal(size=(60, 3))  # target in column 1
    windows = make_windows(array, timesteps=8, horizon=horizon, inputs=3, target=1)
    kernel, bias = bl.naive_kernel(
        timesteps=8, features=3, target=1, horizon=horizon, season=season
    )
    got = np.asarray(windows.x).reshape(len(windows), -1) @ kernel + bias
    target_rows = np.arange(len(windows)) + 8
    expected = bl.seasonal_naive(array[:, 1], target_rows, horizon=horizon, season=season)
    np.testing.assert_array_equal(got, expected)


def test_naive_kernel_refuses_a_window_shorter_than_the_season():
    with pytest.raises(ValueError, match="cannot hold the last season of 12 steps"):
        bl.naive_kernel(timesteps=6, features=1, target=0, horizon=1, season=12)


# --- prediction intervals: split conformal ---------------------------------------------------


def test_ridge_select_keeps_its_normal_equations():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 4, 2))
    y = x[:, -1, :1] * 2 + 1
    chosen = bl.ridge_select(x[:80], y[:80], x[80:100], y[80:100], x[100:])
    again = chosen.normal.predict(x[100:], chosen.alpha)
    np.testing.assert_allclose(again, chosen.predictions)
