"""The training DAG's data steps: ingest, validate, split_scale and window.

Data in, checked, scaled on the training split only and cut into zero-copy window views. No
TensorFlow here; `window` stores only the layout (the views are rebuilt from the scaled array).
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from freshcast import artifacts
from freshcast.artifacts import output_path, read_json, read_manifest, write_manifest
from freshcast.errors import BadInputError
from freshcast.ingest import data_fingerprint, load_source, source_files
from freshcast.scaling import fit_scaler
from freshcast.spec import PipelineSpec, load_spec, source_location
from freshcast.steps.run_folder import (
    backtest_folds,
    load_series,
    run_spec,
    save_npy,
    save_parquet,
    timed,
)
from freshcast.validate import validate_frame
from freshcast.windowing import SPLITS, make_windows, split_ranges

log = logging.getLogger(__name__)


@timed
def ingest(spec_file: str | Path, *, run_id: str, cutoff: datetime | None) -> dict[str, Any]:
    """Read the source up to `cutoff` and store a Parquet snapshot plus the spec as it was."""
    spec = load_spec(spec_file)
    run = artifacts.run_dir(spec.name, run_id)
    with artifacts.step_output(run / "ingest") as out:
        files = source_files(spec)
        frame = load_source(spec, cutoff=cutoff, files=files)
        snapshot = save_parquet(out / "snapshot.parquet", frame)
        spec_json = artifacts.write_json(out / "spec.json", spec.model_dump(mode="json"))
        fingerprint = {
            "data_sha256": data_fingerprint(frame),
            "spec_sha256": artifacts.sha256_file(spec_json),
        }
        manifest = write_manifest(
            out,
            step="ingest",
            inputs={f"source_{i}": f for i, f in enumerate(files)} | {"spec_file": spec.spec_path},
            outputs={"snapshot": snapshot, "spec": spec_json},
            params={
                "cutoff": cutoff.isoformat() if cutoff else None,
                "source": source_location(spec),
                "fingerprint": fingerprint,
            },
            shapes={"snapshot": list(frame.shape)},
        )
        log.info("ingested %d rows from %s up to %s", len(frame), source_location(spec), cutoff)
    return {
        "run_dir": artifacts.where(run),
        "rows": len(frame),
        "snapshot_sha256": read_json(manifest)["outputs"]["snapshot"]["sha256"],
        **fingerprint,
    }


@timed
def validate(run_dir: str | Path) -> dict[str, Any]:
    """Check the snapshot and store the series on its regular grid, gaps filled per the spec."""
    run = artifacts.local(run_dir)
    spec = run_spec(run)
    ingested = read_manifest(run / "ingest")  # checks every output's sha256 once
    raw = pd.read_parquet(ingested["outputs"]["snapshot"]["path"])
    frame, report = validate_frame(raw, spec, source=ingested["params"]["source"])
    with artifacts.step_output(run / "validate") as out:
        series = save_parquet(out / "series.parquet", frame)
        write_manifest(
            out,
            step="validate",
            inputs={"snapshot": artifacts.recorded(run / "ingest", "snapshot")},
            outputs={"series": series},
            params={"report": vars(report)},
            shapes={"series": list(frame.shape)},
        )
    return {"run_dir": artifacts.where(run), **vars(report)}


@timed
def split_scale(
    run_dir: str | Path, *, sizes: tuple[int, int, int] | None = None
) -> dict[str, Any]:
    """Split chronologically, fit the scaler on the training rows only, scale the whole series.

    Args:
        sizes: rows of (train, val, test); default the spec's `split` (a backtest fold names
            its own).
    """
    run = artifacts.local(run_dir)
    spec = run_spec(run)
    frame = load_series(run)
    train, val, test = sizes or spec.split.sizes(len(frame))
    values = frame[spec.columns].to_numpy(dtype=np.float64)  # [rows, columns]
    scaler = fit_scaler(spec.scaler, values[:train], spec.columns)
    scaled = scaler.transform(values)  # float32 [rows, columns]
    bounds = np.cumsum([0, train, val, test])
    splits = {
        name: {
            "rows": int(bounds[i + 1] - bounds[i]),
            "first_row": int(bounds[i]),
            "start": frame.index[bounds[i]].isoformat(),
            "end": frame.index[bounds[i + 1] - 1].isoformat(),
        }
        for i, name in enumerate(SPLITS)
    }
    with artifacts.step_output(run / "split_scale") as out:
        outputs = {
            "scaled": save_npy(out / "scaled.npy", scaled),
            "scaler": artifacts.write_json(out / "scaler.json", scaler.to_json()),
            "splits": artifacts.write_json(out / "splits.json", splits),
        }
        write_manifest(
            out,
            step="split_scale",
            inputs={"series": artifacts.recorded(run / "validate", "series")},
            outputs=outputs,
            params={"scaler": spec.scaler, "columns": spec.columns},
            shapes={"scaled": list(scaled.shape)},
        )
    return {
        "run_dir": artifacts.where(run),
        "splits": {k: v["rows"] for k, v in splits.items()},
        "scaled_shape": list(scaled.shape),
    }


class WindowError(BadInputError, ValueError):
    """A model's window (or a searched window range) leaves a split without a full target."""


