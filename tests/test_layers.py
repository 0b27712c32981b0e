"""The shape of the code, checked: data flows one way (wire -> service -> domain ->
storage / optimiser), the client and the trainer never import the server, no import
cycles between modules (lazy imports included), no module over 400 lines, and only the
composition root asks which database it runs on."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "server": "tunewire.server",
    "client": "tunewire.client",
    "trainer": "tunewire.trainer",
    "integrations": "tunewire.integrations",
    "dashboard": "tunewire.dashboard",
}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES.items():
        if not (ROOT / folder).is_dir():
            continue
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if "migrations" in parts and parts[-1] != "migrations":
                continue  # Alembic revisions are loaded by Alembic, not imported
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every module the file imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                # `from package import module` imports the module; else the names are
                # attributes of the module `from` names.
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
    return found


def _first_party(name: str) -> str | None:
    """The first-party module an import names (`from pkg import module` names a module)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


GRAPH = {
    module: {dep for name in _imports(path) if (dep := _first_party(name)) and dep != module}
    for module, path in MODULES.items()
}

# Who may not import whom: (importing modules' prefix, forbidden prefixes).
FORBIDDEN = [
    (
        "tunewire.client",
        ("tunewire.server", "tunewire.trainer", "tunewire.integrations", "tunewire.dashboard"),
    ),
    ("tunewire.integrations", ("tunewire.server", "tunewire.trainer")),
    ("tunewire.trainer", ("tunewire.server",)),
    # The dashboard is a client of the API like any other: it works against any replica.
    (
        "tunewire.dashboard",
        ("tunewire.server", "tunewire.trainer", "tunewire.integrations", "sqlalchemy"),
    ),
    (
        "tunewire.server.domain",
        (
            "tunewire.server.api",
            "tunewire.server.service",
            "tunewire.server.storage",
            "tunewire.server.algorithms",
            "tunewire.server.app",
            "grpc",
            "sqlalchemy",
            "tunewire.v1",
        ),
    ),
    (
        "tunewire.server.algorithms",
        ("tunewire.server.api", "tunewire.server.service", "tunewire.server.storage", "grpc"),
    ),
    (
        "tunewire.server.storage",
        ("tunewire.server.api", "tunewire.server.service", "tunewire.server.algorithms", "grpc"),
    ),
    ("tunewire.server.service", ("tunewire.server.api", "tunewire.server.app", "grpc")),
    ("tunewire.server.api", ("tunewire.server.storage", "sqlalchemy")),
]


@pytest.mark.parametrize(("importer", "forbidden"), FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_layers_import_only_downwards(importer: str, forbidden: tuple[str, ...]) -> None:
    wrong = sorted(
        (module, name)
        for module, path in MODULES.items()
        if module == importer or module.startswith(importer + ".")
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )
    assert not wrong, wrong


def test_no_import_cycles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in GRAPH[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not cycles, cycles


def test_no_module_is_longer_than_the_limit() -> None:
    long = {
        module: n
        for module, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


# The database's kind is read once, by the composition root (server/app.py), which hands
# the layers the strategy or setting it chose: no `if SQLite` branch in them.
ENGINE_BLIND = ("tunewire.server.api", "tunewire.server.service", "tunewire.server.domain")


def test_only_the_composition_root_branches_on_the_database() -> None:
    branches = sorted(
        (module, node.lineno)
        for module, path in MODULES.items()
        if module.startswith(ENGINE_BLIND)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "single_writer"
    )
    assert not branches, branches
