"""The house's shape, as README "Layout" describes it: one-way imports, no circle, the web
layer imported only by its app factory's callers, parts wired in one place."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("diag", "checks", "collectors", "dashboards")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _owner(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    """Our modules that `module` imports anywhere (functions too; not under TYPE_CHECKING).
    A submodule's import of its own package is left out: Python runs the package first anyway."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            subs = [f"{base}.{a.name}" for a in node.names]
            targets = [t for t in subs if t in MODULES] + ([base] if any(t not in MODULES for t in subs) else [])
        else:
            continue
        for target in targets:
            owner = _owner(target)
            if owner and owner != module and not module.startswith(owner + "."):
                found.add(owner)
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_itself_back_through_others():
    assert _cycles() == []


def test_only_the_cli_reaches_into_the_web_layer_to_start_it():
    outside = {(m, t) for m, targets in GRAPH.items() for t in targets
               if t.startswith("diag.web") and not m.startswith("diag.web")}
    assert outside <= {("diag.cli", "diag.web.app"), ("diag.cli", "diag.web.server")}, sorted(outside)


def test_the_lower_floors_import_nothing_above_them():
    # collectors read sources, checks judge frames: neither knows the service, the store or
    # the web, only the shared vocabulary (metric catalogue, sample types, units, staleness).
    vocabulary = {"diag.catalogue", "diag.model", "diag.units", "diag.settings.stale"}
    for m, targets in GRAPH.items():
        if m.startswith(("collectors", "checks")):
            assert not {t for t in targets if t.startswith(("diag", "dashboards")) and t not in vocabulary}, m


def test_no_part_is_handed_the_whole_service():
    # Parts are built in diag/wiring.py with the typed parts they use; "service" is the
    # lifecycle's name, held by the CLI, the scheduler and the app factory only.
    for m, path in MODULES.items():
        if m in ("diag.service", "diag.cli", "diag.scheduler", "diag.web.app"):
            continue
        tree = ast.parse(path.read_text())
        params = [a.arg for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for a in f.args.args + f.args.kwonlyargs]
        assert "service" not in params, m


def test_the_service_module_is_lifecycle_only():
    assert len((ROOT / "diag" / "service.py").read_text().splitlines()) < 200
