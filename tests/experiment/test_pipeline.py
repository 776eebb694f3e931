"""run_experiment end to end on synthetic data with a planted signal (no speech model)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold

from encoding_core.common.errors import ConfigError, JobCancelled, TrimmingMismatchError
from encoding_core.experiment.pipeline import run_experiment
from encoding_core.experiment.runstore import RunStore

from pipeline_synthetic import WINDOW_OFFSETS, make_planted, planted_config


class CountingCancel:
    """Becomes set after ``after`` calls of is_set()."""

    def __init__(self, after: int) -> None:
        self.after, self.calls = after, 0

    def is_set(self) -> bool:
        self.calls += 1
        return self.calls > self.after


def _reference_design(planted, layer, story, start, end, delays=(1, 2, 3, 4)):
    """Independent re-implementation: rect mean of the 4 windows per TR, loop delays, trim, scipy z-score."""
    feats = planted.features[story.name]
    per_tr = feats.layer(layer).reshape(story.n_trs, len(WINDOW_OFFSETS), -1).mean(axis=1)
    delayed = []
    for d in delays:
        shifted = np.zeros_like(per_tr)
        shifted[d:] = per_tr[:-d]
        delayed.append(shifted)
    X = np.hstack(delayed)[start:end]
    return np.nan_to_num(scipy.stats.zscore(X, axis=0))


def _reference_targets(story, start, end):
    return np.nan_to_num(scipy.stats.zscore(story.brain_data[start:end].astype(np.float64), axis=0))


def test_planted_signal_is_recovered_in_the_right_layer(tmp_path):
    planted = make_planted()
    config = planted_config(tmp_path)
    stages = []
    run_id = run_experiment(config, assembly=planted.assembly, feature_source=planted.source,
                            progress=lambda stage, done, total, message="": stages.append((stage, done, total)))
    run = RunStore(config.results_dir).load(run_id)
    assert run.layers == [0, 1, 2]
    assert run.summary["best_layer"] == 1
    signal, noise = slice(0, planted.n_signal), slice(planted.n_signal, None)
    r1 = run.arrays(1)["correlations"]
    assert np.median(r1[signal]) > 0.6
    assert abs(np.median(run.arrays(0)["correlations"])) < 0.2
    best = run.best_layer_per_voxel()
    assert np.mean(best[signal] == 1) >= 0.9
    mask = run.arrays(1)["significant_mask"]
    assert mask[signal].mean() >= 0.9 and mask[noise].mean() <= 0.2
    metrics = run.metrics(1)
    for key in ("median_score", "mean_score", "std_score", "min_score", "max_score", "n_significant",
                "percent_significant", "best_alpha_median"):
        assert key in metrics
    assert metrics["n_significant"] == int(mask.sum())
    assert metrics["median_score"] == pytest.approx(float(np.median(r1)), abs=1e-6)
    assert run.summary["layers"]["1"]["median_r"] == pytest.approx(metrics["median_score"])
    assert set(run.timings) >= {"features", "alignment", "fit", "stats", "save", "total"}
    seen = {s for s, _, _ in stages}
    assert {"features", "alignment", "fit", "stats", "save"} <= seen
    assert ("fit", 3, 3) in stages
    assert run.simulated and run.subject == "synthetic"
    assert run.meta["test_story"] == "story3"


def test_train_test_matches_an_independent_sklearn_computation(tmp_path):
    planted = make_planted(seed=3)
    # one alpha, no scaling: the reference penalty alpha**2 equals sklearn's Ridge(alpha=alpha**2)
    config = planted_config(tmp_path, alphas=[3.0], normalpha=False)
    config.layers = [1]
    config.stats.n_permutations = 0
    config.stats.test, config.stats.alternative = "parametric_iid", "two-sided"
    run = RunStore(config.results_dir).load(run_experiment(config, assembly=planted.assembly,
                                                           feature_source=planted.source))
    stories = planted.assembly.stories_list
    X_train = np.vstack([_reference_design(planted, 1, s, 5, -2) for s in stories[:-1]])
    Y_train = np.vstack([_reference_targets(s, 5, -2) for s in stories[:-1]])
    X_test, Y_test = _reference_design(planted, 1, stories[-1], 5, None), _reference_targets(stories[-1], 5, None)
    predicted = Ridge(alpha=9.0, fit_intercept=False).fit(X_train, Y_train).predict(X_test)
    expected = np.array([scipy.stats.pearsonr(Y_test[:, v], predicted[:, v])[0] for v in range(Y_test.shape[1])])
    arrays = run.arrays(1)
    np.testing.assert_allclose(arrays["correlations"], expected, atol=2e-4)
    r2 = 1 - ((Y_test - predicted) ** 2).sum(0) / ((Y_test - Y_test.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(arrays["r2"], r2, atol=5e-4)
    # the run's test (textbook t-test, two-sided, as scipy's pearsonr), BH-FDR on its p-values
    assert run.metrics(1)["significance"]["test"] == "parametric_iid"
    assert run.metrics(1)["significance_test"].startswith("t-test assuming independent TRs (")
    assert run.metrics(1)["significance_test"].endswith("), two-sided")
    p_expected = np.array([scipy.stats.pearsonr(Y_test[:, v], predicted[:, v])[1] for v in range(Y_test.shape[1])])
    np.testing.assert_allclose(arrays["p_values"], p_expected, rtol=1e-3, atol=1e-8)
    np.testing.assert_allclose(arrays["corrected_p_values"],
                               scipy.stats.false_discovery_control(arrays["p_values"]), rtol=1e-6)
    np.testing.assert_array_equal(arrays["significant_mask"], arrays["corrected_p_values"] <= 0.05)
    assert np.all(arrays["best_alphas"] == 3.0)


def test_cv_mode_matches_contiguous_kfold_reference(tmp_path):
    planted = make_planted(n_stories=3, seed=5)
    config = planted_config(tmp_path, alphas=[2.0], normalpha=False, mode="cv", n_outer_folds=3,
                            fold_type="contiguous", outer_fold_type="contiguous")
    config.layers = [1]
    run = RunStore(config.results_dir).load(run_experiment(config, assembly=planted.assembly,
                                                           feature_source=planted.source))
    X = np.vstack([_reference_design(planted, 1, s, 5, -2) for s in planted.assembly.stories_list])
    Y = np.vstack([_reference_targets(s, 5, -2) for s in planted.assembly.stories_list])
    fold_r, pooled = [], np.zeros_like(Y)
    for train, test in KFold(n_splits=3).split(X):
        predicted = Ridge(alpha=4.0, fit_intercept=False).fit(X[train], Y[train]).predict(X[test])
        pooled[test] = predicted
        fold_r.append([np.corrcoef(Y[test][:, v], predicted[:, v])[0, 1] for v in range(Y.shape[1])])
    arrays = run.arrays(1)
    np.testing.assert_allclose(arrays["fold_correlations"], np.array(fold_r), atol=2e-4)
    np.testing.assert_allclose(arrays["fold_mean_correlations"], np.mean(fold_r, axis=0), atol=2e-4)
    # the statistics (and the map) use the pooled held-out predictions of every TR
    np.testing.assert_allclose(arrays["correlations"],
                               [scipy.stats.pearsonr(Y[:, v], pooled[:, v])[0] for v in range(Y.shape[1])], atol=2e-4)
    assert arrays["majority_significant_mask"].dtype == bool
    assert arrays["majority_significant_mask"][: planted.n_signal].mean() >= 0.9
    metrics = run.metrics(1)
    assert metrics["mode"] == "cv" and metrics["n_outer_folds"] == 3 and metrics["outer_fold_type"] == "contiguous"
    # 3 equal stories, 3 contiguous folds: the folds coincide with the stories, 3 segments
    assert metrics["significance"]["n_stories"] == 3
    assert metrics["n_majority_significant"] == int(arrays["majority_significant_mask"].sum())


def test_noise_ceiling_from_test_repeats(tmp_path):
    planted = make_planted(repeats=4, seed=7)
    config = planted_config(tmp_path)
    config.layers = [1]
    run = RunStore(config.results_dir).load(run_experiment(config, assembly=planted.assembly,
                                                           feature_source=planted.source))
    arrays = run.arrays(1)
    ceiling, r = arrays["noise_ceiling"], arrays["correlations"]
    signal = slice(0, planted.n_signal)
    assert np.all(np.isfinite(ceiling[signal])) and np.median(ceiling[signal]) > 0.5
    ok = np.isfinite(ceiling) & (ceiling > 0)
    np.testing.assert_allclose(arrays["normalized_correlations"][ok][:5] * ceiling[ok][:5], r[ok][:5], rtol=1e-4)
    assert np.isfinite(run.summary["layers"]["1"]["median_normalized_r"])
    assert run.metrics(1)["noise_ceiling_target"] == "repeat_mean"  # the planted test data is the repeat mean


def test_trimming_mismatch_raises_before_any_fit(tmp_path, monkeypatch):
    import encoding_core.models.ridge as ridge

    planted = make_planted()
    config = planted_config(tmp_path)
    config.alignment.trimming.train_features_start = 7  # two rows shorter than the targets

    def no_fit(*args, **kwargs):
        raise AssertionError("ridge must not run when trimming does not line up")

    monkeypatch.setattr(ridge, "ridge_nested_cv", no_fit)
    with pytest.raises(TrimmingMismatchError, match="story0") as info:
        run_experiment(config, assembly=planted.assembly, feature_source=planted.source)
    assert "train_features_start" in str(info.value)
    assert RunStore(config.results_dir).list() == []


def test_unknown_layer_and_bad_test_story_are_config_errors(tmp_path):
    planted = make_planted()
    config = planted_config(tmp_path)
    config.layers = [7]
    with pytest.raises(ConfigError, match="layers \\[7\\]"):
        run_experiment(config, assembly=planted.assembly, feature_source=planted.source)
    config.layers = [0]
    config.assembly.test_story = "nope"
    with pytest.raises(ConfigError, match="nope"):
        run_experiment(config, assembly=planted.assembly, feature_source=planted.source)


def test_cancel_between_layers_marks_the_run_cancelled(tmp_path):
    planted = make_planted()
    config = planted_config(tmp_path)
    cancel = CountingCancel(after=len(planted.assembly.stories) + 2)
    with pytest.raises(JobCancelled):
        run_experiment(config, assembly=planted.assembly, feature_source=planted.source, cancel=cancel)
    infos = RunStore(config.results_dir).list()
    assert [i.status for i in infos] == ["cancelled"]


def test_too_short_test_story_for_the_permutation_blocks_fails_before_features(tmp_path):
    planted = make_planted()
    config = planted_config(tmp_path)
    config.stats.test = "block_permutation"
    config.stats.block_length = 25  # the test story keeps 75 TRs: 3 whole blocks, 6 orders, p >= 1/6
    calls = []

    def source(story, progress=None, cancel=None):
        calls.append(story.name)
        return planted.features[story.name]

    with pytest.raises(ConfigError, match="stats.block_length = 25 TRs leave at most 3 blocks"):
        run_experiment(config, assembly=planted.assembly, feature_source=source)
    assert calls == []
    config.stats.block_length = None  # chosen from the data, at least 20 s = 10 TRs: 7 blocks, fine
    config.stats.min_block_s = 60.0  # at least 30 TRs: 2 blocks
    with pytest.raises(ConfigError, match="min_block_s = 60 s"):
        run_experiment(config, assembly=planted.assembly, feature_source=source)
    assert calls == []


def test_missing_audio_is_reported_for_every_story_before_features(tmp_path):
    from encoding_core.common.errors import AudioError
    from tiny_experiment import write_story_audio

    planted = make_planted()
    (tmp_path / "audio").mkdir()
    write_story_audio(tmp_path / "audio" / "story0.wav", 160.0, seed=0)
    config = planted_config(tmp_path)
    config.assembly.audio_dir = str(tmp_path / "audio")
    calls = []

    def source(story, progress=None, cancel=None):
        calls.append(story.name)
        return planted.features[story.name]

    with pytest.raises(AudioError) as info:
        run_experiment(config, assembly=planted.assembly, feature_source=source)
    message = str(info.value)
    assert all(name in message for name in ("story1", "story2", "story3")) and "story0" not in message
    assert "audio_dir" in message and calls == []


def test_audio_overrides_apply_without_an_audio_folder(tmp_path):
    """Per-story audio files given as overrides (no audio_dir) are used, and only those."""
    from encoding_core.common.errors import AudioError
    from tiny_experiment import write_story_audio

    planted = make_planted()
    for story in planted.assembly.stories_list:
        story.audio_path = None
    override = tmp_path / "first.wav"
    write_story_audio(override, 160.0, seed=0)
    config = planted_config(tmp_path)
    config.assembly.audio_dir = ""
    config.assembly.audio_overrides = {"story0": str(override)}

    with pytest.raises(AudioError) as info:
        run_experiment(config, assembly=planted.assembly, feature_source=lambda *a, **k: None)
    message = str(info.value)
    assert "story0" not in message and all(name in message for name in ("story1", "story2", "story3"))
    assert planted.assembly.story("story0").audio_path == str(override)


@pytest.mark.parametrize("stored,expected_target", [
    ("mean", "repeat_mean"), ("zscored_mean", "repeat_mean"), ("scaled_mean", "repeat_mean"),
    ("single", "single_repeat"), ("noisy_mean", "single_repeat"),
])
def test_averaged_target_detected_whatever_the_zscoring(tmp_path, stored, expected_target):
    """The stored test response is "the repeat mean" when it correlates > 0.999 (median voxel) with
    it, z-scored or not; a single repeat, or the mean plus noise, is not."""
    from encoding_core.experiment.pipeline import prepare_targets

    planted = make_planted(repeats=4, seed=3)
    story = planted.assembly.story(planted.assembly.effective_test_story())
    mean = story.repeats.mean(axis=0)
    gen = np.random.default_rng(0)
    story.brain_data = {
        "mean": mean, "zscored_mean": (mean - mean.mean(axis=0)) / mean.std(axis=0),
        "scaled_mean": 40.0 * mean + 1000.0, "single": story.repeats[0],
        "noisy_mean": mean + 0.2 * mean.std(axis=0) * gen.standard_normal(mean.shape),
    }[stored].astype(np.float32)
    config = planted_config(tmp_path)
    targets = prepare_targets(planted.assembly, config)
    assert targets.test_is_repeat_mean == (expected_target == "repeat_mean"), targets.test_repeat_mean_r
    kept = slice(config.alignment.trimming.test_targets_start, config.alignment.trimming.test_targets_end)
    expected_r = np.median([scipy.stats.pearsonr(story.brain_data[kept, v], mean[kept, v])[0]
                            for v in range(mean.shape[1])])
    assert targets.test_repeat_mean_r == pytest.approx(expected_r, abs=1e-6)


def test_the_ceiling_target_and_its_rule_are_in_the_run_metrics(tmp_path):
    planted = make_planted(repeats=3, seed=4)
    story = planted.assembly.story(planted.assembly.effective_test_story())
    mean = story.repeats.mean(axis=0)
    story.brain_data = ((mean - mean.mean(axis=0)) / mean.std(axis=0)).astype(np.float32)  # re-z-scored
    config = planted_config(tmp_path)
    config.layers = [1]
    metrics = RunStore(config.results_dir).load(run_experiment(config, assembly=planted.assembly,
                                                               feature_source=planted.source)).metrics(1)
    assert metrics["noise_ceiling_target"] == "repeat_mean"
    assert metrics["test_repeat_mean_r"] > 0.999 and metrics["repeat_mean_min_r"] == 0.999


def test_lebel_folder_options_reach_the_loader_the_run_config_and_the_export(tmp_path):
    from encoding_core.config import ExperimentConfig
    from encoding_core.experiment.export import experiment_to_script
    from encoding_core.experiment.pipeline import load_experiment_assembly
    from tests.assembly.lebel_tree import build_lebel_tree

    root = tmp_path / "ds003020"
    built = build_lebel_tree(root, stories=("sweetaspie", "againstthewind"))
    (root / "derivative" / "TextGrids" / "againstthewind.TextGrid").unlink()
    config = ExperimentConfig()
    config.assembly.path, config.assembly.subject = str(root), "UTS01"
    assert (config.assembly.tr_time_convention, config.assembly.skip_missing) == ("midpoint", False)
    with pytest.raises(ConfigError, match="tr_time_convention must be one of"):
        ExperimentConfig.from_toml(config.to_toml().replace('tr_time_convention = "midpoint"',
                                                            'tr_time_convention = "start"'))
    config.assembly.tr_time_convention, config.assembly.skip_missing = "onset", True
    toml = config.to_toml()
    assert 'tr_time_convention = "onset"' in toml and "skip_missing = true" in toml
    assembly = load_experiment_assembly(ExperimentConfig.from_toml(toml))
    assert assembly.stories == ["sweetaspie"] and assembly.provenance["tr_time_convention"] == "onset"
    assert "againstthewind" in assembly.provenance["skipped_stories"]
    assert assembly.story("sweetaspie").tr_times[:2].tolist() == [-10.0, -8.0]
    assert "tr_time_convention='onset', skip_missing=True" in experiment_to_script(config)
    old = toml.replace('tr_time_convention = "onset"\n', "").replace("skip_missing = true\n", "")
    assert ExperimentConfig.from_toml(old).assembly.tr_time_convention == "midpoint"  # older TOML files load
    assert built["sweetaspie"].run_trs == 177


def test_zscoring_never_uses_held_out_statistics(tmp_path):
    """Changing the held-out story (train/test) or any one story (cv) changes no other story's values."""
    import copy

    from encoding_core.experiment.pipeline import prepare_features, prepare_targets

    planted = make_planted(seed=11)
    for mode in ("train_test", "cv"):
        config = planted_config(tmp_path, mode=mode)
        changed_name = planted.assembly.stories[-1]
        other = copy.deepcopy(planted.assembly)
        story = other.story(changed_name)
        story.brain_data = (story.brain_data * 5.0 + 3.0 + np.random.default_rng(1).standard_normal(
            story.brain_data.shape)).astype(np.float32)
        features = dict(planted.features)
        f = planted.features[changed_name]
        features[changed_name] = type(f)(f.times, [layer * 4.0 - 2.0 for layer in f.layers])
        before_y, after_y = prepare_targets(planted.assembly, config), prepare_targets(other, config)
        before_x = prepare_features(planted.features, planted.assembly, config, 1)
        after_x = prepare_features(features, other, config, 1)
        kept = [n for n in planted.assembly.stories if n != changed_name]
        for name in kept:  # bit-identical: no statistic of the changed story reached them
            np.testing.assert_array_equal(before_y.train[name], after_y.train[name])
            np.testing.assert_array_equal(before_x.train[name], after_x.train[name])
        # the changed story is z-scored with its own mean and standard deviation (scipy, per column)
        changed_y = after_y.test if mode == "train_test" else after_y.train[changed_name]
        part = "test" if mode == "train_test" else "train"
        t = config.alignment.trimming
        start, end = getattr(t, f"{part}_targets_start"), getattr(t, f"{part}_targets_end")
        np.testing.assert_allclose(changed_y, _reference_targets(story, start, end), atol=1e-5)


