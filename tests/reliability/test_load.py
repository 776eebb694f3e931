"""Load: five browser tabs open the Results page at once while a real training job runs.

A shared teaching server: one student's job trains in the background (a real JobManager
worker on the tiny experiment) while five others look at an existing complete run in
Chromium tabs on one real ``streamlit run`` server. Every tab must render without an
exception and show the run, its best layer and the brain map (layer profile, interactive
surface, histogram), and the job must still finish with a complete run. Render times are
printed (the benchmark ``bench/bench_app_load.py`` reports them in detail).
"""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from encoding_core.experiment.runstore import RunStore

ROOT = Path(__file__).resolve().parents[2]
N_SESSIONS = 5

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_app_load", ROOT / "bench" / "bench_app_load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def test_five_sessions_render_results_while_a_job_trains(tmp_path, monkeypatch):
    bench = _bench_module()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENCODING_STUDIO_HOME", str(tmp_path))
    monkeypatch.setenv("ENCODING_STUDIO_DATA_ROOTS", str(tmp_path))
    results = tmp_path / "results"
    run_id = bench.make_surface_run(results, seed=4)
    expected = RunStore(results).load(run_id)
    best_layer = max(expected.layers, key=lambda layer: expected.metrics(layer)["median_score"])

    if not Path(bench.CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    server = bench.start_server(tmp_path, bench.free_port())
    manager = None
    try:
        manager, job_id = bench.start_training_job(tmp_path, tmp_path / ".encoding_studio" / "jobs")
        state_before = manager.status(job_id).state
        assert state_before in ("queued", "running")
        started = time.perf_counter()
        sessions = bench.render_in_browsers(f"http://127.0.0.1:{server.port}", N_SESSIONS)
        wall = time.perf_counter() - started
        state_after = manager.status(job_id).state
        print(f"{N_SESSIONS} sessions in {wall:.1f} s; Results render per session: "
              + ", ".join(f"{s.results_s:.2f} s" for s in sessions) + f"; job {state_before} -> {state_after}")

        assert len(sessions) == N_SESSIONS
        for session in sessions:
            assert session.exceptions == [], (session.session, session.exceptions)
            assert session.errors == [], (session.session, session.errors)
            assert run_id in session.run_shown, (session.session, session.run_shown)
            assert set(session.chart_keys) == {"surface_map", "histogram", "layer_profile"}, session.chart_keys
            assert session.headline == f"{expected.metrics(best_layer)['median_score']:.3f}"  # best layer first
        final = manager.wait(job_id, timeout_s=300)
    finally:
        server.terminate()
        server.wait(timeout=30)
        if manager is not None and not manager.status(job_id).is_final:
            manager.cancel(job_id)
            manager.wait(job_id, timeout_s=60)
    # the job was not disturbed: it finished with a complete, loadable run of its own
    assert final.state == "done", (final.error, manager.log_tail(job_id))
    trained = RunStore(tmp_path / "tiny" / "results").load(final.run_id)
    assert trained.layers and np.isfinite(trained.arrays(trained.layers[0])["correlations"]).all()
    # and the run everyone looked at is unchanged
    again = RunStore(results).load(run_id)
    for layer in expected.layers:
        assert again.arrays(layer)["correlations"].tobytes() == expected.arrays(layer)["correlations"].tobytes()
