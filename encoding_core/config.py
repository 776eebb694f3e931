"""The experiment configuration: one dataclass tree, saved and loaded as TOML.

The app's Setup page, the CLI (``python -m encoding_core train CONFIG.toml``), the run
store and the background jobs all use this one type.
"""
from __future__ import annotations

import dataclasses
import numbers
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from encoding_core.common.errors import ConfigError

DEFAULT_MODEL = "bundled/whisper-tiny.en"
REFERENCE_ALPHAS = [float(a) for a in np.logspace(-1, 8, 10)]
DOWNSAMPLE_METHODS = ("rect", "lanczos", "sinc", "average", "sum", "last")
POOL_METHODS = ("last", "mean", "last_padded", "mean_padded")
PRECISIONS = ("fp32", "fp16", "bf16")
FOLD_TYPES = ("chunked", "contiguous", "trimmed", "story",
              "chunked_contiguous", "chunked_trimmed", "kfold_trimmed", "timeseries", "group")
OUTER_FOLD_TYPES = ("story", "contiguous", "trimmed")
"""Outer folds of ``cv`` mode: leave one story out, contiguous blocks, or contiguous blocks with a gap."""
MODES = ("train_test", "cv")
SIGNIFICANCE_TESTS = ("effective_dof", "block_permutation", "parametric_iid")
"""``stats.test`` values (see :mod:`encoding_core.stats.significance`); the first is the default."""
ALTERNATIVES = ("greater", "two-sided")
TEST_NAMES = {"effective_dof": "t-test with autocorrelation-corrected degrees of freedom",
              "block_permutation": "block permutation",
              "parametric_iid": "t-test assuming independent TRs (optimistic for fMRI)"}
"""Short names of the tests for menus; a run's full label comes from
:func:`encoding_core.stats.significance.describe_test` (kept here so the app's menus load no scipy)."""
ALTERNATIVE_NAMES = {"greater": "one-sided r > 0", "two-sided": "two-sided"}
"""The alternatives in the words :func:`encoding_core.stats.significance.describe_test` uses."""
FALLBACK_STATISTICS = ("max", "pooled", "none")
OPEN_BOUND = "none"
"""How an open trimming bound (Python ``None``) is written in TOML, which has no null."""
TR_TIME_CONVENTIONS = ("midpoint", "onset")
"""LeBel TR times: ``midpoint`` (onset + TR/2, the reference's) or ``onset``."""
MODALITIES = ("speech", "wordrate", "embeddings", "language_model", "custom", "phonemerate", "envelope", "logmel")
"""Feature modalities: the reference's four, ``custom`` (your arrays per story) and the baseline
spaces ``phonemerate`` (phones per TR), ``envelope`` (RMS per TR) and ``logmel`` (log-mel bands)."""
AUDIO_MODALITIES = ("speech", "envelope", "logmel")
"""Modalities that read the story's audio."""
SINGLE_LAYER_MODALITIES = ("wordrate", "embeddings", "custom", "phonemerate", "envelope", "logmel")
"""Modalities with one feature set ("layer 0")."""
BANDED_MODES = ("joint", "separate")
"""Feature-space experiments: ``joint`` (one banded ridge over all spaces + variance partitioning)
or ``separate`` (one ridge per space)."""
BANDED_SEARCHES = ("auto", "grid", "random")
MAX_FEATURE_SPACES = 4
OOV_HANDLING = ("zero", "copy_prev", "skip", "error")
CONTEXT_TYPES = ("fullcontext", "nocontext", "halfcontext")


