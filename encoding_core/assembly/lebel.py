"""The LeBel et al. (OpenNeuro ds003020) folder layout.

::

    <root>/derivative/preprocessed_data/<SUBJECT>/<story>.hf5   key "data" (TRs, voxels),
                                                                 "individual_repeats" (repeats, TRs, voxels)
    <root>/derivative/TextGrids/<story>.TextGrid                 tier "word" (phones in tier 0)
    <root>/derivative/respdict.json                              story -> TRs in the scanner run
    <root>/stimuli/<story>.wav

As the dataset is distributed: later releases call the folder ``derivatives/`` (both are
read, :func:`lebel_derivatives_dir`); response files end in ``.hf5`` or ``.h5``; TextGrids
come in Praat's long, short and chronological text formats, some with a byte-order mark
(:mod:`encoding_core.assembly.textgrid` reads them all); a story's name may differ in case
between ``respdict.json``, the TextGrids, the responses and ``stimuli/`` (the canonical name
is respdict.json's; a case-only match is reported in a warning).

TR clock (the reference's, Huth lab ``load_simulated_trfiles``): TR = 2 s, the sound starts
10 s after the first TR. A story whose run has ``n = respdict[story]`` TRs gets ``n - 5`` TR
onsets ``arange(n - 5) * 2 - 10`` s from sound onset, and its **TR times are the midpoints**
``onset + TR/2 = arange(n - 5) * 2 - 10 + 1`` (the reference's data preparation stores
``tr_times = onsets + tr/2``; every downsampling method reads a TR time as the centre of the
TR). ``tr_time_convention="onset"`` keeps the onsets (features then sit 1 s earlier than the
reference's); it is recorded in ``assembly.provenance`` and in the run's config. The stored
responses have ``n - 20`` rows: features at these TR times trimmed ``[10:-5]`` (the LeBel
trimming default) have ``n - 5 - 15 = n - 20`` rows and line up with them; the first kept
TR time is 11 s after sound onset (10 s with onsets).

Words follow the reference's data preparation: the labels of the word tier without
non-words (``sp``, ``{LG}``, ``sentence_start``... and empty labels), lower-cased; a word's
time (``Story.data_times``) is its mid-time, and ``Story.split_indices`` counts words by
their start time.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from encoding_core.assembly.cleaning import clean_brain_data, record_zeroed_columns
from encoding_core.assembly.data_model import Assembly, Story
from encoding_core.assembly.lebel_pycortex import lebel_space
from encoding_core.assembly.textgrid import WordTier, read_word_tier
from encoding_core.common.errors import AssemblyFormatError, EncodingCoreError, MissingStoryFilesError

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
LEBEL_TR_S = 2.0
SOUND_ONSET_S = 10.0
"""Seconds from the first TR to the start of the story's sound."""
TR_TIMES_PAD = 5
"""respdict counts minus this many TRs get TR times (Huth-lab ``load_simulated_trfiles`` pad)."""
RESPONSE_ROWS_SHORTFALL = 20
"""Stored responses have respdict - 20 rows, the length of ``lebel_tr_times(...)[10:-5]``."""
DEFAULT_TEST_STORY = "wheretheressmoke"
TR_TIME_CONVENTIONS = ("midpoint", "onset")
"""``midpoint`` (default, the reference's): TR times = onsets + TR/2; ``onset``: the onsets."""
DERIVATIVES_NAMES = ("derivative", "derivatives")
RESPONSE_SUFFIXES = (".hf5", ".h5")
"""Response file suffixes, in order of preference when a story has both."""
TEXTGRID_FOLDER = "TextGrids"
RESPONSES_FOLDER = "preprocessed_data"
MAX_ELEMENTS = 2 ** 33
_ANNEX_HINT = ("it is a git-annex/datalad link whose content was not downloaded; run `datalad get` on it "
               "(or download the file from OpenNeuro)")


def lebel_tr_times(n_run_trs: int, convention: str = "midpoint") -> np.ndarray:
    """TR times (seconds from sound onset) of a story whose run has ``n_run_trs`` TRs (respdict).

    Shape ``(n_run_trs - 5,)``. ``"midpoint"`` (default, the reference's):
    ``arange(n_run_trs - 5) * 2 - 10 + 1``; ``"onset"``: ``arange(n_run_trs - 5) * 2 - 10``.
    """
    _check_convention(convention)
    onsets = np.arange(n_run_trs - TR_TIMES_PAD, dtype=np.float64) * LEBEL_TR_S - SOUND_ONSET_S
    return onsets + LEBEL_TR_S / 2.0 if convention == "midpoint" else onsets


