"""The server watches itself: the ``system.*`` health tags (alarm-ready, source SYSTEM).

``HealthMonitor`` publishes, once a second on the loop thread:

- ``system.uptime_s``: seconds since the runtime started;
- ``system.loop_lag_ms``: the largest delay, over the last second, with which the event loop
  ran a probe timer due every 0.25 s (a blocked loop is the worst failure of a one-loop server);
- ``system.gc_pause_ms``: the longest pause of the cyclic garbage collector over the last
  second (every collection stops the event loop; a full one walks every object not set
  aside by ``configbase.bulk.settle_heap``), so a loop lag can be told from a GC pause;
- ``system.disk_free_mb`` / ``system.disk_low`` for the data dir's filesystem (every 10 s;
  thresholds in ``health:``, ``scada.config.site.HealthConfig``);
- ``system.backup_ok`` / ``system.backup_age_h`` from the ``BackupScheduler`` (no value without
  scheduled backups, or before the first backup exists);
- ``system.audit_chain_ok``: the audit log's hash chain (``scada.services.audit.verify_file``),
  checked in a worker thread at start, after each scheduled backup and every
  ``audit_check_h``; each check also requires the head seen by the previous one, so entries
  cut off the end while the runtime runs are found too (no value without an audit log);
- ``system.tls_days_left``: days until the served certificate's ``notAfter`` (read once at
  start: the server loads the certificate once; no value without TLS).

The periodic work is a few attribute reads, one ``statvfs`` every 10 s and ``TagDatabase``
updates with deadbands, so the tags change (and are historised) only when they move.
Loop-thread only, except the audit check, which runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import shutil
import sqlite3
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from tags.model import Source, TagDef, TagType

if TYPE_CHECKING:
    from scada.backup import BackupScheduler
    from scada.config.site import HealthConfig
    from scada.stalls import StallTracer
    from tags.database import TagDatabase

__all__ = [
    "GcPauseProbe",
    "HealthError",
    "HealthMonitor",
    "LoopLagProbe",
    "cert_not_after",
    "health_tag_defs",
]

log = logging.getLogger(__name__)

TICK_S = 1.0
PROBE_S = 0.25
SLOW_GC_S = 0.1  # a full collection longer than this is logged (it stalls the loop as long)
DISK_EVERY_S = 10.0


class HealthError(RuntimeError):
    """A health input cannot be read; the message names the file."""


def health_tag_defs() -> list[TagDef]:
    """Return the definitions of the ``system.*`` health tags (module docstring)."""

    def tag(name: str, type_: TagType, description: str, **kw: Any) -> TagDef:
        return TagDef(f"system.{name}", type_, source=Source.SYSTEM, description=description, **kw)

    return [
        tag("uptime_s", TagType.FLOAT, "seconds since the runtime started", unit="s",
            historize=False),
        tag("loop_lag_ms", TagType.FLOAT, "largest event-loop delay over the last second",
            unit="ms", deadband=5.0, history_deadband=50.0),
        tag("gc_pause_ms", TagType.FLOAT, "longest garbage-collector pause over the last second",
            unit="ms", deadband=5.0, history_deadband=50.0),
        tag("disk_free_mb", TagType.FLOAT, "free space on the data dir's filesystem", unit="MB",
            deadband=10.0),
        tag("disk_low", TagType.BOOL, "free space below health.disk_min_free_mb or _pct"),
        tag("backup_ok", TagType.BOOL, "the last scheduled backup succeeded"),
        tag("backup_age_h", TagType.FLOAT, "hours since the newest good backup", unit="h",
            deadband=0.1, historize=False),
        tag("audit_chain_ok", TagType.BOOL, "the audit log's hash chain is intact"),
        tag("tls_days_left", TagType.FLOAT, "days until the served TLS certificate expires",
            unit="d", deadband=0.1, historize=False),
    ]  # fmt: skip


def cert_not_after(path: str | Path) -> float:
    """Return the ``notAfter`` time (epoch seconds) of the PEM certificate file ``path``.

    Uses the standard library's certificate decoder (no extra dependency). Raises
    ``HealthError`` naming the file if it cannot be read or decoded.
    """
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        raise HealthError(f"{path}: this Python cannot decode certificates")
    try:
        info = decode(str(path))
        return float(ssl.cert_time_to_seconds(info["notAfter"]))
    except (ssl.SSLError, OSError, KeyError, ValueError) as exc:
        raise HealthError(f"{path}: cannot read the TLS certificate's expiry: {exc}") from None


class GcPauseProbe:
    """Time the cyclic garbage collector's passes (``gc.callbacks``), any thread.

    ``take_max_ms()`` returns the longest pass since the previous call and starts a new
    interval; ``full_passes`` counts generation-2 passes and ``full_max_ms`` the longest
    of them since start. A pass holds the GIL, so it pauses the event loop for as long.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started: float | None = None
        self._max_s = 0.0
        self.full_passes = 0
        self.full_max_ms = 0.0
        self.last_full: dict[str, Any] = {}

    def start(self) -> None:
        """Start timing (idempotent)."""
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        """Stop timing (idempotent)."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._clock()
            return
        if self._started is None:
            return
        took = self._clock() - self._started
        self._started = None
        self._max_s = max(self._max_s, took)
        if info.get("generation") == 2:
            self.full_passes += 1
            self.full_max_ms = max(self.full_max_ms, took * 1000.0)
            self.last_full = {"ms": round(took * 1000.0, 1), "collected": info.get("collected")}
            if took > SLOW_GC_S:
                log.warning(
                    "a full garbage collection paused the server %.0f ms (%s objects freed)",
                    took * 1000.0, info.get("collected"),
                )  # fmt: skip

    def take_max_ms(self) -> float:
        """Return the longest pass (ms) since the last call and reset it."""
        took, self._max_s = self._max_s, 0.0
        return took * 1000.0


class LoopLagProbe:
    """Measure how late the event loop runs a timer due every ``interval_s``.

    ``take_max_ms()`` returns the largest lag since the previous call and starts a new
    interval. A loop blocked for B seconds shows a lag of at least ``B - interval_s``.
    Loop-thread only.
    """

    def __init__(self, interval_s: float = PROBE_S) -> None:
        self.interval_s = interval_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._max_s = 0.0

    def start(self) -> None:
        """Start probing on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._schedule()

    def stop(self) -> None:
        """Stop probing (idempotent)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self) -> None:
        assert self._loop is not None
        due = self._loop.time() + self.interval_s
        self._handle = self._loop.call_at(due, self._fire, due)

    def _fire(self, due: float) -> None:
        assert self._loop is not None
        self._max_s = max(self._max_s, self._loop.time() - due)
        self._schedule()  # from now: a long block counts once, not as a burst of late timers

    def take_max_ms(self) -> float:
        """Return the largest lag (ms, >= 0) since the last call and reset it."""
        lag, self._max_s = self._max_s, 0.0
        return max(0.0, lag) * 1000.0


class HealthMonitor:
    """Publish the ``system.*`` health tags of one runtime (module docstring).

    ``config`` is a ``HealthConfig``, or a function returning the current one (a hot reload
    of the site then applies new thresholds at the next check); ``backup`` a ``BackupScheduler`` or None;
    ``tls_cert`` the served certificate file or None; ``audit_path`` the audit log (checked
    only while the file exists). Tags missing from ``db`` are skipped. ``start(scheduler)``
    (the runtime's one scheduler, :mod:`scada.scheduler`: the health tick is a job every
    ``tick_s``) and ``await stop()`` on the loop thread.
    """

    def __init__(
        self,
        db: TagDatabase,
        data_dir: str | Path,
        config: HealthConfig | Callable[[], HealthConfig],
        *,
        backup: BackupScheduler | None = None,
        tls_cert: str | Path | None = None,
        audit_path: str | Path | None = None,
        tick_s: float = TICK_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.data_dir = Path(data_dir)
        self._config: Callable[[], HealthConfig] = config if callable(config) else (lambda: config)
        self.backup = backup
        self.tls_cert = tls_cert
        self.audit_path = Path(audit_path) if audit_path is not None else None
        self.tick_s = tick_s
        self.clock = clock
        self.probe = LoopLagProbe()
        self.gc_probe = GcPauseProbe()
        self.stalls: StallTracer | None = None  # SCADA_STALL_TRACE_MS (scada.stalls)
        self.audit_result: dict[str, Any] | None = None  # the last check's verify_file result
        self._started_at = 0.0
        self._tls_not_after: float | None = None
        self._next_disk = 0.0
        self._next_audit = 0.0
        self._backup_runs = 0
        self._audit_head: tuple[int, str] | None = None
        self._audit_task: asyncio.Task[bool | None] | None = None
        self._job: Job | None = None
        self._disk_error: str | None = None

    async def start(self, scheduler: AsyncIOScheduler) -> None:
        """Read the certificate, publish the first values, start the probe and the tick job."""
        self._started_at = self.clock()
        if self.tls_cert is not None:
            try:
                self._tls_not_after = await asyncio.to_thread(cert_not_after, self.tls_cert)
            except HealthError as exc:
                log.error("system.tls_days_left has no value: %s", exc)
        self.probe.start()
        self.gc_probe.start()
        from scada.stalls import from_env

        self.stalls = from_env()
        if self.stalls is not None:
            self.stalls.start()
        if self.backup is not None:
            self._backup_runs = self.backup.runs
        self.publish(self.clock())
        self._job = scheduler.add_job(
            self._tick, IntervalTrigger(seconds=self.tick_s), id="system.health", name="health"
        )

    async def stop(self) -> None:
        """Stop the task and the probe (an audit check in progress finishes in its thread)."""
        self.probe.stop()
        self.gc_probe.stop()
        if self.stalls is not None:
            self.stalls.stop()
        if self._job is not None:
            with contextlib.suppress(JobLookupError):  # the scheduler was shut down first
                self._job.remove()
            self._job = None
        if self._audit_task is not None:
            self._audit_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._audit_task
        self._audit_task = None

    async def _tick(self) -> None:
        try:
            self.publish(self.clock())
        except Exception:  # a health bug must not end the monitoring for good
            log.exception("publishing the health tags failed")

    def _set(self, name: str, value: Any) -> None:
        if name in self.db:
            self.db.update(name, value)

    def publish(self, now: float) -> None:
        """Update the health tags; start an audit check when one is due. Loop thread only."""
        self._set("system.uptime_s", round(now - self._started_at, 1))
        self._set("system.loop_lag_ms", round(self.probe.take_max_ms(), 1))
        self._set("system.gc_pause_ms", round(self.gc_probe.take_max_ms(), 1))
        if now >= self._next_disk:
            self._next_disk = now + DISK_EVERY_S
            self.check_disk()
        b = self.backup
        if b is not None:
            if b.last_ok is not None:
                self._set("system.backup_ok", b.last_ok)
            elif b.last_backup_ts is not None:  # restarted: the newest backup kept was good
                self._set("system.backup_ok", True)
            if b.last_backup_ts is not None:
                self._set("system.backup_age_h", max(0.0, (now - b.last_backup_ts) / 3600.0))
        if self._tls_not_after is not None:
            self._set("system.tls_days_left", (self._tls_not_after - now) / 86400.0)
        backup_ran = b is not None and b.runs != self._backup_runs
        if (now >= self._next_audit or backup_ran) and self._audit_task is None:
            self._backup_runs = b.runs if b is not None else 0
            self._next_audit = now + self._config().audit_check_h * 3600.0
            self._audit_task = asyncio.create_task(self.check_audit(), name="health-audit")
            self._audit_task.add_done_callback(self._audit_done)

    def _audit_done(self, task: asyncio.Task[bool | None]) -> None:
        if self._audit_task is task:
            self._audit_task = None

    def check_disk(self) -> bool | None:
        """Publish the data dir's free space and ``disk_low``; return ``disk_low``."""
        try:
            usage = shutil.disk_usage(self.data_dir)
        except OSError as exc:
            if str(exc) != self._disk_error:  # once per distinct problem, not every 10 s
                log.error("cannot read the free space of %s: %s", self.data_dir, exc)
                self._disk_error = str(exc)
            return None
        self._disk_error = None
        free_mb = usage.free / 2**20
        free_pct = 100.0 * usage.free / usage.total if usage.total else 0.0
        cfg = self._config()
        low = free_mb < cfg.disk_min_free_mb or free_pct < cfg.disk_min_free_pct
        self._set("system.disk_free_mb", round(free_mb, 1))
        self._set("system.disk_low", low)
        return low

    async def check_audit(self) -> bool | None:
        """Verify the audit log's hash chain in a worker thread and publish the result.

        Returns ``audit_chain_ok`` (None without an audit log). The head seen by the last
        good check must still be there (entries cut off the end count as broken).
        """
        path = self.audit_path
        if path is None or not path.exists():
            return None
        from scada.services.audit import verify_file

        try:
            result = await asyncio.to_thread(verify_file, path, head=self._audit_head)
        except sqlite3.Error as exc:
            result = {"ok": False, "head": None, "broken_at": None, "reason": str(exc)}
        ok = bool(result["ok"])
        if ok and result.get("head"):
            self._audit_head = (result["head"]["seq"], result["head"]["hash"])
        elif not ok:
            log.error(
                "audit log %s: hash chain BROKEN at entry %s: %s",
                path, result.get("broken_at"), result.get("reason"),
            )  # fmt: skip
        self.audit_result = result
        self._set("system.audit_chain_ok", ok)
        return ok
