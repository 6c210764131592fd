"""What the steps share: a run's folder read back (the spec, series, scaler, window views and
split targets as earlier steps saved them), atomic Parquet/NumPy/CSV writes, the backtest's
folds, the conf check every DAG runs first, and `timed`, which adds a step's seconds to its
result.
"""

from __future__ import annotations

import difflib
import functools
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from freshcast import artifacts
from freshcast.artifacts import output_path, read_json, read_manifest
from freshcast.errors import BadInputError
from freshcast.scaling import ScalerParams
from freshcast.spec import PipelineSpec
from freshcast.windowing import SPLITS, Windows, make_windows, split_ranges


def run_spec(run: Path) -> PipelineSpec:
    """The spec as the run's ingest step saved it, so every step of a run sees the same spec."""
    return PipelineSpec.model_validate(read_json(output_path(run / "ingest", "spec")))


def save_parquet(path: Path, frame: pd.DataFrame) -> Path:
    with artifacts.atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=True)
    return path


def save_npy(path: Path, array: np.ndarray) -> Path:
    with artifacts.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
    return path


def save_csv(path: Path, frame: pd.DataFrame) -> Path:
    with artifacts.atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def load_series(run: Path) -> pd.DataFrame:
    """The validated series in the data's units: (steps, columns) with a UTC DatetimeIndex."""
    return pd.read_parquet(output_path(run / "validate", "series"))


def load_scaler(run: Path) -> ScalerParams:
    return ScalerParams.from_json(read_json(output_path(run / "split_scale", "scaler")))


def load_windows(
    run: Path, *, timesteps: int | None = None
) -> tuple[dict[str, Windows], dict[str, Any]]:
    """The window views of each split over the scaled array (memory-mapped, nothing copied).

    Args:
        timesteps: a model's own input length; default the spec's `window`. Every length gives
            the same target rows in each split (a split's samples are the targets inside it).

    Returns:
        ({split: Windows}, the layout with "timesteps" and "ranges" for that length).
    """
    layout = read_json(output_path(run / "window", "layout"))
    if timesteps is not None and timesteps != layout["timesteps"]:
        splits = read_json(output_path(run / "split_scale", "splits"))
        ranges = split_ranges(
            tuple(splits[s]["rows"] for s in SPLITS), timesteps=timesteps, horizon=layout["horizon"]
        )
        layout = {
            **layout,
            "timesteps": timesteps,
            "ranges": {s: list(r) for s, r in ranges.items()},
        }
    scaled = np.load(output_path(run / "split_scale", "scaled"), mmap_mode="r", allow_pickle=False)
    windows = make_windows(
        scaled,
        timesteps=layout["timesteps"],
        horizon=layout["horizon"],
        inputs=layout["inputs"],
        target=layout["target"],
    )
    return {s: windows[slice(*layout["ranges"][s])] for s in SPLITS}, layout


def test_targets(series: np.ndarray, layout: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The test windows' first target rows [n] and their actual values [n, horizon]."""
    return split_targets(series, layout, "test")


def split_targets(
    series: np.ndarray, layout: dict[str, Any], split: str
) -> tuple[np.ndarray, np.ndarray]:
    """A split's windows' first target rows [n] and their actual values [n, horizon]."""
    start, stop = layout["ranges"][split]
    target_rows = np.arange(start, stop) + layout["timesteps"]  # [n]
    actual = series[target_rows[:, None] + np.arange(layout["horizon"])]  # [n, horizon]
    return target_rows, actual


def timed(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Add the step's wall-clock `seconds` to the dict it returns."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        result["seconds"] = round(time.perf_counter() - start, 3)
        return result

    return wrapper


class ConfError(BadInputError, ValueError):
    """A run's conf names a key its DAG does not take."""


def check_conf(conf: Mapping[str, Any] | None, *, known: Iterable[str], dag_id: str) -> None:
    """Refuse conf keys that are not parameters of the DAG (Airflow keeps them silently, so a
    typo such as `epoch` would train with the spec's epochs).

    Raises:
        ConfError: naming each unknown key, the closest known one and every known key.
    """
    known = sorted(known)
    unknown = sorted(set(conf or {}) - set(known))
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), known, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    takes = ", ".join(known) if known else "no conf at all"
    raise ConfError(
        f"{dag_id}: unknown conf key(s) {', '.join(hints)}; it takes {takes}. Trigger it again "
        "with the keys spelled as listed."
    )


def backtest_folds(splits: Mapping[str, Any], spec: PipelineSpec) -> list[dict[str, Any]]:
    """The rolling-origin folds of a spec's `backtest` over a run's splits ([] without one).

    The test split is cut into `folds` consecutive blocks (the last takes the remainder). Fold
    k fits on every row before its block, the last `val` of them validating (as many as the
    run's validation split), and scores the block: an expanding window, each fold knowing only
    the past of its block.

    Returns:
        [{"fold": k (1-based), "first_row": the block's first row, "stop": one past its last,
        "sizes": (train, val, test) rows of the fold's series (its rows up to `stop`)}].
    """
    if spec.backtest is None:
        return []
    first, rows = splits["test"]["first_row"], splits["test"]["rows"]
    val, block = splits["val"]["rows"], rows // spec.backtest.folds
    folds = []
    for k in range(spec.backtest.folds):
        start = first + k * block
        stop = first + rows if k == spec.backtest.folds - 1 else start + block
        folds.append(
            {
                "fold": k + 1,
                "first_row": start,
                "stop": stop,
                "sizes": (start - val, val, stop - start),
            }
        )
    return folds


def candidate_dir(run: Path, name: str) -> Path:
    """The folder of a leaderboard entry's model: `ensemble/<name>` or `train/<name>`."""
    ensemble = run / "ensemble" / name
    return ensemble if artifacts.store().published(ensemble) else run / "train" / name


def data_display(run: Path) -> dict[str, Any]:
    """The target's unit and the decimals its data is recorded with, as evaluate found them."""
    metrics = read_json(output_path(run / "evaluate", "metrics"))
    return {"unit": metrics.get("unit", ""), "decimals": metrics.get("decimals", 2)}


def fingerprint(run: Path) -> dict[str, str]:
    """The run's input fingerprint: content hashes of the ingested data and of the spec."""
    return read_manifest(run / "ingest", verify=False)["params"]["fingerprint"]
