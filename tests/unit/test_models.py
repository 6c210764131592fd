from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from freshcast.models import build_ensemble, build_model
from freshcast.spec import ConvSpec, ModelSpec

pytestmark = pytest.mark.slow

TIMESTEPS, FEATURES = 8, 2


def _model(*, horizon: int = 1, seed: int = 0, timesteps: int = TIMESTEPS, name=None, **kwargs):
    spec = ModelSpec(**({"type": "lstm", "units": [4]} | kwargs))
    return build_model(
        spec, timesteps=timesteps, features=FEATURES, horizon=horizon, seed=seed, name=name
    )


def _x(samples: int = 5, timesteps: int = TIMESTEPS) -> np.ndarray:
    """[samples, timesteps, features] of distinct values, small enough for tanh."""
    return (np.arange(samples * timesteps * FEATURES, dtype=np.float32) / 100).reshape(
        samples, timesteps, FEATURES
    )


# ---------------------------------------------------------------- build_model: conv and dense


def test_build_model_conv_front_and_dense_layers_in_order():
    model = _model(
        type="gru", units=[4, 3], conv=ConvSpec(filters=5, kernel_size=3), dense=[6, 2], horizon=3
    )
    names = [layer.name for layer in model.layers]
    assert names == ["window", "conv", "gru_0", "gru_1", "dense_0", "dense_1", "forecast"]
    conv = model.get_layer("conv")
    assert isinstance(conv, keras.layers.Conv1D)
    assert (conv.filters, conv.kernel_size, conv.padding) == (5, (3,), "causal")
    assert conv.activation is keras.activations.relu
    assert conv.output.shape == (None, TIMESTEPS, 5)  # causal padding keeps every step
    for name, units in (("dense_0", 6), ("dense_1", 2)):
        dense = model.get_layer(name)
        assert dense.units == units
        assert dense.activation is keras.activations.relu
    assert model.get_layer("forecast").activation is keras.activations.linear
    assert model.output_shape == (None, 3)
    assert model.predict(_x(), verbose=0).shape == (5, 3)


def test_build_model_conv_is_causal():
    """A change at the last input step leaves the conv's outputs at earlier steps unchanged."""
    model = _model(conv=ConvSpec(filters=3, kernel_size=4))
    conv = keras.Model(model.input, model.get_layer("conv").output)
    x = _x(samples=2)
    later = x.copy()
    later[:, -1] += 1.0
    before, after = conv.predict(x, verbose=0), conv.predict(later, verbose=0)
    np.testing.assert_array_equal(before[:, :-1], after[:, :-1])


def test_build_model_defaults_have_no_conv_and_no_dense():
    names = [layer.name for layer in _model().layers]
    assert names == ["window", "lstm_0", "forecast"]
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in _model().layers)


def test_build_model_name_argument_wins_over_the_spec():
    assert _model(name="lstm_s2").name == "lstm_s2"
    spec = ModelSpec(type="gru", name="mine", units=[2])
    assert build_model(spec, timesteps=3, features=1, horizon=1, seed=0).name == "mine"


# ---------------------------------------------------------------- build_ensemble


def _members(count: int = 3, **kwargs) -> list[keras.Model]:
    return [_model(seed=k, name=f"lstm_s{k}", horizon=2, **kwargs) for k in range(1, count + 1)]


def test_build_ensemble_predicts_the_mean_of_its_members():
    members = _members()
    ensemble = build_ensemble(members, name="lstm")
    assert ensemble.name == "lstm"
    assert ensemble.input_shape == (None, TIMESTEPS, FEATURES)
    assert ensemble.output_shape == (None, 2)
    assert isinstance(ensemble.get_layer("forecast"), keras.layers.Average)
    assert [m.name for m in ensemble.layers[1:-1]] == ["lstm_s1", "lstm_s2", "lstm_s3"]
    x = _x()
    mean = np.mean([m.predict(x, verbose=0) for m in members], axis=0)  # [B, horizon]
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), mean, atol=1e-6)


def test_build_ensemble_of_one_member_is_that_member():
    (member,) = _members(1)
    ensemble = build_ensemble([member], name="lstm")
    x = _x()
    np.testing.assert_array_equal(ensemble.predict(x, verbose=0), member.predict(x, verbose=0))


def test_build_ensemble_renames_copies_of_members_sharing_a_name():
    members = [_model(seed=k, name="lstm", horizon=2) for k in (1, 2)]
    ensemble = build_ensemble(members, name="lstm")
    assert [m.name for m in ensemble.layers[1:-1]] == ["lstm_s1", "lstm_s2"]
    assert [m.name for m in members] == ["lstm", "lstm"]  # the models passed in are unchanged
    x = _x()
    mean = np.mean([m.predict(x, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), mean, atol=1e-6)


def test_build_ensemble_loads_in_a_fresh_process_with_safe_mode(tmp_path):
    members = _members(conv=ConvSpec(filters=3, kernel_size=2), dense=[4])
    path = tmp_path / "ensemble.keras"
    build_ensemble(members, name="lstm").save(path)
    x = _x()
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(
        f"""
        import json
        import keras
        import numpy as np
        model = keras.saving.load_model({str(path)!r}, safe_mode=True, compile=False)
        x = np.load({str(tmp_path / "x.npy")!r})
        print(json.dumps(model.predict(x, verbose=0).tolist()))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    mean = np.mean([m.predict(x, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(loaded, mean, atol=1e-6)


def test_build_ensemble_refuses_members_of_other_shapes():
    base = _model(horizon=2, name="a")
    with pytest.raises(ValueError, match=r"output shapes\. Received: a: .*-> \(None, 2\), "):
        build_ensemble([base, _model(horizon=3, name="b")], name="e")
    with pytest.raises(ValueError, match=r"b: \(None, 5, 2\) -> \(None, 2\)"):
        build_ensemble([base, _model(horizon=2, timesteps=5, name="b")], name="e")


def test_build_ensemble_refuses_no_members():
    with pytest.raises(ValueError, match=r"at least one model\. Received: members=\[\]"):
        build_ensemble([], name="e")


def test_a_model_with_a_base_starts_as_the_base_and_trains_only_the_correction():
    from freshcast.baselines import naive_kernel

    spec = ModelSpec(type="gru", units=[4], base="persistence", dense=[3])
    kernel, bias = naive_kernel(timesteps=5, features=2, target=0, horizon=2, season=1)
    model = build_model(spec, timesteps=5, features=2, horizon=2, seed=1, base=(kernel, bias))
    x = np.random.default_rng(0).normal(size=(8, 5, 2)).astype("float32")
    untrained = np.asarray(model(x, training=False))
    np.testing.assert_allclose(untrained, np.repeat(x[:, -1:, 0], 2, axis=1), rtol=1e-6)
    frozen = model.get_layer("base")
    assert not frozen.trainable and frozen.count_params() == 5 * 2 * 2 + 2
    assert all("base" not in w.path for w in model.trainable_weights)
    model.fit(x, np.ones((8, 2)), epochs=2, verbose=0)
    np.testing.assert_array_equal(frozen.get_weights()[0], kernel.astype("float32"))
    assert not np.allclose(np.asarray(model(x, training=False)), untrained)