@dataclass
class AssemblySource:
    """Where the assembly and its audio come from.

    path: ``"demo"`` for the built-in simulated assembly, a ``.h5``/``.pkl`` file, or a
    LeBel-layout directory (then ``subject`` is required). stories: subset to use, in
    order (empty = all). audio_dir + audio_pattern map stories to files
    (``{story}`` is replaced); audio_overrides maps a story name to a file.
    LeBel directories only: tr_time_convention ``"midpoint"`` (TR times = TR midpoints, the
    reference's) or ``"onset"`` (1 s earlier); skip_missing loads the other stories when some
    lack their response file, TextGrid or respdict entry (they are named in the run's
    provenance) instead of refusing the folder.
    """

    path: str = "demo"
    subject: str = ""
    stories: list[str] = field(default_factory=list)
    audio_dir: str = ""
    audio_pattern: str = "{story}.wav"
    audio_overrides: dict[str, str] = field(default_factory=dict)
    test_story: str = ""
    tr_time_convention: str = "midpoint"
    skip_missing: bool = False


@dataclass
class FeatureConfig:
    """Speech-model feature extraction (the reference's extractor config, plus ours).

    chunk_size: seconds between window ends (stride). context_size: seconds per window.
    include_early_windows: also emit shorter windows for the first context_size seconds.
    context_only: Whisper only, encode just the frames the window needs (approximate,
    faster); never the default. batch_size 0 = automatic.

    modality: ``speech`` (the settings above), ``wordrate`` (words per TR), ``embeddings``
    (static word vectors from ``vector_path``; ``lowercase``, ``oov_handling``),
    ``language_model`` (a causal LM ``model_name``; ``lookback`` tokens of context,
    ``last_token`` or mean, ``context_type``), ``custom`` (``custom_path``: a folder of
    ``<story>.npz`` with ``features`` and ``times``), or a baseline space: ``phonemerate``
    (``textgrid_dir`` of ``<story>.TextGrid``, ``phone_tier``; filled in for a LeBel folder),
    ``envelope`` (RMS per TR) or ``logmel`` (``n_mels`` bands), see ``features.baseline``.
    """

    model_name: str = DEFAULT_MODEL
    chunk_size: float = 0.1
    context_size: float = 16.0
    pool: str = "last"
    target_sample_rate: int = 16000
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int = 0
    include_early_windows: bool = True
    context_only: bool = False
    cache_dtype: str = "float32"
    modality: str = "speech"
    vector_path: str = ""
    lowercase: bool = True
    oov_handling: str = "zero"
    lookback: int = 256
    last_token: bool = True
    context_type: str = "fullcontext"
    custom_path: str = ""
    textgrid_dir: str = ""
    phone_tier: str = ""
    n_mels: int = 32


@dataclass
class TrimmingConfig:
    """The reference's eight trimming keys (Python slice bounds, in TRs; None = open).

    In TOML an open bound is written ``"none"`` (TOML has no null); a key left out of an
    ``[alignment.trimming]`` table keeps its default below.
    """

    train_features_start: Optional[int] = 10
    train_features_end: Optional[int] = -5
    train_targets_start: Optional[int] = 0
    train_targets_end: Optional[int] = None
    test_features_start: Optional[int] = 50
    test_features_end: Optional[int] = -5
    test_targets_start: Optional[int] = 40
    test_targets_end: Optional[int] = None

    def as_dict(self) -> dict[str, Optional[int]]:
        return dataclasses.asdict(self)


@dataclass
class AlignmentConfig:
    """Feature-to-TR alignment: downsampling, FIR delays (in TRs) and trimming."""

    downsample_method: str = "lanczos"
    downsample_kwargs: dict[str, float] = field(default_factory=dict)
    fir_delays: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    trimming: TrimmingConfig = field(default_factory=TrimmingConfig)


