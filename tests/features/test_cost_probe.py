"""The speed probe behind the cost estimate: one window timed once per machine and model, kept on
disk; fp32 against bf16 with bf16 advised only where it is faster."""
from __future__ import annotations

import json

import pytest

from encoding_core.config import FeatureConfig
from encoding_core.features import cost
from features_testutils import save_tiny_model

SETTINGS = {"chunk_size": 0.5, "context_size": 1.0, "include_early_windows": True, "device": "cpu"}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> str:
    return str(save_tiny_model(tmp_path_factory.mktemp("probe-model") / "m"))


def test_probe_is_measured_once_and_kept_on_disk(model_folder, tmp_path, monkeypatch):
    config = FeatureConfig(model_name=model_folder, **SETTINGS)
    cost._probe_memo.clear()
    first = cost.probe_speed(config, tmp_path)
    assert first.seconds_per_window > 0 and not first.from_disk and first.precision == "fp32"
    files = list((tmp_path / "speed_probes").glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["seconds_per_window"] == first.seconds_per_window
    # a new process (empty memory) reads it instead of measuring: the model is never loaded
    cost._probe_memo.clear()
    monkeypatch.setattr("encoding_core.features.models.load_model",
                        lambda *a, **k: pytest.fail("the probe ran again"))
    again = cost.probe_speed(config, tmp_path)
    assert again.from_disk and again.seconds_per_window == first.seconds_per_window
    # another precision or context is another measurement
    assert cost.stored_probe(FeatureConfig(model_name=model_folder, **{**SETTINGS, "context_size": 2.0}),
                             tmp_path) is None
    assert cost.compare_precisions(config, tmp_path, measure=False) is None  # bf16 not timed yet


def test_estimate_counts_only_uncached_windows_and_adds_the_model_load(tmp_path, monkeypatch):
    import numpy as np
    import soundfile

    from encoding_core.features.speech import window_end_times

    paths = []
    for i, seconds in enumerate((10.0, 7.5)):
        path = tmp_path / f"s{i}.wav"
        soundfile.write(path, np.zeros(int(seconds * 16000)), 16000)
        paths.append(path)
    probe = cost.SpeedProbe("m", "cpu", "fp32", 0.25, 3.0, "now", "here")
    monkeypatch.setattr(cost, "probe_speed", lambda config, cache_dir=None, refresh=False: probe)
    monkeypatch.setattr(cost, "is_cached", lambda path, config, cache_dir: str(path).endswith("s0.wav"))
    config = FeatureConfig(model_name="m", **SETTINGS)
    estimate = cost.estimate_cost(paths, config, cache_dir=tmp_path)
    windows = len(window_end_times(7.5, 0.5, 1.0, True))  # only the uncached story
    assert estimate.cached_stories == 1 and estimate.n_stories == 2 and estimate.n_windows == windows
    assert estimate.est_seconds == pytest.approx(windows * 0.25 + 3.0)


@pytest.mark.parametrize("fp32_s, bf16_s, advice", [(1.0, 0.5, "bf16"), (1.0, 0.95, "fp32"), (1.0, 1.32, "fp32")])
def test_bf16_is_advised_only_where_it_is_faster(monkeypatch, fp32_s, bf16_s, advice):
    times = {"fp32": fp32_s, "bf16": bf16_s}
    monkeypatch.setattr(cost, "probe_speed", lambda config, cache_dir=None, refresh=False: cost.SpeedProbe(
        "m", "cpu", config.precision, times[config.precision], 0.0, "now", "here"))
    result = cost.compare_precisions(FeatureConfig(model_name="m", **SETTINGS))
    assert result.recommend == advice and result.speedup == pytest.approx(fp32_s / bf16_s)
    assert ("is faster" in result.reason) == (advice == "bf16")
