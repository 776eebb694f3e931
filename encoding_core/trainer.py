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

from encoding_core.config import (AlignmentConfig, ExperimentConfig, FeatureConfig, TrimmingConfig)
from encoding_core.common.errors import ConfigError, EncodingCoreError, InputError
from encoding_core.models.nested_cv import NestedCVModel

logger = logging.getLogger(__name__)

LOGGER_BACKENDS = ("local", "tensorboard", "wandb")


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
        from encoding_core.experiment.pipeline import extractor_as_source, run_experiment
        from encoding_core.experiment.runstore import RunStore

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
