"""Layer sweeps on a Dask cluster: feature extraction per story and ridge fits per layer.

:func:`run_sweep_distributed` runs an :class:`~encoding_core.config.ExperimentConfig` like
:func:`~encoding_core.experiment.pipeline.run_experiment`, but spreads the two expensive stages over the
workers of a ``dask.distributed`` cluster (a remote scheduler, or a ``LocalCluster`` of worker
processes started here):

1. one task per (story audio, feature configuration): the worker runs the speech model and
   writes all layers to the shared feature cache (``config.cache_dir``; entries are written
   atomically under a file lock, so two workers never write the same entry twice);
2. one task per layer (per config when several subjects' configs are given): the worker reads
   that layer from the cache, prepares features and targets with the pipeline's functions and
   fits with :func:`~encoding_core.experiment.pipeline.fit_layer`, returning the per-voxel arrays and
   metrics;
3. the client writes the run through ``run_experiment(..., layer_fitter=...)``, i.e. the very
   code of a serial run: same files, same numbers.

Stories whose features are already cached are not recomputed, so re-running a sweep after a
failure resumes where it stopped. If the scheduler connection is lost, or every worker is
gone for longer than ``no_worker_timeout_s``, the sweep stops with a
:class:`~encoding_core.common.errors.ClusterError`. Task functions live in this module so that
workers can import them; ``dask`` itself is imported only when a sweep starts.

Paths in the config (assembly, audio, model folder, cache_dir) must name the SAME files on
every machine: put them on shared storage mounted at the same path everywhere.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from encoding_core.config import ExperimentConfig
from encoding_core.common.errors import ClusterError, ConfigError, EncodingCoreError, InputError, JobCancelled
from encoding_core.common.progress import CancelFlag, ProgressCallback, null_progress

logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_NO_WORKER_TIMEOUT_S = 60.0
DEFAULT_TASK_RETRIES = 2
MAX_DEFAULT_LOCAL_WORKERS = 4
_POLL_S = 0.1
_CLUSTER_CHECK_S = 1.0
_RESULT_FETCH_S = 1.0  # seconds per attempt to fetch a finished result before checking the cluster
_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc|ws|wss)://[^\s/]+$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_LOCAL = re.compile(r"^local(?::(\d+))?$")

WorkersCallback = Callable[[dict[str, dict[str, Any]]], None]


# --------------------------------------------------------------------------------------
# Scheduler addresses
# --------------------------------------------------------------------------------------
def parse_scheduler(scheduler: Optional[str], n_workers: Optional[int] = None) -> tuple[Optional[str], int]:
    """Interpret a scheduler setting -> (remote address or None for a local cluster, local worker count).

    scheduler: None or ``"local"`` / ``"local:N"`` (start N local worker processes), a Dask
    address ``"tcp://HOST:PORT"`` (also ``tls://``), or ``"HOST:PORT"`` (tcp assumed).
    n_workers: local worker processes when not given in ``local:N`` (default: CPUs, at most 4).
    """
    if n_workers is not None and (isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1):
        raise InputError(f"n_workers must be a positive whole number of worker processes, got {n_workers!r}.")
    text = "" if scheduler is None else str(scheduler).strip()
    local = _LOCAL.fullmatch(text) if text else None
    if not text or local:
        count = int(local.group(1)) if local and local.group(1) else n_workers
        if count is not None and count < 1:
            raise InputError(f"scheduler {scheduler!r}: a local cluster needs at least 1 worker (e.g. \"local:2\").")
        return None, count or default_local_workers()
    if _ADDRESS.fullmatch(text):
        return text, 0
    if _HOST_PORT.fullmatch(text):
        return f"tcp://{text}", 0
    raise InputError(f"scheduler {scheduler!r} is not a Dask scheduler address. Give \"tcp://HOST:8786\" (as printed "
                     f"by `dask scheduler`), \"HOST:8786\", or \"local:N\" for N worker processes on this machine.")


def default_local_workers() -> int:
    """Worker processes of a local cluster when none is asked for: usable CPUs, at most 4."""
    try:
        n_cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n_cpus = os.cpu_count() or 1
    return max(1, min(n_cpus, MAX_DEFAULT_LOCAL_WORKERS))


@contextlib.contextmanager
def connect(scheduler: Optional[str] = None, n_workers: Optional[int] = None,
            connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> Iterator[Any]:
    """A ``distributed.Client``: to ``scheduler``, or to a loopback LocalCluster started (and closed) here.

    The local cluster has ``n_workers`` processes with one thread each and no dashboard.
    Raises ClusterError within about ``connect_timeout_s`` seconds if the scheduler cannot be reached.
    """
    address, count = parse_scheduler(scheduler, n_workers)
    from distributed import Client, LocalCluster

    cluster = None
    try:
        if address is None:
            try:
                cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None)
                client = Client(cluster, timeout=f"{max(connect_timeout_s, 30.0)}s")
            except (OSError, TimeoutError, RuntimeError) as exc:
                raise ClusterError(f"Could not start a local Dask cluster of {count} worker processes ({exc}). "
                                   "Fix: use fewer workers, or start a scheduler and workers by hand and pass "
                                   "its address.") from None
            logger.info("Started a local Dask cluster with %d worker processes at %s", count,
                        cluster.scheduler_address)
        else:
            try:
                client = Client(address, timeout=f"{connect_timeout_s}s")
            except (OSError, TimeoutError) as exc:
                raise ClusterError(f"Cannot reach the Dask scheduler at {address} within {connect_timeout_s:g} s "
                                   f"({exc}). Fix: start it with `dask scheduler` on that machine (it prints its "
                                   f"address), check host, port and firewall, or use local workers "
                                   f"(--workers N / \"local:N\").") from None
            logger.info("Connected to the Dask scheduler at %s", address)
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.close(timeout=10)
    finally:
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=10)


# --------------------------------------------------------------------------------------
# Per-worker progress
# --------------------------------------------------------------------------------------
class WorkerTracker:
    """Which worker did what: counts of stories and layers done, seconds spent, tasks it holds now.

    Thread-safe. :meth:`snapshot` is JSON-serialisable:
    ``{worker_address: {"stories": int, "layers": int, "seconds": float, "running": [labels]}}``
    where ``running`` lists this sweep's unfinished tasks assigned to the worker (running or
    queued there, refreshed about once a second), e.g. ``["story story3", "layer 5"]``.
    """

    def __init__(self, on_change: Optional[WorkersCallback] = None) -> None:
        self._lock = threading.Lock()
        self._workers: dict[str, dict[str, Any]] = {}
        self._on_change = on_change

    def _row(self, worker: str) -> dict[str, Any]:
        return self._workers.setdefault(worker, {"stories": 0, "layers": 0, "seconds": 0.0, "running": []})

    def finished(self, worker: str, kind: str, seconds: float) -> None:
        """Count one finished unit (kind ``stories`` or ``layers``) of ``seconds`` on ``worker``."""
        with self._lock:
            row = self._row(worker)
            row[kind] += 1
            row["seconds"] = round(row["seconds"] + float(seconds), 3)
        self._notify()

    def running(self, labels_by_worker: Mapping[str, Sequence[str]]) -> None:
        """Replace the "running" lists (worker -> labels of the tasks it is processing)."""
        with self._lock:
            changed = False
            for worker in set(self._workers) | set(labels_by_worker):
                labels = sorted(labels_by_worker.get(worker, []))
                if self._row(worker)["running"] != labels:
                    self._row(worker)["running"] = labels
                    changed = True
        if changed:
            self._notify()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._workers)

    def _notify(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change(self.snapshot())
            except EncodingCoreError as exc:  # e.g. a progress file cannot be written: not fatal
                logger.warning("Could not record worker progress: %s", exc)


_current_tracker: Optional[WorkerTracker] = None
_tracker_lock = threading.Lock()


def worker_progress() -> dict[str, dict[str, Any]]:
    """Per-worker counts of the sweep running (or last run) in this process; see :class:`WorkerTracker`.

    A background job writes the same snapshot to its ``progress.json`` under ``workers``.
    """
    with _tracker_lock:
        tracker = _current_tracker
    return tracker.snapshot() if tracker is not None else {}


# --------------------------------------------------------------------------------------
# Tasks (run on the workers; pure functions of their arguments)
# --------------------------------------------------------------------------------------
def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"local-pid-{os.getpid()}"


def extract_story_task(feature_config: Mapping[str, Any], audio_path: str, cache_dir: str) -> dict[str, Any]:
    """Worker task: all layers of one story's audio into the cache at ``cache_dir`` (read if present).

    Returns ``{"audio_path", "key", "n_layers", "n_windows", "from_cache", "seconds", "worker"}``.
    """
    from encoding_core.features import SpeechFeatureExtractor

    started = time.perf_counter()
    extractor = SpeechFeatureExtractor(dict(feature_config), cache_dir=cache_dir)
    story = extractor.extract_story(audio_path)
    return {"audio_path": str(audio_path), "key": story.key, "n_layers": int(story.n_layers),
            "n_windows": int(story.n_windows), "from_cache": bool(story.from_cache),
            "seconds": time.perf_counter() - started, "worker": _worker_address()}


@dataclasses.dataclass
class _FitContext:
    """What every layer of one config needs on a worker (loaded once per worker process)."""

    assembly: Any
    targets: Any
    story_features: dict[str, Any]


_contexts: "OrderedDict[str, _FitContext]" = OrderedDict()
_contexts_lock = threading.Lock()
_MAX_CONTEXTS = 2


def _fit_context(config_toml: str) -> _FitContext:
    """Assembly (stories selected, audio attached), prepared targets and cached features of a config."""
    from encoding_core.experiment import pipeline

    digest = hashlib.sha256(config_toml.encode()).hexdigest()
    with _contexts_lock:
        if digest in _contexts:
            _contexts.move_to_end(digest)
            return _contexts[digest]
        config = ExperimentConfig.from_toml(config_toml)
        assembly = pipeline.select_stories(pipeline.load_experiment_assembly(config), config)
        pipeline.attach_audio(assembly, config)
        targets = pipeline.prepare_targets(assembly, config)
        story_features = pipeline.extract_all_features(assembly, pipeline.extractor_feature_source(config))
        context = _FitContext(assembly, targets, story_features)
        _contexts[digest] = context
        while len(_contexts) > _MAX_CONTEXTS:
            _contexts.popitem(last=False)
        return context


def fit_layer_task(config_toml: str, layer: int) -> tuple[Any, dict[str, Any]]:
    """Worker task: prepare and fit one layer of the experiment given as TOML text.

    Features come from the shared cache (extracted by :func:`extract_story_task`). Returns
    (``pipeline.LayerResult`` with per-voxel arrays, metrics and timings in seconds,
    ``{"layer", "seconds", "worker"}``).
    """
    from encoding_core.experiment import pipeline

    started = time.perf_counter()
    context = _fit_context(config_toml)
    config = ExperimentConfig.from_toml(config_toml)
    aligned_at = time.perf_counter()
    prepared = pipeline.prepare_features(context.story_features, context.assembly, config, int(layer))
    pipeline.check_lengths(prepared, context.targets, config)
    alignment_s = time.perf_counter() - aligned_at
    result = pipeline.fit_layer(prepared, context.targets, config)
    result.timings["alignment"] = result.timings.get("alignment", 0.0) + alignment_s
    return result, {"layer": int(layer), "seconds": time.perf_counter() - started, "worker": _worker_address()}


# --------------------------------------------------------------------------------------
# Waiting for futures
# --------------------------------------------------------------------------------------
class _Watcher:
    """Polls submitted futures: completions feed progress, failures become clear errors.

    Also watches the cluster: lost scheduler connection, or no worker for
    ``no_worker_timeout_s`` seconds -> ClusterError; the cancel flag -> JobCancelled.
    """

    def __init__(self, client: Any, tracker: WorkerTracker, cancel: Optional[CancelFlag],
                 no_worker_timeout_s: float, where: str) -> None:
        self.client, self.tracker, self.cancel = client, tracker, cancel
        self.no_worker_timeout_s = float(no_worker_timeout_s)
        self.where = where
        self.pending: dict[Any, tuple[str, Callable[[Any], None]]] = {}
        self.results: dict[str, Any] = {}
        self._labels: dict[str, str] = {}
        self._last_check = 0.0
        self._no_workers_since: Optional[float] = None

    def add(self, future: Any, label: str, on_done: Callable[[Any], None]) -> None:
        self.pending[future] = (label, on_done)
        self._labels[str(future.key)] = label

    def wait_for(self, label: str) -> Any:
        """Block until the task called ``label`` is done (processing other completions meanwhile)."""
        while label not in self.results:
            if not any(entry[0] == label for entry in self.pending.values()):
                raise KeyError(label)
            self.poll()
        return self.results.pop(label)

    def wait_all(self) -> None:
        while self.pending:
            self.poll()

    def poll(self) -> None:
        self._check_cancel()
        for future in [f for f in self.pending if f.done()]:
            label, on_done = self.pending.pop(future)
            value = self._result(future, label)
            on_done(value)
            self.results[label] = value
        now = time.monotonic()
        if now - self._last_check >= _CLUSTER_CHECK_S:
            self._last_check = now
            self._check_cluster()
        if self.pending:
            time.sleep(_POLL_S)

    def cancel_all(self) -> None:
        futures = list(self.pending)
        self.pending.clear()
        if futures:
            with contextlib.suppress(Exception):
                self.client.cancel(futures)

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            self.cancel_all()
            raise JobCancelled("Cancelled by the user; cluster tasks were cancelled (cached features are kept).")

    def _lost(self, what: str) -> ClusterError:
        self.cancel_all()
        return ClusterError(f"The Dask cluster at {self.where} went away: {what}. Features already extracted "
                            "stay in the cache; start the scheduler/workers again and re-run the sweep to "
                            "resume from the cache.")

    def _result(self, future: Any, label: str) -> Any:
        from distributed import KilledWorker

        status = future.status
        if status == "finished":
            while True:  # if the worker holding the result left, Dask recomputes it: wait, watching the cluster
                try:
                    return future.result(timeout=_RESULT_FETCH_S)
                except TimeoutError:
                    self._check_cancel()
                    self._check_cluster()  # raises once there have been no workers for no_worker_timeout_s
                except OSError as exc:  # result fetch failed: the connection is gone
                    raise self._lost(f"the result of {label} could not be fetched ({exc})") from None
        if status == "error":
            exc = future.exception()
            if isinstance(exc, EncodingCoreError):
                raise exc
            if isinstance(exc, KilledWorker):
                raise ClusterError(f"Task {label} was running on {exc.args[2] if len(exc.args) > 2 else 'several'} "
                                   "worker processes that each died (out of memory or a crash), so Dask gave up "
                                   "on it. Features already extracted stay in the cache. Fix: give workers more "
                                   "memory (or use fewer per machine), check the worker logs, then re-run to "
                                   "resume.") from None
            return future.result()  # an unexpected error (a bug): re-raised with its traceback
        raise self._lost(f"task {label} was {status} (scheduler connection lost?)")

    def _check_cluster(self) -> None:
        if self.client.status not in ("running", "newly-created"):
            raise self._lost(f"the client is {self.client.status}")
        try:
            workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
            processing = self.client.processing()
        except (OSError, TimeoutError) as exc:
            raise self._lost(f"the scheduler does not answer ({exc})") from None
        now = time.monotonic()
        if workers:
            self._no_workers_since = None
        elif self._no_workers_since is None:
            self._no_workers_since = now
            logger.warning("The Dask cluster at %s has no workers; waiting up to %.0f s for one.", self.where,
                           self.no_worker_timeout_s)
        elif now - self._no_workers_since > self.no_worker_timeout_s:
            raise self._lost(f"it has had no workers for {self.no_worker_timeout_s:.0f} s")
        pending = {str(future.key) for future in self.pending}
        self.tracker.running({str(worker): [self._labels[str(key)] for key in keys if str(key) in pending]
                              for worker, keys in processing.items()})


# --------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------
def _absolute(path: str) -> str:
    return str(Path(path).expanduser().absolute()) if path else path


def shareable_config(config: ExperimentConfig) -> ExperimentConfig:
    """A validated copy whose file paths are absolute (workers may run in another folder or machine)."""
    config = ExperimentConfig.from_dict(config.to_dict())
    source = config.assembly
    if source.path.strip().lower() != "demo":
        source.path = _absolute(source.path)
    source.audio_dir = _absolute(source.audio_dir)
    source.audio_overrides = {story: _absolute(path) for story, path in source.audio_overrides.items()}
    model = Path(config.features.model_name).expanduser()
    if model.is_dir():
        config.features.model_name = str(model.absolute())
    config.cache_dir = _absolute(config.cache_dir)
    config.results_dir = _absolute(config.results_dir)
    return config


@dataclasses.dataclass
class _Plan:
    """One config prepared on the client: its assembly (audio attached) and the layers to fit."""

    config: ExperimentConfig
    toml: str
    assembly: Any
    layers: list[int] = dataclasses.field(default_factory=list)
    cache_keys: dict[str, str] = dataclasses.field(default_factory=dict)  # audio path -> cache key

    @property
    def features_id(self) -> str:
        """Identifies the feature configuration and cache folder (stories sharing it are extracted once)."""
        return repr((sorted(dataclasses.asdict(self.config.features).items()), self.config.cache_dir))


def _plan(config: ExperimentConfig, progress: ProgressCallback) -> _Plan:
    """Load and check everything that can be wrong before any cluster work (pipeline functions)."""
    from encoding_core.experiment import pipeline

    assembly = pipeline.select_stories(pipeline.load_experiment_assembly(config), config)
    targets = pipeline.prepare_targets(assembly, config)
    pipeline.check_statistics_settings(targets, config)
    pipeline.attach_audio(assembly, config, progress)
    return _Plan(config, config.to_toml(), assembly)


def _cached_feature_source(config: ExperimentConfig, expected_keys: Mapping[str, str]) -> Callable[..., Any]:
    """The pipeline's feature source, refusing to compute: every story must be in the shared cache."""
    from encoding_core.features import SpeechFeatureExtractor
    from encoding_core.features.cache import cache_key, key_fields

    extractor = SpeechFeatureExtractor(config.features, cache_dir=config.cache_dir)

    def source(story: Any, progress: Optional[ProgressCallback] = None, cancel: Optional[CancelFlag] = None) -> Any:
        worker_key = expected_keys[_audio(story)]
        local_key = cache_key(key_fields(story.audio_path, extractor.config))
        if local_key != worker_key:
            raise ConfigError(f"Story {story.name!r}: the workers cached its features under key {worker_key} but this "
                              f"machine computes key {local_key} (different model files, or features.precision "
                              f"{config.features.precision!r} resolving differently with and without a GPU). Fix: "
                              "use the same model folder on shared storage everywhere and precision fp32 or bf16.")
        features = extractor.extract_story(story.audio_path, progress=progress, cancel=cancel)
        if not features.from_cache:
            logger.warning("Story %s was not found in the shared cache %s and was recomputed here; is cache_dir "
                           "the same shared folder on every worker?", story.name, config.cache_dir)
        return features

    return source


