"""A mount's Prometheus metrics: the stats attribute's counters, on a loopback port.

``artifactfs mount --metrics-port PORT`` serves ``http://127.0.0.1:PORT/metrics``. What it
shows is what ``getfattr -n user.artifactfs.stats MNT`` and ``artifactfs stats MNT`` show,
read from the same ``ArtifactOperations.stats()`` at each scrape (``MountCollector``), so
the three can never disagree; the read latency histogram is kept here (``ReadTimes``) and
shown by all three as well.

prometheus_client's HTTP server runs in a thread of its own: a scrape never waits on the
event loop, and the loop never waits on a scrape. ``stats()`` reads counters (plain ints,
whose reads the GIL makes whole) and each staged folder under its own lock, so it may run
in that thread. It binds to 127.0.0.1 only and asks for no key: the counters hold no names
of artifacts or paths (the mount point aside), and any local user could read them from
``/proc`` or ``getfattr`` anyway. docs/metrics.md lists the names.
"""

from __future__ import annotations

import errno
import logging
import math
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from artifactfs.core.errors import ArtifactFSError

__all__ = ["READ_BUCKETS", "MetricsExporter", "MountCollector", "ReadTimes"]

log = logging.getLogger(__name__)

READ_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds: a read from memory takes tens of microseconds, one from the disk cache a
millisecond, a fetch from a server tens of milliseconds, one that gives up 30 s
(``--read-timeout``)."""

_READ_NAME = "artifactfs_mount_read_duration_seconds"


class ReadTimes:
    """How long the mount took to answer reads of a version's bytes (verified, from
    memory, the disk cache or the registry; reads of staged files are local and left
    out). Thread-safe (prometheus_client's values take a lock)."""

    def __init__(self) -> None:
        self.histogram = Histogram(
            _READ_NAME, "Time the mount took to answer a read of a version's bytes.",
            buckets=READ_BUCKETS, registry=None)

    def observe(self, seconds: float) -> None:
        self.histogram.observe(seconds)

    def as_dict(self) -> dict[str, Any]:
        """``{"count", "sum", "buckets": [[upper bound, cumulative count], ...]}``, for the
        stats attribute (JSON has no +Inf: the last bound is ``null``)."""
        out: dict[str, Any] = {"count": 0, "sum": 0.0, "buckets": []}
        for metric in self.histogram.collect():
            for sample in metric.samples:
                if sample.name.endswith("_bucket"):
                    bound = float(sample.labels["le"])
                    out["buckets"].append(
                        [None if math.isinf(bound) else bound, int(sample.value)])
                elif sample.name.endswith("_count"):
                    out["count"] = int(sample.value)
                elif sample.name.endswith("_sum"):
                    out["sum"] = sample.value
        return out


# stats attribute key -> (metric name, help); counters
_COUNTERS = {
    "cache_hits": ("artifactfs_mount_cache_hits", "Lookups the disk cache answered."),
    "cache_misses": ("artifactfs_mount_cache_misses",
                     "Lookups the disk cache could not answer (damaged files included)."),
    "cache_damaged": ("artifactfs_mount_cache_damaged",
                      "Cache files found damaged (checksum, length), dropped and fetched "
                      "again."),
    "fetch_requests": ("artifactfs_mount_fetch_requests",
                       "Requests for bytes sent to the registry (a batch counts one)."),
    "fetch_bytes": ("artifactfs_mount_fetched_bytes", "Bytes fetched from the registry."),
    "verification_failures": ("artifactfs_mount_verification_failures",
                              "Fetched pieces (blobs, chunks, chunk indexes) that failed "
                              "their digest check; each attempt counts."),
    "manifest_fetches": ("artifactfs_mount_manifest_fetches",
                         "Whole manifests fetched (to stage an alias folder)."),
    "folder_fetches": ("artifactfs_mount_folder_fetches", "Folder listings fetched."),
    "folder_requests": ("artifactfs_mount_folder_requests",
                        "Requests that fetched folder listings."),
    "uses_recorded": ("artifactfs_mount_uses_recorded",
                      "Versions recorded as used by the --run run."),
    "uses_failed": ("artifactfs_mount_uses_failed",
                    "Versions whose use by the --run run could not be recorded."),
}
_GAUGES = {
    "staged_folders": ("artifactfs_mount_staged_folders", "Alias folders with staged changes."),
    "staged_files": ("artifactfs_mount_staged_files", "Files written and not yet saved."),
    "staged_bytes": ("artifactfs_mount_staged_bytes", "Bytes of the files staged."),
}


class MountCollector(Collector):
    """The stats attribute's counters as metric families, read at each scrape."""

    def __init__(self, stats: Callable[[], dict[str, Any]], read_times: ReadTimes) -> None:
        self._stats = stats
        self._read_times = read_times

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        for key, (name, text) in _COUNTERS.items():
            yield CounterMetricFamily(name, text, value=stats.get(key, 0))
        for key, (name, text) in _GAUGES.items():
            yield GaugeMetricFamily(name, text, value=stats.get(key, 0))
        requests = CounterMetricFamily("artifactfs_mount_requests",
                                       "Requests the kernel sent, by operation.",
                                       labels=["op"])
        for op, count in sorted(stats.get("requests", {}).items()):
            requests.add_metric([op], count)
        yield requests
        info = GaugeMetricFamily("artifactfs_mount_info", "The mount this daemon serves.",
                                 labels=["mountpoint", "read_only", "no_open"])
        flags = [str(bool(stats.get(k))).lower() for k in ("read_only", "no_open")]
        info.add_metric([str(stats.get("mountpoint", "")), *flags], 1)
        yield info
        yield from self._read_times.histogram.collect()


class MetricsExporter:
    """prometheus_client's HTTP server for one mount, on 127.0.0.1, in its own thread."""

    def __init__(self, server: WSGIServer) -> None:
        self._server = server
        self.port = int(server.server_address[1])
        self.address = f"http://127.0.0.1:{self.port}/metrics"

    @classmethod
    def start(cls, port: int, stats: Callable[[], dict[str, Any]],
              read_times: ReadTimes) -> MetricsExporter:
        """Serve the metrics on ``port`` (0: one the kernel picks). Raises ArtifactFSError
        naming the option when the port cannot be had."""
        registry = CollectorRegistry()
        registry.register(MountCollector(stats, read_times))
        ProcessCollector(registry=registry)  # the daemon's memory, CPU and descriptors
        try:
            server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
        except OSError as exc:
            why = ("is already in use; choose another" if exc.errno == errno.EADDRINUSE
                   else f"cannot be used: {exc.strerror}")
            raise ArtifactFSError(f"--metrics-port {port} on 127.0.0.1 {why}") from None
        exporter = cls(server)
        log.info("serving metrics on %s", exporter.address)
        return exporter

    def stop(self) -> None:
        """Stop serving (waits for the server's loop, at most half a second) and close."""
        self._server.shutdown()
        self._server.server_close()
