"""The emulator's modules form a DAG: handlers depend on the context and the state, never on the service."""

from __future__ import annotations

import ast
from pathlib import Path

EMULATOR = Path(__file__).resolve().parents[2] / "emulator"


def _imports(path: Path) -> set[str]:
    """Sibling modules a module imports, anywhere in it (TYPE_CHECKING blocks and function bodies included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {p.stem: p for p in EMULATOR.glob("*.py") if p.stem not in ("__init__", "__main__")}
    return {name: _imports(path) & set(modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"routes": {"handlers"}, "handlers": {"routing"}, "routing": {"service"},
                   "service": {"handlers"}}) == ["handlers", "routing", "service", "handlers"]


def test_handlers_never_import_the_service_or_the_routes():
    graph = _graph()
    for module in ("entra", "hunting", "keyvault", "machines", "alerts", "incidents", "admin", "pages", "views",
                   "stores", "world", "odata", "triage", "assertions", "routing", "context", "state", "server"):
        assert not graph[module] & {"service", "routes"}, module
