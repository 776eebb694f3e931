"""encoding_core: voxelwise fMRI encoding models from speech-model features.

The public API mirrors the reference library's tutorial (``encoding`` -> ``encoding_core``)::

    from encoding_core import load_assembly, FeatureExtractorFactory, Downsampler
    from encoding_core import NestedCVModel, AbstractTrainer

Names are imported lazily so that ``import encoding_core`` stays fast (no torch import).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Assembly": "assembly", "Story": "assembly", "Space": "assembly",
    "ExperimentConfig": "config",
    "EncodingCoreError": "errors",
    "load_assembly": "assembly_io", "save_assembly": "assembly_io",
    "map_audio": "audio", "apply_audio_map": "audio",
    "SpeechFeatureExtractor": "features", "FeatureExtractorFactory": "features",
    "Downsampler": "downsample",
    "NestedCVModel": "trainer", "AbstractTrainer": "trainer",
    "run_experiment": "pipeline",
    "RunStore": "runstore",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'encoding_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
