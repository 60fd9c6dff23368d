"""The live TagDatabase: current value, quality and timestamps of every tag.

Threading: a TagDatabase is used from the event-loop thread only (drivers, services and
sessions all run on the one asyncio/Tornado loop); hand values over from other threads
with ``loop.call_soon_threadsafe(db.update_many, ...)``.

Storage: numeric tags (bool/int/float) live in numpy arrays indexed by tag id (value
float64, quality and reason uint8 side by side, source timestamp float64, and a separate
last-update time for staleness); str values in a Python list. Ids are stable for the life
of the database (see ``tags.catalog``), so drivers look them up once with ``ids_of``.
A quality reason may carry a detail text for people (``set_quality(..., detail=...)``: why
a device's tags are ``comm_lost``); the few tags that have one are kept in a dict, and
every later change of such a tag drops it, so the update path pays only when one exists.

Change detection: an update is a change when the value moved *more than* the tag's
deadband from the last published value, or quality or reason changed, or it is the
tag's first value (and, for ``set_quality``, a new detail). The stored value is the last
published one, so ``read`` and the subscribers always agree. Changes are published on the bus once per event-loop
iteration (``loop.call_soon`` after the first change), or by an explicit ``flush()``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tags.arrays import BoolArray, CodeArray, FloatArray, IdArray
from tags.bus import ChangeBatch, ChangeBus, ChangeCallback, LocalBus
from tags.catalog import KIND_BOOL, KIND_DEAD, KIND_FLOAT, KIND_INT, KIND_STR, TagCatalog, kind_of
from tags.model import Quality, Reason, Scalar, TagDef, TagValue

__all__ = ["ReloadSummary", "TagDatabase"]

logger = logging.getLogger(__name__)

_QUALITIES = tuple(Quality)
_REASONS = tuple(Reason)
_MAX_FLUSH_ROUNDS = 100
_STALE_FACTOR = 3.0
_LITTLE_ENDIAN = sys.byteorder == "little"


@dataclass(frozen=True, slots=True)
class ReloadSummary:
    """What ``TagDatabase.replace_defs`` did, by tag name."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    kept: tuple[str, ...]


def _qr_code(quality: int, reason: int) -> int:
    """Return the uint16 code of one (quality, reason) pair as laid out by ``_qr8``."""
    q, r = int(quality), int(reason)
    if not (0 <= q < 256 and 0 <= r < 256):
        raise ValueError(f"quality/reason code out of range: {q}, {r}")
    return q | (r << 8) if _LITTLE_ENDIAN else (q << 8) | r


def _qr(quality: int | CodeArray, reason: int | CodeArray) -> np.uint16 | npt.NDArray[np.uint16]:
    """Pack quality and reason (scalars or arrays) into uint16 codes via a (n, 2) uint8 view."""
    if not isinstance(quality, np.ndarray) and not isinstance(reason, np.ndarray):
        return np.uint16(_qr_code(quality, reason))
    q, r = np.broadcast_arrays(
        np.asarray(quality, dtype=np.uint8), np.asarray(reason, dtype=np.uint8)
    )
    pair = np.empty((q.size, 2), dtype=np.uint8)
    pair[:, 0] = q.ravel()
    pair[:, 1] = r.ravel()
    return pair.view(np.uint16).ravel()


SMALL_UPDATE = 16  # update_many of at most this many ids takes the per-tag path
_BAD_NOT_CONNECTED = _qr(Quality.BAD, Reason.NOT_CONNECTED)
_SPACE = re.compile(r"\s")  # what str.isspace() calls whitespace


_NUMBERS = frozenset({float, int})


@dataclass(frozen=True, slots=True)
class _Checked:
    """Checked definitions by name, and their columns in the same order."""

    defs: dict[str, TagDef]
    deadband: FloatArray
    stale_after: FloatArray  # inf for tags without poll_s
    kinds: list[int]


def _checked_defs(defs: list[TagDef]) -> _Checked:
    """Return the definitions by name with their columns; raise for the first bad one.

    Raises ``TypeError`` / ``ValueError``. The checks run over whole columns (a large site
    has 300,000 tags); definitions the column checks do not pass, or that are out of the
    ordinary (a deadband that is no float or int), are checked one by one, which names the
    first bad one.
    """
    fast = _checked_columns(defs)
    if fast is not None:
        return fast
    new_defs = _checked_one_by_one(defs)
    n = len(new_defs)
    return _Checked(
        new_defs,
        np.fromiter((d.deadband for d in new_defs.values()), dtype=np.float64, count=n),
        np.fromiter(
            (_STALE_FACTOR * d.poll_s if d.poll_s else np.inf for d in new_defs.values()),
            dtype=np.float64,
            count=n,
        ),
        [kind_of(d.type) for d in new_defs.values()],
    )


