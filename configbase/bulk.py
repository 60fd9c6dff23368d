"""Build many long-lived objects at once without the cyclic garbage collector walking them.

Loading a large site creates hundreds of thousands of models, dicts and tag definitions
that all live on. Each allocation counts towards the collector's thresholds, so while they
are made the collector runs again and again, every full collection walking everything made
so far: a third of the loading time of a 200-building site. :func:`paused_gc` switches it
off for such a stretch; cyclic garbage made meanwhile is collected after.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused_gc", "settle_heap", "thaw_heap"]


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (nests; the outermost one restores it).

    Process-wide: other threads' garbage waits too, so keep the block to the building
    itself (no I/O waits, no user callbacks).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def settle_heap(collect: bool = True) -> None:
    """Collect once (unless ``collect`` is false), then move every object alive now out of the
    collector's sight.

    After start-up a large estate's configuration, tag definitions and drivers are millions
    of objects that live as long as the process: without this each full collection walks them
    all (about 0.45 s with the event loop stopped at 200 buildings). Call :func:`thaw_heap`
    before replacing them (a configuration apply), and this again after. Without the
    collection, cyclic garbage alive now is set aside for good: right for start-up, whose
    collection walked two million objects (1-2 s) to free about twenty.
    """
    if collect:
        gc.collect()
    gc.freeze()


def thaw_heap() -> None:
    """Give the objects :func:`settle_heap` set aside back to the collector (they may die now)."""
    gc.unfreeze()
