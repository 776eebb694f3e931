"""Benchmark: demo-sized feature extraction, serial vs. a local Dask cluster, and scaling on paper.

Run: HF_HUB_OFFLINE=1 python bench/bench_distributed.py [--stories 6] [--workers 2]

Extracts every layer of the demo stories (assets/demo/*.flac) with the demo preset's feature
config (bundled whisper-tiny.en, 1.25 s stride, 8 s context, 30 s padded input) twice, each
into a fresh temporary cache:
  (a) serially in this process (torch uses all its default intra-op threads);
  (b) with encoding_core.experiment.distributed: a LocalCluster of N single-threaded worker processes,
      one extraction task per story. Cluster start and worker warm-up (import torch and
      transformers, load the model) are timed apart from the extraction itself.
Then, from the measured per-window cost, it prints the expected time of the tutorial-scale
job (84 stories x 6000 windows) on N GPU workers. Prints markdown tables.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from encoding_core.demo import demo_config  # noqa: E402
from encoding_core.experiment.distributed import connect, extract_story_task  # noqa: E402
from encoding_core.features import SpeechFeatureExtractor, window_end_times  # noqa: E402

PAPER_STORIES = 84
PAPER_WINDOWS_PER_STORY = 6000  # ~10 min story at the tutorial's 0.1 s stride
# Assumed GPU cost of ONE 30 s-padded whisper-tiny encoder window with all hidden states, fp16,
# batches of ~32 windows, T4/A10-class GPU: ~40 GFLOP per window (8 M encoder parameters x 1500
# frames x 2 + attention over 1500 frames x 4 layers) at ~4 TFLOP/s sustained -> ~0.01 s.
GPU_SECONDS_PER_WINDOW = 0.010
GPU_WORKERS = (1, 2, 4, 8, 16)


def warm_worker(feature_config: dict) -> float:
    """Runs on each worker: import torch/transformers and load the model; returns seconds."""
    started = time.perf_counter()
    SpeechFeatureExtractor(feature_config).load_model()
    return time.perf_counter() - started


def count_windows(paths: list[Path], features) -> int:
    import soundfile

    return int(sum(window_end_times(soundfile.info(str(p)).duration, features.chunk_size, features.context_size,
                                    features.include_early_windows).size for p in paths))


def run_serial(paths: list[Path], feature_config: dict, cache_dir: str) -> tuple[float, float]:
    """(model load seconds, extraction seconds) in this process."""
    started = time.perf_counter()
    extractor = SpeechFeatureExtractor(feature_config, cache_dir=cache_dir)
    extractor.load_model()
    loaded = time.perf_counter()
    for path in paths:
        extractor.extract_story(path)
    return loaded - started, time.perf_counter() - loaded


def run_cluster(paths: list[Path], feature_config: dict, cache_dir: str, n_workers: int) -> dict[str, float]:
    """Seconds to start the cluster, warm the workers, and extract (one task per story)."""
    t0 = time.perf_counter()
    with connect(None, n_workers=n_workers) as client:
        client.wait_for_workers(n_workers)
        t1 = time.perf_counter()
        client.run(warm_worker, feature_config)
        t2 = time.perf_counter()
        futures = [client.submit(extract_story_task, feature_config, str(p), cache_dir, pure=False) for p in paths]
        infos = client.gather(futures)
        t3 = time.perf_counter()
    workers = {info["worker"] for info in infos}
    return {"start": t1 - t0, "warm": t2 - t1, "extract": t3 - t2, "total": time.perf_counter() - t0,
            "workers_used": len(workers)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=6, help="how many demo stories (of 6)")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes")
    args = parser.parse_args()

    features = demo_config().features
    features.device = "cpu"
    feature_config = dataclasses.asdict(features)
    paths = sorted((ROOT / "assets" / "demo").glob("*.flac"))[: args.stories]
    n_windows = count_windows(paths, features)
    print(f"{len(paths)} demo stories, {n_windows} windows ({features.model_name}, stride {features.chunk_size} s, "
          f"context {features.context_size} s, {'context only' if features.context_only else '30 s padded'})\n")

    with tempfile.TemporaryDirectory() as serial_cache, tempfile.TemporaryDirectory() as cluster_cache:
        load_s, serial_s = run_serial(paths, feature_config, serial_cache)
        cluster = run_cluster(paths, feature_config, cluster_cache, args.workers)
    per_window = serial_s / n_windows
    print("| run | extraction s | windows/s | speed-up | other s |")
    print("|---|---:|---:|---:|---|")
    print(f"| serial, 1 process (all torch threads) | {serial_s:.1f} | {n_windows / serial_s:.2f} | 1.00 | "
          f"model load {load_s:.1f} |")
    print(f"| Dask LocalCluster, {args.workers} processes x 1 thread | {cluster['extract']:.1f} | "
          f"{n_windows / cluster['extract']:.2f} | {serial_s / cluster['extract']:.2f} | cluster start "
          f"{cluster['start']:.1f}, worker warm-up {cluster['warm']:.1f}, end to end {cluster['total']:.1f} "
          f"({cluster['workers_used']} workers used) |")
    print(f"\nmeasured CPU cost: {per_window:.3f} s per window (serial); "
          f"{cluster['extract'] * args.workers / n_windows:.3f} worker-seconds per window on the cluster")

    total_windows = PAPER_STORIES * PAPER_WINDOWS_PER_STORY
    story_s = PAPER_WINDOWS_PER_STORY * GPU_SECONDS_PER_WINDOW
    print(f"\nOn paper: {PAPER_STORIES} stories x {PAPER_WINDOWS_PER_STORY} windows = {total_windows} windows. "
          f"Assumed GPU cost {GPU_SECONDS_PER_WINDOW * 1000:.0f} ms/window (whisper-tiny, fp16, batched; "
          f"{per_window / GPU_SECONDS_PER_WINDOW:.0f}x faster than the CPU measured here), so one story "
          f"~{story_s / 60:.1f} min. Unit of work = one story, so the makespan is ceil(84 / N) stories.")
    print("\n| GPU workers | stories per worker | hours (GPU) | speed-up | hours if workers were this CPU |")
    print("|---:|---:|---:|---:|---:|")
    for n in GPU_WORKERS:
        per_worker = math.ceil(PAPER_STORIES / n)
        gpu_h = per_worker * story_s / 3600
        cpu_h = per_worker * PAPER_WINDOWS_PER_STORY * per_window / 3600
        speedup = PAPER_STORIES / per_worker
        print(f"| {n} | {per_worker} | {gpu_h:.2f} | {speedup:.1f} | {cpu_h:.1f} |")


if __name__ == "__main__":
    main()
