"""What every feature extractor produces and the one place feature settings are checked.

``StoryFeatures`` holds all layers of one story at window times; extractors and the cache both
use it, so it lives below them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from encoding_core.common.errors import ConfigError, InputError
from encoding_core.config import ExperimentConfig, FeatureConfig


def coerce_feature_config(config: Union[dict, FeatureConfig, None]) -> tuple[FeatureConfig, Optional[int]]:
    """Build a validated FeatureConfig (+ the reference's ``layer`` key) from a dict or FeatureConfig."""
    if config is None:
        config = {}
    if isinstance(config, FeatureConfig):
        cfg, layer = dataclasses.replace(config), None
    elif isinstance(config, dict):
        allowed = {f.name for f in dataclasses.fields(FeatureConfig)} | {"layer", "disable_tqdm"}
        unknown = sorted(set(config) - allowed)
        if unknown:
            raise ConfigError(f"Unknown feature config key(s) {unknown}; allowed: {sorted(allowed)}.")
        values = dict(config)
        values.pop("disable_tqdm", None)  # the reference's progress-bar switch: nothing to switch here
        layer = values.pop("layer", None)
        try:
            cfg = FeatureConfig(**values)
        except TypeError as exc:
            raise ConfigError(f"Invalid feature config: {exc}") from None
    else:
        raise ConfigError(f"config must be a dict or FeatureConfig, got {type(config).__name__}.")
    if layer is not None and (not isinstance(layer, (int, np.integer)) or isinstance(layer, bool)):
        raise ConfigError(f"config['layer'] must be a 0-based integer layer index, got {layer!r}.")
    ExperimentConfig(features=cfg).validate()  # the one place feature settings are checked
    return cfg, (int(layer) if layer is not None else None)


@dataclass
class StoryFeatures:
    """All layers' features of one story.

    times: (n_windows,) window END times in seconds (word-level modalities: word times; TR
    times when ``tr_aligned``). ``layer(i)`` -> (n_windows, dim) float32.
    layers_data: one array per layer (possibly memory-mapped float16/float32 cache files).
    tr_aligned: the rows are already one per TR time of the story (word rate, custom arrays
    without times): the pipeline uses them as they are, without downsampling.
    """

    times: np.ndarray
    layers_data: list[np.ndarray]
    model_name: str
    key: str = ""
    from_cache: bool = False
    meta: dict = field(default_factory=dict)
    tr_aligned: bool = False

    @property
    def n_layers(self) -> int:
        return len(self.layers_data)

    @property
    def n_windows(self) -> int:
        return int(self.times.shape[0])

    @property
    def dim(self) -> int:
        return int(self.layers_data[0].shape[1]) if self.layers_data else 0

    def layer(self, index: int) -> np.ndarray:
        """Features of one 0-based encoder layer, (n_windows, dim) float32 (negative counts from the end)."""
        if not -self.n_layers <= int(index) < self.n_layers:
            raise InputError(f"layer {index} does not exist: {self.model_name} has layers 0..{self.n_layers - 1}.")
        return np.asarray(self.layers_data[int(index)], dtype=np.float32)


def words_fingerprint(words: Any, times: Any) -> str:
    """sha256 of a story's words and their times (seconds): the content part of a word-level cache key."""
    payload = json.dumps([[str(w) for w in words], [round(float(t), 6) for t in np.asarray(times).reshape(-1)]])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def single_layer_features(rows: np.ndarray, times: np.ndarray, name: str, tr_aligned: bool = False,
                          meta: Optional[dict] = None) -> StoryFeatures:
    """StoryFeatures with one layer (n, dim) float32 at ``times`` (n,) seconds."""
    values = np.asarray(rows, dtype=np.float32)
    if values.ndim == 1:
        values = values[:, None]
    return StoryFeatures(times=np.asarray(times, dtype=np.float64).reshape(-1), layers_data=[values],
                         model_name=name, meta=dict(meta or {}), tr_aligned=tr_aligned)
