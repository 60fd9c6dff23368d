"""Times on screen: in the site's time zone, the zone always named (``2026-12-07 15:09:41 CST``).

The formatting itself is :func:`alarms.text.local_time_text` (the command service's refusals
use it too, so a time reads the same in a message and on a page); these helpers take the
zone from the running site of an HMI session.
"""

from __future__ import annotations

import time

from alarms.text import local_time_text
from hmi.session import HmiSession

__all__ = ["local_time_text", "site_time_text", "site_tz"]


def site_tz(session: HmiSession) -> str:
    """Return the IANA time zone of the session's running site (``Asia/Shanghai``)."""
    return session.services.site.site.timezone


def site_time_text(session: HmiSession, ts: float | None, *, date: bool = True) -> str:
    """Return ``ts`` in the site's zone, the zone named (``2026-12-07 15:09:41 CST``).

    With ``date=False`` the time alone (``15:09:41 CST``), unless ``ts`` is on another day.
    """
    return local_time_text(ts, site_tz(session), date=date, now=None if date else time.time())
