"""Latency of small requests to a real ``artifactfs serve``: alone, during a large commit, and
among 1,000 concurrent clients. Loopback only; it measures, it asserts nothing.

    .venv/bin/python benchmarks/server_load.py [--entries 400000] [--clients 1000]
                                               [--requests-per-client 10] [--compare-httptools]

In a temporary folder it makes a store with an API key, starts ``artifactfs serve`` on a
free loopback port and commits one small version. The small request measured is
``GET /api/v1/versions/{id}`` (an authenticated read of one version: a key check, one
SQLite query in a worker thread, a JSON answer). Then:

- **alone**: ``--alone`` requests, one after another, on one keep-alive connection;
- **during a commit**: the same request in a loop on its own connection while another
  connection commits a manifest of ``--entries`` entries (all naming one uploaded blob, so
  the server checks every entry's blob as usual); only requests that started and ended
  within the commit count;
- **1,000 clients**: ``--clients`` connections opened at once, each sending
  ``--requests-per-client`` requests one after another (asyncio, plain HTTP/1.1 over
  keep-alive sockets, so that the client costs little), bounded by ``--deadline`` seconds.

It prints one table (p50, p99 and max in milliseconds, the count and the errors). With
``--compare-httptools`` it runs the alone and 1,000-client rows again against the same app
served by uvicorn's httptools protocol without the connection limits, to show what the
choice of h11 costs (docs/api.md). Every process it starts is stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ARTIFACTFS = str(Path(sys.executable).with_name("artifactfs"))
API = "/api/v1"

# uvicorn with the httptools protocol and no limits, for --compare-httptools only
_HTTPTOOLS_SERVER = """
import sys, uvicorn
from artifactfs.server import create_app
from artifactfs.store import Store
uvicorn.run(create_app(Store(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]),
            access_log=False, log_config=None, http="httptools")
"""


@dataclass
class Row:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    def cells(self) -> list[str]:
        lat = sorted(self.latencies_ms)
        if not lat:
            return [self.name, "-", "-", "-", "0", str(self.errors), "-"]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        rate = f"{len(lat) / self.seconds:.0f}" if self.seconds else "-"
        return [self.name, f"{statistics.median(lat):.1f}", f"{p99:.1f}", f"{lat[-1]:.1f}",
                str(len(lat)), str(self.errors), rate]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def server(args: list[str], port: int, log_path: Path) -> Iterator[str]:
    """A server process on ``port`` until exit, stopped by its pid."""
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited; see {log_path}")
            try:
                httpx.get(url + API + "/entities/x/projects", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def prepare(url: str, key: str) -> str:
    """Upload one blob and commit a small version; its id."""
    with httpx.Client(base_url=url + API, headers={"Authorization": f"Bearer {key}"}) as c:
        data = b"x"
        c.put(f"/blobs/{hashlib.md5(data).hexdigest()}", content=data).raise_for_status()
        body = {"type": "dataset", "manifest": {"version": 1, "contents": {
            "a.txt": {"digest": md5_b64(data), "size": 1}}}}
        r = c.post("/entities/bench/projects/load/collections/small/versions", json=body)
        r.raise_for_status()
        return str(r.json()["id"])


def alone(url: str, key: str, vid: str, count: int) -> Row:
    row = Row("alone")
    with httpx.Client(base_url=url + API, headers={"Authorization": f"Bearer {key}"}) as c:
        started = time.perf_counter()
        for _ in range(count):
            t = time.perf_counter()
            r = c.get(f"/versions/{vid}")
            row.latencies_ms.append((time.perf_counter() - t) * 1000)
            row.errors += r.status_code != 200
        row.seconds = time.perf_counter() - started
    return row


def during_commit(url: str, key: str, vid: str, entries: int) -> tuple[Row, float]:
    """Small requests while a commit of ``entries`` entries runs; also the commit's seconds."""
    data = b"x"
    contents = {f"train/c{i % 1000:04d}/f{i:07d}.bin": {"digest": md5_b64(data), "size": 1}
                for i in range(entries)}
    body = json.dumps({"type": "dataset", "manifest": {"version": 1, "contents": contents}})
    log(f"commit body: {len(body) / 1e6:.1f} MB, {entries} entries")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    done = threading.Event()
    window: dict[str, float] = {}
    result: dict[str, int] = {}

    def commit() -> None:
        with httpx.Client(base_url=url + API, headers=headers, timeout=600) as c:
            window["start"] = time.perf_counter()
            r = c.post("/entities/bench/projects/load/collections/large/versions",
                       content=body.encode())
            window["end"] = time.perf_counter()
            result["status"] = r.status_code
        done.set()

    samples: list[tuple[float, float, bool]] = []
    with httpx.Client(base_url=url + API, headers=headers, timeout=60) as c:
        c.get(f"/versions/{vid}")  # the connection is open before the commit starts
        thread = threading.Thread(target=commit)
        thread.start()
        while not done.is_set():
            t = time.perf_counter()
            r = c.get(f"/versions/{vid}")
            samples.append((t, time.perf_counter(), r.status_code == 200))
            time.sleep(0.005)
        thread.join()
    if result.get("status") != 201:
        log(f"the large commit answered {result.get('status')}")
    row = Row("during a commit")
    row.seconds = window["end"] - window["start"]
    for start, end, ok in samples:
        if start >= window["start"] and end <= window["end"]:
            row.latencies_ms.append((end - start) * 1000)
            row.errors += not ok
    return row, row.seconds


