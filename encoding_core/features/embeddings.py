"""Static word embeddings (word2vec, GloVe): one vector per word, at the word's time.

The reference's ``StaticEmbeddingFeatureExtractor``. Vector files are read with gensim's
``KeyedVectors.load_word2vec_format`` (word2vec text or binary with the ``count dim`` header,
GloVe text without it); the format is inferred from the name as the reference does (``.bin`` /
``.bin.gz`` binary; ``.w2v.txt`` with a header; other ``.txt`` / ``.txt.gz`` GloVe, retried with
the header flipped when that fails). gensim's native ``.kv`` files are pickles and are refused
(convert them once, in a trusted environment, with ``KeyedVectors.load(p).save_word2vec_format(out, binary=True)``).

Missing words (``oov_handling``): ``"zero"`` (our default) gives zero vectors and one warning
counting them; the reference's default ``"copy_prev"`` repeats the last known vector, ``"skip"``
drops the word (and its time) and ``"error"`` raises. The default differs from the reference
on purpose: a copied vector puts a word's meaning at another word's time, a zero row adds
nothing, and the warning says how many words had no vector.

Word vectors reach the TR grid through the same downsampling as speech features (``rect``: the
mean of the vectors of the words whose time lies within the TR), from the assembly's word times.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from encoding_core.common.errors import ConfigError, InputError
from encoding_core.common.progress import CancelFlag, ProgressCallback
from encoding_core.config import FeatureConfig
from encoding_core.features.base import StoryFeatures, words_fingerprint

logger = logging.getLogger(__name__)

OOV_HANDLING = ("zero", "copy_prev", "skip", "error")
CACHE_SUBDIR = "embedding_features"
_vectors: dict[tuple, Any] = {}


@dataclass
class EmbeddingConfig:
    """The reference's embedding config keys. binary / no_header: None = inferred from the name."""

    vector_path: str = ""
    lowercase: bool = True
    oov_handling: str = "zero"
    use_tqdm: bool = True
    mmap: bool = True
    binary: Optional[bool] = None
    no_header: Optional[bool] = None
    l2_normalize_tokens: bool = False
    tokenizer_pattern: str = r"[A-Za-z0-9_']+"
    model_name: str = "word_vectors"

    def validate(self) -> "EmbeddingConfig":
        if not str(self.vector_path).strip():
            raise ConfigError("The embeddings modality needs vector_path: a word2vec (.bin, .w2v.txt) or GloVe "
                              "(.txt) file.")
        path = Path(self.vector_path).expanduser()
        if not path.is_file():
            raise ConfigError(f"vector_path {str(path)!r} does not exist or is not a file; give the word-vector file.")
        if path.suffix == ".kv":
            raise ConfigError(f"{path.name} is gensim's native format, a pickle, which is never loaded here. Fix: "
                              "convert it once in a trusted environment with KeyedVectors.load(path)"
                              ".save_word2vec_format('vectors.bin', binary=True) and give that file.")
        if self.oov_handling not in OOV_HANDLING:
            raise ConfigError(f"oov_handling must be one of {OOV_HANDLING}; got {self.oov_handling!r}.")
        return self


def coerce_embedding_config(config: Union[dict, FeatureConfig, EmbeddingConfig, None]) -> EmbeddingConfig:
    if isinstance(config, EmbeddingConfig):
        return dataclasses.replace(config).validate()
    if isinstance(config, FeatureConfig):
        return EmbeddingConfig(vector_path=config.vector_path, lowercase=config.lowercase,
                               oov_handling=config.oov_handling, model_name=config.model_name).validate()
    values = dict(config or {})
    allowed = {f.name for f in dataclasses.fields(EmbeddingConfig)}
    ignored = sorted(set(values) - allowed)
    if ignored:
        logger.info("Embedding config keys %s are not used; ignored.", ignored)
    return EmbeddingConfig(**{k: v for k, v in values.items() if k in allowed}).validate()


def _infer_format(path: Path, binary: Optional[bool], no_header: Optional[bool]) -> tuple[bool, bool]:
    name = path.name.lower()
    if binary is None:
        binary = name.endswith((".bin", ".bin.gz"))
    if no_header is None:
        no_header = (not binary) and name.endswith((".txt", ".txt.gz")) and not name.endswith((".w2v.txt", ".w2v.txt.gz"))
    return bool(binary), bool(no_header)


def load_vectors(config: EmbeddingConfig) -> Any:
    """gensim KeyedVectors of ``config.vector_path`` (memoised per process by path, size and mtime)."""
    from gensim.models import KeyedVectors

    path = Path(config.vector_path).expanduser().resolve()
    stat = path.stat()
    binary, no_header = _infer_format(path, config.binary, config.no_header)
    key = (str(path), stat.st_size, stat.st_mtime_ns, binary, no_header)
    if key in _vectors:
        return _vectors[key]
    attempts = [no_header] + ([not no_header] if not binary and config.no_header is None else [])
    errors = []
    for header_flag in attempts:
        try:
            vectors = KeyedVectors.load_word2vec_format(str(path), binary=binary, no_header=header_flag)
            break
        except (ValueError, UnicodeDecodeError, EOFError, OSError) as exc:
            errors.append(f"no_header={header_flag}: {exc}")
    else:
        raise InputError(f"Cannot read word vectors from {path} (binary={binary}): {'; '.join(errors)}. Fix: give a "
                         "word2vec (.bin binary, .w2v.txt text with a 'count dim' header) or GloVe (.txt) file, "
                         "or set binary / no_header in the config.")
    _vectors[key] = vectors
    logger.info("Read %d word vectors of dimension %d from %s.", len(vectors), vectors.vector_size, path.name)
    return vectors