def run_sweeps_distributed(configs: Sequence[ExperimentConfig], scheduler: Optional[str] = None,
                           n_workers: Optional[int] = None, progress: Optional[ProgressCallback] = None,
                           cancel: Optional[CancelFlag] = None, on_workers: Optional[WorkersCallback] = None,
                           connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
                           no_worker_timeout_s: float = DEFAULT_NO_WORKER_TIMEOUT_S,
                           retries: int = DEFAULT_TASK_RETRIES) -> list[str]:
    """Several experiments (e.g. one per subject) on one cluster; returns their run ids, in order.

    Units of work: one extraction task per distinct (audio file, feature config) and one fit task
    per (config, layer), all submitted at once so the cluster stays busy. progress(stage, done,
    total, message): ``features`` counts stories, ``fit`` counts layers (over all configs);
    on_workers(snapshot) receives :meth:`WorkerTracker.snapshot` when it changes. Raises
    ClusterError when the scheduler is unreachable or the cluster goes away, JobCancelled when
    ``cancel`` is set, and the pipeline's errors for bad input (before any cluster work).
    """
    from encoding_core.experiment import pipeline

    global _current_tracker
    if not configs:
        raise InputError("run_sweeps_distributed needs at least one experiment config.")
    progress = progress or null_progress
    parse_scheduler(scheduler, n_workers)  # a bad address fails before anything starts
    configs = [shareable_config(config) for config in configs]
    plans = [_plan(config, progress) for config in configs]  # bad input fails before any cluster work
    tracker = WorkerTracker(on_workers)
    with _tracker_lock:
        _current_tracker = tracker
    token = uuid.uuid4().hex[:8]

    with connect(scheduler, n_workers, connect_timeout_s) as client:
        where = scheduler_address(client, scheduler)
        watcher = _Watcher(client, tracker, cancel, no_worker_timeout_s, where)
        try:
            # 1. features: one task per distinct (feature config, cache folder, audio file)
            jobs: dict[tuple[str, str], tuple[_Plan, str]] = {}
            for plan in plans:
                for story in plan.assembly.stories_list:
                    jobs.setdefault((plan.features_id, _audio(story)), (plan, story.name))
            extracted: dict[tuple[str, str], dict[str, Any]] = {}
            total = len(jobs)
            progress("features", 0, total, f"{total} stories on the cluster")

            def story_done(info: dict[str, Any], job: tuple[str, str]) -> None:
                extracted[job] = info
                tracker.finished(info["worker"], "stories", info["seconds"])
                progress("features", len(extracted), total, f"{Path(info['audio_path']).name} on {info['worker']}"
                         f"{' (from cache)' if info['from_cache'] else ''}")

            for number, (job, (plan, story_name)) in enumerate(jobs.items()):
                future = client.submit(extract_story_task, dataclasses.asdict(plan.config.features), job[1],
                                       plan.config.cache_dir, key=f"extract-{story_name}-{number}-{token}",
                                       retries=retries, pure=False)
                watcher.add(future, f"story {story_name}", lambda info, _job=job: story_done(info, _job))
            watcher.wait_all()

            # 2. fits: one task per (config, layer), all submitted before any run is written
            for plan in plans:
                plan.cache_keys = {_audio(s): extracted[(plan.features_id, _audio(s))]["key"]
                                   for s in plan.assembly.stories_list}
                n_layers = min(extracted[(plan.features_id, _audio(s))]["n_layers"] for s in plan.assembly.stories_list)
                plan.layers = pipeline.resolve_layers(plan.config.layers, n_layers)
            fit_total = sum(len(plan.layers) for plan in plans)
            fits_done = [0]

            def layer_done(value: tuple[Any, dict[str, Any]]) -> None:
                _, info = value
                fits_done[0] += 1
                tracker.finished(info["worker"], "layers", info["seconds"])
                progress("fit", fits_done[0], fit_total, f"layer {info['layer']} on {info['worker']}")

            progress("fit", 0, fit_total, f"{fit_total} layer fits on the cluster")
            for index, plan in enumerate(plans):
                for layer in plan.layers:
                    future = client.submit(fit_layer_task, plan.toml, layer, key=f"fit-{index}-{layer}-{token}",
                                           retries=retries, pure=False)
                    watcher.add(future, _fit_label(index, layer, len(plans)), layer_done)

            # 3. runs: written here by the pipeline itself, layer by layer as the fits arrive
            run_ids = []
            for index, plan in enumerate(plans):

                def fitter(layer: int, _index: int = index) -> Any:
                    result, _ = watcher.wait_for(_fit_label(_index, layer, len(plans)))
                    return result

                run_ids.append(pipeline.run_experiment(
                    plan.config, assembly=plan.assembly, progress=_without_cluster_stages(progress), cancel=cancel,
                    feature_source=_cached_feature_source(plan.config, plan.cache_keys), layer_fitter=fitter))
            return run_ids
        finally:
            watcher.cancel_all()


