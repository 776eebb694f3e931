"""Load and save assemblies, whatever their source.

``load_assembly(path, **options)`` dispatches on the path:

- ``"demo"`` -> the simulated demo assembly (:func:`encoding_core.demo.load_demo_assembly`);
- ``*.h5`` / ``*.hdf5`` -> our native HDF5 format (:mod:`encoding_core.assembly.native_h5`);
- ``*.pkl`` / ``*.pickle`` -> the reference library's pickled ``SimpleNeuroidAssembly``,
  read by a restricted unpickler that runs no code from the file (:mod:`encoding_core.assembly.reference_pickle`);
- a directory -> the LeBel et al. (OpenNeuro ds003020) layout, needs ``subject=``
  (:mod:`encoding_core.assembly.lebel`).

Every loader applies the same NaN / Inf policy (:mod:`encoding_core.assembly.cleaning`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Union


from encoding_core.assembly.data_model import Assembly
from encoding_core.common.errors import AssemblyFormatError, InputError

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
NATIVE_SUFFIXES = (".h5", ".hdf5")
PICKLE_SUFFIXES = (".pkl", ".pickle")


def load_assembly(path: Union[PathLike, str], **options: Any) -> Assembly:
    """Load an assembly from ``"demo"``, a ``.h5``/``.hdf5`` file, a reference ``.pkl``
    or a LeBel (ds003020) directory.

    Options are passed to the specific loader: ``subject=``, ``stories=``,
    ``test_story=``, ``mask=``, ``tr_time_convention=`` ("midpoint", the reference's, or
    "onset"), ``skip_missing=``, ``surfaces=`` (LeBel); ``tr=`` (pickle); ``stories=`` (native);
    ``cache_dir=``, ``seed=`` (demo). Raises AssemblyFormatError (or InputError) naming
    the path for unknown suffixes, missing paths and unreadable files.
    """
    # Empty values (the config's defaults: "", []) mean "not given".
    options = {k: v for k, v in options.items() if v is not None and not (isinstance(v, (str, list, tuple)) and not v)}
    if isinstance(path, str) and path.strip().lower() == "demo":
        from encoding_core.demo.simulate import load_demo_assembly

        _check_options("demo", options, ("cache_dir", "seed"), ignored=("subject", "stories"))
        return load_demo_assembly(**options)
    if not isinstance(path, (str, Path)):
        raise InputError(f"load_assembly: path must be a file/folder path or 'demo', got {type(path).__name__}.")
    path = Path(path).expanduser()
    if not path.exists():
        raise AssemblyFormatError(f"Assembly path {path} does not exist; check the path (or use 'demo').")
    if path.is_dir():
        from encoding_core.assembly.lebel import list_lebel_subjects, load_lebel

        subject = options.pop("subject", None)
        if not subject:
            subjects = list_lebel_subjects(path)
            raise InputError(f"{path} is a LeBel-layout folder; pass subject= (one of {subjects}).")
        _check_options(str(path), options, ("stories", "test_story", "mask", "affine", "tr_time_convention",
                                            "skip_missing", "surfaces"))
        return load_lebel(path, subject, **options)
    suffix = path.suffix.lower()
    if suffix in NATIVE_SUFFIXES:
        from encoding_core.assembly.native_h5 import read_native

        _check_options(str(path), options, ("stories",), ignored=("subject",))
        return read_native(path, **options)
    if suffix in PICKLE_SUFFIXES:
        from encoding_core.assembly.reference_pickle import load_reference_pickle

        _check_options(str(path), options, ("tr", "subject", "stories", "test_story"))
        return load_reference_pickle(path, **options)
    raise AssemblyFormatError(
        f"Cannot tell the format of {path} from its suffix {suffix or '(none)'!r}; expected "
        f"{', '.join(NATIVE_SUFFIXES + PICKLE_SUFFIXES)}, a LeBel folder, or 'demo'.")


def _check_options(source: str, options: dict[str, Any], allowed: tuple[str, ...],
                   ignored: tuple[str, ...] = ()) -> None:
    """Refuse options the loader does not take (``ignored`` ones are dropped with a log line)."""
    for key in ignored:
        if key in options:
            logger.info("load_assembly(%s): option %s=%r is not used by this format.", source, key, options.pop(key))
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(f"load_assembly({source}): unknown option(s) {unknown}; this format accepts {list(allowed)}.")


def save_assembly(assembly: Assembly, path: PathLike) -> Path:
    """Save ``assembly`` to our native HDF5 format (atomically); returns the path.

    The suffix should be ``.h5`` or ``.hdf5``. Raises StorageError if unwritable.
    """
    from encoding_core.assembly.native_h5 import write_native

    path = Path(path)
    if path.suffix.lower() not in NATIVE_SUFFIXES:
        raise InputError(f"save_assembly: {path} should end in .h5 or .hdf5 (the native format).")
    return write_native(assembly, path)


def load_story(path: PathLike, name: str) -> Any:
    """Read one story from a native ``.h5`` assembly without reading the others."""
    from encoding_core.assembly.native_h5 import load_story as _load_story

    return _load_story(path, name)
