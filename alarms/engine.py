"""The alarm engine: rule evaluation on tag changes, delays, the ISA-18.2 machine, events.

Threading: loop-thread only (it subscribes to the TagDatabase's bus and reads the
database synchronously). Time comes from ``clock`` (epoch seconds), injectable for tests:
delays, shelve expiry, rate decay and stale checks are driven by ``tick(now)``, which the
engine's own loop task calls every ``tick_s`` in production and tests call with explicit
times, so nothing waits on the wall clock.

Every transition becomes an ``AlarmEvent``: written to the journal (committed once per
batch of changes or operator action), then handed to every subscriber (the router, the
websocket, the HMI) in order. A subscriber that raises is logged and never breaks the
others.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from alarms.commloss import DeviceInfo, bind_comm_defaults, flood_links
from alarms.conditions import DbContext
from alarms.config import AlarmDefaults, AlarmRule
from alarms.journal import AlarmJournal
from alarms.model import ANNUNCIATED, Alarm, AlarmEvent, AlarmFilter, AlarmState, EventKind, Trigger
from alarms.points import AlarmCounts, Point
from alarms.rules import BindingError, PointSpec, bind_rules
from tags.bus import ChangeBatch
from tags.database import ReloadSummary, TagDatabase

__all__ = ["SYSTEM_USER", "AlarmEngine", "EventCallback", "EventHandler"]

log = logging.getLogger(__name__)

EventCallback = Callable[[AlarmEvent], "Awaitable[None] | None"]
SYSTEM_USER = "system"
AckTarget = int | str | AlarmFilter | Iterable[int | str]


class EventHandler(Protocol):
    """The engine's ``router``: anything that takes every alarm event (the notification router)."""

    def handle(self, event: AlarmEvent) -> Awaitable[None] | None: ...


