"""HuBERT / wav2vec2 / WavLM from tiny random configs: loading, frames, pooling, batching."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from encoding_core.config import FeatureConfig
from encoding_core.features import SpeechFeatureExtractor, model_facts
from encoding_core.features.models import load_model
from encoding_core.features.speech import compute_layers, window_bounds
from features_testutils import save_tiny_model, speech_like


@pytest.fixture(scope="module")
def audio_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "story.wav"
    sf.write(path, speech_like(3.2), 16000)
    return path


@pytest.mark.parametrize("kind", ["hubert", "wav2vec2", "wavlm"])
def test_tiny_model_loads_offline_and_gives_right_shapes(tmp_path, audio_file, kind):
    from transformers import AutoModel, Wav2Vec2FeatureExtractor

    folder = save_tiny_model(tmp_path / kind, kind)
    facts = model_facts(str(folder))
    assert (facts.n_layers, facts.hidden_size, facts.kind) == (2, 32, kind)
    reference_model = AutoModel.from_pretrained(folder).eval()
    assert facts.n_parameters == sum(p.numel() for p in reference_model.parameters())

    extractor = SpeechFeatureExtractor({"model_name": str(folder), "chunk_size": 0.5, "context_size": 1.0,
                                        "pool": "last", "device": "cpu"})
    story = extractor.extract_story(audio_file)
    expected_times = [0.5] + [1.0 + 0.5 * i for i in range(5) if 1.0 + 0.5 * i <= 3.2]
    np.testing.assert_allclose(story.times, expected_times)
    assert story.n_layers == 2 and story.layer(1).shape == (len(expected_times), 32)

    # Last frame of each window vs a direct call with the HF feature extractor (independent path).
    audio, _ = sf.read(audio_file, dtype="float32")
    normaliser = Wav2Vec2FeatureExtractor(do_normalize=True)
    starts, ends = window_bounds(story.times, 1.0, 16000)
    for w in (0, len(expected_times) - 1):
        inputs = normaliser(audio[starts[w]:ends[w]], sampling_rate=16000, return_tensors="pt").input_values
        with torch.inference_mode():
            hidden = reference_model(inputs, output_hidden_states=True).hidden_states
        for layer in range(2):
            np.testing.assert_allclose(story.layer(layer)[w], hidden[layer + 1][0, -1].numpy(), atol=1e-5)


def test_mean_pool_and_batching_agree_with_single_windows(tmp_path, audio_file):
    folder = save_tiny_model(tmp_path / "hubert", "hubert", seed=1)
    loaded = load_model(str(folder), device="cpu")
    audio, _ = sf.read(audio_file, dtype="float32")
    ends = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    batched, _ = compute_layers(audio, loaded, FeatureConfig(chunk_size=0.5, context_size=1.0, pool="mean",
                                                             batch_size=8), end_times=ends)
    single, _ = compute_layers(audio, loaded, FeatureConfig(chunk_size=0.5, context_size=1.0, pool="mean",
                                                            batch_size=1), end_times=ends)
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=0)
    # mean over all conv frames, computed directly
    starts, stops = window_bounds(ends, 1.0, 16000)
    window = audio[starts[3]:stops[3]]
    normalised = (window - window.mean()) / np.sqrt(window.var() + 1e-7)
    with torch.inference_mode():
        hidden = loaded.encoder(torch.from_numpy(normalised)[None], output_hidden_states=True).hidden_states
    np.testing.assert_allclose(batched[1, 3], hidden[2][0].mean(dim=0).numpy(), atol=1e-5)


def test_progress_counts_windows_and_cancel_stops_between_batches(tmp_path, audio_file):
    import threading

    from encoding_core.common.errors import JobCancelled
    from encoding_core.features import list_cache_entries

    folder = save_tiny_model(tmp_path / "hubert", "hubert", seed=2)
    config = {"model_name": str(folder), "chunk_size": 0.5, "context_size": 1.0, "device": "cpu", "batch_size": 1}
    calls = []
    story = SpeechFeatureExtractor(config).extract_story(audio_file, progress=lambda *a: calls.append(a))
    assert [c[:3] for c in calls] == [("features", i, story.n_windows) for i in range(story.n_windows + 1)]

    cancel = threading.Event()

    def cancel_after_two(stage, done, total, message=""):
        if done >= 2:
            cancel.set()

    cache = tmp_path / "cache"
    with pytest.raises(JobCancelled):
        SpeechFeatureExtractor(config, cache_dir=cache).extract_story(audio_file, progress=cancel_after_two,
                                                                      cancel=cancel)
    assert list_cache_entries(cache) == []  # nothing half-written
