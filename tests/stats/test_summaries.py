"""Per-layer summaries against plain loops: the best layer by a named rule, per-region medians,
and the alpha-edge warning."""
from __future__ import annotations

import numpy as np
import pytest

from encoding_core.common.errors import InputError
from encoding_core.stats.summaries import alpha_diagnostics, best_layer, region_medians


def _median_over(values, chosen):
    picked = [v for v, c in zip(values, chosen) if c and np.isfinite(v)]
    return float(np.median(picked)) if picked else float("nan")


def test_best_layer_over_significant_voxels_differs_from_the_whole_brain_median():
    """The demo's trap: noise voxels favour one layer by a hair, the signal favours another."""
    gen = np.random.default_rng(0)
    layers = [0, 1, 2]
    r = gen.normal(0.0, 0.05, size=(3, 400))
    r[1] += 0.004  # the whole-brain median prefers layer 1 ...
    r[:, :40] = np.array([[0.6], [0.3], [0.2]]) + gen.normal(0, 0.02, size=(3, 40))  # ... the signal layer 0
    significant = np.zeros((3, 400), dtype=bool)
    significant[0, :30] = True
    significant[1, 10:40] = True
    out = best_layer(layers, r, significant)
    chosen = significant.any(axis=0)  # the same voxels for every layer (union over layers)
    expected = {str(l): _median_over(r[i], chosen) for i, l in enumerate(layers)}
    assert out["rule"] == "significant" and out["n_voxels"] == 40
    assert out["per_layer"] == pytest.approx(expected)
    assert out["best_layer"] == 0
    assert out["label"] == "median r over the 40 voxels significant in at least one layer"
    whole = best_layer(layers, r, significant, rule="median_r")
    assert whole["per_layer"] == pytest.approx({str(l): float(np.median(r[i])) for i, l in enumerate(layers)})


def test_best_layer_falls_back_to_the_top_voxels_by_cross_layer_max_r():
    gen = np.random.default_rng(1)
    r = gen.normal(0.0, 0.05, size=(4, 1000))
    r[2, :50] += 0.5
    out = best_layer([0, 1, 2, 3], r, np.zeros((4, 1000), dtype=bool))
    best_r = r.max(axis=0)
    order = sorted(range(1000), key=lambda j: best_r[j], reverse=True)[:50]  # top 5 % by a sort
    chosen = np.zeros(1000, dtype=bool)
    chosen[order] = True
    assert out["rule"] == "top_max_r" and out["n_voxels"] == 50
    assert out["per_layer"] == pytest.approx({str(l): _median_over(r[l], chosen) for l in range(4)})
    assert out["best_layer"] == 2
    assert "top 5 % of voxels by their best r across layers" in out["label"]
    ceiling = np.linspace(0, 1, 1000)
    by_ceiling = best_layer([0, 1, 2, 3], r, None, ceiling=ceiling, rule="top_ceiling")
    assert by_ceiling["n_voxels"] == 50
    assert by_ceiling["per_layer"]["0"] == pytest.approx(float(np.median(r[0, 950:])))
    with pytest.raises(InputError, match="rule"):
        best_layer([0], r[:1], rule="best")


def test_region_medians_equal_a_loop():
    gen = np.random.default_rng(2)
    r = gen.normal(size=(3, 60))
    r[1, 5] = np.nan
    regions = {"a": np.arange(60) < 20, "b": (np.arange(60) >= 20) & (np.arange(60) < 45), "empty": np.zeros(60, bool)}
    rows = region_medians([4, 5, 6], r, regions)
    for row in rows:
        mask = regions[row["region"]]
        assert row["n_voxels"] == int(mask.sum())
        for i, layer in enumerate([4, 5, 6]):
            expected = _median_over(r[i], mask)
            got = row["median_r"][str(layer)]
            assert (np.isnan(got) and np.isnan(expected)) or got == pytest.approx(expected)
    assert rows[2]["best_layer"] is None
    assert rows[0]["best_layer"] == [4, 5, 6][int(np.argmax([_median_over(r[i], regions["a"]) for i in range(3)]))]


def test_alpha_edge_warning_when_more_than_5_percent_pick_an_end_of_the_grid():
    grid = [1.0, 10.0, 100.0, 1000.0]
    best = np.array([10.0] * 90 + [1000.0] * 10)  # 10 % at the largest alpha
    significant = np.zeros(100, dtype=bool)
    significant[:20] = True
    out = alpha_diagnostics(best, grid, significant, cv_scores=np.tile([[0.1], [0.2], [0.3], [0.25]], (1, 100)))
    assert out["counts"] == [0, 90, 0, 10]
    assert out["share_largest"] == pytest.approx(0.10) and out["share_smallest"] == 0.0
    assert out["significant_share_largest"] == 0.0
    assert out["mean_cv_score_per_alpha"] == pytest.approx([0.1, 0.2, 0.3, 0.25])
    assert len(out["warnings"]) == 1 and "largest alpha (1000)" in out["warnings"][0]
    assert "Widen the alpha grid (e.g. add 10000)" in out["warnings"][0]
    # among significant voxels only: 3 of 20 (15 %) at the smallest alpha, 3 % of all voxels
    best = np.array([10.0] * 100)
    best[:3] = 1.0
    out = alpha_diagnostics(best, grid, significant)
    assert out["share_smallest"] == pytest.approx(0.03)
    assert [w for w in out["warnings"] if "significant voxels chose the smallest alpha (1)" in w]
    assert not alpha_diagnostics(np.full(100, 10.0), grid, significant)["warnings"]
