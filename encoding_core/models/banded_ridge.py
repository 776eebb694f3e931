"""Banded ridge regression: one ridge penalty per feature space, chosen per voxel by nested CV.

Model (himalaya's parametrisation). The feature spaces ``X_1..X_m`` (n, p_i) are scaled by
``sqrt(gamma_i)``, ``gamma`` a point on the simplex (``gamma_i >= 0``, ``sum gamma_i = 1``), and
one ridge is fitted on the concatenation ``Z = [sqrt(gamma_1) X_1, ..., sqrt(gamma_m) X_m]`` with
penalty ``a^2`` in the reference convention of :mod:`encoding_core.models.ridge`: ``a = alpha``, or
``a = alpha * S_max(Z)`` with ``normalpha`` (``S_max`` the largest singular value of the training
Z). Space i is thus penalised by ``a^2 / gamma_i`` (himalaya's ``deltas = log(gamma_i / a^2)``;
himalaya's ``alpha`` is our ``a^2``). Weights are returned on the *unscaled* features, so
``predict`` sums ``X_i @ W_i`` over spaces. With ``normalpha`` the fit is invariant to the overall
scale of Z, so the candidate ``gamma = (1/m, ..., 1/m)`` is exactly ``ridge_nested_cv`` on the
concatenation with the same alpha grid.

Per voxel, the pair (gamma, alpha) maximises the mean inner-fold correlation over a candidate set
of gammas (a grid on the simplex for up to 3 spaces, Dirichlet samples otherwise, or given) times
the alpha grid. How the search stays cheap (primal form, n >= total p):

1. ``G = X'X`` (p, p) float64 once. Per inner fold the training Gram is a downdate
   ``G_f = G - X_r'X_r`` (X_r the rows outside the training set) and the training cross-products
   ``C_f = X'Y - X_r'Y_r`` (p, v) are formed in one pass over Y (column blocks of Y are read in
   place, only the removed rows are gathered), then shared by every candidate.
2. Per fold and candidate the scaled Gram is ``D G_f D`` (``D = diag(sqrt(gamma))`` column-wise),
   eigendecomposed once in float64: ``V diag(s^2) V'``. It serves every alpha and every voxel.
3. Held-out predictions: ``P_alpha = Xh_c D V diag(1 / (s^2 + a^2)) V' D C_f`` (Xh_c: held-out
   rows centred over the held-out set). When (scored alphas x held-out rows) is below the number of
   voxels, the mapping ``M`` (alphas * n_h, p) is formed once per fold and candidate (in chunks of
   alphas when the budget asks for it) and each voxel block costs one product
   ``M @ C_f[:, block]``; otherwise ``V' D C_f`` is formed per block and each alpha is one
   product. Correlations are reduced per block: no (alphas, TRs, voxels) array beyond one block,
   never (candidates, TRs, voxels).
4. Alphas whose ``a^2`` swamps ``s_max^2`` (float precision) give proportional predictions; they
   are scored once (as in ridge).
5. Choice: argmax of the mean inner-fold correlation over (candidate, alpha); exact ties go to the
   earlier candidate, then to the smaller alpha.
6. Refit: ``C = X'Y`` in the same (p, v) buffer; per candidate chosen by some voxel, one
   eigendecomposition of ``D G D`` and ``W = D V diag(1 / (s^2 + a_v^2)) V' D C`` for its voxels.

Kernel form (n < total p): per space ``K_i = X_i X_i'`` (n, n) float64, ``K(gamma) = sum_i gamma_i
K_i`` per fold and candidate (one n_t x n_t eigendecomposition), held-out predictions
``Kh_c U diag(.) U' Y_t``; refit weights ``W_i = gamma_i X_i' U diag(.) U' Y``.

Cost: the per-alpha products dominate, about ``2 * alphas * n * p * v`` flops per candidate
(summed over folds), plus one p x p (or n_t x n_t) float64 eigendecomposition per fold and candidate.
Products with Y run in Y's precision (float32 -> float32); Grams and eigendecompositions are float64.

Memory: ``memory_budget_gb`` bounds the working set of the block loops (voxels per block, alphas
per mapping chunk). On top of it come the (p, v) cross-products buffer, which becomes the
returned weights (float32 on the CPU), the float64 scores (candidates, alphas, v) and the
transient float64 p x p buffers of each eigendecomposition. The feature spaces are not
concatenated (no copy of X); Y is never copied whole.
"""
from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

from encoding_core.common.arrays import as_matrix
from encoding_core.common.errors import InputError
from encoding_core.common.progress import CancelFlag, ProgressCallback, check_cancel
from encoding_core.models.ridge import (
    MAX_BLOCK_VOXELS,
    _alpha_correlations,
    _alpha_factors,
    _budget_bytes,
    _check_alphas,
    _check_folds,
    _device,
    _float64_gram,
    _kernel_eigh,
    _safe_ratio,
    _target_block,
    _voxel_blocks,
)

logger = logging.getLogger(__name__)

DEFAULT_GRID_STEPS = {1: 1, 2: 10, 3: 5}
"""Simplex grid resolution per number of spaces (11 candidates for 2 spaces, 21 for 3)."""

DEFAULT_N_RANDOM = 50
"""Dirichlet candidates drawn by the random search (4 or more spaces, or ``search='random'``)."""


