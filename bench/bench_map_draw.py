"""Benchmark: what one brain map costs in the browser: the 3-D figure drawn from scratch or
updated, against the flat picture the Results page shows by default.

Run: HF_HUB_OFFLINE=1 python bench/bench_map_draw.py [--repeats 5]

Builds the Results page's maps of one hemisphere and view: the rotatable 3-D figure on the coarse
mesh (``viz.surface_figure(coarse=True)``) and the picture (``viz.surface_picture``), and times in
Debian's Chromium (software WebGL on a machine without a GPU) ``Plotly.newPlot`` of each (what the
page pays on every changed map: Streamlit 1.67 gives a plotly chart an element id that hashes its
figure, so a changed figure is a new chart) and ``Plotly.react`` of the 3-D figure into the existing
plot (what a 3-D chart kept across reruns would pay). Each time runs from parsing the figure's JSON
until two animation frames after the call. Prints the figure build times on the server, the JSON
sizes, and the medians with their ratio to the 3-D newPlot.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "browser"))

DRAW_JS = """async ([spec, how]) => {
  const t0 = performance.now();
  const figure = JSON.parse(spec);
  await (how === 'react' ? Plotly.react : Plotly.newPlot)('map', figure.data, figure.layout);
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  return performance.now() - t0;
}"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    import plotly
    import plotly.io as pio
    from playwright.sync_api import sync_playwright

    import browser_helpers as bh
    from encoding_core import viz

    values = np.random.default_rng(0).normal(0.0, 0.2, 20484)
    viz.surface_figure(values, hemi="left", view="lateral", vmax=0.8, coarse=True)  # meshes loaded
    viz.surface_picture(values, hemi="left", view="lateral", vmax=0.8)  # raster built
    builds: dict[str, list[float]] = {"3-D": [], "picture": []}
    specs: dict[str, list[str]] = {"3-D": [], "picture": []}
    for k in range(args.repeats):  # a new threshold each time: a new figure
        shown = np.where(np.abs(values) > 0.01 * k, values, np.nan)
        for kind, build in (("3-D", lambda: viz.surface_figure(shown, hemi="left", view="lateral", vmax=0.8,
                                                               coarse=True)),
                            ("picture", lambda: viz.surface_picture(shown, hemi="left", view="lateral", vmax=0.8))):
            started = time.perf_counter()
            figure = build()
            builds[kind].append(time.perf_counter() - started)
            specs[kind].append(pio.to_json(figure, validate=False))
    script = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    times: dict[str, list[float]] = {"3-D, Plotly.newPlot": [], "3-D, Plotly.react": [], "picture, Plotly.newPlot": []}
    with sync_playwright() as playwright:
        browser = bh.launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_content("<html><body><div id='map' style='width:1000px;height:700px'></div></body></html>")
        page.add_script_tag(path=str(script))
        page.evaluate(DRAW_JS, [specs["3-D"][0], "newPlot"])  # the first draws compile shaders: not counted
        page.evaluate(DRAW_JS, [specs["picture"][0], "newPlot"])
        for spec in specs["3-D"]:
            times["3-D, Plotly.newPlot"].append(page.evaluate(DRAW_JS, [spec, "newPlot"]) / 1000.0)
        for spec in specs["3-D"]:
            times["3-D, Plotly.react"].append(page.evaluate(DRAW_JS, [spec, "react"]) / 1000.0)
        for spec in specs["picture"]:
            times["picture, Plotly.newPlot"].append(page.evaluate(DRAW_JS, [spec, "newPlot"]) / 1000.0)
        browser.close()
    median = {how: statistics.median(values) for how, values in times.items()}
    for kind in ("3-D", "picture"):
        print(f"{kind}: figure build on the server (median of {args.repeats}) {statistics.median(builds[kind]):.3f} s; "
              f"figure JSON {len(specs[kind][0]):,} chars")
    print(bh.load_average())
    baseline = median["3-D, Plotly.newPlot"]
    print("| draw | median s | min s | max s | vs 3-D newPlot |")
    print("|---|---:|---:|---:|---:|")
    for how in times:
        print(f"| {how} | {median[how]:.3f} | {min(times[how]):.3f} | {max(times[how]):.3f} | "
              f"{median[how] / baseline:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
