"""Billing: heat allocation, electricity tariffs, shared losses, prepaid accounts, reports, schedules.

Entry points: ``Billing`` (the service facade the CLI and REST call), ``BillingScheduler``
(APScheduler jobs inside ``scada run``), ``Ledger`` (SQLite, append-only), ``account_tag_defs``
and ``alarm_rules`` (prepaid warning tags and the alarm rules that watch them),
``RelayCommander`` (the protocol the command service implements for trip / close).

Names are imported lazily: ``scada.config`` imports ``billing.config`` at start-up, and the
rest (numpy, SQLite, APScheduler) is only needed by the parts that bill.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "AccountConfig",
    "Billing",
    "BillingScheduler",
    "ElectricityConfig",
    "Ledger",
    "RelayCommander",
    "TariffConfig",
    "account_tag_defs",
    "alarm_rules",
]

_WHERE = {
    "AccountConfig": "billing.config",
    "ElectricityConfig": "billing.config",
    "TariffConfig": "billing.config",
    "Billing": "billing.service",
    "BillingScheduler": "billing.jobs",
    "Ledger": "billing.ledger",
    "RelayCommander": "billing.prepaid",
    "account_tag_defs": "billing.tags",
    "alarm_rules": "billing.tags",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'billing' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
