"""Helpers for the feature tests: tiny random HF audio encoders saved to a folder (no download)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def save_tiny_model(folder: Path, kind: str = "hubert", seed: int = 0) -> Path:
    """Save a tiny random HuBERT / wav2vec2 / WavLM (2 layers, width 32) and its feature extractor."""
    import torch
    from transformers import (HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model,
                              WavLMConfig, WavLMModel)

    classes = {"hubert": (HubertConfig, HubertModel), "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
               "wavlm": (WavLMConfig, WavLMModel)}
    config_cls, model_cls = classes[kind]
    config = config_cls(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=10)
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True,
                             return_attention_mask=True).save_pretrained(folder)
    return folder


def speech_like(seconds: float, seed: int = 0, rate: int = 16000) -> np.ndarray:
    """A deterministic harmonic signal with noise, (n_samples,) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    signal = sum(np.sin(2 * np.pi * k * np.cumsum(pitch) / rate) / k for k in range(1, 6))
    return (0.2 * signal + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def extract_in_subprocess(audio_path: str, model_folder: str, cache_dir: str) -> tuple[bool, str]:
    """Worker for the two-process cache test: returns (from_cache, key)."""
    from encoding_core.features import SpeechFeatureExtractor

    extractor = SpeechFeatureExtractor({"model_name": model_folder, "chunk_size": 0.5, "context_size": 1.0,
                                        "device": "cpu"}, cache_dir=cache_dir)
    story = extractor.extract_story(audio_path)
    return story.from_cache, story.key
