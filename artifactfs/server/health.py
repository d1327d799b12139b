"""``GET /api/v1/health``: whether this server can answer requests now, for a load balancer.

It needs no key (a balancer has none) and so tells nothing a stranger could use: whether the
database and the blob store answer, and no more. No address of either, no error text (the
server's log has it, one warning line per failed check), no version of artifactfs, Python
or PostgreSQL: a version names the known bugs to try, and whoever runs the server knows
it from ``artifactfs --version`` on the host. The answer is ``200 {"status": "ok",
"database": "ok", "blobs": "ok"}``, or ``503`` with ``Retry-After`` and ``"unavailable"``
for the part (or parts) that did not answer.

A balancer polls every few seconds, from every balancer to every replica, so a check is
cheap and bounded:

- one trivial query (``MetadataDB.ping``: a row of ``alembic_version``) and one probe of the
  blob store (``BlobStore.check_reachable``: a stat of the folder, or one HEAD of the bucket);
- at most ``CHECK_TIMEOUT`` seconds: a part that has not answered by then counts as down;
- one check of a part at a time, its answer reused for ``FRESH_FOR`` seconds: requests that
  come while a check runs wait for its answer instead of starting another, and a check
  stuck on a database that does not answer (a network that drops packets) holds one
  thread, not one per poll;
- in threads of a limiter of its own, so that a server whose request threads are all busy
  (40 commits at once) still answers its balancer from the parts' own state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from artifactfs.core.errors import ArtifactFSError
from artifactfs.core.wire import API_PREFIX
from artifactfs.store import Store

__all__ = ["CHECK_TIMEOUT", "FRESH_FOR", "HEALTH_PATH", "Health"]

log = logging.getLogger("artifactfs.server")

HEALTH_PATH = API_PREFIX + "/health"
CHECK_TIMEOUT = 2.0
"""Seconds a part has to answer its check (balancers time a check out after 2 to 5 s)."""
FRESH_FOR = 1.0
"""Seconds a part's answer is reused for the health requests that follow it."""
_WAIT_STEP = 0.01


class _Run:
    """One run of a probe's check: whether its thread has begun."""

    started = False


class _Probe:
    """One part's check, run in a worker thread, one at a time, its answer kept briefly."""

    def __init__(self, name: str, check: Callable[[], None]) -> None:
        self.name = name
        self._check = check
        self._lock = threading.Lock()  # the loop reads what a worker thread writes
        self._current: _Run | None = None  # the check under way
        self._answer: tuple[bool, float] | None = None  # (healthy, monotonic time)

    async def healthy(self, limiter: anyio.CapacityLimiter) -> bool:
        """Whether the part answered its latest check, made now unless one is fresh."""
        with anyio.move_on_after(CHECK_TIMEOUT):
            while True:
                with self._lock:
                    answer = self._answer
                    if answer is not None and time.monotonic() - answer[1] < FRESH_FOR:
                        return answer[0]
                    run = None
                    if self._current is None:
                        run = self._current = _Run()
                if run is None:
                    await anyio.sleep(_WAIT_STEP)  # another request's check is under way
                    continue
                try:
                    # abandoned (left to finish in its thread) when the time is up
                    return await anyio.to_thread.run_sync(self._run, run, limiter=limiter,
                                                          abandon_on_cancel=True)
                finally:
                    with self._lock:  # cancelled before its thread began: none is under way
                        if not run.started and self._current is run:
                            self._current = None
        log.warning("health: the %s did not answer within %g s", self.name, CHECK_TIMEOUT)
        return False

    def _run(self, run: _Run) -> bool:
        with self._lock:
            run.started = True
        healthy = False
        try:
            self._check()
            healthy = True
        except ArtifactFSError as exc:  # its message names the part, never a secret
            log.warning("health: the %s is unavailable: %s", self.name, exc)
        except Exception as exc:  # a check must answer, whatever went wrong in it
            log.warning("health: the %s check failed: %s", self.name, type(exc).__name__)
        finally:
            with self._lock:
                if self._current is run:
                    self._current = None
                self._answer = (healthy, time.monotonic())
        return healthy


class Health:
    """The health route of one server's store."""

    def __init__(self, store: Store, *, retry_after: int) -> None:
        self._probes = (_Probe("database", store.db.ping),
                        _Probe("blob store", store.blobs.check_reachable))
        self._retry_after = retry_after
        self._limiter: anyio.CapacityLimiter | None = None

    async def endpoint(self, request: Request) -> Response:
        """``GET /health``: both parts checked at once, so the answer takes one bound."""
        if self._limiter is None:  # made on the event loop, which it belongs to
            self._limiter = anyio.CapacityLimiter(len(self._probes))
        limiter = self._limiter
        results: dict[str, bool] = {}

        async def check(probe: _Probe) -> None:
            results[probe.name] = await probe.healthy(limiter)

        async with anyio.create_task_group() as group:
            for probe in self._probes:
                group.start_soon(check, probe)
        database, blobs = results["database"], results["blob store"]
        ok = database and blobs
        body = {"status": "ok" if ok else "unavailable",
                "database": "ok" if database else "unavailable",
                "blobs": "ok" if blobs else "unavailable"}
        headers = {"Cache-Control": "no-store"}
        if not ok:
            headers["Retry-After"] = str(self._retry_after)
        return JSONResponse(body, status_code=200 if ok else 503, headers=headers)
