"""TextGrid reading/writing, checked against praatio (an independent parser) and hand-written files."""
from __future__ import annotations

import numpy as np
import pytest
from praatio import textgrid as praat_textgrid

from encoding_core.common.errors import EncodingCoreError, TextGridError
from encoding_core.assembly.textgrid import is_non_word, read_textgrid, read_words, write_textgrid

# A LeBel-style file as Praat writes it (long format, phones then words).
PRAAT_LONG = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0 
xmax = 3.2 
tiers? <exists> 
size = 2 
item []: 
    item [1]:
        class = "IntervalTier" 
        name = "phone" 
        xmin = 0 
        xmax = 3.2 
        intervals: size = 2 
        intervals [1]:
            xmin = 0 
            xmax = 1.5 
            text = "HH" 
        intervals [2]:
            xmin = 1.5 
            xmax = 3.2 
            text = "AY" 
    item [2]:
        class = "IntervalTier" 
        name = "word" 
        xmin = 0 
        xmax = 3.2 
        intervals: size = 6 
        intervals [1]:
            xmin = 0 
            xmax = 0.4 
            text = "sentence_start" 
        intervals [2]:
            xmin = 0.4 
            xmax = 0.9 
            text = "I" 
        intervals [3]:
            xmin = 0.9 
            xmax = 1.2 
            text = "{LG}" 
        intervals [4]:
            xmin = 1.2 
            xmax = 1.8 
            text = "reached" 
        intervals [5]:
            xmin = 1.8 
            xmax = 2.0 
            text = "sp" 
        intervals [6]:
            xmin = 2.0 
            xmax = 3.2 
            text = "Über ""quoted""" 
