"""From a column space to a brain surface: which mesh a map is drawn on, and MNI assemblies onto fsaverage5.

- :func:`space_projection` says where the per-column maps of a :class:`Space` are drawn and
  how they get there: fsaverage5 columns as they are; an MNI152 volume projected onto
  fsaverage5 (the reference's ``vol_to_surf`` sampling, as one sparse matrix); a subject's own
  volume projected onto that subject's cortex (pia -> wm) and drawn on its inflated surface.
  It returns None when nothing better than a glass brain is known.
- :func:`project_assembly` converts an MNI volume assembly into an fsaverage5 assembly before
  fitting, as the reference does, recording where it came from.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import numpy as np

from encoding_core.assembly.cleaning import clean_brain_data, record_zeroed_columns
from encoding_core.assembly.data_model import HEMISPHERES, MNI_TEMPLATE, SURFACE_SPACES, Assembly, Space, Story
from encoding_core.assembly.projection import (PathLike, check_mni_space, fsaverage_matrix, project,
                                               projection_matrix, resolved_sampling, vertex_normals)
from encoding_core.common.errors import InputError, SpaceMismatchError

logger = logging.getLogger(__name__)

FSAVERAGE = "fsaverage5"
"""The one fsaverage mesh that ships with nilearn (offline): maps of MNI volumes are drawn on it."""
REFERENCE_MESH = "pial"
"""The reference projects with ``vol_to_surf(img, pial)`` and nilearn's defaults (line, 3 mm, 10 samples)."""
SHOWN_WEIGHT = 0.5
"""A vertex of a thresholded, projected map is shown when at least this share of its sampling
weight comes from shown voxels (and its own value passes the threshold)."""


@dataclass(eq=False)
class SpaceProjection:
    """How the per-column maps of a space reach the surface they are drawn on.

    matrix: sparse (n_vertices, n_columns), None when the columns are the vertices.
    draw_meshes: ``{"left" | "right": (coordinates (n, 3), faces (f, 3))}`` to draw on (a
    subject's inflated cortex), None for nilearn's fsaverage5 inflated mesh. shading: per
    hemisphere (n,) sulcal shading (positive in sulci) for ``draw_meshes``. label: where the
    map is drawn; note: how it got there, built from the recorded sampling settings.
    """

    target: str
    label: str
    note: str
    matrix: Any = None
    draw_meshes: Optional[dict[str, tuple[np.ndarray, np.ndarray]]] = None
    shading: Optional[dict[str, np.ndarray]] = None
    sampling: dict[str, Any] = field(default_factory=dict)

    @property
    def n_vertices(self) -> dict[str, int]:
        """Vertices per hemisphere of the drawing surface."""
        if self.draw_meshes is None:
            return {h: SURFACE_SPACES[FSAVERAGE] for h in HEMISPHERES}
        return {h: len(self.draw_meshes[h][0]) for h in HEMISPHERES}

    def to_vertices(self, values: Any) -> np.ndarray:
        """(n_columns,) -> (n_vertices,) float64, left then right; non-finite columns count as 0
        and vertices without a sample inside the volume are NaN."""
        values = np.asarray(values, dtype=np.float64).ravel()
        if self.matrix is None:
            return values
        return project(self.matrix, np.where(np.isfinite(values), values, 0.0))

    def thresholded(self, values: Any, significant_mask: Optional[Any] = None,
                    min_value: Optional[float] = None) -> np.ndarray:
        """A thresholded map on the vertices, NaN where hidden, (n_vertices,).

        A column is shown when it is finite, significant (if a mask is given) and ``>= min_value``.
        Projected: a vertex is shown when at least :data:`SHOWN_WEIGHT` of its sampling weight
        comes from shown columns and its projected value is ``>= min_value``.
        """
        values = np.asarray(values, dtype=np.float64).ravel()
        shown = np.isfinite(values)
        if significant_mask is not None:
            shown &= np.asarray(significant_mask, dtype=bool).ravel()
        if min_value is not None:
            shown &= values >= min_value
        if self.matrix is None:
            return np.where(shown, values, np.nan)
        on_vertices = self.to_vertices(values)
        weight = project(self.matrix, shown.astype(np.float64))
        keep = (weight >= SHOWN_WEIGHT) & (on_vertices >= min_value if min_value is not None else True)
        return np.where(keep, on_vertices, np.nan)


def describe_sampling(sampling: Mapping[str, Any], outer: str, inner: Optional[str] = None) -> str:
    """Words for a resolved sampling (:func:`.projection.resolved_sampling`), e.g. for a caption."""
    kind = sampling["kind"]
    if kind == "depth":
        where = f"{sampling['n_points']} depths from the {outer} to the {inner} surface"
    elif kind == "line":
        where = f"{sampling['n_points']} points on the {outer} surface's normal, ±{sampling['radius']:g} mm"
    else:
        where = f"{sampling['n_points']} points in a {sampling['radius']:g} mm ball around each {outer} vertex"
    method = "trilinear" if sampling["interpolation"] == "linear" else "nearest-voxel"
    return f"nilearn vol_to_surf sampling ({kind}: {where}, {method}, averaged)"


