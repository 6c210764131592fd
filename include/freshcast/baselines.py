"""The naive baselines every forecaster must beat, in the data's original units.

Persistence and seasonal naive repeat what the series did at each forecast origin; ridge is a
linear model on the flattened windows, its penalty chosen on the validation split. They forecast
from the same sample layout as the models (see `windowing`): a sample's first target row is
`t0`, its forecast origin is row `t0 - 1`, and a baseline may only read rows up to that origin.
`naive_kernel` writes seasonal naive as a linear map of a window, so it can seed a model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from freshcast.evaluation import finite_or_none

# The ridge baseline's penalties, tried on the validation split: 1e-4 (close to least squares)
# to 1e4 (a penalty that outweighs thousands of scaled samples), one per decade.
ALPHAS = tuple(float(a) for a in 10.0 ** np.arange(-4, 5))


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
        val_mae=tuple(finite_or_none(e) for e in errors),
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
