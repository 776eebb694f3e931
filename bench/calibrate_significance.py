"""Calibration (false-positive rate) and power of the significance tests on simulated fMRI-like data.

Null data: Y and P independent, each autocorrelated:
  - Y: AR(1) with coefficient phi (unit variance), one column per simulated voxel;
  - P ("ar1"): another AR(1) with the same phi;
  - P ("fir"): a ridge-like prediction, the sum over FIR delays 1-4 TRs of an AR(1)(phi) feature
    (smoother than Y, and not AR(1)-shaped).
Pooled cross-validation series are stories simulated independently and stacked, as the pipeline
builds them: Y is z-scored within each story, and each story's P is centred (features are
z-scored per story and the ridge has no intercept) with its own scale (0.5-2, predictions from
different outer folds).
Power: Y = r P~ + sqrt(1 - r^2) N within each story, with P~ the unit-variance prediction and N an
AR(1)(phi) noise, so the population correlation is r.

Refitted cross-validation ("all stories (CV)"): the tables above draw P independently per story.
Real pooled CV predictions are not independent: each fold's ridge model trained on the other
folds' held-out data, so fold k's prediction carries fold j's noise and vice versa. The last
table refits leave-one-story-out ridge on null data (Y: AR(1) noise; X: 200 AR(1)(0.8)
features, half of their variance shared by all stories, z-scored per story) through
``encoding_core.models.fitting.fit_cross_validated`` and reports the default test with the
cross-fold correction (``encoding_core.models.cv_dependence``) and without it.

Lengths: a short demo story (37 TRs), the demo's held-out story (fox_and_goat, 46 TRs after the
preset's [5:-4] trimming), the demo's pooled CV series (its six stories: 37+34+37+34+40+46 = 228
TRs), LeBel's test story (wheretheressmoke, 251 TRs) and a pooled LeBel CV series (10 stories of
300 TRs). A rate is the share of simulated voxels with p <= 0.05; +- is its Monte-Carlo standard
error sqrt(rate (1 - rate) / n_voxels).

    python bench/calibrate_significance.py            # full tables (several minutes on 2 cores)
    python bench/calibrate_significance.py --fast     # CI sizes (< 30 s)
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import special
from scipy.signal import lfilter

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from encoding_core.stats import significance as sig  # noqa: E402
from encoding_core.common.errors import InputError  # noqa: E402

FIR_DELAYS = (1, 2, 3, 4)
DEMO_STORY_TRS = [37, 34, 37, 34, 40, 46]
LENGTHS_FULL = [
    ("demo story, 37 TRs", [37]),
    ("demo held-out story, 46 TRs", [46]),
    ("demo pooled CV, 6 stories, 228 TRs", DEMO_STORY_TRS),
    ("LeBel test story, 251 TRs", [251]),
    ("LeBel pooled CV, 10 x 300 TRs", [300] * 10),
]
LENGTHS_FAST = [LENGTHS_FULL[0], LENGTHS_FULL[2], LENGTHS_FULL[3]]
PHIS_FULL = (0.3, 0.5, 0.7, 0.8, 0.9)
PHIS_FAST = (0.5, 0.9)
ALPHA = 0.05


# -- simulation ------------------------------------------------------------------------
def ar1(rng: np.random.Generator, n: int, v: int, phi: float) -> np.ndarray:
    """(n, v) stationary AR(1) columns with unit variance (stationary start, no burn-in needed)."""
    e = rng.standard_normal((n, v))
    e[0] /= math.sqrt(1 - phi * phi)  # x_0 ~ N(0, 1/(1 - phi^2)) before scaling
    return lfilter([math.sqrt(1 - phi * phi)], [1.0, -phi], e, axis=0)


def smooth_prediction(rng: np.random.Generator, n: int, v: int, phi: float, model: str) -> np.ndarray:
    """(n, v) unit-variance prediction: AR(1)(phi), or FIR delays 1-4 summed over an AR(1)(phi) feature."""
    if model == "ar1":
        return ar1(rng, n, v, phi)
    lag = max(FIR_DELAYS)
    feature = ar1(rng, n + lag, v, phi)
    out = sum(feature[lag - d: lag - d + n] for d in FIR_DELAYS)
    return out / out.std(axis=0)


def simulate(rng: np.random.Generator, stories: list[int], v: int, phi: float, model: str,
             r_true: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stacked stories -> Y (n, v), P (n, v), story label per TR (n,)."""
    ys, ps = [], []
    pooled = len(stories) > 1
    for size in stories:
        p_unit = smooth_prediction(rng, size, v, phi, model)
        y = r_true * p_unit + math.sqrt(1 - r_true ** 2) * ar1(rng, size, v, phi)
        if pooled:  # as the pipeline: Y z-scored per story; P = X W with X z-scored per story, no intercept
            y = (y - y.mean(axis=0)) / y.std(axis=0)
            p_unit = (p_unit - p_unit.mean(axis=0)) * rng.uniform(0.5, 2.0, v)
        ys.append(y)
        ps.append(p_unit)
    groups = np.repeat(np.arange(len(stories)), stories)
    return np.concatenate(ys), np.concatenate(ps), groups


