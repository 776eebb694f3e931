"""Which folders a browser user may read from, and where the app keeps its files.

Every path typed into the app goes through :func:`resolve_user_path`, which resolves it
strictly (following symlinks) and refuses anything outside the allowed data roots, so
``..`` or a symlink cannot escape them.

Allowed roots come from, in order (all are used together):

1. the environment variable ``ENCODING_STUDIO_DATA_ROOTS`` (``os.pathsep``-separated);
2. ``data_roots = [...]`` in an ``encoding_studio.toml`` file in the working folder
   (or the file named by ``ENCODING_STUDIO_CONFIG``);
3. when neither gives any root: the current folder and the user's home folder.

The app's own folders (see :func:`studio_dirs`) are always allowed too.

Environment variables for the app's folders (defaults relative to the working folder):
``ENCODING_STUDIO_HOME`` (base folder, default ``.``), ``ENCODING_STUDIO_RESULTS``
(``<home>/results``), ``ENCODING_STUDIO_CACHE`` (``<home>/cache``),
``ENCODING_STUDIO_JOBS`` (``<home>/.encoding_studio/jobs``), ``ENCODING_STUDIO_UPLOADS``
(``<home>/.encoding_studio/uploads``), ``ENCODING_STUDIO_MAX_UPLOAD_MB`` (upload cap, MB).
"""
from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from encoding_core.common.errors import ConfigError, InputError, PathNotAllowedError

logger = logging.getLogger(__name__)

CONFIG_FILE_NAME = "encoding_studio.toml"
DEFAULT_MAX_UPLOAD_MB = 200.0  # Streamlit's own server.maxUploadSize default


@dataclass(frozen=True)
class StudioDirs:
    """The app's folders: results (runs), feature cache, job records and uploads."""

    home: Path
    results: Path
    cache: Path
    jobs: Path
    uploads: Path


@dataclass(frozen=True)
class StudioSettings:
    """Settings from ``encoding_studio.toml`` and the environment."""

    data_roots: tuple[Path, ...]
    max_upload_mb: float


def studio_dirs(env: Optional[Mapping[str, str]] = None) -> StudioDirs:
    """The app's folders from ``ENCODING_STUDIO_*`` variables (absolute, not created)."""
    env = os.environ if env is None else env
    home = Path(env.get("ENCODING_STUDIO_HOME") or ".").expanduser().absolute()

    def pick(name: str, default: Path) -> Path:
        value = env.get(name)
        return Path(value).expanduser().absolute() if value else default

    return StudioDirs(
        home=home,
        results=pick("ENCODING_STUDIO_RESULTS", home / "results"),
        cache=pick("ENCODING_STUDIO_CACHE", home / "cache"),
        jobs=pick("ENCODING_STUDIO_JOBS", home / ".encoding_studio" / "jobs"),
        uploads=pick("ENCODING_STUDIO_UPLOADS", home / ".encoding_studio" / "uploads"),
    )


