"""encoding_core: voxelwise fMRI encoding models from speech-model features.

The public API mirrors the reference library's tutorial (``encoding`` -> ``encoding_core``)::

    from encoding_core import load_assembly, FeatureExtractorFactory, Downsampler
    from encoding_core import NestedCVModel, AbstractTrainer

Names are imported lazily so that ``import encoding_core`` stays fast (no torch import).
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Assembly": "assembly.data_model", "Story": "assembly.data_model", "Space": "assembly.data_model",
    "ExperimentConfig": "config",
    "EncodingCoreError": "common.errors",
    "load_assembly": "assembly.assembly_loader", "save_assembly": "assembly.assembly_loader",
    "map_audio": "assembly.audio", "apply_audio_map": "assembly.audio",
    "SpeechFeatureExtractor": "features", "FeatureExtractorFactory": "features",
    "Downsampler": "downsample.downsampling",
    "NestedCVModel": "models.nested_cv", "AbstractTrainer": "trainer",
    "run_experiment": "pipeline",
    "RunStore": "runstore",
}

__all__ = sorted(_LAZY)

# The reference library's module paths, so that its tutorial runs with only the import
# root renamed (``encoding.`` -> ``encoding_core.``). Each alias is a lazy module that
# imports its target on first attribute access.
_REFERENCE_MODULE_PATHS = {
}


class _ModuleAlias(types.ModuleType):
    def __init__(self, name: str, target: str) -> None:
        super().__init__(name, f"Alias of {target} (reference library module path).")
        self.__dict__["_target"] = target
        self.__path__: list[str] = []  # lets submodule aliases resolve below it

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self.__dict__["_target"]), attr)


for _alias, _target in _REFERENCE_MODULE_PATHS.items():
    sys.modules.setdefault(f"{__name__}.{_alias}", _ModuleAlias(f"{__name__}.{_alias}", f"{__name__}.{_target}"))


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'encoding_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
