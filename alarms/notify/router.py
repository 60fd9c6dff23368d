"""Route alarm events to the on-call roster: windows, escalation, rate limit, consolidation, retries.

Threading: loop-thread only. ``handle(event)`` (an engine subscriber) only updates state
and wakes the router's task; all sending happens in ``run_due(now)``, which the task
calls and tests call with explicit times, so every timing rule is testable without
waiting.

Rules:

* a raised alarm goes to level 0 of every roster entry whose priorities, area globs and
  time windows (site time zone) match at the time it is raised;
* while it stays unacknowledged, each ``escalation_min`` another level of that entry is
  notified (``escalated``, also written to the journal); an ack, or the alarm becoming
  normal, shelved, suppressed or out of service stops escalation and drops notices not
  sent yet;
* per recipient, the first notice goes out at once; later ones are held for
  ``consolidate_s`` after the previous message and go out together as one message; the
  rate limit (``max_messages`` per ``per_s``) holds messages further, merging everything
  held into the next one, so nothing is lost;
* each message goes to every address the recipient has (e-mail, SMS, webhook); a failed
  delivery is retried with exponential backoff up to ``retry.attempts`` and every
  attempt is journaled in the ``deliveries`` table.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import fnmatch
import logging
import math
import time
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from alarms.journal import AlarmJournal
from alarms.model import ANNUNCIATED, Alarm, AlarmEvent, AlarmState, EventKind
from alarms.notifications import DAYS, NotificationsConfig, RecipientConfig, RosterEntry, TimeWindow
from alarms.notify.base import DeliveryError, Message, Notifier

__all__ = ["Router", "in_window"]

log = logging.getLogger(__name__)

PRIORITY_NAMES = {1: "P1 critical", 2: "P2 high", 3: "P3 medium", 4: "P4 low"}


def in_window(entry: RosterEntry, local: datetime) -> bool:
    """Return True when ``local`` (site time) falls in one of the entry's windows (none: always)."""
    if not entry.windows:
        return True
    minute = local.hour * 60 + local.minute
    today = DAYS[local.weekday()]
    yesterday = DAYS[(local.weekday() - 1) % 7]
    for w in entry.windows:
        start, end = TimeWindow.minutes(w.start), TimeWindow.minutes(w.end)
        if start < end:
            if today in w.days and start <= minute < end:
                return True
        elif (today in w.days and minute >= start) or (yesterday in w.days and minute < end):
            # a window past midnight: the part after midnight belongs to the day before
            return True
    return False


@dataclass(slots=True)
class _Notice:
    reason: str  # raised, escalated, cleared
    alarm: dict[str, Any]
    occurrence: int
    priority: int
    ts: float


@dataclass(slots=True)
class _Outbox:
    pending: list[_Notice] = field(default_factory=list)
    last_sent: float = -math.inf
    sent_times: collections.deque[float] = field(default_factory=collections.deque)


@dataclass(slots=True)
class _Track:
    """Escalation state of one occurrence in one roster entry."""

    entry: RosterEntry
    level: int
    next_ts: float
    notified: set[str]


@dataclass(slots=True)
class _Delivery:
    id: int
    recipient: str
    notifier: Notifier
    address: str
    message: Message
    attempts: int = 0
    next_ts: float = 0.0


