"""Step 5, statistics on held-out predictions (plain numpy, vectorised over voxels).

- :mod:`~encoding_core.stats.scores`: Pearson r and R^2 per voxel;
- :mod:`~encoding_core.stats.significance`: calibrated p-values for r (autocorrelation-corrected
  t-test, block permutation, the textbook t-test for comparison), BH-FDR, the permutation-null
  fallback threshold, and the labels of all of them (:func:`describe_test`);
- :mod:`~encoding_core.stats.noise_ceiling`: noise ceiling from repeats, normalised correlations;
- :mod:`~encoding_core.stats.summaries`: per-layer summaries (best layer by a named rule,
  per-region medians, alpha-grid diagnostics).

Imports only :mod:`encoding_core.common`.
"""
from encoding_core.stats.noise_ceiling import noise_ceiling, normalize_by_ceiling
from encoding_core.stats.scores import pearson_r, r2_score
from encoding_core.stats.significance import SignificanceResult, describe_test, fallback_threshold, fdr_bh

# The test itself is ``encoding_core.stats.significance.significance`` (not re-exported here: the
# name would hide the module ``encoding_core.stats.significance``).
__all__ = ["pearson_r", "r2_score", "SignificanceResult", "describe_test", "fallback_threshold", "fdr_bh",
           "noise_ceiling", "normalize_by_ceiling"]
