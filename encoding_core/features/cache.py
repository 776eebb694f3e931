"""On-disk feature cache: one folder per (story audio content, model configuration).

Layout: ``<cache_dir>/speech_features/<key>/`` (word-level modalities: ``lm_features``,
``embedding_features``, same entry layout, see :func:`load_or_compute_fields`) with ``meta.json`` (full key, shapes, sizes and
sha256 of every file), ``times.npy`` and one ``layer_NNN.npy`` per encoder layer, each readable
alone with ``np.load(mmap_mode="r")``. No pickle anywhere (``allow_pickle=False``, JSON).

The key hashes the model name and weights identity, every setting that changes the numbers
and the audio file's CONTENT (sha256 of its bytes), never just its path. A corrupt, truncated
or mismatching entry is logged, removed and recomputed. Entries are written in a temporary
folder and renamed into place; a per-key file lock makes concurrent processes compute once.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import time
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import numpy as np

from encoding_core.config import FeatureConfig
from encoding_core.common.errors import AudioError, CacheError, StorageError
from encoding_core.common.storage import atomic_output, atomic_write_text, ensure_dir, staging_dir, storage_error

if TYPE_CHECKING:
    from encoding_core.features.base import StoryFeatures

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
SUBDIR = "speech_features"
SUBDIRS = (SUBDIR, "lm_features", "embedding_features", "baseline_features")
"""Every modality's cache folder under ``cache_dir`` (listed and cleared together)."""
META = "meta.json"
KEY_SETTINGS = ("chunk_size", "context_size", "pool", "target_sample_rate", "include_early_windows",
                "context_only", "cache_dtype")
_hash_memo: dict[tuple[str, int, int], str] = {}
_verified: set[tuple[str, tuple[int, ...]]] = set()
_memo_lock = threading.Lock()

ComputeFn = Callable[[], "tuple[np.ndarray, np.ndarray, dict]"]


@dataclass(frozen=True)
class CacheEntryInfo:
    """One cache entry as listed for the app/CLI (bytes on disk, created as ISO time)."""

    key: str
    model: str
    audio_file: str
    n_windows: int
    n_layers: int
    bytes: int
    created: str
    path: str


def audio_content_hash(audio_path: Union[str, Path]) -> str:
    """sha256 of the file's bytes, memoised per process by (path, size, mtime)."""
    path = Path(audio_path).resolve()
    try:
        stat = path.stat()
    except OSError:
        raise AudioError(f"Audio file {audio_path} does not exist or cannot be read. "
                         "Fix: check the story's audio path.") from None
    memo_key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _memo_lock:
        if memo_key in _hash_memo:
            return _hash_memo[memo_key]
    digest = _file_sha256(path)
    with _memo_lock:
        _hash_memo[memo_key] = digest
    return digest


def _file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                sha.update(block)
    except OSError as exc:
        raise AudioError(f"Cannot read {path}: {exc.strerror}.") from None
    return sha.hexdigest()


def key_fields(audio_path: Union[str, Path], config: FeatureConfig) -> dict[str, Any]:
    """Everything that determines the cached numbers (JSON-serialisable)."""
    from encoding_core.features.models import planned_precision, resolve_model

    source = resolve_model(config.model_name)
    fields: dict[str, Any] = {"format": CACHE_FORMAT, "model_name": source.name,
                              "weights_identity": source.weights_identity,
                              "precision": planned_precision(config.precision, config.device)}
    for name in KEY_SETTINGS:
        value = getattr(config, name)
        fields[name] = float(value) if isinstance(value, float) else value
    fields["audio_sha256"] = audio_content_hash(audio_path)
    return fields


