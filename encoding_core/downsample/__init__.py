"""Step 3, alignment: put features on the TR grid of the brain data.

- :mod:`~encoding_core.downsample.downsampling`: ``Downsampler`` (rect, lanczos, sinc, average, sum,
  last) as one sparse weight matrix per story, and ``downsample_kernel`` for pictures;
- :mod:`~encoding_core.downsample.preprocessing`: FIR delays, trimming (the reference's eight keys),
  z-scoring per story, and the check that trimmed features and targets line up.

Imports only :mod:`encoding_core.common`.
"""
from encoding_core.downsample.downsampling import METHODS, Downsampler, downsample_kernel

__all__ = ["Downsampler", "downsample_kernel", "METHODS"]