def scheduler_address(client: Any, fallback: Optional[str] = None) -> str:
    """The address of the scheduler a client is connected to (for messages)."""
    try:
        return str(client.scheduler.address)
    except AttributeError:
        return str(fallback or "the scheduler")


def _audio(story: Any) -> str:
    """A story's audio file as an absolute path (workers may run elsewhere)."""
    return str(Path(story.audio_path).expanduser().absolute())


def _fit_label(index: int, layer: int, n_configs: int) -> str:
    return f"layer {layer}" if n_configs == 1 else f"config {index} layer {layer}"


def _without_cluster_stages(progress: ProgressCallback) -> ProgressCallback:
    """The user's callback minus ``features``/``fit`` (counted across the cluster by the sweep itself)."""

    def forward(stage: str, done: int, total: int, message: str = "") -> None:
        if stage not in ("features", "fit"):
            progress(stage, done, total, message)

    return forward


def run_sweep_distributed(config: ExperimentConfig, scheduler: Optional[str] = None, n_workers: Optional[int] = None,
                          progress: Optional[ProgressCallback] = None, cancel: Optional[CancelFlag] = None,
                          on_workers: Optional[WorkersCallback] = None,
                          connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
                          no_worker_timeout_s: float = DEFAULT_NO_WORKER_TIMEOUT_S,
                          retries: int = DEFAULT_TASK_RETRIES) -> str:
    """Run one experiment with extraction per story and fits per layer on a Dask cluster; return the run id.

    scheduler: ``"tcp://HOST:8786"`` (a running ``dask scheduler``), or None / ``"local:N"`` for a
    LocalCluster of ``n_workers`` single-threaded processes on 127.0.0.1. The run folder is the
    same as :func:`~encoding_core.experiment.pipeline.run_experiment` writes (same files, same numbers).
    See :func:`run_sweeps_distributed` for progress, on_workers and errors.
    """
    return run_sweeps_distributed([config], scheduler=scheduler, n_workers=n_workers, progress=progress,
                                  cancel=cancel, on_workers=on_workers, connect_timeout_s=connect_timeout_s,
                                  no_worker_timeout_s=no_worker_timeout_s, retries=retries)[0]
