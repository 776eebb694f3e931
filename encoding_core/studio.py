"""The app-facing API: everything the Streamlit pages call, and app-side logic that needs no UI.

Pages (``pages/*.py``) import from ``encoding_core`` only this module and :mod:`encoding_core.viz`
(a test checks it), so the core's layout can change without touching a page. This module stays
light: importing it loads no torch and no model.

Its own logic: the experiment checklist, trimming preview, demo presets, result tables and
downloads. The rest is re-exported from the step packages (see the block below the imports).
"""
from __future__ import annotations

import copy
import csv
import io
import logging
import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from encoding_core.assembly.data_model import MNI_TEMPLATE, Assembly, Space
from encoding_core.config import ExperimentConfig, TrimmingConfig
from encoding_core.common.errors import ConfigError, InputError

# -- Re-exported for the pages (one import surface for the app) ---------------------------
from encoding_core.assembly.assembly_loader import load_assembly, save_assembly
from encoding_core.assembly.audio import apply_audio_map, check_story_audio, load_audio, map_audio
from encoding_core.assembly.check_data import DataCheckReport, check_lebel_folder
from encoding_core.assembly.lebel import list_lebel_stories, list_lebel_subjects
from encoding_core.common.errors import EncodingCoreError, MissingStoryFilesError
from encoding_core.common.paths import (StudioDirs, check_upload_size, load_settings, resolve_user_path,
                                        safe_upload_name, studio_dirs)
from encoding_core.common.storage import atomic_write_bytes
from encoding_core.config import (ALTERNATIVE_NAMES, ALTERNATIVES, BANDED_MODES, CONTEXT_TYPES, DEFAULT_MODEL,
                                  DOWNSAMPLE_METHODS, FOLD_TYPES, MODALITIES, MODES, OOV_HANDLING, OUTER_FOLD_TYPES,
                                  POOL_METHODS, PRECISIONS, REFERENCE_ALPHAS, SIGNIFICANCE_TESTS, TEST_NAMES,
                                  FeatureConfig, FeatureSpaceConfig)
from encoding_core.demo.preset import demo_config
from encoding_core.demo.simulate import ground_truth_maps, planted_region_masks
from encoding_core.downsample.downsampling import downsample_kernel
from encoding_core.experiment.distributed import parse_scheduler
from encoding_core.experiment.comparison import comparison_matrix, comparison_table, list_groups
from encoding_core.experiment.export import experiment_to_script
from encoding_core.experiment.jobs import JobManager
from encoding_core.experiment.runstore import RunStore
from encoding_core.features.cache import clear_cache, is_cached, list_cache_entries
from encoding_core.features.cost import (BF16_MIN_SPEEDUP, MODALITY_NEEDS, PrecisionAdvice, compare_precisions,
                                         estimate_cost, estimate_word_feature_cost)
from encoding_core.features.models import model_facts
from encoding_core.guide import how_it_works

logger = logging.getLogger(__name__)

MODALITY_LABELS = {"speech": "Speech model", "wordrate": "Word rate", "embeddings": "Word embeddings",
                   "language_model": "Language model", "custom": "Custom arrays", "phonemerate": "Phoneme rate",
                   "envelope": "Audio envelope", "logmel": "Log-mel spectrogram"}
"""How the app names each feature modality."""


def language_model_facts(model_name: str) -> dict[str, Any]:
    """Layers, width, parameters and kind of a causal LM (from its config; no weights read)."""
    from encoding_core.features.language_model import language_model_facts as facts

    return facts(model_name)


def custom_feature_files(folder: str, stories: Sequence[str]) -> list[dict[str, Any]]:
    """Per story: does ``<folder>/<story>.npz`` exist (the custom modality's files)."""
    return [{"story": name, "file": f"{name}.npz", "found": os.path.isfile(os.path.join(folder, f"{name}.npz"))}
            for name in stories]

DEMO_PRESETS = ("full", "tiny")
"""``full``: the demo's own ``demo_config()``; ``tiny``: same data, model, layers, trimming
and statistics, but three stories and a 2.5 s stride. A real, smaller run."""
TINY_STRIDE_S = 2.5


@dataclass(frozen=True)
class ChecklistStep:
    """One step of the guided experiment: ``page`` is the app page that handles it."""

    title: str
    done: bool
    detail: str
    page: str


def copy_assembly(assembly: Assembly) -> Assembly:
    """A copy whose Story records can be changed (audio paths) without touching ``assembly``.

    Arrays are shared, not copied.
    """
    clone = copy.copy(assembly)
    clone.stories_list = [copy.copy(story) for story in assembly.stories_list]
    clone.provenance = dict(assembly.provenance)
    return clone


def demo_preset_config(base: ExperimentConfig, preset: Optional[str] = None) -> ExperimentConfig:
    """The demo's config for a preset (default from ``ENCODING_STUDIO_DEMO_PRESET``, else ``full``).

    ``tiny`` keeps three stories (the first two and the test story) and a 2.5 s stride;
    everything else (model, layers, trimming, statistics) is unchanged.
    """
    preset = (preset or os.environ.get("ENCODING_STUDIO_DEMO_PRESET") or "full").strip().lower()
    if preset not in DEMO_PRESETS:
        raise ConfigError(f"ENCODING_STUDIO_DEMO_PRESET must be one of {DEMO_PRESETS}, got {preset!r}.")
    config = copy.deepcopy(base)
    if preset == "tiny":
        from encoding_core.demo import demo_story_names

        names = list(config.assembly.stories) or list(demo_story_names())
        test = config.assembly.test_story or names[-1]
        config.assembly.stories = [n for n in names if n != test][:2] + [test]
        config.assembly.test_story = test
        config.features.chunk_size = max(config.features.chunk_size, TINY_STRIDE_S)
        config.name = f"{config.name}-tiny"
    return config.validate()


