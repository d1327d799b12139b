"""``make faults`` with a small N: each scenario of benchmarks/faults.py injects its fault into
real servers, mounts and folders, and what must never happen happens 0 times (issue 15).

The full run (``make faults``, N up to 100, about 15 minutes) writes docs/reliability.md;
these run every scenario once or a few times, so that a change that breaks one is caught by
the suite.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import faults

pytestmark = [
    pytest.mark.mount,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: FUSE and tmpfs mounts"),
]


@pytest.mark.parametrize(("name", "n"), [
    ("blob_corruption", 3),
    ("cache_corruption", 6),  # one of each kind of damage
    ("kill_daemon_writing", 2),
    ("kill_daemon_saving", 2),
    ("kill_daemon_at_commit", 1),
    ("kill_client_saving", 2),
    ("kill_server_uploading", 2),
    ("kill_server_committing", 1),
    ("enospc_cache", 3),
    ("enospc_staging", 3),
])
def test_the_fault_does_no_harm(name: str, n: int, tmp_path: Path) -> None:
    func, _ = faults.SCENARIOS[name]
    row = func(n, tmp_path)
    assert row.trials == n
    assert row.count == 0, f"{row.fault}: {row.counted} = {row.count}; {row.details}"
    assert list(tmp_path.iterdir()) == []  # the work folder, big files and all, is gone


def test_a_read_from_a_stalled_server_fails_with_eio_and_reads_again_after(
    tmp_path: Path,
) -> None:
    row = faults.stalled_server(2, tmp_path)
    assert row.figures["not_eio"] == 0, row.details
    assert row.figures["after_sigcont_bad"] == 0, row.details


def test_a_read_from_a_stalled_server_fails_within_the_read_timeout(tmp_path: Path) -> None:
    row = faults.stalled_server(1, tmp_path)
    assert row.count == 0, row.details


def test_a_thousand_clients_row_counts_no_failed_request(tmp_path: Path) -> None:
    """The workload of benchmarks/server_load.py, briefly and with fewer clients."""
    row = faults.concurrent_clients(50, tmp_path, seconds=3)
    assert row.trials > 0
    assert row.count == 0, row.details
