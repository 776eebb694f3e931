"""The teaching demo: bundled spoken stories and a SIMULATED LeBel-like assembly.

``load_demo_assembly()`` gives six Aesop fables (real audio and exact word timings in
``assets/demo``) with simulated fsaverage5 responses in which known effects were planted
(see :mod:`encoding_core.demo.simulate`); ``ground_truth_maps()`` says where,
``DEMO_REGIONS`` describes the regions in words and ``demo_config()`` is the preset
experiment that fits the whole demo within a few minutes on a laptop CPU.
"""
from __future__ import annotations

from encoding_core.demo.preset import demo_config
from encoding_core.demo.simulate import (
    DEMO_REGIONS,
    DRIVERS,
    PROVENANCE_NOTE,
    SIMULATION_VERSION,
    DemoRegion,
    demo_audio_path,
    demo_drivers,
    demo_story_names,
    demo_textgrid_path,
    ground_truth_maps,
    load_demo_assembly,
    simulate_demo_assembly,
)

__all__ = [
    "DEMO_REGIONS", "DRIVERS", "PROVENANCE_NOTE", "SIMULATION_VERSION", "DemoRegion", "demo_audio_path",
    "demo_config", "demo_drivers", "demo_story_names", "demo_textgrid_path", "ground_truth_maps",
    "load_demo_assembly", "simulate_demo_assembly",
]
