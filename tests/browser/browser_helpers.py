"""Helpers to drive and time the app in a real Chromium (Playwright): start a server, wait until a
page is idle, time page visits and control changes to the moment the figures are drawn, and
collect what the browser console and network saw.

Used by ``tests/browser/test_browser.py`` and the benchmarks ``bench/bench_app_pages.py`` and
``bench/bench_app_load.py``. Times are seconds measured in the page (``performance.now()``) from
the user action (navigation, or the Playwright call of a click or key press; :data:`LAST_ACTION` also
has the time from the input event the page received) until:

- the app's script has run and stopped (``data-test-script-state`` went ``running`` then
  ``notRunning``; a rerun so fast that the page never showed ``running``: the frame painted after
  the server's last message), no spinner shows, and
- every plotly chart named in ``charts`` has been drawn after the action (a new chart drawn, or
  an existing one redrawn: plotly's ``plotly_afterplot`` event). For WebGL figures (the brain
  surfaces) "drawn" means the chart holds a canvas with a non-zero size.
"""
from __future__ import annotations

import os
import socket
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]
LOCAL_HOSTS = ("127.0.0.1", "localhost")

# Installed before any page script: a log of script-state changes and of plotly draws, in page time (ms).
INIT_SCRIPT = """
(() => {
  window.__stateLog = [];
  window.__plotLog = [];
  window.__inputLog = [];  // when the page received each click or key press (capture phase, before the app)
  for (const kind of ['pointerdown', 'keydown']) {
    document.addEventListener(kind, () => window.__inputLog.push(performance.now()), true);
  }
  const keyOf = (el) => {
    const box = el.closest('[class*="st-key-"]');
    if (!box) return '';
    const cls = [...box.classList].find((c) => c.startsWith('st-key-'));
    return cls ? cls.slice(7) : '';
  };
  const drawn = (gd) => {
    if (!gd._fullLayout) return false;
    const canvas = gd.querySelector('canvas');
    const gl = Object.keys(gd._fullLayout).some((k) => k.startsWith('scene'));
    return gl ? !!(canvas && canvas.width > 0 && canvas.height > 0) : true;
  };
  // When the frame after each message from the server was painted, (received, painted): a rerun so
  // fast that its "running" and "notRunning" states are committed together never shows "running".
  window.__wsLog = [];
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', () => {
        const received = performance.now();
        requestAnimationFrame(() => window.__wsLog.push([received, performance.now()]));
      });
    }
  };
  let lastState = null;
  const logState = (state) => {
    if (state !== lastState) { window.__stateLog.push([performance.now(), state]); lastState = state; }
  };
  // Every change of the script state, however short: a run that starts and stops between two
  // animation frames (a fast rerun) would be missed by polling alone.
  new MutationObserver((records) => {
    records.forEach((record, i) => logState(i + 1 < records.length ? records[i + 1].oldValue
                                                   : record.target.getAttribute('data-test-script-state')));
  }).observe(document, {subtree: true, attributes: true, attributeOldValue: true,
                        attributeFilter: ['data-test-script-state']});
  const tick = () => {
    const app = document.querySelector("[data-testid='stApp']");
    if (app) logState(app.getAttribute('data-test-script-state'));
    for (const gd of document.querySelectorAll('.js-plotly-plot')) {
      if (!gd.__benchSeen && drawn(gd)) {
        gd.__benchSeen = true;
        window.__plotLog.push([performance.now(), keyOf(gd), 'new']);
        if (gd.on) gd.on('plotly_afterplot', () => window.__plotLog.push([performance.now(), keyOf(gd), 'redraw']));
      }
    }
    requestAnimationFrame(tick);
  };
  const start = () => requestAnimationFrame(tick);
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
  // rAF pauses in background tabs: a timer keeps the state log going there.
  setInterval(() => {
    const app = document.querySelector("[data-testid='stApp']");
    if (app) logState(app.getAttribute('data-test-script-state'));
  }, 20);
})();
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(root: Path, home: Path, port: int, env: Optional[dict] = None, launcher: Optional[Path] = None,
                 timeout_s: float = 120.0) -> subprocess.Popen:
    """``streamlit run <root>/app.py`` in ``home`` on a loopback port; returns the process once healthy.

    launcher: a Python file run instead of ``-m streamlit`` with the same arguments (the
    instrumented server of bench_app_load.py). The output goes to ``home/streamlit.log``.
    """
    log = open(home / "streamlit.log", "ab")
    command = [sys.executable] + ([str(launcher)] if launcher else ["-m", "streamlit"]) + [
        "run", str(root / "app.py"), "--server.headless", "true", "--server.port", str(port),
        "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    full_env = dict(os.environ, PYTHONPATH=str(root), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    full_env.update(env or {})
    process = subprocess.Popen(command, cwd=home, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    process.port = port  # type: ignore[attr-defined]
    process.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"streamlit did not start: {(home / 'streamlit.log').read_text()[-3000:]}")
        time.sleep(0.3)


def stop_server(process: Optional[subprocess.Popen]) -> None:
    """Terminate the server started by :func:`start_server` (its own process group)."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


