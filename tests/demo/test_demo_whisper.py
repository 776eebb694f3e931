"""The demo preset end to end with the bundled Whisper (slow: the full feature extraction).

The simulation planted a sound-energy signal in auditory cortex and a word-rate signal in
the superior temporal sulcus; a real speech model's features must find them where they
were planted, the acoustic one best in an earlier layer than the word-rate one.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest

from encoding_core.demo import DEMO_REGIONS, demo_config, ground_truth_maps

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from encoding_core.experiment.pipeline import run_experiment
    from encoding_core.experiment.runstore import RunStore

    base = tmp_path_factory.mktemp("demo_preset")
    config = demo_config(results_dir=str(base / "results"), cache_dir=str(base / "cache"))
    run_id = run_experiment(config)
    return RunStore(config.results_dir).load(run_id)


@pytest.fixture(scope="module")
def region_medians(demo_run):
    """{region or "outside": {layer: median test correlation}}."""
    truth = ground_truth_maps()
    masks = {key: truth[f"mask_{key}"] for key in DEMO_REGIONS} | {"outside": ~truth["mask_any"]}
    medians = {key: {layer: float(np.median(demo_run.arrays(layer)["correlations"][mask]))
                     for layer in demo_run.layers} for key, mask in masks.items()}
    for key, per_layer in medians.items():
        logger.warning("demo preset, median r in %s per layer: %s", key,
                       {layer: round(value, 3) for layer, value in per_layer.items()})
    return medians


def test_preset_run_is_complete_and_marked_simulated(demo_run):
    assert demo_run.status.get("status") == "complete"
    assert demo_run.simulated and demo_run.subject == "demo"
    assert demo_run.layers == [0, 1, 2, 3]          # whisper-tiny.en has 4 encoder layers
    for layer in demo_run.layers:
        arrays = demo_run.arrays(layer)
        assert arrays["correlations"].shape == (20484,)
        assert np.isfinite(arrays["correlations"]).all()


def test_acoustic_region_is_found_by_the_speech_model(region_medians):
    auditory, outside = region_medians["auditory"], region_medians["outside"]
    best = max(auditory, key=auditory.get)
    assert auditory[best] > outside[best] + 0.25
    assert abs(outside[best]) < 0.05


def test_word_rate_region_is_found_in_a_deeper_layer(region_medians):
    auditory, sts, outside = region_medians["auditory"], region_medians["sts"], region_medians["outside"]
    best_sts = max(sts, key=sts.get)
    assert sts[best_sts] > outside[best_sts] + 0.15
    assert max(auditory, key=auditory.get) <= best_sts


def test_smallest_permutation_p_values_fall_in_planted_regions(demo_run, region_medians):
    """With one 46-TR test story the block permutation test has little power (BH-FDR over
    20484 vertices usually accepts none), but the vertices that reach the smallest possible
    p-value must be mostly planted ones (they are 1.7% of the surface)."""
    truth = ground_truth_maps()
    auditory = region_medians["auditory"]
    best = max(auditory, key=auditory.get)
    p = demo_run.arrays(best)["permutation_p_values"]
    smallest = p <= 1.5 / (demo_run.config.stats.n_permutations + 1)
    assert smallest.sum() >= 10
    assert (smallest & truth["mask_any"]).sum() >= 0.5 * smallest.sum()
