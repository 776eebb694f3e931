"""Setup's "Feature spaces" section and the Results page's variance-partition maps and stacked bars."""
from __future__ import annotations

import json

import numpy as np
from plotly.utils import PlotlyJSONEncoder

from app_helpers import (N_FSAVERAGE5, as_array, colour_limits, inject_assembly, new_app, open_page, picture_samples,
                         plotly_specs, texts, write_assembly)

from encoding_core import viz
from encoding_core.config import ExperimentConfig, FeatureConfig, FeatureSpaceConfig
from encoding_core.demo.simulate import DEMO_REGIONS, ground_truth_maps
from encoding_core.experiment.runstore import RunStore


def test_setup_builds_feature_spaces_from_the_picks(studio):
    at = new_app()
    at.run()
    inject_assembly(at, write_assembly(studio))
    open_page(at, "setup")
    assert at.checkbox(key="use_feature_spaces").value is False
    at.checkbox(key="use_feature_spaces").check().run()
    assert not at.exception
    config = at.session_state["experiment_config"]
    assert [s.name for s in config.feature_spaces] == ["model", "wordrate"]  # the default picks
    assert config.feature_spaces[1].features.modality == "wordrate" and config.banded.mode == "joint"
    at.multiselect(key="feature_space_pick").set_value(["model", "envelope", "logmel"]).run()
    at.number_input(key="model_space_layer").set_value(2).run()
    config = at.session_state["experiment_config"]
    assert [(s.name, s.layer, s.features.modality) for s in config.feature_spaces] == [
        ("model", 2, "speech"), ("envelope", 0, "envelope"), ("logmel", 0, "logmel")]
    assert "7 ridge model(s)" in texts(at.caption)
    assert ExperimentConfig.from_toml(config.to_toml()).feature_spaces == config.feature_spaces  # the TOML export
    at.multiselect(key="feature_space_pick").set_value(["model"]).run()
    assert "Pick 2 to 4 spaces" in texts(at.warning)
    at.radio(key="banded_mode").set_value("separate").run()
    # (the tiny assembly keeps Setup's unrelated fold-length warning)
    assert "Pick 2 to 4 spaces" not in texts(at.warning)
    assert at.session_state["experiment_config"].banded.mode == "separate"
    at.checkbox(key="use_feature_spaces").uncheck().run()
    assert at.session_state["experiment_config"].feature_spaces == []


def _partition_run(results_dir) -> tuple[str, dict]:
    """A finished SIMULATED joint run on fsaverage5 with known partition maps (acoustic / words)."""
    from encoding_core.assembly import Space

    rng = np.random.default_rng(0)
    truth = ground_truth_maps()
    regions = {region.label: truth[f"mask_{key}"] for key, region in DEMO_REGIONS.items()}  # the planted regions
    unique_a = rng.normal(0.0, 0.01, N_FSAVERAGE5)
    unique_b = rng.normal(0.0, 0.01, N_FSAVERAGE5)
    unique_a[next(iter(regions.values()))] += 0.2
    outside = np.flatnonzero(~truth["mask_any"])
    unique_a[outside[:3]] = -2.5  # badly predicted voxels: r² far below 0 must not set the colour scale
    shared = rng.normal(0.02, 0.01, N_FSAVERAGE5)
    maps = {"unique_acoustic": unique_a, "unique_words": unique_b, "shared": shared,
            "joint_r2": unique_a + unique_b + shared}
    maps = {k: v.astype(np.float32) for k, v in maps.items()}
    r = np.sqrt(np.clip(maps["joint_r2"], 0, None)).astype(np.float32)
    config = ExperimentConfig(name="partition", results_dir=str(results_dir), feature_spaces=[
        FeatureSpaceConfig("acoustic", 0, FeatureConfig(modality="envelope")),
        FeatureSpaceConfig("words", 0, FeatureConfig(modality="wordrate"))])
    writer = RunStore(results_dir).create(config, {"layers": [0], "subject": "s1", "simulated": True})
    writer.write_space(Space.surface("fsaverage5"))
    negative = {k: int((v < 0).sum()) for k, v in maps.items()}
    writer.write_layer(0, {"median_score": float(np.median(r)), "max_score": float(r.max()), "n_significant": 0,
                           "percent_significant": 0.0, "banded_mode": "joint", "partitioned": True,
                           "feature_spaces": ["acoustic", "words"], "n_negative": negative},
                       {"correlations": r, "significant_mask": np.zeros(N_FSAVERAGE5, dtype=bool), **maps})
    writer.finish({"layers": {"0": {"median_r": float(np.median(r))}}, "best_layer": 0}, {"total": 1.0})
    return writer.run_id, {"maps": maps, "regions": regions, "negative": negative}


def vertex_colours(figure: dict) -> list:
    mesh = [t for t in figure["data"] if t["type"] == "mesh3d" and "vertexcolor" in t]
    return as_array(mesh[0]["vertexcolor"]).tolist()


def reference_colours(values: np.ndarray) -> list:
    """The left lateral fsaverage5 map drawn directly by viz on the interactive (coarse) mesh, with the
    symmetric colour limit at the largest positive r² (negative outliers saturate)."""
    figure = viz.surface_figure(values, hemi="left", view="lateral", vmax=min(float(values.max()), 1.0),
                                coarse=True).to_dict()
    return vertex_colours(json.loads(json.dumps(figure, cls=PlotlyJSONEncoder)))


