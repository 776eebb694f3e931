"""Outer folds of "all stories (CV)": which rows each outer model trains on, and the pooled segments."""
from __future__ import annotations

import numpy as np
import pytest

from encoding_core.config import RidgeConfig, StatsConfig
from encoding_core.models import fitting


def _rows_seen_by_each_fit(monkeypatch, X, Y, groups, ridge):
    """Run fit_cross_validated, recording the training rows (column 0 of X holds the row index)."""
    seen = []
    real = fitting._fit_ridge

    def spy(X_train, Y_train, ridge_config, groups_train, cancel=None, score="r"):
        seen.append(np.asarray(X_train[:, 0]).astype(int))
        return real(X_train, Y_train, ridge_config, groups_train, cancel, score)

    monkeypatch.setattr(fitting, "_fit_ridge", spy)
    result = fitting.fit_cross_validated(X, Y, groups, ridge, StatsConfig(n_permutations=0))
    return seen, result


def _data(n=120, v=6, seed=0):
    gen = np.random.default_rng(seed)
    X = gen.standard_normal((n, 5)).astype(np.float32)
    X[:, 0] = np.arange(n)
    Y = (X[:, 1:3] @ gen.standard_normal((2, v)) + gen.standard_normal((n, v))).astype(np.float32)
    return X, Y


def test_trimmed_outer_folds_leave_a_gap_around_each_held_out_block(monkeypatch):
    X, Y = _data()
    groups = np.repeat([0, 1, 2], 40)
    ridge = RidgeConfig(alphas=[1.0, 10.0], mode="cv", outer_fold_type="trimmed", n_outer_folds=4, trim_size=6,
                        fold_type="contiguous", n_inner_folds=2)
    seen, result = _rows_seen_by_each_fit(monkeypatch, X, Y, groups, ridge)
    blocks = np.array_split(np.arange(120), 4)
    assert len(seen) == 4
    for block, rows in zip(blocks, seen, strict=True):  # the reference: a loop over rows
        expected = [i for i in range(120) if i < block[0] - 6 or i > block[-1] + 6]
        np.testing.assert_array_equal(np.sort(rows), expected)
    assert result.metrics["outer_fold_type"] == "trimmed"
    assert np.isfinite(result.arrays["correlations"]).all()  # every TR was predicted once


def test_story_outer_folds_train_on_the_other_stories(monkeypatch):
    X, Y = _data(n=90)
    groups = np.repeat(["a", "b", "c"], [20, 30, 40])
    ridge = RidgeConfig(alphas=[1.0], mode="cv", n_inner_folds=2, fold_type="contiguous")
    seen, result = _rows_seen_by_each_fit(monkeypatch, X, Y, groups, ridge)
    for story, rows in zip(["a", "b", "c"], seen, strict=True):
        np.testing.assert_array_equal(np.sort(rows), np.flatnonzero(groups != story))
    assert result.metrics["n_outer_folds"] == 3 and result.metrics["significance"]["n_stories"] == 3


def test_pooled_segments_split_stories_at_fold_boundaries():
    groups = np.repeat([7, 3, 5], [10, 10, 10])  # labels need not be sorted
    folds = [(None, np.arange(0, 15)), (None, np.arange(15, 30))]
    got = fitting.pooled_segments(groups, folds)
    expected, previous, label = [], None, -1
    for t in range(30):  # loop reference: a new segment when the story or the fold changes
        key = (groups[t], 0 if t < 15 else 1)
        label += key != previous
        previous = key
        expected.append(label)
    np.testing.assert_array_equal(got, expected)
    assert got.max() == 3


@pytest.mark.parametrize("alternative", ["greater", "two-sided"])
def test_negative_predictions_are_significant_only_two_sided(alternative):
    """A model that predicts the opposite of the data is no encoding model: one-sided, never significant."""
    gen = np.random.default_rng(3)
    Y = gen.standard_normal((200, 8)).astype(np.float32)
    P = (-0.6 * Y + 0.5 * gen.standard_normal((200, 8))).astype(np.float32)
    arrays, metrics = fitting.evaluate_predictions(Y, P, StatsConfig(alternative=alternative, n_permutations=0))
    assert metrics["significance"]["alternative"] == alternative
    assert arrays["significant_mask"].all() == (alternative == "two-sided")
    assert not arrays["significant_mask"].any() or alternative == "two-sided"
    assert metrics["significance_test"].endswith("one-sided r > 0" if alternative == "greater" else "two-sided")
