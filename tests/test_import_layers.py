"""The layers above the store do not load it: a client of a server (the HTTP registry, the
SDK, the content cache, the mount's staging) has no SQLite database and no blob folder of its
own, and loading them would cost every command's start and tie those layers to the store's
internals. Checked in a fresh interpreter, where nothing else has imported them already."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_FORBIDDEN = ("sqlite3", "artifactfs.store")


@pytest.mark.parametrize("modules", [
    ["artifactfs.registry.http"],
    ["artifactfs.sdk"],
    ["artifactfs.cache", "artifactfs.fs.staging", "artifactfs.content"],
])
def test_client_layers_do_not_load_the_store(modules: list[str]) -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    loaded = json.loads(out)
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in _FORBIDDEN)]
    assert not bad, f"importing {modules} loaded {bad}"


def _module_imports(top_level_only: bool) -> dict[str, set[str]]:
    """For each module of the package, the package's modules it imports: at its top level
    (what runs when it is imported; ``if TYPE_CHECKING:`` blocks left out), or anywhere."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "artifactfs"
    paths = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        paths[name] = path
    edges: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text())
        if top_level_only:
            nodes: list[ast.AST] = [n for n in tree.body if not (
                isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test))]
        else:
            nodes = list(ast.walk(tree))
        found: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths
                           else node.module for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in paths:
                    target = target.rpartition(".")[0]
                if target and target not in (name, "artifactfs"):
                    found.add(target)
        edges[name] = found
    return edges


def test_modules_import_one_way() -> None:
    """What a module imports when it is imported never leads back to it: a cycle makes the
    outcome depend on which module is imported first (a name half-defined, an
    ImportError), and means two layers that should be one over the other are not."""
    edges = _module_imports(top_level_only=True)
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for nxt in sorted(edges[module]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt):], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)


def test_the_sdks_lower_modules_never_import_artifact_or_api() -> None:
    """``client`` <- ``entry`` <- ``manifest`` <- ``artifact`` <- ``api``: the lower ones
    import neither ``artifact.py`` nor ``api.py``, not even inside a function or for the
    type checker (an entry reaches its artifact through a protocol)."""
    edges = _module_imports(top_level_only=False)
    for low in ("client", "entry", "manifest", "paths", "posix", "references"):
        bad = edges[f"artifactfs.sdk.{low}"] & {"artifactfs.sdk.artifact", "artifactfs.sdk.api"}
        assert not bad, f"artifactfs.sdk.{low} imports {bad}"
    assert "artifactfs.sdk.api" not in edges["artifactfs.sdk.artifact"]
