"""Benchmark: the demo preset end to end, cold (empty caches) and warm (features cached).

Run: HF_HUB_OFFLINE=1 python bench/bench_demo.py [--keep DIR]
Budget on a 2-core CPU: cold <= 180 s, warm <= 15 s for the command
``python -m encoding_core demo`` (each run is that command in a fresh process, timed from start
to exit, so interpreter start-up and imports count). Prints a markdown table of both
runs (wall time and the pipeline's stage timings), then the per-layer summary of the warm
run with the median test correlation inside each planted region of the simulation and
outside all of them, which layer ranks best per region, and the demo against its ground
truth: of the vertices declared significant (BH-FDR), the share inside the planted regions
(precision) and the share of each region found (recall), with the false-positive rate of the
test among the vertices outside every region (which carry no signal). The machine's load
average is printed before and after (the machine may be shared).

    python bench/bench_demo.py [--keep DIR] [--warm-only]   # --warm-only: reuse DIR's cache
"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import os  # noqa: E402

from encoding_core.demo import DEMO_REGIONS, ground_truth_maps  # noqa: E402
from encoding_core.demo.evaluate import ground_truth_scores  # noqa: E402
from encoding_core.experiment.runstore import RunStore  # noqa: E402

COLD_BUDGET_S = 180.0
WARM_BUDGET_S = 15.0


def run_once(cache_dir: Path, results_dir: Path) -> tuple[float, object]:
    """Run ``python -m encoding_core demo`` (the command the budget is for) in a fresh process with
    these folders; return (wall seconds of the whole process: start-up, imports, the run, its
    printed summary; the loaded Run)."""
    command = [sys.executable, "-m", "encoding_core", "demo", "--quiet", "--cache-dir", str(cache_dir),
               "--results-dir", str(results_dir)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the demo command failed ({done.returncode}):\n{done.stderr[-3000:]}")
    runs = RunStore(results_dir).list()
    return wall, RunStore(results_dir).load(runs[0].run_id)


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


def ground_truth_rows(run) -> list[str]:
    """Markdown rows per layer: significant vertices, precision, recall per region, outside false positives."""
    truth = ground_truth_maps()
    outside = ~truth["mask_any"]
    keys = list(DEMO_REGIONS)
    rows = ["| layer | significant | precision | " + " | ".join(f"recall {k}" for k in keys)
            + " | outside: p <= 0.05 | outside: p <= 0.01 |", "|---" * (len(keys) + 5) + "|"]
    for layer in run.layers:
        arrays = run.arrays(layer)
        scores = ground_truth_scores(arrays["significant_mask"], truth)
        p = arrays["p_values"][outside]
        rows.append(f"| {layer} | {scores['n_significant']} | {scores['precision']:.3f} | "
                    + " | ".join(f"{scores['recall'][k]:.2f}" for k in keys)
                    + f" | {100 * (p <= 0.05).mean():.1f} % | {100 * (p <= 0.01).mean():.2f} % |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    parser.add_argument("--warm-only", action="store_true", help="skip the cold run (needs --keep with a cache)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as scratch:
        base = args.keep or Path(scratch)
        cache = base / "cache"
        cold_s, cold_run = (float("nan"), None) if args.warm_only else run_once(cache, base / "results_cold")
        warm_s, warm_run = run_once(cache, base / "results_warm")
        cold_run = cold_run or warm_run

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
        print()
        print(f"significance: {warm_run.metrics(warm_run.layers[0])['significance_test']}")
        print("\n".join(ground_truth_rows(warm_run)))
        rule = warm_run.summary.get("best_layer_rule") or {}
        print(f"\nbest layer {warm_run.summary.get('best_layer')} by {rule.get('label')}; whole-brain median r "
              f"prefers layer {warm_run.summary.get('best_layer_by_median_r')}")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        ok = (args.warm_only or cold_s <= COLD_BUDGET_S) and warm_s <= WARM_BUDGET_S
        print(f"\nbudget {'met' if ok else 'NOT met'}: cold {cold_s:.1f} s (<= {COLD_BUDGET_S:.0f}), "
              f"warm {warm_s:.1f} s (<= {WARM_BUDGET_S:.0f})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
