"""Ridge regression with per-voxel regularisation chosen by inner cross-validation.

Convention (the reference's): with the SVD ``X = U S V'``, the weights for penalty ``alpha``
are ``W = V diag(S / (S^2 + a^2)) U' Y`` where ``a = alpha * S[0]`` when ``normalpha`` (``S[0]``
the largest singular value of the training X) and ``a = alpha`` otherwise. This equals
scikit-learn ``Ridge(alpha=a**2, fit_intercept=False)``.

How :func:`ridge_nested_cv` is fast (same numbers as refactorising every fold):

1. One pass over Y computes ``C = X'Y`` (p, v); ``G = X'X`` (p, p) is float64.
2. Each inner fold's training Gram is a *downdate*, ``G_f = G - Xh'Xh`` (Xh = held-out rows),
   eigendecomposed once (float64): ``G_f = V diag(s^2) V'``. Its training ``X'Y`` is
   ``C_f = C - Xh'Yh``.
3. Per voxel block, the held-out predictions (centred over the held-out rows) are
   ``P_alpha = (Xh_c V) diag(1 / (s^2 + a^2)) (V' C_f)``; ``Xh_c V`` (n_h, p) is built once per
   fold without touching Y. When alphas x held-out rows is small (fewer than the voxels, and
   the matrix within 1/8 of the memory budget) ``M_alpha = Xh_c V diag(.) V'`` is formed once
   per fold and all alphas are one product with ``C_f`` per block; otherwise ``V' C_f`` is
   formed per block and each alpha is one (n_h, p) x (p, block) product. Either way the
   correlation of every alpha with the held-out data is reduced per voxel block, never
   keeping (alphas x TRs x voxels).
4. Alphas with ``s_max^2 / a^2`` below the float precision give predictions that differ only
   by a scale factor, hence identical correlations; they are scored once (exact ties).
5. The best alpha per voxel is the argmax of the mean inner-fold correlation; exact ties go
   to the smaller alpha. The refit uses one eigendecomposition of ``G``:
   ``W = V diag(1 / (s^2 + a_v^2)) V' C`` with each voxel's own alpha, vectorised over voxels.

Products with Y run in Y's precision (float32 data -> float32 products, float64 data ->
float64); Gram matrices and eigendecompositions are always float64.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Optional, Sequence

import numpy as np
import torch

from encoding_core.common.errors import InputError
from encoding_core.common.arrays import as_matrix
from encoding_core.common.progress import CancelFlag, ProgressCallback, check_cancel

logger = logging.getLogger(__name__)

MAX_BLOCK_VOXELS = 2048
"""Upper bound on the voxel block size (larger blocks are not faster, only bigger)."""


class RidgeFit:
    """Result of :func:`ridge_nested_cv`.

    weights: (p, v) float32. best_alphas: (v,) in the caller's alpha units.
    cv_scores: (n_alphas, v) float32, mean inner-fold correlation, rows in ``alphas`` order.
    alphas: (n_alphas,) the grid as given. alpha_scale: S[0] of the full training X (the
    factor applied to alphas when ``normalpha``; 1.0 otherwise).

    A fit in kernel form (fewer TRs than features) keeps the training X (n, p), the kernel's
    eigenvectors U (n, n) and the rotated dual coefficients R (n, v) instead (dual coefficients
    ``U R``): ``weights = X' U R`` is formed on first access (p x n x v flops, the largest
    product of such a fit), and :meth:`predict` uses ``((X_new X') U) R``, which never forms
    it. Cross-validated runs only predict, so they skip it.
    """

    def __init__(self, weights: Optional[np.ndarray] = None, best_alphas: Optional[np.ndarray] = None,
                 cv_scores: Optional[np.ndarray] = None, alphas: Optional[np.ndarray] = None,
                 alpha_scale: float = 1.0, dual: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None) -> None:
        if (weights is None) == (dual is None):
            raise ValueError("RidgeFit needs either weights (p, v) or dual = (train X (n, p), U (n, r), R (r, v)).")
        self._weights = weights
        self._dual = dual
        self.best_alphas = best_alphas
        self.cv_scores = cv_scores
        self.alphas = np.zeros(0) if alphas is None else alphas
        self.alpha_scale = float(alpha_scale)

    @property
    def n_features(self) -> int:
        return int(self._weights.shape[0] if self._weights is not None else self._dual[0].shape[1])

    @property
    def weights(self) -> np.ndarray:
        """(p, v) float32 (formed from the dual coefficients on first access for a kernel-form fit)."""
        if self._weights is None:
            train_x, basis, rotated = self._dual
            weights = np.empty((train_x.shape[1], rotated.shape[1]), dtype=np.float32)
            for cols in _voxel_blocks(rotated.shape[1], MAX_BLOCK_VOXELS):  # in the fit's precision
                weights[:, cols] = train_x.T @ (basis @ rotated[:, cols])
            self._weights = weights
        return self._weights

    def predict(self, X: Any) -> np.ndarray:
        """Predictions (n, v) float32 for features X (n, p)."""
        values = as_matrix(X, "X", allow_bool=True)
        if values.shape[1] != self.n_features:
            raise InputError(
                f"X has {values.shape[1]} columns but the model was fitted on {self.n_features} features; "
                "prepare the test features exactly like the training features (same layer, delays)."
            )
        values = np.nan_to_num(values.astype(np.float32, copy=False))
        if self._weights is None:
            train_x, basis, rotated = self._dual
            return (((values.astype(rotated.dtype, copy=False) @ train_x.T) @ basis) @ rotated).astype(np.float32,
                                                                                                      copy=False)
        return values @ self._weights


def ridge_fit(X: Any, Y: Any, alpha: Any, normalpha: bool = False) -> np.ndarray:
    """Plain ridge weights (p, v) float64 in the reference convention (see module docstring).

    ``alpha``: a scalar or one value per voxel (v,). With ``normalpha`` it is multiplied by
    the largest singular value of X.
    """
    x = np.nan_to_num(as_matrix(X, "X", allow_bool=True).astype(np.float64))
    y = np.nan_to_num(as_matrix(Y, "Y", allow_bool=True).astype(np.float64))
    if x.shape[0] != y.shape[0]:
        raise InputError(f"X has {x.shape[0]} rows but Y has {y.shape[0]}; they must be the same TRs.")
    a = np.asarray(alpha, dtype=np.float64)
    if a.ndim > 1 or (a.ndim == 1 and len(a) != y.shape[1]) or np.any(~np.isfinite(a)) or np.any(a < 0):
        raise InputError(f"alpha must be a non-negative number or one per voxel ({y.shape[1]}); got shape {a.shape}.")
    U, S, Vt = np.linalg.svd(x, full_matrices=False)
    if normalpha:
        a = a * (S[0] if len(S) else 0.0)
    a2 = np.broadcast_to(a, (y.shape[1],)) ** 2
    denom = S[:, None] ** 2 + a2[None, :]
    shrink = np.divide(S[:, None], denom, out=np.zeros_like(denom), where=denom > 0)
    return Vt.T @ (shrink * (U.T @ y))


def ridge_nested_cv(X: Any, Y: Any, folds: Sequence[tuple[Any, Any]], alphas: Any, normalpha: bool = True,
                    single_alpha: bool = False, device: str = "cpu", memory_budget_gb: float = 2.0,
                    progress: Optional[ProgressCallback] = None, cancel: Optional[CancelFlag] = None,
                    score: str = "r") -> RidgeFit:
    """Fit ridge with the alpha chosen per voxel (or one for all) by inner cross-validation.

    X: (n, p) features; Y: (n, v) targets (float32 or float64; not copied as a whole);
    folds: inner folds ``[(train_idx, test_idx), ...]`` over the n rows (see ``folds.make_folds``);
    alphas: (n_alphas,) positive penalties (reference units, see module docstring).
    The CV score is the Pearson correlation on the held-out rows averaged over folds
    (constant predictions or targets score 0); with ``score="r2"`` it is the reference's
    ``use_corr=False`` score ``sign(R2) sqrt(|R2|)``, ``R2 = 1 - var(y - pred) / var(y)`` (means
    removed, as its unbiased ``torch.var``). ``memory_budget_gb`` bounds the per-block
    working set. ``progress(stage="fit", done, total, message)`` is called per voxel block;
    ``cancel.is_set()`` is checked between blocks.
    """
    x_np = as_matrix(X, "X", allow_bool=True)
    y_np = as_matrix(Y, "Y", allow_bool=True)
    n, p = x_np.shape
    n_voxels = y_np.shape[1]
    if y_np.shape[0] != n:
        raise InputError(f"X has {n} rows (TRs) but Y has {y_np.shape[0]}; align and trim them to the same TRs.")
    if n_voxels == 0 or p == 0:
        raise InputError(f"Nothing to fit: X has {p} feature columns and Y has {n_voxels} voxel columns.")
    if y_np.dtype not in (np.float32, np.float64):
        y_np = y_np.astype(np.float32)
    grid = _check_alphas(alphas)
    fold_list = _check_folds(folds, n)
    if score not in ("r", "r2"):
        raise InputError(f"score must be 'r' (correlation) or 'r2' (signed root of R^2); got {score!r}.")
    dev = _device(device)
    dtype = torch.float64 if (y_np.dtype == np.float64 and dev.type != "mps") else torch.float32
    report = progress or (lambda stage, done, total, message="": None)
    check_y = not _all_finite(y_np)

    if x_np.dtype not in (np.float32, np.float64):
        x_np = x_np.astype(np.float64)
    bad_x = ~np.isfinite(x_np)
    if bad_x.any():
        logger.warning("X holds %d NaN/inf values; they are treated as 0.", int(bad_x.sum()))
        x_np = np.where(bad_x, 0.0, x_np).astype(x_np.dtype)
    del bad_x
    x_host = torch.from_numpy(np.ascontiguousarray(x_np))  # X is never copied whole to float64

    def rows64(index: np.ndarray) -> torch.Tensor:
        return x_host[torch.from_numpy(index)].double()

    if n < p:  # fewer TRs than features: n x n kernel matrices instead of p x p Gram matrices
        return _nested_cv_dual(x_host, dev, y_np, fold_list, grid, normalpha, single_alpha, dtype,
                               memory_budget_gb, report, cancel, score, check_y)
    x_dev = x_host.to(dev, dtype)  # no copy for float32 X and float32 Y on the CPU
    gram = _float64_gram(x_host)

    block = _block_size(memory_budget_gb, n, p, max(len(te) for _, te in fold_list), len(grid), dtype)
    itemsize = 8 if dtype == torch.float64 else 4
    mapping_bytes = float(memory_budget_gb) * 1024 ** 3 / 8  # cap on the per-fold (alphas x n_h, p) mapping
    blocks = _voxel_blocks(n_voxels, block)
    total_steps = len(blocks) * (len(fold_list) + 2)
    step = 0

    # 1) C = X'Y, one pass over Y.
    cross = torch.empty((p, n_voxels), dtype=dtype, device=dev)
    n_bad_voxels = 0
    for cols in blocks:
        y_block, n_bad = _target_block(y_np, slice(None), cols, dtype, dev, check_y)
        n_bad_voxels += n_bad
        cross[:, cols] = x_dev.T @ y_block
        del y_block
        step += 1
        check_cancel(cancel)
        report("fit", step, total_steps, "X'Y")
    if n_bad_voxels:
        logger.warning("%d of %d voxels hold NaN/inf values; those values are treated as 0.", n_bad_voxels, n_voxels)

    # 2-3) inner folds: downdated Gram, eigendecomposition, all alphas per voxel block.
    scores = torch.zeros((len(grid), n_voxels), dtype=torch.float64)
    eps = torch.finfo(dtype).eps
    for fold_number, (train_idx, test_idx) in enumerate(fold_list):
        # Rows outside the training set (held out, or trimmed away) are removed from G and C.
        removed_idx = np.setdiff1d(np.arange(n), train_idx)
        downdate = len(removed_idx) <= len(train_idx)
        if downdate:
            removed_x = rows64(removed_idx)
            fold_gram = gram - removed_x.T @ removed_x
            del removed_x
            removed_x_dev = x_dev[torch.from_numpy(removed_idx).to(dev)]
            held_in_removed = torch.from_numpy(np.searchsorted(removed_idx, test_idx)).to(dev)
        else:
            train_x = rows64(train_idx)
            fold_gram = train_x.T @ train_x
            del train_x
            train_x_dev = x_dev[torch.from_numpy(train_idx).to(dev)]
        evals, evecs = torch.linalg.eigh(fold_gram)
        del fold_gram
        evals = evals.clamp(min=0.0)
        shrink, scored, representative = _alpha_factors(evals, grid, normalpha, eps)
        held_x = rows64(test_idx)
        # Held-out predictions for alpha: P_alpha = (Xh_c V) diag(shrink_alpha) (V' C_f).
        held_rotated = ((held_x - held_x.mean(dim=0)) @ evecs).to(dev, dtype)  # (n_h, p)
        del held_x
        scored_shrink = shrink[:, scored].to(dev, dtype)  # (r, k) factors of the scored alphas
        evecs_t = evecs.T.to(dev, dtype)
        n_held = len(test_idx)
        # Small held-out sets (few alphas x rows): premultiply M_alpha = Xh_c V diag(shrink) V'
        # once per fold, fewer flops than rotating every block's C_f. Otherwise rotate per block.
        mapping = None
        if len(scored) * n_held < n_voxels and len(scored) * n_held * p * itemsize <= mapping_bytes:
            mapping = torch.empty((len(scored), n_held, p), dtype=dtype, device=dev)
            for slot in range(len(scored)):
                mapping[slot] = (held_rotated * scored_shrink[:, slot]) @ evecs_t
            mapping = mapping.reshape(-1, p)
        for cols in blocks:
            if downdate:
                y_removed, _ = _target_block(y_np, removed_idx, cols, dtype, dev, check_y)
                cross_fold = cross[:, cols] - removed_x_dev.T @ y_removed
                y_held = y_removed[held_in_removed]
                del y_removed
            else:
                y_train, _ = _target_block(y_np, train_idx, cols, dtype, dev, check_y)
                cross_fold = train_x_dev.T @ y_train
                del y_train
                y_held, _ = _target_block(y_np, test_idx, cols, dtype, dev, check_y)
            if mapping is not None:
                corr = _mapped_correlations(mapping, cross_fold, y_held, len(scored), score)
            else:
                corr = _alpha_correlations(held_rotated, scored_shrink, evecs_t @ cross_fold, y_held, score)
            del cross_fold
            scores[:, cols] += corr.cpu()[representative] / len(fold_list)
            step += 1
            check_cancel(cancel)
            report("fit", step, total_steps, f"inner fold {fold_number + 1}/{len(fold_list)}")

    # 4) choose alphas.
    mean_scores = scores.numpy()
    best_index = _choose_alphas(mean_scores, grid, single_alpha)

    # 5) refit on all rows, each voxel with its alpha.
    evals, evecs = torch.linalg.eigh(gram)
    evals = evals.clamp(min=0.0)
    alpha_scale = math.sqrt(float(evals.max())) if normalpha else 1.0
    full_shrink, _, _ = _alpha_factors(evals, grid, normalpha, 0.0)
    full_shrink = full_shrink.to(dev, dtype)
    evecs_dev = evecs.to(dev, dtype)
    best_dev = torch.from_numpy(best_index).to(dev)
    # float32 on CPU: each block's weights overwrite its own X'Y columns (no second (p, v) array).
    in_place = dtype == torch.float32 and dev.type == "cpu"
    weights = cross.numpy() if in_place else np.empty((p, n_voxels), dtype=np.float32)
    for cols in blocks:
        rotated = evecs_dev.T @ cross[:, cols]
        block_weights = evecs_dev @ (full_shrink[:, best_dev[cols]] * rotated)
        if in_place:
            cross[:, cols] = block_weights
        else:
            weights[:, cols] = block_weights.float().cpu().numpy()
        step += 1
        check_cancel(cancel)
        report("fit", step, total_steps, "refit")

    return _result(weights, mean_scores, best_index, grid, alpha_scale)


def _nested_cv_dual(x_host: torch.Tensor, dev: torch.device, y_np: np.ndarray, fold_list: list, grid: np.ndarray,
                    normalpha: bool, single_alpha: bool, dtype: torch.dtype, memory_budget_gb: float,
                    report: ProgressCallback, cancel: Optional[CancelFlag], score: str = "r",
                    check_y: bool = True) -> RidgeFit:
    """:func:`ridge_nested_cv` when n < p, in kernel form: the same weights and scores.

    With the training kernel ``K = X X' = U diag(s^2) U'`` (n, n), the weights for penalty a
    are ``W = X' U diag(1 / (s^2 + a^2)) U' Y``, equal to the primal ``V diag(.) V' X'Y`` (the
    non-zero s^2 are the same; directions with s = 0 contribute nothing to either, so they
    are dropped). Held-out predictions are ``K_ht U diag(.) U' Y_t``. Every eigendecomposition
    is n x n, and nothing p x v is formed: the fit keeps ``U`` and ``diag(.) U' Y`` (see
    :class:`RidgeFit`), and forms the weights only if they are asked for.
    """
    n, p = x_host.shape
    n_voxels = y_np.shape[1]
    kernel = _float64_gram(x_host, rows=True)
    block = _block_size(memory_budget_gb, n, n, max(len(te) for _, te in fold_list), len(grid), dtype)
    itemsize = 8 if dtype == torch.float64 else 4
    mapping_bytes = _budget_bytes(memory_budget_gb) / 8  # cap on the per-fold (alphas x n_h, n_t) mapping
    blocks = _voxel_blocks(n_voxels, block)
    total_steps = len(blocks) * (len(fold_list) + 1)
    step = 0
    scores = torch.zeros((len(grid), n_voxels), dtype=torch.float64)
    eps = torch.finfo(dtype).eps
    for fold_number, (train_idx, test_idx) in enumerate(fold_list):
        train, held = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
        evals, evecs = _kernel_eigh(kernel[train][:, train])
        shrink, scored, representative = _alpha_factors(evals, grid, normalpha, eps)
        shrink = shrink * (evals > 0).unsqueeze(1)
        held_kernel = kernel[held][:, train]
        held_rotated64 = (held_kernel - held_kernel.mean(dim=0)) @ evecs  # (n_h, n_t)
        n_held, n_train = len(test_idx), len(train_idx)
        # As in the primal form: when alphas x held-out rows is small, M_alpha = K_c U diag(.) U'
        # (n_h, n_t) for all alphas at once makes each block one product with the training Y
        # (k n_h n_t flops per voxel instead of n_t^2 + k n_h n_t).
        mapping = None
        if len(scored) * n_held < n_voxels and len(scored) * n_held * n_train * itemsize <= mapping_bytes:
            mapping = torch.einsum("hi,ik,ti->kht", held_rotated64, shrink[:, scored], evecs)
            mapping = mapping.reshape(-1, n_train).to(dev, dtype)
        else:
            held_rotated = held_rotated64.to(dev, dtype)
            scored_shrink = shrink[:, scored].to(dev, dtype)  # (r, k) factors of the scored alphas
            evecs_t = evecs.T.to(dev, dtype)
        for cols in blocks:
            y_train, _ = _target_block(y_np, train_idx, cols, dtype, dev, check_y)
            y_held, _ = _target_block(y_np, test_idx, cols, dtype, dev, check_y)
            if mapping is not None:
                corr = _mapped_correlations(mapping, y_train, y_held, len(scored), score)
            else:
                corr = _alpha_correlations(held_rotated, scored_shrink, evecs_t @ y_train, y_held, score)
            scores[:, cols] += corr.cpu()[representative] / len(fold_list)
            step += 1
            check_cancel(cancel)
            report("fit", step, total_steps, f"inner fold {fold_number + 1}/{len(fold_list)}")

    mean_scores = scores.numpy()
    best_index = _choose_alphas(mean_scores, grid, single_alpha)
    evals, evecs = _kernel_eigh(kernel)
    alpha_scale = math.sqrt(float(evals.max())) if normalpha else 1.0
    full_shrink, _, _ = _alpha_factors(evals, grid, normalpha, 0.0)
    full_shrink = (full_shrink * (evals > 0).unsqueeze(1)).to(dev, dtype)
    evecs_dev = evecs.to(dev, dtype)
    best_dev = torch.from_numpy(best_index).to(dev)
    coef_dtype = np.float64 if dtype == torch.float64 else np.float32
    rotated = np.empty((n, n_voxels), dtype=coef_dtype)
    n_bad_voxels = 0
    for cols in blocks:
        y_block, n_bad = _target_block(y_np, slice(None), cols, dtype, dev, check_y)
        n_bad_voxels += n_bad
        rotated[:, cols] = (full_shrink[:, best_dev[cols]] * (evecs_dev.T @ y_block)).cpu().numpy()
        step += 1
        check_cancel(cancel)
        report("fit", step, total_steps, "refit")
    if n_bad_voxels:
        logger.warning("%d of %d voxels hold NaN/inf values; those values are treated as 0.", n_bad_voxels, n_voxels)
    train_x = x_host.numpy().astype(coef_dtype, copy=False)  # X as the products used it
    basis = evecs.numpy().astype(coef_dtype, copy=False)
    return _result(None, mean_scores, best_index, grid, alpha_scale, dual=(train_x, basis, rotated))


def _held_out_score(numerator: torch.Tensor, pred_ss: torch.Tensor, target_ss: torch.Tensor,
                    score: str) -> torch.Tensor:
    """Per alpha and voxel (k, B) float64 from centred sums: ``numerator = sum(p y)``,
    ``pred_ss = sum(p^2)``, ``target_ss = sum(y^2)`` (B,). ``r``: Pearson r; ``r2``:
    ``sign(R2) sqrt(|R2|)`` with ``R2 = 1 - sum((y - p)^2) / sum(y^2)``. Constant data score 0."""
    if score == "r":
        return _safe_ratio(numerator, torch.sqrt(pred_ss * target_ss))
    residual_ss = target_ss - 2.0 * numerator + pred_ss
    r2 = 1.0 - _safe_ratio(residual_ss, target_ss.expand_as(residual_ss))
    r2 = torch.where(target_ss.expand_as(r2) > 1e-30, r2, torch.zeros_like(r2))
    return torch.sign(r2) * torch.sqrt(torch.abs(r2))


def _mapped_correlations(mapping: torch.Tensor, right: torch.Tensor, y_held: torch.Tensor, n_scored: int,
                         score: str) -> torch.Tensor:
    """Score (k, B) float64 of the held-out predictions ``mapping @ right`` -> (k, n_h, B), k alphas.

    mapping: (k n_h, m) stacked per-alpha maps; right: (m, B) (the fold's X'Y, or its training Y
    in kernel form); y_held: (n_h, B)."""
    preds = (mapping @ right).reshape(n_scored, y_held.shape[0], -1)
    y_centred = y_held - y_held.mean(dim=0)
    pred_ss = (preds * preds).sum(dim=1).double()
    numerator = preds.mul_(y_centred).sum(dim=1).double()  # in place: no second buffer
    return _held_out_score(numerator, pred_ss, (y_centred * y_centred).sum(dim=0).double(), score)


def _alpha_correlations(held_rotated: torch.Tensor, shrink: torch.Tensor, rotated: torch.Tensor,
                        y_held: torch.Tensor, score: str = "r") -> torch.Tensor:
    """Correlation (k, B) float64 of each scored alpha's held-out predictions with the targets.

    held_rotated: (n_h, r) centred held-out rows in the eigenbasis; shrink: (r, k) factors of
    the scored alphas; rotated: (r, B) the training targets' cross-products in the eigenbasis;
    y_held: (n_h, B). One (n_h, B) prediction at a time, never (k, n_h, B).
    """
    y_centred = y_held - y_held.mean(dim=0)
    numerator = torch.empty((shrink.shape[1], y_centred.shape[1]), dtype=torch.float64)
    pred_ss = torch.empty_like(numerator)
    for slot in range(shrink.shape[1]):
        preds = (held_rotated * shrink[:, slot]) @ rotated
        pred_ss[slot] = (preds * preds).sum(dim=0).double()
        numerator[slot] = preds.mul_(y_centred).sum(dim=0).double()
    return _held_out_score(numerator, pred_ss, (y_centred * y_centred).sum(dim=0).double(), score)


def _float64_gram(x: torch.Tensor, rows: bool = False) -> torch.Tensor:
    """X'X (p, p), or XX' (n, n) when ``rows``, in float64: cast in chunks along the summed
    axis, so that X is never copied whole to float64."""
    summed = x.T if rows else x  # the product is summed' summed
    out = torch.zeros((summed.shape[1], summed.shape[1]), dtype=torch.float64)
    for start in range(0, summed.shape[0], 2048):
        chunk = summed[start:start + 2048].double()
        out += chunk.T @ chunk
    return out


def _voxel_blocks(n_voxels: int, block: int) -> list[slice]:
    return [slice(start, min(start + block, n_voxels)) for start in range(0, n_voxels, block)]


def _kernel_eigh(kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-pairs of a kernel matrix (float64); eigenvalues at rounding level (rank deficiency) set to 0."""
    evals, evecs = torch.linalg.eigh(kernel)
    top = float(evals.max()) if evals.numel() else 0.0
    evals = torch.where(evals > top * len(evals) * torch.finfo(torch.float64).eps, evals, torch.zeros_like(evals))
    return evals, evecs


def _choose_alphas(mean_scores: np.ndarray, grid: np.ndarray, single_alpha: bool) -> np.ndarray:
    """Index of the best alpha per voxel (n_voxels,): argmax over alphas sorted ascending, so
    exact ties go to the smaller alpha; with ``single_alpha`` the best mean over voxels."""
    ascending = np.argsort(grid, kind="stable")
    if single_alpha:
        best_sorted = int(np.argmax(mean_scores[ascending].mean(axis=1)))
        return np.full(mean_scores.shape[1], ascending[best_sorted], dtype=np.int64)
    return ascending[np.argmax(mean_scores[ascending], axis=0)]


def _result(weights: Optional[np.ndarray], mean_scores: np.ndarray, best_index: np.ndarray, grid: np.ndarray,
            alpha_scale: float, dual: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None) -> RidgeFit:
    n_voxels = mean_scores.shape[1]
    n_flat = int((~mean_scores.any(axis=0)).sum())
    if n_flat:
        logger.warning("%d of %d voxels score 0 for every alpha (constant or missing data, or no usable "
                       "features); they get the smallest alpha.", n_flat, n_voxels)
    return RidgeFit(weights=weights, best_alphas=grid[best_index].copy(), cv_scores=mean_scores.astype(np.float32),
                    alphas=grid.copy(), alpha_scale=alpha_scale, dual=dual)


def _alpha_factors(evals: torch.Tensor, grid: np.ndarray, normalpha: bool,
                   eps: float) -> tuple[torch.Tensor, list[int], np.ndarray]:
    """Shrinkage 1/(s^2 + a^2) (p, n_alphas) and which alphas need their own evaluation.

    Alphas whose ``s_max^2 / a^2 <= eps / 2`` scale predictions only (identical correlations);
    the smallest of them is evaluated for all. Returns (shrink, scored columns,
    representative) where ``representative[i]`` is the row of the scored set for alpha i.
    """
    s_max_sq = float(evals.max()) if evals.numel() else 0.0
    penalty = torch.from_numpy(grid * (math.sqrt(s_max_sq) if normalpha else 1.0))
    denom = evals.unsqueeze(1) + penalty.unsqueeze(0) ** 2
    shrink = torch.where(denom > 0, 1.0 / torch.where(denom > 0, denom, torch.ones_like(denom)), torch.zeros_like(denom))
    a_sq = penalty.numpy() ** 2
    saturated = (a_sq > 0) & (s_max_sq <= 0.5 * eps * a_sq) if eps > 0 else np.zeros(len(grid), dtype=bool)
    scored = [i for i in range(len(grid)) if not saturated[i]]
    representative = np.empty(len(grid), dtype=np.int64)
    representative[~saturated] = np.arange(len(scored))
    if saturated.any():
        sat = np.flatnonzero(saturated)
        scored.append(int(sat[np.argmin(a_sq[sat])]))
        representative[saturated] = len(scored) - 1
    return shrink, scored, representative


def _safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    ok = denominator > 1e-30
    return torch.where(ok, numerator / torch.where(ok, denominator, torch.ones_like(denominator)),
                       torch.zeros_like(numerator))


def _all_finite(y_np: np.ndarray) -> bool:
    """True when Y (n, v) holds no NaN/inf (checked in column blocks: no full-size temporary)."""
    return all(bool(np.isfinite(y_np[:, cols]).all()) for cols in _voxel_blocks(y_np.shape[1], MAX_BLOCK_VOXELS))


def _target_block(y_np: np.ndarray, rows: Any, cols: slice, dtype: torch.dtype,
                  dev: torch.device, check: bool = True) -> tuple[torch.Tensor, int]:
    """Rows x columns of Y as a tensor, NaN/inf -> 0; also the number of affected columns.

    ``check=False`` skips the scan when Y is known to be finite (:func:`_all_finite`)."""
    values = y_np[rows, cols]
    block = torch.from_numpy(np.ascontiguousarray(values)).to(dev, dtype)
    if not check:
        return block, 0
    finite = torch.isfinite(block)
    if bool(finite.all()):
        return block, 0
    n_bad = int((~finite.all(dim=0)).sum())
    return torch.where(finite, block, torch.zeros_like(block)), n_bad


def _budget_bytes(memory_budget_gb: Any) -> float:
    """``memory_budget_gb`` (GiB) in bytes; InputError unless it is a positive number."""
    try:
        budget = float(memory_budget_gb) * 1024 ** 3
    except (TypeError, ValueError):
        raise InputError(f"memory_budget_gb must be a positive number; got {memory_budget_gb!r}.") from None
    if not budget > 0:
        raise InputError(f"memory_budget_gb must be a positive number; got {memory_budget_gb!r}.")
    return budget


def _block_size(memory_budget_gb: float, n: int, p: int, n_held: int, n_alphas: int, dtype: torch.dtype) -> int:
    """Voxels per block so the per-block working set stays within the budget."""
    budget = _budget_bytes(memory_budget_gb)
    itemsize = 8 if dtype == torch.float64 else 4
    # Per voxel: a column of Y (the X'Y pass reads all n rows), the fold's C_f and V'C_f, the
    # held-out targets and predictions (all alphas when the fold's mapping is used), the
    # float64 score rows. Fixed: X on the device, the held-out rotated features, the mapping
    # (at most 1/8 of the budget), the float64 Gram matrices and eigenvectors.
    per_voxel = itemsize * (2 * n + (n_alphas + 3) * n_held + 2 * p) + 8 * 4 * n_alphas
    mapping = min(itemsize * n_alphas * n_held * p, budget / 8)
    fixed = itemsize * (n * p + n_held * p + p * p) + mapping + 8 * 3 * p * p
    room = max(budget - fixed, per_voxel)
    return int(max(1, min(MAX_BLOCK_VOXELS, room // per_voxel)))


def _check_alphas(alphas: Any) -> np.ndarray:
    try:
        grid = np.asarray(alphas, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"alphas must be a list of positive numbers; got {alphas!r}.") from None
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
        raise InputError(
            f"alphas must be a non-empty list of positive, finite numbers (e.g. numpy.logspace(-1, 8, 10)); got {grid.tolist()}."
        )
    return grid


def _check_folds(folds: Sequence[tuple[Any, Any]], n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    checked = []
    try:
        items = list(folds)
    except TypeError:
        raise InputError("folds must be a list of (train_idx, test_idx) pairs (see folds.make_folds).") from None
    if not items:
        raise InputError("folds is empty; give at least one (train_idx, test_idx) pair (see folds.make_folds).")
    for i, pair in enumerate(items):
        try:
            train, test = (np.asarray(part, dtype=np.int64).reshape(-1) for part in pair)
        except (TypeError, ValueError):
            raise InputError(f"folds[{i}] must be a pair of integer index arrays (train_idx, test_idx).") from None
        if len(train) == 0 or len(test) == 0:
            raise InputError(f"folds[{i}] has {len(train)} training and {len(test)} held-out rows; both must be non-empty.")
        if min(train.min(), test.min()) < 0 or max(train.max(), test.max()) >= n:
            raise InputError(f"folds[{i}] indexes rows outside 0..{n - 1}; make the folds for these {n} TRs.")
        if np.intersect1d(train, test).size:
            raise InputError(f"folds[{i}] uses some rows for both training and testing; the two sets must be disjoint.")
        checked.append((train, test))
    return checked


def _device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"Unknown device {device!r}; use 'cpu', 'cuda' or 'mps'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device='cuda' was asked for but no CUDA GPU is available; use device='cpu'.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError("device='mps' was asked for but Apple MPS is not available; use device='cpu'.")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"Unsupported device {device!r}; use 'cpu', 'cuda' or 'mps'.")
    return dev
