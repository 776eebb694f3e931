"""The experiment pipeline: assembly -> audio -> features -> alignment -> ridge -> stats -> run.

:func:`run_experiment` runs a whole :class:`~encoding_core.config.ExperimentConfig` and
returns the id of the run it wrote. Its pieces are public so that the app, the CLI and the
reference-compatible trainer reuse them instead of copying them:

- :func:`prepare_targets` – brain data trimmed, z-scored per story, stacked (once per run);
- :func:`prepare_features` – one layer's features downsampled to TR times, FIR-delayed,
  trimmed, z-scored per story, NaN -> 0;
- :func:`check_lengths` – trimmed features and targets line up (before any fit);
- :func:`fit_layer` – nested-CV ridge + test statistics for one layer
  (:func:`fit_train_test` or :func:`fit_cross_validated`).

A *feature source* is any callable ``source(story, progress=None, cancel=None)`` returning
an object with ``times`` ``(n_windows,)`` seconds, ``layer(i) -> (n_windows, dim)`` and
``n_layers`` (the features package's ``StoryFeatures``; with ``tr_aligned`` True its rows
are one per TR time and are not downsampled). The default one runs the modality of
``config.features`` (a speech model, word rate, word embeddings, a language model or custom
arrays) with its on-disk cache; tests inject synthetic ones.

Units: times in seconds from sound onset, trimming bounds and delays in TRs.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Protocol

import numpy as np

from encoding_core.assembly.data_model import Assembly, Story
from encoding_core.config import AUDIO_MODALITIES, SINGLE_LAYER_MODALITIES, ExperimentConfig
from encoding_core.common.errors import AudioError, ConfigError, JobCancelled
from encoding_core.common.progress import CancelFlag, ProgressCallback, check_cancel, null_progress, report_skipped
from encoding_core.common.storage import check_writable
from encoding_core.models.fitting import LayerResult, fit_cross_validated, fit_train_test

logger = logging.getLogger(__name__)


class StoryFeaturesLike(Protocol):
    times: np.ndarray
    n_layers: int

    def layer(self, index: int) -> np.ndarray: ...


FeatureSource = Callable[..., StoryFeaturesLike]


# --------------------------------------------------------------------------------------
# Assembly, stories and audio
# --------------------------------------------------------------------------------------
def load_experiment_assembly(config: ExperimentConfig) -> Assembly:
    """Load ``config.assembly.path`` (demo, .h5, .pkl or LeBel folder) with its subject/stories."""
    from encoding_core.assembly.assembly_loader import load_assembly

    source = config.assembly
    options: dict[str, Any] = {}
    if source.path.strip().lower() == "demo":
        options["cache_dir"] = config.cache_dir
    else:
        if source.subject:
            options["subject"] = source.subject
        if source.stories:
            options["stories"] = list(source.stories)
        if Path(source.path).expanduser().is_dir():  # LeBel folders: the TR clock and missing files
            options["tr_time_convention"] = source.tr_time_convention
            options["skip_missing"] = bool(source.skip_missing)
    return load_assembly(source.path, **options)


def select_stories(assembly: Assembly, config: ExperimentConfig) -> Assembly:
    """The assembly restricted to ``config.assembly.stories`` (all when empty), test story set."""
    names = list(config.assembly.stories) or assembly.stories
    missing = [n for n in names if n not in assembly.stories]
    if missing:
        raise ConfigError(f"assembly.stories names {missing}, which are not in the assembly "
                          f"(it has {assembly.stories}); fix the list or leave it empty for all stories.")
    selected = assembly.subset(names) if names != assembly.stories else assembly
    test = config.assembly.test_story or selected.test_story or selected.stories[-1]
    if test not in selected.stories:
        raise ConfigError(f"assembly.test_story {test!r} is not among the selected stories {selected.stories}.")
    selected.test_story = test
    if config.ridge.mode == "train_test" and len(selected.stories) < 2:
        raise ConfigError("ridge.mode = \"train_test\" needs at least two stories (one to test on); "
                          "add stories or use mode = \"cv\".")
    return selected


def attach_audio(assembly: Assembly, config: ExperimentConfig,
                 progress: ProgressCallback = null_progress) -> Assembly:
    """Set every story's audio path (from ``assembly.audio_dir`` when given) and check they exist.

    Raises AudioError listing every story without usable audio, before any model runs.
    """
    source = config.assembly
    stories = assembly.stories_list
    if source.audio_dir:
        from encoding_core.assembly.audio import apply_audio_map, map_audio

        matches = map_audio(assembly, source.audio_dir, pattern=source.audio_pattern,
                            overrides=dict(source.audio_overrides) or None)
        bad = [m for m in matches if m.status in ("missing", "unreadable")]
        if bad:
            lines = "; ".join(f"{m.story}: {m.status}{' (' + m.message + ')' if m.message else ''}" for m in bad)
            raise AudioError(f"No usable audio for {len(bad)} of {len(matches)} stories in {source.audio_dir} "
                             f"(pattern {source.audio_pattern!r}): {lines}. Fix assembly.audio_dir, "
                             f"assembly.audio_pattern or assembly.audio_overrides.")
        for m in matches:
            if m.status == "mismatch":
                logger.warning("Audio for story %s: %s", m.story, m.message)
        apply_audio_map(assembly, matches)
    elif source.audio_overrides:  # per-story files without a folder (e.g. the stories' own paths kept)
        unknown = sorted(set(source.audio_overrides) - set(assembly.stories))
        if unknown:
            raise ConfigError(f"assembly.audio_overrides names stories not in the assembly: {unknown}; "
                              f"stories: {assembly.stories}.")
        for name, path in source.audio_overrides.items():
            assembly.story(name).audio_path = os.path.expanduser(str(path))
    missing = [s.name for s in stories if not s.audio_path or not os.path.isfile(s.audio_path)]
    if missing:
        raise AudioError(f"Stories without an audio file: {missing}. Set assembly.audio_dir (and "
                         f"audio_pattern, e.g. \"{{story}}.wav\") so every story maps to a file.")
    progress("audio", len(stories), len(stories), "audio mapped")
    return assembly


def extractor_feature_source(config: ExperimentConfig) -> FeatureSource:
    """The default feature source: the modality of ``config.features`` with the disk cache."""
    from encoding_core.features.factory import FeatureExtractorFactory

    modality = config.features.modality
    features = with_default_textgrids(config.features, config.assembly.path)
    extractor = FeatureExtractorFactory.create_extractor(modality, config=features, cache_dir=config.cache_dir)
    return extractor_as_source(extractor) if modality == "speech" else story_source(extractor)


def with_default_textgrids(features: Any, assembly_path: str) -> Any:
    """``features`` with ``textgrid_dir`` filled in for the phoneme rate of a LeBel folder
    (``<root>/derivative(s)/TextGrids``) when it is empty; otherwise unchanged."""
    import dataclasses

    if features.modality != "phonemerate" or features.textgrid_dir or not Path(assembly_path).is_dir():
        return features
    from encoding_core.assembly.lebel import TEXTGRID_FOLDER, lebel_derivatives_dir

    return dataclasses.replace(features, textgrid_dir=str(lebel_derivatives_dir(assembly_path) / TEXTGRID_FOLDER))


def story_source(extractor: Any, **options: Any) -> FeatureSource:
    """Wrap an extractor with ``extract_story(story, progress, cancel, **options)`` (word rate,
    embeddings, language model, custom arrays) as a feature source."""

    def source(story: Story, progress: Optional[ProgressCallback] = None,
               cancel: Optional[CancelFlag] = None) -> StoryFeaturesLike:
        return extractor.extract_story(story, progress=progress, cancel=cancel, **options)

    return source


def extractor_as_source(extractor: Any) -> FeatureSource:
    """Wrap an object with ``extract_story(audio_path, progress, cancel)`` as a feature source."""

    def source(story: Story, progress: Optional[ProgressCallback] = None,
               cancel: Optional[CancelFlag] = None) -> StoryFeaturesLike:
        if not story.audio_path:
            raise AudioError(f"Story {story.name!r} has no audio path; set assembly.audio_dir.")
        return extractor.extract_story(story.audio_path, progress=progress, cancel=cancel)

    return source


def extract_all_features(assembly: Assembly, feature_source: FeatureSource,
                         progress: ProgressCallback = null_progress,
                         cancel: Optional[CancelFlag] = None) -> dict[str, StoryFeaturesLike]:
    """All layers' features for every story (cached by the source). Progress in percent of stories."""
    names = assembly.stories
    total = 100 * len(names)
    result: dict[str, StoryFeaturesLike] = {}
    for index, story in enumerate(assembly.stories_list):
        check_cancel(cancel)
        computed = []  # a story read from the cache reports no progress of its own

        def story_progress(stage: str, done: int, n: int, message: str = "", _i: int = index,
                           _name: str = story.name, _computed: list = computed) -> None:
            _computed.append(True)
            fraction = min(max(done / n, 0.0), 1.0) if n else 0.0
            progress("features", 100 * _i + int(100 * fraction), total,
                     f"story {_i + 1}/{len(names)} {_name}: {done}/{n} {message}".strip())

        result[story.name] = feature_source(story, progress=story_progress, cancel=cancel)
        if not computed:
            report_skipped(progress, "features", 100)  # cached: its units must not speed up the ETA
        progress("features", 100 * (index + 1), total, f"story {index + 1}/{len(names)} {story.name} done")
    return result


