"""[[feature_spaces]] experiments: TOML round trip, validation, the joint banded run with its variance
partition in the run store, the separate mode, the CLI and the exported script."""
from __future__ import annotations

import numpy as np
import pytest

from encoding_core.assembly import Assembly, Story
from encoding_core.assembly.assembly_loader import save_assembly
from encoding_core.cli import main
from encoding_core.common.errors import ConfigError
from encoding_core.config import ExperimentConfig, FeatureConfig, FeatureSpaceConfig, TrimmingConfig
from encoding_core.experiment.export import experiment_to_script
from encoding_core.experiment.pipeline import run_experiment
from encoding_core.experiment.runstore import RunStore

TR = 2.0
N_TRS = 90
KIND = np.array([0] * 5 + [1] * 5 + [2] * 5)  # voxels driven by space "acoustic" (0), "words" (1), neither (2)


def planted_folder(tmp_path):
    """Three stories; two custom spaces given one row per TR (acoustic: 4 columns, words: 3); voxels
    0-4 follow the acoustic space, 5-9 the words space (FIR delays 1-2), 10-14 noise only."""
    rng = np.random.default_rng(3)
    folders = {name: tmp_path / name for name in ("acoustic", "words")}
    for folder in folders.values():
        folder.mkdir()
    weights = {"acoustic": rng.standard_normal((4, 5)), "words": rng.standard_normal((3, 5))}
    stories = []
    for i in range(3):
        spaces = {"acoustic": rng.standard_normal((N_TRS, 4)), "words": rng.standard_normal((N_TRS, 3))}
        brain = 0.6 * rng.standard_normal((N_TRS, 15))
        for column, name in ((slice(0, 5), "acoustic"), (slice(5, 10), "words")):
            drive = spaces[name] @ weights[name]
            brain[1:, column] += 0.7 * drive[:-1]
            brain[2:, column] += 0.5 * drive[:-2]
        for name, folder in folders.items():
            np.savez(folder / f"story{i}.npz", features=spaces[name])
        stories.append(Story(name=f"story{i}", brain_data=brain, tr_times=np.arange(N_TRS) * TR + TR / 2))
    path = save_assembly(Assembly("planted", TR, stories, simulated=True), tmp_path / "planted.h5")
    return path, folders


def planted_config(tmp_path, mode="joint"):
    path, folders = planted_folder(tmp_path)
    config = ExperimentConfig(name="spaces", results_dir=str(tmp_path / "results"), cache_dir=str(tmp_path / "cache"))
    config.assembly.path = str(path)
    config.feature_spaces = [FeatureSpaceConfig(name, 0, FeatureConfig(modality="custom", custom_path=str(folder)))
                             for name, folder in folders.items()]
    config.banded.mode = mode
    config.alignment.fir_delays = [1, 2]
    config.alignment.trimming = TrimmingConfig(3, None, 3, None, 3, None, 3, None)
    config.ridge.alphas = [0.01, 0.1, 1.0, 10.0]
    config.ridge.n_inner_folds = 3
    config.ridge.chunk_length = 10
    config.stats.n_permutations = 0
    return ExperimentConfig.from_toml(config.validate().to_toml())  # through TOML, as the CLI does


def test_feature_spaces_toml_round_trip():
    config = ExperimentConfig(feature_spaces=[
        FeatureSpaceConfig("speech", 3), FeatureSpaceConfig("words", 0, FeatureConfig(modality="wordrate")),
        FeatureSpaceConfig("mel", 0, FeatureConfig(modality="logmel", n_mels=16))])
    config.banded.stacked = True
    text = config.validate().to_toml()
    assert text.count("[[feature_spaces]]") == 3 and "[feature_spaces.features]" in text
    again = ExperimentConfig.from_toml(text)
    assert again == config and again.feature_spaces[2].features.n_mels == 16
    minimal = ExperimentConfig.from_toml('[[feature_spaces]]\nname = "a"\nlayer = 1\n'
                                         '[[feature_spaces]]\nname = "b"\n[feature_spaces.features]\nmodality = "wordrate"\n')
    assert [s.name for s in minimal.feature_spaces] == ["a", "b"]
    assert minimal.feature_spaces[0].features.modality == "speech" and minimal.feature_spaces[1].layer == 0