def sliced_length(n: int, start: Optional[int], end: Optional[int]) -> int:
    """Length of ``range(n)[start:end]`` (Python slice semantics, bounds in TRs)."""
    return len(range(n)[slice(start, end)])


def trimming_preview(assembly: Assembly, trimming: TrimmingConfig, test_story: Optional[str] = None,
                     mode: str = "train_test") -> list[dict[str, Any]]:
    """Per-story lengths after trimming: features (one row per TR time) vs targets (stored TRs).

    Features are downsampled to the story's TR times (``len(tr_times)`` rows) and then
    sliced with the train or test feature bounds; targets are the stored ``n_trs`` rows
    sliced with the target bounds. In ``cv`` mode every story uses the train bounds.
    Returns dicts: story, role, features, targets, match.
    """
    test = test_story or assembly.effective_test_story()
    rows = []
    for story in assembly.stories_list:
        role = "test" if (mode == "train_test" and story.name == test) else "train"
        if role == "test":
            f = sliced_length(story.tr_times.size, trimming.test_features_start, trimming.test_features_end)
            t = sliced_length(story.n_trs, trimming.test_targets_start, trimming.test_targets_end)
        else:
            f = sliced_length(story.tr_times.size, trimming.train_features_start, trimming.train_features_end)
            t = sliced_length(story.n_trs, trimming.train_targets_start, trimming.train_targets_end)
        rows.append({"story": story.name, "role": role, "features": f, "targets": t, "match": f == t and f > 0})
    return rows


MAX_DELAY_SPAN_S = 30.0
"""FIR delays reaching further back than this model no haemodynamic response (it is over after 20-30 s)."""


def setup_warnings(config: ExperimentConfig, assembly: Optional[Assembly]) -> list[str]:
    """Settings that are valid but probably wrong, in words (the Setup page shows them as warnings):
    FIR delays of 0 or less (the same TR / the future) or reaching more than ``MAX_DELAY_SPAN_S``
    seconds back, inner-CV chunks or outer folds that do not fit the training data."""
    warnings = []
    delays = sorted(int(d) for d in config.alignment.fir_delays)
    tr = float(assembly.tr) if assembly is not None else None
    future = [d for d in delays if d < 0]
    same = [d for d in delays if d == 0]
    if future:
        warnings.append(f"FIR delays {future} use the stimulus from the future: the model would predict each TR "
                        "from sound heard after it. Use delays of 1 TR or more (e.g. 1, 2, 3, 4).")
    if same:
        warnings.append("FIR delay 0 uses the stimulus of the same TR: the haemodynamic response has barely started "
                        "then (it peaks 4-6 s later). Delays of 1 TR or more are the convention.")
    if tr is not None and delays and max(abs(d) for d in delays) * tr > MAX_DELAY_SPAN_S:
        reach = max(abs(d) for d in delays) * tr
        warnings.append(f"FIR delays reach {reach:g} s (delay {max(abs(d) for d in delays)} x TR {tr:g} s), more than "
                        f"the {MAX_DELAY_SPAN_S:g} s a haemodynamic response lasts: the extra delays add parameters "
                        "without signal.")
    if assembly is None:
        return warnings
    rows = trimming_preview(assembly, config.alignment.trimming, config.assembly.test_story or None, config.ridge.mode)
    ridge = config.ridge
    train_trs = sum(min(r["features"], r["targets"]) for r in rows if r["role"] == "train")
    if ridge.mode == "cv":  # the inner folds see the outer training part
        all_trs = train_trs
        if ridge.n_outer_folds > 0 and all_trs:
            if all_trs // ridge.n_outer_folds < 1:
                warnings.append(f"{ridge.n_outer_folds} outer folds over {all_trs} TRs leave no TR to test in some "
                                "folds; use fewer outer folds.")
            train_trs = all_trs - int(np.ceil(all_trs / max(ridge.n_outer_folds, 1)))
    chunked = ridge.fold_type in ("chunked", "chunked_contiguous", "chunked_trimmed")
    if chunked and train_trs > 0:
        n_chunks = int(np.ceil(train_trs / ridge.chunk_length))
        if ridge.chunk_length > train_trs:
            warnings.append(f"The inner-CV chunk length ({ridge.chunk_length} TRs) is longer than the training data "
                            f"({train_trs} TRs after trimming): the fit will fail. Use at most "
                            f"{max(train_trs // ridge.n_inner_folds, 1)} TRs.")
        elif n_chunks < ridge.n_inner_folds:
            warnings.append(f"Only {n_chunks} chunks of {ridge.chunk_length} TRs fit in the {train_trs} training TRs, "
                            f"fewer than the {ridge.n_inner_folds} inner folds: the fit will fail. Use a chunk length "
                            f"of at most {max(train_trs // ridge.n_inner_folds, 1)} TRs or fewer folds.")
    elif ridge.fold_type not in ("story", "group") and 0 < train_trs < ridge.n_inner_folds:
        warnings.append(f"{ridge.n_inner_folds} inner folds need at least as many training TRs (there are "
                        f"{train_trs}).")
    if ridge.fold_type == "story":
        n_train_stories = sum(1 for r in rows if r["role"] == "train")
        if n_train_stories < 2:
            warnings.append("Story-wise inner folds need at least two training stories; with one the folds fall "
                            "back to chunks.")
    return warnings


MIN_PERMUTATIONS_FOR_FDR = 1000
"""Fewer block permutations than this make BH-FDR over more voxels than this nearly unreachable."""


