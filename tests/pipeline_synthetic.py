"""Synthetic assemblies with a planted signal in one layer, and a feature source for them.

Windows sit at TR time + (-0.75, -0.25, 0.25, 0.75) s, so ``rect`` downsampling (mean of the
windows within half a TR of each TR time) gives exactly the per-TR latent value; layer
``signal_layer`` carries the latent, the other layers are independent noise. Brain data
of the first ``n_signal`` voxels is a FIR (delays 1-4) mixture of the latent plus noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from encoding_core.assembly import Assembly, Story
from encoding_core.config import ExperimentConfig, TrimmingConfig

WINDOW_OFFSETS = np.array([-0.75, -0.25, 0.25, 0.75])


@dataclass
class SyntheticFeatures:
    """StoryFeatures-like: times (n_windows,) s, layers list of (n_windows, dim)."""

    times: np.ndarray
    layers: list

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def layer(self, index: int) -> np.ndarray:
        return self.layers[index]


@dataclass
class Planted:
    assembly: Assembly
    features: dict  # story -> SyntheticFeatures
    n_signal: int
    signal_layer: int

    def source(self, story, progress=None, cancel=None):
        if progress is not None:
            progress("features", 1, 1, story.name)
        return self.features[story.name]


def make_planted(n_stories=4, n_trs=80, n_voxels=30, n_signal=20, dim=6, n_layers=3, signal_layer=1,
                 noise=0.5, tr=2.0, seed=0, repeats=0) -> Planted:
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((4, dim, n_voxels)) / np.sqrt(4 * dim)
    weights[:, :, n_signal:] = 0.0
    stories, features = [], {}
    for i in range(n_stories):
        latent = rng.standard_normal((n_trs, dim))
        signal = np.zeros((n_trs, n_voxels))
        for k, delay in enumerate((1, 2, 3, 4)):
            signal[delay:] += latent[:-delay] @ weights[k]
        brain = signal + noise * rng.standard_normal((n_trs, n_voxels))
        tr_times = np.arange(n_trs) * tr
        times = (tr_times[:, None] + WINDOW_OFFSETS[None, :]).ravel()
        layers = []
        for layer in range(n_layers):
            per_tr = latent if layer == signal_layer else rng.standard_normal((n_trs, dim))
            layers.append(np.repeat(per_tr, len(WINDOW_OFFSETS), axis=0).astype(np.float32))
        rep = None
        if repeats and i == n_stories - 1:
            rep = (signal[None] + noise * rng.standard_normal((repeats, n_trs, n_voxels))).astype(np.float32)
            brain = rep.mean(axis=0)
        stories.append(Story(name=f"story{i}", brain_data=brain.astype(np.float32), tr_times=tr_times, repeats=rep))
        features[f"story{i}"] = SyntheticFeatures(times, layers)
    assembly = Assembly(subject="synthetic", tr=tr, stories_list=stories, simulated=True)
    return Planted(assembly, features, n_signal, signal_layer)


def planted_config(tmp_path, **ridge) -> ExperimentConfig:
    config = ExperimentConfig(name="planted", results_dir=str(tmp_path / "results"), cache_dir=str(tmp_path / "cache"))
    config.alignment.downsample_method = "rect"
    config.alignment.fir_delays = [1, 2, 3, 4]
    config.alignment.trimming = TrimmingConfig(train_features_start=5, train_features_end=-2, train_targets_start=5,
                                               train_targets_end=-2, test_features_start=5, test_features_end=None,
                                               test_targets_start=5, test_targets_end=None)
    config.ridge.chunk_length = 10
    config.stats.n_permutations = 50
    config.stats.block_length = 5
    for key, value in ridge.items():
        setattr(config.ridge, key, value)
    return config.validate()
