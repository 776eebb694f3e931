"""A complete, tiny, real experiment on disk: native .h5 assembly, generated wavs, and a
random-weights 2-layer Whisper (d_model 64) saved as a local Hugging Face folder.

Everything is made in the test's tmp folder; nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from encoding_core.assembly import Assembly, Story
from encoding_core.config import ExperimentConfig, TrimmingConfig

SAMPLE_RATE = 16000


def save_tiny_whisper(folder: Path, seed: int = 0, layers: int = 2, heads: int = 2) -> Path:
    """A random Whisper (``layers`` encoder layers, d_model 64) + WhisperFeatureExtractor, saved in ``folder``."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(seed)
    config = WhisperConfig(d_model=64, encoder_layers=layers, decoder_layers=1, encoder_attention_heads=heads,
                           decoder_attention_heads=heads, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80,
                           vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                           decoder_start_token_id=1, max_source_positions=1500, max_target_positions=32)
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return folder


def write_story_audio(path: Path, duration_s: float, seed: int) -> np.ndarray:
    """A wav of amplitude-modulated tones and noise; returns its per-second RMS envelope."""
    import soundfile

    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = np.repeat(rng.uniform(0.05, 0.5, int(np.ceil(duration_s))), SAMPLE_RATE)[: t.size]
    wave = envelope * (np.sin(2 * np.pi * 220 * t) + 0.3 * rng.standard_normal(t.size))
    soundfile.write(path, wave.astype(np.float32), SAMPLE_RATE)
    return envelope


def make_tiny_experiment(root: Path, n_stories: int = 3, n_trs: int = 24, tr: float = 1.0, n_voxels: int = 12,
                         seed: int = 0) -> ExperimentConfig:
    """Write assembly.h5, audio/<story>.wav and model/ under ``root``; return a validated config."""
    from encoding_core.assembly.assembly_loader import save_assembly

    rng = np.random.default_rng(seed)
    audio_dir = root / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    stories = []
    for i in range(n_stories):
        name = f"story{i}"
        envelope = write_story_audio(audio_dir / f"{name}.wav", n_trs * tr, seed + i)
        per_tr = envelope[:: SAMPLE_RATE][:n_trs]
        brain = per_tr[:, None] * rng.uniform(0.5, 1.5, n_voxels) + 0.1 * rng.standard_normal((n_trs, n_voxels))
        stories.append(Story(name=name, brain_data=brain.astype(np.float32), tr_times=np.arange(n_trs) * tr + tr))
    assembly = Assembly(subject="tiny", tr=tr, stories_list=stories, simulated=True)
    assembly_path = save_assembly(assembly, root / "assembly.h5")
    model_dir = save_tiny_whisper(root / "model")

    config = ExperimentConfig(name="tiny", results_dir=str(root / "results"), cache_dir=str(root / "cache"))
    config.assembly.path = str(assembly_path)
    config.assembly.audio_dir = str(audio_dir)
    config.features.model_name = str(model_dir)
    config.features.chunk_size = 1.0
    config.features.context_size = 2.0
    config.features.device = "cpu"
    config.features.context_only = True  # approximate but fast; exactness is the features tests' job
    config.layers = "all"
    config.alignment.downsample_method = "rect"
    config.alignment.fir_delays = [1, 2]
    config.alignment.trimming = TrimmingConfig(train_features_start=2, train_features_end=None,
                                               train_targets_start=2, train_targets_end=None,
                                               test_features_start=2, test_features_end=None,
                                               test_targets_start=2, test_targets_end=None)
    config.ridge.alphas = [1.0, 100.0]
    config.ridge.n_inner_folds = 2
    config.ridge.chunk_length = 5
    config.stats.n_permutations = 20
    config.stats.block_length = 4
    return config.validate()


TINY_VOCAB = ("the fox and crow cheese tree sat on a branch with piece of in her beak sang dropped "
              "wolf lamb stream drink water said you are my who ate it ran away quickly slow tortoise hare").split()


def save_tiny_gpt2(folder: Path, vocab=TINY_VOCAB, seed: int = 0, n_layer: int = 2, n_embd: int = 32) -> Path:
    """A random GPT-2 (``n_layer`` blocks, width ``n_embd``) and a word-level tokenizer over ``vocab``
    (whitespace split, ``<bos>``/``<pad>``/``<unk>``), saved as a local HF folder. No download."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    if (folder / "config.json").is_file():
        return folder
    specials = ["<bos>", "<pad>", "<unk>"]
    table = {token: i for i, token in enumerate(specials + sorted(set(vocab)))}
    backend = Tokenizer(models.WordLevel(vocab=table, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", pad_token="<pad>",
                                        unk_token="<unk>")
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(table), n_positions=320, n_embd=n_embd, n_layer=n_layer, n_head=2,
                        bos_token_id=0, eos_token_id=0, pad_token_id=1)
    folder.mkdir(parents=True, exist_ok=True)
    GPT2LMHeadModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_word_vectors(path: Path, vectors: dict, binary: bool = False, header: bool = True) -> Path:
    """A word2vec file (text or binary, with the ``count dim`` header) or a GloVe text file (no header)."""
    words = list(vectors)
    dim = len(next(iter(vectors.values())))
    if binary:
        with open(path, "wb") as fh:
            fh.write(f"{len(words)} {dim}\n".encode())
            for word in words:
                fh.write(word.encode() + b" " + np.asarray(vectors[word], dtype="<f4").tobytes() + b"\n")
        return path
    lines = [f"{len(words)} {dim}"] if header else []
    lines += [word + " " + " ".join(repr(float(x)) for x in vectors[word]) for word in words]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
