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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

# The metrics a leaderboard can be ranked by (the spec's `metric` is one of them).
METRICS = ("mae", "rmse", "mape", "smape", "mase")
# Scored and shown beside them, never ranked by: over a multi-step horizon MASE's one-step scale
# flatters the naive forecast it is measured against, the seasonal scale does not.
EXTRA_METRICS = ("mase_seasonal",)
KINDS = ("model", "ensemble", "seed", "baseline")
# Entries that have to beat the baselines, the gate's candidates: a seed is a part of its
# ensemble, not an entry.
CANDIDATE_KINDS = ("model", "ensemble")
# Leaderboard columns from a score's "per_step": column -> the metric listed per step.
STEP_COLUMNS = {"mae_by_step": "mae", "rmse_by_step": "rmse"}
# Entry fields a leaderboard row carries through when present (seeds, ensembles, tuning, ridge).
CARRIED = ("spread", "members", "of", "seed", "alpha", "trial", "intervals", "backtest")
# What each figure means, in one line, shown beside the figures in the report and the pages.
EXPLAIN = {
    "mae": "mean absolute error, in the target's units: the typical size of a miss",
    "rmse": "root mean squared error, in the target's units: like MAE, but large misses weigh more",
    "mape": "mean absolute percentage error, over the points whose actual value is not ~0",
    "smape": "symmetric percentage error, 200 |actual - forecast| / (|actual| + |forecast|) "
    "averaged: 0 to 200",
    "mase": "MAE over the training split's one-step naive MAE: below 1 beats a one-step naive "
    "forecast made in-sample",
    "mase_seasonal": "MAE over the training split's seasonal naive MAE (lag = season_length): "
    "below 1 beats the seasonal naive in-sample",
    "per_step": "MAE and RMSE of each forecast step, 1 = the first step after the origin",
    "coverage": "share of the test targets inside the prediction interval; near the nominal "
    "level means the interval can be trusted at that level",
    "width": "mean width of the prediction interval, in the target's units: narrower is more "
    "useful at the same coverage",
    "backtest": "the metric on each block of the test split, every model and baseline re-fit "
    "on all rows before its block; mean and spread over the folds",
    "spread": "sample standard deviation of the figure over the seeds or members behind a row: "
    "a gap between rows smaller than it may be chance",
}
# The ridge baseline's penalties, tried on the validation split: 1e-4 (close to least squares)
# to 1e4 (a penalty that outweighs thousands of scaled samples), one per decade.
ALPHAS = tuple(float(a) for a in 10.0 ** np.arange(-4, 5))


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


def score(
    y: np.ndarray,
    p: np.ndarray,
    *,
    scale: float | None,
    seasonal_scale: float | None = None,
) -> dict[str, Any]:
    """Every metric of one forecast, keyed by name; None where it has no value.

    Args:
        y, p: (samples, horizon) actual values and forecasts in the data's units, or
            (samples,) for one step.
        scale: the MASE denominator, `naive_scale(train)`.
        seasonal_scale: the "mase_seasonal" denominator, `naive_scale(train, lag=season)`;
            None (the default) when it has no value.

    Returns:
        Every metric in `METRICS`, then "mase_seasonal", then "per_step": {"mae": [...],
        "rmse": [...]} with one figure per forecast step (column). A forecast with a NaN or
        inf (a diverged model) scores None throughout, per step too, so the gate refuses it;
        the record is strict JSON as it is.

    Raises:
        ValueError: on shapes that differ, are empty or have more than 2 dimensions.
    """
    y2, p2 = _step_pair(y, p)  # [samples, horizon]
    if not np.isfinite(p2).all():
        nothing = [None] * y2.shape[1]
        return {
            **dict.fromkeys((*METRICS, *EXTRA_METRICS)),
            "per_step": {"mae": nothing, "rmse": list(nothing)},
        }
    errors = y2 - p2  # [samples, horizon]
    with np.errstate(over="ignore"):  # an overflowing square is inf: the step has no value
        step_rmse = np.sqrt(np.mean(np.square(errors), axis=0))
    return {
        "mae": _value(mae(y2, p2)),
        "rmse": _value(rmse(y2, p2)),
        "mape": _value(mape(y2, p2)),
        "smape": _value(smape(y2, p2)),
        "mase": _value(mase(y2, p2, scale=scale)),
        "mase_seasonal": _value(mase(y2, p2, scale=seasonal_scale)),
        "per_step": {
            "mae": [_value(v) for v in np.mean(np.abs(errors), axis=0)],
            "rmse": [_value(v) for v in step_rmse],
        },
    }


