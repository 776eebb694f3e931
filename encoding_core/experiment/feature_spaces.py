"""Feature-space experiments: several named feature spaces fitted together (banded ridge) or apart.

:func:`fit_feature_spaces` takes the prepared features of every space (train stories and the
test story, as ``pipeline.prepare_features`` makes them) and the prepared targets, and returns
what the run store writes, one :class:`~encoding_core.models.fitting.LayerResult` per stored "layer":

- ``banded.mode = "joint"``: one result (layer 0). Its held-out statistics (correlations,
  p-values, significance) are those of the joint banded-ridge prediction; its per-voxel maps add
  ``joint_r2`` and, for 2 or 3 spaces, the variance partition on the test story:
  ``unique_<name>`` per space, ``shared`` (shared by all spaces), for 3 spaces also
  ``shared_<a>_<b>`` (shared by exactly that pair); ``split_r2_<name>`` (each space's share of the
  joint r², product measure), ``gamma_<name>`` (the chosen scaling per voxel) and
  ``stacked_r2`` when ``banded.stacked``. The metrics hold ``n_negative`` (voxels with a negative
  estimate per map: kept, not clipped), ``feature_spaces`` and the search settings.
- ``banded.mode = "separate"``: one ridge per space, stored as layer ``i`` for the i-th space
  (metrics ``feature_space`` = its name).

Units: r² is a fraction of the test story's variance (z-scored per story).
"""
from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import numpy as np

from encoding_core.common.errors import ConfigError
from encoding_core.common.progress import CancelFlag
from encoding_core.config import ExperimentConfig
from encoding_core.models.fitting import (
    LayerResult,
    _ceiling_arrays,
    _inner_folds,
    _score_summary,
    evaluate_predictions,
    fit_train_test,
)


def partition_map_names(names: Sequence[str]) -> dict:
    """{region key (tuple of names): map name}: ``unique_<name>``, ``shared_<a>_<b>``, ``shared`` (all)."""
    from encoding_core.models.variance_partitioning import _subsets

    names = tuple(names)
    out = {}
    for key in _subsets(names):
        if len(key) == 1:
            out[key] = f"unique_{key[0]}"
        elif len(key) == len(names):
            out[key] = "shared"
        else:
            out[key] = "shared_" + "_".join(key)
    return out


def fit_feature_spaces(prepared: Sequence[Any], targets: Any, config: ExperimentConfig,
                       cancel: Optional[CancelFlag] = None) -> dict[int, LayerResult]:
    """Fit the prepared spaces (one ``PreparedFeatures`` per ``config.feature_spaces``, same TRs)
    against ``targets`` (``PreparedTargets``, train/test mode) as ``config.banded`` says."""
    if targets.test is None:
        raise ConfigError("feature_spaces need ridge.mode = \"train_test\" (a held-out test story).")
    names = [space.name for space in config.feature_spaces]
    if config.banded.mode == "separate":
        return {index: _separate(features, targets, config, name, cancel)
                for index, (features, name) in enumerate(zip(prepared, names))}
    return {0: _joint(prepared, targets, config, names, cancel)}


def _separate(features: Any, targets: Any, config: ExperimentConfig, name: str,
              cancel: Optional[CancelFlag]) -> LayerResult:
    result = fit_train_test(features.X_train, targets.Y_train, features.test, targets.test, config.ridge,
                            config.stats, groups=targets.groups, cancel=cancel, tr_s=float(targets.tr))
    result.metrics.update({"feature_space": name, "banded_mode": "separate"})
    return result


def _joint(prepared: Sequence[Any], targets: Any, config: ExperimentConfig, names: list,
           cancel: Optional[CancelFlag]) -> LayerResult:
    from encoding_core.models.banded_ridge import banded_ridge_nested_cv
    from encoding_core.models.variance_partitioning import variance_partitioning

    started = time.perf_counter()
    ridge, banded = config.ridge, config.banded
    train = [features.X_train for features in prepared]
    test = [features.test for features in prepared]
    Y_train, Y_test = targets.Y_train, targets.test
    folds = _inner_folds(Y_train.shape[0], ridge, targets.groups)
    options = dict(normalpha=ridge.normalpha, search=banded.search, grid_steps=banded.grid_steps or None,
                   n_random=banded.n_random, seed=ridge.seed, device=ridge.device,
                   memory_budget_gb=banded.memory_budget_gb, cancel=cancel)
    arrays: dict[str, np.ndarray] = {}
    n_negative: dict[str, int] = {}
    if len(names) <= 3:
        partition = variance_partitioning(train, Y_train, test, Y_test, folds, list(ridge.alphas), names=names,
                                          stacked=banded.stacked, keep_joint=True, **options)
        joint = partition.fits[tuple(names)]
        for key, map_name in partition_map_names(names).items():
            arrays[map_name] = partition.regions[key].astype(np.float32)
            n_negative[map_name] = int(partition.n_negative[key])
        split = partition.split_r2
        joint_r2 = partition.joint_r2
        if partition.stacked is not None:
            arrays["stacked_r2"] = np.asarray(partition.stacked.r2, dtype=np.float32)
    else:  # 4 spaces: the joint model only (a partition would need 15 models)
        from encoding_core.models.banded_ridge import split_r2_score
        from encoding_core.stats.scores import r2_score

        joint = banded_ridge_nested_cv(train, Y_train, folds, list(ridge.alphas), **options)
        parts = joint.predict_split(test)
        split = split_r2_score(Y_test, parts)
        joint_r2 = r2_score(np.asarray(Y_test, dtype=np.float64), parts.sum(axis=0, dtype=np.float64))
    fit_s = time.perf_counter() - started
    predicted = joint.predict(test)
    significance_arrays, significance_metrics = evaluate_predictions(Y_test, predicted, config.stats,
                                                                     tr_s=float(targets.tr))
    arrays.update(significance_arrays)
    arrays["best_alphas"] = np.asarray(joint.best_alphas, dtype=np.float64)
    arrays["joint_r2"] = np.asarray(joint_r2, dtype=np.float32)
    n_negative["joint_r2"] = int((arrays["joint_r2"] < 0).sum())
    for index, name in enumerate(names):
        arrays[f"split_r2_{name}"] = np.asarray(split[index], dtype=np.float32)
        arrays[f"gamma_{name}"] = np.asarray(joint.best_gammas[index], dtype=np.float32)
    arrays.update(_ceiling_arrays(arrays["correlations"], None))  # no repeats here: both NaN
    metrics = _score_summary(arrays, ridge.alphas)
    metrics.update(significance_metrics)
    metrics.update({
        "mode": "train_test", "banded_mode": "joint", "feature_spaces": list(names),
        "feature_space_dims": [int(x.shape[1]) for x in train], "n_train_trs": int(Y_train.shape[0]),
        "n_test_trs": int(Y_test.shape[0]), "n_features": int(sum(x.shape[1] for x in train)),
        "n_negative": n_negative, "n_candidates": int(len(joint.candidates)), "search": banded.search,
        "partitioned": len(names) <= 3, "stacked": bool(banded.stacked and len(names) <= 3),
        "noise_ceiling_target": None,
    })
    return LayerResult(metrics, arrays, np.asarray(joint.weights, dtype=np.float32) if ridge.save_weights else None,
                       {"fit": fit_s, "stats": time.perf_counter() - started - fit_s})