@pytest.mark.parametrize("text, message", [
    ('[[feature_spaces]]\nname = "a"\n', "takes 2 to 4"),
    ('[[feature_spaces]]\nname = "a"\n[[feature_spaces]]\nname = "a"\n', "more than once"),
    ('[[feature_spaces]]\nname = "a b"\n[[feature_spaces]]\nname = "c"\n', r"feature_spaces\[0\].*name must start"),
    ('[[feature_spaces]]\nname = "a"\nlayer = -1\n[[feature_spaces]]\nname = "c"\n', "0-based layer"),
    ('[[feature_spaces]]\nname = "a"\nwidth = 3\n[[feature_spaces]]\nname = "c"\n', r"Unknown key.*feature_spaces\[0\]"),
    ('[[feature_spaces]]\nname = "a"\n[feature_spaces.features]\nmodality = "video"\n[[feature_spaces]]\nname = "c"\n',
     r"feature_spaces\[0\] \('a'\): features.modality must be one of"),
    ('feature_spaces = 3\n', "array of tables"),
    ('[banded]\nmode = "both"\n', "banded.mode must be one of"),
    ('[[feature_spaces]]\nname = "a"\n[[feature_spaces]]\nname = "c"\n[ridge]\nmode = "cv"\n', "train_test"),
])
def test_feature_spaces_validation_names_the_table(text, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig.from_toml(text)


def test_joint_run_stores_the_partition_maps(tmp_path, capsys):
    config = planted_config(tmp_path)
    run = RunStore(config.results_dir).load(run_experiment(config))
    assert run.layers == [0] and run.simulated
    maps, metrics = run.arrays(0), run.metrics(0)
    for name in ("unique_acoustic", "unique_words", "shared", "joint_r2", "split_r2_acoustic", "gamma_words"):
        assert maps[name].shape == (15,)
    # joint = unique A + unique B + shared, by construction (float32 storage)
    np.testing.assert_allclose(maps["unique_acoustic"] + maps["unique_words"] + maps["shared"], maps["joint_r2"],
                               atol=1e-5)
    np.testing.assert_allclose(maps["split_r2_acoustic"] + maps["split_r2_words"], maps["joint_r2"], atol=1e-4)
    # negative estimates are kept in the maps and counted in the metrics
    for name, count in metrics["n_negative"].items():
        assert count == int((maps[name] < 0).sum())
    assert metrics["feature_spaces"] == ["acoustic", "words"] and metrics["banded_mode"] == "joint"
    # the planted spaces: each space's unique variance is larger on its own voxels than anywhere else
    assert maps["unique_acoustic"][KIND == 0].min() > maps["unique_acoustic"][KIND != 0].max()
    assert maps["unique_words"][KIND == 1].min() > maps["unique_words"][KIND != 1].max()
    # the CLI prints the partition
    path = tmp_path / "spaces.toml"
    config.save(path)
    assert main(["train", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "unique_acoustic" in out and "negative voxels (kept)" in out and "SIMULATED" in out


def test_separate_mode_stores_one_layer_per_space(tmp_path):
    config = planted_config(tmp_path, mode="separate")
    run = RunStore(config.results_dir).load(run_experiment(config))
    assert run.layers == [0, 1]
    assert [run.metrics(i)["feature_space"] for i in (0, 1)] == ["acoustic", "words"]
    r = [run.arrays(i)["correlations"] for i in (0, 1)]
    assert r[0][KIND == 0].mean() > r[1][KIND == 0].mean() and r[1][KIND == 1].mean() > r[0][KIND == 1].mean()


def test_exported_script_carries_the_feature_spaces(tmp_path):
    config = planted_config(tmp_path)
    script = experiment_to_script(config)
    namespace: dict = {}
    exec(compile(script.split("config = ExperimentConfig")[0], "export", "exec"), namespace)  # up to the run
    assert ExperimentConfig.from_toml(namespace["CONFIG_TOML"]) == config
    assert "run_experiment(config)" in script
