"""Whisper features from the bundled offline tiny.en, checked against plain HF calls."""
from __future__ import annotations

import difflib
import math
import re
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from encoding_core.config import FeatureConfig
from encoding_core.features import SpeechFeatureExtractor, model_facts
from encoding_core.features import bundled_whisper
from encoding_core.features.speech import compute_layers, window_bounds

CLIP = Path(__file__).resolve().parents[1] / "data" / "speech_clip.flac"
CLIP_TEXT = Path(__file__).resolve().parents[1] / "data" / "speech_clip.txt"
MODEL = "bundled/whisper-tiny.en"


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z ]", " ", text.lower()).split()


def _hf_hidden(whisper, window: np.ndarray) -> torch.Tensor:
    """Plain HF path, as the reference does: feature extractor pads to 30 s, then the encoder."""
    mel = whisper.feature_extractor(window, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        return torch.stack(whisper.encoder(mel, output_hidden_states=True).hidden_states[1:])[:, 0]


def test_conversion_is_atomic_folder_and_reload_is_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("ENCODING_CORE_MODEL_DIR", str(tmp_path))
    folder = bundled_whisper.ensure_converted()
    assert folder == tmp_path / "whisper-tiny.en"
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"} <= names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".whisper-tiny.en.") and p.is_dir()]
    # The saved tensor equals the CTranslate2 variable it came from (q rows of the fused qkv).
    from safetensors.numpy import load_file

    saved = load_file(str(folder / "model.safetensors"))
    source = bundled_whisper.read_ctranslate2(bundled_whisper._source_dir() / "model.bin")
    fused = source["encoder/layer_2/self_attention/linear_0/weight"].astype(np.float32)
    np.testing.assert_array_equal(saved["model.encoder.layers.2.self_attn.k_proj.weight"], fused[384:768])
    # Second call: the folder is reused, nothing is converted again (measured: the reload with
    # from_pretrained takes well under a second; not asserted, the CI machine is shared).
    def no_conversion(*args, **kwargs):
        raise AssertionError("the bundled model was converted a second time")

    monkeypatch.setattr(bundled_whisper, "_convert_into", no_conversion)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert bundled_whisper.ensure_converted() == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    from transformers import WhisperModel

    WhisperModel.from_pretrained(folder, local_files_only=True)


def test_bundled_model_transcribes_the_espeak_clip(clip):
    expected = _words(CLIP_TEXT.read_text())
    heard = _words(bundled_whisper.transcribe(clip))
    matcher = difflib.SequenceMatcher(a=expected, b=heard)
    matched = sum(block.size for block in matcher.get_matching_blocks())
    assert matched >= len(expected) - 1, (expected, heard)  # tiny.en may drop one inflection


def test_model_facts_and_feature_shapes(tmp_path):
    facts = model_facts(MODEL)
    assert (facts.n_layers, facts.hidden_size, facts.kind) == (4, 384, "whisper")
    assert 7_000_000 < facts.n_parameters < 9_000_000  # tiny encoder: ~8.2 M
    extractor = SpeechFeatureExtractor({"model_name": MODEL, "chunk_size": 1.5, "context_size": 4.0, "layer": 3,
                                        "pool": "last", "target_sample_rate": 16000, "device": "cpu",
                                        "include_early_windows": False}, cache_dir=None)
    features, times = extractor.extract_features(CLIP)
    duration = sf.info(str(CLIP)).duration
    expected_times = [4.0 + 1.5 * i for i in range(10) if 4.0 + 1.5 * i <= duration]
    np.testing.assert_allclose(times, expected_times)
    assert features.shape == (len(expected_times), 384) and features.dtype == np.float32
    assert extractor.n_layers == 4 and extractor.hidden_size == 384


def test_whisper_facts_from_files_match_the_built_encoder(tmp_path):
    """The header-only facts (no transformers import) equal those of the model built from its config."""
    from encoding_core.features.models import _facts_from_model, _whisper_facts_from_files, resolve_model

    source = resolve_model(MODEL)
    from_files = _whisper_facts_from_files(source.name, source.folder)
    built = _facts_from_model(source.name, str(source.folder), source.weights_identity)
    assert from_files == built
    truncated = tmp_path / "broken"
    truncated.mkdir()
    (truncated / "config.json").write_text((source.folder / "config.json").read_text())
    (truncated / "model.safetensors").write_bytes(b"\xff" * 8)  # header length beyond any real file
    assert _whisper_facts_from_files("broken", truncated) is None


def test_pooling_matches_direct_encoder_call(clip, whisper):
    ends = np.array([1.3, 4.0])  # a short early window (not a multiple of 20 ms) and a full one
    results = {}
    for pool in ("last", "mean", "last_padded", "mean_padded"):
        cfg = FeatureConfig(chunk_size=1.0, context_size=4.0, pool=pool, device="cpu")
        results[pool], _ = compute_layers(clip, whisper, cfg, end_times=ends)
    starts, stops = window_bounds(ends, 4.0, 16000)
    for w, (a, b) in enumerate(zip(starts, stops)):
        hidden = _hf_hidden(whisper, clip[a:b]).numpy()  # (layers, 1500, 384)
        n_real = math.ceil((b - a) / 320)  # 160-sample mel hop x conv stride 2
        np.testing.assert_allclose(results["last"][:, w], hidden[:, n_real - 1], atol=1e-4)
        np.testing.assert_allclose(results["mean"][:, w], hidden[:, :n_real].mean(axis=1), atol=1e-4)
        np.testing.assert_allclose(results["last_padded"][:, w], hidden[:, -1], atol=1e-4)
        np.testing.assert_allclose(results["mean_padded"][:, w], hidden.mean(axis=1), atol=1e-4)
    assert not np.allclose(results["last"], results["last_padded"], atol=1e-2)


def test_audio_after_the_window_does_not_change_last_or_mean(clip, whisper):
    noisy = clip.copy()
    cut = int(3.0 * 16000)
    noisy[cut:] = np.random.default_rng(0).standard_normal(len(clip) - cut).astype(np.float32) * 0.3
    for pool in ("last", "mean"):
        cfg = FeatureConfig(chunk_size=1.0, context_size=4.0, pool=pool, device="cpu")
        clean_f, _ = compute_layers(clip, whisper, cfg, end_times=np.array([3.0]))
        noisy_f, _ = compute_layers(noisy, whisper, cfg, end_times=np.array([3.0]))
        np.testing.assert_array_equal(clean_f, noisy_f)


def test_batched_equals_one_at_a_time_and_log_mel_matches_hf(clip, whisper):
    ends = np.array([1.0, 4.0, 5.0])
    batched, _ = compute_layers(clip, whisper, FeatureConfig(chunk_size=1.0, context_size=4.0, batch_size=4),
                                end_times=ends)
    single, _ = compute_layers(clip, whisper, FeatureConfig(chunk_size=1.0, context_size=4.0, batch_size=1),
                               end_times=ends)
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=0)

    from encoding_core.features.speech import _WhisperRunner, gather_windows

    runner = _WhisperRunner(whisper, FeatureConfig(context_size=4.0))
    starts, stops = window_bounds(ends[:2], 4.0, 16000)
    waves = gather_windows(clip, starts, stops, total=480000)
    ours = runner.log_mel(torch.from_numpy(waves), 3000).numpy()
    reference = whisper.feature_extractor([clip[a:b] for a, b in zip(starts, stops)], sampling_rate=16000,
                                          return_tensors="np").input_features
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_context_only_is_exact_at_30s_and_close_for_short_context(clip, whisper):
    long_audio = np.tile(clip, 6)[: 31 * 16000]
    ends = np.array([30.0])
    padded, _ = compute_layers(long_audio, whisper, FeatureConfig(context_size=30.0), end_times=ends)
    short, _ = compute_layers(long_audio, whisper, FeatureConfig(context_size=30.0, context_only=True), end_times=ends)
    np.testing.assert_allclose(short, padded, atol=1e-4)  # 1500 frames: the same computation

    ends = np.array([4.0, 5.0])
    padded, _ = compute_layers(clip, whisper, FeatureConfig(context_size=4.0), end_times=ends)
    short, _ = compute_layers(clip, whisper, FeatureConfig(context_size=4.0, context_only=True), end_times=ends)
    assert short.shape == padded.shape
    assert not np.allclose(short, padded, atol=1e-3)  # approximate: attention sees no padding
    for layer in range(4):
        r = np.corrcoef(short[layer].ravel(), padded[layer].ravel())[0, 1]
        assert r > 0.5, (layer, r)
