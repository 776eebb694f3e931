"""Benchmark: a classroom of browser tabs opens the Results page at once while a training job runs.

Run: HF_HUB_OFFLINE=1 python bench/bench_app_load.py [--sessions 20] [--rounds 2] [--job demo|tiny|none]
     [--results FOLDER] [--root CODE] [--json OUT]

Measured from the server side: the app runs under ``bench/instrumented_streamlit.py`` (``streamlit
run`` plus a per-rerun log), and for every script run of every session it records the script time
(from the run's first message to its ``script_finished``) and the bytes sent (serialized messages,
before websocket compression). Each of ``--sessions`` headless Chromium tabs (one app session
each) opens Results, moves the threshold one step and switches the view; the figures are the
median and the 95th percentile over those reruns, split into page opens and control changes.
Round 1 is cold (empty figure caches), later rounds warm. ``--results``: open the runs of this
folder (e.g. a full demo run) instead of a synthetic fsaverage5 run.

The helpers above the ``classroom`` section (a synthetic fsaverage5 run, a tiny training job, a
plain server, ``render_in_browsers``: tabs timed until the three charts are drawn) are also used
by ``tests/reliability/test_load.py``.

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


# --------------------------------------------------------------------------- classroom: N tabs, server-side figures
async def _a_wait_idle(page, t0: float, charts, timeout_s: float = 900.0) -> float:
    """Async twin of ``browser_helpers.wait_idle`` (same page-side script)."""
    import asyncio

    import browser_helpers as bh

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = await page.evaluate(bh._IDLE_JS, [t0, list(charts), True])
        if done is not None:
            await asyncio.sleep(0.3)
            again = await page.evaluate(bh._IDLE_JS, [t0, list(charts), True])
            if again == done:
                return (done - t0) / 1000.0
        await asyncio.sleep(0.05)
    raise TimeoutError(f"tab not idle after {timeout_s:.0f} s")


async def _classroom_tab(browser, url: str, index: int) -> dict:
    """One student: open Results, move the threshold one step, switch the view; browser-side seconds."""
    import browser_helpers as bh

    context = await browser.new_context(viewport={"width": 1400, "height": 1800})
    context.set_default_timeout(900_000)  # 20 tabs on 2 cores: loading the page alone can take minutes
    await context.add_init_script(bh.INIT_SCRIPT)
    page = await context.new_page()
    times: dict = {"tab": index}
    try:
        await page.goto(f"{url}/results")
        times["open_s"] = await _a_wait_idle(page, 0.0, ["surface_map"])
        slider = page.locator(".st-key-min_r input[type='range']").first
        await slider.focus()
        t0 = await page.evaluate("performance.now()")
        await slider.press("ArrowRight")
        times["threshold_s"] = await _a_wait_idle(page, t0, ["surface_map"])
        option = page.locator(".st-key-view label").filter(has_text="medial").first
        t0 = await page.evaluate("performance.now()")
        await option.click()
        times["view_s"] = await _a_wait_idle(page, t0, ["surface_map"])
        times["exceptions"] = await page.locator("[data-testid='stException']").count()
    except Exception as exc:  # noqa: BLE001 - reported per tab, the others go on
        times["error"] = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        await context.close()
    return times


def classroom_round(url: str, n_sessions: int) -> list[dict]:
    """``n_sessions`` tabs (separate contexts = separate app sessions) of one headless Chromium at once."""
    import asyncio

    from playwright.async_api import async_playwright

    import browser_helpers as bh

    async def run() -> list[dict]:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=bh.CHROMIUM_ARGS)
            try:
                return list(await asyncio.gather(*(_classroom_tab(browser, url, i) for i in range(n_sessions))))
            finally:
                await browser.close()

    return asyncio.run(run())


def rerun_figures(rows: list[dict]) -> dict:
    """Median and 95th percentile of script seconds and bytes over reruns, by kind."""
    def stats(values):
        values = np.asarray(values, dtype=float)
        if values.size == 0:
            return {"n": 0}
        return {"n": int(values.size), "median": float(np.median(values)), "p95": float(np.percentile(values, 95)),
                "max": float(values.max())}

    by_client: dict = {}
    for row in rows:
        by_client.setdefault(row["client"], []).append(row)
    kinds: dict[str, list[dict]] = {"page open": [], "control change": []}
    for runs in by_client.values():
        runs.sort(key=lambda r: r["t"])
        for i, row in enumerate(runs):
            kinds["page open" if i == 0 else "control change"].append(row)
    kinds["all reruns"] = rows
    return {kind: {"script_s": stats([r["script_s"] for r in chosen]), "bytes": stats([r["bytes"] for r in chosen])}
            for kind, chosen in kinds.items()}


def start_demo_job(home: Path, jobs_dir: Path, cache_dir: Path):
    """The demo preset as a background job with its own results and feature cache folders."""
    from encoding_core.demo.preset import demo_config
    from encoding_core.experiment.jobs import JobManager

    config = demo_config(results_dir=str(home / "job-results"), cache_dir=str(cache_dir))
    manager = JobManager(jobs_dir)
    return manager, manager.start(config)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2, help="round 1 cold, the rest warm")
    parser.add_argument("--job", choices=("demo", "tiny", "none"), default="demo",
                        help="the job training meanwhile: the demo preset (features computed unless --job-cache "
                             "holds them), the tiny test experiment, or none")
    parser.add_argument("--job-cache", type=Path, help="feature cache of the demo job (default: a new, empty one)")
    parser.add_argument("--results", type=Path,
                        help="a results folder whose complete runs the tabs open (default: a synthetic fsaverage5 run)")
    parser.add_argument("--root", type=Path, default=ROOT, help="code root to serve (default: this repository)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sys.path.insert(0, str(ROOT / "tests" / "browser"))
    import shutil

    import browser_helpers as bh

    with tempfile.TemporaryDirectory(prefix="bench-app-load-") as tmp:
        home = Path(tmp)
        os.chdir(home)
        set_app_folders(home)
        if args.results:
            shutil.copytree(args.results, home / "results")
        else:
            make_surface_run(home / "results")
        log_path = home / "reruns.jsonl"
        jobs_dir = home / ".encoding_studio" / "jobs"
        manager = job_id = None
        if args.job == "demo":
            manager, job_id = start_demo_job(home, jobs_dir, args.job_cache or home / "job-cache")
        elif args.job == "tiny":
            manager, job_id = start_training_job(home, jobs_dir)
        server = None
        summary: dict = {"sessions": args.sessions, "cpus": os.cpu_count(), "job": args.job, "rounds": []}
        try:
            server = bh.start_server(args.root.absolute(), home, bh.free_port(),
                                     env={"BENCH_RERUN_LOG": str(log_path), "ENCODING_STUDIO_HOME": str(home)},
                                     launcher=ROOT / "bench" / "instrumented_streamlit.py")
            if manager is not None:  # let the worker get past its imports so it competes for the CPU
                deadline = time.monotonic() + 120
                while manager.status(job_id).state == "queued" and time.monotonic() < deadline:
                    time.sleep(0.5)
            for round_index in range(1, args.rounds + 1):
                before = log_path.stat().st_size if log_path.exists() else 0
                load = os.getloadavg()[0]
                state = manager.status(job_id).state if manager else "no job"
                started = time.perf_counter()
                tabs = classroom_round(server.url, args.sessions)
                wall = time.perf_counter() - started
                with open(log_path, encoding="utf-8") as fh:
                    fh.seek(before)
                    rows = [json.loads(line) for line in fh if line.strip()]
                rows = [r for r in rows if r["page"].strip("/").lower() == "results"]  # a rerun may name it "Results"
                figures = rerun_figures(rows)
                state_after = manager.status(job_id).state if manager else "no job"
                errors = [t for t in tabs if "error" in t or t.get("exceptions")]
                browser = {k: float(np.median([t[k] for t in tabs if k in t])) for k in ("open_s", "threshold_s", "view_s")
                           if any(k in t for t in tabs)}
                summary["rounds"].append({"round": round_index, "load_before": round(load, 1),
                                          "load_after": round(os.getloadavg()[0], 1), "job": f"{state} -> {state_after}",
                                          "wall_s": round(wall, 1), "server": figures, "browser_median_s": browser,
                                          "tab_errors": errors})
                print(f"\nround {round_index} ({'cold' if round_index == 1 else 'warm'}): {args.sessions} tabs, "
                      f"wall {wall:.1f} s, load {load:.1f} -> {os.getloadavg()[0]:.1f}, job {state} -> {state_after}, "
                      f"tab errors {len(errors)} {errors[:2]}")
                print("| reruns | n | script s median | script s p95 | bytes median | bytes p95 |")
                print("|---|---:|---:|---:|---:|---:|")
                for kind, values in figures.items():
                    sc, by = values["script_s"], values["bytes"]
                    if sc["n"]:
                        print(f"| {kind} | {sc['n']} | {sc['median']:.2f} | {sc['p95']:.2f} | {by['median']:,.0f} | "
                              f"{by['p95']:,.0f} |")
                print("browser side (median per tab): " + ", ".join(f"{k} {v:.1f} s" for k, v in browser.items()))
        finally:
            bh.stop_server(server)
            if manager is not None and not manager.status(job_id).is_final:
                manager.cancel(job_id)
                manager.wait(job_id, timeout_s=120)
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
