"""Summaries of per-voxel results a reviewer accepts: the best layer by a named rule,
median r per region and layer, and diagnostics of the chosen ridge penalties.

Arrays: ``correlations`` (n_layers, n_voxels) stacks one row per layer; masks are
(n_voxels,) or (n_layers, n_voxels) booleans. Every summary returns plain JSON-ready dicts
whose ``label`` names the rule, so the page never has to describe it in its own words.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from encoding_core.common.errors import InputError

BEST_LAYER_RULES = ("significant", "top_max_r", "top_ceiling", "median_r")
"""``significant``: median r over the voxels significant in at least one layer; ``top_max_r``:
over the top fraction of voxels by their best r across layers; ``top_ceiling``: over the top
fraction by noise ceiling; ``median_r``: over every voxel (the whole-brain median)."""

TOP_FRACTION = 0.05
EDGE_SHARE = 0.05
"""Alpha diagnostics warn when more than this share of voxels picks the smallest or largest alpha."""


def _stack(correlations: Any) -> np.ndarray:
    values = np.asarray(correlations, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 1:
        raise InputError(f"correlations must be (n_layers, n_voxels); got shape {values.shape}.")
    return values


def _top(values: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean (v,) mask of the top ``fraction`` of finite ``values`` (at least one voxel)."""
    finite = np.flatnonzero(np.isfinite(values))
    mask = np.zeros(values.shape, dtype=bool)
    if finite.size == 0:
        return mask
    k = max(1, int(math.ceil(fraction * finite.size)))
    mask[finite[np.argpartition(values[finite], finite.size - k)[finite.size - k:]]] = True
    return mask


def best_layer(layers: Sequence[int], correlations: Any, significant: Optional[Any] = None,
               ceiling: Optional[Any] = None, rule: str = "auto", top_fraction: float = TOP_FRACTION) -> dict[str, Any]:
    """The best layer by a named rule -> ``{"rule", "label", "best_layer", "n_voxels", "per_layer"}``.

    layers: (L,) layer numbers; correlations: (L, v) r per layer; significant: (L, v) FDR masks;
    ceiling: (v,) noise-ceiling r. Every rule compares the layers by their median r over the
    SAME voxels (chosen once for all layers, so no layer is favoured by its own selection).
    ``rule="auto"``: ``significant`` when any voxel is significant in any layer, else
    ``top_max_r``. ``per_layer`` maps str(layer) -> that median; ``best_layer`` is None when
    no voxel qualifies.
    """
    r = _stack(correlations)
    layers = [int(x) for x in layers]
    if len(layers) != r.shape[0]:
        raise InputError(f"layers has {len(layers)} entries but correlations has {r.shape[0]} rows.")
    if not 0 < top_fraction < 1:
        raise InputError(f"top_fraction must be between 0 and 1 (e.g. 0.05); got {top_fraction}.")
    sig = None if significant is None else np.asarray(significant, dtype=bool).reshape(r.shape)
    if rule == "auto":
        rule = "significant" if sig is not None and sig.any() else "top_max_r"
    if rule not in BEST_LAYER_RULES:
        raise InputError(f"rule must be 'auto' or one of {BEST_LAYER_RULES}; got {rule!r}.")
    pct = f"{100 * top_fraction:g}"
    if rule == "significant":
        if sig is None:
            raise InputError("rule 'significant' needs the significant masks (n_layers, n_voxels).")
        chosen = sig.any(axis=0)
        label = f"median r over the {int(chosen.sum())} voxels significant in at least one layer"
    elif rule == "top_max_r":
        best_r = np.where(np.isfinite(r), r, -np.inf).max(axis=0)
        chosen = _top(np.where(np.isfinite(best_r), best_r, np.nan), top_fraction)
        label = f"median r over the top {pct} % of voxels by their best r across layers ({int(chosen.sum())} voxels)"
    elif rule == "top_ceiling":
        if ceiling is None:
            raise InputError("rule 'top_ceiling' needs the noise ceiling (n_voxels,).")
        chosen = _top(np.asarray(ceiling, dtype=np.float64).reshape(-1), top_fraction)
        label = f"median r over the top {pct} % of voxels by noise ceiling ({int(chosen.sum())} voxels)"
    else:
        chosen = np.ones(r.shape[1], dtype=bool)
        label = f"median r over all {r.shape[1]} voxels (whole brain)"
    per_layer = {}
    for index, layer in enumerate(layers):  # a handful of layers, each vectorised over voxels
        values = r[index, chosen]
        values = values[np.isfinite(values)]
        per_layer[str(layer)] = float(np.median(values)) if values.size else float("nan")
    finite = {k: v for k, v in per_layer.items() if np.isfinite(v)}
    best = int(max(finite, key=finite.get)) if finite else None
    return {"rule": rule, "label": label, "best_layer": best, "n_voxels": int(chosen.sum()), "per_layer": per_layer}


