"""Shared test set-up: offline, deterministic, small."""
from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """The committed espeak-ng speech clip, (n_samples,) float32 at 16 kHz."""
    import soundfile

    audio, rate = soundfile.read(ROOT / "tests" / "data" / "speech_clip.flac", dtype="float32")
    assert rate == 16000
    return audio


@pytest.fixture(scope="module")
def whisper():
    """The bundled Whisper tiny.en, fp32 on the CPU."""
    from encoding_core.features.models import load_model

    return load_model("bundled/whisper-tiny.en", device="cpu", precision="fp32")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def make_assembly():
    """Factory for a small random Assembly: make_assembly(n_stories=3, n_trs=60, n_voxels=50)."""
    from encoding_core.assembly import Assembly, Story

    def _make(n_stories: int = 3, n_trs: int = 60, n_voxels: int = 50, tr: float = 2.0, seed: int = 0,
              repeats: int = 0) -> Assembly:
        gen = np.random.default_rng(seed)
        stories = []
        for i in range(n_stories):
            n_words = 3 * n_trs
            onsets = np.sort(gen.uniform(0, n_trs * tr - 1, n_words))
            rep = gen.standard_normal((repeats, n_trs, n_voxels)).astype(np.float32) if (repeats and i == n_stories - 1) else None
            stories.append(Story(
                name=f"story{i}",
                brain_data=gen.standard_normal((n_trs, n_voxels)).astype(np.float32),
                tr_times=np.arange(n_trs) * tr,
                words=[f"w{j}" for j in range(n_words)],
                word_onsets=onsets, word_offsets=onsets + 0.3, repeats=rep,
            ))
        return Assembly(subject="test", tr=tr, stories_list=stories)

    return _make


@pytest.fixture(scope="session")
def fsaverage5():
    """nilearn's fsaverage5 meshes (pial, white_matter, inflated, ...; they ship with nilearn, offline)."""
    from nilearn import datasets

    return datasets.load_fsaverage("fsaverage5")


@pytest.fixture(scope="session")
def mni_mask():
    """(mask (99, 117, 95) bool, affine (4, 4)) of nilearn's 2 mm MNI152 brain mask (offline)."""
    from nilearn import datasets

    image = datasets.load_mni152_brain_mask(resolution=2)
    return np.asarray(image.get_fdata()) > 0, image.affine.copy()


@pytest.fixture(autouse=True)
def _unfreeze_after_test():
    """The app (run by AppTest in the app and reliability tests) freezes the objects alive in its
    process (``freeze_long_lived_objects``). In the test process that would keep the cyclic
    garbage later made from those objects from ever being collected: undo it after each test."""
    yield
    gc.unfreeze()
