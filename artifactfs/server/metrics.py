"""The server's Prometheus metrics (``GET /metrics``, docs/metrics.md).

One ``ServerMetrics`` per application, each with a ``CollectorRegistry`` of its own rather
than prometheus_client's global one: a process (a test, say) may build several apps, and
two apps registering the same names in one registry would fail.

What is counted is taken where every request passes, the ``AuthAndLog`` middleware
(server/app.py), which calls ``request_done`` once per request, after its answer:

- requests by method, **route template** (``/api/v1/versions/{vid}``, never the path asked
  for: a path holds names and digests, one series each would grow without bound) and
  status; latency as a histogram by method and route; bytes received and sent;
- auth failures by reason (no key, an unknown key, a read-only key asking for a change);
- commits by outcome (a new version, or content held already: ``Store.commit``).

Labels never hold an entity, a key or a path, so a scrape shows traffic, not whose.
"""

from __future__ import annotations

import anyio
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

__all__ = ["METRICS_PATH", "ServerMetrics"]

METRICS_PATH = "/metrics"
"""Where Prometheus scrapes; outside ``/api/v1``, where scrapers look by default."""

UNMATCHED = "unmatched"
"""The route label of a request no route matched (a 404): one series for every such path."""

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# latency buckets (seconds): a cached lookup takes a millisecond, a large commit or a
# blob upload a minute; prometheus_client's default stops at 10 s
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0, 60.0)

# reasons for artifactfs_auth_failures_total
MISSING_KEY = "missing_key"
UNKNOWN_KEY = "unknown_key"
READ_ONLY_KEY = "read_only_key"


class ServerMetrics:
    """The counters of one server application, and the ``/metrics`` endpoint over them.

    ``public``: scrapes need no key (``serve --metrics-public``); by default a scrape needs
    an API key as every other route does.
    """

    def __init__(self, *, public: bool = False) -> None:
        self.public = public
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "artifactfs_http_requests", "Requests answered, by method, route template and "
            "status.", ["method", "route", "status"], registry=r)
        self.duration = Histogram(
            "artifactfs_http_request_duration_seconds", "Time from a request's arrival to "
            "the last byte of its answer, by method and route template.",
            ["method", "route"], buckets=_BUCKETS, registry=r)
        self.received = Counter(
            "artifactfs_http_request_bytes", "Bytes of request bodies received (uploads, "
            "commits), by method and route template.", ["method", "route"], registry=r)
        self.sent = Counter(
            "artifactfs_http_response_bytes", "Bytes of answer bodies sent (blob reads "
            "redirected to a bucket or a static server are not among them), by method and "
            "route template.", ["method", "route"], registry=r)
        self.in_progress = Gauge(
            "artifactfs_http_requests_in_progress", "Requests being answered now.",
            registry=r)
        self.auth_failures = Counter(
            "artifactfs_auth_failures", "Requests refused by the key check: no key "
            "(missing_key), a key the store does not know or no longer has (unknown_key), "
            "a read-only key asking for a change (read_only_key).", ["reason"], registry=r)
        self.commits = Counter(
            "artifactfs_commits", "Commits taken: a new version (created), or content a "
            "version held already, answered with that version (unchanged).", ["outcome"],
            registry=r)
        for reason in (MISSING_KEY, UNKNOWN_KEY, READ_ONLY_KEY):
            self.auth_failures.labels(reason)  # shown at 0 from the start, so rate() works
        for outcome in ("created", "unchanged"):
            self.commits.labels(outcome)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

    def keyless(self, path: str) -> bool:
        """Whether a request for ``path`` is answered without a key."""
        return self.public and path == METRICS_PATH

    def request_done(self, scope: Scope, status: int, seconds: float, received: int,
                     sent: int) -> None:
        """Count one answered request (called by the middleware, after its last byte)."""
        method = scope["method"] if scope["method"] in _METHODS else "other"
        route = route_template(scope)
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route).observe(seconds)
        if received:
            self.received.labels(method, route).inc(received)
        if sent:
            self.sent.labels(method, route).inc(sent)

    def auth_failed(self, reason: str) -> None:
        self.auth_failures.labels(reason).inc()

    def committed(self, *, unchanged: bool) -> None:
        self.commits.labels("unchanged" if unchanged else "created").inc()

    async def endpoint(self, request: Request) -> Response:
        """``GET /metrics``: the text format, or OpenMetrics when the scraper asks for it.
        Made in a worker thread (the process collector reads /proc)."""
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = await anyio.to_thread.run_sync(encoder, self.registry)
        return Response(body, headers={"Content-Type": content_type,
                                       "Cache-Control": "no-store"})


def route_template(scope: Scope) -> str:
    """The path template of the route that answered (or would answer) ``scope``.

    The router records the route it chose (``scope["route"]``); a request the middleware
    answered itself (a refused key) never reached it, so the application's routes are
    matched here, as the router would.
    """
    route = scope.get("route")
    if route is None:
        app = scope.get("app")
        partial = None
        for candidate in getattr(app, "routes", ()):
            match, _ = candidate.matches(scope)
            if match is Match.FULL:
                route = candidate
                break
            if match is Match.PARTIAL and partial is None:
                partial = candidate
        route = route or partial
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED
