"""The tree shows the architecture: no import cycles, no module aliases, a lazy top-level import.

The import graph is built from the source (``ast``), not from what happens to be imported at run
time, so an import inside a function counts as much as one at the top of a module.
"""
from __future__ import annotations

import ast
import graphlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "encoding_core"

REFERENCE_MODULE_PATHS = [
    "encoding_core.assembly.assembly_loader",
    "encoding_core.features.factory",
    "encoding_core.downsample.downsampling",
    "encoding_core.models.nested_cv",
    "encoding_core.trainer",
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of encoding_core that ``name`` imports anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if _under_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in modules else source)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    # assembly_loader imports the demo and the formats only inside load_assembly.
    assert "encoding_core.demo.simulate" in graph["encoding_core.assembly.assembly_loader"]
    assert "encoding_core.assembly.native_h5" in graph["encoding_core.assembly.assembly_loader"]


def test_no_import_cycle_between_modules():
    graph = import_graph()
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_a_cycle_would_be_found(tmp_path):
    """The check above can fail: a two-module cycle written here is caught."""
    graph = {"a": {"b"}, "b": {"a"}}
    with pytest.raises(graphlib.CycleError):
        tuple(graphlib.TopologicalSorter(graph).static_order())


def test_step_packages_import_only_what_lies_below_them():
    """common imports nothing of ours; assembly, downsample, stats and viz only common (and config)."""
    graph = import_graph()
    allowed = {
        "encoding_core.common": {"encoding_core.common"},
        "encoding_core.stats": {"encoding_core.common", "encoding_core.stats"},
        "encoding_core.downsample": {"encoding_core.common", "encoding_core.downsample"},
        "encoding_core.viz": {"encoding_core.common", "encoding_core.viz"},
        "encoding_core.assembly": {"encoding_core.common", "encoding_core.assembly", "encoding_core.demo"},
    }
    problems = []
    for module, targets in graph.items():
        for package, ok in allowed.items():
            if module == package or module.startswith(package + "."):
                bad = [t for t in targets if not any(t == o or t.startswith(o + ".") for o in ok)]
                problems += [f"{module} imports {t}" for t in bad]
    assert not problems, problems


def sys_modules_writes(source: str) -> list[int]:
    """Line numbers where ``sys.modules`` is assigned to, updated or ``setdefault``-ed."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, (ast.Store, ast.Del)) \
                and ast.unparse(node.value) == "sys.modules":
            lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and ast.unparse(node.func.value) == "sys.modules" \
                and node.func.attr in ("setdefault", "update", "__setitem__", "pop"):
            lines.append(node.lineno)
    return lines


def test_no_sys_modules_aliases():
    assert sys_modules_writes("import sys\nsys.modules.setdefault('x', object())\nsys.modules['y'] = 1\n") == [2, 3]
    offenders = {str(p.relative_to(ROOT)): sys_modules_writes(p.read_text()) for p in PACKAGE.rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}, "modules that write sys.modules (aliases)"


@pytest.mark.parametrize("name", REFERENCE_MODULE_PATHS)
def test_reference_module_paths_are_files_on_disk(name):
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None
    assert Path(spec.origin).is_file() and Path(spec.origin).resolve().is_relative_to(PACKAGE)


def test_import_encoding_core_is_lazy():
    code = ("import sys, encoding_core\n"
            "heavy = [m for m in ('torch', 'transformers', 'streamlit', 'nilearn', 'numpy') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    # The app-facing module must not pull torch in either (pages import it on every rerun).
    code = "import sys, encoding_core.studio, encoding_core.viz\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
