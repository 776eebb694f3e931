"""run_experiment runs the baseline feature spaces (audio envelope, log-mel) end to end from a TOML config."""
from __future__ import annotations

import numpy as np
import pytest

from encoding_core.config import ExperimentConfig
from encoding_core.experiment.pipeline import run_experiment
from encoding_core.experiment.runstore import RunStore

from tiny_experiment import make_tiny_experiment


@pytest.mark.parametrize("modality", ["envelope", "logmel"])
def test_audio_baseline_spaces_from_a_config(tmp_path, modality):
    config = make_tiny_experiment(tmp_path)
    config.features.modality = modality
    config.features.n_mels = 8
    config.stats.n_permutations = 0
    config = ExperimentConfig.from_toml(config.validate().to_toml())
    run = RunStore(config.results_dir).load(run_experiment(config))
    assert run.layers == [0] and run.config.features.modality == modality
    r = run.arrays(0)["correlations"]
    assert r.shape == (12,) and np.all(np.isfinite(r))
    assert any(p.name == "baseline_features" for p in (tmp_path / "cache").iterdir())
