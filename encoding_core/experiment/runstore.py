"""The run store: one folder per experiment run under a results folder.

Layout of ``<results_dir>/<run_id>/`` (``run_id`` = ``YYYYmmdd-HHMMSS-<6 hex>``, generated
here and never taken from user text)::

    status.json          running | complete | failed | cancelled (+ pid, times, error)
    meta.json            name, created, subject, simulated, model, layers, mode, stories
    config.toml          the ExperimentConfig
    space.json           {"kind", "name", "template", "surfaces"}; space.npz holds mask/affine
                         for volume and subject_surface spaces and the subject's meshes
                         (``<type>__<hemi>__coordinates`` / ``__faces``), so the maps can be
                         drawn from the run alone
    layers/<L>/metrics.json   scalar metrics with the reference's keys
    layers/<L>/voxels.npz     per-voxel arrays (compressed, no pickles)
    layers/<L>/weights.npy    optional ridge weights (n_features, n_voxels)
    summary.json         per-layer summary + best layer
    best_layer.npz       best_layer_per_voxel (v,) int, best_correlation (v,)
    timings.json, versions.json

Every file is written atomically and ``status.json`` says ``complete`` only after every
other file is in place, so a run killed at any moment is never taken for a result: it is
listed as ``incomplete`` (its writer is gone) and :meth:`RunStore.load` refuses it.
"""
from __future__ import annotations

import datetime as _dt
import io
import json
import logging
import os
import re
import secrets
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np

from encoding_core.assembly.data_model import CorticalSurfaces, Space
from encoding_core.config import ExperimentConfig
from encoding_core.common.errors import AssemblyFormatError, InputError, StorageError
from encoding_core.common.storage import (atomic_write_bytes, atomic_write_text, create_unique_dir, ensure_dir,
    json_default, storage_error)

logger = logging.getLogger(__name__)

RUN_ID_PATTERN = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
COMPLETE, RUNNING, FAILED, CANCELLED, INCOMPLETE = "complete", "running", "failed", "cancelled", "incomplete"
VOXEL_ARRAY_KEYS = (
    "correlations", "r2", "p_values", "parametric_iid_p_values", "corrected_p_values", "significant_mask",
    "best_alphas", "noise_ceiling", "normalized_correlations",
)
"""Per-voxel arrays the pipeline writes for each layer (others, e.g. fold arrays and the
(n_alphas, n_voxels) ``cv_scores``, are allowed). ``p_values`` are those of the run's
significance test (``metrics["significance"]``), the ones BH-FDR corrected; runs written
before the calibrated tests hold ``permutation_p_values`` instead of ``parametric_iid_p_values``."""


def new_run_id(now: Optional[_dt.datetime] = None) -> str:
    """A fresh run id ``YYYYmmdd-HHMMSS-<6 random hex>`` (local time)."""
    now = now or _dt.datetime.now()
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it has the generated form, else raise InputError."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise InputError(f"{run_id!r} is not a run id (expected YYYYmmdd-HHMMSS-xxxxxx, as listed by the run store).")
    return run_id


