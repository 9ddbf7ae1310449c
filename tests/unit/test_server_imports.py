"""The server's modules import one another without a cycle, and every module stays readable.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import`` of a
``translation_server`` module, wherever it stands (``if TYPE_CHECKING:`` blocks and function
bodies included), relative imports resolved. Importing a submodule runs its package's
``__init__`` too, but that is no edge: only what a module names counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "translation_server"
MAX_LINES = 450


def module_name(path: Path) -> str:
    """The dotted name of a module file below ROOT."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(tree: ast.Module, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that the module ``name`` imports."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            # ``from . import api`` names the submodule; ``from . import create_app`` the package
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in known else target)
    return {m for m in found if m in known and m != name}


def import_graph(package: str) -> dict[str, set[str]]:
    """Module name -> the package's modules it imports."""
    files = {module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}
    known = set(files)
    return {
        name: imported(ast.parse(path.read_text()), name, path.name == "__init__.py", known)
        for name, path in files.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def test_the_graph_sees_relative_type_checking_and_function_level_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import api\n"
        "from pkg import create_app\n"
        "from .store import Store\n"
        "if TYPE_CHECKING:\n"
        "    from .runtime import Runtime\n"
        "def f():\n"
        "    import pkg.late\n"
    )
    known = {"pkg", "pkg.api", "pkg.store", "pkg.runtime", "pkg.late", "pkg.app"}
    found = imported(ast.parse(source), "pkg.app", False, known)
    assert found == {"pkg", "pkg.api", "pkg.store", "pkg.runtime", "pkg.late"}


def test_cycles_are_found_however_long() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "d"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_server_package_has_no_import_cycle() -> None:
    graph = import_graph(PACKAGE)
    assert "translation_server.store" in graph and len(graph) > 20
    assert cycles(graph) == []


@pytest.mark.parametrize(
    "package", ["translation_server", "callback_receiver", "client_lib", "service_common"]
)
def test_every_module_can_be_held_in_one_read(package: str) -> None:
    lengths = {
        module_name(p): len(p.read_text().splitlines()) for p in (ROOT / package).rglob("*.py")
    }
    assert lengths
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}


def top_level_imports(package: str) -> set[str]:
    """The top-level packages that a package's modules import by absolute name."""
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    ("package", "never"),
    [
        ("translation_server", {"callback_receiver"}),
        ("callback_receiver", {"translation_server"}),
        ("service_common", {"translation_server", "callback_receiver"}),
        ("client_lib", {"translation_server", "callback_receiver", "service_common", "flask"}),
    ],
)
def test_the_services_share_service_common_and_never_import_each_other(
    package: str, never: set[str]
) -> None:
    imports = top_level_imports(package)
    assert imports & never == set()
    if package != "client_lib":
        assert "client_lib" in imports
