"""The CLI's side of the control channel (kept free of trio and pyfuse3, so commands start
fast). The protocol is described in ``artifactfs.fs.control``."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_SOCKET_PATH", "ControlError", "encode", "request"]

MAX_SOCKET_PATH = 107
"""Bytes a Unix socket's path may have (``sun_path`` is 108, with its NUL)."""


class ControlError(Exception):
    """The mount's daemon did not give a whole answer: it went away or answered garbage."""


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode() + b"\n"


def request(
    address: str, body: dict[str, Any], timeout: float = 3600.0,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Send one request to a mount's control socket and return its final answer (blocking).

    Progress lines are handed to ``on_progress`` as they come. Raises OSError when the
    socket cannot be reached (a stopped daemon leaves ConnectionRefusedError or
    FileNotFoundError) and ControlError when the daemon hangs up before its final answer
    or sends something that is not the protocol; ``timeout`` bounds each wait for a line.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(encode(body))
        with sock.makefile("rb") as lines:
            while True:
                try:
                    line = lines.readline()
                except TimeoutError:
                    raise ControlError(f"it sent nothing for {timeout:.0f} s") from None
                except ConnectionError as exc:
                    raise ControlError(f"it dropped the connection ({exc.strerror})") from None
                if not line.endswith(b"\n"):
                    raise ControlError("it closed the connection before answering")
                try:
                    answer = json.loads(line)
                except ValueError:
                    raise ControlError("it answered something that is not JSON") from None
                if not isinstance(answer, dict):
                    raise ControlError("it answered something that is not a JSON object")
                if "ok" in answer:
                    return answer
                progress = answer.get("progress")
                if not isinstance(progress, dict):
                    raise ControlError("it answered a line that is neither progress nor result")
                if on_progress is not None:
                    on_progress(progress)