async def _client(port: int, request: bytes, count: int, row: Row, start: asyncio.Event,
                  deadline: float) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        row.errors += count
        return
    try:
        await start.wait()
        for _ in range(count):
            if time.perf_counter() > deadline:
                row.errors += 1
                continue
            t = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            row.latencies_ms.append((time.perf_counter() - t) * 1000)
            if not head.startswith(b"HTTP/1.1 200"):
                row.errors += 1
    except (OSError, asyncio.IncompleteReadError):
        row.errors += 1
    finally:
        writer.close()


async def _many(port: int, key: str, vid: str, clients: int, each: int,
                deadline_s: float) -> Row:
    request = (f"GET {API}/versions/{vid} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Bearer {key}\r\n\r\n").encode()
    row = Row(f"{clients} clients")
    start = asyncio.Event()
    deadline = time.perf_counter() + deadline_s
    tasks = [asyncio.create_task(_client(port, request, each, row, start, deadline))
             for _ in range(clients)]
    await asyncio.sleep(1.0)  # let every connection open first
    t = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    row.seconds = time.perf_counter() - t
    return row


def many(port: int, key: str, vid: str, clients: int, each: int, deadline_s: float) -> Row:
    return asyncio.run(_many(port, key, vid, clients, each, deadline_s))


def table(rows: list[Row]) -> str:
    head = ["requests", "p50 ms", "p99 ms", "max ms", "count", "errors", "per s"]
    cells = [head] + [r.cells() for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(head))).rstrip()
                     for c in cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=400_000)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--requests-per-client", type=int, default=10)
    ap.add_argument("--alone", type=int, default=500, help="requests of the 'alone' row")
    ap.add_argument("--deadline", type=float, default=120.0,
                    help="seconds the concurrent clients may take in all")
    ap.add_argument("--compare-httptools", action="store_true")
    args = ap.parse_args()

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the clients' sockets
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="server-load-") as tmp:
        work = Path(tmp)
        store = work / "store"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTFS_")}
        key = subprocess.run([ARTIFACTFS, "key", "create", "bench", "--store", str(store)],
                             check=True, capture_output=True, text=True, env=env).stdout.strip()
        rows: list[Row] = []
        port = free_port()
        serve = [ARTIFACTFS, "serve", "--store", str(store), "--port", str(port)]
        with server(serve, port, work / "serve.log") as url:
            vid = prepare(url, key)
            log("alone ...")
            rows.append(alone(url, key, vid, args.alone))
            log("during a commit ...")
            row, commit_s = during_commit(url, key, vid, args.entries)
            rows.append(row)
            log(f"{args.clients} concurrent clients ...")
            rows.append(many(port, key, vid, args.clients, args.requests_per_client,
                             args.deadline))
        if args.compare_httptools:
            port = free_port()
            cmd = [sys.executable, "-c", _HTTPTOOLS_SERVER, str(store), str(port)]
            with server(cmd, port, work / "httptools.log") as url:
                log("httptools, alone ...")
                row = alone(url, key, vid, args.alone)
                row.name = "alone (httptools)"
                rows.append(row)
                log(f"httptools, {args.clients} concurrent clients ...")
                row = many(port, key, vid, args.clients, args.requests_per_client,
                           args.deadline)
                row.name += " (httptools)"
                rows.append(row)
    print(table(rows))
    print(f"the commit of {args.entries} entries took {commit_s:.1f} s; "
          f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