def convexity(coordinates: np.ndarray, faces: np.ndarray, smoothing_steps: int = 2) -> np.ndarray:
    """Sulcal shading of a folded mesh, (n,): how far each vertex lies below the mean of its
    neighbours along its outer normal (mm; positive in sulci, negative on gyral crowns),
    averaged over ``smoothing_steps`` rings of neighbours."""
    from scipy import sparse

    coordinates = np.asarray(coordinates, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    n = len(coordinates)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adjacency = sparse.csr_matrix((np.ones(2 * len(edges)), (np.r_[edges[:, 0], edges[:, 1]],
                                                             np.r_[edges[:, 1], edges[:, 0]])), shape=(n, n))
    adjacency.data[:] = 1.0  # repeated edges count once
    degree = np.maximum(np.asarray(adjacency.sum(axis=1)).ravel(), 1.0)
    mean_of_neighbours = sparse.diags(1.0 / degree) @ adjacency
    depth = np.einsum("ij,ij->i", mean_of_neighbours @ coordinates - coordinates, vertex_normals(coordinates, faces))
    for _ in range(smoothing_steps):
        depth = 0.5 * depth + 0.5 * (mean_of_neighbours @ depth)
    return depth


def space_projection(space: Space, *, cache_dir: Optional[PathLike] = None) -> Optional[SpaceProjection]:
    """Where the maps of ``space`` are drawn (see the module docstring), or None when no surface is known.

    - fsaverage5 surface: the columns are the vertices;
    - subject_surface: the subject's projection (pia -> wm, the space's recorded sampling),
      drawn on its inflated surface, shaded by the folding of its mid-thickness surface;
    - volume with an MNI template: projected onto fsaverage5 as the reference does (pial, line,
      3 mm, 10 samples); its geometry is checked (SpaceMismatchError when it is not MNI-like);
    - other volumes (template unknown or native without surfaces), fsaverage6/7, unknown: None.

    The matrix is cached in ``cache_dir`` (first build of a subject's cortex: seconds).
    """
    if space.kind == "surface":
        if space.name != FSAVERAGE:
            return None
        return SpaceProjection(target=FSAVERAGE, label=FSAVERAGE, note="")
    if space.kind == "subject_surface":
        return _subject_projection(space, cache_dir)
    if space.kind == "volume" and space.is_mni and space.mask is not None and space.affine is not None:
        matrix = fsaverage_matrix(space.mask, space.affine, mesh_type=REFERENCE_MESH, cache_dir=cache_dir,
                                  source=f"the {space.template} volume space")
        sampling = resolved_sampling()
        note = (f"Projected from the {space.template} volume ({space.n_columns()} voxels) onto {FSAVERAGE}: "
                f"{describe_sampling(sampling, REFERENCE_MESH)}, as the reference projects MNI data; drawn on the "
                "inflated surface.")
        return SpaceProjection(target=FSAVERAGE, label=f"{FSAVERAGE} (projected from {space.template})", note=note,
                               matrix=matrix, sampling=dict(sampling, mesh_type=REFERENCE_MESH))
    return None


def _subject_projection(space: Space, cache_dir: Optional[PathLike]) -> SpaceProjection:
    from nilearn.surface import InMemoryMesh, PolyMesh

    surfaces = space.surfaces
    if surfaces is None or space.mask is None or space.affine is None:
        raise SpaceMismatchError(f"The subject surface space of {space.name!r} lacks its mask, affine or meshes; "
                                 "load the assembly again from its pycortex filestore.")

    def polymesh(kind: str):
        return PolyMesh(**{h: InMemoryMesh(*surfaces.meshes[kind][h]) for h in HEMISPHERES})

    options = dict(surfaces.sampling)
    options.setdefault("kind", "depth")
    inner = polymesh("wm") if options["kind"] in ("depth", "auto") else None
    matrix = projection_matrix(space.mask, space.affine, polymesh("pia"), inner_mesh=inner, cache_dir=cache_dir,
                               **options)
    sampling = resolved_sampling(inner_mesh=inner, **options)
    shading = {}
    for hemi in HEMISPHERES:
        pia, faces = surfaces.meshes["pia"][hemi]
        mid_thickness = (np.asarray(pia, dtype=np.float64) + surfaces.meshes["wm"][hemi][0]) / 2
        shading[hemi] = convexity(mid_thickness, faces)
    source = f"transform {surfaces.transform}, mask {surfaces.mask_type}" if surfaces.transform else "its transform"
    note = (f"{space.name}'s own volume ({space.n_columns()} voxels; {source}) projected onto {space.name}'s cortex: "
            f"{describe_sampling(sampling, 'pial', 'white-matter')}; drawn on the inflated surface.")
    return SpaceProjection(target=f"subject:{space.name}", label=f"{space.name}'s cortex (inflated)", note=note,
                           matrix=matrix, draw_meshes={h: surfaces.meshes["inflated"][h] for h in HEMISPHERES},
                           shading=shading, sampling=dict(sampling))


def project_assembly(assembly: Assembly, target: str = FSAVERAGE, *, source_template: Optional[str] = None,
                     cache_dir: Optional[PathLike] = None, check_space: bool = True, mesh_type: str = REFERENCE_MESH,
                     **sampling: Any) -> Assembly:
    """An MNI152 volume assembly projected onto fsaverage5, story by story (one sparse product each).

    Equals the reference's per-TR ``vol_to_surf(image, pial)`` of the zero-filled volumes (left
    then right hemisphere), for brain data and repeats; vertices with no sample inside the
    volume (NaN there) are set to 0 by the usual NaN policy and counted in the provenance.
    source_template: declare the template when the space records none (e.g. ``"MNI152"``);
    the projection is asked for knowingly, so a volume with no template, or a template that
    is not MNI, is refused. check_space: also check the geometry looks like MNI152
    (:func:`.projection.check_mni_space`). mesh_type / sampling: as ``vol_to_surf`` (defaults:
    the reference's). The result is a new fsaverage5 assembly (``save_assembly`` keeps it);
    ``provenance["projected_from"]`` records the source space and settings.
    """
    space = assembly.space
    if target != FSAVERAGE:
        raise InputError(f"target must be {FSAVERAGE!r} (the fsaverage mesh that ships with nilearn), got {target!r}.")
    if space.kind == "surface":
        raise InputError(f"The assembly is already on a surface ({space.describe()}); nothing to project.")
    if space.kind == "subject_surface":
        raise SpaceMismatchError(
            f"The assembly is in {space.name}'s own volume, not MNI152; fsaverage needs a registration this "
            f"data does not have. Its maps are drawn on {space.name}'s own cortex instead.")
    if space.kind != "volume" or space.mask is None or space.affine is None:
        raise SpaceMismatchError(f"Projection needs a volume space with a mask and an affine; this assembly's space "
                                 f"is {space.describe()}.")
    template = space.template
    if template is None:
        if source_template is None:
            raise SpaceMismatchError(
                f"The assembly's volume space records no template, so fsaverage projection cannot know it is MNI. "
                f"If it is, pass source_template={MNI_TEMPLATE!r} (the Assembly page: tick 'this volume is in MNI152 "
                "space').")
        template = source_template
    elif source_template is not None and source_template != template:
        raise SpaceMismatchError(f"source_template={source_template!r} contradicts the space's recorded template "
                                 f"{template!r}.")
    space = space.with_template(template)
    if not space.is_mni:
        raise SpaceMismatchError(f"The assembly's volume is in {template!r} space, not MNI152; fsaverage projection "
                                 "would put its voxels on the wrong brain.")
    if check_space:
        check_mni_space(space.mask, space.affine, source=f"assembly {assembly.subject!r} ({template})")
    matrix = fsaverage_matrix(space.mask, space.affine, mesh_type=mesh_type, check_space=False,
                              cache_dir=cache_dir, **sampling)
    provenance = dict(assembly.provenance)
    stories = []
    for story in assembly.stories_list:
        data, n_empty = clean_brain_data(project(matrix, story.brain_data, dtype=np.float32), story.name,
                                         f"the {target} projection", "projected brain data")
        record_zeroed_columns(provenance, story.name, n_empty)
        repeats = None
        if story.repeats is not None:
            repeats = np.stack([project(matrix, r, dtype=np.float32) for r in story.repeats])
            repeats, _ = clean_brain_data(repeats, story.name, f"the {target} projection", "projected repeats")
        stories.append(Story(name=story.name, brain_data=data, tr_times=story.tr_times, words=story.words,
                             word_onsets=story.word_onsets, word_offsets=story.word_offsets,
                             audio_path=story.audio_path, repeats=repeats))
    inner_type = sampling.get("inner_mesh_type")
    resolved = resolved_sampling(**{k: v for k, v in sampling.items() if k != "inner_mesh_type"}, inner_mesh=inner_type)
    provenance["projected_from"] = {
        "space": space.describe(), "template": template, "n_voxels": int(space.n_columns()),
        "mask_shape": list(space.mask.shape), "affine": np.asarray(space.affine).tolist(), "target": target,
        "mesh_type": mesh_type, "sampling": resolved,
        "method": f"{describe_sampling(resolved, mesh_type, inner_type)}, one sparse (vertices x voxels) matrix",
    }
    logger.info("Projected %d stories of %s from %s onto %s.", len(stories), assembly.subject, template, target)
    return Assembly(subject=assembly.subject, tr=assembly.tr, stories_list=stories, space=Space.surface(target),
                    provenance=provenance, simulated=assembly.simulated, test_story=assembly.test_story)


__all__ = ["FSAVERAGE", "SpaceProjection", "convexity", "describe_sampling", "project_assembly", "space_projection"]
