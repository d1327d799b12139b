"""artifactfs against its peers: rclone's FUSE mount, curl and the local disk, in one run.

Run as root (it mounts FUSE, drops the page cache and runs nginx)::

    scripts/install-bench-deps.sh          # nginx, rclone, fio, curl (only what is missing)
    .venv/bin/python benchmarks/peers.py [--quick] [--only 1,2,5] [--keep]

In a temporary work folder it builds three data sets (one big file; many 64 KiB files in
folders; a version with very many entries), puts them in a private store, and starts:

- ``artifactfs serve`` twice on that store: once serving blob bytes itself, once redirecting
  blob reads (``--blob-url-base``, signed with a secret made for the run) to nginx;
- nginx (foreground, loopback, its config in the work folder) serving the store folder, so
  ``/blobs/xx/HEX`` are the blob files, reachable only by signed addresses (its secure_link
  module checks the registry's signatures, as a deployment would), and the source data under
  their artifact paths at ``/tree/`` with ``autoindex on`` (for rclone's http backend and for
  curl).

Contenders: artifactfs mounted on each server; ``rclone mount :http:`` over the nginx tree
with ``--vfs-cache-mode off`` and ``full``; and the limits, curl of the same bytes from nginx
and plain reads of the source folder. Workloads (see benchmarks/README.md for the details):
1 sequential read of the big file; 2 reading all small files (1 and 4 readers, listing order
and shuffled); 3 fio random 4 KiB reads; 4 ``ls -lR`` and ``find | wc -l`` over the many-entry
version; 5 time to first byte; 6 ``artifactfs mount`` until the mount answers; 7 the daemon's
peak memory (VmHWM) during 1, 2 and 4; 8 the disk cache's size on disk while the big file and
every small file are read through a cache bounded to a fraction of them; 9 two epochs of a
PyTorch DataLoader (benchmarks/dataloader.py) over 2,000 x 64 KiB and 200 x 4 MiB, where
artifactfs is also mounted on the embedded store and with ``--read-only``. Every cold figure
starts from a fresh mount with the contender's cache emptied and the page cache dropped.

It prints one table of absolute figures, then the targets with the measured ratios and
PASS/MISS, and writes both with machine information and the load average as JSON under
``benchmarks/results/``. It times; it asserts nothing about times (PASS/MISS is reported, the
exit status does not depend on it).

The helpers of ``read_throughput.py`` and ``server_transfer.py`` (mounting and unmounting
safely by pid, dropping the page cache, machine information, running ``artifactfs serve``)
are imported from them. Processes are only ever stopped by their pid, never by name.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import multiprocessing as mp
import os
import random
import re
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dataloader import (
    BATCH_SIZE,
    WORKERS,
    LoaderError,
    LoaderRun,
    describe_requests,
    list_tree,
    page_cache_drops,
    per_file,
    request_counts,
)
from read_throughput import (
    _MOUNTED_RE,
    BLOCK,
    PROJECT,
    RESULTS,
    TYPE,
    BenchError,
    Mount,
    Workspace,
    add_output_options,
    artifactfs_cli,
    become_subreaper,
    bench_main,
    drop_page_cache,
    is_mounted,
    log,
    log_problems,
    machine_info,
    make_big,
    preflight,
    push,
    read_all,
    read_buffer,
    read_through,
    remove_workdir,
    stat_delta,
    wait_gone,
    write_json,
)
from server_transfer import (
    ENTITY,
    Server,
    cpu_seconds,
    free_port,
    project_and_package,
    steal_seconds,
)

SMALL_SIZE = 64 << 10
TINY = b"artifactfs peer benchmark: one small blob behind every entry\n"
LARGE_SIZE = 4 << 20  # the DataLoader's large files (workload 9)
ALL_WORKLOADS = (1, 2, 3, 4, 5, 6, 7, 8, 9)
ORDERS = ("listing", "shuffled")
READERS = (1, 4)

AFS_REG, AFS_NGX, RC_OFF, RC_FULL, CURL, LOCAL = (
    "afs-registry", "afs-nginx", "rclone-off", "rclone-full", "curl", "local",
)
# artifactfs mounted on the embedded store, and read-only mounts (workload 9 only)
AFS_EMB, AFS_EMB_RO, AFS_REG_RO = "afs-embedded", "afs-embedded-ro", "afs-registry-ro"
CONTENDERS = (AFS_REG, AFS_NGX, RC_OFF, RC_FULL, CURL, LOCAL, AFS_EMB, AFS_EMB_RO, AFS_REG_RO)
LABELS = {
    AFS_REG: "afs registry",
    AFS_NGX: "afs nginx",
    AFS_EMB: "afs embedded",
    AFS_EMB_RO: "afs embedded ro",
    AFS_REG_RO: "afs registry ro",
    RC_OFF: "rclone off",
    RC_FULL: "rclone full",
    CURL: "curl nginx",
    LOCAL: "local disk",
}
AFS = (AFS_REG, AFS_NGX)
MOUNTED = (AFS_REG, AFS_NGX, RC_OFF, RC_FULL)
READ_ONLY = (AFS_EMB_RO, AFS_REG_RO)  # mounted with 'artifactfs mount --read-only'
AFS_VARIANTS = (AFS_EMB, AFS_EMB_RO, AFS_REG, AFS_REG_RO, AFS_NGX)  # compared in workload 9
LOADER_CONTENDERS = (LOCAL, *AFS_VARIANTS, RC_OFF, RC_FULL)

_HWM_RE = re.compile(r"^VmHWM:\s+(\d+)\s+kB", re.M)
_NGINX_LINE_RE = re.compile(
    r"^(?P<method>[A-Z]+) (?P<uri>\S+) (?P<status>\d{3}) (?P<bytes>\d+) \S+ (?P<conn>\d+)"
)


# ---- sizes and data sets -------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    big_mib: int
    small_count: int
    small_folders: int
    entries: int
    entry_folders: int
    loader_small: int = 0  # workload 9: files of 64 KiB
    loader_large: int = 0  # workload 9: files of 4 MiB


def sizes_for(args: argparse.Namespace) -> Sizes:
    big = args.size_mib if args.size_mib is not None else (64 if args.quick else 1024)
    small = args.small_count if args.small_count is not None else (500 if args.quick else 10_000)
    entries = args.entries if args.entries is not None else (5_000 if args.quick else 100_000)
    loader_small = args.loader_small or (500 if args.quick else 2_000)
    loader_large = args.loader_large or (50 if args.quick else 200)
    return Sizes(big, small, min(100, max(1, small // 50)), entries,
                 min(1000, max(1, entries // 100)), loader_small, loader_large)


@dataclass
class Dataset:
    name: str  # the artifact's name, and its folder under the nginx tree and rclone mounts
    rels: list[str]  # paths inside the artifact, sorted: the listing order
    keys: dict[str, str]  # path -> hex MD5 (the blob key)
    sizes: dict[str, int]
    version: str = ""  # "name:vN" once committed

    @property
    def nbytes(self) -> int:
        return sum(self.sizes.values())


def digest_of(hex_key: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_key)).decode("ascii")


def make_small_files(top: Path, count: int, folders: int, *, name: str = "small",
                     size: int = SMALL_SIZE) -> Dataset:
    """``count`` files of ``size`` random bytes in ``folders`` folders under ``top``."""
    keys: dict[str, str] = {}
    for i in range(count):
        rel = f"d{i % folders:03d}/f{i:06d}.bin"
        data = os.urandom(size)
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_bytes(data)
        keys[rel] = hashlib.md5(data).hexdigest()
    rels = sorted(keys)
    return Dataset(name, rels, keys, dict.fromkeys(rels, size))


def make_tiny_tree(top: Path, count: int, folders: int) -> Dataset:
    """``count`` files holding TINY in ``folders`` folders (the rclone and local tree)."""
    hex_key = hashlib.md5(TINY).hexdigest()
    rels = []
    for f in range(folders):
        (top / f"d{f:04d}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rel = f"d{i % folders:04d}/e{i:06d}.txt"
        fd = os.open(top / rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, TINY)
        finally:
            os.close(fd)
        rels.append(rel)
    rels.sort()
    return Dataset("many", rels, dict.fromkeys(rels, hex_key), dict.fromkeys(rels, len(TINY)))


def commit_direct(store: Path, top: Path, data: Dataset) -> str:
    """Commit ``data`` through the store API: blobs hard-linked from the source files.

    Used for files no larger than one chunk (they need no chunk index). It saves the
    thousands of fsyncs a push would make; what is measured later is unchanged: the blob
    files are the content-addressed files the server and nginx serve.
    """
    try:
        from artifactfs.core.manifest import Manifest, ManifestEntry
        from artifactfs.store import Store
    except ImportError as exc:
        raise BenchError(
            f"cannot import artifactfs ({exc}); run this with the project's venv"
        ) from None
    for rel in data.rels:
        key = data.keys[rel]
        dest = store / "blobs" / key[:2] / key
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(top / rel, dest)
    manifest = Manifest(
        ManifestEntry(rel, digest_of(data.keys[rel]), data.sizes[rel]) for rel in data.rels
    )
    info = Store(store).commit(entity=ENTITY, project=PROJECT, name=data.name, type_=TYPE,
                               manifest=manifest)
    return f"{data.name}:{info.version}"


# ---- processes: servers, nginx, mounts -----------------------------------------------------


def vm_hwm(pid: int | None) -> int | None:
    """Peak resident memory of a live process, in bytes (VmHWM)."""
    if pid is None:
        return None
    try:
        m = _HWM_RE.search(Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return int(m[1]) * 1024 if m else None


def child_pids(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def stop_child(proc: subprocess.Popen[bytes] | None, name: str, grace: float = 15.0) -> None:
    """SIGTERM to our child by its pid, SIGKILL if it ignores that; never raises."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log(f"{name} (pid {proc.pid}) still running {grace:.0f} s after SIGTERM; SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


