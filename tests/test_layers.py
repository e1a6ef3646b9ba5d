"""The layers of Herald's code: nothing imports a layer above its own, and no module
imports itself back through others.

From the bottom up: the shared core (configuration, database and SQL, the ledger,
breakers and limits), the stages (orchestrator, enrich, email), what operators watch
(monitoring), the services container and the fakes, the Dramatiq layer (actors), the
HTTP face (herald.web), the composition root, and the entry points on top (the worker,
the demo, the CLI). Imports inside functions count as much as those at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("herald", "orchestrator", "monitoring", "actors")

#: Module-name prefixes per layer, bottom first. The longest matching prefix decides.
LAYERS: list[tuple[str, ...]] = [
    (
        "herald",
        "herald.errors",
        "herald.headers",
        "herald.db",
        "herald.sql",
        "herald.config",
        "herald.changes",
        "herald.ledger",
        "herald.breaker",
        "herald.ratelimit",
        "herald.retention",
        "herald.tracking",
        "herald.migrate",
        "herald.schedules",
        "herald.batches",
    ),
    (
        "herald.enrich",
        "herald.email",
        "herald.templating",
        "orchestrator",
        # The digest email and its step: a stage (the store and the tick are core:
        # herald.digests; the schedules' calendar is herald.schedules).
        "herald.digests.email",
        "herald.digests.deliver",
    ),
    ("monitoring",),
    ("herald.services", "herald.testing", "herald.check"),
    ("actors",),
    ("herald.web",),
    ("herald.bootstrap",),
    ("herald.worker", "herald.cli.demo", "herald.cli"),
]
LAYER_NAMES = ["core", "stages", "monitoring", "services", "actors", "web", "root", "entry"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def imports_of(path: Path) -> set[str]:
    """Herald modules `path` imports, anywhere in the file (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def sources() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
    }


def known(name: str, modules: dict[str, Path]) -> str | None:
    """The module an imported name is: itself, or its parent when it names an attribute."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def test_every_module_has_a_layer():
    assert [m for m in sources() if layer_of(m) is None] == []


def test_no_module_imports_a_layer_above_its_own():
    modules = sources()
    upward = []
    for module, path in modules.items():
        own = layer_of(module)
        assert own is not None
        for name in imports_of(path):
            target = known(name, modules)
            if target is None or target == module:
                continue
            theirs = layer_of(target)
            if theirs is not None and theirs > own:
                upward.append(
                    f"{module} ({LAYER_NAMES[own]}) imports {target} ({LAYER_NAMES[theirs]})"
                )
    assert upward == []


def test_no_import_runs_in_a_circle():
    modules = sources()
    graph = {
        module: {t for n in imports_of(path) if (t := known(n, modules)) not in (None, module)}
        for module, path in modules.items()
    }
    # A package's __init__ is imported with any of its modules: it is not an edge back.
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt in trail and not any(m.startswith(nxt + ".") for m in trail):
                circles.append([*trail[trail.index(nxt) :], nxt])
            elif state.get(nxt) is None:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if state.get(module) is None:
            visit(module, [module])
    assert circles == []


@pytest.mark.parametrize("module", sorted(sources()))
def test_every_module_says_what_it_is_for(module):
    path = sources()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstring = ast.get_docstring(tree)
    if path.name == "__init__.py" and not tree.body:
        return  # an empty package face
    assert docstring and len(docstring.split()) >= 5, f"{path}: no module docstring"


def test_the_architecture_page_names_every_module():
    page = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [
        str(path.relative_to(REPO))
        for path in sources().values()
        if path.name != "__init__.py" and path.name not in page
    ]
    assert missing == [], "add these to docs/architecture.md"
    assert "../shared" not in page  # the page refers to nothing outside the repository
