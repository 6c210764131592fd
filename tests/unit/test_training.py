from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

from freshcast.artifacts import ArtifactError, atomic_path, sha256_file
from freshcast.models import build_model, load_model
from freshcast.spec import ModelSpec
from freshcast.training import (
    DIVERGED,
    batches_per_epoch,
    fit,
    lr_sweep,
    predict,
    read_epoch_log,
    suggest_rate,
    window_dataset,
)
from freshcast.windowing import Windows, make_windows, split_ranges

pytestmark = pytest.mark.slow

TIMESTEPS, FEATURES = 6, 2
LAYERS = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


def _spec(**kwargs) -> ModelSpec:
    return ModelSpec(**({"type": "lstm", "units": [4]} | kwargs))


def _model(*, horizon: int = 1, seed: int = 0, **kwargs) -> keras.Model:
    return build_model(
        _spec(**kwargs), timesteps=TIMESTEPS, features=FEATURES, horizon=horizon, seed=seed
    )


def _windows(horizon: int = 1) -> dict[str, Windows]:
    """Train/val/test windows over a tiny (90, 2) sine series: a signal and its cosine."""
    t = np.arange(90) * 0.3
    array = np.stack([np.sin(t), np.cos(t)], axis=1).astype(np.float32)  # [rows, 2]
    windows = make_windows(array, timesteps=TIMESTEPS, horizon=horizon, inputs=2, target=0)
    ranges = split_ranges((60, 15, 15), timesteps=TIMESTEPS, horizon=horizon)
    return {name: windows[start:stop] for name, (start, stop) in ranges.items()}


# ---------------------------------------------------------------- build_model


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_build_model_each_type(kind):
    model = _model(type=kind)
    layer = model.get_layer(f"{kind}_0")
    assert isinstance(layer, LAYERS[kind])
    assert layer.units == 4
    assert not layer.return_sequences
    assert model.input_shape == (None, TIMESTEPS, FEATURES)
    assert model.output_shape == (None, 1)


def test_build_model_stacked_layers_pass_the_sequence_on():
    model = _model(type="gru", units=[4, 3])
    first, second = model.get_layer("gru_0"), model.get_layer("gru_1")
    assert (first.units, second.units) == (4, 3)
    assert first.return_sequences
    assert not second.return_sequences
    assert first.output.shape == (None, TIMESTEPS, 4)  # [B, T, units]
    assert model.output_shape == (None, 1)


def test_build_model_bidirectional():
    model = _model(type="lstm", units=[4, 3], bidirectional=True)
    first, second = model.get_layer("bidirectional_0"), model.get_layer("bidirectional_1")
    assert isinstance(first, keras.layers.Bidirectional)
    assert isinstance(first.forward_layer, keras.layers.LSTM)
    assert first.output.shape == (None, TIMESTEPS, 8)  # both directions concatenated
    assert second.output.shape == (None, 6)
    assert model.output_shape == (None, 1)


def test_build_model_horizon_3():
    model = _model(horizon=3)
    assert model.output_shape == (None, 3)
    assert model.get_layer("forecast").units == 3
    x = np.zeros((5, TIMESTEPS, FEATURES), dtype=np.float32)
    assert model.predict(x, verbose=0).shape == (5, 3)


def test_build_model_huber_loss_and_rmsprop():
    model = _model(loss="huber", optimizer="rmsprop", learning_rate=0.005)
    assert isinstance(model.loss, keras.losses.Huber)
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.005)


def test_build_model_mae_loss_and_adam():
    model = _model(loss="mae")
    assert model.loss == "mae"
    assert isinstance(model.optimizer, keras.optimizers.Adam)


def test_build_model_name_from_the_spec():
    assert _model(name="my_lstm").name == "my_lstm"


def test_build_model_same_seed_same_initial_weights():
    first, again, other = _model(seed=5), _model(seed=5), _model(seed=6)
    for a, b in zip(first.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(first.get_weights(), other.get_weights(), strict=True)
    )


# ---------------------------------------------------------------- window_dataset


