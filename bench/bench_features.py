"""Benchmark: windows/s of the bundled Whisper tiny.en, reference-style loop vs ours.

Run: HF_HUB_OFFLINE=1 python bench/bench_features.py [--windows 24] [--context 16] [--rounds 3]
Prints a markdown table. All variants use the same model object (sdpa attention).
(a) reference loop: WhisperFeatureExtractor + encoder per window, batch 1, padded to 30 s;
(b) ours fp32 (default, batch size automatic); (c) ours bf16 autocast; (d) ours context_only (approximate).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from encoding_core.config import FeatureConfig  # noqa: E402
from encoding_core.features.models import load_model  # noqa: E402
from encoding_core.features.speech import compute_layers, window_bounds  # noqa: E402


def reference_loop(audio: np.ndarray, loaded, end_times: np.ndarray, context: float) -> np.ndarray:
    """The reference's way: one feature-extractor call and one encoder call per window.

    Pooled with our corrected `last` frame so that the numbers are comparable with (b).
    """
    starts, ends = window_bounds(end_times, context, 16000)
    samples_per_frame = loaded.feature_extractor.hop_length * loaded.encoder.conv1.stride[0] * loaded.encoder.conv2.stride[0]
    rows = []
    with torch.inference_mode():
        for start, end in zip(starts, ends):
            mel = loaded.feature_extractor(audio[start:end], sampling_rate=16000, return_tensors="pt").input_features
            hidden = loaded.encoder(mel, output_hidden_states=True).hidden_states[1:]
            frame = math.ceil((end - start) / samples_per_frame) - 1
            rows.append(torch.stack([h[0, frame] for h in hidden]).numpy())
    return np.stack(rows, axis=1)  # (layers, windows, dim)


def timed(fn):
    """(result, wall seconds, process CPU seconds). CPU time is the fairer figure on a shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=24)
    parser.add_argument("--context", type=float, default=16.0)
    parser.add_argument("--batch-size", type=int, default=0, help="0 = automatic")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; the median is reported")
    args = parser.parse_args()
    torch.manual_seed(0)
    clip, rate = sf.read(ROOT / "tests" / "data" / "speech_clip.flac", dtype="float32")
    stride = 1.0
    duration = args.context + stride * args.windows + 1.0
    audio = np.tile(clip, int(np.ceil(duration * rate / len(clip))))[: int(duration * rate)]
    ends = args.context + stride * np.arange(args.windows)
    fp32 = load_model("bundled/whisper-tiny.en", device="cpu", precision="fp32")
    bf16 = load_model("bundled/whisper-tiny.en", device="cpu", precision="bf16")
    base = dict(chunk_size=stride, context_size=args.context, pool="last", batch_size=args.batch_size,
                include_early_windows=False)

    variants = {
        "ref": lambda: reference_loop(audio, fp32, ends, args.context),
        "ours": lambda: compute_layers(audio, fp32, FeatureConfig(**base), end_times=ends)[0],
        "low": lambda: compute_layers(audio, bf16, FeatureConfig(**base, precision="bf16"), end_times=ends)[0],
        "short": lambda: compute_layers(audio, fp32, FeatureConfig(**base, context_only=True), end_times=ends)[0],
    }
    reference_loop(audio, fp32, ends[:1], args.context)  # warm-up
    compute_layers(audio, bf16, FeatureConfig(**base, precision="bf16"), end_times=ends[:1])
    # Rounds with a rotating order, median per variant: a burst of load on this shared machine
    # then hits one round of one variant, not the ratio.
    values, walls, cpus = {}, {k: [] for k in variants}, {k: [] for k in variants}
    names = list(variants)
    for round_index in range(args.rounds):
        for key in names[round_index % len(names):] + names[:round_index % len(names)]:
            values[key], wall, cpu = timed(variants[key])
            walls[key].append(wall)
            cpus[key].append(cpu)
    t_ref, t_ours, t_low, t_short = (float(np.median(walls[k])) for k in names)
    c_ref, c_ours, c_low, c_short = (float(np.median(cpus[k])) for k in names)
    ref, ours, low, short = (values[k] for k in names)

    def corr(a, b):
        return ", ".join(f"{np.corrcoef(a[i].ravel(), b[i].ravel())[0, 1]:.3f}" for i in range(a.shape[0]))

    n = len(ends)
    print(f"Bundled Whisper tiny.en, {n} windows of {args.context:g} s, CPU threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}, median of {args.rounds} rounds\n")
    rows = [("(a) reference loop, batch 1, padded 30 s", t_ref, c_ref, ref, ""),
            ("(b) ours fp32 (default)", t_ours, c_ours, ours, ""),
            ("(c) ours bf16 (approximate)", t_low, c_low, low, corr(low, ours)),
            (f"(d) ours context_only {args.context:g} s (approximate)", t_short, c_short, short, corr(short, ours))]
    print("| variant | wall s | windows/s (wall) | ratio vs (a), wall | CPU s | ratio vs (a), CPU | "
          "max abs diff vs (a) | per-layer r vs (b) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, wall, cpu, values, r in rows:
        print(f"| {name} | {wall:.2f} | {n / wall:.2f} | {t_ref / wall:.2f}x | {cpu:.2f} | {c_ref / cpu:.2f}x | "
              f"{np.abs(values - ref).max():.2e} | {r} |")

if __name__ == "__main__":
    main()
