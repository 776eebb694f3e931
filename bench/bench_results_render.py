"""Benchmark: how long the Results page takes to render for a 20484-vertex (fsaverage5) run.

Run: HF_HUB_OFFLINE=1 python bench/bench_results_render.py [--layers 3] [--repeats 1]

Set-up (temporary folder): one complete fsaverage5 run written through the real RunStore
(``--layers`` layers, simulated so the planted-region outlines are drawn too). Then, in this
one process (as on one Streamlit server):

- ``cold``: the first session opens Results (empty figure caches; the meshes are loading in
  the app's warm-up thread since Home was shown ``--home-seconds`` earlier);
- ``warm rerun``: the same session reruns the page (e.g. a widget elsewhere changed);
- ``warm new session``: a second session opens Results (another browser tab);
- ``other layer``: the first session switches to a layer not drawn yet;
- ``back to layer``: it switches back (everything cached).

Prints one line per measurement (seconds) and whether the brain map was drawn.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "tests"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def _timed_run(at, action) -> tuple[float, bool]:
    start = time.perf_counter()
    action()
    elapsed = time.perf_counter() - start
    if at.exception:
        raise RuntimeError(f"The Results page raised: {[e.message for e in at.exception]}")
    drawn = any(el.key == "surface_map" for el in at.get("plotly_chart"))
    return elapsed, drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=3, help="layers in the run (default 3)")
    parser.add_argument("--home-seconds", type=float, default=0.0,
                        help="seconds the first session stays on Home before opening Results (the app warms "
                             "the brain meshes up in the background meanwhile; default 0)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    home = Path(tempfile.mkdtemp(prefix="bench-results-"))
    os.environ.update(ENCODING_STUDIO_HOME=str(home), ENCODING_STUDIO_DATA_ROOTS=str(home),
                      HF_HUB_OFFLINE="1")
    os.chdir(home)
    from streamlit.testing.v1 import AppTest

    from test_app_pages import make_run

    layers = tuple(range(args.layers))
    make_run(home / "results", seed=1, layers=layers, simulated=True)

    home_render_s: list[float] = []

    def new_session(home_seconds: float = 0.0) -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        start = time.perf_counter()
        at.run()
        home_render_s.append(time.perf_counter() - start)
        time.sleep(home_seconds)
        at.switch_page("pages/results.py")
        return at

    first = new_session(args.home_seconds)
    rows = [("cold (first session, first render)", *_timed_run(first, first.run))]
    rows.append(("warm rerun (same session)", *_timed_run(first, first.run)))
    second = new_session()
    rows.append(("warm new session", *_timed_run(second, second.run)))
    shown = first.selectbox(key="layer_pick").value
    other = next(layer for layer in layers if layer != shown) if len(layers) > 1 else shown
    rows.append((f"other layer ({other}, not drawn yet)",
                 *_timed_run(first, lambda: first.selectbox(key="layer_pick").set_value(other).run())))
    rows.append((f"back to layer {shown}",
                 *_timed_run(first, lambda: first.selectbox(key="layer_pick").set_value(shown).run())))
    print(f"Results page render, fsaverage5 run with {len(layers)} layers (20484 vertices), "
          f"{args.home_seconds:g} s on Home first, folder {home}")
    print(f"  {'Home render (first session, cold)':<40s} {home_render_s[0]:6.2f} s")
    for name, seconds, drawn in rows:
        print(f"  {name:<40s} {seconds:6.2f} s   brain map drawn: {drawn}")


if __name__ == "__main__":
    main()
