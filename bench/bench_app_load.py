"""Benchmark: several browser tabs open the Results page at once while a training job runs.

Run: HF_HUB_OFFLINE=1 python bench/bench_app_load.py [--sessions 5] [--no-job] [--rounds 2]

Set-up (all in a temporary folder): one complete fsaverage5 run (3 layers, 20484 vertices)
in the app's results folder, a real background job (``JobManager``) training the tiny
experiment of ``tests/tiny_experiment.py``, and a real ``streamlit run app.py`` server.
Then ``--sessions`` Chromium tabs (Playwright, Debian's /usr/bin/chromium; each tab is its
own app session, as students' browsers are) open the Results page at the same moment.
Round 1 is cold (the server's figure caches are empty), later rounds are warm. Each tab is
timed from navigation until the script has finished and the three charts (layer profile,
surface map, histogram) are drawn. Prints one line per tab and round, then a summary.
Target: Results render under 2 s per session (on a shared 2-core machine, see the report).

Why not ``streamlit.testing.v1.AppTest`` in threads: AppTest installs a global mock
``Runtime`` for each run and removes it when that run ends, so concurrent AppTests in one
process break each other ("Runtime hasn't been created!"). Tabs on one server are also
what a classroom really does.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "tests"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

TARGET_S = 2.0
N_FSAVERAGE5 = 20484


@dataclass
class SessionResult:
    """One browser tab: timings (seconds) and what its Results page showed."""

    session: int
    results_s: float  # navigation -> script finished and all charts drawn
    script_s: float  # navigation -> the server's script run finished
    exceptions: list[str]
    errors: list[str]
    chart_keys: list[str]  # keys of the plotly charts on the page (surface_map, histogram, ...)
    run_shown: str  # the text of the run picker
    headline: Optional[str]  # the first metric (median r of the selected layer), as shown

    @property
    def shows_brain(self) -> bool:
        return "surface_map" in self.chart_keys


def make_surface_run(results_dir: Path, seed: int = 0, layers: tuple[int, ...] = (0, 1, 2)) -> str:
    """A complete fsaverage5 run written through the RunStore; returns its id."""
    from encoding_core.assembly import Space
    from encoding_core.config import ExperimentConfig
    from encoding_core.experiment.runstore import RunStore

    gen = np.random.default_rng(seed)
    writer = RunStore(results_dir).create(ExperimentConfig(name=f"load{seed}", results_dir=str(results_dir)),
                                          {"layers": list(layers), "subject": "s1", "simulated": False})
    writer.write_space(Space.surface("fsaverage5"))
    summary: dict = {"layers": {}}
    for layer in layers:
        r = gen.normal(0.05 * layer, 0.1, N_FSAVERAGE5).astype(np.float32)
        significant = r > 0.2
        writer.write_layer(layer, {"median_score": float(np.median(r)), "max_score": float(r.max()),
                                   "n_significant": int(significant.sum()),
                                   "percent_significant": float(100 * significant.mean())},
                           {"correlations": r, "significant_mask": significant})
        summary["layers"][str(layer)] = {"median_r": float(np.median(r))}
    summary["best_layer"] = int(layers[-1])
    writer.finish(summary, {"total": 1.0})
    return writer.run_id


def start_training_job(root: Path, jobs_dir: Path):
    """Start a real background job on the tiny experiment; returns (JobManager, job_id)."""
    from tiny_experiment import make_tiny_experiment

    from encoding_core.experiment.jobs import JobManager

    config = make_tiny_experiment(root / "tiny", n_stories=4, n_trs=60)
    manager = JobManager(jobs_dir)
    return manager, manager.start(config)


CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(home: Path, port: int):
    """``streamlit run app.py`` in ``home`` on a loopback port; returns the process once healthy.

    The process gets a ``port`` attribute. Its output goes to ``home/streamlit.log``.
    """
    import subprocess
    import urllib.request

    log = open(home / "streamlit.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=home, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    process.port = port
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"streamlit did not start: {(home / 'streamlit.log').read_text()[-2000:]}")
        time.sleep(0.5)


CHART_KEYS = ("layer_profile", "surface_map", "histogram")


async def _browser_session(browser, url: str, index: int) -> SessionResult:
    """One browser tab opens the Results page; timed until the script finished and the charts are drawn."""
    page = await browser.new_page(viewport={"width": 1400, "height": 2000})
    start = time.perf_counter()
    await page.goto(f"{url}/results")
    await page.locator("[data-testid='stMetricValue']").first.wait_for(timeout=300_000)
    await page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=300_000)
    script_s = time.perf_counter() - start
    exceptions = await page.locator("[data-testid='stException']").all_inner_texts()
    errors = await page.locator("[data-testid='stAlertContentError']").all_inner_texts()
    keys = []
    if not exceptions and not errors:
        for key in CHART_KEYS:  # keyed elements carry the class st-key-<key>
            await page.locator(f".st-key-{key} .js-plotly-plot").first.wait_for(timeout=300_000)
            keys.append(key)
    results_s = time.perf_counter() - start
    picker = page.locator("[data-testid='stSelectbox']").first  # the run picker: label, shown value
    run_shown = " ".join([await picker.inner_text()] + [await field.input_value() for field in await picker.locator("input").all()])
    metrics = await page.locator("[data-testid='stMetricValue']").all_inner_texts()
    await page.close()
    return SessionResult(index, results_s, script_s, exceptions, errors, keys, run_shown.strip(),
                         metrics[0].strip() if metrics else None)


def render_in_browsers(url: str, n_sessions: int) -> list[SessionResult]:
    """``n_sessions`` Chromium tabs (separate sessions) load the Results page together."""
    import asyncio

    from playwright.async_api import async_playwright

    async def run() -> list[SessionResult]:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
            try:
                return list(await asyncio.gather(*(_browser_session(browser, url, i) for i in range(n_sessions))))
            finally:
                await browser.close()

    return asyncio.run(run())


def set_app_folders(home: Path) -> None:
    """Point the app's folders (ENCODING_STUDIO_*) at ``home``."""
    os.environ["ENCODING_STUDIO_HOME"] = str(home)
    os.environ["ENCODING_STUDIO_DATA_ROOTS"] = str(home)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="round 1 cold, the rest warm")
    parser.add_argument("--no-job", action="store_true", help="no background training job")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench-app-load-") as tmp:
        home = Path(tmp)
        os.chdir(home)
        set_app_folders(home)
        run_id = make_surface_run(home / "results")
        manager, job_id = (None, None) if args.no_job else start_training_job(home, home / ".encoding_studio" / "jobs")
        server = None
        try:
            server = start_server(home, free_port())
            url = f"http://127.0.0.1:{server.port}"
            if manager is not None:  # let the worker get past its imports so it competes for the CPU
                deadline = time.monotonic() + 60
                while manager.status(job_id).state == "queued" and time.monotonic() < deadline:
                    time.sleep(0.5)
            print(f"CPUs: {os.cpu_count()} · sessions: {args.sessions} · run {run_id} (fsaverage5, 3 layers) · "
                  "Chromium tabs on one streamlit run server")
            rows = []
            for round_index in range(1, args.rounds + 1):
                state = manager.status(job_id).state if manager else "no job"
                results = render_in_browsers(url, args.sessions)
                state_after = manager.status(job_id).state if manager else "no job"
                for r in results:
                    rows.append((round_index, r))
                    print(f"round {round_index} ({'cold' if round_index == 1 else 'warm'}), session {r.session}: "
                          f"results {r.results_s:5.2f} s (script done {r.script_s:5.2f} s) · brain map "
                          f"{'yes' if r.shows_brain else 'NO'} · exceptions {len(r.exceptions)} · "
                          f"job {state} -> {state_after}")
            for round_index in range(1, args.rounds + 1):
                times = [r.results_s for k, r in rows if k == round_index]
                print(f"round {round_index}: Results render median {np.median(times):.2f} s, max {max(times):.2f} s "
                      f"(target < {TARGET_S:.0f} s: {'met' if max(times) < TARGET_S else 'NOT met'})")
            if manager is not None:
                final = manager.wait(job_id, timeout_s=600)
                print(f"background job {job_id}: {final.state} (run {final.run_id})")
            print(json.dumps({"all_rendered": all(not r.exceptions and r.shows_brain for _, r in rows)}))
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)
            if manager is not None and not manager.status(job_id).is_final:
                manager.cancel(job_id)
                manager.wait(job_id, timeout_s=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