@dataclass
class RidgeConfig:
    """Ridge regression with nested cross-validation (reference alpha convention).

    mode: ``train_test`` (the test story is held out; statistics on its TRs) or ``cv``
    ("all stories (CV)": outer folds over all stories; statistics on the pooled held-out
    predictions of every story). outer_fold_type (``cv`` only): ``story`` (default; leave one
    story out, so each story is predicted by a model that never saw it), ``contiguous``
    (n_outer_folds blocks of consecutive TRs) or ``trimmed`` (the same blocks, with
    ``trim_size`` TRs on each side of the held-out block dropped from training).
    fold_type: inner folds ``chunked`` (seeded shuffled chunks of chunk_length TRs),
    ``contiguous``, ``trimmed`` (contiguous, dropping trim_size TRs around held-out
    blocks) or ``story`` (leave one story out); also the reference's ``chunked_contiguous``,
    ``chunked_trimmed``, ``kfold_trimmed``, ``timeseries`` and ``group`` (see ``models.folds``).
    """

    alphas: list[float] = field(default_factory=lambda: list(REFERENCE_ALPHAS))
    normalpha: bool = True
    single_alpha: bool = False
    n_inner_folds: int = 5
    n_outer_folds: int = 5
    fold_type: str = "chunked"
    chunk_length: int = 20
    trim_size: int = 5
    mode: str = "train_test"
    outer_fold_type: str = "story"
    seed: int = 0
    device: str = "cpu"
    save_weights: bool = False


@dataclass
class StatsConfig:
    """Statistics on held-out predictions: the significance test, BH-FDR and the fallback threshold.

    test: ``effective_dof`` (default: t-test of r with autocorrelation-corrected degrees of
    freedom), ``block_permutation`` or ``parametric_iid`` (independent TRs, for comparison);
    see :mod:`encoding_core.stats.significance`. alternative: ``greater`` (H1: r > 0, the
    encoding question) or ``two-sided``. block_length: TRs per block for block permutation,
    None = chosen from the data (at least min_block_s seconds). n_permutations: block orders
    for block permutation and for the fallback threshold's null (0 = no fallback threshold).
    fallback_statistic / fallback_percentile: when no voxel survives BH-FDR at ``fdr_q``, the
    map's threshold is this percentile of the block-permutation null of the maximum r over
    voxels (``max``, 95 = 5 % family-wise error), or of all voxels' null r (``pooled``), or
    none (``none``).
    """

    test: str = "effective_dof"
    alternative: str = "greater"
    n_permutations: int = 1000
    block_length: Optional[int] = None
    min_block_s: float = 20.0
    fdr_q: float = 0.05
    seed: int = 0
    fallback_statistic: str = "max"
    fallback_percentile: float = 95.0


@dataclass
class FeatureSpaceConfig:
    """One named feature space of a feature-space experiment (a ``[[feature_spaces]]`` table).

    name: a short label (letters, digits, ``_``, ``-``) naming its maps (``unique_<name>``);
    layer: the 0-based layer of a layered modality (speech, language_model), 0 otherwise;
    features: how the space is computed (a ``[feature_spaces.features]`` table, same keys as
    ``[features]``; unset keys take the defaults).
    """

    name: str = ""
    layer: int = 0
    features: FeatureConfig = field(default_factory=FeatureConfig)


@dataclass
class BandedConfig:
    """How a feature-space experiment fits (used only when ``feature_spaces`` is not empty).

    mode: ``joint`` (one banded ridge over all spaces, each with its own scaling chosen per voxel
    by nested CV, plus variance partitioning for 2 or 3 spaces) or ``separate`` (one ridge per
    space, stored as one "layer" per space in the order given). search: the per-space scalings,
    ``grid`` on the simplex (``grid_steps``, 0 = 10 for 2 spaces, 5 for 3), ``random`` (Dirichlet,
    ``n_random`` candidates) or ``auto`` (grid up to 3 spaces). stacked: add the stacked-encoding
    estimate. The alphas, folds and normalpha are those of ``[ridge]``.
    """

    mode: str = "joint"
    search: str = "auto"
    grid_steps: int = 0
    n_random: int = 50
    stacked: bool = False
    memory_budget_gb: float = 1.0


