"""Benchmark: volume -> fsaverage5 as one sparse matrix against the reference's per-TR vol_to_surf loop.

Usage::

    python bench/bench_projection.py             # 300 TRs of a 2 mm MNI152 volume (235,375 voxels)
    python bench/bench_projection.py --trs 20    # a quick look (seconds)

Data: a story of ``--trs`` TRs on nilearn's 2 mm MNI152 brain mask (float32, seeded), projected
onto fsaverage5 (both hemispheres, pial mesh, ``vol_to_surf`` defaults: line, 3 mm, 10 samples,
linear), as the reference's ``encoding/brain_projection/project.py`` does.

- reference: for every TR, fill the 3-D volume from the (TRs, voxels) array, wrap it in a NIfTI
  and call ``vol_to_surf`` once per hemisphere (the meshes loaded once);
- ours: ``encoding_core.projection_matrix`` (built once, cached on disk) and one sparse product
  (``encoding_core.assembly.projection.project``), cold (build) and warm (cache read).

Both sides run in this process, one after the other, on the same data; the table gives each
time, the ratio to the loop and the largest difference between the two results.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def reference_loop(data: np.ndarray, mask: np.ndarray, affine: np.ndarray, meshes) -> np.ndarray:
    """The reference's loop: per TR one NIfTI and one vol_to_surf per hemisphere; (TRs, 20484)."""
    import nibabel
    from nilearn import surface

    out = np.zeros((len(data), sum(len(m.coordinates) for m in meshes)))
    volume = np.zeros(mask.shape, dtype=data.dtype)
    for t in range(len(data)):
        volume[mask] = data[t]
        image = nibabel.Nifti1Image(volume, affine)
        out[t] = np.concatenate([surface.vol_to_surf(image, mesh) for mesh in meshes])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trs", type=int, default=300, help="TRs in the story (default 300)")
    args = parser.parse_args()

    from nilearn import datasets, surface

    from encoding_core import projection_matrix
    from encoding_core.assembly.projection import project

    brain = datasets.load_mni152_brain_mask(resolution=2)
    mask, affine = np.asarray(brain.get_fdata()) > 0, brain.affine
    pial = datasets.load_fsaverage("fsaverage5")["pial"]
    meshes = [surface.load_surf_mesh(pial.parts[h]) for h in ("left", "right")]  # loaded once, as the reference
    data = np.random.default_rng(0).standard_normal((args.trs, int(mask.sum()))).astype(np.float32)

    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        matrix = projection_matrix(mask, affine, pial, cache_dir=cache)
        build = time.perf_counter() - start
        start = time.perf_counter()
        cached = projection_matrix(mask, affine, pial, cache_dir=cache)
        cached_load = time.perf_counter() - start
        cache_bytes = sum(p.stat().st_size for p in Path(cache).iterdir())
    np.testing.assert_array_equal(cached.indices, matrix.indices)
    start = time.perf_counter()
    ours = project(matrix, data)
    product = time.perf_counter() - start

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Mean of empty slice" where nilearn returns NaN
        reference = reference_loop(data, mask, affine, meshes)
    loop = time.perf_counter() - start

    nan_agree = bool(np.array_equal(np.isnan(ours), np.isnan(reference)))
    max_diff = float(np.nanmax(np.abs(ours - reference)))
    rows = [
        ("reference: per-TR vol_to_surf loop (2 calls per TR)", loop),
        ("ours, cold: build matrix + cache write + one sparse product", build + product),
        ("ours, warm: cached matrix + one sparse product", cached_load + product),
    ]
    print(f"Story: {args.trs} TRs x {mask.sum()} voxels (2 mm MNI152 brain mask, float32) -> fsaverage5 "
          f"(20484 vertices, pial, vol_to_surf defaults)")
    print(f"Matrix: {matrix.shape[0]} x {matrix.shape[1]}, {matrix.nnz} non-zeros, cache file "
          f"{cache_bytes / 2**20:.1f} MiB; build {build:.2f} s, cache read {cached_load:.3f} s, "
          f"product {product:.2f} s")
    print()
    print("| method | wall (s) | speed-up vs the loop |")
    print("|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {loop / seconds:.0f}x |")
    print()
    print(f"max |ours - reference| = {max_diff:.2e}; NaN positions identical: {nan_agree} "
          f"({int(np.isnan(reference).sum())} NaN values)")


if __name__ == "__main__":
    main()
