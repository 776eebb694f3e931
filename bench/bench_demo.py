"""Benchmark: the demo preset end to end, cold (empty caches) and warm (features cached).

Run: HF_HUB_OFFLINE=1 python bench/bench_demo.py [--keep DIR]
Budget on a 2-core CPU: cold <= 180 s, warm <= 15 s. Prints a markdown table of both
runs (wall time and the pipeline's stage timings), then the per-layer summary of the warm
run with the median test correlation inside each planted region of the simulation and
outside all of them, and which layer ranks best per region.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from encoding_core.demo import DEMO_REGIONS, demo_config, ground_truth_maps  # noqa: E402
from encoding_core.experiment.pipeline import run_experiment  # noqa: E402
from encoding_core.experiment.runstore import RunStore  # noqa: E402

COLD_BUDGET_S = 180.0
WARM_BUDGET_S = 15.0


def run_once(cache_dir: Path, results_dir: Path) -> tuple[float, object]:
    """Run the preset with these folders; return (wall seconds, the loaded Run)."""
    config = demo_config(results_dir=str(results_dir), cache_dir=str(cache_dir))
    start = time.perf_counter()
    run_id = run_experiment(config)
    wall = time.perf_counter() - start
    return wall, RunStore(results_dir).load(run_id)


def region_table(run) -> tuple[list[str], dict[str, int]]:
    """Markdown rows: per layer, median r overall, per planted region and outside."""
    truth = ground_truth_maps()
    outside = ~truth["mask_any"]
    keys = list(DEMO_REGIONS)
    rows = ["| layer | median r (all) | n significant | " + " | ".join(keys) + " | outside |",
            "|---" * (len(keys) + 4) + "|"]
    medians: dict[str, dict[int, float]] = {k: {} for k in keys}
    for layer in run.layers:
        r = run.arrays(layer)["correlations"]
        metrics = run.metrics(layer)
        cells = []
        for key in keys:
            medians[key][layer] = float(np.median(r[truth[f"mask_{key}"]]))
            cells.append(f"{medians[key][layer]:.3f}")
        rows.append(f"| {layer} | {metrics['median_score']:.3f} | {metrics['n_significant']} | "
                    + " | ".join(cells) + f" | {np.median(r[outside]):.3f} |")
    best = {key: max(per_layer, key=per_layer.get) for key, per_layer in medians.items()}
    return rows, best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        base = args.keep or Path(scratch)
        cache = base / "cache"
        cold_s, cold_run = run_once(cache, base / "results_cold")
        warm_s, warm_run = run_once(cache, base / "results_warm")

        stages = sorted(set(cold_run.timings) | set(warm_run.timings))
        print("| run | wall (s) | budget (s) | " + " | ".join(stages) + " |")
        print("|---" * (len(stages) + 3) + "|")
        for label, wall, budget, run in (("cold", cold_s, COLD_BUDGET_S, cold_run),
                                         ("warm", warm_s, WARM_BUDGET_S, warm_run)):
            cells = " | ".join(f"{run.timings.get(s, float('nan')):.1f}" for s in stages)
            print(f"| {label} | {wall:.1f} | {budget:.0f} | {cells} |")
        print()
        rows, best = region_table(warm_run)
        print("\n".join(rows))
        print()
        for key, layer in best.items():
            print(f"best layer for {DEMO_REGIONS[key].label} ({DEMO_REGIONS[key].driver}): {layer}")
        ok = cold_s <= COLD_BUDGET_S and warm_s <= WARM_BUDGET_S
        print(f"\nbudget {'met' if ok else 'NOT met'}: cold {cold_s:.1f} s (<= {COLD_BUDGET_S:.0f}), "
              f"warm {warm_s:.1f} s (<= {WARM_BUDGET_S:.0f})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
