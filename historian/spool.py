"""Store-and-forward: keep batches on disk while the backend is down and replay them in order.

``SpoolingHistorian`` wraps any backend. A ``write`` that fails with ``BackendUnavailable`` or
``OSError`` (connection refused, timeout, 5xx) is appended to ``<spool_dir>/spool.sqlite`` (a
SQLite queue, ``synchronous=FULL``: a committed batch survives a power cut). While the spool
holds anything, new batches go behind it so order is kept. Replay runs from a retry thread with
exponential backoff (``start()``), from ``drain()``, and from ``write`` once the backoff expired;
after a restart the spool file is still there and ``start()`` replays it.

Delivery is at-least-once: a crash between a successful backend write and the spool delete
replays that batch again, which is harmless because a sample with the same tag and time
replaces the stored one in every backend.

``max_points`` is an alarm threshold, not a cap: past it ``spool_full`` turns true (the runtime
raises ``historian.spool_full``) but batches are still kept, so nothing is lost while the disk
lasts. Reads go straight to the backend (spooled samples are not visible until replayed).

``start()`` first runs the backend's ``connect()`` when it has one (the InfluxDB v1 backend
checks server, credentials and database there): a configuration error is raised at start-up, a
server that does not answer only turns ``backend_ok`` false until it does.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from historian.base import (
    AggFn,
    AggSeries,
    BackendUnavailable,
    Historian,
    OnTime,
    Sample,
    on_time_many,
)
from historian.buckets import Buckets
from historian.counter import DeltaBucket
from tags.model import Quality, Reason

log = logging.getLogger(__name__)

RETRYABLE = (BackendUnavailable, OSError)


def encode(batch: Sequence[Sample]) -> str:
    """Return a batch as JSON text (floats round-trip exactly)."""
    return json.dumps([[s.tag, s.ts, s.value, int(s.quality), int(s.reason)] for s in batch])


def decode(text: str) -> list[Sample]:
    """Return the samples of ``encode(batch)``."""
    return [Sample(t, ts, v, Quality(q), Reason(r)) for t, ts, v, q, r in json.loads(text)]


class SpoolingHistorian:
    """Wrap ``backend`` with a durable on-disk spool (see the module docstring)."""

    def __init__(
        self,
        backend: Historian,
        spool_dir: str | Path,
        max_points: int = 5_000_000,
        *,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 60.0,
        replay_points: int = 20_000,
    ) -> None:
        self.backend = backend
        self.max_points = max_points
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.replay_points = replay_points
        self.spool_path = Path(spool_dir) / "spool.sqlite"
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._con = sqlite3.connect(
            str(self.spool_path), check_same_thread=False, isolation_level=None
        )
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=FULL")
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "n INTEGER NOT NULL, payload TEXT NOT NULL)"
        )
        self._points = int(
            self._con.execute("SELECT coalesce(sum(n), 0) FROM batches").fetchone()[0]
        )
        self._backoff_s = retry_initial_s
        self._next_try = 0.0
        self._backend_ok = self._points == 0
        self._full_logged = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self._points:
            log.warning(
                "%s: %d points spooled from before, replaying", self.spool_path, self._points
            )

    # -- status -----------------------------------------------------------------------------------

    @property
    def spool_points(self) -> int:
        """Points waiting in the spool."""
        return self._points

    @property
    def backend_ok(self) -> bool:
        """False from a failed write until the spool has been replayed."""
        return self._backend_ok

    @property
    def spool_full(self) -> bool:
        """True while the spool holds ``max_points`` or more."""
        return self._points >= self.max_points

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Check the backend, then start the retry thread (it replays a spool left from before).

        The check is the backend's ``connect()``, if it has one (InfluxDB v1: server, credentials,
        database). A backend that does not answer is logged as an error naming it and turns
        ``backend_ok`` false; writes are spooled and the retry thread checks again with backoff.
        Any other ``HistorianError`` (not InfluxDB, credentials refused, database missing and not
        creatable) is raised: the configuration is wrong, and retrying would not help.
        """
        if self._thread is not None:
            return
        if self._check_backend(at_start=True) is False:
            self._schedule_retry()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="historian-spool", daemon=True)
        self._thread.start()
        self._wake.set()

    def _check_backend(self, *, at_start: bool = False) -> bool | None:
        """Run the backend's ``connect()``; return None if it has none, else whether it answered."""
        connect = getattr(self.backend, "connect", None)
        if connect is None:
            return None
        try:
            connect()
        except RETRYABLE as exc:
            if at_start:
                log.error("historian backend not reachable, spooling until it answers: %s", exc)
            else:
                log.info("historian backend still not reachable: %s", exc)
            self._backend_ok = False
            return False
        with self._lock:
            if not self._points and not self._backend_ok:
                log.warning("historian backend reachable again")
                self._backend_ok = True
                self._backoff_s = self.retry_initial_s
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            timeout = None
            if self._points or not self._backend_ok:
                timeout = max(0.0, self._next_try - time.monotonic())
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                break
            if time.monotonic() < self._next_try:
                continue
            try:
                if self._points:
                    self.drain()
                elif not self._backend_ok:
                    checked = self._check_backend()
                    if checked is False:
                        self._schedule_retry()
                    elif checked is None:  # nothing to check and nothing spooled
                        self._backend_ok = True
            except Exception:  # a bug, bad data or a refusal must not kill the retry loop
                log.exception("%s: replay failed", self.spool_path)
                self._schedule_retry()

    def close(self) -> None:
        """Stop the retry thread, close the spool file and the backend (the spool persists)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            self._con.close()
            self.backend.close()

    # -- write path -------------------------------------------------------------------------------

    def write(self, batch: Sequence[Sample]) -> None:
        """Write through to the backend, or spool ``batch`` if the backend is down."""
        if not batch:
            return
        with self._lock:
            if not self._points:
                try:
                    self.backend.write(batch)
                    self._backend_ok = True
                    return
                except RETRYABLE as exc:
                    log.warning("historian backend down, spooling: %s", exc)
                    self._backend_ok = False
                    self._schedule_retry()
            self._append(batch)
            due = time.monotonic() >= self._next_try
        if due:
            self.drain()
        else:
            self._wake.set()

    def _append(self, batch: Sequence[Sample]) -> None:
        self._con.execute(
            "INSERT INTO batches (n, payload) VALUES (?, ?)", (len(batch), encode(batch))
        )
        self._points += len(batch)
        if self.spool_full and not self._full_logged:
            log.error(
                "%s: spool holds %d points (limit %d)",
                self.spool_path,
                self._points,
                self.max_points,
            )
            self._full_logged = True

    def _schedule_retry(self) -> None:
        self._next_try = time.monotonic() + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, self.retry_max_s)

    def drain(self) -> bool:
        """Replay the spool oldest first; return True when it is empty.

        On a retryable failure the rest stays spooled and the next try is scheduled with
        backoff. Safe to call from any thread.
        """
        with self._lock:
            while self._points:
                rows: list[tuple[int, int, str]] = []
                total = 0
                for bid, n, payload in self._con.execute(
                    "SELECT id, n, payload FROM batches ORDER BY id"
                ):
                    if rows and total + n > self.replay_points:
                        break
                    rows.append((bid, n, payload))
                    total += n
                samples = [s for _, _, payload in rows for s in decode(payload)]
                try:
                    self.backend.write(samples)
                except RETRYABLE as exc:
                    log.info(
                        "historian replay failed, %d points still spooled: %s", self._points, exc
                    )
                    self._backend_ok = False
                    self._schedule_retry()
                    return False
                self._con.execute("DELETE FROM batches WHERE id <= ?", (rows[-1][0],))
                self._points -= total
            if not self._backend_ok:
                log.warning("historian backend back, spool replayed")
            self._backend_ok = True
            self._full_logged = False
            self._backoff_s = self.retry_initial_s
            self._next_try = 0.0
            return True

    # -- reads and the rest of the interface go to the backend -------------------------------------

    def last(self, tags: Iterable[str]) -> dict[str, Sample]:
        """Return the newest stored sample of each tag (spooled ones not included)."""
        return self.backend.last(tags)

    def value_at(self, tag: str, t: float, *, include_bad: bool = True) -> Sample | None:
        """See ``Historian.value_at``."""
        return self.backend.value_at(tag, t, include_bad=include_bad)

    def query_raw(
        self, tag: str, start: float, end: float, *, include_bad: bool = True
    ) -> list[Sample]:
        """See ``Historian.query_raw``."""
        return self.backend.query_raw(tag, start, end, include_bad=include_bad)

    def query_agg(
        self,
        tags: Iterable[str],
        start: float,
        end: float,
        every_s: float,
        fn: AggFn | str,
        *,
        include_bad: bool = False,
    ) -> dict[str, AggSeries]:
        """See ``Historian.query_agg``."""
        return self.backend.query_agg(tags, start, end, every_s, fn, include_bad=include_bad)

    def on_time(self, tag: str, start: float, end: float) -> float:
        """See ``Historian.on_time``."""
        return self.backend.on_time(tag, start, end)

    def on_time_detail(self, tag: str, start: float, end: float) -> OnTime:
        """See ``Historian.on_time_detail``."""
        return self.backend.on_time_detail(tag, start, end)

    def on_time_many(self, tags: Iterable[str], start: float, end: float) -> dict[str, OnTime]:
        """See ``historian.base.on_time_many`` (the backend's bulk query when it has one)."""
        return on_time_many(self.backend, tags, start, end)

    def delta(self, tag: str, start: float, end: float, *, rollover: float | None = None) -> float:
        """See ``Historian.delta``."""
        return self.backend.delta(tag, start, end, rollover=rollover)

    def delta_buckets(
        self,
        tag: str,
        buckets: Buckets,
        *,
        rollover: float | None = None,
        max_gap_s: float | None = None,
    ) -> list[DeltaBucket]:
        """See ``Historian.delta_buckets``."""
        return self.backend.delta_buckets(tag, buckets, rollover=rollover, max_gap_s=max_gap_s)

    def record_replacement(self, tag: str, ts: float, old_final: float, new_initial: float) -> None:
        """See ``Historian.record_replacement`` (not spooled: it is an operator action)."""
        self.backend.record_replacement(tag, ts, old_final, new_initial)
