"""Scheduled report work inside ``scada run``: e-mailed subscriptions and the nightly counter days.

:class:`ReportDelivery` adds two jobs to the runtime's scheduler:

- ``reports.subscriptions`` every minute: each subscription whose next run is due
  (``scada.services.subscriptions``) is built (``billing.report_scope.build_scoped`` over the
  preset's period, in a worker thread), rendered (xlsx, CSV or PDF) and e-mailed as an
  attachment to its recipients through the site's e-mail notifier (``notifications.notifiers``
  of type ``email``: its SMTP settings and sending, ``alarms.notify.email``); the run's time,
  outcome and text ("sent meter_energy-2025-11.pdf to 2 recipients", or the error) are
  stored and the next run is the schedule's next time after now (a run missed while the
  server was down happens once, late);
- ``reports.counter_days`` daily at 00:40 site time: yesterday's counter results of every
  report meter (``billing.report_days``), so a month's first report reads stored days.

Loop-thread only; the reports are built and mailed in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alarms.notify.base import DeliveryError, Message
from alarms.notify.email import EmailNotifier
from scada.services.subscriptions import FORMATS, Subscription, SubscriptionStore, next_run

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from alarms.notify.base import Notifier
    from billing.service import Billing

__all__ = ["ReportDelivery", "render_subscription"]

log = logging.getLogger(__name__)

JOB_SUBSCRIPTIONS = "reports.subscriptions"
JOB_COUNTER_DAYS = "reports.counter_days"


class _AttachmentMail(EmailNotifier):
    """The e-mail notifier's SMTP sending, with one file attached to each mail."""

    def __init__(self, notifier: EmailNotifier, name: str, mime: str, data: bytes) -> None:
        super().__init__(notifier.config)
        self.file_name, self.mime, self.data = name, mime, data

    def _build(self, address: str, message: Message) -> EmailMessage:
        mail = super()._build(address, message)
        main, _sep, sub = self.mime.partition("/")
        mail.add_attachment(self.data, maintype=main, subtype=sub, filename=self.file_name)
        return mail


def render_subscription(
    billing: Billing, sub: Subscription, now_ts: float
) -> tuple[str, str, bytes, str]:
    """Build and render ``sub``'s report: ``(file name, MIME type, bytes, title)``. Blocking.

    Raises ``ValueError`` (a period outside the history, an unknown household, ...).
    """
    from billing.report_pdf import report_pdf
    from billing.report_scope import build_scoped, preset_period
    from billing.reports import write_csv, write_xlsx

    period = preset_period(sub.preset, billing.site, now_ts)
    report = build_scoped(billing, sub.kind, period, sub.scope, **sub.options)
    stem = f"{sub.kind}-{period.label}".replace(" ", "").replace("..", "_").replace("/", "-")
    stem = "".join(c for c in stem if c.isalnum() or c in "-_.")
    if sub.format == "pdf":
        data = report_pdf(report, billing.tz, generated_ts=now_ts)
    elif sub.format == "csv":
        buf = io.StringIO(newline="")
        write_csv(report, buf)
        data = buf.getvalue().encode("utf-8")
    else:
        with tempfile.TemporaryDirectory(prefix="scada-sub-") as tmp:
            path = Path(tmp) / "r.xlsx"
            write_xlsx(report, path)
            data = path.read_bytes()
    return f"{stem}.{sub.format}", FORMATS[sub.format], data, report.title


class ReportDelivery:
    """The jobs of the module docstring over ``store``, ``billing`` and the runtime's notifiers."""

    def __init__(
        self,
        store: SubscriptionStore,
        billing: Billing,
        notifiers: Mapping[str, Notifier],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.billing = billing
        self.notifiers = notifiers
        self.clock = clock
        self._scheduler: AsyncIOScheduler | None = None
        self._owns_store = False

    @classmethod
    def in_data_dir(
        cls, data_dir: str | Path, billing: Billing, notifiers: Mapping[str, Notifier]
    ) -> ReportDelivery:
        """Return the delivery over ``<data_dir>/subscriptions.sqlite`` (closed by ``stop``)."""
        store = SubscriptionStore.in_data_dir(data_dir, billing.tz)
        out = cls(store, billing, notifiers)
        out._owns_store = True
        return out

    def email(self) -> EmailNotifier | None:
        """Return the site's first e-mail notifier, if any."""
        for n in self.notifiers.values():
            if isinstance(n, EmailNotifier):
                return n
        return None

    def start(self, scheduler: AsyncIOScheduler) -> None:
        """Add the two jobs (site time zone)."""
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        tz = self.billing.tz
        opts: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600}
        scheduler.add_job(
            self.run_due,
            IntervalTrigger(seconds=60, timezone=tz),
            id=JOB_SUBSCRIPTIONS,
            name="report subscriptions",
            **opts,
        )
        scheduler.add_job(
            self.counter_days,
            CronTrigger(hour=0, minute=40, timezone=tz),
            id=JOB_COUNTER_DAYS,
            name="yesterday's stored counter results",
            **opts,
        )
        self._scheduler = scheduler

    async def stop(self) -> None:
        """Remove the jobs (a running one finishes on its own); close a store it opened."""
        from apscheduler.jobstores.base import JobLookupError

        if self._scheduler is not None:
            for job_id in (JOB_SUBSCRIPTIONS, JOB_COUNTER_DAYS):
                with contextlib.suppress(JobLookupError):
                    self._scheduler.remove_job(job_id)
        self._scheduler = None
        if self._owns_store:
            self.store.close()
            self._owns_store = False

    async def counter_days(self, day: str | None = None) -> int:
        """Store the counter results of ``day`` (``YYYY-MM-DD``, default yesterday)."""
        from datetime import date

        from billing.report_days import store_counter_days, yesterday

        tz = self.billing.tz
        d = yesterday(self.clock(), tz) if day is None else date.fromisoformat(day)
        hist = self.billing._hist()
        return await asyncio.to_thread(store_counter_days, self.billing.site, hist, d, tz)

    async def run_due(self) -> int:
        """Run every due subscription once; return how many ran."""
        now = self.clock()
        due = self.store.due(now)
        for sub in due:
            await self.run(sub, now)
        return len(due)

    async def run(self, sub: Subscription, now: float | None = None) -> tuple[bool, str]:
        """Build, render and e-mail ``sub`` now; record and return ``(ok, result text)``."""
        ts = self.clock() if now is None else now
        ok, text = await self._deliver(sub, ts)
        nxt = next_run(sub.fields(), max(ts, self.clock()), self.billing.tz)
        self.store.record(sub.id, ts, ok, text, nxt)
        (log.info if ok else log.warning)("subscription %d (%s): %s", sub.id, sub.kind, text)
        return ok, text

    async def _deliver(self, sub: Subscription, ts: float) -> tuple[bool, str]:
        notifier = self.email()
        if notifier is None:
            return False, "no e-mail notifier is configured (notifications.notifiers, type email)"
        try:
            name, mime, data, title = await asyncio.to_thread(
                render_subscription, self.billing, sub, ts
            )
        except (ValueError, KeyError) as exc:
            return False, f"report failed: {exc.args[0] if exc.args else exc}"
        mail = _AttachmentMail(notifier, name, mime, data)
        body = f"{title}\n\n{name} ({len(data):,} bytes) is attached.\n"
        failed = []
        for address in sub.recipients:
            try:
                await mail.send(address, Message(subject=title, body=body))
            except DeliveryError as exc:
                failed.append(str(exc))
        if failed:
            return False, "; ".join(failed)
        return True, f"sent {name} to {len(sub.recipients)} recipient(s)"
