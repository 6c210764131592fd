"""Metrics and baselines, all in the data's original units.

Metrics are pure functions of two equally shaped arrays, flattened; a metric that has no value
(MAPE when every target is ~0, MASE over a zero scale, any metric of a forecast holding a NaN or
inf) is nan. `score` and `leaderboard`, the records written as JSON, hold None (null) for it
instead: strict JSON has no nan. Baselines forecast from the same sample layout as the models
(see `windowing`): a sample's first target row is `t0`, its forecast origin is row `t0 - 1`,
and a baseline may only read rows up to that origin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import linalg

METRICS = ("mae", "rmse", "mape", "smape", "mase")
KINDS = ("model", "baseline")


def mae(y: np.ndarray, p: np.ndarray) -> float:
    """Mean absolute error of `p` against `y`, any equal shape."""
    y, p = _flat_pair(y, p)
    return float(np.mean(np.abs(y - p)))


def rmse(y: np.ndarray, p: np.ndarray) -> float:
    """Root mean squared error of `p` against `y`, any equal shape; inf if the squares overflow."""
    y, p = _flat_pair(y, p)
    with np.errstate(over="ignore"):  # the inf is the answer: `score` records no value
        return float(np.sqrt(np.mean(np.square(y - p))))


def mape(y: np.ndarray, p: np.ndarray, *, eps: float = 1e-8) -> float:
    """Mean absolute percentage error in percent, over the points where |y| > eps.

    Points with |y| <= eps are left out rather than dividing by ~0; nan when none are left.
    """
    y, p = _flat_pair(y, p)
    keep = np.abs(y) > eps
    if not keep.any():
        return math.nan
    return float(100.0 * np.mean(np.abs(y[keep] - p[keep]) / np.abs(y[keep])))


def smape(y: np.ndarray, p: np.ndarray) -> float:
    """Symmetric MAPE in percent: mean of 200 * |y - p| / (|y| + |p|); a 0/0 term counts as 0."""
    y, p = _flat_pair(y, p)
    denom = np.abs(y) + np.abs(p)
    # `!= 0`, not `> 0`: a NaN term must stay NaN, not count as a perfect 0/0.
    terms = np.divide(200.0 * np.abs(y - p), denom, out=np.zeros_like(denom), where=denom != 0)
    return float(np.mean(terms))


def mase(y: np.ndarray, p: np.ndarray, *, scale: float | None) -> float:
    """Mean absolute scaled error: mae(y, p) / scale, with `scale` from `naive_scale`.

    Returns nan when `scale` is 0, None or not finite (a constant or broken training target).
    """
    error = mae(y, p)
    if scale is None or not math.isfinite(scale) or scale <= 0:
        return math.nan
    return error / scale


def naive_scale(train_target: np.ndarray, *, lag: int = 1) -> float:
    """The MASE denominator: mean |y[t] - y[t - lag]| over the training target.

    Args:
        train_target: (train_rows,) target of the training split, original units.
        lag: 1 for the one-step naive forecast, the season length for a seasonal one.

    Raises:
        ValueError: on a non-1D target, `lag` < 1, or fewer than `lag + 1` values.
    """
    y = np.asarray(train_target, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"`train_target` must be 1D (rows,). Received: shape={y.shape}")
    if lag < 1:
        raise ValueError(f"`lag` must be > 0. Received: lag={lag}")
    if y.size < lag + 1:
        raise ValueError(
            f"`train_target` needs at least lag + 1 = {lag + 1} values. Received: {y.size}"
        )
    return float(np.mean(np.abs(y[lag:] - y[:-lag])))


def score(y: np.ndarray, p: np.ndarray, *, scale: float | None) -> dict[str, float | None]:
    """Every metric in `METRICS` for one forecast, keyed by name; None where it has no value.

    A forecast with a NaN or inf (a diverged model) scores None throughout, so the gate refuses
    it; the record is strict JSON as it is.
    """
    y, p = _flat_pair(y, p)
    if not np.isfinite(p).all():
        return dict.fromkeys(METRICS)
    return {
        "mae": _value(mae(y, p)),
        "rmse": _value(rmse(y, p)),
        "mape": _value(mape(y, p)),
        "smape": _value(smape(y, p)),
        "mase": _value(mase(y, p, scale=scale)),
    }


def persistence(series: np.ndarray, target_rows: np.ndarray, *, horizon: int) -> np.ndarray:
    """Repeat the last observed value, `series[t0 - 1]`, over every step of the horizon.

    Args:
        series: (rows,) target over the whole time series, original units.
        target_rows: (samples,) integer row of each sample's first target step `t0`.
        horizon: target steps per sample.

    Returns:
        (samples, horizon) float64 forecasts.
    """
    return seasonal_naive(series, target_rows, horizon=horizon, season=1)


def seasonal_naive(
    series: np.ndarray, target_rows: np.ndarray, *, horizon: int, season: int
) -> np.ndarray:
    """Repeat the last full season observed at each forecast origin.

    Target row `r = t0 + k` (k = 0..horizon-1) gets `series[r - season * ceil((k + 1) / season)]`,
    the latest row of the same phase at or before the origin `t0 - 1`; steps beyond one season
    reuse that season again instead of reading rows not yet known. `season=1` is `persistence`.

    Args:
        series: (rows,) target over the whole time series, original units.
        target_rows: (samples,) integer row of each sample's first target step `t0`.
        horizon: target steps per sample.
        season: season length in rows (e.g. 24 for daily seasonality in hourly data).

    Returns:
        (samples, horizon) float64 forecasts.

    Raises:
        ValueError: on bad shapes or arguments, or when a sample needs a row before row 0.
    """
    series = np.asarray(series)
    target_rows = np.asarray(target_rows)
    if series.ndim != 1:
        raise ValueError(f"`series` must be 1D (rows,). Received: shape={series.shape}")
    if target_rows.ndim != 1 or not np.issubdtype(target_rows.dtype, np.integer):
        raise ValueError(
            "`target_rows` must be a 1D integer array (samples,). "
            f"Received: shape={target_rows.shape}, dtype={target_rows.dtype}"
        )
    for name, value in (("horizon", horizon), ("season", season)):
        if value < 1:
            raise ValueError(f"`{name}` must be > 0. Received: {name}={value}")
    k = np.arange(horizon)
    back = season * ((k + season) // season)  # season * ceil((k + 1) / season), in integers
    rows = target_rows[:, None] + (k - back)[None, :]  # [samples, horizon]
    if rows.size and rows.min() < 0:
        sample, step = np.unravel_index(np.argmin(rows), rows.shape)
        raise ValueError(
            f"sample {sample} (t0={target_rows[sample]}) needs row {rows[sample, step]} for "
            f"step {step + 1} with season={season}; drop samples with t0 < {season} or use a "
            "shorter season"
        )
    if rows.size and rows.max() >= series.shape[0]:
        sample = int(np.argmax(rows.max(axis=1)))
        raise ValueError(
            f"sample {sample} (t0={target_rows[sample]}) has its origin past the end of "
            f"`series` ({series.shape[0]} rows); pass the whole series"
        )
    return series[rows].astype(np.float64)


def ridge_forecast(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    *,
    alpha: float = 1.0,
    batch_size: int = 32_768,
) -> np.ndarray:
    """A linear baseline: ridge regression (with intercept) on flattened input windows.

    The same solution as scikit-learn's `Ridge(alpha)`, computed from the normal equations
    accumulated over batches gathered from the window views: memory stays at one batch plus a
    (timesteps * features)^2 matrix, where `Ridge` would need the flattened windows whole (and
    a centred copy), 4 GB at 2 million rows of 48 x 8 windows.

    Args:
        x_train: (samples, timesteps, features) training windows, scaled; views are fine.
        y_train: (samples, horizon) training targets, scaled.
        x_test: (test_samples, timesteps, features) windows to forecast.
        alpha: L2 penalty.
        batch_size: windows flattened at a time.

    Returns:
        (test_samples, horizon) forecasts in `y_train`'s (scaled) units.

    Raises:
        ValueError: on mismatched shapes.
    """
    if x_train.ndim != 3 or x_test.ndim != 3 or x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            "`x_train` and `x_test` must be 3D (samples, timesteps, features) with equal "
            f"timesteps and features. Received: {x_train.shape} and {x_test.shape}"
        )
    if y_train.ndim != 2 or y_train.shape[0] != x_train.shape[0]:
        raise ValueError(
            f"`y_train` must be (samples, horizon) with {x_train.shape[0]} samples. "
            f"Received: shape={y_train.shape}"
        )
    samples, width = x_train.shape[0], x_train.shape[1] * x_train.shape[2]
    gram, cross = np.zeros((width, width)), np.zeros((width, y_train.shape[1]))
    sum_x, sum_y = np.zeros(width), np.zeros(y_train.shape[1])
    for start in range(0, samples, batch_size):
        xb = np.asarray(x_train[start : start + batch_size], dtype=np.float64).reshape(-1, width)
        yb = np.asarray(y_train[start : start + batch_size], dtype=np.float64)
        gram += xb.T @ xb
        cross += xb.T @ yb
        sum_x += xb.sum(axis=0)
        sum_y += yb.sum(axis=0)
    mean_x, mean_y = sum_x / samples, sum_y / samples
    # Centred normal equations: (Xc'Xc + alpha I) w = Xc'yc, the intercept from the means.
    gram -= samples * np.outer(mean_x, mean_x)
    gram[np.diag_indices_from(gram)] += alpha
    coef = linalg.solve(gram, cross - samples * np.outer(mean_x, mean_y), assume_a="pos")
    intercept = mean_y - mean_x @ coef
    out = np.empty((x_test.shape[0], y_train.shape[1]))
    for start in range(0, x_test.shape[0], batch_size):
        xb = np.asarray(x_test[start : start + batch_size], dtype=np.float64).reshape(-1, width)
        out[start : start + batch_size] = xb @ coef + intercept
    return out


def leaderboard(scores: Mapping[str, Mapping[str, Any]], *, metric: str) -> list[dict[str, Any]]:
    """Rank models and baselines by one metric, lower is better.

    Args:
        scores: name -> {"kind": "model" | "baseline", <metric>: float | None, ...}.
        metric: the metric to rank by, one of `METRICS`.

    Returns:
        Rows {"rank", "name", "kind", <every metric in METRICS>} sorted ascending by `metric`,
        ties broken by name. A metric that is missing, None, nan or inf has no value: None in
        the row, ranked last.

    Raises:
        ValueError: on an unknown `metric` or `kind`.
    """
    if metric not in METRICS:
        raise ValueError(f"`metric` must be one of {METRICS}. Received: metric={metric!r}")
    rows = []
    for name, entry in scores.items():
        if entry.get("kind") not in KINDS:
            raise ValueError(
                f"entry {name!r} must have kind in {KINDS}. Received: kind={entry.get('kind')!r}"
            )
        values = {m: _value(entry.get(m)) for m in METRICS}
        rows.append({"name": name, "kind": entry["kind"], **values})
    rows.sort(key=lambda row: (row[metric] is None, row[metric] or 0.0, row["name"]))
    return [{"rank": rank, **row} for rank, row in enumerate(rows, start=1)]


def _value(metric: float | None) -> float | None:
    """A metric as a finite float, or None when it has no value (None, nan or inf)."""
    if metric is None:
        return None
    metric = float(metric)
    return metric if math.isfinite(metric) else None


def _flat_pair(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as float64 and flattened, after checking their shapes agree."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(
            f"`y` and `p` must have the same shape. Received: y.shape={y.shape}, p.shape={p.shape}"
        )
    if y.size == 0:
        raise ValueError(f"`y` and `p` must not be empty. Received: shape={y.shape}")
    return y.ravel(), p.ravel()
