"""Arrears enforcement of heat accounts: lock an overdue household's valve, open it once paid.

For each heat account (``billing.heat_accounts``) ``HeatArrears.evaluate`` decides whether
billing holds the household's valve locked:

1. a household whose heating is **suspended** today (``suspended``, ``suspended_from`` ..
   ``suspended_until``) is locked and stays locked, paid or not, exempt or not;
2. otherwise an **overdue** account (its oldest unpaid charge older than the building's
   ``heat.arrears.grace_days``) is locked when ``heat.arrears.lock`` is set, unless it has
   **keep-heat** (``HouseholdConfig.keep_heat``, overridden by ``Billing.set_keep_heat``:
   audited) or it is **cold**: the building's ``cold_weather_tag`` below
   ``cold_weather_below_c`` (a tag with no good value counts as cold: the safe side);
3. everything else is not locked: a valve billing locked is opened again.

Billing locks a valve by writing ``false`` to its ``valve_tag`` and opens it by writing
``true`` to the valve device's ``auto`` point when it has one (the thermostat takes over
again), else to the ``valve_tag``. The commands go through the ``RelayCommander`` (in ``scada
run`` the command service's: role check, ``min_interval_s``, read-back, an audit record each,
as the system user ``billing``); a refused or failed command changes nothing and is reported
(``AccountStatus.failures``) and retried by the next ``evaluate_changed`` (the scheduler's
minute check); nothing here raises for it.
Valves an operator closed are never opened by billing (the ledger's ``relay_state`` holds what
billing locked). Each evaluation publishes ``acct.<id>.balance``, ``.level`` (3 while overdue)
and ``.locked`` (``billing.tags``). Loop-thread only (it awaits the commander and writes the
TagDatabase).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zoneinfo
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from billing.heat_accounts import (
    ArrearsState,
    HeatHousehold,
    arrears_state,
    heat_households,
    suspended_on,
)
from billing.prepaid import AccountStatus, RelayCommander, switch
from billing.tags import Level, balance_tag, level_tag, locked_tag
from tags.model import Quality

if TYPE_CHECKING:
    from billing.ledger import Ledger
    from billing.site import BillingSite
    from tags.database import TagDatabase

__all__ = ["HeatArrears", "auto_tag"]

log = logging.getLogger(__name__)


def auto_tag(valve_tag: str) -> str:
    """Return the ``auto`` point of a valve's device (``b1.101.valve.open`` -> ``...valve.auto``)."""
    return valve_tag.rsplit(".", 1)[0] + ".auto"


