"""``artifactfs lineage REF``: where a version came from and where it went.

Upstream: the run that logged it, the versions that run used, the runs that logged those,
and so on; downstream: the runs that used it, the versions they logged, the runs that used
those. ``--depth`` runs each way (3). Printed as a tree, as JSON (``--json``) or as a
Graphviz graph (``--dot``). Each level is a few registry calls, so a deep walk of a
much-used dataset asks a server many times: the depth bounds it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import click

from artifactfs.cli.output import emit_json, fail
from artifactfs.config import Config
from artifactfs.core.errors import ArtifactFSError
from artifactfs.core.names import parse_ref
from artifactfs.core.records import VersionInfo
from artifactfs.core.runs import LOGGED, USED, RunInfo
from artifactfs.registry import Registry, open_registry, with_key_entity

__all__ = ["lineage", "lineage_of"]

_DEFAULT_DEPTH = 3
_MAX_DEPTH = 20


def _version_node(info: VersionInfo) -> dict[str, Any]:
    return {"kind": "artifact", "id": info.id, "ref": info.qualified_name,
            "type": info.type, "aliases": sorted(info.aliases)}


def _run_node(run: RunInfo) -> dict[str, Any]:
    return {"kind": "run", "id": run.id, "path": run.path, "name": run.name,
            "job_type": run.job_type, "state": run.state}


class _Walk:
    """The lineage graph around one version, as nested nodes; each version and run is
    expanded once per direction (a run may use what it logged), then shown as seen."""

    def __init__(self, registry: Registry, entity: str, depth: int) -> None:
        self.registry, self.entity, self.depth = registry, entity, depth
        self._seen: set[tuple[str, str, str]] = set()  # (direction, kind, id)

    def _first(self, direction: str, kind: str, ident: str) -> bool:
        key = (direction, kind, ident)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def upstream(self, info: VersionInfo, level: int) -> dict[str, Any]:
        node = _version_node(info)
        node["logged_by"] = None
        if not self._first("up", "artifact", info.id):
            node["seen"] = True
            return node
        producers = self.registry.version_runs(self.entity, info.id, LOGGED)
        if producers:
            run = _run_node(producers[0])
            if level >= self.depth:
                run["more"] = True
            elif self._first("up", "run", producers[0].id):
                used = self.registry.run_versions(self.entity, producers[0].id, USED)
                run["used"] = [self.upstream(v, level + 1) for v in used]
            else:
                run["seen"] = True
            node["logged_by"] = run
        return node

    def downstream(self, info: VersionInfo, level: int) -> dict[str, Any]:
        node = _version_node(info)
        node["used_by"] = []
        if not self._first("down", "artifact", info.id):
            node["seen"] = True
            return node
        for consumer in self.registry.version_runs(self.entity, info.id, USED):
            run = _run_node(consumer)
            if level >= self.depth:
                run["more"] = True
            elif self._first("down", "run", consumer.id):
                made = self.registry.run_versions(self.entity, consumer.id, LOGGED)
                run["logged"] = [self.downstream(v, level + 1) for v in made]
            else:
                run["seen"] = True
            node["used_by"].append(run)
        return node


def lineage_of(registry: Registry, entity: str, info: VersionInfo,
               depth: int = _DEFAULT_DEPTH) -> dict[str, Any]:
    """The lineage of a version as ``--json`` prints it: the version, ``logged_by`` (its
    producer run with the versions it ``used``, each with its own ``logged_by``, up to
    ``depth`` runs up) and ``used_by`` (the consumer runs with the versions each
    ``logged``, each with its own ``used_by``, ``depth`` runs down). A run past the depth
    has ``more``; a node met before in the same direction has ``seen`` and no children."""
    up = _Walk(registry, entity, depth).upstream(info, 1)
    down = _Walk(registry, entity, depth).downstream(info, 1)
    return {**up, "used_by": down["used_by"]}


# ---- the tree ----------------------------------------------------------------------------

def _version_label(node: dict[str, Any]) -> str:
    aliases = ", ".join(node["aliases"])
    return f"{node['ref']} ({node['type']}{'; ' + aliases if aliases else ''})"


def _run_label(node: dict[str, Any], verb: str) -> str:
    job = f"job {node['job_type']}, " if node["job_type"] else ""
    name = f" {json.dumps(node['name'])}" if node["name"] != node["id"] else ""
    return f"{verb} run {node['id']}{name} ({job}{node['state']})"


def _children(node: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None]]:
    """(label, node to descend into) of the lines under a node of the tree."""
    out: list[tuple[str, dict[str, Any] | None]] = []
    if node["kind"] == "artifact":
        if node.get("seen"):
            return out
        if node.get("logged_by"):
            out.append((_run_label(node["logged_by"], "logged by"), node["logged_by"]))
        for run in node.get("used_by", []):
            out.append((_run_label(run, "used by"), run))
        return out
    if node.get("more"):
        return [("... (more: pass a larger --depth)", None)]
    for version in node.get("used", []):
        out.append(("used " + _version_label(version)
                    + (" (shown above)" if version.get("seen") else ""), version))
    for version in node.get("logged", []):
        out.append(("logged " + _version_label(version)
                    + (" (shown above)" if version.get("seen") else ""), version))
    return out


def tree_lines(graph: dict[str, Any]) -> Iterator[str]:
    yield _version_label(graph)
    if not _children(graph):
        yield "└── (no run logged or used it)"
    yield from _branches(graph, "")


def _branches(node: dict[str, Any], prefix: str) -> Iterator[str]:
    children = _children(node)
    for i, (label, child) in enumerate(children):
        last = i == len(children) - 1
        yield f"{prefix}{'└── ' if last else '├── '}{label}"
        if child is not None:
            yield from _branches(child, prefix + ("    " if last else "│   "))


# ---- Graphviz ----------------------------------------------------------------------------

def _dot_id(node: dict[str, Any]) -> str:
    return json.dumps(f"{'v' if node['kind'] == 'artifact' else 'r'}:{node['id']}")


def dot_lines(graph: dict[str, Any]) -> Iterator[str]:
    """A ``digraph``: versions as boxes, runs as ellipses; an edge version -> run is a use,
    run -> version a log (the way data flowed)."""
    nodes: dict[str, str] = {}
    edges: set[tuple[str, str]] = set()

    def add(node: dict[str, Any]) -> str:
        ident = _dot_id(node)
        if node["kind"] == "artifact":
            label = f"{node['ref']}\n{node['type']}"
            nodes[ident] = f"{ident} [shape=box, label={json.dumps(label)}]"
        else:
            label = f"run {node['id']}" + (f"\n{node['name']}" if node["name"] != node["id"]
                                           else "")
            if node["job_type"]:
                label += f"\n{node['job_type']}"
            nodes[ident] = f"{ident} [shape=ellipse, label={json.dumps(label)}]"
        return ident

    def visit(node: dict[str, Any]) -> None:
        me = add(node)
        if node["kind"] == "artifact":
            if node.get("logged_by"):
                edges.add((add(node["logged_by"]), me))
                visit(node["logged_by"])
            for run in node.get("used_by", []):
                edges.add((me, add(run)))
                visit(run)
            return
        for version in node.get("used", []):
            edges.add((add(version), me))
            visit(version)
        for version in node.get("logged", []):
            edges.add((me, add(version)))
            visit(version)

    visit(graph)
    yield "digraph lineage {"
    yield "  rankdir=LR;"
    for line in nodes.values():
        yield f"  {line};"
    for a, b in sorted(edges):
        yield f"  {a} -> {b};"
    yield "}"


@click.command()
@click.argument("ref")
@click.option("--depth", type=click.IntRange(1, _MAX_DEPTH), default=_DEFAULT_DEPTH,
              show_default=True, help="Runs to follow each way (up and down).")
@click.option("--json", "as_json", is_flag=True, help="Print the graph as JSON for scripts.")
@click.option("--dot", "as_dot", is_flag=True, help="Print a Graphviz graph (dot -Tsvg).")
def lineage(ref: str, depth: int, as_json: bool, as_dot: bool) -> None:
    """Show where REF ([ENTITY/]PROJECT/NAME[:ALIAS]) came from and where it went.

    Up: the run that logged REF, the versions that run used, the runs that logged those.
    Down: the runs that used REF (with artifactfs.init() and run.use_artifact, or a mount
    with --run), and the versions they logged. A run is shown with its id, name, job type
    and state.

    \b
    Examples:
      artifactfs lineage vision/resnet:latest
      artifactfs lineage vision/mnist:v0 --depth 5
      artifactfs lineage vision/resnet:best --json | jq '.logged_by.used[].ref'
      artifactfs lineage vision/resnet:latest --dot | dot -Tsvg > lineage.svg
    """
    if as_json and as_dot:
        fail("--json and --dot are two outputs; pick one")
    registry: Registry | None = None
    try:
        config = Config.from_env()
        parse_ref(ref, default_project=config.project)  # a bad ref is said before connecting
        registry = open_registry(config)
        config = with_key_entity(config, registry)  # a server's key without ENTITY: its own
        parsed = parse_ref(ref, default_project=config.project).with_entity(config.entity)
        assert parsed.entity is not None
        info = registry.resolve(parsed.entity, parsed.project, parsed.name, parsed.alias)
        graph = lineage_of(registry, parsed.entity, info, depth)
    except ArtifactFSError as exc:
        fail(str(exc))
    finally:
        if registry is not None:
            registry.close()
    if as_json:
        emit_json(graph)
        return
    for line in dot_lines(graph) if as_dot else tree_lines(graph):
        click.echo(line)
