"""Model x layer comparison: one run per model over all its layers, recorded as a run group with its table."""
from __future__ import annotations

import numpy as np
import pytest

from encoding_core.cli import main
from encoding_core.common.errors import ConfigError, InputError
from encoding_core.experiment.comparison import comparison_table, load_group, run_model_layer_comparison
from encoding_core.experiment.runstore import RunStore

from tiny_experiment import make_tiny_experiment, save_tiny_whisper


def test_two_models_all_layers_one_group(tmp_path, capsys):
    config = make_tiny_experiment(tmp_path)
    config.stats.n_permutations = 0
    other = save_tiny_whisper(tmp_path / "model3", seed=1, layers=3)
    models = [config.features.model_name, str(other)]
    group = run_model_layer_comparison(config, models)
    record = load_group(config.results_dir, group)
    assert record["models"] == models and set(record["runs"]) == set(models)
    regions = {"first half": np.arange(12) < 6}
    rows = comparison_table(config.results_dir, group, regions)
    assert [(row["model"], row["layer"]) for row in rows] == [(models[0], 0), (models[0], 1),  # 2 encoder layers
                                                             (models[1], 0), (models[1], 1), (models[1], 2)]
    store = RunStore(config.results_dir)
    for row in rows:  # against the stored per-voxel r, recomputed here
        r = store.load(row["run_id"]).arrays(row["layer"])["correlations"].astype(np.float64)
        significant = store.load(row["run_id"]).arrays(row["layer"])["significant_mask"]
        assert row["median_r"] == pytest.approx(np.median(r))
        assert row["median_r_first half"] == pytest.approx(np.median(r[:6]))
        assert row["n_significant"] == int(significant.sum())
    with pytest.raises(InputError, match="not a run-group id"):
        load_group(config.results_dir, "../x")
    with pytest.raises(ConfigError, match="distinct model names"):
        run_model_layer_comparison(config, [models[0], models[0]])
    path = tmp_path / "compare.toml"
    config.save(path)
    assert main(["compare", str(path), "--models", ",".join(models), "--quiet"]) == 0
    assert "run group group-" in capsys.readouterr().out
