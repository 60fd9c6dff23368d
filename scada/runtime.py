"""The runtime: starts every part of a site in one asyncio loop and stops them in order.

Parts start in data-flow order (tag database, computed tags, simulator, drivers, historian)
and stop in reverse, so nothing publishes into a part that is already gone. Loop-thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Any

from scada.config import SiteConfig
from tags.computed import ComputedTags
from tags.database import TagDatabase
from tags.model import Quality, TagDef, iso

log = logging.getLogger(__name__)

STALE_CHECK_S = 1.0
PURGE_EVERY_S = 86400.0
ROLES = ("all", "collector", "central")


def system_tag_defs(site: SiteConfig) -> list[TagDef]:
    """Return the runtime's own tags: historian and system health, alarm counts (alarm-ready)."""
    from alarms.points import count_tag_defs
    from billing.tags import account_tag_defs
    from historian.status import status_tag_defs
    from scada.health import health_tag_defs

    return [
        *status_tag_defs(),
        *health_tag_defs(),
        *count_tag_defs(b.id for b in site.buildings),
        *account_tag_defs(site),
    ]


class Runtime:
    """Everything ``scada run`` runs for one site configuration.

    ``simulate`` overrides the config's ``simulate.enabled``. Files go under ``data_dir``.
    ``role`` (see ``scada.scaleout``): ``all`` runs everything here; ``collector`` runs the
    drivers (and simulator) of ``buildings`` (None: all) and publishes to ``redis_url``;
    ``central`` runs no drivers and is fed from Redis. ``writer.write(tag, value)`` is the
    write entry point in every role. ``backlog`` (a ``scada.scaleout.BacklogPolicy``) sets
    the collector's stream cap.
    """

    def __init__(
        self,
        site: SiteConfig,
        data_dir: str | Path,
        *,
        simulate: bool | None = None,
        speed: float | None = None,
        role: str = "all",
        buildings: list[str] | None = None,
        redis_url: str | None = None,
        node_id: str | None = None,
        serve: bool = False,
        host: str = "127.0.0.1",
        port: int = 8080,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        ws_batch_s: float | None = None,
        trusted_proxies: list[str] | None = None,
        backlog: Any = None,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        if role != "all" and not redis_url:
            raise ValueError(f"role {role} needs a Redis URL (--redis redis://host:6379/0)")
        if buildings is not None and role != "collector":
            raise ValueError("a buildings filter is only for the collector role")
        self.role = role
        self.data_dir = Path(data_dir)
        self.simulate = site.simulate.enabled if simulate is None else simulate
        self.speed = site.simulate.speed if speed is None else speed
        self.scaleout: Any = None
        defs = [*site.tag_defs(), *system_tag_defs(site)]
        bus = None
        if role == "collector":  # its buildings' devices only; publishes to Redis
            from scada.scaleout.roles import CollectorRole, filter_site

            site = filter_site(site, buildings)
            self.scaleout = CollectorRole(
                site, redis_url, self.data_dir, node_id=node_id, backlog=backlog
            )
            defs, bus = [*site.tag_defs(), *self.scaleout.tag_defs()], self.scaleout.bus
        elif role == "central":  # no drivers; fed from the building streams
            from scada.scaleout.roles import CentralRole

            self.scaleout = CentralRole(site, redis_url, node_id=node_id or "central-1")
            defs += self.scaleout.tag_defs()
            self.simulate = False
        self.site = site
        self.db = TagDatabase(defs, bus=bus)
        self.computed = ComputedTags(self.db)
        self.simulator: Any = None
        self.backfill_result: Any = None  # drivers.simulator.backfill.BackfillResult, if run
        self.drivers: Any = None
        self.historian: Any = None
        self.recorder: Any = None
        self.alarms: Any = None  # AlarmEngine (roles all and central)
        self.alarm_router: Any = None
        self.alarm_journal: Any = None
        self.writer: Any = None  # write(tag, value) -> WriteResult: drivers, or remote collectors
        self.serve = serve  # the HTTP server (scada.server): REST, websocket, HMI
        self.server_options: dict[str, Any] = {
            "host": host,
            "port": port,
            "tls_cert": tls_cert,
            "tls_key": tls_key,
        }
        if ws_batch_s is not None:
            if not 0.01 <= ws_batch_s <= 0.1:
                raise ValueError("the websocket batching step must be from 10 to 100 ms")
            self.server_options["ws_min_interval_s"] = ws_batch_s
        if trusted_proxies:
            from scada.server.proxy import TrustedProxies

            TrustedProxies(trusted_proxies)  # a bad address is a usage error, before start
            self.server_options["trusted_proxies"] = list(trusted_proxies)
        self.server: Any = None  # ScadaServer; it also sets auth, audit, commands, config_api
        self.backup_scheduler: Any = None
        self.health: Any = None  # scada.health.HealthMonitor (roles all and central)
        self.ledger: Any = None  # billing.ledger.Ledger (roles all and central)
        self.billing: Any = None  # billing.Billing facade for the API and HMI
        self.billing_scheduler: Any = None
        self.tenant_notices: Any = None  # billing.notices.TenantNotices
        self.notifiers: dict[str, Any] = {}  # name -> Notifier, shared by alarms and billing
        self._lock: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        """Start every part; raise if one cannot start (the parts already started are stopped)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        from scada.backup import DataDirLock

        self._lock = DataDirLock(self.data_dir)
        self._lock.acquire()  # one runtime per data dir; restore checks this lock
        try:
            self._init_memory_tags()
            self.computed.start()
            if self.simulate:
                await self._start_simulator()
            if self.role == "central":
                await self.scaleout.start(self.db)
                self.writer = self.scaleout.writer
            else:
                from drivers.manager import DriverManager

                self.drivers = DriverManager(self.site, self.db, stale_check_s=None)
                await self.drivers.start()
                self.writer = self.drivers
            if self.role == "collector":  # the central historises
                await self.scaleout.start(self.db, self.drivers.write)
            else:
                await self._start_historian()
                await self._start_alarms()
            self._tasks.append(
                asyncio.create_task(self._housekeeping(), name="runtime-housekeeping")
            )
            backup_cfg = getattr(self.site, "backup", None)
            if backup_cfg is not None and backup_cfg.enabled:
                from scada.backup import BackupScheduler

                self.backup_scheduler = BackupScheduler(
                    backup_cfg,
                    self.data_dir,
                    site_id=self.site.site.id,
                    tz=self.site.site.timezone,
                    config_files=self.site.source_files(),
                )
                self.backup_scheduler.start()
            if self.serve:
                await self._start_server()
            if self.role != "collector":
                await self._start_billing()
                await self._start_health()
        except BaseException:
            await self.stop()
            raise
        log.info("runtime started: %d tags, %d devices", len(self.db), len(self.site.devices))

    def _init_memory_tags(self) -> None:
        self.db.set_initial(self.site.initial_values())

    async def _start_simulator(self) -> None:
        """Start the simulator, first backfilling ``simulate.backfill_days`` of history if asked.

        The backfill runs only where history is kept (not in the collector role) and only into
        a historian that is empty or whose newest sample is older than the backfill start, so
        existing history is never overwritten or duplicated. The simulator then runs on from
        the backfilled state (counters stay monotonic across the boundary).
        """
        from drivers.simulator import Simulator

        days = self.site.simulate.backfill_days
        start_ts: float | None = None
        if days > 0 and self.role != "collector":
            from drivers.simulator.backfill import newest_sample_ts

            self._open_historian()
            begin = time.time() - days * 86400.0
            names = [d.name for d in self.db.definitions() if d.historize]
            try:
                newest = await asyncio.to_thread(newest_sample_ts, self.historian, names)
            except Exception:  # e.g. InfluxDB down: never risk writing over history
                log.exception("simulator backfill skipped: cannot read the newest sample")
                newest = math.inf
            if newest is None or newest < begin:
                start_ts = begin
            elif math.isfinite(newest):
                log.info(
                    "simulator backfill skipped: the historian has samples up to %s",
                    iso(newest),
                )
        self.simulator = Simulator(
            self.site, speed=self.speed, seed=self.site.simulate.seed, start_ts=start_ts
        )
        if start_ts is not None:
            from drivers.simulator.backfill import backfill

            try:
                self.backfill_result = r = await asyncio.to_thread(
                    backfill, self.simulator, self.db.definitions(), self.historian.write
                )
                log.info(
                    "simulator backfill: %d samples of %d tags from %s to %s in %.1f s",
                    r.samples, r.tags, iso(r.start_ts), iso(r.end_ts), r.elapsed_s,
                )  # fmt: skip
            except Exception:  # history is a convenience of the demo: run without it
                log.exception("simulator backfill failed; the simulator starts now without it")
                self.simulator = Simulator(
                    self.site, speed=self.speed, seed=self.site.simulate.seed
                )
        await self.simulator.start()

    def _open_historian(self) -> None:
        """Open the configured historian (once) and start its spool thread, if it has one."""
        if self.historian is not None:
            return
        from historian.factory import open_historian

        self.historian = open_historian(self.site.historian, self.data_dir)
        start = getattr(self.historian, "start", None)
        if start is not None:  # the spooling wrapper runs a retry thread
            start()

    async def _start_historian(self) -> None:
        from historian.recorder import Recorder

        cfg = self.site.historian
        self._open_historian()
        self.recorder = Recorder(
            self.db, self.historian, batch_size=cfg.batch_size, flush_s=cfg.flush_s
        )
        await self.recorder.start()

    async def _start_alarms(self) -> None:
        from alarms.engine import AlarmEngine
        from alarms.journal import AlarmJournal
        from alarms.notify.base import build_notifiers
        from alarms.notify.router import Router

        by_template: dict[str, list[str]] = {}
        for d in self.site.devices:
            by_template.setdefault(d.template, []).append(d.id)
        self.alarm_journal = AlarmJournal.in_data_dir(self.data_dir)
        cfg = self.site.notifications
        # One notifier object per configured notifier: alarms and tenant notices share them
        # (an SMS modem is one serial port).
        self.notifiers = build_notifiers(cfg.notifiers)
        if cfg.notifiers:
            self.alarm_router = Router(
                cfg,
                self.notifiers,
                journal=self.alarm_journal,
                timezone=self.site.site.timezone,
            )
        from billing.tags import alarm_rules as billing_alarm_rules

        rules = [*self.site.alarms, *billing_alarm_rules(self.site)]
        self.alarms = AlarmEngine(
            self.db,
            rules,
            self.alarm_journal,
            router=self.alarm_router,
            devices_by_template=by_template,
        )
        self.alarms.start()
        if self.alarm_router is not None:
            self.alarm_router.adopt(self.alarms.active())
            await self.alarm_router.start()

    async def _start_server(self) -> None:
        """Start the HTTP server (REST, websocket, HMI) and with it the command service."""
        from scada.server.http import ScadaServer

        self.server = ScadaServer(self, self.data_dir, **self.server_options)
        await self.server.start()

    async def _start_billing(self) -> None:
        """Open the ledger and start the billing schedules (readings, charges, allocation, reports).

        Automatic trips and closes go through the command service when the server runs (role
        check, read-back, audit); without a server, straight to the writer.
        """
        from billing.jobs import BillingScheduler
        from billing.ledger import Ledger
        from billing.prepaid import WriterRelayCommander

        commands = getattr(self, "commands", None)
        commander = (
            CommandRelayCommander(commands)
            if commands is not None
            else WriterRelayCommander(self.writer)
        )
        self.ledger = Ledger.in_data_dir(self.data_dir)
        self.billing_scheduler = BillingScheduler(
            self.site, self.db, self.historian, self.ledger, commander, self.data_dir
        )
        # One Billing for the API, the HMI and the schedules: one place serialises relay commands.
        self.billing = self.billing_scheduler.billing
        await self.billing_scheduler.start()
        from billing.notices import TenantNotices

        self.tenant_notices = TenantNotices(self.site, self.db, self.notifiers)
        self.tenant_notices.start()

    async def _start_health(self) -> None:
        """Start publishing the ``system.*`` health tags (``scada.health``)."""
        from scada.health import HealthMonitor
        from scada.services.audit import FILE_NAME

        self.health = HealthMonitor(
            self.db,
            self.data_dir,
            lambda: self.site.health,  # a hot reload may change the thresholds
            backup=self.backup_scheduler,
            tls_cert=self.server_options["tls_cert"] if self.serve else None,
            audit_path=self.data_dir / FILE_NAME,
        )
        await self.health.start()

    async def _housekeeping(self) -> None:
        """Mark stale tags, publish historian health (once a second), purge old history (daily)."""
        next_purge = time.time() + 60.0
        while True:
            now = time.time()
            if self.role != "central":  # the collectors mark staleness; they publish it
                self.db.check_stale(now)
            if self.recorder is not None:
                for name, value in self.recorder.status().items():
                    self.db.update(name, value)
                if now >= next_purge:
                    await self._purge_history(now)
                    next_purge = now + PURGE_EVERY_S
            await asyncio.sleep(STALE_CHECK_S)

    async def _purge_history(self, now: float) -> None:
        """Drop raw samples past the retention (rollups stay) on a worker thread."""
        days = self.site.historian.retention_days
        purge = getattr(self.historian, "purge", None)
        if days is None or purge is None:
            return
        try:
            removed = await asyncio.to_thread(purge, now - days * 86400.0)
            if removed:
                log.info(
                    "historian retention: purged %d raw samples older than %g days", removed, days
                )
        except Exception:
            log.exception("historian purge failed")

    async def stop(self) -> None:
        """Stop every started part in reverse order; safe to call twice."""
        if getattr(self, "server", None) is not None:
            try:
                await self.server.stop()
            except Exception:
                log.exception("stopping the server failed")
            self.server = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for part in (
            "health",
            "tenant_notices",
            "billing_scheduler",
            "backup_scheduler",
            "alarm_router",
            "alarms",
            "drivers",
            "simulator",
            "scaleout",
            "recorder",
        ):
            obj = getattr(self, part)
            if obj is not None:
                try:
                    await obj.stop()
                except Exception:
                    log.exception("stopping %s failed", part)
                setattr(self, part, None)
        self.computed.stop()
        for name, notifier in self.notifiers.items():
            try:
                await notifier.close()
            except Exception:
                log.exception("closing notifier %s failed", name)
        self.notifiers = {}
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None
        if self.alarm_journal is not None:
            self.alarm_journal.close()
            self.alarm_journal = None
        if self.historian is not None:
            self.historian.close()
            self.historian = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._stopped.set()

    def summary(self) -> dict[str, int]:
        """Return counts for the start-up line."""
        good = sum(1 for v in self.db.snapshot("*").values() if v.quality is Quality.GOOD)
        return {"tags": len(self.db), "good": good, "devices": len(self.site.devices)}


class CommandRelayCommander:
    """Billing's ``RelayCommander`` over the command service: automatic trips are audited commands."""

    def __init__(self, commands: Any) -> None:
        self.commands = commands

    async def set_relay(self, meter: str, closed: bool, reason: str) -> Any:
        """Select and operate ``meter`` (the relay tag) as the system user ``billing``."""
        from scada.services.auth import system_user
        from scada.services.commands import CommandError

        try:
            cmd = await self.commands.execute(
                system_user("billing"), meter, bool(closed), reason, source="billing"
            )
        except CommandError as exc:
            return _RelayOutcome(False, str(exc))
        return _RelayOutcome(cmd.state.value == "confirmed", cmd.message or cmd.state.value)


class _RelayOutcome:
    __slots__ = ("message", "ok")

    def __init__(self, ok: bool, message: str) -> None:
        self.ok = ok
        self.message = message
