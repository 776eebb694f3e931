"""The reference's modalities on tiny data, each against a computation written here.

- wordrate: words per TR counted with a plain loop;
- embeddings: the mean of the word vectors of each TR (rect downsampling), by hand;
- language_model: hidden states equal a direct ``model(...)`` call on the same lookback context;
- custom: user arrays per story.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest

from encoding_core.assembly import Assembly, Story
from encoding_core.common.errors import ConfigError, InputError
from encoding_core.config import ExperimentConfig
from encoding_core.downsample.downsampling import Downsampler
from encoding_core.features.factory import FeatureExtractorFactory
from encoding_core.features.FIR_expander import FIR

from tiny_experiment import TINY_VOCAB, save_tiny_gpt2, write_word_vectors

TR = 2.0


def story_with_words(n_trs=12, n_words=40, seed=0, vocab=TINY_VOCAB):
    rng = np.random.default_rng(seed)
    onsets = np.sort(rng.uniform(0, n_trs * TR, n_words))
    words = [vocab[i] for i in rng.integers(0, len(vocab), n_words)]
    if n_words > 3:
        words[3] = "zebra"  # not in any vocabulary here
    return Story(name=f"s{seed}", brain_data=rng.standard_normal((n_trs, 3)), tr_times=np.arange(n_trs) * TR + TR / 2,
                 words=words, word_onsets=onsets, word_offsets=onsets + 0.2)


def test_word_rate_counts_word_starts_per_tr():
    story = story_with_words()
    story.words[5] = "  "  # blank words are not counted
    assembly = Assembly("x", TR, [story, story_with_words(seed=1)])
    rates = assembly.get_word_rates()
    expected = []
    for t in story.tr_times:  # TR i covers [t - TR/2, t + TR/2) around its time t
        expected.append(sum(1 for w, on in zip(story.words, story.word_onsets)
                            if w.strip() and t - TR / 2 <= on < t + TR / 2))
    np.testing.assert_array_equal(rates[0][:, 0], expected)
    assert rates[0].shape == (12, 1)
    extractor = FeatureExtractorFactory.create_extractor(modality="wordrate", model_name="wordrate", config={})
    features = extractor.extract_story(story, tr=TR)
    assert features.tr_aligned
    np.testing.assert_array_equal(features.layer(0)[:, 0], expected)
    np.testing.assert_array_equal(extractor.extract_features(rates[0][:, 0]), rates[0])


def test_coords_follow_the_stimuli():
    a, b = story_with_words(n_words=5), story_with_words(n_words=3, seed=1)
    assembly = Assembly("x", TR, [a, b])
    assert list(assembly.get_coord("story_id")) == ["s0"] * 5 + ["s1"] * 3
    assert list(assembly.get_coord("stimulus_id")) == [0, 1, 2, 3, 4, 0, 1, 2]
    with pytest.raises(KeyError, match="story_id"):
        assembly.get_coord("presentation")


@pytest.mark.parametrize("kind", ["w2v_text", "w2v_binary", "glove"])
def test_embeddings_mean_per_tr_and_missing_words(tmp_path, kind, caplog):
    rng = np.random.default_rng(1)
    vectors = {w: rng.standard_normal(4).astype(np.float32) for w in TINY_VOCAB}
    name = {"w2v_text": "vec.w2v.txt", "w2v_binary": "vec.bin", "glove": "glove.txt"}[kind]
    path = write_word_vectors(tmp_path / name, vectors, binary=kind == "w2v_binary", header=kind != "glove")
    story = story_with_words()
    extractor = FeatureExtractorFactory.create_extractor(
        modality="embeddings", model_name="word2vec",
        config={"vector_path": str(path), "lowercase": True, "use_tqdm": False}, cache_dir=tmp_path / "cache")
    with caplog.at_level(logging.WARNING):
        features = extractor.extract_story(story)
    assert "1 of 40 words have no vector" in caplog.text
    rows = features.layer(0)
    assert rows.shape == (40, 4)
    np.testing.assert_array_equal(rows[3], 0.0)  # "zebra": a zero vector (our default oov_handling)
    np.testing.assert_allclose(rows[0], vectors[story.words[0]], rtol=1e-6)
    per_tr = Downsampler().downsample(rows, features.times, story.tr_times, method="rect")
    for i, t in enumerate(story.tr_times):  # mean of the vectors of the words whose time is in the TR
        inside = [vectors.get(w, np.zeros(4)) for w, mid in zip(story.words, story.data_times)
                  if t - TR / 2 <= mid < t + TR / 2]
        expected = np.mean(inside, axis=0) if inside else np.zeros(4)
        np.testing.assert_allclose(per_tr[i], expected, rtol=1e-5, atol=1e-6)
    again = extractor.extract_story(story)  # from the cache, same numbers
    assert again.from_cache
    np.testing.assert_array_equal(again.layer(0), rows)


def test_embeddings_oov_options(tmp_path):
    vectors = {"the": np.ones(2), "fox": 2 * np.ones(2)}
    path = write_word_vectors(tmp_path / "v.w2v.txt", vectors)
    make = lambda how: FeatureExtractorFactory.create_extractor(  # noqa: E731
        "embeddings", "w2v", {"vector_path": str(path), "oov_handling": how}, cache_dir=None)
    words = ["zebra", "The", "cat", "fox", "cow"]
    np.testing.assert_array_equal(make("copy_prev").extract_features(words)[:, 0], [0, 1, 1, 2, 2])
    np.testing.assert_array_equal(make("zero").extract_features(words)[:, 0], [0, 1, 0, 2, 0])
    np.testing.assert_array_equal(make("skip").extract_features(words)[:, 0], [1, 2])
    with pytest.raises(InputError, match="oov_handling='error'"):
        make("error").extract_features(words)
    with pytest.raises(ConfigError, match="pickle"):
        (tmp_path / "v.kv").write_bytes(b"x")
        make("zero").__class__({"vector_path": str(tmp_path / "v.kv")})


def _direct_hidden_states(model, tokenizer, words, i, lookback, layer):
    """What the model computes for word i: BOS + the last `lookback` tokens of the context."""
    import torch

    ids = tokenizer(" ".join(words[max(0, i - lookback): i + 1]), add_special_tokens=False)["input_ids"][-lookback:]
    with torch.no_grad():
        hidden = model(torch.tensor([[tokenizer.bos_token_id] + ids]), output_hidden_states=True).hidden_states
    return hidden[layer][0].numpy()


@pytest.mark.parametrize("last_token", [True, False])
def test_language_model_equals_a_direct_model_call(tmp_path, last_token):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = save_tiny_gpt2(tmp_path / "gpt2")
    story = story_with_words(n_words=30)
    lookback = 6
    extractor = FeatureExtractorFactory.create_extractor(
        modality="language_model", model_name=str(folder),
        config={"model_name": str(folder), "layer_idx": 1, "last_token": last_token, "lookback": lookback,
                "context_type": "fullcontext", "center_residual": False, "batch_tokens": 40},
        cache_dir=tmp_path / "cache")
    features = extractor.extract_story(story)
    assert features.n_layers == 2 and features.layer(0).shape == (30, 32)
    np.testing.assert_array_equal(features.times, story.data_times)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    for i in (0, 3, 7, 29):
        for layer in (0, 1):
            hidden = _direct_hidden_states(model, tokenizer, story.words, i, lookback, layer)
            expected = hidden[-1] if last_token else hidden.mean(axis=0)
            np.testing.assert_allclose(features.layer(layer)[i], expected, rtol=1e-4, atol=1e-5)
    cached = extractor.extract_story(story)
    assert cached.from_cache
    np.testing.assert_array_equal(cached.layer(1), features.layer(1))


def test_language_model_centring_matches_transformer_lens_convention(tmp_path):
    """center_residual='auto' on a LayerNorm model: the hidden state minus its mean over units."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = save_tiny_gpt2(tmp_path / "gpt2")
    words = "the fox sat on a branch with cheese".split()
    extractor = FeatureExtractorFactory.create_extractor("language_model", str(folder),
                                                         {"lookback": 4}, cache_dir=None)
    features = extractor.extract_words(words, np.arange(len(words), dtype=float))
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    hidden = _direct_hidden_states(model, tokenizer, words, 5, 4, 1)[-1]
    np.testing.assert_allclose(features.layer(1)[5], hidden - hidden.mean(), rtol=1e-4, atol=1e-5)
    layers = extractor.extract_all_layers(["the fox", "a crow sang"])  # the reference's call on strings
    assert sorted(layers) == [0, 1] and layers[0].shape == (2, 32)