@dataclass
class ExperimentConfig:
    """A whole experiment. ``layers`` is a list of 0-based encoder layers, or "all".

    feature_spaces: empty for a one-modality experiment (``features`` and ``layers``); 2 to 4
    named spaces (``[[feature_spaces]]``) for a banded-ridge / variance-partitioning experiment,
    fitted as ``banded`` says (then ``features`` and ``layers`` are not used).
    """

    name: str = "experiment"
    assembly: AssemblySource = field(default_factory=AssemblySource)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    layers: Union[list[int], str] = "all"
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)
    ridge: RidgeConfig = field(default_factory=RidgeConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    results_dir: str = "results"
    cache_dir: str = "cache"
    feature_spaces: list[FeatureSpaceConfig] = field(default_factory=list)
    banded: BandedConfig = field(default_factory=BandedConfig)

    # -- validation -------------------------------------------------------------
    def validate(self) -> "ExperimentConfig":
        """Raise ConfigError with a fix-it message for the first invalid setting."""
        f, a, r, s = self.features, self.alignment, self.ridge, self.stats
        _check(self.assembly.tr_time_convention in TR_TIME_CONVENTIONS,
               f"assembly.tr_time_convention must be one of {TR_TIME_CONVENTIONS} (\"midpoint\": the reference's TR "
               f"midpoints), got {self.assembly.tr_time_convention!r}.")
        _check(isinstance(self.assembly.skip_missing, bool), "assembly.skip_missing must be true or false.")
        _check(f.chunk_size > 0, "features.chunk_size (stride) must be > 0 seconds.")
        _check(f.context_size > 0, "features.context_size must be > 0 seconds.")
        _check(f.pool in POOL_METHODS, f"features.pool must be one of {POOL_METHODS}, got {f.pool!r}.")
        _check(f.precision in PRECISIONS, f"features.precision must be one of {PRECISIONS}.")
        _check(f.target_sample_rate >= 1000, "features.target_sample_rate must be a rate in Hz (e.g. 16000).")
        _check(f.cache_dtype in ("float16", "float32"), "features.cache_dtype must be float16 or float32.")
        _check(f.batch_size >= 0, "features.batch_size must be >= 0 (0 = automatic).")
        _check(f.modality in MODALITIES, f"features.modality must be one of {MODALITIES}, got {f.modality!r}.")
        _check(f.oov_handling in OOV_HANDLING, f"features.oov_handling must be one of {OOV_HANDLING}.")
        _check(f.context_type in CONTEXT_TYPES, f"features.context_type must be one of {CONTEXT_TYPES}.")
        _check(isinstance(f.lookback, int) and f.lookback >= 1, "features.lookback must be a positive number of tokens.")
        _check(f.modality != "embeddings" or bool(f.vector_path.strip()),
               "features.modality = \"embeddings\" needs features.vector_path (a word2vec or GloVe file).")
        _check(isinstance(f.n_mels, int) and not isinstance(f.n_mels, bool) and 1 <= f.n_mels <= 256,
               f"features.n_mels must be a number of mel bands between 1 and 256 (e.g. 32), got {f.n_mels!r}.")
        _check(f.modality != "custom" or bool(f.custom_path.strip()),
               "features.modality = \"custom\" needs features.custom_path (a folder of <story>.npz files).")
        if isinstance(self.layers, str):
            _check(self.layers == "all", 'layers must be "all" or a list of 0-based layer numbers.')
        else:
            _check(len(self.layers) > 0 and all(isinstance(x, int) and x >= 0 for x in self.layers),
                   "layers must be a non-empty list of 0-based layer numbers (or \"all\").")
        _check(a.downsample_method in DOWNSAMPLE_METHODS,
               f"alignment.downsample_method must be one of {DOWNSAMPLE_METHODS}.")
        _check(len(a.fir_delays) > 0 and all(isinstance(d, int) for d in a.fir_delays),
               "alignment.fir_delays must be a non-empty list of integers (TRs), e.g. [1, 2, 3, 4].")
        _check(len(set(a.fir_delays)) == len(a.fir_delays), "alignment.fir_delays has repeated values.")
        _check(len(r.alphas) > 0 and all(x > 0 for x in r.alphas), "ridge.alphas must be positive numbers.")
        _check(r.n_inner_folds >= 2, "ridge.n_inner_folds must be at least 2.")
        _check(r.n_outer_folds >= 2, "ridge.n_outer_folds must be at least 2.")
        _check(r.fold_type in FOLD_TYPES, f"ridge.fold_type must be one of {FOLD_TYPES}.")
        _check(r.mode in MODES, f"ridge.mode must be one of {MODES}.")
        _check(r.outer_fold_type in OUTER_FOLD_TYPES,
               f"ridge.outer_fold_type must be one of {OUTER_FOLD_TYPES} (\"story\": leave one story out).")
        _check(r.chunk_length >= 1, "ridge.chunk_length must be >= 1 TR.")
        _check(r.trim_size >= 0, "ridge.trim_size must be >= 0 TRs.")
        _check(s.test in SIGNIFICANCE_TESTS, f"stats.test must be one of {SIGNIFICANCE_TESTS}, got {s.test!r}.")
        _check(s.alternative in ALTERNATIVES,
               f"stats.alternative must be one of {ALTERNATIVES} (\"greater\": r > 0), got {s.alternative!r}.")
        _check(isinstance(s.n_permutations, numbers.Integral) and s.n_permutations >= 0,
               "stats.n_permutations must be a whole number >= 0 (0 = no permutation null for the fallback "
               "threshold).")
        _check(s.test != "block_permutation" or s.n_permutations >= 1,
               "stats.test = \"block_permutation\" needs stats.n_permutations >= 1 (e.g. 1000).")
        _check(s.block_length is None or (isinstance(s.block_length, numbers.Integral) and s.block_length >= 1),
               "stats.block_length must be a whole number of TRs >= 1, or left out to choose it from the data.")
        _check(s.min_block_s >= 0, "stats.min_block_s must be >= 0 seconds (e.g. 20).")
        _check(0 < s.fdr_q < 1, "stats.fdr_q must be between 0 and 1 (e.g. 0.05).")
        _check(s.fallback_statistic in FALLBACK_STATISTICS,
               f"stats.fallback_statistic must be one of {FALLBACK_STATISTICS}, got {s.fallback_statistic!r}.")
        _check(0 < s.fallback_percentile < 100, "stats.fallback_percentile must be between 0 and 100 (e.g. 95).")
        t = self.alignment.trimming
        for key, value in t.as_dict().items():
            _check(value is None or (isinstance(value, numbers.Integral) and not isinstance(value, bool)),
                   f"alignment.trimming.{key} must be a whole number of TRs, or \"{OPEN_BOUND}\" for an open "
                   f"bound; got {value!r}.")
        self._validate_feature_spaces()
        return self

    def _validate_feature_spaces(self) -> None:
        spaces, b = self.feature_spaces, self.banded
        _check(b.mode in BANDED_MODES, f"banded.mode must be one of {BANDED_MODES} (\"joint\": one banded ridge and "
               f"variance partitioning; \"separate\": one ridge per space), got {b.mode!r}.")
        _check(b.search in BANDED_SEARCHES, f"banded.search must be one of {BANDED_SEARCHES}, got {b.search!r}.")
        _check(isinstance(b.grid_steps, int) and b.grid_steps >= 0, "banded.grid_steps must be >= 0 (0 = default).")
        _check(isinstance(b.n_random, int) and b.n_random >= 1, "banded.n_random must be a positive number.")
        _check(b.memory_budget_gb > 0, "banded.memory_budget_gb must be > 0 (GB per block of voxels).")
        if not spaces:
            return
        _check(all(isinstance(s, FeatureSpaceConfig) for s in spaces),
               "feature_spaces must be a list of [[feature_spaces]] tables (name, layer, [feature_spaces.features]).")
        lowest = 1 if b.mode == "separate" else 2
        _check(lowest <= len(spaces) <= MAX_FEATURE_SPACES,
               f"feature_spaces has {len(spaces)} space(s); a {b.mode} experiment takes {lowest} to "
               f"{MAX_FEATURE_SPACES} [[feature_spaces]] tables.")
        names = [s.name for s in spaces]
        for index, space in enumerate(spaces):
            where = f"feature_spaces[{index}]" + (f" ({space.name!r})" if space.name else "")
            _check(isinstance(space.name, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,31}", space.name) is not None,
                   f"{where}: name must start with a letter and hold only letters, digits, _ or - (at most 32), e.g. "
                   f"\"speech\" or \"words\"; got {space.name!r}.")
            _check(isinstance(space.layer, int) and not isinstance(space.layer, bool) and space.layer >= 0,
                   f"{where}: layer must be a 0-based layer number, got {space.layer!r}.")
            try:
                ExperimentConfig(features=space.features).validate()
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        repeated = sorted({n for n in names if names.count(n) > 1})
        _check(not repeated, f"feature_spaces: the names {repeated} are used more than once; give each space its own name.")
        _check(self.ridge.mode == "train_test", "feature_spaces need ridge.mode = \"train_test\" (a held-out test "
               "story scores the partition); set [ridge] mode = \"train_test\".")

    # -- TOML -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict for TOML: open trimming bounds as ``"none"``, other None values left out."""
        data = dataclasses.asdict(self)
        data["alignment"]["trimming"] = {k: OPEN_BOUND if v is None else v
                                         for k, v in data["alignment"]["trimming"].items()}
        return _drop_none(data)

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    def save(self, path: Union[str, Path]) -> Path:
        """Write the config as TOML, atomically."""
        from encoding_core.common.storage import atomic_write_text

        return atomic_write_text(Path(path), self.to_toml())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExperimentConfig":
        return _build(cls, data, "config").validate()

    @classmethod
    def from_toml(cls, text: str) -> "ExperimentConfig":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"The config is not valid TOML: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "ExperimentConfig":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Cannot read config file {path}: {exc}") from None
        return cls.from_toml(text)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _drop_none(value: Any) -> Any:
    """TOML has no null: None values are left out (an absent key then takes its default, which is
    None for every Optional setting except the trimming bounds, written as ``"none"``)."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    """Build a dataclass from a dict, refusing unknown keys with a clear message."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table, got {type(data).__name__}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"Unknown key(s) in {where}: {unknown}; allowed: {sorted(fields)}.")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:  # absent keys keep their defaults (a partial table is fine)
            continue
        value = data[name]
        if cls is TrimmingConfig and isinstance(value, str):
            if value.strip().lower() != OPEN_BOUND:
                raise ConfigError(f"{where}.{name} must be a whole number of TRs or \"{OPEN_BOUND}\" (an open "
                                  f"bound); got {value!r}.")
            value = None
        sub = _dataclass_of(f.type)
        if cls is ExperimentConfig and name == "feature_spaces":
            if not isinstance(value, list):
                raise ConfigError(f"{where}.feature_spaces must be an array of tables ([[feature_spaces]]), got "
                                  f"{type(value).__name__}.")
            kwargs[name] = [_build(FeatureSpaceConfig, item, f"{where}.feature_spaces[{i}]") for i, item in enumerate(value)]
            continue
        kwargs[name] = _build(sub, value, f"{where}.{name}") if sub is not None else value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"Invalid {where}: {exc}") from None


def _dataclass_of(type_hint: Any) -> Optional[type]:
    names = {c.__name__: c for c in (AssemblySource, FeatureConfig, TrimmingConfig, AlignmentConfig,
                                     RidgeConfig, StatsConfig, BandedConfig)}
    key = type_hint if isinstance(type_hint, str) else getattr(type_hint, "__name__", "")
    return names.get(key)
