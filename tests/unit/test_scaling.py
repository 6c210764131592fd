from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest

from freshcast.scaling import ScalerParams, fit_scaler

COLUMNS = ["temp", "rain", "wind"]
TRAIN = 28
KINDS = ["minmax", "standard"]


def _values(rows: int = 40) -> np.ndarray:
    """(rows, 3) with very different scales per column, so a mix-up of columns shows."""
    rng = np.random.default_rng(0)
    return rng.normal(loc=[10.0, -300.0, 0.5], scale=[3.0, 50.0, 0.01], size=(rows, 3))


# ---------------------------------------------------------------- fit on train only


@pytest.mark.parametrize("kind", KINDS)
def test_params_depend_only_on_the_training_rows(kind):
    values = _values()
    other = values.copy()
    other[TRAIN:] = other[TRAIN:] * 1000 + 7  # a different future
    assert fit_scaler(kind, values[:TRAIN], COLUMNS) == fit_scaler(kind, other[:TRAIN], COLUMNS)
    assert fit_scaler(kind, values[:TRAIN], COLUMNS) != fit_scaler(kind, values, COLUMNS)


def test_minmax_params_match_hand_computed_values():
    train = _values()[:TRAIN]
    lo, hi = train.min(axis=0), train.max(axis=0)
    params = fit_scaler("minmax", train, COLUMNS)
    assert params.kind == "minmax"
    assert params.columns == COLUMNS
    np.testing.assert_allclose(params.scale, 1 / (hi - lo))
    np.testing.assert_allclose(params.offset, -lo / (hi - lo))


def test_standard_params_match_hand_computed_values():
    train = _values()[:TRAIN]
    mean, std = train.mean(axis=0), train.std(axis=0)  # population std, like StandardScaler
    params = fit_scaler("standard", train, COLUMNS)
    assert params.kind == "standard"
    np.testing.assert_allclose(params.scale, 1 / std)
    np.testing.assert_allclose(params.offset, -mean / std)


# ---------------------------------------------------------------- transform