def process_start_ticks(pid: int) -> Optional[int]:
    """Start time of a live, non-zombie process in clock ticks (Linux), or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        if not Path("/proc/self/stat").exists():  # not Linux: fall back to a signal probe
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return None
            except PermissionError:
                return 0
            return 0
        return None
    fields = text[text.rfind(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def process_alive(pid: Optional[int], start_ticks: Optional[int] = None) -> bool:
    """True if ``pid`` is a live process (and, when given, the same one that started then)."""
    if not pid:
        return False
    ticks = process_start_ticks(int(pid))
    if ticks is None:
        return False
    return start_ticks is None or ticks == 0 or ticks == start_ticks


def package_versions() -> dict[str, str]:
    """Versions of python and the packages that change the numbers (read without importing them)."""
    from encoding_core import __version__

    versions = {"python": sys.version.split()[0], "encoding_core": __version__}
    for name in ("numpy", "scipy", "torch", "transformers", "scikit-learn", "h5py", "librosa"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


_json_default = json_default


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default, allow_nan=True))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("Cannot read %s: %s", path, exc)
        return None


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


def _now_iso() -> str:
    return _dt.datetime.now().isoformat(timespec="microseconds")


def _layer_name(layer: int) -> str:
    return str(int(layer))


@dataclass
class RunInfo:
    """One row of :meth:`RunStore.list` (cheap: read from small json files)."""

    run_id: str
    name: str
    created: str
    status: str
    model_name: str
    layers: list[int]
    best_median_r: Optional[float]
    best_layer: Optional[int]
    simulated: bool
    subject: str
    path: Path

    @property
    def is_complete(self) -> bool:
        return self.status == COMPLETE


class RunWriter:
    """Writes one run's files; create it with :meth:`RunStore.create`."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self._layers: list[int] = []

    def _status(self, status: str, **extra: Any) -> None:
        pid = os.getpid()
        record = {"status": status, "pid": pid, "pid_start": process_start_ticks(pid), "updated": _now_iso()}
        record.update(extra)
        _write_json(self.path / "status.json", record)

    def write_space(self, space: Space) -> None:
        """Record the column space for the Results page: kind/name/template; mask and affine for
        volumes; for a subject surface space also its meshes and projection settings."""
        record: dict[str, Any] = {"kind": space.kind, "name": space.name, "template": space.template}
        arrays: dict[str, np.ndarray] = {}
        if space.kind in ("volume", "subject_surface") and space.mask is not None:
            arrays["mask"] = np.asarray(space.mask, dtype=bool)
            if space.affine is not None:
                arrays["affine"] = np.asarray(space.affine, dtype=np.float64)
        if space.surfaces is not None:
            surfaces = space.surfaces
            record["surfaces"] = {"subject": surfaces.subject, "transform": surfaces.transform,
                                  "mask_type": surfaces.mask_type, "source": surfaces.source,
                                  "sampling": surfaces.sampling}
            for kind, hemis in surfaces.meshes.items():
                for hemi, (coords, faces) in hemis.items():
                    arrays[f"{kind}__{hemi}__coordinates"] = coords
                    arrays[f"{kind}__{hemi}__faces"] = faces
        _write_json(self.path / "space.json", record)
        if arrays:
            atomic_write_bytes(self.path / "space.npz", _npz_bytes(arrays))

    def write_layer(self, layer: int, metrics: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                    weights: Optional[np.ndarray] = None) -> Path:
        """Write ``layers/<layer>/`` : metrics.json (scalars), voxels.npz (per-voxel arrays), weights.npy.

        ``arrays`` values must be numeric/bool arrays (no objects; they are saved without pickles).
        """
        folder = ensure_dir(self.path / "layers" / _layer_name(layer))
        for key, value in arrays.items():
            if np.asarray(value).dtype == object:
                raise InputError(f"Layer {layer} array {key!r} has dtype object; only numeric arrays are stored.")
        atomic_write_bytes(folder / "voxels.npz", _npz_bytes(arrays))
        if weights is not None:
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(weights, dtype=np.float32), allow_pickle=False)
            atomic_write_bytes(folder / "weights.npy", buffer.getvalue())
        _write_json(folder / "metrics.json", dict(metrics, layer=int(layer)))
        self._layers.append(int(layer))
        return folder

    def write_best_layer(self, best_layer_per_voxel: np.ndarray, best_correlation: np.ndarray) -> None:
        atomic_write_bytes(self.path / "best_layer.npz", _npz_bytes({
            "best_layer_per_voxel": np.asarray(best_layer_per_voxel, dtype=np.int32),
            "best_correlation": np.asarray(best_correlation, dtype=np.float32),
        }))

    def finish(self, summary: Mapping[str, Any], timings: Mapping[str, float]) -> None:
        """Write summary, timings and versions, then mark the run complete (last, atomically)."""
        _write_json(self.path / "summary.json", summary)
        _write_json(self.path / "timings.json", dict(timings))
        _write_json(self.path / "versions.json", package_versions())
        self._status(COMPLETE, finished=_now_iso())
        logger.info("Run %s complete in %s", self.run_id, self.path)

    def fail(self, error: Union[BaseException, str], cancelled: bool = False) -> None:
        """Mark the run failed (or cancelled); never raises (it runs while handling an error)."""
        try:
            self._status(CANCELLED if cancelled else FAILED, error=str(error), finished=_now_iso())
        except StorageError as exc:
            logger.error("Could not mark run %s as failed: %s", self.run_id, exc)


