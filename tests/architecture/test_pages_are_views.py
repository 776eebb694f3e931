"""Pages are views: from encoding_core they import only the app-facing module and the figures.

Every computation a page needs comes from :mod:`encoding_core.studio`; figures from
:mod:`encoding_core.viz`. Heavy libraries stay out of the page scripts (they run on every rerun).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VIEWS = sorted((ROOT / "pages").glob("*.py")) + [ROOT / "app.py"]
ALLOWED_CORE = {"encoding_core.studio", "encoding_core.viz"}
HEAVY = {"torch", "transformers", "scipy", "sklearn", "nilearn", "librosa", "h5py", "joblib", "dask", "distributed",
         "soundfile", "himalaya"}


def imported_modules(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "encoding_core":
                found += [f"encoding_core.{alias.name}" for alias in node.names]
            else:
                found.append(node.module)
    return found


def violations(path: Path) -> list[str]:
    bad = []
    for module in imported_modules(path):
        root = module.split(".")[0]
        if root == "encoding_core" and module not in ALLOWED_CORE:
            bad.append(module)
        elif root in HEAVY:
            bad.append(module)
    return bad


@pytest.mark.parametrize("path", VIEWS, ids=lambda p: p.name)
def test_page_imports_only_the_app_facing_module(path):
    assert violations(path) == [], f"{path.name} imports internals directly; go through encoding_core.studio"


def test_the_check_catches_an_internal_import(tmp_path):
    page = tmp_path / "page.py"
    page.write_text("from encoding_core.models.ridge import ridge_nested_cv\nimport torch\n"
                    "from encoding_core import studio, viz\n")
    assert violations(page) == ["encoding_core.models.ridge", "torch"]


def stray_strings(path: Path) -> list[int]:
    """Lines of bare string literals that are not docstrings: Streamlit's "magic" draws them on the page."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str) and id(node) not in docstrings]


@pytest.mark.parametrize("path", VIEWS, ids=lambda p: p.name)
def test_page_has_no_stray_string_that_magic_would_draw(path):
    assert stray_strings(path) == [], f"{path.name}: use a comment; Streamlit draws bare strings on the page"


def test_the_stray_string_check_catches_one(tmp_path):
    page = tmp_path / "page.py"
    page.write_text('"""Docstring."""\nX = 1\n"""An attribute note."""\n\ndef f():\n    """Doc."""\n    "drawn"\n')
    assert stray_strings(page) == [3, 7]
