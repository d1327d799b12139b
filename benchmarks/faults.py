"""Fault injection against real processes: what a fault costs, in figures (issue 15).

    .venv/bin/python benchmarks/faults.py [--n N] [--only NAME,NAME] [--no-doc]
    make faults

Each scenario is a function ``scenario(n) -> Row`` that injects one kind of fault ``n`` times
into real ``artifactfs serve`` processes, real FUSE mounts and real store and cache folders,
and counts what must never happen (bad bytes served, an acknowledged write lost, a
duplicate or partial version). ``main`` runs them all, prints one table, writes it into
docs/reliability.md (between its marker lines) and the rows as JSON under
benchmarks/results/.

Scenarios (what is injected; what is counted, which must be 0):

- ``blob_corruption``: one bit flipped in a blob file of the store folder, then the file is
  read through a mount and by ``Artifact.download``, on both transports; bad bytes served.
- ``cache_corruption``: a disk-cache file flipped (times restored), cut, grown, zeroed or
  swapped for another between two mounts, then read by a mount or ``download``; bad bytes.
- ``kill_daemon_writing``: SIGKILL of the mount daemon while a process writes and
  ``fsync``s files in an alias folder; acknowledged bytes lost after a remount.
- ``kill_daemon_saving``, ``kill_client_saving``: SIGKILL of the daemon, or of the
  ``artifactfs save`` client, at a random moment of a save; partial or duplicate versions
  after the save is retried.
- ``kill_server_uploading``, ``kill_server_committing``: SIGKILL of ``artifactfs serve``
  during ``Artifact.save``'s uploads or its commit; partial versions (a listed version that
  does not download and verify as saved) and duplicates.
- ``enospc_cache``, ``enospc_staging``: the cache folder, or the staging folder, on a full
  4 MiB tmpfs; failed or wrong reads, writes failing with anything but ENOSPC, a dead daemon.
- ``stalled_server``: SIGSTOP of ``artifactfs serve`` during reads; reads that do not fail
  with EIO within ``--read-timeout`` plus a margin.
- ``concurrent_clients``: 1,000 clients on loopback for 60 s (benchmarks/server_load.py's
  workload); failed requests, and the p99 as the figure.

Every process is stopped by its pid, every mount taken down and every tmpfs unmounted in
``finally``, and each scenario's work folder (store, cache, staging: the big files) is
removed when it ends. It needs root (FUSE, tmpfs, dropping the page cache), like the other
benchmarks.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import errno
import functools
import hashlib
import json
import logging
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
# the test harness: real servers and mounts, stopped by pid (tests/helpers.py, tests/fs/)
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from fs.conftest import Mount, start_mount, take_down, wait_gone  # noqa: E402
from fs.test_mount_bitrot import flip_byte, resize  # noqa: E402
from fs.test_mount_registry_faults import FaultProxy  # noqa: E402
from helpers import ARTIFACTFS, RegistryServer, make_tree  # noqa: E402

from artifactfs.cache import ContentCache  # noqa: E402
from artifactfs.config import Config  # noqa: E402
from artifactfs.core.chunks import CHUNK_SIZE  # noqa: E402
from artifactfs.core.digests import blob_key  # noqa: E402
from artifactfs.core.errors import ArtifactFSError, DigestMismatch  # noqa: E402
from artifactfs.core.manifest import Manifest, ManifestEntry  # noqa: E402
from artifactfs.fs.mounts import fuse_mount_type, is_stale  # noqa: E402
from artifactfs.sdk import Api, Artifact  # noqa: E402
from artifactfs.store import Store  # noqa: E402

PROJECT = "faults"
DOC = REPO / "docs" / "reliability.md"
DOC_START = "<!-- faults table: written by benchmarks/faults.py -->"
DOC_END = "<!-- end of faults table -->"
_READ_BLOCK = 128 << 10


# ---- rows and the table ----------------------------------------------------------------------


@dataclass
class Row:
    """One fault: how often it was injected and what it cost."""

    fault: str
    trials: int
    counted: str
    """What must not happen, counted over every trial (or the figure measured)."""
    count: int
    seconds: float
    """Wall-clock seconds of the whole scenario, set-up included."""
    per_trial: str
    """What one trial needs: a remount, or nothing (the fault is cheap)."""
    details: str = ""
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.count == 0

    def seconds_per_trial(self) -> float:
        return self.seconds / self.trials if self.trials else 0.0


def table(rows: list[Row]) -> str:
    """The rows as one Markdown table."""
    head = ["fault", "trials", "must be 0", "count", "result", "s / trial", "a trial needs",
            "measured"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.fault, str(r.trials), r.counted, str(r.count),
                 "PASS" if r.passed else "FAIL", f"{r.seconds_per_trial():.3g}", r.per_trial,
                 r.details]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- bytes -----------------------------------------------------------------------------------


def bad_bytes(served: bytes, truth: bytes) -> int:
    """Bytes of ``served`` that are not ``truth`` at the same offset (past its end too)."""
    if served == truth[: len(served)]:
        return 0
    bad = max(0, len(served) - len(truth))
    block = 4096
    for start in range(0, min(len(served), len(truth)), block):
        a, b = served[start:start + block], truth[start:start + block]
        if a != b:
            bad += sum(x != y for x, y in zip(a, b, strict=False))
    return bad


def common_prefix(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix of ``a`` and ``b``."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def read_served(path: Path) -> tuple[bytes, int | None]:
    """Every byte a reader of ``path`` is handed, in 128 KiB reads, and the errno that ended
    the reading early (None at end of file): what a reader would have taken as the file."""
    got = bytearray()
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        return b"", exc.errno
    try:
        while True:
            piece = os.read(fd, _READ_BLOCK)
            if not piece:
                return bytes(got), None
            got += piece
    except OSError as exc:
        return bytes(got), exc.errno
    finally:
        os.close(fd)


def chunk_count(data: bytes) -> int:
    return (len(data) + CHUNK_SIZE - 1) // CHUNK_SIZE


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def random_files(rng: random.Random, count: int, prefix: str, *, chunked_every: int = 4,
                 small_max: int = 600_000) -> dict[str, bytes]:
    """``count`` files of random bytes: most fetched whole, every ``chunked_every``-th large
    enough (2-3 chunks) to be fetched and checked chunk by chunk."""
    out = {}
    for i in range(count):
        if chunked_every and i % chunked_every == chunked_every - 1:
            size = rng.randint(CHUNK_SIZE + 1, 3 * CHUNK_SIZE)
        else:
            size = rng.randint(1, small_max)
        out[f"{prefix}{i:05d}.bin"] = rng.randbytes(size)
    return out


# ---- a work folder with its store, cache, server and mounts -----------------------------------


def _unmount_all_under(root: Path) -> None:
    """Lazily unmount every FUSE mount left under ``root``: one whose daemon died while its
    remount failed is in no list, and must not outlive the scenario."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        where = fields[1].replace("\\040", " ")
        if fields[2].startswith("fuse") and where.startswith(f"{root}/"):
            subprocess.run(["fusermount3", "-uz", where], capture_output=True, timeout=30)


