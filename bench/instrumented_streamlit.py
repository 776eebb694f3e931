"""``streamlit`` with per-rerun accounting on the server side, for bench_app_load.py.

Run exactly like ``python -m streamlit run app.py ...``; set ``BENCH_RERUN_LOG`` to a file. For
every script run of every browser session one JSON line is appended to it:

    {"client": id, "page": url path, "fragment": bool, "script_s": seconds, "bytes": n, "messages": n,
     "t": epoch seconds at the end, "status": script_finished code}

script_s runs from the run's first message (``new_session``, sent when the script starts) to its
``script_finished`` message, as the server writes them to the session's websocket; bytes is the
size of every serialized message of that run (before websocket compression, the app's payload).
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

from streamlit.web import cli
from streamlit.web.server.starlette import starlette_websocket

_LOG = open(os.environ["BENCH_RERUN_LOG"], "a", buffering=1, encoding="utf-8")
_LOCK = threading.Lock()
_RUNS: dict[int, dict] = {}
_ORIGINAL = starlette_websocket.StarletteSessionClient.write_forward_msg


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
                start = run.pop("start")
                run.update(script_s=now - start, t=time.time(), status=int(msg.script_finished))
                _LOG.write(json.dumps(run) + "\n")
    return _ORIGINAL(self, msg)


starlette_websocket.StarletteSessionClient.write_forward_msg = _write_forward_msg

if __name__ == "__main__":
    sys.argv[0] = "streamlit"
    sys.exit(cli.main())
