"""Background jobs: an experiment runs in its own process; everything about it lives on disk.

A job folder ``<root>/<job_id>/`` holds::

    config.toml     the experiment (results_dir/cache_dir made absolute)
    job.json        written by the manager: id, name, created, resume_of, pid, pid start time
    state.json      written by the worker: queued/running/done/failed/cancelled, run_id, error
    progress.json   written by the worker (throttled): current stage, done/total, eta, all stages
    cancel          present once cancellation was requested
    log.txt         the worker's stdout and stderr

The worker is ``python -m encoding_core job-run <job_dir>`` started in a new session (its
own process group), so it survives an app rerun or restart and can be stopped as a group.
A job whose state says running but whose process is gone (killed, machine restarted) is
reported ``interrupted``; :meth:`JobManager.resume` starts it again with the same config
(features already extracted come from the feature cache).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from encoding_core.config import ExperimentConfig
from encoding_core.common.errors import EncodingCoreError, InputError, JobCancelled
from encoding_core.common.progress import WorkRates, remaining_seconds
from encoding_core.experiment.runstore import RUN_ID_PATTERN, new_run_id, process_alive, process_start_ticks
from encoding_core.common.storage import atomic_write_text, check_writable, create_unique_dir

logger = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED = (
    "queued", "running", "done", "failed", "cancelled", "interrupted")
FINAL_STATES = (DONE, FAILED, CANCELLED, INTERRUPTED)
PACKAGE_PARENT = Path(__file__).resolve().parents[2]


def _now_iso() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str))


@dataclass
class JobStatus:
    """A job as the app shows it, read from its files.

    ``stages`` maps stage -> {"done", "total"}. ``eta_s``: seconds left of the whole job from the
    measured speed of each stage of this job (see :func:`~encoding_core.common.progress.remaining_seconds`),
    counted down since the progress file was written; None when nothing is measured yet or the
    job is not active. ``eta_unmeasured``: stages with work left whose speed is not measured yet
    (``eta_s`` is then a lower bound).
    """

    job_id: str
    state: str
    stage: str = ""
    done: int = 0
    total: int = 0
    message: str = ""
    eta_s: Optional[float] = None
    stages: dict[str, dict[str, int]] = field(default_factory=dict)
    run_id: Optional[str] = None
    error: Optional[str] = None
    started: Optional[str] = None
    finished: Optional[str] = None
    config_name: str = ""
    resume_of: Optional[str] = None
    pid: Optional[int] = None
    scheduler: Optional[str] = None
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    eta_unmeasured: tuple[str, ...] = ()
    rates: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def is_active(self) -> bool:
        return self.state in (QUEUED, RUNNING)


class FileProgress:
    """A progress callback writing ``progress.json`` atomically, at most 1/min_interval_s times a second.

    A stage change and the last unit of a stage are always written.
    """

    def __init__(self, path: Union[str, Path], min_interval_s: float = 0.25) -> None:
        self.path = Path(path)
        self.min_interval_s = float(min_interval_s)
        self.stages: dict[str, dict[str, int]] = {}
        self.rates = WorkRates()
        self._last_write = 0.0
        self._last_stage = ""
        self._record: dict[str, Any] = {}
        self.workers: dict[str, dict[str, Any]] = {}

    def __call__(self, stage: str, done: int, total: int, message: str = "") -> None:
        self.stages[stage] = {"done": int(done), "total": int(total)}
        self.rates.update(stage, done, total)
        self._record = {"stage": stage, "done": int(done), "total": int(total), "message": message,
                        "stages": self.stages, "rates": self.rates.record(), "updated": _now_iso(),
                        "updated_epoch": time.time(), "workers": self.workers}
        now = time.monotonic()
        if stage != self._last_stage or done >= total or now - self._last_write >= self.min_interval_s:
            self.flush()
            self._last_write, self._last_stage = now, stage

    def skipped(self, stage: str, units: int) -> None:
        """The next ``units`` of ``stage`` come for free (cached features): not counted as work."""
        self.rates.skipped(stage, units)

    def plan(self, stage: str, total: int) -> None:
        """Announce a later stage's units (the layers to fit) so the ETA says they are still to come."""
        self.rates.plan(stage, total)

    def flush(self) -> None:
        if self._record:
            _write_json(self.path, self._record)

    def set_workers(self, snapshot: dict[str, dict[str, Any]]) -> None:
        """Record per-worker progress of a Dask sweep (``encoding_core.experiment.distributed.WorkerTracker.snapshot``)."""
        self.workers = snapshot
        self._record = dict(self._record or {"stage": "", "done": 0, "total": 0, "message": ""},
                            workers=snapshot, updated=_now_iso())
        self.flush()