class PeerServer(Server):
    """``artifactfs serve`` on the shared store, optionally redirecting blob reads."""

    def __init__(self, root: Path, cli: Path, name: str, blob_url_base: str | None,
                 blob_url_secret: str | None = None) -> None:
        super().__init__(root, cli)
        self.name = name
        self.log_path = root / f"server-{name}.log"
        self.blob_url_base = blob_url_base
        self.blob_url_secret = blob_url_secret

    def env(self) -> dict[str, str]:
        env = super().env()
        if self.blob_url_secret:  # in the environment, not on the command line ps shows
            env["ARTIFACTFS_BLOB_URL_SECRET"] = self.blob_url_secret
        return env

    def start(self, key: str, attempts: int = 3) -> None:
        extra = ["--blob-url-base", self.blob_url_base] if self.blob_url_base else []
        for attempt in range(1, attempts + 1):
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            with open(self.log_path, "ab") as out:
                self.proc = subprocess.Popen(
                    [str(self.cli), "serve", "--store", str(self.store), "--port", str(port),
                     *extra],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    env=self.env(), start_new_session=True,
                )
            if self._wait_ready(key):
                return
            tail = self.log_tail()
            if "address already in use" in tail.lower() and attempt < attempts:
                continue
            raise BenchError(f"artifactfs serve exited ({self.proc.returncode}) at start:\n{tail}")


