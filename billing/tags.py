"""Per-account tag names, the prepaid warning levels and what they mean, and their alarm rules.

This module owns these names and meanings; billing, the HMI and the notices import them.
Billing publishes ``acct.<id>.balance`` (float, money as a number for display and alarms; the
ledger holds the exact Decimal), ``acct.<id>.level`` (int, a :class:`Level`: 0 ok,
1 alarm 1, 2 alarm 2, 3 arrears) and ``acct.<id>.held`` (1 while a charge is held for review) into the TagDatabase, and switches a meter's relay tag
(``<meter device>.relay`` unless the account's meter names another). A heat account
(``<household>.heat``, ``billing.heat_accounts``) has the same ``balance`` and ``level`` tags
(level 0 ok, 3 arrears: overdue past the grace period; so ``billing.arrears`` covers it) and
``acct.<id>.locked`` (1 while billing holds the household's valve locked: arrears or
suspension). ``LEVELS`` holds each level's display texts and alarm priority. ``alarm_rules(site)`` returns rules for the alarm
engine (issue 5): one alarm per level and an overload limit per meter with ``overload_kw``.
Billing never imports the alarm engine; the runtime adds these tags and rules.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tags.model import Source, TagDef, TagType

if TYPE_CHECKING:
    from billing.site import BillingSite

__all__ = [
    "LEVELS",
    "RESTORED_NOTICE",
    "Level",
    "LevelInfo",
    "account_tag_defs",
    "alarm_rules",
    "balance_tag",
    "held_tag",
    "level_tag",
    "locked_tag",
    "relay_tag",
]


class Level(enum.IntEnum):
    """Prepaid warning level of an account (the value of ``acct.<id>.level``)."""

    OK = 0
    ALARM1 = 1
    ALARM2 = 2
    ARREARS = 3

    @property
    def key(self) -> str:
        """The level's name in wire formats and CSS (``ok``, ``alarm1``, ``alarm2``, ``arrears``)."""
        return self.name.lower()

    @property
    def info(self) -> LevelInfo:
        """The level's texts and alarm priority (``LEVELS``)."""
        return LEVELS[self]

    @classmethod
    def of(cls, value: Any) -> Level | None:
        """Return the level of a level tag's value: None for no value, arrears if out of range."""
        if value is None:
            return None
        try:
            return cls(int(value))
        except ValueError:
            return cls.ARREARS


@dataclass(frozen=True, slots=True)
class LevelInfo:
    """What a level means to each reader.

    ``label``: short name (tag description); ``status``: the tenant's status line;
    ``notice``: the text of the tenant notice sent when the level rises to it (None: none);
    ``alarm``: the alarm message suffix and ``priority`` its priority (None: no alarm);
    ``description``: the alarm rule's description.
    """

    label: str
    status: str
    notice: str | None = None
    alarm: str | None = None
    priority: int | None = None
    description: str = ""


LEVELS: dict[Level, LevelInfo] = {
    Level.OK: LevelInfo("ok", "ok"),
    Level.ALARM1: LevelInfo(
        "alarm 1",
        "balance low (alarm 1)",
        notice="balance low",
        alarm="prepaid balance low (alarm 1)",
        priority=3,
        description="balance at or below the account's alarm1 threshold",
    ),
    Level.ALARM2: LevelInfo(
        "alarm 2",
        "balance very low (alarm 2)",
        notice="balance very low, please top up",
        alarm="prepaid balance very low (alarm 2)",
        priority=2,
        description="balance at or below the account's alarm2 threshold",
    ),
    Level.ARREARS: LevelInfo(
        "arrears",
        "in arrears: power may be cut",
        notice="account in arrears: the supply will be switched off unless the account keeps power",
        alarm="account in arrears",
        priority=1,
        description="balance at or below zero: the supply is tripped unless keep-power"
        " (a heat account: overdue past the grace period, the valve locked unless keep-heat)",
    ),
}

