"""Fit a Keras model on batches gathered from window views, with the standard callbacks.

Batches reach the model through tf.data (`window_dataset`), gathered from the views in parallel.

EarlyStopping restores the best weights, ModelCheckpoint keeps the best `.keras` so far, and
BackupAndRestore lets a retried task resume from its last finished epoch. One attempt at a time
uses a work folder: a retry (or an attempt a restarted scheduler started again) waits for the
earlier attempt's process to end before it resumes from the backup (`attempt_lock`).

`lr_sweep` is the classic learning-rate sweep: one short fit whose rate grows each epoch, and
the loss at each rate.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import math
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from freshcast.models import keras
from freshcast.windowing import Windows, batch_index


def window_dataset(
    windows: Windows,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    epochs: range = range(1),
):
    """A `tf.data.Dataset` of batches gathered from zero-copy window views, for `epochs`.

    Epoch `e` visits every window once in the order `batch_index(..., seed=seed + e)`, so a fit
    resumed at epoch `e` sees the same batches as one that never stopped. Each batch is copied
    out of the views by numpy in tf.data's parallel threads (`tf.numpy_function`) and prefetched,
    so the model never waits for its input: nothing (samples, timesteps, features) is ever
    materialised beyond the batches in flight, and there is no per-batch Python generator.

    Args:
        windows: x is [samples, timesteps, features], y is [samples, horizon] (views).
        epochs: the epochs to cover, one after another (`range(first, last)`).

    Returns:
        Dataset of (x [B, timesteps, features], y [B, horizon]) float32 batches;
        `len(epochs) * batches_per_epoch(...)` of them.
    """
    import tensorflow as tf

    samples = len(windows)
    per_epoch = batches_per_epoch(samples, batch_size)
    orders: dict[int, list[np.ndarray]] = {}

    def gather(epoch: np.int64, i: np.int64) -> tuple[np.ndarray, np.ndarray]:
        epoch = int(epoch)
        if epoch not in orders:  # one epoch's order at a time (batches arrive in order)
            orders.clear()
            orders[epoch] = batch_index(samples, batch_size, shuffle=shuffle, seed=seed + epoch)
        x, y = windows.gather(orders[epoch][int(i)])
        return x.astype(np.float32, copy=False), y.astype(np.float32, copy=False)

    timesteps, features, horizon = windows.x.shape[1], windows.x.shape[2], windows.y.shape[1]

    def typed(x, y):
        x.set_shape([None, timesteps, features])
        y.set_shape([None, horizon])
        return x, y

    batches = tf.data.Dataset.range(epochs.start, epochs.stop).flat_map(
        lambda epoch: tf.data.Dataset.range(per_epoch).map(lambda i: (epoch, i))
    )
    batches = batches.map(
        lambda epoch, i: typed(
            *tf.numpy_function(gather, [epoch, i], [tf.float32, tf.float32], stateful=False)
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    # flat_map hides the length; Keras needs it to end an epoch without a warning.
    batches = batches.apply(tf.data.experimental.assert_cardinality(len(epochs) * per_epoch))
    return batches.prefetch(tf.data.AUTOTUNE)


def batches_per_epoch(samples: int, batch_size: int) -> int:
    return -(-samples // batch_size)


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


class WorkDirBusy(RuntimeError):
    """Another live attempt trains in this work folder; a later retry can pass."""


@contextlib.contextmanager
def attempt_lock(work_dir: Path, *, wait: float = 120.0) -> Iterator[None]:
    """Hold the work folder for this process: an exclusive lock on `<work_dir>/.attempt.lock`.

    The lock goes with the process that holds it, killed or not, so an attempt only waits while
    an earlier one is still alive (for example a task that a restarted scheduler started again
    while the old process was still being stopped).

    Raises:
        WorkDirBusy: still held after `wait` seconds, naming the holder's pid.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    with open(work_dir / ".attempt.lock", "a+") as fh:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "unknown"
                    raise WorkDirBusy(
                        f"another attempt (pid {holder}) is still training in {work_dir}; "
                        "this attempt fails so that a retry resumes once that one has ended"
                    ) from None
                time.sleep(0.5)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
            Callers hold `attempt_lock(work_dir)` so that no two live attempts share it.

    Returns:
        {"epoch": [...], "loss": [...], "val_loss": [...], ...} with the best weights restored
        in `model`.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    backup, epoch_log = work_dir / "backup", work_dir / "epochs.csv"
    checkpoint = work_dir / "checkpoint.keras"
    backup_cb = keras.callbacks.BackupAndRestore(backup_dir=str(backup), double_checkpoint=True)
    first = _restore(model, backup_cb, backup, log) if backup.exists() else None
    if first is None:  # a fresh attempt: forget any earlier, finished attempt's files
        shutil.rmtree(backup, ignore_errors=True)
        epoch_log.unlink(missing_ok=True)
        checkpoint.unlink(missing_ok=True)
        first, done = 0, {}
    else:
        done = _keep_epochs(epoch_log, first)
        if not _readable_zip(checkpoint):  # cut by the kill while it was being written
            checkpoint.unlink(missing_ok=True)
            done.pop("val_loss", None)
        log(f"{model.name}: resuming at epoch {first + 1} from the backup in {backup}")
    # Callbacks start afresh on a resume; seeding the checkpoint with the best val_loss so far
    # keeps checkpoint.keras the best model over every attempt.
    best_so_far = min(done.get("val_loss", []), default=None)
    callbacks = [
        # The epoch's row first, its backup second: a process killed between the two leaves
        # an extra row, which the next attempt drops (`_keep_epochs`), never a missing one.
        keras.callbacks.CSVLogger(str(epoch_log), append=True),
        backup_cb,
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True
        ),
        keras.callbacks.ModelCheckpoint(
            str(checkpoint),
            monitor="val_loss",
            save_best_only=True,
            initial_value_threshold=best_so_far,
        ),
        EpochLog(log, name=model.name, epochs=epochs),
    ]
    model.fit(
        window_dataset(
            train, batch_size=batch_size, shuffle=True, seed=seed, epochs=range(first, epochs)
        ),
        steps_per_epoch=batches_per_epoch(len(train), batch_size),
        validation_data=window_dataset(val, batch_size=batch_size, shuffle=False, seed=seed),
        epochs=epochs,
        shuffle=False,  # the dataset shuffles, seeded per epoch
        callbacks=callbacks,
        verbose=0,
    )
    shutil.rmtree(backup, ignore_errors=True)
    if checkpoint.exists():  # the best weights over all attempts, not just this one
        model.load_weights(checkpoint)
    return read_epoch_log(epoch_log)


