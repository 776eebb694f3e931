"""Results and Assembly pages on volume data: a subject's own cortex, MNI volumes on fsaverage5,
the glass brain only as a labelled last resort, and nothing drawn on the wrong brain."""
from __future__ import annotations

import json
import warnings

import nibabel
import numpy as np
import pytest

from app_helpers import as_array, inject_assembly, new_app, open_page, picture_samples, plotly_specs, texts
from surface_testutils import INFLATED_SCALE, write_pycortex_subject

from encoding_core import viz
from encoding_core.assembly import Assembly, Space, Story
from encoding_core.assembly.assembly_loader import load_assembly, save_assembly
from encoding_core.assembly.pycortex_store import open_pycortex_subject, subject_surface_space
from encoding_core.config import ExperimentConfig
from encoding_core.experiment.runstore import RunStore


def _run_with_space(results_dir, space: Space, seed: int = 0) -> tuple[str, np.ndarray]:
    """A finished one-layer run in ``space`` with known correlations; returns (run id, r)."""
    rng = np.random.default_rng(seed)
    n = space.n_columns()
    r = rng.uniform(-0.2, 0.6, n).astype(np.float32)
    writer = RunStore(results_dir).create(ExperimentConfig(name="volume run", results_dir=str(results_dir)),
                                          {"layers": [0], "subject": space.name})
    writer.write_space(space)
    writer.write_layer(0, {"median_score": float(np.median(r)), "max_score": float(r.max()), "n_significant": 0,
                           "percent_significant": 0.0},
                       {"correlations": r, "significant_mask": np.zeros(n, dtype=bool)})
    writer.finish({"layers": {"0": {"median_r": float(np.median(r))}}, "best_layer": 0}, {"total": 1.0})
    return writer.run_id, r


def _mesh(figure: dict, n_vertices: int) -> dict:
    meshes = [t for t in figure["data"] if t["type"] == "mesh3d" and len(as_array(t["x"])) == n_vertices]
    assert len(meshes) == 1
    return meshes[0]


@pytest.fixture(scope="module")
def mni4(mni_mask):
    mask, affine = mni_mask
    return mask[::2, ::2, ::2].copy(), affine @ np.diag([2.0, 2.0, 2.0, 1.0])


def test_results_draws_a_subject_surface_map_on_the_subjects_cortex(studio, fsaverage5):
    from nilearn import surface

    folder = write_pycortex_subject(studio / "db", "S01", fsaverage5)
    subject = open_pycortex_subject(studio / "db", "S01")
    thick = subject.transform("S01_auto").mask("thick")
    space = subject_surface_space(subject, "S01_auto", int(thick.sum()), data_source="test")
    _, r = _run_with_space(studio / "results", space)
    at = new_app()
    at.run()
    open_page(at, "results")
    assert not at.error
    assert "S01's cortex (inflated)" in texts(at.caption) and "S01_auto" in texts(at.caption)
    at.slider(key="min_r").set_value(0.2).run()
    picture = picture_samples(plotly_specs(at)["surface_map"])  # the default picture, checked below
    at.toggle(key="map_3d").set_value(True).run()
    at.toggle(key="full_mesh").set_value(True).run()  # every vertex, to compare with nilearn's projection
    figure = plotly_specs(at)["surface_map"]
    inflated = nibabel.load(folder / "surfaces" / "inflated_lh.gii").darrays[0].data
    mesh = _mesh(figure, 10242)
    np.testing.assert_allclose(as_array(mesh["x"]), inflated[:, 0], rtol=1e-6)  # the subject's, not fsaverage5's
    assert not np.allclose(inflated, np.asarray(fsaverage5["inflated"].parts["left"].coordinates))
    assert INFLATED_SCALE != 1.0
    # the map: nilearn's vol_to_surf (pia -> wm) of r, shown where >= half the sampling weight passes r >= 0.2
    volume = np.zeros(space.mask.shape)
    volume[space.mask] = r
    passing = np.zeros(space.mask.shape)
    passing[space.mask] = r >= 0.2
    coord = np.asarray(json.loads((folder / "transforms" / "S01_auto" / "matrices.xfm").read_text())["coord"])
    pia, wm = str(folder / "surfaces" / "pia_lh.gii"), str(folder / "surfaces" / "wm_lh.gii")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = surface.vol_to_surf(nibabel.Nifti1Image(volume.T, np.linalg.inv(coord)), pia, inner_mesh=wm)
        weight = surface.vol_to_surf(nibabel.Nifti1Image(passing.T, np.linalg.inv(coord)), pia, inner_mesh=wm)
    expected = np.where((weight >= 0.5) & (values >= 0.2), values, np.nan)
    hemis = (("left", "lh"), ("right", "rh"))
    files = {h: nibabel.load(folder / "surfaces" / f"inflated_{short}.gii") for h, short in hemis}
    drawn = viz.BrainSurface("S01", {h: (files[h].darrays[0].data, files[h].darrays[1].data) for h, _ in hemis},
                             {h: _shading(folder, short) for h, short in hemis})
    vmax = float(np.nanmax(np.abs(np.concatenate([values, _right_values(folder, volume, coord)]))))
    reference = viz.surface_figure(np.concatenate([expected, np.full(10242, np.nan)]), hemi="left", view="lateral",
                                   vmax=vmax, title=figure["layout"]["title"]["text"], surface=drawn).to_dict()
    assert as_array(_mesh(reference, 10242)["vertexcolor"]).tolist() == as_array(mesh["vertexcolor"]).tolist()
    shown = picture[np.isfinite(picture)]  # the picture shows the same projected values
    assert shown.size and np.isin(shown, expected[np.isfinite(expected)].astype(np.float32)).all()
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download the four-view PNG (left/right, lateral/medial)" in labels
    at.radio(key="hemi").set_value("right").run()
    _mesh(plotly_specs(at)["surface_map"], 10242)
    assert not at.error and not at.get("image")