STREAMLIT_BASE_PATH_PROBE = re.compile(r"/[A-Za-z0-9_-]+/_stcore/(health|host-config)")
NOT_FOUND_CONSOLE_MESSAGE = "Failed to load resource: the server responded with a status of 404 (Not Found)"


@dataclass
class BrowserLog:
    """What the browser saw: console errors/warnings, failed requests, requests that left the machine."""

    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    aborted_media: list[str] = field(default_factory=list)
    http_errors: list[str] = field(default_factory=list)  # responses >= 400 (the console's errors name no URL)
    base_path_probes: list[str] = field(default_factory=list)

    def attach(self, page) -> None:
        from urllib.parse import urlparse

        def on_console(message) -> None:
            if message.type == "error":
                self.console_errors.append(message.text)

        def on_request(request) -> None:
            host = urlparse(request.url).hostname or ""
            if request.url.startswith(("http://", "https://", "ws://", "wss://")) and host not in LOCAL_HOSTS:
                self.external_requests.append(request.url)

        def on_failed(request) -> None:
            # A page's audio/video stream is cancelled by the browser when the user navigates away
            # (net::ERR_ABORTED on the server's own /media/ URL): not a failure of the app.
            local = (urlparse(request.url).hostname or "") in LOCAL_HOSTS
            if local and "/media/" in request.url and "ERR_ABORTED" in str(request.failure):
                self.aborted_media.append(request.url)
                return
            self.failed_requests.append(f"{request.url} ({request.failure})")

        def on_response(response) -> None:
            path = urlparse(response.url).path
            if response.status == 404 and STREAMLIT_BASE_PATH_PROBE.fullmatch(path):
                # A page URL opened directly: Streamlit's frontend first tries that page as the
                # server's base path (/results/_stcore/health, then /_stcore/health); known,
                # harmless and not the app's doing (streamlit/streamlit#7074).
                self.base_path_probes.append(response.url)
            elif response.status >= 400:
                self.http_errors.append(f"{response.status} {response.url}")

        page.on("console", on_console)
        page.on("response", on_response)
        page.on("request", on_request)
        page.on("requestfailed", on_failed)

    @property
    def unexplained_console_errors(self) -> list[str]:
        """Console errors, less one "404" per base-path probe (each probe 404 logs exactly one)."""
        left, allowed = [], len(self.base_path_probes)
        for message in self.console_errors:
            if allowed and message == NOT_FOUND_CONSOLE_MESSAGE:
                allowed -= 1
            else:
                left.append(message)
        return left

    @property
    def clean(self) -> bool:
        return not (self.unexplained_console_errors or self.failed_requests or self.external_requests
                    or self.http_errors)

    def summary(self) -> str:
        return (f"{len(self.unexplained_console_errors)} console errors {self.unexplained_console_errors[:5]}, "
                f"{len(self.failed_requests)} failed requests {self.failed_requests[:5]}, "
                f"{len(self.external_requests)} external requests {self.external_requests[:5]}, "
                f"HTTP errors {self.http_errors[:5]}")


def new_page(browser, width: int = 1400, height: int = 1800, log: Optional[BrowserLog] = None):
    """A page (own browser context = own app session) with the timing script installed."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.add_init_script(INIT_SCRIPT)
    page = context.new_page()
    if log is not None:
        log.attach(page)
    return page


def page_now(page) -> float:
    return float(page.evaluate("performance.now()"))


_IDLE_JS = """([t0, charts, needRun]) => {
  const app = document.querySelector("[data-testid='stApp']");
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return null;
  if (document.querySelector("[data-testid='stSpinner']")) return null;
  const states = window.__stateLog.filter((e) => e[0] >= t0);
  const ran = states.some((e) => e[1] === 'running');
  const messages = window.__wsLog.filter((e) => e[0] >= t0);
  // a run too fast to show "running": the server answered, and the frame after its last message
  if (needRun && !ran && !messages.length) return null;
  // the first stop after the first run since t0 (a timed fragment may rerun later: not counted)
  const firstRun = states.findIndex((e) => e[1] === 'running');
  const stop = ran ? states.find((e, i) => i > firstRun && e[1] === 'notRunning') : null;
  let done = stop ? stop[0] : (ran || !messages.length ? t0 : messages[messages.length - 1][1]);
  for (const key of charts) {
    const draws = window.__plotLog.filter((e) => e[0] >= t0 && e[1] === key);
    if (!draws.length) return null;
    done = Math.max(done, draws[draws.length - 1][0]);
  }
  return done;
}"""


def wait_idle(page, t0: float, charts: Sequence[str] = (), need_run: bool = True, timeout_s: float = 120.0,
              settle_s: float = 0.3) -> float:
    """Seconds from page time ``t0`` (ms) until the script ran and stopped and every chart in
    ``charts`` (element keys) was drawn after t0. Waits ``settle_s`` more and re-checks, so a
    chart drawn twice (a second rerun) counts its last draw."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        done = page.evaluate(_IDLE_JS, [t0, list(charts), need_run])
        if done is not None:
            page.wait_for_timeout(int(settle_s * 1000))
            again = page.evaluate(_IDLE_JS, [t0, list(charts), need_run])
            if again is not None and again == done:
                return (done - t0) / 1000.0
            last = again
        page.wait_for_timeout(25)
    raise TimeoutError(f"The page did not become idle with charts {list(charts)} drawn within {timeout_s:.0f} s "
                       f"(last {last}); script states: {page.evaluate('window.__stateLog.slice(-6)')}.")


