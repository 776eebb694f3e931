"""Property tests: the TextGrid parser and the native loader raise nothing but EncodingCoreError.

Inputs: random bytes, random mutations and truncations of valid files, random attribute
values. A successful load is fine too; any other exception type is a bug.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from encoding_core.assembly import Assembly, Story
from encoding_core.assembly.assembly_loader import load_assembly, save_assembly
from encoding_core.common.errors import EncodingCoreError
from encoding_core.assembly.textgrid import read_textgrid, read_words, write_textgrid

SETTINGS = settings(deadline=None, derandomize=True, database=None, max_examples=800,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def valid_textgrid(workdir):
    path = workdir / "valid.TextGrid"
    write_textgrid(path, {"phone": [(0.0, 0.4, "HH"), (0.4, 1.0, "AY")],
                          "word": [(0.0, 0.3, "sp"), (0.3, 0.8, "hi \"there\""), (0.8, 1.2, "wörd")]}, xmax=1.5)
    return path


@pytest.fixture(scope="module")
def valid_h5(workdir):
    rng = np.random.default_rng(0)
    stories = [Story(f"s{i}", rng.standard_normal((12, 6)), np.arange(12) * 2.0, words=["a", "b"],
                     word_onsets=[0.5, 1.0], word_offsets=[0.7, 1.4],
                     repeats=rng.standard_normal((2, 12, 6)) if i else None) for i in range(2)]
    return save_assembly(Assembly("fuzz", 2.0, stories, provenance={"k": 1}), workdir / "valid.h5")


def _load_textgrid(path):
    try:
        read_textgrid(path)
        read_words(path)
    except EncodingCoreError:
        pass


@SETTINGS
@given(data=st.binary(max_size=600))
def test_textgrid_random_bytes(workdir, data):
    path = workdir / "random.TextGrid"
    path.write_bytes(data)
    _load_textgrid(path)


@SETTINGS
@given(data=st.binary(max_size=300))
def test_textgrid_random_bytes_after_header(workdir, data):
    path = workdir / "header.TextGrid"
    path.write_bytes(b'File type = "ooTextFile"\nObject class = "TextGrid"\n' + data)
    _load_textgrid(path)


mutation = st.tuples(st.sampled_from(["replace", "insert", "delete"]), st.integers(0, 10 ** 6),
                     st.binary(min_size=1, max_size=8))


@SETTINGS
@given(mutations=st.lists(mutation, min_size=1, max_size=6), cut=st.none() | st.integers(0, 10 ** 6))
def test_textgrid_mutations(workdir, valid_textgrid, mutations, cut):
    data = bytearray(valid_textgrid.read_bytes())
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
    _load_textgrid(path)


def _load_native(path):
    try:
        load_assembly(path)
    except EncodingCoreError:
        pass


@settings(SETTINGS, max_examples=300)
@given(flips=st.lists(st.tuples(st.integers(0, 10 ** 7), st.integers(1, 255)), min_size=1, max_size=8),
       cut=st.none() | st.integers(0, 10 ** 7))
def test_native_corruptions_and_truncations(workdir, valid_h5, flips, cut):
    data = bytearray(valid_h5.read_bytes())
    for position, xor in flips:
        data[position % len(data)] ^= xor
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    path = workdir / "corrupt.h5"
    path.write_bytes(bytes(data))
    _load_native(path)


attr_values = st.one_of(
    st.integers(-2 ** 40, 2 ** 40), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.binary(max_size=10), st.booleans(),
    st.lists(st.integers(-5, 5), min_size=1, max_size=4).map(np.array),
    st.sampled_from(["{}", "[1]", "encoding_core.assembly", "unknown", "surface", "volume", "fsaverage5", "s0",
                     "subject_surface", "MNI152"]),
)
ATTR_TARGETS = [("/", "format"), ("/", "schema_version"), ("/", "subject"), ("/", "tr"), ("/", "simulated"),
                ("/", "test_story"), ("/", "provenance"), ("space", "kind"), ("space", "name"), ("space", "template"),
                ("stories/0", "name"), ("stories/1", "audio_path")]


@settings(SETTINGS, max_examples=250)
@given(changes=st.lists(st.tuples(st.sampled_from(ATTR_TARGETS), attr_values | st.none()), min_size=1, max_size=4))
def test_native_random_attributes(workdir, valid_h5, changes):
    path = workdir / "attrs.h5"
    path.write_bytes(valid_h5.read_bytes())
    with h5py.File(path, "r+") as h5:
        for (group, key), value in changes:
            if value is None:
                if key in h5[group].attrs:
                    del h5[group].attrs[key]
            else:
                try:
                    h5[group].attrs[key] = value
                except (ValueError, TypeError):  # h5py cannot store it (e.g. NUL in text)
                    assume(False)
    _load_native(path)
