"""No import cycle among the project's modules, and each imports on its own.

The alarms used to be wired in by import side effects, with `collector` and `alarms`
importing each other; these checks keep the explicit wiring free of cycles.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("collector", "alarms", "shipper")


def modules() -> dict[str, Path]:
    """Every first-party module by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imports(tree: ast.Module, *, deferred: bool) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported; with `deferred`, also those inside
    functions (run later, but still a dependency). Never those under TYPE_CHECKING."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif deferred and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef
                                     | ast.ClassDef | ast.With | ast.For | ast.While):
            pending.extend(node.body)
        elif isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                pending.extend([*node.body, *node.orelse])
        elif isinstance(node, ast.Try):
            pending.extend([*node.body, *node.orelse, *node.finalbody,
                            *(s for h in node.handlers for s in h.body)])
    return found


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(*, deferred: bool = False) -> dict[str, set[str]]:
    """Module -> the first-party modules importing it runs, parent packages included
    (with `deferred`, also those its functions import when called).

    Importing `a.b.c` runs `a` and `a.b` first, unless the importer is inside them
    (they are then already being imported).
    """
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path)), deferred=deferred):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif node.module is not None and node.level == 0:
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    targets.add(child if child in known else node.module)
        edges: set[str] = set()
        inside = {*_ancestors(name), name}
        for target in targets:
            if target in known:
                edges.add(target)
                edges.update(a for a in _ancestors(target) if a not in inside)
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle in `graph` as a path that starts and ends at the same module, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The checker itself can fail: a two-module loop is reported as a path."""
    assert find_cycle({"a": {"b"}, "b": {"a"}, "c": set()}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_level_import_cycle() -> None:
    """No first-party module imports itself again through others (packages included)."""
    graph = import_graph()
    # The graph sees imports through `from PACKAGE import MODULE` and parent packages.
    assert {"collector.config", "collector.config.ini"} <= graph["alarms.config"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_no_import_cycle_through_functions_either() -> None:
    """Counting the imports inside functions too, no module depends on itself: the
    collector and the alarms are wired in one place, not by importing each other late."""
    graph = import_graph(deferred=True)
    assert import_graph()["collector.cli"] < graph["collector.cli"]  # serve's lazy import
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_a_bad_alarm_line_fails_the_load_with_nothing_else_imported(tmp_path: Path) -> None:
    """In a fresh interpreter that imports only the loader, an [app:] section is parsed
    at load: no other import has to register anything first."""
    path = tmp_path / "collector.ini"
    path.write_text("[app:shop]\nalarm = a log:\nlog-alarm = nosuch ^x\n")
    script = ("import sys\nfrom collector.config.load import load_config\n"
              "from collector.errors import ConfigError\n"
              "try:\n    load_config(sys.argv[1])\nexcept ConfigError as exc:\n"
              "    print(exc)\nelse:\n    print('loaded')\n")
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, check=True)
    assert done.stdout.startswith(f"{path}:3: log-alarm: unknown alarm 'nosuch'")


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    """Each module, imported first and alone (a fresh fork of an interpreter that has only
    the third-party libraries loaded), imports without error."""
    script = textwrap.dedent("""
        import importlib, os, sys, traceback
        names = sys.argv[1:]
        for library in ("aiohttp", "structlog", "cryptography", "re2", "uvloop"):
            try:
                importlib.import_module(library)
            except ImportError:
                pass
        failed = 0
        for name in names:
            pid = os.fork()
            if pid == 0:
                try:
                    importlib.import_module(name)
                except BaseException:
                    sys.stderr.write(f"--- {name}\\n{traceback.format_exc()}")
                    sys.stderr.flush()
                    os._exit(1)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            failed += status != 0
        sys.exit(1 if failed else 0)
    """)
    names = [n for n in modules() if not n.endswith("__main__")]
    done = subprocess.run([sys.executable, "-c", script, *names], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
