"""The package's shape: layers that only point down, no import cycle, one installed name.

Layers, bottom to top (docs/architecture.md): ``hgr.common`` < ``hgr.edge``, ``hgr.hub`` (never each
other) < ``hgr.loadtest`` < the application layer (``hgr``, ``hgr.cli``, ``hgr.serve``, ``hgr.servers``,
``hgr.allinone``, ``hgr.__main__``); outside the package, ``research/`` may import it, never the reverse.
Every import counts, wherever it is written: at module level, inside a function, under
``if TYPE_CHECKING:``, or as a string handed to ``importlib.import_module`` or written as
``"module:function"`` (the CLI's service table). A type-only import is still an arrow a reader follows, so
it obeys the same rules; a lower module states what it needs as a ``typing.Protocol``.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SUBLAYERS = ("common", "edge", "hub", "loadtest")
# What each layer may import (besides itself).
ALLOWED = {
    "common": {"common"},
    "edge": {"common", "edge"},
    "hub": {"common", "hub"},
    "loadtest": {"common", "edge", "hub", "loadtest"},
    "app": {"common", "edge", "hub", "loadtest", "app"},
}
_ENTRY = re.compile(r"^([A-Za-z_][\w.]*):[A-Za-z_]\w*$")  # "package.module:function"


def package_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the installed namespace, by dotted name (the links under hgr/ followed)."""
    found: dict[str, Path] = {}
    for folder, dirs, files in os.walk(root / "hgr", followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        rel = Path(folder).relative_to(root).parts
        for name in files:
            if name.endswith(".py"):
                parts = rel if name == "__init__.py" else (*rel, name[:-3])
                found[".".join(parts)] = Path(folder) / name
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in SUBLAYERS else "app"


def imported_names(module: str, source: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything ``source`` imports, at any depth, type-only and string ones too.
    ``from a import b`` yields ``a.b`` (resolved against the module list by ``resolve``)."""
    tree = ast.parse(source)
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                prefix = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                prefix = node.module or ""
            for alias in node.names:
                yield node.lineno, f"{prefix}.{alias.name}" if alias.name != "*" else prefix
        elif isinstance(node, ast.Call) and _called_name(node.func) in {"import_module", "__import__"} and node.args:
            target = _static_prefix(node.args[0])
            if target:
                yield node.lineno, target
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and (m := _ENTRY.match(node.value)):
            yield node.lineno, m.group(1)


def _called_name(func: ast.expr) -> str | None:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _static_prefix(arg: ast.expr) -> str | None:
    """The module a string argument names, or for an f-string its package (``f"hgr.loadtest.{x}"``)."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value).rstrip(".") or None
    return None


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module ``name`` lands in (``a.b.c`` → ``a.b`` when c is a function), or None outside hgr."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_graph() -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    """module → {imported package module: first line}."""
    modules = package_modules()
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges = graph.setdefault(module, {})
        for line, name in imported_names(module, path.read_text(), path.name == "__init__.py"):
            target = resolve(name, modules)
            if target is not None and target != module:
                edges.setdefault(target, line)
    return graph, modules


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm: the components of more than one module (each one a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# --- the checker itself ---

def test_the_walker_sees_every_kind_of_import() -> None:
    source = '''
from __future__ import annotations
import importlib
from typing import TYPE_CHECKING
from hgr.edge import protocol
from . import slot
if TYPE_CHECKING:
    from hgr.hub.app import Hub
def later(name):
    import hgr.loadtest.bench
    importlib.import_module("hgr.serve")
    return importlib.import_module(f"hgr.loadtest.{name}")
TABLE = {"up": ("hgr.allinone:main", "help text: not a module")}
'''
    names = {name for _, name in imported_names("hgr.edge.session", source)}
    assert {"hgr.edge.protocol", "hgr.edge.slot", "hgr.hub.app.Hub", "hgr.loadtest.bench", "hgr.serve",
            "hgr.loadtest", "hgr.allinone"} <= names
    assert "help text: not a module" not in names


def test_the_cycle_finder_finds_a_type_only_cycle() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 3}, "d": {"a": 1}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b": 1}, "b": {}}) == []


def test_the_graph_covers_the_package_and_its_string_imports() -> None:
    graph, modules = import_graph()
    assert {"hgr.cli", "hgr.common.config", "hgr.edge.app", "hgr.hub.app", "hgr.loadtest.bench"} <= set(modules)
    # The CLI reaches its services only through "module:function" strings: the walker must see them.
    assert {"hgr.servers", "hgr.allinone", "hgr.loadtest.bench"} <= set(graph["hgr.cli"])


# --- the rules ---

def test_layers_only_point_down() -> None:
    graph, modules = import_graph()
    wrong = [f"{modules[src].relative_to(ROOT)}:{line}: {src} ({layer(src)}) imports {dst} ({layer(dst)})"
             for src, edges in sorted(graph.items()) for dst, line in sorted(edges.items())
             if layer(dst) not in ALLOWED[layer(src)]]
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


# Rooms inside hgr.common (docs/architecture.md): the base (config, errors, contracts, …) imports neither
# room; the inference room and the messaging room import the base and never each other.
ROOMS = ("inference", "messaging")


def room(module: str) -> str | None:
    """``base``, ``inference`` or ``messaging`` for a module of hgr.common; None outside it."""
    parts = module.split(".")
    if parts[:2] != ["hgr", "common"]:
        return None
    return parts[2] if len(parts) > 2 and parts[2] in ROOMS else "base"


def test_the_rooms_of_common_never_import_each_other() -> None:
    graph, modules = import_graph()
    assert {"hgr.common.inference.pool", "hgr.common.messaging.bus", "hgr.common.config"} <= set(modules)
    wrong = [f"{modules[src].relative_to(ROOT)}:{line}: {src} ({room(src)}) imports {dst} ({room(dst)})"
             for src, edges in sorted(graph.items()) if room(src) is not None
             for dst, line in sorted(edges.items())
             if room(dst) is not None and room(dst) not in {"base", room(src)}]
    assert not wrong, "imports between the rooms of hgr.common:\n" + "\n".join(wrong)


def test_the_room_rule_catches_a_sideways_import() -> None:
    assert room("hgr.common.inference.hands.crop") == "inference"
    assert room("hgr.common.messaging.topics") == "messaging"
    assert room("hgr.common.config") == "base" and room("hgr.edge.app") is None


def test_no_import_cycles() -> None:
    graph, _ = import_graph()
    cycles = strongly_connected(graph)
    described = ["  " + " → ".join(c) + "  (edges: " + ", ".join(
        f"{a}→{b}" for a in c for b in graph[a] if b in c) + ")" for c in cycles]
    assert not cycles, "import cycles (type-only imports count):\n" + "\n".join(described)


def _python_files() -> Iterator[Path]:
    skip = {".venv", "build", "node_modules", ".git", "__pycache__"}
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith(".venv") and not d.endswith(".egg-info")
                   and d != "hgr"]
        yield from (Path(folder) / f for f in files if f.endswith(".py"))
    yield from package_modules().values()


def test_nothing_imports_the_bare_folder_names() -> None:
    """``common``, ``edge``, ``hub``, ``loadtest`` exist only as ``hgr.*`` once installed."""
    wrong = []
    for path in sorted(set(_python_files())):
        for line, name in imported_names("x.y", path.read_text()):
            if name.split(".")[0] in SUBLAYERS:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert not wrong, "imports of a bare top-level name (use hgr.<name>):\n" + "\n".join(wrong)


def test_the_package_never_imports_research_or_tests() -> None:
    """``research/`` (studies run from a checkout, not in the wheel) and the tests import ``hgr.*``; nothing in
    the package imports them back, so an installed copy never reaches for a checkout."""
    wrong = [f"{path.relative_to(ROOT)}:{line}: {name}" for module, path in sorted(package_modules().items())
             for line, name in imported_names(module, path.read_text(), path.name == "__init__.py")
             if name.split(".")[0] in ("research", "tests", "support")]
    assert not wrong, "package modules importing checkout-only code:\n" + "\n".join(wrong)


def test_loadtest_finds_its_files_as_package_resources() -> None:
    """``hgr bench`` works on a plain install: hgr.loadtest builds no path from ``__file__`` (a path into a
    checkout finds nothing once installed); its photos are package data (``importlib.resources``)."""
    wrong = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "loadtest").glob("*.py")) if "__file__" in p.read_text()]
    assert not wrong, f"paths from __file__ in {wrong}"


@pytest.mark.service
def test_ruff_refuses_the_editors_bare_auto_import(tmp_path: Path) -> None:
    """An editor offers ``from common.config import …`` (the folder is on its path); ruff's banned-api
    (pyproject.toml) makes that a lint error in ``make check`` before any test runs."""
    bad = tmp_path / "bad.py"
    bad.write_text("from common.config import Settings\nimport hub.app\n\nprint(Settings, hub.app)\n")
    ruff = Path(sys.executable).with_name("ruff")
    done = subprocess.run([str(ruff), "check", "--config", str(ROOT / "pyproject.toml"), "--select", "TID251",
                           "--output-format", "concise", str(bad)], capture_output=True, text=True, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "`common` is banned" in done.stdout and "`hub` is banned" in done.stdout, done.stdout


# --- the installed distribution ---

@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what the wheel is built from (the links kept): no stale build/ folder leaks in, and the
    checks compare the wheel with the same snapshot while others keep editing the tree."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pyproject.toml", "README.md", "hgr", *SUBLAYERS):
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    for extra in ROOT.glob("LICEN[CS]E*"):
        shutil.copy2(extra, src / extra.name)
    return src


@pytest.fixture(scope="module")
def wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (built,) = out.glob("hgr-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_claims_only_hgr(wheel: zipfile.ZipFile) -> None:
    tops = {n.split("/")[0] for n in wheel.namelist()}
    (dist_info,) = [t for t in tops if t.endswith(".dist-info")]
    assert tops == {"hgr", dist_info}, f"top-level entries: {sorted(tops)}"
    assert wheel.read(f"{dist_info}/top_level.txt").decode().split() == ["hgr"]


def test_the_wheel_holds_every_module_and_its_data(wheel: zipfile.ZipFile, source: Path) -> None:
    """Every module, the Lua scripts, the bench's photos, the start-up check's photos and py.typed."""
    modules = {module.replace(".", "/") + ("/__init__.py" if path.name == "__init__.py" else ".py")
               for module, path in package_modules(source).items()}
    lua = {f"hgr/hub/{p.name}" for p in (source / "hub").glob("*.lua")}
    assert lua, "the hub's Lua scripts are missing from the source tree"
    photos = {f"hgr/loadtest/hands/{p.name}" for p in (source / "loadtest" / "hands").iterdir()}
    assert "hgr/loadtest/hands/labels.csv" in photos, "the bench's sample photos are missing from the source tree"
    docs_ui = {f"hgr/hub/docs_ui/{p.name}" for p in (source / "hub" / "docs_ui").iterdir()}  # /docs (hub.apidocs)
    assert "hgr/hub/docs_ui/swagger-ui-bundle.js" in docs_ui
    checks = {f"hgr/common/inference/hands/check_photos/{p.name}"  # the start-up check's (hands.check)
              for p in (source / "common" / "inference" / "hands" / "check_photos").iterdir()}
    assert "hgr/common/inference/hands/check_photos/labels.csv" in checks
    data = lua | photos | docs_ui | checks | {"hgr/py.typed"}
    shipped = {n for n in wheel.namelist() if n.startswith("hgr/")}
    assert shipped == modules | data, (
        f"missing: {sorted(modules | data - shipped)}; unexpected: {sorted(shipped - modules - data)}")


def test_the_wheel_entry_point_is_hgr_cli_main(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    scripts = wheel.read(entry_points).decode().split("[console_scripts]", 1)[1].split("[", 1)[0]
    assert [tuple(p.strip() for p in line.split("=")) for line in scripts.strip().splitlines()] == [
        ("hgr", "hgr.cli:main")]


INSTALLED_BENCH = """
import sys
from hgr.loadtest.bench import build_parser
from hgr.loadtest.clips import read_labels
photos = build_parser().parse_args([]).photos
assert str(photos).startswith(sys.prefix), f"default photos {photos} outside the install {sys.prefix}"
print(len(read_labels(photos)))
"""


def test_hgr_bench_finds_its_photos_in_an_installed_wheel(wheel: zipfile.ZipFile, tmp_path: Path) -> None:
    """The wheel in a venv of its own, run from an empty directory: ``hgr bench --help`` works and the default
    photos are the installed package's. (The dependencies come from this interpreter's site-packages, on the
    path after the venv's own, so the wheel's ``hgr`` is the one imported; the editable install's finder is
    not loaded from there.)"""
    import site
    import venv

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    (purelib,) = (env_dir / "lib").glob("python3*/site-packages")
    (purelib / "zz-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    assert wheel.filename is not None
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(purelib),
                          wheel.filename], capture_output=True, text=True, timeout=300, check=False)
    assert pip.returncode == 0, pip.stderr[-3000:]
    run = tmp_path / "elsewhere"
    run.mkdir()
    help_text = subprocess.run([str(python), "-m", "hgr", "bench", "--help"], cwd=run, capture_output=True,
                               text=True, timeout=120, check=False)
    assert help_text.returncode == 0 and "--sections" in help_text.stdout, help_text.stderr[-3000:]
    photos = subprocess.run([str(python), "-c", INSTALLED_BENCH], cwd=run, capture_output=True, text=True,
                            timeout=120, check=False)
    assert photos.returncode == 0 and photos.stdout.split() == ["36"], photos.stderr[-3000:]
