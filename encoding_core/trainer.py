"""The reference's trainer: ``AbstractTrainer(...).train(**model_kwargs)``.

Scripts written for the reference library run after renaming their import root to
``encoding_core``. The trainer translates its arguments into an
:class:`~encoding_core.config.ExperimentConfig` and runs the pipeline's pieces (features ->
downsampling -> FIR delays -> trimming -> per-story z-scoring), then fits through
``model.fit_predict(**model_kwargs)`` exactly as the reference, logs to TensorBoard or wandb,
and writes one run to the run store (``results_dir``) per ``train()``.

Where it differs from the reference (and why):

- CV mode (``use_train_test_split=False``): each story is trimmed with the ``train_*`` keys (or
  the reference's CV keys ``features_start/features_end/targets_start/targets_end``, applied
  per story) and z-scored per story; the reference slices the concatenation of all stories
  once and does not z-score. Per-story trimming removes every story's onset transient.
- Unknown ``trimming_config`` keys raise an error instead of being ignored (a typo would
  otherwise silently train on untrimmed data).
- ``lookback`` is the language model's real context here (the reference fixes the context when
  it builds the assembly and uses ``lookback`` only in its cache key).
- Results go to our run store (``results_dir/<run id>/``), not ``run_<ts>_<hash>/metrics.pkl``.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from encoding_core.common.errors import ConfigError, InputError
from encoding_core.config import AlignmentConfig, ExperimentConfig, FeatureConfig, TrimmingConfig
from encoding_core.experiment.loggers import LOGGER_BACKENDS, log_reference_metrics, make_logger
from encoding_core.models.fitting import LayerResult
from encoding_core.models.nested_cv import NestedCVModel

logger = logging.getLogger(__name__)

CV_TRIMMING_KEYS = {"features_start": "train_features_start", "features_end": "train_features_end",
                    "targets_start": "train_targets_start", "targets_end": "train_targets_end"}
"""The reference's CV-mode trimming keys -> ours (applied to every story)."""
LAYERED_MODALITIES = ("speech", "language_model")


def _trimming(trimming_config: Any, cv_mode: bool) -> TrimmingConfig:
    if trimming_config is None:
        return TrimmingConfig(**{f.name: None for f in dataclasses.fields(TrimmingConfig)})
    if isinstance(trimming_config, TrimmingConfig):
        return trimming_config
    if not isinstance(trimming_config, Mapping):
        raise InputError(f"trimming_config must be a dict with the trimming keys, got {type(trimming_config).__name__}.")
    allowed = {f.name for f in dataclasses.fields(TrimmingConfig)}
    unknown = sorted(set(trimming_config) - allowed - set(CV_TRIMMING_KEYS))
    if unknown:
        raise ConfigError(f"Unknown trimming_config key(s) {unknown}; allowed: {sorted(allowed | set(CV_TRIMMING_KEYS))}.")
    values = {k: trimming_config.get(k) for k in allowed}  # absent = open bound, as the reference's 0 / None
    if cv_mode:
        values.update({ours: trimming_config[ref] for ref, ours in CV_TRIMMING_KEYS.items() if ref in trimming_config})
    elif any(k in trimming_config for k in CV_TRIMMING_KEYS):
        logger.info("trimming_config keys %s apply in CV mode only (use_train_test_split=False); ignored.",
                    sorted(set(CV_TRIMMING_KEYS) & set(trimming_config)))
    return TrimmingConfig(**values)


