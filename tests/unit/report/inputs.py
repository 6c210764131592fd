"""Hand-made inputs of the report tests: scores and leaderboards with known MAEs, predictions
whose error per step is exact, gate decisions, sweeps, intervals, and the run reports written
from them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from freshcast import evaluation as ev
from freshcast.report import run_report, write_report

RUN_ID = "manual__2025-01-01T00:00<&>"
EVIL = "<script>alert(1)</script>"
# MAE of each entry at step s is ERROR[name] * s (see step_predictions); the leaderboard agrees.
ERROR = {
    "gru": 0.5,
    "lstm": 0.6,
    "tcn": 0.8,
    "persistence": 0.8,
    "ridge": 0.7,
    "seasonal_naive_24": 1.0,
}


def entry_scores():
    """Leaderboard inputs with hand-chosen MAEs (°C, data recorded to 0.1, so 2 decimals):
    gru beats every baseline; lstm loses to ridge; tcn ties persistence and loses to ridge;
    broken has no score."""
    mae = {
        "gru": 1.5,
        "lstm": 1.9,
        "tcn": 2.0,
        "broken": math.nan,
        "persistence": 2.0,
        "ridge": 1.8,
        "seasonal_naive_24": 2.5,
    }
    return {
        name: {
            "kind": "baseline"
            if name in ("persistence", "ridge", "seasonal_naive_24")
            else "model",
            "mae": value,
            "rmse": 2 * value,
            "mape": 3.0,
            "smape": 4.0,
            "mase": value / 2.5,
        }
        for name, value in mae.items()
    }


def leaderboard_rows():
    return ev.leaderboard(entry_scores(), metric="mae")


def step_predictions(horizon=2, samples=12, names=tuple(ERROR)):
    """actual = 0, 1, 2, ...; each prediction errs by +-ERROR[name] * step, the sign
    alternating over time, so the MAE at step s is exactly ERROR[name] * s."""
    times = pd.date_range("2025-01-01", periods=samples, freq="h", tz="UTC")
    sign = np.where(np.arange(samples) % 2 == 0, 1.0, -1.0)
    frames = []
    for name in names:
        for step in range(1, horizon + 1):
            actual = np.arange(samples, dtype=np.float64) + step - 1
            frames.append(
                pd.DataFrame(
                    {
                        "time": times + pd.Timedelta(hours=step - 1),
                        "step": step,
                        "name": name,
                        "actual": actual,
                        "prediction": actual + sign * ERROR[name] * step,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def loss_histories():
    return {
        "gru": {"loss": [1.0, 0.5, 0.3, 0.2], "val_loss": [1.2, 0.7, 0.6, 0.65]},
        "lstm": {"loss": [0.9, -0.1], "val_loss": [1.0, 0.8]},  # not all positive: linear axis
    }


def gate_decision(**changes):
    decision = {
        "promote": False,
        "metric": "mae",
        "candidate": "gru",
        "reasons": ["gru mae 1.5 beats persistence 2", f"odd reason {EVIL}", "refuse"],
        "scores": {
            "persistence": {"role": "baseline", "mae": 2.0, "rmse": 4.0, "mase": 0.8},
            "gru": {"role": "candidate", "mae": 1.5, "rmse": 3.0, "mase": 0.6, "smape": 4.0},
            "champion_v1": {"role": "champion", "mae": 1.25, "rmse": 2.5, "mase": 0.5},
        },
        "current_champion": 1,
    }
    return {**decision, **changes}


def write_run_report(out_dir, **changes):
    kwargs = dict(
        pipeline="demo",
        run_id=RUN_ID,
        metric="mae",
        leaderboard=leaderboard_rows(),
        histories=loss_histories(),
        predictions=step_predictions(),
        target="temp",
        unit="°C",
        decimals=1,
        decision=gate_decision(),
        zoom=10,
    )
    return write_report(out_dir, **{**kwargs, **changes})


def ensemble_board():
    """Ranked by MAE (°C, data to 0.1, so 2 decimals): the lstm ensemble of three seeds (spread
    0.05), its seeds scattered through the ranks, gru, ridge with its alpha, persistence. The
    per-step lists differ from what the predictions give, so the page must show these."""

    def row(rank, name, kind, mae, **extra):
        return {
            "rank": rank, "name": name, "kind": kind, "mae": mae, "rmse": 2 * mae,
            "mape": 3.0, "smape": 4.0, "mase": mae / 2.5, "mase_seasonal": mae / 2.0, **extra,
        }  # fmt: skip

    seeds = ["lstm-s1", "lstm-s2", "lstm-s3"]
    return [
        row(1, "lstm", "ensemble", 1.4, members=seeds, spread=0.05,
            mae_by_step=[1.2, 1.6], rmse_by_step=[1.5, 2.5]),
        row(2, "lstm-s2", "seed", 1.45, of="lstm", seed=43,
            mae_by_step=[0.1, 0.1], rmse_by_step=[0.1, 0.1]),
        row(3, "gru", "model", 1.5, mae_by_step=[1.25, 1.75], rmse_by_step=[1.5, 2.1]),
        row(4, "lstm-s1", "seed", 1.5, of="lstm", seed=42),
        row(5, "ridge", "baseline", 1.8, alpha=10.0,
            mae_by_step=[1.5, 2.1], rmse_by_step=[1.9, 2.7]),
        row(6, "lstm-s3", "seed", 1.55, of="lstm", seed=44),
        row(7, "persistence", "baseline", 2.0, mae_by_step=[1.0, 3.0], rmse_by_step=[1.25, None]),
    ]  # fmt: skip


def lr_sweep(**changes):
    sweep = {
        "rates": [1e-4, 1e-3, 1e-2, 1e-1],
        "losses": [0.9, 0.5, None, 3.0],
        "suggested": 0.001,
        "rule": "steepest descent / 10",
        "low": 1e-4,
        "high": 0.1,
    }
    return {**sweep, **changes}


def ensemble_page(tmp_path, **changes):
    kwargs = dict(
        leaderboard=ensemble_board(),
        predictions=step_predictions(names=("gru", "ridge", "persistence")),
        histories={},
        decision=None,
    )
    paths = write_run_report(tmp_path, **{**kwargs, **changes})
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    return paths, summary, paths["html"].read_text(encoding="utf-8")


def _interval(level, coverage, width, windows=47):
    radius = None if width is None else width / 2
    return {
        "level": level,
        "coverage": coverage,
        "coverage_by_step": [coverage, coverage],
        "width": width,
        "radius_by_step": [radius, radius],
        "served_radius_by_step": [radius, radius],
        "calibration_windows": windows,
    }


def interval_scores():
    """gru and ridge with 80% and 95% intervals (95% of ridge too wide to calibrate: n/a),
    persistence without; lstm's 95% covers less than its level."""
    scores = entry_scores()
    scores["gru"]["intervals"] = {
        "80": _interval(0.8, 0.8125, 3.07),
        "95": _interval(0.95, 0.9583, 5.5),
    }
    scores["lstm"]["intervals"] = {"95": _interval(0.95, 0.75, 4.0)}
    scores["ridge"]["intervals"] = {
        "80": _interval(0.8, 0.79, 3.3),
        "95": _interval(0.95, 1.0, None),
    }
    return scores


def banded_predictions(**kwargs):
    """`step_predictions` with bounds: gru's forecast -+ 1 (80%) and -+ 2 (95%); NaN elsewhere."""
    frame = step_predictions(**kwargs)
    gru = (frame["name"] == "gru").to_numpy()
    for key, radius in (("80", 1.0), ("95", 2.0)):
        frame[f"lower_{key}"] = np.where(gru, frame["prediction"] - radius, np.nan)
        frame[f"upper_{key}"] = np.where(gru, frame["prediction"] + radius, np.nan)
    return frame


def intervals_page(tmp_path, **changes):
    kwargs = dict(
        leaderboard=ev.leaderboard(interval_scores(), metric="mae"),
        predictions=banded_predictions(),
    )
    figures = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_report, "save", lambda fig, path: figures.setdefault(Path(path).name, fig))
        paths = write_run_report(tmp_path, **{**kwargs, **changes})
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    return summary, paths["html"].read_text(encoding="utf-8"), figures


def bands_of(ax):
    """The filled areas of an axes (fill_between's PolyCollections), by label."""
    from matplotlib.collections import PolyCollection

    return {c.get_label(): c for c in ax.collections if isinstance(c, PolyCollection)}
