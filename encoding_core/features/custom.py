"""Your own features: arrays per story with their times (the ``custom`` modality).

Give them from Python as ``{"features": {story: (n, dim) array}, "times": {story: (n,) seconds}}``
or on disk as a folder of ``<story>.npz`` files, each holding ``features`` (n, dim) and
``times`` (n,) seconds (``path`` in the config; read with ``allow_pickle=False``). Rows with
times are downsampled to the TR grid like speech features; without ``times`` a story's rows
must be one per TR time and are used as they are. Not cached: they are already your data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np

from encoding_core.common.errors import ConfigError, InputError
from encoding_core.common.progress import CancelFlag, ProgressCallback
from encoding_core.features.base import StoryFeatures, single_layer_features


class CustomFeatureExtractor:
    """User arrays per story. config: ``features`` / ``times`` dicts, or ``path`` (folder of
    ``<story>.npz``), and an optional ``model_name`` (a label for runs)."""

    modality = "custom"
    n_layers = 1

    def __init__(self, config: Union[Mapping[str, Any], Any, None] = None, cache_dir: Any = None) -> None:
        if config is not None and hasattr(config, "custom_path"):  # our FeatureConfig
            config = {"path": config.custom_path}
        values = dict(config or {})
        self.features: Optional[Mapping[str, Any]] = values.get("features")
        self.times: Mapping[str, Any] = values.get("times") or {}
        self.path = Path(values["path"]).expanduser() if values.get("path") else None
        self.model_name = str(values.get("model_name") or (self.path.name if self.path else "custom"))
        self.cache_dir = cache_dir
        if self.features is None and self.path is None:
            raise ConfigError("The custom modality needs features= (story -> array) or path= (a folder of "
                              "<story>.npz files with 'features' and 'times').")
        if self.path is not None and not self.path.is_dir():
            raise ConfigError(f"custom features folder {str(self.path)!r} does not exist; give a folder of "
                              "<story>.npz files.")

    def _arrays(self, name: str) -> tuple[np.ndarray, Optional[np.ndarray]]:
        if self.features is not None:
            if name not in self.features:
                raise InputError(f"custom features have no array for story {name!r}; they cover "
                                 f"{sorted(self.features)}.")
            times = self.times.get(name)
            return np.asarray(self.features[name]), None if times is None else np.asarray(times, dtype=np.float64)
        file = self.path / f"{name}.npz"
        if not file.is_file():
            raise InputError(f"No custom features for story {name!r}: {file} is missing.")
        try:
            with np.load(file, allow_pickle=False) as data:
                if "features" not in data:
                    raise InputError(f"{file} holds {sorted(data.files)}; it needs 'features' (and 'times').")
                return np.asarray(data["features"]), (np.asarray(data["times"], dtype=np.float64)
                                                      if "times" in data else None)
        except (OSError, ValueError) as exc:
            raise InputError(f"Cannot read {file}: {exc}. Save it with np.savez(path, features=..., times=...).") from None

    def extract_story(self, story: Any, progress: Optional[ProgressCallback] = None,
                      cancel: Optional[CancelFlag] = None) -> StoryFeatures:
        """One layer (n, dim) at its times, or one row per TR time (``tr_aligned``) without times."""
        rows, times = self._arrays(story.name)
        if rows.ndim == 1:
            rows = rows[:, None]
        if rows.ndim != 2 or not np.issubdtype(rows.dtype, np.number):
            raise InputError(f"custom features of story {story.name!r} must be a numeric (n, dim) array; got "
                             f"{rows.dtype} {rows.shape}.")
        if times is None:
            n_trs = len(story.tr_times)
            if rows.shape[0] != n_trs:
                raise InputError(f"custom features of story {story.name!r} have {rows.shape[0]} rows and no times; "
                                 f"without times they must be one row per TR time ({n_trs}).")
            return single_layer_features(rows, story.tr_times, self.model_name, tr_aligned=True)
        if times.shape != (rows.shape[0],):
            raise InputError(f"custom features of story {story.name!r}: {rows.shape[0]} rows but times of shape "
                             f"{times.shape}; give one time (seconds) per row.")
        return single_layer_features(rows, times, self.model_name)
