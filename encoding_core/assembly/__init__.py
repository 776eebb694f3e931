"""Step 1, the data: assemblies of stories (brain responses, TR times, words, audio).

- :mod:`~encoding_core.assembly.data_model`: ``Assembly``, ``Story``, ``Space`` (the one data model);
- :mod:`~encoding_core.assembly.assembly_loader`: ``load_assembly`` / ``save_assembly``, dispatching to
  the native HDF5 format (:mod:`.native_h5`), the reference's pickle read safely
  (:mod:`.reference_pickle`), the LeBel ds003020 layout (:mod:`.lebel`) and the demo;
- :mod:`~encoding_core.assembly.textgrid`: Praat TextGrids; :mod:`~encoding_core.assembly.audio`: audio
  files and their mapping to stories; :mod:`~encoding_core.assembly.cleaning`: the NaN/Inf policy;
- volume data on brain surfaces: :mod:`.projection` (nilearn's ``vol_to_surf`` as one sparse
  matrix, cached), :mod:`.pycortex_store` (a pycortex filestore read without pycortex),
  :mod:`.lebel_pycortex` (the LeBel dataset's pycortex-db), :mod:`.spaces` (where a space's maps
  are drawn; MNI assemblies onto fsaverage5).

This package imports only :mod:`encoding_core.common` (and :mod:`encoding_core.demo` lazily, from the loader).
"""
from encoding_core.assembly.data_model import SURFACE_SPACES, Assembly, CorticalSurfaces, Space, Story

__all__ = ["Assembly", "CorticalSurfaces", "Story", "Space", "SURFACE_SPACES"]
