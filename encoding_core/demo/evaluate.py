"""The demo against its ground truth: are the significant vertices where effects were planted?

SIMULATED data. Every planted region of :data:`~encoding_core.demo.simulate.DEMO_REGIONS`
(whatever regions a later simulation adds) is scored the same way, from the per-vertex
``significant_mask`` (20484,) of a layer:

- precision: of the vertices declared significant, the share inside any planted region
  (a vertex outside every region carries no signal, so each one there is a false discovery);
- recall per region: the share of that region's vertices declared significant.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from encoding_core.common.errors import InputError
from encoding_core.demo.simulate import DEMO_REGIONS, N_VERTICES, ground_truth_maps

OUTSIDE = "outside the planted regions"


def planted_region_masks(maps: Optional[Mapping[str, np.ndarray]] = None) -> dict[str, np.ndarray]:
    """{region label: (20484,) bool} for every planted region, then ``OUTSIDE`` (no region)."""
    maps = maps if maps is not None else ground_truth_maps()
    masks = {region.label: np.asarray(maps[f"mask_{key}"], dtype=bool) for key, region in DEMO_REGIONS.items()}
    masks[OUTSIDE] = ~np.asarray(maps["mask_any"], dtype=bool)
    return masks


def ground_truth_scores(significant_mask: Any, maps: Optional[Mapping[str, np.ndarray]] = None) -> dict[str, Any]:
    """Precision and per-region recall of one layer's significant vertices -> dict.

    significant_mask: (20484,) bool. Returns ``{"n_significant", "n_inside", "precision"
    (NaN when nothing is significant), "recall": {region key: share found}, "n_region":
    {region key: vertices}, "n_found": {region key: vertices found}}``.
    """
    mask = np.asarray(significant_mask, dtype=bool).reshape(-1)
    if mask.shape[0] != N_VERTICES:
        raise InputError(f"significant_mask must have one entry per fsaverage5 vertex ({N_VERTICES}); "
                         f"got {mask.shape[0]}.")
    maps = maps if maps is not None else ground_truth_maps()
    inside = mask & np.asarray(maps["mask_any"], dtype=bool)
    n_sig = int(mask.sum())
    out: dict[str, Any] = {"n_significant": n_sig, "n_inside": int(inside.sum()),
                           "precision": float(inside.sum() / n_sig) if n_sig else float("nan"),
                           "recall": {}, "n_region": {}, "n_found": {}}
    for key in DEMO_REGIONS:
        region = np.asarray(maps[f"mask_{key}"], dtype=bool)
        found = int((mask & region).sum())
        out["n_region"][key] = int(region.sum())
        out["n_found"][key] = found
        out["recall"][key] = found / max(int(region.sum()), 1)
    return out


def ground_truth_table(layers: Sequence[int], significant_masks: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per layer: layer, significant vertices, precision and recall per planted region."""
    maps = ground_truth_maps()
    rows = []
    for layer, mask in zip(layers, significant_masks, strict=True):
        scores = ground_truth_scores(mask, maps)
        row = {"layer": int(layer), "significant": scores["n_significant"], "precision": scores["precision"]}
        row.update({f"recall {DEMO_REGIONS[key].label}": value for key, value in scores["recall"].items()})
        rows.append(row)
    return rows