class Router:
    """Notification routing for one site (see the module docstring).

    ``notifiers`` maps notifier names to instances (``build_notifiers``); ``journal``
    records deliveries and escalations (optional); ``timezone`` is the site's, used when
    the config has none.
    """

    def __init__(
        self,
        config: NotificationsConfig,
        notifiers: Mapping[str, Notifier],
        *,
        journal: AlarmJournal | None = None,
        clock: Callable[[], float] = time.time,
        timezone: str = "UTC",
        tick_s: float = 1.0,
    ) -> None:
        self.config = config
        self._notifiers = dict(notifiers)
        self._journal = journal
        self._clock = clock
        self._tz = zoneinfo.ZoneInfo(config.timezone or timezone)
        self._tick_s = tick_s
        self._recipients: dict[str, RecipientConfig] = {r.name: r for r in config.recipients}
        for entry in config.roster:
            for level in entry.levels:
                for name in level:
                    if name not in self._recipients:
                        raise ValueError(
                            f"notifications: roster {entry.name!r} names unknown recipient {name!r}"
                        )
        self._by_kind: dict[str, Notifier] = {}
        for n in self._notifiers.values():
            self._by_kind.setdefault(n.kind, n)
        self._tracks: dict[int, list[_Track]] = {}
        self._last_event: dict[int, AlarmEvent] = {}
        self._outboxes: dict[str, _Outbox] = collections.defaultdict(_Outbox)
        self._retries: list[_Delivery] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the task that sends due messages (woken by events, else every ``tick_s``)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="alarm-router")

    async def stop(self) -> None:
        """Stop the task and close the notifiers (held messages are not sent)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for n in self._notifiers.values():
            await n.close()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._tick_s)
            self._wake.clear()
            try:
                await self.run_due()
            except Exception:
                log.exception("alarm router failed")

    # ------------------------------------------------------------------ events
    def handle(self, event: AlarmEvent) -> None:
        """Take an alarm event (engine subscriber; never blocks, never sends)."""
        occ = event.occurrence
        if occ is None:
            return
        a = event.alarm
        if event.kind is EventKind.RAISED:
            self._last_event[occ] = event
            self._raised(event, occ)
        elif (
            event.kind is EventKind.ACKED
            or a.state not in ANNUNCIATED
            or event.kind is EventKind.CLOSED
        ):
            self._stop_tracking(occ, event)
        elif event.kind is EventKind.CLEARED:
            if occ in self._last_event:
                self._last_event[occ] = event
            if self.config.notify_cleared:
                for track in self._tracks.get(occ, ()):
                    for name in track.notified:
                        self._enqueue(name, "cleared", event)
        self._wake.set()

    def adopt(self, alarms: Iterable[Alarm]) -> int:
        """Resume escalation of unacknowledged alarms after a restart; return how many.

        Their first notices went out before the restart, so nothing is sent now; the
        escalation clock runs from each alarm's ``raised_ts``.
        """
        count = 0
        for a in alarms:
            if a.occurrence is None or not a.unacked or a.occurrence in self._tracks:
                continue
            ts = a.raised_ts if a.raised_ts is not None else self._clock()
            event = AlarmEvent(EventKind.RAISED, a, ts, AlarmState.NORMAL, occurrence=a.occurrence)
            self._last_event[a.occurrence] = event
            self._raised(event, a.occurrence, notify=False)
            count += 1
        return count

    def _raised(self, event: AlarmEvent, occ: int, *, notify: bool = True) -> None:
        a = event.alarm
        local = datetime.fromtimestamp(event.ts, self._tz)
        tracks = []
        for entry in self.config.roster:
            if a.priority not in entry.priorities:
                continue
            if not any(fnmatch.fnmatchcase(a.area, p) for p in entry.areas):
                continue
            if not in_window(entry, local):
                continue
            esc_s = 60.0 * (entry.escalation_min or self.config.escalation_min)
            track = _Track(entry, 0, event.ts + esc_s, set())
            for name in entry.levels[0]:
                if notify:
                    self._enqueue(name, "raised", event)
                track.notified.add(name)
            tracks.append(track)
        if not tracks:
            log.info("alarm %s (P%d, %s): no roster entry on duty", a.key, a.priority, a.area)
        self._tracks[occ] = tracks

    def _stop_tracking(self, occ: int, event: AlarmEvent) -> None:
        self._last_event.pop(occ, None)
        if self._tracks.pop(occ, None) is None:
            return
        # notices not sent yet are no longer needed (someone acted on the alarm)
        for box in self._outboxes.values():
            box.pending = [n for n in box.pending if n.occurrence != occ or n.reason == "cleared"]

    def _enqueue(self, recipient: str, reason: str, event: AlarmEvent) -> None:
        a = event.alarm
        notice = _Notice(
            reason,
            {**a.to_json(), "reason": reason},
            event.occurrence or 0,
            a.priority,
            a.raised_ts or event.ts,
        )
        self._outboxes[recipient].pending.append(notice)

    # ------------------------------------------------------------------ sending
    async def run_due(self, now: float | None = None) -> int:
        """Escalate, send held messages whose time has come and retry failed deliveries.

        Returns the number of delivery attempts made. Loop-thread only.
        """
        now = self._clock() if now is None else now
        self._escalate(now)
        batch: list[_Delivery] = []
        for name, box in self._outboxes.items():
            if box.pending and now >= self._allowed_at(box, now):
                batch.extend(self._compose(name, box, now))
        due = [d for d in self._retries if d.next_ts <= now]
        self._retries = [d for d in self._retries if d.next_ts > now]
        batch.extend(due)
        if batch:
            await asyncio.gather(*(self._attempt(d, now) for d in batch))
        return len(batch)

    def next_due(self) -> float | None:
        """Return the earliest time something is due (for tests and diagnostics), or None."""
        times = [
            t.next_ts
            for ts in self._tracks.values()
            for t in ts
            if t.level + 1 < len(t.entry.levels)
        ]
        times += [d.next_ts for d in self._retries]
        times += [self._allowed_at(b, 0.0) for b in self._outboxes.values() if b.pending]
        return min(times, default=None)

    def _allowed_at(self, box: _Outbox, now: float) -> float:
        rl = self.config.rate_limit
        while box.sent_times and box.sent_times[0] <= now - rl.per_s:
            box.sent_times.popleft()
        at = box.last_sent + self.config.consolidate_s
        if len(box.sent_times) >= rl.max_messages:
            at = max(at, box.sent_times[len(box.sent_times) - rl.max_messages] + rl.per_s)
        return at

    def _escalate(self, now: float) -> None:
        for occ, tracks in self._tracks.items():
            for t in tracks:
                while t.next_ts <= now and t.level + 1 < len(t.entry.levels):
                    t.level += 1
                    names = t.entry.levels[t.level]
                    esc_s = 60.0 * (t.entry.escalation_min or self.config.escalation_min)
                    alarm_ts = t.next_ts
                    t.next_ts += esc_s
                    log.info(
                        "alarm occurrence %d unacknowledged: escalating to %s (level %d of %s)",
                        occ,
                        ", ".join(names),
                        t.level,
                        t.entry.name,
                    )
                    event = self._escalation_event(occ, t, names, alarm_ts)
                    if event is None:
                        continue
                    for name in names:
                        self._enqueue(name, "escalated", event)
                        t.notified.add(name)

    def _escalation_event(
        self, occ: int, t: _Track, names: list[str], ts: float
    ) -> AlarmEvent | None:
        last = self._last_event.get(occ)
        if last is None:
            return None
        event = dataclasses.replace(
            last,
            kind=EventKind.ESCALATED,
            ts=ts,
            previous=last.alarm.state,
            user=None,
            comment=f"escalated to level {t.level} of {t.entry.name}: {', '.join(names)}",
        )
        if self._journal is not None:
            self._journal.record(event)
            self._journal.commit()
        return event

    def _compose(self, name: str, box: _Outbox, now: float) -> list[_Delivery]:
        notices, box.pending = box.pending, []
        box.last_sent = now
        box.sent_times.append(now)
        message = self._message(notices)
        recipient = self._recipients[name]
        out = []
        for kind, address in (
            ("email", recipient.email),
            ("sms", recipient.phone),
            ("webhook", recipient.webhook),
        ):
            if address is None:
                continue
            notifier = (
                self._notifiers.get(address) if kind == "webhook" else self._by_kind.get(kind)
            )
            if notifier is None:
                log.error("recipient %s: no %s notifier configured", name, kind)
                continue
            addr = "" if kind == "webhook" else address
            did = 0
            if self._journal is not None:
                did = self._journal.add_delivery(
                    ts=now,
                    recipient=name,
                    notifier=notifier.name,
                    address=addr or kind,
                    occurrences=message.occurrences,
                    subject=message.subject,
                    body=message.body,
                )
            out.append(_Delivery(did, name, notifier, addr, message))
        return out

    def _message(self, notices: list[_Notice]) -> Message:
        notices = sorted(notices, key=lambda n: (n.priority, n.ts))
        lines = []
        for n in notices:
            a = n.alarm
            when = datetime.fromtimestamp(n.ts, self._tz).strftime("%d.%m %H:%M")
            tag = {
                "raised": "",
                "escalated": "ESCALATED, unacknowledged: ",
                "cleared": "cleared: ",
            }[n.reason]
            lines.append(f"{when} P{n.priority} {a['area']} {tag}{a['message']} [#{n.occurrence}]")
        first = notices[0]
        if len(notices) == 1:
            prefix = {"raised": "", "escalated": "ESCALATED ", "cleared": "CLEARED "}[first.reason]
            subject = f"{prefix}[P{first.priority}] {first.alarm['area']}: {first.alarm['message']}"
        else:
            areas = ", ".join(dict.fromkeys(n.alarm["area"] for n in notices))
            subject = f"{len(notices)} alarms, highest {PRIORITY_NAMES[first.priority]} ({areas})"
        body = "\n".join(lines)
        return Message(
            subject,
            body,
            tuple(n.alarm for n in notices),
            tuple(dict.fromkeys(n.occurrence for n in notices)),
        )

    async def _attempt(self, d: _Delivery, now: float) -> None:
        d.attempts += 1
        try:
            await d.notifier.send(d.address, d.message)
        except DeliveryError as exc:
            retry = self.config.retry
            if d.attempts < retry.attempts:
                d.next_ts = now + min(retry.backoff_s * 2 ** (d.attempts - 1), retry.max_backoff_s)
                self._retries.append(d)
                status, next_ts = "retry", d.next_ts
                log.warning("%s (attempt %d; retry at +%.0f s)", exc, d.attempts, d.next_ts - now)
            else:
                status, next_ts = "failed", None
                self.failed += 1
                log.error("%s (attempt %d; giving up)", exc, d.attempts)
            if self._journal is not None:
                self._journal.update_delivery(
                    d.id,
                    ts=now,
                    status=status,
                    attempts=d.attempts,
                    error=str(exc),
                    next_ts=next_ts,
                )
            return
        self.sent += 1
        if self._journal is not None:
            self._journal.update_delivery(d.id, ts=now, status="sent", attempts=d.attempts)
