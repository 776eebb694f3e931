"""Low-level text features: the word rate (words per TR), the reference's ``wordrate`` modality.

The counts come from the assembly's words through one function,
:meth:`encoding_core.assembly.data_model.Story.word_rate` (words whose start lies in each TR);
they are already one row per TR, so they are not downsampled.
"""
from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from encoding_core.common.errors import InputError
from encoding_core.common.progress import CancelFlag, ProgressCallback
from encoding_core.features.base import StoryFeatures, single_layer_features


class WordRateFeatureExtractor:
    """Words per TR. config: ``{}`` (nothing is read, as the reference)."""

    modality = "wordrate"
    model_name = "wordrate"
    n_layers = 1

    def __init__(self, config: Optional[dict] = None, cache_dir: Any = None) -> None:
        self.config = dict(config or {}) if not hasattr(config, "model_name") else {}
        self.cache_dir = cache_dir

    def extract_features(self, stimuli: Union[list, np.ndarray]) -> np.ndarray:
        """The reference's call: precomputed counts (n,) or (n, 1) -> (n, 1) float."""
        values = np.asarray(stimuli, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2 or values.shape[1] != 1:
            raise InputError(f"word rates must be (n_trs,) or (n_trs, 1); got shape {values.shape}.")
        return values

    def extract_story(self, story: Any, progress: Optional[ProgressCallback] = None,
                      cancel: Optional[CancelFlag] = None, tr: Optional[float] = None) -> StoryFeatures:
        """(n_tr_times, 1) words per TR of a Story at its TR times (``tr_aligned``). tr: seconds
        (default: the median spacing of the story's TR times)."""
        times = np.asarray(story.tr_times, dtype=np.float64)
        if tr is None:
            if times.size < 2:
                raise InputError(f"Story {story.name!r} has one TR time; give tr= to compute the word rate.")
            tr = float(np.median(np.diff(times)))
        rates = story.word_rate(tr)
        return single_layer_features(rates, times, self.model_name, tr_aligned=True, meta={"tr": float(tr)})
