"""The nightly job that stores yesterday's counter results, so a month's first report is fast.

``meter_energy`` (and every report built on it) reads each meter's closed day buckets from
the SQLite historian's stored results (``historian.counter_days``); a day nobody asked for
yet is computed from the raw samples on the first report that needs it (20-60 s for 10,000
meters over a month). ``store_counter_days`` asks for one day of every report meter, the
same call the report makes (``consumption_table`` with the report's tag definitions and day
bucket), so the rows are stored by the historian at night instead. A day is closed (and kept)
once a meter has a sample at or after its end: run it after midnight plus a poll or two.
"""

from __future__ import annotations

import logging
import zoneinfo
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from billing.periods import local_midnight
from historian.buckets import Buckets, Every, Unit
from historian.counter_days import consumption_table
from tags.model import TagDef

if TYPE_CHECKING:
    from billing.site import BillingSite
    from historian.base import Historian

__all__ = ["JOB_ID", "store_counter_days", "yesterday"]

#: The scheduler job (``billing.jobs``): daily at 00:40 site time.
JOB_ID = "billing.counter_days"

log = logging.getLogger(__name__)


def yesterday(now_ts: float, tz: str) -> date:
    """Return the local date before the one holding ``now_ts``."""
    return datetime.fromtimestamp(now_ts, zoneinfo.ZoneInfo(tz)).date() - timedelta(days=1)


def store_counter_days(site: BillingSite, historian: Historian, day: date, tz: str) -> int:
    """Compute ``day``'s consumption of every report meter; return the meters with a value.

    Blocking (reads the historian, which stores the closed day's results): run it in a
    worker thread. With a historian that keeps no results (InfluxDB) it only computes.
    """
    from billing.report_energy import meters

    ms = meters(site)
    if not ms:
        return 0
    defs = {d.name: d for d in site.tag_defs()}
    tag_defs = [defs.get(m.tag) or TagDef(m.tag, unit="kWh") for m in ms]
    start = local_midnight(day, tz)
    end = local_midnight(day + timedelta(days=1), tz)
    table = consumption_table(
        historian, tag_defs, Buckets.calendar(start, end, Every(1, Unit.DAY), tz)
    )
    known = int((table.value == table.value).any(axis=1).sum())  # NaN: no value
    log.info("counter days: %s computed for %d of %d meters", day.isoformat(), known, len(ms))
    return known
