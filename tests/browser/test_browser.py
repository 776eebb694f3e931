"""A real browser drives the app: Home -> "Run the demo" -> Train -> Results, with screenshots.

Starts ``streamlit run app.py`` on a free loopback port in a temporary working folder and
uses Debian's Chromium through Playwright. The demo runs for real with the documented
``ENCODING_STUDIO_DEMO_PRESET=tiny`` preset (three stories, 2.5 s stride). Screenshots of
every page go to ``test-artifacts/screenshots/``. The browser's console must stay empty: no errors,
no failed request and no request leaving the machine (the favicon is served locally). The Results
page's warm visit, a threshold change and the switch to the rotatable 3-D map are timed to the drawn
map and written to
``test-artifacts/results_times.json``; only a generous bound is asserted (CI machines are slow).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import browser_helpers as bh

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "test-artifacts" / "screenshots"
PAGES = [("Home", ""), ("Assembly", "assembly"), ("Audio", "audio"), ("Model & layer", "model"),
         ("Setup", "setup"), ("Train", "train"), ("Results", "results")]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _server_env(home: Path, tmp_path_factory) -> dict:
    return {"ENCODING_STUDIO_HOME": str(home), "ENCODING_STUDIO_DEMO_PRESET": "tiny",
            "ENCODING_STUDIO_CACHE": str(tmp_path_factory.getbasetemp() / "app-feature-cache")}


@pytest.fixture
def server(tmp_path, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    try:
        process = bh.start_server(ROOT, tmp_path, bh.free_port(), env=_server_env(tmp_path, tmp_path_factory),
                                  timeout_s=90)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield process.url
    finally:
        bh.stop_server(process)
        # stop any job worker the app started (they run in their own sessions)
        for pid_file in (tmp_path / ".encoding_studio" / "jobs").glob("*/job.json"):
            pid = json.loads(pid_file.read_text()).get("pid")
            state = pid_file.parent / "state.json"
            if pid and state.exists() and json.loads(state.read_text()).get("state") in ("queued", "running"):
                try:
                    os.killpg(pid, 15)
                except OSError:
                    pass


def _settle(page, timeout_ms: int = 120_000) -> None:
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout_ms)
    page.wait_for_timeout(800)


def _fit_partition_run(home: Path) -> str:
    """A joint banded-ridge run of two cheap spaces (sound envelope, word rate) on the tiny demo's
    stories (already simulated by the demo job), written where the app reads its runs."""
    from encoding_core.config import FeatureConfig, FeatureSpaceConfig
    from encoding_core.demo import demo_config
    from encoding_core.experiment.pipeline import run_experiment
    from encoding_core.studio import demo_preset_config

    config = demo_preset_config(demo_config(results_dir=str(home / "results"), cache_dir=str(home / "cache")),
                                "tiny")
    config.name = "demo-partition"
    config.feature_spaces = [FeatureSpaceConfig("envelope", 0, FeatureConfig(modality="envelope")),
                             FeatureSpaceConfig("wordrate", 0, FeatureConfig(modality="wordrate"))]
    config.ridge.mode = "train_test"
    config.stats.n_permutations = 0
    return run_experiment(config.validate())


RESULTS_BOUND_S = 30.0  # generous: the target is <= 1 s warm and <= 0.5 s per control on a quiet machine


def test_demo_in_a_real_browser(server, tmp_path, tmp_path_factory):
    server_home = tmp_path  # the server fixture's ENCODING_STUDIO_HOME
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    log = bh.BrowserLog()
    times = {}
    with sync_playwright() as p:
        browser = bh.launch_chromium(p)
        try:
            page = bh.new_page(browser, width=1400, height=2400, log=log)
            page.goto(server)
            _settle(page)
            page.get_by_role("button", name="Run the demo").click()
            page.wait_for_url("**/train", timeout=180_000)
            _settle(page, 180_000)
            # the run takes the demo's real cost; the Train fragment refreshes on its own
            page.get_by_role("button", name="Show the results").wait_for(timeout=1_200_000)
            assert page.get_by_text("SIMULATED DATA").first.is_visible()
            page.screenshot(path=str(SHOTS / "train.png"), full_page=True)
            page.get_by_role("button", name="Show the results").click()
            page.wait_for_url("**/results", timeout=60_000)
            _settle(page)
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            assert page.get_by_text("SIMULATED RUN").first.is_visible()
            assert page.locator("[data-testid='stPlotlyChart']").count() >= 2
            page.wait_for_timeout(2500)
            page.screenshot(path=str(SHOTS / "results.png"), full_page=True)
            for title, slug in PAGES:  # sidebar links keep the session (the loaded demo)
                if slug in ("train", "results"):
                    continue
                page.locator("[data-testid='stSidebarNav']").get_by_text(title, exact=True).click()
                page.wait_for_url(f"{server}/{slug}", timeout=60_000)
                _settle(page)
                assert page.locator("[data-testid='stException']").count() == 0, f"{title} shows a traceback"
                page.screenshot(path=str(SHOTS / f"{slug or 'home'}.png"), full_page=True)
            times["results_warm_visit_s"] = bh.visit(page, "Results", ["surface_map"])
            times["results_threshold_step_s"] = bh.nudge_slider(page, "min_r", +1, ["surface_map"])
            times["results_threshold_step_from_input_s"] = bh.LAST_ACTION["from_input"]
            # the map is a picture (an image, no WebGL scene); "Rotatable 3-D" swaps in the 3-D surface
            surface = page.locator(".st-key-surface_map")
            assert surface.locator("image").count() >= 1 and surface.locator("canvas").count() == 0
            rotatable = page.locator(".st-key-map_3d label").first
            times["results_rotatable_3d_s"] = bh.timed_action(page, rotatable.click, ["surface_map"])
            assert surface.locator("canvas").count() >= 1
            page.screenshot(path=str(SHOTS / "results_3d.png"), full_page=True)
            bh.timed_action(page, rotatable.click, ["surface_map"])
            assert surface.locator("canvas").count() == 0
            times["load_average"] = os.getloadavg()[0]
            # A shared link (Results with its query parameters) opened in a fresh tab as the FIRST
            # request of a freshly started server (a teacher restarts the app, a student opens the
            # link): Streamlit then runs pages/results.py on its own (its pages/-folder mode, until
            # some run calls st.navigation). The page must still come with the app's navigation,
            # not Streamlit's raw list of the folder's files.
            shared_link = page.url
            assert "run=" in shared_link, shared_link
            restarted = bh.start_server(ROOT, server_home, bh.free_port(),
                                        env=_server_env(server_home, tmp_path_factory), timeout_s=90)
            try:
                fresh = bh.new_page(browser, width=1400, height=2400, log=log)
                fresh.goto(shared_link.replace(server, restarted.url))
                _settle(fresh)
                fresh.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
                nav = fresh.locator("[data-testid='stSidebarNav']")
                assert nav.get_by_text("Model & layer", exact=True).count() == 1, nav.inner_text()
                assert nav.get_by_text("common", exact=True).count() == 0, nav.inner_text()
                assert fresh.locator("[data-testid='stException']").count() == 0
                fresh.screenshot(path=str(SHOTS / "results_shared_link.png"), full_page=True)
                fresh.close()
            finally:
                bh.stop_server(restarted)
            fresh = bh.new_page(browser, width=1400, height=2400, log=log)
            # a variance-partition run (fitted here for real on the demo's data) draws its partition map
            partition_run = _fit_partition_run(server_home)
            times["partition_map_first_visit_s"] = bh.timed_goto(
                fresh, f"{server}/results?run={partition_run}", ["partition_surface", "partition_bars"])
            assert fresh.locator("[data-testid='stException']").count() == 0
            assert fresh.get_by_text("Negative estimates are kept, not clipped").first.is_visible()
            times["partition_map_switch_s"] = bh.click_radio(fresh, "partition_map", "unique to wordrate",
                                                             ["partition_surface"])
            # the hemisphere is a control of the map panel (a fragment): the partition map below it follows
            times["partition_map_hemisphere_s"] = bh.click_radio(fresh, "hemi", "right", ["partition_surface"])
            title = fresh.locator(".st-key-partition_surface .infolayer").first.text_content()  # title, subtitle
            assert "right lateral" in title, title
            fresh.screenshot(path=str(SHOTS / "results_partition.png"), full_page=True)
        finally:
            browser.close()
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "results_times.json").write_text(json.dumps(times, indent=1))
    assert log.clean, log.summary()
    assert all(seconds < RESULTS_BOUND_S for key, seconds in times.items() if key.endswith("_s")), times
    assert all((SHOTS / f"{slug or 'home'}.png").is_file() for _, slug in PAGES)
