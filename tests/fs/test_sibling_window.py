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
    assert [window.due("d", i) for i in order] == [True, True, True, False, True, True, True]
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
