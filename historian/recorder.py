"""Record tag changes from the TagDatabase into a historian.

``Recorder`` subscribes to the change bus, applies each tag's historize settings, batches the
samples and writes them on one worker thread, so the event loop never waits for the disk or
the network. A change is stored when the tag has ``historize`` set and

- it is the tag's first value, or its quality or reason changed, or
- the value moved more than ``history_deadband`` (``None``: the tag's ``deadband``) from the
  last *stored* value (strings and bools: any change), or
- ``history_max_interval_s`` has passed since the last stored sample (while changing).

Threading: ``start``/``stop`` and the bus callback run on the event loop; writes run on the
recorder's own single worker thread, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from historian.base import Historian, Sample, SampleValue
from tags.bus import ChangeBatch, ChangeCallback
from tags.catalog import TagCatalog
from tags.model import Quality, Reason, TagDef

log = logging.getLogger(__name__)


class _Database(Protocol):
    def subscribe(
        self, patterns: str | Sequence[str], callback: ChangeCallback, *, name: str | None = None
    ) -> Callable[[], None]: ...

    def definition(self, name: str) -> TagDef: ...


class Recorder:
    """Historise every change that passes its tag's historize deadband (module docstring)."""

    def __init__(
        self,
        db: _Database,
        historian: Historian,
        *,
        batch_size: int = 5000,
        flush_s: float = 1.0,
        patterns: Sequence[str] = ("*",),
    ) -> None:
        self.db = db
        self.historian = historian
        self.batch_size = batch_size
        self.flush_s = flush_s
        self.patterns = tuple(patterns)
        self._pending: list[Sample] = []
        self._last: dict[str, tuple[SampleValue, int, int, float]] = {}
        self._catalog: TagCatalog | None = None
        self._hist = np.zeros(0, dtype=np.int8)  # by tag id: 1 historised, 0 not, -1 unknown
        self._unsubscribe: Callable[[], None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._kick: asyncio.Event | None = None
        self._stopping = False
        self._write_ok = True
        self.points_written = 0
        self.points_failed = 0

    async def start(self) -> None:
        """Subscribe to the bus and start the flush loop (call on the event loop)."""
        if self._task is not None:
            return
        self._stopping = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="historian-writer")
        self._kick = asyncio.Event()
        self._unsubscribe = self.db.subscribe(list(self.patterns), self._on_batch, name="historian")
        self._task = asyncio.create_task(self._flush_loop(), name="historian-recorder")

    async def stop(self) -> None:
        """Unsubscribe, write everything still pending and wait for the writes to finish."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._stopping = True
            assert self._kick is not None
            self._kick.set()
            await self._task  # the loop exits after its current flush: no write is cut short
            self._task = None
        await self.flush()
        if self._executor is not None:
            self._executor.shutdown(wait=False)  # every submitted write has been awaited
            self._executor = None

    # -- filtering (event loop) --------------------------------------------------------------

    def _historized_rows(self, batch: ChangeBatch) -> np.ndarray:
        """Return the rows of ``batch`` whose tags are historised (a mask by tag id, filled
        as tags are first seen and reset when the tag catalogue is replaced).

        Most changes of a large estate are of tags that are not historised (every answer
        moves its device's ``last_ok`` and ``latency_ms``): they are dropped here in one
        array operation instead of one by one.
        """
        catalog = batch.catalog
        if catalog is not self._catalog:
            self._catalog = catalog
            self._hist = np.full(len(catalog), -1, dtype=np.int8)
        elif len(self._hist) < len(catalog):
            grow = np.full(len(catalog) - len(self._hist), -1, dtype=np.int8)
            self._hist = np.concatenate((self._hist, grow))
        ids = batch.ids
        state = self._hist[ids]
        unknown = np.flatnonzero(state < 0)
        if unknown.size:
            names = catalog.names
            for row in unknown.tolist():
                tid = int(ids[row])
                name = names[tid]
                try:
                    historize = name is not None and self.db.definition(name).historize
                except KeyError:
                    historize = False
                self._hist[tid] = state[row] = 1 if historize else 0
        return np.flatnonzero(state == 1)

    def _on_batch(self, batch: ChangeBatch) -> None:
        rows = self._historized_rows(batch)
        if rows.size == 0:
            return
        if rows.size < len(batch):
            batch = batch.subset(rows)
        pending = self._pending
        last = self._last
        for name, value, quality, reason, ts in batch.to_records():
            try:
                d = self.db.definition(name)
            except KeyError:
                continue
            if not d.historize:
                continue
            prev = last.get(name)
            if prev is not None and not self._passes(d, prev, value, quality, reason, ts):
                continue
            # plain ints, not the enum members: a tuple of untracked objects leaves the
            # garbage collector's sight (a large estate keeps ~100k of these alive)
            last[name] = (value, int(quality), int(reason), ts)
            pending.append(Sample(name, ts, value, quality, reason))
        if len(pending) >= self.batch_size and self._kick is not None:
            self._kick.set()

    @staticmethod
    def _passes(
        d: TagDef,
        prev: tuple[SampleValue, int, int, float],
        value: SampleValue,
        quality: Quality,
        reason: Reason,
        ts: float,
    ) -> bool:
        pv, pq, pr, pts = prev
        if quality != pq or reason != pr:
            return True
        if d.history_max_interval_s is not None and ts - pts >= d.history_max_interval_s:
            return True
        if (
            value is None
            or pv is None
            or isinstance(value, str | bool)
            or isinstance(pv, str | bool)
        ):
            return value != pv
        fv, fp = float(value), float(pv)
        if math.isnan(fv) or math.isnan(fp):
            return not (math.isnan(fv) and math.isnan(fp))
        band = d.history_deadband if d.history_deadband is not None else d.deadband
        return abs(fv - fp) > band

    # -- writing (worker thread) ---------------------------------------------------------------

    async def _flush_loop(self) -> None:
        assert self._kick is not None
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.flush_s)
            self._kick.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write the pending samples now, on the worker thread (call on the event loop)."""
        if not self._pending or self._executor is None:
            return
        batch, self._pending = self._pending, []
        loop = asyncio.get_running_loop()
        # shielded: a cancelled caller must not leave part of the batch unwritten
        await asyncio.shield(loop.run_in_executor(self._executor, self._write, batch))

    def _write(self, batch: list[Sample]) -> None:
        for i in range(0, len(batch), self.batch_size):
            chunk = batch[i : i + self.batch_size]
            try:
                self.historian.write(chunk)
            except Exception:
                self.points_failed += len(chunk)
                self._write_ok = False
                log.exception("historian write of %d samples failed; they are lost", len(chunk))
                continue
            self._write_ok = True
            self.points_written += len(chunk)

    def status(self) -> dict[str, Any]:
        """Return the values of ``historian.spool_points``, ``historian.backend_ok`` and ``historian.spool_full``."""
        h = self.historian
        return {
            "historian.spool_points": int(getattr(h, "spool_points", 0)),
            "historian.backend_ok": bool(getattr(h, "backend_ok", True)) and self._write_ok,
            "historian.spool_full": bool(getattr(h, "spool_full", False)),
        }
