"""benchmarks/dataloader.py, the DataLoader workload of ``make bench`` (issue 16): its tree
listing and request arithmetic, and, where torch is installed (scripts/install-bench-deps.sh;
it is no test dependency), real epochs through a DataLoader with worker processes.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import dataloader

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch is not installed (scripts/install-bench-deps.sh)")


def make_tree(top: Path, sizes: list[int]) -> int:
    for i, size in enumerate(sizes):
        path = top / f"d{i % 3}" / f"f{i:03d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    return sum(sizes)


def test_list_tree_is_every_file_sorted(tmp_path: Path) -> None:
    make_tree(tmp_path, [10] * 7)
    found = dataloader.list_tree(tmp_path)
    assert len(found) == 7
    assert found == sorted(found)
    assert all(Path(p).is_file() for p in found)


def test_list_tree_refuses_a_missing_or_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(dataloader.LoaderError, match="not a folder"):
        dataloader.list_tree(tmp_path / "absent")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(dataloader.LoaderError, match="holds no file"):
        dataloader.list_tree(tmp_path / "empty")


def test_request_counts_by_kind_from_the_daemons_map() -> None:
    before = {"requests": {"lookup": 10, "open": 5, "read": 7}, "read_requests": 7}
    after = {"requests": {"lookup": 30, "open": 5, "read": 27, "getattr": 4},
             "read_requests": 27}
    counts = dataloader.request_counts(before, after)
    assert counts == {"getattr": 4, "lookup": 20, "read": 20, "total": 44}  # no open: left out
    assert dataloader.per_file(counts, 20) == {"getattr": 0.2, "lookup": 1.0, "read": 1.0,
                                               "total": 2.2}
    assert dataloader.describe_requests(dataloader.per_file(counts, 20)) == (
        "2.20 (getattr 0.20, lookup 1.00, read 1.00)")


def test_request_counts_without_a_map_are_reads_only() -> None:
    counts = dataloader.request_counts({"read_requests": 3}, {"read_requests": 13})
    assert counts == {"read": 10, "total": 10}
    assert dataloader.describe_requests({}) == "-"


def test_the_stats_of_a_folder_that_is_no_mount_are_none(tmp_path: Path) -> None:
    assert dataloader.read_stats(tmp_path) is None


@needs_torch
def test_epochs_read_every_byte_through_worker_processes(tmp_path: Path) -> None:
    sizes = [1, 4096, 65536, 3, 70000] * 9  # 45 files, several batches, a short last one
    total = make_tree(tmp_path, sizes)
    run = dataloader.LoaderRun(dataloader.list_tree(tmp_path), workers=2, batch_size=8)
    try:
        run.start()
        workers = multiprocessing.active_children()
        assert len(workers) >= 2  # persistent: started once, before the first epoch
        floor = run.epoch(0, read=False)
        assert (floor.files, floor.bytes) == (45, 0)
        for number in (1, 2):
            epoch = run.epoch(total)
            assert (epoch.epoch, epoch.files, epoch.bytes) == (number, 45, total)
            assert epoch.seconds >= epoch.first_batch_s > 0
        with pytest.raises(dataloader.LoaderError, match="expected"):
            run.epoch(total + 1)
    finally:
        run.close()
    for p in workers:
        p.join(timeout=30)
        assert not p.is_alive()


@needs_torch
def test_tensors_come_back_with_the_files_bytes(tmp_path: Path) -> None:
    total = make_tree(tmp_path, [100, 200, 300])
    run = dataloader.LoaderRun(dataloader.list_tree(tmp_path), workers=0, batch_size=2,
                               tensors=True)
    assert run.epoch(total).bytes == total
    item = run.dataset[0]
    assert bytes(item.numpy()) == Path(run.dataset.paths[0]).read_bytes()


def test_the_command_says_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    assert dataloader.main([str(tmp_path / "absent")]) == 1
    assert "is not a folder" in capsys.readouterr().err