def _read_config_file(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read {path}: {exc}. Fix the file's permissions or remove it.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix the syntax, e.g. data_roots = [\"/data\"].") from None


def load_settings(env: Optional[Mapping[str, str]] = None, cwd: Optional[Path] = None) -> StudioSettings:
    """Read the allowed data roots and the upload cap (see the module docstring)."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else Path(cwd)
    config_path = Path(env.get("ENCODING_STUDIO_CONFIG") or cwd / CONFIG_FILE_NAME)
    file_data: dict = _read_config_file(config_path) if config_path.is_file() else {}

    roots: list[Path] = []
    env_roots = env.get("ENCODING_STUDIO_DATA_ROOTS", "")
    roots += [Path(p).expanduser() for p in env_roots.split(os.pathsep) if p.strip()]
    file_roots = file_data.get("data_roots", [])
    if not isinstance(file_roots, list) or not all(isinstance(p, str) for p in file_roots):
        raise ConfigError(f"{config_path}: data_roots must be a list of folder paths, e.g. [\"/data/fmri\"].")
    roots += [(config_path.parent / Path(p).expanduser()) for p in file_roots]
    if not roots:
        roots = [cwd, Path.home()]

    max_mb = env.get("ENCODING_STUDIO_MAX_UPLOAD_MB") or file_data.get("max_upload_mb", DEFAULT_MAX_UPLOAD_MB)
    try:
        max_mb = float(max_mb)
    except (TypeError, ValueError):
        raise ConfigError(f"max_upload_mb must be a number of megabytes, got {max_mb!r}.") from None
    if max_mb <= 0:
        raise ConfigError(f"max_upload_mb must be > 0 megabytes, got {max_mb}.")

    resolved = []
    for root in roots:
        try:
            resolved.append(root.resolve(strict=True))
        except (OSError, RuntimeError):
            logger.warning("Data root %s does not exist; ignored.", root)
    return StudioSettings(data_roots=tuple(dict.fromkeys(resolved)), max_upload_mb=max_mb)


def allowed_roots(env: Optional[Mapping[str, str]] = None, cwd: Optional[Path] = None) -> tuple[Path, ...]:
    """Data roots plus the app's own folders that exist, resolved."""
    roots = list(load_settings(env, cwd).data_roots)
    dirs = studio_dirs(env)
    for folder in (dirs.results, dirs.cache, dirs.uploads):
        if folder.exists():
            roots.append(folder.resolve())
    return tuple(dict.fromkeys(roots))


MAX_PATH_BYTES = 4096
"""Longest path accepted from a user (Linux PATH_MAX); each name may have at most MAX_NAME_BYTES."""
MAX_NAME_BYTES = 255


def check_path_text(text: str) -> None:
    """Refuse (PathNotAllowedError) text no real path has: NUL characters, over-long paths or names."""
    if "\x00" in text:
        raise PathNotAllowedError("The path contains a NUL character, which no file name can hold; "
                                  "type a normal path.")
    encoded = os.fsencode(text)
    longest = max((len(os.fsencode(part)) for part in Path(text).parts), default=0)
    if len(encoded) > MAX_PATH_BYTES or longest > MAX_NAME_BYTES:
        raise PathNotAllowedError(
            f"The path {text[:40]!r}... is too long ({len(encoded)} bytes, longest name {longest} bytes; "
            f"the limits are {MAX_PATH_BYTES} and {MAX_NAME_BYTES}); type a shorter path.")


def resolve_user_path(text: str, roots: Optional[Sequence[Path]] = None, must_exist: bool = True) -> Path:
    """Resolve a path typed by a user; raise PathNotAllowedError outside every allowed root.

    The path is resolved strictly (symlinks followed, ``..`` collapsed) before the check,
    so neither ``..`` nor a symlink can leave the roots. ``roots`` defaults to
    :func:`allowed_roots`. With ``must_exist=False`` a not-yet-existing file is allowed
    when its existing parent lies inside a root (for "save as").
    """
    if not isinstance(text, (str, os.PathLike)) or not str(text).strip():
        raise InputError("The path is empty; type the path of a file or folder.")
    check_path_text(str(text))
    raw = Path(str(text).strip()).expanduser()
    roots = allowed_roots() if roots is None else tuple(Path(r).resolve() for r in roots)
    try:
        if must_exist:
            resolved = raw.resolve(strict=True)
        else:
            resolved = raw.parent.resolve(strict=True) / raw.name
            if resolved.exists() or resolved.is_symlink():
                resolved = resolved.resolve(strict=True)
    except FileNotFoundError:
        raise InputError(f"{raw} does not exist; check the spelling or pick an existing "
                         f"{'file or folder' if must_exist else 'folder'}.") from None
    except (OSError, RuntimeError) as exc:
        raise InputError(f"Cannot resolve {raw}: {exc}.") from None
    for root in roots:
        if resolved == root or resolved.is_relative_to(root):
            return resolved
    shown = ", ".join(str(r) for r in roots) or "(none)"
    raise PathNotAllowedError(
        f"{raw} resolves to {resolved}, which is outside the allowed data folders ({shown}). "
        f"Move the data under one of them, or add its folder to ENCODING_STUDIO_DATA_ROOTS or to "
        f"data_roots in {CONFIG_FILE_NAME}."
    )


def check_upload_size(name: str, n_bytes: int, max_upload_mb: Optional[float] = None) -> None:
    """Raise InputError when an upload of ``n_bytes`` exceeds the cap (MB = 2**20 bytes)."""
    cap = load_settings().max_upload_mb if max_upload_mb is None else max_upload_mb
    if n_bytes > cap * 2**20:
        raise InputError(
            f"The upload {name!r} is {n_bytes / 2**20:.1f} MB, more than the {cap:g} MB limit. "
            f"Put the file in an allowed data folder and type its path instead, or raise "
            f"max_upload_mb in {CONFIG_FILE_NAME}."
        )


def safe_upload_name(name: str, allowed_suffixes: Sequence[str]) -> str:
    """A bare file name for an upload (no folders), with one of the allowed suffixes."""
    base = Path(str(name).replace("\\", "/")).name
    if not base or base in {".", ".."} or base.startswith("."):
        raise InputError(f"The upload name {name!r} is not a usable file name; rename the file.")
    if not any(base.lower().endswith(s.lower()) for s in allowed_suffixes):
        raise InputError(f"The upload {base!r} has the wrong type; expected one of {list(allowed_suffixes)}.")
    return base
