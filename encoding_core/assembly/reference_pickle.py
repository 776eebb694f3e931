"""Import the reference library's pickled assembly without running code from the file.

The reference (LITcoder, package ``encoding``) stores an assembly as a plain pickle of
``encoding.assembly.assemblies.SimpleNeuroidAssembly`` holding
``encoding.assembly.story_data.StoryData`` records. ``pickle.load`` on such a file would
import and call whatever globals it names, so a hostile file could run any code.

:class:`RestrictedUnpickler` resolves globals from an allow-list only:

- the two reference classes -> inert placeholders that only collect their state;
- numpy array/dtype/scalar reconstruction (``_reconstruct``, ``_frombuffer``, ``ndarray``,
  ``dtype``, ``scalar``, numpy 1 and 2 module names), each wrapped to check its arguments;
- ``_codecs.encode`` (protocol 0-2 bytes), only as ``encode(str, "latin1")``;
- builtin containers (``dict``, ``list``, ``set``, ``frozenset``, ``tuple``, ``bytearray``,
  ``object`` for ``copyreg._reconstructor``) and ``collections.OrderedDict``.

Any other global raises :class:`~encoding_core.common.errors.UnsafePickleError` naming it,
before it is called. The file is read through a memory map, so a declared length beyond
the end of the file is reported as truncation instead of being allocated.

Conversion to our :class:`~encoding_core.assembly.Assembly`: words from ``words`` (the
reference's ``stimuli`` hold context strings; they are used only when ``words`` is
absent); empty labels and LeBel non-words are dropped together with their times.
``data_times`` holds one time per word in the reference (the word's time as produced by
the Huth-lab ``DataSequence``), so it is used as both onset and offset (our
``Story.data_times`` is then the same time); an ``(n_words, 2)`` array is read as
onset/offset pairs. The TR is the median step of ``tr_times`` unless ``tr=`` is given.

Split indices: the reference's LeBel data preparation stores ``split_indices`` as
``n_tr - 1`` boundaries (entry ``i`` = the number of words whose *start* is before the end of
TR ``i``), and the words' start times themselves are lost (only mid-times are kept). They are
converted to our convention (``Story.split_indices``: the first word of each TR, one per TR
time; TR 0 starts at word 0 as in the reference), re-indexed after dropping non-words, and
kept as ``Story.word_split_indices``; so a story gives the same split indices whether it is
loaded from this pickle or from the LeBel folder it was made from. Split indices of any
other shape are ignored (noted in ``provenance["ignored_split_indices"]``): they are then
computed from the word times.
"""
from __future__ import annotations

import collections
import io
import logging
import math
import mmap
import pickle
import pickletools
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from encoding_core.assembly.data_model import Assembly, Space, Story
from encoding_core.assembly.cleaning import clean_brain_data, optional_float, record_zeroed_columns
from encoding_core.common.errors import AssemblyFormatError, EncodingCoreError, UnsafePickleError
from encoding_core.assembly.textgrid import is_non_word

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
MAX_RECONSTRUCT_ELEMENTS = 1 << 20
"""numpy pickles create an empty array first; refuse anything but a tiny placeholder shape."""


class _PlaceholderObject:
    """An inert stand-in for a reference class: it only stores the state it is given."""

    __slots__ = ("state",)
    reference_name = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        merged: dict[str, Any] = {}
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            for part in state:
                if isinstance(part, dict):
                    merged.update(part)
        elif isinstance(state, dict):
            merged.update(state)
        elif state is not None:
            raise pickle.UnpicklingError(f"unexpected state of type {type(state).__name__} for "
                                         f"{self.reference_name}")
        self.state = merged


class ReferenceAssembly(_PlaceholderObject):
    """State of ``encoding.assembly.assemblies.SimpleNeuroidAssembly``."""

    __slots__ = ()
    reference_name = "SimpleNeuroidAssembly"


class ReferenceStoryData(_PlaceholderObject):
    """State of ``encoding.assembly.story_data.StoryData``."""

    __slots__ = ()
    reference_name = "StoryData"

