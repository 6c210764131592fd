"""Metrics, prediction intervals and the leaderboard, all in the data's original units (the
baselines they score are in `freshcast.baselines`).

Metrics are pure functions of two equally shaped arrays, flattened; a metric that has no value
(MAPE when every target is ~0, MASE over a zero scale, any metric of a forecast holding a NaN or
inf) is nan. `score` and `leaderboard`, the records written as JSON, hold None (null) for it
instead: strict JSON has no nan.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
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
        "mae": finite_or_none(mae(y2, p2)),
        "rmse": finite_or_none(rmse(y2, p2)),
        "mape": finite_or_none(mape(y2, p2)),
        "smape": finite_or_none(smape(y2, p2)),
        "mase": finite_or_none(mase(y2, p2, scale=scale)),
        "mase_seasonal": finite_or_none(mase(y2, p2, scale=seasonal_scale)),
        "per_step": {
            "mae": [finite_or_none(v) for v in np.mean(np.abs(errors), axis=0)],
            "rmse": [finite_or_none(v) for v in step_rmse],
        },
    }


def spread(values: Iterable[float | None]) -> float | None:
    """The sample standard deviation (ddof=1) of the finite values, e.g. one metric over seeds;
    None, nan and inf are left out, and with fewer than 2 left there is no spread: None."""
    array = np.array([v for v in values if v is not None], dtype=np.float64)
    array = array[np.isfinite(array)]
    if array.size < 2:
        return None
    return finite_or_none(np.std(array, ddof=1))


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
            "width": finite_or_none(float(np.mean(2 * radius))),
            "radius_by_step": [finite_or_none(r) for r in radius],
            "served_radius_by_step": [finite_or_none(r) for r in conformal_radius(served, level)],
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
                **{m: finite_or_none(entry.get(m)) for m in (*METRICS, *EXTRA_METRICS)},
                **{
                    column: _plain(entry.get(column, per_step.get(step)))
                    for column, step in STEP_COLUMNS.items()
                },
                **{key: _plain(entry[key]) for key in CARRIED if key in entry},
            }
        )
    rows.sort(key=lambda row: (row[metric] is None, row[metric] or 0.0, row["name"]))
    return [{"rank": rank, **row} for rank, row in enumerate(rows, start=1)]


def finite_or_none(metric: float | None) -> float | None:
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
    return finite_or_none(value) if isinstance(value, float) else value


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
