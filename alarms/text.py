"""Texts for people: unit symbols, numbers with their decimals, times in the site's zone.

One place for how a value, a unit and a time read wherever a person sees them: alarm
messages (:func:`alarms.rules.format_message`), the HMI pages and the command service's
refusals call these functions, so ``66.0 °C`` and ``15:09:41 CST`` read the same everywhere.

* :func:`unit_symbol` turns a configured unit into its printed symbol (``degC`` -> ``°C``,
  ``m3/h`` -> ``m³/h``);
* :func:`value_decimals` is how many decimals a tag's values deserve (from its deadband);
* :class:`Quantity` is a number that formats itself with those decimals, and with its unit
  for the format spec ``u`` (``f"{q:u}"`` -> ``66.0 °C``), in message templates too;
* :func:`local_time_text` is a time in a zone, the zone named (``2026-12-07 15:09:41 CST``).

Pure functions, no I/O; the words (``on``/``off``) go through the translation function.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from i18n import _
from tags.model import Scalar, TagDef, TagType

__all__ = [
    "UNIT_SYMBOLS",
    "Quantity",
    "format_number",
    "local_time_text",
    "unit_symbol",
    "value_decimals",
    "zone",
]

#: Configured units (ASCII, as typed in YAML) -> printed symbol. Units not listed are printed
#: as configured, after the general rules of :func:`unit_symbol`.
UNIT_SYMBOLS: dict[str, str] = {
    "degC": "°C",
    "degF": "°F",
    "deg": "°",
    "K": "K",
    "pct": "%",
    "percent": "%",
    "ohm": "Ω",
    "kohm": "kΩ",
    "uS/cm": "µS/cm",
    "us": "µs",
    "ug/m3": "µg/m³",
}
_DEG = re.compile(r"\bdeg([CF])\b")
_POWER = re.compile(r"(?<![A-Za-z])(mm|cm|dm|km|m)([23])(?![0-9])")
_SUPERSCRIPT = {"2": "²", "3": "³"}
#: Decimals for float values of a tag without a deadband.
DEFAULT_DECIMALS = 1
#: The most decimals a deadband may ask for.
MAX_DECIMALS = 4


def unit_symbol(unit: str | None) -> str:
    """Return the printed symbol of a configured unit (``degC`` -> ``°C``, ``m3/h`` -> ``m³/h``).

    Compound units are converted part by part (``kWh/m2`` -> ``kWh/m²``, ``degC/min`` ->
    ``°C/min``); an empty or unknown unit comes back unchanged.
    """
    if not unit:
        return ""
    if unit in UNIT_SYMBOLS:
        return UNIT_SYMBOLS[unit]
    text = _DEG.sub(r"°\1", unit)
    return _POWER.sub(lambda m: m.group(1) + _SUPERSCRIPT[m.group(2)], text)


def value_decimals(d: TagDef) -> int | None:
    """Return how many decimals values of ``d`` are shown with (None: not a number).

    Integers get 0. Floats get as many as their deadband resolves (0.1 -> 1, 0.05 -> 2,
    1 -> 0; at most :data:`MAX_DECIMALS`): a change smaller than the deadband is not
    reported, so more digits would only show noise. Without a deadband: 1.
    """
    if d.type is TagType.INT:
        return 0
    if d.type is not TagType.FLOAT:
        return None
    if d.deadband > 0 and math.isfinite(d.deadband):
        digits = math.ceil(round(-math.log10(d.deadband), 9))
        return max(0, min(MAX_DECIMALS, digits))
    return DEFAULT_DECIMALS


def format_number(value: Scalar | None, decimals: int | None = None, *, sign: bool = False) -> str:
    """Return ``value`` for people: floats with ``decimals`` (default 1), bools as on / off.

    No value (None, NaN, infinite) reads ``?``; text is returned as it is. ``sign`` puts
    ``+`` before positive numbers (deviations, rates).
    """
    if value is None:
        return "?"
    if isinstance(value, bool):
        return _("on") if value else _("off")
    if isinstance(value, int):
        return f"{value:+d}" if sign else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "?"
        places = DEFAULT_DECIMALS if decimals is None else decimals
        if round(value, places) == 0:
            value = 0.0  # no "-0.0"
        return f"{value:+.{places}f}" if sign else f"{value:.{places}f}"
    return str(value)


@dataclass(frozen=True, slots=True)
class Quantity:
    """A value with the decimals and unit it is shown with; formats itself in templates.

    Format specs: ``""`` the number with its decimals (``66.0``), ``u`` with its unit too
    (``66.0 °C``), ``+`` / ``+u`` signed; any other spec is Python's (``.2f``, ``.0f``),
    optionally followed by ``u``. A spec that does not fit the value (``.1f`` on text)
    raises ``ValueError`` like ``format`` does.
    """

    value: Scalar | None
    decimals: int | None = None
    unit: str = ""

    def __format__(self, spec: str) -> str:
        with_unit = spec.endswith("u")
        core = spec[:-1] if with_unit else spec
        if core in ("", "+"):
            text = format_number(self.value, self.decimals, sign=core == "+")
        elif self.value is None or isinstance(self.value, bool | str):
            raise ValueError(f"format spec {core!r} does not fit {self.value!r}")
        else:
            text = format(self.value, core)
        symbol = unit_symbol(self.unit)
        return f"{text} {symbol}" if with_unit and symbol and text != "?" else text

    def __str__(self) -> str:
        return format(self, "")


@lru_cache(maxsize=64)
def zone(tz: str) -> tzinfo:
    """Return the IANA time zone ``tz`` (UTC for an unknown name: the site config checks it)."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _zone_label(moment: datetime) -> str:
    name = moment.strftime("%Z")
    # zones without an abbreviation print their offset (+05): say it is one
    return f"UTC{name}" if name[:1] in "+-" else name


def local_time_text(
    ts: float | None, tz: str, *, date: bool = True, now: float | None = None
) -> str:
    """Return epoch seconds ``ts`` in zone ``tz``, the zone named: ``2026-12-07 15:09:41 CST``.

    With ``date=False`` the time only (``15:09:41 CST``), unless ``now`` is given and ``ts``
    falls on another local day than it. No time (None, NaN) reads ``—``.
    """
    if ts is None or not math.isfinite(ts):
        return "—"
    where = zone(tz)
    moment = datetime.fromtimestamp(ts, where)
    if not date and now is not None:
        date = moment.date() != datetime.fromtimestamp(now, where).date()
    pattern = "%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S"
    return f"{moment.strftime(pattern)} {_zone_label(moment)}"