_PLACEHOLDERS = (ReferenceAssembly, ReferenceStoryData)


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocols 0/1), only for placeholders built on ``object``."""
    if cls in _PLACEHOLDERS and base is object and state is None:
        return object.__new__(cls)
    raise pickle.UnpicklingError("copyreg._reconstructor is only allowed for the reference classes")


def _safe_numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not _NdarrayToken:
        raise pickle.UnpicklingError("numpy _reconstruct is only allowed for numpy.ndarray")
    try:
        n_elements = math.prod(int(n) for n in (shape if isinstance(shape, tuple) else (shape,)))
    except (TypeError, ValueError):
        raise pickle.UnpicklingError("numpy _reconstruct got an invalid shape") from None
    if n_elements > MAX_RECONSTRUCT_ELEMENTS or n_elements < 0:
        raise pickle.UnpicklingError(f"numpy _reconstruct declares {n_elements} elements")
    return np._core.multiarray._reconstruct(np.ndarray, shape, dtype)


def _safe_frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's protocol-5 path: ``frombuffer(buffer, dtype).reshape(shape, order)``."""
    if not isinstance(buffer, (bytes, bytearray, memoryview, pickle.PickleBuffer)):
        raise pickle.UnpicklingError("numpy _frombuffer needs a bytes buffer")
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("numpy _frombuffer needs a plain (non-object) dtype")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order).copy()


def _safe_scalar(dtype: Any, *args: Any) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("numpy scalar needs a plain (non-object) dtype")
    return np._core.multiarray.scalar(dtype, *args)


def _safe_codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is only allowed as encode(str, 'latin1')")
    return text.encode("latin-1")


class _NdarrayToken:
    """Stands for ``numpy.ndarray`` in a pickle: only usable as ``_reconstruct``'s first
    argument (calling ``numpy.ndarray(shape)`` directly could allocate any size)."""


