"""Push, download and mount reads against a real ``artifactfs serve``, next to the embedded store.

Run as root (it mounts FUSE and drops the page cache)::

    .venv/bin/python benchmarks/server_transfer.py [--size-mib 1024] [--small-count 2000]
                                                   [--workdir DIR] [--json OUT] [--keep]

In one run, in a temporary work folder with private stores, caches and HOME folders, it
starts ``artifactfs serve`` on a free loopback port with an API key for the entity ``local``,
builds random data (``big``: one file of ``--size-mib`` MiB; ``small``: ``--small-count``
files of 64 KiB in 20 folders) and times, with the page cache dropped before each:

- ``cp -r`` of the data to another folder (the local-disk limit),
- ``artifactfs push`` of it into the embedded store and to the server,
- ``artifactfs download`` of it from each, with the client cache emptied first;

then it reads the same files sequentially in 1 MiB blocks: the source folder itself (the
local limit for reads), a mount of the embedded store and a mount of the server, each cold
(fresh mount, cache emptied, page cache dropped) and page-cache warm (read again right away).
It prints one table and writes it, with the load average and machine information, as JSON.
It times; it asserts nothing about times.

Only the standard library is used; the artifactfs package is driven through its CLI, and the
helpers of ``read_throughput.py`` (mounting and unmounting safely, dropping the page cache,
machine information) are imported from it. See benchmarks/README.md for how to read the table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from read_throughput import (
    BLOCK,
    PROJECT,
    RESULTS,
    SMALL_FOLDERS,
    SMALL_SIZE,
    TYPE,
    BenchError,
    Mount,
    Workspace,
    add_output_options,
    aligned_table,
    artifactfs_cli,
    become_subreaper,
    bench_main,
    blob_path,
    drop_page_cache,
    listing_order,
    log,
    log_problems,
    machine_info,
    make_big,
    make_small,
    preflight,
    project_info,
    push,
    read_all,
    remove_workdir,
    stat_delta,
    write_json,
)

ENTITY = "local"  # the clients' default entity; the API key is made for it

LOCAL, EMBEDDED, SERVER = "local", "embedded", "server"
COPY, PUSH, DOWNLOAD = "cp -r", "push", "download"
READ_COLD, READ_WARM = "read, cold", "read, page-cache warm"

# (operation, transport) -> the row it is compared with in the ratio column
BASELINES: dict[tuple[str, str], tuple[str, str]] = {
    (PUSH, EMBEDDED): (COPY, LOCAL),
    (PUSH, SERVER): (PUSH, EMBEDDED),
    (DOWNLOAD, EMBEDDED): (COPY, LOCAL),
    (DOWNLOAD, SERVER): (DOWNLOAD, EMBEDDED),
    (READ_COLD, EMBEDDED): (READ_COLD, LOCAL),
    (READ_COLD, SERVER): (READ_COLD, EMBEDDED),
    (READ_WARM, EMBEDDED): (READ_WARM, LOCAL),
    (READ_WARM, SERVER): (READ_WARM, EMBEDDED),
}
# operation -> the local row that is its limit (for ratio_to_local in the JSON)
LOCAL_LIMIT = {PUSH: COPY, DOWNLOAD: COPY, READ_COLD: READ_COLD, READ_WARM: READ_WARM}

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_REQUEST_RE = re.compile(
    r'"(?P<method>[A-Z]+) (?P<path>\S+)" (?P<status>\d{3}) (?P<bytes>\d+) (?P<ms>[\d.]+)ms'
)
_REQUEST_KINDS = (
    (re.compile(r"/blobs/missing$"), "blobs/missing"),
    (re.compile(r"/blobs/[0-9a-f]{32}/chunks$"), "blob chunk index"),
    (re.compile(r"/blobs/[0-9a-f]{32}$"), "blob"),
    (re.compile(r"/versions/[^/]+/manifest$"), "manifest"),
    (re.compile(r"/resolve/[^/]+$"), "resolve"),
    (re.compile(r"/collections/[^/]+/versions$"), "versions"),
)


# ---- the two clients and the server --------------------------------------------------------


@dataclass
class Client(Workspace):
    """One transport's client: its own cache, HOME and mount point in the shared work folder.

    With ``registry_url`` unset it uses the embedded store ``store-embedded``; with it set it
    talks to the server, and its ``ARTIFACTFS_STORE`` names a folder that must never appear
    (``client-store-unused``), so a client that silently fell back to an embedded store is
    noticed.
    """

    transport: str = EMBEDDED
    registry_url: str | None = None
    api_key: str | None = None

    @property
    def store(self) -> Path:
        name = "store-embedded" if self.transport == EMBEDDED else "client-store-unused"
        return self.root / name

    @property
    def cache(self) -> Path:
        return self.root / f"cache-{self.transport}"

    @property
    def home(self) -> Path:
        return self.root / f"home-{self.transport}"

    @property
    def mnt(self) -> Path:
        return self.root / f"mnt-{self.transport}"

    def env(self) -> dict[str, str]:
        env = super().env()
        if self.transport == SERVER:
            if not self.registry_url or not self.api_key:
                raise BenchError("internal: the server client was used before the server ran")
            env.update(ARTIFACTFS_REGISTRY=self.registry_url, ARTIFACTFS_API_KEY=self.api_key)
        return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int | None) -> float | None:
    """User plus system CPU time a live process has used so far."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime


