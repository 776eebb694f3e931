"""Windows, devices, factory and errors of the features package."""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from encoding_core.config import FeatureConfig
from encoding_core.common.errors import ConfigError, EncodingCoreError, ModelUnavailableError
from encoding_core.features import FeatureExtractorFactory, SpeechFeatureExtractor, model_facts, window_end_times
from encoding_core.features.models import resolve_device


def _loop_windows(duration, stride, context, early):
    times, t = [], stride
    while early and t < context - 1e-9 and t <= duration + 1e-9:
        times.append(t)
        t = round(t + stride, 10)
    i = 0
    while context + i * stride <= duration + 1e-9:
        times.append(context + i * stride)
        i += 1
    return np.array(times)


@settings(max_examples=60, deadline=None)
@given(duration=st.floats(0.0, 60.0), stride=st.sampled_from([0.1, 0.25, 0.5, 1.0, 2.0, 3.0]),
       context=st.sampled_from([0.5, 1.0, 4.0, 16.0]), early=st.booleans())
def test_window_end_times_match_a_plain_loop(duration, stride, context, early):
    np.testing.assert_allclose(window_end_times(duration, stride, context, early),
                               _loop_windows(duration, stride, context, early), atol=1e-9)


def test_reference_windows_start_once_a_full_context_fits():
    np.testing.assert_allclose(window_end_times(20.0, 2.0, 16.0, False), [16.0, 18.0, 20.0])
    np.testing.assert_allclose(window_end_times(20.0, 4.0, 16.0, True), [4.0, 8.0, 12.0, 16.0, 20.0])
    assert window_end_times(3.0, 1.0, 16.0, False).size == 0


def test_cuda_without_gpu_warns_and_uses_cpu(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    caplog.set_level(logging.WARNING, logger="encoding_core.features.models")
    with pytest.warns(RuntimeWarning, match="no CUDA GPU"):
        device = resolve_device("cuda")
    assert device.type == "cpu"
    assert any("no CUDA GPU" in r.message for r in caplog.records)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_device("auto").type in ("cpu", "mps")


def test_missing_model_fails_before_work_with_instructions():
    with pytest.raises(ModelUnavailableError, match="huggingface-cli download nobody-xyz/no-such-model"):
        model_facts("nobody-xyz/no-such-model")
    with pytest.raises(ModelUnavailableError, match="AutoModel.from_pretrained"):
        SpeechFeatureExtractor({"model_name": "nobody-xyz/no-such-model"})


def test_factory_creates_speech_extractors_and_refuses_other_modalities():
    extractor = FeatureExtractorFactory.create_extractor(
        modality="speech", model_name="bundled/whisper-tiny.en",
        config={"model_name": "bundled/whisper-tiny.en", "chunk_size": 0.1, "context_size": 16.0, "layer": 3,
                "pool": "last", "target_sample_rate": 16000, "device": "cpu"}, cache_dir=None)
    assert isinstance(extractor, SpeechFeatureExtractor) and extractor.layer_index == 3
    assert extractor.config.context_size == 16.0 and extractor.n_layers == 4
    with pytest.raises(ConfigError, match="modality 'text'"):
        FeatureExtractorFactory.create_extractor(modality="text", model_name="bundled/whisper-tiny.en")
    assert isinstance(FeatureExtractorFactory.create_extractor(config=FeatureConfig(chunk_size=1.0)),
                      SpeechFeatureExtractor)


@pytest.mark.parametrize("bad, message", [
    ({"pool": "max"}, "pool must be one of"),
    ({"layer": 4}, "layers 0..3"),
    ({"chunk_size": 0}, "chunk_size"),
    ({"stride": 1.0}, "Unknown feature config key"),
    ({"context_size": 40.0, "context_only": True}, None),
])
def test_bad_settings_raise_clear_errors(bad, message, tmp_path):
    if message is None:  # valid config; fails when windows are built (Whisper takes at most 30 s)
        extractor = SpeechFeatureExtractor(bad)
        import soundfile as sf

        sf.write(tmp_path / "a.wav", np.zeros(16000, dtype=np.float32), 16000)
        with pytest.raises(ConfigError, match="30 s"):
            extractor.extract_story(tmp_path / "a.wav")
        return
    with pytest.raises(EncodingCoreError, match=message):
        SpeechFeatureExtractor(bad)
