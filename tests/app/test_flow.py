"""The whole guided experiment in AppTest: demo -> audio -> model -> setup -> train -> results.

A real but tiny run: three demo stories, a 2.5 s stride, two layers, a short alpha grid,
two inner folds and 50 permutations, started through the app's JobManager and waited on.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def _specs(at: AppTest) -> dict[str, dict]:
    return {el.key: json.loads(el.proto.spec) for el in at.get("plotly_chart")}


def _page(at: AppTest, page: str) -> None:
    at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]


@pytest.mark.slow
def test_demo_to_results_flow(tmp_path, tmp_path_factory, monkeypatch):
    from encoding_core.demo import demo_story_names
    from encoding_core.experiment.jobs import JobManager
    from encoding_core.experiment.runstore import RunStore

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENCODING_STUDIO_HOME", str(tmp_path))
    monkeypatch.setenv("ENCODING_STUDIO_DATA_ROOTS", str(tmp_path))
    # features are shared with the browser test (same stories, stride and context): one extraction
    monkeypatch.setenv("ENCODING_STUDIO_CACHE", str(tmp_path_factory.getbasetemp() / "app-feature-cache"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()

    # Assembly: the simulated demo, restricted to three stories
    _page(at, "assembly")
    at.button(key="load_demo").click().run()
    assert "SIMULATED DATA" in "\n".join(str(w.value) for w in at.warning)
    names = demo_story_names()
    at.multiselect(key="story_subset").set_value([names[0], names[1], names[-1]]).run()
    at.button(key="use_stories").click().run()
    assert at.metric[0].value == "3"
    assert at.selectbox(key="test_story_pick").value == names[-1]

    # Audio: the demo brings its own files
    _page(at, "audio")
    paths = at.dataframe[0].value["file"].tolist()
    assert len(paths) == 3 and all(Path(p).is_file() for p in paths)
    assert set(at.dataframe[0].value["status"]) == {"found"}  # checked like a mapped folder

    # Model: two layers, a coarse stride
    _page(at, "model")
    at.checkbox(key="all_layers").uncheck().run()
    at.multiselect(key="layer_pick").set_value([0, 3]).run()
    at.number_input(key="stride").set_value(2.5).run()
    assert "Estimated time" in [m.label for m in at.metric]

    # Setup: the demo's trimming, a short alpha grid, few permutations
    _page(at, "setup")
    at.button(key="apply_demo_trim").click().run()
    assert "line up for every story" in "\n".join(str(s.value) for s in at.success)
    at.text_input(key="alphas").input("1, 100, 10000").run()
    at.number_input(key="inner_folds").set_value(2).run()
    at.number_input(key="n_permutations").set_value(50).run()

    # Train: start through the app, wait on the same JobManager
    _page(at, "train")
    assert not at.button(key="start_train").disabled
    at.button(key="start_train").click().run()
    job_id = at.session_state["selected_job"]
    status = JobManager(tmp_path / ".encoding_studio" / "jobs").wait(job_id, timeout_s=900)
    assert status.state == "done", status.error
    at.run()
    assert f"run {status.run_id}" in "\n".join(str(s.value) for s in at.success)
    at.button(key=f"results_{job_id}").click().run()

    # Results: the run's surface map and layer profile
    assert not at.exception
    assert at.selectbox(key="run_pick").value.startswith(status.run_id)
    assert "SIMULATED RUN" in "\n".join(str(w.value) for w in at.main.warning)
    specs = _specs(at)
    assert {"surface_map", "layer_profile", "histogram"} <= set(specs)
    run = RunStore(tmp_path / "results").load(status.run_id)
    assert run.layers == [0, 3]
    assert run.config.stats.n_permutations == 50 and run.config.features.chunk_size == 2.5
    shown_layer = at.selectbox(key="layer_pick").value
    medians = {layer: run.metrics(layer)["median_score"] for layer in run.layers}
    assert shown_layer == max(medians, key=medians.get)
    assert np.isfinite(list(medians.values())).all()
