"""Inputs are checked where they are typed, with the result shown: audio overrides (readable audio,
duration against the story), the demo's own audio, FIR delays and fold lengths on Setup, and a
cost estimate that follows the chosen model and the feature cache."""
from __future__ import annotations

import numpy as np
import soundfile

from app_helpers import inject_assembly, new_app, open_page, texts, write_assembly

SR = 16000


def _tone(seconds: float) -> np.ndarray:
    return (0.1 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def _audio_session(studio):
    """The 3-story test assembly (30 TRs of 2 s: a 60 s span) with 60 s of audio per story."""
    path = write_assembly(studio)
    folder = studio / "stimuli"
    folder.mkdir()
    for name in ("story0", "story1", "story2"):
        soundfile.write(folder / f"{name}.wav", _tone(60.0), SR)
    at = new_app()
    inject_assembly(at, path)
    at.run()
    at = open_page(at, "audio")
    at.text_input(key="audio_folder").input(str(folder)).run()
    at.button(key="map_audio").click().run()
    assert texts(at.error) == "" and at.session_state["audio_matches"] is not None
    return at


def test_an_override_is_checked_and_the_result_shown(studio):
    at = _audio_session(studio)
    fake = studio / "notes.h5"
    fake.write_text("a text file renamed .h5")
    short = studio / "short.wav"
    soundfile.write(short, _tone(20.0), SR)   # ends long before the story's words
    good = studio / "good.wav"
    soundfile.write(good, _tone(59.0), SR)
    at.selectbox(key="audio_story").set_value("story1").run()
    at.text_input(key="audio_override").input(str(fake)).run()
    at.button(key="set_override").click().run()
    assert "Not used for story1" in texts(at.error) and "notes.h5" in texts(at.error)
    assert "story1" not in at.session_state["experiment_config"].assembly.audio_overrides

    at.text_input(key="audio_override").input(str(short)).run()
    at.button(key="set_override").click().run()
    assert "does not fit the story" in texts(at.warning) and "last word ends at" in texts(at.warning)
    table = at.dataframe[0].value
    assert dict(zip(table["story"], table["status"]))["story1"] == "mismatch"

    at.text_input(key="audio_override").input(str(good)).run()
    at.button(key="set_override").click().run()
    assert f"{good} is now the audio of story1" in texts(at.success)
    table = at.dataframe[0].value
    assert set(table["status"]) == {"found"}


def test_the_demo_audio_maps_as_found(studio):
    at = new_app()
    at.run()
    open_page(at, "assembly")
    at.button(key="load_demo").click().run()
    open_page(at, "audio")
    table = at.dataframe[0].value
    assert len(table) == 6 and set(table["status"]) == {"found"}, table[["story", "status", "message"]]
    assert "need attention" not in texts(at.warning)


def test_setup_warns_about_delays_and_folds_that_do_not_fit(studio):
    at = new_app()
    inject_assembly(at, write_assembly(studio))
    at.run()
    open_page(at, "setup")
    assert not [w for w in at.warning if "FIR" in str(w.value)]
    at.text_input(key="fir_delays").input("-1, 0, 1").run()
    warnings = texts(at.warning)
    assert "[-1] use the stimulus from the future" in warnings and "FIR delay 0 uses the stimulus of the same TR" in warnings
    at.text_input(key="fir_delays").input("1, 2, 16").run()
    assert "FIR delays reach 32 s" in texts(at.warning)
    at.text_input(key="fir_delays").input("1, 2, 3, 4").run()
    assert "FIR" not in texts(at.warning)
    # 2 training stories of 30 TRs trimmed [10:-5] -> 15 + 15 = 30 training TRs; 5 inner folds
    at.number_input(key="chunk_length").set_value(40).run()
    assert "longer than the training data (30 TRs" in texts(at.warning)
    at.number_input(key="chunk_length").set_value(10).run()
    assert "Only 3 chunks of 10 TRs fit in the 30 training TRs, fewer than the 5 inner folds" in texts(at.warning)
    at.number_input(key="chunk_length").set_value(6).run()
    assert "chunks" not in texts(at.warning)


def test_setup_warns_about_permutations_that_cannot_work(studio):
    at = new_app()
    inject_assembly(at, write_assembly(studio, n_voxels=1500))
    at.run()
    open_page(at, "setup")
    at.number_input(key="trim_test_features_start").set_value(10).run()  # test story: 30 TRs, features [10:-5]
    at.number_input(key="trim_test_targets_start").set_value(10).run()   # -> 15 TRs (targets [10:] -> 20)
    assert "permutation" not in texts(at.warning)
    at.selectbox(key="stats_test").set_value("block_permutation").run()
    at.number_input(key="block_length").set_value(20).run()
    assert "block length (20 TRs) is longer than the test story (15 TRs" in texts(at.warning)
    at.number_input(key="block_length").set_value(5).run()
    assert "block length" not in texts(at.warning)
    at.number_input(key="n_permutations").set_value(100).run()
    # BH at q = 0.05 over 1500 voxels with p >= 1/101: ceil(1500 / (0.05 * 101)) = 298 voxels at the minimum
    assert "100 permutations for FDR over 1,500 voxels" in texts(at.warning)
    assert "at least 298 voxels" in texts(at.warning)
    at.number_input(key="n_permutations").set_value(1000).run()
    assert "permutations for FDR" not in texts(at.warning)


def test_cost_follows_the_model_and_the_cache(studio, monkeypatch):
    from encoding_core import studio as studio_module
    from encoding_core.features import cost
    from encoding_core.features.speech import window_end_times

    at = _audio_session(studio)
    probe = cost.SpeedProbe("bundled/whisper-tiny.en", "cpu", "fp32", 0.25, 2.0, "now", "here")
    monkeypatch.setattr(cost, "probe_speed", lambda config, cache_dir=None, refresh=False: probe)
    cached = {"story0.wav"}
    monkeypatch.setattr(cost, "is_cached", lambda path, config, cache_dir: str(path).rsplit("/", 1)[-1] in cached)
    monkeypatch.setattr(studio_module, "is_cached", cost.is_cached)
    open_page(at, "model")
    metrics = {m.label: m.value for m in at.metric}
    config = at.session_state["experiment_config"].features
    per_story = len(window_end_times(60.0, config.chunk_size, config.context_size, config.include_early_windows))
    assert metrics["Windows to compute"] == f"{2 * per_story:,}"  # story0 is cached: it costs nothing
    assert "1 of 3" in texts(at.markdown)
    # a model that cannot be used here: no numbers of the previous model
    at.selectbox(key="model_choice").set_value("facebook/hubert-base-ls960").run()
    assert "is not usable here" in texts(at.warning)
    assert "Windows to compute" not in [m.label for m in at.metric]
    assert "The experiment still uses `bundled/whisper-tiny.en`" in texts(at.info)
