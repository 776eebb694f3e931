"""Build small ds003020-shaped folders in tests, with the real respdict.json of the dataset.

``tests/data/real-textgrids/lebel/respdict.json`` is the dataset's own file (84 stories, CC0);
only a few stories are built. The TextGrids are written here in Praat's three text formats
(long, short, chronological; optionally after a UTF-8 byte-order mark), as the released
dataset has them. The word intervals are generated here and returned, so tests compare the
loaders against these values, not against the reader's output.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import h5py
import numpy as np

REAL_RESPDICT_PATH = Path(__file__).resolve().parents[1] / "data" / "real-textgrids" / "lebel" / "respdict.json"
STORIES = ("sweetaspie", "againstthewind", "wheretheressmoke")
N_VOXELS = 8
N_REPEATS = 3
FIRST_WORD_S = 0.0124716553288  # the ds003020 TextGrids start here (GabrielKP/enc quotes this header)
NON_WORD_LABELS = ("sp", "{LG}", "", "{NS}", "sentence_start")
AUDIO_RATE = 100  # Hz: tiny WAV files whose duration is what matters


def real_respdict() -> dict[str, int]:
    return json.loads(REAL_RESPDICT_PATH.read_text(encoding="utf-8"))


Interval = tuple[float, float, str]


@dataclass
class BuiltStory:
    name: str
    run_trs: int
    words: list[Interval]        # the word tier as written (non-words included), in time order
    phones: list[Interval]
    duration_s: float
    response: np.ndarray         # (run_trs - 20, N_VOXELS) float32 per subject (same for all here)
    repeats: Optional[np.ndarray]


def story_intervals(name: str, run_trs: int, seed: int) -> tuple[list[Interval], list[Interval], float]:
    """(words, phones, duration): words of 0.15-0.6 s with non-words sprinkled in, covering the
    story's sound (2 * run_trs - 20 s, as the dataset's stories last), every time a float."""
    rng = np.random.default_rng(seed)
    duration = 2.0 * run_trs - 20.0 - 0.011
    bounds = [FIRST_WORD_S]
    while bounds[-1] < duration - 1.0:
        bounds.append(bounds[-1] + float(rng.uniform(0.15, 0.6)))
    bounds[-1] = duration
    labels = []
    for i in range(len(bounds) - 1):
        if i % 7 == 3:
            labels.append(NON_WORD_LABELS[(i // 7) % len(NON_WORD_LABELS)])
        else:
            labels.append(f"{'W' if i % 2 else 'w'}ord{i}")  # mixed case: the loaders lower-case
    words = [(bounds[i], bounds[i + 1], labels[i]) for i in range(len(labels))]
    phones = []
    for start, end, label in words:
        middle = start + (end - start) * 0.4
        phones += [(start, middle, "AH0" if label else ""), (middle, end, "K" if label else "")]
    return words, phones, duration


def _quote(label: str) -> str:
    return '"' + label.replace('"', '""') + '"'


def textgrid_text(phones: list[Interval], words: list[Interval], xmax: float, fmt: str) -> str:
    """A two-tier (phone, word) TextGrid in Praat's ``long``, ``short`` or ``chronological`` format."""
    xmin = FIRST_WORD_S
    tiers = [("phone", phones), ("word", words)]
    if fmt == "chronological":
        lines = ['"Praat chronological TextGrid text file"', f"{xmin!r} {xmax!r}   ! Time domain.",
                 f"{len(tiers)}   ! Number of tiers."]
        lines += [f'"IntervalTier" {_quote(name)} {xmin!r} {xmax!r}' for name, _ in tiers]
        entries = sorted((start, number, end, label) for number, (_, intervals) in enumerate(tiers, start=1)
                         for start, end, label in intervals)
        for start, number, end, label in entries:
            lines += [f"{number} {start!r} {end!r}", _quote(label)]
        return "\n".join(lines) + "\n"
    if fmt == "short":
        lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", repr(xmin), repr(xmax), "<exists>",
                 str(len(tiers))]
        for name, intervals in tiers:
            lines += ['"IntervalTier"', _quote(name), repr(xmin), repr(xmax), str(len(intervals))]
            for start, end, label in intervals:
                lines += [repr(start), repr(end), _quote(label)]
        return "\n".join(lines) + "\n"
    assert fmt == "long", fmt
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", f"xmin = {xmin!r} ", f"xmax = {xmax!r} ",
             "tiers? <exists> ", f"size = {len(tiers)} ", "item []: "]
    for k, (name, intervals) in enumerate(tiers, start=1):
        lines += [f"    item [{k}]:", '        class = "IntervalTier" ', f"        name = {_quote(name)} ",
                  f"        xmin = {xmin!r} ", f"        xmax = {xmax!r} ", f"        intervals: size = {len(intervals)} "]
        for i, (start, end, label) in enumerate(intervals, start=1):
            lines += [f"        intervals [{i}]:", f"            xmin = {start!r} ", f"            xmax = {end!r} ",
                      f"            text = {_quote(label)} "]
    return "\n".join(lines) + "\n"


