"""The LeBel (ds003020) layout, on a tiny tree built in the test."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import soundfile

from encoding_core.assembly.assembly_loader import load_assembly
from encoding_core.common.errors import AssemblyFormatError, InputError, TextGridError
from encoding_core.assembly.lebel import list_lebel_stories, list_lebel_subjects, load_lebel
from encoding_core.assembly.textgrid import write_textgrid

RUN_TRS = {"alpha": 60, "beta": 55, "wheretheressmoke": 50}  # respdict: TRs in each scanner run
N_VOXELS = 30
N_REPEATS = 3


def build_tree(root, subjects=("UTS01", "UTS02"), audio=("alpha",)):
    rng = np.random.default_rng(0)
    responses = {}
    for subject in subjects:
        folder = root / "derivative" / "preprocessed_data" / subject
        folder.mkdir(parents=True)
        for story, run_trs in RUN_TRS.items():
            data = rng.standard_normal((run_trs - 20, N_VOXELS)).astype(np.float32)
            responses[subject, story] = data
            with h5py.File(folder / f"{story}.hf5", "w") as h5:
                h5["data"] = data
                if story == "wheretheressmoke":
                    h5["individual_repeats"] = rng.standard_normal((N_REPEATS,) + data.shape).astype(np.float32)
    grids = root / "derivative" / "TextGrids"
    for story, run_trs in RUN_TRS.items():
        length = (run_trs - 20) * 2.0
        write_textgrid(grids / f"{story}.TextGrid", {
            "phone": [(0.0, length, "")],
            "word": [(0.0, 0.5, "sentence_start"), (0.5, 1.0, story), (1.0, 1.4, "sp"), (1.4, 2.0, "end")],
        }, xmax=length)
    (root / "derivative" / "respdict.json").write_text(json.dumps(RUN_TRS))
    (root / "stimuli").mkdir()
    for story in audio:
        soundfile.write(root / "stimuli" / f"{story}.wav", np.zeros(800, dtype=np.float32), 8000)
    return responses


def test_loads_with_huth_lab_tr_times_and_repeats(tmp_path):
    responses = build_tree(tmp_path)
    assembly = load_lebel(tmp_path, "UTS02")
    assert assembly.stories == ["alpha", "beta", "wheretheressmoke"]  # test story last
    assert assembly.test_story == "wheretheressmoke" and assembly.tr == 2.0
    for story in assembly.stories_list:
        run_trs = RUN_TRS[story.name]
        expected_times = [2.0 * i - 10.0 for i in range(run_trs - 5)]  # written out independently
        assert story.tr_times.tolist() == expected_times
        assert story.tr_times[0] == -10.0 and story.tr_times[10] == 10.0
        # features at these TR times, trimmed [10:-5], line up with the stored responses
        assert len(story.tr_times[10:-5]) == story.n_trs == run_trs - 20
        np.testing.assert_array_equal(story.brain_data, responses["UTS02", story.name])
        assert story.words == [story.name, "end"]
        np.testing.assert_array_equal(story.word_onsets, [0.5, 1.4])
    smoke = assembly.story("wheretheressmoke")
    assert smoke.repeats.shape == (N_REPEATS, RUN_TRS["wheretheressmoke"] - 20, N_VOXELS)
    assert assembly.story("alpha").repeats is None
    assert assembly.story("alpha").audio_path == str(tmp_path / "stimuli" / "alpha.wav")
    assert assembly.story("beta").audio_path is None
    assert assembly.space.kind == "unknown"
    assert assembly.provenance["loader"] == "lebel"


def test_listing_subset_mask_and_dispatch(tmp_path):
    build_tree(tmp_path)
    assert list_lebel_subjects(tmp_path) == ["UTS01", "UTS02"]
    assert list_lebel_stories(tmp_path, "UTS01") == ["alpha", "beta", "wheretheressmoke"]
    subset = load_assembly(tmp_path, subject="UTS01", stories=["beta", "alpha"])
    assert subset.stories == ["beta", "alpha"] and subset.test_story is None
    mask = np.zeros((2, 3, 10), dtype=bool)
    mask.flat[:N_VOXELS] = True
    volume = load_lebel(tmp_path, "UTS01", stories=["alpha"], mask=mask, test_story=None)
    assert volume.space.kind == "volume" and volume.space.n_columns() == N_VOXELS
    with pytest.raises(InputError, match=r"subject=.*UTS01.*UTS02"):
        load_assembly(tmp_path)


def test_row_count_mismatch_names_story_and_numbers(tmp_path):
    build_tree(tmp_path, subjects=("UTS01",))
    respdict = dict(RUN_TRS, beta=57)
    (tmp_path / "derivative" / "respdict.json").write_text(json.dumps(respdict))
    with pytest.raises(AssemblyFormatError, match=r"'beta' has 35 response rows.*57 TRs.*37 rows") as info:
        load_lebel(tmp_path, "UTS01")
    assert "beta.hf5" in str(info.value)


@pytest.mark.parametrize("damage,error,message", [
    (lambda root: (root / "derivative" / "TextGrids" / "beta.TextGrid").unlink(), TextGridError, "beta.TextGrid"),
    (lambda root: (root / "derivative" / "respdict.json").unlink(), AssemblyFormatError, "respdict.json"),
    (lambda root: (root / "derivative" / "respdict.json").write_text(json.dumps({"alpha": 60})),
     AssemblyFormatError, "no TR count for story 'beta'"),
    (lambda root: (root / "derivative" / "respdict.json").write_text("{oops"), AssemblyFormatError, "not valid JSON"),
    (lambda root: (root / "derivative" / "preprocessed_data" / "UTS01" / "beta.hf5").write_bytes(b"junk"),
     AssemblyFormatError, "beta.hf5"),
])
def test_missing_or_damaged_files(tmp_path, damage, error, message):
    build_tree(tmp_path, subjects=("UTS01",))
    damage(tmp_path)
    with pytest.raises(error, match=message):
        load_lebel(tmp_path, "UTS01")


def test_wrong_root_subject_or_story(tmp_path):
    with pytest.raises(AssemblyFormatError, match="not a LeBel"):
        list_lebel_subjects(tmp_path)
    build_tree(tmp_path, subjects=("UTS01",))
    with pytest.raises(AssemblyFormatError, match=r"subject 'UTS09'.*UTS01"):
        load_lebel(tmp_path, "UTS09")
    with pytest.raises(AssemblyFormatError, match=r"no response file for \['gamma'\]"):
        load_lebel(tmp_path, "UTS01", stories=["gamma"])
    with pytest.raises(AssemblyFormatError, match="Test story 'beta2'"):
        load_lebel(tmp_path, "UTS01", test_story="beta2")
