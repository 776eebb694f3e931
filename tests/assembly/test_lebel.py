"""The LeBel (ds003020) layout as distributed, on small trees built in the test.

Independent references: the dataset's real respdict.json, the word intervals the test wrote
(lebel_tree), and TR times written out here from the reference's data preparation
(``onsets = arange(-10, (n - 10) * 2, 2)``, ``tr_times = onsets + 2 / 2``).
"""
from __future__ import annotations

import json
import logging

import h5py
import numpy as np
import pytest

from encoding_core.assembly.assembly_loader import load_assembly
from encoding_core.assembly.lebel import (
    lebel_derivatives_dir,
    lebel_tr_times,
    list_lebel_stories,
    list_lebel_subjects,
    load_lebel,
)
from encoding_core.common.errors import AssemblyFormatError, InputError, MissingStoryFilesError, TextGridError
from lebel_tree import N_REPEATS, N_VOXELS, STORIES, build_lebel_tree, real_respdict

NON_WORDS = {"sp", "{lg}", "", "{ns}", "sentence_start"}


def reference_tr_times(run_trs: int) -> list[float]:
    """The reference's data preparation, written out: onsets from -10 s every 2 s, plus TR/2."""
    onsets = np.arange(-10, (run_trs - 10) * 2.0, 2.0)
    return (onsets + 1.0).tolist()


def expected_words(intervals):
    kept = [(s, e, w) for s, e, w in intervals if w.lower() not in NON_WORDS]
    return [w.lower() for _, _, w in kept], [s for s, _, _ in kept], [e for _, e, _ in kept]


def test_the_real_respdict_is_the_dataset_one():
    respdict = real_respdict()
    assert len(respdict) == 84 and respdict["wheretheressmoke"] == 311


@pytest.mark.parametrize("layout", ["derivative", "derivatives"])
@pytest.mark.parametrize("suffix", [".hf5", ".h5"])
def test_both_layouts_load_with_the_reference_tr_midpoints(tmp_path, layout, suffix):
    built = build_lebel_tree(tmp_path, layout=layout, suffix=suffix,
                             formats={"sweetaspie": "chronological", "againstthewind": "short"},
                             bom=("sweetaspie", "wheretheressmoke"))
    assert lebel_derivatives_dir(tmp_path) == tmp_path / layout
    assembly = load_assembly(tmp_path, subject="UTS01")
    assert assembly.stories == ["againstthewind", "sweetaspie", "wheretheressmoke"]  # test story last
    assert assembly.test_story == "wheretheressmoke" and assembly.tr == 2.0
    assert assembly.provenance["tr_time_convention"] == "midpoint" and assembly.provenance["layout"] == layout
    for story in assembly.stories_list:
        made = built[story.name]
        assert story.tr_times.tolist() == reference_tr_times(made.run_trs)
        assert story.tr_times[10] == 11.0  # the first kept feature TR: 10 s after sound onset + TR/2
        assert len(story.tr_times[10:-5]) == story.n_trs == made.run_trs - 20
        np.testing.assert_array_equal(story.brain_data, made.response)
        words, starts, ends = expected_words(made.words)
        assert story.words == words
        np.testing.assert_array_equal(story.word_onsets, starts)
        np.testing.assert_array_equal(story.word_offsets, ends)
        np.testing.assert_array_equal(story.data_times, (np.array(starts) + np.array(ends)) / 2)
    smoke = assembly.story("wheretheressmoke")
    assert smoke.repeats.shape == (N_REPEATS, 291, N_VOXELS)
    assert assembly.story("sweetaspie").repeats is None


def test_onset_convention_is_an_explicit_option(tmp_path):
    built = build_lebel_tree(tmp_path, stories=("sweetaspie",))
    onset = load_lebel(tmp_path, "UTS01", tr_time_convention="onset")
    assert onset.story("sweetaspie").tr_times.tolist() == [2.0 * i - 10.0 for i in range(built["sweetaspie"].run_trs - 5)]
    assert onset.provenance["tr_time_convention"] == "onset" and "1 s later" in onset.provenance["tr_times"]
    np.testing.assert_array_equal(lebel_tr_times(177, "onset") + 1.0, lebel_tr_times(177))
    with pytest.raises(AssemblyFormatError, match="tr_time_convention must be one of"):
        load_lebel(tmp_path, "UTS01", tr_time_convention="centre")
    via_loader = load_assembly(tmp_path, subject="UTS01", tr_time_convention="onset")
    np.testing.assert_array_equal(via_loader.story("sweetaspie").tr_times, onset.story("sweetaspie").tr_times)


def test_split_indices_count_words_by_start_time_in_each_tr(tmp_path):
    built = build_lebel_tree(tmp_path, stories=("sweetaspie",))
    story = load_lebel(tmp_path, "UTS01").story("sweetaspie")
    _, starts, _ = expected_words(built["sweetaspie"].words)
    onsets = np.arange(-10, (built["sweetaspie"].run_trs - 10) * 2.0, 2.0)
    # the reference: words whose start is before the end of each TR (boundaries), one plain loop
    boundaries = [sum(s < t + 2.0 for s in starts) for t in onsets]
    assert story.split_indices.tolist() == [0] + boundaries[:-1]
    per_tr = np.diff(np.append(story.split_indices, len(starts)))
    assert per_tr.sum() == len(starts) and per_tr[:5].sum() == 0  # nothing before the sound onset


