from __future__ import annotations

import re

import numpy as np
import pytest

from freshcast.windowing import SPLITS, Windows, batch_index, make_windows, split_ranges


def _series(rows: int, cols: int) -> np.ndarray:
    return np.arange(rows * cols).reshape(rows, cols)


def _base_chain(array: object) -> list[object]:
    chain = []
    while array is not None:
        chain.append(array)
        array = getattr(array, "base", None)
    return chain


# ---------------------------------------------------------------- make_windows: exact content

# _series(6, 3): row r is [3r, 3r + 1, 3r + 2].
X_T3 = np.array(
    [
        [[0, 1], [3, 4], [6, 7]],
        [[3, 4], [6, 7], [9, 10]],
        [[6, 7], [9, 10], [12, 13]],
    ]
)


def test_make_windows_horizon_1_exact():
    w = make_windows(_series(6, 3), timesteps=3, horizon=1, inputs=2, target=2)
    np.testing.assert_array_equal(w.x, X_T3)
    np.testing.assert_array_equal(w.y, [[11], [14], [17]])


def test_make_windows_horizon_2_exact():
    w = make_windows(_series(6, 3), timesteps=3, horizon=2, inputs=2, target=2)
    np.testing.assert_array_equal(w.x, X_T3[:2])
    np.testing.assert_array_equal(w.y, [[11, 14], [14, 17]])


def test_make_windows_target_outside_inputs_and_not_first_column():
    # Inputs are column 0 only; the target is column 1, which the model never sees.
    w = make_windows(_series(5, 3), timesteps=2, horizon=2, inputs=1, target=1)
    np.testing.assert_array_equal(w.x, [[[0], [3]], [[3], [6]]])
    np.testing.assert_array_equal(w.y, [[7, 10], [10, 13]])


def test_make_windows_sample_i_matches_its_definition():
    array = _series(20, 4)
    timesteps, horizon, target = 4, 3, 2
    w = make_windows(array, timesteps=timesteps, horizon=horizon, inputs=3, target=target)
    for i in range(len(w)):
        np.testing.assert_array_equal(w.x[i], array[i : i + timesteps, :3])
        np.testing.assert_array_equal(
            w.y[i], array[i + timesteps : i + timesteps + horizon, target]
        )


@pytest.mark.parametrize(
    ("rows", "cols", "timesteps", "horizon", "inputs"),
    [(6, 3, 3, 1, 2), (6, 3, 3, 2, 3), (10, 1, 1, 1, 1), (10, 2, 9, 1, 2), (30, 5, 7, 4, 3)],
)
def test_make_windows_shapes(rows, cols, timesteps, horizon, inputs):
    w = make_windows(
        _series(rows, cols), timesteps=timesteps, horizon=horizon, inputs=inputs, target=0
    )
    samples = rows - timesteps - horizon + 1
    assert w.x.shape == (samples, timesteps, inputs)
    assert w.y.shape == (samples, horizon)
    assert len(w) == samples


# ---------------------------------------------------------------- make_windows: zero copy


def test_make_windows_are_views_sharing_the_array():
    array = _series(12, 3)
    nbytes = array.nbytes
    w = make_windows(array, timesteps=3, horizon=2, inputs=2, target=2)
    assert np.shares_memory(w.x, array)
    assert np.shares_memory(w.y, array)
    owner = _base_chain(array)[-1]  # the array that owns the memory
    assert any(b is owner for b in _base_chain(w.x))
    assert any(b is owner for b in _base_chain(w.y))
    assert not w.x.flags.owndata
    assert not w.y.flags.owndata
    assert array.nbytes == nbytes


def test_make_windows_are_read_only_and_follow_the_array():
    array = _series(6, 3)
    w = make_windows(array, timesteps=3, horizon=1, inputs=2, target=2)
    assert not w.x.flags.writeable
    assert not w.y.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        w.x[0, 0, 0] = -1
    array[3, :] = -1  # a view sees the change; a copy would not
    assert w.x[0, 2, 0] == 6  # row 2 untouched
    np.testing.assert_array_equal(w.x[1, 2], [-1, -1])
    np.testing.assert_array_equal(w.x[2, 1], [-1, -1])
    assert w.y[0, 0] == -1


