"""Fixtures of the app tests."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def studio(tmp_path, monkeypatch) -> Path:
    """A fresh app home: all folders under tmp_path, the only allowed data root (upload cap 1 MB)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENCODING_STUDIO_HOME", str(tmp_path))
    monkeypatch.setenv("ENCODING_STUDIO_DATA_ROOTS", str(tmp_path))
    monkeypatch.setenv("ENCODING_STUDIO_MAX_UPLOAD_MB", "1")
    return tmp_path
