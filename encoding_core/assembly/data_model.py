"""The data model: an :class:`Assembly` of ordered :class:`Story` records.

One type serves every loader (native HDF5, the reference's pickle, the LeBel layout,
the simulated demo) and every consumer (features, alignment, fitting, the app).

Units: times in seconds relative to the story's sound onset; brain data rows are TRs,
columns are voxels or surface vertices.

What a TR time means, everywhere: the **centre of the TR's acquisition interval**. TR ``i``
covers ``[t_i - TR/2, t_i + TR/2)``; every downsampling method resamples features at
``t_i`` over that interval (``encoding_core.downsample.downsampling``), and
:attr:`Story.split_indices` counts the words whose *start* lies in it. For LeBel data these
are the TR midpoints, as in the reference (see ``encoding_core.assembly.lebel``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from encoding_core.common.errors import AssemblyFormatError

SURFACE_SPACES = {"fsaverage5": 10242, "fsaverage6": 40962, "fsaverage7": 163842}
"""Vertices per hemisphere for each fsaverage surface; columns are left then right."""
SPACE_KINDS = ("surface", "volume", "subject_surface", "unknown")
HEMISPHERES = ("left", "right")
CORTICAL_SURFACE_TYPES = ("pia", "wm", "inflated")
"""pycortex's names: pial surface, white-matter surface, inflated surface (for drawing)."""
MNI_TEMPLATE = "MNI152"
"""The template marker of a volume in MNI152 space (any template name starting "MNI" counts)."""


@dataclass(eq=False)
class CorticalSurfaces:
    """A subject's own cortical meshes (mm, in the space of the volume affine) and their source.

    meshes: ``{"pia" | "wm" | "inflated": {"left" | "right": (coordinates (n, 3), faces (f, 3))}}``;
    one vertex count per hemisphere across types. transform / mask_type: the pycortex transform
    and mask the voxel columns come from (e.g. ``"UTS01_auto"``, ``"thick"``). source: the
    folder they were read from. sampling: the options of the voxel -> vertex projection
    (:func:`encoding_core.assembly.projection.projection_matrix`), e.g. ``{"kind": "depth"}``
    between pia (depth 0) and wm (depth 1).
    """

    subject: str
    meshes: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]
    transform: str = ""
    mask_type: str = ""
    source: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"the cortical surfaces of {self.subject!r}"
        self.meshes = {kind: dict(hemis) for kind, hemis in self.meshes.items()}  # the caller's dicts stay as given
        missing = [f"{kind}/{hemi}" for kind in CORTICAL_SURFACE_TYPES for hemi in HEMISPHERES
                   if hemi not in self.meshes.get(kind, {})]
        if missing:
            raise AssemblyFormatError(f"{where} lack the meshes {missing}; pia, wm and inflated are needed for "
                                      "both hemispheres.")
        for kind in CORTICAL_SURFACE_TYPES:
            for hemi in HEMISPHERES:
                coords, faces = self.meshes[kind][hemi]
                coords, faces = np.asarray(coords), np.asarray(faces)
                if coords.ndim != 2 or coords.shape[1:] != (3,) or coords.dtype.kind != "f" or \
                        faces.ndim != 2 or faces.shape[1:] != (3,) or faces.dtype.kind not in "iu":
                    raise AssemblyFormatError(f"{where}: {kind}/{hemi} needs float coordinates (n, 3) and integer "
                                              f"faces (f, 3), got {coords.shape} {coords.dtype} and {faces.shape} "
                                              f"{faces.dtype}.")
                if faces.size and (faces.min() < 0 or faces.max() >= len(coords)):
                    raise AssemblyFormatError(f"{where}: {kind}/{hemi} faces index vertices outside "
                                              f"0..{len(coords) - 1}.")
                self.meshes[kind][hemi] = (coords, faces)
        for hemi in HEMISPHERES:
            counts = {kind: len(self.meshes[kind][hemi][0]) for kind in CORTICAL_SURFACE_TYPES}
            if len(set(counts.values())) != 1:
                raise AssemblyFormatError(f"{where}: the {hemi} hemisphere has different vertex counts per surface "
                                          f"type {counts}; all types of one hemisphere must share their vertices.")

    def n_vertices(self) -> dict[str, int]:
        """Vertices per hemisphere, ``{"left": n_lh, "right": n_rh}``."""
        return {hemi: len(self.meshes["inflated"][hemi][0]) for hemi in HEMISPHERES}