def test_make_windows_over_a_memory_map(tmp_path):
    path = tmp_path / "scaled.npy"
    np.save(path, _series(6, 3).astype(np.float32))
    mapped = np.load(path, mmap_mode="r")
    w = make_windows(mapped, timesteps=3, horizon=1, inputs=2, target=2)
    assert np.shares_memory(w.x, mapped)
    np.testing.assert_array_equal(w.x, X_T3)
    np.testing.assert_array_equal(w.y, [[11], [14], [17]])


def test_windows_slice_is_a_view_of_the_same_samples():
    array = _series(10, 2)
    w = make_windows(array, timesteps=3, horizon=1, inputs=2, target=1)
    part = w[2:5]
    assert isinstance(part, Windows)
    assert len(part) == 3
    np.testing.assert_array_equal(part.x, w.x[2:5])
    np.testing.assert_array_equal(part.y, w.y[2:5])
    assert np.shares_memory(part.x, array)


# ---------------------------------------------------------------- make_windows: errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timesteps": 0}, "`timesteps` must be > 0. Received: timesteps=0"),
        ({"timesteps": -2}, "`timesteps` must be > 0. Received: timesteps=-2"),
        ({"horizon": 0}, "`horizon` must be > 0. Received: horizon=0"),
        ({"inputs": 0}, "`inputs` must be > 0. Received: inputs=0"),
        ({"inputs": 4}, "`inputs` must be <= 3 columns. Received: inputs=4"),
        ({"target": 3}, "`target` must be in [0, 3). Received: target=3"),
        ({"target": -1}, "`target` must be in [0, 3). Received: target=-1"),
        ({"timesteps": 4, "horizon": 2}, "5 rows make no window of timesteps=4 + horizon=2"),
    ],
)
def test_make_windows_argument_errors(kwargs, message):
    args = {"timesteps": 2, "horizon": 1, "inputs": 2, "target": 2} | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        make_windows(_series(5, 3), **args)


@pytest.mark.parametrize("shape", [(12,), (2, 3, 2)])
def test_make_windows_rejects_a_non_2d_array(shape):
    message = f"`array` must be 2D (rows, columns). Received: shape={shape}"
    with pytest.raises(ValueError, match=re.escape(message)):
        make_windows(np.arange(12).reshape(shape), timesteps=1, horizon=1, inputs=1, target=0)


def test_make_windows_smallest_series_gives_one_window():
    w = make_windows(_series(4, 1), timesteps=3, horizon=1, inputs=1, target=0)
    np.testing.assert_array_equal(w.x, [[[0], [1], [2]]])
    np.testing.assert_array_equal(w.y, [[3]])


# ---------------------------------------------------------------- split_ranges


def test_split_ranges_exact_horizon_1():
    # rows: train 0..9, val 10..13, test 14..17; sample i targets row i + 3.
    assert split_ranges((10, 4, 4), timesteps=3, horizon=1) == {
        "train": (0, 7),
        "val": (7, 11),
        "test": (11, 15),
    }


def test_split_ranges_exact_horizon_2_drops_straddling_samples():
    # Sample 6 targets rows 9 and 10: half train, half val, so it belongs to neither.
    assert split_ranges((10, 4, 4), timesteps=3, horizon=2) == {
        "train": (0, 6),
        "val": (7, 10),
        "test": (11, 14),
    }


def _brute_force(split_rows, timesteps, horizon):
    """Every sample of the whole series, assigned to the split holding all its target rows."""
    total = sum(split_rows)
    bounds = np.cumsum([0, *split_rows])
    owned = {name: [] for name in SPLITS}
    for i in range(total - timesteps - horizon + 1):
        targets = range(i + timesteps, i + timesteps + horizon)
        for k, name in enumerate(SPLITS):
            if all(bounds[k] <= r < bounds[k + 1] for r in targets):
                owned[name].append(i)
    return owned, bounds


def test_split_ranges_against_brute_force():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(500):
        split_rows = tuple(int(v) for v in rng.integers(1, [30, 12, 12]))
        timesteps, horizon = int(rng.integers(1, 9)), int(rng.integers(1, 5))
        owned, bounds = _brute_force(split_rows, timesteps, horizon)
        if not all(owned.values()):
            with pytest.raises(ValueError, match="holds no full target"):
                split_ranges(split_rows, timesteps=timesteps, horizon=horizon)
            continue
        ranges = split_ranges(split_rows, timesteps=timesteps, horizon=horizon)
        total = sum(split_rows)
        w = make_windows(
            np.arange(total).reshape(total, 1),
            timesteps=timesteps,
            horizon=horizon,
            inputs=1,
            target=0,
        )
        for k, name in enumerate(SPLITS):
            start, stop = ranges[name]
            assert list(range(start, stop)) == owned[name], (split_rows, timesteps, horizon)
            targets = w[start:stop].y  # the series is arange, so values are row numbers
            assert targets.min() >= bounds[k]
            assert targets.max() < bounds[k + 1]
        checked += 1
    assert checked > 100  # the loop exercised the success path, not just the errors