def steal_seconds() -> float | None:
    """CPU time, summed over this machine's CPUs, that a hypervisor gave to others while
    they had work (the ``steal`` column of ``/proc/stat``); None where it is not reported.
    On a shared VM it is what makes the same code slower in one run than in the next."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()  # cpu user nice system idle iowait irq softirq steal
        return int(fields[8]) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def children_cpu() -> float:
    """CPU time of the children waited for so far (the artifactfs and cp commands)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Server:
    """A real ``artifactfs serve`` on a free loopback port; stopped by its pid, never by name."""

    def __init__(self, root: Path, cli: Path) -> None:
        self.cli = cli
        self.store = root / "store-server"
        self.home = root / "home-serve"
        self.log_path = root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("ARTIFACTFS_", "XDG_"))
        }
        env.update(ARTIFACTFS_STORE=str(self.store), HOME=str(self.home))
        return env

    def create_key(self) -> str:
        """An API key for ENTITY in the server's store (made before the server starts)."""
        args = ["key", "create", ENTITY, "--store", str(self.store)]
        done = subprocess.run(
            [str(self.cli), *args], env=self.env(), capture_output=True, text=True,
            timeout=120, stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip()
            raise BenchError(f"'artifactfs {' '.join(args)}' failed ({done.returncode}): {detail}")
        key = done.stdout.strip().splitlines()[-1].strip() if done.stdout.strip() else ""
        if not key:
            raise BenchError("'artifactfs key create' printed no key")
        return key

    def start(self, key: str, attempts: int = 3) -> None:
        for attempt in range(1, attempts + 1):
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            with open(self.log_path, "ab") as out:
                self.proc = subprocess.Popen(
                    [str(self.cli), "serve", "--store", str(self.store), "--port", str(port)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    env=self.env(), start_new_session=True,
                )
            if self._wait_ready(key):
                return
            tail = self.log_tail()
            if "address already in use" in tail.lower() and attempt < attempts:
                log(f"port {port} was taken before the server bound it; trying another")
                continue
            raise BenchError(f"artifactfs serve exited ({self.proc.returncode}) at start:\n{tail}")

    def _wait_ready(self, key: str, timeout: float = 60.0) -> bool:
        """True once an authenticated request answers; False if the process exited."""
        assert self.proc is not None
        request = urllib.request.Request(
            f"{self.url}/api/v1/entities/{ENTITY}/projects",
            headers={"Authorization": f"Bearer {key}"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(request, timeout=2.0) as response:
                    response.read()
                return True
            except urllib.error.HTTPError as exc:
                raise BenchError(
                    f"the server answered HTTP {exc.code} to a request with the new key "
                    f"(see {self.log_path})"
                ) from None
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise BenchError(f"artifactfs serve did not answer within {timeout:.0f} s:\n"
                         f"{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to our child's pid, then SIGKILL if it ignores it; never raises."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            log(f"server {proc.pid} still running 20 s after SIGTERM; sending SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    def log_offset(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(nothing logged)"

    def requests_since(self, offset: int) -> dict[str, Any]:
        """What the server's request log says happened since ``offset``: counts and times."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return {}
        kinds: dict[str, dict[str, float]] = {}
        statuses: dict[str, int] = {}
        for line in text.splitlines():
            m = _REQUEST_RE.search(line)
            if m is None:
                continue
            kind = next((k for rx, k in _REQUEST_KINDS if rx.search(m["path"])), "other")
            entry = kinds.setdefault(
                f"{m['method']} {kind}", {"count": 0, "ms_total": 0.0, "ms_max": 0.0, "bytes": 0}
            )
            ms = float(m["ms"])
            entry["count"] += 1
            entry["ms_total"] = round(entry["ms_total"] + ms, 1)
            entry["ms_max"] = max(entry["ms_max"], ms)
            entry["bytes"] += int(m["bytes"])
            statuses[m["status"]] = statuses.get(m["status"], 0) + 1
        return {
            "requests": sum(int(k["count"]) for k in kinds.values()),
            "statuses": statuses,
            "by_kind": kinds,
        }


# ---- workloads and rows --------------------------------------------------------------------


@dataclass
class Workload:
    name: str  # "big" or "small"
    description: str
    source: Path  # what is pushed and copied
    keys: dict[str, str]  # relative path inside the artifact -> hex MD5 (the blob key)
    nbytes: int
    folders: dict[str, str] = field(default_factory=dict)  # transport -> "name:vN"

    @property
    def files(self) -> int:
        return len(self.keys)

    def local_paths(self) -> list[Path]:
        if self.source.is_file():
            return [self.source]
        return listing_order(self.source)


@dataclass
class Row:
    workload: str
    workload_description: str
    operation: str
    transport: str
    bytes: int
    files: int
    seconds: float
    mb_per_s: float
    files_per_s: float
    load_1m: float  # load average when the row started
    baseline: str | None = None  # "transport operation" of the row the ratio is against
    ratio: float | None = None
    ratio_to_local: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Recorder:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, work: Workload, operation: str, transport: str, seconds: float,
            load: float, details: dict[str, Any]) -> Row:
        def rate(amount: float) -> float:
            return amount / seconds if seconds > 0 else float("inf")

        row = Row(
            work.name, work.description, operation, transport, work.nbytes, work.files,
            seconds, rate(work.nbytes / 1e6), rate(work.files), load, details=details,
        )
        self.rows.append(row)
        files = f", {row.files_per_s:,.0f} files/s" if work.files > 1 else ""
        log(f"{work.name}: {operation} ({transport}): {row.mb_per_s:,.1f} MB/s{files} "
            f"({seconds:.2f} s, load {load:.2f})")
        return row

    def find(self, workload: str, operation: str, transport: str) -> Row | None:
        return next(
            (r for r in self.rows
             if (r.workload, r.operation, r.transport) == (workload, operation, transport)),
            None,
        )

    def compute_ratios(self) -> None:
        for row in self.rows:
            base_key = BASELINES.get((row.operation, row.transport))
            if base_key is not None:
                base = self.find(row.workload, *base_key)
                if base is not None and base.mb_per_s > 0:
                    row.baseline = f"{base_key[1]} {base_key[0]}"
                    row.ratio = row.mb_per_s / base.mb_per_s
            if row.transport != LOCAL:
                local = self.find(row.workload, LOCAL_LIMIT[row.operation], LOCAL)
                if local is not None and local.mb_per_s > 0:
                    row.ratio_to_local = row.mb_per_s / local.mb_per_s


@contextlib.contextmanager
def observed(server: Server, *, daemon: int | None = None) -> Iterator[dict[str, Any]]:
    """Collect CPU time (commands, server, mount daemon) and server requests for one step.

    ``command_cpu_s`` is the CPU time of the commands (cp, artifactfs) run and waited for in
    the step; ``server_cpu_s`` and ``mount_daemon_cpu_s`` that of those long-lived processes.
    """
    details: dict[str, Any] = {}
    children0, server0, daemon0 = children_cpu(), cpu_seconds(server.pid), cpu_seconds(daemon)
    offset = server.log_offset()
    yield details
    if daemon is None:
        details["command_cpu_s"] = round(children_cpu() - children0, 3)
    server1, daemon1 = cpu_seconds(server.pid), cpu_seconds(daemon)
    if server0 is not None and server1 is not None:
        details["server_cpu_s"] = round(server1 - server0, 3)
    if daemon0 is not None and daemon1 is not None:
        details["mount_daemon_cpu_s"] = round(daemon1 - daemon0, 3)
    time.sleep(0.2)  # let the server's last log lines reach the file
    found = server.requests_since(offset)
    if found.get("requests"):
        details["server_requests"] = found


# ---- the steps -----------------------------------------------------------------------------


def timed_command(cmd: list[str], env: dict[str, str] | None, timeout: float) -> float:
    t0 = time.perf_counter()
    try:
        done = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"'{' '.join(cmd)}' took over {timeout:.0f} s") from None
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise BenchError(f"'{' '.join(cmd)}' failed ({done.returncode}): {detail}")
    return seconds


def check_tree(top: Path, work: Workload) -> None:
    """``top`` holds exactly the workload's files with their sizes (download, copy)."""
    found = {p.relative_to(top).as_posix(): p.stat().st_size for p in listing_order(top)}
    want_size = work.nbytes // max(work.files, 1)
    if sorted(found) != sorted(work.keys) or any(s != want_size for s in found.values()):
        raise BenchError(
            f"{top} holds {len(found)} files of {sum(found.values())} bytes, expected "
            f"{work.files} files of {work.nbytes} bytes"
        )


def transfers(work: Workload, clients: list[Client], server: Server, rec: Recorder,
              root: Path) -> None:
    """cp -r (local limit), then push and download through each client."""
    copy = root / "copy"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir()
    dest = copy / work.source.name
    drop_page_cache()
    load = os.getloadavg()[0]
    with observed(server) as details:
        seconds = timed_command(["cp", "-r", str(work.source), str(dest)], None, 7200)
    t0 = time.perf_counter()
    os.sync()
    details["sync_after_s"] = round(time.perf_counter() - t0, 3)
    rec.add(work, COPY, LOCAL, seconds, load, details)
    if dest.is_dir():
        check_tree(dest, work)
    elif dest.stat().st_size != work.nbytes:
        raise BenchError(f"cp -r wrote {dest.stat().st_size} bytes, expected {work.nbytes}")
    shutil.rmtree(copy)

    for client in clients:
        drop_page_cache()
        load = os.getloadavg()[0]
        with observed(server) as details:
            work.folders[client.transport], seconds = push(client, work.source, work.name)
        rec.add(work, PUSH, client.transport, seconds, load, details)
    if len(set(work.folders.values())) != 1:
        raise BenchError(f"the pushes made different versions: {work.folders}")

    for client in clients:
        target = root / f"download-{client.transport}"
        shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(client.cache, ignore_errors=True)  # a cold client cache
        ref = f"{PROJECT}/{work.folders[client.transport]}"
        drop_page_cache()
        load = os.getloadavg()[0]
        with observed(server) as details:
            seconds = timed_command(
                [str(client.cli), "download", ref, "--root", str(target)], client.env(), 7200
            )
        rec.add(work, DOWNLOAD, client.transport, seconds, load, details)
        check_tree(target, work)
        shutil.rmtree(target)
        shutil.rmtree(client.cache, ignore_errors=True)


def mount_paths(client: Client, mount: Mount, work: Workload) -> list[Path]:
    """The workload's files under the mount, in the order the mount lists them."""
    top = client.mnt / PROJECT / TYPE / work.folders[client.transport]
    if work.source.is_file():
        paths = [top / work.source.name]
        if not paths[0].is_file():
            raise BenchError(f"{paths[0]} is not in the {client.transport} mount")
        return paths
    paths = listing_order(top)
    rels = sorted(p.relative_to(top).as_posix() for p in paths)
    if rels != sorted(work.keys):
        raise BenchError(f"the {client.transport} mount lists {len(rels)} files under {top}, "
                         f"expected {work.files}")
    return paths


def reads(work: Workload, clients: list[Client], mounts: dict[str, Mount], server: Server,
          rec: Recorder) -> None:
    """Plain reads of the source (local limit), then through a mount of each transport."""
    local = work.local_paths()
    drop_page_cache()
    for operation in (READ_COLD, READ_WARM):
        load = os.getloadavg()[0]
        _, seconds = read_all(local, work.nbytes)
        rec.add(work, operation, LOCAL, seconds, load, {})

    for client in clients:
        mount = mounts[client.transport]
        log(f"{work.name}: mounting the {client.transport} registry to list the files")
        mount.restart(empty_cache=True)
        paths = mount_paths(client, mount, work)
        log(f"{work.name}: cold (remount with an empty cache, drop the page cache)")
        mount.restart(empty_cache=True)
        drop_page_cache()
        for operation in (READ_COLD, READ_WARM):
            load = os.getloadavg()[0]
            before = mount.stats()
            with observed(server, daemon=mount.pid) as details:
                _, seconds = read_all(paths, work.nbytes)
            details["mount"] = stat_delta(before, mount.stats())
            rec.add(work, operation, client.transport, seconds, load, details)
        mount.stop()
        shutil.rmtree(client.cache, ignore_errors=True)


def package_location(env: dict[str, str]) -> str | None:
    """Where the artifactfs package the commands import comes from (PYTHONPATH can move it)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            [sys.executable, "-c", "import artifactfs; print(artifactfs.__file__)"],
            env=env, capture_output=True, text=True, timeout=60,
        )
        if done.returncode == 0:
            return str(Path(done.stdout.strip()).parent)
    return None


def project_and_package(cli: Path, env: dict[str, str]) -> dict[str, Any]:
    """project_info, plus where the package came from; git_commit only describes this repo."""
    out = project_info(cli)
    package = package_location(env)
    repo = Path(__file__).resolve().parent.parent
    out["artifactfs_package"] = package
    out["package_in_repo"] = package is not None and Path(package).is_relative_to(repo)
    return out


def cli_startup(cli: Path) -> float:
    """Best of three ``artifactfs --version``: the fixed cost in every command's time."""
    best = float("inf")
    for _ in range(3):
        best = min(best, timed_command([str(cli), "--version"], None, 120))
    return best


# ---- output --------------------------------------------------------------------------------


def render_table(rows: list[Row]) -> str:
    head = ("workload", "operation", "transport", "MB/s", "files/s", "seconds", "ratio", "vs")
    body = []
    for r in rows:
        body.append((
            r.workload_description,
            r.operation,
            r.transport,
            f"{r.mb_per_s:,.1f}",
            f"{r.files_per_s:,.0f}" if r.files > 1 else "-",
            f"{r.seconds:.2f}",
            f"{r.ratio:.2f}x" if r.ratio is not None else "-",
            r.baseline or "(local limit)",
        ))
    return aligned_table(head, body, {3, 4, 5, 6}, [r.workload for r in rows])


def default_json_path(stamp: str) -> Path:
    return RESULTS / f"server_transfer-{stamp}.json"


# ---- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Push, download and mount reads through artifactfs serve vs the embedded "
                    "store and the local disk.",
    )
    p.add_argument("--size-mib", type=int, default=1024,
                   help="size of the big file in MiB (default 1024; 0 skips it)")
    p.add_argument("--small-count", type=int, default=2000,
                   help="number of 64 KiB files in 20 folders (default 2000; 0 skips them)")
    add_output_options(p, "server_transfer", "data, stores, logs")
    args = p.parse_args(argv)
    if args.size_mib < 0 or args.small_count < 0:
        p.error("--size-mib and --small-count must not be negative")
    if args.size_mib == 0 and args.small_count == 0:
        p.error("nothing to measure: --size-mib and --small-count are both 0")
    return args


def make_workloads(root: Path, args: argparse.Namespace) -> list[Workload]:
    data = root / "data"
    out: list[Workload] = []
    if args.size_mib:
        log(f"writing {args.size_mib} MiB of random bytes")
        key = make_big(data / "big.bin", args.size_mib)
        out.append(Workload("big", f"big ({args.size_mib} MiB)", data / "big.bin",
                            {"big.bin": key}, args.size_mib * BLOCK))
    if args.small_count:
        log(f"writing {args.small_count} files of 64 KiB in {SMALL_FOLDERS} folders")
        keys = make_small(data / "small", args.small_count)
        out.append(Workload("small", f"small ({args.small_count} x 64 KiB)", data / "small",
                            keys, args.small_count * SMALL_SIZE))
    return out


def run(args: argparse.Namespace) -> int:
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    json_path = (args.json or default_json_path(stamp)).absolute()
    parent = (args.workdir or Path(tempfile.gettempdir())).absolute()
    data_bytes = args.size_mib * BLOCK + args.small_count * SMALL_SIZE
    # source data, two stores, one download and one cache at a time, plus slack
    preflight(parent, 5 * data_bytes + (512 << 20))
    cli = artifactfs_cli()
    become_subreaper()

    # resolved, so paths match what the kernel lists in /proc/self/mountinfo
    root = Path(tempfile.mkdtemp(prefix="artifactfs-server-bench-", dir=parent)).resolve()
    cache_size = 2 * data_bytes + (1 << 30)
    embedded = Client(root, cli, cache_size, transport=EMBEDDED)
    remote = Client(root, cli, cache_size, transport=SERVER)
    clients = [embedded, remote]
    mounts = {c.transport: Mount(c) for c in clients}
    server = Server(root, cli)
    info = machine_info(root)
    load_start = os.getloadavg()
    warnings: list[str] = []
    if info["workdir_fs"] in ("tmpfs", "ramfs"):
        warnings.append(
            f"the work folder is on {info['workdir_fs']}: dropping the page cache does not "
            "evict it, so cold rows measure memory, not the disk; pass --workdir on a "
            "disk-backed file system"
        )
    for w in warnings:
        log(f"warning: {w}")
    log(f"work folder {root} ({info['workdir_fs']}); artifactfs {cli}; "
        f"load average {' '.join(f'{x:.2f}' for x in load_start)}")
    rec = Recorder()
    startup = None
    failed = True
    try:
        for folder in (root / "data", embedded.store, server.store, server.home,
                       *(p for c in clients for p in (c.cache, c.home, c.mnt))):
            folder.mkdir(parents=True, exist_ok=True)
        workloads = make_workloads(root, args)
        key = server.create_key()
        server.start(key)
        remote.registry_url, remote.api_key = server.url, key
        log(f"server {server.url} running (pid {server.pid}); log {server.log_path}")
        startup = cli_startup(cli)
        for work in workloads:
            transfers(work, clients, server, rec, root)
        for work in workloads:
            reads(work, clients, mounts, server, rec)
        for work in workloads:  # each store holds the blobs its push sent
            for store in (embedded.store, server.store):
                absent = [k for k in work.keys.values() if not blob_path(store, k).is_file()]
                if absent:
                    raise BenchError(f"{len(absent)} blobs of {work.name} are not in {store}")
        if remote.store.exists():
            warnings.append(f"the server client created an embedded store at {remote.store}: "
                            "something it ran did not use the server")
        failed = False
    finally:
        for mount in mounts.values():
            mount.stop()
        server.stop()
        load_end = os.getloadavg()
        problems = [f"mount daemon log: {t}" for m in mounts.values()
                    for t in log_problems(m.logs)]
        problems += [f"server log: {t}" for t in log_problems([server.log_path])]
        if failed:
            log(f"server log tail:\n{server.log_tail()}")
            for mount in mounts.values():
                if mount.log_file is not None:
                    tail = "\n".join(log_problems([mount.log_file])[-20:]) or "(nothing)"
                    log(f"daemon log {mount.log_file} problems:\n{tail}")
        remove_workdir(root, keep=args.keep)

    warnings += problems
    rec.compute_ratios()
    table = render_table(rec.rows)
    print(table)
    print(f"\nload average (1, 5, 15 min): start {' '.join(f'{x:.2f}' for x in load_start)}, "
          f"end {' '.join(f'{x:.2f}' for x in load_end)}; {info['nproc']} CPUs")
    if problems:
        print(f"the server or mount daemons logged {len(problems)} warnings or errors; "
              "see 'warnings' in the JSON")
    result = {
        "benchmark": "server_transfer",
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "units": {
            "mb_per_s": "10^6 bytes per second",
            "files_per_s": "files per second",
            "ratio": "MB/s / the MB/s of the row named in baseline",
            "ratio_to_local": "MB/s / the local limit (cp -r for push and download, a plain "
                              "read of the source folder for reads)",
            "load_1m": "1-minute load average when the row started",
        },
        "parameters": {
            "size_mib": args.size_mib, "small_count": args.small_count,
            "small_size": SMALL_SIZE, "small_folders": SMALL_FOLDERS, "read_block": BLOCK,
            "workdir": str(root), "kept": bool(args.keep), "cache_size": cache_size,
            "entity": ENTITY, "server_url": server.url,
            "mounts": {t: m.count for t, m in mounts.items()},
        },
        "load_average": {"start": list(load_start), "end": list(load_end)},
        "machine": info,
        "project": project_and_package(cli, server.env()),
        "cli_startup_seconds": startup,
        "rows": [asdict(r) for r in rec.rows],
        "table": table.splitlines(),
        "warnings": warnings,
    }
    write_json(json_path, result)
    return 0


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
