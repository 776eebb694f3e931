"""Importing the reference's pickled assembly through the restricted unpickler."""
from __future__ import annotations

import pickle
import struct
import sys

import numpy as np
import pytest

from encoding_core.assembly.assembly_loader import load_assembly, save_assembly
from encoding_core.common.errors import AssemblyFormatError, UnsafePickleError
from encoding_core.assembly.reference_pickle import load_reference_pickle, safe_load_pickle
from tests.data_reference_pickle import make_story_data, reference_classes, reference_pickle_bytes


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_reference_pickle_loads_every_protocol(tmp_path, protocol):
    stories = [dict(name="alpha", seed=1), dict(name="beta", seed=2, audio_path="/audio/beta.wav")]
    path = tmp_path / "assembly_lebel_uts03.pkl"
    path.write_bytes(reference_pickle_bytes(stories, protocol=protocol))
    assert "encoding" not in sys.modules  # the reference package is really absent
    assembly = load_assembly(path)
    assert assembly.stories == ["alpha", "beta"]
    assert assembly.subject == "UTS03"
    assert assembly.tr == 2.0
    with reference_classes() as (StoryData, _):
        expected = [make_story_data(StoryData, **kw) for kw in stories]
    for story, reference in zip(assembly.stories_list, expected):
        np.testing.assert_array_equal(story.brain_data, reference.brain_data)
        np.testing.assert_array_equal(story.tr_times, reference.tr_times)
        # non-words ("sp", "", "{LG}") are dropped together with their times
        keep = [i for i, w in enumerate(reference.words) if w in ("so", "i", "went")]
        assert story.words == ["so", "i", "went"]
        np.testing.assert_array_equal(story.word_onsets, reference.data_times[keep])
        np.testing.assert_array_equal(story.word_offsets, reference.data_times[keep])
    assert assembly.story("beta").audio_path == "/audio/beta.wav"
    assert assembly.story("alpha").audio_path is None
    assert assembly.provenance["loader"] == "reference pickle"
    assert assembly.provenance["source"] == str(path)
    assert assembly.provenance["dropped_non_words"] == {"alpha": 3, "beta": 3}


def test_surface_space_inferred_and_options(tmp_path):
    path = tmp_path / "surf.pkl"
    path.write_bytes(reference_pickle_bytes([dict(name="a", n_voxels=20484, n_trs=4),
                                             dict(name="b", n_voxels=20484, n_trs=4)]))
    assembly = load_reference_pickle(path, tr=1.5, subject="S9", stories=["b", "a"], test_story="a")
    assert assembly.space.kind == "surface" and assembly.space.name == "fsaverage5"
    assert assembly.tr == 1.5 and assembly.subject == "S9"
    assert assembly.stories == ["b", "a"] and assembly.test_story == "a"


def test_two_column_data_times_are_onset_offset_pairs(tmp_path):
    times = np.array([[0.1, 0.3], [0.4, 0.9]])
    path = tmp_path / "pairs.pkl"
    path.write_bytes(reference_pickle_bytes([dict(name="a", words=["hello", "world"], data_times=times)]))
    story = load_reference_pickle(path).story("a")
    np.testing.assert_array_equal(story.word_onsets, [0.1, 0.4])
    np.testing.assert_array_equal(story.word_offsets, [0.3, 0.9])


def test_stimuli_used_when_words_absent(tmp_path):
    path = tmp_path / "stim.pkl"
    path.write_bytes(reference_pickle_bytes([dict(name="a", words=None, stimuli=["x", "y"],
                                                  data_times=np.array([1.0, 2.0]))]))
    assert load_reference_pickle(path).story("a").words == ["x", "y"]


def test_all_nan_columns_zeroed_scattered_nan_refused(tmp_path):
    data = np.random.default_rng(0).standard_normal((20, 30)).astype(np.float32)
    data[:, [3, 7]] = np.nan
    path = tmp_path / "nan.pkl"
    path.write_bytes(reference_pickle_bytes([dict(name="a", brain_data=data)]))
    assembly = load_reference_pickle(path)
    expected = np.nan_to_num(data, nan=0.0)
    np.testing.assert_array_equal(assembly.story("a").brain_data, expected)
    assert assembly.provenance["nan_columns_zeroed"] == {"a": 2}
    data[5, 10] = np.nan
    path.write_bytes(reference_pickle_bytes([dict(name="a", brain_data=data)]))
    with pytest.raises(AssemblyFormatError, match=r"story 'a' has 1 NaN"):
        load_reference_pickle(path)
    data[5, 10] = np.inf
    path.write_bytes(reference_pickle_bytes([dict(name="a", brain_data=data)]))
    with pytest.raises(AssemblyFormatError, match=r"infinite"):
        load_reference_pickle(path)


