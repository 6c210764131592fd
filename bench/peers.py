"""The accuracy case's peers: what the served model is compared with, on the same test targets.

Test sample `i` of a run predicts target rows `[t0, t0 + horizon)` with `t0 = i + timesteps`
(`steps.run_folder.test_targets`, `windowing.split_ranges`); a peer forecasting from origin
`t0` reads rows before `t0` only. The peers:

    AutoETS, AutoARIMA  statsforecast, fitted once on the rows before the test split (train and
                        validation), then at each origin applied to the rows known there with
                        the fitted parameters (`forward`: states updated, nothing refitted)
    lstm_64, gru_64     plain Keras: one 64-unit layer and Dense(horizon), Adam at its default
                        rate, EarlyStopping(patience=10, restore_best_weights) on the validation
                        windows, at most 100 epochs of batch 32, on the pipeline's own scaled
                        windows, seeded, inverse-scaled to the data's units

The pipeline's own baselines (persistence, seasonal naive, ridge) are read from its evaluate
step's predictions. Where forecasting every origin would take too long (thousands of hourly
origins, each an ARIMA filter pass), every k-th origin is scored, for the served model and every
peer alike. TensorFlow and statsforecast are imported inside the functions that use them.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

PEER_UNITS = 64
PEER_EPOCHS = 100
PEER_PATIENCE = 10
PEER_BATCH = 32
# The most test origins scored per series (an ARIMA forecast costs about 0.3 s per hourly origin
# on 2 cores); beyond it every k-th origin is scored.
MAX_ORIGINS = 250
# A seasonal ARIMA keeps about two seasons of state per seasonal lag, so its filter grows with
# the period: a daily series' 365 is out of reach, and AutoARIMA runs non-seasonal there.
MAX_ARIMA_SEASON = 52
# statsforecast's ETS, like R's ets(), fits no seasonal component above this period.
MAX_ETS_SEASON = 24

Forecaster = Callable[[np.ndarray, int], np.ndarray]


# ------------------------------------------------------------------ origins and scoring


def origin_subset(samples: int, *, max_origins: int = MAX_ORIGINS, season: int = 1) -> np.ndarray:
    """Indices of the test samples to score: all of them, or every k-th.

    Args:
        samples: test samples of the run.
        max_origins: the most to score.
        season: the series' season length; k is chosen coprime with it, so the subset still
            covers every phase of the cycle (every hour of the day, every month).

    Returns:
        [m] sorted indices into the test samples, starting at 0.
    """
    if samples < 1:
        raise ValueError(f"`samples` must be > 0. Received: samples={samples}")
    if max_origins < 1:
        raise ValueError(f"`max_origins` must be > 0. Received: max_origins={max_origins}")
    step = max(1, math.ceil(samples / max_origins))
    while step > 1 and math.gcd(step, season) != 1:
        step += 1
    return np.arange(0, samples, step)


def rolling_forecasts(
    series: np.ndarray, origins: np.ndarray, *, horizon: int, forecast: Forecaster
) -> np.ndarray:
    """`forecast(history, horizon)` at each origin, `history` the rows before it.

    Args:
        series: [rows] the target in the data's units.
        origins: [n] first target rows t0.
        horizon: steps per forecast.
        forecast: takes `series[:t0]` and `horizon`, returns [horizon].

    Returns:
        [n, horizon] forecasts.
    """
    out = np.empty((len(origins), horizon), dtype=np.float64)
    for k, t0 in enumerate(origins):
        out[k] = np.asarray(forecast(series[: int(t0)], horizon), dtype=np.float64)
    return out


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute error over every origin and step; NaN if any forecast is not finite."""
    if actual.shape != forecast.shape:
        raise ValueError(f"shapes differ: actual {actual.shape}, forecast {forecast.shape}")
    if not np.all(np.isfinite(forecast)):
        return float("nan")
    return float(np.mean(np.abs(actual - forecast)))


