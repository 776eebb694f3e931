"""``streamlit`` with per-rerun accounting on the server side, for bench_app_load.py.

Run exactly like ``python -m streamlit run app.py ...``; set ``BENCH_RERUN_LOG`` to a file. For
every script run of every browser session one JSON line is appended to it:

    {"client": id, "page": url path, "fragment": bool, "script_s": seconds, "bytes": n, "messages": n,
     "t": epoch seconds at the end, "status": script_finished code}

script_s is the run's time in its script thread, from the ScriptRunner's "script started" event to
its "stopped" event (a fragment's rerun included); bytes is the size of every serialized message of
that run (before websocket compression, the app's payload), counted as the server writes them to
the session's websocket from ``new_session`` to ``script_finished``. (Timing the messages instead
says little under load: the event loop then flushes a whole run's messages at once.)
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

from streamlit.runtime import app_session
from streamlit.web import cli
from streamlit.web.server.starlette import starlette_websocket

_LOG = open(os.environ["BENCH_RERUN_LOG"], "a", buffering=1, encoding="utf-8")
_LOCK = threading.Lock()
_RUNS: dict[int, dict] = {}
_ORIGINAL = starlette_websocket.StarletteSessionClient.write_forward_msg
_ORIGINAL_EVENT = app_session.AppSession._on_scriptrunner_event
_SCRIPT_TIMES: dict[str, list[float]] = {}  # script_run_id -> [started, stopped] (perf_counter)


def _on_scriptrunner_event(self, sender, event, *args, **kwargs):
    """Record when each run starts and stops, in its script thread."""
    descriptor = kwargs.get("run_descriptor")
    if descriptor is not None:
        now = time.perf_counter()
        name = getattr(event, "name", str(event))
        with _LOCK:
            if name == "SCRIPT_STARTED":
                _SCRIPT_TIMES[descriptor.script_run_id] = [now, float("nan")]
            elif "STOPPED" in name and descriptor.script_run_id in _SCRIPT_TIMES:
                _SCRIPT_TIMES[descriptor.script_run_id][1] = now
    return _ORIGINAL_EVENT(self, sender, event, *args, **kwargs)


def _page_of(new_session) -> str:
    for page in new_session.app_pages:
        if page.page_script_hash == new_session.page_script_hash:
            return page.url_pathname or "/"
    return "?"


def _write_forward_msg(self, msg) -> None:
    kind = msg.WhichOneof("type")
    size = msg.ByteSize()
    now = time.perf_counter()
    with _LOCK:
        if kind == "new_session":
            fragments = list(getattr(msg.new_session, "fragment_ids_this_run", []) or [])
            _RUNS[id(self)] = {"client": id(self), "page": _page_of(msg.new_session), "fragment": bool(fragments),
                               "start": now, "bytes": 0, "messages": 0}
        run = _RUNS.get(id(self))
        if run is not None:
            run["bytes"] += size
            run["messages"] += 1
            if kind == "script_finished":
                del _RUNS[id(self)]
                run.pop("start")
                started, stopped = _SCRIPT_TIMES.pop(msg.metadata.run.script_run_id, [float("nan")] * 2)
                run.update(script_s=stopped - started, t=time.time(), status=int(msg.script_finished),
                           fragment=bool(msg.metadata.run.fragment_ids))
                _LOG.write(json.dumps(run) + "\n")
    return _ORIGINAL(self, msg)


starlette_websocket.StarletteSessionClient.write_forward_msg = _write_forward_msg
app_session.AppSession._on_scriptrunner_event = _on_scriptrunner_event

if __name__ == "__main__":
    sys.argv[0] = "streamlit"
    sys.exit(cli.main())
