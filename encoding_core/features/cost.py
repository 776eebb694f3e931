"""Cost of feature extraction, shown before the user starts: windows and estimated seconds."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from encoding_core.config import FeatureConfig
from encoding_core.assembly.audio import audio_info
from encoding_core.features.cache import is_cached

logger = logging.getLogger(__name__)

LONG_AUDIO_S = 2 * 3600.0  # a single file longer than this is probably a mistake
LONG_RUN_S = 3600.0
_probe_memo: dict[tuple, float] = {}
_probe_lock = threading.Lock()


@dataclass
class CostEstimate:
    """n_windows: windows still to compute (cached stories excluded); est_seconds: their
    estimated time; per_window_s: measured seconds per window (nan without a probe)."""

    n_windows: int
    est_seconds: float
    per_window_s: float
    cached_stories: int
    warnings: list[str] = field(default_factory=list)
    unit: str = "windows"
    """What ``n_windows`` counts: ``windows`` (speech), ``words`` (word-level modalities), ``TRs``."""

    @property
    def seconds(self) -> float:
        """Alias of est_seconds (the architecture document's name)."""
        return self.est_seconds


def probe_seconds_per_window(config: FeatureConfig, n_windows: int = 2) -> float:
    """Seconds per window measured on ``n_windows`` windows of noise (memoised per process
    by model, device, precision, context and mode)."""
    from encoding_core.features.models import load_model
    from encoding_core.features.speech import compute_layers

    loaded = load_model(config.model_name, device=config.device, precision=config.precision)
    memo_key = (loaded.source.name, loaded.source.weights_identity, str(loaded.device), loaded.precision,
                float(config.context_size), bool(config.context_only), loaded.kind)
    with _probe_lock:
        if memo_key in _probe_memo:
            return _probe_memo[memo_key]
    sr = loaded.sampling_rate
    audio = np.random.default_rng(0).standard_normal(int((config.context_size + 1.0) * sr)).astype(np.float32) * 0.1
    ends = config.context_size + np.arange(n_windows) * min(config.chunk_size, 0.5)
    compute_layers(audio, loaded, config, end_times=ends[:1])  # warm-up (allocations, kernels)
    start = time.perf_counter()
    compute_layers(audio, loaded, config, end_times=ends)
    per_window = (time.perf_counter() - start) / n_windows
    with _probe_lock:
        _probe_memo[memo_key] = per_window
    return per_window


def estimate_cost(audio_paths: Sequence[Union[str, Path]], feature_config: Union[FeatureConfig, dict],
                  probe: bool = True, cache_dir: Union[str, Path, None] = None) -> CostEstimate:
    """Windows to compute and estimated time for a set of stories, from audio headers (no decode).

    probe: run one or two windows through the model to measure seconds per window.
    cache_dir: stories already cached there cost nothing.
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
    per_window = probe_seconds_per_window(config) if (probe and n_windows) else float("nan")
    est = n_windows * per_window if probe and n_windows else (0.0 if n_windows == 0 else float("nan"))
    if np.isfinite(est) and est > LONG_RUN_S:
        warnings.append(f"Feature extraction would take about {est / 3600:.1f} h ({n_windows} windows at "
                        f"{per_window:.3f} s each). A larger chunk_size (stride), context_only or bf16 is faster.")
    return CostEstimate(n_windows=n_windows, est_seconds=float(est), per_window_s=float(per_window),
                        cached_stories=cached, warnings=warnings)


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