class Nginx:
    """nginx in the foreground (``daemon off``) on a free loopback port; stopped by pid."""

    def __init__(self, root: Path, store: Path, tree: Path) -> None:
        self.dir = root / "nginx"
        self.store, self.tree = store, tree
        self.conf = self.dir / "nginx.conf"
        self.access_log = self.dir / "access.log"
        self.error_log = self.dir / "error.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        # the registry signs its redirects with it and /blobs/ checks them (secure_link)
        self.secret = secrets.token_urlsafe(32)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def pids(self) -> list[int]:
        return [self.pid, *child_pids(self.pid)] if self.pid is not None else []

    def signed_url(self, key: str, lifetime: int = 3600) -> str:
        """A signed address of blob ``key``, as the registry hands out (for curl)."""
        from artifactfs.store.blobs import signed_blob_url

        return signed_blob_url(self.url, digest_of(key), secret=self.secret,
                               expires=int(time.time()) + lifetime)

    def config(self, port: int) -> str:
        d = self.dir
        return f"""# written by benchmarks/peers.py; run with -g 'daemon off;'
# the master runs as root (the benchmark does); workers too, so they can read the
# private work folder and the store's blob files (mode 0600)
user root;
worker_processes auto;
pid {d}/nginx.pid;
error_log {self.error_log} warn;
events {{ worker_connections 1024; }}
http {{
    log_format peers '$request_method $uri $status $body_bytes_sent $request_time $connection';
    access_log {self.access_log} peers;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        # content-addressed blob files: /blobs/<hex[:2]>/<hex> (what --blob-url-base names),
        # only by the addresses the registry signs (docs/api.md, "Blob redirects")
        location /blobs/ {{
            secure_link $arg_md5,$arg_expires;
            secure_link_md5 "$secure_link_expires$uri {self.secret}";
            if ($secure_link = "") {{ return 403; }}
            if ($secure_link = "0") {{ return 410; }}
            root {self.store};
        }}
        # the same data under its artifact paths, browsable (rclone's http backend)
        location /tree/ {{ alias {self.tree}/; autoindex on; }}
    }}
}}
"""

    def start(self, attempts: int = 3) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        for attempt in range(1, attempts + 1):
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            self.conf.write_text(self.config(port))
            with open(self.dir / "stderr.log", "ab") as out:
                self.proc = subprocess.Popen(
                    [nginx, "-p", str(self.dir), "-c", str(self.conf), "-e",
                     str(self.error_log), "-g", "daemon off;"],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"{self.url}/tree/", timeout=2) as r:
                        r.read()
                    return
                except (urllib.error.URLError, OSError):
                    time.sleep(0.1)
            stop_child(self.proc, "nginx")
            tail = self.tail()
            if "address already in use" in tail.lower() and attempt < attempts:
                continue
            raise BenchError(f"nginx did not start:\n{tail}")

    def tail(self) -> str:
        out = []
        for path in (self.error_log, self.dir / "stderr.log"):
            with contextlib.suppress(OSError):
                out += path.read_text(errors="replace").splitlines()[-10:]
        return "\n".join(out) or "(nothing logged)"

    def stop(self) -> None:
        stop_child(self.proc, "nginx")

    def log_offset(self) -> int:
        try:
            return self.access_log.stat().st_size
        except OSError:
            return 0

    def requests_since(self, offset: int) -> dict[str, Any]:
        try:
            with open(self.access_log, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return {}
        kinds: dict[str, dict[str, int]] = {}
        connections: set[str] = set()
        for line in text.splitlines():
            m = _NGINX_LINE_RE.match(line)
            if m is None:
                continue
            connections.add(m["conn"])
            what = "blob" if m["uri"].startswith("/blobs/") else (
                "listing" if m["uri"].endswith("/") else "file")
            entry = kinds.setdefault(f"{m['method']} {what} {m['status']}",
                                     {"count": 0, "bytes": 0})
            entry["count"] += 1
            entry["bytes"] += int(m["bytes"])
        return {"requests": sum(k["count"] for k in kinds.values()),
                "connections": len(connections), "by_kind": kinds}


@dataclass
class AfsClient(Workspace):
    """One artifactfs contender's client: own cache, HOME and mount point, a server URL."""

    name: str = ""
    registry_url: str = ""
    api_key: str = ""

    @property
    def store(self) -> Path:  # must never appear: the client talks to the server
        return self.root / f"client-store-unused-{self.name}"

    @property
    def cache(self) -> Path:
        return self.root / f"cache-{self.name}"

    @property
    def home(self) -> Path:
        return self.root / f"home-{self.name}"

    @property
    def mnt(self) -> Path:
        return self.root / f"mnt-{self.name}"

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(ARTIFACTFS_REGISTRY=self.registry_url, ARTIFACTFS_API_KEY=self.api_key)
        return env


@dataclass
class AfsEmbeddedClient(AfsClient):
    """A contender on the embedded store: the servers' own store folder, read in the daemon
    (no server, no HTTP), with its own cache, HOME and mount point."""

    @property
    def store(self) -> Path:
        return self.root / "store-server"

    def env(self) -> dict[str, str]:
        return Workspace.env(self)  # no ARTIFACTFS_REGISTRY: the embedded store


@dataclass
class Pusher(Workspace):
    """Embedded-store access to the servers' store, for ``artifactfs push`` of the big file."""

    @property
    def store(self) -> Path:
        return self.root / "store-server"

    @property
    def cache(self) -> Path:
        return self.root / "cache-push"

    @property
    def home(self) -> Path:
        return self.root / "home-push"


@dataclass
class AfsMount(Mount):
    """``Mount`` that passes extra mount options, times each mount and keeps the daemon's
    peak memory (VmHWM, read just before it is unmounted) per workload."""

    extra_args: list[str] = field(default_factory=list)
    phase: str = ""
    started_phase: str = ""
    mount_times: list[dict[str, Any]] = field(default_factory=list)
    peaks: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> None:
        t0 = time.perf_counter()
        out = self.ws.run("mount", str(self.ws.mnt), *self.extra_args, timeout=180)
        cli_s = time.perf_counter() - t0
        os.stat(self.ws.mnt)  # the mount answers
        answers_s = time.perf_counter() - t0
        m = _MOUNTED_RE.search(out)
        if m is None:
            raise BenchError(f"could not read the daemon pid from 'artifactfs mount': {out!r}")
        self.pid, self.log_file = int(m["pid"]), Path(m["log"].strip())
        if self.log_file not in self.logs:
            self.logs.append(self.log_file)
        self.count += 1
        self.started_phase = self.phase
        self.mount_times.append({"workload": self.phase, "cli_s": round(cli_s, 4),
                                 "answers_s": round(answers_s, 4)})

    def stop(self) -> None:
        hwm = vm_hwm(self.pid)
        if hwm is not None:
            self.peaks.append({"workload": self.started_phase, "vmhwm_bytes": hwm})
        super().stop()


# ---- contenders ----------------------------------------------------------------------------


class Contender:
    key = ""
    mounted = False
    has_disk_cache = False

    @property
    def label(self) -> str:
        return LABELS[self.key]

    def top(self, data: Dataset) -> Path:
        raise NotImplementedError

    def path(self, data: Dataset, rel: str) -> Path:
        return self.top(data) / rel

    def reset(self, *, empty_cache: bool) -> None:
        """Stop, empty the cache when asked, start again (no-op for plain folders)."""

    def stop(self) -> None:
        pass

    def set_phase(self, phase: str) -> None:
        pass

    def watched(self) -> dict[str, list[int]]:
        """Processes whose CPU time is recorded for each measured row, by role."""
        return {}

    def stats(self) -> dict[str, Any] | None:
        return None

    def request_logs(self) -> list[Any]:
        return []

    def peaks(self) -> list[dict[str, Any]]:
        return []

    def mount_times(self) -> list[dict[str, Any]]:
        return []

    @property
    def cache_dir(self) -> Path | None:
        """The folder of its disk cache, for contenders that have one."""
        return None

    def cache_bound(self, nbytes: int) -> contextlib.AbstractContextManager[None]:
        """Mounts started inside the block bound their disk cache to ``nbytes``."""
        raise NotImplementedError(f"{self.key} has no disk cache to bound")


class LocalContender(Contender):
    key = LOCAL

    def __init__(self, data_root: Path) -> None:
        self.data_root = data_root

    def top(self, data: Dataset) -> Path:
        return self.data_root / data.name


class AfsContender(Contender):
    mounted = True
    has_disk_cache = True

    def __init__(self, key: str, client: AfsClient, server: PeerServer | None,
                 nginx: Nginx | None, extra_args: list[str]) -> None:
        self.key = key
        self.client = client
        self.server = server
        self.nginx = nginx
        self.mount = AfsMount(client, extra_args=extra_args)

    def top(self, data: Dataset) -> Path:
        return self.client.mnt / PROJECT / TYPE / data.version

    def start(self) -> None:
        self.mount.start()

    def reset(self, *, empty_cache: bool) -> None:
        self.mount.restart(empty_cache=empty_cache)

    def stop(self) -> None:
        self.mount.stop()

    def empty_cache(self) -> None:
        shutil.rmtree(self.client.cache, ignore_errors=True)

    def set_phase(self, phase: str) -> None:
        self.mount.phase = phase

    def watched(self) -> dict[str, list[int]]:
        out = {"daemon": [self.mount.pid] if self.mount.pid else [],
               "server": [self.server.pid] if self.server and self.server.pid else []}
        if self.nginx is not None:
            out["nginx"] = self.nginx.pids()
        return out

    def stats(self) -> dict[str, Any] | None:
        try:
            return self.mount.stats()
        except (OSError, ValueError):
            return None

    def request_logs(self) -> list[Any]:
        return ([self.server] if self.server is not None else []) + (
            [self.nginx] if self.nginx is not None else [])

    def peaks(self) -> list[dict[str, Any]]:
        return self.mount.peaks

    def mount_times(self) -> list[dict[str, Any]]:
        return self.mount.mount_times

    @property
    def cache_dir(self) -> Path | None:
        return self.client.cache

    @contextlib.contextmanager
    def cache_bound(self, nbytes: int) -> Iterator[None]:
        before = self.client.cache_size
        self.client.cache_size = nbytes  # ARTIFACTFS_CACHE_SIZE of the mounts started here
        try:
            yield
        finally:
            self.client.cache_size = before


class RcloneContender(Contender):
    """``rclone mount :http: MNT --http-url NGINX/tree/ --vfs-cache-mode MODE``."""

    mounted = True

    def __init__(self, key: str, mode: str, root: Path, nginx: Nginx) -> None:
        self.key, self.mode = key, mode
        self.has_disk_cache = mode != "off"
        self.root, self.nginx = root, nginx
        self.mnt = root / f"mnt-{key}"
        self.cache = root / f"cache-{key}"
        self.log_path = root / f"{key}.log"
        self.config = root / "rclone.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        self.phase = ""
        self.started_phase = ""
        self._peaks: list[dict[str, Any]] = []
        self._mount_times: list[dict[str, Any]] = []
        self.extra_args: list[str] = []

    def top(self, data: Dataset) -> Path:
        return self.mnt / data.name

    @property
    def cache_dir(self) -> Path | None:
        return self.cache if self.has_disk_cache else None

    @contextlib.contextmanager
    def cache_bound(self, nbytes: int) -> Iterator[None]:
        # rclone's own bound, checked at its default poll interval (one minute)
        self.extra_args = ["--vfs-cache-max-size", f"{nbytes >> 20}M"]
        try:
            yield
        finally:
            self.extra_args = []

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self) -> None:
        self.mnt.mkdir(exist_ok=True)
        self.config.touch()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
        env["HOME"] = str(self.root / "home-rclone")
        cmd = [
            shutil.which("rclone") or "rclone", "mount", ":http:", str(self.mnt),
            "--http-url", f"{self.nginx.url}/tree/", "--read-only",
            "--vfs-cache-mode", self.mode, "--cache-dir", str(self.cache),
            "--config", str(self.config), "--log-file", str(self.log_path),
            "--log-level", "NOTICE", *self.extra_args,
        ]
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"rclone mount exited ({self.proc.returncode}):\n"
                                 f"{self.log_tail()}")
            if is_mounted(self.mnt):
                with contextlib.suppress(OSError):
                    os.stat(self.mnt)
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"rclone mount did not answer in 60 s:\n{self.log_tail()}")
            time.sleep(0.01)
        self.started_phase = self.phase
        self._mount_times.append({"workload": self.phase,
                                  "answers_s": round(time.perf_counter() - t0, 4)})

    def stop(self) -> None:
        """fusermount3 -u, then stop the process by its pid; never raises."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            hwm = vm_hwm(proc.pid)
            if hwm is not None:
                self._peaks.append({"workload": self.started_phase, "vmhwm_bytes": hwm})
        if is_mounted(self.mnt):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                done = subprocess.run(["fusermount3", "-u", str(self.mnt)],
                                      capture_output=True, text=True, timeout=30)
                if done.returncode != 0:
                    log(f"fusermount3 -u {self.mnt}: {done.stderr.strip()}")
        if proc is not None and proc.poll() is None and not wait_gone(proc.pid, 15.0):
            stop_child(proc, f"rclone {self.mode}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            if proc is not None:
                proc.wait(timeout=5)
        if is_mounted(self.mnt):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(["fusermount3", "-uz", str(self.mnt)], capture_output=True,
                               timeout=30)
        self.proc = None

    def empty_cache(self) -> None:
        shutil.rmtree(self.cache, ignore_errors=True)

    def reset(self, *, empty_cache: bool) -> None:
        self.stop()
        if empty_cache:
            self.empty_cache()
        self.start()

    def set_phase(self, phase: str) -> None:
        self.phase = phase

    def watched(self) -> dict[str, list[int]]:
        return {"daemon": [self.pid] if self.pid else [], "nginx": self.nginx.pids()}

    def request_logs(self) -> list[Any]:
        return [self.nginx]

    def peaks(self) -> list[dict[str, Any]]:
        return self._peaks

    def mount_times(self) -> list[dict[str, Any]]:
        return self._mount_times

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return "(no log)"

    def problems(self) -> list[str]:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [x for x in lines if "ERROR" in x or "CRITICAL" in x]


class CurlContender(Contender):
    key = CURL

    def __init__(self, nginx: Nginx) -> None:
        self.nginx = nginx

    def url(self, data: Dataset, rel: str) -> str:
        return self.nginx.signed_url(data.keys[rel])

    def watched(self) -> dict[str, list[int]]:
        return {"nginx": self.nginx.pids()}

    def request_logs(self) -> list[Any]:
        return [self.nginx]


# ---- results -------------------------------------------------------------------------------


@dataclass
class Row:
    workload: int
    case: str
    label: str  # printed in the first column
    contender: str
    value: float
    unit: str
    seconds: float | None = None
    bytes: int | None = None
    files: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Results:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.order: list[tuple[int, str, str, str]] = []  # (workload, case, label, unit)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        key = (row.workload, row.case, row.label, row.unit)
        if key not in self.order:
            self.order.append(key)
        log(f"{row.label} [{LABELS[row.contender]}]: "
            f"{fmt(row.value, row.unit)} {row.unit}"
            + (f" ({row.seconds:.2f} s)" if row.seconds is not None else "")
            + f" load {row.details.get('load_1m', os.getloadavg()[0]):.2f}")
        return row

    def get(self, workload: int, case: str, contender: str) -> float | None:
        row = self.row(workload, case, contender)
        return row.value if row is not None else None

    def row(self, workload: int, case: str, contender: str) -> Row | None:
        for r in self.rows:
            if (r.workload, r.case, r.contender) == (workload, case, contender):
                return r
        return None


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("files/s", "IOPS"):
        return f"{value:,.0f}"
    if unit in ("MB/s", "MB"):
        return f"{value:,.1f}"
    if unit == "ms":
        return f"{value:,.2f}"
    return f"{value:,.3f}" if value < 10 else f"{value:,.2f}"


@contextlib.contextmanager
def observe(c: Contender) -> Iterator[dict[str, Any]]:
    """Load, the host's steal time, CPU time of the contender's processes, its counters
    and request logs, per row."""
    details: dict[str, Any] = {"load_1m": round(os.getloadavg()[0], 2)}
    steal0 = steal_seconds()
    watched = c.watched()
    cpu0 = {role: {p: cpu_seconds(p) for p in pids} for role, pids in watched.items()}
    stats0 = c.stats()
    logs = c.request_logs()
    offsets = [lg.log_offset() for lg in logs]
    yield details
    cpu: dict[str, float] = {}
    for role, before in cpu0.items():
        total = 0.0
        for p, b in before.items():
            a = cpu_seconds(p)
            if a is not None and b is not None:
                total += a - b
        cpu[role] = round(total, 3)
    details["cpu_s"] = cpu
    steal1 = steal_seconds()
    if steal0 is not None and steal1 is not None:
        details["steal_s"] = round(steal1 - steal0, 3)
    if stats0 is not None:
        after = c.stats()
        if after is not None:
            delta = stat_delta(stats0, after)
            delta["read_requests"] = int(after.get("read_requests", 0)) - int(
                stats0.get("read_requests", 0))
            details["afs_stats"] = delta
            # FUSE requests by kind (lookup, open, read, ...) where the daemon counts them
            details["afs_requests"] = request_counts(stats0, after)
    if logs:
        time.sleep(0.1)  # let the last log lines reach the files
        for lg, off in zip(logs, offsets, strict=True):
            found = lg.requests_since(off)
            if found.get("requests"):
                details["server_requests" if isinstance(lg, Server) else "nginx_requests"] = found


# ---- measuring primitives ------------------------------------------------------------------


def _reader(paths: list[str], barrier: Any, queue: Any) -> None:
    buf = read_buffer()
    try:
        barrier.wait()
        queue.put((read_through(paths, buf), None))
    except BaseException as exc:  # reported to the parent, which raises
        queue.put((0, f"{type(exc).__name__}: {exc}"))


def read_files(paths: list[Path], readers: int, expected: int) -> float:
    """Read every file in ``readers`` processes (contiguous shares, each in the given order),
    opens and closes included; the wall time from the common start to the last finish."""
    ctx = mp.get_context("fork")
    share = -(-len(paths) // readers)
    parts = [[str(p) for p in paths[i * share:(i + 1) * share]] for i in range(readers)]
    barrier = ctx.Barrier(readers + 1)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_reader, args=(part, barrier, queue), daemon=True)
             for part in parts]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=120)
        t0 = time.perf_counter()
        results = [queue.get(timeout=3600) for _ in procs]
        seconds = time.perf_counter() - t0
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)
    errors = [e for _, e in results if e]
    if errors:
        raise BenchError(f"a reader failed: {errors[0]}")
    total = sum(n for n, _ in results)
    if total != expected:
        raise BenchError(f"read {total} bytes, expected {expected}")
    return seconds


def curl_files(urls: list[str], readers: int, workdir: Path, expected: int) -> float:
    """Fetch every URL with ``readers`` curl processes (one connection each, in order)."""
    share = -(-len(urls) // readers)
    cmds = []
    for i in range(readers):
        cfg = workdir / f"curl-{i}.cfg"
        cfg.write_text("".join(f'url = "{u}"\noutput = "/dev/null"\n'
                               for u in urls[i * share:(i + 1) * share]))
        cmds.append(["curl", "-sS", "-f", "-K", str(cfg), "-w", "%{size_download}\\n"])
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL) for c in cmds]
    outs = [p.communicate(timeout=3600) for p in procs]
    seconds = time.perf_counter() - t0
    for p, (_, err) in zip(procs, outs, strict=True):
        if p.returncode != 0:
            raise BenchError(f"curl failed ({p.returncode}): {err.decode(errors='replace')}")
    total = sum(int(x) for out, _ in outs for x in out.split())
    if total != expected:
        raise BenchError(f"curl fetched {total} bytes, expected {expected}")
    return seconds


def first_byte(path: Path) -> float:
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        if len(os.read(fd, 1)) != 1:
            raise BenchError(f"{path}: no first byte")
        return time.perf_counter() - t0
    finally:
        os.close(fd)


def curl_first_byte(url: str) -> float:
    done = subprocess.run(["curl", "-sS", "-f", "-o", "/dev/null", "-r", "0-0", "-w",
                           "%{time_starttransfer}", url], capture_output=True, text=True,
                          timeout=60)
    if done.returncode != 0:
        raise BenchError(f"curl {url} failed: {done.stderr.strip()}")
    return float(done.stdout.strip())


def run_fio(path: Path, size: int, seconds: int) -> dict[str, Any]:
    name = str(path).replace(":", "\\:")  # fio splits file names at ':'
    cmd = ["fio", "--name=randread", f"--filename={name}", "--readonly", "--rw=randread",
           "--bs=4k", "--ioengine=psync", "--iodepth=1", "--numjobs=1", f"--size={size}",
           "--time_based", f"--runtime={seconds}", "--invalidate=0",
           "--output-format=json"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 300,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BenchError(f"fio on {path} did not finish") from None
    if done.returncode != 0:
        raise BenchError(f"fio on {path} failed: {done.stderr.strip() or done.stdout[-500:]}")
    out = json.loads(done.stdout[done.stdout.index("{"):])
    job = out["jobs"][0]["read"]
    pct = job.get("clat_ns", {}).get("percentile", {})
    return {
        "iops": job["iops"], "bw_bytes": job["bw_bytes"], "io_bytes": job["io_bytes"],
        "runtime_ms": job["runtime"], "lat_mean_us": round(job["lat_ns"]["mean"] / 1000, 1),
        "clat_p50_us": round(pct.get("50.000000", 0) / 1000, 1),
        "clat_p99_us": round(pct.get("99.000000", 0) / 1000, 1),
        "clat_max_us": round(job["clat_ns"]["max"] / 1000, 1),
    }


def folder_bytes(top: Path) -> int:
    """What the files under ``top`` take on disk (allocated blocks), temporary files
    included. Counted by inode: a file renamed from one folder to another while the walk
    runs is one file, not two; a file removed while it is counted is skipped."""
    blocks: dict[int, int] = {}
    stack = [str(top)]
    while stack:
        with contextlib.suppress(FileNotFoundError), os.scandir(stack.pop()) as found:
            for entry in found:
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        st = entry.stat(follow_symlinks=False)
                        blocks[st.st_ino] = st.st_blocks * 512
    return sum(blocks.values())


class FolderWatch:
    """``folder_bytes`` of a folder every ``interval`` seconds in a thread, while the block
    runs and once more at its end; keeps the largest."""

    def __init__(self, top: Path, interval: float = 0.2) -> None:
        self.top, self.interval = top, interval
        self.peak = self.last = self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="folder-watch", daemon=True)

    def _sample(self) -> None:
        self.last = folder_bytes(self.top)
        self.peak = max(self.peak, self.last)
        self.count += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> FolderWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def timed_shell(args: list[str], timeout: float) -> tuple[float, str]:
    t0 = time.perf_counter()
    try:
        done = subprocess.run(args, capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BenchError(f"'{shlex.join(args)}' took over {timeout:.0f} s") from None
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise BenchError(f"'{shlex.join(args)}' failed ({done.returncode}): "
                         f"{done.stderr.decode(errors='replace')[-500:]}")
    return seconds, done.stdout.decode(errors="replace")


# ---- the workloads -------------------------------------------------------------------------


class Bench:
    def __init__(self, root: Path, contenders: dict[str, Contender], data: dict[str, Dataset],
                 args: argparse.Namespace, sizes: Sizes, results: Results) -> None:
        self.root = root
        self.contenders = contenders
        self.data = data
        self.args = args
        self.sizes = sizes
        self.results = results

    def each(self, keys: tuple[str, ...]) -> Iterator[Contender]:
        for k in keys:
            if k in self.contenders:
                yield self.contenders[k]

    def phase(self, workload: int) -> None:
        for c in self.contenders.values():
            c.stop()  # a daemon's peak memory counts for the workload it was started in
            c.set_phase(str(workload))

    def done(self) -> None:
        for c in self.contenders.values():
            c.stop()

    def record(self, c: Contender, workload: int, case: str, label: str, unit: str,
               fn: Callable[[], tuple[float, dict[str, Any]]], *, seconds_of: bool = True,
               nbytes: int | None = None, files: int | None = None) -> Row:
        """Run ``fn`` (returning seconds or a value, and extra details) under observation."""
        return self.results.add(self.measure(c, workload, case, label, unit, fn,
                                             seconds_of=seconds_of, nbytes=nbytes,
                                             files=files))

    def measure(self, c: Contender, workload: int, case: str, label: str, unit: str,
                fn: Callable[[], tuple[float, dict[str, Any]]], *, seconds_of: bool = True,
                nbytes: int | None = None, files: int | None = None) -> Row:
        """``record`` without adding the row (see ``add_median``)."""
        with observe(c) as details:
            measured, extra = fn()
        details.update(extra)
        if seconds_of and unit == "MB/s":
            value = (nbytes or 0) / 1e6 / measured
        elif seconds_of and unit == "files/s":
            value = (files or 0) / measured
            details["mb_per_s"] = round((nbytes or 0) / 1e6 / measured, 2)
        else:
            value = measured
        seconds = measured if seconds_of and unit in ("MB/s", "files/s", "s") else None
        return Row(workload, case, label, c.key, value, unit, seconds, nbytes, files, details)

    def add_median(self, rows: list[Row]) -> Row:
        """One row for several rounds of the same measurement: the median round's, with
        every round's value in its details."""
        ordered = sorted(rows, key=lambda r: r.value)
        row = ordered[(len(ordered) - 1) // 2]
        row.details["rounds"] = [round(r.value, 3) for r in rows]
        return self.results.add(row)

    # -- 1 -------------------------------------------------------------------------------------

    def w1(self) -> None:
        """Rounds of every contender in turn, each row the median round: on a shared VM one
        read of 1 GiB moves by a fifth between runs, and interleaving the contenders
        spreads that over all of them instead of favouring whoever ran in a quiet minute."""
        big = self.data["big"]
        rel = big.rels[0]
        size = big.nbytes
        title = f"1 seq read {self.sizes.big_mib} MiB"
        labels = {"cold": f"{title}: cold", "disk_warm": f"{title}: disk-cache warm",
                  "page_warm": f"{title}: page-cache warm"}
        rows: dict[tuple[str, str], list[Row]] = {}
        self.phase(1)

        def seq(c: Contender, case: str) -> None:
            path = c.path(big, rel)
            row = self.measure(c, 1, case, labels[case], "MB/s",
                               lambda: (read_all([path], size)[1], {}), nbytes=size)
            log(f"  {case}: {fmt(row.value, row.unit)} {row.unit}")
            rows.setdefault((c.key, case), []).append(row)

        for n in range(self.args.seq_rounds):
            for c in self.each(MOUNTED):
                log(f"1: {c.label}: cold (round {n + 1} of {self.args.seq_rounds})")
                c.reset(empty_cache=True)
                drop_page_cache()
                seq(c, "cold")
                if c.has_disk_cache:
                    c.reset(empty_cache=False)
                    drop_page_cache()
                    seq(c, "disk_warm")
                seq(c, "page_warm")
                c.stop()
            for c in self.each((LOCAL,)):
                drop_page_cache()
                seq(c, "cold")
                seq(c, "page_warm")
            for c in self.each((CURL,)):
                assert isinstance(c, CurlContender)
                url = c.url(big, rel)

                def fetch(url: str = url) -> tuple[float, dict[str, Any]]:
                    return curl_files([url], 1, self.root, size), {}

                for case in ("cold", "page_warm"):
                    if case == "cold":
                        drop_page_cache()
                    row = self.measure(c, 1, case, labels[case], "MB/s", fetch, nbytes=size)
                    rows.setdefault((c.key, case), []).append(row)
        for found in rows.values():
            self.add_median(found)
        self.done()

    # -- 2 -------------------------------------------------------------------------------------

    def w2(self) -> None:
        small = self.data["small"]
        n = len(small.rels)
        orders = {"listing": list(small.rels), "shuffled": list(small.rels)}
        random.Random(20261127).shuffle(orders["shuffled"])
        self.phase(2)

        def label(readers: int, order: str, state: str) -> str:
            who = "1 reader" if readers == 1 else f"{readers} readers"
            return f"2 {n} x 64 KiB: {who}, {order}, {state}"

        for c in self.each((*MOUNTED, LOCAL, CURL)):
            for readers in READERS:
                for order in ORDERS:
                    rels = orders[order]
                    log(f"2: {c.label}: {readers} reader(s), {order}")
                    if isinstance(c, CurlContender):
                        urls = [c.url(small, r) for r in rels]

                        def fn(urls: list[str] = urls, readers: int = readers
                               ) -> tuple[float, dict[str, Any]]:
                            return curl_files(urls, readers, self.root, small.nbytes), {}
                    else:
                        paths = [c.path(small, r) for r in rels]

                        def fn(paths: list[Path] = paths, readers: int = readers
                               ) -> tuple[float, dict[str, Any]]:
                            return read_files(paths, readers, small.nbytes), {}
                    c.reset(empty_cache=True)
                    drop_page_cache()
                    for state in ("cold", "warm"):
                        self.record(c, 2, f"{readers}r-{order}-{state}",
                                    label(readers, order, state), "files/s", fn,
                                    nbytes=small.nbytes, files=n)
                    c.stop()
        self.done()

    # -- 3 -------------------------------------------------------------------------------------

    def w3(self) -> None:
        big = self.data["big"]
        rel = big.rels[0]
        secs = self.args.fio_seconds
        self.phase(3)
        for c in self.each((*MOUNTED, LOCAL)):
            path = c.path(big, rel)
            log(f"3: {c.label}: fio random 4 KiB reads, {secs} s each")
            c.reset(empty_cache=True)
            drop_page_cache()

            def fio(path: Path = path) -> tuple[float, dict[str, Any]]:
                out = run_fio(path, big.nbytes, secs)
                return out["iops"], {"fio": out}

            self.record(c, 3, "cold", "3 fio 4 KiB random reads: cold", "IOPS", fio,
                        seconds_of=False)
            read_all([path], big.nbytes)  # the whole file through this mount: caches full
            self.record(c, 3, "warm", "3 fio 4 KiB random reads: warm", "IOPS", fio,
                        seconds_of=False)
            c.stop()
        self.done()

    # -- 4 -------------------------------------------------------------------------------------

    def w4(self) -> None:
        many = self.data["many"]
        n = len(many.rels)
        timeout = self.args.listing_timeout
        self.phase(4)
        for c in self.each((*MOUNTED, LOCAL)):
            top = c.top(many)
            for tool in ("ls", "find"):
                log(f"4: {c.label}: {tool} over {n:,} entries")
                c.reset(empty_cache=True)
                drop_page_cache()
                for when in ("first", "again"):
                    if tool == "ls":
                        cmd = ["ls", "-lR", str(top)]
                        label = f"4 ls -lR {n:,} entries: {when}"
                    else:
                        cmd = ["bash", "-c", 'find "$1" -type f | wc -l', "find", str(top)]
                        label = f"4 find -type f | wc -l: {when}"

                    def fn(cmd: list[str] = cmd, tool: str = tool, top: Path = top
                           ) -> tuple[float, dict[str, Any]]:
                        seconds, out = timed_shell(cmd, timeout)
                        if tool == "find" and int(out.strip() or 0) != n:
                            raise BenchError(f"find counted {out.strip()} files under {top}, "
                                             f"expected {n}")
                        if tool == "ls":
                            listed = sum(1 for x in out.splitlines() if x.startswith("-"))
                            if listed != n:
                                raise BenchError(f"ls -lR listed {listed} files under {top}, "
                                                 f"expected {n}")
                        return seconds, {}

                    self.record(c, 4, f"{tool}_{when}", label, "s", fn, files=n)
                c.stop()
        self.done()

    # -- 5 -------------------------------------------------------------------------------------

    def w5(self) -> None:
        big = self.data["big"]
        rel = big.rels[0]
        reps = self.args.ttfb_reps
        label = f"5 first byte of the big file, cold, median of {reps}"
        self.phase(5)
        for c in self.each((*MOUNTED, LOCAL, CURL)):
            log(f"5: {c.label}: time to first byte x{reps}")
            samples: list[float] = []
            loads: list[float] = []
            for _ in range(reps):
                loads.append(os.getloadavg()[0])
                if isinstance(c, CurlContender):
                    drop_page_cache()
                    samples.append(curl_first_byte(c.url(big, rel)))
                    continue
                path = c.path(big, rel)
                c.reset(empty_cache=True)
                os.stat(path)  # looked up: the figure is the bytes, not the path
                drop_page_cache()
                samples.append(first_byte(path))
            c.stop()
            ms = [round(s * 1000, 3) for s in samples]
            self.results.add(Row(5, "ttfb", label, c.key, statistics.median(ms), "ms",
                                 details={"samples_ms": ms, "load_1m": round(loads[0], 2),
                                          "min_ms": min(ms), "max_ms": max(ms)}))
        self.done()

    # -- 6 -------------------------------------------------------------------------------------

    def w6(self) -> None:
        reps = self.args.mount_reps
        label = f"6 mount until it answers, median of {reps}"
        self.phase(6)
        for c in self.each(MOUNTED):
            log(f"6: {c.label}: mount x{reps}")
            samples: list[float] = []
            for _ in range(reps):
                c.stop()
                drop_page_cache()
                c.reset(empty_cache=True)
                # from starting 'artifactfs mount' (or rclone) until the mount root answers
                samples.append(c.mount_times()[-1]["answers_s"])
            c.stop()
            self.results.add(Row(6, "mount", label, c.key, statistics.median(samples), "s",
                                 details={"samples_s": [round(s, 4) for s in samples],
                                          "load_1m": round(os.getloadavg()[0], 2)}))
        self.done()

    # -- 8 -------------------------------------------------------------------------------------

    def w8(self) -> None:
        """Reading more than the disk cache may hold: the big file, then every small file,
        through mounts whose cache is bounded to ``--cache-bound-mib``, the cache folder's
        size on disk sampled as they go and for a second after. rclone full gets the same
        bound as ``--vfs-cache-max-size``."""
        big, small = self.data["big"], self.data["small"]
        bound = self.args.cache_bound_mib << 20
        total = big.nbytes + small.nbytes
        label = (f"8 disk cache peak, {total / 2**20:,.0f} MiB read through a "
                 f"{bound >> 20} MiB bound")
        self.phase(8)
        for c in self.each((*AFS, RC_FULL)):
            top = c.cache_dir
            if top is None:
                continue
            log(f"8: {c.label}: {total / 2**20:,.0f} MiB through a {bound >> 20} MiB cache")
            paths = [c.path(big, r) for r in big.rels] + [c.path(small, r) for r in small.rels]

            def fn(paths: list[Path] = paths, top: Path = top) -> tuple[float, dict[str, Any]]:
                with FolderWatch(top) as watch:
                    _, seconds = read_all(paths, total)
                    time.sleep(1.0)  # writes to the cache that finish after the last read
                return watch.peak / 1e6, {
                    "bound_bytes": bound, "peak_bytes": watch.peak, "end_bytes": watch.last,
                    "samples": watch.count, "read_s": round(seconds, 3),
                    "read_mb_per_s": round(total / 1e6 / seconds, 1),
                }

            with c.cache_bound(bound):
                c.reset(empty_cache=True)
                drop_page_cache()
                self.record(c, 8, "cache_peak", label, "MB", fn, seconds_of=False)
                c.stop()
        self.done()

    # -- 9 -------------------------------------------------------------------------------------

    def w9(self) -> None:
        """Two epochs of a PyTorch DataLoader over each of its data sets, per contender.

        Epoch 0 is cold (a fresh mount, the contender's cache emptied, the page cache
        dropped), epoch 1 warm (right after, on the same mount). The tree is listed once
        through the contender before the page cache is dropped, as a job builds its index
        once before it trains; the listing is not timed. Each epoch's row carries the FUSE
        requests per file (from the stats attribute) and the daemon's CPU time per file.

        Rounds of every contender in turn, each row the median round, as in workload 1: a
        warm epoch of 2,000 files from the page cache lasts about a tenth of a second, and
        on a shared 2-CPU machine one such figure moves by half between two runs.
        """
        rows: dict[tuple[str, str], list[Row]] = {}
        rounds = self.args.loader_rounds
        self.phase(9)
        for number in range(1, rounds + 1):
            for key in ("loader_small", "loader_large"):
                data = self.data[key]
                title = f"9 DataLoader {len(data.rels):,} x {size_text(data)}"
                log(f"{title}, round {number} of {rounds}")
                for row in self.loader_floor(key, data, title):
                    rows.setdefault((row.case, row.contender), []).append(row)
                for c in self.each(LOADER_CONTENDERS):
                    for row in self.loader_epochs(c, key, data, title):
                        log(f"  {c.label}: {row.label.removeprefix(title + ': ')}: "
                            f"{fmt(row.value, row.unit)} {row.unit}")
                        rows.setdefault((row.case, row.contender), []).append(row)
        for found in rows.values():
            # an epoch during which another process dropped the page cache is not warm:
            # the median of the others, where there are others
            clean = [r for r in found if not r.details.get("page_cache_drops")
                     or not r.case.endswith("-warm")]  # a cold epoch is cold either way
            row = self.add_median(clean or found)
            row.details["rounds"] = [round(r.value, 3) for r in found]
            row.details["rounds_with_a_drop_by_others"] = len(found) - len(clean)
        self.done()

    def loader_epochs(self, c: Contender, key: str, data: Dataset, title: str) -> list[Row]:
        """Epoch 0 (cold) and epoch 1 (warm) of ``data`` through ``c``; the mount and the
        loader's workers are stopped, and the contender's cache emptied, whatever happens."""
        n = len(data.rels)
        out: list[Row] = []
        run: LoaderRun | None = None
        c.reset(empty_cache=True)
        try:
            t0 = time.perf_counter()
            paths = list_tree(c.top(data))
            listing_s = time.perf_counter() - t0
            if len(paths) != n:
                raise BenchError(f"9: {c.label}: listed {len(paths)} files under "
                                 f"{c.top(data)}, expected {n}")
            run = LoaderRun(paths, workers=WORKERS, batch_size=BATCH_SIZE)
            run.start()  # the workers, before the clock and the dropped cache
            drop_page_cache()
            for number, state in enumerate(("cold", "warm")):

                def fn(run: LoaderRun = run, expected: int = data.nbytes
                       ) -> tuple[float, dict[str, Any]]:
                    drops = page_cache_drops()
                    epoch = run.epoch(expected)
                    after = page_cache_drops()
                    return epoch.seconds, {
                        "first_batch_s": round(epoch.first_batch_s, 4),
                        # by another process (ours is before the cold epoch, not in it)
                        "page_cache_drops": (after - drops if after is not None
                                             and drops is not None else 0),
                    }

                row = self.measure(c, 9, f"{key}-{state}", f"{title}: epoch {number}, {state}",
                                   "files/s", fn, nbytes=data.nbytes, files=n)
                row.details["listing_s"] = round(listing_s, 3)
                out.append(per_file_details(row, n))
        except LoaderError as exc:
            raise BenchError(f"9: {c.label}: {exc}") from None
        finally:
            if run is not None:
                run.close()
            c.stop()
            if isinstance(c, AfsContender | RcloneContender):
                c.empty_cache()  # up to 800 MB each: free the disk for the next
        return out

    def loader_floor(self, key: str, data: Dataset, title: str) -> list[Row]:
        """The loader alone: an epoch whose items open no file (indices shuffled and sent
        to the workers, batches sent back), the floor under every contender."""
        c = self.contenders.get(LOCAL)
        if c is None:
            return []
        try:
            run = LoaderRun([str(c.path(data, r)) for r in data.rels], workers=WORKERS,
                            batch_size=BATCH_SIZE)
        except LoaderError as exc:
            raise BenchError(f"9: {exc}") from None

        def fn() -> tuple[float, dict[str, Any]]:
            return run.epoch(0, read=False).seconds, {}

        try:
            run.start()
            return [self.measure(c, 9, f"{key}-floor", f"{title}: no file read (the loader "
                                 "alone)", "files/s", fn, nbytes=0, files=len(data.rels))]
        finally:
            run.close()

    # -- 7 -------------------------------------------------------------------------------------

    def w7(self, ran: set[int]) -> None:
        during = {str(w) for w in (1, 2, 4) if w in ran}
        label = f"7 daemon peak memory (VmHWM) during {', '.join(sorted(during))}"
        for c in self.each(MOUNTED):
            peaks = [p for p in c.peaks() if p["workload"] in during]
            if not peaks:
                continue
            top = max(peaks, key=lambda p: p["vmhwm_bytes"])
            by_workload = {w: max((p["vmhwm_bytes"] for p in peaks if p["workload"] == w),
                                  default=None) for w in sorted(during)}
            self.results.add(Row(7, "vmhwm", label, c.key, top["vmhwm_bytes"] / 1e6, "MB",
                                 details={"peak_workload": top["workload"],
                                          "by_workload_bytes": by_workload,
                                          "daemons": len(peaks)}))


def size_text(data: Dataset) -> str:
    """``64 KiB`` or ``4 MiB``: the size of a data set's files (all one size)."""
    size = max(data.sizes.values())
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"


def per_file_details(row: Row, files: int) -> Row:
    """Add the requests and the CPU milliseconds per file to a workload-9 row."""
    requests = row.details.get("afs_requests")
    if requests:
        row.details["requests_per_file"] = per_file(requests, files)
    for role, seconds in row.details.get("cpu_s", {}).items():
        if role in ("daemon", "server"):
            row.details[f"{role}_cpu_ms_per_file"] = round(seconds * 1000 / files, 3)
    # HTTP requests the artifactfs server and nginx answered (rclone's only measure of them)
    http = sum(int(row.details.get(k, {}).get("requests", 0))
               for k in ("server_requests", "nginx_requests"))
    if row.contender != LOCAL:
        row.details["http_requests_per_file"] = round(http / files, 3)
    return row


# ---- targets -------------------------------------------------------------------------------


@dataclass
class Target:
    text: str
    contender: str
    measured: float | None
    unit: str
    reference: str | None = None  # what the ratio is against
    reference_value: float | None = None
    ratio: float | None = None
    required: str = ""
    result: str = "n/a"
    margin: float | None = None  # >= 1 passes: how far past (or short of) the target


def evaluate_targets(res: Results) -> list[Target]:
    out: list[Target] = []

    def ratio_target(text: str, c: str, w: int, case: str, unit: str, refs: list[str],
                     ref_case: str, need: float) -> None:
        measured = res.get(w, case, c)
        found = [(v, r) for r in refs if (v := res.get(w, ref_case, r)) is not None]
        ref = max(found) if found else None
        t = Target(text, c, measured, unit, required=f">= {need:g}x")
        if ref is not None:
            t.reference = f"{LABELS[ref[1]]} {fmt(ref[0], unit)} {unit}"
            t.reference_value = ref[0]
        if measured is not None and ref is not None and ref[0] > 0:
            t.ratio = measured / ref[0]
            t.margin = t.ratio / need
            t.result = "PASS" if t.ratio >= need else "MISS"
        out.append(t)

    def limit_target(text: str, c: str, w: int, case: str, unit: str, limit: float,
                     *, at_most: bool = False) -> None:
        measured = res.get(w, case, c)
        t = Target(text, c, measured, unit,
                   required=f"{'<=' if at_most else '<'} {limit:g} {unit}")
        if measured is not None:
            t.margin = limit / measured if measured > 0 else float("inf")
            t.result = "PASS" if measured < limit or (at_most and measured == limit) else "MISS"
        out.append(t)

    ratio_target("1 cold, via nginx redirect", AFS_NGX, 1, "cold", "MB/s", [RC_OFF], "cold",
                 2.0)
    ratio_target("1 cold, registry serving bytes", AFS_REG, 1, "cold", "MB/s", [RC_OFF],
                 "cold", 1.5)
    for c in (AFS_NGX, AFS_REG):
        ratio_target("1 disk-cache warm vs local dropped", c, 1, "disk_warm", "MB/s", [LOCAL],
                     "cold", 0.7)
        ratio_target("1 page-cache warm vs local warm", c, 1, "page_warm", "MB/s", [LOCAL],
                     "page_warm", 0.8)
    for c in (AFS_NGX, AFS_REG):
        for order in ORDERS:
            case = f"4r-{order}-cold"
            ratio_target(f"2 cold, 4 readers, {order} vs best rclone", c, 2, case, "files/s",
                         [RC_OFF, RC_FULL], case, 2.0)
        for order in ORDERS:
            case = f"1r-{order}-warm"
            ratio_target(f"2 warm, 1 reader, {order} vs rclone full", c, 2, case, "files/s",
                         [RC_FULL], case, 3.0)
    for c in (AFS_NGX, AFS_REG):
        ratio_target("3 warm vs rclone full", c, 3, "warm", "IOPS", [RC_FULL], "warm", 1.0)
    for c in (AFS_NGX, AFS_REG):
        limit_target("4 ls -lR, first after mounting", c, 4, "ls_first", "s", 2.0)
        limit_target("5 time to first byte, cold", c, 5, "ttfb", "ms", 20.0)
        limit_target("6 mount until it answers", c, 6, "mount", "s", 1.0)
        limit_target("7 daemon peak memory", c, 7, "vmhwm", "MB", 250.0)
    for text, case, refs, need in (
        ("9 DataLoader warm epoch, 64 KiB vs local warm", "loader_small-warm", [LOCAL], 0.8),
        ("9 DataLoader cold epoch, 64 KiB vs best rclone", "loader_small-cold",
         [RC_OFF, RC_FULL], 2.0),
        ("9 DataLoader warm epoch, 4 MiB vs local warm", "loader_large-warm", [LOCAL], 0.8),
    ):
        # the target is met by the best artifactfs mount; every variant is shown under it
        variants = [(v, c) for c in AFS_VARIANTS if (v := res.get(9, case, c)) is not None]
        if not variants:
            continue
        best = max(variants)[1]
        ratio_target(f"{text}, best afs", best, 9, case, "files/s", refs, case, need)
        for _, c in variants:
            ratio_target(f"  {text}", c, 9, case, "files/s", refs, case, need)
    for c in (AFS_NGX, AFS_REG):
        found = res.row(8, "cache_peak", c)
        if found is not None:  # "the cache size bound holds while reading more than it"
            limit_target("8 disk cache within its bound", c, 8, "cache_peak", "MB",
                         found.details["bound_bytes"] / 1e6, at_most=True)
    return out


# ---- output --------------------------------------------------------------------------------


def render(res: Results, targets: list[Target], present: list[str]) -> str:
    # workload 9 has a table of its own (one row per contender, with requests per file)
    main = {r.contender for r in res.rows if r.workload != 9}
    cols = [c for c in CONTENDERS if c in present and c in main]
    head = ("workload", "unit", *(LABELS[c] for c in cols))
    order = sorted((k for k in res.order if k[0] != 9),
                   key=lambda k: k[0])  # 7 is measured after 8 has run
    body = []
    for w, case, label, unit in order:
        body.append((label, unit, *(fmt(res.get(w, case, c), unit) for c in cols)))
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]

    def line(cells: tuple[str, ...], numeric_from: int) -> str:
        return "  ".join(
            c.rjust(w) if i >= numeric_from else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(head, 2), "  ".join("-" * w for w in widths)] if body else []
    for i, cells in enumerate(body):
        if i and order[i][0] != order[i - 1][0]:
            out.append("")
        out.append(line(cells, 2))
    loader = render_loader(res)
    if loader:
        out += ["", *loader] if out else loader

    thead = ("target", "contender", "measured", "reference", "ratio", "required", "result",
             "margin")
    tbody = []
    for t in targets:
        tbody.append((
            t.text, LABELS[t.contender],
            f"{fmt(t.measured, t.unit)} {t.unit}" if t.measured is not None else "-",
            t.reference or "-",
            f"{t.ratio:.2f}x" if t.ratio is not None else "-",
            t.required, t.result,
            f"{t.margin:.2f}x" if t.margin is not None else "-",
        ))
    tw = [max(len(x[i]) for x in (thead, *tbody)) for i in range(len(thead))]
    numeric = {2, 4, 7}

    def tline(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, tw, strict=True))
        ).rstrip()

    out += ["", tline(thead), "  ".join("-" * w for w in tw)]
    out += [tline(cells) for cells in tbody]
    return "\n".join(out)