class AlarmEngine:
    """Evaluates alarm rules against a TagDatabase and keeps every alarm point's state.

    ``rules`` are validated rule models (``alarms.config.AlarmRule``); template targets need
    ``devices_by_template``. A rule that cannot be bound (unknown tag) raises
    ``BindingError`` from ``start`` unless ``strict=False`` (then it is logged and skipped).
    ``router`` (anything with ``handle(event)``) is subscribed to the events. With
    ``count_tags`` the engine writes ``alarms.active``, ``alarms.unacked`` and
    ``alarms.<area>.active`` / ``.unacked`` when those tags exist (see ``count_tag_defs``).

    With ``devices`` (the site's devices, ``alarms.commloss.DeviceInfo``) the engine adds the
    ``defaults`` (``alarm_defaults``; on unless switched off): a comm-loss point for every
    device no rule covers and the flood groups, which suppress their devices' comm-loss
    points by design while a building or channel is lost.
    """

    def __init__(
        self,
        db: TagDatabase,
        rules: Sequence[AlarmRule],
        journal: AlarmJournal,
        *,
        router: EventHandler | None = None,
        devices_by_template: Mapping[str, Sequence[str]] | None = None,
        clock: Callable[[], float] = time.time,
        tick_s: float | None = 1.0,
        strict: bool = True,
        devices: Sequence[DeviceInfo] | None = None,
        defaults: AlarmDefaults | None = None,
    ) -> None:
        self._db = db
        self._rules = list(rules)
        self._journal = journal
        self._devices_by_template = dict(devices_by_template or {})
        self._devices = None if devices is None else list(devices)
        self._defaults = defaults or AlarmDefaults()
        self._clock = clock
        self._tick_s = tick_s
        self._strict = strict
        self._points: dict[str, Point] = {}
        self._by_occurrence: dict[int, Point] = {}
        self._cond_inputs: dict[int, list[Point]] = {}
        self._supp_inputs: dict[int, list[Point]] = {}
        self._group_inputs: dict[int, list[Point]] = {}
        self._groups_of: dict[str, list[Point]] = {}
        self._members: dict[str, list[Point]] = {}
        self._ticking: list[Point] = []
        self._timers: list[tuple[float, int, Point]] = []
        self._timer_seq = itertools.count()
        self._subscribers: list[EventCallback] = []
        self._async_calls: set[asyncio.Future[Any]] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._next_occ = 1
        self._pending_commit = False
        self._counts: dict[str, int] = {}
        self._tally = AlarmCounts()
        self._ctx = DbContext(db)
        self.binding_errors: list[str] = []
        if router is not None:
            self.subscribe(router.handle)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Bind the rules, restore state from the journal, subscribe and evaluate current values.

        Starts the tick task when called on a running loop with ``tick_s`` set.
        """
        now = self._clock()
        self._bind(now)
        self._restore(now)
        self._tally.reset(self._points.values())
        self._subscribe_inputs()
        self._remove_listener = self._db.add_reload_listener(self._on_defs_reloaded)
        self._evaluate_all(now)
        self._after(now)
        if self._tick_s:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._task = loop.create_task(self._run(), name="alarm-engine-tick")
        log.info(
            "alarm engine started: %d points from %d rules", len(self._points), len(self._rules)
        )

    async def stop(self) -> None:
        """Stop evaluating, cancel the tick task and commit the journal."""
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._journal.commit()

    def reload(
        self,
        rules: Sequence[AlarmRule],
        devices_by_template: Mapping[str, Sequence[str]] | None = None,
        *,
        devices: Sequence[DeviceInfo] | None = None,
        defaults: AlarmDefaults | None = None,
    ) -> None:
        """Replace the rules (config apply): points with the same key keep their state.

        ``devices_by_template``, ``devices`` and ``defaults`` left None stay as they were.
        Points that disappear close their open occurrence (journal reason ``removed``).
        If a rule cannot be bound (strict engine), ``BindingError`` is raised and the old
        rules stay in force.
        """
        old = self._rules, self._devices_by_template, self._devices, self._defaults
        self._rules = list(rules)
        if devices_by_template is not None:
            self._devices_by_template = dict(devices_by_template)
        if devices is not None:
            self._devices = list(devices)
        if defaults is not None:
            self._defaults = defaults
        try:
            self._rebind(strict=self._strict)
        except BindingError:
            self._rules, self._devices_by_template, self._devices, self._defaults = old
            raise

    def _on_defs_reloaded(self, summary: ReloadSummary) -> None:
        # tag definitions changed (hot reload): globs may match other tags now and removed
        # tags must not be read; rules that no longer bind are skipped until the next reload
        self._rebind(strict=False)

    def _rebind(self, *, strict: bool) -> None:
        now = self._clock()
        old = self._points
        self._ctx.clear()
        self._bind(now, strict=strict)  # raises before changing anything
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for key, p in self._points.items():
            prev = old.get(key)
            if prev is None:
                continue
            p.take_state(prev)
            if p.occurrence is not None:
                self._by_occurrence[p.occurrence] = p
            if p.shelved_until is not None:
                self._schedule(p, p.shelved_until)
        gone = [p.occurrence for k, p in old.items() if k not in self._points]
        self._journal.close_occurrences([o for o in gone if o is not None], now, "removed")
        self._tally.reset(self._points.values())
        self._pending_commit = True
        self._subscribe_inputs()
        self._evaluate_all(now)
        self._after(now)

    async def _run(self) -> None:
        assert self._tick_s
        while True:
            await asyncio.sleep(self._tick_s)
            try:
                self.tick()
            except Exception:
                log.exception("alarm engine tick failed")

    def _bind(self, now: float, *, strict: bool | None = None) -> None:
        strict = self._strict if strict is None else strict
        errors: list[str] = []

        def on_error(exc: BindingError) -> None:
            log.error("%s", exc)
            errors.append(str(exc))

        specs: list[PointSpec] = bind_rules(
            self._rules,
            self._db,
            self._devices_by_template,
            on_error=None if strict else on_error,
        )
        if self._devices is not None:
            specs += bind_comm_defaults(
                self._defaults.comm_loss,
                self._devices,
                self._rules,
                self._db,
                self._devices_by_template,
                {s.key for s in specs},
            )
        self.binding_errors = errors
        self._points = {s.key: Point(s) for s in specs}
        self._by_occurrence = {}
        self._cond_inputs = {}
        self._supp_inputs = {}
        self._ticking = []
        self._timers = []
        self._link_groups(flood_links(specs))
        ids = self._db.catalog.index
        for p in self._points.values():
            inputs = self._group_inputs if p.spec.key in self._members else self._cond_inputs
            for name in p.spec.condition.inputs:
                inputs.setdefault(ids[name], []).append(p)
            if p.spec.suppressor is not None:
                for name in p.spec.suppressor.inputs:
                    self._supp_inputs.setdefault(ids[name], []).append(p)
            if p.spec.condition.TICKS:
                self._ticking.append(p)

    def _link_groups(self, links: Mapping[str, Sequence[str]]) -> None:
        """Index the flood groups: each group's member points and each point's groups."""
        self._group_inputs = {}
        self._members = {}
        self._groups_of = {}
        for key, member_keys in links.items():
            group = self._points[key]
            members = [self._points[k] for k in member_keys]
            self._members[key] = members
            for m in members:
                self._groups_of.setdefault(m.spec.key, []).append(group)

    def _restore(self, now: float) -> None:
        self._next_occ = self._journal.next_occurrence_id()
        orphans = []
        for row in self._journal.open_occurrences():
            p = self._points.get(row["key"])
            if p is None:
                orphans.append(row["id"])
                continue
            p.restore(row)
            self._by_occurrence[row["id"]] = p
        if orphans:
            self._journal.close_occurrences(orphans, now, "removed")
            log.info(
                "closed %d open occurrences of alarm points no longer configured", len(orphans)
            )
        for key, ov in self._journal.overrides().items():
            p = self._points.get(key)
            if p is None:
                continue
            p.restore_override(ov)
            if p.shelved_until is not None:
                self._schedule(p, p.shelved_until)
        self._pending_commit = True

    def _subscribe_inputs(self) -> None:
        wanted = {*self._cond_inputs, *self._supp_inputs, *self._group_inputs}
        if wanted:
            self._unsubscribe = self._db.subscribe(
                self._db.catalog.names_of(sorted(wanted)), self._on_changes, name="alarm-engine"
            )

    # ------------------------------------------------------------------ evaluation
    def _on_changes(self, batch: ChangeBatch) -> None:
        now = self._clock()
        ids = batch.ids.tolist()
        releases = self._begin_suppression(ids, now)
        cond = self._cond_inputs
        names = batch.catalog.names
        values = batch.vals.tolist()
        quality = batch.quality.tolist()
        reason = batch.reason.tolist()
        ts = batch.ts.tolist()
        valid = batch.valid.tolist()
        texts = batch.texts
        multi: dict[str, Point] = {}
        for row, tid in enumerate(ids):
            points = cond.get(tid)
            if points is None:
                continue
            value = values[row]
            if texts and tid in texts:
                value = texts[tid]
            for p in points:
                c = p.spec.condition
                if len(c.inputs) > 1:
                    multi[p.spec.key] = p
                    continue
                r = c.update(
                    self._ctx,
                    names[tid],
                    value,
                    quality[row],
                    reason[row],
                    valid[row],
                    ts[row],
                    now,
                    p.raw,
                )
                if r is not None:
                    self._set_raw(p, r, now)
        for p in multi.values():
            r = p.spec.condition.update(self._ctx, "", None, 0, 0, True, now, now, p.raw)
            if r is not None:
                self._set_raw(p, r, now)
        for p in releases:
            self._update_suppression(p, now)
        self._after(now)

    def _begin_suppression(self, ids: Sequence[int], now: float) -> list[Point]:
        """Re-evaluate the flood groups and suppressors that tag ids ``ids`` feed.

        Suppression that starts applies now, before the conditions of the batch (a gateway
        and its devices going offline together raise one alarm); the points whose suppression
        may end are returned and released after them (devices back together with their
        gateway raise nothing).
        """
        touched: dict[str, Point] = {}
        if self._group_inputs:
            groups = {p.spec.key: p for tid in ids for p in self._group_inputs.get(tid, ())}
            for g in groups.values():
                was = g.raw
                self._evaluate_point(g, now)
                if g.raw != was:
                    touched.update((m.spec.key, m) for m in self._members[g.spec.key])
        supp = self._supp_inputs
        if supp:
            for tid in ids:
                for p in supp.get(tid, ()):
                    touched[p.spec.key] = p
        releases: list[Point] = []
        for p in touched.values():
            if self._suppressed_now(p):
                self._update_suppression(p, now)
            elif p.suppressed:
                releases.append(p)
        return releases

    def _suppressed_now(self, p: Point) -> bool:
        """Return whether ``p`` is suppressed by design now: a lost flood group or its suppressor."""
        groups = self._groups_of.get(p.spec.key)
        if groups and any(g.raw for g in groups):
            return True
        s = p.spec.suppressor
        # an unknown suppressor keeps the current state, unless a group may have set it
        return s is not None and s.evaluate(self._ctx, p.suppressed and not groups)

    def _evaluate_point(self, p: Point, now: float) -> None:
        c = p.spec.condition
        name = c.inputs[0]
        tv = self._db.read(name)
        value: Any = tv.value
        if isinstance(value, bool | int):
            value = float(value)
        elif value is None:
            value = math.nan
        r = c.update(
            self._ctx,
            name,
            value,
            int(tv.quality),
            int(tv.reason),
            tv.value is not None,
            tv.ts,
            now,
            p.raw,
        )
        if r is not None:
            self._set_raw(p, r, now)

    def _evaluate_all(self, now: float) -> None:
        groups = [p for p in self._points.values() if p.spec.key in self._members]
        for p in groups:
            self._evaluate_point(p, now)
        for p in self._points.values():
            if p.spec.suppressor is not None or p.spec.key in self._groups_of:
                self._update_suppression(p, now)
        for p in self._points.values():
            if p.spec.key not in self._members:
                self._evaluate_point(p, now)

    def _set_raw(self, p: Point, raw: bool, now: float) -> None:
        if raw != p.raw:
            p.raw = raw
            p.raw_since = now
        self._check_delay(p, now)

    def _check_delay(self, p: Point, now: float) -> None:
        if p.raw == p.active:
            return
        delay = p.spec.on_delay_s if p.raw else p.spec.off_delay_s
        due = p.raw_since + delay
        if now >= due:
            self._set_condition(p, p.raw, now)
        else:
            self._schedule(p, due)

    def _schedule(self, p: Point, due: float) -> None:
        heapq.heappush(self._timers, (due, next(self._timer_seq), p))

    def _set_condition(self, p: Point, active: bool, now: float) -> None:
        p.active = active
        if p.hidden:
            return
        self._core(p, Trigger.ACTIVATE if active else Trigger.CLEAR, now)

    def _update_suppression(self, p: Point, now: float) -> None:
        on = self._suppressed_now(p)
        if on != p.suppressed:
            self._overlay(p, "suppressed", on, now, SYSTEM_USER, None)

    def tick(self, now: float | None = None) -> int:
        """Run due timers (delays, shelve expiry) and periodic checks (rate decay, stale).

        Returns the number of events emitted. Loop-thread only.
        """
        now = self._clock() if now is None else now
        before = self._emitted
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, p = heapq.heappop(timers)
            if self._points.get(p.spec.key) is not p:
                continue  # from before a reload
            if p.shelved_until is not None and now >= p.shelved_until:
                self._overlay(p, "shelved", False, now, SYSTEM_USER, "shelve expired")
            self._check_delay(p, now)
        for p in self._ticking:
            r = p.spec.condition.on_tick(self._ctx, now, p.raw)
            if r is not None:
                self._set_raw(p, r, now)
        self._after(now)
        return self._emitted - before

    # ------------------------------------------------------------------ state machine
    _emitted = 0

    def _core(
        self,
        p: Point,
        trigger: Trigger,
        now: float,
        user: str | None = None,
        comment: str | None = None,
    ) -> None:
        prev = p.state
        res = p.apply(trigger, now, user, comment)
        if res is None:
            return
        new_occ, closed_occ = res
        if closed_occ is not None:  # an unacknowledged occurrence superseded by a new one
            self._by_occurrence.pop(closed_occ, None)
            self._emit(
                EventKind.CLOSED,
                p,
                prev,
                now,
                None,
                "superseded by a new occurrence",
                closed_occ,
                snapshot=p.snapshot_closed(closed_occ),
            )
        if new_occ:
            opened = self._next_occ
            self._next_occ += 1
            p.open_occurrence(opened, now, self._ctx)
            self._by_occurrence[opened] = p
            self._emit(
                EventKind.RAISED,
                p,
                prev if closed_occ is None else AlarmState.NORMAL,
                now,
                None,
                None,
                opened,
            )
            return
        kind = {Trigger.ACK: EventKind.ACKED, Trigger.CLEAR: EventKind.CLEARED}[trigger]
        occ = p.occurrence
        self._emit(kind, p, prev, now, user, comment, occ)
        if p.state is AlarmState.NORMAL and occ is not None:
            self._by_occurrence.pop(occ, None)
            p.close_occurrence()

    def _overlay(
        self,
        p: Point,
        which: str,
        on: bool,
        now: float,
        user: str | None,
        comment: str | None,
        *,
        until: float | None = None,
    ) -> None:
        """Set or clear one of the hiding overlays (shelved / suppressed / out of service)."""
        prev = p.state
        was_hidden = p.hidden
        occ = p.occurrence
        p.set_overlay(which, on, user=user, reason=comment, until=until)
        if which == "shelved" and on and until is not None:
            self._schedule(p, until)
        kind = {
            ("shelved", True): EventKind.SHELVED,
            ("shelved", False): EventKind.UNSHELVED,
            ("suppressed", True): EventKind.SUPPRESSED,
            ("suppressed", False): EventKind.UNSUPPRESSED,
            ("out_of_service", True): EventKind.OUT_OF_SERVICE,
            ("out_of_service", False): EventKind.IN_SERVICE,
        }[(which, on)]
        if p.hidden and not was_hidden and occ is not None:
            # hiding ends the occurrence: the event carries it, the journal closes it
            self._by_occurrence.pop(occ, None)
            self._emit(kind, p, prev, now, user, comment, occ)
            p.close_occurrence()
            return
        self._emit(kind, p, prev, now, user, comment, occ if p.state in ANNUNCIATED else None)
        if was_hidden and not p.hidden and p.active:
            if which == "suppressed" and p.spec.on_delay_s > 0:
                # released from suppression by design: the condition must persist for the
                # on-delay again (devices behind a gateway come back a poll after it)
                p.active = False
                p.raw_since = now
                self._check_delay(p, now)
            else:
                self._core(p, Trigger.ACTIVATE, now)

    def _emit(
        self,
        kind: EventKind,
        p: Point,
        prev: AlarmState,
        now: float,
        user: str | None,
        comment: str | None,
        occurrence: int | None,
        *,
        snapshot: Alarm | None = None,
    ) -> None:
        event = AlarmEvent(kind, snapshot or p.snapshot(), now, prev, user, comment, occurrence)
        self._emitted += 1
        self._tally.move(p.spec.area, prev, event.alarm.state)
        self._journal.record(event)
        self._pending_commit = True
        for cb in tuple(self._subscribers):
            try:
                result = cb(event)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._async_calls.add(task)
                    task.add_done_callback(self._async_done)
            except Exception:
                log.exception(
                    "alarm event subscriber %r failed on %s %s", cb, kind.value, p.spec.key
                )

    def _async_done(self, task: asyncio.Future[Any]) -> None:
        self._async_calls.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("async alarm event subscriber failed", exc_info=exc)

    def _after(self, now: float) -> None:
        if self._pending_commit:
            self._journal.commit()
            self._pending_commit = False
            self._publish_counts()

    # ------------------------------------------------------------------ counts
    def counts(self) -> dict[str, int]:
        """Return ``{"active": n, "unacked": n, "shelved": n, "<area>.active": n, ...}``."""
        return self._tally.as_dict()

    def _publish_counts(self) -> None:
        counts = self._tally.as_dict()
        if counts == self._counts:
            return
        names = set(counts) | set(self._counts)
        self._counts = counts
        for n in names:
            tag = f"alarms.{n}"
            if tag in self._db:
                self._db.update(tag, counts.get(n, 0))

    # ------------------------------------------------------------------ queries
    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event)`` for every alarm event; return the unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def active(
        self, filter: AlarmFilter | None = None, *, include_hidden: bool = False
    ) -> list[Alarm]:
        """Return alarms in the alarm list (unacked, acked, rtn-unacked), newest first.

        With ``include_hidden`` also shelved, suppressed and out-of-service points.
        """
        out = []
        for p in self._points.values():
            s = p.state
            if s is AlarmState.NORMAL or (not include_hidden and s not in ANNUNCIATED):
                continue
            a = p.snapshot()
            if filter is None or filter.matches(a):
                out.append(a)
        out.sort(key=lambda a: (-(a.raised_ts or 0.0), a.key))
        return out

    def points(self, filter: AlarmFilter | None = None) -> list[Alarm]:
        """Return every alarm point (normal ones too), in configuration order."""
        snaps = (p.snapshot() for p in self._points.values())
        return [a for a in snaps if filter is None or filter.matches(a)]

    def get(self, ref: int | str) -> Alarm:
        """Return the alarm with occurrence id or key ``ref``; ``KeyError`` if none."""
        return self._point(ref).snapshot()

    def _point(self, ref: int | str) -> Point:
        if isinstance(ref, int) and not isinstance(ref, bool):
            p = self._by_occurrence.get(ref)
            if p is None:
                raise KeyError(f"no open alarm occurrence {ref}")
            return p
        p = self._points.get(str(ref))
        if p is None:
            raise KeyError(f"unknown alarm {ref!r}")
        return p

    # ------------------------------------------------------------------ operator actions
    @staticmethod
    def _check_user(user: str) -> None:
        if not isinstance(user, str) or not user.strip():
            raise ValueError("an alarm action needs the user who takes it")

    def ack(self, target: AckTarget, user: str, comment: str | None = None) -> list[Alarm]:
        """Acknowledge alarms; return the ones acknowledged by this call.

        ``target``: an occurrence id (acks exactly that occurrence, nothing if it is gone
        or already acked), a key (its current occurrence), an ``AlarmFilter`` (every
        unacknowledged alarm matching) or an iterable of ids/keys. Unknown keys raise
        ``KeyError``; ``user`` is required.
        """
        self._check_user(user)
        now = self._clock()
        if isinstance(target, AlarmFilter):
            points = [
                p for p in self._points.values() if p.unacked and target.matches(p.snapshot())
            ]
        else:
            refs = [target] if isinstance(target, int | str) else list(target)
            points = []
            for ref in refs:
                if isinstance(ref, int) and not isinstance(ref, bool):
                    p = self._by_occurrence.get(ref)
                    if p is not None:
                        points.append(p)
                else:
                    points.append(self._point(ref))
        done = []
        for p in dict.fromkeys(points):
            if not p.unacked:
                continue
            self._core(p, Trigger.ACK, now, user, comment)
            done.append(p.snapshot())
        self._after(now)
        return done

    def shelve(self, ref: int | str, user: str, duration_s: float, reason: str) -> Alarm:
        """Shelve an alarm point for ``duration_s`` with a reason; it returns by itself at expiry."""
        self._check_user(user)
        if not (isinstance(duration_s, int | float) and 0 < duration_s < math.inf):
            raise ValueError(
                f"shelve duration must be a positive number of seconds, got {duration_s!r}"
            )
        if not reason or not str(reason).strip():
            raise ValueError("shelving needs a reason")
        p = self._point(ref)
        now = self._clock()
        self._overlay(p, "shelved", True, now, user, reason, until=now + float(duration_s))
        self._after(now)
        return p.snapshot()

    def unshelve(self, ref: int | str, user: str, comment: str | None = None) -> Alarm:
        """End shelving now (an active condition is raised again as a new occurrence)."""
        self._check_user(user)
        p = self._point(ref)
        now = self._clock()
        if p.shelved_until is not None:
            self._overlay(p, "shelved", False, now, user, comment)
            self._after(now)
        return p.snapshot()

    def set_out_of_service(
        self, ref: int | str, user: str, on: bool, reason: str | None = None
    ) -> Alarm:
        """Take an alarm point out of service (maintenance) or return it to service."""
        self._check_user(user)
        if on and (not reason or not str(reason).strip()):
            raise ValueError("taking an alarm out of service needs a reason")
        p = self._point(ref)
        now = self._clock()
        if p.out_of_service != on:
            self._overlay(p, "out_of_service", on, now, user, reason)
            self._after(now)
        return p.snapshot()
