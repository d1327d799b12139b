"""The HTTP connections of ``artifactfs serve``: uvicorn's h11 protocol with the limits that a
server anyone can reach without a key needs.

Without them a few clients can exhaust the server before any key is checked: uvicorn has no
timeout for the request line and headers of a connection's first request (its keep-alive
timer starts only after a response, and any byte cancels it), httptools reads a header of
any size (64 MiB of ``Authorization`` grew the process by 600 MB), and idle connections
hold file descriptors until the process can accept no more.

- **Header timeout.** From the moment a connection opens, or a response ends, a client has
  ``header_timeout`` seconds to deliver a complete request line and headers (the rest of a
  body sent after its answer, say a 401, counts against the same clock). Then the
  connection is closed, with a ``408`` when part of a request had arrived.
- **Header size.** h11 keeps the unfinished request head in one buffer and refuses it past
  ``max_incomplete_event_size`` bytes; that is set to ``max_header_bytes`` and the refusal
  is answered ``431``, as a JSON error like every other (uvicorn answers every h11 error
  with a plain-text 400).
- **Body timeout.** While the server waits for a request's body, a client that sends no
  byte of it for ``body_timeout`` seconds is disconnected: a key holder could otherwise keep
  any number of uploads (each with a connection and a temporary file) open for ever. Time
  the server itself holds reading back (flow control, while the application is busy) does
  not count.
- **Connection limit.** At most ``max_connections`` are open. A connection beyond it closes
  the one that has waited longest without a request in progress (a client sending headers
  slowly, or an idle keep-alive connection), so idle connections can never starve a real
  request; when every connection has a request in progress, the newcomer's requests are
  answered ``503``.

Every error is answered in JSON and then the connection is closed gracefully (write side
first, what the client still sends dropped for two seconds), so that the client reads the
answer instead of a reset.

The choice of h11 over httptools (faster, but with no bound on a header) is explained in
docs/api.md, with the figures. The subclass relies on ``H11Protocol``'s ``conn``, ``cycle``,
``app``, ``on_response_complete`` and ``send_400_response``, stable since uvicorn 0.13;
tests/server/test_exhaustion.py checks the behaviour against a real ``artifactfs serve``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from artifactfs.core.wire import error_body

__all__ = ["ConnectionLimits", "limited_protocol"]

log = logging.getLogger("artifactfs.server")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one connection may hold of the server, and how many may be open."""

    header_timeout: float = 10.0
    """Seconds to send a request line and headers, counted from the connection's start or
    the end of the previous response."""
    max_header_bytes: int = 64 << 10
    """Largest request line plus headers; more is answered 431."""
    max_connections: int = 1024
    """Most connections open at once (each holds a file descriptor)."""
    body_timeout: float = 60.0
    """Seconds a request body may go without a byte while the server waits for it."""


# seconds an answered error keeps reading (and dropping) what the client still sends
_LINGER = 2.0

_REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large",
            503: "Service Unavailable"}
_KINDS = {400: "InvalidRequest", 408: "Timeout", 431: "TooLarge", 503: "Unavailable"}


def _error_response(status: int, message: str) -> bytes:
    """A complete JSON error response that ends the connection, as bytes for the socket."""
    body = json.dumps(error_body(_KINDS[status], message)).encode()
    head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


class _Connection(h11.Connection):
    """h11's connection, remembering the error that ended it so that its status hint (431)
    reaches the answer, and reading any malformed number as a protocol error."""

    last_error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.last_error = exc
            raise
        except ValueError as exc:
            # h11 converts Content-Length with int(), which refuses 4,300 digits and more
            error = h11.RemoteProtocolError(f"malformed request: {exc}", error_status_hint=400)
            self.last_error = error
            raise error from None


async def _over_capacity(scope: Any, receive: Any, send: Any) -> None:
    """The ASGI answer of a connection beyond the limit while every other one is busy."""
    body = json.dumps(error_body(
        "Unavailable", "the server has as many connections as it takes; try again shortly"
    )).encode()
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), (b"retry-after", b"1")]})
    await send({"type": "http.response.body", "body": body})


