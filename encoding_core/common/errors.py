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


class MissingStoryFilesError(AssemblyFormatError):
    """Stories of a dataset folder lack files (e.g. a response file or a TextGrid); nothing was loaded.

    ``root``: the folder; ``missing``: story -> what it lacks, in words naming the files. The
    message lists every story and suggests ``skip_missing=True`` to load the others.
    """

    def __init__(self, root: object, missing: dict) -> None:
        self.root = str(root)
        self.missing = {str(k): [str(p) for p in v] for k, v in dict(missing).items()}
        listing = "; ".join(f"{name}: {', '.join(problems)}" for name, problems in self.missing.items())
        count = len(self.missing)
        super().__init__(
            f"{self.root}: {count} {'story lacks' if count == 1 else 'stories lack'} files, so nothing was loaded. "
            f"{listing}. Add the missing files, or load the other stories with skip_missing=True (Assembly page: "
            "'Skip stories with missing files'; config: assembly.skip_missing = true).")

    def __reduce__(self):  # picklable across processes (jobs, Dask) despite the custom signature
        return (type(self), (self.root, self.missing))


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
