"""A loopback TCP relay for fault tests: what passes through it, and outages on demand.

Put in front of a real server (SeaweedFS's S3 gateway, PostgreSQL), it keeps every byte
clients send (a test looks for a secret in what storage received), can hold a connection's
first bytes (a slow network), cut everything and refuse connections (``stop``: the server
is down), or fall silent (``silence``: it forwards nothing either way and passes on no
close, as a network that lost a machine does).
"""

from __future__ import annotations

import socket
import threading
import time

__all__ = ["TcpRelay"]


class TcpRelay:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._sent = bytearray()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._conns: list[socket.socket] = []
        self._stopped = threading.Event()
        self._silent = threading.Event()
        self.delay_next = 0.0
        """Seconds the next connection's first request is held before it goes on (what a
        slow network does to a presigned URL of a short life)."""
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def sent(self) -> bytes:
        """Every byte clients have sent through the relay."""
        with self._lock:
            return bytes(self._sent)

    def silence(self) -> None:
        """Forward nothing more, either way, and pass on no close: the peers hear neither
        data nor an end from each other."""
        self._silent.set()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            delay, self.delay_next = self.delay_next, 0.0
            threading.Thread(target=self._pump, args=(client, upstream, True, delay),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, record: bool,
              delay: float = 0.0) -> None:
        time.sleep(delay)
        try:
            while block := src.recv(1 << 16):
                if self._silent.is_set():
                    continue
                if record:
                    with self._lock:
                        self._sent += block
                dst.sendall(block)
        except OSError:
            pass
        if self._silent.is_set():
            return  # no close passed on: the sockets stay open until stop()
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        """Refuse connections from now on, and cut the open ones."""
        self._stopped.set()
        try:  # wakes the accept() under way (close alone does not)
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            s.close()
        self._thread.join(timeout=5)
