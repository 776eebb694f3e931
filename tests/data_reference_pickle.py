"""Build pickles shaped like the reference library's (LITcoder ``encoding``) assemblies.

The reference package is not installed: throwaway classes are registered under the
reference's module names (``types.ModuleType`` + ``sys.modules``) only while pickling,
then removed, exactly as a user's file would be produced by the reference.
"""
from __future__ import annotations

import contextlib
import dataclasses
import pickle
import sys
import types
from typing import Any, Iterator, Optional

import numpy as np

MODULES = ("encoding", "encoding.assembly", "encoding.assembly.assemblies", "encoding.assembly.story_data")


@contextlib.contextmanager
def reference_classes() -> Iterator[tuple[type, type]]:
    """Yield (StoryData, SimpleNeuroidAssembly) registered under the reference module names."""
    saved = {name: sys.modules.get(name) for name in MODULES}
    modules = {name: types.ModuleType(name) for name in MODULES}

    @dataclasses.dataclass
    class StoryData:
        name: str
        brain_data: np.ndarray
        stimuli: list
        split_indices: list
        tr_times: np.ndarray
        data_times: np.ndarray
        temporal_baseline: Optional[np.ndarray] = None
        word_rates: Optional[np.ndarray] = None
        words: Optional[list] = None
        mask_indices: Optional[np.ndarray] = None
        audio_path: Optional[str] = None

    class SimpleNeuroidAssembly:
        def __init__(self, story_data_list: list, validation_method: str, is_volume: bool) -> None:
            self.stories = [s.name for s in story_data_list]
            self.story_data = {s.name: s for s in story_data_list}
            self.validation_method = validation_method
            self.is_volume = is_volume
            self.data = np.vstack([s.brain_data for s in story_data_list])
            self.dims = ("presentation", "neuroid")
            self.shape = self.data.shape
            self.coords = {"story_id": {"dim": "presentation", "values": np.repeat(
                self.stories, [len(s.stimuli) for s in story_data_list])}}

    StoryData.__module__, StoryData.__qualname__ = "encoding.assembly.story_data", "StoryData"
    SimpleNeuroidAssembly.__module__ = "encoding.assembly.assemblies"
    SimpleNeuroidAssembly.__qualname__ = "SimpleNeuroidAssembly"
    modules["encoding.assembly.story_data"].StoryData = StoryData
    modules["encoding.assembly.assemblies"].SimpleNeuroidAssembly = SimpleNeuroidAssembly
    sys.modules.update(modules)
    try:
        yield StoryData, SimpleNeuroidAssembly
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def make_story_data(StoryData: type, name: str, n_trs: int = 20, n_voxels: int = 30, seed: int = 0,
                    words: Any = "default", **overrides: Any) -> Any:
    """A StoryData like the reference's LeBel assembly: TR times longer than the responses."""
    gen = np.random.default_rng(seed)
    words = ["so", "sp", "", "{LG}", "i", "went"] if words == "default" else words
    labels = [str(w) for w in words or []]
    fields = dict(
        name=name, brain_data=gen.standard_normal((n_trs, n_voxels)).astype(np.float32),
        stimuli=[" ".join(labels[: i + 1]) for i in range(len(labels))], split_indices=list(range(len(labels))),
        tr_times=np.arange(n_trs + 15) * 2.0 - 10.0, data_times=np.linspace(0.5, 30.0, len(labels)),
        words=words, audio_path=None,
    )
    fields.update(overrides)
    return StoryData(**fields)


def reference_pickle_bytes(stories: list[dict], protocol: int = 4, is_volume: bool = False) -> bytes:
    """Pickle a SimpleNeuroidAssembly of stories given as make_story_data keyword dicts."""
    with reference_classes() as (StoryData, SimpleNeuroidAssembly):
        records = [make_story_data(StoryData, **kw) for kw in stories]
        return pickle.dumps(SimpleNeuroidAssembly(records, "outer", is_volume), protocol=protocol)