@dataclass
class Space:
    """What the columns of the brain data are.

    kind:

    - ``"surface"``: ``name`` is fsaverage5/6/7, columns = left then right vertices;
    - ``"volume"``: ``mask`` boolean 3-D array whose True voxels, in C order, are the columns;
      ``affine`` 4x4 voxel index -> mm; ``template`` says which space those mm are in
      (``"MNI152..."``, ``"native:<subject>"``, or None when unknown);
    - ``"subject_surface"``: a volume in a subject's own space (mask, affine to the subject's
      surface mm) with the subject's cortical ``surfaces`` to draw it on (``name`` = subject);
    - ``"unknown"``.
    """

    kind: str = "unknown"
    name: str = "unknown"
    mask: Optional[np.ndarray] = None
    affine: Optional[np.ndarray] = None
    template: Optional[str] = None
    surfaces: Optional[CorticalSurfaces] = None

    @classmethod
    def surface(cls, name: str) -> "Space":
        if name not in SURFACE_SPACES:
            raise AssemblyFormatError(
                f"Unknown surface space {name!r}; expected one of {sorted(SURFACE_SPACES)}."
            )
        return cls(kind="surface", name=name)

    @classmethod
    def volume(cls, mask: np.ndarray, affine: Optional[np.ndarray] = None,
               template: Optional[str] = None) -> "Space":
        """A voxel space; ``template`` e.g. ``"MNI152"`` (see :data:`MNI_TEMPLATE`) or ``"native:UTS01"``."""
        mask, affine = _volume_grid(mask, affine)
        return cls(kind="volume", name="volume", mask=mask, affine=affine, template=_template(template))

    @classmethod
    def subject_surface(cls, subject: str, mask: np.ndarray, affine: np.ndarray,
                        surfaces: CorticalSurfaces) -> "Space":
        """A subject's own volume (mask (z, y, x) or any 3-D grid, affine index -> surface mm),
        drawn on that subject's cortex (``surfaces``)."""
        if not subject:
            raise AssemblyFormatError("A subject surface space needs the subject's name.")
        if affine is None:
            raise AssemblyFormatError(f"The subject surface space of {subject!r} needs the voxel -> surface affine.")
        if not isinstance(surfaces, CorticalSurfaces):
            raise AssemblyFormatError(f"surfaces must be CorticalSurfaces, got {type(surfaces).__name__}.")
        mask, affine = _volume_grid(mask, affine)
        return cls(kind="subject_surface", name=subject, mask=mask, affine=affine,
                   template=f"native:{subject}", surfaces=surfaces)

    def with_template(self, template: Optional[str]) -> "Space":
        """The same volume space with ``template`` recorded (e.g. ``"MNI152"``)."""
        if self.kind != "volume":
            raise AssemblyFormatError(f"Only a volume space takes a template; this space is {self.describe()}.")
        return Space.volume(self.mask, self.affine, template)

    @property
    def is_mni(self) -> bool:
        """True when the space records an MNI template (a volume whose mm are MNI mm)."""
        return self.template is not None and self.template.upper().startswith("MNI")

    @classmethod
    def infer(cls, n_columns: int) -> "Space":
        """Guess the space from a column count (20484 -> fsaverage5, ...), else unknown."""
        for name, per_hemi in SURFACE_SPACES.items():
            if n_columns == 2 * per_hemi:
                return cls.surface(name)
        return cls()

    def n_columns(self) -> Optional[int]:
        if self.kind == "surface":
            return 2 * SURFACE_SPACES[self.name]
        if self.kind in ("volume", "subject_surface") and self.mask is not None:
            return int(self.mask.sum())
        return None

    def describe(self) -> str:
        if self.kind == "surface":
            return f"{self.name} surface ({self.n_columns()} vertices, left then right)"
        if self.kind == "subject_surface":
            n = self.surfaces.n_vertices() if self.surfaces is not None else {}
            return (f"{self.name}'s own volume ({self.n_columns()} voxels in mask), drawn on {self.name}'s cortex "
                    f"({n.get('left', 0)} + {n.get('right', 0)} vertices)")
        if self.kind == "volume":
            n = self.n_columns()
            where = f", {self.template}" if self.template else ", template unknown"
            return f"volume ({n} voxels in mask{where})" if n is not None else "volume (no mask)"
        return "unknown space"


