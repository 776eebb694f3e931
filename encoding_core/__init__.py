"""encoding_core: voxelwise fMRI encoding models from speech-model features.

The public API mirrors the reference library's tutorial (``encoding`` -> ``encoding_core``)::

    from encoding_core import load_assembly, FeatureExtractorFactory, Downsampler
    from encoding_core import NestedCVModel, AbstractTrainer

The reference's module paths are real modules here: ``encoding_core.assembly.assembly_loader``,
``encoding_core.features.factory``, ``encoding_core.downsample.downsampling``,
``encoding_core.models.nested_cv``, ``encoding_core.trainer``.

The packages are the steps of the pipeline (see ``docs/architecture.md``): ``assembly`` (data) ->
``features`` -> ``downsample`` (alignment) -> ``models`` -> ``stats`` -> ``experiment`` (runs)
-> ``viz`` (figures); ``common`` holds the shared infrastructure, ``studio`` is the app-facing API.

Names are imported lazily so that ``import encoding_core`` stays fast (no torch import).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Assembly": "assembly.data_model", "Story": "assembly.data_model", "Space": "assembly.data_model",
    "load_assembly": "assembly.assembly_loader", "save_assembly": "assembly.assembly_loader",
    "map_audio": "assembly.audio", "apply_audio_map": "assembly.audio",
    "projection_matrix": "assembly.projection", "project_assembly": "assembly.spaces",
    "ExperimentConfig": "config",
    "EncodingCoreError": "common.errors",
    "SpeechFeatureExtractor": "features.speech", "FeatureExtractorFactory": "features.factory",
    "LanguageModelFeatureExtractor": "features.language_model",
    "StaticEmbeddingFeatureExtractor": "features.embeddings",
    "WordRateFeatureExtractor": "features.lowlevel_features", "FIR": "features.FIR_expander",
    "Downsampler": "downsample.downsampling",
    "NestedCVModel": "models.nested_cv",
    "banded_ridge_nested_cv": "models.banded_ridge", "BandedRidgeFit": "models.banded_ridge",
    "variance_partitioning": "models.variance_partitioning",
    "AbstractTrainer": "trainer",
    "run_experiment": "experiment.pipeline",
    "RunStore": "experiment.runstore",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'encoding_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