def statistics_warnings(config: ExperimentConfig, assembly: Optional[Assembly]) -> list[str]:
    """Permutation settings that cannot work on these data: a block longer than the held-out data
    (the test story, or in CV the shortest story), and fewer than ``MIN_PERMUTATIONS_FOR_FDR``
    permutations for FDR over more voxels than that (the smallest permutation p-value is
    1 / (permutations + 1))."""
    if assembly is None:
        return []
    rows = trimming_preview(assembly, config.alignment.trimming, config.assembly.test_story or None, config.ridge.mode)
    stats = config.stats
    warnings = []
    permutation_test = getattr(stats, "test", "block_permutation") == "block_permutation"
    held_out = [min(r["features"], r["targets"]) for r in rows if r["role"] == "test"] or \
        [min(r["features"], r["targets"]) for r in rows]
    shortest = min(held_out) if held_out else 0
    block = getattr(stats, "block_length", None)
    if permutation_test and block is not None and shortest > 0 and int(block) > shortest:
        where = "the test story" if any(r["role"] == "test" for r in rows) else "the shortest story"
        warnings.append(f"The permutation block length ({int(block)} TRs) is longer than {where} ({shortest} TRs "
                        "after trimming): there is nothing to shuffle and every p-value is 1. Use a block of at most "
                        f"{max(shortest // 4, 1)} TRs (a quarter of the data).")
    n_voxels = int(assembly.n_voxels) if assembly.stories_list else 0
    n_permutations = int(getattr(stats, "n_permutations", 0) or 0)
    if permutation_test and n_voxels > MIN_PERMUTATIONS_FOR_FDR and n_permutations < MIN_PERMUTATIONS_FOR_FDR:
        warnings.append(f"{n_permutations} permutations for FDR over {n_voxels:,} voxels: the smallest p-value is "
                        f"1/{n_permutations + 1} = {1.0 / (n_permutations + 1):.2g}, and Benjamini–Hochberg at "
                        f"q = {stats.fdr_q:g} then needs at least {int(np.ceil(n_voxels / (stats.fdr_q * (n_permutations + 1)))):,} "
                        f"voxels at that p-value to declare any. Use at least {MIN_PERMUTATIONS_FOR_FDR} permutations.")
    return warnings


def experiment_checklist(config: ExperimentConfig, assembly: Optional[Assembly],
                         audio_found: Optional[int], runs: Sequence[Any]) -> list[ChecklistStep]:
    """The steps of an experiment with done/to-do state, for the Home page.

    audio_found: stories with a usable audio file (None when unknown). runs: RunInfo list.
    """
    n_stories = len(assembly.stories) if assembly is not None else 0
    steps = [
        ChecklistStep("Load an assembly", assembly is not None,
                      f"{n_stories} stories, {assembly.n_voxels} voxels" if assembly is not None else "nothing loaded",
                      "Assembly"),
        ChecklistStep("Map the audio", assembly is not None and audio_found == n_stories and n_stories > 0,
                      f"{audio_found or 0} of {n_stories} stories have audio", "Audio"),
        ChecklistStep("Choose a model and layers", bool(config.features.model_name),
                      f"{config.features.model_name}, layers {config.layers}", "Model & layer"),
    ]
    mismatched: list[str] = []
    if assembly is not None:
        rows = trimming_preview(assembly, config.alignment.trimming, config.assembly.test_story or None,
                                config.ridge.mode)
        mismatched = [r["story"] for r in rows if not r["match"]]
    steps.append(ChecklistStep(
        "Set up trimming, delays and ridge", assembly is not None and not mismatched,
        f"length mismatch in {mismatched}" if mismatched else "lengths line up" if assembly is not None else "-",
        "Setup"))
    complete = [r for r in runs if getattr(r, "status", "") == "complete"]
    steps.append(ChecklistStep("Train", bool(complete), f"{len(complete)} finished run(s)", "Train"))
    steps.append(ChecklistStep("Look at the results", bool(complete), "brain maps and layer profile", "Results"))
    return steps


def format_seconds(seconds: Optional[float]) -> str:
    """Human duration: ``"-"`` for None, ``"42 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``."""
    if seconds is None or not np.isfinite(seconds):
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def layer_profile(metrics_by_layer: Mapping[int, Mapping[str, Any]]) -> dict[str, list]:
    """Columns for a layer profile from each layer's metrics: layers, median_r, n_significant."""
    layers = sorted(int(k) for k in metrics_by_layer)
    return {
        "layers": layers,
        "median_r": [float(metrics_by_layer[k].get("median_score", np.nan)) for k in layers],
        "n_significant": [int(metrics_by_layer[k].get("n_significant", 0)) for k in layers],
    }


def scheduler_label(scheduler: Optional[str]) -> str:
    """How a job runs, for display: ``"this machine (background process)"`` or the Dask scheduler."""
    if not scheduler:
        return "this machine (background process)"

    try:
        address, n_local = parse_scheduler(scheduler)
    except InputError:  # recorded by an older version: show it as written
        return f"Dask scheduler {scheduler}"
    return f"Dask scheduler {address}" if address else f"local Dask cluster of {n_local} worker processes"


# --------------------------------------------------------------------------- jobs, as the Train page shows them
ACTIVE_JOB_STATES = ("queued", "running")
STAGE_UNITS = {"audio": "stories", "alignment": "layers", "fit": "layers", "stats": "layers", "save": "layers"}


def _stage_text(stage: str, done: int, total: int) -> str:
    """``features 42 %`` or ``fit 2/4 layers``: how far one stage is."""
    if not stage:
        return "starting"
    if total <= 0:
        return stage
    if stage == "features":  # local runs count per cent of each story, Dask runs count stories
        return f"{stage} {100.0 * done / total:.0f} %"
    unit = STAGE_UNITS.get(stage, "")
    return f"{stage} {done}/{total}{' ' + unit if unit else ''}"


