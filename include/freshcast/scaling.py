"""Scalers fit on the training rows only, saved as JSON parameters (never pickled)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.preprocessing import MinMaxScaler, StandardScaler

ScalerKind = Literal["minmax", "standard"]


@dataclass(frozen=True)
class ScalerParams:
    """A fitted per-column affine map: scaled = raw * scale + offset."""

    kind: ScalerKind
    columns: list[str]
    scale: list[float]
    offset: list[float]

    def transform(self, raw: np.ndarray, *, dtype: type = np.float32) -> np.ndarray:
        """(rows, columns) raw -> (rows, columns) scaled, as `dtype`."""
        raw = _check_2d(raw, len(self.columns))
        return (raw * np.asarray(self.scale) + np.asarray(self.offset)).astype(dtype, copy=False)

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
        params = cls(
            kind=data["kind"],
            columns=list(data["columns"]),
            scale=[float(v) for v in data["scale"]],
            offset=[float(v) for v in data["offset"]],
        )
        if not (len(params.columns) == len(params.scale) == len(params.offset)):
            raise ValueError(f"scaler JSON has mismatched lengths: {data}")
        return params


def fit_scaler(kind: ScalerKind, train: np.ndarray, columns: list[str]) -> ScalerParams:
    """Fit a scikit-learn scaler on the training rows and keep its parameters.

    Args:
        kind: "minmax" (to [0, 1]) or "standard" (zero mean, unit variance).
        train: (train_rows, columns) in the data's units. Only the training split: fitting on
            more would leak the future into the past.
        columns: the column names, in order.
    """
    train = _check_2d(train, len(columns))
    if kind == "minmax":
        mm = MinMaxScaler().fit(train)
        scale, offset = mm.scale_, mm.min_
    elif kind == "standard":
        std = StandardScaler().fit(train)
        scale = 1.0 / std.scale_
        offset = -std.mean_ * scale
    else:
        raise ValueError(f"`kind` must be 'minmax' or 'standard'. Received: kind={kind!r}")
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