def render_loader(res: Results) -> list[str]:
    """Workload 9: each epoch's figures per contender, the requests and CPU time per file."""
    rows = [r for r in res.rows if r.workload == 9]
    if not rows:
        return []
    head = ("9 DataLoader, 4 workers, shuffled, batch 64", "contender", "files/s", "MB/s",
            "FUSE requests per file", "HTTP/file", "daemon CPU ms/file", "server CPU ms/file")
    body = []
    for _, case, label, _ in (k for k in res.order if k[0] == 9):
        for c in (LOCAL, *AFS_VARIANTS, RC_OFF, RC_FULL):
            r = res.row(9, case, c)
            if r is None:
                continue
            d = r.details
            dropped = "*" if d.get("page_cache_drops") and case.endswith("-warm") else ""
            body.append((
                label.removeprefix("9 DataLoader "), LABELS[c], fmt(r.value, r.unit) + dropped,
                fmt(d.get("mb_per_s"), "MB/s"), describe_requests(d.get("requests_per_file", {})),
                fmt(d.get("http_requests_per_file"), "ms"),
                fmt(d.get("daemon_cpu_ms_per_file"), "ms"),
                fmt(d.get("server_cpu_ms_per_file"), "ms") if d.get("cpu_s", {}).get("server")
                else "-",
            ))
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
    numeric = {2, 3, 5, 6, 7}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [line(head), "  ".join("-" * w for w in widths), *(line(b) for b in body)]
    if any(b[2].endswith("*") for b in body):
        out.append("* another process dropped the page cache during every round of this epoch")
    return out


