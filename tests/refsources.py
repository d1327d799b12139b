"""A real HTTP server on loopback that references point at, for the reference tests.

It serves objects from a table the test changes while it runs (bytes, ETag or none), answers
``Range`` (206) and ``If-Match`` (412 when the ETag differs) unless told to ignore them, as
some servers do, and records every request it got (method, path, range, headers). One
``ThreadingHTTPServer`` in a thread of the test process; the fixture shuts it down and joins
the thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["HttpSource", "Served", "serving"]


@dataclass
class Served:
    data: bytes
    etag: str | None = None  # as sent, quotes included
    ranges: bool = True  # answers Range with 206
    if_match: bool = True  # honours If-Match
    delay: float = 0.0  # seconds between the headers and the body of a whole answer


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class HttpSource:
    server: ThreadingHTTPServer
    objects: dict[str, Served] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def put(self, path: str, data: bytes, etag: str | None = None, **kwargs: Any) -> str:
        """Serve ``data`` at ``path``; returns its URL."""
        self.objects[path] = Served(data, etag, **kwargs)
        return self.url + path

    def requests_for(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path.split("?")[0] == path]


def _handler(source: HttpSource) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            source.seen.append(Seen("GET", self.path, dict(self.headers.items())))
            served = source.objects.get(self.path.split("?")[0])
            if served is None:
                self._answer(404, b"not found")
                return
            match = self.headers.get("If-Match")
            if served.if_match and match is not None and match != served.etag:
                self._answer(412, b"precondition failed")
                return
            data, status = served.data, 200
            extra: dict[str, str] = {}
            wanted = self.headers.get("Range")
            if served.ranges and wanted and wanted.startswith("bytes="):
                first, _, last = wanted[6:].partition("-")
                start, end = int(first), min(len(data), int(last) + 1)
                extra["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
                data, status = data[start:end], 206
            if served.etag is not None:
                extra["ETag"] = served.etag
            self._answer(status, data, extra, served.delay if status == 200 else 0.0)

        def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                    delay: float = 0.0) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if delay:
                self.wfile.flush()
                time.sleep(delay)
            self.wfile.write(body)

    return Handler


@contextlib.contextmanager
def serving() -> Iterator[HttpSource]:
    """A loopback HTTP server whose objects the test sets (``put``) and changes; a test
    module's fixture wraps it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    source = HttpSource(server)
    server.RequestHandlerClass = _handler(source)
    server.daemon_threads = True
    # a client that closes early (add_reference reads an ETag's headers alone) is no error
    server.handle_error = lambda request, address: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, name="http-source", daemon=True)
    thread.start()
    try:
        yield source
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
