"""An httpx transport on the standard library's ``http.client``, for bulk reads.

Blob bytes are most of what a mount moves, and on the default transport every received
block passes through h11 and httpx's stream layers: measured on the benchmark VM, 2.2 CPU-s
per GiB of 8 MiB ranges against 0.45 for ``http.client`` reading straight into one buffer,
and about 4 ms more for a cold 1 MiB range (docs/architecture.md). This transport keeps
httpx's client on top (headers, redirects, dropping ``Authorization`` on another origin,
timeouts as configured, proxies from the environment, which httpx mounts on its own
transports) and swaps only the wire underneath.

Requests must carry their whole body (``request.read()``): it is meant for GETs and small
POSTs. A response with a known length is read into one ``bytes`` object and handed to
httpx as a single block. Idle connections are kept per origin and reused; one
that turns out to have been closed by the server while idle is replaced once, before any
byte of the answer arrived, which is safe because only idempotent reads come here.
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

__all__ = ["KEEPALIVE_EXPIRY", "StdlibTransport"]

_Origin = tuple[str, str, int]
# Seconds an idle connection is kept. Below the 5 s after which uvicorn (artifactfs serve)
# closes an idle connection: with equal timeouts a request could go out on a connection the
# server was closing at that instant.
KEEPALIVE_EXPIRY = 4.0
_BLOCK = 1 << 20  # read size when a body is streamed in blocks
# a body up to this size is read into one buffer; a longer one (a server that ignored Range
# and sends a whole blob, or a bogus Content-Length) is streamed in blocks instead
_ONE_BUFFER_MAX = 64 << 20
# errors a reused connection gives when the server had closed it while it sat idle
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class StdlibTransport(httpx.BaseTransport):
    def __init__(self, *, max_idle: int = 32, idle_expiry: float = KEEPALIVE_EXPIRY,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._max_idle = max_idle
        self._idle_expiry = idle_expiry
        self._ssl_context = ssl_context
        # per origin, idle connections with the time each was given back (newest last)
        self._idle: dict[_Origin, list[tuple[http.client.HTTPConnection, float]]] = {}
        self._lock = threading.Lock()
        self._closed = False

    # ---- connections ---------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext:
        with self._lock:
            if self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context()
            return self._ssl_context

    def _take(self, origin: _Origin) -> http.client.HTTPConnection | None:
        oldest = time.monotonic() - self._idle_expiry
        with self._lock:
            idle = self._idle.get(origin)
            while idle:
                conn, since = idle.pop()
                if since >= oldest and _usable(conn):
                    return conn
                conn.close()
        return None

    def _give_back(self, origin: _Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if not self._closed and len(idle) < self._max_idle:
                idle.append((conn, time.monotonic()))
                return
        conn.close()

    def _connect(self, origin: _Origin, timeouts: dict[str, Any]) -> http.client.HTTPConnection:
        scheme, host, port = origin
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=timeouts.get("connect"),
                                               context=self._ssl())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeouts.get("connect"))
        try:
            conn.connect()
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        return conn

    def close(self) -> None:
        with self._lock:
            self._closed = True  # a body still being read does not bring its connection back
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn, _ in conns:
                conn.close()

    # ---- requests ------------------------------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        # the ASCII (IDNA) form of the host: what DNS and the Host header need
        host = url.raw_host.decode("ascii")
        origin = (url.scheme, host, url.port or (443 if url.scheme == "https" else 80))
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        body = request.read() or None
        target = url.raw_path.decode("ascii")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        conn = self._take(origin)
        while True:
            reused = conn is not None
            if conn is None:
                conn = self._connect(origin, timeouts)
            sending = True
            try:
                _set_timeout(conn, timeouts.get("write"))
                conn.putrequest(request.method, target, skip_host=True,
                                skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                conn.endheaders(body)
                sending = False
                _set_timeout(conn, timeouts.get("read"))
                answer = conn.getresponse()
                break
            except _STALE as exc:
                conn.close()
                if reused:  # closed by the server while idle: a fresh connection, once
                    conn = None
                    continue
                raise httpx.RemoteProtocolError(f"{host} closed the connection: {exc}"
                                                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if sending and isinstance(exc, TimeoutError):
                    raise httpx.WriteTimeout(f"sending to {host} timed out") from exc
                raise _mapped(exc, host) from exc
            except BaseException:
                conn.close()
                raise
        return httpx.Response(
            answer.status,
            headers=answer.getheaders(),
            stream=_Body(self, origin, conn, answer),
            extensions={"http_version": b"HTTP/1.1",
                        "reason_phrase": answer.reason.encode("latin-1", "replace")},
        )


class _Body(httpx.SyncByteStream):
    """One response's body; its connection goes back to the pool once read to the end."""

    def __init__(self, transport: StdlibTransport, origin: _Origin,
                 conn: http.client.HTTPConnection, answer: http.client.HTTPResponse) -> None:
        self._transport = transport
        self._origin = origin
        self._conn: http.client.HTTPConnection | None = conn
        self._answer = answer

    def __iter__(self) -> Iterator[bytes]:
        answer = self._answer
        try:
            if answer.length and answer.length <= _ONE_BUFFER_MAX:
                yield _read_exactly(answer, answer.length)
            elif answer.length == 0:
                answer.read()  # closes the answer, so the connection can be reused
            else:  # long, chunked, or until the server closes
                expected, got = answer.length, 0
                while block := answer.read(_BLOCK):
                    got += len(block)
                    yield block
                if expected is not None and got < expected:  # read(n) returns b"" early
                    raise httpx.RemoteProtocolError(
                        f"{self._origin[1]} ended its answer after {got} of {expected} bytes"
                    )
        except (OSError, http.client.HTTPException) as exc:
            self._discard()
            raise _mapped(exc, self._origin[1]) from exc
        except BaseException:
            self._discard()
            raise
        self._release()

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._answer.isclosed() and not self._answer.will_close:
            self._transport._give_back(self._origin, conn)
        else:
            conn.close()

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            # on a ``Connection: close`` answer http.client handed the socket to the answer
            self._answer.close()

    def close(self) -> None:
        answer = self._answer
        if self._conn is not None and not answer.isclosed():
            if answer.length == 0:  # HEAD, 204: nothing on the wire, the connection is fine
                answer.read()
            else:  # a body not read to its end leaves the connection mid-answer
                self._discard()
        self._release()


