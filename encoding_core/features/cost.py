"""Cost of feature extraction, shown before the user starts: windows and estimated seconds."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from encoding_core.config import FeatureConfig
from encoding_core.assembly.audio import audio_info
from encoding_core.features.cache import is_cached

logger = logging.getLogger(__name__)

LONG_AUDIO_S = 2 * 3600.0  # a single file longer than this is probably a mistake
LONG_RUN_S = 3600.0
PROBE_VERSION = 1
BF16_MIN_SPEEDUP = 1.15
"""bf16 is recommended only when the probe measured it at least this much faster than fp32
(below that the difference is within the probe's noise and fp32 is exact)."""
_probe_memo: dict[str, "SpeedProbe"] = {}
_probe_lock = threading.Lock()


@dataclass
class CostEstimate:
    """n_windows: windows still to compute (cached stories excluded); est_seconds: their
    estimated time (windows x per_window_s, plus loading the model once); per_window_s:
    measured seconds per window (nan without a probe); cached_stories of n_stories are
    already in the feature cache for these settings and cost nothing."""

    n_windows: int
    est_seconds: float
    per_window_s: float
    cached_stories: int
    warnings: list[str] = field(default_factory=list)
    unit: str = "windows"
    """What ``n_windows`` counts: ``windows`` (speech), ``words`` (word-level modalities), ``TRs``."""
    n_stories: int = 0
    model_name: str = ""
    precision: str = ""
    load_seconds: float = 0.0
    probe_from_disk: bool = False

    @property
    def seconds(self) -> float:
        """Alias of est_seconds (the architecture document's name)."""
        return self.est_seconds


@dataclass(frozen=True)
class SpeedProbe:
    """One window of a speech model timed on this machine.

    seconds_per_window: one window after a warm-up window (s); load_seconds: loading the model
    (s, 0 when it was already loaded in this process); precision: the precision that ran;
    machine: CPU model, usable cores, torch threads and version the time belongs to.
    """

    model_name: str
    device: str
    precision: str
    seconds_per_window: float
    load_seconds: float
    measured: str
    machine: str
    from_disk: bool = False


def machine_signature() -> str:
    """What a speed measurement depends on besides the model: CPU model, usable cores, torch threads."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return f"{cpu} | {cores} cores | torch {torch.__version__} | {torch.get_num_threads()} threads"


def _probe_key(config: FeatureConfig, device: str, precision: str, weights: str, machine: str) -> str:
    fields = [PROBE_VERSION, config.model_name, weights, device, precision, float(config.context_size),
              config.pool, bool(config.context_only), int(config.batch_size), machine]
    return hashlib.sha256(json.dumps(fields, default=str).encode()).hexdigest()[:24]


def probe_speed(config: FeatureConfig, cache_dir: Union[str, Path, None] = None, refresh: bool = False) -> SpeedProbe:
    """Seconds per window of ``config``'s model, device and precision on this machine.

    Measured once (one warm-up window, then one timed window of noise) and kept in memory and,
    with ``cache_dir``, in ``<cache_dir>/speed_probes/<key>.json``, so a restarted app does not
    probe again. The key holds the model's weights, device, precision, context, pooling and the
    machine (:func:`machine_signature`). refresh: measure again.
    """
    from encoding_core.features.models import load_model, planned_precision, resolve_device, resolve_model

    source = resolve_model(config.model_name)
    device = str(resolve_device(config.device))
    precision = planned_precision(config.precision, device)
    machine = machine_signature()
    key = _probe_key(config, device, precision, source.weights_identity, machine)
    folder = Path(cache_dir).expanduser() / "speed_probes" if cache_dir is not None else None
    with _probe_lock:
        if not refresh and key in _probe_memo:
            return _probe_memo[key]
    if folder is not None and not refresh:
        stored = _read_probe(folder / f"{key}.json")
        if stored is not None:
            with _probe_lock:
                _probe_memo[key] = stored
            return stored
    from encoding_core.features.speech import compute_layers

    start = time.perf_counter()
    loaded = load_model(config.model_name, device=config.device, precision=config.precision)
    load_seconds = time.perf_counter() - start
    sr = loaded.sampling_rate
    audio = np.random.default_rng(0).standard_normal(int((config.context_size + 1.0) * sr)).astype(np.float32) * 0.1
    ends = np.array([config.context_size, config.context_size + min(config.chunk_size, 0.5)])
    compute_layers(audio, loaded, config, end_times=ends[:1])  # warm-up (allocations, kernels)
    start = time.perf_counter()
    compute_layers(audio, loaded, config, end_times=ends[1:])
    per_window = time.perf_counter() - start
    probe = SpeedProbe(model_name=source.name, device=device, precision=loaded.precision,
                       seconds_per_window=float(per_window), load_seconds=float(load_seconds),
                       measured=time.strftime("%Y-%m-%dT%H:%M:%S"), machine=machine)
    with _probe_lock:
        _probe_memo[key] = probe
    if folder is not None:
        try:
            from encoding_core.common.storage import atomic_write_text

            atomic_write_text(folder / f"{key}.json", json.dumps(asdict(probe), indent=1))
        except OSError as exc:  # a read-only cache only costs a new probe next time
            logger.info("Cannot keep the speed probe in %s: %s", folder, exc)
    return probe


def _read_probe(path: Path) -> Optional[SpeedProbe]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["from_disk"] = True
        probe = SpeedProbe(**data)
    except (OSError, ValueError, TypeError):
        return None
    return probe if np.isfinite(probe.seconds_per_window) and probe.seconds_per_window > 0 else None


def probe_seconds_per_window(config: FeatureConfig, n_windows: int = 1) -> float:
    """Seconds per window of ``config`` on this machine (see :func:`probe_speed`; memoised per process)."""
    return probe_speed(config).seconds_per_window


@dataclass(frozen=True)
class PrecisionAdvice:
    """fp32 against bf16 timed on this machine: seconds per window each (bf16 None where it cannot
    run), bf16's speed-up (fp32 time / bf16 time) and the advice in words."""

    fp32_s: float
    bf16_s: Optional[float]
    speedup: Optional[float]
    recommend: str
    reason: str


def bf16_hardware() -> str:
    """What this CPU offers for bf16 matrix products: ``"AMX"``, ``"AVX512-BF16"`` or ``"none"``
    (from /proc/cpuinfo; ``"unknown"`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return "unknown"
    if "amx_bf16" in flags:
        return "AMX"
    return "AVX512-BF16" if "avx512_bf16" in flags else "none"


def stored_probe(config: FeatureConfig, cache_dir: Union[str, Path, None] = None) -> Optional[SpeedProbe]:
    """The probe :func:`probe_speed` would return without measuring (memory or disk), or None."""
    from encoding_core.features.models import planned_precision, resolve_device, resolve_model

    source = resolve_model(config.model_name)
    device = str(resolve_device(config.device))
    key = _probe_key(config, device, planned_precision(config.precision, device), source.weights_identity,
                     machine_signature())
    with _probe_lock:
        if key in _probe_memo:
            return _probe_memo[key]
    return _read_probe(Path(cache_dir).expanduser() / "speed_probes" / f"{key}.json") if cache_dir else None


def compare_precisions(config: FeatureConfig, cache_dir: Union[str, Path, None] = None,
                       refresh: bool = False, measure: bool = True) -> Optional[PrecisionAdvice]:
    """Time one window in fp32 and in bf16 (each probe cached, see :func:`probe_speed`) and advise:
    bf16 only where it is at least ``BF16_MIN_SPEEDUP`` times faster; fp32 (exact) otherwise.
    measure=False: only from probes already made (None when one is missing)."""
    import dataclasses

    variants = [dataclasses.replace(config, precision=p) for p in ("fp32", "bf16")]
    if not measure:
        stored = [stored_probe(v, cache_dir) for v in variants]
        if any(p is None for p in stored):
            return None
        fp32, bf16 = stored
    else:
        fp32, bf16 = (probe_speed(v, cache_dir, refresh) for v in variants)
    if bf16.precision != "bf16":
        return PrecisionAdvice(fp32.seconds_per_window, None, None, "fp32", "bf16 does not run on this device.")
    speedup = fp32.seconds_per_window / bf16.seconds_per_window
    hardware = bf16_hardware() if fp32.device == "cpu" else fp32.device
    measured = (f"measured here: fp32 {fp32.seconds_per_window:.2f} s, bf16 {bf16.seconds_per_window:.2f} s per "
                f"window ({speedup:.2f}x; bf16 hardware: {hardware})")
    if speedup >= BF16_MIN_SPEEDUP:
        return PrecisionAdvice(fp32.seconds_per_window, bf16.seconds_per_window, speedup, "bf16",
                               f"bf16 is faster on this machine ({measured}); it is approximate (per-layer r with "
                               "fp32 about 1.00).")
    return PrecisionAdvice(fp32.seconds_per_window, bf16.seconds_per_window, speedup, "fp32",
                           f"bf16 is not faster on this machine ({measured}); keep fp32, which is exact.")


def estimate_cost(audio_paths: Sequence[Union[str, Path]], feature_config: Union[FeatureConfig, dict],
                  probe: bool = True, cache_dir: Union[str, Path, None] = None) -> CostEstimate:
    """Windows to compute and estimated time for a set of stories, from audio headers (no decode).

    probe: time one window of the model on this machine (:func:`probe_speed`, cached under
    ``cache_dir``). cache_dir: stories whose features are already cached there cost nothing.
    """
    from encoding_core.features.base import coerce_feature_config
    from encoding_core.features.speech import window_end_times

    config, _ = coerce_feature_config(feature_config)
    warnings: list[str] = []
    n_windows = 0
    cached = 0
    for path in audio_paths:
        duration = audio_info(path).duration_s
        if duration > LONG_AUDIO_S:
            warnings.append(f"{Path(path).name} lasts {duration / 3600:.1f} h; is this the right file?")
        if cache_dir is not None and is_cached(path, config, cache_dir):
            cached += 1
            continue
        n_windows += len(window_end_times(duration, config.chunk_size, config.context_size,
                                          config.include_early_windows))
    speed = probe_speed(config, cache_dir) if (probe and n_windows) else None
    per_window = speed.seconds_per_window if speed is not None else float("nan")
    load = speed.load_seconds if speed is not None else 0.0
    est = n_windows * per_window + load if speed is not None else (0.0 if n_windows == 0 else float("nan"))
    if np.isfinite(est) and est > LONG_RUN_S:
        warnings.append(f"Feature extraction would take about {est / 3600:.1f} h ({n_windows} windows at "
                        f"{per_window:.3f} s each). A larger chunk_size (stride), context_only or bf16 is faster.")
    return CostEstimate(n_windows=n_windows, est_seconds=float(est), per_window_s=float(per_window),
                        cached_stories=cached, warnings=warnings, n_stories=len(audio_paths),
                        model_name=config.model_name, precision=speed.precision if speed else config.precision,
                        load_seconds=float(load), probe_from_disk=bool(speed and speed.from_disk))


MODALITY_NEEDS = {
    "speech": "the stories' audio files and a speech model (the bundled Whisper, a Hugging Face id in the "
              "local cache, or a local folder)",
    "wordrate": "the stories' words with their times (in the assembly); nothing else",
    "embeddings": "the stories' words with their times and a word-vector file: word2vec (.bin binary, "
                  ".w2v.txt text) or GloVe (.txt)",
    "language_model": "the stories' words with their times and a causal language model (a Hugging Face id in "
                      "the local cache, or a local folder with its tokenizer)",
    "custom": "a folder of <story>.npz files, each with 'features' (n, dim) and 'times' (n,) in seconds "
              "(without times: one row per TR)",
    "phonemerate": "a folder of <story>.TextGrid files with a phone tier (a LeBel folder's TextGrids are found "
                   "by themselves)",
    "envelope": "the stories' audio files; nothing else",
    "logmel": "the stories' audio files (librosa computes the spectrogram)",
}
"""What each modality needs, for the app."""
TEXT_READ_BYTES_PER_S = 50e6
BINARY_READ_BYTES_PER_S = 400e6
_lm_probe: dict[tuple, float] = {}


def estimate_word_feature_cost(word_counts: Sequence[int], feature_config: FeatureConfig,
                               probe: bool = True) -> CostEstimate:
    """Cost of a non-speech modality for stories with ``word_counts`` words.

    wordrate / custom / the baseline spaces (phonemerate, envelope, logmel): nothing worth estimating. embeddings: reading the vector file (rough:
    50 MB/s text, 400 MB/s binary). language_model: tokens read = for each word, its context
    of at most ``lookback`` tokens (tokens per word measured with the model's tokenizer on a
    sample), times seconds per token measured on one batch (``probe``).
    """
    config = feature_config
    n_words = int(sum(word_counts))
    warnings: list[str] = []
    if config.modality in ("wordrate", "custom", "phonemerate", "envelope", "logmel"):  # seconds at most
        return CostEstimate(n_words, 0.0, 0.0, 0, warnings, unit="words")
    if config.modality == "embeddings":
        path = Path(config.vector_path).expanduser()
        if not path.is_file():
            return CostEstimate(n_words, float("nan"), float("nan"), 0,
                                [f"vector file {config.vector_path!r} not found"], unit="words")
        size = path.stat().st_size
        rate = BINARY_READ_BYTES_PER_S if path.name.endswith((".bin", ".bin.gz")) else TEXT_READ_BYTES_PER_S
        return CostEstimate(n_words, size / rate, size / rate / max(n_words, 1), 0, warnings, unit="words")
    if config.modality != "language_model":
        raise ValueError(f"estimate_word_feature_cost does not handle modality {config.modality!r}")
    from encoding_core.features.language_model import coerce_lm_config, load_language_model

    lm_config = coerce_lm_config(config)
    loaded = load_language_model(lm_config.model_name, lm_config.device)
    sample = " ".join(["the quick brown fox jumps over the lazy dog"] * 8)
    per_word = max(len(loaded.tokenizer(sample, add_special_tokens=False)["input_ids"]) / 72.0, 1.0)
    tokens = 0.0
    for count in word_counts:  # per story: word i reads min(lookback, tokens of its i + 1 words)
        context = np.minimum(per_word * np.arange(1, int(count) + 1), lm_config.lookback)
        tokens += float(context.sum()) + int(count)
    per_token = float("nan")
    if probe and n_words:
        key = (loaded.name, loaded.identity, str(loaded.device))
        if key not in _lm_probe:
            from encoding_core.features.language_model import hidden_state_features

            length = int(min(lm_config.lookback, 64))
            sequences = [[loaded.tokenizer.bos_token_id or 0] * length] * 4
            hidden_state_features(sequences[:1], loaded, lm_config)  # warm-up
            start = time.perf_counter()
            hidden_state_features(sequences, loaded, lm_config)
            _lm_probe[key] = (time.perf_counter() - start) / (4 * (length + 1))
        per_token = _lm_probe[key]
    est = tokens * per_token
    if np.isfinite(est) and est > LONG_RUN_S:
        warnings.append(f"The language model would take about {est / 3600:.1f} h ({tokens:,.0f} tokens); a "
                        "shorter lookback or a GPU is faster.")
    return CostEstimate(n_words, float(est), float(est / max(n_words, 1)), 0, warnings, unit="words")
