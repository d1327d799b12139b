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
counting when the listing or nodes that hold them go, but a cycle frozen with them is never
collected: one made by another thread during the pause, or one already waiting in an older
generation. So a build says how many objects it makes, and only a pause whose builds make
more than ``FREEZE_AFTER`` is frozen (a large version's first listing, not a folder's
nodes); the young and middle generations are collected when such a pause begins (cheap
then; a full pass would walk the whole heap), and only then: a young pass at the start of
every pause (each lookup's node is a build) kept the young count below its threshold, the
automatic passes never came, and with them went every pass over the middle generation,
where the cyclic garbage holding fetched buffers waits. Reading 10,000 small files with
four readers, the daemon's peak grew from 170 MB to 600 MB.

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
_objects = 0  # what the builds of this pause said they make


@contextlib.contextmanager
def collector_paused(objects: int = 0) -> Iterator[None]:
    """No automatic collections until every overlapping ``collector_paused`` block ends
    (the collector is process-wide, so builds in several threads share one pause).

    ``objects``: about how many objects the collector tracks (containers: entries, nodes,
    dicts; not strings) the build makes. A pause whose builds make more than
    ``FREEZE_AFTER`` between them is frozen at its end.
    """
    global _depth, _resume, _objects
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            _objects = 0
            if _resume and objects > FREEZE_AFTER:
                # what is garbage now is not frozen with the build. Only then: a young
                # pass run at every pause (a lookup's node is one) kept the young count
                # from ever reaching its threshold, so the automatic passes, the only
                # ones that collect the middle generation, never came.
                gc.collect(1)
            gc.disable()
        _depth += 1
        _objects += objects
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                if _objects > FREEZE_AFTER:
                    gc.freeze()
                gc.enable()


def rarer_full_passes(every: int = FULL_PASS_EVERY) -> None:
    """Pass over the oldest generation only after ``every`` middle-generation passes;
    the young and middle thresholds are left as they are."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, every)