def test_minmax_maps_train_to_unit_interval():
    values = _values()
    params = fit_scaler("minmax", values[:TRAIN], COLUMNS)
    scaled = params.transform(values[:TRAIN], dtype=np.float64)
    np.testing.assert_allclose(scaled.min(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(scaled.max(axis=0), 1.0, atol=1e-12)


def test_minmax_does_not_clip_rows_outside_the_training_range():
    values = _values()
    values[-1] = values[:TRAIN].max(axis=0) + 1.0
    params = fit_scaler("minmax", values[:TRAIN], COLUMNS)
    assert (params.transform(values[-1:]) > 1.0).all()


def test_standard_maps_train_to_zero_mean_unit_std():
    values = _values()
    params = fit_scaler("standard", values[:TRAIN], COLUMNS)
    scaled = params.transform(values[:TRAIN], dtype=np.float64)
    np.testing.assert_allclose(scaled.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(scaled.std(axis=0), 1.0, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_transform_dtype(kind):
    params = fit_scaler(kind, _values()[:TRAIN], COLUMNS)
    assert params.transform(_values()).dtype == np.float32
    assert params.transform(_values(), dtype=np.float64).dtype == np.float64


# ---------------------------------------------------------------- inverse


@pytest.mark.parametrize("kind", KINDS)
def test_inverse_of_transform_is_identity(kind):
    values = _values()
    params = fit_scaler(kind, values[:TRAIN], COLUMNS)
    back = params.inverse(params.transform(values, dtype=np.float64))
    np.testing.assert_allclose(back, values, rtol=1e-12, atol=1e-12)
    # The stored float32 scaled array loses only float32 precision.
    np.testing.assert_allclose(params.inverse(params.transform(values)), values, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(40,), (8, 5), (10, 2, 2), (40, 1)])
@pytest.mark.parametrize(("i", "column"), list(enumerate(COLUMNS)))
def test_inverse_of_one_named_column_any_shape(kind, shape, i, column):
    values = _values()
    params = fit_scaler(kind, values[:TRAIN], COLUMNS)
    scaled = params.transform(values, dtype=np.float64)[:, i].reshape(shape)
    back = params.inverse(scaled, column=column)
    assert back.shape == shape
    np.testing.assert_allclose(back, values[:, i].reshape(shape), rtol=1e-12, atol=1e-12)


def test_inverse_of_an_unknown_column_fails():
    params = fit_scaler("minmax", _values()[:TRAIN], COLUMNS)
    with pytest.raises(ValueError):
        params.inverse(np.zeros(3), column="snow")


# ---------------------------------------------------------------- JSON


@pytest.mark.parametrize("kind", KINDS)
def test_json_round_trip(kind):
    values = _values()
    params = fit_scaler(kind, values[:TRAIN], COLUMNS)
    loaded = ScalerParams.from_json(json.loads(json.dumps(params.to_json())))
    assert loaded == params
    np.testing.assert_array_equal(loaded.transform(values), params.transform(values))
    np.testing.assert_array_equal(
        loaded.inverse(params.transform(values)), params.inverse(params.transform(values))
    )


def test_from_json_rejects_mismatched_lengths():
    data = fit_scaler("minmax", _values()[:TRAIN], COLUMNS).to_json()
    data["scale"] = data["scale"][:2]
    with pytest.raises(ValueError, match="mismatched lengths"):
        ScalerParams.from_json(data)


# ---------------------------------------------------------------- degenerate and bad input


@pytest.mark.parametrize("kind", KINDS)
def test_constant_train_column_does_not_divide_by_zero(kind):
    values = _values()
    values[:TRAIN, 1] = 4.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a division by zero would warn
        params = fit_scaler(kind, values[:TRAIN], COLUMNS)
        scaled = params.transform(values, dtype=np.float64)
        back = params.inverse(scaled)
        back_rain = params.inverse(scaled[:, 1], column="rain")
    assert np.isfinite(params.scale).all()
    assert np.isfinite(params.offset).all()
    assert np.isfinite(scaled).all()
    np.testing.assert_allclose(scaled[:TRAIN, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(back, values, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(back_rain, values[:, 1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(TRAIN,), (TRAIN, 2), (TRAIN, 4), (TRAIN, 3, 1)])
def test_fit_rejects_a_wrong_shape(shape):
    message = f"expected an array of shape (rows, 3). Received: shape={shape}"
    with pytest.raises(ValueError, match=re.escape(message)):
        fit_scaler("minmax", np.zeros(shape), COLUMNS)


@pytest.mark.parametrize("shape", [(10,), (10, 2), (10, 4)])
def test_transform_and_inverse_reject_a_wrong_shape(shape):
    params = fit_scaler("standard", _values()[:TRAIN], COLUMNS)
    message = f"expected an array of shape (rows, 3). Received: shape={shape}"
    with pytest.raises(ValueError, match=re.escape(message)):
        params.transform(np.zeros(shape))
    with pytest.raises(ValueError, match=re.escape(message)):
        params.inverse(np.zeros(shape))


def test_fit_rejects_an_unknown_kind():
    message = "`kind` must be 'minmax' or 'standard'. Received: kind='robust'"
    with pytest.raises(ValueError, match=re.escape(message)):
        fit_scaler("robust", _values()[:TRAIN], COLUMNS)


@pytest.mark.parametrize("kind", KINDS)
def test_inputs_are_not_mutated(kind):
    values = _values()
    original = values.copy()
    params = fit_scaler(kind, values[:TRAIN], COLUMNS)
    scaled = params.transform(values, dtype=np.float64)
    scaled_copy = scaled.copy()
    params.inverse(scaled)
    params.inverse(scaled[:, 0], column="temp")
    np.testing.assert_array_equal(values, original)
    np.testing.assert_array_equal(scaled, scaled_copy)


# ---------------------------------------------------------------- values the maths cannot take


@pytest.mark.parametrize(("kind", "what"), [("minmax", "range"), ("standard", "variance")])
def test_fit_refuses_a_spread_that_overflows_float64(kind, what):
    values = _values()
    values[3, 1], values[5, 1] = 1e308, -1e308  # finite, but max - min and the squares are not
    message = f"the {what} of column 'rain' over the training rows overflows float64"
    with pytest.raises(ValueError, match=re.escape(message)):
        fit_scaler(kind, values[:TRAIN], COLUMNS)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_fit_refuses_a_non_finite_training_value(kind, value):
    values = _values()
    values[4, 2] = value  # scikit-learn's scalers would skip a NaN silently
    message = f"`train` must be finite: column 'wind', row 4 is {value:g} (1 such value(s))"
    with pytest.raises(ValueError, match=re.escape(message)):
        fit_scaler(kind, values[:TRAIN], COLUMNS)


def test_transform_refuses_values_beyond_float32():
    values = _values()
    params = fit_scaler("minmax", values[:TRAIN], COLUMNS)
    values[30, 0] = 1e300  # float64 holds it scaled; float32 does not
    assert np.isfinite(params.transform(values, dtype=np.float64)).all()
    message = "column 'temp', row 30: 1e+300 scales to inf in float32 (1 such value(s))"
    with pytest.raises(ValueError, match=re.escape(message)):
        params.transform(values)


@pytest.mark.parametrize(
    ("scale", "offset"), [(float("nan"), 0.0), (1.0, float("inf")), (0.0, 0.0)]
)
def test_params_must_be_finite_with_a_non_zero_scale(scale, offset):
    data = fit_scaler("minmax", _values()[:TRAIN], COLUMNS).to_json()
    data["scale"][1], data["offset"][1] = scale, offset
    message = f"column 'rain' must be finite, the scale non-zero. Received: scale={scale!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        ScalerParams.from_json(data)