def test_custom_arrays_with_and_without_times(tmp_path):
    story = story_with_words()
    rng = np.random.default_rng(0)
    rows, times = rng.standard_normal((30, 3)), np.sort(rng.uniform(0, 24, 30))
    extractor = FeatureExtractorFactory.create_extractor("custom", "mine", {"features": {"s0": rows},
                                                                           "times": {"s0": times}})
    features = extractor.extract_story(story)
    np.testing.assert_allclose(features.layer(0), rows, rtol=1e-6)
    np.testing.assert_array_equal(features.times, times)
    np.savez(tmp_path / "s0.npz", features=rng.standard_normal((12, 2)))
    per_tr = FeatureExtractorFactory.create_extractor("custom", "mine", {"path": str(tmp_path)}).extract_story(story)
    assert per_tr.tr_aligned and per_tr.layer(0).shape == (12, 2)
    np.savez(tmp_path / "s0.npz", features=rng.standard_normal((11, 2)))
    with pytest.raises(InputError, match="one row per TR time"):
        FeatureExtractorFactory.create_extractor("custom", "mine", {"path": str(tmp_path)}).extract_story(story)


def test_factory_names_the_supported_modalities():
    assert FeatureExtractorFactory.get_supported_modalities() == ["speech", "wordrate", "embeddings",
                                                                  "language_model", "custom", "phonemerate",
                                                                  "envelope", "logmel"]
    with pytest.raises(ConfigError, match="Unsupported modality 'video'"):
        FeatureExtractorFactory.create_extractor("video", "x", {})


