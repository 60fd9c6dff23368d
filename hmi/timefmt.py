"""Times on screen: in the site's time zone, the zone always named (``2026-12-07 15:09:41 CST``).

The formatting itself is :func:`alarms.text.local_time_text` (the command service's refusals
use it too, so a time reads the same in a message and on a page); these helpers take the
zone from the running site of an HMI session. In Chinese and Russian the date follows the
language (``2026年12月7日 15:09:41 CST``, ``07.12.2026 15:09:41 CST``: ``i18n.formats``).
"""

from __future__ import annotations

import math
import time
from datetime import datetime

from alarms.text import local_time_text, zone
from hmi.session import HmiSession
from i18n import DEFAULT_LANGUAGE, current_language
from i18n.formats import datetime_text

__all__ = ["local_time_text", "localised_time_text", "site_time_text", "site_tz"]


def site_tz(session: HmiSession) -> str:
    """Return the IANA time zone of the session's running site (``Asia/Shanghai``)."""
    return session.services.site.site.timezone


def site_time_text(session: HmiSession, ts: float | None, *, date: bool = True) -> str:
    """Return ``ts`` in the site's zone, the zone named (``2026-12-07 15:09:41 CST``).

    With ``date=False`` the time alone (``15:09:41 CST``), unless ``ts`` is on another day.
    """
    return localised_time_text(ts, site_tz(session), date=date, now=None if date else time.time())


def localised_time_text(
    ts: float | None, tz: str, *, date: bool = True, now: float | None = None
) -> str:
    """Return :func:`local_time_text` with the date in the current language's format."""
    text = local_time_text(ts, tz, date=date, now=now)
    if current_language() == DEFAULT_LANGUAGE or ts is None or not math.isfinite(ts):
        return text
    moment = datetime.fromtimestamp(ts, zone(tz))
    shown_date = text.count(" ") > 1  # local_time_text added the date (another day)
    return f"{datetime_text(moment, date=shown_date)} {text.rsplit(' ', 1)[1]}"
