"""Results keeps the user's view: run, layer, value, FDR filter, threshold, hemisphere and view live in
the URL's query parameters (a link a teacher can share) and survive leaving the page; values the
run cannot show are ignored; the layer box names the best layer of the run shown."""
from __future__ import annotations

import numpy as np

from app_helpers import colour_limits, make_run, new_app, open_page, picture_samples

VIEW = {"layer": "1", "fdr": "0", "threshold": "0.15", "hemi": "right", "view": "medial"}


def _two_runs(studio) -> tuple[str, str]:
    first = make_run(studio / "results", seed=1, layers=(0, 1, 2))
    second = make_run(studio / "results", seed=2, layers=(0, 1))
    return first, second


def _view_of(at) -> dict[str, str]:
    return {"run": at.selectbox(key="run_pick").value, "layer": str(at.selectbox(key="layer_pick").value),
            "fdr": "1" if at.checkbox(key="sig_only").value else "0", "threshold": f"{at.slider(key='min_r').value:g}",
            "hemi": at.radio(key="hemi").value, "view": at.radio(key="view").value}


def test_a_shared_link_opens_that_view_and_the_url_follows_the_controls(studio):
    first, _ = _two_runs(studio)
    at = new_app()
    at.run()
    at.switch_page("pages/results.py")
    at.query_params.update({"run": first, **VIEW})
    at.run()
    assert not at.exception
    assert _view_of(at) == {"run": first, **VIEW}
    at.slider(key="min_r").set_value(0.2).run()
    at.radio(key="hemi").set_value("left").run()
    assert at.query_params["threshold"] == "0.2" and at.query_params["hemi"] == "left"
    assert at.query_params["run"] == first and at.query_params["layer"] == "1"
    # the URL written by the page opens the same view in a new session (a reload, a shared link)
    again = new_app()
    again.run()
    again.switch_page("pages/results.py")
    again.query_params.update(dict(at.query_params))
    again.run()
    assert _view_of(again) == _view_of(at)


def test_the_view_survives_leaving_the_page(studio):
    first, second = _two_runs(studio)
    at = new_app()
    at.run()
    open_page(at, "results")
    at.selectbox(key="run_pick").set_value(first).run()
    at.selectbox(key="layer_pick").set_value(0).run()
    at.checkbox(key="sig_only").uncheck().run()
    at.slider(key="min_r").set_value(0.3).run()
    at.radio(key="view").set_value("ventral").run()
    chosen = _view_of(at)
    open_page(at, "home")
    at.query_params.clear()  # a page switch in the browser drops the Results parameters
    open_page(at, "results")
    assert _view_of(at) == chosen


def test_values_a_run_cannot_show_are_ignored(studio):
    first, second = _two_runs(studio)
    at = new_app()
    at.run()
    at.switch_page("pages/results.py")
    at.query_params.update({"run": "no-such-run", "layer": "7", "threshold": "lots", "hemi": "up", "view": "x"})
    at.run()
    assert not at.exception
    view = _view_of(at)
    assert view["run"] in (first, second) and view["hemi"] == "left" and view["view"] == "lateral"
    best = {first: 2, second: 1}[view["run"]]  # make_run's layers: the last has the highest median r
    assert at.selectbox(key="layer_pick").value == best and view["threshold"] != "lots"


def test_switching_runs_labels_the_new_runs_best_layer(studio):
    first, second = _two_runs(studio)  # make_run's best layer: the last one (2 and 1)
    at = new_app()
    at.run()
    open_page(at, "results")
    at.selectbox(key="run_pick").set_value(first).run()
    at.selectbox(key="layer_pick").set_value(2).run()
    labels = at.selectbox(key="layer_pick").options
    assert [label for label in labels if "best" in label] == [next(l for l in labels if l.startswith("layer 2"))]
    at.selectbox(key="run_pick").set_value(second).run()
    labels = at.selectbox(key="layer_pick").options
    assert len(labels) == 2 and [label for label in labels if "best" in label][0].startswith("layer 1")
    assert at.selectbox(key="layer_pick").value in (0, 1)  # layer 2 does not exist in this run


