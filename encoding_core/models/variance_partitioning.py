"""Variance partitioning: unique and shared variance explained per voxel by two or three feature spaces.

Every non-empty subset T of the spaces gets its own model, fitted with its own nested CV on the
training data (:func:`banded_ridge_nested_cv`; a single space is plain ridge), and is scored on
held-out data: ``R(T)`` = r² of its predictions (``1 - SS_res / SS_tot``, ``SS_tot`` about the
held-out mean, as ``sklearn.metrics.r2_score``). Reading R as the size of a union of sets, the
variance shared by exactly the spaces in T (and by no other space) is the inclusion-exclusion

    region(T) = sum over U subset of T of (-1)^(|U| + 1) * R(U | T^c),   R(empty) = 0.

Two spaces: ``unique A = R(AB) - R(B)``, ``unique B = R(AB) - R(A)``, ``shared = R(A) + R(B) - R(AB)``.
Three spaces (de Heer et al. 2017): e.g. ``unique A = R(ABC) - R(BC)``, ``shared AB only =
R(AC) + R(BC) - R(C) - R(ABC)``, ``shared ABC = R(A)+R(B)+R(C) - R(AB)-R(AC)-R(BC) + R(ABC)``.
The regions sum to the joint r² by construction. Estimates from held-out data can be negative
(a subset model generalises better than the larger one); they are kept as they are and counted
in ``n_negative``, never clipped.

Optional stacked estimate (Lin et al. 2024, "stacked regressions"): per voxel a convex combination
``sum_i beta_i * P_i`` of the single-space predictions, ``beta`` on the simplex minimising the
squared error of the *out-of-fold* predictions on the training data (the inner folds; each space
with its per-voxel alpha from its own nested CV). Only the (m, m) products of predictions are
accumulated per voxel, never the predictions themselves; the small quadratic programme is solved
exactly for every voxel at once by enumerating the faces of the simplex.
"""
from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from encoding_core.common.arrays import as_matrix
from encoding_core.common.errors import InputError
from encoding_core.models.ridge import (
    _alpha_factors,
    _check_folds,
    _target_block,
    _voxel_blocks,
)

from encoding_core.models.banded_ridge import _as_space_list, _eigh, banded_ridge_nested_cv, split_r2_score
from encoding_core.stats.scores import r2_score

logger = logging.getLogger(__name__)


@dataclass
class StackedEstimate:
    """Stacked encoding (Lin et al. 2024). weights: (n_spaces, v) convex weights (sum 1, >= 0);
    r2: (v,) held-out r² of the stacked prediction; space_r2: (n_spaces, v) held-out r² of each
    single-space model."""

    weights: np.ndarray
    r2: np.ndarray
    space_r2: np.ndarray


@dataclass
class VariancePartition:
    """Result of :func:`variance_partitioning`; all maps (v,) float64 r² on the held-out data.

    subset_r2: {spaces of the model (names, in input order): r²}. regions: {spaces sharing the
    variance: r²}, ``(A,)`` the unique part of A, ``(A, B)`` the part shared by A and B only.
    n_negative: {region: voxels with a negative estimate}. split_r2: (n_spaces, v) product-measure
    share of each space in the joint model's r² (:func:`banded_ridge.split_r2_score`).
    fits: the subset models when ``keep_fits``, else empty.
    """

    names: tuple
    subset_r2: dict
    regions: dict
    n_negative: dict
    split_r2: np.ndarray
    stacked: Optional[StackedEstimate] = None
    fits: dict = field(default_factory=dict)

    @property
    def joint_r2(self) -> np.ndarray:
        """r² of the model on all spaces (v,)."""
        return self.subset_r2[self.names]

    def unique(self, name: str) -> np.ndarray:
        """Variance explained by ``name`` alone (v,)."""
        return self.regions[(self._check_name(name),)]

    def shared(self, *names: str) -> np.ndarray:
        """Variance shared by exactly these spaces (v,), e.g. ``shared("A", "B")``."""
        wanted = {self._check_name(name) for name in names}
        return self.regions[tuple(name for name in self.names if name in wanted)]

    def maps(self) -> dict:
        """{"unique A": (v,), "shared A+B": (v,), ...} in a readable form."""
        return {("unique " if len(key) == 1 else "shared ") + "+".join(key): value for key, value in self.regions.items()}

    def _check_name(self, name: str) -> str:
        if name not in self.names:
            raise InputError(f"Unknown feature space {name!r}; the spaces are {list(self.names)}.")
        return name


