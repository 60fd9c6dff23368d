"""Times and periods on the command line, read in the site's time zone.

Every ``scada`` command that takes a time (``--from``, ``--to``, ``--since``, ``--until``,
``--at``, ``--start``) reads it with :func:`parse_time`, and every ``--period`` with
:func:`parse_period`. A time is one of:

- ``now``;
- ``today``, ``yesterday``, ``tomorrow``: local midnight starting that day;
- ``this-month``, ``last-month``, ``next-month``, ``this-year``, ``last-year``: local midnight
  of the first day;
- an offset from now: ``-7d``, ``-24h``, ``-30m``, ``-90s``, ``-2w`` (``+1h`` is ahead; a bare
  ``7d`` is an age, the same as ``-7d``);
- an ISO date or date-time: ``2026-11-01`` (local midnight), ``2026-11-01T08:00`` (local
  time), ``2026-11-01T08:00+08:00`` or ``...Z`` as written.

A period is ``today``, ``yesterday``, ``this-month``, ``last-month``, ``this-year``,
``last-year``, or ``YYYY``, ``YYYY-Qn``, ``YYYY-MM``, ``YYYY-MM-DD`` (``billing.periods``).

:func:`history_note` says in one line when a requested period lies outside the stored history,
so an empty answer is never a silent one.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from billing.periods import Period, local_midnight
from billing.periods import parse_period as parse_absolute_period
from billing.periods import parse_time as parse_absolute_time

if TYPE_CHECKING:
    from historian.base import Historian

__all__ = [
    "PERIOD_HELP",
    "TIME_HELP",
    "TimeError",
    "history_note",
    "local_label",
    "parse_period",
    "parse_time",
    "parse_window",
    "site_zone",
]

#: The forms of a time, for ``--help`` texts.
TIME_HELP = "now, today, yesterday, this-month, last-month, -7d, -24h or ISO 2026-11-01[T08:00]"
#: The forms of a period, for ``--help`` texts.
PERIOD_HELP = "today, yesterday, this-month, last-month, this-year, last-year, 2025, 2025-Q4, 2025-11 or 2025-11-21"

#: A newest sample older than this before the end of a period (or now) is worth a note.
GAP_S = 3600.0
#: Tags :func:`history_note` looks at, at most (one query or a few per tag).
PROBE_TAGS = 50

_OFFSET = re.compile(r"^([+-]?)(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)$")
_SECONDS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


class TimeError(ValueError):
    """A time or period the command line cannot read; the message says which forms it takes."""


def _first_of_month(d: date, months: int) -> date:
    index = d.year * 12 + d.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


#: Calendar words: the local day each one starts at, given today's local date.
_DAYS: dict[str, Callable[[date], date]] = {
    "today": lambda d: d,
    "yesterday": lambda d: d - timedelta(days=1),
    "tomorrow": lambda d: d + timedelta(days=1),
    "this-month": lambda d: _first_of_month(d, 0),
    "last-month": lambda d: _first_of_month(d, -1),
    "next-month": lambda d: _first_of_month(d, 1),
    "this-year": lambda d: date(d.year, 1, 1),
    "last-year": lambda d: date(d.year - 1, 1, 1),
}

#: Period words: the label ``billing.periods.parse_period`` reads, given today's local date.
_PERIODS: dict[str, Callable[[date], str]] = {
    "today": lambda d: d.isoformat(),
    "yesterday": lambda d: (d - timedelta(days=1)).isoformat(),
    "this-month": lambda d: f"{d.year:04d}-{d.month:02d}",
    "last-month": lambda d: _first_of_month(d, -1).isoformat()[:7],
    "this-year": lambda d: f"{d.year:04d}",
    "last-year": lambda d: f"{d.year - 1:04d}",
}


def _zone(tz: str | ZoneInfo) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)


def parse_time(
    text: str, tz: str | ZoneInfo, *, now: float | None = None, what: str = "time"
) -> float:
    """Return the epoch seconds of a command-line time (module docstring) in time zone ``tz``.

    ``now`` (epoch seconds, default the clock) anchors the relative forms; ``what`` names the
    option in the error. Raises ``TimeError`` naming the accepted forms.
    """
    t = text.strip().lower()
    now_s = time.time() if now is None else now
    if t == "now":
        return now_s
    day = _DAYS.get(t)
    if day is not None:
        zone = _zone(tz)
        return local_midnight(day(datetime.fromtimestamp(now_s, zone).date()), zone)
    m = _OFFSET.match(t)
    if m is not None:
        seconds = float(m.group(2)) * _SECONDS[m.group(3)]
        return now_s + seconds if m.group(1) == "+" else now_s - seconds
    try:
        return parse_absolute_time(text, tz)
    except ValueError:
        raise TimeError(f"{what}: {text!r} is not a time; use {TIME_HELP}") from None


def parse_window(
    start: str, end: str, tz: str | ZoneInfo, *, now: float | None = None
) -> tuple[float, float]:
    """Return ``(start, end)`` epoch seconds of ``--from`` / ``--to``; ``TimeError`` if bad or empty."""
    now_s = time.time() if now is None else now
    a = parse_time(start, tz, now=now_s, what="--from")
    b = parse_time(end, tz, now=now_s, what="--to")
    if b <= a:
        raise TimeError(f"--to {end} is not after --from {start}")
    return a, b


def parse_period(text: str, tz: str | ZoneInfo, *, now: float | None = None) -> Period:
    """Return the period ``text`` names (module docstring); ``TimeError`` if it names none."""
    word = _PERIODS.get(text.strip().lower())
    if word is not None:
        today = datetime.fromtimestamp(time.time() if now is None else now, _zone(tz)).date()
        text = word(today)
    try:
        return parse_absolute_period(text, tz)
    except ValueError as exc:
        raise TimeError(f"--period: {exc}; use {PERIOD_HELP}") from None


def site_zone(config: str) -> ZoneInfo:
    """Return the time zone of the site configuration ``config`` (UTC, said on stderr, if unreadable)."""
    from scada.config import ConfigError, load_site

    try:
        return ZoneInfo(load_site(config).site.timezone)
    except (ConfigError, FileNotFoundError) as exc:
        print(
            f"{config}: cannot read the site's time zone ({str(exc).splitlines()[0]}); using UTC",
            file=sys.stderr,
        )
        return ZoneInfo("UTC")


def local_label(ts: float, tz: str | ZoneInfo) -> str:
    """Format ``ts`` as local ``YYYY-MM-DD HH:MM`` with the zone's abbreviation."""
    return datetime.fromtimestamp(ts, _zone(tz)).strftime("%Y-%m-%d %H:%M %Z")