def test_story_names_match_whatever_their_case(tmp_path, caplog):
    names = {"sweetaspie": "SweetAsPie", "wheretheressmoke": "WhereThere'sSmoke".replace("'", "")}
    build_lebel_tree(tmp_path, file_names=names, audio=("sweetaspie",))
    with caplog.at_level(logging.WARNING):
        assembly = load_lebel(tmp_path, "UTS01")
    assert assembly.stories == ["againstthewind", "sweetaspie", "wheretheressmoke"]  # respdict's spelling
    assert assembly.story("sweetaspie").audio_path == str(tmp_path / "stimuli" / "SweetAsPie.wav")
    notes = " ".join(assembly.provenance["warnings"])
    assert "SweetAsPie.TextGrid matches only when case is ignored" in notes
    assert "SweetAsPie.hf5 matches only when case is ignored" in notes and "case is ignored" in caplog.text
    assert list_lebel_stories(tmp_path, "UTS01") == ["againstthewind", "sweetaspie", "wheretheressmoke"]
    subset = load_lebel(tmp_path, "UTS01", stories=["SWEETASPIE"], test_story=None)
    assert subset.stories == ["sweetaspie"]


def test_chronological_and_bom_textgrids_read_like_long_ones(tmp_path):
    long_tree, other_tree = tmp_path / "long", tmp_path / "other"
    build_lebel_tree(long_tree)
    build_lebel_tree(other_tree, formats={s: "chronological" for s in STORIES}, bom=STORIES)
    a, b = load_lebel(long_tree, "UTS01"), load_lebel(other_tree, "UTS01")
    for x, y in zip(a.stories_list, b.stories_list):
        assert x.words == y.words
        np.testing.assert_array_equal(x.word_onsets, y.word_onsets)
        np.testing.assert_array_equal(x.split_indices, y.split_indices)


def test_missing_pieces_name_the_story_and_what_is_missing(tmp_path):
    build_lebel_tree(tmp_path)
    (tmp_path / "derivative" / "TextGrids" / "sweetaspie.TextGrid").unlink()
    respdict = real_respdict()
    del respdict["againstthewind"]
    (tmp_path / "derivative" / "respdict.json").write_text(json.dumps(respdict))
    with pytest.raises(MissingStoryFilesError) as info:
        load_lebel(tmp_path, "UTS01")
    message = str(info.value)
    assert "sweetaspie: no TextGrid" in message and "sweetaspie.TextGrid" in message
    assert "againstthewind: no entry in" in message and "respdict.json" in message
    assert "skip_missing=True" in message and "nothing was loaded" in message
    assert set(info.value.missing) == {"sweetaspie", "againstthewind"}
    with pytest.raises(AssemblyFormatError, match=r"wheretheressmoke: no response file .*UTS01/wheretheressmoke"):
        (tmp_path / "derivative" / "preprocessed_data" / "UTS01" / "wheretheressmoke.hf5").unlink()
        load_lebel(tmp_path, "UTS01", stories=["sweetaspie", "wheretheressmoke"])


def test_skip_missing_loads_the_others_and_records_why(tmp_path, caplog):
    build_lebel_tree(tmp_path)
    (tmp_path / "derivative" / "TextGrids" / "sweetaspie.TextGrid").unlink()
    with caplog.at_level(logging.WARNING):
        assembly = load_assembly(tmp_path, subject="UTS01", skip_missing=True)
    assert assembly.stories == ["againstthewind", "wheretheressmoke"]
    skipped = assembly.provenance["skipped_stories"]
    assert list(skipped) == ["sweetaspie"] and "no TextGrid" in skipped["sweetaspie"]
    assert "Skipped 1 of 3 stories" in caplog.text and "sweetaspie" in caplog.text


def test_a_missing_test_story_asked_for_by_name_is_an_error_even_when_skipping(tmp_path):
    build_lebel_tree(tmp_path, stories=("sweetaspie", "againstthewind"))
    (tmp_path / "derivative" / "TextGrids" / "sweetaspie.TextGrid").unlink()
    with pytest.raises(AssemblyFormatError, match="Test story 'sweetaspie' was skipped: no TextGrid"):
        load_lebel(tmp_path, "UTS01", test_story="sweetaspie", skip_missing=True)


def test_undownloaded_datalad_files_are_named(tmp_path):
    build_lebel_tree(tmp_path, stories=("sweetaspie", "againstthewind"))
    response = tmp_path / "derivative" / "preprocessed_data" / "UTS01" / "sweetaspie.hf5"
    response.unlink()
    response.symlink_to(tmp_path / ".git" / "annex" / "objects" / "xx" / "MD5E-s123--abc.hf5")
    grid = tmp_path / "derivative" / "TextGrids" / "againstthewind.TextGrid"
    grid.write_text("/annex/objects/MD5E-s998492--f0b40e03.TextGrid\n")
    with pytest.raises(MissingStoryFilesError) as info:
        load_lebel(tmp_path, "UTS01")
    message = str(info.value)
    assert "git-annex/datalad link" in message and "datalad get" in message and "sweetaspie" in message
    assert "againstthewind: the TextGrid" in message and "git-annex pointer file" in message