@pytest.mark.parametrize(
    ("split_rows", "timesteps", "horizon", "message"),
    [
        (
            (3, 5, 5),
            3,
            1,
            "the train split (3 rows) holds no full target of horizon=1 after timesteps=3",
        ),
        (
            (10, 2, 5),
            2,
            3,
            "the val split (2 rows) holds no full target of horizon=3 after timesteps=2",
        ),
        (
            (10, 5, 0),
            2,
            1,
            "the test split (0 rows) holds no full target of horizon=1 after timesteps=2",
        ),
    ],
)
def test_split_ranges_errors(split_rows, timesteps, horizon, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        split_ranges(split_rows, timesteps=timesteps, horizon=horizon)


def test_split_ranges_needs_three_splits():
    with pytest.raises(ValueError):
        split_ranges((10, 5), timesteps=2, horizon=1)


# ---------------------------------------------------------------- batch_index


@pytest.mark.parametrize(("samples", "batch_size"), [(10, 3), (9, 3), (1, 4), (7, 1), (5, 50)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_batch_index_covers_every_index_once(samples, batch_size, shuffle):
    batches = batch_index(samples, batch_size, shuffle=shuffle, seed=1)
    assert len(batches) == -(-samples // batch_size)
    assert all(len(b) == batch_size for b in batches[:-1])
    assert 1 <= len(batches[-1]) <= batch_size
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(samples))


def test_batch_index_in_order_without_shuffle():
    batches = batch_index(7, 3)
    assert [b.tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]


def test_batch_index_shuffle_is_seeded():
    first = np.concatenate(batch_index(100, 8, shuffle=True, seed=7))
    again = np.concatenate(batch_index(100, 8, shuffle=True, seed=7))
    other = np.concatenate(batch_index(100, 8, shuffle=True, seed=8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first, np.arange(100))


def test_batch_index_of_no_samples_is_empty():
    assert batch_index(0, 4) == []


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_index_rejects_a_non_positive_batch_size(batch_size):
    message = f"`batch_size` must be > 0. Received: batch_size={batch_size}"
    with pytest.raises(ValueError, match=re.escape(message)):
        batch_index(10, batch_size)


# ---------------------------------------------------------------- Windows.gather / batches


def test_gather_returns_copies_with_expected_content():
    array = _series(6, 3)
    w = make_windows(array, timesteps=3, horizon=1, inputs=2, target=2)
    x, y = w.gather(np.array([2, 0]))
    np.testing.assert_array_equal(x, X_T3[[2, 0]])
    np.testing.assert_array_equal(y, [[17], [11]])
    assert x.shape == (2, 3, 2)
    assert y.shape == (2, 1)
    assert not np.shares_memory(x, array)
    assert not np.shares_memory(y, array)
    x[...] = -1
    y[...] = -1
    np.testing.assert_array_equal(array, _series(6, 3))


@pytest.mark.parametrize("shuffle", [False, True])
def test_batches_yield_every_window_once(shuffle):
    array = _series(23, 2)
    w = make_windows(array, timesteps=3, horizon=2, inputs=2, target=1)
    batches = list(w.batches(4, shuffle=shuffle, seed=3))
    assert [len(bx) for bx, _ in batches] == [4, 4, 4, 4, 3]
    xs = np.concatenate([bx for bx, _ in batches])  # [samples, T, F]
    ys = np.concatenate([by for _, by in batches])  # [samples, horizon]
    # The first target of each window is unique (arange), so it identifies the window.
    order = ys[:, 0]
    if shuffle:
        assert not np.array_equal(order, w.y[:, 0])
    sort = np.argsort(order)
    np.testing.assert_array_equal(xs[sort], w.x)
    np.testing.assert_array_equal(ys[sort], w.y)


def test_batches_shuffle_is_reproducible():
    w = make_windows(_series(40, 1), timesteps=2, horizon=1, inputs=1, target=0)
    first = [y.tolist() for _, y in w.batches(5, shuffle=True, seed=11)]
    again = [y.tolist() for _, y in w.batches(5, shuffle=True, seed=11)]
    assert first == again
