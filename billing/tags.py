"""Per-account tags (balance, warning level) and the alarm rules that watch them.

Billing publishes ``acct.<id>.balance`` (float, money as a number for display and alarms; the
ledger holds the exact Decimal) and ``acct.<id>.level`` (int: 0 ok, 1 alarm 1, 2 alarm 2,
3 arrears) into the TagDatabase. ``alarm_rules(site)`` returns rules for the alarm engine
(issue 5): one alarm per level and an overload limit per meter with ``overload_kw``. Billing
never imports the alarm engine; the runtime adds these tags and rules.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from billing.accounts import resolve_accounts
from tags.model import Source, TagDef, TagType

if TYPE_CHECKING:
    from scada.config import SiteConfig

__all__ = ["Level", "account_tag_defs", "alarm_rules", "balance_tag", "level_tag"]


class Level(enum.IntEnum):
    """Prepaid warning level of an account (the value of ``acct.<id>.level``)."""

    OK = 0
    ALARM1 = 1
    ALARM2 = 2
    ARREARS = 3


def balance_tag(account: str) -> str:
    """Return the name of the account's balance tag."""
    return f"acct.{account}.balance"


def level_tag(account: str) -> str:
    """Return the name of the account's warning-level tag."""
    return f"acct.{account}.level"


def account_tag_defs(site: SiteConfig) -> list[TagDef]:
    """Return the balance and level tags of every account (memory tags, historised)."""
    out: list[TagDef] = []
    for a in resolve_accounts(site):
        household = a.config.household
        out.append(
            TagDef(
                balance_tag(a.id),
                TagType.FLOAT,
                unit="CNY",
                description=f"prepaid balance of {a.config.tenant or a.id}",
                source=Source.MEMORY,
                building=a.building,
                household=household,
            )
        )
        out.append(
            TagDef(
                level_tag(a.id),
                TagType.INT,
                description="prepaid level: 0 ok, 1 alarm 1, 2 alarm 2, 3 arrears",
                source=Source.MEMORY,
                min=0,
                max=3,
                building=a.building,
                household=household,
            )
        )
    return out


def alarm_rules(site: SiteConfig) -> list[Any]:
    """Return alarm rules (``alarms.config`` models) for the account levels and meter overloads.

    Levels: ``billing.alarm1`` (priority 3), ``billing.alarm2`` (2), ``billing.arrears`` (1)
    on ``acct.*.level``; ``billing.overload.<meter device>`` a high limit on the power tag of
    each meter with an overload threshold. Empty without accounts.
    """
    from pydantic import TypeAdapter

    from alarms.config import AlarmRule

    accounts = resolve_accounts(site)
    if not accounts:
        return []
    adapter: TypeAdapter[Any] = TypeAdapter(AlarmRule)
    raw: list[dict[str, Any]] = [
        {
            "id": "billing.alarm1",
            "kind": "state",
            "tags": "acct.*.level",
            "equals": int(Level.ALARM1),
            "priority": 3,
            "message": "{tag}: prepaid balance low (alarm 1)",
            "description": "balance at or below the account's alarm1 threshold",
        },
        {
            "id": "billing.alarm2",
            "kind": "state",
            "tags": "acct.*.level",
            "equals": int(Level.ALARM2),
            "priority": 2,
            "message": "{tag}: prepaid balance very low (alarm 2)",
            "description": "balance at or below the account's alarm2 threshold",
        },
        {
            "id": "billing.arrears",
            "kind": "state",
            "tags": "acct.*.level",
            "equals": int(Level.ARREARS),
            "priority": 1,
            "message": "{tag}: account in arrears",
            "description": "balance at or below zero: the supply is tripped unless keep-power",
        },
    ]
    for a in accounts:
        for m in a.meters:
            if m.overload_kw is None or m.power is None:
                continue
            raw.append(
                {
                    "id": f"billing.overload.{m.energy.rsplit('.', 1)[0]}",
                    "kind": "limit",
                    "tag": m.power,
                    "limits": {"h": m.overload_kw},
                    "priority": 2,
                    "message": "{tag} overload: {value} {unit} (limit {limit})",
                    "description": f"overload of account {a.id}'s meter",
                }
            )
    return [adapter.validate_python(r) for r in raw]
