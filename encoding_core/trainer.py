"""Reference-compatible model and trainer: ``NestedCVModel`` and ``AbstractTrainer``.

The seed tutorial's code runs unchanged after renaming its import root to
``encoding_core`` (and choosing ``logger_backend="local"`` when wandb is not installed).
Both classes are thin: they translate the reference's arguments into an
:class:`~encoding_core.config.ExperimentConfig` and call the pipeline's pieces, so there is
one implementation of the science.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from encoding_core.config import (REFERENCE_ALPHAS, AlignmentConfig, ExperimentConfig, FeatureConfig, RidgeConfig, StatsConfig,
                     TrimmingConfig)
from encoding_core.common.errors import ConfigError, EncodingCoreError, InputError

logger = logging.getLogger(__name__)

FOLDING_TYPES = {
    "chunked": "chunked", "chunk": "chunked", "kfold_chunked": "chunked",
    "contiguous": "contiguous", "kfold": "contiguous",
    "trimmed": "trimmed", "kfold_trimmed": "trimmed",
    "story": "story", "leave_one_story_out": "story", "loso": "story",
}
"""Fold-type names accepted by ``fit_predict(folding_type=...)`` -> our ``ridge.fold_type``."""

LOGGER_BACKENDS = ("local", "tensorboard", "wandb")


def _as_matrix(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] < 2:
        raise InputError(f"{name} must be a 2-D array (TRs x columns) with at least 2 rows, got shape {array.shape}.")
    return array


class NestedCVModel:
    """Ridge regression with nested cross-validation (reference alpha convention).

    alphas: grid (default ``logspace(-1, 8, 10)``); normalpha: alpha scaled by the largest
    singular value of X; single_alpha: one alpha for all voxels; n_splits: inner folds;
    chunk_length: TRs per chunk for ``chunked`` folds. Statistics options: n_permutations
    (block permutation test, 0 = parametric p only), block_length (TRs), fdr_q.
    """

    def __init__(self, model_name: str = "ridge_regression", alphas: Optional[Sequence[float]] = None,
                 n_splits: int = 5, chunk_length: int = 20, normalpha: bool = True, single_alpha: bool = False,
                 fold_type: str = "chunked", trim_size: int = 5, n_outer_folds: int = 5, seed: int = 0,
                 device: str = "cpu", n_permutations: int = 1000, block_length: int = 10, fdr_q: float = 0.05,
                 save_weights: bool = False) -> None:
        if model_name != "ridge_regression":
            raise InputError(f"NestedCVModel(model_name={model_name!r}): only 'ridge_regression' is available.")
        self.model_name = model_name
        self.ridge_config = RidgeConfig(
            alphas=[float(a) for a in (REFERENCE_ALPHAS if alphas is None else alphas)], normalpha=bool(normalpha),
            single_alpha=bool(single_alpha), n_inner_folds=int(n_splits), n_outer_folds=int(n_outer_folds),
            fold_type=self._fold_type(fold_type), chunk_length=int(chunk_length), trim_size=int(trim_size),
            seed=int(seed), device=device, save_weights=bool(save_weights))
        self.stats_config = StatsConfig(n_permutations=int(n_permutations), block_length=int(block_length),
                                        fdr_q=float(fdr_q), seed=int(seed))
        ExperimentConfig(ridge=self.ridge_config, stats=self.stats_config).validate()

    @staticmethod
    def _fold_type(name: str) -> str:
        key = str(name).lower()
        if key not in FOLDING_TYPES:
            raise InputError(f"folding_type {name!r} is not known; use one of {sorted(set(FOLDING_TYPES))}.")
        return FOLDING_TYPES[key]

    def fit_predict(self, features: Any, targets: Any, X_test: Any = None, y_test: Any = None,
                    folding_type: Optional[str] = None, groups: Any = None, test_repeats: Any = None) -> dict[str, Any]:
        """Fit and evaluate; returns the reference's metrics dict (plus r2, permutation p-values ...).

        features (n, p) and targets (n, v) are used as given (z-score them per story first).
        With X_test/y_test: fit on all of features, test on X_test. Without: outer folds
        (leave-one-story-out when folding_type is ``story`` and ``groups`` gives each row's
        story, else contiguous) with ``majority_significant_mask`` in the result.
        """
        from encoding_core.pipeline import fit_cross_validated, fit_train_test

        X, Y = _as_matrix(features, "features"), _as_matrix(targets, "targets")
        if X.shape[0] != Y.shape[0]:
            raise InputError(f"features has {X.shape[0]} rows but targets has {Y.shape[0]}; they must be the same TRs.")
        ridge = self.ridge_config
        if folding_type is not None:
            ridge = dataclasses.replace(ridge, fold_type=self._fold_type(folding_type))
        group_array = None if groups is None else np.asarray(groups)
        if group_array is not None and group_array.shape != (X.shape[0],):
            raise InputError(f"groups must have one entry per row of features ({X.shape[0]}), got {group_array.shape}.")
        if ridge.fold_type == "story" and group_array is None:
            raise InputError("folding_type 'story' needs groups= (the story index of every row).")
        if X_test is not None:
            if y_test is None:
                raise InputError("X_test was given without y_test; pass both or neither.")
            Xt, Yt = _as_matrix(X_test, "X_test"), _as_matrix(y_test, "y_test")
            if Xt.shape[1] != X.shape[1] or Yt.shape[1] != Y.shape[1] or Xt.shape[0] != Yt.shape[0]:
                raise InputError(f"X_test {Xt.shape} / y_test {Yt.shape} do not match features {X.shape} / "
                                 f"targets {Y.shape}.")
            repeats = None if test_repeats is None else np.asarray(test_repeats, dtype=np.float32)
            result = fit_train_test(X, Y, Xt, Yt, ridge, self.stats_config, groups=group_array, test_repeats=repeats)
        else:
            if group_array is None:
                group_array = np.zeros(X.shape[0], dtype=int)
            result = fit_cross_validated(X, Y, group_array, ridge, self.stats_config)
        metrics: dict[str, Any] = dict(result.metrics)
        metrics.update(result.arrays)
        if result.weights is not None:
            metrics["weights"] = result.weights
        return metrics


def _trimming(trimming_config: Any) -> TrimmingConfig:
    if trimming_config is None:
        return TrimmingConfig()
    if isinstance(trimming_config, TrimmingConfig):
        return trimming_config
    if not isinstance(trimming_config, Mapping):
        raise InputError(f"trimming_config must be a dict with the eight trimming keys, got {type(trimming_config).__name__}.")
    allowed = {f.name for f in dataclasses.fields(TrimmingConfig)}
    unknown = sorted(set(trimming_config) - allowed)
    if unknown:
        raise ConfigError(f"Unknown trimming_config key(s) {unknown}; allowed: {sorted(allowed)}.")
    return TrimmingConfig(**{k: trimming_config.get(k) for k in allowed})


def _downsample(downsample_config: Optional[Mapping[str, Any]]) -> tuple[str, dict[str, float]]:
    """``{}`` -> rect (as the reference); ``{"method": m, **kw}`` or ``{"method": m, "kwargs": {...}}``."""
    config = dict(downsample_config or {})
    method = config.pop("method", "rect")
    kwargs = dict(config.pop("kwargs", {}))
    kwargs.update(config)
    return str(method), kwargs


def _feature_config(extractor: Any) -> FeatureConfig:
    for name in ("feature_config", "config"):
        value = getattr(extractor, name, None)
        if isinstance(value, FeatureConfig):
            return value
    raise InputError(f"feature extractor {type(extractor).__name__} has no FeatureConfig; create it with "
                     f"FeatureExtractorFactory.create_extractor(modality='speech', ...).")


class AbstractTrainer:
    """Runs one layer of the pipeline like the reference's trainer and returns its metrics dict.

    The run is also written to the run store in ``results_dir`` (``logger_backend="local"``);
    ``"tensorboard"`` additionally writes scalars with ``torch.utils.tensorboard``; ``"wandb"``
    logs to Weights & Biases when the package is installed.
    """

    def __init__(self, assembly: Any, feature_extractors: Sequence[Any], downsampler: Any, model: NestedCVModel,
                 fir_delays: Sequence[int] = (1, 2, 3, 4), trimming_config: Any = None,
                 use_train_test_split: bool = True, logger_backend: str = "local",
                 wandb_project_name: Optional[str] = None, dataset_type: str = "lebel",
                 results_dir: str = "results", layer_idx: Optional[int] = None,
                 downsample_config: Optional[Mapping[str, Any]] = None,
                 story_selection: Optional[Sequence[str]] = None, run_name: Optional[str] = None) -> None:
        if len(feature_extractors) != 1:
            raise InputError(f"feature_extractors must hold exactly one extractor, got {len(feature_extractors)}.")
        if logger_backend not in LOGGER_BACKENDS:
            raise InputError(f"logger_backend {logger_backend!r} is not one of {LOGGER_BACKENDS}.")
        if not isinstance(model, NestedCVModel):
            raise InputError(f"model must be a NestedCVModel, got {type(model).__name__}.")
        self.assembly = assembly
        self.extractor = feature_extractors[0]
        self.downsampler = downsampler
        self.model = model
        self.fir_delays = [int(d) for d in fir_delays]
        self.trimming = _trimming(trimming_config)
        self.use_train_test_split = bool(use_train_test_split)
        self.logger_backend = logger_backend
        self.wandb_project_name = wandb_project_name
        self.dataset_type = dataset_type
        self.results_dir = str(results_dir)
        self.layer_idx = layer_idx
        self.downsample_config = downsample_config
        self.story_selection = list(story_selection) if story_selection else []
        self.run_name = run_name
        self.run_id: Optional[str] = None
        self._check_backend()

    def _check_backend(self) -> None:
        if self.logger_backend == "wandb":
            try:
                import wandb  # noqa: F401
            except ImportError:
                raise EncodingCoreError("logger_backend='wandb' needs the wandb package: pip install wandb "
                                        "(or use logger_backend='local').") from None
        if self.logger_backend == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: F401
            except ImportError:
                raise EncodingCoreError("logger_backend='tensorboard' needs the tensorboard package: "
                                        "pip install tensorboard (or use logger_backend='local').") from None

    def build_config(self) -> ExperimentConfig:
        """The ExperimentConfig equivalent to this trainer's arguments."""
        features = _feature_config(self.extractor)
        layer = self.layer_idx if self.layer_idx is not None else getattr(self.extractor, "layer_index", None)
        if layer is None:
            raise InputError("Give layer_idx= (0-based encoder layer) to AbstractTrainer.")
        method, kwargs = _downsample(self.downsample_config)
        ridge = dataclasses.replace(self.model.ridge_config,
                                    mode="train_test" if self.use_train_test_split else "cv")
        config = ExperimentConfig(
            name=self.run_name or f"{self.dataset_type}-{Path(features.model_name).name}-layer{layer}",
            features=features, layers=[int(layer)],
            alignment=AlignmentConfig(downsample_method=method, downsample_kwargs=kwargs,
                                      fir_delays=self.fir_delays, trimming=self.trimming),
            ridge=ridge, stats=self.model.stats_config, results_dir=self.results_dir,
            cache_dir=str(getattr(self.extractor, "cache_dir", None) or "cache"))
        config.assembly.stories = list(self.story_selection)
        return config.validate()

    def train(self) -> dict[str, Any]:
        """Run the pipeline for ``layer_idx``; return the metrics dict (reference keys + ``run_id``)."""
        from encoding_core.pipeline import extractor_as_source, run_experiment
        from encoding_core.runstore import RunStore

        config = self.build_config()
        store = RunStore(self.results_dir)
        self.run_id = run_experiment(config, assembly=self.assembly, feature_source=extractor_as_source(self.extractor),
                                     run_store=store, downsampler=self.downsampler)
        run = store.load(self.run_id)
        layer = config.layers[0]
        metrics: dict[str, Any] = dict(run.metrics(layer))
        metrics.update(run.arrays(layer))
        metrics["run_id"] = self.run_id
        metrics["run_dir"] = str(run.path)
        self._log(config, metrics)
        return metrics

    def _log(self, config: ExperimentConfig, metrics: Mapping[str, Any]) -> None:
        scalars = {k: float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)}
        if self.logger_backend == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir=str(Path(self.results_dir) / "tensorboard" / str(self.run_id)))
            for key, value in scalars.items():
                writer.add_scalar(f"layer_{config.layers[0]}/{key}", value, global_step=config.layers[0])
            writer.close()
        elif self.logger_backend == "wandb":
            import wandb

            wandb_run = wandb.init(project=self.wandb_project_name or "encoding-core", name=config.name,
                                   config=config.to_dict())
            wandb_run.log(scalars)
            wandb_run.finish()
