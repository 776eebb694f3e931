"""The TextGrid reader and writer: ported tests of the old reader, plus Praat's behaviours.

Independent references: praatio 6.2.2 (another parser) for well-formed files, files Praat
6.3.07 itself wrote (in the shared corpus), and values Praat 6.3.07 read from the small
files below (measured with ``praat_nogui`` and written here as literals; the live check is
tests/assembly/test_textgrid_praat_live.py).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from encoding_core.common.errors import EncodingCoreError, TextGridError
from praatio import textgrid as praat_textgrid

from encoding_core.assembly.textgrid import (
    LEBEL_NON_WORDS,
    check_tier_overlaps,
    is_non_word,
    read_textgrid,
    read_textgrid_file,
    read_word_tier,
    read_words,
    select_word_tier,
    write_textgrid,
)

CORPUS = Path(__file__).resolve().parents[1] / "data" / "real-textgrids"

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

HEADER = 'File type = "ooTextFile"\nObject class = "TextGrid"\n\n'


def short(body: str) -> str:
    """A short-format TextGrid: the header, then ``body`` (values only)."""
    return HEADER + body


def write(tmp_path: Path, content, name: str = "t.TextGrid") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def praatio_tiers(path):
    grid = praat_textgrid.openTextgrid(str(path), includeEmptyIntervals=True)
    return {name: [(e.start, e.end, e.label) for e in grid.getTier(name).entries] for name in grid.tierNames}


# ------------------------------------------------------------------ ported from the old reader

def test_long_format_matches_praatio(tmp_path):
    path = write(tmp_path, PRAAT_LONG)
    assert read_textgrid(path) == praatio_tiers(path)
    grid = read_textgrid_file(path)
    assert (grid.format, grid.encoding, grid.xmin, grid.xmax) == ("long", "utf-8", 0.0, 3.2)
    assert [(t.name, t.kind) for t in grid.tiers] == [("phone", "interval"), ("word", "interval")]
    assert grid.warnings == ()


@pytest.mark.parametrize("encoding,name", [("utf-16", "utf-16-le"), ("utf-16-be", "utf-16-be"),
                                          ("utf-8-sig", "utf-8-sig")])
def test_bom_encodings(tmp_path, encoding, name):
    text = PRAAT_LONG if encoding != "utf-16-be" else "\ufeff" + PRAAT_LONG
    path = write(tmp_path, text.encode(encoding))
    tiers = read_textgrid(path)
    assert tiers["word"][5] == (2.0, 3.2, 'Über "quoted"')
    assert tiers == read_textgrid(write(tmp_path, PRAAT_LONG, "ref.TextGrid"))
    assert read_textgrid_file(path).encoding == name


def test_short_format_written_by_praatio(tmp_path):
    long_path = write(tmp_path, PRAAT_LONG, "long.TextGrid")
    grid = praat_textgrid.openTextgrid(str(long_path), includeEmptyIntervals=True)
    short_path = tmp_path / "short.TextGrid"
    grid.save(str(short_path), format="short_textgrid", includeBlankSpaces=True)
    assert "intervals" not in short_path.read_text(encoding="utf-8")  # really the short format
    assert read_textgrid(short_path) == praatio_tiers(short_path) == read_textgrid(long_path)
    assert read_textgrid_file(short_path).format == "short"


def test_read_words_drops_lebel_non_words(tmp_path):
    path = write(tmp_path, PRAAT_LONG)
    words, onsets, offsets = read_words(path)
    assert words == ["I", "reached", 'Über "quoted"']
    np.testing.assert_array_equal(onsets, [0.4, 1.2, 2.0])
    np.testing.assert_array_equal(offsets, [0.9, 1.8, 3.2])
    assert onsets.dtype == np.float64 and offsets.dtype == np.float64
    assert read_words(path, tier=0)[0] == ["HH", "AY"]
    assert read_words(path, tier="phone")[0] == ["HH", "AY"]


@pytest.mark.parametrize("label,expected", [
    ("sp", True), ("SP", True), ("{LG}", True), (" {br} ", True), ("", True), ("   ", True),
    ("sentence_start", True), ("SENTENCE_END", True), ("ns", True), ("ls", True),
    ("spa", False), ("I", False), ("lg2", False), ("{word}", False),
])
def test_non_word_labels(label, expected):
    assert is_non_word(label) is expected
    assert "sp" in LEBEL_NON_WORDS


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
    assert select_word_tier({"w": [], "x": []}) == "x"


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
    (_mutate(PRAAT_LONG, '"TextGrid"', '"Sound"').encode(), 'Class "Sound"'),
    (_mutate(PRAAT_LONG, "xmax = 0.4 ", "xmax = -0.4 ").encode(), r"Wrong xmin 0 and xmax -0\.4"),
    (_mutate(PRAAT_LONG, "xmax = 3.2 ", "xmax = -3.2 ").encode(), r"Wrong xmin 0 and xmax -3\.2"),
    (_mutate(PRAAT_LONG, "intervals: size = 2", "intervals: size = 0").encode(), "Found a number while looking for a string"),
    (_mutate(PRAAT_LONG, "size = 2 ", "size = 9999999 ").encode(), "Early end of text detected while looking for a string"),
    (_mutate(PRAAT_LONG, "size = 2 ", "size = 3 ").encode(), "truncated"),
    (_mutate(PRAAT_LONG, '"IntervalTier"', '"Weird"').encode(), 'Class "Weird" not recognized'),
    (_mutate(PRAAT_LONG, 'text = "HH"', "text = HH@").encode(), "Found a number while looking for a string"),
    (b"\xff\xfe\x00\xd8", "not a Praat TextGrid"),
], ids=lambda value: None if isinstance(value, bytes) else value)
def test_malformed_files_raise_textgrid_error(tmp_path, content, message):
    path = write(tmp_path, content, "broken.TextGrid")
    with pytest.raises(TextGridError, match=message) as info:
        read_textgrid(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(TextGridError, match="Cannot read TextGrid") as info:
        read_words(tmp_path / "nope.TextGrid")
    assert "nope.TextGrid" in str(info.value)
    assert issubclass(TextGridError, EncodingCoreError)


def test_point_tiers_are_skipped_by_read_textgrid_and_kept_by_read_textgrid_file(tmp_path):
    text = _mutate(PRAAT_LONG, "size = 2 \nitem []: ", "size = 3 \nitem []: ")
    text += '''    item [3]:
        class = "TextTier" 
        name = "events" 
        xmin = 0 
        xmax = 3.2 
        points: size = 2 
        points [1]:
            number = 2.5 
            mark = "late" 
        points [2]:
            number = 1.1 
            mark = "beep" 
'''
    path = write(tmp_path, text)
    assert list(read_textgrid(path)) == ["phone", "word"]
    events = read_textgrid_file(path).tier("events")
    assert events.kind == "point" and events.intervals == ()
    assert events.points == ((1.1, "beep"), (2.5, "late"))  # Praat sorts points by time


# ------------------------------------------------------------------ formats Praat reads

CHRONOLOGICAL = '''"Praat chronological TextGrid text file"
0 2.5   ! Time domain.
3   ! Number of tiers.
"IntervalTier" "phone" 0 2.5
"IntervalTier" "word" 0 2.5
"TextTier" "bell" 0 2.5

! phone:
1 0 1
"HH"

! word:
2 0 2.5
"hi ""you"""