class FileCancelFlag:
    """A cancel flag (``is_set()``) that is a file: the app creates it, the worker checks it."""

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)

    def is_set(self) -> bool:
        return self.path.exists()

    def set(self) -> None:
        atomic_write_text(self.path, _now_iso())


class JobManager:
    """Start, watch, cancel and resume background experiment jobs under ``root``."""

    def __init__(self, root: Union[str, Path, None] = None, grace_s: float = 10.0) -> None:
        if root is None:
            from encoding_core.common.paths import studio_dirs

            root = studio_dirs().jobs
        self.root = Path(root).expanduser().absolute()
        self.grace_s = float(grace_s)
        self._processes: dict[str, subprocess.Popen] = {}

    # -- paths ----------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        """The folder of a job; the id is validated (no path tricks) and must exist."""
        if not isinstance(job_id, str) or not RUN_ID_PATTERN.fullmatch(job_id):
            raise InputError(f"{job_id!r} is not a job id (expected YYYYmmdd-HHMMSS-xxxxxx).")
        path = self.root / job_id
        if path.is_symlink() or not path.is_dir():
            raise InputError(f"There is no job {job_id} in {self.root}.")
        return path

    # -- starting -------------------------------------------------------------------
    def start(self, config: ExperimentConfig, resume_of: Optional[str] = None, scheduler: Optional[str] = None) -> str:
        """Save the config in a new job folder and start the worker process; return the job id.

        scheduler: run on a Dask cluster (``"tcp://HOST:8786"`` or ``"local:N"``), see
        :func:`encoding_core.experiment.distributed.run_sweep_distributed`; None runs in the job process.
        """
        if scheduler is not None:
            from encoding_core.experiment.distributed import parse_scheduler

            parse_scheduler(scheduler)  # a bad address fails here, not in the worker
        config = ExperimentConfig.from_dict(config.to_dict())  # a validated copy
        config.results_dir = str(Path(config.results_dir).expanduser().absolute())
        config.cache_dir = str(Path(config.cache_dir).expanduser().absolute())
        check_writable(config.results_dir)  # fail here, not minutes later in the worker (a cache may be read-only)
        job_id, path = create_unique_dir(self.root, new_run_id)
        config.save(path / "config.toml")
        record = {"job_id": job_id, "config_name": config.name, "created": _now_iso(), "resume_of": resume_of,
                  "cwd": os.getcwd(), "scheduler": scheduler}
        _write_json(path / "job.json", record)
        _write_json(path / "state.json", {"state": QUEUED})
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_PARENT), env.get("PYTHONPATH", "")]))
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            with open(path / "log.txt", "ab") as log:
                process = subprocess.Popen([sys.executable, "-m", "encoding_core", "job-run", str(path)],
                                           stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True, env=env, cwd=os.getcwd())
        except OSError as exc:
            _write_json(path / "state.json", {"state": FAILED, "error": f"Cannot start the worker: {exc}"})
            raise EncodingCoreError(f"Cannot start a background job ({exc}); check that {sys.executable} runs.") from None
        self._processes[job_id] = process
        record.update(pid=process.pid, pid_start=process_start_ticks(process.pid))
        _write_json(path / "job.json", record)
        logger.info("Started job %s (pid %d)", job_id, process.pid)
        return job_id

    def resume(self, job_id: str) -> str:
        """Start a new job with the config of ``job_id`` (which must have stopped); return its id."""
        status = self.status(job_id)
        if not status.is_final:
            raise InputError(f"Job {job_id} is still {status.state}; cancel it before resuming.")
        config = ExperimentConfig.load(self.job_dir(job_id) / "config.toml")
        scheduler = _read_json(self.job_dir(job_id) / "job.json").get("scheduler")
        return self.start(config, resume_of=job_id, scheduler=scheduler)

    def config(self, job_id: str) -> ExperimentConfig:
        """The experiment a job runs (its saved config.toml)."""
        return ExperimentConfig.load(self.job_dir(job_id) / "config.toml")

    # -- watching -------------------------------------------------------------------
    def _pid(self, job_id: str, path: Path) -> tuple[Optional[int], Optional[int]]:
        state = _read_json(path / "state.json")
        if state.get("pid"):
            return state.get("pid"), state.get("pid_start")
        job = _read_json(path / "job.json")
        return job.get("pid"), job.get("pid_start")

    def _alive(self, job_id: str, path: Path) -> bool:
        process = self._processes.get(job_id)
        if process is not None and process.poll() is not None:  # reaps our own finished child
            return False
        pid, start = self._pid(job_id, path)
        return process_alive(pid, start)

    def status(self, job_id: str) -> JobStatus:
        """The job's state and progress, from its files; running-but-dead jobs are ``interrupted``."""
        path = self.job_dir(job_id)
        job, state, progress = (_read_json(path / name) for name in ("job.json", "state.json", "progress.json"))
        current = state.get("state", QUEUED)
        alive = self._alive(job_id, path)
        if current in (QUEUED, RUNNING) and not alive:
            # re-read: the worker may have finished between the two reads
            state = _read_json(path / "state.json")
            current = state.get("state", QUEUED)
            if current in (QUEUED, RUNNING) and (job.get("pid") or state.get("pid")):
                current = INTERRUPTED
        if current in (QUEUED, RUNNING) and alive:
            self._enforce_cancel(job_id, path)
        pid, _ = self._pid(job_id, path)
        rates = progress.get("rates") or {}
        eta_s, unmeasured = None, ()
        if current in (QUEUED, RUNNING) and rates:
            since = time.time() - float(progress.get("updated_epoch") or time.time())
            remaining = remaining_seconds(rates, since_update_s=since)
            eta_s, unmeasured = remaining.seconds, remaining.unmeasured
        return JobStatus(
            job_id=job_id, state=current, stage=progress.get("stage", ""), done=int(progress.get("done", 0)),
            total=int(progress.get("total", 0)), message=progress.get("message", ""), eta_s=eta_s,
            eta_unmeasured=tuple(unmeasured), rates=rates,
            stages=progress.get("stages", {}), run_id=state.get("run_id"), error=state.get("error"),
            started=state.get("started"), finished=state.get("finished"), config_name=job.get("config_name", ""),
            resume_of=job.get("resume_of"), pid=pid, scheduler=job.get("scheduler"),
            workers=progress.get("workers") or {},
        )

    def list(self) -> list[JobStatus]:
        """Every job, newest first."""
        if not self.root.is_dir():
            return []
        ids = sorted((p.name for p in self.root.iterdir() if RUN_ID_PATTERN.fullmatch(p.name) and p.is_dir()
                      and not p.is_symlink()), reverse=True)
        return [self.status(job_id) for job_id in ids]

    def wait(self, job_id: str, timeout_s: float = 600.0, poll_s: float = 0.2) -> JobStatus:
        """Poll until the job reaches a final state (or raise TimeoutError after timeout_s)."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.status(job_id)
            if status.is_final:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"Job {job_id} still {status.state} after {timeout_s:.0f} s.")
            time.sleep(poll_s)

    def log_tail(self, job_id: str, n: int = 40) -> str:
        """The last ``n`` lines of the worker's log."""
        path = self.job_dir(job_id) / "log.txt"
        try:
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 256 * max(n, 1)))
                lines = fh.read().decode("utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    # -- stopping -------------------------------------------------------------------
    def cancel(self, job_id: str) -> None:
        """Ask the job to stop between two units of work; SIGTERM its process group after the grace period."""
        path = self.job_dir(job_id)
        FileCancelFlag(path / "cancel").set()
        if not self._alive(job_id, path):
            return
        timer = threading.Timer(self.grace_s, self._enforce_cancel, args=(job_id, path))
        timer.daemon = True
        timer.start()

    def _enforce_cancel(self, job_id: str, path: Path) -> None:
        flag = path / "cancel"
        try:
            requested = flag.stat().st_mtime
        except OSError:
            return
        if time.time() - requested < self.grace_s or not self._alive(job_id, path):
            return
        pid, _ = self._pid(job_id, path)
        logger.warning("Job %s ignored the cancel request for %.0f s; sending SIGTERM.", job_id, self.grace_s)
        try:
            os.killpg(int(pid), signal.SIGTERM)
        except (ProcessLookupError, PermissionError, TypeError):
            pass


# ------------------------------------------------------------------------------------
# The worker side (runs in the job process)
# ------------------------------------------------------------------------------------
def _set_threads() -> int:
    """Use the CPUs this process may run on (at most 8) for torch and BLAS."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    n = max(1, min(n, int(os.environ.get("ENCODING_STUDIO_THREADS", "8"))))
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass
    return n


def planned_layer_count(config: ExperimentConfig) -> Optional[int]:
    """How many layers the job will fit: the listed layers, or for ``"all"`` the speech model's
    layer count from its config (None when it cannot be known before the features exist)."""
    if config.layers != "all":
        return len(config.layers)
    if config.features.modality != "speech":
        return None
    try:
        from encoding_core.features.models import model_facts

        return int(model_facts(config.features.model_name).n_layers)
    except Exception:  # noqa: BLE001 - only an ETA hint; the run itself reports a bad model
        return None


def run_job(job_dir: Union[str, Path]) -> int:
    """Run the job in ``job_dir`` (worker entry point). Returns the process exit code (0 done, 1 failed, 2 bad input)."""
    from encoding_core.experiment.pipeline import run_experiment

    path = Path(job_dir).absolute()
    pid = os.getpid()
    base = {"pid": pid, "pid_start": process_start_ticks(pid), "started": _now_iso()}
    _write_json(path / "state.json", dict(base, state=RUNNING))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def on_sigterm(signum: int, frame: Any) -> None:
        raise JobCancelled("Stopped by SIGTERM after the cancel grace period.")

    signal.signal(signal.SIGTERM, on_sigterm)
    progress = FileProgress(path / "progress.json")
    try:
        threads = _set_threads()
        logger.info("Job %s: pid %d, %d threads", path.name, pid, threads)
        config = ExperimentConfig.load(path / "config.toml")
        scheduler = _read_json(path / "job.json").get("scheduler")
        n_layers = planned_layer_count(config)
        if n_layers:
            progress.plan("fit", n_layers)
        if scheduler:
            from encoding_core.experiment.distributed import run_sweep_distributed

            run_id = run_sweep_distributed(config, scheduler=scheduler, progress=progress,
                                           cancel=FileCancelFlag(path / "cancel"), on_workers=progress.set_workers)
        else:
            run_id = run_experiment(config, progress=progress, cancel=FileCancelFlag(path / "cancel"))
    except JobCancelled as exc:
        progress.flush()
        _write_json(path / "state.json", dict(base, state=CANCELLED, error=str(exc), finished=_now_iso()))
        logger.info("Job cancelled: %s", exc)
        return 1
    except EncodingCoreError as exc:
        progress.flush()
        _write_json(path / "state.json", dict(base, state=FAILED, error=str(exc), finished=_now_iso()))
        logger.error("Job failed: %s", exc)
        return 2
    except Exception as exc:  # a bug: keep the traceback in the log, a one-line error in the state
        progress.flush()
        traceback.print_exc()
        _write_json(path / "state.json", dict(base, state=FAILED, finished=_now_iso(),
                                              error=f"Internal error ({type(exc).__name__}: {exc}); see log.txt."))
        return 1
    progress.flush()
    _write_json(path / "state.json", dict(base, state=DONE, run_id=run_id, finished=_now_iso()))
    logger.info("Job done: run %s", run_id)
    return 0