LAST_ACTION: dict[str, float] = {}
"""The last :func:`timed_action`: ``from_call`` (seconds from the Playwright call, which first scrolls
to the element and waits for it to be stable) and ``from_input`` (seconds from the first click or key
press the page received: the wait a user has after clicking)."""


def timed_action(page, action, charts: Sequence[str] = (), timeout_s: float = 120.0) -> float:
    """Run ``action()`` (a click, a key press) and return the seconds until idle with ``charts`` drawn,
    counted from the call (see :data:`LAST_ACTION` for the time from the input event)."""
    t0 = page_now(page)
    action()
    seconds = wait_idle(page, t0, charts, timeout_s=timeout_s)
    inputs = [t for t in page.evaluate("window.__inputLog") if t >= t0]
    LAST_ACTION.clear()
    LAST_ACTION.update(from_call=seconds, from_input=seconds - ((inputs[0] - t0) / 1000.0 if inputs else 0.0))
    return seconds


def timed_goto(page, url: str, charts: Sequence[str] = (), timeout_s: float = 180.0) -> float:
    """Open ``url`` in ``page`` (a new document) and return the seconds until idle with ``charts`` drawn."""
    page.goto(url)
    return wait_idle(page, 0.0, charts, timeout_s=timeout_s)


def sidebar_link(page, title: str):
    return page.locator("[data-testid='stSidebarNav']").get_by_text(title, exact=True)


def visit(page, title: str, charts: Sequence[str] = (), timeout_s: float = 180.0) -> float:
    """Click the sidebar link ``title`` and return the seconds until the page is idle and drawn."""
    return timed_action(page, lambda: sidebar_link(page, title).click(), charts, timeout_s)


def choose_option(page, key: str, option_text: str, charts: Sequence[str] = ()) -> float:
    """Pick ``option_text`` in the selectbox with element key ``key``; seconds until idle and drawn."""
    box = page.locator(f".st-key-{key} [role='combobox'], .st-key-{key} [data-baseweb='select']").first
    box.click()
    option = page.get_by_role("option").filter(has_text=option_text).first
    return timed_action(page, option.click, charts)


def selected_text(page, key: str) -> str:
    """The text shown in the selectbox with element key ``key``."""
    return page.locator(f".st-key-{key} [role='combobox']").first.input_value()


def click_radio(page, key: str, label: str, charts: Sequence[str] = ()) -> float:
    """Click the radio option ``label`` of the radio group with key ``key``."""
    target = page.locator(f".st-key-{key} label").filter(has_text=label).first
    return timed_action(page, target.click, charts)


def nudge_slider(page, key: str, presses: int = 1, charts: Sequence[str] = ()) -> float:
    """Move the slider with key ``key`` by ``presses`` steps (arrow keys); seconds until idle and drawn."""
    thumb = page.locator(f".st-key-{key} input[type='range'], .st-key-{key} [role='slider']").first
    thumb.focus()
    key_name = "ArrowRight" if presses > 0 else "ArrowLeft"

    def press() -> None:
        for _ in range(abs(presses)):
            thumb.press(key_name)

    return timed_action(page, press, charts)


def launch_chromium(playwright, extra_args: Iterable[str] = ()):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=CHROMIUM_ARGS + list(extra_args))


def load_average() -> str:
    """The 1-minute load average of this machine, e.g. ``"load 5.3"``."""
    try:
        return f"load {os.getloadavg()[0]:.1f}"
    except OSError:
        return "load ?"
