"""The one scheduler of a runtime: periodic work (health, backups, billing, housekeeping).

:func:`make_scheduler` returns an APScheduler 3.x ``AsyncIOScheduler`` on the running loop
with the defaults every job of ours wants: a late run is coalesced into one (a busy loop
never piles up runs), at most one instance of a job at a time, and a run up to
``misfire_grace_time`` late still happens. The runtime creates it, starts it before the
parts and shuts it down after them; each part adds its jobs in ``start(scheduler)`` and
removes them in ``stop()``. Jobs are coroutine functions, so they run on the loop thread
(a plain function would run in APScheduler's worker thread).
"""

from __future__ import annotations

import zoneinfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler

__all__ = ["AsyncIOScheduler", "make_scheduler"]

#: a job this late still runs (once: late runs are coalesced)
MISFIRE_GRACE_S = 3600


def make_scheduler(timezone: str = "UTC") -> AsyncIOScheduler:
    """Return a not yet started scheduler whose cron triggers default to site time."""
    return AsyncIOScheduler(
        timezone=zoneinfo.ZoneInfo(timezone),
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": MISFIRE_GRACE_S,
        },
    )