def job_eta_text(status: Any) -> str:
    """The time left of an active job from its measured speed, in words ('' when the job is not
    active): "about 2 min 10 s", "at least 1 min 05 s + fitting 4 layers (timed after the first)",
    or "measuring the speed ..." before anything is measured."""
    if getattr(status, "state", "") not in ACTIVE_JOB_STATES:
        return ""
    unmeasured = tuple(getattr(status, "eta_unmeasured", ()) or ())
    pending = ""
    if unmeasured:
        rates = getattr(status, "rates", {}) or {}
        layers_left = max((int(rates.get(s, {}).get("total", 0)) - int(rates.get(s, {}).get("done", 0))
                           for s in unmeasured if s in STAGE_UNITS and STAGE_UNITS[s] == "layers"), default=0)
        other = [s for s in unmeasured if STAGE_UNITS.get(s) != "layers"]
        parts = []
        if layers_left:
            parts.append(f"fitting {layers_left} layer{'s' if layers_left != 1 else ''} (timed after the first)")
        parts += [f"{s} (not timed yet)" for s in other]
        pending = " + " + ", ".join(parts) if parts else ""
    if status.eta_s is None:
        return "measuring the speed ..." + (f" (then {pending[3:]})" if pending else "")
    if pending:
        return f"at least {format_seconds(status.eta_s)}{pending}"
    return f"about {format_seconds(status.eta_s)}"


def job_progress(status: Any) -> tuple[float, str]:
    """(fraction of the current stage 0-1, text) for a job's progress bar, from its state on disk:
    a finished job is full ("finished: run ..."), a stopped one says where it stopped."""
    stage, done, total = status.stage, int(status.done), int(status.total)
    fraction = min(max(done / total, 0.0), 1.0) if total else 0.0
    where = _stage_text(stage, done, total)
    if status.state == "done":
        return 1.0, f"finished: run {status.run_id}" if status.run_id else "finished"
    if status.state == "queued":
        return 0.0, "queued: waiting for the worker process to start"
    if status.state == "running":
        return fraction, f"{where} · {status.message}".strip(" ·") if status.message else where
    return fraction, f"{status.state} during {where}" if stage else status.state


def job_label(status: Any) -> str:
    """A job in the picker: ``id · name · state`` (the state read from disk at this rerun)."""
    name = f" · {status.config_name}" if getattr(status, "config_name", "") else ""
    return f"{status.job_id}{name} · {status.state}"


def job_rows(statuses: Sequence[Any]) -> list[dict[str, Any]]:
    """The "All jobs" table: job, name, state, progress (what it is doing, or where it stopped),
    time left (active jobs only), where it runs and its run."""
    rows = []
    for status in statuses:
        rows.append({"job": status.job_id, "name": status.config_name, "state": status.state,
                     "progress": job_progress(status)[1], "time left": job_eta_text(status),
                     "runs on": status.scheduler or "this machine", "run": status.run_id or "",
                     "resumes": status.resume_of or ""})
    return rows


def jobs_signature(statuses: Sequence[Any]) -> tuple[tuple[str, str], ...]:
    """(job id, state) of every job: when it changes between two refreshes, the whole page must be
    drawn again (the picker, the table and the sidebar show states)."""
    return tuple((s.job_id, s.state) for s in statuses)


def any_job_active(statuses: Sequence[Any]) -> bool:
    return any(s.state in ACTIVE_JOB_STATES for s in statuses)


@dataclass(frozen=True)
class ResumeReport:
    """What a resumed job can reuse: ``cached`` of ``total`` stories' features (None: unknown), in words."""

    cached: Optional[int]
    total: Optional[int]
    text: str


def _job_audio_paths(config: ExperimentConfig) -> dict[str, Optional[str]]:
    """Story -> audio file as a job of ``config`` would use it ({} when the stories are not known
    without loading the assembly)."""
    source = config.assembly
    if source.path == "demo":
        from encoding_core.demo.simulate import demo_audio_path, demo_story_names

        names = list(source.stories) or demo_story_names()
        return {n: str(source.audio_overrides.get(n) or demo_audio_path(n)) for n in names}
    if source.audio_dir and source.stories:
        from encoding_core.assembly.audio import find_story_audio

        paths = {}
        for name in source.stories:
            found = source.audio_overrides.get(name) or find_story_audio(source.audio_dir, source.audio_pattern, name)
            paths[name] = str(found) if found else None
        return paths
    return {}


def resume_report(manager: JobManager, job_id: str) -> ResumeReport:
    """How much of a stopped job a resume reuses: stories whose features are in the feature cache
    (checked in the cache for speech features; otherwise from the job's last progress)."""
    status = manager.status(job_id)
    try:
        config = manager.config(job_id)
    except (EncodingCoreError, OSError, ValueError):
        config = None
    paths = _job_audio_paths(config) if config is not None and config.features.modality == "speech" else {}
    if paths:
        cached = sum(1 for p in paths.values() if p and os.path.isfile(p) and is_cached(p, config.features,
                                                                                          config.cache_dir))
        total = len(paths)
        if cached == total:
            text = (f"The features of all {total} stories are in the feature cache: a resume skips the extraction "
                    "and fits the layers again.")
        else:
            text = (f"The features of {cached} of {total} stories are in the feature cache: a resume computes the "
                    f"other {total - cached} and then fits the layers.")
        return ResumeReport(cached, total, text)
    features = (status.stages or {}).get("features") or {}
    total, done = int(features.get("total", 0)), int(features.get("done", 0))
    if total:
        return ResumeReport(None, None, f"The feature extraction had reached {100.0 * done / total:.0f} % when the "
                                        "job stopped; finished stories are in the feature cache and are not "
                                        "computed again.")
    return ResumeReport(None, None, "The job stopped before extracting features: a resume starts from the beginning.")


def format_bytes(n_bytes: Optional[float]) -> str:
    """Human size with binary units: ``"512 B"``, ``"1.5 KiB"``, ``"3.2 MiB"``, ``"1.0 GiB"``."""
    if n_bytes is None or not np.isfinite(n_bytes):
        return "-"
    size = max(0.0, float(n_bytes))
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover - the loop always returns


def cache_entry_rows(entries: Sequence[Any]) -> list[dict[str, Any]]:
    """Table rows of feature-cache entries (``features.cache.CacheEntryInfo``): model, audio file
    (name only), size, windows, layers, created and the key."""
    return [{"model": e.model, "audio file": os.path.basename(e.audio_file) or e.audio_file,
             "size": format_bytes(e.bytes), "windows": e.n_windows, "layers": e.n_layers,
             "created": e.created, "key": e.key} for e in entries]


