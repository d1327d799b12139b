"""The client suites on the whole scale-out configuration, and the check that they reach every
route of the server there.

``pg-s3`` is a transport like ``embedded`` and ``server``: ``artifactfs serve --db
postgresql://... --blobs s3://...``, on a PostgreSQL database of the test's own (``pg_url``:
a copy of the template) and a prefix of its own in the session's SeaweedFS (``s3_url``), its
API key made in that database. The clients get no store folder (``ARTIFACTFS_STORE`` is
unset) and no storage credentials: blob bytes go both ways by presigned URL. The ``s3``
transport (the folder's SQLite, blobs in SeaweedFS) stays for the few tests that ask for it.

Which tests run there is decided here and only here: a test of the SDK, CLI or mount suite
decorated ``@scale_out`` runs on all three transports, one decorated
``@servers_and_scale_out`` (what only a server answers) on ``server`` and ``pg-s3``. The
pg-s3 runs carry the ``scale_out`` mark: ``pytest -m scale_out`` runs the subset alone.
docs/storage.md ("Tests") says which tests are in it and why.

The check: each pg-s3 server's access log is read when its test ends. At the end of a run
that selected the whole subset (all of tests/ collected, no pg-s3 test deselected by ``-k``,
``-m``, ``--deselect`` or ``--lf``) and in which no test failed, every method of every route
of ``create_app`` must have been answered at least once on pg-s3 (but the health route,
whose 200 answers the server does not log); otherwise the run fails, naming the routes never
exercised. A run of part of the suite only says that it did not check.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import RegistryServer

__all__ = ["SCALE_OUT", "TRANSPORTS", "answered_requests", "never_answered", "pg_s3_registry",
           "record_routes", "scale_out", "servers_and_scale_out"]

TRANSPORTS = ("embedded", "server")
"""What every SDK, CLI and mount test runs on (the ``transport`` fixture's own params)."""
SCALE_OUT = "pg-s3"

_in_subset = pytest.param(SCALE_OUT, marks=pytest.mark.scale_out)
scale_out = pytest.mark.parametrize("transport", [*TRANSPORTS, _in_subset], indirect=True)
"""A test of the subset: it runs on pg-s3 as well as on the usual transports."""
servers_and_scale_out = pytest.mark.parametrize("transport", ["server", _in_subset],
                                                indirect=True)
"""A test of the subset about what only a server answers: on ``server`` and pg-s3."""

_TESTS = Path(__file__).resolve().parent
# an access-log line of server/app.py (AuthAndLog): client, entity, "METHOD PATH", status,
# bytes sent, time taken
_ACCESS = re.compile(r' artifactfs\.server: \S+ \S+ "([A-Z]+) (.*)" (\d{3}) \d+ [\d.]+ms$')
# answered before any route ran: no key or a refused one, a method the path does not take
_NOT_ROUTED = frozenset({"401", "403", "405"})
# Starlette answers HEAD on every GET route by running the GET; only the blob route answers
# it itself (the size from the store, never a redirect), so only there is it a route apart
_HEAD_ROUTES = frozenset({"/api/v1/blobs/{key}"})
# routes no access log can show: a load balancer's health polls, whose 200 answers the server
# leaves out of its log (they would be most of it); their own tests are in tests/server
_NOT_LOGGED = frozenset({"/api/v1/health"})

_answered: set[tuple[str, str]] = set()  # (method, path) a pg-s3 server answered
_run: dict[str, Any] = {"selected": 0, "dropped": 0, "verdict": None}


@contextlib.contextmanager
def pg_s3_registry(env: dict[str, str], tmp_path: Path,
                   request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """A server on this test's PostgreSQL database and S3 prefix; the clients' environment
    (``env`` with the registry, its key, and no store folder) until exit. Its access log is
    recorded for the route check once it has stopped."""
    from artifactfs.store.database import parse_db_url
    from artifactfs.store.metadata import MetadataDB

    seaweed = request.getfixturevalue("seaweed")
    db_url: str = request.getfixturevalue("pg_url")
    blobs_url: str = request.getfixturevalue("s3_url")
    db = MetadataDB(parse_db_url(db_url))
    try:
        key = db.create_key("local")
    finally:
        db.close()
    clients = {k: v for k, v in env.items() if k != "ARTIFACTFS_STORE"}
    server = RegistryServer(tmp_path / "store", tmp_path / "server.log",
                            env={**clients, **seaweed.env}, db_url=db_url, blobs_url=blobs_url)
    try:
        yield {**clients, "ARTIFACTFS_REGISTRY": server.url, "ARTIFACTFS_API_KEY": key}
    finally:
        server.stop()
        record_routes(server.log_text())


def record_routes(log_text: str) -> None:
    """Note every request a pg-s3 server's log says it answered through a route."""
    _answered.update(answered_requests(log_text))


def answered_requests(log_text: str) -> set[tuple[str, str]]:
    """(method, path) of each request a server's log says it answered through a route."""
    found = (_ACCESS.search(line) for line in log_text.splitlines())
    return {(m.group(1), m.group(2)) for m in found if m and m.group(3) not in _NOT_ROUTED}


def server_routes() -> list[tuple[str, str, re.Pattern[str]]]:
    """(method, path template, its regular expression) of every route of ``create_app`` that
    a log can show."""
    from starlette.routing import Route

    from artifactfs.server.app import create_app
    from artifactfs.store import Store

    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder))
        try:
            app = create_app(store)
        finally:
            store.db.close()
    found = []
    for route in app.routes:
        # the web view's pages (server/web/, a Mount and two routes at /) are a browser's,
        # over the store calls the API routes make; tests/test_web.py has them
        if not getattr(route, "path", "").startswith("/api/"):
            continue
        assert isinstance(route, Route), f"not a Route: {route!r}"
        for method in sorted(route.methods or ()):
            if route.path not in _NOT_LOGGED and (method != "HEAD" or route.path in _HEAD_ROUTES):
                found.append((method, route.path, route.path_regex))
    return found


