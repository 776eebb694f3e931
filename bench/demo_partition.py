"""Does variance partitioning separate the demo's planted acoustic and word-rate regions? (SIMULATED data)

Runs the demo preset as a ``[[feature_spaces]]`` experiment: an acoustic space (log-mel, 32 bands)
and the word rate, joint banded ridge + variance partitioning, then compares the partition maps
with the planted truth (``demo.simulate.ground_truth_maps``):

- AUC of ``unique_acoustic`` for acoustic-driven vertices against word-rate-driven ones, and the
  other way round (scikit-learn ``roc_auc_score``);
- the share of each region's vertices where its own space's unique variance is the larger one.

    python bench/demo_partition.py [--acoustic logmel|envelope] [--results-dir DIR] [--cache-dir DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results-dir", default="")
    parser.add_argument("--cache-dir", default="")
    parser.add_argument("--acoustic", default="logmel", choices=("logmel", "envelope"),
                        help="the acoustic space: 32-band log-mel (128 columns with 4 delays) or the RMS envelope")
    args = parser.parse_args()
    from sklearn.metrics import roc_auc_score

    from encoding_core.config import FeatureConfig, FeatureSpaceConfig
    from encoding_core.demo import demo_config
    from encoding_core.demo.simulate import DEMO_REGIONS, ground_truth_maps
    from encoding_core.experiment.pipeline import run_experiment
    from encoding_core.experiment.runstore import RunStore

    work = Path(tempfile.mkdtemp(prefix="demo_partition_"))
    config = demo_config(results_dir=args.results_dir or str(work / "results"), cache_dir=args.cache_dir or str(work / "cache"))
    config.name = "demo-partition"
    config.feature_spaces = [FeatureSpaceConfig("acoustic", 0, FeatureConfig(modality=args.acoustic, n_mels=32)),
                             FeatureSpaceConfig("wordrate", 0, FeatureConfig(modality="wordrate"))]
    config.ridge.mode = "train_test"  # the partition is scored on the held-out story (the preset's last)
    config.stats.n_permutations = 0
    config.validate()
    started = time.perf_counter()
    run = RunStore(config.results_dir).load(run_experiment(config))
    seconds = time.perf_counter() - started
    maps, metrics = run.arrays(0), run.metrics(0)
    truth = ground_truth_maps()
    print(f"SIMULATED demo, joint banded ridge of acoustic ({args.acoustic}) + word rate: {seconds:.1f} s, "
          f"load average {os.getloadavg()[0]:.2f}; negative estimates (kept): {metrics['n_negative']}")
    driver_space = {"acoustic": "acoustic", "word_rate": "wordrate"}
    masks = {}
    for key, region in DEMO_REGIONS.items():
        if region.driver in driver_space:
            masks.setdefault(region.driver, np.zeros_like(truth[f"mask_{key}"]))
            masks[region.driver] |= truth[f"mask_{key}"]
    if set(masks) != set(driver_space):
        raise SystemExit(f"the demo has no planted region for {set(driver_space) - set(masks)}")
    own = {driver: maps[f"unique_{space}"] for driver, space in driver_space.items()}
    a, w = masks["acoustic"], masks["word_rate"]
    outside = ~truth["mask_any"]
    rows = [
        ("unique_acoustic: acoustic vs word-rate region", roc_auc_score(np.r_[np.ones(a.sum()), np.zeros(w.sum())],
                                                                        np.r_[own["acoustic"][a], own["acoustic"][w]])),
        ("unique_wordrate: word-rate vs acoustic region", roc_auc_score(np.r_[np.ones(w.sum()), np.zeros(a.sum())],
                                                                        np.r_[own["word_rate"][w], own["word_rate"][a]])),
        ("unique_acoustic: acoustic region vs outside all regions",
         roc_auc_score(np.r_[np.ones(a.sum()), np.zeros(outside.sum())], np.r_[own["acoustic"][a], own["acoustic"][outside]])),
        ("unique_wordrate: word-rate region vs outside all regions",
         roc_auc_score(np.r_[np.ones(w.sum()), np.zeros(outside.sum())], np.r_[own["word_rate"][w], own["word_rate"][outside]])),
    ]
    for label, auc in rows:
        print(f"AUC {label}: {auc:.3f}")
    for driver, mask in masks.items():
        other = "word_rate" if driver == "acoustic" else "acoustic"
        dominant = float(np.mean(own[driver][mask] > own[other][mask]))
        print(f"{driver} region ({int(mask.sum())} vertices): its own space's unique r² is the larger on "
              f"{100 * dominant:.1f}% of them; median unique r² own {np.median(own[driver][mask]):.3f}, "
              f"other {np.median(own[other][mask]):.3f}, shared {np.median(maps['shared'][mask]):.3f}")


if __name__ == "__main__":
    main()
