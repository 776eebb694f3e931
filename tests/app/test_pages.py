"""Every page of the Streamlit app, headless (AppTest): empty state, loaded data, bad inputs."""
from __future__ import annotations

import json

import numpy as np
import soundfile

from encoding_core.config import ExperimentConfig, TrimmingConfig

from app_helpers import (N_FSAVERAGE5, as_array, inject_assembly, make_run, new_app, open_page, picture_image,
                         picture_samples, plotly_specs, texts,
                         write_assembly)



# --------------------------------------------------------------------------- empty state
def test_every_page_renders_empty_state(studio):
    at = new_app()
    at.run()
    assert not at.exception
    assert at.button(key="run_demo").label == "Run the demo"
    links = [el.proto.label for el in at.get("page_link")]
    assert any("check_box_outline_blank: Load an assembly" in label for label in links)
    assert "No runs yet" in texts(at.caption)
    for page in ("assembly", "audio", "setup"):
        open_page(at, page)
        assert "No assembly is loaded yet" in texts(at.info)
    open_page(at, "train")
    assert "No jobs yet." in texts(at.info)
    open_page(at, "results")
    assert "No finished runs yet" in texts(at.info)
    open_page(at, "model")
    assert [m.value for m in at.metric][:2] == ["4", "384"]  # bundled whisper-tiny.en facts
    assert "window_diagram" in plotly_specs(at)


# --------------------------------------------------------------------------- assembly
def test_assembly_page_loads_h5_and_shows_summary(studio):
    path = write_assembly(studio, n_voxels=N_FSAVERAGE5)
    at = new_app()
    at.run()
    open_page(at, "assembly")
    at.radio(key="assembly_source_kind").set_value("Native .h5 file").run()
    at.text_input(key="assembly_path.h5").input(str(path)).run()
    at.button(key="load.h5").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert "Loaded 3 stories" in texts(at.success)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Stories"] == "3" and metrics["TRs"] == "90" and metrics["Voxels"] == str(N_FSAVERAGE5)
    specs = plotly_specs(at)
    mean_story0 = as_array(specs["timecourse"]["data"][0]["y"]).astype(float)
    from encoding_core.assembly.assembly_loader import load_assembly

    reference = load_assembly(path).story("story0").brain_data.astype(np.float64).mean(axis=1)
    np.testing.assert_allclose(mean_story0, reference, rtol=1e-5)
    assert any(t["type"] == "mesh3d" for t in specs["tsnr_map"]["data"])
    # the test-story picker writes into the config and survives a page switch
    at.selectbox(key="test_story_pick").set_value("story1").run()
    open_page(at, "home")
    open_page(at, "assembly")
    assert at.selectbox(key="test_story_pick").value == "story1"
    assert at.session_state["experiment_config"].assembly.test_story == "story1"


