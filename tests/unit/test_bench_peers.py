"""The accuracy benchmark's peers (bench/peers.py): which origins they score, what rows they
read, and how the served model is judged against them. No TensorFlow; statsforecast only where
installed (requirements-bench.txt)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.peers import (
    compare,
    describe_statsforecast,
    forecasts_from_predictions,
    mae,
    origin_subset,
    rolling_forecasts,
)
from freshcast.windowing import make_windows, split_ranges

HORIZON = 3


def _series(rows: int = 120, *, season: int = 12) -> np.ndarray:
    t = np.arange(rows, dtype=np.float64)
    return 10 + 0.05 * t + 2 * np.sin(2 * np.pi * t / season)


# --- origins -------------------------------------------------------------------------------


def test_origin_subset_keeps_every_origin_under_the_limit():
    np.testing.assert_array_equal(origin_subset(40, max_origins=40), np.arange(40))


def test_origin_subset_thins_with_a_step_coprime_with_the_season():
    picked = origin_subset(1291, max_origins=250, season=24)
    step = int(picked[1] - picked[0])
    assert step == 7  # ceil(1291 / 250) = 6 shares a factor with 24; 7 does not
    assert math.gcd(step, 24) == 1 and len(picked) <= 250
    assert set(picked % 24) == set(range(24))  # every hour of the day is scored
    np.testing.assert_array_equal(picked, np.arange(0, 1291, 7))


@pytest.mark.parametrize(("samples", "max_origins"), [(0, 10), (10, 0)])
def test_origin_subset_refuses_empty_ranges(samples, max_origins):
    with pytest.raises(ValueError, match="must be > 0"):
        origin_subset(samples, max_origins=max_origins)


def test_rolling_forecasts_read_only_rows_before_each_origin():
    series = _series()
    origins = np.array([90, 95, 100])
    seen = []

    def forecast(history, horizon):
        seen.append(len(history))
        return np.full(horizon, history[-1])

    out = rolling_forecasts(series, origins, horizon=HORIZON, forecast=forecast)
    assert seen == [90, 95, 100]
    assert out.shape == (3, HORIZON)
    np.testing.assert_array_equal(out[:, 0], series[origins - 1])


def test_rolling_forecasts_are_finite_when_the_future_is_unknown():
    series = _series()
    for t0 in (90, 100, 110):
        blind = series.copy()
        blind[t0:] = np.nan  # a forecaster that read a row at or after t0 would see NaN
        out = rolling_forecasts(
            blind,
            np.array([t0]),
            horizon=HORIZON,
            forecast=lambda history, h: np.repeat(history[-12:].mean(), h),
        )
        assert np.isfinite(out).all()


def test_test_windows_end_just_before_their_origin():
    # The Keras peers read windows["test"].x[subset]: sample i's inputs must be rows [t0 - T, t0)
    # for t0 = i + T, the target rows that steps.run_folder.test_targets names.
    rows, timesteps = 100, 8
    scaled = np.arange(rows, dtype=np.float32)[:, None]  # [rows, 1]: each value is its row
    ranges = split_ranges((60, 20, 20), timesteps=timesteps, horizon=HORIZON)
    start, stop = ranges["test"]
    test = make_windows(scaled, timesteps=timesteps, horizon=HORIZON, inputs=1, target=0)[
        start:stop
    ]
    origins = np.arange(start, stop) + timesteps  # steps.run_folder.test_targets' target rows
    subset = origin_subset(len(test), max_origins=5, season=1)
    x = test.x[subset]  # [m, T, 1]
    np.testing.assert_array_equal(x[:, -1, 0], origins[subset] - 1)
    np.testing.assert_array_equal(x[:, 0, 0], origins[subset] - timesteps)
    assert origins[0] == 80  # the first test row: no test target is read as an input


# --- scoring -------------------------------------------------------------------------------


def test_mae_by_hand_and_non_finite_forecasts():
    actual = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert mae(actual, actual + np.array([[1.0, -1.0], [0.0, 2.0]])) == pytest.approx(1.0)
    assert math.isnan(mae(actual, np.array([[1.0, np.nan], [3.0, 4.0]])))
    with pytest.raises(ValueError, match="shapes differ"):
        mae(actual, actual[:1])


def test_compare_beats_the_best_peer_by_more_than_the_spread():
    got = compare({"lstm": 1.0, "ridge": 1.2, "AutoETS": 1.1}, served="lstm", spread=0.05)
    assert got["best_peer"] == "AutoETS"
    assert got["margin"] == pytest.approx(0.1)
    assert got["margin_pct"] == pytest.approx(100 * 0.1 / 1.1)
    assert got["spread_pct"] == pytest.approx(100 * 0.05 / 1.1)
    assert got["met"] is True


@pytest.mark.parametrize(
    ("served_mae", "spread", "met"),
    [
        (1.08, 0.05, False),  # better, but by less than its seed spread
        (1.2, 0.05, False),  # worse than the best peer
        (1.0, None, None),  # better, one seed: nothing to judge the margin by
        (float("nan"), None, False),  # no finite forecast
    ],
)
def test_compare_says_plainly_when_the_goal_fails(served_mae, spread, met):
    got = compare({"gru": served_mae, "AutoARIMA": 1.1, "broken": float("nan")}, served="gru",
                  spread=spread)  # fmt: skip
    assert got["best_peer"] == "AutoARIMA"
    assert got["met"] is met


def test_compare_needs_a_finite_peer():
    with pytest.raises(ValueError, match="no peer"):
        compare({"lstm": 1.0, "AutoETS": float("nan")}, served="lstm", spread=None)


def test_forecasts_from_predictions_reshape_origin_by_origin():
    times = pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC")
    origins = times[:4]  # 4 origins x 3 steps, as evaluate writes them
    rows = []
    for name, offset in (("lstm", 0.0), ("ridge", 100.0)):
        for i in range(4):
            for step in range(1, HORIZON + 1):
                rows.append((times[i + step - 1], step, name, 0.0, offset + 10 * i + step))
    table = pd.DataFrame(rows, columns=["time", "step", "name", "actual", "prediction"])
    got = forecasts_from_predictions(table, "ridge", origins, horizon=HORIZON)
    assert got.shape == (4, HORIZON)
    np.testing.assert_array_equal(got[2], [121.0, 122.0, 123.0])
    with pytest.raises(KeyError, match="no 'gru'"):
        forecasts_from_predictions(table, "gru", origins, horizon=HORIZON)
    with pytest.raises(ValueError, match="order"):
        forecasts_from_predictions(table, "ridge", origins[::-1], horizon=HORIZON)
    with pytest.raises(ValueError, match="expected 3 x 3"):
        forecasts_from_predictions(table, "ridge", origins[:3], horizon=HORIZON)


def test_describe_statsforecast_names_the_fitted_form():
    assert describe_statsforecast({"components": "AAND"}) == "ETS(A,Ad,N)"
    assert describe_statsforecast({"components": "MNAN"}) == "ETS(M,N,A)"
    arima = {"arma": (1, 1, 0, 1, 12, 1, 1), "coef": {"ar1": 0.5, "ma1": 0.1, "sma1": -0.3}}
    assert describe_statsforecast(arima) == "ARIMA(1,1,1)(0,1,1)[12]"
    drift = {"arma": (2, 0, 0, 0, 1, 1, 0), "coef": {"ar1": 0.1, "ar2": 0.1, "drift": 0.2}}
    assert describe_statsforecast(drift) == "ARIMA(2,1,0) with drift"


# --- statsforecast peers (requirements-bench.txt) -----------------------------------------


@pytest.mark.parametrize("kind", ["ets", "arima"])
def test_statsforecast_peers_never_read_at_or_after_the_origin(kind):
    pytest.importorskip("statsforecast")
    from bench.peers import statsforecast_peer

    series = _series(150)
    fit_rows = 120
    origins = np.array([120, 130, 140])
    full = statsforecast_peer(
        kind, series, origins, horizon=HORIZON, fit_rows=fit_rows, season_length=12
    )
    assert full["forecasts"].shape == (3, HORIZON)
    assert np.isfinite(full["forecasts"]).all()
    for k, t0 in enumerate(origins):
        blind = series.copy()
        blind[t0:] = np.nan
        alone = statsforecast_peer(
            kind, blind, origins[k : k + 1], horizon=HORIZON, fit_rows=fit_rows, season_length=12
        )
        # The same forecast with the future hidden: it was never read.
        np.testing.assert_allclose(alone["forecasts"][0], full["forecasts"][k], rtol=1e-9)


def test_statsforecast_peer_refuses_an_origin_inside_its_fit():
    pytest.importorskip("statsforecast")
    from bench.peers import statsforecast_peer

    with pytest.raises(ValueError, match="before fit_rows"):
        statsforecast_peer(
            "ets", _series(), np.array([100]), horizon=1, fit_rows=110, season_length=12
        )