def _check_convention(convention: str) -> None:
    if convention not in TR_TIME_CONVENTIONS:
        raise AssemblyFormatError(f"tr_time_convention must be one of {TR_TIME_CONVENTIONS} (midpoint: the "
                                  f"reference's TR midpoints), got {convention!r}.")


def lebel_derivatives_dir(root: PathLike) -> Path:
    """The dataset's ``derivative/`` (early releases) or ``derivatives/`` (later ones) folder.

    When both exist, the one holding the LeBel files (``preprocessed_data``, ``TextGrids``,
    ``respdict.json``) is used. Raises AssemblyFormatError naming ``root`` when neither exists
    or both hold LeBel files.
    """
    root = Path(root)
    markers = (RESPONSES_FOLDER, TEXTGRID_FOLDER, "respdict.json")
    found = [(sum((root / name / m).exists() for m in markers), root / name)
             for name in DERIVATIVES_NAMES if (root / name).is_dir()]
    if not found:
        raise AssemblyFormatError(
            f"{root} is not a LeBel (ds003020) folder: it has neither derivative/ nor derivatives/. Point at the "
            "dataset root (the folder holding derivative/ or derivatives/, and stimuli/).")
    with_files = [path for score, path in found if score]
    if len(with_files) > 1:
        raise AssemblyFormatError(
            f"{root} has both derivative/ and derivatives/ with LeBel files in them (preprocessed_data, TextGrids "
            "or respdict.json); keep one of the two folders.")
    return with_files[0] if with_files else found[0][1]


def annex_problem(path: Path) -> Optional[str]:
    """Why ``path`` (listed in its folder) has no usable content (a git-annex/datalad link or
    pointer whose content was not downloaded), or None when it has some."""
    if path.is_symlink() and not path.exists():
        return f"{path} is a link to content that is not there: {_ANNEX_HINT}"
    try:
        if path.stat().st_size < 512 and path.read_bytes().lstrip().startswith((b"/annex/objects/", b"../.git/annex")):
            return f"{path} is a git-annex pointer file, not the data: {_ANNEX_HINT}"
    except OSError:
        return None
    return None


def _index_files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, list[Path]]:
    """Lower-cased stem -> files in ``folder`` with one of ``suffixes`` (any case), best suffix first.

    Broken links (datalad content not downloaded) are listed too.
    """
    index: dict[str, list[Path]] = {}
    if not folder.is_dir():
        return index
    for path in folder.iterdir():
        if path.name.startswith(".") or path.suffix.lower() not in suffixes:
            continue
        if not (path.is_file() or path.is_symlink()):
            continue
        index.setdefault(path.stem.lower(), []).append(path)
    for files in index.values():
        files.sort(key=lambda p: (suffixes.index(p.suffix.lower()), p.name))
    return index


