"""When an open looks at the files after it for prefetching (reader.SiblingWindow)."""

from __future__ import annotations

from artifactfs.fs.reader import SiblingWindow


def test_in_order_looks_once_per_quarter_window() -> None:
    window = SiblingWindow(64)
    looked = [i for i in range(200) if window.due("d", i)]
    # first open, then each time fewer than three quarters of a window are left ahead
    assert looked == [0, 17, 34, 51, 68, 85, 102, 119, 136, 153, 170, 187]
    # every file was inside a window looked at before it was opened
    covered = set()
    for i in looked:
        covered.update(range(i + 1, i + 65))
    assert set(range(1, 200)) <= covered


def test_other_orders_look_at_every_open() -> None:
    window = SiblingWindow(64)
    order = [5, 3, 40, 41, 39, 90, 2]
    # 41 follows 40, but 40 swept the folder instead of looking after itself: 41 looks
    assert [window.due("d", i) for i in order] == [True, True, True, True, True, True, True]
    # a repeated open of the same file is not "in order" either
    assert window.due("d", 2)


def test_folders_are_independent() -> None:
    window = SiblingWindow(8)
    assert window.due("a", 0)
    assert window.due("b", 0)
    assert not window.due("a", 1)
    assert not window.due("b", 1)
    assert window.due(("x", "a"), 1)  # another key: nothing looked at there yet


def test_window_of_one() -> None:
    window = SiblingWindow(1)
    assert [window.due("d", i) for i in range(4)] == [True, True, True, True]


def test_reads_out_of_order_sweep_the_folder_from_where_the_last_look_stopped() -> None:
    window = SiblingWindow(8)
    assert window.look("d", 40) == (40, False)  # a folder's first read: the files after it
    assert window.look("d", 7) == (-1, True)  # out of order: the sweep, from the start
    window.swept("d", 7)  # the reader took files 0 to 7 (budget permitting)
    assert window.look("d", 93) == (7, True)
    window.swept("d", 3)  # never backwards
    assert window.look("d", 12) == (7, True)
    window.swept("d", 15)
    assert window.look("d", 13) == (13, False)  # in order again: the window after it
    assert window.look("d", 60) == (15, True)
    assert window.look("e", 5) == (5, False)  # each folder has its own sweep
