"""The simulated demo assembly: deterministic, cached, and its planted truth is recoverable.

References are independent of the simulation code: scikit-learn's Ridge and ROC AUC, the
fsaverage5 mesh loaded here through nilearn, nilearn's SPM HRF, and plain numpy loops.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sklearn.linear_model import Ridge
from sklearn.metrics import roc_auc_score

from encoding_core.demo import (
    DEMO_REGIONS,
    DRIVERS,
    demo_config,
    demo_drivers,
    ground_truth_maps,
    load_demo_assembly,
    simulate_demo_assembly,
)
from encoding_core.demo import simulate as demo_simulate

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "demo"
from encoding_core.demo.preset import DEMO_TRIM_END_TRS, DEMO_TRIM_START_TRS

TRIM = slice(DEMO_TRIM_START_TRS, DEMO_TRIM_END_TRS)   # the preset's trimming (features = targets)
DELAYS = (1, 2, 3, 4)


@pytest.fixture(scope="module")
def assembly():
    return simulate_demo_assembly(seed=0)


@pytest.fixture(scope="module")
def truth():
    return ground_truth_maps()


def zscore(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return (a - a.mean(axis=0)) / np.where(a.std(axis=0) > 0, a.std(axis=0), 1.0)


def fir_design(drivers: np.ndarray, delays=DELAYS) -> np.ndarray:
    """Column blocks: the drivers shifted down by each delay (zeros before the start)."""
    blocks = []
    for delay in delays:
        shifted = np.zeros_like(drivers)
        shifted[delay:] = drivers[:-delay]
        blocks.append(shifted)
    return np.hstack(blocks)


def columnwise_r(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    return (zscore(Y) * zscore(P)).mean(axis=0)


def fit_drivers(assembly, columns=None, alpha=10.0) -> np.ndarray:
    """Ridge (scikit-learn) from FIR-delayed stimulus drivers; test-story correlation per vertex."""
    stimulus = demo_drivers(convolved=False)
    test = assembly.effective_test_story()
    X_train, Y_train = [], []
    for story in assembly.stories_list:
        drivers = stimulus[story.name] if columns is None else stimulus[story.name][:, columns]
        X = zscore(fir_design(drivers)[TRIM])
        Y = zscore(story.brain_data[TRIM])
        if story.name == test:
            X_test, Y_test = X, Y
        else:
            X_train.append(X)
            Y_train.append(Y)
    model = Ridge(alpha=alpha).fit(np.vstack(X_train), np.vstack(Y_train))
    return columnwise_r(Y_test, model.predict(X_test))


# -- the assembly ----------------------------------------------------------------------

def test_assembly_is_a_simulated_lebel_like_fsaverage5_assembly(assembly):
    from encoding_core.assembly.textgrid import read_words

    assert assembly.simulated and assembly.subject == "demo" and assembly.tr == 2.0
    assert assembly.space.kind == "surface" and assembly.space.name == "fsaverage5"
    assert assembly.n_voxels == 20484
    assert "SIMULATED" in assembly.provenance["note"] and "not real fMRI" in assembly.provenance["note"]
    assert "SIMULATED" in repr(assembly)
    manifest = json.loads((ASSETS / "stories.json").read_text(encoding="utf-8"))
    assert assembly.stories == manifest["story_order"]
    assert sorted(assembly.stories) == sorted(p.stem for p in ASSETS.glob("*.flac"))
    assert assembly.effective_test_story() == assembly.stories[-1] == "fox_and_goat"
    for story in assembly.stories_list:
        duration = sf.info(str(ASSETS / f"{story.name}.flac")).duration
        assert Path(story.audio_path) == ASSETS / f"{story.name}.flac"
        np.testing.assert_array_equal(story.tr_times, np.arange(story.n_trs) * 2.0)
        assert story.brain_data.shape == (story.n_trs, 20484) and story.brain_data.dtype == np.float32
        # TRs cover the audio plus at least 10 s of HRF tail, and not much more.
        assert duration + 10.0 <= story.n_trs * 2.0 < duration + 12.0
        words, onsets, offsets = read_words(ASSETS / f"{story.name}.TextGrid")
        assert story.words == words
        np.testing.assert_array_equal(story.word_onsets, onsets)
        np.testing.assert_array_equal(story.word_offsets, offsets)
        if story.name == assembly.effective_test_story():
            assert story.repeats.shape == (6, story.n_trs, 20484)
            np.testing.assert_allclose(story.brain_data, story.repeats.mean(axis=0), atol=1e-6)
        else:
            assert story.repeats is None


def test_generation_is_deterministic_and_seeded(assembly, truth):
    again = simulate_demo_assembly(seed=0)
    other = simulate_demo_assembly(seed=1)
    for a, b, c in zip(assembly.stories_list, again.stories_list, other.stories_list):
        np.testing.assert_array_equal(a.brain_data, b.brain_data)
        assert not np.array_equal(a.brain_data, c.brain_data)
    # Seeds change the noise only: outside the planted regions the two seeds are unrelated.
    outside = ~truth["mask_any"]
    first = assembly.stories_list[0]
    r = columnwise_r(first.brain_data[:, outside], other.stories_list[0].brain_data[:, outside])
    assert abs(float(np.mean(r))) < 0.02


def test_cache_is_used_and_equals_a_fresh_generation(tmp_path, monkeypatch, assembly):
    cached = load_demo_assembly(cache_dir=tmp_path, seed=0)
    files = list(tmp_path.rglob("*.h5"))
    assert len(files) == 1
    # The second load must read the file, not simulate again.
    monkeypatch.setattr(demo_simulate, "simulate_demo_assembly",
                        lambda seed=0: pytest.fail("simulated again although a cache exists"))
    reloaded = load_demo_assembly(cache_dir=tmp_path, seed=0)
    for fresh, first, second in zip(assembly.stories_list, cached.stories_list, reloaded.stories_list):
        for got in (first, second):
            np.testing.assert_array_equal(got.brain_data, fresh.brain_data)
            np.testing.assert_array_equal(got.tr_times, fresh.tr_times)
            assert got.words == fresh.words and got.audio_path == fresh.audio_path
            if fresh.repeats is not None:
                np.testing.assert_array_equal(got.repeats, fresh.repeats)
    assert reloaded.simulated and reloaded.provenance["seed"] == 0
    assert reloaded.test_story == assembly.test_story and reloaded.space.name == "fsaverage5"


def test_a_damaged_cache_is_regenerated(tmp_path, caplog, monkeypatch, assembly):
    calls = []

    def fake_simulation(seed=0):   # the real generation is covered above; count the calls
        calls.append(seed)
        return assembly

    monkeypatch.setattr(demo_simulate, "simulate_demo_assembly", fake_simulation)
    path = demo_simulate.demo_cache_path(tmp_path, seed=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an hdf5 file")
    with caplog.at_level("WARNING"):
        loaded = load_demo_assembly(cache_dir=tmp_path, seed=0)
    assert "regenerating" in caplog.text and calls == [0]
    assert loaded.n_voxels == 20484
    assert path.stat().st_size > 1_000_000
    load_demo_assembly(cache_dir=tmp_path, seed=0)        # now a valid cache: no new simulation
    assert calls == [0]


def test_bad_seed_is_refused():
    from encoding_core.common.errors import InputError

    with pytest.raises(InputError, match="seed"):
        simulate_demo_assembly(seed=-1)


# -- the planted truth -----------------------------------------------------------------

def test_ground_truth_regions_sit_at_their_anatomical_targets(truth):
    from nilearn.datasets import load_fsaverage

    pial = load_fsaverage("fsaverage5")["pial"]
    coords = np.vstack([pial.parts["left"].coordinates, pial.parts["right"].coordinates])
    left = np.arange(20484) < 10242
    masks = [truth[f"mask_{key}"] for key in DEMO_REGIONS]
    assert sum(int(m.sum()) for m in masks) == int(truth["mask_any"].sum())   # disjoint
    for key, region in DEMO_REGIONS.items():
        mask = truth[f"mask_{key}"]
        amplitude = truth[region.driver]
        assert mask.shape == (20484,) and mask.dtype == bool
        assert np.all(amplitude[~truth["mask_any"]] == 0)
        for hemi, centre in region.centres_mm:
            side = left if hemi == "left" else ~left
            in_side = mask & side
            assert 20 <= in_side.sum() <= 200, (key, hemi, int(in_side.sum()))
            peak = np.flatnonzero(in_side)[np.argmax(amplitude[in_side])]
            assert np.linalg.norm(coords[peak] - np.asarray(centre)) < 12.0, (key, hemi)
            assert np.isclose(amplitude[peak], region.peak_amplitude, rtol=0.05)
            # Amplitude falls from the centre to the edge (spatially varying SNR).
            assert amplitude[in_side].min() < 0.6 * region.peak_amplitude
        hemis = {h for h, _ in region.centres_mm}
        if hemis == {"left"}:
            assert not (mask & ~left).any()


def test_mesh_read_from_the_packaged_files_equals_nilearns_loader():
    from nilearn.datasets import load_fsaverage

    from encoding_core.demo.simulate import _mesh

    pial = load_fsaverage("fsaverage5")["pial"]
    for (coordinates, faces), hemi in zip(_mesh(), ("left", "right")):
        np.testing.assert_array_equal(coordinates, pial.parts[hemi].coordinates)
        np.testing.assert_array_equal(faces, pial.parts[hemi].faces)


def test_hrf_is_spm_canonical():
    from nilearn.glm.first_level import spm_hrf as nilearn_spm_hrf

    ours = demo_simulate.spm_hrf(0.1)
    reference = nilearn_spm_hrf(t_r=0.1, oversampling=1, time_length=32.0)
    n = min(ours.size, reference.size)
    assert np.corrcoef(ours[:n], reference[:n])[0, 1] > 0.999
    assert abs(np.argmax(ours) * 0.1 - np.argmax(reference) * 0.1) <= 0.2
    assert 4.5 <= np.argmax(ours) * 0.1 <= 5.5


def test_planted_drivers_are_orthogonal_where_the_model_is_fitted(assembly):
    planted = demo_drivers(convolved=True)
    stacked = np.vstack([planted[name][TRIM] for name in assembly.stories])
    np.testing.assert_allclose(np.corrcoef(stacked.T), np.eye(3), atol=1e-4)
    np.testing.assert_allclose(stacked.std(axis=0), 1.0, rtol=1e-3)


def test_acoustic_driver_follows_the_log_energy(assembly):
    """Against an independent measure: the mean over 10 ms frames of the frame energy in dB
    (floored 60 dB below the loudest frame), per TR, from the raw samples."""
    stimulus = demo_drivers(convolved=False)
    for name in assembly.stories:
        audio, rate = sf.read(str(ASSETS / f"{name}.flac"), dtype="float64")
        n_trs = stimulus[name].shape[0]
        padded = np.zeros(n_trs * 2 * rate)
        padded[:audio.size] = audio
        energy = (padded.reshape(-1, rate // 100) ** 2).mean(axis=1)           # 10 ms frames
        level = 10 * np.log10(np.maximum(energy, energy.max() * 1e-6))
        level_per_tr = level.reshape(n_trs, 200).mean(axis=1)
        speech = slice(1, int(audio.size / rate / 2) - 1)                      # TRs inside the audio
        r = [np.corrcoef(level_per_tr[speech], stimulus[name][speech, j])[0, 1] for j in range(3)]
        # Broadband energy and mean log-mel energy weigh frequencies differently: close, not equal.
        assert r[0] > 0.85 and r[0] == max(r), (name, r)


def test_word_rate_driver_counts_words(assembly):
    """Before orthogonalisation the word-rate driver is the words per TR; after it, the
    second stimulus driver is a mix of sound level and word rate only, so word counts per TR
    are explained by the first two drivers."""
    stimulus = demo_drivers(convolved=False)
    counts, design = [], []
    for story in assembly.stories_list:
        per_tr = np.zeros(story.n_trs)
        for onset in story.word_onsets:            # a straightforward loop as the reference
            per_tr[int(onset // 2.0)] += 1
        counts.append(per_tr)
        design.append(stimulus[story.name])
    counts, design = np.concatenate(counts), np.vstack(design)
    two = np.column_stack([np.ones(len(counts)), design[:, :2]])
    residual = counts - two @ np.linalg.lstsq(two, counts, rcond=None)[0]
    assert residual.std() < 1e-6 * counts.std() + 1e-9


def test_noise_is_unit_variance_ar1_and_spatially_smooth(assembly, truth):
    from nilearn.datasets import load_fsaverage

    outside = ~truth["mask_any"]
    train = [s for s in assembly.stories_list if s.repeats is None]
    data = np.vstack([s.brain_data[:, outside] for s in train])
    assert 0.9 < float(data.var(axis=0).mean()) < 1.1
    lag1 = np.mean([np.mean(zscore(s.brain_data[1:, outside]) * zscore(s.brain_data[:-1, outside]))
                    for s in train])
    assert 0.25 < lag1 < 0.45          # AR(1) 0.4, minus the small-sample bias of ~50 TRs
    faces = np.asarray(load_fsaverage("fsaverage5")["pial"].parts["left"].faces)
    a, b = faces[:, 0], faces[:, 1]
    story = train[0].brain_data.astype(np.float64)
    keep = outside[a] & outside[b]
    neighbours = np.mean(zscore(story[:, a[keep]]) * zscore(story[:, b[keep]]))
    rng = np.random.default_rng(0)
    far_a, far_b = rng.choice(np.flatnonzero(outside[:10242]), 2000), rng.choice(np.flatnonzero(outside[10242:]), 2000) + 10242
    far = np.mean(zscore(story[:, far_a]) * zscore(story[:, far_b]))
    assert 0.2 < neighbours < 0.7 and abs(far) < 0.05


def test_fitting_the_planted_drivers_recovers_the_regions(assembly, truth):
    r = fit_drivers(assembly)
    assert roc_auc_score(truth["mask_any"], r) >= 0.95
    outside = ~truth["mask_any"]
    for key in DEMO_REGIONS:
        mask = truth[f"mask_{key}"]
        keep = mask | outside
        assert roc_auc_score(mask[keep], r[keep]) >= 0.9, key
        assert np.median(r[mask]) > 0.3 > abs(np.median(r[outside])), key


def test_each_driver_is_found_in_its_own_regions(assembly, truth):
    for column, driver in enumerate(DRIVERS):
        r = fit_drivers(assembly, columns=[column])
        medians = {key: float(np.median(r[truth[f"mask_{key}"]])) for key in DEMO_REGIONS}
        own = [k for k, reg in DEMO_REGIONS.items() if reg.driver == driver]
        others = [k for k in DEMO_REGIONS if k not in own]
        assert min(medians[k] for k in own) > max(medians[k] for k in others) + 0.2, (driver, medians)


def _explainable_variance(repeats: np.ndarray) -> np.ndarray:
    """Signal power / total power (Sahani & Linden 2003), written out independently."""
    n = repeats.shape[0]
    total = repeats.var(axis=1).mean(axis=0)
    signal = (repeats.sum(axis=0).var(axis=0) - repeats.var(axis=1).sum(axis=0)) / (n * (n - 1))
    return signal / total


def test_noise_ceiling_is_high_in_planted_regions_only(assembly, truth):
    test = assembly.story(assembly.effective_test_story())
    ev = _explainable_variance(test.repeats.astype(np.float64))
    assert roc_auc_score(truth["mask_any"], ev) >= 0.95
    assert np.median(ev[truth["mask_any"]]) > 0.2 > 0.02 > abs(np.median(ev[~truth["mask_any"]]))
    # Expected from the truth: signal variance a^2 var(driver) over (signal + unit noise).
    planted = demo_drivers(convolved=True)[test.name].astype(np.float64)
    weights = np.stack([truth[d] for d in DRIVERS]).astype(np.float64)
    signal_var = (planted @ weights).var(axis=0)
    expected = signal_var / (signal_var + 1.0)
    centre = truth["mask_any"] & (expected > 0.3)
    assert abs(np.median(ev[centre] - expected[centre])) < 0.1
    try:
        from encoding_core.stats.noise_ceiling import noise_ceiling
    except ImportError:
        return
    core_ev, ceiling_r = noise_ceiling(test.repeats)
    assert roc_auc_score(truth["mask_any"], core_ev) >= 0.95
    assert np.median(ceiling_r[truth["mask_any"]]) > 2 * np.median(ceiling_r[~truth["mask_any"]])


# -- the preset --------------------------------------------------------------------------

def test_demo_config_fits_the_assembly_and_the_budget(assembly):
    from encoding_core.config import ExperimentConfig

    config = demo_config()
    assert ExperimentConfig.from_toml(config.to_toml()) == config
    assert config.assembly.path == "demo" and config.assembly.test_story == assembly.stories[-1]
    assert config.features.model_name == "bundled/whisper-tiny.en" and config.layers == "all"
    assert config.features.pool == "mean" and config.features.context_size == 8.0
    # all stories (CV), one story per outer fold, the calibrated default test, one-sided
    assert (config.ridge.mode, config.ridge.outer_fold_type) == ("cv", "story")
    assert (config.stats.test, config.stats.alternative, config.stats.fdr_q) == ("effective_dof", "greater", 0.05)
    # a fallback threshold's null (permutations) can reach the 95th percentile of the maximum
    assert config.stats.n_permutations >= 100 and config.stats.fallback_statistic == "max"
    t = config.alignment.trimming
    assert (t.train_features_start, t.train_features_end) == (t.train_targets_start, t.train_targets_end)
    assert (t.test_features_start, t.test_features_end) == (t.test_targets_start, t.test_targets_end)
    max_delay_s = max(config.alignment.fir_delays) * assembly.tr
    for story in assembly.stories_list:
        kept = story.tr_times[t.train_features_start:t.train_features_end]
        duration = sf.info(story.audio_path).duration
        assert kept[0] - max_delay_s >= 0.0          # delayed features never reach before the sound
        assert kept[-1] - min(config.alignment.fir_delays) * assembly.tr <= duration  # ... nor past it
    # Window count at the preset's stride: the budget allows about 450 padded Whisper windows.
    from encoding_core.features.speech import window_end_times

    n_windows = sum(len(window_end_times(sf.info(s.audio_path).duration, config.features.chunk_size,
                                         config.features.context_size, config.features.include_early_windows))
                    for s in assembly.stories_list)
    assert 300 <= n_windows <= 450