WORKER_COLUMNS = ("worker", "stories", "layers", "seconds", "running")


def worker_rows(workers: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows (sorted by worker address) of a Dask job's per-worker progress, for a table.

    workers: ``JobStatus.workers`` = ``{address: {"stories", "layers", "seconds", "running": [labels]}}``
    (see ``distributed.WorkerTracker``). Columns: worker, stories (done), layers (fitted),
    seconds (busy, float), running (the worker's unfinished task labels, comma-separated).
    """
    rows = []
    for address in sorted(workers):
        info = workers[address] or {}
        rows.append({"worker": str(address), "stories": int(info.get("stories", 0)),
                     "layers": int(info.get("layers", 0)), "seconds": round(float(info.get("seconds", 0.0)), 1),
                     "running": ", ".join(str(label) for label in info.get("running", []) or [])})
    return rows


def ceiling_target_caption(metrics: Mapping[str, Any]) -> str:
    """Which noise ceiling a layer's run used, from its recorded metrics (for the Results page).

    ``noise_ceiling_target``: "repeat_mean" (the test response is the mean of the repeats:
    ceiling of an averaged target) or "single_repeat"; ``test_repeat_mean_r`` and
    ``repeat_mean_min_r``: the rule that decided it (median voxel r with the repeat mean).
    """
    target = metrics.get("noise_ceiling_target")
    if target not in ("repeat_mean", "single_repeat"):
        return "Noise ceiling: not computed (the test story has no individual repeats)."
    what = ("the mean of the test story's repeats (the ceiling of an averaged target)" if target == "repeat_mean"
            else "a single repeat (the stored test response is not the mean of the repeats)")
    text = f"Noise ceiling for {what}."
    r, threshold = metrics.get("test_repeat_mean_r"), metrics.get("repeat_mean_min_r")
    if isinstance(r, (int, float)) and isinstance(threshold, (int, float)) and np.isfinite(r):
        relation = ">" if target == "repeat_mean" else "<="
        text += (f" The stored test response correlates r = {r:.4f} (median voxel) with the mean of the repeats "
                 f"({relation} {threshold:g}).")
    return text


# --------------------------------------------------------------------------- brain maps of any space
@dataclass(eq=False)
class SurfaceMap:
    """Per-column maps of a space on the brain surface they are drawn on (for the pages).

    surface: the :class:`~encoding_core.viz.BrainSurface` to draw on; label: its name for
    captions; note: how the columns got there (projection settings, from the recorded space);
    projected: True when the columns are voxels projected onto the vertices.
    """

    surface: Any
    label: str
    note: str
    projection: Any

    @property
    def projected(self) -> bool:
        return self.projection.matrix is not None

    def to_vertices(self, values: np.ndarray) -> np.ndarray:
        """(n_columns,) -> (n_vertices,), left then right (NaN where a vertex has no sample)."""
        return self.projection.to_vertices(values)

    def thresholded(self, values: np.ndarray, significant_mask: Optional[np.ndarray] = None,
                    min_value: Optional[float] = None) -> np.ndarray:
        """The thresholded map on the vertices, NaN where hidden (see ``SpaceProjection.thresholded``)."""
        return self.projection.thresholded(values, significant_mask, min_value)


def map_surface(space: Space, cache_dir: Optional[str] = None) -> Optional[SurfaceMap]:
    """Where the maps of ``space`` are drawn: fsaverage5 (native or projected from an MNI152 volume)
    or a subject's own inflated cortex; None when no surface is known (a glass brain is then the
    last resort for a volume of unknown template). The projection matrix is cached under
    ``<cache_dir>/projection``. Raises SpaceMismatchError when a volume marked MNI is not MNI-like.
    """
    from encoding_core import viz
    from encoding_core.assembly.spaces import space_projection

    projection = space_projection(space, cache_dir=os.path.join(cache_dir, "projection") if cache_dir else None)
    if projection is None:
        return None
    if projection.draw_meshes is None:
        surface = viz.fsaverage5_surface()
    else:
        surface = viz.BrainSurface(projection.label, projection.draw_meshes, projection.shading)
    return SurfaceMap(surface=surface, label=projection.label, note=projection.note, projection=projection)


def glass_brain_allowed(space: Space) -> bool:
    """True when a glass brain is the best picture left: a volume with a mask and an affine whose
    template is unknown (a known non-MNI template would put it on the wrong brain)."""
    return space.kind == "volume" and space.mask is not None and space.affine is not None and space.template is None


def no_map_reason(space: Space) -> str:
    """Why a space has no brain map, and what would give it one (for an info box)."""
    if space.kind == "volume" and space.template and not space.is_mni:
        return (f"This volume is in {space.template} space and no surface for it is known, so there is no brain map "
                "(drawing it on an MNI brain would put it on the wrong brain). For LeBel data, load the dataset "
                "folder with its derivative/pycortex-db to draw on the subject's own cortex.")
    if space.kind == "surface":
        return f"Maps are drawn on fsaverage5 only (it ships with nilearn); this space is {space.describe()}."
    return (f"This space is {space.describe()}: without a known surface or a volume mask and affine there is no brain "
            "map.")


def project_assembly_to_file(assembly: Assembly, path: Any, *, source_template: Optional[str] = None,
                             cache_dir: Optional[str] = None) -> Any:
    """Project an MNI152 volume assembly onto fsaverage5 and save it (native .h5); returns the path.

    source_template: the template to assume when the space records none (the user ticked it).
    """
    from encoding_core.assembly.spaces import project_assembly

    projected = project_assembly(assembly, source_template=source_template,
                                 cache_dir=os.path.join(cache_dir, "projection") if cache_dir else None)
    return save_assembly(projected, path)


BASELINE_SPACES = ("wordrate", "phonemerate", "envelope", "logmel")
"""Feature spaces the Setup page offers next to the Model page's features."""
MODEL_SPACE = "model"
"""The Setup page's name for the Model page's features as a feature space."""


def feature_space_choices(config: ExperimentConfig) -> dict[str, str]:
    """{space name: label} the Setup page offers: the Model page's features (``model``) and the baselines."""
    model = MODALITY_LABELS.get(config.features.modality, config.features.modality)
    choices = {MODEL_SPACE: f"{model} ({config.features.model_name})" if config.features.modality in
               ("speech", "language_model") else model}
    for modality in BASELINE_SPACES:
        if modality != config.features.modality:
            choices[modality] = MODALITY_LABELS[modality]
    return choices


def build_feature_spaces(config: ExperimentConfig, picked: Sequence[str], model_layer: int = 0) -> list:
    """``[FeatureSpaceConfig]`` for the picked names (``feature_space_choices`` keys, in that order):
    ``model`` is a copy of ``config.features`` at ``model_layer``; a baseline keeps the Model page's
    shared settings (sample rate, cache dtype) and its own defaults."""
    spaces = []
    for name in picked:
        if name == MODEL_SPACE:
            spaces.append(FeatureSpaceConfig(name, int(model_layer), copy.deepcopy(config.features)))
        elif name in BASELINE_SPACES:
            features = FeatureConfig(modality=name, target_sample_rate=config.features.target_sample_rate,
                                     cache_dtype=config.features.cache_dtype)
            spaces.append(FeatureSpaceConfig(name, 0, features))
        else:
            raise InputError(f"Unknown feature space {name!r}; choose from {[MODEL_SPACE, *BASELINE_SPACES]}.")
    return spaces


def is_partition_run(metrics: Mapping[str, Any]) -> bool:
    """Whether a layer's metrics come from a joint feature-space fit with a variance partition."""
    return metrics.get("banded_mode") == "joint" and bool(metrics.get("partitioned"))


def partition_map_labels(metrics: Mapping[str, Any]) -> dict[str, str]:
    """{stored map name: label} of a joint run, built from its recorded spaces (never typed)."""
    from encoding_core.experiment.feature_spaces import partition_map_names

    names = list(metrics.get("feature_spaces", []))
    labels = {}
    for key, map_name in partition_map_names(names).items():  # the names the run stored its maps under
        if len(key) == 1:
            labels[map_name] = f"unique to {key[0]}"
        elif len(key) < len(names):
            labels[map_name] = f"shared by {', '.join(key[:-1])} and {key[-1]} only"
        else:
            labels[map_name] = ("shared by " + " and ".join(names) if len(names) == 2
                                else "shared by all of " + ", ".join(names))
    labels["joint_r2"] = "joint model (" + " + ".join(names) + ")"
    return labels


def partition_region_rows(arrays: Mapping[str, np.ndarray], metrics: Mapping[str, Any],
                          regions: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Mean r² of each partition map over each region (bool mask over the run's voxels), one row per region
    (``region``, ``n_voxels``, then one key per map of :func:`partition_map_labels`, except the joint);
    regions whose mask does not match the run's voxels are skipped."""
    maps = [k for k in partition_map_labels(metrics) if k != "joint_r2" and k in arrays]
    n = np.asarray(arrays["joint_r2"]).shape[0]
    rows = []
    for region, mask in regions.items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (n,) or not mask.any():
            continue
        row: dict[str, Any] = {"region": region, "n_voxels": int(mask.sum())}
        row.update({k: float(np.nanmean(np.asarray(arrays[k], dtype=np.float64)[mask])) for k in maps})
        row["joint_r2"] = float(np.nanmean(np.asarray(arrays["joint_r2"], dtype=np.float64)[mask]))
        rows.append(row)
    return rows


def per_voxel_columns(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The 1-D per-voxel arrays of a layer (same length as ``correlations``), in a stable order."""
    n = np.asarray(arrays["correlations"]).shape[0]
    return {k: np.asarray(v) for k, v in sorted(arrays.items())
            if np.asarray(v).ndim == 1 and np.asarray(v).shape[0] == n}


def per_voxel_csv(arrays: Mapping[str, np.ndarray], metrics: Optional[Mapping[str, Any]] = None) -> bytes:
    """CSV bytes: a ``voxel`` index column then one column per per-voxel array.

    With the layer's ``metrics``, ``#`` comment lines first say what the p-value columns are
    (from the recorded settings, :func:`export_labels`); read with ``pandas.read_csv(..., comment="#")``.
    """
    columns = per_voxel_columns(arrays)
    n = next(iter(columns.values())).shape[0]
    buffer = io.StringIO()
    for key, text in (export_labels(metrics) if metrics else {}).items():
        buffer.write(f"# {key}: {text}\n")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["voxel", *columns])
    table = np.column_stack([np.arange(n)] + [c.astype(np.float64) for c in columns.values()])
    fmt = ["%d"] + ["%.7g"] * len(columns)
    np.savetxt(buffer, table, delimiter=",", fmt=fmt)
    return buffer.getvalue().encode("utf-8")


def per_voxel_npz(arrays: Mapping[str, np.ndarray], metrics: Optional[Mapping[str, Any]] = None) -> bytes:
    """Compressed NPZ bytes of the per-voxel arrays (no pickles).

    With the layer's ``metrics``, one unicode string per label of :func:`export_labels` is
    added as ``label_<key>`` (e.g. ``label_p_values``) and the recorded significance settings
    as JSON text in ``significance_settings_json``.
    """
    import json

    payload = {k: np.asarray(v) for k, v in arrays.items()}
    if metrics:
        payload.update({f"label_{key}": np.array(text) for key, text in export_labels(metrics).items()})
        if metrics.get("significance"):
            payload["significance_settings_json"] = np.array(json.dumps(metrics["significance"]))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **payload)
    return buffer.getvalue()


# =======================================================================================
# Statistics and summaries of a run (labels built from the recorded settings, never typed)
# =======================================================================================
def describe_planned_test(config: ExperimentConfig) -> str:
    """The label of the significance test a config will run (Setup page, before any run)."""
    from encoding_core.stats.significance import describe_test, planned_settings

    stats = config.stats
    return describe_test(planned_settings(stats.test, stats.alternative, stats.block_length, stats.min_block_s,
                                          stats.n_permutations))


def significance_label(metrics: Mapping[str, Any], config: Optional[ExperimentConfig] = None) -> str:
    """The label of the test a layer's p-values come from, built from its recorded settings.

    ``metrics["significance"]`` (runs since the calibrated tests) through
    :func:`~encoding_core.stats.significance.describe_test`; older runs recorded only the
    name ("block_permutation" / "parametric") and their config, which are described as run.
    """
    from encoding_core.stats.significance import describe_test, planned_settings

    settings = metrics.get("significance")
    if isinstance(settings, Mapping) and settings.get("test"):
        return describe_test(dict(settings))
    legacy = metrics.get("significance_test")
    stats = config.stats if config is not None else None
    if legacy == "block_permutation":
        block = getattr(stats, "block_length", None) or 10
        text = describe_test(planned_settings("block_permutation", "greater", block_length=int(block),
                                              n_permutations=int(getattr(stats, "n_permutations", 1000))))
        return text + " (recorded before the calibrated tests: fixed blocks can be liberal)"
    if legacy == "parametric":
        return describe_test(planned_settings("parametric_iid", "two-sided"))
    return str(legacy or "unknown test")


def fdr_label(metrics: Mapping[str, Any], config: Optional[ExperimentConfig] = None) -> str:
    """e.g. "Benjamini-Hochberg FDR q = 0.05 over 20484 voxels" from the recorded settings."""
    settings = metrics.get("significance") or {}
    q = settings.get("fdr_q", getattr(getattr(config, "stats", None), "fdr_q", None))
    n = settings.get("n_voxels", metrics.get("n_voxels"))
    text = "Benjamini–Hochberg FDR" + (f" q = {float(q):g}" if q is not None else "")
    return text + (f" over {int(n)} voxels" if n is not None else "")


def export_labels(metrics: Mapping[str, Any], config: Optional[ExperimentConfig] = None) -> dict[str, str]:
    """What the p-value columns of a layer's downloads are, from the recorded settings.

    Empty when the layer recorded no test (neither ``significance`` nor ``significance_test``).
    """
    if not metrics.get("significance") and not metrics.get("significance_test"):
        return {}
    labels = {"p_values": significance_label(metrics, config),
              "corrected_p_values": f"the p_values adjusted by {fdr_label(metrics, config)}",
              "significant_mask": f"corrected_p_values <= q ({fdr_label(metrics, config)})"}
    settings = metrics.get("significance")
    if isinstance(settings, Mapping) and settings.get("test") and settings.get("test") != "parametric_iid":
        from encoding_core.stats.significance import describe_test, planned_settings

        labels["parametric_iid_p_values"] = ("for comparison only: " + describe_test(
            planned_settings("parametric_iid", settings.get("alternative", "greater"))))
    return labels


def fallback_caption(metrics: Mapping[str, Any], config: Optional[ExperimentConfig] = None) -> tuple[Optional[float], str]:
    """(r threshold or None, caption) for a layer where no voxel survives FDR.

    The threshold is the recorded permutation-null rule (``metrics["fallback_threshold"]``);
    None when none could be derived (the caption says why) or for runs that did not record one.
    """
    head = f"No voxel survives {fdr_label(metrics, config)} in this layer"
    rule = metrics.get("fallback_threshold")
    if isinstance(rule, Mapping) and rule.get("available"):
        caveats = "".join(f" Note: {w}" for w in rule.get("warnings") or [])
        return float(rule["r_threshold"]), (f"{head}. The map shows {rule['label']}: voxels above it are "
                                            f"significant with that family-wise error rate.{caveats}")
    if isinstance(rule, Mapping):
        return None, (f"{head}, and no threshold could be derived from a permutation null: {rule.get('reason')} "
                      "The map shows every voxel at or above the minimum r you choose (not a significance "
                      "threshold).")
    return None, (f"{head}; this run recorded no permutation-null threshold. The map shows every voxel at or above "
                  "the minimum r you choose (not a significance threshold).")


def best_layer_choice(summary: Mapping[str, Any], metrics_by_layer: Mapping[int, Mapping[str, Any]]
                      ) -> tuple[int, str]:
    """(layer to open on, the rule's name) from a run's summary (runs before the rule: highest median r)."""
    rule = summary.get("best_layer_rule") if isinstance(summary, Mapping) else None
    layers = sorted(int(k) for k in metrics_by_layer)
    if isinstance(rule, Mapping) and rule.get("best_layer") is not None and int(rule["best_layer"]) in layers:
        return int(rule["best_layer"]), str(rule["label"])
    medians = {k: float(metrics_by_layer[k].get("median_score", np.nan)) for k in layers}
    finite = {k: v for k, v in medians.items() if np.isfinite(v)}
    return (max(finite, key=finite.get) if finite else layers[0]), "median r over all voxels (whole brain)"


def normalized_caption(metrics: Mapping[str, Any]) -> Optional[str]:
    """e.g. "Median r / noise ceiling 0.62 over the 1234 voxels with a usable ceiling (>= 0.1)"; None without."""
    n = metrics.get("n_normalized_voxels")
    median = metrics.get("median_normalized_score")
    if not n or median is None or not np.isfinite(median):
        return None
    from encoding_core.stats.noise_ceiling import MIN_CEILING

    where = f" (test story {metrics['noise_ceiling_story']})" if metrics.get("mode") == "cv" and \
        metrics.get("noise_ceiling_story") else ""
    return (f"Median r / noise ceiling{where}: {median:.2f} over the {int(n)} of {metrics.get('n_voxels', '?')} "
            f"voxels with a usable ceiling (ceiling r ≥ {MIN_CEILING:g}); the others have no normalised value.")


def alpha_summary(metrics: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    """A layer's alpha diagnostics (counts per alpha, mean CV score per alpha, warnings), or None."""
    diagnostics = metrics.get("alpha_diagnostics")
    return dict(diagnostics) if isinstance(diagnostics, Mapping) else None


def _is_demo_run(run: Any) -> bool:
    """The SIMULATED demo (its planted regions are the ground truth): simulated and assembly path "demo"."""
    return bool(run.simulated) and str(run.config.assembly.path).strip().lower() == "demo" and \
        int(run.meta.get("n_voxels", 20484) or 20484) == 20484


def region_masks_for_run(run: Any) -> tuple[Optional[dict[str, np.ndarray]], str]:
    """({region: (n_voxels,) bool} or None, source or why none) for a run's per-region table.

    The demo (SIMULATED): its planted regions and the rest. A real run on fsaverage5: the
    Destrieux atlas when nilearn has it on disk (it is never downloaded here).
    """
    meta_voxels = int(run.meta.get("n_voxels", 0) or 0)
    space = run.space()
    if _is_demo_run(run):
        from encoding_core.demo.evaluate import planted_region_masks

        return planted_region_masks(), "the planted regions of the SIMULATED demo"
    if space.kind == "surface" and space.name == "fsaverage5":
        from encoding_core.viz.atlas import DESTRIEUX_DOWNLOAD_COMMAND, destrieux_regions

        regions = destrieux_regions()
        if regions is None or (meta_voxels and meta_voxels != 20484):
            return None, ("The Destrieux atlas is not on this machine (nilearn does not ship it). Fetch it once with "
                          f"a network: {DESTRIEUX_DOWNLOAD_COMMAND}")
        return regions, "the Destrieux atlas (nilearn, fsaverage5)"
    return None, f"No atlas for this run's space ({space.kind} {space.name})."


def region_rows(run: Any) -> tuple[list[dict[str, Any]], str]:
    """Rows (region, voxels, median r per layer, best layer) of a run and the regions' source."""
    from encoding_core.stats.summaries import region_medians

    regions, source = region_masks_for_run(run)
    if regions is None:
        return [], source
    layers = run.layers
    correlations = np.stack([run.arrays(layer)["correlations"] for layer in layers])
    rows = []
    for row in region_medians(layers, correlations, regions):
        flat = {"region": row["region"], "voxels": row["n_voxels"]}
        flat.update({f"layer {layer}": row["median_r"][str(layer)] for layer in layers})
        flat["best layer"] = row["best_layer"]
        rows.append(flat)
    return rows, source


def demo_ground_truth_rows(run: Any) -> list[dict[str, Any]]:
    """Per layer, significant vertices, precision and recall per planted region (demo runs only)."""
    if not _is_demo_run(run):
        return []
    from encoding_core.demo.evaluate import ground_truth_table

    return ground_truth_table(run.layers, [run.arrays(layer)["significant_mask"] for layer in run.layers])


__all__ = [
    "alpha_summary", "best_layer_choice", "demo_ground_truth_rows", "export_labels", "fallback_caption",
    "fdr_label", "normalized_caption", "region_masks_for_run", "region_rows", "significance_label",
    "ALTERNATIVE_NAMES", "TEST_NAMES", "ALTERNATIVES", "OUTER_FOLD_TYPES", "SIGNIFICANCE_TESTS", "describe_planned_test",
    "BANDED_MODES", "BASELINE_SPACES", "build_feature_spaces", "feature_space_choices", "FeatureSpaceConfig",
    "comparison_matrix", "comparison_table", "list_groups", "is_partition_run", "MODEL_SPACE",
    "partition_map_labels", "partition_region_rows",
    "apply_audio_map", "atomic_write_bytes", "cache_entry_rows", "ceiling_target_caption",
    "check_lebel_folder", "check_upload_size", "ChecklistStep", "clear_cache", "CONTEXT_TYPES",
    "copy_assembly", "custom_feature_files", "DataCheckReport", "DEFAULT_MODEL", "demo_config",
    "demo_preset_config", "DEMO_PRESETS", "downsample_kernel", "DOWNSAMPLE_METHODS", "EncodingCoreError",
    "estimate_cost", "estimate_word_feature_cost", "experiment_checklist", "experiment_to_script",
    "ExperimentConfig", "FeatureConfig", "FOLD_TYPES", "format_bytes", "format_seconds",
    "glass_brain_allowed", "ground_truth_maps", "is_cached", "JobManager", "language_model_facts",
    "layer_profile", "list_cache_entries", "list_lebel_stories", "list_lebel_subjects", "load_assembly",
    "load_audio", "load_settings", "map_audio", "map_surface", "MissingStoryFilesError", "MNI_TEMPLATE",
    "MODALITIES", "MODALITY_LABELS", "MODALITY_NEEDS", "model_facts", "MODES", "no_map_reason",
    "OOV_HANDLING", "parse_scheduler", "per_voxel_columns", "per_voxel_csv", "per_voxel_npz", "POOL_METHODS",
    "PRECISIONS", "project_assembly_to_file", "REFERENCE_ALPHAS", "resolve_user_path", "RunStore",
    "safe_upload_name", "save_assembly", "scheduler_label", "sliced_length", "Space", "studio_dirs",
    "StudioDirs", "SurfaceMap", "TINY_STRIDE_S", "trimming_preview", "TrimmingConfig", "WORKER_COLUMNS",
    "worker_rows", "ACTIVE_JOB_STATES", "job_eta_text", "job_progress", "job_label", "job_rows", "jobs_signature",
    "any_job_active", "ResumeReport", "resume_report", "how_it_works", "BF16_MIN_SPEEDUP", "PrecisionAdvice",
    "compare_precisions", "setup_warnings", "statistics_warnings", "MAX_DELAY_SPAN_S", "check_story_audio",
    "planted_region_masks",
]
