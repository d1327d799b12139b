"""The control channel between the CLI and a running mount: one JSON line each way.

The daemon listens on an abstract Unix socket (no file to clean up after a crash) whose
address it publishes as the extended attribute ``user.artifactfs.control`` of the mount's
root; only the daemon's own user and root may talk to it (checked with SO_PEERCRED).
Requests: ``{"op": "save"|"status"|"discard", "path": "PROJECT/TYPE/NAME:ALIAS/...", ...}``.
Answers: ``{"ok": true, ...}`` or ``{"ok": false, "error": "what went wrong"}``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
from typing import Any

import trio

from artifactfs.core.errors import ArtifactFSError
from artifactfs.fs.control_client import encode
from artifactfs.fs.saving import FolderCommands

__all__ = ["MAX_REQUEST", "serve_control"]

log = logging.getLogger(__name__)

MAX_REQUEST = 1 << 20


def _peer_uid(sock: trio.socket.SocketType) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


async def serve_control(commands: FolderCommands, address: str,
                        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Accept requests on ``address`` (``@name`` for the abstract namespace) until cancelled."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(address.replace("@", "\0", 1))
    sock.listen(16)
    listener = trio.SocketListener(sock)
    task_status.started()

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            if _peer_uid(stream.socket) not in (0, os.getuid()):
                await stream.send_all(encode({"ok": False, "error": "permission denied"}))
                return
            data = b""
            while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                data += chunk
            await stream.send_all(encode(await _dispatch(commands, data)))

    await trio.serve_listeners(handle, [listener])


async def _dispatch(commands: FolderCommands, data: bytes) -> dict[str, Any]:
    try:
        req = json.loads(data)
        if not isinstance(req, dict) or not isinstance(req.get("path", ""), str):
            raise ValueError("request must be a JSON object with a string 'path'")
        op, path = req.get("op"), str(req.get("path", ""))
        if op == "status":
            result = await commands.status(path)
        elif op == "discard":
            result = await commands.discard(path)
        elif op == "save":
            aliases = req.get("aliases") or []
            if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
                raise ValueError("'aliases' must be a list of strings")
            message = req.get("message")
            result = await commands.save(path, aliases, message if isinstance(message, str)
                                         else None, bool(req.get("force")))
        else:
            raise ValueError(f"unknown operation {op!r}")
    except (ArtifactFSError, ValueError) as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:
        log.exception("control request failed")
        return {"ok": False, "error": f"the mount failed to do it: {exc}; see its log"}
    return {"ok": True, **result}

