"""Shared test data: a tiny synthetic pipeline that trains in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml


def tiny_series(rows: int = 240, *, seed: int = 0) -> pd.DataFrame:
    """A daily series: a weekly sine plus noise as the target, and a lagged helper feature."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    load = 10 + 3 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 0.3, rows)
    temp = 5 + np.cos(2 * np.pi * t / 30) + rng.normal(0, 0.1, rows)
    stamps = pd.date_range("2024-01-01", periods=rows, freq="D")
    return pd.DataFrame({"day": stamps.strftime("%Y-%m-%d"), "load": load, "temp": temp})


def lagged_series(rows: int = 240, *, seed: int = 0, start: str = "2024-01-01") -> pd.DataFrame:
    """A daily series a small network learns in a few epochs and the naive baselines cannot:
    the target follows yesterday's helper feature, which is noise."""
    rng = np.random.default_rng(seed)
    temp = rng.normal(0, 1, rows + 1)
    load = 10 + 2 * temp[:-1] + rng.normal(0, 0.1, rows)  # load[t] ~ temp[t - 1]
    stamps = pd.date_range(start, periods=rows, freq="D")
    return pd.DataFrame({"day": stamps.strftime("%Y-%m-%d"), "load": load, "temp": temp[1:]})


# A spec whose models beat the baselines on `lagged_series` in a couple of seconds.
LEARNING_MODELS = [
    {
        "type": "lstm",
        "units": [8],
        "epochs": 15,
        "batch_size": 16,
        "patience": 15,
        "learning_rate": 0.02,
    },
    {
        "type": "gru",
        "units": [8],
        "epochs": 15,
        "batch_size": 16,
        "patience": 15,
        "learning_rate": 0.02,
    },
]


def write_tiny_pipeline(
    folder: Path, *, name: str = "tiny", data: pd.DataFrame | None = None, **overrides: object
) -> Path:
    """Write `<folder>/<name>.yaml` and its CSV (`data`, default `tiny_series()`); returns the
    spec path. `overrides` replace top-level spec fields."""
    folder.mkdir(parents=True, exist_ok=True)
    if "source" not in overrides:
        (tiny_series() if data is None else data).to_csv(folder / f"{name}.csv", index=False)
    spec = {
        "description": "Tiny synthetic series for the tests.",
        "source": {"path": f"{name}.csv"},
        "timestamp": "day",
        "frequency": "D",
        "target": "load",
        "features": ["load", "temp"],
        "split": {"val": 0.2, "test": 0.2},
        "window": 7,
        "horizon": 2,
        "season_length": 7,
        "metric": "mase",
        "schedule": None,
        "models": [
            {"type": "lstm", "units": [4], "epochs": 2, "batch_size": 32, "patience": 2},
            {"type": "gru", "units": [4], "epochs": 2, "batch_size": 32, "patience": 2},
        ],
        **overrides,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
