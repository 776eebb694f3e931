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

FOLD_KINDS = ("contiguous", "chunked", "trimmed", "story",
              "chunked_contiguous", "chunked_trimmed", "kfold_trimmed", "timeseries", "group")
"""Supported fold kinds. The last five are the reference's ``create_folds`` names (its ``kfold``
is our ``contiguous``); see :func:`make_folds` for where they differ from the reference."""

Fold = tuple[np.ndarray, np.ndarray]


def make_folds(n_samples: int, kind: str = "chunked", n_folds: int = 5, *, chunk_length: int = 20,
               trim_size: int = 5, seed: int = 0, groups: Optional[Any] = None, shuffle: bool = True) -> list[Fold]:
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

    The reference's names (``encoding.models.folding.create_folds``):
      - ``chunked_contiguous``: chunks of ``chunk_length`` TRs in order (no shuffle), dealt into
        ``n_folds`` groups of consecutive chunks.
      - ``chunked_trimmed``: ``chunked`` folds whose test chunks each lose ``trim_size`` TRs at
        both ends (kept only if something is left); training keeps the full other chunks, so the
        trimmed edges are in neither set (as the reference).
      - ``kfold_trimmed``: ``contiguous`` folds whose test block loses ``trim_size`` TRs at both
        ends when it is longer than ``2 * trim_size`` (else kept whole); training unchanged
        (as the reference; our ``trimmed`` instead drops the *training* TRs next to the test block).
      - ``timeseries``: scikit-learn ``TimeSeriesSplit(n_splits=n_folds)``: test blocks of
        ``n_samples // (n_folds + 1)`` TRs at the end, training = every TR before the block.
      - ``group``: scikit-learn ``GroupKFold(n_splits=n_folds)`` (largest groups first, each to
        the fold with the fewest TRs so far); ``groups`` labels every TR.
    Where the reference differs on purpose: its chunked kinds drop the trailing
    ``n_samples % chunk_length`` TRs from every fold and shuffle with Python's unseeded
    ``random``; here the short last chunk is kept and the shuffle is seeded.
    """
    n_samples = _positive_int(n_samples, "n_samples")
    if kind not in FOLD_KINDS:
        raise InputError(f"Unknown fold kind {kind!r}; choose one of {list(FOLD_KINDS)}.")
    if kind == "story":
        return _story_folds(n_samples, groups, n_folds=n_folds, chunk_length=chunk_length, seed=seed)
    n_folds = _positive_int(n_folds, "n_folds")
    if kind == "group":
        return _group_kfold(n_samples, groups, n_folds)
    if n_folds < 2:
        raise InputError(f"n_folds must be at least 2 for cross-validation; got {n_folds}.")
    if n_folds > n_samples:
        raise InputError(f"n_folds={n_folds} exceeds the number of TRs ({n_samples}); use at most {n_samples} folds.")
    everything = np.arange(n_samples, dtype=np.int64)
    if kind == "timeseries":
        return _timeseries_folds(n_samples, n_folds)
    if kind in ("chunked_contiguous", "chunked_trimmed"):
        folds = make_folds(n_samples, "chunked", n_folds, chunk_length=chunk_length, seed=seed,
                           shuffle=kind == "chunked_trimmed")
        return folds if kind == "chunked_contiguous" else _trim_test_chunks(folds, chunk_length, trim_size)
    if kind == "kfold_trimmed":
        return _trim_test_blocks(make_folds(n_samples, "contiguous", n_folds), trim_size)
    if kind == "chunked":
        chunk_length = _positive_int(chunk_length, "chunk_length")
        chunks = np.array_split(everything, np.arange(chunk_length, n_samples, chunk_length))
        if len(chunks) < n_folds:
            raise InputError(
                f"Only {len(chunks)} chunks of chunk_length={chunk_length} TRs fit in {n_samples} TRs, fewer than "
                f"n_folds={n_folds}; lower chunk_length (at most {n_samples // n_folds}) or n_folds."
            )
        order = np.random.default_rng(seed).permutation(len(chunks)) if shuffle else np.arange(len(chunks))
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


def _trim_size(trim_size: Any) -> int:
    if isinstance(trim_size, bool) or not isinstance(trim_size, (int, np.integer)) or trim_size < 0:
        raise InputError(f"trim_size must be a non-negative whole number of TRs; got {trim_size!r}.")
    return int(trim_size)


def _trim_test_chunks(folds: list[Fold], chunk_length: int, trim_size: Any) -> list[Fold]:
    """Each test chunk keeps ``[start + trim, end - trim)`` when non-empty (the reference's chunked_trimmed)."""
    trim = _trim_size(trim_size)
    out = []
    for train, test in folds:  # one iteration per fold
        chunk_of = test // int(chunk_length)
        first = np.searchsorted(chunk_of, chunk_of, side="left")
        last = np.searchsorted(chunk_of, chunk_of, side="right") - 1
        starts, ends = test[first], test[last] + 1
        keep = (test >= starts + trim) & (test < ends - trim)
        whole = (ends - starts) <= 2 * trim  # nothing left after trimming: the chunk stays whole
        out.append((train, test[keep | whole]))
    return out


def _trim_test_blocks(folds: list[Fold], trim_size: Any) -> list[Fold]:
    """Test blocks become ``test[trim:-trim]`` when longer than ``2 * trim`` (the reference's kfold_trimmed)."""
    trim = _trim_size(trim_size)
    out = []
    for train, test in folds:
        if trim and len(test) > 2 * trim:
            test = test[trim:-trim]
        elif trim:
            logger.warning("A test block of %d TRs is too short to trim %d TRs at each end; kept whole.",
                           len(test), trim)
        out.append((train, test))
    return out


def _timeseries_folds(n_samples: int, n_folds: int) -> list[Fold]:
    """Expanding-window folds, as scikit-learn ``TimeSeriesSplit(n_splits=n_folds)``."""
    test_size = n_samples // (n_folds + 1)
    if test_size < 1:
        raise InputError(f"timeseries folds need more than n_folds={n_folds} TRs per block; {n_samples} TRs are "
                         f"too few. Lower n_folds.")
    starts = n_samples - n_folds * test_size + test_size * np.arange(n_folds)
    return [(np.arange(start, dtype=np.int64), np.arange(start, start + test_size, dtype=np.int64))
            for start in starts]


def _group_kfold(n_samples: int, groups: Any, n_folds: int) -> list[Fold]:
    """Groups dealt into ``n_folds`` folds, largest first, each to the lightest fold (GroupKFold)."""
    if groups is None:
        raise InputError("kind='group' needs groups= (one group label per TR, e.g. the story of each TR).")
    labels = np.asarray(groups)
    if labels.ndim != 1 or len(labels) != n_samples:
        raise InputError(f"groups must hold one label per TR: expected {n_samples} labels, got shape {labels.shape}.")
    _, inverse = np.unique(labels, return_inverse=True)
    sizes = np.bincount(inverse)
    if n_folds > len(sizes):
        raise InputError(f"n_folds={n_folds} exceeds the number of groups ({len(sizes)}); lower n_folds.")
    order = np.argsort(sizes, kind="stable")[::-1]
    load = np.zeros(n_folds)
    fold_of_group = np.zeros(len(sizes), dtype=np.int64)
    for group in order:  # one iteration per group (stories: a handful)
        lightest = int(np.argmin(load))
        load[lightest] += sizes[group]
        fold_of_group[group] = lightest
    fold_of_row = fold_of_group[inverse]
    everything = np.arange(n_samples, dtype=np.int64)
    return [(everything[fold_of_row != f], everything[fold_of_row == f]) for f in range(n_folds)]


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
