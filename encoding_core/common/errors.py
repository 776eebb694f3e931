"""Error types raised by encoding_core.

Every error caused by bad input or by the environment is an :class:`EncodingCoreError`
(the project's one documented error type). Its message says what is wrong, which file
or argument, and how to fix it. Anything else escaping the core is a bug.
"""
from __future__ import annotations


class EncodingCoreError(Exception):
    """Base class of all errors the core raises on purpose."""


class InputError(EncodingCoreError, ValueError):
    """A file, argument or setting given by the user is wrong."""


class AssemblyFormatError(InputError):
    """An assembly file or directory cannot be read (wrong, truncated, inconsistent)."""


class UnsafePickleError(AssemblyFormatError):
    """A pickle names a global outside the allow-list; nothing from it was run."""


class AudioError(InputError):
    """An audio file is missing, empty, truncated or not decodable."""


class TextGridError(InputError):
    """A Praat TextGrid cannot be parsed or is inconsistent."""


class TrimmingMismatchError(InputError):
    """After trimming, a story's features and targets have different lengths."""


class ConfigError(InputError):
    """An experiment configuration is invalid."""


class PathNotAllowedError(InputError):
    """A path lies outside the allowed data roots."""


class ModelUnavailableError(EncodingCoreError):
    """A speech model is not available offline (or cannot be loaded)."""


class CacheError(EncodingCoreError):
    """A feature-cache entry is unusable (it is then recomputed, not used)."""


class StorageError(EncodingCoreError):
    """A results or cache folder cannot be written (read-only, full, missing)."""


class JobCancelled(EncodingCoreError):
    """Work was cancelled by the user between two units of work."""


class ClusterError(EncodingCoreError):
    """A Dask scheduler cannot be reached, or the cluster went away during a job."""


class SpaceMismatchError(InputError):
    """Brain data, mask, affine, transform or surfaces do not describe the same space."""


class PycortexFormatError(AssemblyFormatError):
    """A pycortex filestore folder or file is missing, unreadable or inconsistent."""
