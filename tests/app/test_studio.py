"""App-side logic without a UI (encoding_core.studio), checked against plain references."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from hypothesis import given, strategies as st

from encoding_core.config import ExperimentConfig, TrimmingConfig
from encoding_core.common.errors import ConfigError
from encoding_core.studio import (copy_assembly, demo_preset_config, experiment_checklist, format_bytes,
                                  format_seconds, layer_profile, per_voxel_csv, per_voxel_npz, scheduler_label,
                                  sliced_length, trimming_preview)

bound = st.one_of(st.none(), st.integers(-60, 60))


@given(n=st.integers(0, 50), start=bound, end=bound)
def test_sliced_length_is_python_slicing(n, start, end):
    assert sliced_length(n, start, end) == len(list(range(n))[start:end])


def test_trimming_preview_matches_slicing_real_arrays(make_assembly):
    assembly = make_assembly(n_stories=3, n_trs=40)
    assembly.stories_list[1].tr_times = np.arange(45) * 2.0  # features span 45 TR times, targets 40 rows
    trim = TrimmingConfig(5, -3, 0, -8, 10, None, 2, -8)
    rows = trimming_preview(assembly, trim, test_story="story2")
    for row, story in zip(rows, assembly.stories_list):
        features = np.zeros((story.tr_times.size, 2))
        targets = story.brain_data
        if story.name == "story2":
            f, t = features[10:], targets[2:-8]
        else:
            f, t = features[5:-3], targets[0:-8]
        assert (row["features"], row["targets"]) == (len(f), len(t))
        assert row["match"] == (len(f) == len(t))
        assert row["role"] == ("test" if story.name == "story2" else "train")
    assert [r["match"] for r in rows] == [True, False, True]
    cv_rows = trimming_preview(assembly, trim, test_story="story2", mode="cv")
    assert {r["role"] for r in cv_rows} == {"train"}


def test_checklist_follows_the_experiment(make_assembly):
    config = ExperimentConfig()
    empty = experiment_checklist(config, None, None, [])
    assert [s.done for s in empty] == [False, False, True, False, False, False]
    assembly = make_assembly(n_stories=2, n_trs=30)
    config.alignment.trimming = TrimmingConfig(0, None, 0, None, 0, None, 0, None)

    class Run:
        status = "complete"

    steps = experiment_checklist(config, assembly, 2, [Run()])
    assert all(s.done for s in steps)
    assert steps[1].detail == "2 of 2 stories have audio"
    config.alignment.trimming.train_targets_start = 3
    steps = experiment_checklist(config, assembly, 1, [])
    assert not steps[1].done and not steps[3].done and "story0" in steps[3].detail


def test_copy_assembly_does_not_touch_the_original(make_assembly):
    assembly = make_assembly()
    clone = copy_assembly(assembly)
    clone.stories_list[0].audio_path = "/x.wav"
    assert assembly.stories_list[0].audio_path is None
    assert clone.stories_list[0].brain_data is assembly.stories_list[0].brain_data


def test_demo_presets(monkeypatch):
    from encoding_core.demo import demo_config, demo_story_names

    base = demo_config()
    assert demo_preset_config(base, "full").to_dict() == base.to_dict()
    tiny = demo_preset_config(base, "tiny")
    names = demo_story_names()
    assert tiny.assembly.stories == [names[0], names[1], names[-1]]
    assert tiny.assembly.test_story == names[-1]
    assert tiny.features.chunk_size == 2.5
    assert tiny.stats.n_permutations == base.stats.n_permutations
    assert tiny.layers == base.layers and tiny.features.model_name == base.features.model_name
    monkeypatch.setenv("ENCODING_STUDIO_DEMO_PRESET", "tiny")
    assert demo_preset_config(base).name.endswith("-tiny")
    monkeypatch.setenv("ENCODING_STUDIO_DEMO_PRESET", "huge")
    with pytest.raises(ConfigError, match="ENCODING_STUDIO_DEMO_PRESET"):
        demo_preset_config(base)


def test_layer_profile_columns():
    profile = layer_profile({2: {"median_score": 0.2, "n_significant": 7}, 0: {"median_score": 0.1}})
    assert profile == {"layers": [0, 2], "median_r": [0.1, 0.2], "n_significant": [0, 7]}


def test_per_voxel_downloads_round_trip(rng):
    arrays = {"correlations": rng.normal(size=6).astype(np.float32), "significant_mask": rng.random(6) > 0.5,
              "best_alphas": np.logspace(0, 5, 6), "fold_scores": rng.normal(size=(3, 6))}
    rows = list(csv.reader(io.StringIO(per_voxel_csv(arrays).decode())))
    assert rows[0] == ["voxel", "best_alphas", "correlations", "significant_mask"]
    assert len(rows) == 7
    for i, row in enumerate(rows[1:]):
        assert int(row[0]) == i
        assert float(row[1]) == pytest.approx(arrays["best_alphas"][i], rel=1e-6)
        assert float(row[2]) == pytest.approx(float(arrays["correlations"][i]), rel=1e-6)
        assert float(row[3]) == float(arrays["significant_mask"][i])
    with np.load(io.BytesIO(per_voxel_npz(arrays)), allow_pickle=False) as data:
        np.testing.assert_array_equal(data["fold_scores"], arrays["fold_scores"])


@pytest.mark.parametrize("seconds, text", [(None, "-"), (float("nan"), "-"), (4.4, "4 s"), (125, "2 min 05 s"),
                                           (3725, "1 h 02 min")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


@pytest.mark.parametrize("n_bytes, text", [(None, "-"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                                           (1536, "1.5 KiB"), (5 * 2**20, "5.0 MiB"), (3 * 2**30, "3.0 GiB"),
                                           (2**42, "4096.0 GiB")])
def test_format_bytes(n_bytes, text):
    assert format_bytes(n_bytes) == text


def test_scheduler_label():
    assert scheduler_label(None) == scheduler_label("") == "this machine (background process)"
    assert scheduler_label("local:3") == "local Dask cluster of 3 worker processes"
    assert scheduler_label("10.0.0.5:8786") == "Dask scheduler tcp://10.0.0.5:8786"
    assert scheduler_label("not an address") == "Dask scheduler not an address"
