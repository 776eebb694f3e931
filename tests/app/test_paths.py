"""Allowed data roots, path resolution and upload checks (encoding_core.common.paths)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from encoding_core.common.errors import ConfigError, InputError, PathNotAllowedError
from encoding_core.common.paths import (check_upload_size, load_settings, resolve_user_path, safe_upload_name,
    studio_dirs)


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "data"
    outside = tmp_path / "secret"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "a.h5").write_bytes(b"x")
    (outside / "b.h5").write_bytes(b"y")
    return {"root": root, "outside": outside, "tmp": tmp_path}


def test_path_inside_root_resolves(tree):
    got = resolve_user_path(str(tree["root"] / "sub" / ".." / "sub" / "a.h5"), roots=[tree["root"]])
    assert got == (tree["root"] / "sub" / "a.h5").resolve()


def test_dotdot_escape_refused(tree):
    text = str(tree["root"] / ".." / "secret" / "b.h5")
    with pytest.raises(PathNotAllowedError, match="outside the allowed data folders"):
        resolve_user_path(text, roots=[tree["root"]])


def test_symlink_escape_refused(tree):
    link = tree["root"] / "link.h5"
    os.symlink(tree["outside"] / "b.h5", link)
    with pytest.raises(PathNotAllowedError):
        resolve_user_path(str(link), roots=[tree["root"]])
    dir_link = tree["root"] / "linkdir"
    os.symlink(tree["outside"], dir_link)
    with pytest.raises(PathNotAllowedError):
        resolve_user_path(str(dir_link / "b.h5"), roots=[tree["root"]])


def test_prefix_sibling_is_not_inside(tree):
    sibling = tree["tmp"] / "data2"
    sibling.mkdir()
    (sibling / "c.h5").write_bytes(b"z")
    with pytest.raises(PathNotAllowedError):
        resolve_user_path(str(sibling / "c.h5"), roots=[tree["root"]])


def test_missing_and_empty_paths(tree):
    with pytest.raises(InputError, match="does not exist"):
        resolve_user_path(str(tree["root"] / "nope.h5"), roots=[tree["root"]])
    with pytest.raises(InputError, match="empty"):
        resolve_user_path("  ", roots=[tree["root"]])
    new = resolve_user_path(str(tree["root"] / "sub" / "new.h5"), roots=[tree["root"]], must_exist=False)
    assert new == (tree["root"] / "sub").resolve() / "new.h5"
    with pytest.raises(PathNotAllowedError):
        resolve_user_path(str(tree["outside"] / "new.h5"), roots=[tree["root"]], must_exist=False)


def test_settings_from_env_and_file(tree, monkeypatch):
    other = tree["tmp"] / "other"
    other.mkdir()
    cfg = tree["tmp"] / "encoding_studio.toml"
    cfg.write_text('data_roots = ["other"]\nmax_upload_mb = 3\n')
    env = {"ENCODING_STUDIO_DATA_ROOTS": str(tree["root"]) + os.pathsep + str(tree["tmp"] / "missing")}
    settings = load_settings(env=env, cwd=tree["tmp"])
    assert settings.data_roots == (tree["root"].resolve(), other.resolve())
    assert settings.max_upload_mb == 3.0
    default = load_settings(env={}, cwd=tree["root"])
    assert default.data_roots == (tree["root"].resolve(), Path.home().resolve())
    cfg.write_text("data_roots = 'not a list'\n")
    with pytest.raises(ConfigError, match="data_roots"):
        load_settings(env={}, cwd=tree["tmp"])
    cfg.write_text("data_roots = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(env={}, cwd=tree["tmp"])


def test_studio_dirs_env(tmp_path):
    dirs = studio_dirs({"ENCODING_STUDIO_HOME": str(tmp_path), "ENCODING_STUDIO_CACHE": str(tmp_path / "c2")})
    assert dirs.results == tmp_path / "results"
    assert dirs.cache == tmp_path / "c2"
    assert dirs.jobs == tmp_path / ".encoding_studio" / "jobs"


def test_upload_checks():
    check_upload_size("a.h5", 2**20, max_upload_mb=1)
    with pytest.raises(InputError, match="more than the 1 MB limit"):
        check_upload_size("a.h5", 2**20 + 1, max_upload_mb=1)
    assert safe_upload_name("../../etc/evil.h5", [".h5"]) == "evil.h5"
    assert safe_upload_name("C:\\x\\story.WAV", [".wav"]) == "story.WAV"
    with pytest.raises(InputError, match="wrong type"):
        safe_upload_name("notes.txt", [".h5", ".pkl"])
    with pytest.raises(InputError):
        safe_upload_name("..", [".h5"])