def _read_exactly(answer: http.client.HTTPResponse, size: int) -> bytes:
    # the buffered reader receives a long body straight into one new bytes object, which,
    # unlike ``bytearray(size)``, is not zero-filled first while holding the GIL: 7 to 26%
    # less CPU for the receiving thread on 8 MiB bodies, measured on the benchmark VM
    data = answer.read(size)
    if len(data) < size:
        raise httpx.RemoteProtocolError(f"answer ended after {len(data)} of {size} bytes")
    return data


def _set_timeout(conn: http.client.HTTPConnection, seconds: float | None) -> None:
    if conn.sock is not None:
        conn.sock.settimeout(seconds)


def _usable(conn: http.client.HTTPConnection) -> bool:
    """An idle connection is reusable if the server has not closed it (or sent anything).

    ``poll`` rather than ``select``, which fails for descriptors past 1024."""
    sock = conn.sock
    if sock is None:
        return False
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


def _mapped(exc: OSError | http.client.HTTPException, host: str) -> httpx.TransportError:
    """The httpx error for a failure of the standard library's client."""
    if isinstance(exc, TimeoutError):
        return httpx.ReadTimeout(f"{host} did not answer in time")
    if isinstance(exc, http.client.IncompleteRead):
        return httpx.RemoteProtocolError(f"{host} ended its answer early")
    if isinstance(exc, http.client.HTTPException):
        return httpx.RemoteProtocolError(f"bad answer from {host}: {exc!r}")
    return httpx.ReadError(f"connection to {host} failed: {exc}")
