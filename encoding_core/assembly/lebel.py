"""The LeBel et al. (OpenNeuro ds003020) folder layout.

::

    <root>/derivative/preprocessed_data/<SUBJECT>/<story>.hf5   key "data" (TRs, voxels),
                                                                 "individual_repeats" (repeats, TRs, voxels)
    <root>/derivative/TextGrids/<story>.TextGrid                 tier "word" (phones in tier 0)
    <root>/derivative/respdict.json                              story -> TRs in the scanner run
    <root>/stimuli/<story>.wav

TR times follow the Huth-lab convention (TR = 2 s, sound onset 10 s after the first
TR): ``tr_times = arange(respdict[story] - 5) * 2.0 - 10.0`` seconds relative to sound
onset. These are *longer* than the stored responses, which have ``respdict[story] - 20``
rows: features computed at these TR times and trimmed ``[10:-5]`` (the LeBel trimming
default) have ``respdict - 5 - 15 = respdict - 20`` rows and line up with the responses.
The first kept feature TR is then at ``10 * 2 - 10 = 10`` s after sound onset.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from encoding_core.assembly.data_model import Assembly, Story
from encoding_core.assembly.cleaning import clean_brain_data, record_zeroed_columns
from encoding_core.assembly.lebel_pycortex import lebel_space
from encoding_core.common.errors import AssemblyFormatError, EncodingCoreError, TextGridError
from encoding_core.assembly.textgrid import read_words

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
MAX_ELEMENTS = 2 ** 33


def lebel_tr_times(n_run_trs: int) -> np.ndarray:
    """TR times (seconds from sound onset) of a story whose run has ``n_run_trs`` TRs (respdict).

    Shape ``(n_run_trs - 5,)``: ``arange(n_run_trs - 5) * 2.0 - 10.0``.
    """
    return np.arange(n_run_trs - TR_TIMES_PAD, dtype=np.float64) * LEBEL_TR_S - SOUND_ONSET_S


def _responses_dir(root: Path) -> Path:
    folder = root / "derivative" / "preprocessed_data"
    if not folder.is_dir():
        raise AssemblyFormatError(f"{root} is not a LeBel (ds003020) folder: {folder} is missing. Point "
                                  "at the dataset root (the folder holding 'derivative' and 'stimuli').")
    return folder


def list_lebel_subjects(root: PathLike) -> list[str]:
    """Subjects (folder names under derivative/preprocessed_data), sorted."""
    folder = _responses_dir(Path(root))
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_lebel_stories(root: PathLike, subject: str) -> list[str]:
    """Stories with a response file for ``subject``, sorted, the test story last."""
    root = Path(root)
    folder = _responses_dir(root) / subject
    if not folder.is_dir():
        raise AssemblyFormatError(f"{root}: no responses for subject {subject!r} ({folder} is missing); "
                                  f"subjects found: {list_lebel_subjects(root)}.")
    names = sorted(p.stem for p in folder.glob("*.hf5") if not p.name.startswith("."))
    if DEFAULT_TEST_STORY in names:
        names.remove(DEFAULT_TEST_STORY)
        names.append(DEFAULT_TEST_STORY)
    return names


def read_respdict(root: PathLike) -> dict[str, int]:
    """``derivative/respdict.json``: story -> number of TRs in the run."""
    path = Path(root) / "derivative" / "respdict.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AssemblyFormatError(f"Cannot read {path} ({exc.strerror or exc}); the LeBel layout needs it "
                                  "for the TR counts.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AssemblyFormatError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in data.values()):
        raise AssemblyFormatError(f"{path} must map story names to positive integer TR counts.")
    return data


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


def _read_responses(path: Path, story: str) -> tuple[np.ndarray, Optional[np.ndarray]]:
    import h5py

    if not path.is_file():
        raise AssemblyFormatError(f"Response file {path} for story {story!r} is missing.")
    try:
        with h5py.File(path, "r") as h5:
            data = _read_dataset(h5, "data", path, 2)
            repeats = _read_dataset(h5, "individual_repeats", path, 3) if "individual_repeats" in h5 else None
    except EncodingCoreError:
        raise
    except Exception as exc:  # h5py: not HDF5, truncated, damaged chunks
        raise AssemblyFormatError(f"Cannot read response file {path} ({type(exc).__name__}: {exc}); "
                                  "it is not HDF5 or is damaged.") from None
    return data, repeats


def load_lebel(root: PathLike, subject: str, stories: Optional[list[str]] = None,
               test_story: Optional[str] = DEFAULT_TEST_STORY, mask: Optional[np.ndarray] = None,
               affine: Optional[np.ndarray] = None, surfaces: Any = "auto") -> Assembly:
    """Load ``subject`` from a LeBel (ds003020) folder as an Assembly (TR 2 s).

    stories: names in order (default: every story with a response file, test story
    last). test_story: held-out story; the default ``wheretheressmoke`` is used only when
    loaded (it is moved last). mask/affine: the subject's 3-D volume mask (columns =
    True voxels in C order) to get a volume space; without it, the subject's pycortex filestore
    (``derivative(s)/pycortex-db/<SUBJECT>``, transform ``<SUBJECT>_auto``) gives a subject
    surface space, or the space is unknown (``surfaces``: see :func:`.lebel_pycortex.lebel_space`).
    Raises AssemblyFormatError naming the story and file for missing files or responses
    whose row count is not ``respdict - 20``, TextGridError for bad transcripts.
    """
    root = Path(root)
    available = list_lebel_stories(root, subject)
    if stories:
        missing = [s for s in stories if s not in available]
        if missing:
            raise AssemblyFormatError(f"{root}: subject {subject!r} has no response file for {missing}; "
                                      f"available: {available}.")
        names = list(stories)
    else:
        names = available
    if not names:
        raise AssemblyFormatError(f"{root}: subject {subject!r} has no .hf5 response files.")
    if test_story is not None and test_story in names:
        names = [n for n in names if n != test_story] + [test_story]
    elif test_story is not None and test_story != DEFAULT_TEST_STORY:
        raise AssemblyFormatError(f"Test story {test_story!r} is not among the loaded stories {names}.")
    else:
        test_story = None
    respdict = read_respdict(root)
    provenance: dict[str, Any] = {
        "source": str(root), "loader": "lebel", "dataset": "LeBel et al. ds003020", "subject": subject,
        "tr_times": "arange(respdict - 5) * 2.0 - 10.0 s from sound onset; trim features [10:-5]",
    }
    loaded = []
    for name in names:
        response_path = root / "derivative" / "preprocessed_data" / subject / f"{name}.hf5"
        data, repeats = _read_responses(response_path, name)
        if name not in respdict:
            raise AssemblyFormatError(f"{root / 'derivative' / 'respdict.json'} has no TR count for story {name!r}.")
        expected_rows = respdict[name] - RESPONSE_ROWS_SHORTFALL
        if data.shape[0] != expected_rows:
            raise AssemblyFormatError(
                f"{response_path}: story {name!r} has {data.shape[0]} response rows but respdict.json says "
                f"{respdict[name]} TRs, so {expected_rows} rows were expected (respdict - 20); the response "
                "file and respdict.json do not belong together.")
        if repeats is not None and repeats.shape[1:] != data.shape:
            raise AssemblyFormatError(f"{response_path}: individual_repeats has shape {repeats.shape}, "
                                      f"inconsistent with data {data.shape}.")
        data, n_zeroed = clean_brain_data(data, name, response_path)
        record_zeroed_columns(provenance, name, n_zeroed)
        if repeats is not None:
            repeats, _ = clean_brain_data(repeats, name, response_path, "individual repeats")
        textgrid_path = root / "derivative" / "TextGrids" / f"{name}.TextGrid"
        if not textgrid_path.is_file():
            raise TextGridError(f"Transcript {textgrid_path} for story {name!r} is missing.")
        words, onsets, offsets = read_words(textgrid_path)
        audio = root / "stimuli" / f"{name}.wav"
        try:
            loaded.append(Story(name=name, brain_data=data, tr_times=lebel_tr_times(respdict[name]), words=words,
                                word_onsets=onsets, word_offsets=offsets,
                                audio_path=str(audio) if audio.is_file() else None, repeats=repeats))
        except AssemblyFormatError as exc:
            raise AssemblyFormatError(f"{response_path}: {exc}") from None
    space = lebel_space(root, subject, loaded[0].n_voxels, data_source=f"{root} ({subject}'s responses)",
                        mask=mask, affine=affine, surfaces=surfaces)
    try:
        return Assembly(subject=subject, tr=LEBEL_TR_S, stories_list=loaded, space=space,
                        provenance=provenance, test_story=test_story)
    except AssemblyFormatError as exc:
        raise AssemblyFormatError(f"{root}: {exc}") from None
