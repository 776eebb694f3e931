"""Scripts written for the reference library run on encoding_core with only the import root renamed.

Each script below has the shape of one of the reference's own scripts (``train_simple.py``,
``example.py``, the language-model and embeddings tutorials), written with ``from encoding.``
imports. The test renames the import root and points the paths at a synthetic LeBel-like
assembly saved as a reference pickle (TR times 15 longer than the responses, words with
times), then executes the script and checks its metrics against numbers computed here.
"""
from __future__ import annotations

import numpy as np
import pytest

from data_reference_pickle import reference_pickle_bytes
from tiny_experiment import TINY_VOCAB, save_tiny_gpt2, write_word_vectors

TR = 2.0

TRAIN_SIMPLE = '''
import logging

from encoding.assembly.assembly_loader import load_assembly
from encoding.features.factory import FeatureExtractorFactory
from encoding.downsample.downsampling import Downsampler
from encoding.models.nested_cv import NestedCVModel
from encoding.trainer import AbstractTrainer

logging.basicConfig(level=logging.INFO)

assembly = load_assembly("/data/assembly_lebel_uts03.pkl")
extractor = FeatureExtractorFactory.create_extractor(
    modality="wordrate", model_name="wordrate", config={}, cache_dir="cache"
)
downsampler = Downsampler()
model = NestedCVModel(model_name="ridge_regression")
fir_delays = [1, 2, 3, 4]
trimming_config = {
    "train_features_start": 10, "train_features_end": -5,
    "train_targets_start": 0, "train_targets_end": None,
    "test_features_start": 50, "test_features_end": -5,
    "test_targets_start": 40, "test_targets_end": None,
}
downsample_config = {}
trainer = AbstractTrainer(
    assembly=assembly,
    feature_extractors=[extractor],
    downsampler=downsampler,
    model=model,
    fir_delays=fir_delays,
    trimming_config=trimming_config,
    use_train_test_split=True,
    logger_backend="wandb",
    wandb_project_name="lebel-wordrate",
    dataset_type="lebel",
    results_dir="results",
    downsample_config=downsample_config,
)
metrics = trainer.train()
logging.info("Median correlation: %s", metrics.get("median_score", float("nan")))
if "n_significant" in metrics:
    logging.info("Significant voxels: %d", metrics["n_significant"])
'''

EXAMPLE = '''
from encoding.assembly.assembly_loader import load_assembly
from encoding.features.factory import FeatureExtractorFactory
from encoding.downsample.downsampling import Downsampler
from encoding.models.nested_cv import NestedCVModel
from encoding.trainer import AbstractTrainer

assembly = load_assembly("/data/assembly_lebel_uts03.pkl")
extractors = []
for modality, model_name in zip(["language_model", "wordrate", "embeddings"], ["gpt2-small", "wordrate", "word2vec"]):
    if modality == "language_model":
        config = {"model_name": model_name, "layer_idx": 1, "last_token": False}
    elif modality == "wordrate":
        config = {}
    else:
        config = {"vector_path": "/data/word2vec.bin", "binary": True, "lowercase": True}
    extractors.append(FeatureExtractorFactory.create_extractor(modality, model_name, config, cache_dir="cache"))
trainer = AbstractTrainer(
    assembly=assembly, feature_extractors=extractors, downsampler=Downsampler(),
    model=NestedCVModel(model_name="ridge_regression"), fir_delays=list(range(1, 5)),
    trimming_config={"train_features_start": 10, "train_features_end": -5, "train_targets_start": 0,
                     "train_targets_end": None, "test_features_start": 50, "test_features_end": -5,
                     "test_targets_start": 40, "test_targets_end": None},
    use_train_test_split=True, logger_backend="tensorboard", wandb_project_name="lebel-simple",
    dataset_type="lebel", results_dir="results",
    downsample_config={"method": "lanczos", "window": 3, "cutoff_mult": 1.0},
)
metrics = trainer.train(folding_type="kfold", n_outer_folds=5, n_inner_folds=5, chunk_length=20,
                        singcutoff=1e-10, use_gpu=False, single_alpha=True, normalpha=True, use_corr=True,
                        normalize_features=False, normalize_targets=False)
print(metrics["median_score"], metrics["n_significant"])
'''

