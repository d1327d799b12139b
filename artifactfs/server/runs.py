"""The server's run routes, under the entity (docs/api.md, "Runs and lineage").

::

    POST  /entities/{entity}/runs                        {"id", "project", "name",
                                                          "job_type", "config"} -> 201 run
    GET   /entities/{entity}/runs/{run}                   the run
    PATCH /entities/{entity}/runs/{run}                   {"state": "finished"|"failed"}
    PUT   /entities/{entity}/runs/{run}/{kind}/{vid}      record: the run logged/used vid
    GET   /entities/{entity}/runs/{run}/{kind}            the versions it logged/used
    GET   /entities/{entity}/versions/{vid}/runs/{kind}   the runs that logged/used vid

The key rules are everyone's: a key sees its own entity's runs and versions only (another
entity's answer 404), and a read-only key changes nothing, but for one thing: it may record
that a run *used* a version (a training job's mount reads with a read-only key, and records
its reads). ``read_only_allowed`` is the middleware's test for that one route.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from artifactfs.core.runs import USED, validate_link, validate_run_id
from artifactfs.core.wire import API_PREFIX

if TYPE_CHECKING:
    from artifactfs.server.app import Endpoint, Registry

__all__ = ["read_only_allowed", "run_routes"]

_USE_PATH = re.compile(re.escape(API_PREFIX) + r"/entities/[^/]+/runs/[^/]+/" + USED
                       + r"/[^/]+")


def read_only_allowed(method: str, path: str) -> bool:
    """Whether a read-only key may make this change: recording a run's use of a version."""
    return method == "PUT" and _USE_PATH.fullmatch(path) is not None


class _RunRoutes:
    def __init__(self, registry: Registry) -> None:
        self.r = registry
        self.runs = registry.store.runs

    async def create(self, request: Request) -> Response:
        entity = self.r._entity(request)
        body = await self.r._json(request)
        field = self.r._field
        run_id = field(body, "id", str, None)
        info = await self.r._run(lambda: self.runs.create(
            entity, field(body, "project", str), name=field(body, "name", str, None),
            job_type=field(body, "job_type", str, None), config=field(body, "config", dict, {}),
            run_id=None if run_id is None else validate_run_id(run_id)))
        return JSONResponse(info.to_dict(), status_code=201)

    async def get(self, request: Request) -> Response:
        entity = self.r._entity(request)
        info = await self.r._run(self.runs.get, entity, request.path_params["run"])
        return JSONResponse(info.to_dict())

    async def finish(self, request: Request) -> Response:
        entity = self.r._entity(request)
        state = self.r._field(await self.r._json(request), "state", str)
        info = await self.r._run(self.runs.finish, entity, request.path_params["run"], state)
        return JSONResponse(info.to_dict())

    async def link(self, request: Request) -> Response:
        entity = self.r._entity(request)
        p = request.path_params
        kind = validate_link(p["kind"])
        made = await self.r._run(self.runs.link, entity, validate_run_id(p["run"]), p["vid"],
                                 kind)
        return JSONResponse({"run": p["run"], "kind": kind, "version": p["vid"],
                             "new": made}, status_code=201 if made else 200)

    async def versions(self, request: Request) -> Response:
        entity = self.r._entity(request)
        p = request.path_params
        found = await self.r._run(self.runs.versions_of, entity, p["run"], p["kind"])
        return JSONResponse([v.to_wire() for v in found])

    async def version_runs(self, request: Request) -> Response:
        entity = self.r._entity(request)
        p = request.path_params
        found = await self.r._run(self.runs.runs_of, entity, p["vid"], p["kind"])
        return JSONResponse([run.to_dict() for run in found])


def run_routes(registry: Registry, handle: Callable[[Endpoint], Endpoint]) -> list[Route]:
    """The run routes of ``create_app``, each wrapped by its error handling (``handle``)."""
    h = _RunRoutes(registry)
    runs = API_PREFIX + "/entities/{entity}/runs"
    one = runs + "/{run}"
    routes: list[tuple[str, Any, str]] = [
        (runs, h.create, "POST"),
        (one, h.get, "GET"),
        (one, h.finish, "PATCH"),
        (one + "/{kind}/{vid}", h.link, "PUT"),
        (one + "/{kind}", h.versions, "GET"),
        (API_PREFIX + "/entities/{entity}/versions/{vid}/runs/{kind}", h.version_runs, "GET"),
    ]
    return [Route(path, handle(func), methods=[method]) for path, func, method in routes]