def partition_regions(subset_r2: dict, names: Sequence[str]) -> dict:
    """Inclusion-exclusion regions {sharing spaces: (v,)} from {subset: r² (v,)} (module docstring).

    ``subset_r2`` must hold every non-empty subset of ``names`` as a tuple in ``names`` order.
    """
    names = tuple(names)
    r2 = {key: np.asarray(value, dtype=np.float64) for key, value in subset_r2.items()}
    missing = [key for key in _subsets(names) if key not in r2]
    if missing:
        raise InputError(f"subset_r2 lacks the models {missing}; fit every non-empty subset of {list(names)}.")

    def union(members: set) -> Any:
        key = tuple(name for name in names if name in members)
        return r2[key] if key else 0.0

    regions = {}
    for sharing in _subsets(names):  # 3 regions for 2 spaces, 7 for 3
        rest = set(names) - set(sharing)
        value = 0.0
        for size in range(len(sharing) + 1):
            for part in itertools.combinations(sharing, size):
                value = value + (-1.0) ** (size + 1) * union(set(part) | rest)
        regions[sharing] = np.asarray(value, dtype=np.float64)
    return regions


def variance_partitioning(train_spaces: Sequence[Any], Y_train: Any, test_spaces: Sequence[Any], Y_test: Any,
                          folds: Sequence[tuple[Any, Any]], alphas: Any, *, names: Optional[Sequence[str]] = None,
                          stacked: bool = False, keep_fits: bool = False, keep_joint: bool = False,
                          **fit_options: Any) -> VariancePartition:
    """Unique and shared variance per voxel from the joint model and every subset model.

    train_spaces / test_spaces: lists of (n_train, p_i) / (n_test, p_i) features, 2 or 3 spaces
    (more work too, with 2^m - 1 models); Y_train (n_train, v), Y_test (n_test, v); folds: inner
    folds over the training rows; alphas: the grid for every model (reference units).
    ``fit_options`` go to :func:`banded_ridge.banded_ridge_nested_cv` (``normalpha``, ``search``,
    ``grid_steps``, ``memory_budget_gb``, ...); the gamma candidates are chosen per subset size.
    ``stacked=True`` adds the stacked-regression estimate (module docstring). ``keep_fits`` keeps
    every subset model in ``fits``; ``keep_joint`` only the joint one (memory: one (p, v) weight
    matrix instead of 2^m - 1).
    """
    train_xs = _as_space_list(train_spaces, "train_spaces")
    test_xs = _as_space_list(test_spaces, "test_spaces")
    n_spaces = len(train_xs)
    if n_spaces < 2:
        raise InputError(f"Variance partitioning needs at least 2 feature spaces; got {n_spaces}.")
    if len(test_xs) != n_spaces:
        raise InputError(f"train_spaces has {n_spaces} spaces but test_spaces has {len(test_xs)}; give the same spaces.")
    for i, (a, b) in enumerate(zip(train_xs, test_xs)):
        if a.shape[1] != b.shape[1]:
            raise InputError(f"Space {i} has {a.shape[1]} training but {b.shape[1]} test columns; prepare both alike.")
    if "candidates" in fit_options:
        raise InputError("candidates cannot be given to variance_partitioning (each subset has its own number of "
                         "spaces); use search=, grid_steps= or n_random= instead.")
    names = tuple(names) if names is not None else tuple("ABCDEFGH"[i] if i < 8 else f"S{i}" for i in range(n_spaces))
    if len(names) != n_spaces or len(set(names)) != n_spaces:
        raise InputError(f"names must be {n_spaces} distinct labels, one per space; got {list(names)}.")
    y_test = as_matrix(Y_test, "Y_test", allow_bool=True)
    y_train_cols = as_matrix(Y_train, "Y_train", allow_bool=True).shape[1]
    if y_test.shape[1] != y_train_cols or y_test.shape[0] != test_xs[0].shape[0]:
        raise InputError(f"Y_test has shape {y_test.shape}; expected ({test_xs[0].shape[0]}, {y_train_cols}) "
                         "(test TRs, the training voxels).")
    y_test64 = np.nan_to_num(y_test.astype(np.float64))

    subset_r2, fits, split = {}, {}, None
    for key in _subsets(names):  # 2^m - 1 models
        members = [names.index(name) for name in key]
        fit = banded_ridge_nested_cv([train_xs[i] for i in members], Y_train, folds, alphas, **fit_options)
        parts = fit.predict_split([test_xs[i] for i in members])
        subset_r2[key] = r2_score(y_test64, parts.sum(axis=0, dtype=np.float64))
        if len(key) == n_spaces:
            split = split_r2_score(y_test64, parts)
        del parts
        if keep_fits or (stacked and len(key) == 1) or (keep_joint and len(key) == n_spaces):
            fits[key] = fit
        del fit
    regions = partition_regions(subset_r2, names)
    n_negative = {key: int((value < 0).sum()) for key, value in regions.items()}
    logger.info("Variance partitioning: negative estimates per region (kept, not clipped): %s",
                {"+".join(key): count for key, count in n_negative.items()})
    stack = None
    if stacked:
        singles = [fits[(name,)] for name in names]
        stack = _stacked_estimate(singles, train_xs, Y_train, test_xs, y_test64, folds,
                                  normalpha=fit_options.get("normalpha", True))
        if not keep_fits:
            fits = {key: fit for key, fit in fits.items() if keep_joint and len(key) == n_spaces}
    return VariancePartition(names=names, subset_r2=subset_r2, regions=regions, n_negative=n_negative,
                             split_r2=split, stacked=stack, fits=fits)


