"""Command line: train/sweep write runs, errors are one line with exit code 2, export runs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from encoding_core.cli import main
from encoding_core.config import ExperimentConfig
from encoding_core.experiment.export import experiment_to_script
from encoding_core.experiment.runstore import RunStore

from tiny_experiment import make_tiny_experiment, save_tiny_whisper

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    save_tiny_whisper(root / "model")
    config = make_tiny_experiment(root)
    path = root / "experiment.toml"
    config.save(path)
    return config, path


def test_train_one_layer_and_sweep_all_layers(tiny, capsys):
    config, path = tiny
    assert main(["train", str(path), "--layer", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    runs = RunStore(config.results_dir).list()
    assert len(runs) == 1 and runs[0].status == "complete" and runs[0].run_id in out
    assert RunStore(config.results_dir).load(runs[0].run_id).layers == [1]
    assert "median r" in out and "SIMULATED" in out

    assert main(["sweep", str(path), "--quiet"]) == 0
    newest = RunStore(config.results_dir).list()[0]
    assert RunStore(config.results_dir).load(newest.run_id).layers == [0, 1]
    assert main(["runs", "--results-dir", config.results_dir]) == 0
    listing = capsys.readouterr().out
    assert newest.run_id in listing and "complete" in listing


def test_train_needs_a_single_layer(tiny, capsys):
    _, path = tiny
    assert main(["train", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--layer" in err and len(err.splitlines()) == 1


def test_user_errors_exit_2_with_one_line_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[ridge]\nmode = "sideways"\n')
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for args in (["train", str(tmp_path / "missing.toml")], ["sweep", str(bad)]):
        result = subprocess.run([sys.executable, "-m", "encoding_core", *args], capture_output=True, text=True,
                                env=env, cwd=tmp_path, timeout=60)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
        assert "Traceback" not in result.stderr
    assert "ridge.mode" in lines[0]


def test_config_template_round_trips(capsys):
    assert main(["config-template"]) == 0
    text = capsys.readouterr().out
    assert ExperimentConfig.from_toml(text) == ExperimentConfig()


def test_exported_script_runs_and_writes_a_run(tiny, tmp_path, monkeypatch, capsys):
    config, path = tiny
    config = ExperimentConfig.load(path)
    config.layers = [0]
    config.results_dir = str(tmp_path / "exported_results")
    config.name = 'quote"s and {braces}'
    script = experiment_to_script(config)
    assert "AbstractTrainer(" in script and "FeatureExtractorFactory.create_extractor(" in script
    monkeypatch.chdir(tmp_path)
    exec(compile(script, "exported.py", "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    runs = RunStore(config.results_dir).list()
    assert len(runs) == 1 and runs[0].status == "complete" and runs[0].run_id in out
    run = RunStore(config.results_dir).load(runs[0].run_id)
    assert run.layers == [0] and run.config.name == 'quote"s and {braces}-layer0'
    assert run.config.alignment == config.alignment and run.config.ridge.alphas == config.ridge.alphas