def region_medians(layers: Sequence[int], correlations: Any, regions: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Median r per region and layer -> one row per region.

    regions: name -> (v,) boolean mask (planted regions, atlas labels ...). Each row:
    ``{"region", "n_voxels", "median_r": {str(layer): median}, "best_layer"}`` (best layer =
    highest median; None for an empty region).
    """
    r = _stack(correlations)
    layers = [int(x) for x in layers]
    rows = []
    for name, mask in regions.items():  # one vectorised median per region (tens to a few hundred regions)
        inside = np.asarray(mask, dtype=bool).reshape(-1)
        if inside.shape[0] != r.shape[1]:
            raise InputError(f"region {name!r} has {inside.shape[0]} entries but there are {r.shape[1]} voxels.")
        block = r[:, inside]
        medians = {}
        for index, layer in enumerate(layers):
            values = block[index][np.isfinite(block[index])]
            medians[str(layer)] = float(np.median(values)) if values.size else float("nan")
        finite = {k: v for k, v in medians.items() if np.isfinite(v)}
        rows.append({"region": str(name), "n_voxels": int(inside.sum()), "median_r": medians,
                     "best_layer": int(max(finite, key=finite.get)) if finite else None})
    return rows


def alpha_diagnostics(best_alphas: Any, alphas: Sequence[float], significant: Optional[Any] = None,
                      cv_scores: Optional[Any] = None, edge_share: float = EDGE_SHARE) -> dict[str, Any]:
    """How the voxels used the alpha grid, with warnings when the grid is too narrow.

    best_alphas: (v,) chosen alpha per voxel; alphas: (n_alphas,) the grid; significant: (v,)
    mask; cv_scores: (n_alphas, v) mean inner-fold r per alpha. Returns ``{"alphas",
    "counts", "share_smallest", "share_largest", "significant_share_smallest",
    "significant_share_largest", "mean_cv_score_per_alpha", "warnings"}``: a warning when more
    than ``edge_share`` of all voxels, or of the significant voxels, chose an end of the grid.
    """
    best = np.asarray(best_alphas, dtype=np.float64).reshape(-1)
    grid = np.sort(np.asarray(alphas, dtype=np.float64).reshape(-1))
    if grid.size == 0:
        raise InputError("alphas is empty; give the alpha grid of the fit.")
    counts = np.isclose(best[None, :], grid[:, None], rtol=1e-6, atol=0).sum(axis=1)
    n = max(best.size, 1)
    sig = None if significant is None else np.asarray(significant, dtype=bool).reshape(-1)
    out: dict[str, Any] = {"alphas": grid.tolist(), "counts": [int(c) for c in counts],
                           "share_smallest": float(counts[0] / n), "share_largest": float(counts[-1] / n),
                           "n_voxels": int(best.size), "edge_share_threshold": float(edge_share), "warnings": []}
    n_sig = int(sig.sum()) if sig is not None else 0
    out["n_significant"] = n_sig
    if n_sig:
        sig_best = best[sig]
        out["significant_share_smallest"] = float(np.isclose(sig_best, grid[0], rtol=1e-6, atol=0).mean())
        out["significant_share_largest"] = float(np.isclose(sig_best, grid[-1], rtol=1e-6, atol=0).mean())
    if cv_scores is not None:
        scores = np.asarray(cv_scores, dtype=np.float64)
        if scores.ndim == 2 and scores.shape[0] == grid.size:
            order = np.argsort(np.asarray(alphas, dtype=np.float64).reshape(-1))
            scores = scores[order]
            finite = np.isfinite(scores)
            total = np.where(finite, scores, 0.0).sum(axis=1)
            out["mean_cv_score_per_alpha"] = (total / np.maximum(finite.sum(axis=1), 1)).tolist()
    if grid.size > 1:
        for end, key, widen in (("smallest", "share_smallest", grid[0] / 10), ("largest", "share_largest",
                                                                               grid[-1] * 10)):
            value = grid[0] if end == "smallest" else grid[-1]
            sig_key = f"significant_{key}"
            for who, share, count in (("voxels", out[key], best.size), ("significant voxels", out.get(sig_key), n_sig)):
                if share is not None and share > edge_share:
                    out["warnings"].append(
                        f"{100 * share:.0f} % of the {count} {who} chose the {end} alpha ({value:g}), an end of the "
                        f"grid: their best penalty may lie beyond it. Widen the alpha grid (e.g. add {widen:g}).")
    return out