@pytest.mark.parametrize("overrides,message", [
    (dict(brain_data=np.zeros((4, 3), dtype=np.int32)), "2-D float array"),
    (dict(brain_data=np.zeros(5, dtype=np.float32)), "2-D float array"),
    (dict(tr_times=np.array(["a", "b"])), "tr_times"),
    (dict(data_times=np.arange(3.0)), "data_times"),
    (dict(words=[1, 2, 3, 4, 5, 6]), "list of strings"),
    (dict(audio_path=3), "audio_path"),
    (dict(tr_times=np.array([0.0, 2.0, 1.0])), "increase strictly"),
])
def test_inconsistent_story_data_refused(tmp_path, overrides, message):
    path = tmp_path / "bad.pkl"
    path.write_bytes(reference_pickle_bytes([dict(name="a", **overrides)]))
    with pytest.raises(AssemblyFormatError, match=message) as info:
        load_reference_pickle(path)
    assert str(path) in str(info.value)


def test_not_an_assembly_or_damaged(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"stories": [1, 2]}))
    with pytest.raises(AssemblyFormatError, match="not the reference's"):
        load_reference_pickle(path)
    full = reference_pickle_bytes([dict(name="a")])
    for cut in (1, len(full) // 3, len(full) - 1):
        path.write_bytes(full[:cut])
        with pytest.raises(AssemblyFormatError, match="truncated|not a valid") as info:
            load_reference_pickle(path)
        assert str(path) in str(info.value)
    path.write_bytes(b"")
    with pytest.raises(AssemblyFormatError, match="empty"):
        load_reference_pickle(path)
    path.write_bytes(b"this is plain text, not a pickle\n")
    with pytest.raises(AssemblyFormatError, match=str(path)):
        load_reference_pickle(path)


def test_declared_length_beyond_file_is_refused_without_allocation(tmp_path):
    path = tmp_path / "huge.pkl"
    # PROTO 4, BINBYTES8 declaring 2**45 bytes (32 TiB) followed by 3 bytes, STOP.
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 2 ** 45) + b"abc.")
    with pytest.raises(AssemblyFormatError, match="truncated|only"):
        safe_load_pickle(path)


def test_forbidden_global_named(tmp_path):
    path = tmp_path / "g.pkl"
    path.write_bytes(b"cnumpy\nload\n(S'x'\ntR.")
    with pytest.raises(UnsafePickleError, match=r"numpy\.load") as info:
        safe_load_pickle(path)
    assert str(path) in str(info.value)


def test_boundary_split_indices_become_ours_over_the_kept_words(tmp_path):
    """The reference's LeBel split indices: n_tr - 1 boundaries over a word list that still
    holds empty labels. Words (kept ones marked *): so*, "", i*, went*, sp, home*."""
    words = ["so", "", "i", "went", "sp", "home"]
    tr_times = np.array([1.0, 3.0, 5.0, 7.0])
    boundaries = [2, 4, 5]  # words before the end of TRs 0, 1, 2 (TR 3 takes the rest)
    path = tmp_path / "split.pkl"
    path.write_bytes(reference_pickle_bytes([dict(name="a", n_trs=4, words=words, tr_times=tr_times,
                                                  data_times=np.arange(6.0), split_indices=boundaries)]))
    story = load_reference_pickle(path).story("a")
    assert story.words == ["so", "i", "went", "home"]
    # chunks over the original words: [so, ""], [i, went], [sp], [home] -> kept: [so], [i, went], [], [home]
    assert story.split_indices.tolist() == [0, 1, 3, 3]
    reread = load_assembly(save_assembly(load_reference_pickle(path), tmp_path / "split.h5")).story("a")
    assert reread.split_indices.tolist() == [0, 1, 3, 3]  # kept by the native format


def test_split_indices_of_another_shape_are_ignored_and_noted(tmp_path):
    path = tmp_path / "labels.pkl"
    path.write_bytes(reference_pickle_bytes([dict(name="a")]))  # one label per word, not boundaries
    assembly = load_reference_pickle(path)
    assert assembly.story("a").word_split_indices is None
    assert "not the 34 boundaries" in assembly.provenance["ignored_split_indices"]["a"]
