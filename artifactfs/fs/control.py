"""The control channel between the CLI and a running mount.

Where: a Unix socket ``<mount id>.sock`` in a folder only the mounting user may enter (0700,
checked to be that user's own folder before use), published as the extended attribute
``user.artifactfs.control`` of the mount's root. Another local user can read that name but
cannot connect; the peer's uid is checked once more (SO_PEERCRED: the daemon's own user and
root only).

The protocol, newline-delimited JSON in UTF-8 (``core``-free, so ``control_client`` can
speak it without trio):

- the client sends one request line of at most ``MAX_REQUEST`` bytes within
  ``REQUEST_TIMEOUT`` seconds: ``{"op": "save"|"status"|"discard", "path":
  "PROJECT/TYPE/NAME:ALIAS/...", ...}``;
- the daemon answers with any number of ``{"progress": {...}}`` lines (a save reports its
  uploads), then one final line: ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.

Rules that keep a client from stopping or wedging the daemon: every client runs in a task
whose failures are logged as one line and never leave it; a client that hangs up, stalls,
sends garbage or too much is dropped; at most ``MAX_CLIENTS`` are served at once (more are
turned away at once rather than queued behind the stalled); each answer line may wait at most
``SEND_TIMEOUT`` for a client that does not read. A client that goes away does not cancel
what it asked for: a save it started runs to its end, and its outcome is logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from artifactfs.core.errors import ArtifactFSError
from artifactfs.files import private_folder
from artifactfs.fs.control_client import MAX_SOCKET_PATH, encode
from artifactfs.fs.saving import FolderCommands

__all__ = [
    "MAX_CLIENTS",
    "MAX_REQUEST",
    "REQUEST_TIMEOUT",
    "SEND_TIMEOUT",
    "control_socket_path",
    "serve_control",
]

log = logging.getLogger(__name__)

MAX_REQUEST = 1 << 20
REQUEST_TIMEOUT = 5.0
SEND_TIMEOUT = 10.0
MAX_CLIENTS = 16
_OPS = ("save", "status", "discard")

Progress = Callable[[dict[str, Any]], None]


class _Dropped(Exception):
    """The client broke the protocol; the message says how (for the one log line)."""


def control_socket_path(runtime_dir: Path, mount_id: str) -> tuple[Path, Path | None]:
    """The socket's path, and a folder made for it alone (to remove at exit) or None.

    A Unix socket's path is limited to 107 bytes; when ``runtime_dir`` is too deep for that,
    the socket goes into ``artifactfs-UID`` under the temporary folder (reused, so a killed
    daemon leaves no folder behind), or, when someone else holds that name, into a fresh
    private folder.
    """
    path = private_folder(runtime_dir) / f"{mount_id}.sock"
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        _remove_if_dead(path)
        return path, None
    try:
        path = private_folder(Path(tempfile.gettempdir()) / f"artifactfs-{os.getuid()}") / (
            f"{mount_id}.sock")
    except ArtifactFSError:  # planted by another user: a name nobody can guess instead
        own = Path(tempfile.mkdtemp(prefix="artifactfs-"))  # 0700, ours
        return own / f"{mount_id}.sock", own
    _remove_if_dead(path)
    return path, None


def _remove_if_dead(path: Path) -> None:
    """Remove a socket a killed daemon left; refuse to take one a live daemon answers on
    (two mounts of one mount point racing), raising ArtifactFSError."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except FileNotFoundError:
            return
        except OSError:  # refused (nobody listens), or not a socket at all
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
    raise ArtifactFSError(f"another artifactfs daemon answers on {path}: this mount point "
                          "is being mounted already")


def _peer_uid(sock: trio.socket.SocketType) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