def spread(values: Iterable[float | None]) -> float | None:
    """The sample standard deviation (ddof=1) of the finite values, e.g. one metric over seeds;
    None, nan and inf are left out, and with fewer than 2 left there is no spread: None."""
    array = np.array([v for v in values if v is not None], dtype=np.float64)
    array = array[np.isfinite(array)]
    if array.size < 2:
        return None
    return _value(np.std(array, ddof=1))


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


@dataclass(frozen=True)
class RidgeNormal:
    """Ridge regression's centred normal equations, accumulated once and solved for any alpha.

    Built by `ridge_fit`. The centred Gram matrix is diagonalised once (on first use), so each
    alpha costs two (width, width) x (width, horizon) products rather than a new factorisation.
    """

    gram: np.ndarray  # [width, width], Xc'Xc with Xc the centred flattened windows
    cross: np.ndarray  # [width, horizon], Xc'yc
    mean_x: np.ndarray  # [width]
    mean_y: np.ndarray  # [horizon]
    samples: int
    window: tuple[int, int]  # (timesteps, features) of the training windows

    @cached_property
    def _eigen(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        values, vectors = np.linalg.eigh(self.gram)  # gram = V diag(values) V'
        # Xc'Xc is positive semi-definite: a negative eigenvalue is rounding, and is 0.
        values = np.maximum(values, 0.0)
        return values, vectors, vectors.T @ self.cross  # [width], [width, width], [width, horizon]

    def solve(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """The coefficients for one penalty: (Xc'Xc + alpha I) coef = Xc'yc.

        Directions whose eigenvalue plus `alpha` is at rounding level are left out (numpy's
        `pinv` rule), so alpha=0 gives the minimum-norm least-squares fit instead of inf.

        Returns:
            coef (width, horizon) and intercept (horizon,), in y's units.

        Raises:
            ValueError: on a negative or non-finite `alpha`.
        """
        if not (math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"`alpha` must be a finite number >= 0. Received: alpha={alpha}")
        values, vectors, projected = self._eigen
        denom = values + alpha
        floor = max(float(denom.max(initial=0.0)), 0.0) * denom.size * np.finfo(np.float64).eps
        inverse = np.divide(1.0, denom, out=np.zeros_like(denom), where=denom > floor)
        coef = vectors @ (inverse[:, None] * projected)  # [width, horizon]
        return coef, self.mean_y - self.mean_x @ coef

    def predict(self, x: np.ndarray, alpha: float, *, batch_size: int = 32_768) -> np.ndarray:
        """Forecasts for windows `x`: (samples, timesteps, features), views are fine.

        Returns:
            (samples, horizon) forecasts in the training target's (scaled) units.

        Raises:
            ValueError: on windows shaped unlike the training ones, or a bad `alpha`.
        """
        self._check(x, "x")
        coef, intercept = self.solve(alpha)
        out = np.empty((x.shape[0], coef.shape[1]))
        for start, xb in _flat_batches(x, batch_size):
            out[start : start + xb.shape[0]] = xb @ coef + intercept
        return out

    def _check(self, x: np.ndarray, name: str) -> None:
        if x.ndim != 3 or x.shape[1:] != self.window:
            raise ValueError(
                f"`{name}` must be 3D (samples, timesteps, features) with the training windows' "
                f"timesteps and features {self.window}. Received: shape={x.shape}"
            )


@dataclass(frozen=True)
class RidgeResult:
    """The ridge baseline with its alpha chosen on the validation split (see `ridge_select`)."""

    predictions: np.ndarray  # [test_samples, horizon], y's scaled units
    alpha: float
    alphas: tuple[float, ...]
    val_mae: tuple[float | None, ...]  # one per alpha, y's scaled units; None without a value
    normal: RidgeNormal  # the training windows' normal equations: solve or predict again

    @property
    def validation(self) -> dict[str, float | None]:
        """Each alpha's validation MAE as a JSON object, keyed by the alpha written "%g"
        ("0.0001", "1", "10000")."""
        return {f"{a:g}": mae for a, mae in zip(self.alphas, self.val_mae, strict=True)}

    def to_json(self) -> dict[str, Any]:
        """The choice and every alpha's validation MAE, for metrics.json (no predictions)."""
        return {"alpha": self.alpha, "validation_mae": self.validation}


def ridge_fit(x_train: np.ndarray, y_train: np.ndarray, *, batch_size: int = 32_768) -> RidgeNormal:
    """Accumulate ridge regression's normal equations (with intercept) on flattened windows.

    The same solution as scikit-learn's `Ridge(alpha)` for every alpha, computed from sums
    accumulated over batches gathered from the window views: memory stays at one batch plus a
    (timesteps * features)^2 matrix, where `Ridge` would need the flattened windows whole (and
    a centred copy), 4 GB at 2 million rows of 48 x 8 windows.

    Args:
        x_train: (samples, timesteps, features) training windows, scaled; views are fine.
        y_train: (samples, horizon) training targets, scaled.
        batch_size: windows flattened at a time.

    Returns:
        The normal equations; `solve(alpha)` and `predict(x, alpha)` on them.

    Raises:
        ValueError: on bad shapes or no windows.
    """
    if x_train.ndim != 3 or x_train.shape[0] == 0:
        raise ValueError(
            "`x_train` must be 3D (samples, timesteps, features) with at least one sample. "
            f"Received: shape={x_train.shape}"
        )
    if y_train.ndim != 2 or y_train.shape[0] != x_train.shape[0]:
        raise ValueError(
            f"`y_train` must be (samples, horizon) with {x_train.shape[0]} samples. "
            f"Received: shape={y_train.shape}"
        )
    samples, width, horizon = (
        x_train.shape[0],
        x_train.shape[1] * x_train.shape[2],
        y_train.shape[1],
    )
    gram, cross = np.zeros((width, width)), np.zeros((width, horizon))
    sum_x, sum_y = np.zeros(width), np.zeros(horizon)
    for start, xb in _flat_batches(x_train, batch_size):
        yb = np.asarray(y_train[start : start + xb.shape[0]], dtype=np.float64)  # [B, horizon]
        gram += xb.T @ xb
        cross += xb.T @ yb
        sum_x += xb.sum(axis=0)
        sum_y += yb.sum(axis=0)
    mean_x, mean_y = sum_x / samples, sum_y / samples
    # Centred sums: Xc'Xc = X'X - n mx mx', Xc'yc = X'y - n mx my'; the intercept from the means.
    gram -= samples * np.outer(mean_x, mean_x)
    cross -= samples * np.outer(mean_x, mean_y)
    return RidgeNormal(gram, cross, mean_x, mean_y, samples, x_train.shape[1:])


def ridge_select(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    x_test: np.ndarray,
    *,
    alphas: Iterable[float] = ALPHAS,
    batch_size: int = 32_768,
) -> RidgeResult:
    """The ridge baseline with its penalty chosen on the validation split, then forecast.

    Fits once on the training windows (`ridge_fit`), scores every alpha's forecasts of the
    validation windows by MAE and keeps the lowest; ties (to 1e-12 relative, rounding) go to the
    larger alpha, the simpler model. The test windows are only forecast, after the choice.
    MAE is taken in y's scaled units: the scalers are affine per column, so it is the original
    units' MAE times one positive factor and ranks the alphas the same.

    Args:
        x_train, x_val, x_test: (samples, timesteps, features) windows, scaled; views are fine.
        y_train, y_val: (samples, horizon) targets of the training and validation windows.
        alphas: the penalties to try, each finite and >= 0; `ALPHAS` by default.
        batch_size: windows flattened at a time.

    Returns:
        The test forecasts (test_samples, horizon) in y's scaled units, the chosen alpha and
        every alpha's validation MAE.

    Raises:
        ValueError: on bad shapes, no alphas or validation windows, or when no alpha has a
            finite validation MAE.
    """
    for name, x in (("x_val", x_val), ("x_test", x_test)):
        _check_like_train(x_train, name, x)
    normal = ridge_fit(x_train, y_train, batch_size=batch_size)
    horizon = y_train.shape[1]
    if y_val.shape != (x_val.shape[0], horizon) or x_val.shape[0] == 0:
        raise ValueError(
            f"`y_val` must be (samples, horizon) = ({x_val.shape[0]}, {horizon}), at least one "
            f"sample. Received: shape={y_val.shape}"
        )
    alphas = tuple(float(a) for a in alphas)
    if not alphas:
        raise ValueError("`alphas` must hold at least one penalty. Received: alphas=()")
    solved = [normal.solve(a) for a in alphas]  # raises on a bad alpha
    coef = np.concatenate([c for c, _ in solved], axis=1)  # [width, alphas * horizon]
    intercept = np.concatenate([b for _, b in solved])  # [alphas * horizon]
    total = np.zeros(len(alphas))
    with np.errstate(over="ignore", invalid="ignore"):  # a blown-up alpha has no value
        for start, xb in _flat_batches(x_val, batch_size):
            pb = (xb @ coef + intercept).reshape(xb.shape[0], len(alphas), horizon)
            yb = np.asarray(y_val[start : start + xb.shape[0]], dtype=np.float64)
            total += np.abs(pb - yb[:, None, :]).sum(axis=(0, 2))  # [alphas]
    errors = total / y_val.size
    finite = np.isfinite(errors)
    if not finite.any():
        raise ValueError(f"no alpha has a finite validation MAE. Received: alphas={alphas}")
    best = errors[finite].min()
    tied = finite & np.isclose(errors, best, rtol=1e-12, atol=0.0)
    alpha = max(a for a, t in zip(alphas, tied, strict=True) if t)
    return RidgeResult(
        predictions=normal.predict(x_test, alpha, batch_size=batch_size),
        alpha=alpha,
        alphas=alphas,
        val_mae=tuple(_value(e) for e in errors),
        normal=normal,
    )


def ridge_forecast(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    *,
    alpha: float = 1.0,
    batch_size: int = 32_768,
) -> np.ndarray:
    """A linear baseline with a fixed penalty: `ridge_fit(...).predict(x_test, alpha)`.

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
    _check_like_train(x_train, "x_test", x_test)
    normal = ridge_fit(x_train, y_train, batch_size=batch_size)
    return normal.predict(x_test, alpha, batch_size=batch_size)


def level_key(level: float) -> str:
    """A nominal coverage as the key of its interval figures: 0.8 -> "80", 0.975 -> "97.5"."""
    return f"{level * 100:.10g}"


def interval_columns(
    forecast: np.ndarray, intervals: Mapping[str, Any] | None, levels: Iterable[float], key: str
) -> dict[str, np.ndarray]:
    """`lower_<level>` and `upper_<level>` columns, flattened like `forecast` [n, horizon]:
    the forecast -+ each level's radius per step (`intervals[level][key]`); NaN without one."""
    out = {}
    for level in levels:
        entry = (intervals or {}).get(level_key(level))
        radius = np.array(
            [np.nan if r is None else r for r in (entry or {}).get(key, [np.nan])], np.float64
        )  # [horizon] (or [1] of NaN)
        pred = np.asarray(forecast, np.float64).reshape(-1, radius.size if entry else 1)
        out[f"lower_{level_key(level)}"] = (pred - radius).ravel()
        out[f"upper_{level_key(level)}"] = (pred + radius).ravel()
    return out


def conformal_radius(residuals: np.ndarray, level: float) -> np.ndarray:
    """Split-conformal half-widths, one per forecast step, from calibration residuals.

    The radius of step h is the ceil((n + 1) * level)-th smallest |residual| of that step over
    the n calibration windows: for a new window exchangeable with them, |error| <= radius with
    probability at least `level` (Vovk et al. 2005; Lei et al. 2018). With too few windows for
    the level (ceil((n + 1) * level) > n) the radius is infinite: no finite interval has it.

    Args:
        residuals: (samples, horizon) actual - forecast on windows the model did not fit, in
            the data's units.
        level: nominal coverage, in (0, 1).

    Returns:
        (horizon,) float64 radii.

    Raises:
        ValueError: on a level outside (0, 1), no samples or a non-finite residual.
    """
    errors = np.abs(np.asarray(residuals, dtype=np.float64))
    if errors.ndim == 1:
        errors = errors[:, None]
    if not 0 < level < 1:
        raise ValueError(f"`level` must be in (0, 1). Received: level={level}")
    if errors.ndim != 2 or errors.shape[0] == 0 or not np.isfinite(errors).all():
        raise ValueError(
            "`residuals` must be (samples, horizon), finite, with at least one sample. "
            f"Received: shape={errors.shape}"
        )
    n = errors.shape[0]
    rank = math.ceil((n + 1) * level)
    if rank > n:
        return np.full(errors.shape[1], np.inf)
    return np.sort(errors, axis=0)[rank - 1]


def interval_scores(
    calibration: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    levels: Iterable[float],
    serve: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, dict[str, Any]] | None:
    """Prediction intervals of one forecaster at each level, and how they did on the test split.

    Args:
        calibration: (actual, forecast), each (samples, horizon), on the validation windows.
        test: (actual, forecast) on the test windows, scored with the calibration's radii.
        levels: nominal coverages.
        serve: (actual, forecast) the served radii are calibrated on (validation and test
            together, the newest residuals); default `calibration`.

    Returns:
        level_key(level) -> {"level", "coverage" (share of test targets inside forecast +-
        radius), "width" (mean interval width, data's units), "radius_by_step" (the radii the
        coverage measured), "served_radius_by_step"}; None when a forecast is not finite
        (a diverged model has no interval).
    """
    pairs = [calibration, test, *([serve] if serve is not None else [])]
    if not all(np.isfinite(p).all() for _, p in pairs):
        return None
    residuals = np.subtract(*_step_pair(*calibration))
    y, p = _step_pair(*test)
    served = np.subtract(*_step_pair(*serve)) if serve is not None else residuals
    out = {}
    for level in levels:
        radius = conformal_radius(residuals, level)
        inside = np.abs(y - p) <= radius  # [samples, horizon]
        out[level_key(level)] = {
            "level": float(level),
            "coverage": float(inside.mean()),
            "coverage_by_step": [float(c) for c in inside.mean(axis=0)],
            "width": _value(float(np.mean(2 * radius))),
            "radius_by_step": [_value(r) for r in radius],
            "served_radius_by_step": [_value(r) for r in conformal_radius(served, level)],
            "calibration_windows": int(residuals.shape[0]),
        }
    return out


def leaderboard(scores: Mapping[str, Mapping[str, Any]], *, metric: str) -> list[dict[str, Any]]:
    """Rank models, ensembles, seeds and baselines by one metric, lower is better.

    Args:
        scores: name -> {"kind": one of `KINDS`, <metric>: float | None, ..., and optionally
            "mase_seasonal", "per_step" (as `score` gives them) and the `CARRIED` fields}.
        metric: the metric to rank by, one of `METRICS`.

    Returns:
        Rows {"rank", "name", "kind", <every metric in METRICS>, "mase_seasonal",
        "mae_by_step", "rmse_by_step", <each CARRIED field the entry has>} sorted ascending by
        `metric`, ties broken by name. A metric that is missing, None, nan or inf has no value:
        None in the row, ranked last; a "*_by_step" column is None without a "per_step".

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
        per_step = entry.get("per_step") or {}
        rows.append(
            {
                "name": name,
                "kind": entry["kind"],
                **{m: _value(entry.get(m)) for m in (*METRICS, *EXTRA_METRICS)},
                **{
                    column: _plain(entry.get(column, per_step.get(step)))
                    for column, step in STEP_COLUMNS.items()
                },
                **{key: _plain(entry[key]) for key in CARRIED if key in entry},
            }
        )
    rows.sort(key=lambda row: (row[metric] is None, row[metric] or 0.0, row["name"]))
    return [{"rank": rank, **row} for rank, row in enumerate(rows, start=1)]


def _value(metric: float | None) -> float | None:
    """A metric as a finite float, or None when it has no value (None, nan or inf)."""
    if metric is None:
        return None
    metric = float(metric)
    return metric if math.isfinite(metric) else None


def _plain(value: Any) -> Any:
    """`value` as plain JSON: numpy scalars and arrays as Python ones, nan and inf as None."""
    if isinstance(value, np.ndarray | list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    return _value(value) if isinstance(value, float) else value


def _check_like_train(x_train: np.ndarray, name: str, x: np.ndarray) -> None:
    """Windows to forecast must be shaped like the training windows."""
    if x_train.ndim != 3 or x.ndim != 3 or x_train.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"`x_train` and `{name}` must be 3D (samples, timesteps, features) with equal "
            f"timesteps and features. Received: {x_train.shape} and {x.shape}"
        )


def _flat_batches(x: np.ndarray, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start, windows[start : start + batch_size] flattened to float64 [B, timesteps * features])
    over `x` (samples, timesteps, features); gathers one batch at a time from a view."""
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be > 0. Received: batch_size={batch_size}")
    width = x.shape[1] * x.shape[2]
    for start in range(0, x.shape[0], batch_size):
        yield start, np.asarray(x[start : start + batch_size], dtype=np.float64).reshape(-1, width)


def _step_pair(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as float64 (samples, horizon), a 1D pair as one step, after `_flat_pair`'s
    checks."""
    shape = np.shape(y)
    flat_y, flat_p = _flat_pair(y, p)
    if len(shape) > 2:
        raise ValueError(
            f"`y` and `p` must be (samples, horizon) or (samples,). Received: shape={shape}"
        )
    steps = shape[1] if len(shape) == 2 else 1
    return flat_y.reshape(-1, steps), flat_p.reshape(-1, steps)


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


def naive_kernel(
    *, timesteps: int, features: int, target: int, horizon: int, season: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Seasonal naive (persistence for `season=1`) as a linear map of a flattened window.

    Step k of a window's forecast repeats the window's target value at position
    `timesteps + k - season * ceil((k + 1) / season)`, as `seasonal_naive` does in rows. A window
    flattened row-major (`x.reshape(-1)`, as Keras' Flatten does) has that value at
    `position * features + target`.

    Returns:
        kernel (timesteps * features, horizon) of zeros and ones, and a zero bias (horizon,):
        `x.reshape(n, -1) @ kernel + bias` is the forecast in the target's scaled units.

    Raises:
        ValueError: when a step needs a position before the window (timesteps < season).
    """
    if not 0 <= target < features:
        raise ValueError(f"`target` must be in [0, {features}). Received: target={target}")
    k = np.arange(horizon)
    positions = timesteps + k - season * ((k + season) // season)
    if positions.min(initial=0) < 0:
        raise ValueError(
            f"a window of {timesteps} steps cannot hold the last season of {season} steps; "
            "lengthen the window"
        )
    kernel = np.zeros((timesteps * features, horizon))
    kernel[positions * features + target, k] = 1.0
    return kernel, np.zeros(horizon)