class CommitProxy(FaultProxy):
    """``FaultProxy`` whose ``on_commit`` runs once a commit has been answered by the server,
    before the answer is passed on: what a client killed at that moment leaves behind."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.upstream = _Upstream(self.upstream, self)  # type: ignore[assignment]
        self.on_commit: Callable[[], None] | None = None

    def handle_error(self, request: object, client_address: object) -> None:
        """A client killed by ``on_commit`` cannot take its answer; nothing to report."""


class _Upstream:
    def __init__(self, client: httpx.Client, proxy: CommitProxy) -> None:
        self._client = client
        self._proxy = proxy

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._client.request(method, path, **kwargs)
        hook = self._proxy.on_commit
        if (hook is not None and method == "POST" and path.split("?")[0].endswith("/versions")
                and response.status_code < 300):
            self._proxy.on_commit = None
            hook()
        return response

    def close(self) -> None:
        self._client.close()


class Space:
    """A private store, cache and HOME, a server on it if asked, and the mounts made on it;
    everything is stopped, taken down and removed by ``close``."""

    def __init__(self, parent: Path, tag: str, *, server: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"faults-{tag}-", dir=parent))
        self.store = self.root / "store"
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("ARTIFACTFS_", "XDG_"))}
        self.env.update(ARTIFACTFS_STORE=str(self.store),
                        ARTIFACTFS_CACHE_DIR=str(self.root / "cache"),
                        HOME=str(self.root / "home"))
        self.mounts: list[Mount] = []
        self.apis: list[Api] = []
        self.server: RegistryServer | None = None
        self.key: str | None = None
        self.port: int | None = None
        self.proxy: CommitProxy | None = None
        self.threads: list[threading.Thread] = []  # ones that restart the server: joined first
        self._servers = 0
        self._mounts_made = 0
        self.stack = contextlib.ExitStack()  # tmpfs mounts and the like, undone last
        if server:
            self.key = Store(self.store).db.create_key("local")
            self.start_server()

    def __enter__(self) -> Space:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            for thread in self.threads:
                thread.join(60)
            for mount in reversed(self.mounts):
                take_down(mount)
            self.mounts.clear()
            for api in self.apis:
                with contextlib.suppress(Exception):
                    api.close()
            if self.server is not None:
                self.resume_server()
                self.server.stop()
                self.server = None
        finally:
            with contextlib.ExitStack() as last:  # each step runs whatever the one before did
                last.callback(shutil.rmtree, self.root, ignore_errors=True)
                last.push(self.stack)  # the tmpfs mounts, once nothing uses them
                last.callback(_unmount_all_under, self.root)

    # servers

    def start_server(self) -> RegistryServer:
        """``artifactfs serve`` on this store, on the same port as before if there was one."""
        self._servers += 1
        self.server = RegistryServer(self.store, self.root / f"server-{self._servers}.log",
                                     env=self.env, port=self.port)
        self.port = self.server.port
        return self.server

    def kill_server(self) -> None:
        """SIGKILL the server, by its pid, and reap it."""
        assert self.server is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.server.proc.pid, signal.SIGKILL)
        self.server.proc.wait()
        self.server.stop()  # closes its log

    def resume_server(self) -> None:
        if self.server is not None and self.server.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.server.proc.pid, signal.SIGCONT)

    def env_for(self, transport: str) -> dict[str, str]:
        """The environment of a client of ``embedded`` (the store folder), ``server`` or
        ``proxy`` (the server through ``self.proxy``)."""
        if transport == "embedded":
            return self.env
        assert self.server is not None and self.key is not None
        url = self.proxy.url if transport == "proxy" and self.proxy else self.server.url
        return {**self.env, "ARTIFACTFS_REGISTRY": url, "ARTIFACTFS_API_KEY": self.key}

    def start_proxy(self) -> CommitProxy:
        """A forwarding proxy in front of the server (tests/fs/test_mount_registry_faults.py)
        that can act the moment a commit is answered; stopped when the space closes."""
        assert self.server is not None
        proxy = CommitProxy(self.server.url)
        thread = threading.Thread(target=proxy.serve_forever, daemon=True)
        thread.start()

        def stop() -> None:
            proxy.shutdown()
            proxy.server_close()
            proxy.upstream.close()
            thread.join(10)

        self.stack.callback(stop)
        self.proxy = proxy
        return proxy

    # clients

    def api(self, transport: str = "embedded", **changes: Any) -> Api:
        config = Config.from_env(self.env_for(transport))
        api = Api(config=config.replace(**changes) if changes else config)
        self.apis.append(api)
        return api

    def cli(self, *args: str, transport: str = "embedded", timeout: float = 120,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ARTIFACTFS, *args],
                              env={**self.env_for(transport), **(extra_env or {})},
                              capture_output=True, text=True, timeout=timeout)

    def push(self, files: dict[str, bytes], name: str, transport: str = "embedded") -> Artifact:
        """``artifactfs push`` of ``files`` as PROJECT/NAME; the version as an Artifact."""
        src = make_tree(self.root / f"src-{name}-{time.monotonic_ns()}", files)
        try:
            proc = self.cli("push", str(src), f"{PROJECT}/{name}", "--type", "dataset",
                            transport=transport, timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"push failed: {proc.stderr}")
        finally:
            shutil.rmtree(src, ignore_errors=True)
        return self.api(transport).artifact(proc.stdout.strip())

    # mounts

    def mount(self, *options: str, transport: str = "embedded",
              extra_env: dict[str, str] | None = None, name: str | None = None) -> Mount:
        self._mounts_made += 1
        name = name or f"mnt-{transport}"
        mount = start_mount(self.root / name, self.root / f"{name}-{self._mounts_made}.log",
                            {**self.env_for(transport), **(extra_env or {})}, *options)
        self.mounts.append(mount)
        return mount

    def unmount(self, mount: Mount) -> None:
        take_down(mount)
        self.forget(mount)

    def forget(self, mount: Mount) -> None:
        """Stop tracking a mount whose daemon is gone (so that taking it down later cannot
        unmount a new mount made on the same folder)."""
        if mount in self.mounts:
            self.mounts.remove(mount)

    def kill_daemon(self, mount: Mount) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(mount.pid, signal.SIGKILL)
        if not wait_gone(mount.pid, 30):
            raise RuntimeError(f"mount daemon {mount.pid} outlived SIGKILL")
        self.forget(mount)
        # auto_unmount's helper takes the mount down a moment later; until then a stat of
        # the mount point can still answer from the kernel's cache, and 'artifactfs mount'
        # would refuse it as live
        deadline = time.monotonic() + 10
        while (time.monotonic() < deadline and fuse_mount_type(mount.path) is not None
               and not is_stale(mount.path)):
            time.sleep(0.05)

    def tmpfs(self, name: str, size: str = "4m") -> Path:
        """A tmpfs of ``size`` at ROOT/NAME, unmounted when the space closes."""
        path = self.root / name
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                        str(path)], check=True, capture_output=True, timeout=30)

        def unmount() -> None:
            if subprocess.run(["umount", str(path)], capture_output=True,
                              timeout=30).returncode:
                subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)

        self.stack.callback(unmount)
        return path


def versions_of(api: Api, name: str) -> list[str]:
    return [v.version for v in api.registry.list_versions(api.config.entity, PROJECT, name)]


# ---- corruption of the store's blobs -----------------------------------------------------------


def blob_corruption(n: int, workdir: Path) -> Row:
    """Flip one bit of a blob file in the store folder, then read that file through a mount
    and with ``Artifact.download``; alternate trials go through the server and straight to
    the store folder. Each trial damages another file, and every file is damaged before the
    first read (a read prefetches the files listed after it), so no good copy of it is in
    the kernel's page cache, the daemon's memory or the disk cache; afterwards the cache
    must hold no bad byte of it either."""
    started = time.monotonic()
    rng = random.Random(15_001)
    bad = eio = mismatch = other = cached_bad = 0
    with Space(workdir, "blobs", server=True) as space:
        files = random_files(rng, n, "f")
        art = space.push(files, "blobs")
        mounts = {t: space.mount(transport=t) for t in ("embedded", "server")}
        apis = {t: space.api(t) for t in ("embedded", "server")}
        blobs = Store(space.store).blobs
        cache = ContentCache(space.root / "cache", 1 << 40)
        for rel, data in files.items():
            flip_byte(blobs.path(art.manifest[rel].digest), rng.randrange(len(data)))
        for i, (rel, data) in enumerate(files.items()):
            transport = ("server", "embedded")[i % 2]
            digest = art.manifest[rel].digest
            served, err = read_served(mounts[transport].path / f"{PROJECT}/dataset/blobs:v0/{rel}")
            bad += bad_bytes(served, data)
            eio += err == errno.EIO
            dest = space.root / f"dl-{i}"
            try:
                apis[transport].artifact(f"{PROJECT}/blobs:v0").download(dest, path_prefix=rel)
            except DigestMismatch:
                mismatch += 1
            except Exception as exc:  # counted, and named in the details
                other += 1
                log(f"blob_corruption: download raised {type(exc).__name__}: {exc}")
            if (dest / rel).exists():
                bad += bad_bytes((dest / rel).read_bytes(), data)
            shutil.rmtree(dest, ignore_errors=True)
            # a cached copy of bad bytes would be served by every later read
            key = blob_key(digest)
            if len(data) <= CHUNK_SIZE:
                pieces = {key: data}
            else:
                pieces = {f"{key}.c{c}": data[c * CHUNK_SIZE:(c + 1) * CHUNK_SIZE]
                          for c in range(chunk_count(data))}
            for name, good in pieces.items():
                got = cache.get(name)
                if got is not None:
                    cached_bad += bad_bytes(got, good)
        alive = all(m.alive() for m in mounts.values())
    return Row(
        "store blob: 1 bit flipped in a blob file", n, "bad bytes served (mount + download)",
        bad + cached_bad + (0 if alive else 1), time.monotonic() - started, "no remount",
        f"mount reads ended by EIO: {eio}/{n}; download raised DigestMismatch: {mismatch}/{n}"
        f" (other errors: {other}); half server, half embedded; 1 in 4 files chunked",
        {"eio": eio, "digest_mismatch": mismatch, "other_errors": other,
         "bad_bytes_in_cache": cached_bad, "daemons_alive": alive},
    )


# ---- corruption of the disk cache --------------------------------------------------------------


DAMAGES = ("flip, times restored", "flip in the checksum trailer", "cut by 1-4096 bytes",
           "grown by 1-4096 bytes", "4 KiB zeroed, times restored",
           "swapped for another cache file")


def damage_cache_file(path: Path, kind: str, rng: random.Random, other: Path) -> None:
    size = path.stat().st_size
    if kind == DAMAGES[0]:
        flip_byte(path, rng.randrange(size - 16))
    elif kind == DAMAGES[1]:
        flip_byte(path, size - rng.randint(1, 8))
    elif kind == DAMAGES[2]:
        resize(path, -rng.randint(1, min(4096, size)))
    elif kind == DAMAGES[3]:
        resize(path, rng.randint(1, 4096))
    elif kind == DAMAGES[4]:
        st = path.stat()
        with open(path, "r+b") as f:
            f.seek(rng.randrange(max(1, size - 4096)))
            f.write(bytes(min(4096, size)))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        st = path.stat()
        shutil.copyfile(other, path)  # a good cache file, of another object
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


class _Lines(logging.Handler):
    """Collects the messages of one logger, to find which damage a reader detected."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.logger = logging.getLogger(name)

    def __enter__(self) -> _Lines:
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def cache_corruption(n: int, workdir: Path, batch: int = 25) -> Row:
    """Fill the disk cache through one mount, unmount it (so neither the daemon's memory nor
    the kernel's page cache of the mount holds the bytes), damage one cache file per trial,
    then read the file through a second mount or with ``Artifact.download`` (alternate
    trials; the two kinds in two folders, so that the mount's prefetch of the files listed
    after the one read does not repair what a download is to meet). Trials run in batches of
    ``batch`` files per pair of mounts."""
    started = time.monotonic()
    rng = random.Random(15_002)
    bad = failed = detected = 0
    kinds: dict[str, int] = {}
    with Space(workdir, "cache") as space, _Lines("artifactfs.cache.disk") as sdk_log:
        files = {f"{'md'[i % 2]}/{rel}": data
                 for i, (rel, data) in enumerate(random_files(rng, n, "c").items())}
        art = space.push(files, "cache")
        api = space.api()
        cache = ContentCache(space.root / "cache", 1 << 40)
        names = list(files)
        for first in range(0, n, batch):
            group = names[first:first + batch]
            fill = space.mount()
            for rel in group:
                if read_served(fill.path / f"{PROJECT}/dataset/cache:v0/{rel}")[1] is not None:
                    raise RuntimeError(f"could not fill the cache with {rel}")
            space.unmount(fill)
            damaged: list[Path] = []
            for i, rel in enumerate(group, start=first):
                key = blob_key(art.manifest[rel].digest)
                name = f"{key}.c{rng.randrange(chunk_count(files[rel]))}" if (
                    len(files[rel]) > CHUNK_SIZE) else key
                path = cache.path(name)
                others = [p for r in group if r != rel and (p := cache.path(blob_key(
                    art.manifest[r].digest))).exists()]
                kind = DAMAGES[i % len(DAMAGES)]
                if kind == DAMAGES[-1] and not others:
                    kind = DAMAGES[0]
                damage_cache_file(path, kind, rng, others[0] if others else path)
                kinds[kind] = kinds.get(kind, 0) + 1
                damaged.append(path)
            read = space.mount()
            for rel in group:
                if rel.startswith("m/"):
                    served, err = read_served(read.path / f"{PROJECT}/dataset/cache:v0/{rel}")
                    failed += err is not None
                    bad += bad_bytes(served, files[rel])
                    continue
                dest = space.root / "dl"
                try:
                    api.artifact(f"{PROJECT}/cache:v0").download(dest, path_prefix=rel)
                    bad += bad_bytes((dest / rel).read_bytes(), files[rel])
                except Exception as exc:
                    failed += 1
                    log(f"cache_corruption: download of {rel} raised {exc!r}")
                shutil.rmtree(dest, ignore_errors=True)
            failed += not read.alive()
            said = read.log_text() + "\n".join(sdk_log.messages)
            detected += sum(str(path) in said for path in damaged)
            space.unmount(read)
    return Row(
        "disk cache: a cache file damaged between mounts", n, "bad bytes served",
        bad, time.monotonic() - started, f"batched: {batch} per pair of mounts",
        f"damage detected and fetched again: {detected}/{n}; reads that failed: {failed}; "
        + ", ".join(f"{k} x{v}" for k, v in kinds.items())
        + "; half mount reads, half downloads",
        {"failed_reads": failed, "detected": detected, "damage": kinds},
    )