_REFERENCE_CLASSES = {
    ("encoding.assembly.assemblies", "SimpleNeuroidAssembly"): ReferenceAssembly,
    ("encoding.assembly.story_data", "StoryData"): ReferenceStoryData,
    ("encoding.assembly.assembly_generator", "StoryData"): ReferenceStoryData,
    ("encoding.assembly.base_processor", "StoryData"): ReferenceStoryData,
}
_NUMPY = {
    "_reconstruct": _safe_numpy_reconstruct, "_frombuffer": _safe_frombuffer, "scalar": _safe_scalar,
}
_ALLOWED: dict[tuple[str, str], Any] = {
    **_REFERENCE_CLASSES,
    **{(module, name): func for module in ("numpy.core.multiarray", "numpy._core.multiarray")
       for name, func in _NUMPY.items() if name != "_frombuffer"},
    **{(module, "_frombuffer"): _safe_frombuffer for module in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): _NdarrayToken,
    ("numpy", "dtype"): np.dtype,
    ("copyreg", "_reconstructor"): _safe_reconstructor,
    ("copy_reg", "_reconstructor"): _safe_reconstructor,
    ("_codecs", "encode"): _safe_codecs_encode,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{(module, name): getattr(__import__("builtins"), name)
       for module in ("builtins", "__builtin__")
       for name in ("dict", "list", "set", "frozenset", "tuple", "bytearray", "object")},
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only resolves the allow-listed globals (see module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise UnsafePickleError(f"the pickle names the global {module}.{name}, which is not allowed; "
                                    "nothing from the file was run")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def safe_load_pickle(path: PathLike) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; returns the placeholder tree.

    The opcode stream is first scanned (``pickletools.genops``) so that truncation and
    declared lengths past the end of the file are refused before anything is built.
    Raises UnsafePickleError naming the offending global and the file, or
    AssemblyFormatError for empty, truncated or corrupt pickles.
    """
    path = Path(path)
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise AssemblyFormatError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    with handle:
        try:
            size = handle.seek(0, io.SEEK_END)
            if size == 0:
                raise AssemblyFormatError(f"{path} is empty; it is not a pickled assembly.")
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise AssemblyFormatError(f"Cannot read {path}: {exc}.") from None
        try:
            try:
                for _ in pickletools.genops(_BufferReader(mapped)):
                    pass
            except (ValueError, EOFError) as exc:
                raise AssemblyFormatError(f"{path} is not a valid pickle or is truncated ({exc}); "
                                          "re-export the assembly.") from None
            return RestrictedUnpickler(_BufferReader(mapped), fix_imports=False).load()
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"Refusing to load {path}: {exc}. Only reference assemblies "
                                    "(SimpleNeuroidAssembly/StoryData with numpy arrays) can be imported.") from None
        except EncodingCoreError:
            raise
        except (EOFError, pickle.UnpicklingError) as exc:
            raise AssemblyFormatError(f"{path} is not a valid pickle or is truncated ({exc}); "
                                      "re-export the assembly.") from None
        except MemoryError:
            raise AssemblyFormatError(f"{path}: the pickle asks for more memory than is available; "
                                      "the file is damaged.") from None
        except Exception as exc:  # any other failure inside the unpickler means a corrupt stream
            raise AssemblyFormatError(f"{path} is not a valid reference pickle "
                                      f"({type(exc).__name__}: {exc}).") from None
        finally:
            mapped.close()


class _BufferReader:
    """A read-only file object over a memory map; reads never go (or allocate) past its end."""

    def __init__(self, data: mmap.mmap) -> None:
        self.data = data
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n is None or n < 0 else min(len(self.data), self.pos + n)
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(chunk)] = chunk
        return len(chunk)

    def readline(self) -> bytes:
        newline = self.data.find(b"\n", self.pos)
        return self.read(len(self.data) - self.pos if newline < 0 else newline + 1 - self.pos)


def _as_float_array(value: Any, what: str, story: str, path: Path, ndim: tuple[int, ...]) -> np.ndarray:
    if isinstance(value, list):
        try:
            value = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise AssemblyFormatError(f"{path}: {what} of story {story!r} is not a list of numbers.") from None
    if not isinstance(value, np.ndarray):
        raise AssemblyFormatError(f"{path}: {what} of story {story!r} is {type(value).__name__}, "
                                  "expected a numpy array.")
    if value.dtype.kind not in "fiu" or value.ndim not in ndim:
        raise AssemblyFormatError(f"{path}: {what} of story {story!r} has dtype {value.dtype} and shape "
                                  f"{value.shape}; expected {' or '.join(f'{n}-D' for n in ndim)} numbers.")
    return value


def _words_of(state: dict[str, Any], story: str, path: Path) -> list[str]:
    words = state.get("words")
    if words is None:
        words = state.get("stimuli")
    if words is None:
        return []
    if isinstance(words, np.ndarray):
        words = words.tolist()
    if not isinstance(words, (list, tuple)) or not all(isinstance(w, str) for w in words):
        raise AssemblyFormatError(f"{path}: the words of story {story!r} must be a list of strings.")
    return [str(w) for w in words]


def _converted_split_indices(value: Any, n_tr_times: int, keep: np.ndarray) -> tuple[Optional[np.ndarray], str]:
    """The reference's boundary split indices -> ours over the kept words, or (None, why not).

    ``value``: ``n_tr_times - 1`` non-decreasing integers in ``[0, len(keep)]`` (entry ``i`` =
    words starting before the end of TR ``i``). Ours: ``[0, *value]`` re-indexed through
    ``keep`` (the words kept after dropping non-words), shape ``(n_tr_times,)``.
    """
    if value is None:
        return None, ""
    try:
        split = np.asarray(value)
    except (TypeError, ValueError):
        return None, f"not an array ({type(value).__name__})"
    if split.dtype.kind == "f" and split.size and np.all(np.isfinite(split)) and np.all(split == np.round(split)):
        split = split.astype(np.int64)
    if split.ndim != 1 or split.dtype.kind not in "iu":
        return None, f"shape {split.shape}, dtype {split.dtype}: not 1-D integers"
    if split.size != n_tr_times - 1:
        return None, (f"{split.size} entries, not the {n_tr_times - 1} boundaries (n_tr_times - 1) of the "
                      "reference's LeBel preparation")
    if split.size and (np.any(np.diff(split) < 0) or split[0] < 0 or split[-1] > keep.size):
        return None, f"not non-decreasing word indices between 0 and {keep.size}"
    kept_before = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)  # kept words among the first k
    return kept_before[np.concatenate([[0], split.astype(np.int64)])], ""


def _story_from_state(state: dict[str, Any], fallback_name: str, path: Path) -> tuple[Story, int, int, str]:
    """Build a Story from a StoryData state; returns (story, n_dropped_non_words, n_zeroed_columns,
    why the stored split indices were ignored or "")."""
    name = state.get("name", fallback_name)
    if not isinstance(name, str) or not name:
        raise AssemblyFormatError(f"{path}: a StoryData has no valid name ({name!r}).")
    brain = state.get("brain_data")
    if not isinstance(brain, np.ndarray) or brain.ndim != 2 or brain.dtype.kind != "f":
        detail = f"dtype {brain.dtype}, shape {brain.shape}" if isinstance(brain, np.ndarray) else type(brain).__name__
        raise AssemblyFormatError(f"{path}: brain_data of story {name!r} must be a 2-D float array (TRs x "
                                  f"voxels), got {detail}.")
    brain, n_zeroed = clean_brain_data(brain, name, path)
    tr_times = _as_float_array(state.get("tr_times"), "tr_times", name, path, (1,))
    words = _words_of(state, name, path)
    times = state.get("data_times")
    if words:
        if times is None:
            raise AssemblyFormatError(f"{path}: story {name!r} has words but no data_times.")
        times = _as_float_array(times, "data_times", name, path, (1, 2))
        if times.shape[0] != len(words) or (times.ndim == 2 and times.shape[1] != 2):
            raise AssemblyFormatError(f"{path}: story {name!r} has {len(words)} words but data_times of "
                                      f"shape {times.shape}; they must match one to one.")
        onsets = times[:, 0] if times.ndim == 2 else times
        offsets = times[:, 1] if times.ndim == 2 else times
    else:
        onsets = offsets = np.zeros(0)
    keep = np.array([not is_non_word(w) for w in words], dtype=bool)
    audio_path = state.get("audio_path")
    if audio_path is not None and not isinstance(audio_path, str):
        raise AssemblyFormatError(f"{path}: audio_path of story {name!r} must be text, got "
                                  f"{type(audio_path).__name__}.")
    split, ignored = _converted_split_indices(state.get("split_indices"), tr_times.size, keep)
    story = Story(name=name, brain_data=brain, tr_times=tr_times,
                  words=[w.strip() for w, k in zip(words, keep) if k],
                  word_onsets=np.asarray(onsets, dtype=np.float64)[keep] if words else onsets,
                  word_offsets=np.asarray(offsets, dtype=np.float64)[keep] if words else offsets,
                  audio_path=audio_path or None, word_split_indices=split)
    return story, int((~keep).sum()), n_zeroed, ignored


def load_reference_pickle(path: PathLike, tr: Optional[float] = None, subject: Optional[str] = None,
                          stories: Optional[list[str]] = None, test_story: Optional[str] = None) -> Assembly:
    """Import the reference's pickled ``SimpleNeuroidAssembly`` as an :class:`Assembly`.

    No code from the file runs (see the module docstring). ``tr`` (seconds) overrides the
    median step of ``tr_times``; ``subject`` defaults to a ``UTSxx``-like part of the file
    name, else its stem; ``stories`` picks and orders stories. Raises UnsafePickleError or
    AssemblyFormatError naming the file.
    """
    path = Path(path)
    tr = optional_float(tr, "tr")
    root = safe_load_pickle(path)
    if not isinstance(root, ReferenceAssembly):
        raise AssemblyFormatError(f"{path} holds a {type(root).__name__}, not the reference's "
                                  "SimpleNeuroidAssembly; it is not a reference assembly pickle.")
    state = root.state
    story_data = state.get("story_data")
    if not isinstance(story_data, dict) or not story_data:
        raise AssemblyFormatError(f"{path}: the assembly has no story_data dictionary (or it is empty).")
    order = state.get("stories")
    if isinstance(order, np.ndarray):
        order = order.tolist()
    if not isinstance(order, list) or sorted(map(str, order)) != sorted(map(str, story_data)):
        order = list(story_data)
    if stories:
        missing = [s for s in stories if s not in story_data]
        if missing:
            raise AssemblyFormatError(f"{path}: stories {missing} are not in the assembly; it has {order}.")
        order = list(stories)
    provenance: dict[str, Any] = {"source": str(path), "loader": "reference pickle",
                                  "validation_method": state.get("validation_method"),
                                  "is_volume": bool(state.get("is_volume", False))}
    loaded = []
    try:
        for key in order:
            record = story_data[key]
            if not isinstance(record, ReferenceStoryData):
                raise AssemblyFormatError(f"{path}: story_data[{key!r}] is a {type(record).__name__}, "
                                          "not a StoryData.")
            story, n_dropped, n_zeroed, ignored = _story_from_state(record.state, str(key), path)
            if n_dropped:
                provenance.setdefault("dropped_non_words", {})[story.name] = n_dropped
            if ignored:
                provenance.setdefault("ignored_split_indices", {})[story.name] = ignored
            record_zeroed_columns(provenance, story.name, n_zeroed)
            loaded.append(story)
        if tr is None:
            steps = np.concatenate([np.diff(s.tr_times) for s in loaded])
            if steps.size == 0:
                raise AssemblyFormatError(f"{path}: cannot infer the TR from single TR times; pass tr= (seconds).")
            tr = float(np.median(steps))
        n_columns = loaded[0].n_voxels
        space = Space.infer(n_columns)
        if provenance["is_volume"] and space.kind == "unknown":
            provenance["note"] = "volume data without a mask in the pickle: space unknown"
        name = subject or _subject_from_name(path)
        return Assembly(subject=name, tr=tr, stories_list=loaded, space=space, provenance=provenance,
                        test_story=test_story)
    except AssemblyFormatError as exc:
        if str(path) in str(exc):
            raise
        raise AssemblyFormatError(f"{path}: {exc}") from None


def _subject_from_name(path: Path) -> str:
    import re

    match = re.search(r"(uts\d+|sub-?[a-z0-9]+)", path.stem, flags=re.IGNORECASE)
    return match.group(1).upper() if match else path.stem
