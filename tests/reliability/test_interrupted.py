"""A run writer killed with SIGKILL at any moment never leaves a run listed as complete
unless every one of its files is complete and readable."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from encoding_core.common.errors import InputError
from encoding_core.experiment.runstore import RunStore

ROOT = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from encoding_core.config import ExperimentConfig
    from encoding_core.experiment.runstore import RunStore

    store = RunStore(sys.argv[1])
    rng = np.random.default_rng(int(sys.argv[2]))
    for k in range(50):
        writer = store.create(ExperimentConfig(name=f"run{k}"), {"layers": [0, 1, 2]})
        for layer in range(3):
            print("writing", writer.run_id, layer, flush=True)
            r = rng.standard_normal(150_000).astype(np.float32)
            writer.write_layer(layer, {"median_score": float(np.median(r))},
                               {"correlations": r, "p_values": rng.uniform(size=r.size)})
        print("finishing", writer.run_id, flush=True)
        writer.finish({"layers": {}, "best_layer": None}, {"total": 1.0})
        print("complete", writer.run_id, flush=True)
""")


@pytest.mark.parametrize("kill_after", [("writing", 1), ("writing", 5), ("finishing", 2), ("complete", 1)])
def test_sigkill_during_writing_leaves_no_false_complete_run(tmp_path, kill_after):
    marker, count = kill_after
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(count)], stdout=subprocess.PIPE,
                             text=True, env=env)
    seen, last_started = 0, None
    for line in child.stdout:
        word, run_id = line.split()[:2]
        if word == "writing":
            last_started = run_id
        if word == marker:
            seen += 1
            if seen == count:
                child.send_signal(signal.SIGKILL)
                break
    child.wait(timeout=30)
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    store = RunStore(tmp_path)
    infos = store.list()
    assert infos, "the child created at least one run"
    for info in infos:
        if info.status == "complete":
            run = store.load(info.run_id)
            assert run.layers == [0, 1, 2]
            for layer in run.layers:
                arrays = run.arrays(layer)
                assert arrays["correlations"].shape == (150_000,)
                assert run.metrics(layer)["median_score"] == pytest.approx(float(np.median(arrays["correlations"])))
        else:
            assert info.status == "incomplete"
            with pytest.raises(InputError, match="incomplete"):
                store.load(info.run_id)
    statuses = {i.run_id: i.status for i in infos}
    if marker == "writing":
        assert statuses[last_started] == "incomplete"
    if marker == "complete":
        assert statuses[last_started] == "complete"
