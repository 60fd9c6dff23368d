"""Prepaid control: warning levels from the balance, trip on arrears, close after a top-up.

Levels (``billing.tags.Level``): arrears when the balance is at or below zero, else alarm 2 at
or below ``alarm2``, else alarm 1 at or below ``alarm1``, else ok. ``PrepaidController``
publishes ``acct.<id>.balance`` / ``.level`` into the TagDatabase (the alarm engine raises and
notifies from there) and drives the meter relays through a ``RelayCommander``: on arrears each
relay is tripped unless the account has ``keep_power``; once the balance is above zero (or
keep-power is set) the relays billing tripped are closed again. Relays an operator tripped are
never closed by billing. A failed command leaves the state unchanged, so the next evaluation
retries it. Billing has no path to the drivers of its own: in ``scada run`` the commander is
the command service's (``scada.services.commands.CommandRelayCommander``), so every trip and
close is role-checked, limited and audited. ``switch`` (one command and what billing remembers
of it) is shared with the heat accounts' valve locks (``billing.heat_arrears``). Loop-thread
only (it awaits the commander and updates the TagDatabase).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from billing.accounts import ResolvedAccount, resolve_accounts
from billing.plausibility import HeldCharges
from billing.tags import Level, balance_tag, held_tag, level_tag

if TYPE_CHECKING:
    from billing.ledger import Ledger
    from billing.site import BillingSite
    from tags.database import TagDatabase

__all__ = [
    "AccountStatus",
    "PrepaidController",
    "RelayCommander",
    "RelayResult",
    "level_of",
    "switch",
]

log = logging.getLogger(__name__)


class RelayResult(Protocol):
    """What a relay command returns: ``ok`` once the relay confirmed the state."""

    @property
    def ok(self) -> bool: ...

    @property
    def message(self) -> str: ...


class RelayCommander(Protocol):
    """Trips / closes a meter relay; the runtime wires it to the command service (issue 6).

    ``meter`` is the relay tag (``<meter device>.relay``); ``closed`` True closes the supply.
    ``reason`` goes to the audit record. Heat arrears (``billing.heat_arrears``) switch
    household valves with it too: any boolean point billing writes (``closed`` is the value).
    """

    async def set_relay(self, meter: str, closed: bool, reason: str) -> RelayResult: ...


def level_of(balance: Decimal, alarm1: Decimal, alarm2: Decimal) -> Level:
    """Return the warning level of ``balance`` for the thresholds ``alarm1 >= alarm2 >= 0``."""
    if balance <= 0:
        return Level.ARREARS
    if balance <= alarm2:
        return Level.ALARM2
    if balance <= alarm1:
        return Level.ALARM1
    return Level.OK


@dataclass(slots=True)
class AccountStatus:
    """Result of one evaluation: balance, level and the relay (or valve) commands sent."""

    account: str
    balance: Decimal
    level: Level
    actions: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


async def switch(
    commander: RelayCommander,
    ledger: Ledger,
    status: AccountStatus,
    tag: str,
    value: bool,
    *,
    off: bool,
    reason: str,
    verb: str,
    state_tag: str | None = None,
) -> bool:
    """Write ``value`` to ``tag`` through the commander as billing; True once confirmed.

    On success the ledger remembers whether billing holds ``state_tag`` (default ``tag``)
    switched ``off`` (``Ledger.relay_tripped``) and ``status.actions`` gets
    ``"<state_tag> <verb>"``; a refusal of the command service (role, ``min_interval_s``,
    device offline) or a failed write is logged and reported in ``status.failures`` and changes
    nothing, so the next evaluation retries. Never raises for a command that fails.
    """
    name = tag if state_tag is None else state_tag
    try:
        result = await commander.set_relay(tag, value, reason)
        ok, message = bool(result.ok), str(getattr(result, "message", ""))
    except Exception as exc:  # the command service refused: retry next time
        ok, message = False, str(exc)
    if ok:
        ledger.set_relay_state(name, off, reason)
        status.actions.append(f"{name} {verb}")
        log.info("%s: %s", name, reason)
    else:
        status.failures.append(f"{tag}: {message}")
        log.warning("%s: command %s failed (%s): %s", tag, verb, reason, message)
    return ok


class PrepaidController:
    """Evaluates prepaid accounts (see the module docstring).

    ``commander`` is required: the command service's in ``scada run``; None only in offline
    tools (the CLI), which then switch no relay (the running server's next prepaid check
    does). ``db`` (the TagDatabase) receives the balance and level tags when given.
    """

    def __init__(
        self,
        site: BillingSite,
        ledger: Ledger,
        commander: RelayCommander | None,
        db: TagDatabase | None = None,
    ) -> None:
        self.ledger = ledger
        self.commander = commander
        self.db = db
        self.accounts: dict[str, ResolvedAccount] = {a.id: a for a in resolve_accounts(site)}
        # One evaluation per account at a time: a scheduled check, a top-up and a manual
        # "restore prepaid" must not race two commands onto the same relay.
        self._locks: dict[str, asyncio.Lock] = {}

    def apply(self, site: BillingSite) -> None:
        """Take the accounts of a new site configuration (loop thread)."""
        self.accounts = {a.id: a for a in resolve_accounts(site)}

    def level(self, account_id: str) -> tuple[Decimal, Level]:
        """Return (balance, level) of an account from the ledger."""
        a = self.accounts[account_id].config
        bal = self.ledger.balance(account_id)
        return bal, level_of(bal, a.alarm1, a.alarm2)

    def relays(self, account_id: str) -> dict[str, bool]:
        """Return ``{relay tag: tripped by billing}`` of the account's meters with a relay."""
        acct = self.accounts[account_id]
        return {m.relay: self.ledger.relay_tripped(m.relay) for m in acct.meters if m.relay}

    def publish(self, account_id: str, balance: Decimal, level: Level) -> None:
        """Write the account's balance, level and held tags (when the database has them)."""
        if self.db is None:
            return
        held = int(HeldCharges(self.ledger).open_hold(account_id) is not None)
        for name, value in (
            (balance_tag(account_id), float(balance)),
            (level_tag(account_id), int(level)),
            (held_tag(account_id), held),
        ):
            if name in self.db:
                self.db.update(name, value)

    async def evaluate(self, account_id: str) -> AccountStatus | None:
        """Publish the account's level and trip / close its relays; None if it is not open.

        Evaluations of one account are serialised (event loop only): a second caller waits for
        the first and then sees the relay state it left.
        """
        lock = self._locks.setdefault(account_id, asyncio.Lock())
        async with lock:
            return await self._evaluate(account_id)

    async def _evaluate(self, account_id: str) -> AccountStatus | None:
        acct = self.accounts[account_id]
        if not self.ledger.is_open(account_id):
            return None
        bal, lvl = self.level(account_id)
        self.publish(account_id, bal, lvl)
        status = AccountStatus(account_id, bal, lvl)
        if self.commander is None:
            return status
        keep = self.ledger.keep_power(account_id, acct.config.keep_power)
        trip = lvl is Level.ARREARS and not keep
        for m in acct.meters:
            if m.relay is None:
                continue
            tripped = self.ledger.relay_tripped(m.relay)
            if trip and not tripped:
                reason = f"account {account_id} in arrears (balance {bal})"
                closed = False
            elif not trip and tripped:
                why = "keep-power" if lvl is Level.ARREARS else f"balance {bal}"
                reason = f"account {account_id} restored ({why})"
                closed = True
            else:
                continue
            verb = "closed" if closed else "tripped"
            await switch(
                self.commander,
                self.ledger,
                status,
                m.relay,
                closed,
                off=not closed,
                reason=reason,
                verb=verb,
            )
        return status

    async def evaluate_all(self) -> list[AccountStatus]:
        """Evaluate every open account."""
        out = []
        for account_id in self.accounts:
            s = await self.evaluate(account_id)
            if s is not None:
                out.append(s)
        return out
