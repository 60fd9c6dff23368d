"""The runtime: the composition root. It alone builds every part of a site, in one asyncio loop.

:class:`Runtime` builds each part once, from the parts it needs, so the start order is fixed
by construction: tag database and computed tags; historian; simulator; drivers (or a
central's remote writer); recorder; audit, users and auth; the command service (over the
plant's write path); alarm journal, notifiers, engine and the audited alarm operations;
billing (built with a relay commander over the command service: every automatic trip is an
audited command, there is no other path); backups, system health and the housekeeping jobs
on the one scheduler (:mod:`scada.scheduler`); config versions; and last the HTTP server,
given the typed :class:`~scada.services.bundle.Services` and the HMI pages (the runtime, not
the server, mounts the HMI). Parts stop in reverse.

Starting and applying a configuration are the same code: :meth:`Runtime.apply` sets the tag
definitions (site, system, alarm-count and account tags), restarts drivers and simulator
when channels, devices or templates changed, and reconfigures the alarm rules (the site's and
billing's), billing (accounts, tariffs, their tags) and tenant notices. The config service
(:class:`~scada.services.config_versions.ConfigManager`) calls it after validating a proposal.

Threading: loop-thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from configbase.bulk import paused_gc, settle_heap, thaw_heap
from i18n import set_site_language
from scada.config import SiteConfig
from scada.config.alarmsite import alarm_devices
from scada.scheduler import make_scheduler
from scada.services.alarm_ops import AlarmOps
from scada.services.audit import AuditLog
from scada.services.auth import Auth
from scada.services.bundle import Services
from scada.services.command_store import CommandStore
from scada.services.commands import CommandRelayCommander, CommandService
from scada.services.config_versions import ConfigManager, Plan, compare_sites
from scada.services.plant import Plant, Writer
from scada.services.users import UserStore
from tags.computed import ComputedTags
from tags.database import TagDatabase
from tags.model import TagDef, iso

if TYPE_CHECKING:
    from alarms.config import AlarmRule
    from alarms.engine import AlarmEngine
    from alarms.journal import AlarmJournal
    from alarms.notify.base import Notifier
    from alarms.notify.router import Router
    from billing.jobs import BillingScheduler
    from billing.ledger import Ledger
    from billing.notices import TenantNotices
    from billing.service import Billing
    from drivers.base import WriteResult
    from drivers.manager import DriverManager
    from drivers.simulator import Simulator
    from drivers.simulator.backfill import BackfillResult
    from historian.base import Historian
    from historian.recorder import Recorder
    from scada.backup import BackupScheduler, DataDirLock
    from scada.health import HealthMonitor
    from scada.scaleout.backlog import BacklogPolicy
    from scada.scaleout.roles import CentralRole, CollectorRole
    from scada.server.http import ScadaServer
    from scada.services.report_delivery import ReportDelivery

log = logging.getLogger(__name__)

STALE_CHECK_S = 1.0
DELIVERY_INTERVAL_S = 0.02  # tag changes go to subscribers at most 50 times a second
PURGE_EVERY_S = 86400.0
ROLES = ("all", "collector", "central")


def system_tag_defs(site: SiteConfig) -> list[TagDef]:
    """Return the runtime's own tags: historian and system health, alarm counts, accounts."""
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


def alarm_rules(site: SiteConfig) -> list[AlarmRule]:
    """Return every alarm rule of a site: its own and billing's (prepaid levels, overload)."""
    from billing.tags import alarm_rules as billing_alarm_rules

    return [*site.alarms, *billing_alarm_rules(site)]


def devices_by_template(site: SiteConfig) -> dict[str, list[str]]:
    """Return ``{template: [device ids]}`` (alarm rules target templates)."""
    out: dict[str, list[str]] = {}
    for d in site.devices:
        out.setdefault(d.template, []).append(d.id)
    return out