def test_assembly_page_bad_inputs(studio, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "a.h5"
    outside.write_bytes(b"not hdf5")
    garbage = studio / "broken.h5"
    garbage.write_bytes(b"this is not an HDF5 file")
    (studio / "notes.txt").write_text("hello")
    at = new_app()
    at.run()
    open_page(at, "assembly")
    at.radio(key="assembly_source_kind").set_value("Native .h5 file").run()
    for text, expected in [(str(outside), "outside the allowed data folders"),
                           (str(studio / "notes.txt"), "not an .h5 or .pkl file"),
                           (str(studio / "missing.h5"), "does not exist"),
                           (str(garbage), "Loading")]:
        at.text_input(key="assembly_path.h5").input(text).run()
        at.button(key="load.h5").click().run()
        assert not at.exception, f"{text}: traceback shown"
        assert expected in texts(at.error), (text, texts(at.error))
    assert "No assembly is loaded yet" in texts(at.info)


def test_assembly_upload_wrong_and_too_big(studio):
    at = new_app()
    at.run()
    open_page(at, "assembly")
    at.radio(key="assembly_source_kind").set_value("Upload .h5 / .pkl").run()
    at.get("file_uploader")[0].set_value(("evil.pkl", b"\x80\x04cos\nsystem\n.", "application/octet-stream"))
    at.run()
    assert not at.exception
    assert "failed" in texts(at.error)  # the restricted unpickler refuses; nothing ran
    at.get("file_uploader")[0].set_value(("big.h5", b"0" * (2**20 + 10), "application/octet-stream"))
    at.run()
    assert "more than the 1 MB limit" in texts(at.error)


# --------------------------------------------------------------------------- audio
def test_audio_page_maps_found_and_missing(studio):
    path = write_assembly(studio)
    audio_dir = studio / "stimuli"
    audio_dir.mkdir()
    sr = 16000
    tone = 0.1 * np.sin(2 * np.pi * 220 * np.arange(60 * sr) / sr).astype(np.float32)
    soundfile.write(audio_dir / "story0.wav", tone, sr)
    soundfile.write(audio_dir / "story1.wav", tone[: 5 * sr], sr)  # far too short: mismatch
    at = new_app()
    inject_assembly(at, path)
    at.run()
    open_page(at, "audio")
    at.text_input(key="audio_folder").input(str(audio_dir)).run()
    at.button(key="map_audio").click().run()
    assert not at.exception
    table = at.dataframe[0].value
    statuses = dict(zip(table["story"], table["status"]))
    assert statuses == {"story0": "found", "story1": "mismatch", "story2": "missing"}
    assert "2 stories need attention" in texts(at.warning)
    # story0 has audio: player and waveform with the TR ticks inside the audio
    at.selectbox(key="audio_story").set_value("story0").run()
    assert len(at.get("audio")) == 1
    spec = plotly_specs(at)["audio_figure"]
    tr_trace = [t for t in spec["data"] if t.get("name") == "TR times"][0]
    ticks = as_array(tr_trace["x"])
    assert list(ticks[:3]) == [0.0, 2.0, 4.0] and len(ticks) == 30
    # bad inputs: a pattern without {story}, a folder outside the roots
    at.text_input(key="audio_pattern").input("audio.wav").run()
    at.button(key="map_audio").click().run()
    assert "must contain {story}" in texts(at.error)
    at.text_input(key="audio_pattern").input("{story}.wav").run()
    at.text_input(key="audio_folder").input("/etc").run()
    at.button(key="map_audio").click().run()
    assert "outside the allowed data folders" in texts(at.error)


# --------------------------------------------------------------------------- setup and train
def test_setup_flags_trimming_mismatch_and_train_refuses(studio):
    path = write_assembly(studio)
    at = new_app()
    inject_assembly(at, path)
    config = ExperimentConfig(results_dir=str(studio / "results"), cache_dir=str(studio / "cache"))
    config.alignment.trimming = TrimmingConfig(5, -3, 5, -3, 5, -3, 5, -3)
    at.session_state["experiment_config"] = config
    at.run()
    open_page(at, "setup")
    assert "line up for every story" in texts(at.success)
    bars = plotly_specs(at)["length_preview"]["data"]
    assert list(as_array(bars[0]["y"])) == [22, 22, 22] and list(as_array(bars[1]["y"])) == [22, 22, 22]
    at.number_input(key="trim_test_targets_start").set_value(40).run()
    errors = texts(at.error)
    assert "story2 (test): features 22 vs targets 0 TRs" in errors
    assert "kernel" in plotly_specs(at)
    at.text_input(key="fir_delays").input("1, x").run()
    assert "distinct whole numbers" in texts(at.error)
    # the trimming survives a page switch and blocks training
    open_page(at, "train")
    assert all(b.disabled for b in at.button if b.key in ("start_train", "start_sweep"))
    assert "trimmed lengths differ" in texts(at.warning)
    assert "no audio" in texts(at.warning)
    open_page(at, "setup")
    assert at.number_input(key="trim_test_targets_start").value == 40
    at.button(key="apply_lebel").click().run()
    assert at.number_input(key="trim_train_features_start").value == 10


def test_setup_exports_toml_and_script(studio):
    path = write_assembly(studio)
    at = new_app()
    inject_assembly(at, path)
    at.run()
    open_page(at, "setup")
    at.text_input(key="alphas").input("1, 10, 100").run()
    at.number_input(key="n_permutations").set_value(300).run()
    config = at.session_state["experiment_config"]
    assert config.ridge.alphas == [1.0, 10.0, 100.0] and config.stats.n_permutations == 300
    toml_text = config.to_toml()
    assert ExperimentConfig.from_toml(toml_text).stats.n_permutations == 300
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Download config (TOML)", "Download Python script"]
    at.text_input(key="alphas").input("-1, 2").run()
    assert "Alphas must be positive" in texts(at.error)


# --------------------------------------------------------------------------- results


def test_results_page_maps_profile_compare_and_downloads(studio):
    first = make_run(studio / "results", seed=1)
    second = make_run(studio / "results", seed=2)
    at = new_app()
    at.run()
    open_page(at, "results")
    assert not at.error
    specs = plotly_specs(at)
    assert {"layer_profile", "surface_map", "histogram"} <= set(specs) and "difference_map" not in specs
    at.toggle(key="compare_show").set_value(True).run()  # the second brain map only on request
    assert "difference_map" in plotly_specs(at)
    from encoding_core.experiment.runstore import RunStore

    shown_run = at.selectbox(key="run_pick").value
    run = RunStore(studio / "results").load(shown_run)
    medians = [run.metrics(layer)["median_score"] for layer in (0, 1, 2)]
    line = [t for t in specs["layer_profile"]["data"] if t["type"] == "scatter"][0]
    np.testing.assert_allclose(as_array(line["y"]), medians, rtol=1e-6)
    assert at.selectbox(key="layer_pick").value == int(np.argmax(medians))
    bars = [t for t in specs["layer_profile"]["data"] if t["type"] == "bar"][0]
    colours = list(bars["marker"]["color"])
    marked = [x for x, colour in zip(as_array(bars["x"]).tolist(), colours) if colours.count(colour) == 1]
    assert marked == [int(np.argmax(medians))]  # the profile marks the best layer (highest median r) ...
    at.selectbox(key="layer_pick").set_value(0).run()
    assert plotly_specs(at)["layer_profile"] == specs["layer_profile"]  # ... whichever layer is shown
    # by default a picture (an image and its hover grid; no 3-D scene for the browser to build)
    assert {t["type"] for t in specs["surface_map"]["data"]} <= {"image", "heatmap", "scatter"}
    assert np.isfinite(picture_samples(specs["surface_map"])).any()
    at.toggle(key="map_3d").set_value(True).run()
    mesh = [t for t in plotly_specs(at)["surface_map"]["data"]
            if t["type"] == "mesh3d" and len(as_array(t["x"])) == 2562]
    assert len(mesh) == 1  # the rotatable view's coarser mesh (fsaverage4's vertices)
    png_button = at.get("download_button")[0]
    assert png_button.proto.label.startswith("Download the four-view PNG")
    assert png_button.proto.deferred_file_id and not png_button.proto.url  # drawn only when clicked
    # choosing another layer updates the headline numbers and the map title
    at.selectbox(key="layer_pick").set_value(0).run()
    assert at.metric[0].value == f"{run.metrics(0)['median_score']:.3f}"
    assert "layer 0" in json.dumps(plotly_specs(at)["surface_map"]["layout"].get("title", ""))
    labels = [b.proto.label for b in at.get("download_button")]
    assert {"Per-voxel values (CSV)", "Per-voxel values (NPZ)", "Config (TOML)",
            "Download the four-view PNG (left/right, lateral/medial)"} <= set(labels)
    assert {first, second} == {option.split(" · ")[0] for option in at.selectbox(key="run_pick").options}
    assert not any("SIMULATED" in str(e.value) for e in [*at.main.error, *at.main.warning])


def test_results_page_marks_simulated_runs(studio):
    make_run(studio / "results", seed=3, layers=(0,), simulated=True)
    at = new_app()
    at.run()
    open_page(at, "results")
    assert "SIMULATED RUN" in texts(at.main.warning)
    specs = plotly_specs(at)
    outlines = [t for t in specs["surface_map"]["data"] if t.get("meta") == "outline"]
    names = [t["name"] for t in outlines]
    assert names and not any(name.startswith("mask_") for name in names)  # readable labels, one each
    assert len(names) == len(set(names))
    # each outline's legend colour is drawn on the picture (regions of the left hemisphere's lateral side)
    image = picture_image(specs["surface_map"]).reshape(-1, 3)
    colours = {tuple(int(t["line"]["color"][k:k + 2], 16) for k in (1, 3, 5)) for t in outlines}
    drawn = {colour for colour in colours if (image == colour).all(axis=1).sum() >= 20}
    assert len(drawn) >= 2, (colours, drawn)
    assert "layer_profile" not in specs  # one layer: no profile
