"""Keras 3 recurrent models built from a ModelSpec: an optional causal Conv1D front, SimpleRNN,
LSTM or GRU layers, stacked, optionally bidirectional, optional Dense (relu) layers, and a Dense
head of `horizon` outputs; and seed ensembles of such models, saved as one `.keras` file.

LSTM and GRU keep the settings that let TensorFlow pick the fused cuDNN kernels on a GPU
(tanh/sigmoid activations, no recurrent dropout, no unroll, GRU reset_after=True) unless the spec
asks otherwise. Nothing here uses a Lambda layer or a custom object, so every model (ensembles
included) loads with `safe_mode=True`; outputs stay in the scaled units (the scaler inverts them).
Only tasks that run a model import this module.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from freshcast import import_keras
from freshcast.artifacts import verify_file
from freshcast.spec import ModelSpec

keras = import_keras()

_LAYERS = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
_OPTIMIZERS = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}


def build_model(
    spec: ModelSpec,
    *,
    timesteps: int,
    features: int,
    horizon: int,
    seed: int,
    name: str | None = None,
    base: tuple[np.ndarray, np.ndarray] | None = None,
) -> keras.Model:
    """A compiled model mapping [B, timesteps, features] to [B, horizon].

    Layers in order: `conv` (causal Conv1D, when the spec has one), `<type>_<depth>` (or
    `bidirectional_<depth>`) for each entry of `units`, `dense_<i>` for each entry of `dense`,
    and `forecast` (Dense(horizon), linear).

    Args:
        spec: the model's spec (type, units per layer, conv, dense, dropout, optimizer, ...).
        timesteps: history length of each window.
        features: input columns.
        horizon: steps predicted at once.
        seed: seeds Python, NumPy and the backend so the same spec gives the same model.
        name: the Keras model's name, default the spec's name; e.g. `lstm_s2` for the member
            `lstm-s2` of a seed ensemble (Keras names take underscores).
        base: (kernel [timesteps * features, horizon], bias [horizon]) of a linear forecast
            over the flattened window (`spec.base`): a frozen `base` Dense layer beside the
            network, whose `forecast` layer then starts at zero, so the untrained model is the
            base and training learns what the base misses. Saved with the model's weights.
    """
    keras.utils.set_random_seed(seed)
    layer_cls = _LAYERS[spec.type]
    inputs = keras.Input(shape=(timesteps, features), name="window")
    x = inputs
    if spec.conv is not None:
        # Causal padding: step t sees steps <= t only, and the sequence keeps its length.
        x = keras.layers.Conv1D(
            spec.conv.filters,
            spec.conv.kernel_size,
            padding="causal",
            activation="relu",
            name="conv",
        )(x)  # [B, timesteps, filters]
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
    for i, units in enumerate(spec.dense):
        x = keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
    if base is None:
        outputs = keras.layers.Dense(horizon, name="forecast")(x)
    else:
        correction = keras.layers.Dense(horizon, kernel_initializer="zeros", name="correction")(x)
        frozen = keras.layers.Dense(horizon, trainable=False, name="base")
        anchor = frozen(keras.layers.Flatten(name="window_flat")(inputs))  # [B, horizon]
        kernel, bias = base
        frozen.set_weights([np.asarray(kernel, "float32"), np.asarray(bias, "float32")])
        outputs = keras.layers.Add(name="forecast")([anchor, correction])
    model = keras.Model(inputs, outputs, name=name or spec.name)
    model.compile(
        optimizer=_OPTIMIZERS[spec.optimizer](learning_rate=spec.learning_rate),
        loss=keras.losses.Huber() if spec.loss == "huber" else spec.loss,
        metrics=["mae"],
        jit_compile="auto" if spec.jit_compile is None else spec.jit_compile,
    )
    return model


def build_ensemble(members: list[keras.Model], *, name: str) -> keras.Model:
    """One model whose forecast is the mean of its members' forecasts: [B, T, F] -> [B, horizon].

    Each member is a nested model applied to the shared `window` input; `forecast` is
    `keras.layers.Average` over their outputs (a single member's output is used as it is). A
    member whose name another member (or the `window`/`forecast` layers) already has is
    copied under the name `<name>_s<k>`, k its 1-based position; the models passed in are left
    unchanged. The result saves as one `.keras` file that loads with `safe_mode=True`.

    Args:
        members: models sharing one input shape [B, timesteps, features] and one output shape
            [B, horizon], e.g. the same spec trained with different seeds.
        name: the ensemble model's name.

    Raises:
        ValueError: no members, or members whose input or output shapes differ.
    """
    if not members:
        raise ValueError("`members` must hold at least one model. Received: members=[]")
    input_shapes = [tuple(m.input_shape) for m in members]
    output_shapes = [tuple(m.output_shape) for m in members]
    if len(set(input_shapes)) > 1 or len(set(output_shapes)) > 1:
        raise ValueError(
            "ensemble members must share their input and output shapes. Received: "
            + ", ".join(
                f"{m.name}: {i} -> {o}"
                for m, i, o in zip(members, input_shapes, output_shapes, strict=True)
            )
        )
    inputs = keras.Input(shape=input_shapes[0][1:], name="window")
    forecasts = [member(inputs) for member in _uniquely_named(members)]  # each [B, horizon]
    if len(forecasts) == 1:
        return keras.Model(inputs, forecasts[0], name=name)
    return keras.Model(inputs, keras.layers.Average(name="forecast")(forecasts), name=name)


def _uniquely_named(members: list[keras.Model]) -> list[keras.Model]:
    """The members, each whose name is taken replaced by a renamed copy with the same weights
    (Keras wants unique layer names, and a nested model is one layer)."""
    reserved = {"window", "forecast"}
    counts = Counter(m.name for m in members)
    used = reserved | {n for n, c in counts.items() if c == 1}
    unique = []
    for k, member in enumerate(members, start=1):
        if counts[member.name] == 1 and member.name not in reserved:
            unique.append(member)
            continue
        renamed = f"{member.name}_s{k}"
        while renamed in used:
            renamed += "_"
        used.add(renamed)
        copy = member.__class__.from_config(member.get_config() | {"name": renamed})
        copy.set_weights(member.get_weights())
        unique.append(copy)
    return unique


def load_model(path: Path, *, sha256: str) -> keras.Model:
    """Load a `.keras` file after checking its sha256, with safe_mode on (no arbitrary code)."""
    verify_file(path, sha256, what=f"model {Path(path).name}")
    return keras.saving.load_model(path, safe_mode=True, compile=False)