#: The notice text when an account leaves arrears.
RESTORED_NOTICE = "payment received, supply restored"


def balance_tag(account: str) -> str:
    """Return the name of the account's balance tag."""
    return f"acct.{account}.balance"


def level_tag(account: str) -> str:
    """Return the name of the account's warning-level tag."""
    return f"acct.{account}.level"


def held_tag(account: str) -> str:
    """Return the name of the account's held-charge tag (1 while a charge waits for review)."""
    return f"acct.{account}.held"


def locked_tag(account: str) -> str:
    """Return the name of a heat account's valve-locked tag (1 while billing holds it locked)."""
    return f"acct.{account}.locked"


def relay_tag(device: str) -> str:
    """Return the default relay tag of the electricity meter ``device`` (``<device>.relay``)."""
    return f"{device}.relay"


def account_tag_defs(site: BillingSite) -> list[TagDef]:
    """Return the balance and level tags of every account and heat account (memory tags)."""
    from billing.accounts import resolve_accounts
    from billing.heat_accounts import heat_households

    levels = ", ".join(f"{int(lvl)} {info.label}" for lvl, info in LEVELS.items())
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
                description=f"prepaid level: {levels}",
                source=Source.MEMORY,
                min=int(Level.OK),
                max=int(Level.ARREARS),
                building=a.building,
                household=household,
            )
        )
        out.append(
            TagDef(
                held_tag(a.id),
                TagType.INT,
                description="1 while a consumption charge is held for review"
                " (billing.plausibility)",
                source=Source.MEMORY,
                min=0,
                max=1,
                building=a.building,
                household=household,
            )
        )
    for hh in heat_households(site):
        b, h = hh.building, hh.household.id
        out += [
            TagDef(
                balance_tag(hh.account),
                TagType.FLOAT,
                unit="CNY",
                description=f"heat account balance of {hh.household.name or hh.household.id}",
                source=Source.MEMORY,
                building=b,
                household=h,
            ),
            TagDef(
                level_tag(hh.account),
                TagType.INT,
                description="heat account level: 0 ok, 3 arrears (overdue past the grace period)",
                source=Source.MEMORY,
                min=int(Level.OK),
                max=int(Level.ARREARS),
                building=b,
                household=h,
            ),
            TagDef(
                locked_tag(hh.account),
                TagType.INT,
                description="1 while billing holds the valve locked (arrears or suspension)",
                source=Source.MEMORY,
                min=0,
                max=1,
                building=b,
                household=h,
            ),
        ]
    return out


def alarm_rules(site: BillingSite) -> list[Any]:
    """Return alarm rules (``alarms.config`` models) for the account levels and meter overloads.

    Levels: ``billing.alarm1`` (priority 3), ``billing.alarm2`` (2), ``billing.arrears`` (1)
    on ``acct.*.level``; ``billing.overload.<meter device>`` a high limit on the power tag of
    each meter with an overload threshold. Empty without accounts.
    """
    from pydantic import TypeAdapter

    from alarms.config import AlarmRule
    from billing.accounts import resolve_accounts

    accounts = resolve_accounts(site)
    if not accounts:
        return []
    adapter: TypeAdapter[Any] = TypeAdapter(AlarmRule)
    raw: list[dict[str, Any]] = [
        {
            "id": f"billing.{lvl.key}",
            "kind": "state",
            "tags": "acct.*.level",
            "equals": int(lvl),
            "priority": info.priority,
            "message": f"{{tag}}: {info.alarm}",
            "description": info.description,
        }
        for lvl, info in LEVELS.items()
        if info.alarm is not None
    ]
    raw.append(
        {
            "id": "billing.held",
            "kind": "state",
            "tags": "acct.*.held",
            "equals": 1,
            "priority": 2,
            "message": "{tag}: consumption charge held for review (implausible for the meter)",
            "description": "a consumption charge the meters could not have used is held, not"
            " posted: release it (charge) or discard it (after correcting the readings)",
        }
    )
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
