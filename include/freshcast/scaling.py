"""Scalers fit on the training rows only, saved as JSON parameters (never pickled)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.preprocessing import MinMaxScaler, StandardScaler

ScalerKind = Literal["minmax", "standard"]

# The largest magnitude the pipeline takes, in the data's units (checked by `validate`) and
# scaled. The model trains in float32 (max 3.4e38) and its loss squares errors: an error between
# two values within ±1e15 squares to at most 4e30, so float32 can add up 8e7 of them (far more
# than batch x horizon) without overflowing. The scaler's and the metrics' float64 sums (max
# 1.8e308) have far more room, and float64 still holds every whole number up to 2**53 (9e15)
# exactly. Beyond it a value is far more likely a sentinel (9.99e307), a unit or a parse error.
MAX_ABS_VALUE = 1e15


@dataclass(frozen=True)
class ScalerParams:
    """A fitted per-column affine map: scaled = raw * scale + offset."""

    kind: ScalerKind
    columns: list[str]
    scale: list[float]
    offset: list[float]

    def __post_init__(self) -> None:
        if not (len(self.columns) == len(self.scale) == len(self.offset)):
            raise ValueError(
                f"scaler has mismatched lengths: columns={self.columns}, scale={self.scale}, "
                f"offset={self.offset}"
            )
        for column, scale, offset in zip(self.columns, self.scale, self.offset, strict=True):
            if not (math.isfinite(scale) and math.isfinite(offset)) or scale == 0:
                raise ValueError(
                    f"scaler parameters of column {column!r} must be finite, the scale non-zero. "
                    f"Received: scale={scale!r}, offset={offset!r}"
                )

    def transform(self, raw: np.ndarray, *, dtype: type = np.float32) -> np.ndarray:
        """(rows, columns) raw -> (rows, columns) scaled, as `dtype`.

        Raises:
            ValueError: when a scaled value is not finite in `dtype` (a NaN in `raw`, or a value
                so far from the training rows that it overflows), naming its row and column.
        """
        raw = _check_2d(raw, len(self.columns))
        with np.errstate(over="ignore", invalid="ignore"):  # reported below, with the place
            scaled = (raw * np.asarray(self.scale) + np.asarray(self.offset)).astype(
                dtype, copy=False
            )
        if found := _first_non_finite(scaled):
            row, j, count = found
            raise ValueError(
                f"column {self.columns[j]!r}, row {row}: {raw[row, j]:g} scales to "
                f"{scaled[row, j]:g} in {np.dtype(dtype).name} ({count} such value(s)); "
                f"scaled values must be finite. Keep the data within ±{MAX_ABS_VALUE:g} and "
                "near the training rows' range (what `validate` checks)."
            )
        return scaled

    def inverse(self, scaled: np.ndarray, column: str | None = None) -> np.ndarray:
        """Back to the data's units: all columns of a 2D array, or one named column (any shape)."""
        if column is not None:
            i = self.columns.index(column)
            return (np.asarray(scaled, dtype=np.float64) - self.offset[i]) / self.scale[i]
        scaled = _check_2d(scaled, len(self.columns)).astype(np.float64)
        return (scaled - np.asarray(self.offset)) / np.asarray(self.scale)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "columns": self.columns,
            "scale": self.scale,
            "offset": self.offset,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScalerParams:
        if data.get("kind") not in ("minmax", "standard"):
            raise ValueError(f"scaler JSON has an unknown kind. Received: {data.get('kind')!r}")
        return cls(
            kind=data["kind"],
            columns=list(data["columns"]),
            scale=[float(v) for v in data["scale"]],
            offset=[float(v) for v in data["offset"]],
        )


def _first_non_finite(values: np.ndarray) -> tuple[int, int, int] | None:
    """(row, column index, how many) of the first NaN or inf in a 2D array, or None."""
    bad = np.argwhere(~np.isfinite(values))
    return (int(bad[0][0]), int(bad[0][1]), len(bad)) if bad.size else None


def fit_scaler(kind: ScalerKind, train: np.ndarray, columns: list[str]) -> ScalerParams:
    """Fit a scikit-learn scaler on the training rows and keep its parameters.

    Args:
        kind: "minmax" (to [0, 1]) or "standard" (zero mean, unit variance).
        train: (train_rows, columns) in the data's units. Only the training split: fitting on
            more would leak the future into the past.
        columns: the column names, in order.

    Raises:
        ValueError: on a bad `kind` or shape, a non-finite training value (scikit-learn's scalers
            would skip a NaN), or a column whose range or variance overflows float64.
    """
    train = _check_2d(train, len(columns))
    if kind not in ("minmax", "standard"):
        raise ValueError(f"`kind` must be 'minmax' or 'standard'. Received: kind={kind!r}")
    if found := _first_non_finite(train):
        row, j, count = found
        raise ValueError(
            f"`train` must be finite: column {columns[j]!r}, row {row} is {train[row, j]:g} "
            f"({count} such value(s)). Validate the data first."
        )
    # An overflowed spread comes back as finite nonsense (scikit-learn takes an infinite
    # variance for a constant column, scale 1, and divides by an infinite range, scale 0):
    # check the statistics themselves, not just the parameters derived from them.
    with np.errstate(over="ignore", invalid="ignore"):
        if kind == "minmax":
            mm = MinMaxScaler().fit(train)
            spread, scale, offset = mm.data_range_, mm.scale_, mm.min_
        else:
            std = StandardScaler().fit(train)
            spread, scale = std.var_, 1.0 / std.scale_
            offset = -std.mean_ * scale
    overflow = np.flatnonzero(~np.isfinite(spread))
    if overflow.size:
        j = int(overflow[0])
        what = "range" if kind == "minmax" else "variance"
        raise ValueError(
            f"the {what} of column {columns[j]!r} over the training rows overflows float64 "
            f"(from {train[:, j].min():g} to {train[:, j].max():g}); it cannot be scaled. Keep "
            f"the data within ±{MAX_ABS_VALUE:g}, which `validate` checks."
        )
    return ScalerParams(
        kind=kind, columns=list(columns), scale=scale.tolist(), offset=offset.tolist()
    )


def _check_2d(array: np.ndarray, columns: int) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[1] != columns:
        raise ValueError(
            f"expected an array of shape (rows, {columns}). Received: shape={array.shape}"
        )
    return array