# ----------------------------------------------------------------------------------------------
# Candidates on the simplex
# ----------------------------------------------------------------------------------------------

def simplex_grid(n_spaces: int, steps: int, include_boundary: bool = True) -> np.ndarray:
    """All points ``k / steps`` of the simplex (n_candidates, n_spaces), k non-negative integers.

    Rows are in lexicographic order of k with the first space's share decreasing. With
    ``include_boundary=False`` only strictly positive points are kept (every space used; what
    himalaya's random search can handle).
    """
    n_spaces = _positive_count(n_spaces, "n_spaces")
    steps = _positive_count(steps, "steps")
    if n_spaces == 1:
        return np.ones((1, 1))
    # integer compositions of `steps` into n_spaces parts (a few hundred rows at most)
    heads = np.array(list(itertools.product(range(steps, -1, -1), repeat=n_spaces - 1)), dtype=np.int64)
    heads = heads[heads.sum(axis=1) <= steps]
    parts = np.column_stack([heads, steps - heads.sum(axis=1)])
    if not include_boundary:
        parts = parts[(parts > 0).all(axis=1)]
        if len(parts) == 0:
            raise InputError(f"steps={steps} leaves no interior point for {n_spaces} spaces; use steps >= {n_spaces}.")
    return parts / float(steps)