def read_respdict(root: PathLike) -> dict[str, int]:
    """``derivative(s)/respdict.json``: story -> number of TRs in the run."""
    path = lebel_derivatives_dir(root) / "respdict.json"
    problem = annex_problem(path) if path.is_symlink() or path.is_file() else None
    if problem:
        raise AssemblyFormatError(f"Cannot read {path}: {problem}.")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise AssemblyFormatError(f"Cannot read {path} ({exc.strerror or exc}); the LeBel layout needs it "
                                  "for the TR counts.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AssemblyFormatError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > RESPONSE_ROWS_SHORTFALL for v in data.values()):
        raise AssemblyFormatError(f"{path} must map story names to integer TR counts above "
                                  f"{RESPONSE_ROWS_SHORTFALL} (the stored responses have respdict - 20 rows).")
    lowered: dict[str, str] = {}
    for name in data:
        if name.lower() in lowered:
            raise AssemblyFormatError(f"{path} lists {lowered[name.lower()]!r} and {name!r}, which differ only in "
                                      "case; keep one.")
        lowered[name.lower()] = name
    return data


def _responses_root(root: Path) -> Path:
    folder = lebel_derivatives_dir(root) / RESPONSES_FOLDER
    if not folder.is_dir():
        raise AssemblyFormatError(f"{root} is not a LeBel (ds003020) folder: {folder} is missing. Point "
                                  "at the dataset root (the folder holding derivative/ or derivatives/, and "
                                  "stimuli/).")
    return folder


def list_lebel_subjects(root: PathLike) -> list[str]:
    """Subjects (folder names under derivative(s)/preprocessed_data), sorted."""
    folder = _responses_root(Path(root))
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _subject_dir(root: Path, subject: str) -> Path:
    folder = _responses_root(root) / subject
    if not folder.is_dir():
        raise AssemblyFormatError(f"{root}: no responses for subject {subject!r} ({folder} is missing); "
                                  f"subjects found: {list_lebel_subjects(root)}.")
    return folder


@dataclass
class StoryFiles:
    """Where one story's three pieces are (None = missing), under its canonical name.

    name: respdict.json's spelling when listed there, else the response file's stem.
    run_trs: respdict.json's TR count, or None when the story is not listed there.
    notes: warnings about how the files were matched (case-only matches, two suffixes).
    """

    name: str
    run_trs: Optional[int]
    response: Optional[Path]
    textgrid: Optional[Path]
    audio: Optional[Path]
    notes: list[str] = field(default_factory=list)

    def missing(self, root: Path, subject: str) -> list[str]:
        """What is missing, in words naming the expected file (empty when complete)."""
        derivatives = lebel_derivatives_dir(root)
        problems = []
        if self.run_trs is None:
            problems.append(f"no entry in {derivatives / 'respdict.json'}")
        if self.response is None:
            problems.append(f"no response file {derivatives / RESPONSES_FOLDER / subject / self.name}.hf5 (or .h5)")
        else:
            problem = annex_problem(self.response)
            if problem:
                problems.append(f"the response file {problem}")
        if self.textgrid is None:
            problems.append(f"no TextGrid {derivatives / TEXTGRID_FOLDER / self.name}.TextGrid")
        else:
            problem = annex_problem(self.textgrid)
            if problem:
                problems.append(f"the TextGrid {problem}")
        return problems


def _match(index: dict[str, list[Path]], name: str, what: str, notes: list[str]) -> Optional[Path]:
    """The file of ``index`` for story ``name`` (case-insensitive), noting case-only matches."""
    files = index.get(name.lower())
    if not files:
        return None
    chosen = files[0]
    if len(files) > 1:
        notes.append(f"Story {name!r}: several {what} files match ({', '.join(p.name for p in files)}); using "
                     f"{chosen.name}.")
    if chosen.stem != name:
        notes.append(f"Story {name!r}: its {what} {chosen} matches only when case is ignored; the name "
                     "from respdict.json is used.")
    return chosen


def lebel_story_files(root: PathLike, subject: Optional[str], respdict: Optional[dict[str, int]] = None
                      ) -> dict[str, StoryFiles]:
    """Every story known to the folder (respdict, TextGrids, ``subject``'s responses) and its files.

    Keys are canonical names (respdict.json's spelling when it lists the story). With
    ``subject=None`` no response files are looked up. ``respdict`` defaults to
    :func:`read_respdict` (pass ``{}`` to ignore it).
    """
    root = Path(root)
    derivatives = lebel_derivatives_dir(root)
    respdict = read_respdict(root) if respdict is None else respdict
    responses = _index_files(_subject_dir(root, subject), RESPONSE_SUFFIXES) if subject else {}
    textgrids = _index_files(derivatives / TEXTGRID_FOLDER, (".textgrid",))
    audio = _index_files(root / "stimuli", (".wav",))
    canonical = {name.lower(): name for name in respdict}
    for index in (responses, textgrids):
        for key, files in index.items():
            canonical.setdefault(key, files[0].stem)
    stories = {}
    for key, name in sorted(canonical.items()):
        notes: list[str] = []
        stories[name] = StoryFiles(
            name=name, run_trs=respdict.get(name), response=_match(responses, name, "response file", notes),
            textgrid=_match(textgrids, name, "TextGrid", notes), audio=_match(audio, name, "audio", notes),
            notes=notes)
    return stories


def _order_test_last(names: list[str]) -> list[str]:
    tests = [n for n in names if n.lower() == DEFAULT_TEST_STORY]
    return [n for n in names if n not in tests] + tests


def list_lebel_stories(root: PathLike, subject: str) -> list[str]:
    """Stories with a response file for ``subject`` (canonical names), sorted, the test story last.

    Names come from respdict.json when it can be read (else the files' stems).
    """
    root = Path(root)
    try:
        respdict = read_respdict(root)
    except AssemblyFormatError:
        respdict = {}
    files = lebel_story_files(root, subject, respdict)
    return _order_test_last(sorted(n for n, f in files.items() if f.response is not None))


def _read_dataset(h5: Any, key: str, path: Path, ndim: int) -> np.ndarray:
    """Read a float dataset after checking its dtype, rank and size (before reading data)."""
    ds = h5.get(key)
    if ds is None or not hasattr(ds, "shape"):
        raise AssemblyFormatError(f"{path} has no dataset {key!r}; LeBel response files hold 'data'.")
    if ds.dtype.kind != "f" or len(ds.shape) != ndim:
        raise AssemblyFormatError(f"{path}: dataset {key!r} has dtype {ds.dtype} and shape {ds.shape}; "
                                  f"expected {ndim}-D floating point.")
    if math.prod(ds.shape) > MAX_ELEMENTS:
        raise AssemblyFormatError(f"{path}: dataset {key!r} declares shape {ds.shape}, too large; damaged file?")
    return ds.astype(np.float32)[()]


def response_shape(path: Path) -> tuple[int, ...]:
    """Shape of the ``data`` dataset of a response file, without reading the data."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            ds = h5.get("data")
            if ds is None or not hasattr(ds, "shape"):
                raise AssemblyFormatError(f"{path} has no dataset 'data'; LeBel response files hold 'data'.")
            return tuple(int(n) for n in ds.shape)
    except EncodingCoreError:
        raise
    except Exception as exc:  # h5py: not HDF5, truncated, damaged
        raise AssemblyFormatError(f"Cannot read response file {path} ({type(exc).__name__}: {exc}); "
                                  "it is not HDF5 or is damaged.") from None


def _read_responses(path: Path, story: str) -> tuple[np.ndarray, Optional[np.ndarray]]:
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            data = _read_dataset(h5, "data", path, 2)
            repeats = _read_dataset(h5, "individual_repeats", path, 3) if "individual_repeats" in h5 else None
    except EncodingCoreError:
        raise
    except Exception as exc:  # h5py: not HDF5, truncated, damaged chunks
        raise AssemblyFormatError(f"Cannot read response file {path} for story {story!r} "
                                  f"({type(exc).__name__}: {exc}); it is not HDF5 or is damaged.") from None
    return data, repeats


def check_response_rows(path: Path, story: str, rows: int, run_trs: int, respdict_path: Path) -> None:
    """Raise AssemblyFormatError unless ``rows == run_trs - 20`` (the known LeBel shortfall)."""
    expected = run_trs - RESPONSE_ROWS_SHORTFALL
    if rows != expected:
        raise AssemblyFormatError(
            f"{path}: story {story!r} has {rows} response rows but {respdict_path} says {run_trs} TRs, so "
            f"{expected} rows were expected (respdict - 20); the response file and respdict.json do not "
            "belong together.")


def _resolve_requested(stories: list[str], files: dict[str, StoryFiles], root: Path, subject: str) -> list[str]:
    lowered = {name.lower(): name for name in files}
    unknown = [s for s in stories if s.lower() not in lowered]
    if unknown:
        available = sorted(n for n, f in files.items() if f.response is not None)
        raise AssemblyFormatError(f"{root}: subject {subject!r} has no response file for {unknown}; available: "
                                  f"{available}.")
    return [lowered[s.lower()] for s in stories]


def load_lebel(root: PathLike, subject: str, stories: Optional[list[str]] = None,
               test_story: Optional[str] = DEFAULT_TEST_STORY, mask: Optional[np.ndarray] = None,
               affine: Optional[np.ndarray] = None, tr_time_convention: str = "midpoint",
               skip_missing: bool = False, surfaces: Any = "auto") -> Assembly:
    """Load ``subject`` from a LeBel (ds003020) folder as an Assembly (TR 2 s).

    stories: names in order, any case (default: every story with a response file, test story
    last). test_story: held-out story; the default ``wheretheressmoke`` is used only when
    loaded (it is moved last). mask/affine: the subject's 3-D volume mask (columns = True
    voxels in C order) to get a volume space; without it, the subject's pycortex filestore
    (``derivative(s)/pycortex-db/<SUBJECT>``, transform ``<SUBJECT>_auto``) gives a subject
    surface space, or the space is unknown (``surfaces``: see :func:`.lebel_pycortex.lebel_space`).
    tr_time_convention: ``"midpoint"`` (default, the reference's) or ``"onset"``.
    skip_missing: load the other stories when some lack their respdict entry, response file
    or TextGrid (they are named in a warning and in ``provenance["skipped_stories"]``);
    otherwise nothing is loaded and MissingStoryFilesError names every such story and what
    it lacks. Raises AssemblyFormatError naming the story and file for responses whose row
    count is not ``respdict - 20``, TextGridError for transcripts Praat would refuse.
    """
    root = Path(root)
    _check_convention(tr_time_convention)
    derivatives = lebel_derivatives_dir(root)
    respdict = read_respdict(root)
    respdict_path = derivatives / "respdict.json"
    files = lebel_story_files(root, subject, respdict)
    if stories:
        names = _resolve_requested(list(stories), files, root, subject)
    else:
        names = _order_test_last(sorted(n for n, f in files.items() if f.response is not None))
    if not names:
        raise AssemblyFormatError(f"{root}: subject {subject!r} has no .hf5/.h5 response files in "
                                  f"{derivatives / RESPONSES_FOLDER / subject}.")
    missing = {name: problems for name in names if (problems := files[name].missing(root, subject))}
    warnings: list[str] = [note for name in names for note in files[name].notes]
    if missing and not skip_missing:
        raise MissingStoryFilesError(root, missing)
    skipped = {name: "; ".join(problems) for name, problems in missing.items()}
    if skipped:
        warnings.append(f"Skipped {len(skipped)} of {len(names)} stories with missing files (skip_missing=True): "
                        + "; ".join(f"{name}: {why}" for name, why in skipped.items()) + ".")
    names = [n for n in names if n not in skipped]
    if not names:
        raise MissingStoryFilesError(root, missing)
    if test_story is not None:
        wanted = next((n for n in files if n.lower() == test_story.lower()), test_story)
        if wanted in names:
            test_story = wanted
            names = [n for n in names if n != wanted] + [wanted]
        elif wanted in skipped and test_story.lower() != DEFAULT_TEST_STORY:
            raise AssemblyFormatError(f"Test story {test_story!r} was skipped: {skipped[wanted]}.")
        elif test_story.lower() != DEFAULT_TEST_STORY:
            raise AssemblyFormatError(f"Test story {test_story!r} is not among the loaded stories {names}.")
        else:
            test_story = None
    provenance: dict[str, Any] = {
        "source": str(root), "loader": "lebel", "dataset": "LeBel et al. ds003020", "subject": subject,
        "layout": derivatives.name, "tr_time_convention": tr_time_convention,
        "tr_times": ("arange(respdict - 5) * 2.0 - 10.0 + 1.0 s from sound onset (TR midpoints, as the reference)"
                     if tr_time_convention == "midpoint" else
                     "arange(respdict - 5) * 2.0 - 10.0 s from sound onset (TR onsets; the reference uses the "
                     "midpoints, 1 s later)") + "; trim features [10:-5]",
        "words": "word tier without non-words, lower-cased; times: mid-times (data_times), starts (split_indices)",
    }
    loaded = []
    for name in names:
        story_files = files[name]
        data, repeats = _read_responses(story_files.response, name)
        check_response_rows(story_files.response, name, data.shape[0], story_files.run_trs, respdict_path)
        if repeats is not None and repeats.shape[1:] != data.shape:
            raise AssemblyFormatError(f"{story_files.response}: individual_repeats has shape {repeats.shape}, "
                                      f"inconsistent with data {data.shape}.")
        data, n_zeroed = clean_brain_data(data, name, story_files.response)
        record_zeroed_columns(provenance, name, n_zeroed)
        if repeats is not None:
            repeats, _ = clean_brain_data(repeats, name, story_files.response, "individual repeats")
        transcript: WordTier = read_word_tier(story_files.textgrid)
        warnings.extend(transcript.warnings)
        try:
            loaded.append(Story(name=name, brain_data=data,
                                tr_times=lebel_tr_times(story_files.run_trs, tr_time_convention),
                                words=[w.lower() for w in transcript.words], word_onsets=transcript.onsets,
                                word_offsets=transcript.offsets,
                                audio_path=str(story_files.audio) if story_files.audio is not None
                                and story_files.audio.is_file() else None, repeats=repeats))
        except AssemblyFormatError as exc:
            raise AssemblyFormatError(f"{story_files.response}: {exc}") from None
    if skipped:
        provenance["skipped_stories"] = skipped
    if warnings:
        provenance["warnings"] = warnings
        for message in warnings:
            logger.warning("%s", message)
    space = lebel_space(root, subject, loaded[0].n_voxels, data_source=f"{root} ({subject}'s responses)",
                        mask=mask, affine=affine, surfaces=surfaces)
    try:
        return Assembly(subject=subject, tr=LEBEL_TR_S, stories_list=loaded, space=space,
                        provenance=provenance, test_story=test_story)
    except AssemblyFormatError as exc:
        raise AssemblyFormatError(f"{root}: {exc}") from None
