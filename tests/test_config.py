"""The experiment config's TOML form: partial tables, open trimming bounds, old files, statistics settings."""
from __future__ import annotations

import pytest

from encoding_core.common.errors import ConfigError
from encoding_core.config import ExperimentConfig, RidgeConfig, StatsConfig, TrimmingConfig


def test_a_partial_trimming_table_keeps_the_defaults_of_the_keys_it_omits():
    config = ExperimentConfig.from_toml("[alignment.trimming]\ntrain_features_start = 3\ntest_targets_start = 7\n")
    expected = TrimmingConfig()  # the LeBel defaults
    expected.train_features_start, expected.test_targets_start = 3, 7
    assert config.alignment.trimming == expected


def test_open_bounds_are_written_as_none_and_round_trip():
    config = ExperimentConfig()
    config.alignment.trimming = TrimmingConfig(2, None, None, -1, 50, None, 40, None)
    text = config.to_toml()
    assert 'train_features_end = "none"' in text and 'train_targets_start = "none"' in text
    assert ExperimentConfig.from_toml(text).alignment.trimming == config.alignment.trimming
    # a hand-written file: "none" (any case) opens a bound whose default is closed
    loaded = ExperimentConfig.from_toml('[alignment.trimming]\ntest_features_end = "None"\n')
    assert loaded.alignment.trimming.test_features_end is None
    assert loaded.alignment.trimming.train_features_end == -5
    with pytest.raises(ConfigError, match="test_features_end must be a whole number of TRs or \"none\""):
        ExperimentConfig.from_toml('[alignment.trimming]\ntest_features_end = "open"\n')
    with pytest.raises(ConfigError, match="whole number of TRs"):
        ExperimentConfig.from_toml('[alignment.trimming]\ntest_features_end = 1.5\n')


def test_statistics_defaults_and_an_old_file():
    stats = ExperimentConfig().stats
    assert (stats.test, stats.alternative, stats.block_length) == ("effective_dof", "greater", None)
    # written before the calibrated tests: a fixed block length, no test named
    old = ExperimentConfig.from_toml("[stats]\nn_permutations = 0\nblock_length = 10\nfdr_q = 0.05\nseed = 0\n")
    assert old.stats == StatsConfig(n_permutations=0, block_length=10)
    assert old.stats.test == "effective_dof"  # the new default; block_length applies to block permutation only
    assert ExperimentConfig.from_toml(old.to_toml()) == old
    data_chosen = ExperimentConfig.from_toml('[stats]\ntest = "block_permutation"\n')
    assert data_chosen.stats.block_length is None and "block_length" not in data_chosen.to_toml()


@pytest.mark.parametrize("table, message", [
    ('[stats]\ntest = "bootstrap"\n', "stats.test must be one of"),
    ('[stats]\nalternative = "less"\n', "stats.alternative must be one of"),
    ('[stats]\ntest = "block_permutation"\nn_permutations = 0\n', "needs stats.n_permutations >= 1"),
    ("[stats]\nblock_length = 0\n", "stats.block_length must be a whole number"),
    ('[stats]\nfallback_statistic = "mean"\n', "stats.fallback_statistic"),
    ('[ridge]\nouter_fold_type = "chunked"\n', "ridge.outer_fold_type must be one of"),
])
def test_bad_statistics_settings_are_refused_with_the_key(table, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig.from_toml(table)


def test_cv_mode_leaves_one_story_out_by_default():
    assert RidgeConfig().outer_fold_type == "story"
    assert ExperimentConfig.from_toml('[ridge]\nmode = "cv"\n').ridge.outer_fold_type == "story"
