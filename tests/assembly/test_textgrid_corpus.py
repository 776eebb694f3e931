"""The reader against Praat 6.3.07 on the 91 real TextGrids of tests/data/real-textgrids.

The corpus is committed (third-party files, licences in its SOURCES.md), so this runs on a
clean clone. ``praat_reference.json`` holds what Praat itself read from each file (tiers, kinds, every
interval's start, end and label) or the first line of its refusal. Every .TextGrid in the
folder must have an entry (a new file without one fails the test). Agreement: same tiers
(names, kinds, order), every interval within 1e-9 s with the same label; a file Praat
refuses must raise TextGridError naming the file, the line Praat names, and Praat's message.

Deliberate divergence: the one binary TextGrid (ooBinaryFile), which Praat reads and this
reader refuses with a message asking for a text file.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from encoding_core.common.errors import TextGridError

import encoding_core.assembly.textgrid as tg

CORPUS = Path(__file__).resolve().parents[1] / "data" / "real-textgrids"
REFERENCE = json.loads((CORPUS / "praat_reference.json").read_text(encoding="utf-8"))["files"]
FILES = sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*.TextGrid"))
KNOWN_DIVERGENCES = {"praat/TIMIT_train_dr1_fcjf0_sa1_extended.TextGrid": "binary Praat file"}
FOLDERS = ["praat", "praatio", "crowsetta/calhoun-et-al-2022", "crowsetta/parselmouth", "crowsetta/wav-textgrid",
           "textgrid_py", "tgt", "praat_written"]
TOLERANCE_S = 1e-9


def folder_of(relative: str) -> str:
    parts = relative.split("/")
    return "/".join(parts[:2]) if parts[0] == "crowsetta" else parts[0]


def agreement(relative: str) -> tuple[bool, str]:
    """(agrees with Praat, why not) for one corpus file."""
    path = CORPUS / relative
    expected = REFERENCE[relative]
    try:
        grid, error = tg.read_textgrid_file(path), None
    except TextGridError as exc:
        grid, error = None, str(exc)
    if "error" in expected:
        if error is None:
            return False, f"Praat refuses ({expected['error']}) but the reader read it"
        praat_message = expected["error"].removeprefix("Error: ")
        if str(path) not in error:
            return False, f"the message does not name the file: {error}"
        if praat_message not in error:
            return False, f"the message lacks Praat's {praat_message!r}: {error}"
        line = re.search(r"\(line (\d+)\)", praat_message)
        if line and f", line {line.group(1)}:" not in error:
            return False, f"Praat names line {line.group(1)}; the message says: {error}"
        if not re.search(r", line \d+:", error):
            return False, f"the message names no line: {error}"
        return True, ""
    if error is not None:
        return False, f"Praat reads it; the reader refused: {error}"
    if len(grid.tiers) != len(expected["tiers"]):
        return False, f"{len(grid.tiers)} tiers, Praat {len(expected['tiers'])}"
    for tier, want in zip(grid.tiers, expected["tiers"]):
        if tier.name != want["name"] or (tier.kind == "interval") != bool(want["interval"]):
            return False, f"tier {tier.name!r} ({tier.kind}) vs Praat {want['name']!r} (interval={want['interval']})"
        if tier.kind != "interval":
            continue
        if len(tier.intervals) != len(want["items"]):
            return False, f"tier {tier.name!r}: {len(tier.intervals)} intervals, Praat {len(want['items'])}"
        for i, ((start, end, label), (w_start, w_end, w_label)) in enumerate(zip(tier.intervals, want["items"])):
            if abs(start - w_start) > TOLERANCE_S or abs(end - w_end) > TOLERANCE_S or label != w_label:
                return False, f"tier {tier.name!r} interval {i + 1}: {(start, end, label)} vs Praat {(w_start, w_end, w_label)}"
    return True, ""


def test_every_corpus_file_has_a_reference_entry():
    assert FILES, "no .TextGrid files found in the corpus"
    missing = sorted(set(FILES) - set(REFERENCE))
    assert not missing, f"TextGrids without an entry in praat_reference.json (add Praat's reading first): {missing}"
    stale = sorted(set(REFERENCE) - set(FILES))
    assert not stale, f"entries in praat_reference.json without a file: {stale}"


@pytest.mark.parametrize("relative", FILES)
def test_reader_reads_what_praat_reads(relative):
    if relative in KNOWN_DIVERGENCES:
        with pytest.raises(TextGridError, match=KNOWN_DIVERGENCES[relative]) as info:
            tg.read_textgrid_file(CORPUS / relative)
        assert str(CORPUS / relative) in str(info.value)
        return
    ok, why = agreement(relative)
    assert ok, why


def test_agreement_table_per_source_folder(capsys):
    """Files agreeing / total per folder; the only disagreement is the documented binary file."""
    agree, total = Counter(), Counter()
    disagreements = {}
    for relative in FILES:
        ok, why = agreement(relative)
        folder = folder_of(relative)
        total[folder] += 1
        agree[folder] += ok
        if not ok:
            disagreements[relative] = why
    assert set(total) == set(FOLDERS), sorted(total)
    with capsys.disabled():
        print("\nagreement with Praat 6.3.07 (files agreeing / total):")
        for folder in FOLDERS:
            print(f"  {folder:32s} {agree[folder]:3d} / {total[folder]:3d}")
        print(f"  {'all':32s} {sum(agree.values()):3d} / {sum(total.values()):3d}")
    assert set(disagreements) == set(KNOWN_DIVERGENCES), disagreements
    assert sum(total.values()) == len(REFERENCE) == 91