def _restore(
    model: keras.Model, backup: keras.callbacks.BackupAndRestore, folder: Path, log: Callable
) -> int | None:
    """Load an interrupted attempt's backup into `model`; the epoch to resume at, or None when
    the backup cannot be used (then training starts afresh, which a retry can always do).

    Keras keeps the previous backup beside the latest (`double_checkpoint`) and falls back to it
    when a kill cut the latest weights file short.
    """
    backup.set_model(model)
    try:
        backup.on_train_begin()  # fit() calls it again: loading twice gives the same state
        metadata = folder / "training_metadata.json"
        return int(json.loads(metadata.read_text())["epoch"]) if metadata.exists() else 0
    except (OSError, ValueError, KeyError, TypeError) as err:
        log(f"{model.name}: the backup in {folder} cannot be read ({err}); starting afresh")
        return None


def _keep_epochs(path: Path, epochs: int) -> dict[str, list[float]]:
    """Cut the epoch log to its first `epochs` rows (the ones the backup holds) and read it."""
    if not path.exists():
        return {}
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: epochs + 1]))  # the header and one line an epoch
    return read_epoch_log(path)


def _readable_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile):
        return False


def read_epoch_log(path: Path) -> dict[str, list[float]]:
    """The CSVLogger file as columns of floats."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


# A sweep stops once the loss passes this multiple of the best loss so far: it has diverged.
DIVERGED = 4.0
SUGGESTION_RULE = (
    "one decade (10x) below the rate of the lowest training loss, clipped to [low, high]"
)


def lr_sweep(
    model: keras.Model,
    train: Windows,
    *,
    low: float,
    high: float,
    epochs: int,
    batch_size: int,
    seed: int,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The learning-rate sweep: one short fit whose rate grows geometrically each epoch.

    Epoch `e` trains at `low * (high / low) ** (e / (epochs - 1))` (LearningRateScheduler, which
    overrides the rate `model` was compiled with), so the rates run from `low` to `high`. The
    sweep stops after an epoch whose loss is NaN, infinite or above DIVERGED times the best so
    far. `model` is trained in place: sweep a throwaway copy.

    Args:
        train: window views; x is [samples, timesteps, features], y is [samples, horizon].
        low, high: the first and last rates, 0 < low < high.
        epochs: epochs at most, one rate each.

    Returns:
        {"rates": [...], "losses": [...], "suggested": float | None, "rule": str}: the rate and
        training loss of each epoch run (a loss that is not finite as None), the suggested rate
        (`suggest_rate`) and one line saying how it was chosen.

    Raises:
        ValueError: low <= 0, low >= high or epochs < 1.
    """
    if not 0 < low < high:
        raise ValueError(f"`low` must be > 0 and < `high`. Received: low={low}, high={high}")
    if epochs < 1:
        raise ValueError(f"`epochs` must be > 0. Received: epochs={epochs}")
    rates = np.geomspace(low, high, epochs).tolist()  # low * (high / low) ** (e / (epochs - 1))
    sweep = _SweepLog(log, name=model.name)
    model.fit(
        window_dataset(train, batch_size=batch_size, shuffle=True, seed=seed, epochs=range(epochs)),
        steps_per_epoch=batches_per_epoch(len(train), batch_size),
        epochs=epochs,
        shuffle=False,  # the dataset shuffles, seeded per epoch
        callbacks=[
            keras.callbacks.LearningRateScheduler(lambda epoch: rates[epoch]),
            EpochLog(log, name=f"{model.name} lr sweep", epochs=epochs),
            sweep,
        ],
        verbose=0,
    )
    rates = rates[: len(sweep.losses)]
    suggested = suggest_rate(rates, sweep.losses, low=low, high=high)
    result = {
        "rates": rates,
        "losses": [loss if math.isfinite(loss) else None for loss in sweep.losses],
        "suggested": suggested,
        "rule": SUGGESTION_RULE,
    }
    log(f"{model.name} lr sweep: {len(rates)}/{epochs} epochs, suggested rate {suggested}")
    return result