def test_normalised_r_is_nan_without_a_usable_ceiling_and_its_median_skips_those(tmp_path):
    planted = make_planted(repeats=4, seed=7)
    config = planted_config(tmp_path)
    config.layers = [1]
    run = RunStore(config.results_dir).load(run_experiment(config, assembly=planted.assembly,
                                                           feature_source=planted.source))
    arrays, metrics = run.arrays(1), run.metrics(1)
    unusable = ~(arrays["noise_ceiling"] >= 0.1)  # voxels without signal: ceiling ~0
    assert 3 <= unusable.sum() <= 30 - planted.n_signal
    assert np.isnan(arrays["normalized_correlations"][unusable]).all()
    usable = arrays["normalized_correlations"][~unusable]
    assert metrics["n_normalized_voxels"] == int((~unusable).sum())
    assert metrics["median_normalized_score"] == pytest.approx(float(np.median(usable)), rel=1e-5)
    assert run.summary["layers"]["1"]["n_normalized_voxels"] == metrics["n_normalized_voxels"]


def test_alpha_edge_warning_is_recorded_in_the_run(tmp_path):
    planted = make_planted(seed=2)
    config = planted_config(tmp_path, alphas=[1e5, 1e6])  # far too strong: signal voxels sit at the low end
    config.layers = [1]
    run = RunStore(config.results_dir).load(run_experiment(config, assembly=planted.assembly,
                                                           feature_source=planted.source))
    diagnostics = run.metrics(1)["alpha_diagnostics"]
    assert diagnostics["alphas"] == [1e5, 1e6] and sum(diagnostics["counts"]) == 30
    assert diagnostics["share_smallest"] > 0.05
    assert any("smallest alpha (100000)" in w and "Widen the alpha grid" in w for w in diagnostics["warnings"])
    assert len(diagnostics["mean_cv_score_per_alpha"]) == 2
    assert run.arrays(1)["cv_scores"].shape == (2, 30)
