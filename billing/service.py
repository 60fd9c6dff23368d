"""``Billing``: the service facade the CLI, the REST API and the scheduler call.

Queries (allocations, bills, accounts, ledgers, reports) are synchronous and read the historian
(SQLite: call them from a worker thread on the event loop). Money operations write the ledger
and, when a ``PrepaidController`` is attached, re-evaluate the account's level and relays:
those are ``async``; their ledger (and historian) writes run through ``offload`` when given
(the REST API passes its worker threads), the relay evaluation on the loop. Account ids are
checked against the configuration (``KeyError``); ledger rule violations raise ``LedgerError``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from billing.accounts import ResolvedAccount, resolve_accounts
from billing.bills import BillRun, bill_accounts
from billing.heat import HeatAllocation, allocate_heat
from billing.ledger import Entry, Ledger
from billing.prepaid import AccountStatus, PrepaidController, RelayCommander, level_of
from billing.readings import HistorianReadings, LedgerReadings

if TYPE_CHECKING:
    from billing.periods import Period
    from billing.reports import Report
    from historian.base import Historian
    from scada.config import SiteConfig

__all__ = ["Billing", "Offload"]

T = TypeVar("T")

#: Runs a blocking call off the event loop and returns its result (e.g. ``asyncio.to_thread``
#: or the server's ``ServerContext.run_blocking``).
Offload = Callable[[Callable[[], Any]], Awaitable[Any]]


async def _run(fn: Callable[[], T], offload: Offload | None) -> T:
    """Call ``fn`` here, or through ``offload`` (a worker thread) when given."""
    if offload is None:
        return fn()
    result: T = await offload(fn)
    return result


class Billing:
    """Heat allocation, bills, accounts and reports of one site.

    ``historian`` may be None for ledger-only use (account commands). ``commander`` and ``db``
    enable relay control and the balance / level tags (see ``billing.prepaid``).
    """

    def __init__(
        self,
        site: SiteConfig,
        ledger: Ledger,
        historian: Historian | None = None,
        *,
        commander: RelayCommander | None = None,
        db: Any = None,
        data_dir: str | Path | None = None,
    ) -> None:
        self.site = site
        self.ledger = ledger
        self.historian = historian
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.prepaid = PrepaidController(site, ledger, commander, db)
        self._accounts = {a.id: a for a in resolve_accounts(site)}

    @property
    def tz(self) -> str:
        """The site's time zone (periods are local)."""
        return self.site.site.timezone

    def _hist(self) -> Historian:
        if self.historian is None:
            raise RuntimeError("this Billing has no historian")
        return self.historian

    def account_config(self, account_id: str) -> ResolvedAccount:
        """Return the resolved configuration of an account; KeyError naming it if unknown."""
        try:
            return self._accounts[account_id]
        except KeyError:
            raise KeyError(f"unknown account {account_id!r}") from None

    # ------------------------------------------------------------------ computations

    def allocate_heat(
        self, start: float, end: float, buildings: list[str] | None = None
    ) -> HeatAllocation:
        """Return the heat allocation of ``[start, end)`` (see ``billing.heat``).

        A period that reaches into the future is allocated up to now: the historian holds a
        valve's last state until its next sample, and a state cannot be known to hold beyond
        the present (a month-to-date allocation must not give the rest of the month to the
        valves that happen to be open now). ValueError if the period has not begun.
        """
        now = time.time()
        if start >= now:
            raise ValueError("the allocation period has not begun yet")
        return allocate_heat(self.site, self._hist(), start, min(end, now), buildings)

    def readings(self, source: str = "historian") -> Any:
        """Return a reading source: ``historian`` (every sample) or ``billing`` (30-min readings)."""
        if source == "billing":
            return LedgerReadings(self.ledger)
        return HistorianReadings(self._hist(), self.ledger.replacements)

    def bill(
        self,
        start: float,
        end: float,
        accounts: list[str] | None = None,
        *,
        source: str = "historian",
        shared: bool = True,
    ) -> BillRun:
        """Return the bills of ``[start, end)`` (see ``billing.bills``)."""
        if accounts is not None:
            for a in accounts:
                self.account_config(a)
        return bill_accounts(
            self.site, self.readings(source), start, end, accounts=accounts, shared=shared
        )

    # ------------------------------------------------------------------ accounts

    def accounts(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Return every account (or a tenant's) with balance and level; money as strings."""
        balances = self.ledger.balances()
        out = []
        for a in self._accounts.values():
            if tenant is not None and a.config.tenant != tenant:
                continue
            opened = self.ledger.is_open(a.id)
            bal = balances.get(a.id, Decimal("0.00"))
            out.append(
                {
                    "id": a.id,
                    "tenant": a.config.tenant,
                    "tariff": a.tariff.id,
                    "building": a.building,
                    "meters": [m.energy for m in a.meters],
                    "open": opened,
                    "balance": str(bal),
                    "level": int(level_of(bal, a.config.alarm1, a.config.alarm2))
                    if opened
                    else None,
                    "keep_power": self.ledger.keep_power(a.id, a.config.keep_power),
                }
            )
        return out

    def account(self, account_id: str) -> dict[str, Any]:
        """Return one account with its ledger entries."""
        self.account_config(account_id)
        info = next(a for a in self.accounts() if a["id"] == account_id)
        info["entries"] = [e.to_json() for e in self.ledger.entries(account_id)]
        return info

    def entries(self, account_id: str, **filters: Any) -> list[Entry]:
        """Return the ledger entries of an account (filters as ``Ledger.entries``)."""
        self.account_config(account_id)
        return self.ledger.entries(account_id, **filters)

    def account_ids(self) -> list[str]:
        """Return the configured account ids (configuration order)."""
        return list(self._accounts)

    async def _after(self, account_id: str) -> AccountStatus | None:
        return await self.prepaid.evaluate(account_id)

    async def _ledger_op(
        self, account_id: str, op: Callable[[], T], offload: Offload | None, evaluate: bool
    ) -> T:
        """Run one ledger write for a known account (off the loop with ``offload``), then
        re-check the account's level and relays unless ``evaluate`` is False."""
        self.account_config(account_id)
        result = await _run(op, offload)
        if evaluate:
            await self._after(account_id)
        return result

    async def open_account(
        self,
        account_id: str,
        amount: Decimal | str | None = None,
        *,
        user: str = "",
        note: str = "",
        ts: float | None = None,
    ) -> Entry:
        """Open an account (default amount: its configured ``opening_balance``)."""
        cfg = self.account_config(account_id).config
        e = self.ledger.open_account(
            account_id,
            cfg.opening_balance if amount is None else amount,
            user=user,
            note=note,
            ts=ts,
        )
        await self._after(account_id)
        return e

    async def topup(
        self,
        account_id: str,
        amount: Decimal | str,
        *,
        user: str = "",
        note: str = "",
        offload: Offload | None = None,
        evaluate: bool = True,
        key: str | None = None,
    ) -> Entry:
        """Credit a top-up; closes the relays if the balance is above zero again.

        ``evaluate=False`` leaves the level and relay evaluation to the caller (who then calls
        ``prepaid.evaluate`` to see the relay actions); the same for every money operation.
        """
        return await self._ledger_op(
            account_id,
            lambda: self.ledger.topup(account_id, amount, user=user, note=note, key=key),
            offload,
            evaluate,
        )

    async def set_keep_power(
        self,
        account_id: str,
        keep: bool,
        *,
        user: str = "",
        note: str = "",
        offload: Offload | None = None,
        evaluate: bool = True,
    ) -> None:
        """Switch keep-power on or off (overrides the config); an account in arrears with keep-power
        gets its relay closed again, one without it is tripped (through the command service)."""
        await self._ledger_op(
            account_id,
            lambda: self.ledger.set_keep_power(account_id, keep, user=user, note=note),
            offload,
            evaluate,
        )

    async def refund(
        self,
        account_id: str,
        amount: Decimal | str,
        *,
        user: str = "",
        note: str = "",
        offload: Offload | None = None,
        evaluate: bool = True,
        key: str | None = None,
    ) -> Entry:
        """Pay money back (at most the balance)."""
        return await self._ledger_op(
            account_id,
            lambda: self.ledger.refund(account_id, amount, user=user, note=note, key=key),
            offload,
            evaluate,
        )

    async def reverse(
        self,
        account_id: str,
        seq: int,
        *,
        user: str = "",
        note: str = "",
        offload: Offload | None = None,
        evaluate: bool = True,
    ) -> Entry:
        """Reverse one named entry of the account (top-up, refund, opening, shared loss)."""
        return await self._ledger_op(
            account_id,
            lambda: self.ledger.reverse(account_id, seq, user=user, note=note),
            offload,
            evaluate,
        )

    async def replace_meter(
        self,
        account_id: str,
        meter: str,
        old_final: float,
        new_initial: float,
        *,
        ts: float | None = None,
        user: str = "",
        note: str = "",
        offload: Offload | None = None,
        evaluate: bool = True,
    ) -> Entry:
        """Record a meter swap in the ledger and the historian (``delta`` then spans it)."""
        acct = self.account_config(account_id)
        if meter not in {m.energy for m in acct.meters}:
            raise KeyError(f"account {account_id!r} has no meter {meter!r}")
        at = time.time() if ts is None else ts

        def write() -> Entry:
            e = self.ledger.replace_meter(
                account_id, meter, at, old_final, new_initial, user=user, note=note
            )
            if self.historian is not None:
                self.historian.record_replacement(meter, at, old_final, new_initial)
            return e

        e = await _run(write, offload)
        if evaluate:
            await self._after(account_id)
        return e

    # ------------------------------------------------------------------ reports

    def report(self, kind: str, period: str | Period) -> Report:
        """Return the report ``kind`` of ``period`` (see ``billing.reports``)."""
        from billing.reports import build_report

        return build_report(self, kind, period)
