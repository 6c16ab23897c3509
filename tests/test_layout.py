"""The house rules of the package's layout: no import cycle, one aiohttp boundary, small modules.

Read from the source with `ast`, so a rule is checked without importing anything.
Imports under `if TYPE_CHECKING:` are for annotations only and do not count; an
import inside a function is deliberate laziness (the fake's `client()`, the demo
command) and counts for the aiohttp rule but not for cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "jobwatch"
MODULES = sorted(PACKAGE.rglob("*.py"))
#: The issue's "about 500 lines": a module past this does more than one job.
MAX_LINES = 500
#: Where aiohttp may be imported: the transport, and the fake server (it *is* a server).
AIOHTTP_ALLOWED = ("jobwatch._transport", "jobwatch.testing.")


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


NAMES = {_name(path) for path in MODULES}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """Absolute names of what `path` imports at run time."""
    module = _name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from . import _testing_mode` imports that module, not `base`'s names.
                for alias in node.names:
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in NAMES else base)
            if top_level_only and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                    visit(inner)
                elif isinstance(inner, list):
                    for handler in inner:
                        if isinstance(handler, ast.ExceptHandler):
                            visit(handler.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def _graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports at its top level."""
    graph: dict[str, set[str]] = {}
    for path in MODULES:
        imported = _imports(path, top_level_only=True)
        graph[_name(path)] = {name for name in imported if name in NAMES} - {_name(path)}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := walk(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)) is not None:
            return found
    return None


def test_the_graph_is_read_from_the_source() -> None:
    """The reader sees the real edges (else the cycle test below could never fail)."""
    graph = _graph()
    assert "jobwatch._models" in graph["jobwatch._errors"]
    assert "jobwatch._testing_mode" in graph["jobwatch._scheduler"]  # `from . import x`
    assert "jobwatch._poller" not in graph["jobwatch._hooks"]  # under TYPE_CHECKING only
    assert "jobwatch._client" not in graph["jobwatch.testing._controller"]  # in a function


def test_the_cycle_finder_finds_one() -> None:
    """A planted cycle is reported, along its modules."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


#: The core's modules in the README's order ("Design notes"): each imports only those
#: before it. The package, `otel`, the demo, the CLI and the fake use the public API.
LAYERS = [
    "jobwatch._models",
    "jobwatch._errors",
    "jobwatch._policy",
    "jobwatch._testing_mode",
    "jobwatch._ratelimit",
    "jobwatch._refs",
    "jobwatch._hooks",
    "jobwatch._gate",
    "jobwatch._learn",
    "jobwatch._poller",
    "jobwatch._auth",
    "jobwatch._uaa",
    "jobwatch._cfconfig",
    "jobwatch._transport",
    "jobwatch._scheduler",
    "jobwatch._waiters",
    "jobwatch._client",
]


@pytest.mark.parametrize("module", LAYERS)
def test_the_core_imports_downwards(module: str) -> None:
    """A core module imports only modules before it in `LAYERS` (the README's table)."""
    below = set(LAYERS[: LAYERS.index(module)])
    assert _graph()[module] <= below, _graph()[module] - below


def test_every_core_module_has_its_layer() -> None:
    """A new core module must take its place in `LAYERS` and the README's table."""
    core = {name for name in NAMES if name.count(".") == 1 and name not in UPPER}
    assert core == set(LAYERS)


#: Modules above the core: they may import any of it (and `jobwatch` itself).
UPPER = {
    "jobwatch.otel",
    "jobwatch._demo",
    "jobwatch._cli",
    "jobwatch.testing",
    "jobwatch.__main__",
}


def test_no_import_cycle() -> None:
    """Modules import one way: a cycle would make import order matter."""
    assert _cycle(_graph()) is None


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_only_the_transport_and_the_fake_import_aiohttp(path: Path) -> None:
    """One HTTP boundary: no aiohttp exception or type leaks past `_transport.py`."""
    name = _name(path)
    if name.startswith(AIOHTTP_ALLOWED):
        return
    imported = _imports(path, top_level_only=False)
    assert not {i for i in imported if i == "aiohttp" or i.startswith("aiohttp.")}, name


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_module_over_about_500_lines(path: Path) -> None:
    """One job per module: past 500 lines a module is doing several."""
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{_name(path)} has {lines} lines"
