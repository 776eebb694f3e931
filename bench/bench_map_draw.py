"""Benchmark: what one interactive brain map costs in the browser, drawn from scratch vs updated.

Run: HF_HUB_OFFLINE=1 python bench/bench_map_draw.py [--repeats 5]

Builds the Results page's interactive map (fsaverage5 values on the coarse mesh, one
hemisphere and view, ``viz.surface_figure(coarse=True)``) and times, in Debian's Chromium
(software WebGL on a machine without a GPU), ``Plotly.newPlot`` of it (what the page pays on
every changed map: Streamlit 1.67 gives a plotly chart an element id that hashes its figure, so a
changed figure is a new chart) against ``Plotly.react`` of the same figure into the existing plot
(what a chart kept across reruns would pay). Each time runs until two animation frames after the
call. Prints the figure build time on the server, the JSON size, and the medians with their ratio.
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
  const figure = JSON.parse(spec);
  const t0 = performance.now();
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
    builds, specs = [], []
    for k in range(args.repeats):  # a new threshold each time: a new figure
        started = time.perf_counter()
        figure = viz.surface_figure(np.where(np.abs(values) > 0.01 * k, values, np.nan), hemi="left",
                                    view="lateral", vmax=0.8, coarse=True)
        builds.append(time.perf_counter() - started)
        specs.append(pio.to_json(figure, validate=False))
    script = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    times: dict[str, list[float]] = {"newPlot": [], "react": []}
    with sync_playwright() as playwright:
        browser = bh.launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_content("<html><body><div id='map' style='width:1000px;height:700px'></div></body></html>")
        page.add_script_tag(path=str(script))
        page.evaluate(DRAW_JS, [specs[0], "newPlot"])  # the first draw compiles the shaders: not counted
        for spec in specs:
            times["newPlot"].append(page.evaluate(DRAW_JS, [spec, "newPlot"]) / 1000.0)
        for spec in specs:
            times["react"].append(page.evaluate(DRAW_JS, [spec, "react"]) / 1000.0)
        browser.close()
    median = {how: statistics.median(values) for how, values in times.items()}
    print(f"figure build on the server (median of {args.repeats}): {statistics.median(builds):.3f} s; "
          f"figure JSON {len(specs[0]):,} chars; {bh.load_average()}")
    print("| draw | median s | min s | max s | vs newPlot |")
    print("|---|---:|---:|---:|---:|")
    for how in ("newPlot", "react"):
        print(f"| Plotly.{how} | {median[how]:.3f} | {min(times[how]):.3f} | {max(times[how]):.3f} | "
              f"{median[how] / median['newPlot']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