# --------------------------------------------------------------------------------------
# Targets and features
# --------------------------------------------------------------------------------------
def _zscore_clean(array: np.ndarray) -> np.ndarray:
    """Z-score columns of one story's slice (preprocessing.zscore), NaN/Inf -> 0, float32."""
    from encoding_core.downsample.preprocessing import zscore

    return np.nan_to_num(np.asarray(zscore(array), dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def _bounds(config: ExperimentConfig, part: str, kind: str) -> tuple[Optional[int], Optional[int]]:
    t = config.alignment.trimming
    return getattr(t, f"{part}_{kind}_start"), getattr(t, f"{part}_{kind}_end")


def _part(config: ExperimentConfig, story_name: str, test_story: Optional[str]) -> str:
    """Which trimming keys a story uses: ``test`` for the held-out story in train/test mode."""
    return "test" if (config.ridge.mode == "train_test" and story_name == test_story) else "train"


@dataclass
class PreparedTargets:
    """Brain data ready to fit: per story trimmed, z-scored (NaN -> 0), float32.

    train: story -> (n_trs_i, n_voxels); test: (n_test, n_voxels) or None in ``cv`` mode;
    test_repeats: (n_repeats, n_test, n_voxels) trimmed raw repeats, or None (in ``cv`` mode: the
    repeats of ``repeats_story``, the first story that has them);
    test_is_repeat_mean: the test brain data is the mean of those repeats: the median voxel
    correlation between the two (``test_repeat_mean_r``, nan without repeats) exceeds
    ``stats.noise_ceiling.REPEAT_MEAN_MIN_R`` (0.999), whatever either's scaling.
    tr: the assembly's TR in seconds.

    Z-scoring never uses held-out statistics: each story's slice is z-scored with its own mean
    and standard deviation only (:func:`_zscore_clean` on that slice), so no statistic of one
    story reaches another (a training story never sees the test story's, and in ``cv`` mode a
    held-out story's values are the same whichever fold holds it out). The held-out story's own
    z-scoring changes neither its Pearson r (invariant to a per-voxel affine map of Y) nor any
    training value; its R^2 is, as in the reference, relative to its own mean and variance.
    """

    mode: str
    train_stories: list[str]
    test_story: Optional[str]
    train: dict[str, np.ndarray]
    test: Optional[np.ndarray]
    test_repeats: Optional[np.ndarray] = None
    test_is_repeat_mean: bool = False
    test_repeat_mean_r: float = float("nan")
    repeats_story: Optional[str] = None
    tr: float = 2.0

    @property
    def Y_train(self) -> np.ndarray:
        return np.concatenate([self.train[n] for n in self.train_stories], axis=0)

    @functools.cached_property
    def noise_ceiling_r(self) -> Optional[np.ndarray]:
        """(n_voxels,) ceiling correlation of ``test_repeats`` (for their mean when
        ``test_is_repeat_mean``), computed once per run; None without two repeats."""
        if self.test_repeats is None or self.test_repeats.shape[0] < 2:
            return None
        from encoding_core.stats.noise_ceiling import noise_ceiling

        return noise_ceiling(self.test_repeats, averaged_target=self.test_is_repeat_mean)[1]

    @property
    def groups(self) -> np.ndarray:
        """(n_train_trs,) index of the story each stacked training TR comes from."""
        return np.concatenate([np.full(self.train[n].shape[0], i) for i, n in enumerate(self.train_stories)])

    def lengths(self) -> dict[str, int]:
        out = {n: int(self.train[n].shape[0]) for n in self.train_stories}
        if self.test_story is not None and self.test is not None:
            out[self.test_story] = int(self.test.shape[0])
        return out

    def repeats_rows(self) -> Optional[np.ndarray]:
        """``cv`` mode: (n,) rows of ``Y_train`` that belong to ``repeats_story`` (None without repeats)."""
        if self.repeats_story is None or self.repeats_story not in self.train:
            return None
        start = sum(int(self.train[n].shape[0]) for n in self.train_stories[:self.train_stories.index(self.repeats_story)])
        return np.arange(start, start + int(self.train[self.repeats_story].shape[0]))


def prepare_targets(assembly: Assembly, config: ExperimentConfig) -> PreparedTargets:
    """Trim each story's brain data with the target keys, z-score it per story and stack.

    Train/test mode: the test story (``assembly.effective_test_story()``) uses the ``test_*``
    keys and is kept apart; cv mode: every story uses the ``train_*`` keys (the first story
    with individual repeats gives the noise ceiling). Each story is z-scored on its own (see
    :class:`PreparedTargets`).
    """
    from encoding_core.downsample.preprocessing import trim

    mode = config.ridge.mode
    test_story = assembly.effective_test_story() if mode == "train_test" else None
    from encoding_core.stats.noise_ceiling import REPEAT_MEAN_MIN_R, repeat_mean_correlation

    train, test, repeats, is_mean, mean_r, repeats_story = {}, None, None, False, float("nan"), None
    for story in assembly.stories_list:
        part = _part(config, story.name, test_story)
        start, end = _bounds(config, part, "targets")
        sliced = trim(story.brain_data, start, end)
        if sliced.shape[0] < 2:
            raise ConfigError(f"Story {story.name!r}: trimming its {story.n_trs} TRs of brain data with "
                              f"{part}_targets_start={start}, {part}_targets_end={end} leaves {sliced.shape[0]} "
                              f"TRs; change alignment.trimming.")
        if part == "test":
            test = _zscore_clean(sliced)
        else:
            train[story.name] = _zscore_clean(sliced)
        if story.repeats is not None and repeats is None and (part == "test" or mode == "cv"):
            repeats = np.stack([trim(r, start, end) for r in story.repeats]).astype(np.float32)
            mean_r = repeat_mean_correlation(sliced, repeats)
            is_mean = bool(mean_r > REPEAT_MEAN_MIN_R)
            repeats_story = story.name
    train_stories = [n for n in assembly.stories if n in train]
    return PreparedTargets(mode, train_stories, test_story, train, test, repeats, is_mean, mean_r,
                           repeats_story=repeats_story, tr=float(assembly.tr))


@dataclass
class PreparedFeatures:
    """One layer's design matrices: story -> (n_trs_i, dim * n_delays) float32."""

    layer: int
    train: dict[str, np.ndarray]
    test: Optional[np.ndarray]
    train_stories: list[str]
    test_story: Optional[str]

    @property
    def X_train(self) -> np.ndarray:
        return np.concatenate([self.train[n] for n in self.train_stories], axis=0)

    def lengths(self) -> dict[str, int]:
        out = {n: int(self.train[n].shape[0]) for n in self.train_stories}
        if self.test_story is not None and self.test is not None:
            out[self.test_story] = int(self.test.shape[0])
        return out


def align_story_features(features: np.ndarray, times: np.ndarray, story: Story, config: ExperimentConfig,
                         downsampler: Any = None) -> np.ndarray:
    """Downsample (n_windows, dim) features at ``times`` s to the story's TR times -> (n_trs, dim)."""
    from encoding_core.downsample.downsampling import Downsampler

    if len(features) == 0:  # e.g. a story without words: no sample, zero features
        return np.zeros((len(story.tr_times), np.asarray(features).reshape(0, -1).shape[1]), dtype=np.float32)
    downsampler = downsampler or Downsampler()
    method = config.alignment.downsample_method
    kwargs = dict(config.alignment.downsample_kwargs)
    return np.asarray(downsampler.downsample(features, times, story.tr_times, method=method, **kwargs),
                      dtype=np.float32)


def prepare_features(story_features: Mapping[str, StoryFeaturesLike], assembly: Assembly,
                     config: ExperimentConfig, layer: int, downsampler: Any = None) -> PreparedFeatures:
    """One layer: downsample to TR times, FIR-delay, trim, z-score per story, NaN -> 0."""
    from encoding_core.downsample.preprocessing import make_delayed, trim

    mode = config.ridge.mode
    test_story = assembly.effective_test_story() if mode == "train_test" else None
    delays = list(config.alignment.fir_delays)
    train, test = {}, None
    for story in assembly.stories_list:
        feats = story_features[story.name]
        aligned = tr_rows(feats, story, layer) if getattr(feats, "tr_aligned", False) else \
            align_story_features(feats.layer(layer), feats.times, story, config, downsampler)
        delayed = make_delayed(np.nan_to_num(aligned), delays)
        part = _part(config, story.name, test_story)
        start, end = _bounds(config, part, "features")
        cleaned = _zscore_clean(trim(delayed, start, end))
        if part == "test":
            test = cleaned
        else:
            train[story.name] = cleaned
    return PreparedFeatures(layer, train, test, [n for n in assembly.stories if n in train], test_story)


def tr_rows(feats: StoryFeaturesLike, story: Story, layer: int) -> np.ndarray:
    """Features already one row per TR time (``tr_aligned``): (n_tr_times, dim) float32, checked."""
    rows = np.asarray(feats.layer(layer), dtype=np.float32)
    if rows.shape[0] != len(story.tr_times):
        raise ConfigError(f"Story {story.name!r}: the features have {rows.shape[0]} rows, one per TR, but the "
                          f"story has {len(story.tr_times)} TR times.")
    return rows


def check_lengths(features: PreparedFeatures, targets: PreparedTargets, config: ExperimentConfig) -> None:
    """Raise TrimmingMismatchError (story, both lengths, keys to change) if any story differs."""
    from encoding_core.downsample.preprocessing import check_trimmed_lengths

    target_lengths = targets.lengths()
    trimming = config.alignment.trimming.as_dict()
    for story, n_features in features.lengths().items():
        part = "test" if story == targets.test_story else "train"
        keys = [f"{part}_{kind}_{end}" for kind in ("features", "targets") for end in ("start", "end")]
        check_trimmed_lengths(story=story, n_features=n_features, n_targets=target_lengths[story],
                              keys_used={key: trimming[key] for key in keys})


def check_statistics_settings(targets: PreparedTargets, config: ExperimentConfig) -> None:
    """Raise ConfigError (before any fit) when block permutation cannot test at 5 % on these TRs.

    The blocks are at least ``stats.block_length`` TRs (or, chosen from the data, at least
    ``ceil(stats.min_block_s / TR)``) and never straddle a story, so the test TRs hold at most
    a known number of whole blocks; with B blocks the smallest p-value is 1 / B!.
    """
    import math

    stats = config.stats
    if stats.test != "block_permutation":
        return
    if config.ridge.mode == "train_test":
        sizes, where = [targets.test.shape[0]], f"the {targets.test.shape[0]} trimmed TRs of the test story " \
                                                 f"{targets.test_story!r}"
    else:
        sizes = [targets.train[n].shape[0] for n in targets.train_stories]
        where = f"the {len(sizes)} stories ({sum(sizes)} trimmed TRs; blocks stay within stories)"
    shortest = stats.block_length or max(1, math.ceil(stats.min_block_s / targets.tr - 1e-9))
    n_blocks = sum(size // shortest for size in sizes)
    orders = math.factorial(min(n_blocks, 20))
    if min(orders, stats.n_permutations + 1) < 20:
        source = (f"stats.block_length = {stats.block_length} TRs" if stats.block_length else
                  f"blocks of at least stats.min_block_s = {stats.min_block_s:g} s ({shortest} TRs)")
        raise ConfigError(f"Block permutation cannot test at 5 % here: {source} leave at most {n_blocks} blocks in "
                          f"{where}, so no p-value can fall below 0.05. Fix: stats.test = \"effective_dof\" (the "
                          f"default), ridge.mode = \"cv\" (all stories), or shorter blocks.")


# --------------------------------------------------------------------------------------
# Fitting and statistics
# --------------------------------------------------------------------------------------
def fit_layer(features: PreparedFeatures, targets: PreparedTargets, config: ExperimentConfig,
              cancel: Optional[CancelFlag] = None) -> LayerResult:
    """Fit and evaluate one prepared layer in the configured mode (train_test or cv)."""
    if config.ridge.mode == "train_test":
        result = fit_train_test(features.X_train, targets.Y_train, features.test, targets.test, config.ridge,
                                config.stats, groups=targets.groups, test_repeats=targets.test_repeats,
                                test_target_is_repeat_mean=targets.test_is_repeat_mean, cancel=cancel,
                                tr_s=targets.tr, ceiling_r=targets.noise_ceiling_r)
    else:
        result = fit_cross_validated(features.X_train, targets.Y_train, targets.groups, config.ridge, config.stats,
                                     cancel=cancel, tr_s=targets.tr, repeats=targets.test_repeats,
                                     repeats_rows=targets.repeats_rows(),
                                     repeats_target_is_mean=targets.test_is_repeat_mean,
                                     ceiling_r=targets.noise_ceiling_r)
    if targets.test_repeats is not None:  # how the ceiling's target was decided (see PreparedTargets)
        from encoding_core.stats.noise_ceiling import REPEAT_MEAN_MIN_R

        result.metrics["test_repeat_mean_r"] = targets.test_repeat_mean_r
        result.metrics["repeat_mean_min_r"] = REPEAT_MEAN_MIN_R
        result.metrics["noise_ceiling_story"] = targets.repeats_story
    return result


# --------------------------------------------------------------------------------------
# The whole experiment
# --------------------------------------------------------------------------------------
class StageTimer:
    """Accumulates wall-clock seconds per stage: ``with timer("fit"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + float(seconds)


def resolve_layers(layers: Any, n_layers: int) -> list[int]:
    """``"all"`` -> range(n_layers); a list is checked against the model's layer count."""
    if layers == "all":
        return list(range(n_layers))
    bad = [x for x in layers if not 0 <= int(x) < n_layers]
    if bad:
        raise ConfigError(f"layers {bad} do not exist: the model has {n_layers} layers (0 to {n_layers - 1}).")
    return [int(x) for x in layers]


def layer_summary(results: Mapping[int, LayerResult]) -> dict[str, Any]:
    """Per-layer summary and the best layer by a named rule.

    results: layer -> LayerResult whose arrays hold at least ``correlations`` (and
    ``significant_mask`` for the default rule). Rows: median/mean r, n and percent significant,
    median normalised r over the voxels with a usable ceiling (and their count), the test's
    label. ``best_layer`` follows ``best_layer_rule`` (:func:`encoding_core.stats.summaries.best_layer`,
    rule "auto": median r over the voxels significant in at least one layer, or, when none
    is, over the top 5 % by their best r across layers); ``best_layer_by_median_r`` is the
    layer with the highest whole-brain median, kept for comparison.
    """
    from encoding_core.stats.summaries import best_layer

    rows = {}
    for layer, result in results.items():
        m = result.metrics
        rows[str(layer)] = {"median_r": m["median_score"], "mean_r": m["mean_score"],
                            "n_significant": m["n_significant"], "percent_significant": m["percent_significant"],
                            "median_normalized_r": m["median_normalized_score"],
                            "n_normalized_voxels": m.get("n_normalized_voxels", 0),
                            "significance_test": m.get("significance_test")}
    finite = {k: v["median_r"] for k, v in rows.items() if np.isfinite(v["median_r"])}
    by_median = int(max(finite, key=finite.get)) if finite else None
    layers = list(results)
    rule = None
    if layers and all("correlations" in results[l].arrays for l in layers):
        correlations = np.stack([np.asarray(results[l].arrays["correlations"], dtype=np.float64) for l in layers])
        masks = (np.stack([np.asarray(results[l].arrays["significant_mask"], dtype=bool) for l in layers])
                 if all("significant_mask" in results[l].arrays for l in layers) else None)
        rule = best_layer(layers, correlations, masks)
    best = rule["best_layer"] if rule and rule["best_layer"] is not None else by_median
    return {"layers": rows, "best_layer": best, "best_layer_rule": rule, "best_layer_by_median_r": by_median}


def best_layer_per_voxel(correlations: Mapping[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(n_voxels,) best layer and its correlation, from layer -> (n_voxels,) correlations."""
    layers = np.asarray(list(correlations))
    stacked = np.stack([np.nan_to_num(np.asarray(correlations[l], dtype=np.float64), nan=-np.inf)
                        for l in layers])
    index = np.argmax(stacked, axis=0)
    best_r = np.take_along_axis(stacked, index[None], axis=0)[0]
    return layers[index], np.where(np.isfinite(best_r), best_r, np.nan)


def _finish_run(writer: Any, results: dict, timer: StageTimer, started: float) -> None:
    """The run's summary and best layer per voxel written, then the run marked finished with its timings."""
    with timer("save"):
        summary = layer_summary(results)
        best, best_r = best_layer_per_voxel({l: r.arrays["correlations"] for l, r in results.items()})
        writer.write_best_layer(best, best_r)
    writer.finish(summary, dict(timer.seconds, total=time.perf_counter() - started))


def _load_for_run(config: ExperimentConfig, assembly: Optional[Assembly], run_store: Any,
                  timer: StageTimer) -> tuple[Any, Assembly, PreparedTargets]:
    """The run store (checked writable before any work), the assembly with the chosen stories and
    the prepared targets, checked against the statistics settings."""
    from encoding_core.experiment.runstore import RunStore

    store = run_store if run_store is not None else RunStore(config.results_dir)
    check_writable(store.results_dir)  # a read-only or full disk fails now, not after the features
    with timer("load"):
        assembly = select_stories(assembly if assembly is not None else load_experiment_assembly(config), config)
        targets = prepare_targets(assembly, config)
        check_statistics_settings(targets, config)
    return store, assembly, targets


def _run_meta(assembly: Assembly, targets: PreparedTargets, layers: list, **extra: Any) -> dict[str, Any]:
    """What the run store records about a run's data (subject, stories, layers, space ...)."""
    return {"subject": assembly.subject, "simulated": bool(assembly.simulated), "layers": layers,
            "stories": assembly.stories, "test_story": targets.test_story, "n_voxels": assembly.n_voxels,
            "tr": assembly.tr, "space": {"kind": assembly.space.kind, "name": assembly.space.name}, **extra}


@contextlib.contextmanager
def _failure_recorded(writer: Any) -> Iterator[None]:
    """Mark the run cancelled or failed (with the error) when the block raises, then re-raise."""
    try:
        yield
    except JobCancelled as exc:
        writer.fail(exc, cancelled=True)
        raise
    except BaseException as exc:
        writer.fail(exc)
        raise


def _save_layer(writer: Any, timer: StageTimer, layer: int, result: LayerResult, keep: tuple) -> LayerResult:
    """Write one fitted layer (its fit/stats timings added to ``timer``); return the arrays ``keep``
    of it that the run's summary needs."""
    for stage, seconds in result.timings.items():
        timer.add(stage, seconds)
    with timer("save"):
        writer.write_layer(layer, result.metrics, result.arrays, result.weights)
    return LayerResult(result.metrics, {key: result.arrays[key] for key in keep})


def run_experiment(config: ExperimentConfig, assembly: Optional[Assembly] = None,
                   progress: Optional[ProgressCallback] = None, cancel: Optional[CancelFlag] = None,
                   feature_source: Optional[FeatureSource] = None, run_store: Any = None,
                   downsampler: Any = None, layer_fitter: Optional[Callable[[int], LayerResult]] = None,
                   fitter: Optional[Callable[..., LayerResult]] = None) -> str:
    """Run a whole experiment and return the id of the run written to ``config.results_dir``.

    assembly: use this one instead of loading ``config.assembly.path``; feature_source: see
    the module docstring (default: the speech model of ``config.features``); run_store: a
    :class:`~encoding_core.experiment.runstore.RunStore` (default: ``RunStore(config.results_dir)``);
    layer_fitter: ``layer_fitter(layer) -> LayerResult`` fits a layer elsewhere (e.g. on a Dask
    cluster, see :mod:`encoding_core.experiment.distributed`); it is called in layer order and the run is
    written here exactly as for a local fit. fitter: ``fitter(features, targets, config, cancel)
    -> LayerResult`` replaces :func:`fit_layer` (the reference-compatible trainer fits through
    ``NestedCVModel.fit_predict``).
    Raises an EncodingCoreError subclass for bad input (before any fit when possible) and
    JobCancelled when ``cancel`` is set; a started run is then marked failed/cancelled.
    """
    config.validate()
    if config.feature_spaces:
        return run_feature_space_experiment(config, assembly, progress, cancel, run_store, downsampler)
    progress = progress or null_progress
    timer = StageTimer()
    started = time.perf_counter()
    store, assembly, targets = _load_for_run(config, assembly, run_store, timer)
    with timer("audio"):
        if config.features.modality in AUDIO_MODALITIES and (
                feature_source is None or config.assembly.audio_dir or config.assembly.audio_overrides):
            attach_audio(assembly, config, progress)  # the other modalities read words or arrays, not audio
    check_cancel(cancel)
    with timer("features"):
        source = feature_source or extractor_feature_source(config)
        story_features = extract_all_features(assembly, source, progress, cancel)
    n_layers = min(int(f.n_layers) for f in story_features.values())
    if n_layers == 1 and config.features.modality in SINGLE_LAYER_MODALITIES:
        layers = [0]  # a modality without layers: its one feature set is "layer 0"
    else:
        layers = resolve_layers(config.layers, n_layers)

    prepared: dict[int, PreparedFeatures] = {}
    with timer("alignment"):
        progress("alignment", 0, len(layers), f"layer {layers[0]}")
        prepared[layers[0]] = prepare_features(story_features, assembly, config, layers[0], downsampler)
        check_lengths(prepared[layers[0]], targets, config)  # same lengths for every layer: fail before fitting

    writer = store.create(config, _run_meta(assembly, targets, layers))
    with _failure_recorded(writer):
        writer.write_space(assembly.space)
        results: dict[int, LayerResult] = {}
        for index, layer in enumerate(layers):
            check_cancel(cancel)
            if layer_fitter is not None:
                progress("fit", index, len(layers), f"layer {layer}")
                result = layer_fitter(layer)
            else:
                if layer not in prepared:
                    with timer("alignment"):
                        progress("alignment", index, len(layers), f"layer {layer}")
                        prepared[layer] = prepare_features(story_features, assembly, config, layer, downsampler)
                        check_lengths(prepared[layer], targets, config)
                progress("alignment", index + 1, len(layers), f"layer {layer}")
                progress("fit", index, len(layers), f"layer {layer}")
                result = (fitter or fit_layer)(prepared.pop(layer), targets, config, cancel)
            progress("fit", index + 1, len(layers), f"layer {layer}")
            progress("stats", index + 1, len(layers), f"layer {layer}: median r {result.metrics['median_score']:.3f}")
            results[layer] = _save_layer(writer, timer, layer, result, ("correlations", "significant_mask"))
            progress("save", index + 1, len(layers), f"layer {layer}")
            logger.info("Layer %d: median r = %.4f, %d significant", layer, result.metrics["median_score"],
                        result.metrics["n_significant"])
        check_cancel(cancel)
        _finish_run(writer, results, timer, started)
    return writer.run_id


def run_feature_space_experiment(config: ExperimentConfig, assembly: Optional[Assembly] = None,
                                 progress: Optional[ProgressCallback] = None, cancel: Optional[CancelFlag] = None,
                                 run_store: Any = None, downsampler: Any = None) -> str:
    """Run a ``[[feature_spaces]]`` experiment (banded ridge + variance partitioning, or one ridge
    per space; see :mod:`encoding_core.experiment.feature_spaces`) and return its run id.

    Each space's features come from its own ``features`` table (cached like any modality), are
    aligned, FIR-delayed, trimmed and z-scored exactly as a one-modality run's, then fitted together.
    """
    import dataclasses

    from encoding_core.experiment.feature_spaces import fit_feature_spaces

    config.validate()
    progress = progress or null_progress
    timer = StageTimer()
    started = time.perf_counter()
    store, assembly, targets = _load_for_run(config, assembly, run_store, timer)
    prepared, audio_attached = [], False
    for index, space in enumerate(config.feature_spaces):
        check_cancel(cancel)
        space_config = dataclasses.replace(config, features=space.features, feature_spaces=[])
        if space.features.modality in AUDIO_MODALITIES and not audio_attached:
            with timer("audio"):
                attach_audio(assembly, space_config, progress)  # once, for every space that reads the sound
            audio_attached = True
        with timer("features"):
            progress("features", index, len(config.feature_spaces), f"feature space {space.name}")
            story_features = extract_all_features(assembly, extractor_feature_source(space_config), progress, cancel)
        n_layers = min(int(f.n_layers) for f in story_features.values())
        if not 0 <= space.layer < n_layers:
            raise ConfigError(f"feature space {space.name!r}: layer {space.layer} does not exist; its features have "
                              f"layers 0 to {n_layers - 1}.")
        with timer("alignment"):
            features = prepare_features(story_features, assembly, space_config, space.layer, downsampler)
            check_lengths(features, targets, space_config)
        prepared.append(features)
        del story_features
    layers = list(range(len(prepared))) if config.banded.mode == "separate" else [0]
    writer = store.create(config, _run_meta(assembly, targets, layers,
                                            feature_spaces=[s.name for s in config.feature_spaces],
                                            banded_mode=config.banded.mode))
    with _failure_recorded(writer):
        writer.write_space(assembly.space)
        progress("fit", 0, 1, f"{config.banded.mode} fit of {len(prepared)} feature spaces")
        results = fit_feature_spaces(prepared, targets, config, cancel)
        progress("fit", 1, 1, "done")
        kept = {layer: _save_layer(writer, timer, layer, result, ("correlations",))
                for layer, result in results.items()}
        check_cancel(cancel)
        _finish_run(writer, kept, timer, started)
    return writer.run_id