# -- today's tests (the code before this change, same arithmetic) -----------------------
def today_parametric_two_sided(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """encoding_core.stats.pearson_pvalues(pearson_r(Y, P), n): two-sided t-test, n - 2 dof."""
    n = Y.shape[0]
    r = _pearson(Y, P)
    return special.betainc((n - 2) / 2.0, 0.5, 1.0 - r * r)


def today_block_permutation(Y: np.ndarray, P: np.ndarray, block_length: int = 10, n_permutations: int = 1000,
                            seed: int = 0, chunk: int = 256) -> np.ndarray:
    """encoding_core.stats.block_permutation_pvalues: one-sided, fixed blocks of P reordered, trailing
    partial block fixed, p = (1 + #{null >= obs}) / (1 + n_perm); run over voxel chunks (same orders)."""
    n, v = Y.shape
    n_blocks = n // block_length
    full = n_blocks * block_length
    rng = np.random.default_rng(seed)
    orders = np.argsort(rng.random((n_permutations, n_blocks)), axis=1)
    rows = np.arange(n_blocks)
    out = np.empty(v)
    for c0 in range(0, v, chunk):
        yz, pz = _z(Y[:, c0:c0 + chunk]), _z(P[:, c0:c0 + chunk])
        w = yz.shape[1]
        observed = (yz * pz).sum(axis=0)
        tail = (yz[full:] * pz[full:]).sum(axis=0)
        yb = yz[:full].reshape(n_blocks, block_length, w)
        pb = pz[:full].reshape(n_blocks, block_length, w)
        cross = np.einsum("ilv,jlv->ijv", yb, pb)
        exceed = np.zeros(w, dtype=np.int64)
        step = max(1, 10_000_000 // (n_blocks * w))
        for s0 in range(0, n_permutations, step):
            null = cross[rows[None, :], orders[s0:s0 + step]].sum(axis=1) + tail
            exceed += (null >= observed - 1e-9 * n).sum(axis=0)
        out[c0:c0 + chunk] = (1.0 + exceed) / (1.0 + n_permutations)
    return out


def _z(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=0)
    return x / x.std(axis=0)


def _pearson(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    return np.clip((_z(Y) * _z(P)).mean(axis=0), -1.0, 1.0)


# -- alternatives considered for the permutation scheme (bench only) ---------------------
def circular_shift_pvalues(Y: np.ndarray, P: np.ndarray, min_shift: int) -> np.ndarray:
    """One-sided p over all circular shifts s of P with min_shift <= s <= n - min_shift (exact enumeration)."""
    n = Y.shape[0]
    yz, pz = _z(Y), _z(P)
    cross = np.fft.irfft(np.conj(np.fft.rfft(yz, axis=0)) * np.fft.rfft(pz, axis=0), n, axis=0)  # (n, v)
    shifts = np.arange(min_shift, n - min_shift + 1)
    exceed = (cross[shifts] >= cross[0] - 1e-9 * n).sum(axis=0)
    return (1.0 + exceed) / (1.0 + len(shifts))


def offset_block_pvalues(Y: np.ndarray, P: np.ndarray, block_length: int, n_permutations: int,
                         seed: int) -> np.ndarray:
    """One-sided p: P rolled by a random offset, cut into blocks (tail in place), blocks reordered."""
    n, v = Y.shape
    n_blocks = n // block_length
    full = n_blocks * block_length
    yz, pz = _z(Y), _z(P)
    p_hat = np.fft.rfft(pz, axis=0)
    # by_start[i, s] = sum_l y_{iL+l} p_{(s+l) mod n}: Y block i against the P block starting at s
    padded = np.zeros((n_blocks + 1, n, v))
    for i in range(n_blocks):
        padded[i, :block_length] = yz[i * block_length:(i + 1) * block_length]
    padded[n_blocks, full:] = yz[full:]
    by_start = np.fft.irfft(np.conj(np.fft.rfft(padded, axis=1)) * p_hat[None], n, axis=1)
    rng = np.random.default_rng(seed)
    orders = np.argsort(rng.random((n_permutations, n_blocks)), axis=1)
    offsets = rng.integers(0, n, n_permutations)
    observed = (yz * pz).sum(axis=0)
    rows = np.arange(n_blocks)
    starts = (orders * block_length + offsets[:, None]) % n  # (n_perm, n_blocks)
    exceed = np.zeros(v, dtype=np.int64)
    step = max(1, 10_000_000 // (n_blocks * v))
    for s0 in range(0, n_permutations, step):
        chosen = starts[s0:s0 + step]
        null = by_start[rows[None, :], chosen].sum(axis=1) + by_start[n_blocks, offsets[s0:s0 + step]]  # (b, v)
        exceed += (null >= observed - 1e-9 * n).sum(axis=0)
    return (1.0 + exceed) / (1.0 + n_permutations)


# -- the table ---------------------------------------------------------------------------
def run_tests(Y: np.ndarray, P: np.ndarray, groups: np.ndarray, n_permutations: int, seed: int,
              timings: dict) -> dict:
    """Rates (share of p <= ALPHA) of every test on one simulated condition; None when a test refuses."""
    pooled = len(np.unique(groups)) > 1
    g = groups if pooled else None
    tests = {
        "today parametric, two-sided": lambda: today_parametric_two_sided(Y, P),
        "today block perm 10 TRs": lambda: today_block_permutation(Y, P, 10, n_permutations, seed),
        "effective_dof (new default)": lambda: sig.significance(Y, P, groups=g).p_values,
        "effective_dof two-sided": lambda: sig.significance(Y, P, alternative="two-sided", groups=g).p_values,
        "effective_dof lag-1": lambda: sig.significance(Y, P, groups=g, neff_method="lag1").p_values,
        "block perm, data L": lambda: sig.significance(Y, P, test="block_permutation", groups=g,
                                                       n_permutations=n_permutations, seed=seed),
    }
    if pooled:
        tests["block perm, data L, blocks straddle stories"] = lambda: sig.significance(
            Y, P, test="block_permutation", n_permutations=n_permutations, seed=seed)
        tests["effective_dof, stories ignored"] = lambda: sig.significance(Y, P).p_values
    out: dict = {}
    for name, run in tests.items():
        started = time.perf_counter()
        try:
            value = run()
        except InputError as error:
            out[name] = {"rate": None, "refused": str(error)}
            continue
        finally:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
        entry: dict = {}
        if isinstance(value, sig.SignificanceResult):
            entry["block_length"] = value.settings["block_length"]
            entry["predicted_rate"] = value.settings["block_rule"]["predicted_false_positive_rate_at_5pct"]
            value = value.p_values
        entry["rate"] = float(np.mean(value <= ALPHA))
        out[name] = entry
    return out


def plain_acf_neff_pvalues(Y: np.ndarray, P: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Considered and rejected: n_eff = n / (1 + 2 sum_{k <= n_g/2} rho_Y(k) rho_P(k)) with plain (biased)
    sample autocorrelations pooled within stories, t-test with n_eff - 2 dof, one-sided."""
    n = Y.shape[0]
    sizes = np.bincount(groups) if groups is not None else np.array([n])
    lag = max(1, int(np.median(sizes)) // 2)
    rho_y, rho_p = sig.autocorrelation(Y, lag, groups=groups), sig.autocorrelation(P, lag, groups=groups)
    n_eff = np.clip(n / np.maximum(1 + 2 * (rho_y[1:] * rho_p[1:]).sum(axis=0), 1.0), 3, n)
    r = _pearson(Y, P)
    two = special.betainc((n_eff - 2) / 2.0, 0.5, 1.0 - r * r)
    return np.where(r >= 0, two / 2, 1 - two / 2)


def neff_variants_table(rng: np.random.Generator, n_voxels: int) -> list[dict]:
    """The default effective-dof estimator against plain autocorrelation products (null, one-sided)."""
    rows = []
    for stories in ([37], DEMO_STORY_TRS, [251]):
        for phi in (0.5, 0.7, 0.9):
            for model in ("ar1", "fir"):
                Y, P, groups = simulate(rng, stories, n_voxels, phi, model)
                g = groups if len(stories) > 1 else None
                rows.append({"n_trs": sum(stories), "stories": len(stories), "phi": phi, "P": model,
                             "default (finite-sample Bartlett, 3/4 story)":
                                 float(np.mean(sig.significance(Y, P, groups=g).p_values <= ALPHA)),
                             "plain ACF products to n/2": float(np.mean(plain_acf_neff_pvalues(Y, P, g) <= ALPHA))})
    return rows


def alternatives_table(rng: np.random.Generator, n_voxels: int, n_permutations: int) -> list[dict]:
    """Circular shifts and offset block shuffling against plain block shuffling, same (data-chosen) L."""
    rows = []
    for n in (46, 251):
        for phi in (0.5, 0.8, 0.9):
            Y, P, _ = simulate(rng, [n], n_voxels, phi, "ar1")
            plain = sig.significance(Y, P, test="block_permutation", n_permutations=n_permutations,
                                     min_block_s=0.0 if n < 100 else 20.0)
            length = plain.settings["block_length"]
            acf_length, _ = sig.choose_block_length(Y, P, rule="acf", acf_threshold=0.1)
            row = {"n_trs": n, "phi": phi, "block_length": length,
                   "plain blocks": float(np.mean(plain.p_values <= ALPHA)),
                   "blocks + random offset": float(np.mean(offset_block_pvalues(Y, P, length, n_permutations, 0)
                                                           <= ALPHA)),
                   "circular shift, |s| >= L": float(np.mean(circular_shift_pvalues(Y, P, length) <= ALPHA)),
                   "circular shift, |s| >= 1": float(np.mean(circular_shift_pvalues(Y, P, 1) <= ALPHA)),
                   "acf rule (0.1) L": acf_length}
            try:
                acf_p = sig.significance(Y, P, test="block_permutation", block_length=acf_length,
                                         n_permutations=n_permutations).p_values
                row["plain blocks, acf rule (0.1)"] = float(np.mean(acf_p <= ALPHA))
            except InputError:
                row["plain blocks, acf rule (0.1)"] = None
            rows.append(row)
    return rows


def refit_cv_table(rng: np.random.Generator, n_voxels: int, fast: bool) -> list[dict]:
    """Null false-positive rates of pooled leave-one-story-out ridge predictions, with and without
    the cross-fold correction (rates at p <= 0.05, one-sided, the default effective-dof test)."""
    from encoding_core.config import RidgeConfig, StatsConfig
    from encoding_core.models import cv_dependence
    from encoding_core.models.fitting import fit_cross_validated

    rows = []
    lengths = [("demo pooled CV, 6 stories, 228 TRs", DEMO_STORY_TRS)]
    if not fast:
        lengths.append(("LeBel-like pooled CV, 10 x 300 TRs", [300] * 10))
    ridge = RidgeConfig(alphas=[0.1, 1.0, 10.0, 100.0, 1000.0], mode="cv", n_inner_folds=3, chunk_length=10)
    original = cv_dependence.variance_factor
    for name, stories in lengths:
        for phi in ((0.4, 0.8) if fast else (0.4, 0.6, 0.8)):
            n_features = 200
            shared = ar1(rng, max(stories), n_features, 0.8)
            X = np.concatenate([_z(0.7 * shared[:size] + 0.7 * ar1(rng, size, n_features, 0.8))
                                for size in stories]).astype(np.float32)
            Y = np.concatenate([_z(ar1(rng, size, n_voxels, phi)) for size in stories]).astype(np.float32)
            groups = np.repeat(np.arange(len(stories)), stories)
            corrected = fit_cross_validated(X, Y, groups, ridge, StatsConfig(n_permutations=0))
            cv_dependence.variance_factor = lambda *args, **kwargs: np.ones(n_voxels)
            try:
                naive = fit_cross_validated(X, Y, groups, ridge, StatsConfig(n_permutations=0))
            finally:
                cv_dependence.variance_factor = original
            factor = corrected.metrics["significance"]["variance_factor"]["median"]
            rows.append({"length": name, "phi_Y": phi, "median variance factor": round(factor, 2),
                         "corrected (default)": float(np.mean(corrected.arrays["p_values"] <= ALPHA)),
                         "without the correction": float(np.mean(naive.arrays["p_values"] <= ALPHA))})
            print(f"  refit CV {name} phi={phi}: {rows[-1]}", flush=True)
    return rows


def _cell(entry: dict, n_voxels: int) -> str:
    if entry.get("rate") is None:
        return "refused"
    rate = entry["rate"]
    se = math.sqrt(max(rate * (1 - rate), 1e-12) / n_voxels)
    text = f"{100 * rate:.1f} ± {100 * se:.1f}"
    if "block_length" in entry:
        text += f" (L={entry['block_length']})"
    return text


def _format(key: str, value) -> str:
    if value is None:
        return "refused"
    if isinstance(value, float) and key not in ("phi", "phi_Y", "median variance factor"):
        return f"{100 * value:.1f}"
    return str(value)


def markdown(results: list[dict], n_voxels: int, title: str) -> str:
    names = list(dict.fromkeys(name for row in results for name in row["tests"]))
    lines = [f"### {title}", "", "| length | P | phi | " + " | ".join(names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for row in results:
        cells = [_cell(row["tests"][name], n_voxels) if name in row["tests"] else "" for name in names]
        lines.append(f"| {row['length']} | {row['model']} | {row['phi']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="CI sizes: 3 lengths, 2 phis, 1200 voxels (< 30 s)")
    parser.add_argument("--voxels", type=int, default=None, help="simulated voxels per condition")
    parser.add_argument("--permutations", type=int, default=None, help="permutations per test")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for the .json and .md results")
    args = parser.parse_args(argv)
    fast = args.fast
    lengths = LENGTHS_FAST if fast else LENGTHS_FULL
    phis = PHIS_FAST if fast else PHIS_FULL
    n_voxels = args.voxels or (1200 if fast else 4000)
    n_permutations = args.permutations or (200 if fast else 1000)
    effects = (0.0, 0.3) if fast else (0.0, 0.2, 0.3)
    started = time.perf_counter()
    timings: dict = {}
    tables: dict = {effect: [] for effect in effects}
    for li, (length_name, stories) in enumerate(lengths):
        for pi, phi in enumerate(phis):
            for mi, model in enumerate(("ar1", "fir")):
                for ei, effect in enumerate(effects):
                    rng = np.random.default_rng([li, pi, mi, ei, 2024])
                    voxels = n_voxels if sum(stories) <= 1000 else max(n_voxels // 2, 500)
                    Y, P, groups = simulate(rng, stories, voxels, phi, model, effect)
                    tests = run_tests(Y, P, groups, n_permutations, seed=li * 100 + pi, timings=timings)
                    tables[effect].append({"length": length_name, "n_trs": sum(stories), "model": model,
                                           "phi": phi, "r_true": effect, "n_voxels": voxels, "tests": tests})
                    print(f"  {length_name} P={model} phi={phi} r={effect}: "
                          + ", ".join(f"{k}={'-' if v['rate'] is None else round(100 * v['rate'], 1)}"
                                      for k, v in tests.items()), flush=True)
    alternatives = [] if fast else alternatives_table(np.random.default_rng(7), n_voxels, n_permutations)
    neff_variants = [] if fast else neff_variants_table(np.random.default_rng(8), 4 * n_voxels)
    refit_cv = refit_cv_table(np.random.default_rng(9), n_voxels, fast)
    elapsed = time.perf_counter() - started
    header = (f"# Significance calibration ({'fast' if fast else 'full'}): {n_voxels} simulated voxels per "
              f"condition (half for 3000 TRs), {n_permutations} permutations, rate = share of p <= {ALPHA}, "
              f"run time {elapsed:.0f} s")
    report = [header, ""]
    for effect in effects:
        title = ("False-positive rate (%) on null data" if effect == 0 else f"Power (%) at true r = {effect}")
        report += [markdown(tables[effect], n_voxels, title), ""]
    for title, table in (("Refitted leave-one-story-out ridge, pooled held-out predictions", refit_cv),
                         ("Permutation schemes considered", alternatives),
                         ("Effective-dof estimators considered", neff_variants)):
        if not table:
            continue
        keys = list(table[0])
        report += [f"### {title} (null, one-sided, % with p <= 0.05)", "",
                   "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for row in table:
            report.append("| " + " | ".join(_format(key, row[key]) for key in keys) + " |")
        report.append("")
    report += ["### Run time per test (s, summed over conditions)", ""] + [
        f"- {name}: {seconds:.1f}" for name, seconds in sorted(timings.items(), key=lambda kv: -kv[1])]
    text = "\n".join(report)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "calibration_fast" if fast else "calibration_full"
    (args.out / f"{stem}.md").write_text(text + "\n")
    (args.out / f"{stem}.json").write_text(json.dumps({"elapsed_s": elapsed, "n_voxels": n_voxels,
                                                       "n_permutations": n_permutations,
                                                       "tables": {str(k): v for k, v in tables.items()},
                                                       "alternatives": alternatives, "neff_variants": neff_variants,
                                                       "refit_cv": refit_cv,
                                                       "timings_s": timings},
                                                      indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
