"""Numbers, money, dates and heat energy for people, by the reader's language (Babel, CLDR data).

| language | number | money (CNY / RUB) | date and time |
|---|---|---|---|
| ``en`` | ``1,234.50`` | ``1,234.50 CNY`` | ``2026-12-07 15:09:41`` |
| ``zh_CN`` | ``1,234.50`` | ``¥1,234.50`` | ``2026年12月7日 15:09:41`` |
| ``ru`` | ``1 234,50`` | ``1 234,50 ₽`` | ``07.12.2026 15:09:41`` |

English keeps the ISO date and the currency code after the amount (what the office and the
tests have read since the start); Chinese and Russian use their CLDR money and date formats.
The language is the current one (:func:`i18n.use_language`) unless given.

Heat energy is stored and computed in kWh; :func:`energy_text` shows it in the site's
``site.energy_unit`` (``kWh``, ``GJ`` or ``Gcal``; 1 GJ = 277.778 kWh, 1 Gcal = 1163 kWh).
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Literal

from babel.dates import format_date, format_time
from babel.numbers import format_currency, format_decimal

from i18n.languages import DEFAULT_LANGUAGE, normalise_language

__all__ = [
    "ENERGY_UNITS",
    "KWH_PER_UNIT",
    "EnergyUnit",
    "date_text",
    "datetime_text",
    "energy_in",
    "energy_text",
    "money_text",
    "number_text",
]

EnergyUnit = Literal["kWh", "GJ", "Gcal"]
#: kWh in one unit of heat energy.
KWH_PER_UNIT: dict[str, float] = {"kWh": 1.0, "GJ": 277.778, "Gcal": 1163.0}
ENERGY_UNITS: tuple[str, ...] = tuple(KWH_PER_UNIT)
#: Decimals heat energy is shown with, per unit (a GJ is 278 kWh: three decimals keep ~0.3 kWh).
_ENERGY_DECIMALS = {"kWh": 1, "GJ": 3, "Gcal": 3}
#: Babel date format per language: a CLDR length or a pattern.
_DATE_FORMATS = {"en": "yyyy-MM-dd", "zh_CN": "medium", "ru": "short"}


def _language(language: str | None) -> str:
    if language is None:
        from i18n import current_language  # the package imports this module

        language = current_language()
    return normalise_language(language) or DEFAULT_LANGUAGE


def number_text(
    value: float | Decimal | int, decimals: int = 1, language: str | None = None
) -> str:
    """Return ``value`` with ``decimals`` places and the language's grouping (``1 234,5`` in ru)."""
    pattern = "#,##0" + ("." + "0" * decimals if decimals > 0 else "")
    if isinstance(value, Decimal):
        value = value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    elif isinstance(value, float) and round(value, decimals) == 0:
        value = 0.0  # no "-0.0"
    return format_decimal(value, format=pattern, locale=_language(language))


def money_text(amount: object, currency: str, language: str | None = None) -> str | None:
    """Return ``amount`` as money in the language's format, or None when it is no number.

    Rounded half-up to the cent as billing rounds.
    """
    if amount is None or isinstance(amount, bool):
        return None
    try:
        value = Decimal(str(amount))
    except (ArithmeticError, InvalidOperation, ValueError):
        return None
    if not value.is_finite():
        return None
    value = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    lang = _language(language)
    if lang == DEFAULT_LANGUAGE:
        from i18n import _

        return _("{amount} {currency}", amount=f"{value:,}", currency=currency)
    return format_currency(value, currency, locale=lang)


def date_text(moment: datetime, language: str | None = None) -> str:
    """Return the date of ``moment``: ``2026-12-07``, ``2026年12月7日``, ``07.12.2026``."""
    lang = _language(language)
    return format_date(moment, _DATE_FORMATS.get(lang, "yyyy-MM-dd"), locale=lang)


def datetime_text(moment: datetime, *, date: bool = True, language: str | None = None) -> str:
    """Return ``moment`` (an aware local time) as date and 24-hour time, or the time alone."""
    lang = _language(language)
    clock = format_time(moment, "HH:mm:ss", locale=lang)
    return f"{date_text(moment, lang)} {clock}" if date else clock


def energy_in(kwh: float, unit: str) -> float:
    """Return ``kwh`` in ``unit`` (``kWh``, ``GJ``, ``Gcal``; an unknown unit: kWh)."""
    return kwh / KWH_PER_UNIT.get(unit, 1.0)


def energy_text(
    kwh: float | None, unit: str = "kWh", language: str | None = None
) -> tuple[str, str]:
    """Return (number, unit) of heat energy ``kwh`` shown in ``unit``; ``—`` for no value."""
    unit = unit if unit in KWH_PER_UNIT else "kWh"
    if kwh is None or not math.isfinite(kwh):
        return "—", unit
    return number_text(energy_in(kwh, unit), _ENERGY_DECIMALS[unit], language), unit
