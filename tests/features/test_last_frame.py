"""pool="last" computes the last Whisper layer at one frame per window: same features as a full forward."""
from __future__ import annotations

import math
import types

import numpy as np
import torch

from encoding_core.config import FeatureConfig
from encoding_core.features import speech
from encoding_core.features.models import load_model
from encoding_core.features.speech import _WhisperRunner, compute_layers, window_bounds
from features_testutils import speech_like
from tiny_experiment import save_tiny_whisper

MODEL = "bundled/whisper-tiny.en"
SAMPLES_PER_FRAME = 320  # 160-sample mel hop x conv stride 2
# Short early windows (0.45 s, 1.3 s: not multiples of 20 ms), a 2.65 s one and full 4 s ones.
ENDS = np.array([0.45, 1.3, 2.65, 4.0, 5.5])
CONTEXT = 4.0


def _full_forward_last_frames(loaded, audio: np.ndarray, ends: np.ndarray, context: float) -> np.ndarray:
    """Plain HF: WhisperFeatureExtractor (30 s padded mel), full encoder, last real frame by hand."""
    from transformers import WhisperFeatureExtractor

    assert isinstance(loaded.feature_extractor, WhisperFeatureExtractor)
    starts, stops = window_bounds(ends, context, 16000)
    rows = []
    with torch.inference_mode():
        for a, b in zip(starts, stops):
            mel = loaded.feature_extractor(audio[a:b], sampling_rate=16000, return_tensors="pt").input_features
            hidden = loaded.encoder(mel, output_hidden_states=True).hidden_states[1:]
            frame = math.ceil((b - a) / SAMPLES_PER_FRAME) - 1
            rows.append(torch.stack([h[0, frame] for h in hidden]).numpy())
    return np.stack(rows, axis=1)  # (layers, windows, dim)


def _without_shortcut(monkeypatch, audio, loaded, config, ends):
    """The previous code path: full layer outputs, then pool_frames."""
    with monkeypatch.context() as patch:
        patch.setattr(speech, "_has_whisper_layers", lambda encoder: False)
        assert not _WhisperRunner(loaded, config).last_frame_only
        return compute_layers(audio, loaded, config, end_times=ends)[0]


def test_last_frame_shortcut_matches_full_hf_forward(clip, whisper):
    config = FeatureConfig(chunk_size=1.0, context_size=CONTEXT, pool="last", batch_size=3, device="cpu")
    assert _WhisperRunner(whisper, config).last_frame_only
    ours, times = compute_layers(clip, whisper, config, end_times=ENDS)  # batches of 3 and 2 windows
    reference = _full_forward_last_frames(whisper, clip, ENDS, CONTEXT)
    assert ours.shape == reference.shape == (4, len(ENDS), 384)
    np.testing.assert_allclose(times, ENDS)
    np.testing.assert_allclose(ours, reference, atol=1e-5, rtol=2e-6)


def test_last_frame_shortcut_context_only_matches_encode_short(clip, whisper, monkeypatch):
    config = FeatureConfig(chunk_size=1.0, context_size=CONTEXT, pool="last", context_only=True, batch_size=4,
                           device="cpu")
    assert _WhisperRunner(whisper, config).last_frame_only
    ours, _ = compute_layers(clip, whisper, config, end_times=ENDS)
    previous = _without_shortcut(monkeypatch, clip, whisper, config, ENDS)
    np.testing.assert_allclose(ours, previous, atol=1e-5, rtol=2e-6)

    # encode_short on one window's own mel (as run() builds it), last real frame indexed by hand.
    runner = _WhisperRunner(whisper, config)
    starts, stops = window_bounds(ENDS, CONTEXT, 16000)
    for w in (0, 2, 4):
        n_real = math.ceil((stops[w] - starts[w]) / SAMPLES_PER_FRAME)
        n_mel = 2 * n_real
        width = min(n_mel * runner.hop + runner.n_fft, runner.padded_samples)
        wave = np.zeros((1, width), dtype=np.float32)
        wave[0, : stops[w] - starts[w]] = clip[starts[w]:stops[w]]
        with torch.inference_mode():
            hidden = runner.encode_short(runner.log_mel(torch.from_numpy(wave), n_mel))
        expected = torch.stack([h[0, n_real - 1] for h in hidden]).numpy()
        np.testing.assert_allclose(ours[:, w], expected, atol=1e-5, rtol=2e-6)


def test_last_frame_shortcut_under_bf16_autocast(clip, monkeypatch):
    bf16 = load_model(MODEL, device="cpu", precision="bf16")
    for context_only in (False, True):
        config = FeatureConfig(chunk_size=1.0, context_size=CONTEXT, pool="last", precision="bf16",
                               context_only=context_only, batch_size=4, device="cpu")
        ours, _ = compute_layers(clip, bf16, config, end_times=ENDS[1:4])
        previous = _without_shortcut(monkeypatch, clip, bf16, config, ENDS[1:4])
        assert np.isfinite(ours).all()
        np.testing.assert_allclose(ours, previous, atol=5e-2, rtol=0)  # bf16 rounding; measured 0 here


def test_last_frame_shortcut_on_random_three_layer_whisper(tmp_path):
    folder = save_tiny_whisper(tmp_path / "whisper-3-layers", layers=3, heads=4)
    loaded = load_model(str(folder), device="cpu", precision="fp32")
    assert loaded.n_layers == 3 and loaded.hidden_size == 64
    audio = speech_like(3.0, seed=3)
    ends = np.array([0.3, 1.0, 2.0, 3.0])
    config = FeatureConfig(chunk_size=1.0, context_size=2.0, pool="last", batch_size=4, device="cpu")
    assert _WhisperRunner(loaded, config).last_frame_only
    ours, _ = compute_layers(audio, loaded, config, end_times=ends)
    reference = _full_forward_last_frames(loaded, audio, ends, 2.0)
    assert ours.shape == reference.shape == (3, len(ends), 64)
    np.testing.assert_allclose(ours, reference, atol=1e-5, rtol=2e-6)


def test_unexpected_layer_structure_falls_back_to_full_forward(whisper):
    assert speech._has_whisper_layers(whisper.encoder)
    layer = types.SimpleNamespace(self_attn=types.SimpleNamespace())  # no projections
    odd = types.SimpleNamespace(layers=[layer], conv1=None, conv2=None, embed_positions=None, layer_norm=None)
    assert not speech._has_whisper_layers(odd)
    assert not speech._has_whisper_layers(types.SimpleNamespace(layers=[]))
    assert not _WhisperRunner(whisper, FeatureConfig(context_size=CONTEXT, pool="mean")).last_frame_only
