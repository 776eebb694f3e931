"""Server-process concerns: the libraries' long-lived objects are kept out of Streamlit's garbage
collection after every run; the figure warm-up starts once."""
from __future__ import annotations

import gc
import importlib
import sys
import threading
import weakref

from app_helpers import new_app, open_page

from encoding_core import viz
from pages import _common as common


class _Node:
    pass


def test_freeze_collects_garbage_then_hides_the_live_objects_from_later_collections(monkeypatch):
    monkeypatch.setattr(common, "_modules_when_frozen", -1)  # as if modules were imported since the last freeze
    cycle = _Node()
    cycle.itself = cycle
    dead = weakref.ref(cycle)
    del cycle
    gc.collect()
    tracked_before = len(gc.get_objects())

    assert common.freeze_long_lived_objects()

    assert dead() is None  # collected first: garbage is not frozen
    assert gc.get_freeze_count() >= 0.95 * tracked_before
    assert len(gc.get_objects()) < 0.01 * tracked_before  # what a post-run gc.collect(2) still walks


def test_freeze_runs_again_only_after_new_imports(monkeypatch, tmp_path):
    monkeypatch.setattr(common, "_modules_when_frozen", -1)
    assert common.freeze_long_lived_objects()
    frozen = gc.get_freeze_count()
    assert not common.freeze_long_lived_objects()
    assert gc.get_freeze_count() == frozen

    (tmp_path / "freshly_imported_module.py").write_text("TABLE = {n: [n] for n in range(1000)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("freshly_imported_module")
    try:
        assert common.freeze_long_lived_objects()
        assert gc.get_freeze_count() >= frozen + 1000  # the new module's lists are frozen too
    finally:
        del sys.modules["freshly_imported_module"], module


def test_the_app_freezes_on_its_runs(studio, monkeypatch):
    monkeypatch.setattr(common, "_modules_when_frozen", -1)
    gc.unfreeze()
    at = new_app()
    at.run()
    assert not at.exception
    assert gc.get_freeze_count() > 10_000  # the libraries' objects, frozen by app.py


def test_opening_a_page_url_first_starts_one_warm_up(studio, monkeypatch):
    calls = []
    monkeypatch.setattr(viz, "warm_up", lambda: calls.append(threading.current_thread().name))
    common.start_figure_warm_up.clear()
    at = new_app()
    at.run()
    open_page(at, "results")  # the page file runs first, then app.py again as a second module
    for thread in threading.enumerate():
        if thread.name == "fsaverage-warm-up":
            thread.join(timeout=30)
    assert calls == ["fsaverage-warm-up"]