def _shading(folder, short):
    from encoding_core.assembly.spaces import convexity

    pia = nibabel.load(folder / "surfaces" / f"pia_{short}.gii")
    wm = nibabel.load(folder / "surfaces" / f"wm_{short}.gii")
    return convexity((pia.darrays[0].data.astype(np.float64) + wm.darrays[0].data) / 2, pia.darrays[1].data)


def _right_values(folder, volume, coord):
    from nilearn import surface

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return surface.vol_to_surf(nibabel.Nifti1Image(volume.T, np.linalg.inv(coord)),
                                   str(folder / "surfaces" / "pia_rh.gii"),
                                   inner_mesh=str(folder / "surfaces" / "wm_rh.gii"))


def test_results_draws_an_mni_volume_on_fsaverage5(studio, mni4, fsaverage5):
    mask, affine = mni4
    _run_with_space(studio / "results", Space.volume(mask, affine, "MNI152"))
    at = new_app()
    at.run()
    open_page(at, "results")
    assert not at.error
    assert "fsaverage5 (projected from MNI152)" in texts(at.caption)
    at.toggle(key="map_3d").set_value(True).run()
    _mesh(plotly_specs(at)["surface_map"], 2562)  # the rotatable view: one vertex in four by default
    at.toggle(key="full_mesh").set_value(True).run()
    mesh = _mesh(plotly_specs(at)["surface_map"], 10242)
    np.testing.assert_allclose(as_array(mesh["x"]), np.asarray(fsaverage5["inflated"].parts["left"].coordinates)[:, 0],
                               rtol=1e-6)
    assert not at.get("image")  # no glass brain


def test_glass_brain_only_as_a_labelled_last_resort(studio, mni4):
    mask, affine = mni4
    _run_with_space(studio / "results", Space.volume(mask, affine))  # template unknown
    at = new_app()
    at.run()
    open_page(at, "results")
    assert "Glass brain (last resort)" in texts(at.caption)
    assert at.get("image") and "surface_map" not in plotly_specs(at)


def test_nothing_is_drawn_on_the_wrong_brain(studio, mni4):
    mask, affine = mni4
    native, _ = _run_with_space(studio / "results", Space.volume(mask, affine, "native:UTS01"))
    wrong, _ = _run_with_space(studio / "results", Space.volume(mask, np.eye(4), "MNI152"), seed=1)
    at = new_app()
    at.run()
    open_page(at, "results")
    at.selectbox(key="run_pick").set_value(wrong).run()
    assert "cannot be drawn" in texts(at.error) and "MNI" in texts(at.error)  # marked MNI, but the grid is not
    assert not at.get("image") and "surface_map" not in plotly_specs(at)
    at.selectbox(key="run_pick").set_value(native).run()
    assert "native:UTS01 space and no surface for it is known" in texts(at.info)
    assert not at.get("image") and "surface_map" not in plotly_specs(at) and not at.error


def test_assembly_page_projects_an_mni_volume_onto_fsaverage5(studio, mni4):
    mask, affine = mni4
    rng = np.random.default_rng(2)
    stories = [Story(f"story{i}", rng.standard_normal((6, int(mask.sum()))).astype(np.float32), np.arange(6) * 2.0)
               for i in range(2)]
    path = save_assembly(Assembly("sub-02", 2.0, stories, space=Space.volume(mask, affine)), studio / "mni.h5")
    at = new_app()
    inject_assembly(at, path)
    at.run()
    open_page(at, "assembly")
    assert "project_fsaverage" not in [b.key for b in at.button]  # asked for knowingly: tick first
    at.checkbox(key="declare_mni").check().run()
    target = studio / "mni_fsaverage5.h5"
    assert at.text_input(key="projected_path").value == str(target)
    at.button(key="project_fsaverage").click().run()
    assert not at.error, texts(at.error)
    projected = load_assembly(target)
    assert projected.space.name == "fsaverage5" and projected.provenance["projected_from"]["template"] == "MNI152"
    assert at.session_state["assembly_source"][0] == str(target)
    assert "fsaverage5 surface" in texts(at.caption)