def _space_from_arrays(kind: str, info: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Space:
    """A volume or subject surface Space from space.json (``info``) and space.npz (``arrays``)."""
    affine = arrays.get("affine")
    if kind == "volume":
        return Space.volume(arrays["mask"], affine, info.get("template"))
    record = info.get("surfaces") or {}
    meshes: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for key in arrays:
        parts = key.split("__")
        if len(parts) == 3 and parts[2] == "coordinates":
            meshes.setdefault(parts[0], {})[parts[1]] = (arrays[key], arrays[f"{parts[0]}__{parts[1]}__faces"])
    surfaces = CorticalSurfaces(subject=str(record.get("subject", info.get("name", ""))), meshes=meshes,
                                transform=str(record.get("transform", "")), mask_type=str(record.get("mask_type", "")),
                                source=str(record.get("source", "")), sampling=dict(record.get("sampling") or {}))
    return Space.subject_surface(str(info.get("name", "")), arrays["mask"], affine, surfaces)


class Run:
    """A completed run loaded from disk. Arrays are read on first use (npz, no pickles)."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self.status: dict[str, Any] = _read_json(path / "status.json") or {}
        self.meta: dict[str, Any] = _read_json(path / "meta.json") or {}
        self.summary: dict[str, Any] = _read_json(path / "summary.json") or {}
        self.timings: dict[str, float] = _read_json(path / "timings.json") or {}
        self.versions: dict[str, str] = _read_json(path / "versions.json") or {}
        self._arrays: dict[int, dict[str, np.ndarray]] = {}
        self._config: Optional[ExperimentConfig] = None

    @property
    def config(self) -> ExperimentConfig:
        if self._config is None:
            self._config = ExperimentConfig.load(self.path / "config.toml")
        return self._config

    @property
    def layers(self) -> list[int]:
        folder = self.path / "layers"
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / "metrics.json").is_file())

    @property
    def simulated(self) -> bool:
        return bool(self.meta.get("simulated", False))

    @property
    def subject(self) -> str:
        return str(self.meta.get("subject", ""))

    def space(self) -> Space:
        """The run's column space (mask, affine and subject meshes restored from space.npz)."""
        info = _read_json(self.path / "space.json") or {}
        kind = info.get("kind", "unknown")
        if kind == "surface":
            return Space.surface(info.get("name", ""))
        if kind in ("volume", "subject_surface") and (self.path / "space.npz").is_file():
            try:
                with np.load(self.path / "space.npz", allow_pickle=False) as data:
                    arrays = {k: data[k] for k in data.files}
            except (OSError, ValueError) as exc:
                raise StorageError(f"{self.path / 'space.npz'} is unreadable ({exc}); delete run {self.run_id}.") \
                    from None
            try:
                return _space_from_arrays(kind, info, arrays)
            except (KeyError, AssemblyFormatError) as exc:
                raise StorageError(f"{self.path / 'space.npz'} does not hold a complete {kind} space ({exc}); "
                                   f"delete run {self.run_id}.") from None
        return Space()

    def _layer_dir(self, layer: int) -> Path:
        folder = self.path / "layers" / _layer_name(layer)
        if not (folder / "metrics.json").is_file():
            raise InputError(f"Run {self.run_id} has no layer {layer}; it has layers {self.layers}.")
        return folder

    def metrics(self, layer: int) -> dict[str, Any]:
        """The scalar metrics of one layer (reference keys: median_score, mean_score, ...)."""
        data = _read_json(self._layer_dir(layer) / "metrics.json")
        if data is None:
            raise StorageError(f"{self._layer_dir(layer) / 'metrics.json'} is unreadable; delete run {self.run_id}.")
        return data

    def arrays(self, layer: int) -> dict[str, np.ndarray]:
        """Per-voxel arrays of one layer, e.g. ``arrays(3)["correlations"]`` (n_voxels,)."""
        if layer not in self._arrays:
            path = self._layer_dir(layer) / "voxels.npz"
            try:
                with np.load(path, allow_pickle=False) as data:
                    self._arrays[layer] = {k: data[k] for k in data.files}
            except (OSError, ValueError) as exc:
                raise StorageError(f"{path} is unreadable ({exc}); delete run {self.run_id}.") from None
        return self._arrays[layer]

    def weights(self, layer: int) -> Optional[np.ndarray]:
        path = self._layer_dir(layer) / "weights.npy"
        return np.load(path, allow_pickle=False) if path.is_file() else None

    def best_layer_per_voxel(self) -> np.ndarray:
        """(n_voxels,) int: the layer with the highest test correlation for each voxel."""
        path = self.path / "best_layer.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                return data["best_layer_per_voxel"]
        layers = self.layers
        stacked = np.stack([self.arrays(layer)["correlations"] for layer in layers])
        return np.asarray(layers)[np.nanargmax(np.nan_to_num(stacked, nan=-np.inf), axis=0)]

    def __repr__(self) -> str:
        return f"<Run {self.run_id} layers={self.layers} status={self.status.get('status')}>"


class RunStore:
    """All runs under one results folder."""

    def __init__(self, results_dir: Union[str, Path] = "results") -> None:
        self.results_dir = Path(results_dir).expanduser().absolute()

    # -- writing ------------------------------------------------------------------
    def create(self, config: ExperimentConfig, meta: Optional[Mapping[str, Any]] = None) -> RunWriter:
        """Create a new run folder (exclusive mkdir: concurrent jobs never share one) and its first files."""
        run_id, path = create_unique_dir(self.results_dir, new_run_id)
        writer = RunWriter(path, run_id)
        writer._status(RUNNING, started=_now_iso())
        record = {"name": config.name, "created": _now_iso(), "model_name": config.features.model_name,
                  "mode": config.ridge.mode}
        record.update(dict(meta or {}))
        _write_json(path / "meta.json", record)
        config.save(path / "config.toml")
        logger.info("Created run %s", path)
        return writer

    # -- reading ------------------------------------------------------------------
    def _run_path(self, run_id: str) -> Path:
        check_run_id(run_id)
        path = self.results_dir / run_id
        if path.is_symlink():
            raise InputError(f"{path} is a symbolic link, not a run folder; remove it by hand.")
        resolved = path.resolve()
        if resolved.parent != self.results_dir.resolve():
            raise InputError(f"Run {run_id!r} resolves outside the results folder {self.results_dir}.")
        return path

    def status_of(self, run_id: str) -> str:
        """complete / running / failed / cancelled, or incomplete (writer gone) / missing."""
        path = self._run_path(run_id)
        record = _read_json(path / "status.json")
        if record is None:
            return INCOMPLETE if path.is_dir() else "missing"
        status = record.get("status", INCOMPLETE)
        if status == RUNNING and not process_alive(record.get("pid"), record.get("pid_start")):
            return INCOMPLETE
        return status

    def list(self) -> list[RunInfo]:
        """Every run folder, newest first; incomplete and failed runs are listed with that status."""
        if not self.results_dir.is_dir():
            return []
        infos = []
        for path in self.results_dir.iterdir():
            if not RUN_ID_PATTERN.fullmatch(path.name) or path.is_symlink() or not path.is_dir():
                continue
            meta = _read_json(path / "meta.json") or {}
            status = self.status_of(path.name)
            summary = (_read_json(path / "summary.json") or {}) if status == COMPLETE else {}
            best = summary.get("best_layer")
            best_r = summary.get("layers", {}).get(str(best), {}).get("median_r") if best is not None else None
            infos.append(RunInfo(
                run_id=path.name, name=str(meta.get("name", "")), created=str(meta.get("created", "")),
                status=status, model_name=str(meta.get("model_name", "")),
                layers=[int(x) for x in meta.get("layers", [])], best_median_r=best_r, best_layer=best,
                simulated=bool(meta.get("simulated", False)), subject=str(meta.get("subject", "")), path=path,
            ))
        infos.sort(key=lambda info: (info.created, info.run_id), reverse=True)  # ids of one second tie
        return infos

    def load(self, run_id: str, allow_incomplete: bool = False) -> Run:
        """Load a complete run; an incomplete/failed one raises InputError unless ``allow_incomplete``."""
        path = self._run_path(run_id)
        if not path.is_dir():
            raise InputError(f"There is no run {run_id} in {self.results_dir}.")
        status = self.status_of(run_id)
        if status != COMPLETE and not allow_incomplete:
            raise InputError(f"Run {run_id} is {status}, not complete; its results cannot be used. "
                             f"Delete it or run the experiment again.")
        return Run(path, run_id)

    def delete(self, run_id: str) -> None:
        """Delete one run folder (id validated, symlinks refused, never outside results_dir)."""
        path = self._run_path(run_id)
        if not path.is_dir():
            raise InputError(f"There is no run {run_id} in {self.results_dir}.")
        trash = self.results_dir / f".deleting-{run_id}-{secrets.token_hex(3)}"
        try:
            os.rename(path, trash)  # the run disappears from listings at once
            shutil.rmtree(trash)
        except OSError as exc:
            raise storage_error(path, exc) from None
        logger.info("Deleted run %s", run_id)
