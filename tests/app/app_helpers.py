"""Helpers shared by the app tests: open the app headless, read charts, write small assemblies and runs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from encoding_core.assembly import Assembly, Space, Story
from encoding_core.assembly.assembly_loader import save_assembly
from encoding_core.config import ExperimentConfig

ROOT = Path(__file__).resolve().parents[2]
N_FSAVERAGE5 = 20484


def new_app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)


def open_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def plotly_specs(at: AppTest) -> dict[str, dict]:
    """key -> plotly figure JSON of every plotly chart on the page."""
    return {el.key: json.loads(el.proto.spec) for el in at.get("plotly_chart")}


def picture_samples(figure: dict) -> np.ndarray:
    """The hover grid of a brain picture (``viz.surface_picture``): the shown value at every sampled
    pixel, NaN off the brain or where nothing is shown, as a 2-D array."""
    grids = [t for t in figure["data"] if t["type"] == "heatmap" and t.get("name") == "hover"]
    assert len(grids) == 1, [t["type"] for t in figure["data"]]
    return np.asarray(as_array(grids[0]["z"]), dtype=np.float64)


def colour_limits(figure: dict) -> list[tuple[float, float]]:
    """(cmin, cmax) of every colour scale of a brain map: the 3-D meshes' and the picture's colour bar."""
    limits = [(t["cmin"], t["cmax"]) for t in figure["data"] if t["type"] == "mesh3d" and t.get("cmax") is not None]
    limits += [(t["marker"]["cmin"], t["marker"]["cmax"]) for t in figure["data"]
               if t["type"] == "scatter" and t.get("marker", {}).get("showscale")]
    return limits


def picture_image(figure: dict) -> np.ndarray:
    """The ``(height, width, 3)`` uint8 image of a brain picture, decoded from its PNG data URI."""
    import base64
    import io

    from PIL import Image

    images = [t for t in figure["data"] if t["type"] == "image"]
    assert len(images) == 1
    header, payload = images[0]["source"].split(",", 1)
    assert header == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


def as_array(value) -> np.ndarray:
    """A plotly JSON array: a list, or a typed-array dict {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(value, dict) and "bdata" in value:
        import base64

        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return data.reshape([int(x) for x in str(shape).split(",")]) if shape else data
    return np.asarray(value)


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def write_assembly(folder: Path, n_voxels: int = 40, n_trs: int = 30, seed: int = 0, simulated: bool = False) -> Path:
    gen = np.random.default_rng(seed)
    stories = []
    for i in range(3):
        onsets = np.sort(gen.uniform(0, n_trs * 2.0 - 1, 20))
        stories.append(Story(name=f"story{i}", brain_data=gen.normal(10, 1, (n_trs, n_voxels)).astype(np.float32),
                             tr_times=np.arange(n_trs) * 2.0, words=[f"w{j}" for j in range(20)],
                             word_onsets=onsets, word_offsets=onsets + 0.3))
    space = Space.surface("fsaverage5") if n_voxels == N_FSAVERAGE5 else Space()
    assembly = Assembly(subject="s1", tr=2.0, stories_list=stories, space=space, simulated=simulated)
    return save_assembly(assembly, folder / f"assembly_{n_voxels}.h5")


def inject_assembly(at: AppTest, path: Path) -> None:
    at.session_state["assembly_source"] = (str(path), "", ())


def make_run(results_dir: Path, seed: int, layers=(0, 1, 2), simulated: bool = False) -> str:
    """A finished run written through the real RunStore (known per-voxel arrays)."""
    from encoding_core.experiment.runstore import RunStore

    gen = np.random.default_rng(seed)
    config = ExperimentConfig(name=f"run{seed}", results_dir=str(results_dir))
    writer = RunStore(results_dir).create(config, meta={"simulated": simulated, "layers": list(layers),
                                                        "subject": "s1"})
    writer.write_space(Space.surface("fsaverage5"))
    summary = {"layers": {}}
    for layer in layers:
        r = gen.normal(0.05 * layer, 0.1, N_FSAVERAGE5).astype(np.float32)
        significant = r > 0.2
        writer.write_layer(layer, {"median_score": float(np.median(r)), "max_score": float(r.max()),
                                   "n_significant": int(significant.sum()),
                                   "percent_significant": float(100 * significant.mean())},
                           {"correlations": r, "significant_mask": significant,
                            "p_values": np.where(significant, 0.001, 0.5).astype(np.float32)})
        summary["layers"][str(layer)] = {"median_r": float(np.median(r))}
    summary["best_layer"] = int(layers[-1])
    writer.finish(summary, {"total": 1.0})
    return writer.run_id