def test_rows_disagreeing_with_respdict_beyond_the_known_20_are_refused(tmp_path):
    build_lebel_tree(tmp_path, stories=("sweetaspie",))
    respdict = dict(real_respdict(), sweetaspie=180)
    (tmp_path / "derivative" / "respdict.json").write_text(json.dumps(respdict))
    with pytest.raises(AssemblyFormatError, match=r"'sweetaspie' has 157 response rows.*180 TRs.*160 rows") as info:
        load_lebel(tmp_path, "UTS01", skip_missing=True)  # not a missing file: never skipped
    assert "sweetaspie.hf5" in str(info.value)


@pytest.mark.parametrize("damage,error,message", [
    (lambda root: (root / "derivative" / "respdict.json").unlink(), AssemblyFormatError, "respdict.json"),
    (lambda root: (root / "derivative" / "respdict.json").write_text("{oops"), AssemblyFormatError, "not valid JSON"),
    (lambda root: (root / "derivative" / "respdict.json").write_text('{"a": 100, "A": 100}'), AssemblyFormatError,
     "differ only in case"),
    (lambda root: (root / "derivative" / "preprocessed_data" / "UTS01" / "sweetaspie.hf5").write_bytes(b"junk"),
     AssemblyFormatError, r"sweetaspie\.hf5.*not HDF5"),
    (lambda root: (root / "derivative" / "TextGrids" / "sweetaspie.TextGrid").write_text('File type = "ooTextFile"\n'
                                                                                         'Object class = "TextGrid"\n0 1 "x'),
     TextGridError, r"sweetaspie\.TextGrid, line 3"),
])
def test_damaged_files_are_named(tmp_path, damage, error, message):
    build_lebel_tree(tmp_path, stories=("sweetaspie",))
    damage(tmp_path)
    with pytest.raises(error, match=message):
        load_lebel(tmp_path, "UTS01")


def test_neither_layout_or_both_is_a_clear_error(tmp_path):
    with pytest.raises(AssemblyFormatError, match="neither derivative/ nor derivatives/"):
        list_lebel_subjects(tmp_path)
    with pytest.raises(AssemblyFormatError, match="neither derivative/ nor derivatives/"):
        load_assembly(tmp_path, subject="UTS01")
    build_lebel_tree(tmp_path / "a", stories=("sweetaspie",), layout="derivative")
    build_lebel_tree(tmp_path / "a", stories=("sweetaspie",), layout="derivatives")
    with pytest.raises(AssemblyFormatError, match="both derivative/ and derivatives/"):
        load_lebel(tmp_path / "a", "UTS01")
    (tmp_path / "b" / "derivatives" / "fmriprep").mkdir(parents=True)  # another pipeline's derivatives
    build_lebel_tree(tmp_path / "b", stories=("sweetaspie",), layout="derivative")
    assert lebel_derivatives_dir(tmp_path / "b") == tmp_path / "b" / "derivative"


def test_listing_subset_mask_and_dispatch(tmp_path):
    build_lebel_tree(tmp_path, subjects=("UTS01", "UTS02"))
    assert list_lebel_subjects(tmp_path) == ["UTS01", "UTS02"]
    subset = load_assembly(tmp_path, subject="UTS01", stories=["againstthewind", "sweetaspie"])
    assert subset.stories == ["againstthewind", "sweetaspie"] and subset.test_story is None
    mask = np.zeros((2, 2, 3), dtype=bool)
    mask.flat[:N_VOXELS] = True
    volume = load_lebel(tmp_path, "UTS01", stories=["sweetaspie"], mask=mask, test_story=None)
    assert volume.space.kind == "volume" and volume.space.n_columns() == N_VOXELS
    with pytest.raises(InputError, match=r"subject=.*UTS01.*UTS02"):
        load_assembly(tmp_path)
    with pytest.raises(AssemblyFormatError, match=r"subject 'UTS09'.*UTS01"):
        load_lebel(tmp_path, "UTS09")
    with pytest.raises(AssemblyFormatError, match=r"no response file for \['gamma'\]"):
        load_lebel(tmp_path, "UTS01", stories=["gamma"])
    with pytest.raises(AssemblyFormatError, match="Test story 'beta2'"):
        load_lebel(tmp_path, "UTS01", test_story="beta2")


def test_repeats_inconsistent_with_data_are_refused(tmp_path):
    build_lebel_tree(tmp_path, stories=("wheretheressmoke",))
    path = tmp_path / "derivative" / "preprocessed_data" / "UTS01" / "wheretheressmoke.hf5"
    with h5py.File(path, "a") as h5:
        del h5["individual_repeats"]
        h5["individual_repeats"] = np.zeros((2, 5, N_VOXELS), dtype=np.float32)
    with pytest.raises(AssemblyFormatError, match="individual_repeats has shape"):
        load_lebel(tmp_path, "UTS01")
