"""run_experiment runs every non-speech modality end to end from an ExperimentConfig (TOML-able)."""
from __future__ import annotations

import numpy as np
import pytest

from encoding_core.assembly import Assembly, Story
from encoding_core.assembly.assembly_loader import save_assembly
from encoding_core.config import ExperimentConfig, TrimmingConfig
from encoding_core.experiment.pipeline import run_experiment
from encoding_core.experiment.runstore import RunStore

from tiny_experiment import TINY_VOCAB, save_tiny_gpt2, write_word_vectors

TR = 2.0


def word_driven_assembly(path, n_stories=3, n_trs=60, n_voxels=8, seed=0):
    """Stories whose first voxels follow the word rate (delays 1-4); no audio at all."""
    rng = np.random.default_rng(seed)
    stories = []
    for i in range(n_stories):
        tr_times = np.arange(n_trs) * TR + TR / 2
        rate = rng.poisson(2.0, n_trs)
        onsets = np.concatenate([t - TR / 2 + np.sort(rng.uniform(0, TR, k)) for t, k in zip(tr_times, rate)])
        words = [TINY_VOCAB[j] for j in rng.integers(0, len(TINY_VOCAB), len(onsets))]
        drive = sum(w * np.roll(rate - rate.mean(), d) for w, d in zip((0.5, 1.0, 0.8, 0.3), (1, 2, 3, 4)))
        brain = 0.5 * rng.standard_normal((n_trs, n_voxels))
        brain[:, :4] += drive[:, None]
        stories.append(Story(name=f"story{i}", brain_data=brain, tr_times=tr_times, words=words,
                             word_onsets=onsets, word_offsets=onsets + 0.1))
    return save_assembly(Assembly("words", TR, stories, simulated=True), path)


def base_config(tmp_path, modality, **features):
    config = ExperimentConfig(name=f"{modality}-run", results_dir=str(tmp_path / "results"),
                              cache_dir=str(tmp_path / "cache"))
    config.assembly.path = str(word_driven_assembly(tmp_path / "words.h5"))
    config.features.modality = modality
    for key, value in features.items():
        setattr(config.features, key, value)
    config.alignment.downsample_method = "rect"
    config.alignment.trimming = TrimmingConfig(5, None, 5, None, 5, None, 5, None)
    config.ridge.n_inner_folds = 3
    config.ridge.chunk_length = 10
    config.stats.n_permutations = 20
    config.stats.block_length = 5
    return ExperimentConfig.from_toml(config.validate().to_toml())  # through TOML, as the CLI does


def test_wordrate_from_a_config(tmp_path):
    config = base_config(tmp_path, "wordrate")
    run = RunStore(config.results_dir).load(run_experiment(config))
    assert run.layers == [0] and run.config.features.modality == "wordrate"
    r = run.arrays(0)["correlations"]
    assert r[:4].min() > 0.5 and np.abs(r[4:]).max() < 0.5


def test_embeddings_and_custom_from_a_config(tmp_path):
    rng = np.random.default_rng(0)
    vectors = write_word_vectors(tmp_path / "v.w2v.txt", {w: rng.standard_normal(3) for w in TINY_VOCAB})
    config = base_config(tmp_path, "embeddings", vector_path=str(vectors), model_name="v")
    run = RunStore(config.results_dir).load(run_experiment(config))
    assert run.layers == [0] and run.arrays(0)["correlations"].shape == (8,)
    assert list((tmp_path / "cache" / "embedding_features").iterdir())

    folder = tmp_path / "custom"
    folder.mkdir()
    from encoding_core.assembly.assembly_loader import load_assembly

    for story in load_assembly(config.assembly.path).stories_list:  # per TR: the word rate as a user array
        counts = np.histogram(story.word_onsets, bins=np.append(story.tr_times - TR / 2, story.tr_times[-1] + TR / 2))[0]
        np.savez(folder / f"{story.name}.npz", features=counts[:, None].astype(float))
    config = base_config(tmp_path, "custom", custom_path=str(folder))
    run = RunStore(config.results_dir).load(run_experiment(config))
    assert run.arrays(0)["correlations"][:4].min() > 0.5


def test_language_model_from_a_config(tmp_path):
    folder = save_tiny_gpt2(tmp_path / "gpt2")
    config = base_config(tmp_path, "language_model", model_name=str(folder), lookback=8, device="cpu")
    config.layers = "all"
    run = RunStore(config.results_dir).load(run_experiment(config))
    assert run.layers == [0, 1]
    assert run.config.features.lookback == 8


def test_a_missing_vector_file_fails_before_any_work(tmp_path):
    from encoding_core.common.errors import ConfigError

    config = base_config(tmp_path, "wordrate")
    config.features.modality = "embeddings"
    config.features.vector_path = str(tmp_path / "nope.bin")
    with pytest.raises(ConfigError, match="does not exist"):
        run_experiment(config)


def test_an_exported_wordrate_script_reproduces_the_app_run(tmp_path, monkeypatch):
    from encoding_core.experiment.export import experiment_to_script

    config = base_config(tmp_path, "wordrate")
    config.stats.n_permutations = 0
    app_run = RunStore(config.results_dir).load(run_experiment(config))
    script = experiment_to_script(config)
    assert "modality='wordrate'" in script
    namespace: dict = {"__name__": "__main__"}
    exec(compile(script, "exported.py", "exec"), namespace)
    np.testing.assert_allclose(namespace["metrics"]["correlations"], app_run.arrays(0)["correlations"], atol=1e-5)
