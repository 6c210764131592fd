"""(rows, features) -> (samples, timesteps, features) windows as zero-copy views.

Sample `i` reads input rows `[i, i + timesteps)` and predicts target rows
`[i + timesteps, i + timesteps + horizon)`. A sample belongs to a split when all of its target
rows lie inside that split; its inputs may reach back into earlier rows, which were known at
forecast time. Nothing here copies the series: batches are gathered from the views on demand.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Windows:
    """Views over one 2D array: `x` is (samples, timesteps, features), `y` is (samples, horizon)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, key: slice) -> Windows:
        return Windows(self.x[key], self.y[key])

    def gather(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Copy out one batch: x[index] is [B, timesteps, features], y[index] is [B, horizon]."""
        return self.x[index], self.y[index]

    def batches(
        self, batch_size: int, *, shuffle: bool = False, seed: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield every window once, in batches of `batch_size` (the last one may be smaller)."""
        for index in batch_index(len(self), batch_size, shuffle=shuffle, seed=seed):
            yield self.gather(index)


def make_windows(
    array: np.ndarray, *, timesteps: int, horizon: int, inputs: int, target: int
) -> Windows:
    """Build input and target windows as views over `array`.

    Args:
        array: (rows, columns) scaled series.
        timesteps: rows of history per sample.
        horizon: target steps per sample.
        inputs: the first `inputs` columns are the model's inputs.
        target: index of the target column.

    Returns:
        Windows with x (rows - timesteps - horizon + 1, timesteps, inputs) and
        y (rows - timesteps - horizon + 1, horizon), both views sharing `array`'s memory.

    Raises:
        ValueError: on a non-2D array or out-of-range arguments.
    """
    if array.ndim != 2:
        raise ValueError(f"`array` must be 2D (rows, columns). Received: shape={array.shape}")
    rows, columns = array.shape
    for name, value in (("timesteps", timesteps), ("horizon", horizon), ("inputs", inputs)):
        if value < 1:
            raise ValueError(f"`{name}` must be > 0. Received: {name}={value}")
    if inputs > columns:
        raise ValueError(f"`inputs` must be <= {columns} columns. Received: inputs={inputs}")
    if not 0 <= target < columns:
        raise ValueError(f"`target` must be in [0, {columns}). Received: target={target}")
    samples = rows - timesteps - horizon + 1
    if samples < 1:
        raise ValueError(f"{rows} rows make no window of timesteps={timesteps} + horizon={horizon}")
    x = input_windows(array, timesteps=timesteps, inputs=inputs)
    y = sliding_window_view(array[:, target], horizon)  # [rows - h + 1, h]
    return Windows(x=x[:samples], y=y[timesteps : timesteps + samples])


def input_windows(array: np.ndarray, *, timesteps: int, inputs: int) -> np.ndarray:
    """Every input window of `array` as a view: (rows - timesteps + 1, timesteps, inputs).

    Window `i` reads rows `[i, i + timesteps)` and is the model's input for target row
    `i + timesteps`, which may lie past the last row (a forecast of the future).
    """
    # sliding_window_view puts the window axis last: (rows - T + 1, inputs, T) -> swap to T first.
    return sliding_window_view(array[:, :inputs], timesteps, axis=0).transpose(0, 2, 1)


def split_ranges(
    split_rows: tuple[int, int, int], *, timesteps: int, horizon: int
) -> dict[str, tuple[int, int]]:
    """Sample index ranges [start, stop) whose targets lie wholly in train, val and test.

    Args:
        split_rows: rows in (train, val, test), consecutive, in time order.
    """
    ranges, first_row = {}, 0
    for name, rows in zip(SPLITS, split_rows, strict=True):
        last_row = first_row + rows  # the split is rows [first_row, last_row)
        start = max(first_row - timesteps, 0)
        stop = last_row - timesteps - horizon + 1
        if stop <= start:
            raise ValueError(
                f"the {name} split ({rows} rows) holds no full target of horizon={horizon} "
                f"after timesteps={timesteps}"
            )
        ranges[name] = (start, stop)
        first_row = last_row
    return ranges


def batch_index(
    samples: int, batch_size: int, *, shuffle: bool = False, seed: int | None = None
) -> list[np.ndarray]:
    """Indices of each batch; shuffled with a seeded generator when asked."""
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be > 0. Received: batch_size={batch_size}")
    order = np.arange(samples)
    if shuffle:
        np.random.default_rng(seed).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, samples, batch_size)]
