"""The change bus: batches of tag changes from the TagDatabase to every subscriber.

Threading: everything here runs on the event-loop thread only (like Tornado's IOLoop
objects); hand work from other threads back with ``loop.call_soon_threadsafe``.

``ChangeBus`` is the interface; ``LocalBus`` the in-process implementation a
``TagDatabase`` uses by default. Issue 9 adds a Redis implementation that forwards
batches between processes with ``ChangeBatch.to_records`` / ``ChangeBatch.from_records``.

Delivery rules of ``LocalBus`` (what subscribers may rely on):

* a subscriber only sees the tags matching its patterns, as one ``ChangeBatch`` per
  published batch (never an empty one);
* a callback may be a plain function or ``async def``; while an async callback is still
  running, later changes for it are merged into one pending batch holding only the
  latest value per tag (bounded by the number of tags, never a queue of batches), which
  it receives when the running call ends;
* a callback that raises is logged with ``logger.exception``; the other subscribers and
  later deliveries to it are unaffected.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import (
    Awaitable,
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    ValuesView,
)
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tags.arrays import BoolArray, CodeArray, FloatArray, IdArray
from tags.catalog import KIND_BOOL, KIND_FLOAT, KIND_INT, KIND_STR, TagCatalog
from tags.model import Quality, Reason, Scalar, TagValue

__all__ = ["ChangeBatch", "ChangeBus", "ChangeCallback", "LocalBus", "Record"]

logger = logging.getLogger(__name__)

ChangeCallback = Callable[["ChangeBatch"], "Awaitable[None] | None"]
Record = tuple[str, Scalar | None, Quality, Reason, float]

_QUALITIES = tuple(Quality)
_REASONS = tuple(Reason)


class ChangeBatch(Mapping[str, TagValue]):
    """A read-only mapping ``name -> TagValue`` of changed tags, plus vectorised arrays.

    Bulk consumers (historian, websocket) should use the arrays, aligned by row:
    ``ids`` (int64 tag ids), ``vals`` (float64; bools are 0/1, NaN for str tags and
    for tags without a value), ``valid`` (bool: the tag has a value), ``quality`` and
    ``reason`` (uint8 codes of ``Quality`` / ``Reason``), ``ts`` (float64 epoch seconds)
    and ``texts`` (id -> str for the str tags in the batch). ``seq`` increases with every
    batch a database publishes. TagValues are built lazily on access. Do not modify.
    """

    __slots__ = (
        "_names",
        "_pos",
        "catalog",
        "ids",
        "quality",
        "reason",
        "seq",
        "texts",
        "ts",
        "valid",
        "vals",
    )

    def __init__(
        self,
        seq: int,
        catalog: TagCatalog,
        ids: IdArray,
        vals: FloatArray,
        quality: CodeArray,
        reason: CodeArray,
        ts: FloatArray,
        valid: BoolArray,
        texts: Mapping[int, str] | None = None,
    ) -> None:
        self.seq = seq
        self.catalog = catalog
        self.ids = ids
        self.vals = vals
        self.quality = quality
        self.reason = reason
        self.ts = ts
        self.valid = valid
        self.texts: Mapping[int, str] = texts if texts is not None else {}
        self._names: list[str] | None = None
        self._pos: dict[str, int] | None = None

    @property
    def names(self) -> list[str]:
        """Tag names, aligned with ``ids``."""
        if self._names is None:
            names = self.catalog.names
            self._names = [names[i] for i in self.ids.tolist()]
        return self._names

    def __len__(self) -> int:
        return int(self.ids.size)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        if self._pos is None:
            self._pos = {n: i for i, n in enumerate(self.names)}
        return name in self._pos

    def __getitem__(self, name: str) -> TagValue:
        if self._pos is None:
            self._pos = {n: i for i, n in enumerate(self.names)}
        return self.value_at(self._pos[name])

    def __repr__(self) -> str:
        head = ", ".join(self.names[:5])
        more = f", ... (+{len(self) - 5})" if len(self) > 5 else ""
        return f"<ChangeBatch seq={self.seq} [{head}{more}]>"

    def value_at(self, row: int) -> TagValue:
        """Return the TagValue of row ``row``."""
        tid = int(self.ids[row])
        value: Scalar | None = None
        if self.valid[row]:
            kind = self.catalog.kinds[tid]
            if kind == KIND_FLOAT:
                value = float(self.vals[row])
            elif kind == KIND_STR:
                value = self.texts.get(tid)
            elif kind == KIND_INT:
                value = int(self.vals[row])
            elif kind == KIND_BOOL:
                value = bool(self.vals[row])
        return TagValue(
            value, _QUALITIES[self.quality[row]], _REASONS[self.reason[row]], float(self.ts[row])
        )

    def values(self) -> ValuesView[TagValue]:
        """A view of the TagValues in row order (the float64 column is ``vals``)."""
        return _BatchValues(self)

    def items(self) -> ItemsView[str, TagValue]:
        """A view of the ``(name, TagValue)`` pairs in row order."""
        return _BatchItems(self)

    def subset(self, rows: IdArray) -> ChangeBatch:
        """Return a batch of the rows ``rows`` of this one (same ``seq`` and catalog)."""
        ids = self.ids[rows]
        texts = self.texts
        if texts:
            texts = {i: texts[i] for i in ids.tolist() if i in texts}
        return ChangeBatch(
            self.seq,
            self.catalog,
            ids,
            self.vals[rows],
            self.quality[rows],
            self.reason[rows],
            self.ts[rows],
            self.valid[rows],
            texts,
        )

    def to_records(self) -> list[Record]:
        """Return ``(name, value, quality, reason, ts)`` tuples (JSON/msgpack friendly)."""
        return [(n, tv.value, tv.quality, tv.reason, tv.ts) for n, tv in self.items()]

    @classmethod
    def from_records(
        cls, seq: int, catalog: TagCatalog, records: Iterable[Sequence[Any]]
    ) -> ChangeBatch:
        """Build a batch from ``to_records`` output; names unknown to ``catalog`` are dropped.

        Quality and reason may be enum members, their int codes or their labels.
        """
        ids: list[int] = []
        values: list[float] = []
        valid: list[bool] = []
        quality: list[int] = []
        reason: list[int] = []
        ts: list[float] = []
        texts: dict[int, str] = {}
        index = catalog.index
        for name, value, q, r, t in records:
            tid = index.get(name)
            if tid is None:
                continue
            ids.append(tid)
            valid.append(value is not None)
            if catalog.kinds[tid] == KIND_STR:
                values.append(np.nan)
                if value is not None:
                    texts[tid] = str(value)
            else:
                values.append(np.nan if value is None else float(value))
            quality.append(int(q) if not isinstance(q, str) else Quality.parse(q))
            reason.append(int(r) if not isinstance(r, str | None) else Reason.parse(r))
            ts.append(float(t))
        batch = cls(
            seq,
            catalog,
            np.asarray(ids, dtype=np.int64),
            np.asarray(values, dtype=np.float64),
            np.asarray(quality, dtype=np.uint8),
            np.asarray(reason, dtype=np.uint8),
            np.asarray(ts, dtype=np.float64),
            np.asarray(valid, dtype=bool),
            texts,
        )
        # keep the batch invariant (rows sorted by id, one row per tag; the last wins)
        return batch._take(np.zeros(0, dtype=np.int64)).merge(batch)

    def _take(self, rows: IdArray, catalog: TagCatalog | None = None) -> ChangeBatch:
        ids = self.ids[rows]
        texts = self.texts
        if texts:
            texts = {i: texts[i] for i in ids.tolist() if i in texts}
        return ChangeBatch(
            self.seq,
            catalog or self.catalog,
            ids,
            self.vals[rows],
            self.quality[rows],
            self.reason[rows],
            self.ts[rows],
            self.valid[rows],
            texts,
        )

    def select(self, mask: BoolArray) -> ChangeBatch | None:
        """Return the rows whose id is True in ``mask`` (an id-indexed bool array), or None.

        Returns ``self`` when every row is selected. Ids beyond ``mask`` are dropped.
        """
        ids = self.ids
        if ids.size and int(ids[-1]) >= mask.size:
            keep = np.zeros(ids.size, dtype=bool)
            inside = ids < mask.size
            keep[inside] = mask[ids[inside]]
        else:
            keep = mask[ids]
        count = int(np.count_nonzero(keep))
        if count == 0:
            return None
        if count == ids.size:
            return self
        return self._take(np.flatnonzero(keep))

    def merge(self, newer: ChangeBatch) -> ChangeBatch:
        """Return one batch with the latest row per tag of ``self`` then ``newer``.

        The result takes ``newer``'s seq and catalog; rows of tags dead in that catalog
        are dropped. Rows come out sorted by id.
        """
        ids = np.concatenate((self.ids, newer.ids))
        rev = ids[::-1]
        uniq, first = np.unique(rev, return_index=True)
        rows = ids.size - 1 - first
        merged = ChangeBatch(
            newer.seq,
            newer.catalog,
            uniq,
            np.concatenate((self.vals, newer.vals))[rows],
            np.concatenate((self.quality, newer.quality))[rows],
            np.concatenate((self.reason, newer.reason))[rows],
            np.concatenate((self.ts, newer.ts))[rows],
            np.concatenate((self.valid, newer.valid))[rows],
            {**self.texts, **newer.texts} if (self.texts or newer.texts) else None,
        )
        alive = newer.catalog.alive
        keep = np.zeros(uniq.size, dtype=bool)
        inside = uniq < alive.size
        keep[inside] = alive[uniq[inside]]
        if keep.all():
            return merged
        return merged._take(np.flatnonzero(keep))


class _BatchValues(ValuesView[TagValue]):
    """``ChangeBatch.values()``: iterates rows directly instead of looking names up."""

    __slots__ = ("_batch",)

    def __init__(self, batch: ChangeBatch) -> None:
        super().__init__(batch)
        self._batch = batch

    def __iter__(self) -> Iterator[TagValue]:
        batch = self._batch
        for row in range(len(batch)):
            yield batch.value_at(row)


class _BatchItems(ItemsView[str, TagValue]):
    """``ChangeBatch.items()``: iterates rows directly instead of looking names up."""

    __slots__ = ("_batch",)

    def __init__(self, batch: ChangeBatch) -> None:
        super().__init__(batch)
        self._batch = batch

    def __iter__(self) -> Iterator[tuple[str, TagValue]]:
        batch = self._batch
        for row, name in enumerate(batch.names):
            yield name, batch.value_at(row)


@runtime_checkable
class ChangeBus(Protocol):
    """Carries ChangeBatches from a TagDatabase to subscribers (event-loop thread only)."""

    def set_catalog(self, catalog: TagCatalog) -> None:
        """Adopt a new id/name table (after ``TagDatabase.replace_defs``); re-match patterns."""
        ...

    def publish(self, batch: ChangeBatch) -> None:
        """Deliver ``batch`` to every subscriber whose patterns match some of its tags."""
        ...

    def subscribe(
        self, patterns: str | Sequence[str], callback: ChangeCallback, *, name: str | None = None
    ) -> Callable[[], None]:
        """Register ``callback`` for tags matching ``patterns``; return its unsubscribe function."""
        ...


class _Subscription:
    __slots__ = ("active", "all", "callback", "mask", "name", "patterns", "pending", "task")

    def __init__(self, patterns: tuple[str, ...], callback: ChangeCallback, name: str) -> None:
        self.patterns = patterns
        self.callback = callback
        self.name = name
        self.mask: BoolArray = np.zeros(0, dtype=bool)
        self.all = False
        self.active = True
        self.pending: ChangeBatch | None = None
        self.task: asyncio.Future[Any] | None = None

    def rematch(self, catalog: TagCatalog) -> None:
        self.mask = catalog.mask(self.patterns)
        self.all = bool(self.mask.size) and bool(np.array_equal(self.mask, catalog.alive))


class LocalBus:
    """In-process ChangeBus: synchronous fan-out with per-subscriber coalescing.

    Event-loop thread only. Subscription masks are computed once per subscribe and per
    catalog change, so publishing costs one boolean gather per subscriber.
    """

    def __init__(self) -> None:
        self._catalog = TagCatalog.empty()
        self._subs: list[_Subscription] = []

    @property
    def catalog(self) -> TagCatalog:
        """The current id/name table."""
        return self._catalog

    def set_catalog(self, catalog: TagCatalog) -> None:
        """Adopt ``catalog`` and re-match every subscription's patterns against it."""
        self._catalog = catalog
        for sub in self._subs:
            sub.rematch(catalog)

    def subscribe(
        self, patterns: str | Sequence[str], callback: ChangeCallback, *, name: str | None = None
    ) -> Callable[[], None]:
        """Register ``callback(batch)`` for tags matching any of ``patterns``.

        Returns the unsubscribe function (idempotent); after it, no call starts and any
        pending batch is dropped (a running async call is not cancelled).
        """
        pats = (patterns,) if isinstance(patterns, str) else tuple(patterns)
        if not pats or not all(isinstance(p, str) and p for p in pats):
            raise ValueError(f"subscribe needs non-empty pattern strings, got {patterns!r}")
        sub = _Subscription(
            pats, callback, name or str(getattr(callback, "__qualname__", repr(callback)))
        )
        sub.rematch(self._catalog)
        self._subs.append(sub)

        def unsubscribe() -> None:
            sub.active = False
            sub.pending = None
            if sub in self._subs:
                self._subs.remove(sub)

        return unsubscribe

    @property
    def subscriber_count(self) -> int:
        """Number of active subscriptions."""
        return len(self._subs)

    def publish(self, batch: ChangeBatch) -> None:
        """Deliver ``batch`` now: sync callbacks run inside this call, async ones are started."""
        if not len(batch):
            return
        for sub in tuple(self._subs):
            if not sub.active:
                continue
            part = batch if sub.all and batch.catalog is self._catalog else batch.select(sub.mask)
            if part is None:
                continue
            if sub.task is not None:
                sub.pending = part if sub.pending is None else sub.pending.merge(part)
            else:
                self._invoke(sub, part)

    def _invoke(self, sub: _Subscription, batch: ChangeBatch) -> None:
        try:
            result = sub.callback(batch)
        except Exception:
            logger.exception("change subscriber %s failed on batch seq=%d", sub.name, batch.seq)
            return
        if not inspect.isawaitable(result):
            return
        try:
            task = asyncio.ensure_future(result)
        except RuntimeError:
            if inspect.iscoroutine(result):
                result.close()
            logger.error(
                "async change subscriber %s needs a running event loop; batch dropped", sub.name
            )
            return
        sub.task = task
        task.add_done_callback(functools.partial(self._done, sub))

    def _done(self, sub: _Subscription, task: asyncio.Future[Any]) -> None:
        sub.task = None
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("change subscriber %s failed", sub.name, exc_info=exc)
        if sub.active and sub.pending is not None:
            batch, sub.pending = sub.pending, None
            self._invoke(sub, batch)

    async def idle(self) -> None:
        """Wait until no async subscriber is running and nothing is pending (tests, shutdown)."""
        while True:
            tasks = [s.task for s in self._subs if s.task is not None]
            if not tasks:
                return
            await asyncio.wait(tasks)
