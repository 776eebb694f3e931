"""Native HDF5 assemblies: exact round trips, lazy story reads, and refusal of bad files."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from encoding_core.assembly import Assembly, Space, Story
from encoding_core.assembly.assembly_loader import load_assembly, load_story, save_assembly
from encoding_core.common.errors import AssemblyFormatError, EncodingCoreError, InputError


def assert_same(a: Assembly, b: Assembly) -> None:
    assert (a.subject, a.tr, a.simulated, a.test_story, a.stories) == (b.subject, b.tr, b.simulated, b.test_story, b.stories)
    assert a.provenance == b.provenance
    assert (a.space.kind, a.space.name) == (b.space.kind, b.space.name)
    for x, y in ((a.space.mask, b.space.mask), (a.space.affine, b.space.affine)):
        assert (x is None) == (y is None) and (x is None or np.array_equal(x, y))
    for s, t in zip(a.stories_list, b.stories_list):
        assert s.brain_data.dtype == t.brain_data.dtype == np.float32
        assert np.array_equal(s.brain_data, t.brain_data)
        assert np.array_equal(s.tr_times, t.tr_times)
        assert np.array_equal(s.word_onsets, t.word_onsets) and np.array_equal(s.word_offsets, t.word_offsets)
        assert s.words == t.words and s.audio_path == t.audio_path
        assert (s.repeats is None) == (t.repeats is None)
        if s.repeats is not None:
            assert np.array_equal(s.repeats, t.repeats)


def test_round_trip_unknown_space_repeats_unicode(tmp_path, make_assembly):
    assembly = make_assembly(n_stories=3, n_trs=40, n_voxels=30, repeats=4)
    assembly.stories_list[0].words = ["naïve", "日本語", 'quo"te', ""] + assembly.stories_list[0].words[4:]
    assembly.stories_list[1].audio_path = "/data/stimuli/sto ry é.wav"
    assembly.provenance = {"source": "unit test", "nested": {"n": 3, "list": [1.5, "x"]}}
    assembly.test_story = "story1"
    path = save_assembly(assembly, tmp_path / "a.h5")
    assert_same(assembly, load_assembly(path))
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed


def test_round_trip_surface_and_volume(tmp_path):
    rng = np.random.default_rng(3)
    surface = Assembly("S1", 1.5, [Story("a", rng.standard_normal((6, 20484)), np.arange(6) * 1.5)],
                       space=Space.surface("fsaverage5"), simulated=True)
    path = save_assembly(surface, tmp_path / "surf.hdf5")
    assert_same(surface, load_assembly(path))
    mask = rng.random((4, 5, 6)) > 0.5
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-10, 5, 3.25]
    volume = Assembly("S2", 2.0, [Story("v", rng.standard_normal((7, int(mask.sum()))), np.arange(7) * 2.0,
                                        words=["w"], word_onsets=[1.0], word_offsets=[1.2])],
                      space=Space.volume(mask, affine))
    path = save_assembly(volume, tmp_path / "vol.h5")
    assert_same(volume, load_assembly(path))


def test_layout_and_compression(tmp_path, make_assembly):
    path = save_assembly(make_assembly(n_stories=2, n_trs=50, n_voxels=20), tmp_path / "a.h5")
    with h5py.File(path, "r") as h5:
        assert h5.attrs["format"] == "encoding_core.assembly" and h5.attrs["schema_version"] == 2
        assert json.loads(h5.attrs["provenance"]) == {}
        ds = h5["stories/1/brain_data"]
        assert h5["stories/1"].attrs["name"] == "story1"
        assert ds.dtype == np.float32 and ds.compression in ("gzip", "lzf") and ds.chunks[1] == 20
        assert h5py.check_string_dtype(h5["stories/0/words"].dtype).encoding == "utf-8"


def test_load_story_reads_only_that_story(tmp_path, make_assembly):
    assembly = make_assembly(n_stories=3, n_trs=20, n_voxels=10)
    path = save_assembly(assembly, tmp_path / "a.h5")
    with h5py.File(path, "r+") as h5:  # damage story2 only
        del h5["stories/2/brain_data"]
    story = load_story(path, "story0")
    assert np.array_equal(story.brain_data, assembly.story("story0").brain_data)
    assert load_assembly(path, stories=["story1", "story0"]).stories == ["story1", "story0"]
    with pytest.raises(AssemblyFormatError, match="story2.*brain_data"):
        load_assembly(path)
    with pytest.raises(InputError, match="no story 'nope'"):
        load_story(path, "nope")


def test_nan_policy(tmp_path, make_assembly):
    assembly = make_assembly(n_stories=2, n_trs=20, n_voxels=10)
    path = save_assembly(assembly, tmp_path / "a.h5")
    with h5py.File(path, "r+") as h5:
        data = h5["stories/0/brain_data"]
        data[:, 4] = np.nan
    loaded = load_assembly(path)
    expected = assembly.story("story0").brain_data.copy()
    expected[:, 4] = 0.0
    assert np.array_equal(loaded.story("story0").brain_data, expected)
    assert loaded.provenance["nan_columns_zeroed"] == {"story0": 1}
    with h5py.File(path, "r+") as h5:
        h5["stories/1/brain_data"][3, 2] = np.nan
        h5["stories/1/brain_data"][5, 7] = np.nan
    with pytest.raises(AssemblyFormatError, match=r"story 'story1' has 2 NaN"):
        load_assembly(path)
    with h5py.File(path, "r+") as h5:
        h5["stories/1/brain_data"][3, 2] = np.inf
    with pytest.raises(AssemblyFormatError, match="infinite"):
        load_assembly(path)


def _edit(path, action):
    with h5py.File(path, "r+") as h5:
        action(h5)


def _replace(h5, key, data):
    del h5[key]
    h5[key] = data


@pytest.mark.parametrize("action,message", [
    (lambda h5: h5.attrs.__setitem__("schema_version", 3), "newer version of encoding_core"),
    (lambda h5: h5.attrs.__setitem__("format", "something.else"), "not an encoding_core assembly"),
    (lambda h5: h5.attrs.__delitem__("subject"), "missing attribute 'subject'"),
    (lambda h5: h5.attrs.__setitem__("tr", "two"), "'tr'.*must be a number"),
    (lambda h5: h5.attrs.__setitem__("tr", -1.0), "positive"),
    (lambda h5: h5.attrs.__setitem__("provenance", "{not json"), "JSON"),
    (lambda h5: h5.attrs.__setitem__("test_story", "ghost"), "test_story 'ghost'"),
    (lambda h5: h5.__delitem__("stories"), "missing group 'stories'"),
    (lambda h5: h5.__delitem__("space"), "missing group 'space'"),
    (lambda h5: _replace(h5, "stories/0/brain_data", np.ones((40, 30), dtype=np.int32)), "dtype int32"),
    (lambda h5: _replace(h5, "stories/0/tr_times", np.array([b"a", b"b"])), "tr_times has dtype"),
    (lambda h5: _replace(h5, "stories/0/words", np.arange(3.0)), "must hold text"),
    (lambda h5: _replace(h5, "stories/0/brain_data", np.ones(40, dtype=np.float32)), "must be 2-D"),
    (lambda h5: _replace(h5, "stories/2/repeats", np.ones((2, 39, 30), dtype=np.float32)), "inconsistent"),
    (lambda h5: h5.move("stories/1", "stories/7"), "named 0..2"),
    (lambda h5: h5["stories/1"].attrs.__setitem__("name", "story0"), "repeated story name"),
    (lambda h5: _replace(h5, "stories/0/tr_times", np.zeros(40)), "increase strictly"),
])
def test_bad_files_refused(tmp_path, make_assembly, action, message):
    path = save_assembly(make_assembly(n_stories=3, n_trs=40, n_voxels=30, repeats=2), tmp_path / "a.h5")
    _edit(path, action)
    with pytest.raises(AssemblyFormatError, match=message) as info:
        load_assembly(path)
    assert str(path) in str(info.value)


def test_not_hdf5_truncated_missing_and_unknown(tmp_path, make_assembly):
    path = save_assembly(make_assembly(n_stories=2, n_trs=20, n_voxels=10), tmp_path / "a.h5")
    data = path.read_bytes()
    for cut in (100, len(data) // 2, len(data) - 50):
        bad = tmp_path / f"cut{cut}.h5"
        bad.write_bytes(data[:cut])
        with pytest.raises(AssemblyFormatError) as info:
            load_assembly(bad)
        assert str(bad) in str(info.value)
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(AssemblyFormatError, match="not an HDF5 file"):
        load_assembly(text)
    with pytest.raises(AssemblyFormatError, match="does not exist"):
        load_assembly(tmp_path / "missing.h5")
    other = tmp_path / "a.csv"
    other.write_text("x")
    with pytest.raises(AssemblyFormatError, match="suffix '.csv'"):
        load_assembly(other)
    with pytest.raises(InputError, match=r"\.h5"):
        save_assembly(make_assembly(n_stories=1), tmp_path / "a.pkl")


def test_unserialisable_provenance_refused(tmp_path, make_assembly):
    assembly = make_assembly(n_stories=1)
    assembly.provenance = {"bad": object()}
    with pytest.raises(InputError, match="provenance"):
        save_assembly(assembly, tmp_path / "a.h5")
    assert not (tmp_path / "a.h5").exists()
    assert issubclass(AssemblyFormatError, EncodingCoreError)


def test_load_assembly_options(tmp_path, make_assembly):
    path = save_assembly(make_assembly(n_stories=2), tmp_path / "a.h5")
    # config defaults ("" / []) mean "not given"; a subject is irrelevant to a native file
    assert load_assembly(path, subject="UTS01", stories=[], test_story="").stories == ["story0", "story1"]
    with pytest.raises(InputError, match=r"unknown option\(s\) \['colour'\]"):
        load_assembly(path, colour="red")


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    """Files written atomically are readable by others like any normal file (not mkstemp's 0600)."""
    import os

    from encoding_core.common.storage import atomic_write_text

    mask = os.umask(0)
    os.umask(mask)
    path = atomic_write_text(tmp_path / "x.txt", "hello")
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)