def build_lebel_tree(root: Path, stories: tuple[str, ...] = STORIES, subjects: tuple[str, ...] = ("UTS01",),
                     layout: str = "derivative", suffix: str = ".hf5", formats: Optional[dict[str, str]] = None,
                     bom: tuple[str, ...] = (), file_names: Optional[dict[str, str]] = None,
                     audio: tuple[str, ...] = (), respdict: Optional[dict[str, int]] = None,
                     seed: int = 0) -> dict[str, BuiltStory]:
    """Write a ds003020-shaped tree under ``root``; return what was written, per story.

    layout: ``derivative`` or ``derivatives``; suffix: ``.hf5`` or ``.h5``; formats: story ->
    TextGrid format (default long); bom: stories whose TextGrid starts with a UTF-8 BOM;
    file_names: story -> the spelling used for its files (case differences); audio: stories
    with a WAV in stimuli/; respdict: defaults to the real one (all 84 stories).
    """
    respdict = real_respdict() if respdict is None else respdict
    formats = formats or {}
    file_names = file_names or {}
    derivatives = root / layout
    (derivatives / "TextGrids").mkdir(parents=True, exist_ok=True)
    (derivatives / "respdict.json").write_text(json.dumps(respdict), encoding="utf-8")
    rng = np.random.default_rng(seed)
    built = {}
    for index, story in enumerate(stories):
        run_trs = respdict[story]
        words, phones, duration = story_intervals(story, run_trs, seed + index)
        rows = run_trs - 20
        response = rng.standard_normal((rows, N_VOXELS)).astype(np.float32)
        repeats = None
        if story == "wheretheressmoke":
            repeats = rng.standard_normal((N_REPEATS, rows, N_VOXELS)).astype(np.float32)
            response = repeats.mean(axis=0)
        built[story] = BuiltStory(story, run_trs, words, phones, duration, response, repeats)
        file_stem = file_names.get(story, story)
        text = textgrid_text(phones, words, duration, formats.get(story, "long"))
        data = text.encode("utf-8")
        if story in bom:
            data = b"\xef\xbb\xbf" + data
        (derivatives / "TextGrids" / f"{file_stem}.TextGrid").write_bytes(data)
        if story in audio:
            import soundfile

            (root / "stimuli").mkdir(exist_ok=True)
            soundfile.write(root / "stimuli" / f"{file_stem}.wav",
                            np.zeros(int(round(duration * AUDIO_RATE)), dtype=np.float32), AUDIO_RATE)
    for subject in subjects:
        folder = derivatives / "preprocessed_data" / subject
        folder.mkdir(parents=True, exist_ok=True)
        for story, made in built.items():
            with h5py.File(folder / f"{file_names.get(story, story)}{suffix}", "w") as h5:
                h5["data"] = made.response
                if made.repeats is not None:
                    h5["individual_repeats"] = made.repeats
    return built