def test_results_shows_partition_maps_and_region_bars(studio):
    run_id, truth = _partition_run(studio / "results")
    at = new_app()
    at.run()
    open_page(at, "results")
    assert not at.exception
    page_text = texts(at.caption)
    assert "Negative estimates are kept, not clipped" in page_text
    assert f"unique to words: {truth['negative']['unique_words']:,} voxels" in page_text
    radio = at.radio(key="partition_map")
    assert list(radio.options) == ["unique to acoustic", "unique to words", "shared by acoustic and words",
                                   "joint model (acoustic + words)"]
    specs = plotly_specs(at)
    assert "partition_surface" in specs and "partition_bars" in specs
    # the default picture: the unique-acoustic r² of the left hemisphere, limits at the largest positive r²
    unique = truth["maps"]["unique_acoustic"]
    shown = picture_samples(specs["partition_surface"])
    assert np.isin(shown[np.isfinite(shown)], unique[:N_FSAVERAGE5 // 2]).all()
    limit = viz.nice_limit(min(float(unique.max()), 1.0))
    assert colour_limits(specs["partition_surface"]) == [(-limit, limit)]
    at.toggle(key="map_3d").set_value(True).run()  # the rotatable 3-D map, drawn as viz draws it
    specs = plotly_specs(at)
    assert vertex_colours(specs["partition_surface"]) == reference_colours(truth["maps"]["unique_acoustic"])
    bars = [t for t in specs["partition_bars"]["data"] if t["type"] == "bar"]
    assert [b["name"] for b in bars] == ["unique to acoustic", "unique to words", "shared by acoustic and words"]
    first_region, mask = next(iter(truth["regions"].items()))
    x = list(as_array(bars[0]["x"]))
    assert x[:len(truth["regions"])] == list(truth["regions"])  # the planted regions, then the rest
    np.testing.assert_allclose(as_array(bars[0]["y"])[0], truth["maps"]["unique_acoustic"][mask].mean(), rtol=1e-5)
    at.toggle(key="full_mesh").set_value(True).run()  # ... and its mesh resolution
    meshes = [t for t in plotly_specs(at)["partition_surface"]["data"] if t["type"] == "mesh3d"]
    assert N_FSAVERAGE5 // 2 in {len(as_array(t["x"])) for t in meshes}
    at.toggle(key="full_mesh").set_value(False).run()
    at.radio(key="hemi").set_value("right").run()  # the partition map follows the map panel's hemisphere
    assert "right lateral" in json.dumps(plotly_specs(at)["partition_surface"]["layout"]["title"]) and not at.exception
    at.radio(key="hemi").set_value("left").run()
    radio = at.radio(key="partition_map")
    radio.set_value("unique_words").run()
    assert not at.exception
    assert vertex_colours(plotly_specs(at)["partition_surface"]) == reference_colours(truth["maps"]["unique_words"])


def test_results_model_layer_heatmap_opens_a_cell(studio):
    import json as _json

    from app_helpers import make_run

    results = studio / "results"
    first, second = make_run(results, seed=1, layers=(0, 1, 2)), make_run(results, seed=2, layers=(0, 1))
    (results / "groups").mkdir()
    group = {"group_id": "group-20261201-120000-abcdef", "kind": "model_x_layer", "name": "cmp",
             "created": "2026-12-01T12:00:00+00:00", "models": ["m1", "m2"], "runs": {"m1": first, "m2": second}}
    (results / "groups" / "group-20261201-120000-abcdef.json").write_text(_json.dumps(group))
    at = new_app()
    at.run()
    open_page(at, "results")
    heatmap = plotly_specs(at)["model_layer_heatmap"]["data"][0]
    z = np.array(heatmap["z"], dtype=float) if not isinstance(heatmap["z"], dict) else as_array(heatmap["z"])
    store = RunStore(results)
    expected = [[np.median(store.load(run).arrays(layer)["correlations"]) if layer in store.load(run).layers
                 else np.nan for layer in (0, 1, 2)] for run in (first, second)]
    np.testing.assert_allclose(z.reshape(2, 3), expected, rtol=1e-6)
    at.selectbox(key="group_cell").set_value("m2 · layer 1").run()
    assert not at.exception
    assert at.selectbox(key="run_pick").value == second and at.selectbox(key="layer_pick").value == 1


def test_setup_offers_the_held_out_story_when_feature_spaces_meet_cv_mode(studio):
    """Feature spaces are scored on the held-out story: in "all stories (CV)" mode Setup says so and
    one click switches the mode (before, only the export's validation error said it)."""
    at = new_app()
    at.run()
    inject_assembly(at, write_assembly(studio))
    open_page(at, "setup")
    at.selectbox(key="mode").set_value("cv").run()
    at.checkbox(key="use_feature_spaces").check().run()
    assert not at.exception
    assert "scored on the held-out test story" in texts(at.warning)
    at.button(key="feature_spaces_train_test").click().run()
    assert not at.exception
    assert at.selectbox(key="mode").value == "train_test"
    assert at.session_state["experiment_config"].ridge.mode == "train_test"
    assert "scored on the held-out test story" not in texts(at.warning)
    assert "not valid yet" not in texts(at.error)
