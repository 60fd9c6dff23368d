"""Text formats of the REST API: one regular expression per format, which documents and validates.

The route table (:mod:`scada.server.app`) and the body models put these patterns into the
OpenAPI document, and the server matches the same patterns before it parses a value, so a
value is accepted exactly when it matches (a client, or Schemathesis, can tell from the
document alone what will be refused). The patterns use only what ECMA-262 (JSON Schema) and
Python's ``re`` read alike: ``^...$`` anchors, ``(?:...)`` groups, ASCII classes.

Times: epoch seconds up to 2100-01-01T00:00Z, or an ISO date-time of the years 1971 .. 2098
(real calendar dates, 29 February in leap years only: an offset cannot then take a time out of
the 1970 .. 2100 the billing accepts). ``UTC_TIME`` needs an offset (``Z`` or ``+hh:mm``);
``SITE_TIME`` also takes a date or a date-time without one (site time, as on the CLI).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "AMOUNT",
    "AUDIT_HEAD",
    "EVERY",
    "IDEMPOTENCY_KEY",
    "PERIOD",
    "SITE_TIME",
    "UTC_TIME",
    "matches",
    "one_or_more_of",
]

_YEAR = r"(?:197[1-9]|19[89][0-9]|20[0-8][0-9]|209[0-8])"
_LEAP_YEAR = r"(?:19(?:7[26]|8[048]|9[26])|20(?:[02468][048]|[13579][26]))"
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_DATE = rf"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_CLOCK = r"(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
_OFFSET = r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
#: 0 .. 4,102,444,800 s (2100-01-01T00:00Z), with any fraction (as ``str(time.time())`` writes it)
_EPOCH = (
    r"(?:(?:[0-9]{1,9}|[1-3][0-9]{9}|40[0-9]{8}|410[01][0-9]{6}|4102[0-3][0-9]{5}"
    r"|41024[0-3][0-9]{4}|410244[0-3][0-9]{3}|4102444[0-7][0-9]{2})(?:\.[0-9]+)?"
    r"|4102444800(?:\.0+)?)"
)

#: Epoch seconds or an ISO date-time with its offset.
UTC_TIME = rf"^(?:{_EPOCH}|{_DATE}[T ]{_CLOCK}{_OFFSET})$"
#: Epoch seconds, an ISO date (site midnight) or date-time (site time unless an offset is given).
SITE_TIME = rf"^(?:{_EPOCH}|{_DATE}(?:[T ]{_CLOCK}{_OFFSET}?)?)$"
#: A billing period: ``YYYY``, ``YYYY-Qn``, ``YYYY-MM`` or ``YYYY-MM-DD`` (site time).
PERIOD = rf"^(?:{_YEAR}(?:-Q[1-4]|-(?:0[1-9]|1[0-2]))?|{_DATE})$"
#: Money: ASCII digits, at most two decimals, above zero and below 10^12; no sign, no spaces.
AMOUNT = r"^(?:0*[1-9][0-9]{0,11}(?:\.[0-9]{1,2})?|0+\.(?:0[1-9]|[1-9][0-9]?))$"
#: A repeat-safe key in a header: 1 to 200 visible ASCII characters, inner spaces allowed.
IDEMPOTENCY_KEY = r"^[!-~](?:[ -~]{0,198}[!-~])?$"
#: A history bucket width: seconds (a number as JSON writes it, no sign), or a count of 1 to 9999
#: and a calendar unit of the site's time zone (``15m``, ``1h``, ``1d``, ``1mo``, ``1y``), read
#: by ``historian.buckets.parse_every``.
EVERY = r"^(?:[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|[1-9][0-9]{0,3}(?:s|m|h|d|mo|y))$"
#: ``SEQ:HASH`` of the audit chain as ``scada audit verify`` prints it.
AUDIT_HEAD = r"^[0-9]{1,18}:[0-9a-fA-F]{64}$"


def one_or_more_of(names: Iterable[str]) -> str:
    """Return the pattern of a comma-separated list of one or more of ``names`` (exact words)."""
    word = "(?:" + "|".join(re.escape(n) for n in names) + ")"
    return rf"^{word}(?:,{word})*$"


def matches(pattern: str, text: str) -> bool:
    """Return True if all of ``text`` matches ``pattern`` (no trailing newline slips through)."""
    return re.fullmatch(pattern, text) is not None