LM_TUTORIAL = '''
from encoding.assembly.assembly_loader import load_assembly
from encoding.features.factory import FeatureExtractorFactory
from encoding.downsample.downsampling import Downsampler
from encoding.models.nested_cv import NestedCVModel
from encoding.trainer import AbstractTrainer

assembly = load_assembly("/data/assembly_lebel_uts03.pkl")
extractor = FeatureExtractorFactory.create_extractor(
    modality="language_model",
    model_name="gpt2-small",
    config={"model_name": "gpt2-small", "layer_idx": 9, "last_token": True, "lookback": 256,
            "context_type": "fullcontext"},
    cache_dir="cache_language_model",
)
trainer = AbstractTrainer(
    assembly=assembly, feature_extractors=[extractor], downsampler=Downsampler(),
    model=NestedCVModel(model_name="ridge_regression"), fir_delays=[1, 2, 3, 4],
    trimming_config={"train_features_start": 10, "train_features_end": -5, "train_targets_start": 0,
                     "train_targets_end": None, "test_features_start": 50, "test_features_end": -5,
                     "test_targets_start": 40, "test_targets_end": None},
    use_train_test_split=True, logger_backend="wandb", wandb_project_name="lebel-language-model",
    dataset_type="lebel", results_dir="results", layer_idx=9, lookback=256,
)
metrics = trainer.train()
'''


