"""Story audio: decoding, header inspection and mapping stories to files.

Decoding uses ``soundfile`` (libsndfile: WAV, FLAC, OGG, MP3, ...) and falls back to
``librosa.load`` for anything else it can decode; resampling uses librosa's ``soxr_hq``.
Samples are float32 mono (channels averaged). Every problem (missing, empty, zero-length,
truncated, not audio, unsupported codec) is an :class:`~encoding_core.common.errors.AudioError`
naming the file.

Times are seconds from the story's sound onset; durations in seconds; rates in Hz.
"""
from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from encoding_core.assembly.data_model import Assembly, Story
from encoding_core.common.errors import AudioError, InputError

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")
MATCH_STATUSES = ("found", "missing", "mismatch", "unreadable")


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file: duration (s), sample rate (Hz), channel count."""

    path: str
    duration_s: float
    sample_rate: int
    channels: int


MAX_SCAN_TAIL_S = 20.0
"""The scan may go on after the sound ends (the haemodynamic response lasts 15-20 s): a TR span
at most this much longer than the audio is expected (the demo scans 10-12 s past its audio);
a longer gap means the file is probably not this story's."""


@dataclass(frozen=True)
class AudioMatch:
    """The audio file found for one story and how well it fits the story's TR span.

    status: ``found`` (the audio fits, see :func:`audio_fit`), ``mismatch`` (it does not: the
    message says why), ``missing`` (no file) or ``unreadable`` (file exists, cannot be read;
    see message). tr_span_s: seconds from sound onset (or the first TR if later) to the end of
    the last TR.
    """

    story: str
    path: Optional[str]
    status: str
    duration_s: Optional[float]
    sample_rate: Optional[int]
    tr_span_s: float
    message: str


def audio_fit(duration_s: float, tr_span_s: float, tr: float, last_word_end_s: Optional[float] = None,
              max_tail_s: float = MAX_SCAN_TAIL_S) -> tuple[str, str]:
    """(status ``found`` or ``mismatch``, message) of an audio file's duration against a story.

    The audio fits when it (1) does not outlast the scan by more than one TR, (2) reaches the
    end of the transcript's last word (within one TR), and (3) ends at most ``max_tail_s``
    seconds before the scan does (the scan records the response after the sound). Seconds throughout.
    """
    tail = tr_span_s - duration_s
    if duration_s > tr_span_s + tr:
        return "mismatch", (f"audio lasts {duration_s:.1f} s but the TRs span only {tr_span_s:.1f} s "
                            f"({-tail:+.1f} s, more than one TR of {tr:g} s): the sound would outlast the scan; "
                            "wrong file?")
    if last_word_end_s is not None and duration_s < last_word_end_s - tr:
        return "mismatch", (f"audio lasts {duration_s:.1f} s but the transcript's last word ends at "
                            f"{last_word_end_s:.1f} s: the file is too short for this story; wrong or truncated "
                            "file?")
    if tail > max_tail_s:
        return "mismatch", (f"audio lasts {duration_s:.1f} s but the TRs span {tr_span_s:.1f} s: the scan would go "
                            f"on {tail:.1f} s after the sound (more than the {max_tail_s:g} s a response lasts); "
                            "wrong file?")
    note = f"; the scan goes on {tail:.1f} s after the sound (response tail)" if tail > tr else ""
    return "found", f"{duration_s:.1f} s{note}"


def check_story_audio(story: Story, path: PathLike, tr: float) -> AudioMatch:
    """Check one story's audio file: exists, readable (header), duration against the story
    (:func:`audio_fit`). The same check for a mapped folder, an override and the stories' own paths."""
    span = story_tr_span(story, tr)
    path = Path(path).expanduser()
    if not path.exists():
        return AudioMatch(story.name, str(path), "missing", None, None, span, f"file {path} does not exist")
    try:
        info = audio_info(path)
    except AudioError as exc:
        return AudioMatch(story.name, str(path), "unreadable", None, None, span, str(exc))
    last_word = float(story.word_offsets.max()) if story.word_offsets.size else None
    status, message = audio_fit(info.duration_s, span, tr, last_word)
    if status == "found":
        message = f"{message} at {info.sample_rate} Hz" if "; " not in message else message.replace(
            " s; ", f" s at {info.sample_rate} Hz; ", 1)
    return AudioMatch(story.name, str(path), status, info.duration_s, info.sample_rate, span, message)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"Audio file {path} does not exist.")
    if not path.is_file():
        raise AudioError(f"Audio path {path} is not a file.")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AudioError(f"Cannot read audio file {path}: {exc.strerror or exc}.") from None
    if size == 0:
        raise AudioError(f"Audio file {path} is empty (0 bytes); copy the recording again.")


