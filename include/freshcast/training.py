"""Fit a Keras model on batches gathered from window views, with the standard callbacks.

EarlyStopping restores the best weights, ModelCheckpoint keeps the best `.keras` so far, and
BackupAndRestore lets a retried task resume from its last finished epoch.
"""

from __future__ import annotations

import csv
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from freshcast.windowing import Windows, batch_index


class WindowBatches(keras.utils.PyDataset):
    """Feeds Keras batches gathered from zero-copy window views; reshuffled every epoch."""

    def __init__(
        self, windows: Windows, *, batch_size: int, shuffle: bool, seed: int, first_epoch: int = 0
    ) -> None:
        super().__init__()
        self.windows, self.batch_size, self.shuffle, self.seed = windows, batch_size, shuffle, seed
        self._epoch = first_epoch  # a resumed fit continues the same sequence of orders
        self._index = self._plan()

    def _plan(self) -> list[np.ndarray]:
        return batch_index(
            len(self.windows), self.batch_size, shuffle=self.shuffle, seed=self.seed + self._epoch
        )

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.windows.gather(self._index[i])  # [B, T, F], [B, horizon]

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._epoch += 1
            self._index = self._plan()


class EpochLog(keras.callbacks.Callback):
    """One line per epoch: losses and wall time."""

    def __init__(self, log: Callable[[str], None], *, name: str, epochs: int) -> None:
        super().__init__()
        self.log, self.name, self.epochs = log, name, epochs
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        figures = " ".join(f"{k}={v:.5g}" for k, v in sorted((logs or {}).items()))
        took = time.perf_counter() - self._start
        self.log(f"{self.name} epoch {epoch + 1}/{self.epochs} {figures} time={took:.2f}s")


def fit(
    model: keras.Model,
    train: Windows,
    val: Windows,
    *,
    batch_size: int,
    epochs: int,
    patience: int,
    work_dir: Path,
    seed: int,
    log: Callable[[str], None] = print,
) -> dict[str, list[float]]:
    """Train `model` and return its per-epoch history (all epochs, across retries).

    Args:
        train, val: window views; x is [samples, timesteps, features], y is [samples, horizon].
        work_dir: run-scoped folder for the checkpoint, the backup and the epoch log. A backup
            left there by an interrupted attempt is resumed; otherwise training starts fresh.

    Returns:
        {"epoch": [...], "loss": [...], "val_loss": [...], ...} with the best weights restored
        in `model`.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    backup, epoch_log = work_dir / "backup", work_dir / "epochs.csv"
    checkpoint = work_dir / "checkpoint.keras"
    if not backup.exists():  # a fresh attempt: forget any earlier, finished attempt's files
        epoch_log.unlink(missing_ok=True)
        checkpoint.unlink(missing_ok=True)
        done: dict[str, list[float]] = {}
    else:
        done = read_epoch_log(epoch_log) if epoch_log.exists() else {}
        log(f"{model.name}: resuming from the backup in {backup}")
    # Callbacks start afresh on a resume; seeding the checkpoint with the best val_loss so far
    # keeps checkpoint.keras the best model over every attempt.
    best_so_far = min(done.get("val_loss", []), default=None)
    callbacks = [
        keras.callbacks.BackupAndRestore(backup_dir=str(backup)),
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True
        ),
        keras.callbacks.ModelCheckpoint(
            str(checkpoint),
            monitor="val_loss",
            save_best_only=True,
            initial_value_threshold=best_so_far,
        ),
        keras.callbacks.CSVLogger(str(epoch_log), append=True),
        EpochLog(log, name=model.name, epochs=epochs),
    ]
    model.fit(
        WindowBatches(
            train,
            batch_size=batch_size,
            shuffle=True,
            seed=seed,
            first_epoch=len(done.get("epoch", [])),
        ),
        validation_data=WindowBatches(val, batch_size=batch_size, shuffle=False, seed=seed),
        epochs=epochs,
        callbacks=callbacks,
        verbose=0,
    )
    shutil.rmtree(backup, ignore_errors=True)
    if checkpoint.exists():  # the best weights over all attempts, not just this one
        model.load_weights(checkpoint)
    return read_epoch_log(epoch_log)


def read_epoch_log(path: Path) -> dict[str, list[float]]:
    """The CSVLogger file as columns of floats."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def predict(model: keras.Model, windows: Windows, *, batch_size: int) -> np.ndarray:
    """[samples, horizon] predictions in the scaled units, batches gathered from the views."""
    batches = WindowBatches(windows, batch_size=batch_size, shuffle=False, seed=0)
    return np.asarray(model.predict(batches, verbose=0), dtype=np.float64)


def describe_model(model: keras.Model) -> dict[str, Any]:
    return {"name": model.name, "parameters": int(model.count_params())}
