"""Step 4, models: ridge regression with nested cross-validation, and how it is scored.

- :mod:`~encoding_core.models.ridge`: ``ridge_nested_cv`` (Gram downdates, all alphas per voxel
  block, kernel form when n < p) and ``RidgeFit``;
- :mod:`~encoding_core.models.banded_ridge`: ``banded_ridge_nested_cv`` (several feature spaces,
  one scaling per space and an alpha per voxel chosen by nested CV, same Gram downdates);
- :mod:`~encoding_core.models.variance_partitioning`: unique / shared r² from the joint and subset
  models (negatives kept and counted), optional stacked estimate;
- :mod:`~encoding_core.models.folds`: seeded CV folds (chunked, contiguous, trimmed, per story);
- :mod:`~encoding_core.models.fitting`: fit + held-out statistics for one layer (train/test or CV);
- :mod:`~encoding_core.models.nested_cv`: the reference library's ``NestedCVModel``.

Imports :mod:`encoding_core.common`, :mod:`encoding_core.config` and :mod:`encoding_core.stats`.
"""
