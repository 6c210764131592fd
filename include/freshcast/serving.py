"""Forecast bundles in use: load one safely, check data against its schema, forecast with it.

A bundle (see `registry`) holds everything a forecast needs: the model (`.keras`, loaded with
safe_mode on after its sha256 is checked), the scaler's parameters, the window and horizon, the
column order and the input schema. `python -m freshcast.serving verify <bundle dir>` loads a
bundle in a fresh process and checks that it reproduces its stored sample prediction; the gate
runs it before a bundle may become the champion.

A bundle whose model has calendar inputs (`cal_hour_sin`, ...) is self-contained: data without
those columns gets them derived from its time index (`freshcast.calendar`), as in training.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from freshcast.artifacts import read_json, read_manifest
from freshcast.calendar import ensure_calendar, is_calendar_column
from freshcast.errors import BadInputError
from freshcast.scaling import ScalerParams
from freshcast.windowing import input_windows

SAMPLE_TOLERANCE = 1e-4  # scaled units; the same weights on the same CPU agree to ~1e-7


class SchemaError(BadInputError, ValueError):
    """Data that does not fit a bundle's input schema; the message names the field."""


@dataclass
class Bundle:
    """A loaded forecast bundle."""

    path: Path
    meta: dict[str, Any]
    scaler: ScalerParams
    model: Any  # keras.Model

    @property
    def version(self) -> int:
        return int(self.meta["version"])

    @property
    def timesteps(self) -> int:
        return int(self.meta["window"]["timesteps"])

    @property
    def horizon(self) -> int:
        return int(self.meta["window"]["horizon"])

    @property
    def columns(self) -> list[str]:
        return list(self.meta["schema"]["columns"])

    @property
    def target(self) -> str:
        return str(self.meta["schema"]["target"])


def load_bundle(path: Path) -> Bundle:
    """Check every file against the bundle's manifest, then load the model with safe_mode on."""
    from freshcast.models import load_model

    manifest = read_manifest(path, verify=True)  # sha256 of every file
    meta = read_json(Path(manifest["outputs"]["bundle"]["path"]))
    scaler = ScalerParams.from_json(read_json(Path(manifest["outputs"]["scaler"]["path"])))
    model_entry = manifest["outputs"]["model"]
    model = load_model(Path(model_entry["path"]), sha256=model_entry["sha256"])
    bundle = Bundle(Path(path), meta, scaler, model)
    expected_in = (None, bundle.timesteps, int(meta["window"]["inputs"]))
    if tuple(model.input_shape) != expected_in or model.output_shape[-1] != bundle.horizon:
        raise SchemaError(
            f"bundle {path}: the model maps {model.input_shape} -> {model.output_shape}, the "
            f"bundle says {expected_in} -> (None, {bundle.horizon}); the bundle is inconsistent"
        )
    return bundle


def incompatibility(meta: dict[str, Any], frame: pd.DataFrame, *, frequency: str) -> str | None:
    """Why `frame` (a validated series) cannot feed the bundle, or None when it can.

    A calendar column the bundle needs and `frame` lacks is not missing: `forecast_rows`
    derives it from the index.
    """
    schema = meta["schema"]
    missing = [c for c in schema["columns"] if c not in frame.columns and not is_calendar_column(c)]
    if missing:
        return f"the data lacks column(s) {missing} that the model was trained on"
    if schema["frequency"] != frequency:
        return f"the data's grid is {frequency!r}, the model's is {schema['frequency']!r}"
    if len(frame) < int(meta["window"]["timesteps"]):
        return (
            f"{len(frame)} rows are fewer than the model's window of {meta['window']['timesteps']}"
        )
    return None


def check_schema(meta: dict[str, Any], frame: pd.DataFrame, *, frequency: str) -> None:
    """Raise SchemaError when `frame` cannot feed the bundle."""
    if problem := incompatibility(meta, frame, frequency=frequency):
        raise SchemaError(
            f"version {meta['version']} of {meta['pipeline']}: {problem}. Retrain with "
            "the current spec, or roll back to a version that matches the data."
        )


def forecast_rows(
    bundle: Bundle, frame: pd.DataFrame, target_rows: np.ndarray, *, batch_size: int = 256
) -> np.ndarray:
    """The bundle's forecasts for target rows of `frame`, in the data's units.

    Args:
        frame: (rows, columns) validated series holding the bundle's columns, with its UTC
            DatetimeIndex; calendar columns it lacks are derived from the index (only input
            rows' times are needed, so a forecast after the data needs no future row).
        target_rows: (n,) first target row of each forecast; a row may be `len(frame)` (the
            first step after the data). Each needs `timesteps` rows before it.

    Returns:
        (n, horizon) forecasts of the bundle's target column.

    Raises:
        SchemaError: a target row without `timesteps` rows of history in `frame`.
    """
    frame = ensure_calendar(frame, bundle.columns)
    scaled = bundle.scaler.transform(frame[bundle.columns].to_numpy(dtype=np.float64))
    inputs = int(bundle.meta["window"]["inputs"])
    x = input_windows(scaled, timesteps=bundle.timesteps, inputs=inputs)  # [rows-T+1, T, F]
    index = np.asarray(target_rows) - bundle.timesteps
    if index.min(initial=0) < 0 or index.max(initial=0) >= len(x):
        raise SchemaError(
            f"target rows {int(np.min(target_rows))}..{int(np.max(target_rows))} need "
            f"{bundle.timesteps} rows of history within the {len(frame)} rows given"
        )
    predictions = [
        np.asarray(bundle.model(x[index[i : i + batch_size]], training=False), dtype=np.float64)
        for i in range(0, len(index), batch_size)
    ]  # each [B, horizon], scaled
    scaled_out = np.concatenate(predictions) if predictions else np.empty((0, bundle.horizon))
    return bundle.scaler.inverse(scaled_out, column=bundle.target)


def verify(path: Path) -> dict[str, Any]:
    """Load the bundle and check that it reproduces its stored sample prediction."""
    bundle = load_bundle(path)
    manifest = read_manifest(path, verify=False)
    x = np.load(manifest["outputs"]["sample_input"]["path"], allow_pickle=False)
    expected = np.load(manifest["outputs"]["sample_output"]["path"], allow_pickle=False)
    got = np.asarray(bundle.model(x, training=False), dtype=np.float64)
    if got.shape != expected.shape or not np.all(np.isfinite(got)):
        raise SchemaError(
            f"bundle {path}: sample prediction {got.shape} is not finite or shaped "
            f"like the stored {expected.shape}"
        )
    error = float(np.max(np.abs(got - expected)))
    if error > SAMPLE_TOLERANCE:
        raise SchemaError(
            f"bundle {path}: the loaded model predicts the stored sample with max error "
            f"{error:.3g} > {SAMPLE_TOLERANCE}; the model is not the one that was evaluated"
        )
    return {"version": bundle.version, "samples": len(x), "max_abs_error": error}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m freshcast.serving")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("verify", help="load a bundle and predict its stored sample")
    check.add_argument("bundle", type=Path)
    args = parser.parse_args(argv)
    print(json.dumps(verify(args.bundle)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
