"""The seed tutorial's code runs on encoding_core (import root renamed).

The tutorial's code blocks are copied below verbatim; the test rewrites only what must
change to run offline on a tiny synthetic LeBel-like assembly (imports, paths, model,
and a coarser stride/context so the test stays fast), checking that every rewrite applied,
then executes the result. ``logger_backend="wandb"`` stays: wandb runs offline (an extra of
requirements-extras.txt) and its run folder is checked.
"""
from __future__ import annotations

import numpy as np
import pytest

from encoding_core.assembly import Assembly, Story
from encoding_core.assembly.assembly_loader import save_assembly
from encoding_core.experiment.runstore import RunStore

from tiny_experiment import write_story_audio

TUTORIAL_CODE = '''
from encoding.assembly.assembly_loader import load_assembly

# Load the pre-packaged LeBel assembly
assembly = load_assembly("assembly_lebel_uts03.pkl")

import os

# Set up audio paths for speech model
base_audio_path = "/path/to/your/audio/files"  # Replace with your audio path

for story_name in assembly.stories:
    # Assuming audio files are named like: story_name.wav
    audio_file_path = os.path.join(base_audio_path, f"{story_name}.wav")

    # Set the audio path for this story
    if hasattr(assembly, "story_data") and story_name in assembly.story_data:
        assembly.story_data[story_name].audio_path = audio_file_path
        print(f"Set audio path for {story_name}: {audio_file_path}")

from encoding.features.factory import FeatureExtractorFactory

extractor = FeatureExtractorFactory.create_extractor(
    modality="speech",
    model_name="openai/whisper-tiny",  # Can be changed to other models
    config={
        "model_name": "openai/whisper-tiny",
        "chunk_size": 0.1,  # seconds between chunk starts (stride)
        "context_size": 16.0,  # seconds of audio per window
        "layer": 3,  # Layer index to extract features from
        "pool": "last",  # Pooling method: 'last' or 'mean'
        "target_sample_rate": 16000,  # Target sample rate for audio
        "device": "cuda",  # Can be "cuda", "cpu"
    },
    cache_dir="cache_speech",
)

from encoding.downsample.downsampling import Downsampler
from encoding.models.nested_cv import NestedCVModel

downsampler = Downsampler()
model = NestedCVModel(model_name="ridge_regression")

# FIR delays for hemodynamic response modeling
fir_delays = [1, 2, 3, 4]

# Trimming configuration for LeBel dataset
trimming_config = {
    "train_features_start": 10,
    "train_features_end": -5,
    "train_targets_start": 0,
    "train_targets_end": None,
    "test_features_start": 50,
    "test_features_end": -5,
    "test_targets_start": 40,
    "test_targets_end": None,
}

downsample_config = {}

from encoding.trainer import AbstractTrainer

trainer = AbstractTrainer(
    assembly=assembly,
    feature_extractors=[extractor],
    downsampler=downsampler,
    model=model,
    fir_delays=fir_delays,
    trimming_config=trimming_config,
    use_train_test_split=True,
    logger_backend="wandb",
    wandb_project_name="lebel-speech-model",
    dataset_type="lebel",
    results_dir="results",
    layer_idx=3,  # Pass layer_idx to trainer
)

metrics = trainer.train()
print(f"Median correlation: {metrics.get('median_score', float('nan')):.4f}")
'''

TR = 2.0


def _lebel_like_assembly(root, n_trs=(60, 60, 80), n_voxels=16, seed=0):
    """LeBel convention: TR times arange(n) * 2 - 10 s, responses have n - 15 rows, audio per story."""
    rng = np.random.default_rng(seed)
    stories = []
    for i, n in enumerate(n_trs):
        name = f"story{i}"
        write_story_audio(root / "audio" / f"{name}.wav", (n - 5) * TR, seed + i)
        stories.append(Story(name=name, brain_data=rng.standard_normal((n - 15, n_voxels)).astype(np.float32),
                             tr_times=np.arange(n) * TR - 10.0))
    return save_assembly(Assembly(subject="UTS03", tr=TR, stories_list=stories, simulated=True),
                         root / "assembly_lebel_tiny.h5")


def _seed_model(folder):
    """A random 2-layer Whisper whose input is 4 s (200 encoder positions) instead of 30 s."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(0)
    config = WhisperConfig(d_model=64, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80,
                           vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                           max_source_positions=200, max_target_positions=32)
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80, chunk_length=4).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_seed_tutorial_runs_end_to_end(tmp_path, monkeypatch):
    (tmp_path / "audio").mkdir()
    assembly_path = _lebel_like_assembly(tmp_path)
    model_dir = _seed_model(tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the default: offline, no login
    rewrites = [
        ("from encoding.", "from encoding_core."),  # the import root, and nothing else
        ('"assembly_lebel_uts03.pkl"', repr(str(assembly_path))),
        ('"/path/to/your/audio/files"', repr(str(tmp_path / "audio"))),
        ('"openai/whisper-tiny"', repr(str(model_dir))),
        ('"chunk_size": 0.1', '"chunk_size": 2.0'),
        ('"context_size": 16.0', '"context_size": 4.0'),
        ('"layer": 3', '"layer": 1'),
        ("layer_idx=3", "layer_idx=1"),
    ]
    code = TUTORIAL_CODE
    for old, new in rewrites:
        assert code.count(old) >= 1, old
        code = code.replace(old, new)
    assert code.count("from encoding_core.") == 5
    assert "encoding." not in code.replace("encoding_core.", "")
    namespace: dict = {}
    exec(compile(code, "tutorial_speech.py", "exec"), namespace)

    metrics = namespace["metrics"]
    for key in ("median_score", "mean_score", "std_score", "min_score", "max_score", "correlations", "p_values",
                "corrected_p_values", "significant_mask", "n_significant", "percent_significant", "best_alphas"):
        assert key in metrics, key
    assert metrics["correlations"].shape == (16,)
    assert np.isfinite(metrics["median_score"])
    assert metrics["median_score"] == pytest.approx(float(np.median(metrics["correlations"])), abs=1e-6)
    run = RunStore(tmp_path / "results").load(metrics["run_id"])
    assert run.layers == [1] and run.meta["test_story"] == "story2"
    assert run.metrics(1)["n_test_trs"] == 80 - 55  # [50:-5] of 80 TR times == [40:] of 65 responses
    assert list((tmp_path / "cache_speech").iterdir())
    offline_runs = list((tmp_path / "results" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline_runs) == 1 and metrics["logger_location"] == str(offline_runs[0].parent)