'''


def praatio_tiers(path):
    tg = praat_textgrid.openTextgrid(str(path), includeEmptyIntervals=True)
    return {name: [(e.start, e.end, e.label) for e in tg.getTier(name).entries] for name in tg.tierNames}


def test_long_format_matches_praatio(tmp_path):
    path = tmp_path / "story.TextGrid"
    path.write_text(PRAAT_LONG, encoding="utf-8")
    assert read_textgrid(path) == praatio_tiers(path)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-8-sig"])
def test_bom_encodings(tmp_path, encoding):
    path = tmp_path / "story.TextGrid"
    text = PRAAT_LONG if encoding != "utf-16-be" else "\ufeff" + PRAAT_LONG
    path.write_bytes(text.encode(encoding))
    tiers = read_textgrid(path)
    assert tiers["word"][5] == (2.0, 3.2, 'Über "quoted"')
    reference = tmp_path / "ref.TextGrid"
    reference.write_text(PRAAT_LONG, encoding="utf-8")
    assert tiers == read_textgrid(reference)


def test_short_format_written_by_praatio(tmp_path):
    long_path = tmp_path / "long.TextGrid"
    long_path.write_text(PRAAT_LONG, encoding="utf-8")
    tg = praat_textgrid.openTextgrid(str(long_path), includeEmptyIntervals=True)
    short_path = tmp_path / "short.TextGrid"
    tg.save(str(short_path), format="short_textgrid", includeBlankSpaces=True)
    assert "intervals" not in short_path.read_text(encoding="utf-8")  # really the short format
    assert read_textgrid(short_path) == praatio_tiers(short_path) == read_textgrid(long_path)


def test_read_words_drops_lebel_non_words(tmp_path):
    path = tmp_path / "story.TextGrid"
    path.write_text(PRAAT_LONG, encoding="utf-8")
    words, onsets, offsets = read_words(path)
    assert words == ["I", "reached", 'Über "quoted"']
    np.testing.assert_array_equal(onsets, [0.4, 1.2, 2.0])
    np.testing.assert_array_equal(offsets, [0.9, 1.8, 3.2])
    assert onsets.dtype == np.float64 and offsets.dtype == np.float64
    phones, _, _ = read_words(path, tier=0)
    assert phones == ["HH", "AY"]
    assert read_words(path, tier="phone")[0] == ["HH", "AY"]


@pytest.mark.parametrize("label,expected", [
    ("sp", True), ("SP", True), ("{LG}", True), (" {br} ", True), ("", True), ("   ", True),
    ("sentence_start", True), ("SENTENCE_END", True), ("ns", True), ("ls", True),
    ("spa", False), ("I", False), ("lg2", False), ("{word}", False),
])
def test_non_word_labels(label, expected):
    assert is_non_word(label) is expected


def test_tier_selection_without_words_name(tmp_path):
    path = tmp_path / "t.TextGrid"
    write_textgrid(path, {"a": [(0.0, 1.0, "first")], "b": [(0.0, 1.0, "second")]}, xmax=1.0)
    assert read_words(path)[0] == ["second"]  # index 1 when >= 2 tiers and none named words
    write_textgrid(path, {"only": [(0.0, 1.0, "solo")]}, xmax=1.0)
    assert read_words(path)[0] == ["solo"]
    write_textgrid(path, {"Words": [(0.0, 1.0, "named")], "phones": [(0.0, 1.0, "p")]}, xmax=1.0)
    assert read_words(path)[0] == ["named"]
    with pytest.raises(TextGridError, match="no tier 'x'"):
        read_words(path, tier="x")
    with pytest.raises(TextGridError, match="out of range"):
        read_words(path, tier=5)


def test_write_round_trip_and_gap_filling(tmp_path):
    rng = np.random.default_rng(1)
    bounds = np.sort(rng.uniform(0.0, 30.0, 41))
    labels = ["wörd", 'say "hi"', "日本", "x"] * 5
    words = [(float(bounds[2 * i]), float(bounds[2 * i + 1]), labels[i]) for i in range(20)]
    path = tmp_path / "out" / "w.TextGrid"
    write_textgrid(path, {"words": words}, xmax=31.0)
    theirs = praatio_tiers(path)["words"]
    non_empty = [iv for iv in theirs if iv[2]]
    assert [(round(s, 9), round(e, 9), l) for s, e, l in non_empty] == [
        (round(s, 9), round(e, 9), l) for s, e, l in words]
    # Gaps are filled: the tier covers [0, xmax] contiguously.
    assert theirs[0][0] == 0.0 and theirs[-1][1] == 31.0
    assert all(a[1] == b[0] for a, b in zip(theirs, theirs[1:]))
    got_words, onsets, offsets = read_words(path)
    assert got_words == labels
    np.testing.assert_array_equal(onsets, bounds[0:40:2])
    np.testing.assert_array_equal(offsets, bounds[1:40:2])
    assert not list(path.parent.glob(".*.tmp"))


@pytest.mark.parametrize("tiers,xmax,message", [
    ({"w": [(1.0, 0.5, "a")]}, 2.0, "xmin > xmax"),
    ({"w": [(0.0, 1.0, "a"), (0.5, 1.5, "b")]}, 2.0, "overlaps"),
    ({"w": []}, 2.0, "empty"),
    ({"w": [(0.0, 3.0, "a")]}, 2.0, "outside"),
    ({"w": [(0.0, float("nan"), "a")]}, 2.0, "NaN"),
    ({"w": [(0.0, 1.0, "a")]}, -1.0, "xmax"),
    ({}, 2.0, "no tiers"),
])
def test_write_refuses_bad_tiers(tmp_path, tiers, xmax, message):
    path = tmp_path / "bad.TextGrid"
    with pytest.raises(TextGridError, match=message) as info:
        write_textgrid(path, tiers, xmax)
    assert str(path) in str(info.value)
    assert not path.exists()


def _mutate(text: str, old: str, new: str, count: int = 1) -> str:
    assert old in text
    return text.replace(old, new, count)


@pytest.mark.parametrize("content,message", [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"ooBinaryFile\x08TextGrid", "binary"),
    (PRAAT_LONG[: len(PRAAT_LONG) // 2].encode(), "truncated"),
    (_mutate(PRAAT_LONG, '"TextGrid"', '"Sound"').encode(), "not a Praat TextGrid"),
    (_mutate(PRAAT_LONG, "xmax = 0.9 ", "xmax = 1.3 ").encode(), "overlaps"),
    (_mutate(PRAAT_LONG, "xmax = 0.4 ", "xmax = -0.4 ").encode(), "xmin > xmax"),
    (_mutate(PRAAT_LONG, "xmax = 3.2 ", "xmax = -3.2 ").encode(), "xmin 0.0 s is greater"),
    (_mutate(PRAAT_LONG, "intervals: size = 2", "intervals: size = 0").encode(), "empty|unexpected"),
    (_mutate(PRAAT_LONG, "size = 2 ", "size = 9999999 ").encode(), "declares"),
    (_mutate(PRAAT_LONG, "size = 2 ", "size = 3 ").encode(), "declares|ends early"),
    (_mutate(PRAAT_LONG, '"IntervalTier"', '"Weird"').encode(), "unknown class"),
    (_mutate(PRAAT_LONG, 'text = "HH"', "text = HH@").encode(), "unexpected character|expected a quoted"),
    (PRAAT_LONG.encode() + b'"extra"\n', "unexpected values"),
    (b"\xff\xfe\x00\xd8", "decode"),
], ids=lambda value: None if isinstance(value, bytes) else value)
def test_malformed_files_raise_textgrid_error(tmp_path, content, message):
    path = tmp_path / "broken.TextGrid"
    path.write_bytes(content)
    with pytest.raises(TextGridError, match=message) as info:
        read_textgrid(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(TextGridError, match="Cannot read TextGrid") as info:
        read_words(tmp_path / "nope.TextGrid")
    assert "nope.TextGrid" in str(info.value)
    assert issubclass(TextGridError, EncodingCoreError)


def test_point_tiers_are_skipped(tmp_path):
    text = _mutate(PRAAT_LONG, "size = 2 \nitem []: ", "size = 3 \nitem []: ")
    text += '''    item [3]:
        class = "TextTier" 
        name = "events" 
        xmin = 0 
        xmax = 3.2 
        points: size = 1 
        points [1]:
            number = 1.1 
            mark = "beep" 
'''
    path = tmp_path / "p.TextGrid"
    path.write_text(text, encoding="utf-8")
    assert list(read_textgrid(path)) == ["phone", "word"]