# ----------------------------------------------------------------------------------------------
# Stacked regressions
# ----------------------------------------------------------------------------------------------

def _stacked_estimate(singles: list, train_xs: list, Y_train: Any, test_xs: list, y_test64: np.ndarray,
                      folds: Sequence, normalpha: bool) -> StackedEstimate:
    """Convex stacking weights from out-of-fold products, then held-out r² (module docstring)."""
    y_np = as_matrix(Y_train, "Y_train", allow_bool=True)
    fold_list = _check_folds(folds, y_np.shape[0])
    products, targets = out_of_fold_products(train_xs, y_np, fold_list, [fit.best_alphas for fit in singles],
                                             singles[0].alphas, normalpha)
    weights = simplex_least_squares(products, targets)
    space_preds = np.stack([fit.predict([x]) for fit, x in zip(singles, test_xs)]).astype(np.float64)
    stacked_pred = np.einsum("snv,sv->nv", space_preds, weights)
    space_r2 = np.stack([r2_score(y_test64, pred) for pred in space_preds])
    return StackedEstimate(weights=weights, r2=r2_score(y_test64, stacked_pred), space_r2=space_r2)


def out_of_fold_products(spaces: list, y_np: np.ndarray, folds: list, best_alphas: list, grid: np.ndarray,
                         normalpha: bool, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per voxel, ``Q_ij = sum_t P_i(t) P_j(t)`` (m, m, v) and ``b_i = sum_t P_i(t) y(t)`` (m, v) over
    the out-of-fold ridge predictions ``P_i`` of each space (each voxel with its own alpha from
    ``best_alphas[i]`` (v,), in ``grid`` units; ``normalpha`` as in ridge, per fold)."""
    n_spaces, n_voxels = len(spaces), y_np.shape[1]
    dtype = torch.float64
    products = np.zeros((n_spaces, n_spaces, n_voxels))
    targets = np.zeros((n_spaces, n_voxels))
    xs = [torch.from_numpy(np.nan_to_num(np.asarray(x, dtype=np.float64))) for x in spaces]
    alpha_index = [torch.from_numpy(np.searchsorted(np.sort(grid), a)).long() for a in best_alphas]
    order = np.argsort(grid, kind="stable")
    blocks = _voxel_blocks(n_voxels, block)
    for train_idx, test_idx in folds:  # a handful of folds
        train, held = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
        factors = []
        for x in xs:  # 2-4 spaces
            train_x = x[train]
            evals, evecs = _eigh(train_x.T @ train_x)
            shrink = _alpha_factors(evals.clamp(min=0.0), grid[order], normalpha, 0.0)[0]  # (p_i, k) ascending grid
            factors.append((train_x, x[held] @ evecs, evecs, shrink))
        for cols in blocks:
            y_train, _ = _target_block(y_np, train_idx, cols, dtype, torch.device("cpu"))
            y_held, _ = _target_block(y_np, test_idx, cols, dtype, torch.device("cpu"))
            preds = torch.stack([held_rot @ (shrink[:, idx[cols]] * (evecs.T @ (train_x.T @ y_train)))
                                 for (train_x, held_rot, evecs, shrink), idx in zip(factors, alpha_index)])
            products[:, :, cols] += torch.einsum("inv,jnv->ijv", preds, preds).numpy()
            targets[:, cols] += torch.einsum("inv,nv->iv", preds, y_held).numpy()
    return products, targets


def simplex_least_squares(products: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per voxel, ``beta`` (m, v) on the simplex minimising ``beta'Q beta - 2 b'beta`` (Q (m, m, v), b (m, v)).

    Exact: the optimum lies inside one face of the simplex, where it is the minimiser over that
    face's affine hull; every face's minimiser is computed (a batched KKT solve), infeasible ones
    are discarded and the best remaining one is kept. 2^m - 1 faces (m = 2..4).
    """
    Q = torch.from_numpy(np.moveaxis(np.asarray(products, dtype=np.float64), 2, 0))  # (v, m, m)
    b = torch.from_numpy(np.asarray(targets, dtype=np.float64).T)                    # (v, m)
    n_voxels, m = b.shape
    scale = torch.diagonal(Q, dim1=1, dim2=2).mean(dim=1).clamp(min=1e-300)[:, None, None]
    best = torch.zeros((n_voxels, m), dtype=torch.float64)
    best_value = torch.full((n_voxels,), math.inf, dtype=torch.float64)
    for size in range(1, m + 1):
        for face in itertools.combinations(range(m), size):  # 2^m - 1 faces
            f = list(face)
            kkt = torch.zeros((n_voxels, size + 1, size + 1), dtype=torch.float64)
            kkt[:, :size, :size] = Q[:, f][:, :, f] / scale + 1e-12 * torch.eye(size, dtype=torch.float64)
            kkt[:, :size, size] = 1.0
            kkt[:, size, :size] = 1.0
            rhs = torch.cat([b[:, f] / scale[:, :, 0], torch.ones((n_voxels, 1), dtype=torch.float64)], dim=1)
            solution = torch.linalg.solve(kkt, rhs.unsqueeze(2))[:, :size, 0]
            beta = torch.zeros((n_voxels, m), dtype=torch.float64)
            beta[:, f] = solution
            value = torch.einsum("vi,vij,vj->v", beta, Q, beta) - 2.0 * (beta * b).sum(dim=1)
            better = (solution >= -1e-10).all(dim=1) & torch.isfinite(value) & (value < best_value - 1e-12 * value.abs())
            best[better] = beta[better].clamp(min=0.0)
            best_value[better] = value[better]
    best = best / best.sum(dim=1, keepdim=True)
    return best.T.numpy().copy()


def _subsets(names: tuple) -> list:
    """Non-empty subsets of ``names`` as tuples in ``names`` order, smallest first."""
    return [combo for size in range(1, len(names) + 1) for combo in itertools.combinations(names, size)]
