"""Model page: the feature-cache manager lists real cache entries and clears them after a confirmation."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile

from encoding_core.config import FeatureConfig
from encoding_core.features import cache
from app_helpers import new_app, open_page, texts


def cache_three_stories(cache_dir: Path, audio_dir: Path) -> dict[str, str]:
    """Three real entries written by the cache (features given, not extracted); audio name -> key."""
    audio_dir.mkdir()
    config = FeatureConfig()
    keys = {}
    for i, n_windows in enumerate((5, 8, 13)):
        audio = audio_dir / f"story{i}.wav"
        soundfile.write(audio, np.full(1600, 0.01 * (i + 1), dtype=np.float32), 16000)
        layers = np.random.default_rng(i).normal(size=(2, n_windows, 4)).astype(np.float32)
        features = cache.load_or_compute(audio, config, cache_dir,
                                         lambda layers=layers, n=n_windows: (layers, np.arange(1, n + 1.0), {}))
        keys[audio.name] = features.key
    return keys


def folder_bytes(folder: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files)


def test_cache_manager_lists_and_clears_with_confirmation(studio):
    from encoding_core.common.paths import studio_dirs

    cache_dir = studio_dirs().cache  # the app's cache folder for this ENCODING_STUDIO_HOME
    keys = cache_three_stories(cache_dir, studio / "stimuli")
    at = new_app()
    at.run()
    open_page(at, "model")
    table = [d.value for d in at.dataframe if "audio file" in d.value.columns][0]
    assert sorted(table["audio file"]) == ["story0.wav", "story1.wav", "story2.wav"]
    sizes = {row["audio file"]: row["size"] for row in table.to_dict("records")}
    for name, key in keys.items():
        kib = folder_bytes(cache_dir / "speech_features" / key) / 1024
        assert sizes[name] == f"{kib:.1f} KiB"
    assert set(table["windows"]) == {5, 8, 13}

    # clear one selected entry: nothing happens before the confirmation, cancel keeps it
    at.multiselect(key="cache_pick").set_value([keys["story1.wav"]]).run()
    at.button(key="cache_clear_selected").click().run()
    assert "Delete 1 cache entry" in texts(at.warning)
    assert (cache_dir / "speech_features" / keys["story1.wav"]).is_dir()
    at.button(key="cache_clear_cancel").click().run()
    assert "Delete 1 cache entry" not in texts(at.warning)
    assert (cache_dir / "speech_features" / keys["story1.wav"]).is_dir()
    at.multiselect(key="cache_pick").set_value([keys["story1.wav"]]).run()
    at.button(key="cache_clear_selected").click().run()
    at.button(key="cache_clear_confirm").click().run()
    assert not at.exception and "Removed 1 cache entry." in texts(at.success)
    left = sorted(p.name for p in (cache_dir / "speech_features").iterdir() if not p.name.startswith("."))
    assert left == sorted([keys["story0.wav"], keys["story2.wav"]])

    # clear all
    at.button(key="cache_clear_all").click().run()
    assert "Delete 2 cache entries" in texts(at.warning)
    at.button(key="cache_clear_confirm").click().run()
    assert "Removed 2 cache entries." in texts(at.success)
    assert cache.list_cache_entries(cache_dir) == []
    assert "The cache is empty." in texts(at.caption)