class HeatArrears:
    """Evaluates heat accounts (see the module docstring).

    ``commander`` None (offline tools) switches nothing: the running server's next check
    does. ``db`` receives the tags and gives the outdoor temperature; ``clock`` gives epoch
    seconds (the grace period and the suspension days count by it).
    """

    def __init__(
        self,
        site: BillingSite,
        ledger: Ledger,
        commander: RelayCommander | None,
        db: TagDatabase | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.commander = commander
        self.db = db
        self.clock = clock
        self.tz = site.site.timezone
        self.accounts: dict[str, HeatHousehold] = {h.account: h for h in heat_households(site)}
        # one evaluation per account at a time (a payment and the hourly check on one valve)
        self._locks: dict[str, asyncio.Lock] = {}
        self._seen_seq = 0  # the newest ledger entry evaluate_changed has seen
        self._retry: set[str] = set()  # accounts whose last command failed

    def apply(self, site: BillingSite) -> None:
        """Take the heat accounts of a new site configuration (loop thread)."""
        self.tz = site.site.timezone
        self.accounts = {h.account: h for h in heat_households(site)}

    def state(self, account_id: str) -> ArrearsState:
        """Return the account's arrears now (KeyError for an unknown heat account)."""
        hh = self.accounts[account_id]
        return arrears_state(self.ledger, account_id, hh.grace_days, self.clock())

    def keep_heat(self, account_id: str) -> bool:
        """Return the account's keep-heat setting (the last one set, else the configuration)."""
        return self.ledger.keep_heat(account_id, self.accounts[account_id].household.keep_heat)

    def valves(self, account_id: str) -> dict[str, bool]:
        """Return ``{valve tag: locked by billing}`` of the account's household."""
        tag = self.accounts[account_id].household.valve_tag
        return {} if tag is None else {tag: self.ledger.relay_tripped(tag)}

    def _cold(self, hh: HeatHousehold) -> str | None:
        """Return why the building counts as cold now, or None."""
        cfg = hh.arrears
        if cfg is None or cfg.cold_weather_tag is None or cfg.cold_weather_below_c is None:
            return None
        tag = cfg.cold_weather_tag
        tv = None if self.db is None or tag not in self.db else self.db.read(tag)
        if tv is None or tv.quality is not Quality.GOOD or not isinstance(tv.value, int | float):
            return f"cold-weather rule: {tag} has no good value"
        if tv.value < cfg.cold_weather_below_c:
            return f"cold weather: {tag} {tv.value:g} degC below {cfg.cold_weather_below_c:g}"
        return None

    def decide(self, account_id: str, st: ArrearsState) -> tuple[bool, str]:
        """Return (lock the valve, why) for the account in state ``st``."""
        hh = self.accounts[account_id]
        today = datetime.fromtimestamp(self.clock(), zoneinfo.ZoneInfo(self.tz)).date()
        if suspended_on(hh.household, today):
            return True, f"household {hh.household.id} heating suspended"
        if not st.overdue:
            return False, f"heat account {account_id} not overdue (balance {st.balance})"
        if hh.arrears is None or not hh.arrears.lock:
            return False, f"heat account {account_id} overdue; locking is off"
        if self.keep_heat(account_id):
            return False, f"heat account {account_id} overdue; keep-heat"
        cold = self._cold(hh)
        if cold is not None:
            return False, f"heat account {account_id} overdue; {cold}"
        return True, f"heat account {account_id} in arrears (balance {st.balance}) past the grace"

    def publish(self, account_id: str, st: ArrearsState) -> None:
        """Write the account's balance, level and locked tags (when the database has them)."""
        if self.db is None:
            return
        locked = any(self.valves(account_id).values())
        level = Level.ARREARS if st.overdue else Level.OK
        for name, value in (
            (balance_tag(account_id), float(st.balance)),
            (level_tag(account_id), int(level)),
            (locked_tag(account_id), int(locked)),
        ):
            if name in self.db:
                self.db.update(name, value)

    async def evaluate(self, account_id: str) -> AccountStatus | None:
        """Publish the account's tags and lock / open its valve; None if it is not open.

        Evaluations of one account are serialised (event loop only).
        """
        lock = self._locks.setdefault(account_id, asyncio.Lock())
        async with lock:
            return await self._evaluate(account_id)

    async def _evaluate(self, account_id: str) -> AccountStatus | None:
        hh = self.accounts[account_id]
        if not self.ledger.is_open(account_id):
            return None
        st = self.state(account_id)
        status = AccountStatus(account_id, st.balance, Level.ARREARS if st.overdue else Level.OK)
        valve = hh.household.valve_tag
        if self.commander is not None and valve is not None:
            want, reason = self.decide(account_id, st)
            locked = self.ledger.relay_tripped(valve)
            if want and not locked:
                await switch(
                    self.commander,
                    self.ledger,
                    status,
                    valve,
                    False,
                    off=True,
                    reason=reason,
                    verb="locked",
                )
            elif not want and locked:
                auto = auto_tag(valve)
                target = auto if self.db is not None and auto in self.db else valve
                await switch(
                    self.commander,
                    self.ledger,
                    status,
                    target,
                    True,
                    off=False,
                    reason=reason,
                    verb="opened",
                    state_tag=valve,
                )
        if status.failures:
            self._retry.add(account_id)
        else:
            self._retry.discard(account_id)
        self.publish(account_id, st)
        return status

    async def evaluate_changed(self) -> list[AccountStatus]:
        """Evaluate the heat accounts with ledger entries new since the last call (a top-up made
        with the CLI) and those whose last command failed: the scheduler's minute check."""
        (top,) = self.ledger.query("SELECT coalesce(max(seq), 0) FROM entries")
        rows = self.ledger.query(
            "SELECT DISTINCT account FROM entries WHERE seq > ? AND seq <= ?",
            [self._seen_seq, top[0]],
        )
        self._seen_seq = max(self._seen_seq, int(top[0]))
        wanted = {r[0] for r in rows if r[0] in self.accounts} | self._retry
        out = []
        for account_id in [a for a in self.accounts if a in wanted]:
            s = await self.evaluate(account_id)
            if s is not None:
                out.append(s)
        return out

    async def evaluate_all(self) -> list[AccountStatus]:
        """Evaluate every open heat account (the hourly arrears check)."""
        out = []
        for account_id in list(self.accounts):
            s = await self.evaluate(account_id)
            if s is not None:
                out.append(s)
        return out