def _batches(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_window_dataset_length_and_content():
    train = _windows()["train"]
    batches = _batches(window_dataset(train, batch_size=16, shuffle=False, seed=0))
    assert len(batches) == batches_per_epoch(len(train), 16) == -(-len(train) // 16)
    x, y = batches[0]
    assert x.shape == (16, TIMESTEPS, FEATURES) and x.dtype == np.float32
    assert y.shape == (16, 1)
    np.testing.assert_array_equal(x, train.x[:16])
    np.testing.assert_array_equal(y, train.y[:16])
    assert len(batches[-1][0]) == len(train) - 16 * (len(batches) - 1)


def _epoch_orders(batches, windows: Windows, per_epoch: int) -> list[np.ndarray]:
    """Which windows each epoch fed, in order, identified by their x rows."""
    flat = windows.x.reshape(len(windows), -1)
    xs = [x for x, _ in batches]
    orders = []
    for e in range(0, len(xs), per_epoch):
        rows = np.concatenate(xs[e : e + per_epoch])
        orders.append(
            np.array([np.flatnonzero((flat == row.ravel()).all(axis=1))[0] for row in rows])
        )
    return orders


def test_window_dataset_reshuffles_every_epoch_and_resumes_the_same_order():
    train = _windows()["train"]
    per_epoch = batches_per_epoch(len(train), 8)
    both = _batches(window_dataset(train, batch_size=8, shuffle=True, seed=3, epochs=range(2)))
    first, second = _epoch_orders(both, train, per_epoch)
    for order in (first, second):
        np.testing.assert_array_equal(np.sort(order), np.arange(len(train)))
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, np.arange(len(train)))
    again = _batches(window_dataset(train, batch_size=8, shuffle=True, seed=3))
    np.testing.assert_array_equal(_epoch_orders(again, train, per_epoch)[0], first)  # seeded
    resumed = _batches(
        window_dataset(train, batch_size=8, shuffle=True, seed=3, epochs=range(1, 2))
    )
    np.testing.assert_array_equal(_epoch_orders(resumed, train, per_epoch)[0], second)


def test_window_dataset_keeps_the_order_without_shuffle():
    val = _windows()["val"]
    batches = _batches(window_dataset(val, batch_size=4, shuffle=False, seed=3, epochs=range(2)))
    per_epoch = batches_per_epoch(len(val), 4)
    for order in _epoch_orders(batches, val, per_epoch):
        np.testing.assert_array_equal(order, np.arange(len(val)))


def test_fit_reshuffles_between_epochs(tmp_path, monkeypatch):
    """Keras keeps one iterator over the epochs of the dataset (steps_per_epoch), so epoch 2
    gets epoch 2's order, not epoch 1's again."""
    import freshcast.training as training

    seen: list[int] = []
    real = training.batch_index

    def spy(samples, batch_size, *, shuffle=False, seed=None):
        if shuffle:
            seen.append(seed)
        return real(samples, batch_size, shuffle=shuffle, seed=seed)

    monkeypatch.setattr(training, "batch_index", spy)
    _fit(_model(), _windows(), tmp_path, lambda m: None, epochs=3, seed=5)
    assert sorted(set(seen)) == [5, 6, 7]


# ---------------------------------------------------------------- fit


def test_fit_returns_history_and_writes_a_checkpoint(tmp_path):
    windows = _windows()
    messages = []
    model = _model(type="gru")
    history = _fit(model, windows, tmp_path, messages.append, epochs=3)
    assert history["epoch"] == [0.0, 1.0, 2.0]
    assert len(history["loss"]) == len(history["val_loss"]) == 3
    assert np.isfinite(history["loss"]).all()
    assert np.isfinite(history["val_loss"]).all()
    assert (tmp_path / "checkpoint.keras").is_file()
    assert not (tmp_path / "backup").exists()  # removed once training finished
    assert [m.split(" time=")[0].split(" loss=")[0] for m in messages] == [
        f"{model.name} epoch {e}/3" for e in (1, 2, 3)
    ]


class _Interrupted(RuntimeError):
    pass


def _interrupt_at_epoch(epoch: int, epochs: int, messages: list[str]):
    def log(message: str) -> None:
        messages.append(message)
        # EpochLog is the last callback, so the backup and the CSV row of this epoch exist.
        if f" epoch {epoch}/{epochs} " in message:
            raise _Interrupted(f"worker lost after epoch {epoch}")

    return log


def _fit(model, windows, work_dir, log, *, epochs=4, seed=0):
    return fit(
        model,
        windows["train"],
        windows["val"],
        batch_size=16,
        epochs=epochs,
        patience=10,
        work_dir=work_dir,
        seed=seed,
        log=log,
    )


def test_fit_resumes_an_interrupted_attempt(tmp_path):
    windows = _windows()
    first_log: list[str] = []
    with pytest.raises(_Interrupted):
        _fit(_model(), windows, tmp_path, _interrupt_at_epoch(2, 4, first_log))
    assert (tmp_path / "backup").is_dir()
    assert read_epoch_log(tmp_path / "epochs.csv")["epoch"] == [0.0, 1.0]

    retry_log: list[str] = []
    history = _fit(_model(), windows, tmp_path, retry_log.append)
    assert "resuming at epoch 3 from the backup" in retry_log[0]
    epoch_lines = [m for m in retry_log[1:] if " epoch " in m]
    assert [m.split(" epoch ")[1].split()[0] for m in epoch_lines] == ["3/4", "4/4"]
    assert history["epoch"] == [0.0, 1.0, 2.0, 3.0]  # every epoch once, across both attempts
    assert len(history["loss"]) == len(history["val_loss"]) == 4
    assert (tmp_path / "epochs.csv").read_text().count("epoch") == 1  # one header
    assert not (tmp_path / "backup").exists()


@pytest.mark.parametrize(
    ("damage", "resumes_at"),
    [
        ("weights cut short", 3),  # Keras falls back to the previous backup (double_checkpoint)
        ("an extra log row", 3),  # killed between the epoch's log row and its backup
        ("metadata unreadable", None),  # nothing to trust: start afresh, never fail forever
        ("checkpoint cut short", 4),
    ],
)
def test_a_backup_damaged_by_a_kill_still_resumes(tmp_path, damage, resumes_at):
    windows = _windows()
    with pytest.raises(_Interrupted):
        _fit(_model(), windows, tmp_path, _interrupt_at_epoch(3, 5, []), epochs=5)
    backup, log_file = tmp_path / "backup", tmp_path / "epochs.csv"
    if damage == "weights cut short":
        weights = backup / "latest.weights.h5"
        weights.write_bytes(weights.read_bytes()[:96])
    elif damage == "an extra log row":
        rows = log_file.read_text().splitlines()
        backup.joinpath("training_metadata.json").write_text('{"epoch": 2, "batch": 0}')
        assert len(rows) == 4  # the header and three epochs, one more than the backup holds
    elif damage == "metadata unreadable":
        backup.joinpath("training_metadata.json").write_text('{"epo')
    else:
        checkpoint = tmp_path / "checkpoint.keras"
        checkpoint.write_bytes(checkpoint.read_bytes()[:50])

    retry_log: list[str] = []
    history = _fit(_model(), windows, tmp_path, retry_log.append, epochs=5)
    if resumes_at is None:
        assert "starting afresh" in retry_log[0]
    else:
        assert f"resuming at epoch {resumes_at} from the backup" in retry_log[0]
    assert history["epoch"] == [0.0, 1.0, 2.0, 3.0, 4.0]  # every epoch once, none missing
    assert (tmp_path / "checkpoint.keras").is_file()


def test_resumed_fit_keeps_the_best_model_of_every_attempt(tmp_path):
    """An earlier attempt's best epoch beats all resumed ones: its checkpoint must survive and be
    the weights `fit` leaves in the model."""
    windows = _windows()
    with pytest.raises(_Interrupted):
        _fit(_model(), windows, tmp_path, _interrupt_at_epoch(2, 4, []))
    # Pretend the first attempt's best epoch was unbeatable, with weights we can recognise.
    best = _model(seed=123)
    best.save(tmp_path / "checkpoint.keras")
    log_text = (tmp_path / "epochs.csv").read_text().splitlines()
    header = log_text[0].split(",")
    row = log_text[1].split(",")
    row[header.index("val_loss")] = "1e-12"
    (tmp_path / "epochs.csv").write_text("\n".join([log_text[0], ",".join(row), *log_text[2:]]))

    model = _model()
    _fit(model, windows, tmp_path, lambda m: None)
    for got, want in zip(model.get_weights(), best.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_fit_without_a_backup_starts_fresh(tmp_path):
    windows = _windows()
    kwargs = {"batch_size": 16, "patience": 10, "work_dir": tmp_path, "seed": 0}
    fit(_model(), windows["train"], windows["val"], epochs=3, log=lambda m: None, **kwargs)
    messages: list[str] = []
    history = fit(
        _model(), windows["train"], windows["val"], epochs=2, log=messages.append, **kwargs
    )
    assert history["epoch"] == [0.0, 1.0]  # the finished attempt's log was forgotten
    assert not any("resuming" in m for m in messages)


# ---------------------------------------------------------------- lr_sweep


def _linear() -> keras.Model:
    """A linear model trained by plain SGD: it diverges for rates above about 0.3 on `_windows`."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((TIMESTEPS, FEATURES)),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ],
        name="linear",
    )
    model.compile(optimizer=keras.optimizers.SGD(), loss="mse")  # the sweep sets the rate
    return model


def test_lr_sweep_rates_rise_geometrically_and_the_suggestion_is_a_decade_below_the_best():
    messages: list[str] = []
    model = _model()
    train = _windows()["train"]
    sweep = lr_sweep(
        model, train, low=1e-4, high=1e-2, epochs=3, batch_size=16, seed=0, log=messages.append
    )
    assert set(sweep) == {"rates", "losses", "suggested", "rule"}
    np.testing.assert_allclose(sweep["rates"], [1e-4, 1e-3, 1e-2], rtol=1e-12)
    assert sweep["rates"][0] == 1e-4 and sweep["rates"][-1] == 1e-2  # exactly low and high
    assert len(sweep["losses"]) == 3 and all(np.isfinite(sweep["losses"]))
    best_rate = sweep["rates"][int(np.argmin(sweep["losses"]))]
    assert sweep["suggested"] == pytest.approx(min(max(best_rate / 10, 1e-4), 1e-2))
    assert 1e-4 <= sweep["suggested"] <= 1e-2
    assert "decade" in sweep["rule"] and "\n" not in sweep["rule"]
    # The scheduler, not the compiled rate, set each epoch's rate.
    logged = [float(m.split("learning_rate=")[1].split()[0]) for m in messages if " epoch " in m]
    np.testing.assert_allclose(logged, sweep["rates"], rtol=1e-4)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-2, rel=1e-6)
    json.dumps(sweep, allow_nan=False)  # strict JSON as it is


@pytest.mark.parametrize(
    ("low", "high", "epochs", "overflows"),
    [
        (1e-3, 1e3, 7, False),  # a decade an epoch: plain SGD diverges from about 1
        (1e2, 1e8, 4, True),  # far past it: the loss overflows to inf, written as None
    ],
)
def test_lr_sweep_stops_once_the_loss_diverges(low, high, epochs, overflows):
    messages: list[str] = []
    sweep = lr_sweep(
        _linear(),
        _windows()["train"],
        low=low,
        high=high,
        epochs=epochs,
        batch_size=16,
        seed=0,
        log=messages.append,
    )
    run = len(sweep["rates"])
    assert 2 <= run < epochs  # what was run, and no more
    np.testing.assert_allclose(sweep["rates"], np.geomspace(low, high, epochs)[:run])
    assert len(sweep["losses"]) == run
    *before, last = sweep["losses"]
    assert all(np.isfinite(before))
    for i, loss in enumerate(before):  # no earlier epoch diverged from the best before it
        assert loss <= DIVERGED * min(before[: i + 1])
    best = min(before)
    assert (last is None) is overflows
    assert last is None or last > DIVERGED * best
    assert any("diverged" in m for m in messages)
    best_rate = sweep["rates"][before.index(best)]
    assert sweep["suggested"] == pytest.approx(min(max(best_rate / 10, low), high))
    json.dumps(sweep, allow_nan=False)


def test_lr_sweep_of_one_epoch_runs_at_low():
    sweep = lr_sweep(
        _linear(),
        _windows()["train"],
        low=1e-3,
        high=1e-1,
        epochs=1,
        batch_size=32,
        seed=0,
        log=lambda m: None,
    )
    assert sweep["rates"] == [1e-3]
    assert sweep["suggested"] == 1e-3  # a decade below 1e-3, clipped up to `low`


@pytest.mark.parametrize(
    ("low", "high", "epochs", "message"),
    [
        (0.0, 1e-1, 3, r"`low` must be > 0 and < `high`. Received: low=0.0, high=0.1"),
        (1e-1, 1e-2, 3, r"`low` must be > 0 and < `high`. Received: low=0.1, high=0.01"),
        (1e-3, 1e-1, 0, r"`epochs` must be > 0. Received: epochs=0"),
    ],
)
def test_lr_sweep_refuses_bad_arguments(low, high, epochs, message):
    with pytest.raises(ValueError, match=message):
        lr_sweep(
            _linear(),
            _windows()["train"],
            low=low,
            high=high,
            epochs=epochs,
            batch_size=8,
            seed=0,
        )


@pytest.mark.parametrize(
    ("losses", "suggested"),
    [
        ([3.0, 1.0, 2.0], 1e-3),  # best at 1e-2: a decade below
        ([3.0, None, 1.0], 1e-2),  # None (a NaN or inf loss) is skipped
        ([1.0, 2.0, float("nan")], 1e-3),  # best at `low`: 1e-4 is clipped up to `low`
        ([None, None, None], None),  # no finite loss: no suggestion
    ],
)
def test_suggest_rate(losses, suggested):
    rates = [1e-3, 1e-2, 1e-1]
    assert suggest_rate(rates, losses, low=1e-3, high=1e-1) == pytest.approx(suggested)


# ---------------------------------------------------------------- predict and load


def test_predict_shape():
    windows = _windows(horizon=3)
    model = _model(horizon=3)
    pred = predict(model, windows["test"], batch_size=4)
    assert pred.shape == (len(windows["test"]), 3)
    assert pred.dtype == np.float64
    np.testing.assert_allclose(
        pred, model.predict(np.asarray(windows["test"].x), verbose=0), rtol=1e-6
    )


def _saved(tmp_path, **kwargs):
    model = _model(**kwargs)
    path = tmp_path / "model.keras"
    with atomic_path(path) as tmp:
        model.save(tmp)
    return model, path


def test_load_model_refuses_a_wrong_sha256(tmp_path):
    _, path = _saved(tmp_path)
    with pytest.raises(ArtifactError, match=r"model model\.keras: .* changed after it was written"):
        load_model(path, sha256="0" * 64)


def test_load_model_refuses_a_file_changed_after_hashing(tmp_path):
    _, path = _saved(tmp_path)
    sha = sha256_file(path)
    with open(path, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ArtifactError, match="changed after it was written"):
        load_model(path, sha256=sha)


@pytest.mark.parametrize("kwargs", [{}, {"type": "gru", "units": [4, 3], "loss": "huber"}])
def test_load_model_gives_identical_predictions(tmp_path, kwargs):
    model, path = _saved(tmp_path, horizon=2, bidirectional=True, **kwargs)
    loaded = load_model(path, sha256=sha256_file(path))
    test = _windows(horizon=2)["test"]
    np.testing.assert_array_equal(
        predict(loaded, test, batch_size=8), predict(model, test, batch_size=8)
    )


@pytest.mark.parametrize("jit", [True, False])
def test_build_model_jit_compile_from_the_spec(jit):
    spec = ModelSpec(type="lstm", units=[4], jit_compile=jit)
    model = build_model(spec, timesteps=TIMESTEPS, features=FEATURES, horizon=1, seed=0)
    assert model.jit_compile is jit
    assert ModelSpec(type="lstm").jit_compile is None  # by default Keras decides


def test_two_live_attempts_never_share_a_work_folder(tmp_path):
    """The lock goes with its process: a killed attempt frees it at once, a live one does not."""
    import signal
    import subprocess
    import sys
    import textwrap

    from freshcast.training import WorkDirBusy, attempt_lock

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from freshcast.training import attempt_lock
                with attempt_lock(Path({str(tmp_path)!r})):
                    print("holding", flush=True)
                    time.sleep(120)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(WorkDirBusy, match=rf"another attempt \(pid {holder.pid}\)"):
            with attempt_lock(tmp_path, wait=0.6):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with attempt_lock(tmp_path, wait=0):  # the killed attempt's lock went with it
        assert (tmp_path / ".attempt.lock").read_text() == str(os.getpid())