def dirichlet_candidates(n_candidates: int, n_spaces: int, concentration: Any = (0.1, 1.0),
                         seed: int = 0) -> np.ndarray:
    """Random search candidates (n_candidates, n_spaces), himalaya-style.

    The first candidate is equal weights; the others are Dirichlet samples whose concentration
    cycles through ``concentration`` (0.1 favours corners, 1.0 is uniform on the simplex),
    drawn with ``numpy.random.default_rng(seed)``.
    """
    n_candidates = _positive_count(n_candidates, "n_candidates")
    n_spaces = _positive_count(n_spaces, "n_spaces")
    conc = np.atleast_1d(np.asarray(concentration, dtype=np.float64))
    if conc.ndim != 1 or conc.size == 0 or not np.all(np.isfinite(conc)) or np.any(conc <= 0):
        raise InputError(f"concentration must be positive finite numbers (e.g. (0.1, 1.0)); got {concentration!r}.")
    gen = np.random.default_rng(seed)
    per_conc = -(-n_candidates // len(conc))
    draws = np.stack([gen.dirichlet(np.full(n_spaces, c), per_conc) for c in conc], axis=1)  # (per, n_conc, m)
    out = draws.reshape(-1, n_spaces)[:n_candidates].copy()
    out[0] = 1.0 / n_spaces
    return out


# ----------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------

@dataclass
class BandedRidgeFit:
    """Result of :func:`banded_ridge_nested_cv`.

    weights: (p, v) float32 on the unscaled features, rows in space order (``space_slices``).
    n_features: features per space. candidates: (n_candidates, n_spaces) the gammas searched.
    best_candidates: (v,) row of ``candidates`` chosen per voxel; best_gammas: (n_spaces, v).
    best_alphas: (v,) in the caller's alpha units; penalties: (v,) the applied ``a`` (alpha times
    the largest singular value of the scaled training X when ``normalpha``, else alpha).
    cv_scores: (n_candidates, n_alphas, v) float32 mean inner-fold correlations.
    """

    weights: np.ndarray
    n_features: tuple
    candidates: np.ndarray
    best_candidates: np.ndarray
    best_gammas: np.ndarray
    best_alphas: np.ndarray
    penalties: np.ndarray
    cv_scores: np.ndarray
    alphas: np.ndarray = field(default_factory=lambda: np.zeros(0))
    normalpha: bool = True

    @property
    def space_slices(self) -> list:
        """Row slice of ``weights`` for each space."""
        edges = np.concatenate([[0], np.cumsum(self.n_features)]).astype(int)
        return [slice(int(a), int(b)) for a, b in itertools.pairwise(edges)]

    @property
    def deltas(self) -> np.ndarray:
        """himalaya's log space weights ``log(gamma_i / a^2)`` (n_spaces, v); -inf for gamma_i = 0."""
        with np.errstate(divide="ignore"):
            return np.log(self.best_gammas) - 2.0 * np.log(self.penalties)[None, :]

    def predict(self, spaces: Sequence[Any]) -> np.ndarray:
        """Joint predictions (n, v) float32 for the feature spaces (list of (n, p_i))."""
        xs = self._check_spaces(spaces)
        slices = self.space_slices
        out = xs[0] @ self.weights[slices[0]]
        for x, rows in zip(xs[1:], slices[1:]):
            out += x @ self.weights[rows]
        return out

    def predict_split(self, spaces: Sequence[Any]) -> np.ndarray:
        """Each space's contribution (n_spaces, n, v) float32; they sum to :meth:`predict`."""
        xs = self._check_spaces(spaces)
        return np.stack([x @ self.weights[rows] for x, rows in zip(xs, self.space_slices)])

    def split_r2(self, spaces: Sequence[Any], Y: Any) -> np.ndarray:
        """Each space's share of r² per voxel (n_spaces, v), product measure (see :func:`split_r2_score`)."""
        return split_r2_score(Y, self.predict_split(spaces))

    def _check_spaces(self, spaces: Sequence[Any]) -> list:
        xs = _as_space_list(spaces, "spaces")
        if len(xs) != len(self.n_features):
            raise InputError(f"The model was fitted on {len(self.n_features)} feature spaces but {len(xs)} were given; "
                             "pass the same spaces in the same order.")
        for i, (x, p_i) in enumerate(zip(xs, self.n_features)):
            if x.shape[1] != p_i:
                raise InputError(f"spaces[{i}] has {x.shape[1]} columns but the model was fitted on {p_i}; prepare the "
                                 "test features exactly like the training features (same layer, delays).")
        if len({x.shape[0] for x in xs}) != 1:
            raise InputError(f"The feature spaces have different numbers of rows {[x.shape[0] for x in xs]}; they must be the same TRs.")
        return [np.nan_to_num(x.astype(np.float32, copy=False)) for x in xs]


def split_r2_score(Y: Any, split_predictions: Any) -> np.ndarray:
    """Per-space share of r² (n_spaces, v), the product measure (himalaya ``r2_score_split``).

    With ``y`` the targets centred over rows and ``P_i`` the space predictions (n_spaces, n, v),
    ``r2_i = (2 y'P_i - P_i' sum_j P_j) / y'y``. The shares sum to ``1 - |y - sum_j P_j|^2 / |y|^2``,
    the r² of the joint prediction (equal to the usual r² when the targets are zero-mean, as
    z-scored data are). Constant voxels get 0.
    """
    y = as_matrix(Y, "Y", allow_bool=True).astype(np.float64)
    preds = np.asarray(split_predictions)
    if preds.ndim != 3 or preds.shape[1:] != y.shape:
        raise InputError(f"split_predictions must have shape (n_spaces, {y.shape[0]}, {y.shape[1]}) to match Y; "
                         f"got {preds.shape}.")
    y = np.nan_to_num(y - y.mean(axis=0))
    total = preds.sum(axis=0, dtype=np.float64)
    sst = np.einsum("nv,nv->v", y, y)
    inter = np.einsum("snv,nv->sv", preds, y, dtype=np.float64)
    cross = np.einsum("snv,nv->sv", preds, total, dtype=np.float64)
    ok = sst > 1e-30
    return np.where(ok, (2.0 * inter - cross) / np.where(ok, sst, 1.0), 0.0)


# ----------------------------------------------------------------------------------------------
# Fit
# ----------------------------------------------------------------------------------------------

def banded_ridge_nested_cv(spaces: Sequence[Any], Y: Any, folds: Sequence[tuple[Any, Any]], alphas: Any, *,
                           candidates: Any = None, search: str = "auto", grid_steps: Optional[int] = None,
                           n_random: int = DEFAULT_N_RANDOM, concentration: Any = (0.1, 1.0), seed: int = 0,
                           normalpha: bool = True, device: str = "cpu", memory_budget_gb: float = 2.0,
                           progress: Optional[ProgressCallback] = None,
                           cancel: Optional[CancelFlag] = None) -> BandedRidgeFit:
    """Banded ridge with the space scalings and the alpha chosen per voxel by inner CV.

    spaces: list of (n, p_i) feature arrays (FIR-delayed, z-scored), one per space; Y: (n, v)
    targets (float32 or float64, not copied as a whole); folds: inner folds
    ``[(train_idx, test_idx), ...]`` (see ``folds.make_folds``); alphas: (n_alphas,) positive, in
    the reference convention (module docstring). candidates: (n_candidates, n_spaces) gammas on
    the simplex; when None, ``search`` decides: ``"grid"`` (:func:`simplex_grid` with
    ``grid_steps``, default 10 for 2 spaces, 5 for 3), ``"random"`` (:func:`dirichlet_candidates`,
    ``n_random``, ``concentration``, ``seed``), ``"auto"`` (grid up to 3 spaces, else random).
    The CV score is the held-out Pearson correlation averaged over folds (constant predictions or
    targets score 0). ``progress(stage="fit", done, total, message)`` is called per voxel block;
    ``cancel.is_set()`` is checked between blocks.
    """
    xs = _as_space_list(spaces, "spaces")
    y_np = as_matrix(Y, "Y", allow_bool=True)
    n = xs[0].shape[0]
    if any(x.shape[0] != n for x in xs):
        raise InputError(f"The feature spaces have different numbers of rows {[x.shape[0] for x in xs]}; "
                         "they must be the same TRs.")
    if y_np.shape[0] != n:
        raise InputError(f"The feature spaces have {n} rows (TRs) but Y has {y_np.shape[0]}; align and trim them to the same TRs.")
    if y_np.shape[1] == 0:
        raise InputError("Nothing to fit: Y has 0 voxel columns.")
    if y_np.dtype not in (np.float32, np.float64):
        y_np = y_np.astype(np.float32)
    grid = _check_alphas(alphas)
    fold_list = _check_folds(folds, n)
    cands = _choose_candidates(len(xs), candidates, search, grid_steps, n_random, concentration, seed)
    dev = _device(device)
    dtype = torch.float64 if (y_np.dtype == np.float64 and dev.type != "mps") else torch.float32
    report = progress or (lambda stage, done, total, message="": None)

    n_features = tuple(int(x.shape[1]) for x in xs)
    setup = _Setup(features=_Features(xs, dtype, dev), y_np=y_np, folds=fold_list, grid=grid, candidates=cands,
                   column_space=np.repeat(np.arange(len(xs)), n_features), normalpha=bool(normalpha), dev=dev,
                   dtype=dtype, budget=_budget_bytes(memory_budget_gb), report=report, cancel=cancel)
    fitted = _fit_dual(setup) if n < sum(n_features) else _fit_primal(setup)
    return _result(fitted, setup, n_features)


class _Features:
    """The feature spaces side by side, ``X = [X_1, ..., X_m]`` (n, p), without a concatenated copy.

    Each space stays in the caller's float precision on the host (a copy only for a space that
    holds NaN/inf, which become 0) and in the working precision on the device (no copy for
    float32 on the CPU).
    """

    def __init__(self, xs: list, dtype: torch.dtype, dev: torch.device):
        cleaned = []
        for i, x in enumerate(xs):
            bad = ~np.isfinite(x)
            if bad.any():
                logger.warning("spaces[%d] holds %d NaN/inf values; they are treated as 0.", i, int(bad.sum()))
                x = np.where(bad, 0.0, x).astype(x.dtype)
            cleaned.append(torch.from_numpy(np.ascontiguousarray(x)))
        self.host = cleaned
        self.dev = [x.to(dev, dtype) for x in cleaned]
        edges = np.concatenate([[0], np.cumsum([x.shape[1] for x in cleaned])])
        self.slices = [slice(int(lo), int(hi)) for lo, hi in itertools.pairwise(edges)]
        self.n, self.p = int(cleaned[0].shape[0]), int(edges[-1])

    def rows64(self, index: np.ndarray) -> torch.Tensor:
        """Rows of X (len(index), p) float64 on the host."""
        rows = torch.from_numpy(index)
        return torch.cat([x[rows].double() for x in self.host], dim=1)

    def rows(self, index: np.ndarray) -> torch.Tensor:
        """Rows of X (len(index), p) in the working precision on the device."""
        rows = torch.from_numpy(index).to(self.dev[0].device)
        return torch.cat([x[rows] for x in self.dev], dim=1)

    def gram64(self) -> torch.Tensor:
        """X'X (p, p) float64, accumulated over chunks of rows (X is never copied whole to float64)."""
        out = torch.zeros((self.p, self.p), dtype=torch.float64)
        for start in range(0, self.n, 2048):
            chunk = torch.cat([x[start:start + 2048].double() for x in self.host], dim=1)
            out.addmm_(chunk.T, chunk)
        return out

    def cross(self, y: torch.Tensor, out: torch.Tensor) -> None:
        """``out[:] = X'y`` for all rows, y (n, B) on the device (may be a strided view)."""
        for x, rows in zip(self.dev, self.slices):
            torch.matmul(x.T, y, out=out[rows])


@dataclass
class _Fitted:
    weights: np.ndarray           # (p, v) float32
    scores: np.ndarray            # (c, k, v) float64 mean inner-fold correlations
    penalty_scale: np.ndarray     # (c,) S_max of the full scaled X per used candidate (normalpha), else 1
    best_candidate: np.ndarray    # (v,)
    best_alpha: np.ndarray        # (v,) index into the grid


@dataclass
class _Setup:
    features: _Features
    y_np: np.ndarray              # (n, v)
    folds: list
    grid: np.ndarray              # (k,)
    candidates: np.ndarray        # (c, m)
    column_space: np.ndarray      # (p,) space of each column
    normalpha: bool
    dev: torch.device
    dtype: torch.dtype
    budget: float                 # bytes
    report: Any
    cancel: Any

    @property
    def itemsize(self) -> int:
        return 8 if self.dtype == torch.float64 else 4

    def column_scales(self, candidate: int) -> torch.Tensor:
        """sqrt(gamma) of each column (p,) float64 for one candidate."""
        return torch.from_numpy(np.sqrt(self.candidates[candidate])[self.column_space])


class _FitProgress:
    """Counts the fit's steps; each step checks for cancellation and reports ``step / total``."""

    def __init__(self, setup: "_Setup", total: int) -> None:
        self.setup, self.total, self.step = setup, total, 0

    def advance(self, message: str) -> None:
        self.step += 1
        check_cancel(self.setup.cancel)
        self.setup.report("fit", self.step, self.total, message)

    def candidate_ticker(self, fold_number: int, cand: int, n_cands: int) -> Callable[[], None]:
        """The tick of one fold's candidate, for :func:`_score_blocks`."""
        n_folds = len(self.setup.folds)
        return lambda: self.advance(f"inner fold {fold_number + 1}/{n_folds}, candidate {cand + 1}/{n_cands}")

    def done(self, message: str) -> None:
        self.setup.report("fit", self.total, self.total, message)


def _fit_primal(s: _Setup) -> _Fitted:
    """Nested CV and refit in the primal (p x p) form; see the module docstring, steps 1-6."""
    feats, y_np, dev, dtype = s.features, s.y_np, s.dev, s.dtype
    n, p = feats.n, feats.p
    n_voxels = y_np.shape[1]
    n_cands, n_alphas = len(s.candidates), len(s.grid)
    max_held = max(len(te) for _, te in s.folds)
    max_removed = max(n - len(tr) for tr, _ in s.folds)
    gram = feats.gram64()
    # Working set during the block loops: the float64 Gram and fold Gram, the held-out rows, the
    # removed rows, the mapping of a chunk of alphas (at most a quarter of the budget); per voxel
    # the larger of the X'Y pass and the scoring pass. (X itself is the caller's; the transient
    # float64 p x p buffers of the eigendecomposition are not alive at the same time as a block.)
    fixed = s.itemsize * max_removed * p + 8 * (2 * p * p + max_held * p)
    block, alpha_chunk = _plan(s.budget, s.itemsize, n_alphas, max_held, p, n_voxels, fixed,
                               xy_per_voxel=max_removed + 2 * p, scoring_per_voxel=0)
    blocks = _voxel_blocks(n_voxels, block)
    targets = _Targets(y_np, blocks, dtype, dev)
    n_chunks = -(-n_alphas // alpha_chunk) if alpha_chunk else 1  # at most; saturated alphas are scored once
    progress = _FitProgress(s, len(s.folds) * len(blocks) * (1 + n_cands * n_chunks) + 2 * len(blocks))
    eps = torch.finfo(dtype).eps
    scores = torch.zeros((n_cands, n_alphas, n_voxels), dtype=torch.float64)
    cross = torch.empty((p, n_voxels), dtype=dtype, device=dev)  # C_f per fold, then C = X'Y
    for fold_number, (train_idx, test_idx) in enumerate(s.folds):
        # Rows outside the training set (held out, or trimmed away) are removed from G and C.
        removed_idx = np.setdiff1d(np.arange(n), train_idx)
        downdate = len(removed_idx) <= len(train_idx)
        if downdate:
            removed_x = feats.rows64(removed_idx)
            fold_gram = gram - removed_x.T @ removed_x
            del removed_x
            removed_x_dev = feats.rows(removed_idx)
        else:
            train_x = feats.rows64(train_idx)
            fold_gram = train_x.T @ train_x
            del train_x
            train_x_dev = feats.rows(train_idx)
        # 1) C_f = X'Y - X_r'Y_r (or X_t'Y_t), one pass over Y shared by all candidates.
        for cols in blocks:
            if downdate:
                feats.cross(targets.get(None, cols), out=cross[:, cols])
                cross[:, cols] -= removed_x_dev.T @ targets.get(removed_idx, cols)
            else:
                cross[:, cols] = train_x_dev.T @ targets.get(train_idx, cols)
            progress.advance(f"inner fold {fold_number + 1}/{len(s.folds)}: X'Y")
        removed_x_dev = train_x_dev = None
        held_x = feats.rows64(test_idx)
        held_c = held_x - held_x.mean(dim=0)
        del held_x
        for cand in range(n_cands):
            # 2) one eigendecomposition of the scaled training Gram D G_f D per fold and candidate.
            d = s.column_scales(cand)
            evals, evecs = _eigh(fold_gram * d[:, None] * d[None, :])
            evals = evals.clamp(min=0.0)
            shrink, scored, representative = _alpha_factors(evals, s.grid, s.normalpha, eps)
            held_rotated = ((held_c * d) @ evecs).to(dev, dtype)            # Xh_c D V (n_h, p)
            right = (evecs.T * d).to(dev, dtype)                             # V' D (p, p)
            del evecs
            scored_shrink = shrink[:, scored].to(dev, dtype)

            tick = progress.candidate_ticker(fold_number, cand, n_cands)

            # 3) all scored alphas per voxel block.
            corr = _score_blocks(held_rotated, scored_shrink, right, blocks, alpha_chunk,
                                 operand=lambda cols: cross[:, cols],
                                 held=lambda cols, rows=test_idx: targets.get(rows, cols), tick=tick)
            del held_rotated, right
            scores[cand] += corr[representative] / len(s.folds)
        del fold_gram, held_c

    # 5) choose (candidate, alpha) per voxel.
    mean_scores = scores.numpy()
    best_candidate, best_alpha = _choose(mean_scores, s.grid)

    # 6) refit: C = X'Y into the same buffer, then per chosen candidate one eigendecomposition.
    for cols in blocks:
        feats.cross(targets.get(None, cols), out=cross[:, cols])
        progress.advance("refit: X'Y")
    in_place = dtype == torch.float32 and dev.type == "cpu"
    weights = cross.numpy() if in_place else np.empty((p, n_voxels), dtype=np.float32)
    penalty_scale = np.ones(n_cands)
    best_alpha_dev = torch.from_numpy(best_alpha).to(dev)
    for cand in np.unique(best_candidate):
        d = s.column_scales(int(cand))
        evals, evecs = _eigh(gram * d[:, None] * d[None, :])
        evals = evals.clamp(min=0.0)
        penalty_scale[cand] = math.sqrt(float(evals.max())) if s.normalpha else 1.0
        full_shrink = _alpha_factors(evals, s.grid, s.normalpha, 0.0)[0].to(dev, dtype)
        left = (evecs * d[:, None]).to(dev, dtype)                           # D V (p, p)
        del evecs
        voxels = np.flatnonzero(best_candidate == cand)
        for start in range(0, len(voxels), block):
            chunk = torch.from_numpy(voxels[start:start + block]).to(dev)
            rotated = left.T @ cross[:, chunk]
            chunk_weights = left @ (full_shrink[:, best_alpha_dev[chunk]] * rotated)
            if in_place:
                cross[:, chunk] = chunk_weights
            else:
                weights[:, chunk.cpu().numpy()] = chunk_weights.float().cpu().numpy()
            check_cancel(s.cancel)
    progress.done("refit")
    return _Fitted(weights, mean_scores, penalty_scale, best_candidate, best_alpha)


def _fit_dual(s: _Setup) -> _Fitted:
    """Nested CV and refit in kernel form (n < total p); see the module docstring."""
    feats, y_np, dev, dtype = s.features, s.y_np, s.dev, s.dtype
    n, p = feats.n, feats.p
    n_voxels = y_np.shape[1]
    n_spaces = s.candidates.shape[1]
    n_cands, n_alphas = len(s.candidates), len(s.grid)
    max_held = max(len(te) for _, te in s.folds)
    max_train = max(len(tr) for tr, _ in s.folds)
    kernels = torch.stack([_float64_gram(x, rows=True) for x in feats.host])  # (m, n, n) float64
    # Working set: the kernels (all, one fold's training and held-out parts, the combined one,
    # eigenvectors), the mapping of a chunk of alphas (at most a quarter of the budget); per
    # voxel the training and held-out targets and the predictions, or the refit's (n, b) blocks.
    fixed = 8 * ((2 * n_spaces + 3) * n * n)
    block, alpha_chunk = _plan(s.budget, s.itemsize, n_alphas, max_held, max_train, n_voxels, fixed,
                               xy_per_voxel=3 * n + p, scoring_per_voxel=max_train)
    blocks = _voxel_blocks(n_voxels, block)
    targets = _Targets(y_np, blocks, dtype, dev)
    n_chunks = -(-n_alphas // alpha_chunk) if alpha_chunk else 1  # at most; saturated alphas are scored once
    progress = _FitProgress(s, len(s.folds) * len(blocks) * n_cands * n_chunks + len(blocks))
    eps = torch.finfo(dtype).eps
    scores = torch.zeros((n_cands, n_alphas, n_voxels), dtype=torch.float64)
    for fold_number, (train_idx, test_idx) in enumerate(s.folds):
        train, held = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
        train_kernels = kernels[:, train][:, :, train]                      # (m, n_t, n_t)
        held_kernels = kernels[:, held][:, :, train]                        # (m, n_h, n_t)
        for cand in range(n_cands):
            gamma = torch.from_numpy(s.candidates[cand])
            evals, evecs = _kernel_eigh_threads(torch.tensordot(gamma, train_kernels, dims=1))
            shrink, scored, representative = _alpha_factors(evals, s.grid, s.normalpha, eps)
            shrink = shrink * (evals > 0).unsqueeze(1)
            held_kernel = torch.tensordot(gamma, held_kernels, dims=1)
            held_rotated = ((held_kernel - held_kernel.mean(dim=0)) @ evecs).to(dev, dtype)  # (n_h, n_t)
            del held_kernel
            evecs_t = evecs.T.to(dev, dtype)
            del evecs
            scored_shrink = shrink[:, scored].to(dev, dtype)

            tick = progress.candidate_ticker(fold_number, cand, n_cands)

            corr = _score_blocks(held_rotated, scored_shrink, evecs_t, blocks, alpha_chunk,
                                 operand=lambda cols, rows=train_idx: targets.get(rows, cols),
                                 held=lambda cols, rows=test_idx: targets.get(rows, cols), tick=tick)
            del held_rotated, evecs_t
            scores[cand] += corr[representative] / len(s.folds)
        del train_kernels, held_kernels

    mean_scores = scores.numpy()
    best_candidate, best_alpha = _choose(mean_scores, s.grid)
    weights = np.empty((p, n_voxels), dtype=np.float32)
    penalty_scale = np.ones(n_cands)
    best_alpha_dev = torch.from_numpy(best_alpha).to(dev)
    for cand in np.unique(best_candidate):
        gamma = s.candidates[cand]
        evals, evecs = _kernel_eigh_threads(torch.tensordot(torch.from_numpy(gamma), kernels, dims=1))
        penalty_scale[cand] = math.sqrt(float(evals.max())) if s.normalpha else 1.0
        full_shrink = (_alpha_factors(evals, s.grid, s.normalpha, 0.0)[0] * (evals > 0).unsqueeze(1)).to(dev, dtype)
        evecs_dev = evecs.to(dev, dtype)
        del evecs
        voxels = np.flatnonzero(best_candidate == cand)
        for start in range(0, len(voxels), block):
            chunk = voxels[start:start + block]
            chunk_dev = torch.from_numpy(chunk).to(dev)
            dual = evecs_dev @ (full_shrink[:, best_alpha_dev[chunk_dev]] * (evecs_dev.T @ targets.get(None, chunk)))
            for x, rows, g in zip(feats.dev, feats.slices, gamma):  # W_i = gamma_i X_i' dual
                weights[rows, chunk] = (g * (x.T @ dual)).float().cpu().numpy()
            check_cancel(s.cancel)
        del evecs_dev
    progress.done("refit")
    return _Fitted(weights, mean_scores, penalty_scale, best_candidate, best_alpha)


EIGH_THREADS = 1
"""Threads for the float64 eigendecompositions. LAPACK's tridiagonal reduction gains little from
a second thread and loses badly when the cores are shared: on the 2-core development machine
under load, a 1856 x 1856 ``eigh`` took 15.6 s with 2 threads and 2.7 s with 1."""


def _eigh(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh`` with :data:`EIGH_THREADS` intra-op threads (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, EIGH_THREADS))
    try:
        return torch.linalg.eigh(matrix)
    finally:
        torch.set_num_threads(threads)


def _kernel_eigh_threads(kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`encoding_core.models.ridge._kernel_eigh` with :data:`EIGH_THREADS` threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, EIGH_THREADS))
    try:
        return _kernel_eigh(kernel)
    finally:
        torch.set_num_threads(threads)


class _Targets:
    """Row x column blocks of Y as tensors. Y is checked for NaN/inf once (one pass over the
    columns); only when some are found is every block cleaned (NaN/inf -> 0)."""

    def __init__(self, y_np: np.ndarray, blocks: list, dtype: torch.dtype, dev: torch.device):
        self.y_np, self.dtype, self.dev = y_np, dtype, dev
        bad = [int((~np.isfinite(y_np[:, cols])).any(axis=0).sum()) for cols in blocks]
        self.n_bad_voxels = int(sum(bad))
        if self.n_bad_voxels:
            logger.warning("%d of %d voxels hold NaN/inf values; those values are treated as 0.", self.n_bad_voxels,
                           y_np.shape[1])

    def get(self, rows: Optional[np.ndarray], cols: Any) -> torch.Tensor:
        """Y[rows, cols] (all rows when ``rows`` is None: a strided view of a column slice, no copy)."""
        if self.n_bad_voxels:
            return _target_block(self.y_np, slice(None) if rows is None else rows, cols, self.dtype, self.dev)[0]
        if rows is None:
            values = self.y_np[:, cols]
            if not isinstance(cols, slice):
                values = np.ascontiguousarray(values)
        else:
            values = np.ascontiguousarray(self.y_np[rows, cols])
        return torch.from_numpy(values).to(self.dev, self.dtype)


def _plan(budget: float, itemsize: int, n_alphas: int, n_held: int, width: int, n_voxels: int, fixed: float,
          xy_per_voxel: int, scoring_per_voxel: int) -> tuple[int, int]:
    """(voxels per block, alphas per mapping chunk; 0 = no mapping) for a memory budget in bytes.

    The mapping (alphas * n_h, width) costs ``alphas * n_h * width^2`` flops per fold and
    candidate and saves ``width^2`` flops per voxel, so it pays when alphas * n_h < voxels; its
    alphas are split into equal chunks of at most a quarter of the budget each (same flops,
    the blocks are then scored once per chunk).
    """
    per_alpha = itemsize * n_held * width
    chunk = 0
    if n_alphas * n_held < n_voxels and budget / 4 >= per_alpha:
        n_chunks = -(-n_alphas // min(n_alphas, int(budget / 4 // per_alpha)))
        chunk = -(-n_alphas // n_chunks)
    scoring = (chunk * n_held if chunk else n_held + width) + 3 * n_held + scoring_per_voxel
    per_voxel = itemsize * max(xy_per_voxel, scoring) + 8 * 3 * n_alphas
    return _banded_block_size(budget, fixed + chunk * per_alpha, per_voxel), chunk


def _score_blocks(held_rotated: torch.Tensor, shrink: torch.Tensor, right: torch.Tensor, blocks: list,
                  alpha_chunk: int, operand: Any, held: Any, tick: Any) -> torch.Tensor:
    """Held-out correlations (k, v) float64 of every scored alpha for one fold and candidate.

    Predictions are ``held_rotated diag(shrink_a) right @ operand(cols)`` (primal: operand C_f,
    right V'D; kernel form: operand Y_t, right U'). With ``alpha_chunk`` the mapping of each
    chunk of alphas is formed once and every block is one product with it; otherwise
    ``right @ operand`` is formed per block and each alpha is one product.
    """
    n_scored = shrink.shape[1]
    n_voxels = blocks[-1].stop
    corr = torch.empty((n_scored, n_voxels), dtype=torch.float64)
    if not alpha_chunk:
        for cols in blocks:
            corr[:, cols] = _alpha_correlations(held_rotated, shrink, right @ operand(cols), held(cols))
            tick()
        return corr
    n_held = held_rotated.shape[0]
    for start in range(0, n_scored, alpha_chunk):  # a few chunks of alphas
        part = slice(start, min(start + alpha_chunk, n_scored))
        mapping = _mapping(held_rotated, shrink[:, part], right)
        for cols in blocks:
            corr[part, cols] = _mapped_correlations(mapping, operand(cols), held(cols), part.stop - part.start, n_held)
            tick()
        del mapping
    return corr


def _mapping(held_rotated: torch.Tensor, shrink: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``M = [held_rotated diag(shrink_a) right]_a`` stacked over the k scored alphas (k * n_h, q)."""
    n_scored, n_held, width = shrink.shape[1], held_rotated.shape[0], right.shape[1]
    mapping = torch.empty((n_scored, n_held, width), dtype=right.dtype, device=right.device)
    for slot in range(n_scored):  # one product per alpha (a handful)
        torch.matmul(held_rotated * shrink[:, slot], right, out=mapping[slot])
    return mapping.reshape(-1, width)


def _mapped_correlations(mapping: torch.Tensor, cross: torch.Tensor, y_held: torch.Tensor, n_scored: int,
                         n_held: int) -> torch.Tensor:
    """Correlation (k, B) float64 of the predictions ``mapping @ cross`` (k stacked alphas of
    n_h centred rows) with the held-out targets (n_h, B).

    The predictions are formed transposed, (B, k, n_h), so that both reductions over the
    held-out rows run along contiguous memory (a norm and one batched product), without
    temporaries of the predictions' size.
    """
    n_block = cross.shape[1]
    preds = (cross.T @ mapping.T).view(n_block, n_scored, n_held)
    y_centred = (y_held - y_held.mean(dim=0)).T.contiguous()                  # (B, n_h)
    pred_ss = torch.linalg.vector_norm(preds, dim=2).double() ** 2             # (B, k)
    numerator = torch.bmm(preds, y_centred.unsqueeze(2)).squeeze(2).double()   # (B, k)
    del preds
    y_ss = (y_centred * y_centred).sum(dim=1).double()
    return _safe_ratio(numerator, torch.sqrt(pred_ss * y_ss[:, None])).T


def _choose(mean_scores: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best (candidate, alpha index) per voxel from (c, k, v) scores: first maximum over the
    candidates in order and the alphas sorted ascending (ties: earlier candidate, smaller alpha)."""
    n_cands, n_alphas, n_voxels = mean_scores.shape
    ascending = np.argsort(grid, kind="stable")
    flat = np.argmax(mean_scores[:, ascending, :].reshape(n_cands * n_alphas, n_voxels), axis=0)
    return (flat // n_alphas).astype(np.int64), ascending[flat % n_alphas].astype(np.int64)


def _result(f: _Fitted, s: _Setup, n_features: tuple) -> BandedRidgeFit:
    n_voxels = f.scores.shape[2]
    n_flat = int((~f.scores.reshape(-1, n_voxels).any(axis=0)).sum())
    if n_flat:
        logger.warning("%d of %d voxels score 0 for every candidate and alpha (constant or missing data); they get "
                       "the first candidate and the smallest alpha.", n_flat, n_voxels)
    best_alphas = s.grid[f.best_alpha]
    return BandedRidgeFit(
        weights=f.weights, n_features=n_features, candidates=s.candidates.copy(), best_candidates=f.best_candidate,
        best_gammas=s.candidates[f.best_candidate].T.copy(), best_alphas=best_alphas,
        penalties=best_alphas * f.penalty_scale[f.best_candidate], cv_scores=f.scores.astype(np.float32),
        alphas=s.grid.copy(), normalpha=s.normalpha)


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------

def _as_space_list(spaces: Any, name: str) -> list:
    if isinstance(spaces, np.ndarray) or torch.is_tensor(spaces) or not isinstance(spaces, (list, tuple)):
        raise InputError(f"{name} must be a list of (n, p_i) feature arrays, one per feature space; "
                         f"got {type(spaces).__name__}.")
    if len(spaces) == 0:
        raise InputError(f"{name} is empty; give at least one (n, p_i) feature array.")
    xs = []
    for i, x in enumerate(spaces):
        arr = as_matrix(x, f"{name}[{i}]", allow_bool=True)
        if arr.shape[1] == 0:
            raise InputError(f"{name}[{i}] has no feature columns; drop that space or give it features.")
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
        xs.append(arr)
    return xs


def _choose_candidates(n_spaces: int, candidates: Any, search: str, grid_steps: Optional[int], n_random: int,
                       concentration: Any, seed: int) -> np.ndarray:
    if candidates is not None:
        try:
            cands = np.asarray(candidates, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError("candidates must be a (n_candidates, n_spaces) array of gammas on the simplex.") from None
        if cands.ndim == 1 and n_spaces == len(cands):
            cands = cands[None, :]
        if cands.ndim != 2 or cands.shape[1] != n_spaces or len(cands) == 0:
            raise InputError(f"candidates must have shape (n_candidates, {n_spaces}) (one gamma per space); got {cands.shape}.")
        if not np.all(np.isfinite(cands)) or np.any(cands < 0) or np.any(np.abs(cands.sum(axis=1) - 1.0) > 1e-6):
            bad = int(np.flatnonzero(~np.isfinite(cands).all(axis=1) | (cands < 0).any(axis=1)
                                     | (np.abs(cands.sum(axis=1) - 1.0) > 1e-6))[0])
            raise InputError(f"candidates[{bad}] = {cands[bad].tolist()} is not on the simplex; every row must be "
                             "non-negative and sum to 1 (divide each row by its sum).")
        return cands
    if search not in ("auto", "grid", "random"):
        raise InputError(f"search must be 'auto', 'grid' or 'random'; got {search!r}.")
    if search == "random" or (search == "auto" and n_spaces > 3):
        return dirichlet_candidates(n_random, n_spaces, concentration, seed)
    steps = grid_steps if grid_steps is not None else DEFAULT_GRID_STEPS.get(n_spaces, 3)
    return simplex_grid(n_spaces, steps)


def _positive_count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive whole number; got {value!r}.")
    return int(value)


def _banded_block_size(budget: float, fixed: float, per_voxel: float) -> int:
    """Voxels per block so that ``fixed + block * per_voxel`` bytes stay within the budget."""
    room = max(budget - fixed, per_voxel)
    return int(max(1, min(MAX_BLOCK_VOXELS, room // per_voxel)))
