"""Every statistics label on the pages comes from the run's recorded settings (or, on Setup, from the
settings being edited): change the test, the words change; nothing says "block permutation" unless
block permutation ran."""
from __future__ import annotations

import csv
import io

import numpy as np

from app_helpers import new_app, open_page, texts, write_assembly, inject_assembly

N_FSAVERAGE5 = 20484


def make_tested_run(results_dir, test: str, alternative: str, seed: int = 0, signal: float = 0.8) -> str:
    """A one-layer run whose statistics come from the real evaluate_predictions on simulated data."""
    from encoding_core.assembly import Space
    from encoding_core.config import ExperimentConfig
    from encoding_core.experiment.runstore import RunStore
    from encoding_core.models.fitting import evaluate_predictions

    gen = np.random.default_rng(seed)
    n = 120
    P = gen.standard_normal((n, N_FSAVERAGE5)).astype(np.float32)
    Y = gen.standard_normal((n, N_FSAVERAGE5)).astype(np.float32)
    Y[:, :300] += signal * P[:, :300]
    config = ExperimentConfig(name=f"{test}-{alternative}", results_dir=str(results_dir))
    config.stats.test, config.stats.alternative, config.stats.n_permutations = test, alternative, 200
    arrays, metrics = evaluate_predictions(Y, P, config.stats)
    arrays["best_alphas"] = np.ones(N_FSAVERAGE5)
    metrics.update({"median_score": float(np.median(arrays["correlations"])), "n_significant":
                    int(arrays["significant_mask"].sum()), "n_voxels": N_FSAVERAGE5, "mode": "train_test"})
    writer = RunStore(results_dir).create(config, meta={"layers": [0], "subject": "s1"})
    writer.write_space(Space.surface("fsaverage5"))
    writer.write_layer(0, metrics, arrays)
    writer.finish({"layers": {"0": {"median_r": metrics["median_score"]}}, "best_layer": 0}, {"total": 1.0})
    return writer.run_id


def test_results_captions_follow_the_recorded_test(studio):
    from encoding_core.experiment.runstore import RunStore
    from encoding_core.stats.significance import describe_test

    runs = {make_tested_run(studio / "results", "effective_dof", "greater", seed=1): "effective_dof",
            make_tested_run(studio / "results", "block_permutation", "two-sided", seed=2): "block_permutation"}
    at = new_app()
    at.run()
    open_page(at, "results")
    for run_id, test in runs.items():
        at.selectbox(key="run_pick").set_value(run_id).run()
        assert not at.exception
        settings = RunStore(studio / "results").load(run_id).metrics(0)["significance"]
        assert settings["test"] == test
        captions = texts(at.caption)
        assert describe_test(settings) in captions
        assert f"Benjamini–Hochberg FDR q = 0.05 over {N_FSAVERAGE5} voxels" in captions
        if test == "block_permutation":
            assert "block permutation (" in captions and "two-sided" in captions
        else:
            assert "block permutation" not in captions and "one-sided r > 0" in captions


def test_downloads_say_what_the_p_values_are(studio):
    from encoding_core.experiment.runstore import RunStore
    from encoding_core.stats.significance import describe_test
    from encoding_core.studio import per_voxel_csv, per_voxel_npz

    run_id = make_tested_run(studio / "results", "effective_dof", "greater", seed=3)
    run = RunStore(studio / "results").load(run_id)
    metrics, arrays = run.metrics(0), run.arrays(0)
    text = per_voxel_csv(arrays, metrics).decode()
    comments = [line for line in text.splitlines() if line.startswith("# ")]
    assert f"# p_values: {describe_test(metrics['significance'])}" in comments
    rows = list(csv.reader(io.StringIO("\n".join(line for line in text.splitlines() if not line.startswith("#")))))
    assert rows[0][0] == "voxel" and "parametric_iid_p_values" in rows[0] and len(rows) == N_FSAVERAGE5 + 1
    with np.load(io.BytesIO(per_voxel_npz(arrays, metrics)), allow_pickle=False) as data:
        assert str(data["label_p_values"]) == describe_test(metrics["significance"])
        np.testing.assert_array_equal(data["p_values"], arrays["p_values"])


def test_setup_caption_follows_the_chosen_test(studio):
    path = write_assembly(studio)
    at = new_app()
    inject_assembly(at, path)
    at.run()
    open_page(at, "setup")
    assert "t-test with autocorrelation-corrected degrees of freedom" in texts(at.caption)
    assert "one-sided r > 0" in texts(at.caption) and "block permutation" not in texts(at.caption)
    at.selectbox(key="stats_test").set_value("block_permutation").run()
    at.selectbox(key="stats_alternative").set_value("two-sided").run()
    caption = texts(at.caption)
    assert "block permutation (blocks chosen from the data, at least 20 s), two-sided" in caption
    at.number_input(key="block_length").set_value(12).run()
    assert "block permutation (12-TR blocks, set by the user)" in texts(at.caption)
    config = at.session_state["experiment_config"]
    assert (config.stats.test, config.stats.alternative, config.stats.block_length) == (
        "block_permutation", "two-sided", 12)


def test_fallback_threshold_comes_from_the_permutation_null_and_the_page_says_so(studio):
    from encoding_core.experiment.runstore import RunStore
    from encoding_core.stats.significance import fallback_threshold, significance

    run_id = make_tested_run(studio / "results", "effective_dof", "greater", seed=5, signal=0.0)
    run = RunStore(studio / "results").load(run_id)
    metrics = run.metrics(0)
    assert metrics["n_significant"] == 0
    rule = metrics["fallback_threshold"]
    assert rule["available"] and rule["statistic"] == "max" and rule["percentile"] == 95.0
    # the same null drawn directly (same data, settings and seed) gives the same threshold
    gen = np.random.default_rng(5)
    P = gen.standard_normal((120, N_FSAVERAGE5)).astype(np.float32)
    Y = gen.standard_normal((120, N_FSAVERAGE5)).astype(np.float32)
    direct = fallback_threshold(significance(Y, P, test="block_permutation", n_permutations=200, seed=0))
    assert rule["r_threshold"] == direct["r_threshold"] and rule["label"] == direct["label"]
    at = new_app()
    at.run()
    open_page(at, "results")
    assert rule["label"] in texts(at.caption) and "No voxel survives" in texts(at.caption)
    assert at.slider(key="min_r").value == round(rule["r_threshold"], 2)  # not a fixed 0.1
