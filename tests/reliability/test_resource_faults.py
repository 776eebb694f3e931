"""Resource faults: a read-only or full results / cache folder.

Every write in the core must fail with a StorageError that names the folder and says what
to do; the CLI prints one ``error:`` line and exits 2; the app shows a short message; and
nothing written earlier is lost (an earlier complete run loads bit-identically).

"Full" is a real tiny tmpfs (``mount -t tmpfs -o size=256k``), "read-only" a tmpfs remounted
``ro`` (root ignores file permissions, so chmod would not do). Where mounting is not
permitted, the in-process tests fall back to monkeypatching the file-system calls the core
uses to raise ``OSError(EROFS / ENOSPC)`` (and say so in their output); the subprocess
tests (CLI) are then skipped with that reason.
"""
from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from encoding_core.assembly import Assembly, Story
from encoding_core.assembly.assembly_loader import load_assembly, save_assembly
from encoding_core.config import ExperimentConfig
from encoding_core.common.errors import StorageError
from encoding_core.experiment.runstore import COMPLETE, RunStore

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

READ_ONLY_HINT = "not writable"
FULL_HINT = "disk is full"


# --------------------------------------------------------------------------- small file systems
def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), capture_output=True, text=True)


def _probe_mount() -> str:
    """'' when tmpfs mounts and ro remounts work here, else the reason they do not."""
    if os.environ.get("ENCODING_TEST_NO_MOUNT"):
        return "mounting disabled by ENCODING_TEST_NO_MOUNT"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not root: cannot mount a tmpfs"
    probe = Path(tempfile.mkdtemp(prefix="mount-probe-"))
    try:
        mounted = _run("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe))
        if mounted.returncode != 0:
            return f"mount refused: {mounted.stderr.strip()}"
        remount = _run("mount", "-o", "remount,ro", str(probe))
        _run("umount", "-l", str(probe))
        return "" if remount.returncode == 0 else f"ro remount refused: {remount.stderr.strip()}"
    finally:
        probe.rmdir()


MOUNT_PROBLEM = _probe_mount()
CAN_MOUNT = not MOUNT_PROBLEM
needs_mount = pytest.mark.skipif(not CAN_MOUNT, reason=f"needs a real tmpfs for a subprocess: {MOUNT_PROBLEM}")


class FaultyFolders:
    """Folders on their own tiny tmpfs (or, without mount rights, monkeypatched to fail)."""

    def __init__(self, base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.base = base
        self.monkeypatch = monkeypatch
        self.mounted: list[Path] = []
        self.patched: dict[Path, int] = {}  # folder -> errno raised on writes (fallback only)

    def small(self, name: str, size: str = "256k") -> Path:
        """An empty writable folder on a fresh tmpfs of ``size``."""
        folder = self.base / name
        folder.mkdir(parents=True)
        if CAN_MOUNT:
            result = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
            assert result.returncode == 0, result.stderr
            self.mounted.append(folder)
        return folder

    def make_read_only(self, folder: Path) -> None:
        if CAN_MOUNT:
            result = _run("mount", "-o", "remount,ro", str(folder))
            assert result.returncode == 0, result.stderr
        else:
            self._patch(folder, errno.EROFS)

    def fill(self, folder: Path, leave_bytes: int = 0) -> None:
        """Fill the folder's file system (keeping ``leave_bytes`` free)."""
        if not CAN_MOUNT:
            self._patch(folder, errno.ENOSPC)
            return
        fd = os.open(folder / ".filler", os.O_WRONLY | os.O_CREAT, 0o600)
        block = b"\xff" * 4096
        try:
            while True:
                os.write(fd, block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        finally:
            os.close(fd)
        if leave_bytes:
            size = (folder / ".filler").stat().st_size
            os.truncate(folder / ".filler", max(0, size - leave_bytes))

    # -- fallback: make the calls the core writes with fail for paths in patched folders
    def _patch(self, folder: Path, code: int) -> None:
        print(f"NOTE: no mount rights ({MOUNT_PROBLEM}); simulating errno {errno.errorcode[code]} for {folder} "
              f"by monkeypatching os/tempfile calls")
        if not self.patched:
            self._install()
        self.patched[folder.resolve()] = code

    def _failing(self, path) -> None:
        resolved = Path(os.path.abspath(path))
        for folder, code in self.patched.items():
            if resolved == folder or folder in resolved.parents:
                raise OSError(code, os.strerror(code), str(path))

    def _install(self) -> None:
        mp = self.monkeypatch
        real_mkstemp, real_mkdtemp, real_mkdir = tempfile.mkstemp, tempfile.mkdtemp, os.mkdir
        real_replace, real_rename, real_open = os.replace, os.rename, os.open

        def mkstemp(suffix=None, prefix=None, dir=None, text=False):
            self._failing(Path(dir or ".") / "x")
            return real_mkstemp(suffix, prefix, dir, text)

        def mkdtemp(suffix=None, prefix=None, dir=None):
            self._failing(Path(dir or ".") / "x")
            return real_mkdtemp(suffix, prefix, dir)

        def mkdir(path, *args, **kwargs):
            if not os.path.isdir(path):
                self._failing(path)
            return real_mkdir(path, *args, **kwargs)

        def replace(src, dst, *args, **kwargs):
            self._failing(dst)
            return real_replace(src, dst, *args, **kwargs)

        def rename(src, dst, *args, **kwargs):
            self._failing(dst)
            return real_rename(src, dst, *args, **kwargs)

        def open_(path, flags, *args, **kwargs):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                self._failing(path)
            return real_open(path, flags, *args, **kwargs)

        mp.setattr(tempfile, "mkstemp", mkstemp)
        mp.setattr(tempfile, "mkdtemp", mkdtemp)
        mp.setattr(os, "mkdir", mkdir)
        mp.setattr(os, "replace", replace)
        mp.setattr(os, "rename", rename)
        mp.setattr(os, "open", open_)

    def cleanup(self) -> None:
        for folder in reversed(self.mounted):
            _run("umount", "-l", str(folder))
        self.mounted.clear()


@pytest.fixture
def faults(tmp_path, monkeypatch):
    folders = FaultyFolders(tmp_path, monkeypatch)
    yield folders
    folders.cleanup()


# --------------------------------------------------------------------------- helpers
def tree_digest(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``folder`` (the 'nothing lost' fingerprint)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftover_temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".tmp-")]


def write_complete_run(results: Path, seed: int = 0, n_voxels: int = 50) -> tuple[str, dict[int, np.ndarray]]:
    """A small complete run; returns its id and the correlations written per layer."""
    gen = np.random.default_rng(seed)
    writer = RunStore(results).create(ExperimentConfig(name=f"earlier{seed}"), {"layers": [0, 1]})
    written = {}
    for layer in (0, 1):
        r = gen.uniform(-0.2, 0.6, n_voxels).astype(np.float32)
        writer.write_layer(layer, {"median_score": float(np.median(r))}, {"correlations": r})
        written[layer] = r
    writer.finish({"layers": {}, "best_layer": 1}, {"total": 1.0})
    return writer.run_id, written


def assert_run_intact(results: Path, run_id: str, written: dict[int, np.ndarray], digest: dict[str, str]) -> None:
    store = RunStore(results)
    assert store.status_of(run_id) == COMPLETE
    run = store.load(run_id)
    for layer, r in written.items():
        got = run.arrays(layer)["correlations"]
        assert got.dtype == r.dtype and got.tobytes() == r.tobytes()
    assert tree_digest(results / run_id) == digest


def assert_storage_message(exc: StorageError, folder: Path, hint: str) -> None:
    message = str(exc)
    assert str(folder) in message, message
    assert hint in message, message
    assert "choose" in message or "free some space" in message, message  # says what to do


def small_assembly(n_trs: int = 40, n_voxels: int = 300, seed: int = 0) -> Assembly:
    gen = np.random.default_rng(seed)
    stories = [Story(name=f"story{i}", brain_data=gen.standard_normal((n_trs, n_voxels)).astype(np.float32),
                     tr_times=np.arange(n_trs) * 2.0) for i in range(3)]
    return Assembly(subject="s1", tr=2.0, stories_list=stories)


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory):
    """A real tiny experiment (assembly.h5, wavs, random 2-layer Whisper) and its config."""
    from tiny_experiment import make_tiny_experiment

    root = tmp_path_factory.mktemp("tiny")
    config = make_tiny_experiment(root, n_stories=3, n_trs=16)
    return root, config


# --------------------------------------------------------------------------- run store
def test_runstore_read_only_results_dir(faults):
    results = faults.small("results")
    run_id, written = write_complete_run(results)
    digest = tree_digest(results / run_id)
    faults.make_read_only(results)

    with pytest.raises(StorageError) as caught:
        RunStore(results).create(ExperimentConfig(name="new"))
    assert_storage_message(caught.value, results, READ_ONLY_HINT)
    with pytest.raises(StorageError) as caught:  # a results folder that does not exist yet, on a ro disk
        RunStore(results / "nested" / "results").create(ExperimentConfig(name="new"))
    assert_storage_message(caught.value, results / "nested", READ_ONLY_HINT)
    with pytest.raises(StorageError) as caught:
        RunStore(results).delete(run_id)
    assert "not writable" in str(caught.value)

    assert [info.run_id for info in RunStore(results).list()] == [run_id]  # reading still works
    assert_run_intact(results, run_id, written, digest)


def test_runstore_full_disk_while_writing_a_layer(faults):
    results = faults.small("results", size="256k")
    run_id, written = write_complete_run(results)
    digest = tree_digest(results / run_id)

    writer = RunStore(results).create(ExperimentConfig(name="too-big"), {"layers": [0]})
    faults.fill(results, leave_bytes=16 * 1024)
    noise = np.random.default_rng(1).standard_normal(100_000).astype(np.float32)  # ~400 kB, incompressible
    with pytest.raises(StorageError) as caught:
        writer.write_layer(0, {"median_score": 0.0}, {"correlations": noise})
    assert_storage_message(caught.value, results / writer.run_id / "layers" / "0", FULL_HINT)
    writer.fail(caught.value)  # never raises, even on a full disk

    store = RunStore(results)
    statuses = {info.run_id: info.status for info in store.list()}
    assert statuses[run_id] == COMPLETE and statuses[writer.run_id] != COMPLETE
    assert leftover_temp_files(results) == []
    assert_run_intact(results, run_id, written, digest)
    if CAN_MOUNT:  # (the monkeypatched fallback cannot tell a rename that frees space from a write)
        # the failed run can be deleted to free space, even with the disk full
        store.delete(writer.run_id)
        assert [info.run_id for info in store.list()] == [run_id]


def test_check_writable_refuses_read_only_and_full_folders(faults):
    from encoding_core.common.storage import check_writable

    read_only = faults.small("ro")
    faults.make_read_only(read_only)
    for folder in (read_only, read_only / "new" / "results"):
        with pytest.raises(StorageError) as caught:
            check_writable(folder)
        assert READ_ONLY_HINT in str(caught.value) and str(read_only) in str(caught.value)
    full = faults.small("full", size="64k")
    assert check_writable(full) == full and list(full.iterdir()) == []  # leaves nothing behind
    faults.fill(full)
    with pytest.raises(StorageError) as caught:
        check_writable(full)
    assert_storage_message(caught.value, full, FULL_HINT)
    assert [p.name for p in full.iterdir()] == ([".filler"] if CAN_MOUNT else [])


def test_pipeline_into_a_full_results_dir_fails_cleanly(faults, tmp_path):
    from pipeline_synthetic import make_planted, planted_config

    from encoding_core.experiment.pipeline import run_experiment

    results = faults.small("results", size="256k")
    run_id, written = write_complete_run(results)
    digest = tree_digest(results / run_id)
    faults.fill(results, leave_bytes=8 * 1024)
    planted = make_planted(n_stories=3, n_trs=60, n_voxels=400, seed=2)
    config = planted_config(tmp_path)
    config.results_dir = str(results)
    config.stats.n_permutations = 10
    with pytest.raises(StorageError) as caught:
        run_experiment(config, assembly=planted.assembly, feature_source=planted.source)
    assert str(results) in str(caught.value) and FULL_HINT in str(caught.value)
    store = RunStore(results)
    assert [info.run_id for info in store.list() if info.is_complete] == [run_id]
    assert leftover_temp_files(results) == []
    assert_run_intact(results, run_id, written, digest)


# --------------------------------------------------------------------------- feature cache
def test_feature_cache_read_only_and_full(faults, tiny_experiment):
    from encoding_core.features import SpeechFeatureExtractor

    root, config = tiny_experiment
    audio = root / "audio" / "story0.wav"
    read_only = faults.small("cache_ro")
    faults.make_read_only(read_only)
    with pytest.raises(StorageError) as caught:
        SpeechFeatureExtractor(config.features, cache_dir=read_only).extract_story(audio)
    assert_storage_message(caught.value, read_only, READ_ONLY_HINT)

    full = faults.small("cache_full", size="256k")
    first = SpeechFeatureExtractor(config.features, cache_dir=full).extract_story(audio)  # an earlier entry
    reference = first.layer(1).copy()
    entry_digest = tree_digest(full / "speech_features")
    faults.fill(full)
    other = root / "audio" / "story1.wav"
    with pytest.raises(StorageError) as caught:
        SpeechFeatureExtractor(config.features, cache_dir=full).extract_story(other)
    assert FULL_HINT in str(caught.value) and str(full) in str(caught.value)
    assert leftover_temp_files(full) == []
    again = SpeechFeatureExtractor(config.features, cache_dir=full).extract_story(audio)
    assert again.from_cache and again.layer(1).tobytes() == reference.tobytes()
    entries = {k: v for k, v in tree_digest(full / "speech_features").items() if not k.startswith(".locks")}
    assert entries == {k: v for k, v in entry_digest.items() if not k.startswith(".locks")}

    # a shared cache made read-only (e.g. prepared by a teacher): cached stories are still read,
    # a story that would need a new entry is refused with a StorageError naming the folder
    faults.make_read_only(full)
    shared = SpeechFeatureExtractor(config.features, cache_dir=full).extract_story(audio)
    assert shared.from_cache and shared.layer(1).tobytes() == reference.tobytes()
    with pytest.raises(StorageError) as caught:
        SpeechFeatureExtractor(config.features, cache_dir=full).extract_story(other)
    assert str(full) in str(caught.value)


# --------------------------------------------------------------------------- assemblies and configs
def test_save_assembly_read_only_and_full_keep_the_old_file(faults):
    read_only = faults.small("ro")
    faults.make_read_only(read_only)
    with pytest.raises(StorageError) as caught:
        save_assembly(small_assembly(), read_only / "a.h5")
    assert_storage_message(caught.value, read_only / "a.h5", READ_ONLY_HINT)
    assert not (read_only / "a.h5").exists()

    full = faults.small("full", size="256k")
    old = small_assembly(n_voxels=20, seed=1)
    target = save_assembly(old, full / "a.h5")
    before = target.read_bytes()
    faults.fill(full)
    with pytest.raises(StorageError) as caught:  # a bigger assembly over the old file
        save_assembly(small_assembly(n_voxels=2000, seed=2), target)
    assert_storage_message(caught.value, target, FULL_HINT)
    assert target.read_bytes() == before and leftover_temp_files(full) == []
    reloaded = load_assembly(target)
    assert reloaded.story("story0").brain_data.tobytes() == old.story("story0").brain_data.tobytes()


def test_config_save_read_only_and_full_keep_the_old_file(faults):
    folder = faults.small("configs", size="256k")
    target = ExperimentConfig(name="old").save(folder / "experiment.toml")
    before = target.read_bytes()
    faults.fill(folder)
    with pytest.raises(StorageError) as caught:
        ExperimentConfig(name="new-" + "x" * 5000).save(target)
    assert_storage_message(caught.value, target, FULL_HINT)
    assert target.read_bytes() == before
    faults.make_read_only(folder)
    with pytest.raises(StorageError) as caught:
        ExperimentConfig(name="new").save(folder / "other.toml")
    assert_storage_message(caught.value, folder / "other.toml", READ_ONLY_HINT)
    assert ExperimentConfig.load(target).name == "old" and leftover_temp_files(folder) == []


# --------------------------------------------------------------------------- command line
@needs_mount
def test_cli_sweep_read_only_and_full_results_dir(faults, tiny_experiment):
    root, config = tiny_experiment
    config_path = root / "config.toml"
    config.save(config_path)
    read_only = faults.small("cli_ro")
    faults.make_read_only(read_only)
    full = faults.small("cli_full", size="256k")
    run_id, written = write_complete_run(full)
    digest = tree_digest(full / run_id)
    faults.fill(full, leave_bytes=4 * 1024)

    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    processes = {name: subprocess.Popen([sys.executable, "-m", "encoding_core", "sweep", str(config_path),
                                         "--results-dir", str(folder), "--quiet"],
                                        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for name, folder in (("ro", read_only), ("full", full))}
    outputs = {name: p.communicate(timeout=240) for name, p in processes.items()}
    print(f"two CLI runs took {time.perf_counter() - started:.1f} s")
    for name, folder, hint in (("ro", read_only, READ_ONLY_HINT), ("full", full, FULL_HINT)):
        process, (stdout, stderr) = processes[name], outputs[name]
        assert process.returncode == 2, (name, stdout, stderr)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1, (name, stderr)  # one line, no traceback, no progress bars
        assert lines[0].startswith("error: Cannot write ") and str(folder) in lines[0] and hint in lines[0], lines
    assert_run_intact(full, run_id, written, digest)
    assert [info.run_id for info in RunStore(full).list() if info.is_complete] == [run_id]


# --------------------------------------------------------------------------- app
def stop_jobs_started_under(jobs_dir: Path) -> None:
    """Stop any worker a failing test started (by the pid its job record names)."""
    import json
    import signal

    for record in jobs_dir.glob("*/job.json"):
        pid = json.loads(record.read_text()).get("pid")
        if pid:
            try:
                os.killpg(int(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _app_session(tmp_path: Path, monkeypatch, results: Path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENCODING_STUDIO_HOME", str(tmp_path))
    monkeypatch.setenv("ENCODING_STUDIO_RESULTS", str(results))
    monkeypatch.setenv("ENCODING_STUDIO_DATA_ROOTS", str(tmp_path))
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)


def test_app_with_read_only_results_dir(faults, tmp_path, monkeypatch, tiny_experiment):
    from encoding_core.assembly.audio import map_audio

    root, tiny_config = tiny_experiment
    results = faults.small("results")
    run_id, written = write_complete_run(results, n_voxels=60)
    digest = tree_digest(results / run_id)
    faults.make_read_only(results)
    at = _app_session(tmp_path, monkeypatch, results)
    at.run()
    assert not at.exception

    # Results: the earlier run is listed and drawn from the read-only folder
    at.switch_page("pages/results.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.selectbox(key="run_pick").value == run_id
    best_median = max(float(np.median(r)) for r in written.values())
    assert at.metric[0].value == f"{best_median:.3f}"  # the layer with the best median r is shown first

    # Train: starting a job that would write into the read-only folder says so, briefly, and starts nothing
    session_config = ExperimentConfig.from_dict(tiny_config.to_dict())
    session_config.results_dir = str(results)
    at.session_state["experiment_config"] = session_config
    at.session_state["assembly_source"] = (tiny_config.assembly.path, "", ())
    assembly = load_assembly(tiny_config.assembly.path)
    at.session_state["audio_matches"] = map_audio(assembly, tiny_config.assembly.audio_dir)
    at.switch_page("pages/train.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    jobs_dir = tmp_path / ".encoding_studio" / "jobs"
    try:
        at.button(key="start_train").click().run()
    finally:
        stop_jobs_started_under(jobs_dir)
    assert not at.exception, [e.message for e in at.exception]
    errors = [str(e.value) for e in at.error]
    assert any(e.startswith("Starting the job failed: Cannot write") and str(results) in e and READ_ONLY_HINT in e
               for e in errors), errors
    assert all("Traceback" not in e and len(e) < 400 for e in errors), errors
    assert not jobs_dir.exists() or not any(jobs_dir.iterdir())
    assert_run_intact(results, run_id, written, digest)
