"""Billing schedules inside ``scada run``: jobs on the runtime's one scheduler.

The scheduler (an APScheduler 3.x ``AsyncIOScheduler``) is the runtime's: it creates, starts
and shuts it down; ``BillingScheduler.start()`` adds the jobs below and ``stop()`` removes
them. Jobs (site time zone):

- ``readings`` every ``reading_interval_min`` (default 30): the good current value of every
  account meter is stored as a billing reading at the slot time, then consumption is charged
  (``billing.charging``) and the prepaid levels and relays are evaluated;
- ``prepaid`` every minute: levels and relays (picks up top-ups made with the CLI), and the
  heat accounts with new entries or a failed valve command;
- ``monthly`` on the 1st at 00:10: heat allocation and bills of the month before are stored,
  shared-loss charges posted, the monthly reports written to ``<data-dir>/reports``;
- ``daily`` at 00:20: the day before's energy and financial reports;
- with heat accounts (``billing.heat_accounts``: households of buildings with a heat tariff),
  ``heat_season`` daily at 00:05: the season's advance once the season has begun, the
  settlement once it is over;
- ``heat_monthly`` on the 1st at 00:15: the heat statements of the month before (season to date);
- ``heat_arrears`` every hour: lock the valves of overdue heat accounts, open them once paid
  (``billing.heat_arrears``; money operations on a heat account evaluate it at once);
- with a payment provider that has a ``statement_dir`` (``payments.providers``),
  ``payments.reconcile`` daily at 06:30: each such provider's statement of each of the last
  ``RECONCILE_DAYS`` days not reconciled yet (a statement that has not arrived is tried again
  the next day) against the ledger (``billing.reconciliation.reconcile_day``), the result
  written to ``<data-dir>/reports/reconciliation/<provider>-<day>.json`` and audited
  (``payments.reconcile``: ``ok``, or ``failed`` with the counts of missing, extra and
  mismatched payments).

Each run is recorded in the ledger's ``runs`` table keyed by job and period and every charge
has a unique key, so a restart or a missed run recomputes without double charging. Misfires
coalesce into one run (``misfire_grace_time``), and ``start()`` catches up missed periods:
readings from the historian (``value_at`` of each missed slot, up to ``catch_up_days``),
months and days since the billing database was created. Loop-thread only; historian work
runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zoneinfo
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from billing.bills import SHARED_LOSS_LINE
from billing.charging import charge_consumption, month_label
from billing.ledger import EntryKind, Ledger
from billing.money import AuditSink
from billing.periods import month_start
from billing.prepaid import RelayCommander
from billing.service import Billing
from tags.model import Quality

if TYPE_CHECKING:
    from apscheduler.job import Job
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from billing.heat_accounts import HeatHousehold, HeatSeason
    from billing.payments import PaymentProvider
    from billing.reconciliation import Reconciliation
    from billing.site import BillingSite
    from historian.base import Historian
    from tags.database import TagDatabase

__all__ = ["RECONCILE_ACTION", "BillingScheduler"]

#: Days back the daily reconciliation looks for statements not reconciled yet.
RECONCILE_DAYS = 7
#: The audit action (and ``runs`` job prefix) of a scheduled reconciliation.
RECONCILE_ACTION = "payments.reconcile"

log = logging.getLogger(__name__)

_INSTALLED = ("installed", "installed")
#: every billing job: a late run is coalesced into one, never two at a time, up to 1 h late
_JOB_OPTIONS: dict[str, Any] = {"coalesce": True, "misfire_grace_time": 3600, "max_instances": 1}


class BillingScheduler:
    """The billing jobs of one site (see the module docstring).

    ``commander`` switches the meter relays (the command service's: required, see
    ``billing.prepaid``); ``audit`` records the money operations of ``self.billing``, the one
    ``Billing`` of the runtime (the API and the HMI use it too); ``scheduler`` is the
    runtime's scheduler (started by the runtime). ``clock`` gives epoch seconds (tests pass a
    fixed clock and call the job methods directly). ``catch_up_days`` bounds how far back
    missed readings are taken from history.
    """

    def __init__(
        self,
        site: BillingSite,
        db: TagDatabase,
        historian: Historian,
        ledger: Ledger,
        data_dir: str | Path,
        *,
        commander: RelayCommander,
        audit: AuditSink,
        scheduler: AsyncIOScheduler,
        reading_interval_min: float = 30.0,
        catch_up_days: float = 7.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.site = site
        self.db = db
        self.historian = historian
        self.ledger = ledger
        self.data_dir = Path(data_dir)
        self.interval_s = float(reading_interval_min) * 60.0
        self.catch_up_s = float(catch_up_days) * 86400.0
        self.clock = clock
        self.scheduler = scheduler
        self.billing = Billing(
            site,
            ledger,
            historian,
            commander=commander,
            audit=audit,
            db=db,
            data_dir=data_dir,
            clock=clock,
        )
        self.meters = sorted({m.energy for a in self.billing._accounts.values() for m in a.meters})
        self._jobs: list[Job] = []
        #: the start-up catch-up (tests await it)
        self.catch_up_task: asyncio.Task[None] | None = None

    @property
    def tz(self) -> str:
        return self.site.site.timezone

    # ------------------------------------------------------------------ lifecycle

    async def _open_new_accounts(self, note: str) -> None:
        """Open the configured accounts and heat accounts the ledger does not know yet."""
        for acct in self.billing._accounts.values():
            if not self.ledger.is_open(acct.id) and not self.ledger.is_closed(acct.id):
                await self.billing.open_account(acct.id, user="system", note=note, ts=self.clock())
        for heat_id in self.billing.heat.accounts:
            self.ledger.ensure_open(heat_id, note=note, ts=self.clock())

    async def apply(self, site: BillingSite) -> None:
        """Take a new site configuration (the runtime's apply; loop thread).

        Accounts, tariffs and meters change at once; a newly configured account is opened
        (its ``acct.*`` tags get values) and is read and billed by the next jobs. The job
        times stay as started (a changed site time zone needs a restart).
        """
        self.site = site
        self.billing.apply(site)
        self.meters = sorted({m.energy for a in self.billing._accounts.values() for m in a.meters})
        await self._open_new_accounts("opened when the configuration was applied")
        if self._jobs:
            self._add_heat_jobs()
            self._add_reconcile_job()
        await self.billing.prepaid.evaluate_all()
        await self.billing.heat.evaluate_all()

    async def start(self) -> None:
        """Open configured accounts not yet opened, add the jobs, start the catch-up task."""
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        self.ledger.mark_run(*_INSTALLED, ts=self.clock())
        await self._open_new_accounts("opened at start-up")
        tz = zoneinfo.ZoneInfo(self.tz)
        jobs: list[tuple[Callable[[], Any], Any, str, str]] = [
            (
                self.read_meters,
                IntervalTrigger(seconds=self.interval_s, timezone=tz),
                "billing.readings",
                "meter readings",
            ),
            (
                self.prepaid_check,
                IntervalTrigger(seconds=60, timezone=tz),
                "billing.prepaid",
                "prepaid levels",
            ),
            (
                self.monthly,
                CronTrigger(day=1, hour=0, minute=10, timezone=tz),
                "billing.monthly",
                "monthly allocation and bills",
            ),
            (
                self.daily,
                CronTrigger(hour=0, minute=20, timezone=tz),
                "billing.daily",
                "daily reports",
            ),
        ]
        self._jobs = [
            self.scheduler.add_job(fn, trigger, id=job_id, name=name, **_JOB_OPTIONS)
            for fn, trigger, job_id, name in jobs
        ]
        self._add_heat_jobs()
        self._add_reconcile_job()
        self.catch_up_task = asyncio.create_task(self.catch_up(), name="billing-catch-up")
        log.info(
            "billing scheduler started: %d accounts, %d meters",
            len(self.billing._accounts),
            len(self.meters),
        )

    async def stop(self) -> None:
        """Remove the jobs (a running job finishes on its own)."""
        if self.catch_up_task is not None:
            self.catch_up_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.catch_up_task
            self.catch_up_task = None
        from apscheduler.jobstores.base import JobLookupError

        for job in self._jobs:
            with contextlib.suppress(JobLookupError):  # the scheduler was shut down first
                job.remove()
        self._jobs = []

    def _add_heat_jobs(self) -> None:
        """Add the heat jobs once the site has heat accounts (at start, or by an apply)."""
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        if not self.billing.heat.accounts or "billing.heat_season" in self.jobs():
            return
        tz = zoneinfo.ZoneInfo(self.tz)
        jobs: list[tuple[Callable[[], Any], Any, str, str]] = [
            (
                self.heat_season,
                CronTrigger(hour=0, minute=5, timezone=tz),
                "billing.heat_season",
                "heat season advance and settlement",
            ),
            (
                self.heat_month,
                CronTrigger(day=1, hour=0, minute=15, timezone=tz),
                "billing.heat_monthly",
                "heat statements",
            ),
            (
                self.heat_arrears,
                IntervalTrigger(hours=1, timezone=tz),
                "billing.heat_arrears",
                "heat arrears: valve lock",
            ),
        ]
        self._jobs += [
            self.scheduler.add_job(fn, trigger, id=job_id, name=name, **_JOB_OPTIONS)
            for fn, trigger, job_id, name in jobs
        ]

    def _add_reconcile_job(self) -> None:
        """Add the daily reconciliation once a provider has a statement directory."""
        from apscheduler.triggers.cron import CronTrigger

        if not self._statement_providers() or RECONCILE_ACTION in self.jobs():
            return
        trigger = CronTrigger(hour=6, minute=30, timezone=zoneinfo.ZoneInfo(self.tz))
        self._jobs.append(
            self.scheduler.add_job(
                self.reconcile_statements,
                trigger,
                id=RECONCILE_ACTION,
                name="payment statements reconciled",
                **_JOB_OPTIONS,
            )
        )

    def _statement_providers(self) -> list[PaymentProvider]:
        from billing.payments import PaymentsConfig

        cfg = getattr(self.site, "payments", None)  # the composed site's section (scada.config)
        if not isinstance(cfg, PaymentsConfig):
            return []
        return [p for p in cfg.providers if p.statement_dir is not None]

    async def reconcile_statements(self, today: str | None = None) -> list[Reconciliation]:
        """Reconcile the statements of the last ``RECONCILE_DAYS`` days before ``today`` (site
        date, default now) not reconciled yet; return what ran now (module docstring)."""
        z = zoneinfo.ZoneInfo(self.tz)
        if today is None:
            today = datetime.fromtimestamp(self.clock(), z).date().isoformat()
        first = datetime.fromisoformat(today).date()
        days = [(first - timedelta(days=n)).isoformat() for n in range(RECONCILE_DAYS, 0, -1)]
        done: list[Reconciliation] = []
        for provider in self._statement_providers():
            for day in days:
                found = await self._reconcile_one(provider, day)
                if found is not None:
                    done.append(found)
        return done

    async def _reconcile_one(self, provider: PaymentProvider, day: str) -> Reconciliation | None:
        from billing.payments import PaymentStore
        from billing.periods import parse_period
        from billing.reconciliation import StatementError, reconcile_day, statement_file

        job = f"{RECONCILE_ACTION}:{provider.id}"
        assert provider.statement_dir is not None
        path = statement_file(provider.statement_dir, provider.id, day)
        if path is None or self.ledger.run_done(job, day):
            return None
        period = parse_period(day, self.tz)
        out = self.data_dir / "reports" / "reconciliation"
        audit = self.billing.audit
        try:
            found, written = await asyncio.to_thread(
                reconcile_day,
                PaymentStore(self.ledger),
                provider.id,
                path,
                period.start,
                period.end,
                self.tz,
                provider.currency,
                out,
            )
        except (StatementError, OSError) as exc:
            log.warning("reconciliation of %s %s: %s", provider.id, day, exc)
            if audit is not None:
                audit.record(
                    RECONCILE_ACTION,
                    user="system",
                    target=provider.id,
                    result="failed",
                    after={"date": day, "statement": str(path)},
                    detail=f"the statement cannot be read: {exc}",
                )
            self.ledger.mark_run(job, day, "unreadable", ts=self.clock())
            return None
        counts = {k: len(getattr(found, k)) for k in ("missing", "extra", "mismatched")}
        if not found.ok:
            log.warning("reconciliation of %s %s: %s (%s)", provider.id, day, counts, written)
        if audit is not None:
            audit.record(
                RECONCILE_ACTION,
                user="system",
                target=provider.id,
                result="ok" if found.ok else "failed",
                after={"date": day, "matched": found.matched, **counts, "report": str(written)},
                detail=None if found.ok else "the statement and the ledger disagree",
            )
        self.ledger.mark_run(job, day, "ok" if found.ok else "differences", ts=self.clock())
        return found

    def jobs(self) -> list[str]:
        """Return the ids of this scheduler's jobs (empty before ``start`` and after ``stop``)."""
        return [j.id for j in self._jobs]

    # ------------------------------------------------------------------ jobs

    def slot(self, t: float | None = None) -> float:
        """Return the reading slot at or before ``t`` (default now)."""
        t = self.clock() if t is None else t
        return float(int(t // self.interval_s) * self.interval_s)

    async def read_meters(self, slot_ts: float | None = None) -> int:
        """Store the current meter values as readings of the slot, charge, evaluate; return count."""
        slot = self.slot() if slot_ts is None else slot_ts
        rows = []
        for tag in self.meters:
            if tag not in self.db:
                continue
            tv = self.db.read(tag)
            if tv.quality is Quality.GOOD and tv.value is not None:
                rows.append((tag, slot, float(tv.value)))
        n = self.ledger.add_readings(rows)
        await asyncio.to_thread(charge_consumption, self.site, self.ledger, slot)
        await self.billing.prepaid.evaluate_all()
        return n

    async def prepaid_check(self) -> None:
        """Publish every account's level and drive the relays; evaluate the heat accounts with
        new entries (CLI payments) or a failed valve command."""
        await self.billing.prepaid.evaluate_all()
        await self.billing.heat.evaluate_changed()

    def _readings_from_history(self, until: float) -> int:
        rows = []
        for tag in self.meters:
            last = self.ledger.last_reading_ts(tag)
            first = until - self.catch_up_s if last is None else last + self.interval_s
            first = max(first, until - self.catch_up_s)
            t = self.slot(first) if first % self.interval_s else first
            while t < until:
                s = self.historian.value_at(tag, t, include_bad=False)
                if s is not None and s.numeric is not None:
                    rows.append((tag, t, float(s.numeric)))
                t += self.interval_s
        return self.ledger.add_readings(rows)

    async def catch_up(self) -> None:
        """Take missed readings from history, charge, run missed months and days."""
        now = self.clock()
        current = self.slot(now)
        n = await asyncio.to_thread(self._readings_from_history, current)
        if n:
            log.info("billing catch-up: %d readings from history", n)
        await self.read_meters(current)
        installed = self._installed_ts()
        m = month_start(max(installed, now - 400 * 86400), self.tz)
        this_month = month_start(now, self.tz)
        while m < this_month:
            await self.monthly(month_label(m, self.tz))
            m = month_start(m + 40 * 86400, self.tz)
        z = zoneinfo.ZoneInfo(self.tz)
        d = max(
            datetime.fromtimestamp(installed, z).date(),
            datetime.fromtimestamp(now, z).date() - timedelta(days=31),
        )
        today = datetime.fromtimestamp(now, z).date()
        while d < today:
            await self.daily(d.isoformat())
            d += timedelta(days=1)
        await self.heat_catch_up()

    def _installed_ts(self) -> float:
        ts = self.ledger.run_ts(*_INSTALLED)
        return self.clock() if ts is None else ts

    async def monthly(self, label: str | None = None) -> bool:
        """Run the month ``label`` (default: the month before now) once; True if it ran now."""
        if label is None:
            label = month_label(month_start(self.clock(), self.tz) - 1, self.tz)
        if self.ledger.run_done("monthly", label):
            return False
        await asyncio.to_thread(self._monthly, label)
        await self.billing.prepaid.evaluate_all()
        return True

    def _monthly(self, label: str) -> None:
        from billing.periods import parse_period
        from billing.reports import write_xlsx

        p = parse_period(label, self.tz)
        alloc = self.billing.allocate_heat(p.start, p.end)
        self.ledger.save_document("heat", label, alloc.to_json())
        run = self.billing.bill(p.start, p.end)
        self.ledger.save_document("bill", label, run.to_json())
        posted = 0
        for bill in run.accounts:
            if bill.shared_kwh <= 0 or not self.ledger.is_open(bill.id):
                continue
            line = next(ln for ln in bill.lines if ln.name == SHARED_LOSS_LINE)
            e = self.ledger.charge(
                bill.id,
                EntryKind.SHARED_LOSS,
                line.amount,
                key=f"shared_loss:{bill.id}:{label}",
                period=label,
                energy_kwh=round(line.kwh, 6),
                ts=p.end,
                data={"price": str(line.price)},
            )
            posted += e is not None
        out = self.data_dir / "reports"
        out.mkdir(parents=True, exist_ok=True)
        for kind in ("heat", "bills", "energy", "financial"):
            write_xlsx(self.billing.report(kind, label), out / f"{kind}-{label}.xlsx")
        self.ledger.mark_run("monthly", label, f"{posted} shared-loss charges", ts=self.clock())
        log.info(
            "billing month %s done: %d buildings, %d accounts",
            label,
            len(alloc.buildings),
            len(run.accounts),
        )

    async def daily(self, day: str | None = None) -> bool:
        """Write the reports of ``day`` (default: yesterday) once; True if it ran now."""
        if day is None:
            z = zoneinfo.ZoneInfo(self.tz)
            day = (datetime.fromtimestamp(self.clock(), z).date() - timedelta(days=1)).isoformat()
        if self.ledger.run_done("daily", day):
            return False
        await asyncio.to_thread(self._daily, day)
        return True

    def _daily(self, day: str) -> None:
        from billing.reports import write_csv, write_xlsx

        out = self.data_dir / "reports"
        out.mkdir(parents=True, exist_ok=True)
        for kind in ("energy", "financial"):
            r = self.billing.report(kind, day)
            write_xlsx(r, out / f"{kind}-{day}.xlsx")
            write_csv(r, out / f"{kind}-{day}.csv")
        self.ledger.mark_run("daily", day, ts=self.clock())

    # ------------------------------------------------------------------ heat accounts

    def _heat_buildings(self) -> dict[str, list[HeatHousehold]]:
        """Return the heat households by building (one tariff, one season each)."""
        out: dict[str, list[HeatHousehold]] = {}
        for hh in self.billing.heat.accounts.values():
            out.setdefault(hh.building, []).append(hh)
        return out

    def _seasons(self, hhs: list[HeatHousehold], now: float) -> list[HeatSeason]:
        """Return the building's seasons still to bill: the one before the latest and the latest
        that started by ``now``, those that did not end before billing was installed."""
        from billing.heat_accounts import last_season, season_of

        latest = last_season(hhs[0].tariff, now, self.tz)
        before = season_of(hhs[0].tariff, latest.first_day.year - 1, self.tz)
        installed = self._installed_ts()
        return [s for s in (before, latest) if s.end > installed]

    async def heat_season(self) -> int:
        """Post the advance of each building's season once it began, settle it once it ended.

        Returns the entries posted. Idempotent: the ledger keys and the ``runs`` table.
        """
        from billing.heat_accounts import post_season_advance

        now = self.clock()
        posted = 0
        for building, hhs in self._heat_buildings().items():
            for season in self._seasons(hhs, now):
                if now < season.end:
                    posted += len(post_season_advance(self.ledger, hhs, season, ts=now))
                else:
                    posted += await self.heat_settle(building, season)
        await self.billing.heat.evaluate_all()
        return posted

    async def heat_settle(self, building: str, season: HeatSeason) -> int:
        """Settle ``building``'s heat accounts for ``season`` (once); return the entries posted."""
        from billing.heat_accounts import post_settlement
        from billing.heat_fees import heat_fees

        period = f"{season.label}:{building}"
        if self.ledger.run_done("heat_settlement", period):
            return 0

        def run() -> int:
            alloc = self.billing.allocate_heat(season.start, season.end, [building])
            fees = heat_fees(self.site, alloc, season.start, season.end)
            n = len(post_settlement(self.ledger, fees, season, ts=self.clock()))
            self.ledger.mark_run("heat_settlement", period, f"{n} settlements", ts=self.clock())
            return n

        n = await asyncio.to_thread(run)
        log.info("heat season %s of %s settled: %d entries", season.label, building, n)
        return n

    async def heat_month(self, label: str | None = None) -> int:
        """Post the heat statements of month ``label`` (default: the month before now), once per
        building whose season overlaps it; return the entries posted."""
        from billing.heat_accounts import last_season
        from billing.periods import parse_period

        now = self.clock()
        if label is None:
            label = month_label(month_start(now, self.tz) - 1, self.tz)
        month = parse_period(label, self.tz)
        if month.end > now:
            return 0  # not over yet
        posted = 0
        for building, hhs in self._heat_buildings().items():
            season = last_season(hhs[0].tariff, month.end - 1, self.tz)
            period = f"{label}:{building}"
            if season.end <= month.start or self.ledger.run_done("heat_month", period):
                continue
            end = min(month.end, season.end)
            posted += await asyncio.to_thread(self._heat_month, building, season, end, label)
        await self.billing.heat.evaluate_all()
        return posted

    def _heat_month(self, building: str, season: HeatSeason, end: float, label: str) -> int:
        from billing.heat_accounts import post_month
        from billing.heat_fees import heat_fees

        alloc = self.billing.allocate_heat(season.start, end, [building])
        fees = heat_fees(self.site, alloc, season.start, end)
        n = len(post_month(self.ledger, fees, season, label, ts=self.clock()))
        self.ledger.mark_run(
            "heat_month", f"{label}:{building}", f"{n} statements", ts=self.clock()
        )
        return n

    async def heat_arrears(self) -> None:
        """Evaluate every heat account: lock overdue valves, open the paid ones."""
        await self.billing.heat.evaluate_all()

    async def heat_catch_up(self) -> None:
        """Run what the heat jobs missed: the season's advance or settlement and its months."""
        if not self.billing.heat.accounts:
            return
        await self.heat_season()
        now = self.clock()
        m = month_start(max(self._installed_ts(), now - 400 * 86400), self.tz)
        this_month = month_start(now, self.tz)
        while m < this_month:
            await self.heat_month(month_label(m, self.tz))
            m = month_start(m + 40 * 86400, self.tz)
