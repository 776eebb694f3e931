"""Feature cache: hits are bit-identical, any change misses, damage is detected, two processes compute once."""
from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from encoding_core.features import SpeechFeatureExtractor, clear_cache, estimate_cost, is_cached, list_cache_entries
from encoding_core.features.speech import window_end_times
from features_testutils import extract_in_subprocess, save_tiny_model, speech_like

SETTINGS = {"chunk_size": 0.5, "context_size": 1.0, "device": "cpu"}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> str:
    return str(save_tiny_model(tmp_path_factory.mktemp("models") / "hubert", "hubert"))


@pytest.fixture
def audio_file(tmp_path) -> Path:
    path = tmp_path / "story.wav"
    sf.write(path, speech_like(2.6, seed=3), 16000)
    return path


def _extract(model_folder, cache_dir, audio, **changes):
    extractor = SpeechFeatureExtractor({"model_name": model_folder, **SETTINGS, **changes}, cache_dir=cache_dir)
    return extractor.extract_story(audio)


def test_second_call_reads_the_cache_bit_identically(model_folder, audio_file, tmp_path):
    cache = tmp_path / "cache"
    first = _extract(model_folder, cache, audio_file)
    second = _extract(model_folder, cache, audio_file)
    assert not first.from_cache and second.from_cache and first.key == second.key
    for layer in range(first.n_layers):
        assert np.array_equal(first.layer(layer), second.layer(layer))
    np.testing.assert_array_equal(first.times, second.times)
    entries = list_cache_entries(cache)
    assert len(entries) == 1 and entries[0].n_layers == 2 and entries[0].n_windows == len(first.times)
    assert entries[0].bytes > 0 and Path(entries[0].audio_file) == audio_file.resolve()
    # every layer is its own .npy file, readable alone without pickle
    layer1 = np.load(Path(entries[0].path) / "layer_001.npy", allow_pickle=False)
    assert np.array_equal(layer1, first.layer(1))


@pytest.mark.parametrize("change", [{"chunk_size": 0.4}, {"context_size": 1.2}, {"pool": "mean"},
                                    {"include_early_windows": False}, {"cache_dtype": "float16"},
                                    {"precision": "bf16"}])
def test_any_parameter_change_misses(model_folder, audio_file, tmp_path, change):
    cache = tmp_path / "cache"
    base = _extract(model_folder, cache, audio_file)
    changed = _extract(model_folder, cache, audio_file, **change)
    assert not changed.from_cache and changed.key != base.key
    assert len(list_cache_entries(cache)) == 2


def test_changed_audio_bytes_miss_even_with_the_same_path(model_folder, audio_file, tmp_path):
    cache = tmp_path / "cache"
    before = _extract(model_folder, cache, audio_file)
    audio, rate = sf.read(audio_file, dtype="float32")
    audio[-4000:] *= 0.5  # reaches into the last window (ends at 2.5 s)
    sf.write(audio_file, audio, rate)
    after = _extract(model_folder, cache, audio_file)
    assert not after.from_cache and after.key != before.key
    assert not np.array_equal(after.layer(1)[-1], before.layer(1)[-1])


@pytest.mark.parametrize("damage", ["truncate_layer", "flip_byte", "drop_meta", "other_config"])
def test_damaged_entry_is_detected_removed_and_recomputed(model_folder, audio_file, tmp_path, caplog, damage):
    cache = tmp_path / "cache"
    good = _extract(model_folder, cache, audio_file)
    reference = good.layer(0).copy()
    entry = Path(list_cache_entries(cache)[0].path)
    del good
    target = entry / "layer_000.npy"
    if damage == "truncate_layer":
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])
    elif damage == "flip_byte":
        data = bytearray(target.read_bytes())
        data[-7] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "drop_meta":
        (entry / "meta.json").unlink()
    else:
        text = (entry / "meta.json").read_text().replace('"pool": "last"', '"pool": "mean"')
        (entry / "meta.json").write_text(text)
    caplog.set_level(logging.WARNING, logger="encoding_core.features.cache")
    again = _extract(model_folder, cache, audio_file)
    assert not again.from_cache
    assert any("Discarding feature cache entry" in r.message for r in caplog.records)
    np.testing.assert_array_equal(again.layer(0), reference)
    assert _extract(model_folder, cache, audio_file).from_cache


def test_is_cached_clear_cache_and_cost(model_folder, audio_file, tmp_path):
    cache = tmp_path / "cache"
    config = {"model_name": model_folder, **SETTINGS}
    duration = sf.info(str(audio_file)).duration
    loop_count = sum(1 for k in range(1, 100) if 0.5 * k <= duration + 1e-9)  # ends at 0.5, 1.0, ... <= duration
    cost = estimate_cost([audio_file], config, probe=False, cache_dir=cache)
    assert cost.n_windows == loop_count == len(window_end_times(duration, 0.5, 1.0, True))
    assert not is_cached(audio_file, config, cache)
    _extract(model_folder, cache, audio_file)
    assert is_cached(audio_file, config, cache)
    cost = estimate_cost([audio_file], config, probe=True, cache_dir=cache)
    assert cost.cached_stories == 1 and cost.n_windows == 0 and cost.est_seconds == 0.0
    cost = estimate_cost([audio_file], {**config, "chunk_size": 0.25}, probe=True, cache_dir=cache)
    assert cost.n_windows > 0 and 0 < cost.per_window_s < 5 and cost.est_seconds == pytest.approx(
        cost.n_windows * cost.per_window_s + cost.load_seconds)
    key = list_cache_entries(cache)[0].key
    assert clear_cache(cache, keys=["not-a-key"]) == 0
    assert clear_cache(cache, keys=[key]) == 1
    assert list_cache_entries(cache) == [] and not is_cached(audio_file, config, cache)


def test_two_processes_extracting_the_same_story_compute_once(model_folder, audio_file, tmp_path):
    cache = tmp_path / "cache"
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        results = pool.starmap(extract_in_subprocess, [(str(audio_file), model_folder, str(cache))] * 2)
    assert sorted(flag for flag, _ in results) == [False, True]
    assert results[0][1] == results[1][1]
    entries = list_cache_entries(cache)
    assert len(entries) == 1
    assert not [p for p in (cache / "speech_features").iterdir() if p.name.startswith(".tmp-")]
    assert is_cached(audio_file, {"model_name": model_folder, **SETTINGS}, cache)


def test_clear_cache_keeps_fresh_temp_folders_of_running_extractions(tmp_path):
    import os
    import time

    from encoding_core.features.cache import SUBDIR, clear_cache

    fresh = tmp_path / SUBDIR / ".tmp-fresh"
    stale = tmp_path / SUBDIR / ".tmp-stale"
    for folder in (fresh, stale):
        folder.mkdir(parents=True)
        (folder / "layer_000.npy").write_bytes(b"partial")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    clear_cache(tmp_path)
    assert fresh.is_dir() and not stale.exists()