# ---- SIGKILL of the daemon while files are written -------------------------------------------


_WRITER = r"""
import json, os, random, sys
folder, seed = sys.argv[1], sys.argv[2]
rng = random.Random(seed)
def out(**record):
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
try:
    for k in range(400):
        name = f"f{k:03d}.bin"
        data = random.Random(f"{seed}/{name}").randbytes(rng.randint(1, 1 << 20))
        fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        done = 0
        while done < len(data):
            step = min(len(data) - done, rng.randint(1, 256 << 10))
            view = memoryview(data)[done:done + step]
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            done += step
            out(file=name, acked=done)
        os.close(fd)
except OSError as exc:
    out(error=exc.errno)
"""


def file_truth(seed: str, name: str) -> bytes:
    """What the writer writes to ``name`` (the same generator, the same seed)."""
    rng = random.Random(seed)
    for k in range(400):
        size = rng.randint(1, 1 << 20)
        data = random.Random(f"{seed}/f{k:03d}.bin").randbytes(size)
        if f"f{k:03d}.bin" == name:
            return data
        done = 0
        while done < size:
            done += min(size - done, rng.randint(1, 256 << 10))
    raise KeyError(name)


def kill_daemon_writing(n: int, workdir: Path) -> Row:
    """A writer process writes files into an alias folder, ``fsync``ing after each piece and
    reporting every piece once ``fsync`` returned; the daemon is SIGKILLed at a random moment
    (0.05-1.5 s after the first report); after a remount every reported byte must be there."""
    started = time.monotonic()
    rng = random.Random(15_003)
    lost = garbage = acked_total = 0
    errnos: dict[str, int] = {}
    with Space(workdir, "writes") as space:
        space.push({"base.txt": b"base\n"}, "writes")
        for trial in range(n):
            mount = space.mount()
            folder = mount.path / f"{PROJECT}/dataset/writes:latest/t{trial:03d}"
            folder.mkdir()
            seed = f"trial-{trial}"
            writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(folder), seed],
                                      stdout=subprocess.PIPE, text=True)
            acked: dict[str, int] = {}
            lines: list[str] = []
            first = threading.Event()

            def collect(proc: subprocess.Popen[str] = writer,
                        lines: list[str] = lines, first: threading.Event = first) -> None:
                assert proc.stdout is not None
                for line in proc.stdout:
                    lines.append(line)
                    first.set()
                first.set()

            reader = threading.Thread(target=collect)
            reader.start()
            try:
                first.wait(60)
                time.sleep(rng.uniform(0.05, 1.5))
                space.kill_daemon(mount)
                writer.wait(60)
            finally:
                if writer.poll() is None:
                    writer.kill()
                    writer.wait()
                reader.join(30)
            for line in lines:
                record = json.loads(line)
                if "error" in record:
                    name = errno.errorcode.get(record["error"], str(record["error"]))
                    errnos[name] = errnos.get(name, 0) + 1
                else:
                    acked[record["file"]] = record["acked"]
            again = space.mount()
            folder = again.path / f"{PROJECT}/dataset/writes:latest/t{trial:03d}"
            for name, length in acked.items():
                truth = file_truth(seed, name)
                try:
                    got = (folder / name).read_bytes()
                except OSError:
                    got = b""
                kept = common_prefix(got, truth[:length])
                lost += length - kept
                garbage += bad_bytes(got, truth)
                acked_total += length
            proc = space.cli("discard", str(folder.parent))
            if proc.returncode != 0:
                raise RuntimeError(f"discard failed: {proc.stderr}")
            space.unmount(again)
    return Row(
        "mount daemon SIGKILLed during fsync()ed writes", n,
        "acknowledged bytes lost after remount", lost, time.monotonic() - started,
        "a remount", f"{acked_total / 1e6:.1f} MB acknowledged in all; bytes that differ from "
        f"what was written: {garbage}; the writer saw " + ", ".join(
            f"{k} x{v}" for k, v in sorted(errnos.items())),
        {"acked_bytes": acked_total, "garbage_bytes": garbage, "writer_errors": errnos},
    )