def _wav_truncation(path: Path) -> Optional[str]:
    """For RIFF/WAVE files, compare the data chunk's declared size with the bytes present.

    libsndfile silently shortens truncated WAVs; this finds them from the header alone.
    Returns a message when truncated, else None.
    """
    try:
        with open(path, "rb") as fh:
            header = fh.read(12)
            if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
                return None
            file_size = path.stat().st_size
            position = 12
            while position + 8 <= file_size:
                fh.seek(position)
                chunk_id, chunk_size = struct.unpack("<4sI", fh.read(8))
                if chunk_id == b"data":
                    if chunk_size in (0, 0xFFFFFFFF):  # streaming writers leave the size unknown
                        return None
                    available = file_size - position - 8
                    if chunk_size > available:
                        return (f"the header declares {chunk_size} bytes of samples but only {available} "
                                "are present")
                    return None
                position += 8 + chunk_size + (chunk_size & 1)
    except (OSError, struct.error):
        return None
    return None


def audio_info(path: PathLike) -> AudioInfo:
    """Duration, rate and channels of ``path`` from its header only (no full decode).

    Raises AudioError naming the file if it is missing, empty, zero-length, truncated
    (WAV) or not a format libsndfile can read.
    """
    import soundfile

    path = Path(path)
    _check_file(path)
    try:
        info = soundfile.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError/TypeError for non-audio
        raise AudioError(f"Cannot read the header of {path}: it is not a supported audio file or its codec is "
                         f"unsupported ({_short(exc)}); convert it to WAV or FLAC.") from None
    truncated = _wav_truncation(path)
    if truncated:
        raise AudioError(f"Audio file {path} is truncated: {truncated}; copy the file again.")
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(f"Audio file {path} has no samples (zero length).")
    return AudioInfo(path=str(path), duration_s=float(info.frames) / float(info.samplerate),
                     sample_rate=int(info.samplerate), channels=int(info.channels))


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200]


def load_audio(path: PathLike, target_sr: int = 16000) -> np.ndarray:
    """Decode ``path`` to float32 mono samples at ``target_sr`` Hz; shape ``(n_samples,)``.

    Raises AudioError naming the file for missing, empty, zero-length, truncated, non-audio
    or undecodable files, and InputError for a bad ``target_sr``.
    """
    import soundfile

    if not isinstance(target_sr, (int, np.integer)) or isinstance(target_sr, bool) or target_sr < 1000:
        raise InputError(f"target_sr must be a sample rate in Hz (e.g. 16000), got {target_sr!r}.")
    path = Path(path)
    _check_file(path)
    truncated = _wav_truncation(path)
    if truncated:
        raise AudioError(f"Audio file {path} is truncated: {truncated}; copy the file again.")
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        declared = soundfile.info(str(path)).frames
        if 0 < samples.shape[0] < declared:
            raise AudioError(f"Audio file {path} is truncated: the header declares {declared} samples but "
                             f"only {samples.shape[0]} could be decoded; copy the file again.")
        samples = samples.mean(axis=1)
    except AudioError:
        raise
    except Exception as first:  # not a libsndfile format (or damaged): try librosa's decoders
        samples, rate = _librosa_decode(path, first)
    if samples.size == 0:
        raise AudioError(f"Audio file {path} has no samples (zero length).")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"Audio file {path} contains NaN or infinite samples; it is damaged.")
    if rate != target_sr:
        import librosa

        samples = librosa.resample(samples, orig_sr=rate, target_sr=int(target_sr), res_type="soxr_hq")
    return np.ascontiguousarray(samples, dtype=np.float32)


def _librosa_decode(path: Path, first: BaseException) -> tuple[np.ndarray, int]:
    import warnings

    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns before trying audioread
            samples, rate = librosa.load(str(path), sr=None, mono=True, dtype=np.float32)
    except Exception as exc:
        raise AudioError(f"Cannot decode audio file {path}: it is not audio, is truncated, or uses an unsupported "
                         f"codec ({_short(first)}; fallback: {_short(exc)}). Convert it to WAV or FLAC.") from None
    return np.asarray(samples, dtype=np.float32).reshape(-1), int(rate)


def story_tr_span(story: Story, tr: float) -> float:
    """Seconds of sound the story's TRs cover: from max(0, first TR time) to the last TR time + tr."""
    return float(story.tr_times[-1] + tr - max(float(story.tr_times[0]), 0.0))