def _checked_columns(defs: list[TagDef]) -> _Checked | None:
    """Return what :func:`_checked_defs` returns if every definition is plainly fine, else None."""
    if not all(issubclass(t, TagDef) for t in set(map(type, defs))):
        return None
    # plain columns (no tuple per tag: 300,000 new containers would wake the collector)
    n = len(defs)
    names = [d.name for d in defs]
    deadbands = [d.deadband for d in defs]
    polls = [d.poll_s for d in defs]
    if not (
        set(map(type, names)) <= {str}
        and set(map(type, deadbands)) <= _NUMBERS
        and set(map(type, polls)) <= _NUMBERS | {type(None)}
    ):
        return None
    new_defs = dict(zip(names, defs, strict=True))
    deadband = np.array(deadbands, dtype=np.float64)
    has_poll = np.fromiter((p is not None for p in polls), dtype=bool, count=n)
    poll = np.array([1.0 if p is None else p for p in polls], dtype=np.float64)
    if (
        len(new_defs) != n
        or "" in new_defs
        or _SPACE.search("".join(names)) is not None
        or not np.all(deadband >= 0)
        or not np.all(np.isfinite(deadband))
        or not np.all(poll > 0)
    ):
        return None
    kinds = [kind_of(d.type) for d in defs]
    return _Checked(new_defs, deadband, np.where(has_poll, _STALE_FACTOR * poll, np.inf), kinds)


def _checked_one_by_one(defs: Iterable[TagDef]) -> dict[str, TagDef]:
    """Return ``{name: def}``; raise ``TypeError`` / ``ValueError`` for the first bad one."""
    new_defs: dict[str, TagDef] = {}
    for d in defs:
        if not isinstance(d, TagDef):
            raise TypeError(f"expected TagDef, got {type(d).__name__}")
        if not d.name or any(c.isspace() for c in d.name):
            raise ValueError(f"invalid tag name {d.name!r}: empty or contains whitespace")
        if d.name in new_defs:
            raise ValueError(f"duplicate tag name {d.name!r}")
        if not (d.deadband >= 0 and math.isfinite(d.deadband)):
            raise ValueError(f"tag {d.name!r}: deadband must be a finite number >= 0")
        if d.poll_s is not None and not d.poll_s > 0:
            raise ValueError(f"tag {d.name!r}: poll_s must be > 0")
        new_defs[d.name] = d
    return new_defs


