"""Benchmark: ridge_nested_cv against the reference algorithm and himalaya, same data and folds.

Usage::

    python bench/bench_ridge.py              # full size: n=6000 TRs, p=1536 features, v=20484 voxels
    python bench/bench_ridge.py --small      # n=1200, p=256, v=2000 (seconds)

Each method runs in its own subprocess (so peak memory and CPU time are its own, measured with
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end of the worker, including the
loaded data). Reported: wall time of the fit (data loading excluded), peak RSS, and the
max |r difference| to ours on signal voxels, where r is the test-set correlation of each
method's refitted model on fresh test rows.

- ``reference``: the reference algorithm (LITcoder ``ridge_corr_torch``/``ridge_torch``) written
  out here in numpy float32 (as the reference's torch float32): a thin SVD of every inner
  fold's training X, ``U'Y`` per fold, then a loop over alphas with z-scored predictions.
- ``himalaya``: ``himalaya.ridge.RidgeCV`` (torch backend) on the same folds with
  ``correlation_score``; its alpha is the un-squared penalty, so the grid is
  ``(alpha * S0)^2`` with S0 the largest singular value of the full training X (the reference
  uses each fold's own S0, so this is the closest equivalent grid).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ALPHAS = np.logspace(-1, 8, 10)


def make_data(folder: Path, n: int, p: int, v: int, n_test: int, signal_fraction: float, seed: int) -> None:
    """Write X, Y, X_test, Y_test (float32) and the inner folds to ``folder``."""
    from encoding_core.models.folds import make_folds

    gen = np.random.default_rng(seed)
    n_all = n + n_test
    latent = gen.standard_normal((n_all, p)).astype(np.float32)
    mixing = (np.eye(p) + 0.3 * gen.standard_normal((p, p)) / np.sqrt(p)).astype(np.float32)
    X_all = latent @ mixing  # mildly correlated features
    n_signal = max(1, int(round(signal_fraction * v)))
    weights = (gen.standard_normal((p, n_signal)) / np.sqrt(p)).astype(np.float32)
    Y_all = np.empty((n_all, v), dtype=np.float32)
    step = 2048
    for start in range(0, v, step):  # noise in blocks to keep memory low
        stop = min(start + step, v)
        Y_all[:, start:stop] = gen.standard_normal((n_all, stop - start), dtype=np.float32)
    snr = np.linspace(0.2, 1.0, n_signal).astype(np.float32)
    Y_all[:, :n_signal] += (X_all @ weights) * snr
    np.save(folder / "X.npy", X_all[:n])
    np.save(folder / "X_test.npy", X_all[n:])
    np.save(folder / "Y.npy", Y_all[:n])
    np.save(folder / "Y_test.npy", Y_all[n:])
    folds = make_folds(n, "chunked", 5, chunk_length=20, seed=seed)
    np.savez(folder / "folds.npz", **{f"train{i}": tr for i, (tr, _) in enumerate(folds)},
             **{f"test{i}": te for i, (_, te) in enumerate(folds)})
    (folder / "meta.json").write_text(json.dumps({"n_signal": n_signal, "n_folds": len(folds)}))


def load(folder: Path):
    meta = json.loads((folder / "meta.json").read_text())
    fz = np.load(folder / "folds.npz")
    folds = [(fz[f"train{i}"], fz[f"test{i}"]) for i in range(meta["n_folds"])]
    return (np.load(folder / "X.npy"), np.load(folder / "Y.npy"), np.load(folder / "X_test.npy"),
            np.load(folder / "Y_test.npy"), folds, meta)


def _zscore(a: np.ndarray) -> np.ndarray:
    std = a.std(axis=0)
    return (a - a.mean(axis=0)) / np.where(std == 0, 1, std)


def reference_fit(X, Y, folds, alphas, singcutoff=1e-10):
    """The reference algorithm, per-fold SVD, float32, per-voxel alpha (see module docstring)."""
    import scipy.linalg

    scores = np.zeros((len(alphas), Y.shape[1]), dtype=np.float32)
    for train, test in folds:
        U, S, Vt = scipy.linalg.svd(X[train], full_matrices=False, overwrite_a=True, check_finite=False)
        keep = S > singcutoff
        U, S, Vt = U[:, keep], S[keep], Vt[keep]
        UR = U.T @ Y[train]
        PVh = X[test] @ Vt.T
        zPresp = _zscore(Y[test])
        for i, alpha in enumerate(alphas):
            na = alpha * S[0]
            D = S / (S ** 2 + na ** 2)
            pred = (PVh * D) @ UR
            scores[i] += np.nan_to_num((_zscore(pred) * zPresp).mean(axis=0))
    scores /= len(folds)
    best = alphas[np.argmax(scores, axis=0)]
    U, S, Vt = scipy.linalg.svd(X, full_matrices=False, check_finite=False)
    UR = U.T @ Y
    weights = np.zeros((X.shape[1], Y.shape[1]), dtype=np.float32)
    for alpha in np.unique(best):
        sel = best == alpha
        na = alpha * S[0]
        weights[:, sel] = (Vt.T * (S / (S ** 2 + na ** 2))) @ UR[:, sel]
    return weights, best


def himalaya_fit(X, Y, folds, alphas):
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV
    from himalaya.scoring import correlation_score

    backend = set_backend("torch", on_error="raise")
    s0 = np.linalg.svd(X, compute_uv=False)[0]
    model = RidgeCV(alphas=(alphas * s0) ** 2, cv=folds, solver_params=dict(
        score_func=correlation_score, n_targets_batch=2048, n_targets_batch_refit=2048))
    model.fit(X, Y)
    return backend.to_numpy(model.coef_).astype(np.float32), backend.to_numpy(model.best_alphas_) ** 0.5 / s0


def worker(method: str, folder: Path) -> None:
    X, Y, X_test, Y_test, folds, _ = load(folder)
    start = time.perf_counter()
    cpu_start = time.process_time()
    if method == "ours":
        from encoding_core.models.ridge import ridge_nested_cv

        fit = ridge_nested_cv(X, Y, folds, ALPHAS, normalpha=True, memory_budget_gb=0.5)
        weights, best = fit.weights, fit.best_alphas
    elif method == "reference":
        weights, best = reference_fit(X, Y, folds, ALPHAS)
    elif method == "himalaya":
        weights, best = himalaya_fit(X, Y, folds, ALPHAS)
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start  # fairer than wall time on a shared machine
    from encoding_core.stats.scores import pearson_r

    r = pearson_r(Y_test, X_test @ weights)
    np.save(folder / f"r_{method}.npy", r)
    np.save(folder / f"alpha_{method}.npy", best)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    (folder / f"result_{method}.json").write_text(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds,
                                                                   "peak_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=6000, help="training TRs")
    parser.add_argument("--p", type=int, default=1536, help="features")
    parser.add_argument("--v", type=int, default=20484, help="voxels")
    parser.add_argument("--small", action="store_true", help="n=1200, p=256, v=2000")
    parser.add_argument("--methods", default="ours,reference,himalaya")
    parser.add_argument("--signal-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, Path(args.data))
        return
    if args.small:
        args.n, args.p, args.v = 1200, 256, 2000
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    with tempfile.TemporaryDirectory(prefix="bench_ridge_") as tmp:
        folder = Path(tmp)
        make_data(folder, args.n, args.p, args.v, max(100, args.n // 10), args.signal_fraction, args.seed)
        y_mb = args.n * args.v * 4 / 1024 ** 2
        print(f"data: n={args.n} p={args.p} v={args.v}, Y = {y_mb:.0f} MB float32, "
              f"{len(ALPHAS)} alphas, 5 chunked inner folds", flush=True)
        header = ("| method | wall time (s) | time / ours | CPU time (s) | CPU / ours | peak RSS (MB) | peak / Y size | "
                  "max abs r diff vs ours (signal voxels) | alphas equal to ours | median r (signal) |")
        print(header + "\n|---|---|---|---|---|---|---|---|---|---|", flush=True)
        n_signal = json.loads((folder / "meta.json").read_text())["n_signal"]
        base = None
        for method in methods:  # rows print as each method finishes
            env = dict(os.environ, HF_HUB_OFFLINE="1")
            subprocess.run([sys.executable, __file__, "--worker", method, "--data", str(folder)], check=True, env=env)
            res = json.loads((folder / f"result_{method}.json").read_text())
            r = np.load(folder / f"r_{method}.npy")
            alpha = np.load(folder / f"alpha_{method}.npy")
            if base is None:
                base = (method, res, r, alpha)
            _, base_res, r_base, alpha_base = base
            diff = float(np.abs(r[:n_signal] - r_base[:n_signal]).max())
            same = float(np.mean(np.isclose(alpha, alpha_base, rtol=1e-3)))
            print(f"| {method} | {res['seconds']:.1f} | {res['seconds'] / base_res['seconds']:.2f} | "
                  f"{res['cpu_seconds']:.1f} | {res['cpu_seconds'] / base_res['cpu_seconds']:.2f} | "
                  f"{res['peak_mb']:.0f} | {res['peak_mb'] / y_mb:.2f} | {diff:.2e} | {same:.1%} | "
                  f"{np.median(r[:n_signal]):.3f} |", flush=True)


if __name__ == "__main__":
    main()
