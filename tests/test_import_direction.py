"""Imports go one way: ``api -> services -> storage``, and the boundaries never reach back up.

Read from the source (``ast``), not by importing, so a forbidden import fails here even in a module no
other test loads. Only the composition root (``app.py``) may import the HTTP layer, and no two
modules may import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "openassistants"
#: Packages below the services: they are called by services and never call them.
BOUNDARIES = ("storage", "upstream", "tools", "retrieval", "bus", "code_interpreter")
#: The only modules outside api/ allowed to import it: the app factory that mounts the routers.
API_IMPORTERS = frozenset({"openassistants.app"})


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every ``openassistants`` module ``path`` imports, relative imports resolved."""
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            # ``from openassistants import services`` imports a module by its attribute name.
            found |= {source} | {f"{source}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "openassistants" or name.startswith("openassistants.")}


def all_imports() -> dict[str, set[str]]:
    return {module_name(path): imported_modules(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_boundaries_never_import_services() -> None:
    offenders = [
        f"{module} imports {target}"
        for module, targets in all_imports().items()
        if module.split(".")[1:2] and module.split(".")[1] in BOUNDARIES
        for target in targets
        if target.startswith("openassistants.services")
    ]
    assert offenders == []


def test_the_boundaries_are_scanned() -> None:
    """The check above is not vacuous: the boundary packages that exist are among the modules read
    (``tools``: the assistant tools, lent what they need through ``tools/base.ToolHost``)."""
    scanned = {module.split(".")[1] for module in all_imports() if module.count(".")}
    assert {"storage", "upstream", "tools", "retrieval", "code_interpreter"} <= scanned
    assert "openassistants.tools.base" in all_imports()


def test_nothing_but_the_app_imports_the_http_layer() -> None:
    offenders = [
        f"{module} imports {target}"
        for module, targets in all_imports().items()
        if not module.startswith("openassistants.api") and module not in API_IMPORTERS
        for target in targets
        if target.startswith("openassistants.api")
    ]
    assert offenders == []


def test_the_scan_sees_relative_and_absolute_imports() -> None:
    app = imported_modules(PACKAGE / "app.py")
    assert {"openassistants.config", "openassistants.api.assistants"} <= app
    assert all_imports()["openassistants.app"] & {
        name for name in all_imports() if name.startswith("openassistants.api")
    }


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm): each is a
    set of modules that import one another, directly or around a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph.get(module, ()):
            if target not in graph:
                continue  # an attribute (``from x import name``), not a module
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycles() -> None:
    """No two modules import each other, even around a loop or only for type checking: a loop means
    neither can be understood, or changed, without the other."""
    # A module's own packages are left out: ``from package import sibling`` names the package only to
    # reach a sibling module, and Python initializes a module's packages before it in any case.
    graph = {
        module: {t for t in targets if t != module and not module.startswith(f"{t}.")}
        for module, targets in all_imports().items()
    }
    assert import_cycles(graph) == []


def test_the_cycle_check_sees_a_loop() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
