"""Property tests: on any input the reader raises nothing but TextGridError.

Inputs: random bytes, random bytes after each kind of header, random mutations and
truncations of valid long, chronological and UTF-16 files. A successful read is fine too,
but must keep Praat's invariants (intervals sorted by strictly increasing start time, no
interval with start > end, points sorted by strictly increasing time).
"""
from __future__ import annotations

import math

import pytest
from encoding_core.common.errors import EncodingCoreError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from encoding_core.assembly.textgrid import check_tier_overlaps, read_textgrid, read_textgrid_file, read_words, write_textgrid

SETTINGS = settings(deadline=None, derandomize=True, database=None, max_examples=800,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

CHRONOLOGICAL = ('"Praat chronological TextGrid text file"\n0 1.5   ! Time domain.\n3   ! Number of tiers.\n'
                 '"IntervalTier" "phone" 0 1.5\n"IntervalTier" "word" 0 1.5\n"TextTier" "bell" 0 1.5\n'
                 '1 0 0.4\n"HH"\n2 0 0.8\n"hi ""there"""\n3 0.5\n"ding"\n1 0.4 1.5\n"AY"\n2 0.8 1.5\n"wörd"\n')


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def valid_files(workdir):
    long_path = workdir / "valid.TextGrid"
    write_textgrid(long_path, {"phone": [(0.0, 0.4, "HH"), (0.4, 1.0, "AY")],
                               "word": [(0.0, 0.3, "sp"), (0.3, 0.8, 'hi "there"'), (0.8, 1.2, "wörd")]}, xmax=1.5)
    long_bytes = long_path.read_bytes()
    return [long_bytes, CHRONOLOGICAL.encode("utf-8"), b"\xff\xfe" + long_bytes.decode("utf-8").encode("utf-16-le"),
            b"\xfe\xff" + CHRONOLOGICAL.encode("utf-16-be")]


def _load(path):
    """Every public reading path; only EncodingCoreError may escape."""
    try:
        grid = read_textgrid_file(path)
    except EncodingCoreError:
        return
    for tier in grid.tiers:
        items = tier.intervals if tier.kind == "interval" else tier.points
        keys = [item[0] for item in items]
        finite = [k for k in keys if not math.isnan(k)]
        assert finite == sorted(finite) and len(set(finite)) == len(finite), tier
        assert all(not (iv[0] > iv[1]) for iv in tier.intervals), tier
    for call in (lambda: check_tier_overlaps(grid), lambda: read_textgrid(path), lambda: read_words(path)):
        try:
            call()
        except EncodingCoreError:
            pass


@SETTINGS
@given(data=st.binary(max_size=600))
def test_random_bytes(workdir, data):
    path = workdir / "random.TextGrid"
    path.write_bytes(data)
    _load(path)


@SETTINGS
@given(header=st.sampled_from([b'File type = "ooTextFile"\nObject class = "TextGrid"\n',
                               b'File type = "ooTextFile short"\n"TextGrid"\n',
                               b'"Praat chronological TextGrid text file"\n' + b" " * 70 + b"\n",
                               b'\xef\xbb\xbf"Praat chronological TextGrid text file"\n' + b" " * 70 + b"\n"]),
       data=st.binary(max_size=300))
def test_random_bytes_after_a_header(workdir, header, data):
    path = workdir / "header.TextGrid"
    path.write_bytes(header + data)
    _load(path)


@SETTINGS
@given(pieces=st.lists(st.sampled_from(list('0123456789-+.e/%"<> \n\t!x') + ["<exists>", '"IntervalTier"',
                                                                              '"TextTier"', '""']), max_size=60))
def test_praat_tokens_after_a_header(workdir, pieces):
    data = "".join(pieces)
    path = workdir / "tokens.TextGrid"
    path.write_text('File type = "ooTextFile"\nObject class = "TextGrid"\n' + data, encoding="utf-8")
    _load(path)


mutation = st.tuples(st.sampled_from(["replace", "insert", "delete"]), st.integers(0, 10 ** 6),
                     st.binary(min_size=1, max_size=8) | st.sampled_from([b'"', b'""', b"<", b"!", b"\r", b"\x00",
                                                                          b"-", b"1e400", b"\xc3"]))


@SETTINGS
@given(which=st.integers(0, 3), mutations=st.lists(mutation, min_size=1, max_size=6),
       cut=st.none() | st.integers(0, 10 ** 6))
def test_mutated_and_truncated_files(workdir, valid_files, which, mutations, cut):
    data = bytearray(valid_files[which])
    for kind, position, chunk in mutations:
        at = position % (len(data) + 1)
        if kind == "replace":
            data[at:at + len(chunk)] = chunk
        elif kind == "insert":
            data[at:at] = chunk
        else:
            del data[at:at + len(chunk)]
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    path = workdir / "mutated.TextGrid"
    path.write_bytes(bytes(data))
    _load(path)


def test_the_valid_seeds_read(valid_files, workdir):
    for i, data in enumerate(valid_files):
        path = workdir / f"seed{i}.TextGrid"
        path.write_bytes(data)
        assert [t.name for t in read_textgrid_file(path).tiers][:2] == ["phone", "word"]