! bell:
3 0.7
"ding"

! phone:
1 1 2.5
""
'''


def test_chronological_format(tmp_path):
    grid = read_textgrid_file(write(tmp_path, CHRONOLOGICAL))
    assert (grid.format, grid.xmin, grid.xmax) == ("chronological", 0.0, 2.5)
    assert [(t.name, t.kind, t.xmin, t.xmax) for t in grid.tiers] == [
        ("phone", "interval", 0.0, 2.5), ("word", "interval", 0.0, 2.5), ("bell", "point", 0.0, 2.5)]
    assert grid.tiers[0].intervals == ((0.0, 1.0, "HH"), (1.0, 2.5, ""))
    assert grid.tiers[1].intervals == ((0.0, 2.5, 'hi "you"'),)
    assert grid.tiers[2].points == ((0.7, "ding"),)
    assert [t.line for t in grid.tiers] == [4, 5, 6]


@pytest.mark.parametrize("stem", ["mary", "calhoun_SubjectFocusLeilani", "north_wind", "crowsetta_1227",
                                  "textgridpy_long_format"])
def test_praat_written_chronological_equals_long_and_short(stem):
    """Praat wrote the same TextGrid in three formats; all must read the same."""
    folder = CORPUS / "praat_written"
    if not folder.is_dir():
        pytest.fail(f"the committed corpus is missing: {CORPUS}")
    grids = {fmt: read_textgrid_file(folder / f"{stem}.{fmt}.TextGrid") for fmt in ("long", "short", "chronological")}
    assert {fmt: g.format for fmt, g in grids.items()} == {f: f for f in grids}
    ref = grids["long"]
    for grid in grids.values():
        assert [(t.name, t.kind, t.xmin, t.xmax, t.intervals, t.points) for t in grid.tiers] == \
               [(t.name, t.kind, t.xmin, t.xmax, t.intervals, t.points) for t in ref.tiers]


def test_old_oo_text_file_short_header(tmp_path):
    path = write(tmp_path, 'File type = "ooTextFile short"\n"TextGrid"\n\n0\n2\n<exists>\n1\n"IntervalTier"\n"w"\n0\n2\n'
                           '2\n0\n1.25\n"a"\n1.25\n2\n"b"\n')
    grid = read_textgrid_file(path)
    assert grid.format == "short"
    assert grid.tiers[0].intervals == ((0.0, 1.25, "a"), (1.25, 2.0, "b"))


def test_empty_interval_tier_is_one_empty_interval_except_in_chronological(tmp_path):
    grid = read_textgrid_file(write(tmp_path, short('0 1 <exists> 1 "IntervalTier" "w" 0.2 0.7 0\n')))
    assert grid.tiers[0].intervals == ((0.2, 0.7, ""),)  # Praat 6.3.07: one interval spanning the tier
    assert any("no intervals" in w for w in grid.warnings)
    chronological = ('"Praat chronological TextGrid text file"\n0 1\n2\n"IntervalTier" "phone" 0 1\n'
                     '"IntervalTier" "word" 0 1\n1 0 1\n"a"\n' + " " * 40 + "\n")
    grid = read_textgrid_file(write(tmp_path, chronological, "c.TextGrid"))
    assert grid.tiers[0].intervals == ((0.0, 1.0, "a"),)
    assert grid.tiers[1].intervals == ()  # Praat keeps it empty in this format
    assert read_textgrid(tmp_path / "c.TextGrid") == {"phone": [(0.0, 1.0, "a")], "word": []}


def test_text_after_a_closing_quote_is_refused_with_its_line(tmp_path):
    path = write(tmp_path, _mutate(PRAAT_LONG, 'text = "reached" ', 'text = "reached"x'))
    with pytest.raises(TextGridError) as info:
        read_textgrid_file(path)
    message = str(info.value)
    assert f"{path}, line 44:" in message
    assert "Character x following quote (line 44). End of string or undoubled quote?" in message
    assert "interval 4 of tier 'word'" in message


def test_values_after_the_last_tier_are_ignored_like_praat(tmp_path):
    grid = read_textgrid_file(write(tmp_path, PRAAT_LONG + '"extra" 12\n'))
    assert [len(t.intervals) for t in grid.tiers] == [2, 6]
    assert any("after the last tier" in w for w in grid.warnings)


def test_utf8_bom_crlf_and_cr_only(tmp_path):
    reference = read_textgrid(write(tmp_path, PRAAT_LONG, "ref.TextGrid"))
    assert read_textgrid(write(tmp_path, b"\xef\xbb\xbf" + PRAAT_LONG.replace("\n", "\r\n").encode(), "a.TextGrid")) == reference
    assert read_textgrid(write(tmp_path, PRAAT_LONG.replace("\n", "\r").encode(), "b.TextGrid")) == reference


def test_chronological_after_a_utf8_bom_is_read_with_a_warning(tmp_path):
    grid = read_textgrid_file(write(tmp_path, b"\xef\xbb\xbf" + CHRONOLOGICAL.encode()))
    assert grid.tiers[0].intervals == ((0.0, 1.0, "HH"), (1.0, 2.5, ""))
    assert any("byte-order mark" in w for w in grid.warnings)


# ------------------------------------------------------------------ Praat 6.3.07's numbers and refusals

@pytest.mark.parametrize("token,expected", [
    ("0.5", 0.5), ("0.5abc", 0.5), ("1.5.5", 1.5), ("1,5", 1.0), ("1_000", 1.0), ("5.", 5.0), ("00.5", 0.5),
    ("+5", 5.0), ("1E2", 100.0), ("1d2", 1.0), ("0x10", 16.0), ("0x1p-1", 0.5), ("0x", 0.0), ("0b1", 0.0),
    ("1/2", 0.5), ("1/2/3", 0.5), ("50%", 0.5), ("0.5%", 0.005), ("1e2%", 1.0), ("50%%", 0.5),
    ("1e-400", 0.0), ("5e-324", 5e-324), ("1e308", 1e308),
    ("1e", math.nan), ("1e+", math.nan), ("-", math.nan), ("--", math.nan), ("-.5", math.nan), ("++5", math.nan),
    ("-+5", math.nan), ("-inf", math.nan), ("-nan", math.nan), ("1/0", math.nan), ("0/0", math.nan),
    ("1/", math.nan), ("--undefined--", math.nan), ("1e400", math.inf),
])
def test_number_forms_read_as_praat_reads_them(tmp_path, token, expected):
    """Values Praat 6.3.07 reads for an interval's end time written as ``token``."""
    grid = read_textgrid_file(write(tmp_path, short(f'0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 {token} "a"\n')))
    value = grid.tiers[0].intervals[0][1]
    if math.isnan(expected):
        assert math.isnan(value)
    else:
        assert value == expected


@pytest.mark.parametrize("body,message", [
    ('0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 .5 "a"\n',
     "Found a string while looking for a real number in text (line 4)."),
    ('0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 + "a"\n',
     "Found a string while looking for a real number in text (line 4)."),
    ('0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 -1/2 "a"\n', "Wrong xmin 0 and xmax -0.5."),
    ('0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 -1e400 "a"\n', "Wrong xmin 0 and xmax --undefined--."),
    ('1e400 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 1 "a"\n', "Wrong xmin --undefined-- and xmax 1."),
    ('0 1 <exists> 1 "IntervalTier" "w" 1 0 1 0 1 "a"\n', "Wrong xmin 1 and xmax 0."),
    ('0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 1é "a"\n',
     "Found strange text while looking for a real number in text (line 4)."),
    ('0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 0.' + "1" * 39 + ' "a"\n',
     "Found long text while searching for a real number in text (line 4)."),
    ('0 1 <exists> 1 "IntervalTier" "w" 0 1 ' + "1" * 41 + ' 0 1 "a"\n',
     "Found long text while looking for an integer in text (line 4)."),
    ('0 1 <exists> 1 "IntervalTier" "w" 0 1 3000000000 0 1 "a"\n',
     "Value (3000000000) out of range (-2147483648 .. +2147483647)."),
    ('0 1 <exists> 1 "IntervalTier" "w" 0 1 99999999999999999999 0 1 "a"\n',
     "Value (9223372036854775807) out of range (-2147483648 .. +2147483647)."),
    ('0 1 <exists> 1 "IntervalTier" "w" 0 1 2147483647 0 1 "a"\n',
     "Early end of text detected while looking for a real number (line 5)."),
    ('0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 1 "a""', "Early end of text detected while reading a string (line 4)."),
    ('0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 1 "a",\n',
     "Character , following quote (line 4). End of string or undoubled quote?"),
    ('0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 1 <x> "a"\n',
     "Found an enumerated value while looking for a string in text (line 4)."),
    ('0 1 <EXISTS> 1 "IntervalTier" "w" 0 1 1 0 1 "a"\n', '"EXISTS" is not a value of the enumerated type.'),
    ('0 1 <exi sts> 1 "IntervalTier" "w" 0 1 1 0 1 "a"\n', '"exi sts" is not a value of the enumerated type.'),
    ('0 1 <exi\tsts> 1 "IntervalTier" "w" 0 1 1 0 1 "a"\n',
     "No matching '>' while reading an enumerated value (line 4)."),
    ('0 1 <' + "a" * 40 + '> 1 "IntervalTier" "w" 0 1 1 0 1 "a"\n',
     "Found strange text while reading an enumerated value in text (line 4)."),
    ('0 1 exists 1 "IntervalTier" "w" 0 1 1 0 1 "a"\n',
     "Found a number while looking for an enumerated value in text (line 4)."),
    ('0 1 <exists> 1 "IntervalTier" "w" 0 1 size', "Early end of text detected in comment (line 4)."),
    ('0 1 <exists> 1 "IntervalTier" "w" 0 1 ! size', "Early end of text detected in comment while looking for an integer (line 4)."),
    ('0 1 <exists> 1 "IntervalTier" name', "Early end of text detected while looking for a string (line 4)."),
    ('0 1 <exists> 1 "IntervalTier 1" "w" 0 1 1 0 1 "a"\n',
     "The format of this file is too new. Download a newer version of Praat."),
    ('0 1 <absent>\n', "Praat 6.3 crashes"),
])
def test_refusals_with_praats_message(tmp_path, body, message):
    path = write(tmp_path, short(body))
    with pytest.raises(TextGridError) as info:
        read_textgrid_file(path)
    assert message in str(info.value)
    assert str(path) in str(info.value) and ", line " in str(info.value)


def test_praat_sorts_intervals_and_drops_repeated_start_times(tmp_path):
    grid = read_textgrid_file(write(tmp_path, short(
        '0 1 <exists> 1 "IntervalTier" "w" 0 1 4 0.5 1 "b" 0 0.5 "a" 0 0.2 "dup" 0.5 0.9 "dup2"\n')))
    assert grid.tiers[0].intervals == ((0.0, 0.5, "a"), (0.5, 1.0, "b"))
    assert any("sorted" in w for w in grid.warnings) and any("dropped" in w for w in grid.warnings)


def test_undefined_start_time_keeps_only_the_first_interval_like_praat(tmp_path):
    grid = read_textgrid_file(write(tmp_path, short('0 1 <exists> 1 "IntervalTier" "w" 0 1 2 - 0.5 "a" 0.5 1 "b"\n')))
    (start, end, label), = grid.tiers[0].intervals
    assert math.isnan(start) and (end, label) == (0.5, "a")
    with pytest.raises(TextGridError, match="undefined time"):
        read_words(grid.path, tier="w")  # the word tier is strict; read_textgrid only warns


def test_decoding_like_praat(tmp_path):
    latin = write(tmp_path, short('0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 1 "caf\xe9 \x80"\n').encode("latin-1"))
    grid = read_textgrid_file(latin)
    assert grid.encoding == "latin-1" and grid.tiers[0].intervals[0][2] == "café \x80"  # ISO Latin-1, not cp1252
    with_nul = write(tmp_path, short('0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 1 "a\x00b"\n').encode(), "n.TextGrid")
    assert read_textgrid_file(with_nul).tiers[0].intervals[0][2] == "ab"  # 8-bit: NUL bytes ignored
    utf16_no_bom = write(tmp_path, PRAAT_LONG.replace("Über", "Uber").encode("utf-16-le"), "u.TextGrid")
    assert read_textgrid(utf16_no_bom)["word"][5][2] == 'Uber "quoted"'
    form_feed = short('0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 1 "a\x0cb"\n')
    assert read_textgrid_file(write(tmp_path, b"\xfe\xff" + form_feed.encode("utf-16-be"), "f.TextGrid")
                              ).tiers[0].intervals[0][2] == "a\nb"  # UTF-16: FF is a newline for Praat
    assert read_textgrid_file(write(tmp_path, form_feed, "g.TextGrid")).tiers[0].intervals[0][2] == "a\x0cb"
    cr = short('0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 1 "a\r\nb\rc"\n')
    assert read_textgrid_file(write(tmp_path, cr, "c.TextGrid")).tiers[0].intervals[0][2] == "a\nb\nc"


@pytest.mark.parametrize("content,message", [
    ("  \n" + PRAAT_LONG, "Not an old-type text file; should not occur."),
    ('"Praat chronological TextGrid text file"\n0 1\n1\n"IntervalTier" "a" 0 1\n1 0 1 "x"\n', "not a Praat TextGrid"),
    ('"Praat chronological TextGrid text file"\n0 1\n1\n"Foo" "a" 0 1\n' + " " * 80, 'Unknown tier class "Foo".'),
    ('"Praat chronological TextGrid text file"\n0 1\n1\n"IntervalTier" "a" 0 1\n7 0 1 "x"\n' + " " * 80,
     "TextGrid: the specified tier number (7) exceeds my number of tiers (1)."),
    ('"Praat chronological TextGrid text file"\n0 1\n1\n"IntervalTier" "a" 0 1\n0 0 1 "x"\n' + " " * 80,
     "TextGrid: the specified tier number is 0, but should be at least 1."),
    ('"Praat chronological TextGrid text file"\n0 1\n1\n"IntervalTier" "a" 0 1\n1 0 1 "x"\n"junk"' + " " * 80,
     "Found a string while looking for an integer in text (line 6)."),
    ('"Praat chronological TextGrid text file"\n0 1\n1\n"IntervalTier" "a" 0 1\n1 0.6 0.4 "x"\n' + " " * 80,
     "Wrong xmin 0.6 and xmax 0.4."),
])
def test_header_and_chronological_refusals(tmp_path, content, message):
    with pytest.raises(TextGridError) as info:
        read_textgrid_file(write(tmp_path, content))
    assert message in str(info.value)


def test_chronological_reads_to_the_end_of_the_file(tmp_path):
    body = ('"Praat chronological TextGrid text file"\n0 1\n2\n"IntervalTier" "a" 0 1\n"TextTier" "p" 0 1\n'
            '1 0.5 1 "b"\n1 0 0.5 "a"\n1 0 0.2 "dup"\n2 0.3 "x"\n2 0.1 "y"\n' + " " * 40 + "\ntrailing_word")
    grid = read_textgrid_file(write(tmp_path, body))
    assert grid.tiers[0].intervals == ((0.0, 0.5, "a"), (0.5, 1.0, "b"))
    assert grid.tiers[1].points == ((0.1, "y"), (0.3, "x"))


def test_size_limit(tmp_path):
    path = write(tmp_path, PRAAT_LONG)
    with pytest.raises(TextGridError, match="larger than the limit"):
        read_textgrid_file(path, max_bytes=100)


def test_no_preallocation_from_declared_counts(tmp_path):
    with pytest.raises(TextGridError, match="Early end of text"):
        read_textgrid_file(write(tmp_path, short('0 1 <exists> 2000000000 "IntervalTier" "w" 0 1 1 0 1 "a"\n')))


# ------------------------------------------------------------------ overlaps

def _grid(tmp_path, phone: str, word: str) -> Path:
    """Two interval tiers from short-format interval lists like '0 1 "a" 1 2 "b"'."""
    n_phone, n_word = phone.count('"') // 2, word.count('"') // 2
    return write(tmp_path, short(f'0 2 <exists> 2 "IntervalTier" "phone" 0 2 {n_phone} {phone} '
                                 f'"IntervalTier" "word" 0 2 {n_word} {word}\n'))


def test_small_overlap_outside_the_word_tier_is_kept_and_warned(tmp_path, caplog):
    path = _grid(tmp_path, '0 1.0000001 "a" 1 2 "b"', '0 1 "x" 1 2 "y"')
    grid = read_textgrid_file(path)
    assert grid.tiers[0].intervals[0][1] == 1.0000001  # Praat's number, not snapped
    warnings = check_tier_overlaps(grid, word_tier="word")
    assert len(warnings) == 1
    assert "'phone'" in warnings[0] and "interval 2 at 1.0 s" in warnings[0] and str(path) in warnings[0]
    assert read_words(path)[0] == ["x", "y"] and "'phone'" in caplog.text


def test_large_overlap_outside_the_word_tier_warns_strongly_but_words_load(tmp_path, caplog):
    path = _grid(tmp_path, '0 1.002 "a" 1 2 "b"', '0 1 "x" 1 2 "y"')
    warning, = check_tier_overlaps(read_textgrid_file(path), word_tier="word")
    assert "'phone'" in warning and "2 ms" in warning and "interval 2 at 1.0 s" in warning and str(path) in warning
    assert "will refuse it" in warning and "phoneme rate" in warning
    assert read_words(path)[0] == ["x", "y"] and "will refuse it" in caplog.text
    mild, = check_tier_overlaps(read_textgrid_file(path), word_tier="word", tolerance_s=0.01)  # a parameter
    assert "tolerated" in mild and "will refuse" not in mild
    word_tier = read_word_tier(path)
    assert word_tier.words == ["x", "y"] and word_tier.tier == "word" and word_tier.warnings == (warning,)


def test_the_strict_check_applies_to_the_tier_a_feature_names(tmp_path):
    path = _grid(tmp_path, '0 1.002 "a" 1 2 "b"', '0 1 "x" 1 2 "y"')
    with pytest.raises(TextGridError, match=r"word tier 'phone' has overlapping intervals: interval 2 \(starting 1.0 s\)"):
        check_tier_overlaps(read_textgrid_file(path), word_tier="phone")


def test_undefined_time_outside_the_word_tier_warns(tmp_path):
    path = _grid(tmp_path, '0 1 "a" 1 1e400 "b"', '0 1 "x" 1 2 "y"')
    warning, = check_tier_overlaps(read_textgrid_file(path), word_tier="word")
    assert "'phone' interval 2 has an undefined time" in warning and "will refuse it" in warning
    with pytest.raises(TextGridError, match="'phone' interval 2 has an undefined time"):
        check_tier_overlaps(read_textgrid_file(path), word_tier="phone")


def test_overlap_beyond_a_microsecond_in_the_word_tier_is_refused(tmp_path):
    path = _grid(tmp_path, '0 1 "a" 1 2 "b"', '0 1.000002 "x" 1 2 "y"')
    with pytest.raises(TextGridError) as info:
        read_words(path)
    message = str(info.value)
    assert str(path) in message and "word tier 'word'" in message and "interval 2 (starting 1.0 s)" in message
    assert "0.002 ms" in message
    assert read_textgrid(path)["word"][0] == (0.0, 1.000002, "x")  # without a word tier: only a warning
    broken = write(tmp_path, _mutate(PRAAT_LONG, "xmax = 0.9 ", "xmax = 1.3 "), "broken.TextGrid")
    with pytest.raises(TextGridError, match=r"word tier 'word' has overlapping intervals.* 400 ms before"):
        read_words(broken)


def test_float_noise_in_the_word_tier_is_accepted(tmp_path):
    path = _grid(tmp_path, '0 1 "a" 1 2 "b"', '0 1.0000001 "x" 1 2 "y"')
    assert read_words(path)[0] == ["x", "y"]
    assert check_tier_overlaps(read_textgrid_file(path), word_tier="word") == []
    with pytest.raises(TextGridError, match="word tier 'word'"):
        check_tier_overlaps(read_textgrid_file(path), word_tier="word", word_tolerance_s=0.0)


def test_overlap_with_an_earlier_long_interval_counts(tmp_path):
    # interval 3 starts after interval 2 ends but before interval 1 ends.
    path = _grid(tmp_path, '0 1.5 "a" 1.45 1.46 "b" 1.47 2 "c"', '0 2 "x"')
    warning, = check_tier_overlaps(read_textgrid_file(path), word_tier="word", tolerance_s=0.1)
    assert "2 interval(s)" in warning and "interval 2 at 1.45 s" in warning and "interval 3 at 1.47 s" in warning


def test_textgrid_py_readme_and_long_format_overlaps(tmp_path):
    """The third-party aligner files Praat reads: long_format has two 1e-7 s phone overlaps."""
    long_format = CORPUS / "textgrid_py" / "long_format.TextGrid"
    if not long_format.is_file():
        pytest.fail(f"the committed corpus is missing: {CORPUS}")
    grid = read_textgrid_file(long_format)
    warnings = check_tier_overlaps(grid, word_tier="word")
    assert len(warnings) == 1 and "'phone'" in warnings[0] and "2 interval(s)" in warnings[0]
    assert "interval 13 at 1372.6225 s" in warnings[0] and "interval 86 at 1421.0425 s" in warnings[0]
    assert grid.tiers[0].intervals[11][1] == 1372.6225001  # Praat's number kept
    assert check_tier_overlaps(read_textgrid_file(CORPUS / "textgrid_py" / "readme_test.TextGrid")) == []