class Runtime:
    """Everything ``scada run`` runs for one site configuration.

    ``simulate`` overrides the config's ``simulate.enabled``. Files go under ``data_dir``.
    ``role`` (see ``scada.scaleout``): ``all`` runs everything here; ``collector`` runs the
    drivers (and simulator) of ``buildings`` (None: all) and publishes to ``redis_url``;
    ``central`` runs no drivers and is fed from Redis. ``backlog`` sets the collector's
    stream cap. ``serve`` starts the HTTP server (REST, websocket, HMI) on ``host:port``.
    After :meth:`start`, :attr:`services` is the typed bundle handed to the server and HMI.
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
        backlog: BacklogPolicy | None = None,
        select_timeout_s: float = 30.0,
    ) -> None:
        from scada.server.proxy import TrustedProxies

        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        if role != "all" and not redis_url:
            raise ValueError(f"role {role} needs a Redis URL (--redis redis://host:6379/0)")
        if buildings is not None and role != "collector":
            raise ValueError("a buildings filter is only for the collector role")
        if ws_batch_s is not None and not 0.01 <= ws_batch_s <= 0.1:
            raise ValueError("the websocket batching step must be from 10 to 100 ms")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("give both --tls-cert and --tls-key, or neither")
        self.role = role
        self.data_dir = Path(data_dir)
        self.simulate = site.simulate.enabled if simulate is None else simulate
        self.scaleout: CollectorRole | CentralRole | None = None
        self.collector: CollectorRole | None = None
        self.central: CentralRole | None = None
        bus = None
        extra_defs: list[TagDef] = []
        if role == "collector":  # its buildings' devices only; publishes to Redis
            from scada.scaleout.roles import CollectorRole, filter_site

            assert redis_url is not None
            site = filter_site(site, buildings)
            self.collector = CollectorRole(
                site, redis_url, self.data_dir, node_id=node_id, backlog=backlog
            )
            self.scaleout = self.collector
            extra_defs, bus = self.collector.tag_defs(), self.collector.bus
        elif role == "central":  # no drivers; fed from the building streams
            from scada.scaleout.roles import CentralRole

            assert redis_url is not None
            self.central = CentralRole(site, redis_url, node_id=node_id or "central-1")
            self.scaleout = self.central
            extra_defs = self.central.tag_defs()
            self.simulate = False
        self._extra_defs = extra_defs
        db = TagDatabase(self._tag_defs(site), bus=bus)
        db.min_delivery_interval_s = DELIVERY_INTERVAL_S
        self.plant = Plant(site, db, role, speed=site.simulate.speed if speed is None else speed)
        self.computed = ComputedTags(db)
        self.scheduler = make_scheduler(site.site.timezone)
        self.serve = serve
        self.host, self.port, self.tls_cert, self.tls_key = host, port, tls_cert, tls_key
        self.ws_batch_s = ws_batch_s
        self.proxies = TrustedProxies(trusted_proxies or ())  # a bad address: error now
        self.select_timeout_s = select_timeout_s
        # the parts, built by start() in this order
        self.historian: Historian | None = None
        self.backfill_result: BackfillResult | None = None
        self.recorder: Recorder | None = None
        self.audit: AuditLog | None = None
        self.users: UserStore | None = None
        self.auth: Auth | None = None
        self.commands: CommandService | None = None
        self.alarm_journal: AlarmJournal | None = None
        self.notifiers: dict[str, Notifier] = {}  # shared by alarms and tenant notices
        self.alarm_router: Router | None = None
        self.alarms: AlarmEngine | None = None
        self.alarm_ops: AlarmOps | None = None
        self.ledger: Ledger | None = None
        self.billing_scheduler: BillingScheduler | None = None
        self.report_delivery: ReportDelivery | None = None  # e-mailed reports, counter days
        self.tenant_notices: TenantNotices | None = None
        self.backup_scheduler: BackupScheduler | None = None
        self.health: HealthMonitor | None = None
        self.config: ConfigManager | None = None
        self.services: Services | None = None
        self.server: ScadaServer | None = None
        self._lock: DataDirLock | None = None
        self._next_purge = 0.0
        self._stopped = asyncio.Event()

    # ------------------------------------------------------------------ the plant
    @property
    def site(self) -> SiteConfig:
        """The running site configuration."""
        return self.plant.site

    @property
    def db(self) -> TagDatabase:
        return self.plant.db

    @property
    def drivers(self) -> DriverManager | None:
        return self.plant.drivers

    @property
    def simulator(self) -> Simulator | None:
        return self.plant.simulator

    @property
    def writer(self) -> Writer | None:
        """The write entry point: the drivers, or a central's remote writer."""
        return self.plant.writer

    @property
    def billing(self) -> Billing | None:
        """The billing service of the API, the HMI and the schedules (None: not running)."""
        return None if self.billing_scheduler is None else self.billing_scheduler.billing

    @property
    def speed(self) -> float:
        return self.plant.speed

    def _tag_defs(self, site: SiteConfig) -> list[TagDef]:
        if self.role == "collector":
            return [*site.tag_defs(), *self._extra_defs]
        return [*site.tag_defs(), *system_tag_defs(site), *self._extra_defs]

    # ------------------------------------------------------------------ start
    async def start(self) -> None:
        """Start every part; raise if one cannot start (the parts already started are stopped)."""
        from scada.backup import DataDirLock

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = DataDirLock(self.data_dir)
        self._lock.acquire()  # one runtime per data dir; restore checks this lock
        try:
            with paused_gc():  # start-up builds a large estate's long-lived objects: no GC passes
                await self._start()
            # the long-lived objects of start-up: full collections skip them (no collection
            # first: start-up runs with the collector paused and leaves almost no garbage)
            settle_heap(collect=False)
            if self.serve and self.services is not None:
                await self._start_server(self.services)
                settle_heap(collect=False)  # and the server's
        except BaseException:
            await self.stop()
            raise
        log.info("runtime started: %d tags, %d devices", len(self.db), len(self.site.devices))

    async def _start(self) -> None:
        site, db = self.site, self.db
        set_site_language(site.site.language)  # the fallback of i18n.pick
        self.scheduler.start()
        db.set_initial(site.initial_values())
        self.computed.start()
        if self.role != "collector":  # the central historises the collectors' values
            self._open_historian()
        if self.simulate:
            await self._start_simulator()
        await self._start_drivers()
        if self.historian is not None:
            from historian.recorder import Recorder

            cfg = site.historian
            self.recorder = Recorder(
                db, self.historian, batch_size=cfg.batch_size, flush_s=cfg.flush_s
            )
            await self.recorder.start()
        self.audit = audit = AuditLog.in_data_dir(self.data_dir)
        self.users = UserStore.in_data_dir(self.data_dir)
        self.auth = Auth(self.users)
        self.commands = commands = CommandService(
            self.plant,
            audit,
            select_timeout_s=self.select_timeout_s,
            store=CommandStore.in_data_dir(self.data_dir),
        )
        if self.role != "collector":
            await self._start_alarms(site)
            await self._start_billing(site, CommandRelayCommander(commands), audit)
        self.alarm_ops = AlarmOps(self.alarms, audit)
        self._start_backup(site)
        if self.role != "collector":
            await self._start_health()
        self.scheduler.add_job(
            self._housekeeping, "interval", seconds=STALE_CHECK_S, id="runtime.housekeeping"
        )
        self._next_purge = time.time() + 60.0
        if any(not f.startswith("<") for f in site.source_files()):
            self.config = ConfigManager(self.plant, self, audit, self.data_dir)
            await asyncio.to_thread(self.config.ensure_baseline)
        self.services = Services(
            plant=self.plant,
            data_dir=self.data_dir,
            audit=audit,
            users=self.users,
            auth=self.auth,
            commands=commands,
            alarm_ops=self.alarm_ops,
            historian=self.historian,
            recorder=self.recorder,
            alarms=self.alarms,
            alarm_journal=self.alarm_journal,
            billing=self.billing,
            config=self.config,
            health=self.health,
            backup=self.backup_scheduler,
            client_address=self.proxies.client,
        )

    def _open_historian(self) -> Historian:
        """Open the configured historian (once) and start its spool thread, if it has one."""
        if self.historian is None:
            from historian.factory import open_historian

            self.historian = open_historian(self.site.historian, self.data_dir)
            start = getattr(self.historian, "start", None)
            if start is not None:  # the spooling wrapper runs a retry thread
                start()
        return self.historian

    async def _start_simulator(self) -> None:
        """Start the simulator, first backfilling ``simulate.backfill_days`` of history if asked.

        The backfill runs only where history is kept (not in the collector role) and only into
        a historian that is empty or whose newest sample is older than the backfill start, so
        existing history is never overwritten or duplicated. The simulator then runs on from
        the backfilled state (counters stay monotonic across the boundary).
        """
        from drivers.simulator import Simulator

        site = self.site
        days = site.simulate.backfill_days
        start_ts: float | None = None
        historian = self.historian
        if days > 0 and historian is not None:
            from drivers.simulator.backfill import newest_sample_ts

            begin = time.time() - days * 86400.0
            names = [d.name for d in self.db.definitions() if d.historize]
            try:
                newest = await asyncio.to_thread(newest_sample_ts, historian, names)
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
        sim = Simulator(site, speed=self.speed, seed=site.simulate.seed, start_ts=start_ts)
        if historian is not None:
            await self._resume_simulator(sim, historian)
        if start_ts is not None and historian is not None:
            from drivers.simulator.backfill import backfill

            try:
                self.backfill_result = r = await asyncio.to_thread(
                    backfill, sim, self.db.definitions(), historian.write
                )
                log.info(
                    "simulator backfill: %d samples of %d tags from %s to %s in %.1f s",
                    r.samples, r.tags, iso(r.start_ts), iso(r.end_ts), r.elapsed_s,
                )  # fmt: skip
            except Exception:  # history is a convenience of the demo: run without it
                log.exception("simulator backfill failed; the simulator starts now without it")
                sim = Simulator(site, speed=self.speed, seed=site.simulate.seed)
        self.plant.simulator = sim
        await sim.start()

    async def _resume_simulator(self, sim: Simulator, historian: Historian) -> None:
        """Continue the simulated counters from the history of an earlier run (if any).

        Without this a restarted demo would start every meter from the simulator's defaults:
        the historian would read each drop as a counter reset and the allocation and the
        consumption charges would count the whole register again (issue 18 item 9).
        """
        names = [n for n in sim.counter_tags() if n in self.db]
        try:
            last = await asyncio.to_thread(historian.last, names)
        except Exception:  # the history is unreadable: the counters start from the defaults
            log.exception("simulator: cannot read the last historised values")
            return
        if last:
            n = sim.resume_counters(last)
            log.info("simulator: %d counters resumed from the history", n)

    async def _start_drivers(self) -> None:
        """Start the drivers (roles all, collector) or the central's remote writer."""
        if self.central is not None:
            await self.central.start(self.db)
            self.plant.writer = self.central.writer
            return
        from drivers.manager import DriverManager

        drivers = DriverManager(self.site, self.db, archive=self._archive_sink())
        await drivers.start()
        self.plant.drivers = self.plant.writer = drivers
        if self.collector is not None:  # remote commands go to whatever drivers run now
            await self.collector.start(self.db, self._write_to_drivers)

    def _archive_sink(self) -> Any:
        """Return the drivers' device-archive sink: good samples with reason ``archive`` (or None)."""
        historian = self.historian
        if historian is None:
            return None

        def write(tag: str, rows: Any) -> None:
            from historian.base import Sample
            from tags.model import Quality, Reason

            historian.write([Sample(tag, ts, v, Quality.GOOD, Reason.ARCHIVE) for ts, v in rows])

        return write

    async def _write_to_drivers(self, tag: str, value: Any) -> WriteResult:
        drivers = self.plant.drivers
        if drivers is None:
            raise RuntimeError("no drivers running")
        return await drivers.write(tag, value)

    async def _start_alarms(self, site: SiteConfig) -> None:
        from alarms.engine import AlarmEngine
        from alarms.journal import AlarmJournal
        from alarms.notify.base import build_notifiers
        from alarms.notify.router import Router

        self.alarm_journal = AlarmJournal.in_data_dir(self.data_dir)
        cfg = site.notifications
        # One notifier object per configured notifier: alarms and tenant notices share them
        # (an SMS modem is one serial port).
        self.notifiers = build_notifiers(cfg.notifiers)
        if cfg.notifiers:
            self.alarm_router = Router(
                cfg, self.notifiers, journal=self.alarm_journal, timezone=site.site.timezone
            )
        self.alarms = AlarmEngine(
            self.db,
            alarm_rules(site),
            self.alarm_journal,
            router=self.alarm_router,
            devices_by_template=devices_by_template(site),
            devices=alarm_devices(site),
            defaults=site.alarm_defaults,
        )
        self.alarms.start()
        if self.alarm_router is not None:
            self.alarm_router.adopt(self.alarms.active())
            await self.alarm_router.start()

    async def _start_billing(
        self, site: SiteConfig, commander: CommandRelayCommander, audit: AuditLog
    ) -> None:
        """Open the ledger; start the billing jobs (readings, charges, allocation, reports).

        Billing's relay commands go through the command service (``commander``): role
        check, limits, read-back, audit. There is no other path.
        """
        from billing.jobs import BillingScheduler
        from billing.ledger import Ledger

        self.ledger = Ledger.in_data_dir(self.data_dir)
        assert self.historian is not None  # billing runs where the history is
        self.billing_scheduler = BillingScheduler(
            site,
            self.db,
            self.historian,
            self.ledger,
            self.data_dir,
            commander=commander,
            audit=audit,
            scheduler=self.scheduler,
        )
        await self.billing_scheduler.start()
        from scada.services.report_delivery import ReportDelivery

        self.report_delivery = ReportDelivery.in_data_dir(
            self.data_dir, self.billing_scheduler.billing, self.notifiers
        )
        self.report_delivery.start(self.scheduler)
        await self._start_notices(site)

    async def _start_notices(self, site: SiteConfig) -> None:
        from billing.notices import TenantNotices

        self.tenant_notices = TenantNotices(site, self.db, self.notifiers)
        self.tenant_notices.start()

    def _start_backup(self, site: SiteConfig) -> None:
        cfg = site.backup
        if cfg is None or not cfg.enabled:
            return
        from scada.backup import BackupScheduler

        self.backup_scheduler = BackupScheduler(
            cfg,
            self.data_dir,
            site_id=site.site.id,
            tz=site.site.timezone,
            config_files=site.source_files(),
        )
        self.backup_scheduler.start(self.scheduler)

    async def _start_health(self) -> None:
        """Start publishing the ``system.*`` health tags (``scada.health``)."""
        from scada.health import HealthMonitor
        from scada.services.audit import FILE_NAME

        self.health = HealthMonitor(
            self.db,
            self.data_dir,
            lambda: self.site.health,  # an apply may change the thresholds
            backup=self.backup_scheduler,
            tls_cert=self.tls_cert if self.serve else None,
            audit_path=self.data_dir / FILE_NAME,
        )
        await self.health.start(self.scheduler)

    async def _start_server(self, services: Services) -> None:
        """Start the HTTP server (REST, websocket) with the HMI pages mounted."""
        from hmi.app import apps
        from scada.server.http import ScadaServer
        from scada.server.hub import MIN_INTERVAL_S

        self.server = ScadaServer(
            services,
            apps=apps(services),
            host=self.host,
            port=self.port,
            tls_cert=self.tls_cert,
            tls_key=self.tls_key,
            ws_min_interval_s=self.ws_batch_s or MIN_INTERVAL_S,
            proxies=self.proxies,
        )
        await self.server.start()

    # ------------------------------------------------------------------ periodic work
    async def _housekeeping(self) -> None:
        """Mark stale tags, publish historian health (each second), purge old history (daily)."""
        now = time.time()
        if self.role != "central":  # the collectors mark staleness; they publish it
            self.db.check_stale(now)
        if self.recorder is not None:
            for name, value in self.recorder.status().items():
                self.db.update(name, value)
            if now >= self._next_purge:
                self._next_purge = now + PURGE_EVERY_S
                await self._purge_history(now)

    async def _purge_history(self, now: float) -> None:
        """Drop raw samples past the retention (rollups stay) on a worker thread."""
        days = self.site.historian.retention_days
        purge = getattr(self.historian, "purge", None)  # optional in the Historian protocol
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

    # ------------------------------------------------------------------ apply
    async def apply(self, site: SiteConfig) -> Plan:
        """Reconfigure every running part for ``site`` without a restart; return the plan.

        The same code paths as :meth:`start` (tag definitions, alarm rules, billing): tag
        definitions are replaced (kept tags keep their values; clients stay connected);
        drivers and simulator restart only when channels, devices or templates changed; the
        alarm engine gets the site's and billing's rules; billing and tenant notices get
        the new accounts, tariffs and rules. Loop-thread only.
        """
        thaw_heap()  # what the new site replaces must be collectable
        try:
            return await self._apply(site)
        finally:
            settle_heap()

    async def _apply(self, site: SiteConfig) -> Plan:
        plant, db = self.plant, self.db
        old = plant.site
        plan = compare_sites(old, site)
        set_site_language(site.site.language)
        restart = plan.restart_drivers and self.central is None
        counters: dict[str, Any] = {}
        if restart:
            if plant.drivers is not None:
                await plant.drivers.stop()
            if plant.simulator is not None:
                await plant.simulator.stop()
                counters = plant.simulator.counter_values()
        db.replace_defs(self._tag_defs(site))
        plant.site = site
        db.set_initial(site.initial_values())
        if restart:
            if plant.simulator is not None:
                from drivers.simulator import Simulator

                plant.simulator = Simulator(site, speed=plant.speed, seed=site.simulate.seed)
                plant.simulator.resume_counters(counters)  # meters count on, never back
                await plant.simulator.start()
            if plant.drivers is not None:
                from drivers.manager import DriverManager

                old_drivers = plant.drivers
                plant.drivers = DriverManager(site, db, archive=self._archive_sink())
                await plant.drivers.start()
                if plant.writer is old_drivers:
                    plant.writer = plant.drivers
        if self.alarms is not None:
            self.alarms.reload(
                alarm_rules(site),
                devices_by_template(site),
                devices=alarm_devices(site),
                defaults=site.alarm_defaults,
            )
        if self.billing_scheduler is not None:
            await self.billing_scheduler.apply(site)
        if self.tenant_notices is not None:
            await self.tenant_notices.stop()
            await self._start_notices(site)
        log.info("configuration applied: %s", json.dumps(plan.to_json()))
        return plan

    # ------------------------------------------------------------------ stop
    async def stop(self) -> None:
        """Stop every started part in reverse order; safe to call twice."""
        thaw_heap()  # what start set aside may be collected once stopped
        if self.server is not None:
            try:
                await self.server.stop()
            except Exception:
                log.exception("stopping the server failed")
            self.server = None
        with contextlib.suppress(Exception):
            self.scheduler.remove_job("runtime.housekeeping")
        for name, part in (
            ("health", self.health),
            ("tenant notices", self.tenant_notices),
            ("report delivery", self.report_delivery),
            ("billing", self.billing_scheduler),
            ("backup", self.backup_scheduler),
            ("alarm router", self.alarm_router),
            ("alarms", self.alarms),
            ("drivers", self.plant.drivers),
            ("simulator", self.plant.simulator),
            ("scale-out", self.scaleout),
            ("recorder", self.recorder),
        ):
            if part is None:
                continue
            try:
                await part.stop()
            except Exception:
                log.exception("stopping %s failed", name)
        self.health = self.tenant_notices = self.billing_scheduler = None
        self.report_delivery = None
        self.backup_scheduler = self.alarm_router = self.alarms = self.recorder = None
        self.plant.drivers = self.plant.simulator = self.plant.writer = None
        self.scaleout = self.collector = self.central = None
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.computed.stop()
        for name, notifier in self.notifiers.items():
            try:
                await notifier.close()
            except Exception:
                log.exception("closing notifier %s failed", name)
        self.notifiers = {}
        for closable in (
            self.commands,
            self.ledger,
            self.alarm_journal,
            self.historian,
            self.audit,
            self.users,
        ):
            if closable is not None:
                try:
                    closable.close()
                except Exception:
                    log.exception("closing %s failed", type(closable).__name__)
        self.commands = self.ledger = self.alarm_journal = self.historian = None
        self.audit = self.users = None
        self.services = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._stopped.set()

    def summary(self) -> dict[str, int]:
        """Return counts for the start-up line (no per-tag work: an estate has 300,000 tags)."""
        return {"tags": len(self.db), "devices": len(self.site.devices)}