def suggest_rate(
    rates: list[float], losses: list[float | None], *, low: float, high: float
) -> float | None:
    """The rate one decade below the rate of the lowest finite loss, clipped to [low, high];
    None when no loss is finite."""
    finite = [(loss, rate) for rate, loss in zip(rates, losses, strict=True) if _finite(loss)]
    if not finite:
        return None
    best_rate = min(finite)[1]
    return min(max(best_rate / 10, low), high)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


class _SweepLog(keras.callbacks.Callback):
    """Keeps each epoch's training loss and stops the fit once the loss diverges."""

    def __init__(self, log: Callable[[str], None], *, name: str) -> None:
        super().__init__()
        self.log, self.name = log, name
        self.losses: list[float] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        loss = float((logs or {}).get("loss", math.nan))
        self.losses.append(loss)
        best = min((v for v in self.losses if math.isfinite(v)), default=math.nan)
        if not math.isfinite(loss) or loss > DIVERGED * best:
            self.log(
                f"{self.name} lr sweep: loss {loss:.5g} at epoch {epoch + 1} diverged "
                f"(best {best:.5g}); stopping"
            )
            self.model.stop_training = True


def predict(model: keras.Model, windows: Windows, *, batch_size: int) -> np.ndarray:
    """[samples, horizon] predictions in the scaled units, batches gathered from the views."""
    batches = window_dataset(windows, batch_size=batch_size, shuffle=False, seed=0)
    return np.asarray(model.predict(batches, verbose=0), dtype=np.float64)


def describe_model(model: keras.Model) -> dict[str, Any]:
    return {"name": model.name, "parameters": int(model.count_params())}