def _run_with_ceiling(results_dir) -> str:
    """One fsaverage5 layer with a normalised r (r / noise ceiling) per vertex, NaN where no ceiling."""
    import numpy as np

    from app_helpers import N_FSAVERAGE5
    from encoding_core.assembly import Space
    from encoding_core.config import ExperimentConfig
    from encoding_core.experiment.runstore import RunStore

    gen = np.random.default_rng(4)
    r = gen.normal(0.1, 0.1, N_FSAVERAGE5).astype(np.float32)
    normalised = np.clip(r / 0.4, -0.5, 1.5).astype(np.float32)
    normalised[:100] = np.nan
    writer = RunStore(results_dir).create(ExperimentConfig(name="ceiling", results_dir=str(results_dir)),
                                          meta={"simulated": False, "layers": [0], "subject": "s1"})
    writer.write_space(Space.surface("fsaverage5"))
    writer.write_layer(0, {"median_score": float(np.median(r)), "max_score": float(r.max()), "n_significant": 0,
                           "percent_significant": 0.0},
                       {"correlations": r, "significant_mask": np.zeros(N_FSAVERAGE5, dtype=bool),
                        "normalized_correlations": normalised})
    writer.finish({"layers": {"0": {"median_r": float(np.median(r))}}, "best_layer": 0}, {"total": 1.0})
    return writer.run_id


def test_normalised_maps_have_their_own_scale_and_slider(studio):
    import json

    run_id = _run_with_ceiling(studio / "results")
    at = new_app()
    at.run()
    open_page(at, "results")
    assert at.slider(key="min_r").min == -1.0
    at.radio(key="map_kind").set_value("noise-ceiling-normalised r").run()
    slider = at.slider(key="min_norm")
    assert (slider.min, slider.max) == (0.0, 1.0) and not [s for s in at.slider if s.key == "min_r"]
    slider.set_value(0.25).run()
    assert at.query_params["norm_threshold"] == "0.25" and at.query_params["run"] == run_id
    figure = json.loads(next(e for e in at.get("plotly_chart") if e.key == "surface_map").proto.spec)
    assert colour_limits(figure) == [(0.0, 1.0)]
    shown = picture_samples(figure)
    assert np.isfinite(shown).any() and np.nanmin(shown) >= 0.25
    title = figure["layout"]["title"]["text"] + " · " + figure["layout"]["title"].get("subtitle", {}).get("text", "")
    assert "noise-ceiling-normalised r ≥ 0.25" in title and "left hemisphere" in title and "lateral view" in title
    at.toggle(key="map_3d").set_value(True).run()  # the rotatable 3-D map: same scale
    figure = json.loads(next(e for e in at.get("plotly_chart") if e.key == "surface_map").proto.spec)
    assert colour_limits(figure) and set(colour_limits(figure)) == {(0.0, 1.0)}
    assert at.query_params["rotate"] == "1"


def test_projector_toggle_restyles_every_results_chart(studio):
    """The sidebar's Projector toggle enlarges the fonts of the layer profile, histogram and alpha
    panel too, not only the brain map."""
    import json

    from encoding_core import viz

    make_run(studio / "results", seed=3, layers=(0, 1, 2))
    at = new_app()
    at.run()
    open_page(at, "results")

    def fonts() -> dict:
        return {e.key: json.loads(e.proto.spec)["layout"].get("font", {}).get("size")
                for e in at.get("plotly_chart") if e.key in ("layer_profile", "histogram")}

    assert fonts() == {"layer_profile": viz.SCREEN.font_size, "histogram": viz.SCREEN.font_size}
    at.toggle(key="projector").set_value(True).run()
    assert not at.exception
    assert fonts() == {"layer_profile": viz.PROJECTOR.font_size, "histogram": viz.PROJECTOR.font_size}