def _candidates(pattern: str, story: str) -> list[str]:
    """Relative file names to try for a story: the pattern, then its stem with each audio extension."""
    try:
        name = pattern.format(story=story)
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(f"audio pattern {pattern!r} is invalid ({exc}); use a pattern like '{{story}}.wav'.") from None
    relative = Path(name)
    stem = relative.with_suffix("") if relative.suffix.lower() in AUDIO_EXTENSIONS else relative
    return [str(relative)] + [f"{stem}{ext}" for ext in AUDIO_EXTENSIONS]


def _find_case_insensitive(folder: Path, relative: str, listings: dict[Path, dict[str, Path]]) -> Optional[Path]:
    """``folder / relative`` matching the file name case-insensitively (folder listings cached)."""
    parent = (folder / relative).parent
    if parent not in listings:
        try:
            listings[parent] = {entry.name.lower(): entry for entry in sorted(parent.iterdir()) if entry.is_file()}
        except OSError:
            listings[parent] = {}
    return listings[parent].get(Path(relative).name.lower())


def find_story_audio(folder: PathLike, pattern: str, story: str) -> Optional[Path]:
    """The file ``map_audio`` would pick for ``story`` in ``folder`` (pattern, then the same stem
    with each audio extension, case-insensitive), or None."""
    listings: dict[Path, dict[str, Path]] = {}
    return next((found for found in (_find_case_insensitive(Path(folder), c, listings)
                                     for c in _candidates(pattern, story)) if found is not None), None)


def map_audio(assembly: Assembly, folder: Optional[PathLike], pattern: str = "{story}.wav",
              overrides: Optional[dict[str, PathLike]] = None) -> list[AudioMatch]:
    """Find each story's audio file and check it (:func:`check_story_audio`).

    Tries ``folder / pattern.format(story=name)``, then the same stem with .wav/.flac/
    .mp3/.ogg, matching file names case-insensitively. ``overrides`` maps a story name to a
    file (relative paths are taken inside ``folder``). Without a folder (None or ""), each story
    keeps the audio path the assembly gave it (the demo's own files), checked the same way.
    Returns one AudioMatch per story, in assembly order. Nothing is changed; see
    :func:`apply_audio_map`.
    """
    own_paths = folder is None or not str(folder).strip()
    folder = Path(folder) if not own_paths else Path(".")
    overrides = {str(k): v for k, v in (overrides or {}).items()}
    unknown = sorted(set(overrides) - set(assembly.stories))
    if unknown:
        raise InputError(f"audio overrides name stories not in the assembly: {unknown}; stories: {assembly.stories}.")
    if not own_paths and not folder.is_dir() and len(overrides) < len(assembly.stories):
        raise InputError(f"Audio folder {folder} does not exist or is not a folder.")
    listings: dict[Path, dict[str, Path]] = {}
    matches = []
    for story in assembly.stories_list:
        span = story_tr_span(story, assembly.tr)
        if story.name in overrides:
            path: Optional[Path] = Path(overrides[story.name]).expanduser()
            if not path.is_absolute() and not own_paths:
                path = folder / path
            if not path.exists():
                matches.append(AudioMatch(story.name, str(path), "missing", None, None, span,
                                          f"override file {path} does not exist"))
                continue
        elif own_paths:
            path = Path(story.audio_path) if story.audio_path else None
            if path is None:
                matches.append(AudioMatch(story.name, None, "missing", None, None, span,
                                          "the assembly gives no audio file for this story; map an audio folder"))
                continue
        else:
            path = next((found for found in (_find_case_insensitive(folder, c, listings)
                                             for c in _candidates(pattern, story.name)) if found is not None), None)
            if path is None:
                matches.append(AudioMatch(story.name, None, "missing", None, None, span,
                                          f"no file matching {pattern.format(story=story.name)!r} "
                                          f"(or .wav/.flac/.mp3/.ogg) in {folder}"))
                continue
        matches.append(check_story_audio(story, path, assembly.tr))
    return matches


def apply_audio_map(assembly: Assembly, matches: list[AudioMatch]) -> Assembly:
    """Set ``story.audio_path`` for every match with status found or mismatch (in place).

    Stories whose match is missing/unreadable keep their current path. Returns the assembly.
    """
    by_name = assembly.story_data
    for match in matches:
        if match.story not in by_name:
            raise InputError(f"audio match for unknown story {match.story!r}; stories: {assembly.stories}.")
        if match.status not in MATCH_STATUSES:
            raise InputError(f"audio match for {match.story!r} has unknown status {match.status!r}.")
        if match.status in ("found", "mismatch") and match.path:
            by_name[match.story].audio_path = match.path
    return assembly
