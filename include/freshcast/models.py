"""Keras 3 recurrent models built from a ModelSpec: SimpleRNN, LSTM or GRU, stacked, optionally
bidirectional, with a Dense head of `horizon` outputs.

LSTM and GRU keep the settings that let TensorFlow pick the fused cuDNN kernels on a GPU
(tanh/sigmoid activations, no recurrent dropout, no unroll, GRU reset_after=True) unless the spec
asks otherwise. Only tasks that run a model import this module.
"""

from __future__ import annotations

from pathlib import Path

from freshcast import import_keras
from freshcast.artifacts import verify_file
from freshcast.spec import ModelSpec

keras = import_keras()

_LAYERS = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
_OPTIMIZERS = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}


def build_model(
    spec: ModelSpec, *, timesteps: int, features: int, horizon: int, seed: int
) -> keras.Model:
    """A compiled model mapping [B, timesteps, features] to [B, horizon].

    Args:
        spec: the model's spec (type, units per layer, dropout, optimizer, loss, ...).
        timesteps: history length of each window.
        features: input columns.
        horizon: steps predicted at once.
        seed: seeds Python, NumPy and the backend so the same spec gives the same model.
    """
    keras.utils.set_random_seed(seed)
    layer_cls = _LAYERS[spec.type]
    inputs = keras.Input(shape=(timesteps, features), name="window")
    x = inputs
    for depth, units in enumerate(spec.units):
        last = depth == len(spec.units) - 1
        layer = layer_cls(
            units,
            return_sequences=not last,  # stacked layers pass the whole sequence on
            dropout=spec.dropout,
            recurrent_dropout=spec.recurrent_dropout,
            name=f"{spec.type}_{depth}",
        )
        if spec.bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{depth}")
        x = layer(x)
    outputs = keras.layers.Dense(horizon, name="forecast")(x)
    model = keras.Model(inputs, outputs, name=spec.name)
    model.compile(
        optimizer=_OPTIMIZERS[spec.optimizer](learning_rate=spec.learning_rate),
        loss=keras.losses.Huber() if spec.loss == "huber" else spec.loss,
        metrics=["mae"],
        jit_compile="auto" if spec.jit_compile is None else spec.jit_compile,
    )
    return model


def load_model(path: Path, *, sha256: str) -> keras.Model:
    """Load a `.keras` file after checking its sha256, with safe_mode on (no arbitrary code)."""
    verify_file(path, sha256, what=f"model {Path(path).name}")
    return keras.saving.load_model(path, safe_mode=True, compile=False)
