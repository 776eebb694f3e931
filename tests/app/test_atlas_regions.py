"""Per-region tables: nilearn's Destrieux atlas read from disk (never downloaded), and the region rows
of a real fsaverage5 run and of the demo."""
from __future__ import annotations

import numpy as np
import pytest
from nibabel import freesurfer

from encoding_core.viz.atlas import DESTRIEUX_DOWNLOAD_COMMAND, destrieux_regions

N_HEMI = 10242
NAMES = [b"Unknown", b"G_temp_sup-Lateral", b"S_temporal_sup", b"Medial_wall"]


def write_fake_destrieux(folder, seed=0):
    """Two .annot files in nilearn's layout with random labels over 4 names (label per vertex)."""
    gen = np.random.default_rng(seed)
    target = folder / "destrieux_surface"
    target.mkdir(parents=True)
    ctab = np.array([[i * 40, 0, 0, 0, i] for i in range(len(NAMES))], dtype=np.int32)
    labels = {}
    for hemi in ("left", "right"):
        labels[hemi] = gen.integers(0, len(NAMES), N_HEMI).astype(np.int32)
        freesurfer.write_annot(str(target / f"{hemi}.aparc.a2009s.annot"), labels[hemi], ctab, NAMES,
                               fill_ctab=True)
    return labels


def test_destrieux_regions_from_disk_match_the_labels(tmp_path):
    assert destrieux_regions(data_dir=tmp_path) is None  # not there: no download, None
    labels = write_fake_destrieux(tmp_path)
    regions = destrieux_regions(data_dir=tmp_path)
    assert set(regions) == {"left G_temp_sup-Lateral", "left S_temporal_sup", "right G_temp_sup-Lateral",
                            "right S_temporal_sup"}  # the medial wall and unknown are left out
    for name, mask in regions.items():
        hemi, label = name.split(" ", 1)
        expected = np.zeros(2 * N_HEMI, dtype=bool)
        offset = 0 if hemi == "left" else N_HEMI
        for vertex in range(N_HEMI):  # loop reference
            if NAMES[labels[hemi][vertex]].decode() == label:
                expected[offset + vertex] = True
        np.testing.assert_array_equal(mask, expected)
    assert "fetch_atlas_surf_destrieux" in DESTRIEUX_DOWNLOAD_COMMAND


def test_region_rows_of_a_real_surface_run(studio, monkeypatch):
    from app_helpers import make_run
    from encoding_core.experiment.runstore import RunStore
    from encoding_core.studio import region_rows

    run_id = make_run(studio / "results", seed=4, layers=(0, 1))
    run = RunStore(studio / "results").load(run_id)
    monkeypatch.setenv("NILEARN_DATA", str(studio / "nilearn"))
    rows, source = region_rows(run)
    assert rows == [] and "Destrieux atlas is not on this machine" in source and "fetch_atlas_surf_destrieux" in source
    write_fake_destrieux(studio / "nilearn")
    rows, source = region_rows(run)
    assert source == "the Destrieux atlas (nilearn, fsaverage5)" and len(rows) == 4
    regions = destrieux_regions(data_dir=studio / "nilearn")
    for row in rows:
        mask = regions[row["region"]]
        for layer in (0, 1):
            r = run.arrays(layer)["correlations"]
            assert row[f"layer {layer}"] == pytest.approx(float(np.median(r[mask])))
        assert row["voxels"] == int(mask.sum())