async def serve_control(commands: FolderCommands, path: Path,
                        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Accept requests on a new socket at ``path`` until cancelled (the caller removes it)."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(64)
    slots = trio.Semaphore(MAX_CLIENTS)

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                slots.acquire_nowait()
            except trio.WouldBlock:
                log.warning("control: %d clients already connected; turned one away",
                            MAX_CLIENTS)
                return
            try:
                await _serve_client(commands, stream)
            except _Dropped as exc:
                log.warning("control: dropped a client: %s", exc)
            except Exception as exc:  # never let one client end the daemon
                log.warning("control: dropped a client after an error: %r", exc)
            finally:
                slots.release()

    task_status.started()
    await trio.serve_listeners(handle, [trio.SocketListener(sock)])


class _Answer:
    """Lines to one client: progress as it comes, then the final answer.

    Progress never waits on the client: a save reports into ``progress`` from its own tasks
    and goes on, while a pump task sends whatever is waiting whenever the previous line is
    out. Within one phase only the newest event waits (a slow client skips steps, not the
    end of a phase); what waits is sent before the final answer.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.gone: str | None = None  # why nothing more can be sent
        self._pending: list[dict[str, Any]] = []
        self._changed = trio.Event()
        self._finished = False

    def progress(self, event: dict[str, Any]) -> None:
        if self._pending and self._pending[-1].get("phase") == event.get("phase"):
            self._pending[-1] = event
        else:
            self._pending.append(event)
        self._changed.set()

    async def pump(self) -> None:
        while True:
            await self._changed.wait()
            self._changed = trio.Event()
            while self._pending:
                await self.send({"progress": self._pending.pop(0)})
            if self._finished:
                return

    def finish(self) -> None:
        self._finished = True
        self._changed.set()

    async def send(self, body: dict[str, Any]) -> None:
        if self.gone:
            return
        try:
            with trio.fail_after(SEND_TIMEOUT):
                await self.stream.send_all(encode(body))
        except trio.TooSlowError:
            self.gone = f"it read nothing for {SEND_TIMEOUT:.0f} s"
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.gone = f"it hung up ({exc.__cause__ or exc})"


async def _serve_client(commands: FolderCommands, stream: trio.SocketStream) -> None:
    uid = _peer_uid(stream.socket)
    answer = _Answer(stream)
    if uid not in (0, os.getuid()):
        await answer.send({"ok": False, "error": "permission denied"})
        raise _Dropped(f"uid {uid} may not use this mount's control channel")
    try:
        data = await _read_request(stream)
    except _Dropped as exc:
        await answer.send({"ok": False, "error": str(exc)})
        raise
    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer.pump)
        try:
            result = await _dispatch(commands, data, answer.progress)
        finally:
            answer.finish()
    await answer.send(result)
    if answer.gone:
        outcome = "done" if result.get("ok") else f"failed: {result.get('error')}"
        raise _Dropped(f"{_describe(data)} ({outcome}) could not be answered: {answer.gone}")


async def _read_request(stream: trio.SocketStream) -> bytes:
    """The request line; raises _Dropped when it is late, too long or never finished."""
    data = bytearray()
    try:
        with trio.fail_after(REQUEST_TIMEOUT):
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    raise _Dropped("it hung up before sending a whole request line")
                end = chunk.find(b"\n")
                if end >= 0:
                    data += chunk[:end]
                    break
                data += chunk
                if len(data) > MAX_REQUEST:
                    raise _Dropped(f"its request passed {MAX_REQUEST} bytes with no end of line")
    except trio.TooSlowError:
        raise _Dropped(f"it sent no whole request line within {REQUEST_TIMEOUT:.0f} s") from None
    except (trio.BrokenResourceError, ConnectionError):
        raise _Dropped("it hung up while sending its request") from None
    if len(data) > MAX_REQUEST:
        raise _Dropped(f"its request is over {MAX_REQUEST} bytes")
    return bytes(data)


def _describe(data: bytes) -> str:
    """A short, safe name for a request in a log line."""
    try:
        req = json.loads(data)
        return f"{str(req.get('op'))[:20]!r} of {str(req.get('path'))[:200]!r}"
    except (ValueError, AttributeError, RecursionError):
        return "a request"


def _parse(data: bytes) -> dict[str, Any]:
    try:
        req = json.loads(data)
    except (ValueError, RecursionError):
        raise ValueError("the request is not a line of JSON") from None
    if not isinstance(req, dict):
        raise ValueError("the request must be a JSON object")
    if req.get("op") not in _OPS:
        raise ValueError(f"unknown operation {str(req.get('op'))[:40]!r}; "
                         f"known: {', '.join(_OPS)}")
    if not isinstance(req.get("path", ""), str):
        raise ValueError("'path' must be a string")
    return req


async def _dispatch(commands: FolderCommands, data: bytes, progress: Progress) -> dict[str, Any]:
    try:
        req = _parse(data)
        op, path = req["op"], str(req.get("path", ""))
        if op == "status":
            result = await commands.status(path)
        elif op == "discard":
            result = await commands.discard(path)
        else:
            aliases = req.get("aliases") or []
            if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
                raise ValueError("'aliases' must be a list of strings")
            message = req.get("message")
            if message is not None and not isinstance(message, str):
                raise ValueError("'message' must be a string")
            result = await commands.save(path, aliases, message, bool(req.get("force")),
                                         progress=progress)
    except (ArtifactFSError, ValueError) as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:
        log.exception("control request %s failed", _describe(data))
        return {"ok": False, "error": f"the mount failed to do it: {exc}; see its log"}
    return {"ok": True, **result}