def _downsample(downsample_config: Optional[Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """``{}`` -> rect (as the reference); ``{"method": m, **kw}`` or ``{"method": m, "kwargs": {...}}``."""
    config = dict(downsample_config or {})
    method = config.pop("method", "rect")
    kwargs = dict(config.pop("kwargs", {}))
    kwargs.update(config)
    if method in ("lanczos", "sinc", "rect"):
        kwargs.pop("split_indices", None)  # the reference's trainer passes it to every method; unused here
    return str(method), kwargs


def _modality(extractor: Any) -> str:
    modality = getattr(extractor, "modality", None)
    if modality is None:
        name = type(extractor).__name__.lower()
        modality = "wordrate" if "wordrate" in name else "speech"
    return str(modality)


def _feature_config(extractor: Any, lookback: int) -> FeatureConfig:
    """The FeatureConfig recorded in the run for an extractor."""
    modality = _modality(extractor)
    if modality == "speech":
        for name in ("feature_config", "config"):
            value = getattr(extractor, name, None)
            if isinstance(value, FeatureConfig):
                return value
        raise InputError(f"feature extractor {type(extractor).__name__} has no FeatureConfig; create it with "
                         "FeatureExtractorFactory.create_extractor(modality='speech', ...).")
    config = FeatureConfig(modality=modality, model_name=str(getattr(extractor, "model_name", modality)))
    if modality == "language_model":
        c = extractor.config
        config = dataclasses.replace(config, lookback=int(lookback), last_token=bool(c.last_token),
                                     context_type=c.context_type, device=c.device)
    elif modality == "embeddings":
        c = extractor.config
        config = dataclasses.replace(config, vector_path=str(c.vector_path), lowercase=bool(c.lowercase),
                                     oov_handling=c.oov_handling)
    elif modality == "custom":
        config.custom_path = str(getattr(extractor, "path", None) or "(arrays given in Python)")
    return config


class CombinedFeatures:
    """Several extractors' features of one story, each aligned to the TR times, cut to the
    shortest and joined along columns in extractor order (as the reference). Rows are one per
    TR time (``tr_aligned``); ``layer(i)`` takes layer i of layered modalities (speech, LM)."""

    tr_aligned = True

    def __init__(self, parts: Sequence[Any], layered: Sequence[bool], story: Any, config: ExperimentConfig,
                 downsampler: Any) -> None:
        self.parts, self.layered, self.story, self.config, self.downsampler = parts, layered, story, config, downsampler
        counts = [int(p.n_layers) for p, is_layered in zip(parts, layered) if is_layered]
        self.n_layers = min(counts) if counts else 1
        self.times = np.asarray(story.tr_times, dtype=np.float64)

    def layer(self, index: int) -> np.ndarray:
        from encoding_core.experiment.pipeline import align_story_features, tr_rows

        blocks = []
        for part, is_layered in zip(self.parts, self.layered):
            chosen = index if is_layered else 0
            if getattr(part, "tr_aligned", False):
                blocks.append(tr_rows(part, self.story, chosen))
            else:
                blocks.append(align_story_features(part.layer(chosen), part.times, self.story, self.config,
                                                   self.downsampler))
        n_rows = min(b.shape[0] for b in blocks)
        return np.hstack([b[:n_rows] for b in blocks]).astype(np.float32)


def _layer_result(metrics: Mapping[str, Any]) -> LayerResult:
    """A LayerResult for the run store from another model's reference metrics dict."""
    arrays = {k: np.asarray(v) for k, v in metrics.items()
              if isinstance(v, (list, np.ndarray)) and np.asarray(v).ndim >= 1}
    scalars = {k: v for k, v in metrics.items() if k not in arrays}
    n = int(np.asarray(metrics["correlations"]).size)
    for key in ("r2", "p_values", "corrected_p_values", "noise_ceiling", "normalized_correlations",
                "permutation_p_values", "best_alphas"):
        arrays.setdefault(key, np.full(n, np.nan))
    scalars.setdefault("median_normalized_score", float("nan"))
    return LayerResult(scalars, arrays)


class AbstractTrainer:
    """The reference's trainer (signature, order and defaults of its newest version).

    assembly; feature_extractors: a list (several are joined along columns) or one extractor;
    downsampler (``Downsampler()``); model (``NestedCVModel``, or any object with the
    reference's ``fit_predict``); fir_delays (TRs); trimming_config (the eight LeBel keys, or in
    CV mode the reference's four CV keys); use_train_test_split: hold out the last story
    (``assembly.test_story`` when set) instead of full nested CV; layer_idx: the layer of
    speech and language-model features; lookback: the language model's context in tokens;
    dataset_type: recorded; logger_backend: ``"wandb"`` (offline unless ``wandb_mode`` /
    ``WANDB_MODE`` say otherwise), ``"tensorboard"`` or ``"local"`` (run store only);
    wandb_project_name, wandb_mode; results_dir: run store and logger folders; run_name
    (default ``abstract-trainer-<timestamp>``); downsample_config (``{}`` = rect, or
    ``{"method": ..., **options}``); story_selection: None (all), a list of story names, or
    an int k (the k-th story, 1-based).
    """

    def __init__(self, assembly: Any, feature_extractors: Union[Sequence[Any], Any], downsampler: Any, model: Any,
                 fir_delays: Sequence[int], trimming_config: Any, use_train_test_split: bool = False,
                 layer_idx: int = 9, lookback: int = 256, dataset_type: str = "unknown",
                 logger_backend: str = "wandb", wandb_project_name: str = "abstract-trainer",
                 wandb_mode: Optional[str] = None, results_dir: str = "results", run_name: Optional[str] = None,
                 downsample_config: Optional[Mapping[str, Any]] = None,
                 story_selection: Union[None, int, Sequence[str]] = None) -> None:
        extractors = list(feature_extractors) if isinstance(feature_extractors, (list, tuple)) else [feature_extractors]
        if not extractors:
            raise InputError("feature_extractors is empty; give at least one extractor.")
        if logger_backend not in LOGGER_BACKENDS:
            raise InputError(f"Unsupported logger_backend {logger_backend!r}; use one of {LOGGER_BACKENDS}.")
        if not callable(getattr(model, "fit_predict", None)):
            raise InputError(f"model must have fit_predict (e.g. NestedCVModel), got {type(model).__name__}.")
        self.assembly = assembly
        self.feature_extractors = extractors
        self.extractor = extractors[0]
        self.downsampler = downsampler
        self.model = model
        self.fir_delays = [int(d) for d in fir_delays]
        self.use_train_test_split = bool(use_train_test_split)
        self.trimming_config = trimming_config
        self.trimming = _trimming(trimming_config, cv_mode=not self.use_train_test_split)
        self.layer_idx = int(layer_idx)
        self.lookback = int(lookback)
        self.dataset_type = dataset_type
        self.logger_backend = logger_backend
        self.wandb_project_name = wandb_project_name
        self.wandb_mode = wandb_mode
        self.results_dir = str(results_dir)
        self.run_name = run_name or f"abstract-trainer-{_dt.datetime.now():%Y%m%d-%H%M%S}"
        self.downsample_config = dict(downsample_config or {})
        self.stories_to_process = self._stories(story_selection)
        self.run_id: Optional[str] = None
        logger.info("AbstractTrainer: %d stories, extractors %s, layer %d, delays %s, %s mode, logger %s.",
                    len(self.stories_to_process), [_modality(e) for e in extractors], self.layer_idx,
                    self.fir_delays, "train/test" if self.use_train_test_split else "CV", logger_backend)

    def _stories(self, selection: Union[None, int, Sequence[str]]) -> list[str]:
        names = list(self.assembly.stories)
        if selection is None:
            return names
        if isinstance(selection, (int, np.integer)) and not isinstance(selection, bool):
            if not 1 <= int(selection) <= len(names):
                raise InputError(f"story_selection={selection} is out of range: the assembly has stories 1..{len(names)}.")
            return [names[int(selection) - 1]]
        chosen = [str(s) for s in selection]
        missing = [s for s in chosen if s not in names]
        if missing:
            raise InputError(f"story_selection names {missing}, which are not in the assembly ({names}).")
        return chosen

    # -- configuration -----------------------------------------------------------------------
    def _layer(self) -> int:
        layered = [e for e in self.feature_extractors if _modality(e) in LAYERED_MODALITIES]
        if not layered:
            return 0
        n_layers = min(int(e.n_layers) for e in layered)
        if not -n_layers <= self.layer_idx < n_layers:
            raise InputError(f"layer_idx={self.layer_idx} does not exist: {layered[0].model_name} has layers "
                             f"0..{n_layers - 1}. Give layer_idx= to AbstractTrainer.")
        return self.layer_idx % n_layers

    def build_config(self, model_kwargs: Optional[Mapping[str, Any]] = None) -> ExperimentConfig:
        """The ExperimentConfig equivalent to this trainer's arguments (and train's model kwargs)."""
        features = _feature_config(self.extractor, self.lookback)
        method, kwargs = _downsample(self.downsample_config)
        if isinstance(self.model, NestedCVModel):
            ridge, stats = self.model.resolve_settings(**dict(model_kwargs or {}))
            ridge = dataclasses.replace(ridge, save_weights=self.model.ridge_config.save_weights)
        else:
            ridge, stats = ExperimentConfig().ridge, dataclasses.replace(ExperimentConfig().stats, n_permutations=0)
        ridge = dataclasses.replace(ridge, mode="train_test" if self.use_train_test_split else "cv")
        cache_dir = getattr(self.extractor, "cache_dir", None)
        config = ExperimentConfig(
            name=self.run_name, features=features, layers=[self._layer()],
            alignment=AlignmentConfig(downsample_method=method, downsample_kwargs=kwargs,
                                      fir_delays=self.fir_delays, trimming=self.trimming),
            ridge=ridge, stats=stats, results_dir=self.results_dir, cache_dir=str(cache_dir or "cache"))
        config.assembly.stories = list(self.stories_to_process)
        if self.use_train_test_split:
            config.assembly.test_story = self._test_story()
        return config.validate()

    def _test_story(self) -> str:
        test = getattr(self.assembly, "test_story", None)
        return test if test in self.stories_to_process else self.stories_to_process[-1]

    def _feature_source(self, config: ExperimentConfig) -> Any:
        from encoding_core.experiment.pipeline import extractor_as_source, story_source

        def source_of(extractor: Any) -> Any:
            modality = _modality(extractor)
            if modality == "speech":
                return extractor_as_source(extractor)
            if modality == "language_model":
                return story_source(extractor, lookback=self.lookback)
            if modality == "wordrate":
                return story_source(extractor, tr=float(self.assembly.tr))
            return story_source(extractor)

        sources = [source_of(e) for e in self.feature_extractors]
        if len(sources) == 1:
            return sources[0]
        layered = [_modality(e) in LAYERED_MODALITIES for e in self.feature_extractors]

        def combined(story: Any, progress: Any = None, cancel: Any = None) -> CombinedFeatures:
            parts = [source(story, progress=progress, cancel=cancel) for source in sources]
            return CombinedFeatures(parts, layered, story, config, self.downsampler)

        return combined

    # -- training ----------------------------------------------------------------------------
    def train(self, **model_kwargs: Any) -> dict[str, Any]:
        """Features -> alignment -> ``model.fit_predict(**model_kwargs)``; log; write one run.

        Returns fit_predict's metrics dict (the reference's keys, plus ours and ``run_id``,
        ``run_dir``). In train/test mode the fit is ``fit_predict(features=X_train,
        targets=Y_train, X_test=..., y_test=..., **model_kwargs)``; in CV mode
        ``fit_predict(features=X, targets=Y, **model_kwargs)``. ``groups`` (the story of every
        training row) is passed unless given, so ``folding_type="group"`` works.
        """
        from encoding_core.experiment.pipeline import run_experiment
        from encoding_core.experiment.runstore import RunStore

        config = self.build_config(model_kwargs)
        config.ridge.mode = "train_test" if self.use_train_test_split else "cv"
        captured: dict[str, Any] = {}

        def fitter(features: Any, targets: Any, cfg: ExperimentConfig, cancel: Any = None) -> LayerResult:
            kwargs = dict(model_kwargs)
            kwargs.setdefault("groups", targets.groups)
            if isinstance(self.model, NestedCVModel) and self.use_train_test_split:
                kwargs.setdefault("test_repeats", targets.test_repeats)
            if self.use_train_test_split:
                output = self.model.fit_predict(features=features.X_train, targets=targets.Y_train,
                                                X_test=features.test, y_test=targets.test, **kwargs)
            else:
                output = self.model.fit_predict(features=features.X_train, targets=targets.Y_train, **kwargs)
            metrics, weights, best_alphas = output
            captured.update(metrics=metrics, weights=weights, best_alphas=best_alphas)
            result = self.model.last_result if isinstance(self.model, NestedCVModel) else _layer_result(metrics)
            if not cfg.ridge.save_weights:
                result = dataclasses.replace(result, weights=None)
            return result

        experiment_logger = make_logger(self.logger_backend, self.results_dir, self.run_name,
                                        self.wandb_project_name, self.wandb_mode,
                                        config={"dataset_type": self.dataset_type, "layer_idx": self.layer_idx,
                                                "lookback": self.lookback, "fir_delays": self.fir_delays,
                                                **{k: v for k, v in model_kwargs.items()
                                                   if isinstance(v, (int, float, str, bool))}})
        try:
            store = RunStore(self.results_dir)
            self.run_id = run_experiment(config, assembly=self.assembly, feature_source=self._feature_source(config),
                                         run_store=store, downsampler=self.downsampler, fitter=fitter)
            metrics = dict(captured["metrics"])
            metrics["run_id"] = self.run_id
            metrics["run_dir"] = str(store.load(self.run_id).path)
            if experiment_logger is not None:
                log_reference_metrics(experiment_logger, metrics, step=config.layers[0])
                metrics["logger_location"] = experiment_logger.location
        finally:
            if experiment_logger is not None:
                experiment_logger.close()
        self.weights, self.best_alphas = captured.get("weights"), captured.get("best_alphas")
        logger.info("Training complete. Median correlation: %.4f", metrics["median_score"])
        return metrics