class StaticEmbeddingFeatureExtractor:
    """One static vector per word (see the module docstring). config: the reference's keys
    (``vector_path``, ``binary``, ``no_header``, ``lowercase``, ``oov_handling``, ``use_tqdm``,
    ``mmap``, ``l2_normalize_tokens``, ``tokenizer_pattern``), a FeatureConfig or an EmbeddingConfig."""

    modality = "embeddings"

    def __init__(self, config: Union[dict, FeatureConfig, EmbeddingConfig, None],
                 cache_dir: Union[str, Path, None] = None) -> None:
        self.config = coerce_embedding_config(config)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.last_oov_count = 0

    vector_path = property(lambda self: self.config.vector_path)
    oov_handling = property(lambda self: self.config.oov_handling)
    n_layers = 1

    @property
    def vectors(self) -> Any:
        return load_vectors(self.config)

    def _tokens(self, stimuli: Union[str, Sequence[Any]]) -> list:
        if isinstance(stimuli, str):
            return re.findall(self.config.tokenizer_pattern, stimuli)
        return list(stimuli)

    def lookup(self, stimuli: Union[str, Sequence[Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(vectors (n_kept, dim) float32, kept (n_tokens,) bool): one row per token, OOV per config."""
        vectors = self.vectors
        tokens = self._tokens(stimuli)
        keys = [(t.lower() if self.config.lowercase else t) if isinstance(t, str) else None for t in tokens]
        index = np.array([vectors.key_to_index.get(k, -1) if k is not None else -1 for k in keys], dtype=np.int64)
        missing = index < 0
        self.last_oov_count = int(missing.sum())
        if missing.any() and self.config.oov_handling == "error":
            first = [tokens[i] for i in np.flatnonzero(missing)[:5]]
            raise InputError(f"{int(missing.sum())} words have no vector in {Path(self.config.vector_path).name}, "
                             f"e.g. {first}; oov_handling='error'. Use 'zero' or 'copy_prev' to go on.")
        table = np.asarray(vectors.vectors, dtype=np.float32)
        rows = np.zeros((len(tokens), table.shape[1]), dtype=np.float32)
        rows[~missing] = table[index[~missing]]
        kept = np.ones(len(tokens), dtype=bool)
        if self.config.oov_handling == "copy_prev" and missing.any():
            # index of the last known word at or before each position (-1: none yet -> zeros)
            last_known = np.maximum.accumulate(np.where(~missing, np.arange(len(tokens)), -1))
            source = np.where(last_known >= 0, last_known, 0)
            rows = np.where((last_known >= 0)[:, None], rows[source], 0.0).astype(np.float32)
        elif self.config.oov_handling == "skip":
            kept = ~missing
            rows = rows[kept]
        if self.config.l2_normalize_tokens:
            norms = np.linalg.norm(rows, axis=1, keepdims=True)
            rows = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
        if missing.any():
            logger.warning("%d of %d words have no vector in %s (oov_handling=%r).", int(missing.sum()),
                           len(tokens), Path(self.config.vector_path).name, self.config.oov_handling)
        return rows, kept

    def extract_features(self, stimuli: Union[str, Sequence[Any]]) -> np.ndarray:
        """The reference's call: (n_tokens, dim) float32 for a list of words (or one string)."""
        return self.lookup(stimuli)[0]

    def extract_words(self, words: Sequence[str], times: Any, progress: Optional[ProgressCallback] = None,
                      cancel: Optional[CancelFlag] = None, label: str = "") -> StoryFeatures:
        """One layer (n_words, dim) at the word times (n_words,) s; cached by content."""
        from encoding_core.features.cache import audio_content_hash, load_or_compute_fields

        times = np.asarray(times, dtype=np.float64).reshape(-1)
        if len(times) != len(words):
            raise InputError(f"{label or 'story'}: {len(words)} words but {len(times)} word times.")
        c = self.config
        binary, no_header = _infer_format(Path(c.vector_path).expanduser(), c.binary, c.no_header)
        fields = {"format": 1, "modality": self.modality, "model_name": Path(c.vector_path).name,
                  "vectors_sha256": audio_content_hash(Path(c.vector_path).expanduser()), "binary": binary,
                  "no_header": no_header, "lowercase": bool(c.lowercase), "oov_handling": c.oov_handling,
                  "l2_normalize_tokens": bool(c.l2_normalize_tokens), "words_sha256": words_fingerprint(words, times)}

        def compute() -> tuple[np.ndarray, np.ndarray, dict]:
            rows, kept = self.lookup(list(words))
            return rows[None], times[kept], {"n_missing": self.last_oov_count, "n_words": len(words)}

        return load_or_compute_fields(fields, self.cache_dir, compute, subdir=CACHE_SUBDIR, source=label or "words")

    def extract_story(self, story: Any, progress: Optional[ProgressCallback] = None,
                      cancel: Optional[CancelFlag] = None) -> StoryFeatures:
        return self.extract_words(story.words, story.data_times, progress=progress, cancel=cancel, label=story.name)
