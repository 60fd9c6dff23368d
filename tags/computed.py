"""Computed tags: expressions over other tags, recomputed when an input changes.

Threading: event-loop thread only, like the TagDatabase it works on.

Rules:

* every TagDef with ``source == Source.COMPUTED`` and an ``expr`` is evaluated once at
  ``start()`` and then once per delivered batch that changes one of its inputs;
* the result is coerced to the tag's type; quality is the worst input quality with its
  reason, ts the newest input ts (now for an expression without inputs);
* a directly referenced input without a value makes the result ``bad/not_connected``
  (value kept); inputs of ``tags('glob')`` without a value are left out of the aggregate
  but still count for quality;
* an expression that fails (division by zero, wrong types, unknown tag, dependency
  cycle, a result that does not fit the type) gives ``bad/config_error`` and one log line
  per failure episode, never an exception;
* glob inputs are resolved against the database (a computed tag never matches its own
  glob) and re-resolved after ``TagDatabase.replace_defs``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from tags.bus import ChangeBatch
from tags.catalog import KIND_STR
from tags.database import ReloadSummary, TagDatabase
from tags.expr import EvaluationError, Expression, ExpressionError, parse_expression
from tags.model import Quality, Reason, Scalar, Source, TagDef

__all__ = ["ComputedTags"]

logger = logging.getLogger(__name__)

_QUALITIES = tuple(Quality)
_REASONS = tuple(Reason)


class _Missing(Exception):
    """A directly referenced input has no value yet."""


@dataclass(eq=False)
class _Item:
    tag: TagDef
    tid: int
    expr: Expression | None
    error: str | None = None  # a permanent config error found while building
    input_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    glob_ids: dict[str, np.ndarray] = field(default_factory=dict)
    glob_numeric: dict[str, bool] = field(default_factory=dict)
    failed: bool = False


class ComputedTags:
    """Evaluate the computed tags of ``db``; ``start()`` subscribes, ``stop()`` unsubscribes."""

    def __init__(self, db: TagDatabase) -> None:
        self._db = db
        self._items: list[_Item] = []
        self._users: dict[int, list[int]] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._remove_listener: Callable[[], None] | None = None
        self.evaluations = 0  # how many expression evaluations ran (for tests and stats)

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._remove_listener is not None

    @property
    def tags(self) -> list[str]:
        """Names of the computed tags, in evaluation order."""
        return [it.tag.name for it in self._items]

    def start(self) -> None:
        """Resolve inputs, subscribe to them and evaluate every computed tag once."""
        if self.running:
            return
        self._remove_listener = self._db.add_reload_listener(self._on_reload)
        self._build()

    def stop(self) -> None:
        """Unsubscribe; computed values stay as they are."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        self._items = []
        self._users = {}

    def _on_reload(self, summary: ReloadSummary) -> None:
        self._build()

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        db = self._db
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        items: list[_Item] = []
        for d in db.definitions():
            if d.source != Source.COMPUTED or not d.expr:
                continue
            tid = db.id_of(d.name)
            try:
                items.append(_Item(d, tid, parse_expression(d.expr)))
            except ExpressionError as exc:
                items.append(_Item(d, tid, None, f"bad expression {d.expr!r}: {exc}"))
        patterns: set[str] = set()
        for it in items:
            if it.expr is None:
                continue
            unknown = sorted(n for n in it.expr.names if n not in db)
            if unknown:
                it.error = f"unknown tag(s) {', '.join(map(repr, unknown))} in {it.tag.expr!r}"
                continue
            parts = [db.ids_of(sorted(it.expr.names))]
            for g in it.expr.globs:
                mask = db.catalog.mask(g)
                mask[it.tid] = False
                ids = np.flatnonzero(mask)
                it.glob_ids[g] = ids
                it.glob_numeric[g] = not bool(np.any(db.catalog.kinds[ids] == KIND_STR))
                parts.append(ids)
            it.input_ids = np.unique(np.concatenate(parts)) if parts else it.input_ids
            patterns.update(it.expr.names)
            patterns.update(it.expr.globs)
        self._items = self._order(items)
        users: dict[int, list[int]] = {}
        for idx, it in enumerate(self._items):
            if it.error is None:
                for tid in it.input_ids.tolist():
                    users.setdefault(tid, []).append(idx)
        self._users = users
        if patterns:
            self._unsubscribe = db.subscribe(sorted(patterns), self._on_batch, name="computed-tags")
        for it in self._items:
            self._evaluate(it)

    def _order(self, items: list[_Item]) -> list[_Item]:
        """Sort items so inputs come before their users; items in a cycle get an error."""
        by_tid = {it.tid: it for it in items}
        deps: dict[_Item, set[_Item]] = {}
        for it in items:
            deps[it] = (
                {by_tid[t] for t in it.input_ids.tolist() if t in by_tid}
                if it.error is None
                else set()
            )
        ordered: list[_Item] = []
        done: set[_Item] = set()
        remaining = list(items)
        while remaining:
            ready = [it for it in remaining if deps[it] <= done]
            if not ready:
                for it in remaining:
                    it.error = f"dependency cycle among computed tags {sorted(i.tag.name for i in remaining)}"
                ordered.extend(remaining)
                break
            ordered.extend(ready)
            done.update(ready)
            ready_set = set(ready)
            remaining = [it for it in remaining if it not in ready_set]
        return ordered

    # ---------------------------------------------------------------- evaluating
    def _on_batch(self, batch: ChangeBatch) -> None:
        users = self._users
        affected: set[int] = set()
        for tid in batch.ids.tolist():
            u = users.get(tid)
            if u:
                affected.update(u)
        for idx in sorted(affected):
            self._evaluate(self._items[idx])

    def _fail(self, it: _Item, message: str) -> None:
        if not it.failed:
            logger.warning("computed tag %s: %s", it.tag.name, message)
            it.failed = True
        self._db.set_quality([it.tid], Quality.BAD, Reason.CONFIG_ERROR)

    def _resolve_name(self, name: str) -> Scalar:
        value = self._db.read(name).value
        if value is None:
            raise _Missing(name)
        return value

    def _resolver(self, it: _Item) -> Callable[[str], Iterable[Scalar]]:
        db = self._db

        def resolve_glob(pattern: str) -> Iterable[Scalar]:
            ids = it.glob_ids[pattern]
            if it.glob_numeric[pattern]:
                values = db.values_of(ids)
                return values[db.state_of(ids)[3]].tolist()
            return [v for v in (db.read_id(i).value for i in ids.tolist()) if v is not None]

        return resolve_glob

    def _evaluate(self, it: _Item) -> None:
        db = self._db
        self.evaluations += 1
        if it.error is not None or it.expr is None:
            self._fail(it, it.error or "no expression")
            return
        ids = it.input_ids
        ts: float | None = None
        quality, reason = Quality.GOOD, Reason.NONE
        if ids.size:
            q, r, t, valid = db.state_of(ids)
            worst = int(np.argmax(q))
            quality, reason = _QUALITIES[q[worst]], _REASONS[r[worst]]
            if valid.any():
                ts = float(t[valid].max())
        try:
            value = it.expr.evaluate(self._resolve_name, self._resolver(it))
        except _Missing:
            db.set_quality([it.tid], Quality.BAD, Reason.NOT_CONNECTED)
            return
        except EvaluationError as exc:
            self._fail(it, str(exc))
            return
        try:
            db.update(it.tag.name, value, quality, ts, reason)
        except (TypeError, ValueError) as exc:
            self._fail(it, f"result {value!r} does not fit: {exc}")
            return
        if it.failed:
            logger.info("computed tag %s recovered", it.tag.name)
            it.failed = False