def _window_lengths(spec: PipelineSpec) -> dict[int, str]:
    """Every input length a model of the spec may use -> the spec field that asks for it."""
    lengths = {spec.window: "field 'window'"}
    for m in spec.models:
        if m.window is not None:
            lengths.setdefault(m.window, f"model {m.name!r}: field 'window'")
        if m.tune is not None and m.tune.window is not None:
            lengths.setdefault(m.tune.window[1], f"model {m.name!r}: field 'tune.window'")
    return lengths


@timed
def window(run_dir: str | Path) -> dict[str, Any]:
    """Lay out the windows of each split as views and check that no target leaves its split."""
    run = artifacts.local(run_dir)
    spec = run_spec(run)
    splits = read_json(output_path(run / "split_scale", "splits"))
    # Only the array's shape is read here (a memory map reads the header): its sha256 is checked
    # by the steps that read its values, so a large series is not hashed for nothing.
    scaled_path = output_path(run / "split_scale", "scaled", verify=False)
    scaled = np.load(scaled_path, mmap_mode="r", allow_pickle=False)
    rows = tuple(splits[s]["rows"] for s in SPLITS)
    ranges = split_ranges(rows, timesteps=spec.window, horizon=spec.horizon)
    for length, who in sorted(_window_lengths(spec).items()):
        try:  # each model's window (and a searched range's longest) must fit every split
            split_ranges(rows, timesteps=length, horizon=spec.horizon)
        except ValueError as err:
            raise WindowError(f"{spec.spec_path or spec.name}: {who}: {err}; shorten it") from None
        for fold in backtest_folds(splits, spec):  # and every backtest fold's splits
            try:
                split_ranges(fold["sizes"], timesteps=length, horizon=spec.horizon)
            except ValueError as err:
                raise WindowError(
                    f"{spec.spec_path or spec.name}: field 'backtest.folds': fold {fold['fold']} "
                    f"of {len(fold['sizes'])} splits {fold['sizes']} with {who}: {err}; use "
                    "fewer folds or a larger test split"
                ) from None
    layout = {
        "timesteps": spec.window,
        "horizon": spec.horizon,
        "inputs": len(spec.input_columns),
        "target": spec.columns.index(spec.target),
        "columns": spec.columns,
        "ranges": {s: list(r) for s, r in ranges.items()},
    }
    windows = make_windows(
        scaled,
        timesteps=spec.window,
        horizon=spec.horizon,
        inputs=layout["inputs"],
        target=layout["target"],
    )
    shapes = {}
    for s in SPLITS:
        start, stop = ranges[s]
        first_target, last_target = start + spec.window, stop - 1 + spec.window + spec.horizon - 1
        lo, hi = splits[s]["first_row"], splits[s]["first_row"] + splits[s]["rows"] - 1
        if not (lo <= first_target and last_target <= hi):  # the contract of split_ranges
            raise AssertionError(f"{s} targets rows {first_target}..{last_target} leave {lo}..{hi}")
        part = windows[start:stop]
        shapes[s] = {"x": list(part.x.shape), "y": list(part.y.shape)}
    with artifacts.step_output(run / "window") as out:
        layout_path = artifacts.write_json(out / "layout.json", layout)
        write_manifest(
            out,
            step="window",
            inputs={"scaled": artifacts.recorded(run / "split_scale", "scaled")},
            outputs={"layout": layout_path},
            params={"timesteps": spec.window, "horizon": spec.horizon},
            shapes=shapes,
        )
    return {"run_dir": artifacts.where(run), "shapes": shapes}
