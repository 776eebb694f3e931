"""Shared infrastructure used by every step of the pipeline, importing nothing above it.

- :mod:`~encoding_core.common.errors`: the error classes (all subclass ``EncodingCoreError``);
- :mod:`~encoding_core.common.storage`: atomic writes (temp + fsync + rename) and folder helpers;
- :mod:`~encoding_core.common.paths`: the app's folders and the data roots a browser user may read;
- :mod:`~encoding_core.common.progress`: progress callbacks and cancellation;
- :mod:`~encoding_core.common.arrays`: input validation of numeric arrays.
"""