def test_fir_make_delayed_matches_a_loop():
    x = np.random.default_rng(0).standard_normal((9, 2))
    got = FIR.make_delayed(x, [1, 2, 3])
    for block, delay in enumerate((1, 2, 3)):
        for t in range(9):
            expected = x[t - delay] if t - delay >= 0 else np.zeros(2)
            np.testing.assert_array_equal(got[t, 2 * block:2 * block + 2], expected)
    np.testing.assert_array_equal(FIR.make_delayed(x, [2], circpad=True), np.roll(x, 2, axis=0))


def test_reference_module_paths_are_real_modules():
    import importlib

    for path, name in [("encoding_core.features.language_model", "LanguageModelFeatureExtractor"),
                       ("encoding_core.features.embeddings", "StaticEmbeddingFeatureExtractor"),
                       ("encoding_core.features.lowlevel_features", "WordRateFeatureExtractor"),
                       ("encoding_core.features.simple_features", "WordRateFeatureExtractor"),
                       ("encoding_core.features.speech_model", "SpeechFeatureExtractor"),
                       ("encoding_core.features.FIR_expander", "FIR")]:
        assert hasattr(importlib.import_module(path), name), path


def test_feature_config_modality_defaults_keep_old_toml_loading():
    config = ExperimentConfig.from_toml('[features]\nmodel_name = "x"\n')
    assert config.features.modality == "speech"
    with pytest.raises(ConfigError, match="vector_path"):
        ExperimentConfig.from_toml('[features]\nmodality = "embeddings"\n')
