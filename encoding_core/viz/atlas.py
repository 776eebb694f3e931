"""Anatomical regions on fsaverage5 for per-region tables: nilearn's Destrieux surface atlas.

nilearn 0.14 does not ship this atlas: ``nilearn.datasets.fetch_atlas_surf_destrieux()``
downloads it once (two FreeSurfer ``.annot`` files, about 0.5 MB) into nilearn's data folder.
This module never downloads: :func:`destrieux_regions` reads the files when they are already
there and returns None otherwise; :data:`DESTRIEUX_DOWNLOAD_COMMAND` tells the user how to get
them.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

logger = logging.getLogger(__name__)

DESTRIEUX_FOLDER = "destrieux_surface"
DESTRIEUX_FILES = ("left.aparc.a2009s.annot", "right.aparc.a2009s.annot")
DESTRIEUX_DOWNLOAD_COMMAND = ('python -c "from nilearn.datasets import fetch_atlas_surf_destrieux; '
                              'fetch_atlas_surf_destrieux()"')
"""Run once with a network to put the atlas where :func:`destrieux_regions` finds it."""
UNLABELLED = ("Unknown", "Medial_wall")


def _data_dirs(data_dir: Optional[Union[str, Path, Sequence[Union[str, Path]]]]) -> list[Path]:
    if data_dir is None:
        from nilearn.datasets import get_data_dirs

        return [Path(d) for d in get_data_dirs()]
    if isinstance(data_dir, (str, Path)):
        return [Path(data_dir)]
    return [Path(d) for d in data_dir]


def destrieux_regions(data_dir: Optional[Union[str, Path, Sequence[Union[str, Path]]]] = None,
                      n_vertices_per_hemi: int = 10242) -> Optional[dict[str, np.ndarray]]:
    """{"left <label>" / "right <label>": (2 * n_vertices_per_hemi,) bool} from the Destrieux atlas.

    Vertices are ordered left then right, as every fsaverage5 map here. Looks in nilearn's
    data folders (or ``data_dir``) for ``destrieux_surface/{left,right}.aparc.a2009s.annot``;
    returns None when they are not there (no download). The medial wall and unknown labels
    are left out; empty labels too.
    """
    from nibabel import freesurfer

    for base in _data_dirs(data_dir):
        paths = [base / DESTRIEUX_FOLDER / name for name in DESTRIEUX_FILES]
        if not all(p.is_file() for p in paths):
            continue
        try:
            hemis = [freesurfer.read_annot(str(p)) for p in paths]
        except (OSError, ValueError) as exc:
            logger.warning("The Destrieux atlas in %s is unreadable (%s); delete it and fetch it again.", base, exc)
            return None
        n = 2 * n_vertices_per_hemi
        regions: dict[str, np.ndarray] = {}
        for h, (hemi, (labels, _, names)) in enumerate(zip(("left", "right"), hemis, strict=True)):
            labels = np.asarray(labels)
            if labels.shape[0] != n_vertices_per_hemi:
                logger.warning("The Destrieux atlas in %s has %d vertices per hemisphere, not %d (fsaverage5).",
                               base, labels.shape[0], n_vertices_per_hemi)
                return None
            for index, raw in enumerate(names):  # ~75 labels per hemisphere
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                inside = labels == index
                if name in UNLABELLED or not inside.any():
                    continue
                mask = np.zeros(n, dtype=bool)
                mask[h * n_vertices_per_hemi:(h + 1) * n_vertices_per_hemi] = inside
                regions[f"{hemi} {name}"] = mask
        return regions
    return None