class TagDatabase:
    """Current values of all tags, with deadband change detection and a change bus.

    Event-loop thread only (see the module docstring). ``bus`` defaults to a new
    ``LocalBus``; ``clock`` (epoch seconds) is the default timestamp and the staleness
    clock.
    """

    def __init__(
        self,
        defs: Iterable[TagDef] = (),
        *,
        bus: ChangeBus | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._bus: ChangeBus = bus if bus is not None else LocalBus()
        self._clock = clock
        self._defs: dict[str, TagDef] = {}
        self._catalog = TagCatalog.empty()
        self._kind = np.zeros(0, dtype=np.uint8)
        self._numeric = np.zeros(0, dtype=bool)  # alive and not str
        self._value = np.zeros(0, dtype=np.float64)
        self._qr8 = np.zeros((0, 2), dtype=np.uint8)  # [:, 0] quality, [:, 1] reason
        self._qr = self._qr8.view(np.uint16).ravel()
        self._ts = np.zeros(0, dtype=np.float64)
        self._seen = np.zeros(0, dtype=np.float64)  # last update (clock), for staleness
        self._valid = np.zeros(0, dtype=bool)
        self._deadband = np.zeros(0, dtype=np.float64)
        self._stale_after = np.zeros(0, dtype=np.float64)
        self._dirty = np.zeros(0, dtype=bool)
        # the ids marked dirty since the last delivery, as they came: a delivery reads these
        # instead of scanning ``_dirty`` over every tag (300,000 at 200 buildings, once per
        # Modbus answer: a third of the event loop's time)
        self._dirty_parts: list[IdArray] = []
        self._text: list[str | None] = []
        self._detail: dict[int, str] = {}  # tag id -> detail of its quality reason (few)
        self._has_detail = np.zeros(0, dtype=bool)  # the same as a mask, for the update path
        self._has_dirty = False
        self._scheduled = False
        # Deliveries at most this often (seconds; 0: each on the next loop turn). A large
        # estate completes a Modbus read every fraction of a millisecond, each on its own
        # loop turn: one batch per read made every subscriber's fixed cost per batch
        # (historian, alarms, websocket) thousands of times a second. A delivery after a
        # quiet spell still goes out on the next turn; only a busy stream is paced.
        self.min_delivery_interval_s = 0.0
        self._last_delivery = -math.inf
        self._seq = 0
        self._names: list[str] = []
        self._reload_listeners: list[Callable[[ReloadSummary], None]] = []
        self.replace_defs(defs)

    # ----------------------------------------------------------------- definitions
    @property
    def bus(self) -> ChangeBus:
        """The bus this database publishes to."""
        return self._bus

    @property
    def catalog(self) -> TagCatalog:
        """The current id/name table."""
        return self._catalog

    @property
    def names(self) -> list[str]:
        """Live tag names in id order (do not modify)."""
        return self._names

    @property
    def seq(self) -> int:
        """Sequence number of the last published batch (0 before the first)."""
        return self._seq

    def __len__(self) -> int:
        return len(self._defs)

    def __contains__(self, name: object) -> bool:
        return name in self._defs

    def definition(self, name: str) -> TagDef:
        """Return the TagDef of ``name``; raise ``KeyError`` naming the tag if unknown."""
        try:
            return self._defs[name]
        except KeyError:
            raise KeyError(f"unknown tag {name!r}") from None

    def definitions(self) -> list[TagDef]:
        """Return every live TagDef in id order."""
        return [self._defs[n] for n in self._names]

    def id_of(self, name: str) -> int:
        """Return the stable id of ``name``; raise ``KeyError`` naming the tag if unknown."""
        return self._catalog.id_of(name)

    def ids_of(self, names: Iterable[str]) -> IdArray:
        """Return the ids of ``names`` as an int64 array; raise ``KeyError`` on the first unknown."""
        index = self._catalog.index
        try:
            return np.fromiter((index[n] for n in names), dtype=np.int64)
        except KeyError as exc:
            raise KeyError(f"unknown tag {exc.args[0]!r}") from None

    def match(self, pattern: str | Iterable[str]) -> list[str]:
        """Return live names matching the glob(s) in id order (``*`` also spans dots)."""
        return self._catalog.match(pattern)

    def add_reload_listener(self, callback: Callable[[ReloadSummary], None]) -> Callable[[], None]:
        """Call ``callback(summary)`` after every ``replace_defs``; return the remover."""
        self._reload_listeners.append(callback)

        def remove() -> None:
            if callback in self._reload_listeners:
                self._reload_listeners.remove(callback)

        return remove

    def replace_defs(self, defs: Iterable[TagDef]) -> ReloadSummary:
        """Hot-reload the tag definitions.

        New tags are added (no value yet), removed tags dropped, kept tags keep their id
        and current value (a tag whose type changes between str and numeric, or between
        numeric kinds, counts as removed and added). Pattern subscriptions are re-matched,
        so they pick up new matching tags. Raises ``ValueError`` for a duplicate or
        malformed name.
        """
        checked = _checked_defs(list(defs))
        new_defs = checked.defs
        old = self._catalog
        names: list[str | None] = list(old.names)
        kinds: list[int] = old.kinds.tolist()
        removed: list[str] = []
        kept: list[str] = []
        dead: list[int] = []
        for name, tid in old.index.items():
            new = new_defs.get(name)
            if new is None or kind_of(new.type) != kinds[tid]:
                removed.append(name)
                dead.append(tid)
                names[tid] = None
                kinds[tid] = KIND_DEAD
            else:
                kept.append(name)
        old_index = old.index
        if not old_index:  # a new database: every tag is added, in order
            added = list(new_defs)
            kinds.extend(checked.kinds)
        else:
            added = [n for n in new_defs if n not in old_index or names[old_index[n]] is None]
            kinds.extend([kind_of(new_defs[n].type) for n in added])
        names.extend(added)
        self._grow(len(names))
        if dead:
            idx = np.asarray(dead, dtype=np.int64)
            self._reset(idx)
            self._dirty[idx] = False
            for i in dead:
                self._text[i] = None
        catalog = TagCatalog(names, kinds)
        self._kind = catalog.kinds.copy()
        self._numeric = catalog.alive & (self._kind != KIND_STR)
        if old_index:
            index = catalog.index
            ids = np.fromiter((index[n] for n in new_defs), dtype=np.int64, count=len(new_defs))
        else:  # ids were given in the order of new_defs, from 0
            ids = np.arange(len(new_defs), dtype=np.int64)
        self._deadband[ids] = checked.deadband
        self._stale_after[ids] = checked.stale_after
        if dead:
            self._deadband[idx] = 0.0
            self._stale_after[idx] = np.inf
        self._defs = new_defs
        self._catalog = catalog
        self._names = [n for n in names if n is not None]
        self._bus.set_catalog(catalog)
        summary = ReloadSummary(tuple(added), tuple(removed), tuple(kept))
        if old.names:
            logger.info(
                "tag definitions reloaded: %d added, %d removed, %d kept",
                len(added),
                len(removed),
                len(kept),
            )
        for listener in tuple(self._reload_listeners):
            try:
                listener(summary)
            except Exception:
                logger.exception("reload listener %r failed", listener)
        return summary

    def _grow(self, n: int) -> None:
        old = self._value.size
        if n <= old:
            return
        extra = n - old

        def grow(a: np.ndarray, fill: Any) -> np.ndarray:
            tail = np.full((extra, *a.shape[1:]), fill, dtype=a.dtype)
            return np.concatenate((a, tail))

        self._value = grow(self._value, np.nan)
        self._qr8 = grow(self._qr8, 0)
        self._qr = self._qr8.view(np.uint16).ravel()
        self._ts = grow(self._ts, 0.0)
        self._seen = grow(self._seen, 0.0)
        self._valid = grow(self._valid, False)
        self._deadband = grow(self._deadband, 0.0)
        self._stale_after = grow(self._stale_after, np.inf)
        self._dirty = grow(self._dirty, False)
        self._has_detail = grow(self._has_detail, False)
        self._text.extend([None] * extra)
        self._reset(np.arange(old, n, dtype=np.int64))

    def _reset(self, ids: IdArray) -> None:
        self._value[ids] = np.nan
        self._qr[ids] = _BAD_NOT_CONNECTED
        self._ts[ids] = 0.0
        self._seen[ids] = 0.0
        self._valid[ids] = False
        if self._detail:
            self._drop_details(ids)

    def _drop_details(self, ids: IdArray) -> None:
        """Forget the quality details of ``ids`` (their quality changed again)."""
        hit = ids[self._has_detail[ids]]
        if hit.size:
            self._has_detail[hit] = False
            for tid in hit.tolist():
                self._detail.pop(tid, None)

    # ---------------------------------------------------------------------- updates
    def update_many(
        self,
        ids: IdArray | Sequence[int],
        values: FloatArray | Sequence[float],
        quality: Quality | int | CodeArray = Quality.GOOD,
        ts: float | FloatArray | None = None,
        reason: Reason | int | CodeArray = Reason.NONE,
    ) -> int:
        """Store a block of numeric values; return the number of changes.

        ``ids`` are tag ids (unique within one call; with duplicates the last row wins),
        ``values`` float64 aligned with them (bools as 0/1, already scaled and typed: no
        coercion happens here). ``quality``, ``reason`` and ``ts`` are scalars or arrays
        aligned with ``ids``; ``ts`` defaults to now. Non-changes only refresh the
        last-update time used by ``check_stale``. Ids of removed tags are ignored; a str
        tag raises ``TypeError`` (use ``update``).
        """
        ids = np.asarray(ids, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if ids.shape != values.shape or ids.ndim != 1:
            raise ValueError(
                f"ids and values must be 1-d and aligned, got {ids.shape} and {values.shape}"
            )
        if ids.size == 0:
            return 0
        if int(ids.min()) < 0:
            raise IndexError(f"negative tag id {int(ids.min())}")
        now = self._clock()
        qr = _qr(quality, reason)
        if (
            ids.size <= SMALL_UPDATE
            and not isinstance(qr, np.ndarray)
            and (ts is None or isinstance(ts, float | int))
        ):
            done = self._update_few(ids, values, int(qr), now, now if ts is None else ts)
            if done is not None:
                return done
        ts_arr = np.asarray(now if ts is None else ts, dtype=np.float64)
        ok = self._numeric[ids]
        if not ok.all():
            bad = ids[~ok]
            strs = bad[self._kind[bad] == KIND_STR]
            if strs.size:
                raise TypeError(
                    f"tag {self._catalog.names[int(strs[0])]!r} is a str tag; use update()"
                )
            keep = np.flatnonzero(ok)
            ids, values = ids[keep], values[keep]
            if isinstance(qr, np.ndarray):
                qr = qr[keep]
            if ts_arr.ndim:
                ts_arr = ts_arr[keep]
        old = self._value[ids]
        diff = np.abs(values - old)
        # ``~(diff <= deadband)`` is also True for NaN: first values (stored as NaN) and
        # moves to/from NaN count as changes
        changed = ~(diff <= self._deadband[ids])
        qchanged = self._qr[ids] != qr
        changed |= qchanged
        rows = np.flatnonzero(changed)
        if rows.size:
            new_nan = np.isnan(values[rows])
            if new_nan.any():
                cids = ids[rows]
                same_nan = new_nan & np.isnan(old[rows]) & self._valid[cids] & ~qchanged[rows]
                if same_nan.any():
                    rows = rows[~same_nan]
        self._seen[ids] = now
        if not rows.size:
            return 0
        cids = ids[rows]
        self._value[cids] = values[rows]
        self._qr[cids] = qr[rows] if isinstance(qr, np.ndarray) else qr
        self._ts[cids] = ts_arr[rows] if ts_arr.ndim else ts_arr
        self._valid[cids] = True
        if self._detail:
            self._drop_details(cids)
        self._mark(cids)
        return int(rows.size)

    def _update_few(
        self, ids: IdArray, values: FloatArray, qr: int, now: float, ts: float
    ) -> int | None:
        """:meth:`update_many` for a few ids with one quality and time, one tag at a time.

        A Modbus answer carries a handful of values; twenty numpy calls on arrays of five
        cost more than this loop. Same rules as the array path (``tests/tags`` checks both
        against one reference model). Returns None, having changed nothing, if an id is not
        a live numeric tag (the array path then raises or skips as it does).
        """
        numeric, value, deadband = self._numeric, self._value, self._deadband
        codes, valid = self._qr, self._valid
        idl = ids.tolist()
        for i in idl:
            if not numeric[i]:
                return None
        changed: list[int] = []
        for i, v in zip(idl, values.tolist(), strict=True):
            old = float(value[i])
            if codes[i] != qr:
                changed.append(i)
            elif v != v:  # NaN: a change unless it was NaN with a value already
                if not (old != old and valid[i]):
                    changed.append(i)
            elif not abs(v - old) <= deadband[i]:  # NaN old: a change too
                changed.append(i)
        self._seen[ids] = now
        if not changed:
            return 0
        cids = np.array(changed, dtype=np.int64) if len(changed) < len(idl) else ids
        self._value[cids] = values if cids is ids else values[np.isin(ids, cids)]
        self._qr[cids] = qr
        self._ts[cids] = ts
        self._valid[cids] = True
        if self._detail:
            self._drop_details(cids)
        self._mark(cids)
        return len(changed)

    def update(
        self,
        name: str,
        value: Any,
        quality: Quality | int = Quality.GOOD,
        ts: float | None = None,
        reason: Reason | int = Reason.NONE,
    ) -> bool:
        """Store one value of any type, coerced with ``TagType.coerce``; return True if changed.

        Raises ``KeyError`` for an unknown tag and ``ValueError``/``TypeError`` naming the
        tag when the value does not fit its type.
        """
        d = self.definition(name)
        try:
            v = d.type.coerce(value)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"tag {name!r}: {exc}") from None
        tid = self._catalog.index[name]
        now = self._clock()
        qr = _qr_code(quality, reason)
        self._seen[tid] = now
        valid = bool(self._valid[tid])
        same_qr = int(self._qr[tid]) == qr
        if self._kind[tid] == KIND_STR:
            text = str(v)  # already a str: coerce() of a str tag
            if valid and same_qr and self._text[tid] == text:
                return False
            self._text[tid] = text
        else:
            # the scalar twin of the vectorised test in update_many
            f = float(v)
            old = float(self._value[tid])
            if valid and same_qr:
                if math.isnan(f) or math.isnan(old):
                    if math.isnan(f) and math.isnan(old):
                        return False
                elif abs(f - old) <= self._deadband[tid]:
                    return False
            self._value[tid] = f
        self._qr[tid] = qr
        self._ts[tid] = now if ts is None else ts
        self._valid[tid] = True
        if self._detail and tid in self._detail:
            self._has_detail[tid] = False
            del self._detail[tid]
        self._mark(np.array([tid]))
        return True

    def set_initial(self, values: Mapping[str, Any], ts: float | None = None) -> int:
        """Give tags without a value yet their initial value as good; return how many.

        Tags that already have a value (for example after a hot reload) keep it.
        """
        count = 0
        for name, value in values.items():
            if not self._valid[self.id_of(name)]:
                count += self.update(name, value, Quality.GOOD, ts)
        return count

    def set_quality(
        self,
        ids: IdArray | Sequence[int],
        quality: Quality | int,
        reason: Reason | int = Reason.NONE,
        ts: float | None = None,
        detail: str | None = None,
    ) -> int:
        """Change the quality (and reason) of tags without changing their values.

        For example a driver marks a device's tags ``bad/comm_lost``: values are kept
        and shown as bad. Works for str tags too; ids of removed tags are ignored.
        ``detail`` is a text for people saying more about the reason (the cause of a
        comm loss); it stays until the tag's next change. A new detail with the same
        quality and reason is a change too, but keeps the time the quality changed.
        Returns the number of tags whose quality, reason or detail changed; ``ts``
        defaults to now.
        """
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if ids.size == 0:
            return 0
        if int(ids.min()) < 0:
            raise IndexError(f"negative tag id {int(ids.min())}")
        live: IdArray = ids[self._kind[ids] != KIND_DEAD]
        qr = _qr(quality, reason)
        qr_changed = self._qr[live] != qr
        text = detail or None
        if text is None:
            sel = qr_changed | self._has_detail[live]
        else:  # a driver's few tags: compare the texts one by one
            current = [self._detail.get(tid) for tid in live.tolist()]
            sel = qr_changed | np.asarray([c != text for c in current], dtype=bool)
        cids = live[sel]
        if not cids.size:
            return 0
        self._qr[cids] = qr
        self._ts[live[qr_changed]] = self._clock() if ts is None else ts
        if text is None:
            self._drop_details(cids)
        else:
            self._has_detail[cids] = True
            for tid in cids.tolist():
                self._detail[tid] = text
        self._mark(cids)
        return int(cids.size)

    def check_stale(self, now: float | None = None) -> int:
        """Mark good tags not refreshed within 3 x their ``poll_s`` as ``uncertain/stale``.

        Vectorised over all tags; returns how many were marked. A marked tag recovers
        with its next good update. Call it periodically (about once per second).
        """
        now = self._clock() if now is None else now
        stale = (now - self._seen) > self._stale_after
        stale &= self._qr8[:, 0] == Quality.GOOD
        cids = np.flatnonzero(stale)
        if not cids.size:
            return 0
        self._qr[cids] = _qr(Quality.UNCERTAIN, Reason.STALE)
        self._ts[cids] = now
        if self._detail:
            self._drop_details(cids)
        self._mark(cids)
        logger.debug("%d tags became stale", cids.size)
        return int(cids.size)

    # ------------------------------------------------------------------------ reads
    def _value_of(self, tid: int) -> TagValue:
        value: Scalar | None = None
        if self._valid[tid]:
            kind = self._kind[tid]
            if kind == KIND_FLOAT:
                value = float(self._value[tid])
            elif kind == KIND_STR:
                value = self._text[tid]
            elif kind == KIND_INT:
                value = int(self._value[tid])
            elif kind == KIND_BOOL:
                value = bool(self._value[tid])
        q, r = self._qr8[tid]
        detail = self._detail.get(tid) if self._detail else None
        return TagValue(value, _QUALITIES[q], _REASONS[r], float(self._ts[tid]), detail)

    def read(self, name: str) -> TagValue:
        """Return the current TagValue of ``name`` (``KeyError`` naming an unknown tag)."""
        return self._value_of(self.id_of(name))

    def read_id(self, tid: int) -> TagValue:
        """Return the current TagValue of tag id ``tid``."""
        return self._value_of(int(tid))

    def refreshed_at(self, name: str) -> float:
        """Return when ``name`` was last updated, changed or not (``clock`` time; 0.0: never).

        This is the time ``check_stale`` measures from (a value's ``ts`` moves only on changes).
        """
        return float(self._seen[self.id_of(name)])

    def refreshed_of(self, ids: IdArray) -> FloatArray:
        """Return a copy of the last-update times of ``ids`` (``refreshed_at``, vectorised)."""
        return self._seen[ids]

    def read_many(self, names: Iterable[str]) -> list[TagValue]:
        """Return the current TagValues of ``names``, in order."""
        return [self._value_of(tid) for tid in self.ids_of(names).tolist()]

    def snapshot(self, pattern: str | Sequence[str] = "*") -> dict[str, TagValue]:
        """Return ``name -> TagValue`` for every tag matching the glob(s), in id order."""
        ids = np.flatnonzero(self._catalog.mask(pattern)).tolist()
        return dict(zip(self._catalog.names_of(ids), map(self._value_of, ids), strict=True))

    def snapshot_batch(self, pattern: str | Sequence[str] = "*") -> ChangeBatch:
        """Return the current state of matching tags as a ChangeBatch (``seq`` = last published).

        For bulk consumers (websocket snapshot, historian start): arrays, no TagValues.
        """
        return self._batch(np.flatnonzero(self._catalog.mask(pattern)), self._seq)

    def state_of(self, ids: IdArray) -> tuple[CodeArray, CodeArray, FloatArray, BoolArray]:
        """Return copies of (quality, reason, ts, valid) arrays for ``ids`` (vectorised reads)."""
        return self._qr8[ids, 0], self._qr8[ids, 1], self._ts[ids], self._valid[ids]

    def values_of(self, ids: IdArray) -> FloatArray:
        """Return a float64 copy of the stored values of numeric ``ids`` (NaN: no value)."""
        return self._value[ids]

    # --------------------------------------------------------------------- delivery
    def subscribe(
        self, patterns: str | Sequence[str], callback: ChangeCallback, *, name: str | None = None
    ) -> Callable[[], None]:
        """Subscribe ``callback(batch)`` to changes of tags matching ``patterns`` on the bus.

        Returns the unsubscribe function. See ``tags.bus`` for the delivery rules
        (async callbacks, coalescing, failure isolation).
        """
        return self._bus.subscribe(patterns, callback, name=name)

    def _mark(self, cids: IdArray) -> None:
        fresh = cids[~self._dirty[cids]]
        if fresh.size:
            self._dirty[fresh] = True
            self._dirty_parts.append(fresh)
        self._has_dirty = True
        if not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop: flush() delivers
            self._scheduled = True
            due = self._last_delivery + self.min_delivery_interval_s
            if due > loop.time():
                loop.call_at(due, self._deliver_scheduled)
            else:
                loop.call_soon(self._deliver_scheduled)

    def _deliver_scheduled(self) -> None:
        self._scheduled = False
        self._last_delivery = asyncio.get_running_loop().time()  # called by the loop only
        self._deliver()

    def _batch(self, ids: IdArray, seq: int) -> ChangeBatch:
        strs = ids[self._kind[ids] == KIND_STR]
        texts = (
            {i: t for i in strs.tolist() if (t := self._text[i]) is not None} if strs.size else None
        )
        return ChangeBatch(
            seq,
            self._catalog,
            ids,
            self._value[ids],
            self._qr8[ids, 0],
            self._qr8[ids, 1],
            self._ts[ids],
            self._valid[ids],
            texts,
        )

    def _deliver(self) -> int:
        if not self._has_dirty:
            return 0
        self._has_dirty = False
        parts, self._dirty_parts = self._dirty_parts, []
        if not parts:
            return 0
        ids = np.unique(np.concatenate(parts)) if len(parts) > 1 else np.unique(parts[0])
        ids = ids[self._dirty[ids]]  # a tag removed meanwhile is no longer dirty
        if not ids.size:
            return 0
        self._dirty[ids] = False
        self._seq += 1
        self._bus.publish(self._batch(ids, self._seq))
        return int(ids.size)

    def flush(self) -> int:
        """Publish every pending change now (synchronously); return how many were published.

        Repeats while subscribers produce new changes (computed tags), at most 100 rounds.
        For benchmarks and sync code; on a running loop delivery happens by itself.
        """
        total = 0
        for _ in range(_MAX_FLUSH_ROUNDS):
            n = self._deliver()
            if not n:
                break
            total += n
        return total