def history_note(
    historian: Historian,
    tags: Iterable[str],
    start: float,
    end: float,
    tz: str | ZoneInfo,
    *,
    now: float | None = None,
) -> str | None:
    """Return one line saying how ``[start, end)`` lies outside the stored history of ``tags``.

    None when the history covers the period (up to now). Looks at the first ``PROBE_TAGS``
    tags only (a few indexed queries each): the history of a site starts and stops as a whole.
    """
    probe = list(dict.fromkeys(tags))[:PROBE_TAGS]
    newest = max((s.ts for s in historian.last(probe).values()), default=None)
    if newest is None:
        return (
            "note: the historian holds no samples of these tags "
            "(is this the --data-dir that `scada run` writes to?)"
        )
    period = f"{local_label(start, tz)} .. {local_label(end, tz)}"
    if newest < start:
        return f"note: {period} lies after the stored history, which ends {local_label(newest, tz)}"

    def held(t: float) -> bool:
        return any(historian.value_at(tag, t) is not None for tag in probe)

    if not held(start):
        if not held(end):
            return f"note: {period} lies before the stored history"
        lo, hi = start, end  # held(lo) is False, held(hi) True: find where the history begins
        while hi - lo > 1.0:
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if held(mid) else (mid, hi)
        return f"note: the stored history begins {local_label(hi, tz)}, after the start of {period}"
    now_s = time.time() if now is None else now
    if newest < min(end, now_s) - GAP_S:
        return f"note: the newest stored sample is from {local_label(newest, tz)}, before the end of {period}"
    return None