def never_answered(answered: set[tuple[str, str]]) -> list[str]:
    """``METHOD /template`` of each route that none of the ``answered`` requests reached."""
    return [f"{method} {path}" for method, path, regex in server_routes()
            if not any(m == method and regex.match(p) for m, p in answered)]


def _whole_tree(config: pytest.Config) -> bool:
    """Whether this run collected all of tests/ (no file, test or ``--ignore`` narrowed it)."""
    if config.getoption("ignore") or config.getoption("ignore_glob"):
        return False
    for arg in config.args:
        path = (config.invocation_params.dir / arg).resolve()
        if "::" in arg or not (path == _TESTS or path in _TESTS.parents):
            return False
    return True


def _is_scale_out(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("transport") == SCALE_OUT


# ---- the hooks (tests/conftest.py registers this module as a plugin) ---------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scale_out: the run of a test on the pg-s3 transport "
                            "(tests/scale_out.py)")


def pytest_deselected(items: list[pytest.Item]) -> None:
    _run["dropped"] += sum(map(_is_scale_out, items))


def pytest_collection_finish(session: pytest.Session) -> None:
    _run["selected"] = sum(map(_is_scale_out, session.items))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _run["selected"] or session.config.option.collectonly:
        return
    if _run["dropped"] or not _whole_tree(session.config) or session.testsfailed:
        _run["verdict"] = ("not checked: this run did not select the whole subset, or a test "
                           "failed")
        return
    missing = never_answered(_answered)
    if missing:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        _run["verdict"] = (f"FAILED: {len(missing)} route(s) never answered on {SCALE_OUT} "
                           "(mark a test that reaches them @scale_out):\n  "
                           + "\n  ".join(missing))
    else:
        _run["verdict"] = (f"every route answered on {SCALE_OUT} by its "
                           f"{_run['selected']} tests")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _run["verdict"]:
        failed = _run["verdict"].startswith("FAILED")
        terminalreporter.write_sep("-", "scale-out route check", red=failed, bold=failed)
        terminalreporter.write_line(_run["verdict"])
