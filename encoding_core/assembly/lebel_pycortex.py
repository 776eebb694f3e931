"""The LeBel dataset's pycortex filestore: find a subject's cortex and give its responses a surface space.

ds003020 ships each subject's cortical surfaces and functional transform as a pycortex
filestore, ``<root>/derivative/pycortex-db/<SUBJECT>/`` (``derivatives/`` in later releases),
with the transform ``<SUBJECT>_auto`` whose ``thick`` mask selects the response columns.
:func:`lebel_space` turns that into a ``subject_surface`` :class:`~encoding_core.assembly.Space`
(read with :mod:`encoding_core.assembly.pycortex_store`, no pycortex needed).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from encoding_core.assembly.data_model import Space
from encoding_core.common.errors import InputError, SpaceMismatchError

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
DERIVATIVE_FOLDERS = ("derivative", "derivatives")
"""The dataset's derivative folder: ``derivative`` in the original release, ``derivatives`` later."""
PYCORTEX_DB = "pycortex-db"


def lebel_transform_name(subject: str) -> str:
    """The transform the LeBel responses live in: ``<SUBJECT>_auto``."""
    return f"{subject}_auto"


def find_pycortex_subject(root: PathLike, subject: str) -> Optional[Path]:
    """``<root>/derivative(s)/pycortex-db/<subject>`` if that folder exists, else None."""
    for derivative in DERIVATIVE_FOLDERS:
        folder = Path(root) / derivative / PYCORTEX_DB / subject
        if folder.is_dir():
            return folder
    return None


def lebel_space(root: PathLike, subject: str, n_columns: int, *, data_source: str,
                mask: Optional[np.ndarray] = None, affine: Optional[np.ndarray] = None,
                surfaces: Any = "auto") -> Space:
    """The column space of a LeBel subject's responses ((n_trs, n_columns) in its own volume).

    - ``mask`` given: a volume space (that mask and affine, template ``native:<subject>``);
    - else ``surfaces="auto"`` (default): the subject's pycortex filestore when the dataset has
      one (:func:`find_pycortex_subject`), giving a ``subject_surface`` space (transform
      ``<SUBJECT>_auto``, the mask whose True voxels match the columns, ``thick`` first), or an
      unknown space when it has none; ``surfaces=False``: an unknown space; a path: that
      pycortex subject folder.

    data_source names the responses in errors. Raises SpaceMismatchError when no mask of the
    transform has ``n_columns`` True voxels, PycortexFormatError for a damaged filestore.
    """
    from encoding_core.assembly.pycortex_store import PycortexSubject, subject_surface_space

    if mask is not None:
        return Space.volume(mask, affine, template=f"native:{subject}")
    if surfaces is False or surfaces is None:
        return Space()
    if isinstance(surfaces, str) and surfaces == "auto":
        folder = find_pycortex_subject(root, subject)
        if folder is None:
            logger.info("%s has no %s/%s/%s: the responses stay in an unknown volume space (no brain map).",
                        root, "|".join(DERIVATIVE_FOLDERS), PYCORTEX_DB, subject)
            return Space()
    elif isinstance(surfaces, (str, Path)):
        folder = Path(surfaces)
    else:
        raise InputError(f"surfaces must be 'auto', False or a pycortex subject folder, got {surfaces!r}.")
    try:
        space = subject_surface_space(PycortexSubject(folder), lebel_transform_name(subject), n_columns,
                                      data_source=data_source)
    except SpaceMismatchError as exc:
        raise SpaceMismatchError(f"{exc} To fit these responses without a brain map, load them with "
                                 f"surfaces=False (or move {folder} aside).") from None
    logger.info("Responses of %s drawn on the cortex from %s (transform %s, mask %s).", subject, folder,
                space.surfaces.transform, space.surfaces.mask_type)
    return space
