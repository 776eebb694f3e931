"""Fold construction: coverage, disjointness, reproducibility, trimming, leave-one-story-out."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import KFold, LeaveOneGroupOut

from encoding_core.common.errors import InputError
from encoding_core.models.folds import make_folds


def assert_partition(folds, n):
    tests = np.concatenate([te for _, te in folds])
    assert np.array_equal(np.sort(tests), np.arange(n))
    for train, test in folds:
        assert not np.intersect1d(train, test).size


def test_contiguous_equals_sklearn_kfold():
    folds = make_folds(103, "contiguous", 5)
    for (train, test), (ktrain, ktest) in zip(folds, KFold(5).split(np.zeros(103))):
        np.testing.assert_array_equal(train, ktrain)
        np.testing.assert_array_equal(test, ktest)


def test_chunked_is_seeded_and_keeps_chunks_whole():
    folds = make_folds(205, "chunked", 5, chunk_length=20, seed=3)
    assert_partition(folds, 205)
    again = make_folds(205, "chunked", 5, chunk_length=20, seed=3)
    other = make_folds(205, "chunked", 5, chunk_length=20, seed=4)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other))
    chunk_of = np.arange(205) // 20
    for _, test in folds:  # a chunk is never split between two test sets
        for chunk in np.unique(chunk_of[test]):
            assert np.all(np.isin(np.flatnonzero(chunk_of == chunk), test))


def test_trimmed_drops_neighbours_from_training():
    folds = make_folds(100, "trimmed", 4, trim_size=5)
    assert_partition(folds, 100)
    for train, test in folds:
        gap = np.abs(train[:, None] - test[None, :]).min()
        assert gap > 5
        expected_train = [i for i in range(100) if i < test[0] - 5 or i > test[-1] + 5]
        np.testing.assert_array_equal(train, expected_train)


def test_story_folds_equal_leave_one_group_out():
    groups = np.repeat(["a", "b", "c"], [30, 25, 40])
    folds = make_folds(95, "story", 3, groups=groups)
    expected = list(LeaveOneGroupOut().split(np.zeros(95), groups=groups))
    for (train, test), (etrain, etest) in zip(folds, expected):
        np.testing.assert_array_equal(test, etest)
        np.testing.assert_array_equal(train, etrain)


def test_single_story_falls_back_to_chunked(caplog):
    folds = make_folds(100, "story", 5, groups=np.zeros(100), chunk_length=10)
    assert "Only one story" in caplog.text
    assert len(folds) == 5
    assert_partition(folds, 100)


def test_errors():
    with pytest.raises(InputError, match="n_folds=10 exceeds"):
        make_folds(5, "contiguous", 10)
    with pytest.raises(InputError, match="fewer than n_folds"):
        make_folds(50, "chunked", 5, chunk_length=20)
    with pytest.raises(InputError, match="Unknown fold kind"):
        make_folds(50, "random", 5)
    with pytest.raises(InputError, match="one story label per TR"):
        make_folds(50, "story", 5, groups=np.zeros(49))
