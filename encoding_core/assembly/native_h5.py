"""Our native assembly format: one schema-versioned HDF5 file.

Layout (schema_version 2)::

    /                      attrs: format="encoding_core.assembly", schema_version=2,
                                  subject, tr (s), simulated, test_story ("" = none),
                                  provenance (JSON string)
    /space                 attrs: kind, name, template ("" = unknown);
                           datasets mask (uint8, 3-D), affine (4x4) for volume and
                           subject_surface spaces
    /space/surfaces        subject_surface only; attrs: subject, transform, mask_type,
                           source, sampling (JSON)
        <type>/<hemi>/coordinates  (n, 3) float mm, type in pia/wm/inflated, hemi left/right
        <type>/<hemi>/faces        (f, 3) int
    /stories/<i>           i = 0, 1, ... (story order); attrs: name, audio_path (absent = None)
        brain_data         (n_trs, n_voxels) float32, chunked along TRs, gzip + shuffle
        tr_times           (n_trs_times,) float64 seconds from sound onset
        word_onsets        (n_words,) float64 seconds
        word_offsets       (n_words,) float64 seconds
        words              (n_words,) variable-length UTF-8 strings
        repeats            optional (n_repeats, n_trs, n_voxels) float32
        word_split_indices optional (n_trs_times,) int64, first word of each TR as given by the
                           source (reference pickles); absent = computed from word_onsets

Version 1 files (no template, no subject surfaces) are read as before.

Reading checks every declared shape and dtype *before* reading any data, so a corrupt
or hostile file cannot make us allocate absurd amounts of memory; any problem becomes an
:class:`~encoding_core.common.errors.AssemblyFormatError` naming the file. Stories are read one
at a time (:func:`load_story`, :class:`NativeAssemblyReader`) so loading one story never
reads the others.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from encoding_core.assembly.data_model import (CORTICAL_SURFACE_TYPES, HEMISPHERES, Assembly, CorticalSurfaces,
                                               Space, Story)
from encoding_core.assembly.cleaning import clean_brain_data, record_zeroed_columns
from encoding_core.common.errors import AssemblyFormatError, EncodingCoreError, InputError
from encoding_core.common.storage import atomic_output, json_default

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
FORMAT_NAME = "encoding_core.assembly"
SCHEMA_VERSION = 2
"""2 added the volume ``template`` and the ``subject_surface`` space; version 1 files still load."""
MAX_ELEMENTS = 2 ** 33
"""Refuse any dataset declaring more elements than this (32 GiB of float32)."""
CHUNK_BYTES = 1 << 20


_json_default = json_default


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunk along the TR axis (second to last): about CHUNK_BYTES of float32 per chunk."""
    row_bytes = 4 * shape[-1]
    rows = int(min(shape[-2], max(1, CHUNK_BYTES // max(row_bytes, 1))))
    return (1,) * (len(shape) - 2) + (rows, shape[-1])


def write_native(assembly: Assembly, path: PathLike) -> Path:
    """Write ``assembly`` to ``path`` (HDF5, layout in the module docstring), atomically."""
    import h5py

    path = Path(path)
    try:
        provenance = json.dumps(assembly.provenance, default=_json_default, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"Cannot save {path}: the assembly's provenance is not JSON-serialisable ({exc}); "
                         "keep only strings, numbers, lists and dicts in it.") from None
    with atomic_output(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.attrs.update({
                "format": FORMAT_NAME, "schema_version": SCHEMA_VERSION, "subject": assembly.subject,
                "tr": float(assembly.tr), "simulated": bool(assembly.simulated),
                "test_story": assembly.test_story or "", "provenance": provenance,
            })
            _write_space(h5.create_group("space"), assembly.space)
            stories = h5.create_group("stories")
            for index, story in enumerate(assembly.stories_list):
                group = stories.create_group(str(index))
                group.attrs["name"] = story.name
                if story.audio_path is not None:
                    group.attrs["audio_path"] = str(story.audio_path)
                group.create_dataset("brain_data", data=story.brain_data, chunks=_chunks(story.brain_data.shape),
                                     compression="gzip", compression_opts=1, shuffle=True)
                group.create_dataset("tr_times", data=story.tr_times)
                group.create_dataset("word_onsets", data=story.word_onsets)
                group.create_dataset("word_offsets", data=story.word_offsets)
                group.create_dataset("words", data=np.array(story.words, dtype=object),
                                     shape=(len(story.words),), dtype=h5py.string_dtype("utf-8"))
                if story.repeats is not None:
                    group.create_dataset("repeats", data=story.repeats, chunks=_chunks(story.repeats.shape),
                                         compression="gzip", compression_opts=1, shuffle=True)
                if story.word_split_indices is not None:
                    group.create_dataset("word_split_indices", data=story.word_split_indices.astype(np.int64))
    logger.info("Saved assembly %s (%d stories) to %s", assembly.subject, len(assembly.stories_list), path)
    return path


def _write_space(group: Any, space: Space) -> None:
    group.attrs.update({"kind": space.kind, "name": space.name, "template": space.template or ""})
    if space.mask is not None:
        group.create_dataset("mask", data=space.mask.astype(np.uint8), compression="gzip")
    if space.affine is not None:
        group.create_dataset("affine", data=np.asarray(space.affine, dtype=np.float64))
    surfaces = space.surfaces
    if surfaces is not None:
        folder = group.create_group("surfaces")
        folder.attrs.update({"subject": surfaces.subject, "transform": surfaces.transform,
                             "mask_type": surfaces.mask_type, "source": surfaces.source,
                             "sampling": json.dumps(surfaces.sampling, default=_json_default)})
        for kind, hemis in surfaces.meshes.items():
            for hemi, (coords, faces) in hemis.items():
                mesh = folder.create_group(f"{kind}/{hemi}")
                mesh.create_dataset("coordinates", data=coords, compression="gzip", shuffle=True)
                mesh.create_dataset("faces", data=faces, compression="gzip", shuffle=True)


def _physical_memory_bytes() -> Optional[int]:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


class NativeAssemblyReader:
    """An open native assembly file: header read and checked, stories read on demand.

    Use as a context manager::

        with NativeAssemblyReader(path) as reader:
            reader.story_names          # in stored order
            story = reader.read_story("story0")
    """

    def __init__(self, path: PathLike) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise AssemblyFormatError(f"Assembly file {self.path} does not exist or is not a file.")
        try:
            if not h5py.is_hdf5(str(self.path)):
                raise AssemblyFormatError(f"{self.path} is not an HDF5 file; expected an assembly saved by "
                                          "encoding_core (save_assembly).")
            self._h5 = h5py.File(self.path, "r")
        except EncodingCoreError:
            raise
        except Exception as exc:  # h5py raises OSError/RuntimeError/... for damaged files
            raise AssemblyFormatError(f"{self.path} cannot be opened as HDF5 (truncated or damaged?): "
                                      f"{type(exc).__name__}: {exc}") from None
        try:
            self._read_header()
        except AssemblyFormatError as exc:
            self.close()
            raise self._named(exc) from None
        except EncodingCoreError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise AssemblyFormatError(f"{self.path}: the assembly header is damaged "
                                      f"({type(exc).__name__}: {exc}).") from None

    # -- context manager ---------------------------------------------------------
    def __enter__(self) -> "NativeAssemblyReader":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        h5 = getattr(self, "_h5", None)
        if h5 is not None:
            try:
                h5.close()
            except Exception:  # closing a damaged file must not hide the real error
                logger.debug("Closing %s failed", self.path, exc_info=True)
            self._h5 = None

    # -- header --------------------------------------------------------------------
    def _fail(self, what: str) -> AssemblyFormatError:
        return AssemblyFormatError(f"{self.path}: {what}")

    def _named(self, exc: AssemblyFormatError) -> AssemblyFormatError:
        """The same error, with the file name in front if the message lacks it."""
        return exc if str(self.path) in str(exc) else type(exc)(f"{self.path}: {exc}")

    def _attr(self, obj: Any, key: str, kind: type, required: bool = True, default: Any = None) -> Any:
        if key not in obj.attrs:
            if required:
                raise self._fail(f"missing attribute {key!r} on {obj.name}; the file is not a complete "
                                 "encoding_core assembly.")
            return default
        value = obj.attrs[key]
        if isinstance(value, np.ndarray) and value.shape == ():
            value = value[()]
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise self._fail(f"attribute {key!r} on {obj.name} is not valid UTF-8 text.") from None
        if kind is str:
            if not isinstance(value, str):
                raise self._fail(f"attribute {key!r} on {obj.name} must be text, got {type(value).__name__}.")
            return value
        if kind is bool:
            if not isinstance(value, (bool, np.bool_, int, np.integer)) or int(value) not in (0, 1):
                raise self._fail(f"attribute {key!r} on {obj.name} must be a boolean, got {value!r}.")
            return bool(value)
        if kind is int:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise self._fail(f"attribute {key!r} on {obj.name} must be an integer, got {value!r}.")
            return int(value)
        if kind is float:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise self._fail(f"attribute {key!r} on {obj.name} must be a number, got {value!r}.")
            return float(value)
        raise TypeError(kind)

    def _read_header(self) -> None:
        h5 = self._h5
        fmt = self._attr(h5, "format", str)
        if fmt != FORMAT_NAME:
            raise self._fail(f"format attribute is {fmt!r}, expected {FORMAT_NAME!r}; this HDF5 file is "
                             "not an encoding_core assembly.")
        version = self._attr(h5, "schema_version", int)
        if version > SCHEMA_VERSION:
            raise self._fail(f"written by a newer version of encoding_core (schema_version {version}, this "
                             f"version reads up to {SCHEMA_VERSION}); upgrade encoding_core.")
        if version < 1:
            raise self._fail(f"schema_version {version} is invalid (must be >= 1).")
        self.subject = self._attr(h5, "subject", str)
        self.tr = self._attr(h5, "tr", float)
        if not (math.isfinite(self.tr) and self.tr > 0):
            raise self._fail(f"tr attribute is {self.tr}; it must be a positive number of seconds.")
        self.simulated = self._attr(h5, "simulated", bool)
        self.test_story = self._attr(h5, "test_story", str, required=False, default="") or None
        provenance_text = self._attr(h5, "provenance", str, required=False, default="{}")
        try:
            self.provenance = json.loads(provenance_text)
        except json.JSONDecodeError as exc:
            raise self._fail(f"provenance attribute is not valid JSON ({exc.msg}).") from None
        if not isinstance(self.provenance, dict):
            raise self._fail("provenance attribute must be a JSON object.")
        self.space = self._read_space()
        stories = h5.get("stories")
        if stories is None or not hasattr(stories, "keys"):
            raise self._fail("missing group 'stories'; the file is not a complete encoding_core assembly.")
        keys = list(stories.keys())
        if not keys:
            raise self._fail("the 'stories' group is empty; an assembly needs at least one story.")
        if sorted(keys, key=lambda k: (len(k), k)) != [str(i) for i in range(len(keys))]:
            raise self._fail(f"story groups must be named 0..{len(keys) - 1}, found {sorted(keys)[:10]}.")
        self._groups: dict[str, Any] = {}
        for index in range(len(keys)):
            group = stories[str(index)]
            if not hasattr(group, "keys"):
                raise self._fail(f"stories/{index} is not a group.")
            name = self._attr(group, "name", str)
            if not name or name in self._groups:
                raise self._fail(f"stories/{index} has an empty or repeated story name {name!r}.")
            self._groups[name] = group
        self.story_names = list(self._groups)
        if self.test_story is not None and self.test_story not in self._groups:
            raise self._fail(f"test_story {self.test_story!r} is not one of the stories {self.story_names}.")

    def _read_space(self) -> Space:
        group = self._h5.get("space")
        if group is None:
            raise self._fail("missing group 'space'.")
        kind = self._attr(group, "kind", str)
        name = self._attr(group, "name", str)
        template = self._attr(group, "template", str, required=False, default="") or None
        if kind == "surface":
            try:
                return Space.surface(name)
            except AssemblyFormatError as exc:
                raise self._fail(str(exc)) from None
        if kind in ("volume", "subject_surface"):
            if "mask" not in group:
                raise self._fail(f"a {kind} space needs a 'space/mask' dataset.")
            mask = self._checked_dataset(group, "mask", kinds="biuf", ndim=3)
            affine = None
            if "affine" in group:
                affine = self._checked_dataset(group, "affine", kinds="fiu", ndim=2)
                if affine.shape != (4, 4):
                    raise self._fail(f"space/affine must be 4x4, got {affine.shape}.")
                affine = affine[()]
            if kind == "volume":
                return Space.volume(mask[()].astype(bool), affine, template)
            return Space.subject_surface(name, mask[()].astype(bool), affine, self._read_surfaces(group))
        if kind == "unknown":
            return Space()
        raise self._fail(f"space kind {kind!r} is unknown; expected surface, volume, subject_surface or unknown.")

    def _read_surfaces(self, space_group: Any) -> CorticalSurfaces:
        group = space_group.get("surfaces")
        if group is None or not hasattr(group, "keys"):
            raise self._fail("a subject_surface space needs the group 'space/surfaces' (the subject's meshes).")
        try:
            sampling = json.loads(self._attr(group, "sampling", str, required=False, default="{}"))
        except json.JSONDecodeError as exc:
            raise self._fail(f"space/surfaces sampling attribute is not valid JSON ({exc.msg}).") from None
        if not isinstance(sampling, dict):
            raise self._fail("space/surfaces sampling attribute must be a JSON object.")
        meshes: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        for kind in CORTICAL_SURFACE_TYPES:
            for hemi in HEMISPHERES:
                mesh = group.get(f"{kind}/{hemi}")
                if mesh is None or not hasattr(mesh, "keys"):
                    raise self._fail(f"missing group space/surfaces/{kind}/{hemi}.")
                coords = self._checked_dataset(mesh, "coordinates", kinds="f", ndim=2)
                faces = self._checked_dataset(mesh, "faces", kinds="iu", ndim=2)
                meshes.setdefault(kind, {})[hemi] = (coords[()], faces[()])
        return CorticalSurfaces(subject=self._attr(group, "subject", str), meshes=meshes,
                                transform=self._attr(group, "transform", str, required=False, default=""),
                                mask_type=self._attr(group, "mask_type", str, required=False, default=""),
                                source=self._attr(group, "source", str, required=False, default=""),
                                sampling=sampling)

    def _checked_dataset(self, group: Any, key: str, kinds: str, ndim: int, story: str = "") -> Any:
        """Return the h5py dataset after checking existence, dtype kind, ndim and size (no data read)."""
        where = f"story {story!r} " if story else ""
        if key not in group:
            raise self._fail(f"{where}is missing dataset {group.name}/{key}.")
        ds = group[key]
        if not hasattr(ds, "dtype") or not hasattr(ds, "shape"):
            raise self._fail(f"{group.name}/{key} is not a dataset.")
        if ds.shape is None or len(ds.shape) != ndim:
            raise self._fail(f"{where}dataset {key} must be {ndim}-D, got shape {ds.shape}.")
        if kinds == "str":
            import h5py

            if h5py.check_string_dtype(ds.dtype) is None:
                raise self._fail(f"{where}dataset {key} must hold text, got dtype {ds.dtype}.")
        elif ds.dtype.kind not in kinds:
            raise self._fail(f"{where}dataset {key} has dtype {ds.dtype}; expected "
                             f"{'floating point numbers' if kinds == 'f' else 'numbers'}.")
        n_elements = math.prod(int(n) for n in ds.shape)
        if n_elements > MAX_ELEMENTS:
            raise self._fail(f"{where}dataset {key} declares shape {ds.shape} ({n_elements:.3g} elements), "
                             f"over the limit of {MAX_ELEMENTS:.3g}; the file is damaged.")
        memory = _physical_memory_bytes()
        n_bytes = n_elements * max(int(ds.dtype.itemsize), 1)
        if memory is not None and n_bytes > memory:
            raise self._fail(f"{where}dataset {key} needs {n_bytes / 2**30:.1f} GiB, more than this machine's "
                             f"{memory / 2**30:.1f} GiB of memory.")
        return ds

    # -- stories ---------------------------------------------------------------------
    def read_story(self, name: str) -> tuple[Story, int]:
        """Read one story; returns ``(story, n_all_nan_columns_zeroed)``."""
        if self._h5 is None:
            raise self._fail("the file is closed.")
        if name not in self._groups:
            raise InputError(f"{self.path} has no story {name!r}; its stories are {self.story_names}.")
        try:
            return self._read_story(name)
        except AssemblyFormatError as exc:
            raise self._named(exc) from None
        except EncodingCoreError:
            raise
        except Exception as exc:  # damaged chunks surface as OSError/RuntimeError/ValueError from h5py
            raise self._fail(f"story {name!r} cannot be read (damaged file?): {type(exc).__name__}: {exc}") from None

    def _read_story(self, name: str) -> tuple[Story, int]:
        group = self._groups[name]
        brain = self._checked_dataset(group, "brain_data", "f", 2, name)
        tr_times = self._checked_dataset(group, "tr_times", "fiu", 1, name)
        onsets = self._checked_dataset(group, "word_onsets", "fiu", 1, name)
        offsets = self._checked_dataset(group, "word_offsets", "fiu", 1, name)
        words = self._checked_dataset(group, "words", "str", 1, name)
        if not (onsets.shape == offsets.shape == words.shape):
            raise self._fail(f"story {name!r}: {words.shape[0]} words but {onsets.shape[0]} onsets and "
                             f"{offsets.shape[0]} offsets.")
        repeats = None
        if "repeats" in group:
            repeats = self._checked_dataset(group, "repeats", "f", 3, name)
            if tuple(repeats.shape[1:]) != tuple(brain.shape):
                raise self._fail(f"story {name!r}: repeats have shape {repeats.shape}, inconsistent with "
                                 f"brain_data {brain.shape}.")
        split = None
        if "word_split_indices" in group:
            split = self._checked_dataset(group, "word_split_indices", "iu", 1, name)[()].astype(np.int64)
        audio_path = self._attr(group, "audio_path", str, required=False, default=None)
        brain_values, n_zeroed = clean_brain_data(brain.astype(np.float32)[()], name, self.path)
        repeat_values = None
        if repeats is not None:
            repeat_values, _ = clean_brain_data(repeats.astype(np.float32)[()], name, self.path, "repeats")
        word_list = [w.decode("utf-8", errors="replace") if isinstance(w, bytes) else str(w)
                     for w in words.asstr()[()]] if words.shape[0] else []
        story = Story(name=name, brain_data=brain_values, tr_times=tr_times[()], words=word_list,
                      word_onsets=onsets[()], word_offsets=offsets[()], audio_path=audio_path,
                      repeats=repeat_values, word_split_indices=split)
        return story, n_zeroed

    def read_assembly(self, stories: Optional[list[str]] = None) -> Assembly:
        """All stories (or the named ones, in that order) as an Assembly."""
        names = list(stories) if stories else self.story_names
        provenance = dict(self.provenance)  # kept exactly as saved (round trip)
        loaded = []
        for name in names:
            story, n_zeroed = self.read_story(name)
            record_zeroed_columns(provenance, name, n_zeroed)
            loaded.append(story)
        test = self.test_story if self.test_story in names else None
        try:
            return Assembly(subject=self.subject, tr=self.tr, stories_list=loaded, space=self.space,
                            provenance=provenance, simulated=self.simulated, test_story=test)
        except AssemblyFormatError as exc:
            raise self._named(exc) from None


def read_native(path: PathLike, stories: Optional[list[str]] = None) -> Assembly:
    """Load a native ``.h5`` assembly (all stories, or ``stories`` in that order)."""
    with NativeAssemblyReader(path) as reader:
        return reader.read_assembly(stories)


def load_story(path: PathLike, name: str) -> Story:
    """Read only story ``name`` from a native assembly file (other stories are not read)."""
    with NativeAssemblyReader(path) as reader:
        story, _ = reader.read_story(name)
        return story
