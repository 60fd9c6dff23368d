"""The cashier's account search: flat, tenant name, phone or meter id -> accounts.

:func:`find_accounts` is pure (the site's configuration and billing's resolved accounts): a
query matches an account when it is a case-insensitive part of the account id, its household
id or name, the tenant (the account's, else the household's), a phone or e-mail (the
account's or the household's; phones compared on their digits) or a meter (device id or
energy tag). :func:`account_summary` reads what the cashier sees of one account: the
electricity balance and level, the household's heat account balance, the last entries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from billing.heat_accounts import heat_account_id
from billing.ledger import Entry
from billing.prepaid import level_of
from billing.service import Billing
from billing.tags import Level
from i18n import _

__all__ = [
    "AccountMatch",
    "AccountSummary",
    "account_summary",
    "entry_kind_text",
    "find_accounts",
]

#: How many ledger entries the cashier sees of an account.
LAST_ENTRIES = 10


@dataclass(frozen=True, slots=True)
class AccountMatch:
    """An account the search found, with what names it on the screen."""

    account: str
    household: str
    tenant: str
    phone: str
    label: str  # "b1-101 · Flat 101 · 138 0000 0000"


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _words(billing: Billing, account: str) -> tuple[AccountMatch, list[str], list[str]]:
    """Return the match of an account, the texts a query may be part of, and its phones."""
    a = billing.account_config(account)
    cfg = a.config
    household = None
    if cfg.household:
        household = next((h for h in billing.site.households() if h.id == cfg.household), None)
    tenant = cfg.tenant or (household.tenant if household else "")
    phones = [p for p in (cfg.phone, household.phone if household else None) if p]
    emails = [e for e in (cfg.email, household.email if household else None) if e]
    meters = [m.energy for m in a.meters] + [m.energy.rsplit(".", 1)[0] for m in a.meters]
    texts = [cfg.id, cfg.household or "", tenant, *phones, *emails, *meters]
    if household is not None:
        texts.append(household.name)
    label = " · ".join(x for x in (cfg.id, tenant, phones[0] if phones else "") if x)
    match = AccountMatch(cfg.id, cfg.household or "", tenant, phones[0] if phones else "", label)
    return match, [t.lower() for t in texts if t], phones


def find_accounts(billing: Billing, query: str, limit: int = 50) -> list[AccountMatch]:
    """Return the accounts ``query`` names (configuration order, at most ``limit``)."""
    q = query.strip().lower()
    if not q:
        return []
    digits = _digits(q)
    out: list[AccountMatch] = []
    for account in billing.account_ids():
        match, texts, phones = _words(billing, account)
        hit = any(q in t for t in texts)
        if not hit and len(digits) >= 4:  # "138-0000 0000" finds "13800000000"
            hit = any(digits in _digits(p) for p in phones)
        if hit:
            out.append(match)
            if len(out) >= limit:
                break
    return out


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """What the cashier sees of one account."""

    account: str
    tenant: str
    open: bool
    balance: Decimal
    level: Level | None
    heat_account: str | None
    heat_balance: Decimal | None
    entries: list[Entry]  # newest first, at most LAST_ENTRIES


def account_summary(billing: Billing, account: str) -> AccountSummary:
    """Return the balances, level and last entries of ``account`` (reads the ledger)."""
    a = billing.account_config(account)
    ledger = billing.ledger
    opened = ledger.is_open(account)
    balance = ledger.balance(account)
    level = level_of(balance, a.config.alarm1, a.config.alarm2) if opened else None
    heat = heat_account_id(a.config.household) if a.config.household else None
    heat_balance = None
    if heat is not None and heat in billing.heat.accounts:
        heat_balance = ledger.balance(heat)
    else:
        heat = None
    entries = ledger.entries(account)[-LAST_ENTRIES:][::-1]
    match, _texts, _phones = _words(billing, account)
    return AccountSummary(
        account, match.tenant, opened, balance, level, heat, heat_balance, entries
    )


def entry_kind_text(entry: Entry) -> str:
    """Return the entry's kind as the list shows it (translated)."""
    texts: dict[str, Any] = {
        "opening": _("opening"),
        "topup": _("payment"),
        "refund": _("refund"),
        "reversal": _("reversal"),
        "consumption": _("consumption"),
        "shared_loss": _("shared loss"),
        "replacement": _("meter replacement"),
        "heat_advance": _("heat advance"),
        "heat_charge": _("heat charge"),
        "heat_settlement": _("heat settlement"),
        "closing": _("closing"),
    }
    return str(texts.get(entry.kind.value, entry.kind.value))
