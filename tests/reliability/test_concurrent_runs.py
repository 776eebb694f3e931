"""Two experiments running at the same time into one results folder get separate, complete runs."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from encoding_core.experiment.runstore import RunStore

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"

EXPERIMENT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from pipeline_synthetic import make_planted, planted_config
    from encoding_core.experiment.pipeline import run_experiment

    seed = int(sys.argv[2])
    planted = make_planted(seed=seed)
    config = planted_config(Path(sys.argv[1]))
    config.name = f"seed{seed}"
    print(run_experiment(config, assembly=planted.assembly, feature_source=planted.source))
""")


def test_two_concurrent_experiments_write_two_complete_runs(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]))
    procs = [subprocess.Popen([sys.executable, "-c", EXPERIMENT, str(tmp_path), str(seed)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for seed in (11, 12)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    run_ids = [out.strip().splitlines()[-1] for out, _ in outputs]
    assert len(set(run_ids)) == 2
    store = RunStore(tmp_path / "results")
    assert sorted(i.run_id for i in store.list() if i.status == "complete") == sorted(run_ids)
    for seed, run_id in zip((11, 12), run_ids):
        run = store.load(run_id)
        assert run.config.name == f"seed{seed}" and run.layers == [0, 1, 2]
        assert run.summary["best_layer"] == 1
        assert np.median(run.arrays(1)["correlations"][:20]) > 0.5
    # the two runs hold different data (each process wrote its own folder)
    a, b = (store.load(r).arrays(1)["correlations"] for r in run_ids)
    assert not np.allclose(a, b)
