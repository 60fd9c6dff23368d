"""What office staff and tenants read instead of internal ids: names, flat numbers, money, times.

A household is shown by its ``name`` (shops), else as "Flat 101" (the part of its id after the
building's, ``b1.101`` -> ``101``); a building by its ``name`` (in the reader's language when
given per language: ``i18n.pick``). Money is shown with two decimals and the currency (the
balance tag's unit, ``CNY`` by default) in the language's format (``i18n.formats``). Times: see
``hmi.timefmt``. Every text goes through ``_``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from i18n import _, pick
from i18n.formats import money_text as _money_text

__all__ = [
    "DEFAULT_CURRENCY",
    "building_label",
    "flat_label",
    "household_label",
    "money_text",
]

DEFAULT_CURRENCY = "CNY"


def flat_label(household_id: str, building_id: str | None) -> str:
    """Return "Flat 101" for household ``b1.101`` of building ``b1`` ("Unit s1" when not a number)."""
    number = household_id
    if building_id and household_id.startswith(building_id + "."):
        number = household_id[len(building_id) + 1 :]
    elif "." in household_id:
        number = household_id.rsplit(".", 1)[1]
    if number.isdigit():
        return _("Flat {number}", number=number)
    return _("Unit {number}", number=number)


def household_label(name: str, household_id: str, building_id: str | None) -> str:
    """Return the household's ``name`` when it has one, else its flat label."""
    return name.strip() or flat_label(household_id, building_id)


def building_label(buildings: Iterable[Any], building_id: str | None) -> str:
    """Return the display name of ``building_id`` among ``buildings`` (its id without a name)."""
    if not building_id:
        return ""
    for b in buildings:
        if b.id == building_id:
            return pick(b.name) or str(b.id)
    return building_id


def money_text(amount: Any, currency: str | None = None) -> str:
    """Return ``amount`` as money: ``1,234.50 CNY`` (``¥1,234.50`` in zh_CN); ``—`` for no amount."""
    return _money_text(amount, currency or DEFAULT_CURRENCY) or "—"
