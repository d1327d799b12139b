"""The CLI's side of the control channel (kept free of trio and pyfuse3, so commands start
fast). The protocol is described in ``artifactfs.fs.control``."""

from __future__ import annotations

import json
import socket
from typing import Any

__all__ = ["encode", "request"]


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode() + b"\n"


def request(address: str, body: dict[str, Any], timeout: float = 3600.0) -> dict[str, Any]:
    """Send one request to a mount's control socket and return its answer (blocking)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address.replace("@", "\0", 1))
        sock.sendall(encode(body))
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer = json.loads(data)
    if not isinstance(answer, dict):
        raise ValueError("the mount answered something that is not a JSON object")
    return answer
