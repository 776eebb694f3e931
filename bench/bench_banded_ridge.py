"""Benchmark: banded ridge with nested CV, three ways, on the same simulated data in one run.

Rows: ``ours`` (encoding_core.models.banded_ridge.banded_ridge_nested_cv), ``himalaya`` (GroupRidgeCV a.k.a.
BandedRidgeCV, random-search solver given the same candidates, alphas, folds and the correlation
score) and ``naive`` (a plain loop: per candidate and fold, scaled Gram and ``np.linalg.solve`` per
alpha, then a refit by solve). Each method runs in its own child process (the data are generated
there from the same seed and checked by hash), so the peak RSS of each row is that process's own:
a sampler thread reads /proc/self/statm every 50 ms during the fit, and ``ru_maxrss`` covers the
child up to the end of the fit (data generation included; the test data are made after the fit).
"RSS before fit" is the child after making the training data and importing the method's libraries.

Full size (the brief): n = 6000 TRs, two spaces of 384 and 80 features x 4 delays (p 1536 + 320),
20484 voxels, 10% signal voxels. ``--small`` runs a quick version. Accuracy: the held-out r of each
method on the signal voxels, compared with the naive loop.

    python bench/bench_banded_ridge.py --small
    python bench/bench_banded_ridge.py --voxels 2048   # full n and p, 2048 voxels (himalaya: about 1 h on 2 shared cores)
    python bench/bench_banded_ridge.py            # the issue's size (v = 20484): several hours here
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

FULL = dict(n=6000, n_test=600, p_a=384, p_b=80, delays=4, voxels=20484)
SMALL = dict(n=1200, n_test=300, p_a=96, p_b=20, delays=4, voxels=2048)
MEDIUM = dict(n=3000, n_test=300, p_a=192, p_b=40, delays=4, voxels=10240)


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

def _delayed(latent: np.ndarray, delays: int) -> np.ndarray:
    """FIR delays 1..delays of (n, q) -> (n, q * delays), zero-padded, then z-scored, float32."""
    n, q = latent.shape
    out = np.zeros((n, q * delays), dtype=np.float32)
    for k in range(1, delays + 1):  # a handful of delays
        out[k:, (k - 1) * q:k * q] = latent[:-k]
    out -= out.mean(axis=0)
    out /= out.std(axis=0) + 1e-8
    return out


def _features(gen: np.random.Generator, n: int, q: int, rank: int) -> np.ndarray:
    """Correlated, temporally smooth features (n, q): low-rank mixing plus noise, AR(1) in time."""
    base = gen.standard_normal((n, rank)) @ gen.standard_normal((rank, q)) / np.sqrt(rank) + 0.5 * gen.standard_normal((n, q))
    return lfilter([1.0], [1.0, -0.6], base, axis=0)


def _zscore_columns(Y: np.ndarray, block: int = 4096) -> None:
    """z-score the columns of Y in place, a block of columns at a time (no full-size temporary)."""
    for start in range(0, Y.shape[1], block):  # a few blocks
        part = Y[:, start:start + block]
        part -= part.mean(axis=0)
        part /= part.std(axis=0) + 1e-8


def simulate(n: int, n_test: int, p_a: int, p_b: int, delays: int, voxels: int, part: str = "train", seed: int = 0):
    """Train or test data (``part``). Signal voxels (10%): a third driven by A, a third by B, a third by both.

    Returns (spaces, Y, labels): spaces [A (rows, 4 p_a), B (rows, 4 p_b)] float32, Y (rows, v)
    float32 built in place (no copy of Y's size), labels (v,) 0 noise, 1 A, 2 B, 3 both. Features,
    labels, weights and the noise of each part come from separate seeded streams, so the test
    part can be made after the fit without the training part.
    """
    feat_seed, label_seed, weight_seed, train_seed, test_seed = np.random.SeedSequence(seed).spawn(5)
    gen = np.random.default_rng(feat_seed)
    total = n + n_test
    a = _delayed(_features(gen, total, p_a, 16), delays)
    b = _delayed(_features(gen, total, p_b, 8), delays)
    gen = np.random.default_rng(label_seed)
    labels = np.zeros(voxels, dtype=np.int64)
    n_signal = voxels // 10
    signal = gen.choice(voxels, n_signal, replace=False)
    labels[signal] = 1 + np.arange(n_signal) % 3
    snr = np.zeros(voxels, dtype=np.float32)
    snr[signal] = gen.uniform(0.2, 1.0, n_signal)
    rows = slice(0, n) if part == "train" else slice(n, total)
    Y = np.random.default_rng(train_seed if part == "train" else test_seed).standard_normal(
        (rows.stop - rows.start, voxels), dtype=np.float32)
    gen = np.random.default_rng(weight_seed)
    for space, which in ((a, (1, 3)), (b, (2, 3))):  # two spaces
        cols = signal[np.isin(labels[signal], which)]
        drive = space @ gen.standard_normal((space.shape[1], len(cols)), dtype=np.float32)
        drive *= snr[cols] / drive.std(axis=0)
        Y[:, cols] += drive[rows]
    _zscore_columns(Y)
    return [a[rows].copy(), b[rows].copy()], Y, labels


def data_hash(*arrays) -> str:
    h = hashlib.sha1()
    for arr in arrays:
        h.update(np.ascontiguousarray(arr[:, ::97]).tobytes())
    return h.hexdigest()[:12]


def settings(size: dict):
    """Folds, alpha grid (reference units, normalpha=False) and gamma candidates shared by all methods."""
    from encoding_core.models.banded_ridge import simplex_grid
    from encoding_core.models.folds import make_folds
    folds = make_folds(size["n"], "chunked", 5, chunk_length=20, seed=0)
    alphas = np.logspace(0.5, 4.0, 10)             # a; penalty a^2 from 10 to 1e8 (himalaya alphas)
    candidates = simplex_grid(2, 10, include_boundary=False)  # 9 interior points (himalaya cannot take a 0)
    return folds, alphas, candidates


# ----------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------

def run_ours(spaces, Y, folds, alphas, candidates, budget_gb):
    from encoding_core.models.banded_ridge import banded_ridge_nested_cv
    fit = banded_ridge_nested_cv(spaces, Y, folds, alphas, candidates=candidates, normalpha=False,
                                 memory_budget_gb=budget_gb)
    return fit.weights, fit.best_gammas, fit.penalties


def run_himalaya(spaces, Y, folds, alphas, candidates, backend_name, batch):
    from himalaya.backend import set_backend
    from himalaya.ridge import GroupRidgeCV
    from himalaya.scoring import correlation_score
    backend = set_backend(backend_name, on_error="raise")
    groups = np.repeat(np.arange(len(spaces)), [x.shape[1] for x in spaces])
    model = GroupRidgeCV(groups=groups, cv=list(folds), solver="random_search", solver_params=dict(
        n_iter=np.asarray(candidates), alphas=np.asarray(alphas) ** 2, score_func=correlation_score,
        n_targets_batch=batch, n_targets_batch_refit=batch, progress_bar=False, local_alpha=True))
    model.fit(np.concatenate(spaces, axis=1), Y)
    weights = np.asarray(backend.to_numpy(model.coef_), dtype=np.float32)
    deltas = np.asarray(backend.to_numpy(model.deltas_))
    gammas = np.exp(deltas)
    penalty_sq = 1.0 / gammas.sum(axis=0)   # deltas = log(gamma / a^2), gamma on the simplex
    return weights, gammas * penalty_sq, np.sqrt(penalty_sq)


def run_naive(spaces, Y, folds, alphas, candidates, dtype_name):
    """Every candidate from scratch: scaled X, Gram and solve per fold and alpha (float64 by default)."""
    dtype = np.dtype(dtype_name)
    X = np.concatenate(spaces, axis=1).astype(dtype)
    Yd = Y.astype(dtype)
    col = np.repeat(np.arange(len(spaces)), [x.shape[1] for x in spaces])
    p, v = X.shape[1], Y.shape[1]
    scores = np.zeros((len(candidates), len(alphas), v))
    for c, gamma in enumerate(candidates):
        Xs = X * np.sqrt(gamma)[col].astype(dtype)
        for train, test in folds:
            Xt = Xs[train]
            A = Xt.T @ Xt
            B = Xt.T @ Yd[train]
            yh = Yd[test] - Yd[test].mean(axis=0)
            for i, a in enumerate(alphas):
                W = np.linalg.solve(A + a ** 2 * np.eye(p, dtype=dtype), B)
                P = Xs[test] @ W
                P -= P.mean(axis=0)
                den = np.sqrt((P * P).sum(axis=0) * (yh * yh).sum(axis=0))
                scores[c, i] += np.where(den > 0, (P * yh).sum(axis=0) / np.where(den > 0, den, 1), 0) / len(folds)
            del B
    flat = np.argmax(scores.reshape(-1, v), axis=0)
    best_c, best_a = flat // len(alphas), flat % len(alphas)
    weights = np.zeros((p, v), dtype=np.float32)
    for c in np.unique(best_c):
        Xs = X * np.sqrt(candidates[c])[col].astype(dtype)
        A = Xs.T @ Xs
        for i in np.unique(best_a[best_c == c]):
            vox = np.flatnonzero((best_c == c) & (best_a == i))
            W = np.linalg.solve(A + alphas[i] ** 2 * np.eye(p, dtype=dtype), Xs.T @ Yd[:, vox])
            weights[:, vox] = W * np.sqrt(candidates[c])[col][:, None]
    return weights, candidates[best_c].T, alphas[best_a]


# ----------------------------------------------------------------------------------------------
# Child process: one method, timed and sampled
# ----------------------------------------------------------------------------------------------

def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssSampler:
    """Largest whole-process RSS seen every ``interval`` s while running (a daemon thread)."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak, self._stop = interval, _rss_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _rss_bytes())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def pearson_columns(P: np.ndarray, Y: np.ndarray) -> np.ndarray:
    P = P - P.mean(axis=0)
    Yc = Y - Y.mean(axis=0)
    den = np.sqrt((P * P).sum(axis=0) * (Yc * Yc).sum(axis=0))
    return np.where(den > 0, (P * Yc).sum(axis=0) / np.where(den > 0, den, 1), 0.0)


def naive_voxels(labels: np.ndarray, count: int) -> np.ndarray:
    """Voxels the naive loop fits: every signal voxel plus seeded noise voxels up to ``count`` (0: all)."""
    if count <= 0 or count >= len(labels):
        return np.arange(len(labels))
    signal = np.flatnonzero(labels > 0)
    noise = np.flatnonzero(labels == 0)
    extra = np.random.default_rng(1).choice(noise, max(0, count - len(signal)), replace=False)
    return np.sort(np.concatenate([signal, extra]))


def worker(args) -> None:
    size = SMALL if args.small else MEDIUM if args.medium else FULL
    if args.voxels:
        size = dict(size, voxels=args.voxels)
    spaces, Y, labels = simulate(**size, part="train")
    folds, alphas, candidates = settings(size)
    digest, y_bytes = data_hash(Y, *spaces), Y.nbytes
    subset = naive_voxels(labels, args.naive_voxels) if args.worker == "naive" else np.arange(Y.shape[1])
    y_fit = Y if len(subset) == Y.shape[1] else Y[:, subset]
    if args.worker in ("ours", "himalaya"):  # libraries loaded before the baseline is read
        import encoding_core.models.banded_ridge  # noqa: F401
        import torch  # noqa: F401
        if args.worker == "himalaya":
            import himalaya.ridge  # noqa: F401
    baseline = _rss_bytes()
    with RssSampler() as sampler:
        start, cpu_start = time.perf_counter(), time.process_time()
        if args.worker == "ours":
            weights, gammas, _ = run_ours(spaces, y_fit, folds, alphas, candidates, args.budget_gb)
        elif args.worker == "himalaya":
            weights, gammas, _ = run_himalaya(spaces, y_fit, folds, alphas, candidates, args.himalaya_backend,
                                                      args.himalaya_batch)
        else:
            weights, gammas, _ = run_naive(spaces, y_fit, folds, alphas, candidates, args.naive_dtype)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    maxrss_fit = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    del Y, y_fit, spaces
    test_spaces, Y_test, _ = simulate(**size, part="test")
    pred = np.concatenate(test_spaces, axis=1) @ weights
    r_test = np.full(len(labels), np.nan)
    r_test[subset] = pearson_columns(pred.astype(np.float64), Y_test[:, subset].astype(np.float64))
    gamma_a = np.full(len(labels), np.nan)
    gamma_a[subset] = gammas[0]
    np.savez(Path(args.out) / f"{args.worker}.npz", r_test=r_test, gamma_a=gamma_a, labels=labels)
    info = dict(method=args.worker, seconds=seconds, cpu_seconds=cpu_seconds, peak_fit=sampler.peak, baseline=baseline,
                maxrss=maxrss_fit, y_bytes=y_bytes, hash=digest, size=size, n_candidates=len(candidates),
                n_alphas=len(alphas), n_voxels_fitted=len(subset), loadavg=os.getloadavg())
    (Path(args.out) / f"{args.worker}.json").write_text(json.dumps(info))


# ----------------------------------------------------------------------------------------------
# Parent: run the three, print the table
# ----------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="quick run (n=1200, p 384+80, 2048 voxels)")
    parser.add_argument("--medium", action="store_true", help="calibration size (n=3000, p 768+160, 10240 voxels)")
    parser.add_argument("--voxels", type=int, default=0, help="override the number of voxels")
    parser.add_argument("--methods", default="ours,himalaya,naive")
    parser.add_argument("--budget-gb", type=float, default=0.15,
                        help="ours: memory_budget_gb (the per-block working set; 0.15 keeps the full run under 3 x Y)")
    parser.add_argument("--himalaya-backend", default="torch",
                        help="himalaya backend: torch (faster on this CPU in our runs) or numpy")
    parser.add_argument("--himalaya-batch", type=int, default=2048, help="himalaya n_targets_batch (memory bound)")
    parser.add_argument("--naive-dtype", default="float64")
    parser.add_argument("--naive-voxels", type=int, default=4096,
                        help="voxels fitted by the naive loop: all signal voxels plus noise voxels up to this "
                             "count (0 = all); its time is also shown scaled to all voxels")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    methods = args.methods.split(",")
    results, arrays = {}, {}
    size_flags = (["--small"] if args.small else []) + (["--medium"] if args.medium else []) \
        + (["--voxels", str(args.voxels)] if args.voxels else [])
    with tempfile.TemporaryDirectory() as out:
        for method in methods:  # one child process per method, one after the other
            cmd = [sys.executable, __file__, "--worker", method, "--out", out, "--budget-gb", str(args.budget_gb),
                   "--himalaya-backend", args.himalaya_backend, "--himalaya-batch", str(args.himalaya_batch),
                   "--naive-dtype", args.naive_dtype, "--naive-voxels", str(args.naive_voxels)] + size_flags
            print(f"running {method} ... (load average {os.getloadavg()[0]:.2f})", flush=True)
            subprocess.run(cmd, check=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
            results[method] = json.loads((Path(out) / f"{method}.json").read_text())
            arrays[method] = dict(np.load(Path(out) / f"{method}.npz"))
    print_table(methods, results, arrays)


def print_table(methods: list, results: dict, arrays: dict) -> None:
    """The comparison table: time, memory, accuracy against the naive loop on the signal voxels."""
    first = results[methods[0]]
    size = first["size"]
    n_voxels = size["voxels"]
    print(f"\nData: n={size['n']} TRs (test {size['n_test']}), spaces p={size['p_a'] * size['delays']} + "
          f"{size['p_b'] * size['delays']}, v={n_voxels} voxels; {first['n_candidates']} gamma candidates x "
          f"{first['n_alphas']} alphas, 5 chunked folds; same data in every process: "
          f"{len({r['hash'] for r in results.values()}) == 1}")
    signal = arrays[methods[0]]["labels"] > 0
    ref = arrays.get("naive")
    y_mb = first["y_bytes"] / 2 ** 20
    print(f"Y is {y_mb:.0f} MiB; memory target (ours) < 3 x Y = {3 * y_mb:.0f} MiB; {int(signal.sum())} signal voxels\n")
    head = (f"{'method':<10}{'voxels':>8}{'wall s':>10}{'/ ours':>8}{'CPU s':>9}{'peak RSS MiB':>14}{'/ Y':>6}"
            f"{'RSS pre-fit':>13}{'fit +MiB / Y':>14}{'max|dr| sig':>13}{'median r sig':>14}{'same gamma':>12}")
    print(head)
    print("-" * len(head))
    for method in methods:
        res, arr = results[method], arrays[method]
        ratio = res["seconds"] / results["ours"]["seconds"] if "ours" in results else float("nan")
        peak = max(res["peak_fit"], res["maxrss"]) / 2 ** 20
        dr_text = same_text = "n/a"
        if ref is not None:
            dr_text = f"{np.abs(arr['r_test'][signal] - ref['r_test'][signal]).max():.2e}"
            same_text = f"{np.mean(np.isclose(arr['gamma_a'][signal], ref['gamma_a'][signal])):.1%}"
        print(f"{method:<10}{res['n_voxels_fitted']:>8}{res['seconds']:>10.1f}{ratio:>7.2f}x{res['cpu_seconds']:>9.0f}"
              f"{peak:>14.0f}{peak / y_mb:>6.2f}{res['baseline'] / 2 ** 20:>13.0f}"
              f"{(peak - res['baseline'] / 2 ** 20) / y_mb:>14.2f}{dr_text:>13}"
              f"{np.median(arr['r_test'][signal]):>14.4f}{same_text:>12}")
    print("\nload average (1, 5, 15 min) at the end of each child:",
          {m: [round(x, 2) for x in r["loadavg"]] for m, r in results.items()})
    if "ours" in results and "himalaya" in results:
        h, o = results["himalaya"], results["ours"]
        print(f"ours vs himalaya: {h['seconds'] / o['seconds']:.2f}x faster (wall), "
              f"{h['cpu_seconds'] / o['cpu_seconds']:.2f}x less CPU time")
    if "ours" in results and "naive" in results:
        nv = results["naive"]
        scale = n_voxels / nv["n_voxels_fitted"]
        note = "" if scale == 1 else (f" on {nv['n_voxels_fitted']} of {n_voxels} voxels; its cost is linear in the "
                                      f"voxels but for one LU per alpha, so all voxels would take about "
                                      f"{nv['seconds'] * scale:.0f} s (extrapolated, not measured)")
        print(f"naive loop: {nv['seconds']:.1f} s measured{note}")


if __name__ == "__main__":
    main()
