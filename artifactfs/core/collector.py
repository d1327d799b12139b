"""Pausing Python's cyclic garbage collector while many long-lived objects are built.

Loading a version of 100,000 entries and making its nodes creates a few hundred thousand
long-lived objects at once. The collector counts them as new allocations and passes over
the growing heap again and again while they are made: a quarter of the listing's time,
measured in-process. The objects hold no cycles, so nothing is lost by not collecting
while they are built; the pause covers CPU work only, never a wait on the network.
Raising the collector's young threshold for the whole mount daemon instead let cyclic
garbage holding fetched buffers pile up: its peak memory reading small files went from
176 MB to 376 MB.

A large build is then frozen (``gc.freeze``): the collector's first pass after the pause
would walk every object made during it, and at 1.28 million entries that pass was a quarter
of the time of the first listing (py-spy). Frozen objects are still freed by reference
counting when the listing or nodes that hold them go; only a cycle made by another thread
during the build, or one already waiting in an older generation, would stay; so only builds
of more than ``FREEZE_AFTER`` new objects are frozen (a large version's first listing, not a
folder's nodes), and the young generation is collected when the pause begins (cheap; a full
pass there would walk the whole heap before every folder's nodes are made).

The mount daemon does make full passes rarer (``rarer_full_passes``). A full pass walks
every long-lived object, and a mount showing a version of 100,000 entries holds a quarter
of a million of them; CPython starts one after ten middle-generation passes whenever the
objects promoted since the last full pass exceed a quarter of the long-lived ones. Making
a large version's nodes promotes enough for two or three full passes, about a third of the
time its listing takes. Young garbage, where the fetched buffers' cycles end up, is still
collected as often as before.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["collector_paused", "rarer_full_passes"]

FULL_PASS_EVERY = 100  # middle-generation passes between full ones; CPython's default: 10
FREEZE_AFTER = 200_000  # objects made during a pause past which they are frozen at its end

_lock = threading.Lock()
_depth = 0  # builds under way, in any thread
_resume = False  # whether the collector was on when the first of them began


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collections until every overlapping ``collector_paused`` block ends
    (the collector is process-wide, so builds in several threads share one pause)."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            if _resume:
                gc.collect(0)  # what is garbage now is not frozen with the build
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                if gc.get_count()[0] > FREEZE_AFTER:
                    gc.freeze()
                gc.enable()


def rarer_full_passes(every: int = FULL_PASS_EVERY) -> None:
    """Pass over the oldest generation only after ``every`` middle-generation passes;
    the young and middle thresholds are left as they are."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, every)