# ---- SIGKILL of the daemon or of the save client during a save ---------------------------------


def _check_version(api: Api, ref: str, expected: dict[str, bytes], dest: Path) -> bool:
    """Whether ``ref`` downloads, verifies and holds exactly ``expected``."""
    try:
        art = api.artifact(ref)
        art.download(dest)
        got = {p.relative_to(dest).as_posix(): p.read_bytes()
               for p in dest.rglob("*") if p.is_file()}
        return got == expected
    except Exception as exc:
        log(f"{ref} does not download as saved: {exc!r}")
        return False
    finally:
        shutil.rmtree(dest, ignore_errors=True)


_ALREADY_SAVED = "already (the save was retried)"
"""What the daemon logs when a retried save finds the commit of the save it retries."""


def kill_during_save(n: int, workdir: Path, victim: str) -> Row:
    """Stage a change (a new file of 8-24 MiB, one file edited, the last trial's file
    removed), start ``artifactfs save`` and SIGKILL the ``victim``:

    - ``daemon``: the mount daemon, after a random delay within the measured time of a save
      (trials alternate between the server and the embedded store);
    - ``client``: the ``artifactfs save`` process, likewise;
    - ``daemon-at-commit``: the daemon, the moment the server has answered its commit and
      before the answer reaches it (a proxy in front of the server does it): the crash that
      once left the changes staged, to be saved twice.

    Then the user's way out: remount (if the daemon died) and save again. Exactly one new
    version must exist, holding exactly the staged files, and a retried save that succeeds
    must report it."""
    started = time.monotonic()
    rng = random.Random({"daemon": 15_004, "client": 15_005}.get(victim, 15_011))
    duplicates = partial = lost = 0
    outcomes: dict[str, int] = {}
    name = f"save-{victim}"
    with Space(workdir, f"save-{victim}", server=True) as space:
        tree = {"counter.txt": b"0\n", "keep.bin": rng.randbytes(300_000)}
        space.push(tree, name)
        check_api = space.api("embedded")
        proxy = space.start_proxy() if victim == "daemon-at-commit" else None

        def stage(mount: Mount, trial: int) -> Path:
            folder = mount.path / f"{PROJECT}/dataset/{name}:latest"
            data = rng.randbytes(rng.randint(8 << 20, 24 << 20))
            (folder / f"t{trial:03d}.bin").write_bytes(data)
            (folder / "counter.txt").write_bytes(f"{trial}\n".encode())
            for old in [p for p in tree if p.startswith("t")]:
                (folder / old).unlink()
                del tree[old]
            tree[f"t{trial:03d}.bin"] = data
            tree["counter.txt"] = f"{trial}\n".encode()
            return folder

        window = 0.0
        if proxy is None:  # one save left alone: how long a save takes, the kills' window
            mount = space.mount(transport="server")
            folder = stage(mount, 999)
            t = time.monotonic()
            proc = space.cli("save", str(folder), transport="server")
            window = time.monotonic() - t
            if proc.returncode != 0:
                raise RuntimeError(f"save failed: {proc.stderr}")
            space.unmount(mount)

        for trial in range(n):
            transport = "proxy" if proxy else ("server", "embedded")[trial % 2]
            before = versions_of(check_api, name)
            mount = space.mount(transport=transport)
            folder = stage(mount, trial)
            if proxy is not None:
                proxy.on_commit = functools.partial(space.kill_daemon, mount)
            client = subprocess.Popen([ARTIFACTFS, "save", str(folder)],
                                      env=space.env_for(transport), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
            try:
                if victim == "daemon":
                    time.sleep(rng.uniform(0, window * 1.2))
                    space.kill_daemon(mount)
                elif victim == "client":
                    time.sleep(rng.uniform(0, window * 1.2))
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(client.pid, signal.SIGKILL)
                client.communicate(timeout=120)
            finally:
                if client.poll() is None:
                    client.kill()
                    client.communicate()
            first_ok = client.returncode == 0
            if proxy is not None and proxy.on_commit is not None:
                proxy.on_commit = None
                raise RuntimeError(f"the save made no commit: {client.returncode}")
            if victim != "client":
                mount = space.mount(transport=transport)
            # the user saves again at once: after a client was killed, the daemon runs this
            # save after the first one (if that one reached it), one save of a folder at a time
            found = mount.log_text().count(_ALREADY_SAVED)
            retry = space.cli("save", str(folder), transport=transport)
            after = versions_of(check_api, name)
            new = [v for v in after if v not in before]
            if retry.returncode == 0:
                outcome = ("retry found the killed save's commit" if mount.log_text().count(
                    _ALREADY_SAVED) > found else "retry saved")
                if [f"{PROJECT}/{name}:{v}" for v in new] != [retry.stdout.strip()]:
                    outcome = "retry reported another version"
                    partial += 1
            elif "nothing is staged" in retry.stderr:
                outcome = "retry found nothing staged"
            else:
                outcome = "retry failed"
                log(f"{name} trial {trial}: retried save failed: {retry.stderr.strip()}")
            if first_ok:
                outcome += ", first save finished"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            duplicates += max(0, len(new) - 1)
            if not new:
                lost += 1
            for v in new:
                if not _check_version(check_api, f"{PROJECT}/{name}:{v}", tree,
                                      space.root / "check"):
                    partial += 1
            space.unmount(mount)
    if victim == "daemon-at-commit":
        fault, when = "mount daemon SIGKILLed as its commit is answered", "through a proxy"
    else:
        fault = ("mount daemon" if victim == "daemon" else "`artifactfs save` client") + (
            " SIGKILLed during save")
        when = (f"kill at 0-{window * 1.2:.1f} s (a save alone takes {window:.1f} s); half "
                "server, half embedded")
    return Row(
        fault, n, "partial or duplicate versions", duplicates + partial,
        time.monotonic() - started, "a mount" if victim == "client" else "a remount",
        f"saves lost: {lost}; " + "; ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
        + f"; {when}",
        {"duplicates": duplicates, "partial": partial, "lost_saves": lost,
         "save_seconds": window, "outcomes": outcomes},
    )


def kill_daemon_saving(n: int, workdir: Path) -> Row:
    return kill_during_save(n, workdir, "daemon")


def kill_daemon_at_commit(n: int, workdir: Path) -> Row:
    return kill_during_save(n, workdir, "daemon-at-commit")


def kill_client_saving(n: int, workdir: Path) -> Row:
    return kill_during_save(n, workdir, "client")


# ---- SIGKILL of the server during Artifact.save ----------------------------------------------


class _KillAt:
    """A progress factory for ``Api`` that calls ``kill`` once ``at`` bytes were sent."""

    def __init__(self) -> None:
        self.at: int | None = None
        self.kill: Callable[[], None] = lambda: None
        self.sent = 0

    def __call__(self, verb: str, total: int) -> Callable[[int], None]:
        def advance(count: int) -> None:
            self.sent += count
            if verb.startswith("upload") and self.at is not None and self.sent >= self.at:
                self.at = None
                self.kill()

        return advance


def kill_server_saving(n: int, workdir: Path, phase: str) -> Row:
    """``Artifact.save`` over HTTP with ``artifactfs serve`` SIGKILLed mid-upload (at a random
    byte of 8-24 MiB of new files) or mid-commit (after the uploads, at a random moment of
    a commit of a 20,000-entry manifest), then started again on the same port after
    0-1 s while the SDK retries. Every version the registry lists must download, verify and
    hold exactly what one save asked for; no save may appear twice."""
    started = time.monotonic()
    rng = random.Random(15_006 if phase == "upload" else 15_007)
    partial = duplicates = 0
    outcomes: dict[str, int] = {}
    name = f"server-{phase}"
    with Space(workdir, f"server-{phase}", server=True) as space:
        killer = _KillAt()
        base = space.push({"base.txt": b"base\n"}, name, transport="server")
        wide = 20_000 if phase == "commit" else 0
        if wide:  # a version with many entries, so that each commit takes a while
            api = space.api("server")
            blobs = make_tree(space.root / "wide", {f"b{i:03d}": os.urandom(512)
                                                    for i in range(100)})
            manifest = Manifest()
            for entry in base.manifest:
                manifest.add(ManifestEntry(entry.path, entry.digest, entry.size))
            digests = []
            for path in sorted(blobs.iterdir()):
                data = path.read_bytes()
                api.registry.upload_blob(path, md5_b64(data))
                digests.append((md5_b64(data), len(data)))
            for i in range(wide):
                digest, size = digests[i % len(digests)]
                manifest.add(ManifestEntry(f"wide/d{i // 1000:02d}/e{i:05d}.bin", digest, size))
            api.registry.commit(entity="local", project=PROJECT, name=name, type_="dataset",
                                manifest=manifest)
        api = Api(config=Config.from_env(space.env_for("server")), progress=killer)
        space.apis.append(api)
        check = space.api("server")
        expected: dict[str, dict[str, str]] = {}  # version -> {path: digest}
        for v in versions_of(check, name):
            expected[v] = {e.path: e.digest for e in check.artifact(f"{PROJECT}/{name}:{v}"
                                                                    ).manifest}

        def one_save(trial: int, kill: bool, commit_s: float) -> tuple[float, str]:
            art = api.artifact(f"{PROJECT}/{name}:latest")
            want = {e.path: e.digest for e in art.manifest}
            src = space.root / f"src-{trial}"
            size = rng.randint(8 << 20, 24 << 20) if phase == "upload" else 1000
            files = {f"t{trial:03d}/{k}.bin": rng.randbytes(size // 4) for k in range(4)}
            make_tree(src, files)
            for rel, data in files.items():
                art.add_file(str(src / rel), name=rel)
                want[rel] = md5_b64(data)
            restarted = threading.Event()
            # after the last upload byte, a moment within the commit's time
            delay = 0.0 if phase == "upload" else rng.uniform(0, commit_s * 1.2)
            down = rng.uniform(0, 1)

            def kill_and_restart() -> None:
                time.sleep(delay)
                space.kill_server()
                time.sleep(down)
                space.start_server()
                restarted.set()

            killer.sent = 0
            if kill:  # from the upload's progress callback: start the killer, do not wait
                total = sum(len(d) for d in files.values())
                killer.at = rng.randint(1, total) if phase == "upload" else total
                thread = threading.Thread(target=kill_and_restart)
                space.threads.append(thread)
                killer.kill = thread.start
            t = time.monotonic()
            try:
                art.save()
                outcome = "save returned"
            except ArtifactFSError as exc:
                outcome = f"save raised {type(exc).__name__}"
            except Exception as exc:
                outcome = f"save raised {type(exc).__name__}"
                log(f"{name} trial {trial}: {exc!r}")
            elapsed = time.monotonic() - t
            killer.at = None
            if kill and not restarted.wait(60):
                raise RuntimeError("the server did not come back")
            shutil.rmtree(src, ignore_errors=True)
            expected_new[trial] = want
            return elapsed, outcome

        expected_new: dict[int, dict[str, str]] = {}
        commit_s, _ = one_save(999, False, 0.0)  # alone: how long a save takes
        expected[versions_of(check, name)[-1]] = expected_new.pop(999)
        for trial in range(n):
            before = set(versions_of(check, name))
            _, outcome = one_save(trial, True, commit_s)
            after = versions_of(check, name)
            new = [v for v in after if v not in before]
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            duplicates += max(0, len(new) - 1)
            for v in new:
                art = check.artifact(f"{PROJECT}/{name}:{v}")
                got = {e.path: e.digest for e in art.manifest}
                if got != expected_new[trial] or not _downloads(space, art, trial):
                    partial += 1
                expected[v] = got
            # nothing half-visible: every listed version still resolves as it was
            for v in after:
                if v not in expected:
                    partial += 1
        pending = _pending_versions(space.store)
    what = ("during uploads (killed at a random byte)" if phase == "upload"
            else "during a 20,000-entry commit")
    return Row(
        f"`artifactfs serve` SIGKILLed {what}", n, "partial or duplicate versions",
        partial + duplicates, time.monotonic() - started, "a server restart",
        "; ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
        + f"; a save alone takes {commit_s:.2f} s; versions left pending in the database "
        f"(never listed): {pending}",
        {"partial": partial, "duplicates": duplicates, "outcomes": outcomes,
         "pending_rows": pending, "save_seconds": commit_s},
    )


def _downloads(space: Space, art: Artifact, trial: int) -> bool:
    """Whether every distinct blob of ``art`` downloads and verifies from the server (a fresh
    cache, so that nothing comes from an earlier read)."""
    cache = space.root / f"verify-cache-{trial}"
    dest = space.root / f"verify-{trial}"
    api = Api(config=Config.from_env(space.env_for("server")).replace(cache_dir=cache))
    try:
        seen: dict[str, str] = {}
        for entry in art.manifest:
            seen.setdefault(entry.digest, entry.path)
        version = api.artifact(art.qualified_name)
        for path in seen.values():
            version.get_entry(path).download(str(dest))
        return True
    except Exception as exc:
        log(f"{art.qualified_name} does not download: {exc!r}")
        return False
    finally:
        api.close()
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)


def _pending_versions(store: Path) -> int:
    import sqlite3

    with contextlib.closing(sqlite3.connect(store / "registry.sqlite3")) as db:
        return int(db.execute("SELECT count(*) FROM versions WHERE state = 'PENDING'"
                              ).fetchone()[0])


def kill_server_uploading(n: int, workdir: Path) -> Row:
    return kill_server_saving(n, workdir, "upload")


def kill_server_committing(n: int, workdir: Path) -> Row:
    return kill_server_saving(n, workdir, "commit")


# ---- full disks --------------------------------------------------------------------------------


def _fill(folder: Path, leave: int) -> None:
    """Fill the file system of ``folder`` until ``leave`` bytes are free."""
    free = shutil.disk_usage(folder).free - leave
    with open(folder / "filler", "wb") as f, contextlib.suppress(OSError):
        while free > 0:
            free -= f.write(b"\0" * min(free, 1 << 20))


def enospc_cache(n: int, workdir: Path) -> Row:
    """The disk cache on a full 4 MiB tmpfs: every read (through a mount, or a download in
    alternate trials) must still return the verified bytes, and the daemon stay up."""
    started = time.monotonic()
    rng = random.Random(15_008)
    failed = bad = 0
    with Space(workdir, "enospc-cache") as space:
        cache = space.tmpfs("cache-fs")
        files = random_files(rng, n, "e", chunked_every=5, small_max=400_000)
        space.push(files, "enospc")
        (cache / "c").mkdir()
        _fill(cache, 64 << 10)
        env = {"ARTIFACTFS_CACHE_DIR": str(cache / "c")}
        mount = space.mount(extra_env=env)
        api = Api(config=Config.from_env({**space.env, **env}))
        space.apis.append(api)
        for i, (rel, data) in enumerate(files.items()):
            if i % 2 == 0:
                served, err = read_served(mount.path / f"{PROJECT}/dataset/enospc:v0/{rel}")
                failed += err is not None or len(served) != len(data)
                bad += bad_bytes(served, data)
            else:
                dest = space.root / "dl"
                try:
                    api.artifact(f"{PROJECT}/enospc:v0").download(dest, path_prefix=rel)
                    bad += bad_bytes((dest / rel).read_bytes(), data)
                except Exception as exc:
                    failed += 1
                    log(f"enospc_cache: download of {rel} raised {exc!r}")
                shutil.rmtree(dest, ignore_errors=True)
        alive = mount.alive()
        warned = mount.log_text().count("could not cache")
        space.unmount(mount)
    return Row(
        "disk cache on a full 4 MiB tmpfs (ENOSPC)", n, "failed or wrong reads",
        failed + bad + (not alive), time.monotonic() - started, "no remount",
        f"bad bytes: {bad}; daemon up: {'yes' if alive else 'NO'}; the daemon logged "
        f"{warned} 'could not cache' lines; half mount reads, half downloads",
        {"failed": failed, "bad_bytes": bad, "alive": alive, "not_cached_lines": warned},
    )


def _write_past_the_room(path: Path, rng: random.Random) -> tuple[int | None, str]:
    """Write 16 MiB to a new file, ``fsync`` and close it; the errno that stopped it (None
    if nothing did) and the call that gave it."""
    call = "open"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as exc:
        return exc.errno, call
    error: int | None = None
    try:
        call = "write"
        for _ in range(64):
            os.write(fd, rng.randbytes(256 << 10))
        call = "fsync"
        os.fsync(fd)
    except OSError as exc:
        error = exc.errno
    finally:
        try:
            os.close(fd)
        except OSError as exc:
            if error is None:
                error, call = exc.errno, "close"
    return error, call


def enospc_staging(n: int, workdir: Path) -> Row:
    """The staging folder on a 4 MiB tmpfs: writing a file past the free room must fail with
    ENOSPC (in ``write``, ``fsync`` or ``close``); removing it must work and free the room; a
    file written and ``fsync``ed before must still read back; the daemon must stay up."""
    started = time.monotonic()
    rng = random.Random(15_009)
    unclean = wrong = 0
    seen: dict[str, int] = {}
    with Space(workdir, "enospc-staging") as space:
        staging = space.tmpfs("staging-fs")
        space.push({"base.txt": b"base\n"}, "staged")
        mount = space.mount("--staging-dir", str(staging))
        folder = mount.path / f"{PROJECT}/dataset/staged:latest"
        kept = rng.randbytes(200_000)
        with open(folder / "kept.bin", "wb") as f:
            f.write(kept)
            os.fsync(f.fileno())
        for trial in range(n):
            path = folder / f"big{trial}.bin"
            error, call = _write_past_the_room(path, rng)
            label = (f"{errno.errorcode.get(error, error)} in {call}()" if error is not None
                     else "no error")
            seen[label] = seen.get(label, 0) + 1
            unclean += error != errno.ENOSPC
            try:
                path.unlink()
                small = rng.randbytes(rng.randint(1, 100_000))  # the room came back
                (folder / "after.bin").write_bytes(small)
                wrong += (folder / "after.bin").read_bytes() != small
                wrong += (folder / "kept.bin").read_bytes() != kept
            except OSError as exc:
                wrong += 1
                log(f"enospc_staging trial {trial}: {exc!r}")
            if not mount.alive():
                wrong += 1
                break
        alive = mount.alive()
        space.unmount(mount)
    return Row(
        "staging folder on a 4 MiB tmpfs (ENOSPC)", n,
        "writes not failing with ENOSPC; failures after", unclean + wrong,
        time.monotonic() - started, "no remount",
        "the writer saw " + ", ".join(f"{k} x{v}" for k, v in sorted(seen.items()))
        + f"; failed removals, writes or reads afterwards: {wrong}; daemon up: "
        f"{'yes' if alive else 'NO'}",
        {"errors": seen, "unclean": unclean, "failures_after": wrong, "alive": alive},
    )


# ---- a stalled server --------------------------------------------------------------------------


def _timed_read(path: Path) -> tuple[float, float, bytes, int | None]:
    """Seconds ``open`` took, seconds the reads took, what they returned and the errno that
    ended them (None at end of file)."""
    t = time.monotonic()
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        return time.monotonic() - t, 0.0, b"", exc.errno
    opened = time.monotonic()
    got = bytearray()
    err: int | None = None
    try:
        while piece := os.read(fd, _READ_BLOCK):
            got += piece
    except OSError as exc:
        err = exc.errno
    finally:
        os.close(fd)
    return opened - t, time.monotonic() - opened, bytes(got), err


def stalled_server(n: int, workdir: Path, read_timeout: float = 2.0,
                   margin: float = 1.0) -> Row:
    """SIGSTOP the server, then read a file not read before through a mount made with
    ``--read-timeout`` (and no prefetch of sibling files, so that every read needs the
    registry): the reads must fail with EIO within the timeout plus ``margin``. SIGCONT
    (always, in ``finally``), then the same file must read right. The ``open`` before the
    read is timed apart: it may wait on the registry too (a folder's lookup is re-checked
    once its short timeout has passed, then answered from memory)."""
    started = time.monotonic()
    rng = random.Random(15_010)
    late = not_eio = recovered_bad = 0
    took: list[float] = []
    opens: list[float] = []
    with Space(workdir, "stall", server=True) as space:
        files = random_files(rng, n, "s", chunked_every=3, small_max=300_000)
        space.push(files, "stall", transport="server")
        mount = space.mount("--read-timeout", str(read_timeout), "--prefetch-files", "0",
                            transport="server")
        folder = mount.path / f"{PROJECT}/dataset/stall:v0"
        for rel in files:
            os.stat(folder / rel)  # looked up while the server answers
        assert space.server is not None
        pid = space.server.proc.pid
        for rel, data in files.items():
            os.kill(pid, signal.SIGSTOP)
            try:
                opened, read_s, served, err = _timed_read(folder / rel)
            finally:
                os.kill(pid, signal.SIGCONT)
            opens.append(opened)
            took.append(read_s)
            not_eio += err != errno.EIO
            late += err != errno.EIO or read_s > read_timeout + margin
            recovered_bad += bad_bytes(served, data)
            got, err = read_served(folder / rel)
            recovered_bad += err is not None or got != data
        alive = mount.alive()
        space.unmount(mount)
    return Row(
        f"`artifactfs serve` stopped (SIGSTOP), --read-timeout {read_timeout:g}", n,
        f"reads not failing with EIO within {read_timeout + margin:g} s",
        late + recovered_bad + (not alive), time.monotonic() - started, "the read timeout",
        f"read() gave EIO after {statistics.median(took):.2f} s median, {max(took):.2f} s "
        f"max; the open() before it took {statistics.median(opens):.2f} s median, "
        f"{max(opens):.2f} s max; reads wrong or failing after SIGCONT: {recovered_bad}",
        {"read_seconds": took, "open_seconds": opens, "late": late, "not_eio": not_eio,
         "after_sigcont_bad": recovered_bad},
    )


# ---- many clients ----------------------------------------------------------------------------


def concurrent_clients(n: int, workdir: Path, seconds: float = 60.0) -> Row:
    """``n`` clients at once against ``artifactfs serve`` for ``seconds``, each sending small
    authenticated reads one after another: the server_load.py workload (its ``prepare`` and
    ``many``), run in rounds until the time is up. Failed requests must be 0; p99 is the
    figure."""
    import server_load

    started = time.monotonic()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the clients' sockets
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    latencies: list[float] = []
    errors = rounds = 0
    with Space(workdir, "load", server=True) as space:
        assert space.server is not None
        key = Store(space.store).db.create_key("bench")  # the entity server_load uses
        vid = server_load.prepare(space.server.url, key)
        each, t0 = 5, time.perf_counter()
        while (left := seconds - (time.perf_counter() - t0)) > 0:
            row = server_load.many(space.port or 0, key, vid, n, each, left + 60)
            rounds += 1
            latencies += row.latencies_ms
            errors += row.errors
            rate = len(row.latencies_ms) / row.seconds if row.seconds else 0
            each = max(1, min(10_000, int(rate * (seconds - (time.perf_counter() - t0)) / n)))
        wall = time.perf_counter() - t0
    lat = sorted(latencies)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
    total = len(lat) + errors
    return Row(
        f"{n:,} concurrent clients on loopback for {seconds:g} s", total,
        "failed requests", errors, time.monotonic() - started, "nothing (one request)",
        f"error rate {errors / total if total else 0:.2%}; p50 "
        f"{statistics.median(lat) if lat else float('nan'):.0f} ms, p99 {p99:.0f} ms, max "
        f"{lat[-1] if lat else float('nan'):.0f} ms; {len(lat) / wall:.0f} requests/s in "
        f"{wall:.0f} s ({rounds} rounds; benchmarks/server_load.py)",
        {"p99_ms": p99, "requests": len(lat), "errors": errors, "seconds": wall},
    )


# ---- the suite ---------------------------------------------------------------------------------


SCENARIOS: dict[str, tuple[Callable[..., Row], int]] = {
    "blob_corruption": (blob_corruption, 100),
    "cache_corruption": (cache_corruption, 100),
    "kill_daemon_writing": (kill_daemon_writing, 30),
    "kill_daemon_saving": (kill_daemon_saving, 20),
    "kill_daemon_at_commit": (kill_daemon_at_commit, 10),
    "kill_client_saving": (kill_client_saving, 20),
    "kill_server_uploading": (kill_server_uploading, 30),
    "kill_server_committing": (kill_server_committing, 20),
    "enospc_cache": (enospc_cache, 100),
    "enospc_staging": (enospc_staging, 100),
    "stalled_server": (stalled_server, 20),
    "concurrent_clients": (concurrent_clients, 1000),
}
"""Each scenario and its N in a full run: 100 where a trial is cheap, fewer where each needs
a remount, a server restart or a read timeout."""


def write_doc(rows: list[Row], command: str, doc: Path = DOC, when: str | None = None,
              load: float | None = None) -> None:
    """Put the table, the command, its date (now unless ``when``) and the load average at its
    end (now unless ``load``) between the markers of ``doc``."""
    when = when or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0] if load is None else load
    block = (f"{DOC_START}\n`{command}` at {_commit()}, {when}, {os.cpu_count()} CPUs, "
             f"load average {load:.1f} at the end, "
             f"{sum(r.seconds for r in rows) / 60:.0f} minutes:\n\n"
             f"{table(rows)}\n{DOC_END}")
    text = doc.read_text() if doc.exists() else f"# Reliability\n\n{DOC_START}\n{DOC_END}\n"
    start, end = text.find(DOC_START), text.find(DOC_END)
    if start < 0 or end < 0:
        text = text.rstrip("\n") + f"\n\n{DOC_START}\n{DOC_END}\n"
        start, end = text.find(DOC_START), text.find(DOC_END)
    doc.write_text(text[:start] + block + text[end + len(DOC_END):])


def _commit() -> str:
    """The commit the run measured (and ``+`` when the work tree had changes on top)."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "an unknown commit"
    return f"{head}{'+' if dirty else ''}" if head else "an unknown commit"


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C: the scenario under way cleans up in its ``finally``."""
    raise KeyboardInterrupt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None,
                    help="trials of every scenario (default: each scenario's own N); for "
                         "concurrent_clients the number of clients")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(SCENARIOS)}")
    ap.add_argument("--seconds", type=float, default=60.0,
                    help="how long concurrent_clients runs")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where the work folders go (default: the system temporary folder)")
    ap.add_argument("--json", type=Path, default=None,
                    help="default benchmarks/results/faults-<UTC time>.json")
    ap.add_argument("--no-doc", action="store_true",
                    help=f"do not write the table into {DOC.relative_to(REPO)}")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("faults.py needs root: FUSE mounts, tmpfs mounts, drop_caches")
    names = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(SCENARIOS)}")
    workdir = args.workdir or Path(tempfile.gettempdir())
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    # what this process's own SDK calls log (a damaged cache file found, a blob that failed
    # its check): expected here by the hundred, so kept out of the table's way
    log_path = workdir / f"faults-{stamp}.log"
    logging.basicConfig(filename=log_path, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log(f"the SDK's log lines go to {log_path}")
    rows: list[Row] = []
    interrupted = False
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        for name in names:
            func, default_n = SCENARIOS[name]
            n = args.n or default_n
            log(f"{name}: {n} ...")
            extra = {"seconds": args.seconds} if name == "concurrent_clients" else {}
            row = func(n, workdir, **extra)
            log(f"{name}: {'PASS' if row.passed else 'FAIL'} {row.counted} = {row.count} in "
                f"{row.seconds:.0f} s; {row.details}")
            rows.append(row)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted; the rows so far:")
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(table(rows))
    out = args.json or REPO / "benchmarks" / "results" / f"faults-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": " ".join(sys.argv), "utc": stamp, "cpus": os.cpu_count(),
        "load_average_end": os.getloadavg(),
        "rows": [{**asdict(r), "passed": r.passed} for r in rows],
    }, indent=1) + "\n")
    print(f"rows written to {out}")
    if not args.no_doc and not interrupted and not args.only:
        write_doc(rows, "make faults" if len(sys.argv) == 1
                  else "benchmarks/faults.py " + " ".join(sys.argv[1:]))
        print(f"table written to {DOC}")
    if interrupted:
        raise SystemExit(130)
    if not all(r.passed for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
