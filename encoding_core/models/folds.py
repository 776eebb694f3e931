"""Cross-validation folds over TRs that respect the autocorrelation of fMRI time series.

All fold kinds return ``list[(train_idx, test_idx)]`` of sorted int64 row indices (TRs).
Shuffling is seeded (``seed``), so the same arguments always give the same folds.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np

from encoding_core.common.errors import InputError

logger = logging.getLogger(__name__)

FOLD_KINDS = ("contiguous", "chunked", "trimmed", "story")
"""Supported fold kinds."""

Fold = tuple[np.ndarray, np.ndarray]


def make_folds(n_samples: int, kind: str = "chunked", n_folds: int = 5, *, chunk_length: int = 20,
               trim_size: int = 5, seed: int = 0, groups: Optional[Any] = None) -> list[Fold]:
    """Train/test row indices for cross-validation over ``n_samples`` TRs.

    kind:
      - ``contiguous``: k-fold over consecutive blocks (like scikit-learn ``KFold`` without
        shuffling; the first ``n_samples % n_folds`` folds get one extra TR).
      - ``chunked``: cut the TRs into chunks of ``chunk_length`` TRs (the last may be
        shorter), shuffle the chunks with ``numpy.random.default_rng(seed)``, and deal them
        into ``n_folds`` nearly equal groups; each group is one test set.
      - ``trimmed``: like ``contiguous``, but the ``trim_size`` TRs on each side of the
        held-out block are dropped from training (they are neither train nor test).
      - ``story``: leave one group out; ``groups`` (n_samples,) labels the story of each TR,
        folds follow the order in which groups first appear, ``n_folds`` is ignored. With a
        single group this falls back to ``chunked`` with a warning.
    """
    n_samples = _positive_int(n_samples, "n_samples")
    if kind not in FOLD_KINDS:
        raise InputError(f"Unknown fold kind {kind!r}; choose one of {list(FOLD_KINDS)}.")
    if kind == "story":
        return _story_folds(n_samples, groups, n_folds=n_folds, chunk_length=chunk_length, seed=seed)
    n_folds = _positive_int(n_folds, "n_folds")
    if n_folds < 2:
        raise InputError(f"n_folds must be at least 2 for cross-validation; got {n_folds}.")
    if n_folds > n_samples:
        raise InputError(f"n_folds={n_folds} exceeds the number of TRs ({n_samples}); use at most {n_samples} folds.")
    everything = np.arange(n_samples, dtype=np.int64)
    if kind == "chunked":
        chunk_length = _positive_int(chunk_length, "chunk_length")
        chunks = np.array_split(everything, np.arange(chunk_length, n_samples, chunk_length))
        if len(chunks) < n_folds:
            raise InputError(
                f"Only {len(chunks)} chunks of chunk_length={chunk_length} TRs fit in {n_samples} TRs, fewer than "
                f"n_folds={n_folds}; lower chunk_length (at most {n_samples // n_folds}) or n_folds."
            )
        order = np.random.default_rng(seed).permutation(len(chunks))
        tests = [np.sort(np.concatenate([chunks[i] for i in part])) for part in np.array_split(order, n_folds)]
        return [(np.setdiff1d(everything, test, assume_unique=True), test) for test in tests]
    tests = np.array_split(everything, n_folds)
    if kind == "contiguous":
        return [(np.setdiff1d(everything, test, assume_unique=True), test) for test in tests]
    trim_size = int(trim_size)
    if trim_size < 0:
        raise InputError(f"trim_size must be a non-negative number of TRs; got {trim_size}.")
    folds = []
    for test in tests:  # one iteration per fold (a handful)
        keep = (everything < test[0] - trim_size) | (everything > test[-1] + trim_size)
        train = everything[keep]
        if len(train) == 0:
            raise InputError(
                f"trim_size={trim_size} leaves no training TRs for a held-out block of {len(test)} TRs out of "
                f"{n_samples}; lower trim_size or raise n_folds."
            )
        folds.append((train, test))
    return folds


def _story_folds(n_samples: int, groups: Any, *, n_folds: int, chunk_length: int, seed: int) -> list[Fold]:
    if groups is None:
        raise InputError("kind='story' needs groups= (one story label per TR).")
    labels = np.asarray(groups)
    if labels.ndim != 1 or len(labels) != n_samples:
        raise InputError(
            f"groups must hold one story label per TR: expected {n_samples} labels, got shape {labels.shape}."
        )
    _, first_index, inverse = np.unique(labels, return_index=True, return_inverse=True)
    if len(first_index) < 2:
        logger.warning("Only one story in the training data: leave-one-story-out is impossible; "
                       "using chunked folds (chunk_length=%d) within the story instead.", chunk_length)
        return make_folds(n_samples, "chunked", max(2, min(int(n_folds), 5)), chunk_length=chunk_length, seed=seed)
    everything = np.arange(n_samples, dtype=np.int64)
    order = np.argsort(first_index)  # groups in order of first appearance
    return [(everything[inverse != g], everything[inverse == g]) for g in order]


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise InputError(f"{name} must be a positive whole number; got {value!r}.")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a positive whole number; got {value!r}.") from None
    if number != value or number < 1:
        raise InputError(f"{name} must be a positive whole number; got {value!r}.")
    return number