def compare(scores: dict[str, float], *, served: str, spread: float | None) -> dict[str, Any]:
    """The served model against its best peer.

    Args:
        scores: MAE of the served model and of every peer, on the same origins.
        served: the served model's name in `scores`.
        spread: the standard deviation of its seeds' MAE, or None (one seed).

    Returns:
        {"best_peer", "best_peer_mae", "served_mae", "margin" (absolute, best peer minus
        served: positive when the served model is better), "margin_pct" (of the best peer's
        MAE), "spread", "spread_pct", "met"}: `met` is True when the served model beats the
        best peer by more than its seed spread, False when it does not (or does not beat it at
        all), None when it beats it but has no seed spread to compare with.
    """
    peers = {n: s for n, s in scores.items() if n != served and np.isfinite(s)}
    if not peers:
        raise ValueError(f"no peer with a finite score besides {served!r}: {scores}")
    best = min(peers, key=peers.__getitem__)
    best_mae, mine = peers[best], scores[served]
    margin = best_mae - mine
    if not np.isfinite(mine) or margin <= 0:
        met: bool | None = False
    elif spread is None:
        met = None
    else:
        met = bool(margin > spread)
    return {
        "best_peer": best,
        "best_peer_mae": best_mae,
        "served_mae": mine,
        "margin": margin,
        "margin_pct": 100 * margin / best_mae if best_mae else float("nan"),
        "spread": spread,
        "spread_pct": None if spread is None else 100 * spread / best_mae,
        "met": met,
    }


def forecasts_from_predictions(
    predictions: Any, name: str, origin_times: Any, *, horizon: int
) -> np.ndarray:
    """One forecaster's [n, horizon] test forecasts from evaluate's predictions table.

    Args:
        predictions: evaluate's predictions.parquet as a DataFrame (time, step, name, actual,
            prediction), each name's rows origin by origin, step by step.
        name: the forecaster.
        origin_times: [n] the timestamps of the first target rows, in order.
        horizon: steps per forecast.

    Raises:
        KeyError: no rows for `name`.
        ValueError: its rows are not the n x horizon forecasts at `origin_times`.
    """
    rows = predictions[predictions["name"] == name]
    if rows.empty:
        raise KeyError(
            f"evaluate's predictions hold no {name!r}; they hold "
            f"{sorted(predictions['name'].unique())}"
        )
    n = len(origin_times)
    if len(rows) != n * horizon:
        raise ValueError(f"{name}: {len(rows)} prediction rows, expected {n} x {horizon}")
    first = rows["time"].to_numpy()[::horizon]
    if not np.array_equal(first, np.asarray(origin_times, dtype=first.dtype)):
        raise ValueError(f"{name}: prediction rows are not in the test targets' order")
    return rows["prediction"].to_numpy(dtype=np.float64).reshape(n, horizon)


# ------------------------------------------------------------------ statsforecast peers


def statsforecast_peer(
    kind: str,
    series: np.ndarray,
    origins: np.ndarray,
    *,
    horizon: int,
    fit_rows: int,
    season_length: int,
) -> dict[str, Any]:
    """AutoETS (`kind="ets"`) or AutoARIMA (`kind="arima"`) forecasts at each origin.

    The model is fitted once on `series[:fit_rows]`; each origin's forecast applies the fitted
    model to the rows before that origin (`forward`), so it never reads a row at or after it.

    Args:
        series: [rows] the target in the data's units.
        origins: [n] first target rows, each >= fit_rows.
        horizon: steps per forecast.
        fit_rows: rows to fit on (the train and validation splits).
        season_length: the series' season; AutoARIMA runs non-seasonal above MAX_ARIMA_SEASON.

    Returns:
        {"forecasts": [n, horizon], "model": the fitted form (e.g. "ETS(A,N,A)"), "note",
        "fit_seconds", "forecast_seconds"}.
    """
    from statsforecast.models import AutoARIMA, AutoETS

    if len(origins) and int(np.min(origins)) < fit_rows:
        raise ValueError(f"an origin ({int(np.min(origins))}) lies before fit_rows={fit_rows}")
    note = ""
    if kind == "ets":
        model = AutoETS(season_length=season_length)
        if season_length > MAX_ETS_SEASON:
            note = f"season {season_length} > {MAX_ETS_SEASON}: statsforecast's ETS fits none"
    elif kind == "arima":
        season = season_length if season_length <= MAX_ARIMA_SEASON else 1
        if season != season_length:
            note = f"season {season_length} > {MAX_ARIMA_SEASON}: non-seasonal"
        # R's auto.arima default: search with the CSS approximation on long or seasonal series.
        model = AutoARIMA(season_length=season, approximation=fit_rows > 150 or season > 12)
    else:
        raise ValueError(f"`kind` must be 'ets' or 'arima'. Received: kind={kind!r}")
    with warnings.catch_warnings():
        # ARIMA's forward re-runs its filter with every coefficient fixed; the optimiser's
        # "possible convergence problem" warnings say nothing about a forecast.
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        model.fit(np.asarray(series[:fit_rows], dtype=np.float64))
        fitted = time.perf_counter()
        forecasts = rolling_forecasts(
            series,
            origins,
            horizon=horizon,
            forecast=lambda history, h: model.forward(history, h=h)["mean"],
        )
        done = time.perf_counter()
    return {
        "forecasts": forecasts,
        "model": describe_statsforecast(model.model_),
        "note": note,
        "fit_seconds": fitted - started,
        "forecast_seconds": done - fitted,
    }