class _LimitedH11Protocol(H11Protocol):
    """H11Protocol with a header timeout, a header size limit answered 431 and a connection
    limit; ``limited_protocol`` makes a class of it bound to one set of limits."""

    limits: ConnectionLimits = ConnectionLimits()
    # every open connection of this server, in the order they last became idle (connection
    # made, response finished): the first idle one is the one to close for a newcomer
    open_connections: OrderedDict[_LimitedH11Protocol, None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._head_bytes = False  # some bytes of the awaited request head have arrived
        self._answered = False  # an error was answered: what comes now is read and dropped

    # ``H11Protocol`` reads ``self.app`` when a request's headers are complete: the place to
    # choose between the application and the 503 of a connection over the limit
    @property
    def app(self) -> Any:
        return self._app if self._admitted() else _over_capacity

    @app.setter
    def app(self, value: Any) -> None:
        self._app = value

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.open_connections[self] = None
        self._admitted()  # make room now, so the descriptors stay within the limit
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open_connections.pop(self, None)
        self._cancel_head_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return
        if self.conn.their_state is h11.IDLE:
            self._head_bytes = True
        super().data_received(data)
        if not self._idle():  # a request head is complete and its answer pending
            self._cancel_head_timer()
        self._await_body()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self in self.open_connections:
            # also while the rest of a body nobody reads trickles in (after a 401, say):
            # the clock runs until the next request's head is complete
            self.open_connections.move_to_end(self)
            self._await_head()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to every h11 error; keep h11's status (431 for a head too large)
        and answer in JSON like the application does."""
        error = getattr(self.conn, "last_error", None)
        status = error.error_status_hint if error is not None else 400
        if status == 431:
            message = (f"the request line and headers exceed {self.limits.max_header_bytes} "
                       "bytes")
        else:
            status = 400
            message = f"malformed HTTP request: {error or msg}"
        log.info("%s: answered %d: %s", self._peer(), status, message)
        self._answer_and_close(status, message)

    def _answer_and_close(self, status: int, message: str) -> None:
        """Send an error and end the connection so that the client reads it: a socket
        closed with unread bytes sends a reset that can destroy the answer in flight, so
        the write side is shut first and what the client still sends is read and dropped
        for a moment (the "lingering close" of Apache and nginx)."""
        self._answered = True
        self._cancel_head_timer()
        self.transport.write(_error_response(status, message))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(_LINGER, self.transport.close)
        else:
            self.transport.close()

    # ---- header timeout ---------------------------------------------------------------------

    def _await_head(self) -> None:
        self._cancel_head_timer()
        self._head_bytes = False
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._idle():
            return
        if self._head_bytes:  # part of a request came: say why it goes unanswered
            log.info("%s: request headers not complete after %gs; closing", self._peer(),
                     self.limits.header_timeout)
            self._answer_and_close(408, f"request line and headers not complete within "
                                        f"{self.limits.header_timeout:g} seconds")
        else:
            self.transport.close()

    # ---- body timeout -----------------------------------------------------------------------

    def _await_body(self) -> None:
        """(Re)start the body clock while the rest of a request body is awaited."""
        self._cancel_body_timer()
        if self.conn.their_state is h11.SEND_BODY and not self._idle():
            self._body_timer = self.loop.call_later(self.limits.body_timeout,
                                                    self._body_timed_out)

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if (self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY
                or self._idle()):
            return
        if self.flow is not None and self.flow.read_paused:  # we hold it back, not them
            self._await_body()
            return
        log.info("%s: no byte of the request body for %gs; closing", self._peer(),
                 self.limits.body_timeout)
        self.transport.close()  # the application sees the client go (499 in the log)

    # ---- connection limit -------------------------------------------------------------------

    def _admitted(self) -> bool:
        """Whether this connection is within the limit, closing the longest-idle other
        connections to bring it there."""
        excess = len(self.open_connections) - self.limits.max_connections
        if excess <= 0:
            return True
        for other in list(self.open_connections):
            if excess <= 0:
                break
            if other is not self and other._idle():
                self.open_connections.pop(other, None)
                other._cancel_head_timer()
                other.transport.close()
                excess -= 1
        return excess <= 0

    def _idle(self) -> bool:
        """No answer pending: waiting for a request head, or for the end of a body no one
        reads any more; closing such a connection loses nothing."""
        return self._answered or self.cycle is None or self.cycle.response_complete

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "-"


def limited_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """A uvicorn ``http=`` protocol class enforcing ``limits`` (one class per server, so its
    connections share one table)."""
    return type("LimitedH11Protocol", (_LimitedH11Protocol,),
                {"limits": limits, "open_connections": OrderedDict()})