def cache_key(fields: dict[str, Any]) -> str:
    """32-hex-digit key of a key-fields dict."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _root(cache_dir: Union[str, Path], subdir: str = SUBDIR) -> Path:
    return Path(cache_dir) / subdir


def is_cached(audio_path: Union[str, Path], feature_config: FeatureConfig, cache_dir: Union[str, Path, None]) -> bool:
    """True if a valid entry for this audio content and configuration exists."""
    if cache_dir is None:
        return False
    from encoding_core.features.base import coerce_feature_config

    config, _ = coerce_feature_config(feature_config)
    fields = key_fields(audio_path, config)
    try:
        _open_entry(_root(cache_dir) / cache_key(fields), fields)
        return True
    except CacheError:
        return False


def load_or_compute(audio_path: Union[str, Path], config: FeatureConfig, cache_dir: Union[str, Path, None],
                    compute: ComputeFn) -> "StoryFeatures":
    """The cached features of a story, or ``compute()`` -> (layers (L, n, D), times (n,), extra) stored.

    With cache_dir None nothing is read or written.
    """
    return load_or_compute_fields(key_fields(audio_path, config), cache_dir, compute, subdir=SUBDIR,
                                  source=str(Path(audio_path).resolve()), cache_dtype=config.cache_dtype)


def load_or_compute_fields(fields: dict[str, Any], cache_dir: Union[str, Path, None], compute: ComputeFn, *,
                           subdir: str, source: str, cache_dtype: str = "float32") -> "StoryFeatures":
    """The entry keyed by ``fields`` (every input that determines the numbers, JSON-serialisable:
    content hashes, never paths alone) under ``cache_dir/subdir``, or ``compute()`` -> (layers
    (L, n, D), times (n,), extra) stored atomically under a file lock. ``source`` names the input
    in the entry's metadata (a file or a story). With cache_dir None nothing is read or written.
    """
    from filelock import FileLock

    from encoding_core.features.base import StoryFeatures

    key = cache_key(fields)
    label = Path(source).name or source
    if cache_dir is None:
        layers, times, extra = compute()
        return _in_memory(layers, times, fields, key, cache_dtype, extra)
    root = _root(cache_dir, subdir)
    final = root / key
    try:
        lock_dir = ensure_dir(ensure_dir(root) / ".locks")
        lock = FileLock(str(lock_dir / f"{key}.lock"))
        lock.acquire()
    except (OSError, StorageError) as exc:  # read-only or full cache folder: a valid entry is still usable
        story = _try_open(final, fields)
        if story is not None:
            logger.info("Features of %s read from the read-only cache (%s).", label, key)
            return story
        raise (exc if isinstance(exc, StorageError) else storage_error(root / ".locks", exc)) from None
    try:
        story = _try_open(final, fields)
        if story is not None:
            logger.info("Features of %s read from the cache (%s).", label, key)
            return story
        layers, times, extra = compute()
        meta = _write_entry(root, final, key, fields, layers, times, cache_dtype, source, extra)
    finally:
        lock.release()
    data = [np.load(final / name, mmap_mode="r", allow_pickle=False) for name in _layer_names(meta["n_layers"])]
    return StoryFeatures(times=np.load(final / "times.npy", allow_pickle=False), layers_data=data,
                         model_name=fields["model_name"], key=key, from_cache=False, meta=meta)


def _in_memory(layers: np.ndarray, times: np.ndarray, fields: dict, key: str, cache_dtype: str,
               extra: dict) -> "StoryFeatures":
    from encoding_core.features.base import StoryFeatures

    stored = [np.ascontiguousarray(layer, dtype=cache_dtype) for layer in layers]
    return StoryFeatures(times=times, layers_data=stored, model_name=fields["model_name"], key=key,
                         from_cache=False, meta={"key_fields": fields, **extra})


def _layer_names(n_layers: int) -> list[str]:
    return [f"layer_{i:03d}.npy" for i in range(n_layers)]


def _try_open(folder: Path, fields: dict) -> Optional["StoryFeatures"]:
    if not folder.exists():
        return None
    try:
        return _open_entry(folder, fields)
    except CacheError as exc:
        logger.warning("Discarding feature cache entry %s: %s It will be recomputed.", folder, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return None


def _open_entry(folder: Path, fields: dict) -> "StoryFeatures":
    """Open and validate an entry (key, file sizes, sha256, shapes); CacheError if unusable."""
    from encoding_core.features.base import StoryFeatures

    meta_path = folder / META
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta_mtime = meta_path.stat().st_mtime_ns
    except (OSError, ValueError) as exc:
        raise CacheError(f"metadata {meta_path} is missing or unreadable ({exc}).") from None
    if meta.get("key_fields") != fields:
        raise CacheError("it was written for another configuration or audio file.")
    files = meta.get("files", {})
    expected = ["times.npy", *_layer_names(int(meta.get("n_layers", 0)))]
    if sorted(files) != sorted(expected):
        raise CacheError("its file list does not match its metadata.")
    stamps = [meta_mtime]
    for name, info in files.items():
        try:
            stat = (folder / name).stat()
        except OSError:
            raise CacheError(f"file {name} is missing.") from None
        if stat.st_size != info["bytes"]:
            raise CacheError(f"file {name} has {stat.st_size} bytes, expected {info['bytes']} (truncated?).")
        stamps.append(stat.st_mtime_ns)
    verified_key = (str(folder), tuple(stamps))  # checksums re-verified whenever any file changes
    if verified_key not in _verified:
        for name, info in files.items():
            if _file_sha256(folder / name) != info["sha256"]:
                raise CacheError(f"file {name} fails its checksum (corrupt).")
        _verified.add(verified_key)
    try:
        times = np.load(folder / "times.npy", allow_pickle=False)
        data = [np.load(folder / name, mmap_mode="r", allow_pickle=False) for name in expected[1:]]
    except (OSError, ValueError) as exc:
        raise CacheError(f"an array cannot be read ({exc}).") from None
    shape = (int(meta["n_windows"]), int(meta["dim"]))
    if times.shape != (shape[0],) or any(d.shape != shape or d.dtype != np.dtype(meta["dtype"]) for d in data):
        raise CacheError("array shapes or dtypes differ from the metadata.")
    return StoryFeatures(times=times, layers_data=data, model_name=meta["model_name"], key=meta["key"],
                         from_cache=True, meta=meta)


def _write_entry(root: Path, final: Path, key: str, fields: dict, layers: np.ndarray, times: np.ndarray,
                 cache_dtype: str, source: str, extra: dict) -> dict:
    """Write an entry in a temp folder, then rename it to ``final``; returns its metadata."""
    n_layers, n_windows, dim = layers.shape
    with staging_dir(root, f".tmp-{key}-", final) as tmp:
        files = {"times.npy": _save_npy(tmp / "times.npy", np.asarray(times, dtype=np.float64))}
        for name, layer in zip(_layer_names(n_layers), layers):
            files[name] = _save_npy(tmp / name, np.ascontiguousarray(layer, dtype=cache_dtype))
        meta = {"format": CACHE_FORMAT, "key": key, "key_fields": fields, "model_name": fields["model_name"],
                "audio_file": source, "n_windows": int(n_windows),
                "n_layers": int(n_layers), "dim": int(dim), "dtype": cache_dtype,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "files": files, "extra": extra}
        atomic_write_text(tmp / META, json.dumps(meta, indent=1))
        if final.exists():  # another writer got there first (e.g. no shared lock on this file system)
            try:
                _open_entry(final, fields)
                logger.info("Cache entry %s appeared meanwhile; keeping the existing one.", key)
                return json.loads((final / META).read_text(encoding="utf-8"))
            except CacheError:
                shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
    return meta


def _save_npy(path: Path, array: np.ndarray) -> dict[str, Any]:
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
    return {"bytes": path.stat().st_size, "sha256": _file_sha256(path)}


def list_cache_entries(cache_dir: Union[str, Path]) -> list[CacheEntryInfo]:
    """Entries in a cache folder (every modality), newest first (unreadable metadata: model '?')."""
    entries = []
    roots = [_root(cache_dir, sub) for sub in SUBDIRS if _root(cache_dir, sub).is_dir()]
    for folder in (f for root in roots for f in root.iterdir()):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        try:
            meta = json.loads((folder / META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        entries.append(CacheEntryInfo(key=folder.name, model=str(meta.get("model_name", "?")),
                                      audio_file=str(meta.get("audio_file", "?")),
                                      n_windows=int(meta.get("n_windows", 0)), n_layers=int(meta.get("n_layers", 0)),
                                      bytes=size, created=str(meta.get("created", "")), path=str(folder)))
    return sorted(entries, key=lambda e: e.created, reverse=True)


STALE_TEMP_SECONDS = 3600.0
"""Temp folders younger than this may belong to a running extraction and are kept."""


def _recently_modified(folder: Path, seconds: float) -> bool:
    try:
        return time.time() - folder.stat().st_mtime < seconds
    except OSError:
        return False


def clear_cache(cache_dir: Union[str, Path], keys: Optional[list[str]] = None) -> int:
    """Remove the given entries (all, and temp folders left over for an hour, when keys is None); returns how many."""
    removed = 0
    wanted = None if keys is None else set(keys)
    roots = [_root(cache_dir, sub) for sub in SUBDIRS if _root(cache_dir, sub).is_dir()]
    for folder in (f for root in roots for f in root.iterdir()):
        if not folder.is_dir() or folder.name == ".locks":
            continue
        is_temp = folder.name.startswith(".tmp-")
        if is_temp and _recently_modified(folder, STALE_TEMP_SECONDS):
            continue  # another process may be writing this entry right now
        if (wanted is None and (is_temp or not folder.name.startswith("."))) or (wanted and folder.name in wanted):
            try:
                shutil.rmtree(folder)
            except OSError as exc:
                raise storage_error(folder, exc) from None
            removed += int(not is_temp)
    return removed


def entry_info_dict(entry: CacheEntryInfo) -> dict[str, Any]:
    """A CacheEntryInfo as a plain dict (for tables)."""
    return asdict(entry)