def describe_statsforecast(fitted: dict[str, Any]) -> str:
    """A fitted statsforecast model's form: `ETS(A,Ad,N)` or `ARIMA(1,1,1)(0,1,1)[12]`."""
    if "components" in fitted:
        error, trend, season, damped = str(fitted["components"])[:4]
        return f"ETS({error},{trend}{'d' if damped == 'D' else ''},{season})"
    p, q, seasonal_p, seasonal_q, m, d, seasonal_d = fitted["arma"][:7]
    form = f"ARIMA({p},{d},{q})"
    if m > 1 and (seasonal_p or seasonal_d or seasonal_q):
        form += f"({seasonal_p},{seasonal_d},{seasonal_q})[{m}]"
    terms = [t for t in ("drift", "intercept") if t in fitted.get("coef", {})]
    return form + (f" with {' and '.join(terms)}" if terms else "")


# ------------------------------------------------------------------ Keras peers


def keras_peer(
    cell: str,
    train: Any,
    val: Any,
    x_test: np.ndarray,
    *,
    seed: int,
    units: int = PEER_UNITS,
    epochs: int = PEER_EPOCHS,
    patience: int = PEER_PATIENCE,
    batch_size: int = PEER_BATCH,
) -> dict[str, Any]:
    """A plain Keras LSTM or GRU trained on the pipeline's windows; its scaled forecasts.

    Args:
        cell: "lstm" or "gru".
        train, val: the run's train and validation `Windows` (x [N, T, F], y [N, horizon]).
        x_test: [n, T, F] the scored test windows' inputs (rows before each origin).
        seed: seeds Python, NumPy and TensorFlow (`keras.utils.set_random_seed`).

    Returns:
        {"forecasts": [n, horizon] in the scaled units, "model", "epochs_run", "best_epoch",
        "fit_seconds"}.
    """
    import keras

    layers = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
    if cell not in layers:
        raise ValueError(f"`cell` must be 'lstm' or 'gru'. Received: cell={cell!r}")
    keras.utils.set_random_seed(seed)
    _, timesteps, features = train.x.shape
    horizon = train.y.shape[1]
    model = keras.Sequential(
        [
            keras.Input((timesteps, features)),
            layers[cell](units),
            keras.layers.Dense(horizon),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    started = time.perf_counter()
    history = model.fit(
        np.ascontiguousarray(train.x),  # [N, T, F]
        np.ascontiguousarray(train.y),  # [N, horizon]
        validation_data=(np.ascontiguousarray(val.x), np.ascontiguousarray(val.y)),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        callbacks=[stop],
        verbose=0,
    )
    fit_seconds = time.perf_counter() - started
    predicted = model.predict(np.ascontiguousarray(x_test), batch_size=256, verbose=0)
    val_loss = history.history["val_loss"]
    return {
        "forecasts": np.asarray(predicted, dtype=np.float64),  # [n, horizon], scaled
        "model": f"{cell.upper()}({units}) + Dense({horizon})",
        "epochs_run": len(val_loss),
        "best_epoch": int(np.argmin(val_loss)) + 1,
        "fit_seconds": fit_seconds,
    }


# ------------------------------------------------------------------ one run, every peer


def score_run(
    run_dir: str | Path,
    *,
    served: str | None,
    max_origins: int = MAX_ORIGINS,
    peer_epochs: int = PEER_EPOCHS,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Run every peer on a finished pipeline run and score it beside the served model.

    Args:
        run_dir: the run folder (its evaluate step done).
        served: the model the gate promoted; None when nothing was promoted, then the run's
            best model is scored in its place and the goal is not met.
        max_origins: the most test origins scored (see `origin_subset`).
        peer_epochs: the Keras peers' epoch limit.

    Returns:
        JSON-able: {"target", "unit", "served", "promoted", "horizon", "origins": {"scored",
        "of", "step"}, "spread", "scores": {name: {"kind", "mae", ...}} (the served model and
        the baselines also with "full_mae", on every origin), "comparison": `compare`'s}.
    """
    import pandas as pd

    from freshcast import artifacts, steps
    from freshcast.artifacts import output_path, read_json

    run = artifacts.local(run_dir)
    spec = steps.run_folder.run_spec(run)
    frame = steps.run_folder.load_series(run)
    windows, layout = steps.run_folder.load_windows(run)
    scaler = steps.run_folder.load_scaler(run)
    splits = read_json(output_path(run / "split_scale", "splits"))
    board = read_json(output_path(run / "evaluate", "leaderboard"))
    predictions = pd.read_parquet(output_path(run / "evaluate", "predictions"))

    series = frame[spec.target].to_numpy(dtype=np.float64)  # [rows], the data's units
    horizon = layout["horizon"]
    target_rows, actual = steps.run_folder.test_targets(series, layout)  # [n], [n, horizon]
    subset = origin_subset(len(target_rows), max_origins=max_origins, season=spec.season_length)
    origins, actual_scored = target_rows[subset], actual[subset]
    fit_rows = splits["test"]["first_row"]  # train + validation

    promoted = served is not None
    if served is None:  # nothing promoted: the run's best model, marked as not served
        served = next(r["name"] for r in board if r["kind"] in ("model", "ensemble"))
    row = next(r for r in board if r["name"] == served)
    spread = row.get("spread")
    spread = float(spread) if spread is not None and np.isfinite(spread) else None

    scores: dict[str, dict[str, Any]] = {}
    origin_times = frame.index[target_rows]
    own = [served] + [r["name"] for r in board if r["kind"] == "baseline"]
    for name in own:
        forecast = forecasts_from_predictions(predictions, name, origin_times, horizon=horizon)
        kind = "served" if name == served else "baseline"
        scores[name] = {
            "kind": kind,
            "mae": mae(actual_scored, forecast[subset]),
            "full_mae": mae(actual, forecast),
        }

    for kind, name in (("ets", "AutoETS"), ("arima", "AutoARIMA")):
        say(f"    {name} ...")
        try:
            got = statsforecast_peer(
                kind,
                series,
                origins,
                horizon=horizon,
                fit_rows=fit_rows,
                season_length=spec.season_length,
            )
        except Exception as err:  # one failing peer must not lose the others
            scores[name] = {"kind": "peer", "mae": float("nan"), "error": _error(err)}
            continue
        scores[name] = {
            "kind": "peer",
            "mae": mae(actual_scored, got["forecasts"]),
            "model": got["model"],
            "note": got["note"],
            "seconds": got["fit_seconds"] + got["forecast_seconds"],
        }

    x_test = windows["test"].x[subset]  # [m, T, F]: rows before each origin
    for cell in ("lstm", "gru"):
        name = f"{cell}_{PEER_UNITS}"
        say(f"    {name} ...")
        try:
            got = keras_peer(
                cell, windows["train"], windows["val"], x_test, seed=spec.seed, epochs=peer_epochs
            )
        except Exception as err:
            scores[name] = {"kind": "peer", "mae": float("nan"), "error": _error(err)}
            continue
        forecast = scaler.inverse(got["forecasts"], column=spec.target)  # data's units
        scores[name] = {
            "kind": "peer",
            "mae": mae(actual_scored, np.asarray(forecast, dtype=np.float64)),
            "model": got["model"],
            "note": f"{got['epochs_run']} epochs, best {got['best_epoch']}",
            "seconds": got["fit_seconds"],
        }

    comparison = compare({n: s["mae"] for n, s in scores.items()}, served=served, spread=spread)
    if not promoted:
        comparison["met"] = False
    return {
        "target": spec.target,
        "unit": spec.unit,
        "served": served,
        "promoted": promoted,
        "horizon": horizon,
        "origins": {
            "scored": len(subset),
            "of": len(target_rows),
            "step": int(subset[1] - subset[0]) if len(subset) > 1 else 1,
        },
        "spread": spread,
        "intervals": row.get("intervals"),
        "scores": scores,
        "comparison": comparison,
    }


def _error(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err)[:300]}"