def tool_versions() -> dict[str, str]:
    out: dict[str, str] = {}
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        # "+artifactfs.N": the patched build whose read() gets the inode (no-open mounts)
        out["pyfuse3"] = importlib.metadata.version("pyfuse3")
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        out["torch"] = importlib.metadata.version("torch")
    for name, cmd in {"nginx": ["nginx", "-v"], "rclone": ["rclone", "version"],
                      "fio": ["fio", "--version"], "curl": ["curl", "--version"]}.items():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            text = (done.stdout or done.stderr).strip().splitlines()
            out[name] = text[0] if text else ""
    return out


# ---- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="artifactfs against rclone mount, curl and the local disk.")
    p.add_argument("--quick", action="store_true",
                   help="small sizes for a smoke run (64 MiB, 500 small files, 5,000 entries, "
                        "short fio runs, 3 repetitions)")
    p.add_argument("--only", default=None,
                   help="comma-separated workloads to run, e.g. 1,2,5 (7 needs 1, 2 or 4)")
    p.add_argument("--contenders", default=None,
                   help=f"comma-separated subset of {','.join(CONTENDERS)}")
    p.add_argument("--size-mib", type=int, default=None, help="size of the big file")
    p.add_argument("--small-count", type=int, default=None, help="number of 64 KiB files")
    p.add_argument("--entries", type=int, default=None,
                   help="entries of the many-entry version")
    p.add_argument("--fio-seconds", type=int, default=None,
                   help="runtime of each fio run (default 10, --quick 3)")
    p.add_argument("--ttfb-reps", type=int, default=None,
                   help="time-to-first-byte samples (default 10, --quick 3)")
    p.add_argument("--mount-reps", type=int, default=None,
                   help="mount-time samples (default 5, --quick 3)")
    p.add_argument("--seq-rounds", type=int, default=None,
                   help="rounds of workload 1 over all contenders; each row is the median "
                        "round (default 3, --quick 1)")
    p.add_argument("--cache-bound-mib", type=int, default=None,
                   help="disk cache bound of workload 8 (default 256, --quick 16)")
    p.add_argument("--loader-small", type=int, default=None,
                   help="workload 9: number of 64 KiB files (default 2,000, --quick 500)")
    p.add_argument("--loader-large", type=int, default=None,
                   help="workload 9: number of 4 MiB files (default 200, --quick 50)")
    p.add_argument("--loader-rounds", type=int, default=None,
                   help="rounds of workload 9 over all contenders; each row is the median "
                        "round (default 3, --quick 1)")
    p.add_argument("--listing-timeout", type=float, default=1800.0,
                   help="seconds one ls -lR or find may take before the run fails")
    p.add_argument("--afs-mount-args", default="",
                   help="extra options for 'artifactfs mount', e.g. '--memory 128'")
    add_output_options(p, "peers", "data, stores, caches, logs")
    args = p.parse_args(argv)
    try:
        only = {int(x) for x in args.only.split(",") if x.strip()} if args.only else set(
            ALL_WORKLOADS)
    except ValueError:
        p.error("--only takes workload numbers, e.g. --only 1,3")
    if not only or not only <= set(ALL_WORKLOADS):
        p.error(f"--only takes workload numbers from 1 to {max(ALL_WORKLOADS)}")
    if only == {7}:
        p.error("workload 7 is measured while 1, 2 and 4 run: add at least one of them")
    args.workloads = only
    chosen = tuple(args.contenders.split(",")) if args.contenders else CONTENDERS
    unknown = set(chosen) - set(CONTENDERS)
    if unknown:
        p.error(f"unknown contenders {sorted(unknown)}; choose from {','.join(CONTENDERS)}")
    args.chosen = chosen
    args.fio_seconds = args.fio_seconds or (3 if args.quick else 10)
    args.ttfb_reps = args.ttfb_reps or (3 if args.quick else 10)
    args.mount_reps = args.mount_reps or (3 if args.quick else 5)
    args.seq_rounds = args.seq_rounds or (1 if args.quick else 3)
    args.loader_rounds = args.loader_rounds or (1 if args.quick else 3)
    args.cache_bound_mib = args.cache_bound_mib or (16 if args.quick else 256)
    if min(args.ttfb_reps, args.mount_reps, args.seq_rounds, args.loader_rounds) < 1:
        p.error("repetitions and rounds must be at least 1")
    if min(args.loader_small or 1, args.loader_large or 1) < 1:
        p.error("--loader-small and --loader-large must be at least 1")
    args.afs_args = shlex.split(args.afs_mount_args)
    return args