def _volume_grid(mask: Any, affine: Any) -> tuple[np.ndarray, Optional[np.ndarray]]:
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise AssemblyFormatError(f"A volume mask must be 3-D, got shape {mask.shape}.")
    if affine is not None:
        affine = np.asarray(affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise AssemblyFormatError(f"A volume affine must be 4x4, got {affine.shape}.")
    return mask, affine


def _template(template: Optional[str]) -> Optional[str]:
    if template is None or template == "":
        return None
    if not isinstance(template, str):
        raise AssemblyFormatError(f"A volume template must be a name such as 'MNI152', got {template!r}.")
    return template.strip()


@dataclass
class Story:
    """One story (one fMRI run) of an assembly.

    brain_data: (n_trs, n_voxels) float32.
    tr_times: (n_trs,) float64, seconds of each TR relative to sound onset: the centre of
        the TR's acquisition interval (see the module docstring). For the
        Huth/LeBel convention this can be longer than brain_data (it spans the whole
        run, and trimming lines it up); see ``trimming``.
    words / word_onsets / word_offsets: the transcript, seconds from sound onset.
    audio_path: the stimulus audio file, or None until mapped.
    repeats: optional (n_repeats, n_trs, n_voxels) float32 individual repeats of this
        story (for a noise ceiling).
    word_split_indices: optional (n_tr_times,) int64, the index of the first word of each
        TR as given by the source (the reference's pickle stores them; its words' start times
        are lost there). None: computed from ``word_onsets`` (see :attr:`split_indices`).
    """

    name: str
    brain_data: np.ndarray
    tr_times: np.ndarray
    words: list[str] = field(default_factory=list)
    word_onsets: np.ndarray = field(default_factory=lambda: np.zeros(0))
    word_offsets: np.ndarray = field(default_factory=lambda: np.zeros(0))
    audio_path: Optional[str] = None
    repeats: Optional[np.ndarray] = None
    word_split_indices: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.brain_data = np.asarray(self.brain_data, dtype=np.float32)
        self.tr_times = np.asarray(self.tr_times, dtype=np.float64)
        self.word_onsets = np.asarray(self.word_onsets, dtype=np.float64).reshape(-1)
        self.word_offsets = np.asarray(self.word_offsets, dtype=np.float64).reshape(-1)
        self.words = [str(w) for w in self.words]
        if self.repeats is not None:
            self.repeats = np.asarray(self.repeats, dtype=np.float32)
        if self.word_split_indices is not None:
            self.word_split_indices = np.asarray(self.word_split_indices).reshape(-1)
        self.validate()

    def validate(self) -> None:
        """Check shapes and values; raise AssemblyFormatError naming the story."""
        where = f"story {self.name!r}"
        if not self.name or not isinstance(self.name, str):
            raise AssemblyFormatError("A story needs a non-empty name.")
        if self.brain_data.ndim != 2:
            raise AssemblyFormatError(
                f"{where}: brain data must be 2-D (TRs x voxels), got shape {self.brain_data.shape}."
            )
        if self.brain_data.shape[0] < 1 or self.brain_data.shape[1] < 1:
            raise AssemblyFormatError(f"{where}: brain data is empty {self.brain_data.shape}.")
        if self.tr_times.ndim != 1 or self.tr_times.size < 1:
            raise AssemblyFormatError(f"{where}: TR times must be a non-empty 1-D array.")
        if not np.all(np.isfinite(self.tr_times)):
            raise AssemblyFormatError(f"{where}: TR times contain NaN or Inf.")
        if self.tr_times.size > 1 and not np.all(np.diff(self.tr_times) > 0):
            bad = int(np.argmax(np.diff(self.tr_times) <= 0))
            raise AssemblyFormatError(
                f"{where}: TR times must increase strictly; they do not at index {bad + 1} "
                f"({self.tr_times[bad]:.3f} s then {self.tr_times[bad + 1]:.3f} s)."
            )
        n_words = len(self.words)
        if self.word_onsets.size != n_words or self.word_offsets.size != n_words:
            raise AssemblyFormatError(
                f"{where}: {n_words} words but {self.word_onsets.size} onsets and "
                f"{self.word_offsets.size} offsets."
            )
        if n_words and not (np.all(np.isfinite(self.word_onsets)) and np.all(np.isfinite(self.word_offsets))):
            raise AssemblyFormatError(f"{where}: word times contain NaN or Inf.")
        if n_words and np.any(self.word_offsets < self.word_onsets):
            raise AssemblyFormatError(f"{where}: a word ends before it starts.")
        split = self.word_split_indices
        if split is not None:
            if (not np.issubdtype(split.dtype, np.integer) or split.size != self.tr_times.size
                    or np.any(np.diff(split) < 0) or (split.size and (split[0] < 0 or split[-1] > n_words))):
                raise AssemblyFormatError(
                    f"{where}: word_split_indices must be {self.tr_times.size} non-decreasing integers (one per TR "
                    f"time) between 0 and {n_words} (the words); got shape {split.shape}, dtype {split.dtype}."
                )
        if self.repeats is not None:
            if self.repeats.ndim != 3 or self.repeats.shape[1:] != self.brain_data.shape:
                raise AssemblyFormatError(
                    f"{where}: repeats must have shape (repeats, {self.brain_data.shape[0]}, "
                    f"{self.brain_data.shape[1]}), got {self.repeats.shape}."
                )

    @property
    def n_trs(self) -> int:
        return int(self.brain_data.shape[0])

    @property
    def n_voxels(self) -> int:
        return int(self.brain_data.shape[1])

    # -- reference (StoryData) compatible names ---------------------------------
    @property
    def stimuli(self) -> list[str]:
        """The words, as the reference's ``StoryData.stimuli``."""
        return self.words

    @property
    def data_times(self) -> np.ndarray:
        """Word times (midpoints, seconds), as the reference's ``StoryData.data_times``."""
        return (self.word_onsets + self.word_offsets) / 2.0

    @property
    def tr_step(self) -> float:
        """The TR length in seconds inferred from ``tr_times`` (their mean spacing; nan for one TR)."""
        return float(np.mean(np.diff(self.tr_times))) if self.tr_times.size > 1 else float("nan")

    @property
    def split_indices(self) -> np.ndarray:
        """(n_tr_times,) int64: the index of the first word of each TR (for average/sum/last).

        TR ``i`` holds the words whose *start* lies in ``[t_i - TR/2, t_i + TR/2)`` (the
        reference's data preparation: words whose start is before the end of the TR),
        i.e. ``words[split[i]:split[i + 1]]``; the last TR holds the remaining words.
        Computed as ``searchsorted(word_onsets, tr_times - TR/2)`` (TR from ``tr_step``)
        unless the source gave them (``word_split_indices``). Words are in time order.
        """
        if self.word_split_indices is not None:
            return self.word_split_indices.astype(np.int64)
        if self.tr_times.size < 2:
            return np.zeros(self.tr_times.size, dtype=np.int64)
        starts = self.tr_times - self.tr_step / 2.0
        return np.searchsorted(self.word_onsets, starts, side="left").astype(np.int64)

    def word_rate(self, tr: Optional[float] = None) -> np.ndarray:
        """(n_tr_times, 1) float64: words per TR, the words whose START lies in the TR
        ``[t - tr/2, t + tr/2)`` (the same words as :attr:`split_indices`). Blank words are not
        counted. tr: seconds (default: :attr:`tr_step`). When the source gave the split indices
        (the reference's pickle), they are used and the last TR holds the remaining words."""
        n_words = len(self.words)
        spoken = np.fromiter((bool(w.strip()) for w in self.words), dtype=np.int64, count=n_words)
        counted = np.concatenate([[0], np.cumsum(spoken)])
        if self.word_split_indices is not None:
            starts = np.clip(self.word_split_indices.astype(np.int64), 0, n_words)
            last_end = n_words
        else:
            tr = self.tr_step if tr is None else float(tr)
            if not np.isfinite(tr) or tr <= 0:
                raise AssemblyFormatError(f"story {self.name!r}: give the TR (seconds) to count words per TR.")
            starts = np.searchsorted(self.word_onsets, self.tr_times - tr / 2.0, side="left")
            last_end = int(np.searchsorted(self.word_onsets, self.tr_times[-1] + tr / 2.0, side="left"))
        ends = np.append(starts[1:], max(last_end, int(starts[-1])))
        return (counted[ends] - counted[starts]).astype(np.float64)[:, None]


@dataclass
class Assembly:
    """An ordered set of stories from one subject, with shared TR and column space.

    provenance: free-form dict (source file, loader, dataset, notes) kept in saved files.
    simulated: True for generated data; the app says so wherever it shows it.
    test_story: the story held out in train/test mode (default: the last one).
    """

    subject: str
    tr: float
    stories_list: list[Story]
    space: Space = field(default_factory=Space)
    provenance: dict[str, Any] = field(default_factory=dict)
    simulated: bool = False
    test_story: Optional[str] = None

    def __post_init__(self) -> None:
        if not self.stories_list:
            raise AssemblyFormatError("An assembly needs at least one story.")
        if not (np.isfinite(self.tr) and self.tr > 0):
            raise AssemblyFormatError(f"The TR must be a positive number of seconds, got {self.tr!r}.")
        names = [s.name for s in self.stories_list]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise AssemblyFormatError(f"Story names must be unique; repeated: {dupes}.")
        widths = {s.n_voxels for s in self.stories_list}
        if len(widths) != 1:
            detail = ", ".join(f"{s.name}: {s.n_voxels}" for s in self.stories_list)
            raise AssemblyFormatError(f"All stories must have the same number of voxels; got {detail}.")
        expected = self.space.n_columns()
        if expected is not None and expected != self.n_voxels:
            raise AssemblyFormatError(
                f"The space {self.space.describe()} has {expected} columns but the brain data has {self.n_voxels}."
            )
        if self.test_story is not None and self.test_story not in names:
            raise AssemblyFormatError(f"Test story {self.test_story!r} is not in the assembly ({names}).")

    # -- our names ----------------------------------------------------------------
    @property
    def n_voxels(self) -> int:
        return self.stories_list[0].n_voxels

    @property
    def stories(self) -> list[str]:
        """Story names in order (the reference's ``assembly.stories``)."""
        return [s.name for s in self.stories_list]

    @property
    def story_data(self) -> dict[str, Story]:
        """Name -> Story (the reference's ``assembly.story_data[name]``)."""
        return {s.name: s for s in self.stories_list}

    def story(self, name: str) -> Story:
        for s in self.stories_list:
            if s.name == name:
                return s
        raise KeyError(f"No story named {name!r}; the assembly has {self.stories}.")

    def effective_test_story(self) -> str:
        return self.test_story or self.stories_list[-1].name

    def subset(self, names: list[str]) -> "Assembly":
        """A new assembly with only these stories, in this order (data shared, not copied)."""
        missing = [n for n in names if n not in self.stories]
        if missing:
            raise AssemblyFormatError(f"Stories not in the assembly: {missing}; available: {self.stories}.")
        test = self.test_story if self.test_story in names else None
        return Assembly(self.subject, self.tr, [self.story(n) for n in names], self.space,
                        dict(self.provenance), self.simulated, test)

    # -- reference (SimpleNeuroidAssembly) compatible accessors ---------------------
    def get_brain_data(self) -> list[np.ndarray]:
        return [s.brain_data for s in self.stories_list]

    def get_tr_times(self) -> list[np.ndarray]:
        return [s.tr_times for s in self.stories_list]

    def get_audio_path(self) -> list[Optional[str]]:
        return [s.audio_path for s in self.stories_list]

    def get_words(self) -> list[list[str]]:
        return [s.words for s in self.stories_list]

    def get_stimuli(self) -> list[list[str]]:
        return [s.stimuli for s in self.stories_list]

    def get_data_times(self) -> list[np.ndarray]:
        return [s.data_times for s in self.stories_list]

    def get_split_indices(self) -> list[np.ndarray]:
        return [s.split_indices for s in self.stories_list]

    def get_validation_method(self) -> str:
        return "outer"

    def get_word_rates(self) -> list[np.ndarray]:
        """Words per TR of every story, each (n_tr_times, 1): see :meth:`Story.word_rate`."""
        return [s.word_rate(self.tr) for s in self.stories_list]

    def get_coord(self, name: str) -> np.ndarray:
        """The reference's per-stimulus coordinates, one entry per word of every story in order:
        ``story_id`` (the story name) or ``stimulus_id`` (0, 1, ... within each story)."""
        if name == "story_id":
            return np.array([s.name for s in self.stories_list for _ in s.stimuli], dtype=object)
        if name == "stimulus_id":
            return np.concatenate([np.arange(len(s.stimuli)) for s in self.stories_list]).astype(np.int64)
        raise KeyError(f"Unknown coordinate {name!r}; the assembly has 'story_id' and 'stimulus_id'.")

    @property
    def is_volume(self) -> bool:
        """True when the columns are voxels (a volume, also one drawn on a subject's cortex)."""
        return self.space.kind in ("volume", "subject_surface")

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per story for tables: name, TRs, voxels, words, span, audio, repeats, test."""
        test = self.effective_test_story()
        rows = []
        for s in self.stories_list:
            rows.append({
                "story": s.name,
                "TRs": s.n_trs,
                "voxels": s.n_voxels,
                "words": len(s.words),
                "TR span (s)": float(s.tr_times[-1] - s.tr_times[0] + self.tr),
                "audio": s.audio_path or "",
                "repeats": 0 if s.repeats is None else int(s.repeats.shape[0]),
                "test story": s.name == test,
            })
        return rows

    def __repr__(self) -> str:
        sim = " SIMULATED" if self.simulated else ""
        return (f"<Assembly{sim} subject={self.subject!r} TR={self.tr}s stories={len(self.stories_list)} "
                f"voxels={self.n_voxels} space={self.space.describe()}>")
