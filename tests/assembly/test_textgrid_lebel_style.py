"""A LeBel-style (ds003020) chronological TextGrid, as third-party loaders quote it, read into words.

Layout from GabrielKP/enc src/encoders/data.py (a ds003020 file): the chronological header,
``0.0124716553288 <end>   ! Time domain.``, ``2   ! Number of tiers.``, tiers "phone" then
"word", and one two-line entry per interval (tier number and times, then the label) with no
comment lines. The expected words and times are written out by hand below.
"""
from __future__ import annotations

import numpy as np
import pytest

from encoding_core.assembly.textgrid import check_tier_overlaps, read_textgrid_file, read_words, write_textgrid

LEBEL_CHRONOLOGICAL = '''"Praat chronological TextGrid text file"
0.0124716553288 3.52   ! Time domain.
2   ! Number of tiers.
"IntervalTier" "phone" 0.0124716553288 3.52
"IntervalTier" "word" 0.0124716553288 3.52
1 0.0124716553288 1.26961451247
"ns"
2 0.0124716553288 1.26961451247
"{NS}"
1 1.26961451247 1.48948829731937
"S"
2 1.26961451247 2.23741496599
"SO"
1 1.48948829731937 2.23741496599
"OW1"
1 2.23741506599 2.9
"sp"
2 2.23741496599 2.9
"sp"
1 2.9 3.52
"IH1"
2 2.9 3.52
"it's"
'''


@pytest.fixture
def story(tmp_path):
    path = tmp_path / "story.TextGrid"
    path.write_text(LEBEL_CHRONOLOGICAL, encoding="utf-8")
    return path


def test_lebel_chronological_reads_into_words(story):
    words, onsets, offsets = read_words(story)
    assert words == ["SO", "it's"]
    np.testing.assert_array_equal(onsets, [1.26961451247, 2.9])
    np.testing.assert_array_equal(offsets, [2.23741496599, 3.52])


def test_lebel_chronological_tiers(story):
    grid = read_textgrid_file(story)
    assert grid.format == "chronological" and grid.encoding == "utf-8"
    assert (grid.xmin, grid.xmax) == (0.0124716553288, 3.52)
    phone, word = grid.tiers
    assert [iv[2] for iv in phone.intervals] == ["ns", "S", "OW1", "sp", "IH1"]
    assert phone.intervals[3][0] == 2.23741506599  # the 1e-7 s gap is Praat's number, kept
    assert [iv[2] for iv in word.intervals] == ["{NS}", "SO", "sp", "it's"]
    assert check_tier_overlaps(grid, word_tier="word") == [] and grid.warnings == ()


def test_same_words_as_the_long_format(story, tmp_path):
    word = read_textgrid_file(story).tiers[1]
    long_path = tmp_path / "long.TextGrid"
    write_textgrid(long_path, {"phone": [(0.0124716553288, 3.52, "x")], "word": list(word.intervals)}, xmax=3.52)
    long_words = read_words(long_path, tier="word")
    chrono_words = read_words(story)
    assert long_words[0] == chrono_words[0]
    np.testing.assert_array_equal(long_words[1], chrono_words[1])
    np.testing.assert_array_equal(long_words[2], chrono_words[2])


def test_with_a_utf8_bom(tmp_path):
    path = tmp_path / "bom.TextGrid"
    path.write_bytes(b"\xef\xbb\xbf" + LEBEL_CHRONOLOGICAL.encode("utf-8"))
    assert read_words(path)[0] == ["SO", "it's"]
    assert read_textgrid_file(path).encoding == "utf-8-sig"