def check_tools(chosen: tuple[str, ...], workloads: set[int]) -> None:
    need = {"nginx": any(c in chosen for c in (AFS_NGX, RC_OFF, RC_FULL, CURL))}
    need["rclone"] = RC_OFF in chosen or RC_FULL in chosen
    need["fio"] = 3 in workloads
    need["curl"] = CURL in chosen
    missing = [t for t, n in need.items() if n and not (
        shutil.which(t) or Path(f"/usr/sbin/{t}").exists())]
    if 9 in workloads and importlib.util.find_spec("torch") is None:
        missing.append("torch (the venv's)")
    if missing:
        raise BenchError(f"missing {', '.join(missing)}: run scripts/install-bench-deps.sh "
                         "(as root) first")


def mount_has_read_only(cli: Path) -> bool:
    """Whether this artifactfs has ``artifactfs mount --read-only`` (issue 16)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run([str(cli), "mount", "--help"], capture_output=True, text=True,
                              timeout=60)
        return "--read-only" in done.stdout
    return False


def run(args: argparse.Namespace) -> int:
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    json_path = (args.json or RESULTS / f"peers-{stamp}.json").absolute()
    parent = (args.workdir or Path(tempfile.gettempdir())).absolute()
    sizes = sizes_for(args)
    w = args.workloads
    need_big = bool(w & {1, 3, 5, 8})
    need_loader = 9 in w
    # the DataLoader's 64 KiB set is the small set when their counts agree
    loader_is_small = need_loader and sizes.loader_small == sizes.small_count
    need_small = bool(w & {2, 8}) or loader_is_small
    need_many = 4 in w
    data_bytes = (need_big * sizes.big_mib * BLOCK + need_small * sizes.small_count
                  * SMALL_SIZE)
    if need_loader:
        data_bytes += sizes.loader_large * LARGE_SIZE + (
            0 if loader_is_small else sizes.loader_small * SMALL_SIZE)
    # source, store copy of the big file, two artifactfs caches and one rclone cache
    preflight(parent, 5 * data_bytes + (1 << 30))
    check_tools(args.chosen, w)
    cli = artifactfs_cli()
    become_subreaper()
    root = Path(tempfile.mkdtemp(prefix="artifactfs-peers-", dir=parent)).resolve()
    info = machine_info(root)
    load_start = os.getloadavg()
    steal_start, run_start = steal_seconds(), time.monotonic()
    warnings: list[str] = []
    if info["workdir_fs"] in ("tmpfs", "ramfs"):
        warnings.append(f"the work folder is on {info['workdir_fs']}: cold figures measure "
                        "memory; pass --workdir on a disk-backed file system")
    if load_start[0] > 0.5 * (info["nproc"] or 1):
        warnings.append(f"the machine was busy at the start (1-minute load {load_start[0]:.2f} "
                        f"on {info['nproc']} CPUs): figures are lower and noisier than on an "
                        "idle machine")
    for text in warnings:
        log(f"warning: {text}")
    log(f"work folder {root}; load average {' '.join(f'{x:.2f}' for x in load_start)}; "
        f"sizes {asdict(sizes)}")

    data_root = root / "data"
    pusher = Pusher(root, cli, 1 << 30)
    cache_size = 2 * data_bytes + (1 << 30)
    server_reg = PeerServer(root, cli, "registry", None)
    project = project_and_package(cli, server_reg.env())  # at the start: others may commit
    nginx = Nginx(root, pusher.store, data_root)
    server_ngx: PeerServer | None = None
    contenders: dict[str, Contender] = {}
    results = Results()
    data: dict[str, Dataset] = {}
    setup: dict[str, float] = {}
    failed = True
    ran: set[int] = set()
    try:
        for folder in (data_root, pusher.store, pusher.cache, pusher.home):
            folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if need_big:
            log(f"writing {sizes.big_mib} MiB of random bytes and pushing them")
            (data_root / "big").mkdir()
            key = make_big(data_root / "big" / "big.bin", sizes.big_mib)
            big = Dataset("big", ["big.bin"], {"big.bin": key},
                          {"big.bin": sizes.big_mib * BLOCK})
            big.version, setup["push_big_s"] = push(pusher, data_root / "big" / "big.bin", "big")
            data["big"] = big
        if need_small:
            log(f"writing {sizes.small_count} files of 64 KiB in {sizes.small_folders} folders")
            small = make_small_files(data_root / "small", sizes.small_count, sizes.small_folders)
            small.version = commit_direct(pusher.store, data_root / "small", small)
            data["small"] = small
        if need_many:
            log(f"writing {sizes.entries:,} tiny files in {sizes.entry_folders} folders and "
                "committing the version")
            many = make_tiny_tree(data_root / "many", sizes.entries, sizes.entry_folders)
            many.version = commit_direct(pusher.store, data_root / "many", many)
            data["many"] = many
        if need_loader:
            if loader_is_small:
                data["loader_small"] = data["small"]
            else:
                n = sizes.loader_small
                log(f"writing {n} files of 64 KiB for the DataLoader")
                top = data_root / "loader-small"
                found = make_small_files(top, n, max(1, n // 50), name="loader-small")
                found.version = commit_direct(pusher.store, top, found)
                data["loader_small"] = found
            n = sizes.loader_large
            log(f"writing {n} files of 4 MiB for the DataLoader and pushing them")
            top = data_root / "loader-large"
            # larger than a chunk: pushed, so that the registry builds their chunk indexes
            found = make_small_files(top, n, max(1, n // 20), name="loader-large",
                                     size=LARGE_SIZE)
            found.version, setup["push_loader_large_s"] = push(pusher, top, "loader-large")
            data["loader_large"] = found
        setup["data_s"] = round(time.perf_counter() - t0, 2)
        os.sync()

        nginx.start()
        log(f"nginx {nginx.url} (pid {nginx.pid})")
        key = server_reg.create_key()
        server_reg.start(key)
        server_ngx = PeerServer(root, cli, "nginx", nginx.url, nginx.secret)
        server_ngx.start(key)
        log(f"servers {server_reg.url} (pid {server_reg.pid}), {server_ngx.url} "
            f"(pid {server_ngx.pid}, blobs from nginx)")

        read_only = mount_has_read_only(cli)
        for k in args.chosen:
            if k in READ_ONLY and not read_only:
                warnings.append(f"{k} not measured: this artifactfs has no 'mount --read-only'")
                log(f"warning: {warnings[-1]}")
                continue
            if k in (AFS_EMB, AFS_EMB_RO, AFS_REG_RO):
                ro = ["--read-only"] if k in READ_ONLY else []
                if k == AFS_REG_RO:
                    client = AfsClient(root, cli, cache_size, name=k,
                                       registry_url=server_reg.url, api_key=key)
                else:
                    client = AfsEmbeddedClient(root, cli, cache_size, name=k)
                for folder in (client.cache, client.home, client.mnt):
                    folder.mkdir(parents=True, exist_ok=True)
                contenders[k] = AfsContender(k, client,
                                             server_reg if k == AFS_REG_RO else None, None,
                                             [*args.afs_args, *ro])
            elif k in AFS:
                server = server_reg if k == AFS_REG else server_ngx
                client = AfsClient(root, cli, cache_size, name=k, registry_url=server.url,
                                   api_key=key)
                for folder in (client.cache, client.home, client.mnt):
                    folder.mkdir(parents=True, exist_ok=True)
                contenders[k] = AfsContender(k, client, server,
                                             nginx if k == AFS_NGX else None, args.afs_args)
            elif k in (RC_OFF, RC_FULL):
                contenders[k] = RcloneContender(k, "off" if k == RC_OFF else "full", root,
                                                nginx)
            elif k == CURL:
                contenders[k] = CurlContender(nginx)
            else:
                contenders[k] = LocalContender(data_root)
        bench = Bench(root, contenders, data, args, sizes, results)
        steps = {1: bench.w1, 2: bench.w2, 3: bench.w3, 4: bench.w4, 5: bench.w5,
                 6: bench.w6, 8: bench.w8, 9: bench.w9}
        for number, step in steps.items():
            if number in w:
                t0 = time.perf_counter()
                step()
                setup[f"workload_{number}_s"] = round(time.perf_counter() - t0, 1)
                ran.add(number)
        if 7 in w:
            bench.w7(ran)
        for k in AFS:
            c = contenders.get(k)
            if isinstance(c, AfsContender) and c.client.store.exists():
                warnings.append(f"{k}: an embedded store appeared at {c.client.store}")
        failed = False
    finally:
        for c in contenders.values():
            c.stop()
        for s in (server_reg, server_ngx):
            if s is not None:
                s.stop()
        nginx.stop()
        load_end = os.getloadavg()
        steal_end, run_seconds = steal_seconds(), time.monotonic() - run_start
        problems: list[str] = []
        for c in contenders.values():
            if isinstance(c, AfsContender):
                problems += [f"{c.key} daemon log: {t}" for t in log_problems(c.mount.logs)]
                if failed and c.mount.log_file is not None:
                    tail = "\n".join(log_problems([c.mount.log_file])[-15:]) or "(nothing)"
                    log(f"{c.key} daemon log problems:\n{tail}")
            if isinstance(c, RcloneContender):
                problems += [f"{c.key} log: {t}" for t in c.problems()]
        for s in (server_reg, server_ngx):
            if s is not None:
                problems += [f"server {s.name} log: {t}" for t in log_problems([s.log_path])]
                if failed:
                    log(f"server {s.name} log tail:\n{s.log_tail()}")
        with contextlib.suppress(OSError):
            problems += [f"nginx: {t}" for t in
                         nginx.error_log.read_text(errors="replace").splitlines()]
        remove_workdir(root, keep=args.keep)

    warnings += problems
    targets = evaluate_targets(results)
    table = render(results, targets, list(contenders))
    load_text = (f"load average (1, 5, 15 min): start {' '.join(f'{x:.2f}' for x in load_start)}"
                 f", end {' '.join(f'{x:.2f}' for x in load_end)}; {info['nproc']} CPUs")
    steal = None
    if steal_start is not None and steal_end is not None:
        steal = round(steal_end - steal_start, 1)
        share = steal / (run_seconds * (info["nproc"] or 1))
        load_text += (f"\nsteal (CPU time the hypervisor gave to others): {steal:,.1f} s, "
                      f"{share:.1%} of the run's CPU time")
    print(table)
    print(f"\n{load_text}")
    if problems:
        print(f"{len(problems)} warnings or errors in the daemons', servers' or nginx's logs; "
              "see 'warnings' in the JSON")
    result = {
        "benchmark": "peers",
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "units": {
            "MB/s": "10^6 bytes per second", "files/s": "files read per second (opens "
            "included)", "IOPS": "fio 4 KiB reads per second", "s": "seconds", "ms":
            "milliseconds", "MB": "10^6 bytes",
            "margin": "how far past the target (>= 1 passes, < 1 misses): ratio / required "
                      "ratio, or limit / measured",
        },
        "parameters": {
            "quick": args.quick, "workloads": sorted(w), "contenders": list(contenders),
            "sizes": asdict(sizes), "fio_seconds": args.fio_seconds,
            "ttfb_reps": args.ttfb_reps, "mount_reps": args.mount_reps,
            "seq_rounds": args.seq_rounds, "cache_bound_mib": args.cache_bound_mib,
            "loader_rounds": args.loader_rounds,
            "afs_mount_args": args.afs_args, "workdir": str(root), "kept": bool(args.keep),
            "loader": {"workers": WORKERS, "batch_size": BATCH_SIZE, "shuffle": True,
                       "epochs": 2, "returns": "each file's length"},
            "cache_size": cache_size, "versions": {k: d.version for k, d in data.items()},
        },
        "load_average": {"start": list(load_start), "end": list(load_end)},
        "steal_s": steal,
        "machine": info,
        "tools": tool_versions(),
        "project": project,
        "timings_s": setup,
        "rows": [asdict(r) for r in results.rows],
        "targets": [asdict(t) for t in targets],
        "mounts": {c.key: c.mount_times() for c in contenders.values() if c.mounted},
        "daemon_peaks": {c.key: c.peaks() for c in contenders.values() if c.mounted},
        "table": table.splitlines(),
        "warnings": warnings,
    }
    write_json(json_path, result)
    return 0


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
