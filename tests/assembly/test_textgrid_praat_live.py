"""The reader against Praat itself (praat_nogui, Debian package ``praat`` 6.3.07), live.

Skipped when Praat 6.3.07 is not installed (CI does not install it; see praat_oracle.py).
Each case is a file that Praat reads in a subprocess (it crashes on some inputs); the reader must read the same grid (tiers, kinds, every
interval and point, labels; undefined numbers as undefined) or, when Praat refuses or
crashes, raise TextGridError (with Praat's wording when Praat gives one). The deliberate
divergences are binary files and a chronological header after a UTF-8 byte-order mark.
"""
from __future__ import annotations

import math
from pathlib import Path

import praat_oracle
import pytest
from encoding_core.common.errors import TextGridError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import encoding_core.assembly.textgrid as tg

pytestmark = pytest.mark.skipif(not praat_oracle.available(),
                                reason=f"Praat {praat_oracle.MEASURED_VERSION} (praat_nogui) is not installed")

CORPUS = Path(__file__).resolve().parents[1] / "data" / "real-textgrids"
SEEDS = sorted(p for p in CORPUS.rglob("*.TextGrid") if "TIMIT" not in p.name and p.stat().st_size < 8000) \
    if CORPUS.is_dir() else []
H = 'File type = "ooTextFile"\nObject class = "TextGrid"\n\n'
C = '"Praat chronological TextGrid text file"\n0 1 ! Time domain.\n2 ! Number of tiers.\n' \
    '"IntervalTier" "phone" 0 1\n"IntervalTier" "word" 0 1\n'
EDGE_CASES = {
    "trailing values": H + '0 1 <exists> 1 "IntervalTier" "w" 0 1 2 0 0.5 "a" 0.5 1 "b"\n"extra" 7\n',
    "negative size": H + '0 1 <exists> 1 "IntervalTier" "w" 0 1 -3 0 0.5 "a"\n',
    "unsorted + duplicate": H + '0 1 <exists> 1 "IntervalTier" "w" 0 1 3 0.5 1 "b" 0 0.5 "a" 0 1 "c"\n',
    "undefined first": H + '0 1 <exists> 1 "IntervalTier" "w" 0 1 2 - 0.5 "a" 0.5 1 "b"\n',
    "infinite": H + '0 1 <exists> 1 "IntervalTier" "w" 0 1 2 0 0.5 "a" 1e400 1e500 "b"\n',
    "hex, fraction, percent": H + '0 1 <exists> 1 "IntervalTier" "w" 0 1 3 0 0x1p-2 "a" 1/4 50% "b" 0.5 1 "c"\n',
    "words and comments": H + 'xmin = 0 foo ! bar "x"\n bar = 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 1 "a"\n',
    "point tier": H + '0 1 <exists> 1 "TextTier" "p" 0 1 3 0.7 "a" 0.2 "b" 0.2 "c"\n',
    "old short header": 'File type = "ooTextFile short"\n"TextGrid"\n\n0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 1 "a"\n',
    "leading blank line": "\n" + H + '0 1 <exists> 0\n',
    "tiers absent (Praat crashes)": H + "0 1 <absent>\n",
    "empty file": b"",
    "blank file": b"   \n",
    "chronological": C + '1 0 0.5\n"a"\n2 0 1\n"w"\n1 0.5 1\n"b"\n',
    "chronological empty tier": C + '1 0 1\n"a"\n' + " " * 20,
    "chronological trailing word": C + '1 0 1\n"a"\n2 0 1\n"w"\nabc',
    "chronological trailing string": C + '1 0 1\n"a"\n2 0 1\n"w"\n"junk"\n',
    "chronological under 100 bytes": '"Praat chronological TextGrid text file"\n0 1\n1\n"IntervalTier" "a" 0 1\n',
    "utf-16 form feed": b"\xfe\xff" + (H.replace(" = ", "\x0c= ", 1) + '0 1 <exists> 0\n').encode("utf-16-be"),
    "utf-16 no bom": (H + '0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 1 "a"\n').encode("utf-16-le"),
    "latin-1": (H + '0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 1 "caf\xe9"\n').encode("latin-1"),
    "lenient utf-8": (H + '0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 1 "a').encode() + b"\xed\xa0\x80" + b'"\n',
    "lone utf-16 surrogate": b"\xff\xfe" + (H + '0 1 <exists> 1 "IntervalTier" "w" 0 1 1 0 1 "a').encode("utf-16-le")
                             + b"\x00\xd8" + '"\n'.encode("utf-16-le"),
}


def _norm(label: str) -> str:
    return label.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _same(a: float, b: float) -> bool:
    if not (math.isfinite(a) and math.isfinite(b)):
        return not math.isfinite(a) and not math.isfinite(b)
    return math.isclose(a, b, rel_tol=1e-15, abs_tol=1e-12)


def assert_reads_like_praat(path: Path) -> None:
    praat = praat_oracle.praat_read(path)
    try:
        grid, error = tg.read_textgrid_file(path), None
    except TextGridError as exc:
        grid, error = None, str(exc)
    if "tiers" not in praat:
        assert error is not None, f"Praat refuses ({praat}) but the reader read {path}"
        message = praat.get("error", "").removeprefix("Error: ")
        if message and "not recognized" not in message:
            assert message in error, (message, error)
        return
    if error is not None:
        assert "binary Praat file" in error or "CGN" in error, f"Praat reads it, the reader refused: {error}"
        return
    assert _same(grid.xmin, praat["xmin"]) and _same(grid.xmax, praat["xmax"])
    assert len(grid.tiers) == len(praat["tiers"])
    for tier, want in zip(grid.tiers, praat["tiers"]):
        assert (_norm(tier.name), tier.kind == "interval") == (want["name"], want["interval"])
        items = tier.intervals if tier.kind == "interval" else tier.points
        assert len(items) == len(want["items"]), (tier.name, items, want["items"])
        for got, expected in zip(items, want["items"]):
            assert all(_same(x, y) for x, y in zip(got[:-1], expected[:-1])), (got, expected)
            assert _norm(got[-1]) == expected[-1]


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases_against_praat(tmp_path, name):
    content = EDGE_CASES[name]
    path = tmp_path / "edge.TextGrid"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    assert_reads_like_praat(path)


PIECES = [b'"', b'""', b"<", b">", b"!", b"\n", b"\r", b" ", b"\t", b"-", b"+", b".", b"/", b"%", b"e", b"x", b"0",
          b"1", b"\x00", b"\xff", b"\xc3\xa9", b"<exists>", b"1e400", b"\x0c", b"\xa0", b'"TextTier"', b"2147483648"]


@settings(deadline=None, derandomize=True, database=None, max_examples=80,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10 ** 6), edits=st.lists(
    st.tuples(st.integers(0, 10 ** 6), st.sampled_from(["replace", "insert", "delete"]), st.sampled_from(PIECES)),
    min_size=1, max_size=4), cut=st.none() | st.integers(0, 10 ** 6))
def test_mutated_corpus_files_against_praat(tmp_path, seed, edits, cut):
    data = bytearray(SEEDS[seed % len(SEEDS)].read_bytes())
    for position, kind, piece in edits:
        at = position % (len(data) + 1)
        if kind == "replace":
            data[at:at + len(piece)] = piece
        elif kind == "insert":
            data[at:at] = piece
        else:
            del data[at:at + 1 + position % 8]
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    path = tmp_path / "mutated.TextGrid"
    path.write_bytes(bytes(data))
    assert_reads_like_praat(path)
