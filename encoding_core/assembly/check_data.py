"""Check a LeBel (ds003020) download before loading it: one row per story, every warning.

``check_lebel_folder(root, subject=None)`` reads what loading would read, without the
response data: per story the TextGrid (format, words, duration, Praat's warnings), the TR
count in respdict.json, the response rows of each subject (HDF5 shape only), and the audio
duration against the span of the run's TRs. A story *cannot load* when it has a response
file but lacks its respdict entry or TextGrid, when its TextGrid is refused, its response
file is unreadable (or a datalad pointer without content), or its rows are not
``respdict - 20``. ``python -m encoding_core check-data PATH`` prints :meth:`DataCheckReport.table`
and exits non-zero in that case; the Assembly page shows the same rows.

The audio agrees with the TR span when it ends within :data:`AUDIO_SPAN_TOLERANCE_S` of the
end of the run's TRs: ``respdict - 5`` TRs of 2 s starting 10 s before the sound, so the run
ends ``2 * respdict - 20`` s after the sound onset (``legacy``: respdict 420, TRs end at 820 s,
its TextGrid at 819.99 s).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from encoding_core.assembly.lebel import (
    LEBEL_TR_S,
    RESPONSE_ROWS_SHORTFALL,
    SOUND_ONSET_S,
    TR_TIMES_PAD,
    annex_problem,
    lebel_derivatives_dir,
    lebel_story_files,
    list_lebel_subjects,
    read_respdict,
    response_shape,
)
from encoding_core.assembly.textgrid import read_word_tier
from encoding_core.common.errors import AssemblyFormatError, EncodingCoreError

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
AUDIO_SPAN_TOLERANCE_S = LEBEL_TR_S
"""Largest difference (s) between the audio's end and the end of the run's TRs that agrees."""

_ENCODING_NOTES = {"utf-8-sig": "BOM", "utf-16-le": "UTF-16", "utf-16-be": "UTF-16", "latin-1": "Latin-1"}


def tr_span(run_trs: int) -> tuple[float, float]:
    """(start, end) in s from sound onset of the TRs a story with ``run_trs`` (respdict) gets."""
    start = -SOUND_ONSET_S
    return start, start + (run_trs - TR_TIMES_PAD) * LEBEL_TR_S


@dataclass
class StoryCheck:
    """One story of the folder.

    textgrid_format: "long" / "short" / "chronological" (with ", BOM", ", UTF-16" ...), or
    "missing" / "refused"; words: kept words (None without a readable TextGrid);
    duration_s: the TextGrid's end time; respdict_trs: the run's TR count (None = not
    listed); response_rows: subject -> rows of its response file (None = no file);
    audio_s: duration of stimuli/<story>.wav (None = no audio); tr_span_s: (start, end) s
    of the run's TRs from sound onset; audio_agrees: the audio ends within
    AUDIO_SPAN_TOLERANCE_S of the TRs' end (None without audio or respdict entry);
    problems: why it cannot load (empty = it can); warnings: everything else to know.
    """

    story: str
    textgrid_format: str = "missing"
    words: Optional[int] = None
    duration_s: Optional[float] = None
    respdict_trs: Optional[int] = None
    response_rows: dict[str, Optional[int]] = field(default_factory=dict)
    audio_s: Optional[float] = None
    tr_span_s: Optional[tuple[float, float]] = None
    audio_agrees: Optional[bool] = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def has_responses(self) -> bool:
        return any(rows is not None for rows in self.response_rows.values())

    @property
    def status(self) -> str:
        if self.problems:
            return "cannot load"
        return "ok" if self.has_responses else "no responses"


@dataclass
class DataCheckReport:
    """The whole check: ``rows`` (one per story, sorted by name) and folder-wide ``warnings``."""

    root: Path
    layout: str
    subjects: list[str]
    n_respdict: int
    rows: list[StoryCheck]
    warnings: list[str]

    @property
    def failed(self) -> list[StoryCheck]:
        """Stories that cannot load."""
        return [row for row in self.rows if row.problems]

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_rows(self) -> list[dict[str, Any]]:
        """Table rows for display (one dict per story)."""
        return [{"story": r.story, "status": r.status, "TextGrid": r.textgrid_format, "words": r.words,
                 "duration (s)": None if r.duration_s is None else round(r.duration_s, 2),
                 "respdict TRs": r.respdict_trs, "response rows": _rows_text(r.response_rows),
                 "audio (s)": None if r.audio_s is None else round(r.audio_s, 2),
                 "audio vs TR span": _agreement_text(r), "problems": "; ".join(r.problems),
                 "warnings": len(r.warnings)} for r in self.rows]

    def table(self) -> str:
        """A plain-text report: header, one line per story, then every problem and warning."""
        columns = ["story", "status", "TextGrid", "words", "duration (s)", "respdict TRs", "response rows",
                   "audio (s)", "audio vs TR span"]
        cells = [[_cell(row[c]) for c in columns] for row in self.as_rows()]
        widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
        lines = [f"LeBel folder {self.root} (layout {self.layout}/; subjects: {', '.join(self.subjects) or 'none'}; "
                 f"{self.n_respdict} stories in respdict.json)", "",
                 "  ".join(c.ljust(w) for c, w in zip(columns, widths)),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths)) for line in cells]
        n_ok = sum(r.status == "ok" for r in self.rows)
        lines += ["", f"{n_ok} stories load, {len(self.failed)} cannot load, "
                      f"{sum(r.status == 'no responses' for r in self.rows)} have no responses for "
                      f"{'this subject' if len(self.subjects) == 1 else 'these subjects'}."]
        for row in self.failed:
            lines.append(f"CANNOT LOAD {row.story}: " + "; ".join(row.problems))
        for row in self.rows:
            lines += [f"warning ({row.story}): {w}" for w in row.warnings]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _rows_text(rows: dict[str, Optional[int]]) -> str:
    if not rows:
        return ""
    if len(rows) == 1:
        value = next(iter(rows.values()))
        return "" if value is None else str(value)
    present = sorted({v for v in rows.values() if v is not None})
    with_files = sum(v is not None for v in rows.values())
    return f"{with_files}/{len(rows)} subjects: {', '.join(map(str, present))}" if present else ""


def _agreement_text(row: StoryCheck) -> str:
    if row.audio_agrees is None:
        return ""
    end = row.tr_span_s[1]
    return f"{'agree' if row.audio_agrees else 'DISAGREE'} ({row.audio_s - end:+.2f} s)"


def _audio_seconds(path: Path) -> tuple[Optional[float], str]:
    import soundfile

    try:
        info = soundfile.info(str(path))
    except Exception as exc:  # libsndfile: unreadable, not audio, datalad pointer
        return None, f"audio {path} cannot be read ({type(exc).__name__}: {exc})"
    return info.frames / info.samplerate, ""


def check_lebel_folder(root: PathLike, subject: Optional[str] = None) -> DataCheckReport:
    """Check a LeBel (ds003020) folder story by story (see the module docstring).

    subject: one subject, or None for every subject under preprocessed_data. Raises
    AssemblyFormatError only when ``root`` is not a LeBel folder at all (neither layout, no
    readable respdict.json, unknown subject); every per-story problem is in the report.
    """
    root = Path(root)
    derivatives = lebel_derivatives_dir(root)
    respdict = read_respdict(root)
    all_subjects = list_lebel_subjects(root)
    if subject is not None and subject not in all_subjects:
        raise AssemblyFormatError(f"{root}: no responses for subject {subject!r}; subjects found: {all_subjects}.")
    subjects = [subject] if subject is not None else all_subjects
    warnings: list[str] = []
    if derivatives.name == "derivatives":
        warnings.append("The folder is called derivatives/ (later ds003020 releases); read as derivative/.")
    if not subjects:
        warnings.append(f"No subject folders under {derivatives / 'preprocessed_data'}.")
    per_subject = {s: lebel_story_files(root, s, respdict) for s in subjects} or {None: lebel_story_files(
        root, None, respdict)}
    names = sorted({name for files in per_subject.values() for name in files})
    rows = []
    for name in names:
        entries = {s: files[name] for s, files in per_subject.items() if name in files}
        any_files = next(iter(entries.values()))
        row = StoryCheck(story=name, respdict_trs=any_files.run_trs)
        notes = {note for f in entries.values() for note in f.notes}
        row.warnings.extend(sorted(notes))
        if row.respdict_trs is not None:
            row.tr_span_s = tr_span(row.respdict_trs)
        _check_textgrid(row, any_files.textgrid)
        for s in subjects:
            response = entries[s].response if s in entries else None
            row.response_rows[s] = _check_response(row, response, s, derivatives)
        if row.has_responses:
            if row.respdict_trs is None:
                row.problems.append(f"no entry in {derivatives / 'respdict.json'}")
            if any_files.textgrid is None:
                row.problems.append(f"no TextGrid {derivatives / 'TextGrids' / name}.TextGrid")
        elif row.respdict_trs is None:
            row.warnings.append("not listed in respdict.json (and no responses): it cannot be used.")
        if any_files.audio is not None:
            row.audio_s, problem = _audio_seconds(any_files.audio)
            if problem:
                row.warnings.append(problem)
        if row.audio_s is not None and row.tr_span_s is not None:
            row.audio_agrees = abs(row.audio_s - row.tr_span_s[1]) <= AUDIO_SPAN_TOLERANCE_S
            if not row.audio_agrees:
                row.warnings.append(
                    f"the audio lasts {row.audio_s:.2f} s but the run's {row.respdict_trs - TR_TIMES_PAD} TRs end "
                    f"{row.tr_span_s[1]:.0f} s after the sound onset (respdict {row.respdict_trs}); a different "
                    "audio file, or a respdict.json from another release?")
        elif row.has_responses and any_files.audio is None:
            row.warnings.append(f"no audio {root / 'stimuli' / name}.wav (needed for speech features).")
        rows.append(row)
    return DataCheckReport(root=root, layout=derivatives.name, subjects=subjects, n_respdict=len(respdict),
                           rows=rows, warnings=warnings)


def _check_textgrid(row: StoryCheck, path: Optional[Path]) -> None:
    if path is None:
        return
    try:
        transcript = read_word_tier(path)
    except EncodingCoreError as exc:
        row.textgrid_format = "refused"
        row.problems.append(str(exc))
        return
    note = _ENCODING_NOTES.get(transcript.encoding)
    row.textgrid_format = transcript.format + (f", {note}" if note else "")
    row.words = len(transcript.words)
    row.duration_s = float(transcript.xmax)
    row.warnings.extend(transcript.warnings)


def _check_response(row: StoryCheck, path: Optional[Path], subject: str, derivatives: Path) -> Optional[int]:
    if path is None:
        return None
    problem = annex_problem(path)
    if problem:
        row.problems.append(f"{subject}: the response file {problem}")
        return None
    try:
        shape = response_shape(path)
    except EncodingCoreError as exc:
        row.problems.append(f"{subject}: {exc}")
        return None
    if len(shape) != 2:
        row.problems.append(f"{subject}: {path} holds 'data' of shape {shape}; expected (TRs, voxels).")
        return None
    if row.respdict_trs is not None and shape[0] != row.respdict_trs - RESPONSE_ROWS_SHORTFALL:
        row.problems.append(f"{subject}: {path} has {shape[0]} rows but respdict.json says {row.respdict_trs} TRs, so "
                            f"{row.respdict_trs - RESPONSE_ROWS_SHORTFALL} rows were expected (respdict - 20).")
    return shape[0]
