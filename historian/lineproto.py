"""InfluxDB line protocol for the historian's layout (shared by the v1 and v2 backends).

Layout: measurement ``tag_value``, tag key ``tag`` (the tag name), fields ``value`` (float; bool as
0/1; left out when the value is NaN, infinite or a string), ``text`` (string values), ``quality``
and ``reason`` (integers, ``tags.model`` enums). Meter replacements: measurement
``meter_replacement``, tag ``tag``, fields ``old_final``, ``new_initial``.

The v1 backend writes nanosecond timestamps (``to_ns``): an epoch-seconds float goes in and comes
back (``ns / 1e9``) bit for bit, so a sample written twice lands on the same point and replaces it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from historian.base import Sample
from tags.model import Quality, Reason

MEASUREMENT = "tag_value"
REPLACEMENT_MEASUREMENT = "meter_replacement"


def to_us(ts: float) -> int:
    """Return epoch seconds as integer microseconds."""
    return round(ts * 1_000_000)


def to_ns(ts: float) -> int:
    """Return epoch seconds as integer nanoseconds, exact enough to round-trip any epoch float.

    ``round(ts * 1e9)`` is not: near 1.7e18 a float is 256 ns coarse. The whole seconds are taken
    apart first (``ts - floor(ts)`` is exact), so the error is below a nanosecond and
    ``to_ns(ts) / 1e9 == ts`` for every float timestamp of this era.
    """
    sec = math.floor(ts)
    return sec * 1_000_000_000 + round((ts - sec) * 1e9)


def escape_field_str(text: str) -> str:
    """Return a line-protocol string field value, quoted."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def escape_tag_v1(text: str) -> str:
    """Escape a tag value as InfluxDB 1.x, 2.x and 3.x all read it (commas, equals, spaces).

    A backslash is literal in a 1.x tag value (``a\\b`` is stored with both backslashes), so
    no escaping of it reads back the same on every version: names holding one, an empty name
    or a newline raise ``ValueError``.
    """
    if not text:
        raise ValueError("tag name must not be empty")
    if "\n" in text or "\r" in text:
        raise ValueError(f"tag name {text!r} contains a line break")
    if "\\" in text:
        raise ValueError(f"tag name {text!r} contains a backslash (InfluxDB cannot store it)")
    return text.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def stamps_ns(batch: Sequence[Sample]) -> list[int]:
    """Return ``to_ns`` of every sample's time, computed on arrays (same rounding as ``to_ns``)."""
    ts = np.fromiter([s.ts for s in batch], np.float64, len(batch))
    sec = np.floor(ts)
    ns = sec.astype(np.int64) * 1_000_000_000 + np.rint((ts - sec) * 1e9).astype(np.int64)
    return list(ns.tolist())


def lines_ns(batch: Sequence[Sample], keys: dict[str, str]) -> list[str]:
    """Return the line-protocol lines of ``batch`` with nanosecond timestamps.

    ``keys`` caches ``measurement,tag=<escaped name>`` per tag name across calls (the caller
    keeps it). Raises ``ValueError`` for a name that cannot be written (``escape_tag_v1``).
    """
    out: list[str] = []
    append = out.append
    isfinite = math.isfinite
    good, no_reason = Quality.GOOD, Reason.NONE
    for s, stamp in zip(batch, stamps_ns(batch), strict=True):
        key = keys.get(s.tag)
        if key is None:
            key = keys[s.tag] = f"{MEASUREMENT},tag={escape_tag_v1(s.tag)} "
        q, r = s.quality, s.reason
        if q is good and r is no_reason:  # identity, not ==: enum hashing and equality are slow
            suffix = "quality=0i,reason=0i "
        else:
            suffix = f"quality={int(q)}i,reason={int(r)}i "
        v = s.value
        if type(v) is float:
            head = f"value={v!r}," if isfinite(v) else ""
        elif isinstance(v, str):
            head = "text=" + escape_field_str(v) + ","
        elif v is None:
            head = ""
        else:
            f = float(v)
            head = f"value={f!r}," if isfinite(f) else ""
        append(f"{key}{head}{suffix}{stamp}")
    return out


def replacement_line_ns(tag: str, ts: float, old_final: float, new_initial: float) -> str:
    """Return the ``meter_replacement`` line of one replacement (nanosecond timestamp)."""
    return (
        f"{REPLACEMENT_MEASUREMENT},tag={escape_tag_v1(tag)} "
        f"old_final={float(old_final)!r},new_initial={float(new_initial)!r} {to_ns(ts)}"
    )
