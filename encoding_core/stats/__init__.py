"""Step 5, statistics on held-out predictions (plain numpy, vectorised over voxels).

- :mod:`~encoding_core.stats.scores`: Pearson r and R^2 per voxel;
- :mod:`~encoding_core.stats.significance`: parametric and block-permutation p-values, BH-FDR;
- :mod:`~encoding_core.stats.noise_ceiling`: noise ceiling from repeats, normalised correlations.

Imports only :mod:`encoding_core.common`.
"""
from encoding_core.stats.noise_ceiling import noise_ceiling, normalize_by_ceiling
from encoding_core.stats.scores import pearson_r, r2_score
from encoding_core.stats.significance import block_permutation_pvalues, fdr_bh, pearson_pvalues

__all__ = ["pearson_r", "r2_score", "pearson_pvalues", "block_permutation_pvalues", "fdr_bh", "noise_ceiling",
           "normalize_by_ceiling"]
