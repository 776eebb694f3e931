"""Benchmark: every page of the app in one real Chromium session, first and warm visits, and the
Results page's control changes, timed to the moment the figures are drawn.

Run: HF_HUB_OFFLINE=1 python bench/bench_app_pages.py --home HOME [--root CODE] [--repeats 3]

HOME is an app home (``ENCODING_STUDIO_HOME``) whose ``cache/`` already holds the demo's features
(e.g. after ``python -m encoding_core demo --results-dir HOME/results --cache-dir HOME/cache``), so
the demo job the browser starts takes seconds, not minutes. CODE is the code root to serve
(default: this repository; pass a copy of an older tree to measure "before").

One browser session, as a new user would: open Home (first visit), press **Run the demo**, wait
on Train until the job is done, then visit every page twice through the sidebar (first and warm
visits), then change the Results controls (threshold, layer, view, hemisphere, run) ``--repeats``
times each. Every time is from the user's action until the script stopped and the page's brain
surface (Results) is drawn (``tests/browser/browser_helpers.py``), and for clicks and key presses
also from the input event the page received (what a user waits; the Playwright call first scrolls to
the element and waits for it to be stable); the 1-minute load average is printed next to each. The browser console and network are checked at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

import browser_helpers as bh  # noqa: E402

PAGES = ["Home", "Assembly", "Audio", "Model & layer", "Setup", "Train", "Results"]
SURFACE = "surface_map"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    home = args.home.absolute()
    rows: list[dict] = []

    def record(name: str, seconds: float) -> None:
        """One time; after a click or key press also the time from the input event the page got."""
        from_input = bh.LAST_ACTION.get("from_input") if bh.LAST_ACTION.get("from_call") == seconds else None
        row = {"measure": name, "seconds": round(seconds, 3), "load": round(os.getloadavg()[0], 1),
               "from_input": None if from_input is None else round(from_input, 3)}
        rows.append(row)
        after_input = "" if from_input is None else f" ({from_input:.2f} s from the input event)"
        print(f"{name:<48s} {seconds:6.2f} s{after_input}   (load {row['load']})", flush=True)

    server = bh.start_server(args.root.absolute(), home, bh.free_port())
    log = bh.BrowserLog()
    try:
        with sync_playwright() as p:
            browser = bh.launch_chromium(p)
            page = bh.new_page(browser, log=log)
            record("Home, first visit (new session, cold server)", bh.timed_goto(page, server.url))
            start = time.perf_counter()
            page.get_by_role("button", name="Run the demo").click()
            page.wait_for_url("**/train", timeout=180_000)
            page.get_by_role("button", name="Show the results").wait_for(timeout=1_800_000)
            print(f"demo job (features cached) done after {time.perf_counter() - start:.1f} s", flush=True)
            for visit in ("first", "warm"):
                for title in PAGES:
                    charts = [SURFACE] if title == "Results" else []
                    record(f"{title}, {visit} visit", bh.visit(page, title, charts))
            if page.locator(f".st-key-{SURFACE}").count() == 0:
                raise RuntimeError("The Results page shows no brain surface.")
            for i in range(args.repeats):
                record("Results: threshold +1 step", bh.nudge_slider(page, "min_r", +1, [SURFACE]))
                record("Results: threshold -1 step", bh.nudge_slider(page, "min_r", -1, [SURFACE]))
                record("Results: view medial", bh.click_radio(page, "view", "medial", [SURFACE]))
                record("Results: view lateral", bh.click_radio(page, "view", "lateral", [SURFACE]))
                record("Results: hemisphere right", bh.click_radio(page, "hemi", "right", [SURFACE]))
                record("Results: hemisphere left", bh.click_radio(page, "hemi", "left", [SURFACE]))
                shown = bh.selected_text(page, "layer_pick")
                for layer in [f"layer {n}" for n in range(4) if not shown.startswith(f"layer {n}")][:2] + [shown]:
                    record("Results: switch layer", bh.choose_option(page, "layer_pick", layer.split(" (")[0],
                                                                     [SURFACE]))
            runs = sorted(p.name for p in (home / "results").iterdir() if (p / "status.json").is_file())
            if len(runs) >= 2:
                for i in range(args.repeats):
                    shown = bh.selected_text(page, "run_pick")
                    for run_id in [r for r in runs[-2:] if not shown.startswith(r)] + [shown.split(" ")[0]]:
                        # repeated demo runs have identical maps, which the browser does not redraw:
                        # timed until the page is idle (script stopped, nothing spinning)
                        record("Results: switch run (until idle)", bh.choose_option(page, "run_pick", run_id, []))
            browser.close()
    finally:
        bh.stop_server(server)
    print("browser:", log.summary())
    summary: dict[str, list[float]] = {}
    for row in rows:
        summary.setdefault(row["measure"], []).append(row["seconds"])
    print("\n| measure | median s | from the input event, median s | n | load (1 min) |\n|---|---:|---:|---:|---:|")
    for name, values in summary.items():
        loads = [r["load"] for r in rows if r["measure"] == name]
        after_input = [r["from_input"] for r in rows if r["measure"] == name and r["from_input"] is not None]
        input_text = f"{statistics.median(after_input):.2f}" if after_input else "-"
        print(f"| {name} | {statistics.median(values):.2f} | {input_text} | {len(values)} | "
              f"{min(loads):.1f}-{max(loads):.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "browser": log.__dict__}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
