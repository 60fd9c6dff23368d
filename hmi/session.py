"""One HMI browser session: its user, URL arguments, live tag and alarm feeds, and clean-up.

Threading: Bokeh sessions run on the same Tornado/asyncio loop as the TagDatabase, so bus
callbacks arrive on the loop thread but outside Bokeh's document lock. Every change to a
document is therefore scheduled with ``doc.add_next_tick_callback`` (or a timeout callback
when the last flush was under ``min_interval_s`` ago), and bursts are applied between
``doc.hold("combine")`` and ``doc.unhold()`` so one websocket message carries them.
Pending tag changes are merged per tag (``ChangeBatch.merge``): a slow browser gets the
latest value of each tag, never a growing queue. ``newest_data_ts`` (what the page's
"data N s old" is measured from, see :mod:`hmi.liveness`) is the newest of: the timestamps
of the good values each feed applied, and the last refresh of its tags that are good now
(a steady value within its deadband is refreshed by every poll without a change). Everything a session subscribed is
unsubscribed in ``doc.on_session_destroyed``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from bokeh.document import Document

from alarms.model import AlarmEvent
from scada.services.bundle import Services
from tags.arrays import IdArray
from tags.bus import ChangeBatch
from tags.model import Quality

__all__ = ["HmiAuth", "HmiSession", "HmiUser"]

log = logging.getLogger(__name__)

_GOOD = tuple(Quality).index(Quality.GOOD)  # its code in ChangeBatch.quality


@dataclass(frozen=True, slots=True)
class HmiUser:
    """The logged-in user as the HMI sees it.

    ``raw`` is the server's own user object (passed back to ``HmiAuth.may``);
    ``households`` and ``accounts`` are what a ``tenant`` may see; ``address`` is the
    client address of the request that opened the session (behind a trusted proxy: the
    client's, not the proxy's), ``""`` when unknown.
    """

    name: str
    role: str
    raw: Any = None
    households: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    address: str = ""

    @property
    def source(self) -> str:
        """The audit log's "from where" of this user's HMI actions: ``hmi <address>``."""
        return f"hmi {self.address}" if self.address else "hmi"

    @property
    def actor(self) -> Any:
        """The user as the server's services take it (its own user object when known)."""
        return self.raw if self.raw is not None else self


class HmiAuth(Protocol):
    """What the HMI needs from the server's authentication (issue 6)."""

    def user_of(self, cookies: dict[str, str], headers: dict[str, Any]) -> HmiUser | None:
        """Return the user of a session's HTTP request (cookie or bearer token), or None."""
        ...

    def may(self, user: HmiUser, action: str, target: str | None = None) -> bool:
        """Return True when ``user`` may do ``action`` (``command``, ``ack``, ``shelve``...)."""
        ...


@dataclass(slots=True)
class _Feed:
    """A coalescing tag feed of one session."""

    callback: Callable[[ChangeBatch], None]
    pending: ChangeBatch | None = None
    scheduled: bool = False
    last_flush: float = 0.0
    ids: IdArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    newest_ts: float | None = None  # epoch s of the newest good value applied


def newest_good_ts(batch: ChangeBatch) -> float | None:
    """Return the newest timestamp (epoch s) of the good values in ``batch``, None without any.

    Uncertain and bad rows do not count: a tag marked stale gets a fresh timestamp, but its
    value is as old as it was.
    """
    good = batch.valid & (batch.quality == _GOOD)
    if not good.any():
        return None
    return float(np.max(batch.ts[good]))