def lebel_like_pickle(path, n_tr_times=(110, 110, 110, 120), n_voxels=10, seed=0, words_per_tr=3.0):
    """Reference-pickle assembly whose first voxels follow the word rate through delays 1-4."""
    rng = np.random.default_rng(seed)
    weights = np.array([0.5, 1.0, 0.8, 0.3])
    stories, rates = [], {}
    for i, n in enumerate(n_tr_times):
        tr_times = np.arange(n) * TR - 10.0 + TR / 2  # TR midpoints, 15 more than the responses
        rate = rng.poisson(words_per_tr, n)
        times = np.concatenate([t - TR / 2 + np.sort(rng.uniform(0, TR, k)) for t, k in zip(tr_times, rate)])
        words = [TINY_VOCAB[j] for j in rng.integers(0, len(TINY_VOCAB), len(times))]
        drive = sum(w * np.roll(rate - rate.mean(), d) for w, d in zip(weights, (1, 2, 3, 4)))
        brain = 0.5 * rng.standard_normal((n, n_voxels))
        brain[:, : n_voxels // 2] += drive[:, None]
        stories.append(dict(name=f"story{i}", brain_data=brain[10:-5].astype(np.float32), tr_times=tr_times,
                            data_times=times, words=words, stimuli=words, split_indices=[], seed=i,
                            n_voxels=n_voxels))
        rates[f"story{i}"] = rate
    path.write_bytes(reference_pickle_bytes(stories))
    return rates


def run_script(code, rewrites, namespace=None):
    for old, new in rewrites:
        assert code.count(old) >= 1, old
        code = code.replace(old, new)
    assert "from encoding." not in code
    namespace = namespace if namespace is not None else {}
    exec(compile(code, "reference_script.py", "exec"), namespace)
    return namespace


def test_train_simple_wordrate_runs_with_the_import_root_renamed(tmp_path, monkeypatch):
    from encoding_core.assembly.assembly_loader import load_assembly
    from encoding_core.experiment.runstore import RunStore

    rates = lebel_like_pickle(tmp_path / "assembly_lebel_uts03.pkl")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    namespace = run_script(TRAIN_SIMPLE, [("from encoding.", "from encoding_core."),
                                          ("/data/assembly_lebel_uts03.pkl", str(tmp_path / "assembly_lebel_uts03.pkl"))])
    metrics = namespace["metrics"]
    for key in ("median_score", "n_significant", "correlations", "significant_mask", "best_alphas", "p_values"):
        assert key in metrics, key
    assert metrics["n_test_trs"] == 120 - 55
    # the planted voxels are predicted from the word rate; the others are not
    r = np.asarray(metrics["correlations"])
    assert r[:5].min() > 0.5 and np.abs(r[5:]).max() < 0.4
    assert metrics["n_significant"] >= 5
    # the word rates the model saw are the counts of the pickle's word times per TR
    assembly = load_assembly(tmp_path / "assembly_lebel_uts03.pkl")
    for story, rate in rates.items():
        np.testing.assert_array_equal(assembly.get_word_rates()[assembly.stories.index(story)][:, 0], rate)
    run = RunStore(tmp_path / "results").load(metrics["run_id"])
    assert run.config.features.modality == "wordrate" and run.config.stats.n_permutations == 0
    assert len(list((tmp_path / "results" / "wandb").glob("offline-run-*/run-*.wandb"))) == 1


def test_example_py_several_extractors_and_fit_keywords(tmp_path, monkeypatch):
    from encoding_core.experiment.runstore import RunStore

    lebel_like_pickle(tmp_path / "assembly.pkl", n_tr_times=(70, 70, 80), words_per_tr=0.7)
    folder = save_tiny_gpt2(tmp_path / "gpt2", n_layer=10)  # the trainer's default layer_idx=9 exists
    vectors = {w: np.random.default_rng(len(w)).standard_normal(3) for w in TINY_VOCAB}
    write_word_vectors(tmp_path / "vectors.bin", vectors, binary=True)
    monkeypatch.chdir(tmp_path)
    namespace = run_script(EXAMPLE, [("from encoding.", "from encoding_core."),
                                     ("/data/assembly_lebel_uts03.pkl", str(tmp_path / "assembly.pkl")),
                                     ('["gpt2-small", "wordrate", "word2vec"]', f'[{str(folder)!r}, "wordrate", "word2vec"]'),
                                     ("/data/word2vec.bin", str(tmp_path / "vectors.bin"))])
    metrics = namespace["metrics"]
    trainer = namespace["trainer"]
    assert trainer.layer_idx == 9 and trainer.lookback == 256  # the reference's defaults
    # 32 (LM) + 1 (word rate) + 3 (vectors) columns, 4 delays
    assert trainer.weights.shape == (4 * 36, 10)
    best = np.asarray(metrics["best_alphas"])
    assert np.all(best == best[0])  # single_alpha
    run = RunStore(tmp_path / "results").load(metrics["run_id"])
    assert run.config.ridge.fold_type == "contiguous" and run.config.ridge.single_alpha
    assert run.layers == [9]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(metrics["logger_location"]).Reload()
    assert events.Scalars("median_correlation")[0].value == pytest.approx(metrics["median_score"], abs=1e-6)


def test_language_model_tutorial_runs(tmp_path, monkeypatch):
    lebel_like_pickle(tmp_path / "assembly.pkl", n_tr_times=(70, 70, 80))
    folder = save_tiny_gpt2(tmp_path / "gpt2", n_layer=10)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    namespace = run_script(LM_TUTORIAL, [("from encoding.", "from encoding_core."),
                                         ("/data/assembly_lebel_uts03.pkl", str(tmp_path / "assembly.pkl")),
                                         ('"gpt2-small"', repr(str(folder))),
                                         ('"lookback": 256', '"lookback": 16'),  # a shorter context: faster
                                         ("lookback=256", "lookback=16")])
    metrics = namespace["metrics"]
    assert np.isfinite(metrics["median_score"]) and metrics["correlations"].shape == (10,)
    assert namespace["trainer"].lookback == 16
    run = __import__("encoding_core.experiment.runstore", fromlist=["RunStore"]).RunStore(tmp_path / "results")
    recorded = run.load(metrics["run_id"]).config.features
    assert (recorded.modality, recorded.lookback, recorded.last_token) == ("language_model", 16, True)
    assert list((tmp_path / "cache_language_model" / "lm_features").iterdir())


def test_cv_mode_trainer_with_reference_cv_trimming_keys_and_story_selection(tmp_path):
    from encoding_core.assembly.assembly_loader import load_assembly
    from encoding_core.downsample.downsampling import Downsampler
    from encoding_core.experiment.runstore import RunStore
    from encoding_core.features.factory import FeatureExtractorFactory
    from encoding_core.models.nested_cv import NestedCVModel
    from encoding_core.trainer import AbstractTrainer

    lebel_like_pickle(tmp_path / "a.pkl")
    assembly = load_assembly(tmp_path / "a.pkl")
    extractor = FeatureExtractorFactory.create_extractor("wordrate", "wordrate", {})
    common = dict(assembly=assembly, feature_extractors=[extractor], downsampler=Downsampler(),
                  model=NestedCVModel("ridge_regression"), fir_delays=[1, 2, 3, 4],
                  trimming_config={"features_start": 10, "features_end": -5, "targets_start": 0, "targets_end": None},
                  logger_backend="local", results_dir=str(tmp_path / "results"))
    trainer = AbstractTrainer(**common, story_selection=["story0", "story1", "story2"])
    assert trainer.use_train_test_split is False  # the reference's default: full CV
    metrics = trainer.train(folding_type="group", n_outer_folds=3, n_inner_folds=2, use_gpu=False)
    assert metrics["n_outer_folds"] == 3 and metrics["n_pooled_trs"] == 3 * 95
    assert {"majority_significant_mask", "n_majority_significant", "percent_majority_significant"} <= set(metrics)
    assert np.asarray(metrics["correlations"])[:5].min() > 0.5
    run = RunStore(tmp_path / "results").load(metrics["run_id"])
    assert run.config.alignment.trimming.train_features_start == 10 and run.config.ridge.mode == "cv"
    single = AbstractTrainer(**common, story_selection=4)  # 1-based: the fourth story
    assert single.stories_to_process == ["story3"]
    metrics = single.train(folding_type="chunked", chunk_length=10, use_gpu=False)
    assert metrics["n_trs"] == 105
    with pytest.raises(Exception, match="Unknown trimming_config key"):
        AbstractTrainer(**{**common, "trimming_config": {"features_strat": 10}})