class HmiSession:
    """Context of one Bokeh session (one browser tab on one page).

    Build it at the start of ``make_document``; it registers its own clean-up with
    ``doc.on_session_destroyed``. Loop-thread only.
    """

    def __init__(
        self,
        doc: Document,
        services: Services,
        user: HmiUser | None,
        auth: HmiAuth | None,
        *,
        page: str,
        min_interval_s: float = 0.2,
    ) -> None:
        self.doc = doc
        self.services = services
        self.user = user
        self.auth = auth
        self.page = page
        self.min_interval_s = min_interval_s
        self._cleanups: list[Callable[[], None]] = []
        self._closed = False
        self._tasks: set[asyncio.Future[Any]] = set()
        self._feeds: list[_Feed] = []
        self.args: dict[str, str] = {}
        ctx = doc.session_context
        request = getattr(ctx, "request", None) if ctx is not None else None
        if request is not None:
            for key, values in (request.arguments or {}).items():
                if values:
                    v = values[-1]
                    self.args[key] = (
                        v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                    )
        doc.on_session_destroyed(self._on_destroyed)

    # ------------------------------------------------------------------ identity
    @property
    def user_name(self) -> str:
        """Name of the logged-in user (``""`` without one)."""
        return self.user.name if self.user is not None else ""

    @property
    def source(self) -> str:
        """The audit source of this session's actions: ``hmi <client address>``."""
        return self.user.source if self.user is not None else "hmi"

    @property
    def actor(self) -> Any:
        """The session's user as the server's services take it (None without one)."""
        return self.user.actor if self.user is not None else None

    def may(self, action: str, target: str | None = None) -> bool:
        """Return True when the session's user may do ``action`` on ``target``."""
        if self.user is None or self.auth is None:
            return False
        try:
            return bool(self.auth.may(self.user, action, target))
        except Exception:
            log.exception("permission check %s on %s failed", action, target)
            return False

    def arg(self, name: str, default: str | None = None) -> str | None:
        """Return the URL query argument ``name`` (the last one given), or ``default``."""
        return self.args.get(name, default)

    # ------------------------------------------------------------------ live feeds
    def subscribe(
        self, patterns: str | Sequence[str], callback: Callable[[ChangeBatch], None]
    ) -> Callable[[], None]:
        """Call ``callback(batch)`` inside a document callback with the session's tag changes.

        Changes arriving between two flushes are merged (latest value per tag); the callback
        runs with the document held, so all its model changes go out as one message.
        Returns a function that ends this feed early (the session ends it anyway).
        """
        if not patterns:
            return lambda: None
        db = self.services.db
        feed = _Feed(callback, ids=np.flatnonzero(db.catalog.mask(patterns)))
        self._feeds.append(feed)

        def on_batch(batch: ChangeBatch) -> None:
            if self._closed:
                return
            if feed.pending is None:
                feed.pending = batch
            else:
                feed.pending = feed.pending.merge(batch)
            if not feed.scheduled:
                feed.scheduled = True
                wait = feed.last_flush + self.min_interval_s - time.monotonic()
                if wait > 0:
                    self.doc.add_timeout_callback(lambda: self._flush(feed), int(wait * 1000) + 1)
                else:
                    self.doc.add_next_tick_callback(lambda: self._flush(feed))

        unsubscribe = self.services.db.subscribe(patterns, on_batch, name=f"hmi.{self.page}")
        self._cleanups.append(unsubscribe)

        def end() -> None:
            feed.pending = None
            if feed in self._feeds:
                self._feeds.remove(feed)
            unsubscribe()
            if unsubscribe in self._cleanups:
                self._cleanups.remove(unsubscribe)

        return end

    def _flush(self, feed: _Feed) -> None:
        feed.scheduled = False
        feed.last_flush = time.monotonic()
        batch, feed.pending = feed.pending, None
        if batch is None or self._closed:
            return
        newest = newest_good_ts(batch)
        if newest is not None and (feed.newest_ts is None or newest > feed.newest_ts):
            feed.newest_ts = newest
        self.doc.hold("combine")
        try:
            feed.callback(batch)
        except Exception:
            log.exception("HMI page %s failed to apply tag changes", self.page)
        finally:
            self.doc.unhold()

    @property
    def has_feed(self) -> bool:
        """True while the page has a live tag feed (``subscribe``)."""
        return bool(self._feeds)

    @property
    def newest_data_ts(self) -> float | None:
        """Epoch s of the page's newest good data (None: no feed, or no good value yet).

        The newest timestamp of the good values the feeds applied, or the last refresh of a
        feed's tag that is good now, whichever is later (module docstring).
        """
        db = self.services.db
        stamps = [f.newest_ts for f in self._feeds if f.newest_ts is not None]
        for feed in self._feeds:
            if feed.ids.size:
                quality = db.state_of(feed.ids)[0]
                seen = db.refreshed_of(feed.ids)[quality == _GOOD]
                if seen.size and (top := float(seen.max())) > 0.0:
                    stamps.append(top)
        return max(stamps) if stamps else None

    def on_alarm(self, callback: Callable[[list[AlarmEvent]], None]) -> None:
        """Call ``callback(events)`` inside a document callback with the alarm events since the last call."""
        engine = self.services.alarms
        if engine is None:
            return
        pending: list[AlarmEvent] = []

        def flush() -> None:
            events = list(pending)
            pending.clear()
            if not events or self._closed:
                return
            self.doc.hold("combine")
            try:
                callback(events)
            except Exception:
                log.exception("HMI page %s failed to apply alarm events", self.page)
            finally:
                self.doc.unhold()

        def on_event(event: AlarmEvent) -> None:
            if self._closed:
                return
            if not pending:
                self.doc.add_next_tick_callback(flush)
            pending.append(event)

        self._cleanups.append(engine.subscribe(on_event))

    def periodic(self, callback: Callable[[], None], period_s: float) -> None:
        """Run ``callback`` every ``period_s`` seconds while the session lives."""
        self.doc.add_periodic_callback(callback, int(period_s * 1000))

    def add_cleanup(self, cleanup: Callable[[], None]) -> None:
        """Call ``cleanup()`` when the session ends."""
        self._cleanups.append(cleanup)

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking call (historian query, report) in a worker thread and return its result."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def spawn(
        self, awaitable: Awaitable[Any], then: Callable[[Any, BaseException | None], None]
    ) -> None:
        """Run ``awaitable`` without holding the document lock, then ``then(result, error)`` with it.

        For slow service calls (commands, historian queries) started from a widget callback:
        other updates of the page go on while the call runs.
        """

        async def runner() -> None:
            result: Any = None
            error: BaseException | None = None
            try:
                result = await awaitable
            except Exception as exc:  # handed to ``then``, which shows it
                error = exc
            if not self._closed:
                self.doc.add_next_tick_callback(lambda: then(result, error))

        task = asyncio.ensure_future(runner())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def closed(self) -> bool:
        """True once the browser session has ended."""
        return self._closed

    def _on_destroyed(self, _ctx: Any) -> None:
        self.close()

    def close(self) -> None:
        """Unsubscribe everything (called when Bokeh destroys the session)."""
        if self._closed:
            return
        self._closed = True
        for cleanup in reversed(self._cleanups):
            try:
                cleanup()
            except Exception:
                log.exception("HMI session clean-up failed")
        self._cleanups.clear()
        log.debug("HMI session on %s for %s closed", self.page, self.user_name)
