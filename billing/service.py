"""``Billing``: the service facade the CLI, the REST API, the HMI and the scheduler call.

Queries (allocations, bills, accounts, ledgers, reports) are synchronous and read the historian
(SQLite: call them from a worker thread on the event loop).

Money operations (top-up, refund, reversal, meter replacement, keep-power, restore-prepaid)
are each one ``async`` operation, whoever calls it: check the input (``parse_amount``; an
unknown account is ``UnknownAccount``: neither is audited), write the ledger (through
``offload`` when given: the REST API passes its worker threads), re-evaluate the account's
level and relays (on the loop, through the commander), write one audit entry and return a
``MoneyResult``. A refusal (a ``billing.errors`` class) is audited with result ``failed`` and
re-raised. A top-up or refund repeated with its idempotency key posts nothing, evaluates
nothing and writes no audit entry: it returns the entry posted before with ``repeated``.
Audit entries (action ``billing.<op>``, target the account): ``before`` ``{"balance"}``,
``after`` the request's fields plus ``balance``, ``entry``, ``relay_actions`` and
``relay_failures``; keep-power ``before``/``after`` ``{"keep_power"}`` with ``reason``.

Heat accounts (``<household>.heat``, ``billing.heat_accounts``) take top-up, refund and reversal
the same way (the evaluation then locks or opens the household's valve: ``billing.heat_arrears``)
and keep-heat (``set_keep_heat``, audited ``billing.keep_heat``).
Callers check permissions themselves (the REST handler, the HMI session).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from billing.accounts import ResolvedAccount, resolve_accounts
from billing.bills import BillRun, bill_accounts
from billing.errors import BillingError, UnknownAccount, UnknownMeter
from billing.heat import HeatAllocation, allocate_heat
from billing.heat_accounts import heat_account_id, is_heat_account
from billing.heat_arrears import HeatArrears
from billing.heat_fees import HeatFee, heat_fees, paid_into, payments_since, tariff_of
from billing.ledger import Entry, EntryKind, Ledger, Posted
from billing.lifecycle import Closing, close_account
from billing.money import AuditAction, AuditSink, MoneyResult, parse_amount
from billing.plausibility import HeldCharges, Hold, HoldState, check_replacement
from billing.prepaid import AccountStatus, PrepaidController, RelayCommander, level_of
from billing.readings import HistorianReadings, LedgerReadings, ReadingSource
from billing.tags import Level
from tags.model import Quality

if TYPE_CHECKING:
    from billing.periods import Period
    from billing.reports import Report
    from billing.site import BillingSite
    from billing.statements import Statement
    from historian.base import Historian
    from tags.database import TagDatabase

__all__ = ["Billing", "MoneyResult", "Offload"]

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


def _name(user: Any) -> str:
    """The name the ledger stores for ``user`` (a user object or a name)."""
    return str(getattr(user, "name", user) or "")


class Billing:
    """Heat allocation, bills, accounts, money operations and reports of one site.

    ``historian`` may be None for ledger-only use (account commands). ``commander`` (required)
    switches the meter relays: the command service's in ``scada run``; None only in offline
    tools (the CLI: the running server's next prepaid check switches them). ``audit``
    (required) records every money operation; None only for read-only use (a money operation
    then raises ``RuntimeError``). ``db`` receives the balance / level tags (``billing.prepaid``).
    ``clock`` (epoch seconds) times the heat accounts' grace periods (``billing.heat_arrears``).
    """

    def __init__(
        self,
        site: BillingSite,
        ledger: Ledger,
        historian: Historian | None = None,
        *,
        commander: RelayCommander | None,
        audit: AuditSink | None,
        db: TagDatabase | None = None,
        data_dir: str | Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.site = site
        self.ledger = ledger
        self.historian = historian
        self.audit = audit
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.prepaid = PrepaidController(site, ledger, commander, db)
        self.heat = HeatArrears(site, ledger, commander, db, clock=clock)
        self._accounts = {a.id: a for a in resolve_accounts(site)}

    def apply(self, site: BillingSite) -> None:
        """Take a new site configuration: accounts, tariffs, meters (loop thread)."""
        self.site = site
        self._accounts = {a.id: a for a in resolve_accounts(site)}
        self.prepaid.apply(site)
        self.heat.apply(site)

    @property
    def tz(self) -> str:
        """The site's time zone (periods are local)."""
        return self.site.site.timezone

    def _hist(self) -> Historian:
        if self.historian is None:
            raise RuntimeError("this Billing has no historian")
        return self.historian

    def account_config(self, account_id: str) -> ResolvedAccount:
        """Return the resolved configuration of an account; ``UnknownAccount`` (a KeyError)."""
        try:
            return self._accounts[account_id]
        except KeyError:
            raise UnknownAccount(f"unknown account {account_id!r}") from None

    def heat_account(self, account_id: str) -> str:
        """Return the heat account id of a heat account or household id; ``UnknownAccount``."""
        acct = account_id if is_heat_account(account_id) else heat_account_id(account_id)
        if acct not in self.heat.accounts:
            raise UnknownAccount(f"unknown heat account {account_id!r}")
        return acct

    def require_account(self, account_id: str) -> None:
        """Raise ``UnknownAccount`` unless ``account_id`` is an account or a heat account."""
        if account_id not in self.heat.accounts:
            self.account_config(account_id)

    def account_scope(self, account_id: str) -> tuple[str, str]:
        """Return (account id, household id or "") for permission checks; ``UnknownAccount``."""
        hh = self.heat.accounts.get(account_id)
        if hh is not None:
            return account_id, hh.household.id
        cfg = self.account_config(account_id).config
        return cfg.id, cfg.household or ""

    def _keep(self, account_id: str) -> bool:
        """The account's keep-power (a heat account: keep-heat) setting."""
        if account_id in self.heat.accounts:
            return self.heat.keep_heat(account_id)
        return self.ledger.keep_power(account_id, self.account_config(account_id).config.keep_power)

    async def evaluate(self, account_id: str) -> AccountStatus | None:
        """Evaluate an account's level and relays, or a heat account's arrears and valve."""
        if account_id in self.heat.accounts:
            return await self.heat.evaluate(account_id)
        return await self.prepaid.evaluate(account_id)

    def switches(self, account_id: str) -> dict[str, bool]:
        """Return ``{relay or valve tag: switched off by billing}`` of an account."""
        if account_id in self.heat.accounts:
            return self.heat.valves(account_id)
        return self.prepaid.relays(account_id)

    def heat_accounts(self) -> list[dict[str, Any]]:
        """Return every heat account: balance, arrears, keep-heat, valve; money as strings."""
        out = []
        for acct, hh in self.heat.accounts.items():
            st = self.heat.state(acct)
            out.append(
                {
                    **st.to_json(),
                    "household": hh.household.id,
                    "building": hh.building,
                    "open": self.ledger.is_open(acct),
                    "level": int(Level.ARREARS if st.overdue else Level.OK),
                    "keep_heat": self.heat.keep_heat(acct),
                    "suspended": hh.household.suspended,
                    "valves": self.heat.valves(acct),
                }
            )
        return out

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

    def readings(self, source: str = "historian") -> ReadingSource:
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

    def heat_fees(
        self,
        start: float,
        end: float,
        buildings: list[str] | None = None,
        *,
        allocation: HeatAllocation | None = None,
    ) -> list[HeatFee]:
        """Return the heat fees of ``[start, end)`` (see ``billing.heat_fees``).

        The heat is ``allocate_heat``'s (up to now for a window that reaches into the future),
        or ``allocation`` when the caller has it already (of the same window); suspended days
        are counted in the whole window. Only buildings with a heat tariff are priced (KeyError
        for an unknown building, ValueError for a window not yet begun). ``paid`` is the net
        cash of each household's heat account since the end of the previous heating season
        (``billing.heat_fees.paid_into``), None without such an account.
        """
        wanted = [b.id for b in self.site.buildings] if buildings is None else list(buildings)
        tariffs = {b: t for b in wanted if (t := tariff_of(self.site, b)) is not None}
        if not tariffs:
            return []
        alloc = allocation or self.allocate_heat(start, end, list(tariffs))
        alloc = HeatAllocation(
            alloc.start, alloc.end, [b for b in alloc.buildings if b.id in tariffs]
        )
        since = {
            h.id: payments_since(tariffs[b.id], start, self.tz)
            for b in alloc.buildings
            for h in b.households
        }
        paid = paid_into(self.ledger, since, end)
        return heat_fees(self.site, alloc, start, end, paid=paid)

    def heat_statements(self, start: float, end: float, households: list[str]) -> list[Statement]:
        """Return the season statements of ``households`` (``billing.statements``), in order.

        KeyError naming the household when it is unknown or not priced (no heat tariff for its
        building, or no valve: not part of the heat allocation).
        """
        from billing.statements import build_statement

        buildings: list[str] = []
        for h in households:
            try:
                b = self.site.household_building(h)
            except KeyError:
                raise KeyError(f"unknown household {h!r}") from None
            if b not in buildings:
                buildings.append(b)
        fees = {f.household: f for f in self.heat_fees(start, end, buildings)}
        out = []
        for h in households:
            fee = fees.get(h)
            if fee is None:
                raise KeyError(f"household {h!r} has no heat fee (no heat tariff or no valve)")
            tariff = tariff_of(self.site, fee.building)
            assert tariff is not None  # priced above
            name = self.site.site.name or self.site.site.id
            out.append(build_statement(fee, tariff, start, end, self.tz, site_name=name))
        return out

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
        """Return one account (or heat account) with its ledger entries."""
        if account_id in self.heat.accounts:
            info = next(a for a in self.heat_accounts() if a["account"] == account_id)
        else:
            self.account_config(account_id)
            info = next(a for a in self.accounts() if a["id"] == account_id)
        info["entries"] = [e.to_json() for e in self.ledger.entries(account_id)]
        return info

    def entries(self, account_id: str, **filters: Any) -> list[Entry]:
        """Return the ledger entries of an account (filters as ``Ledger.entries``)."""
        self.require_account(account_id)
        return self.ledger.entries(account_id, **filters)

    def account_ids(self) -> list[str]:
        """Return the configured account ids (configuration order)."""
        return list(self._accounts)

    def relays(self, account_id: str) -> dict[str, bool]:
        """Return ``{relay tag: tripped by billing}`` of an account's meters."""
        self.account_config(account_id)
        return self.prepaid.relays(account_id)

    # ------------------------------------------------------------------ money operations

    async def open_account(
        self,
        account_id: str,
        amount: Decimal | str | None = None,
        *,
        user: Any = "system",
        note: str = "",
        ts: float | None = None,
    ) -> Entry:
        """Open an account (default amount: its configured ``opening_balance``).

        Not audited: accounts are opened by configuration (the scheduler at start-up) or the CLI.
        """
        cfg = self.account_config(account_id).config
        e = self.ledger.open_account(
            account_id,
            cfg.opening_balance if amount is None else amount,
            user=_name(user),
            note=note,
            ts=ts,
        )
        await self.prepaid.evaluate(account_id)
        return e

    async def open(
        self,
        account_id: str,
        amount: Decimal | str | None = None,
        *,
        user: Any = "system",
        source: str | None = None,
        note: str = "",
        offload: Offload | None = None,
    ) -> MoneyResult:
        """Open a configured account (default amount: its ``opening_balance``), audited as
        ``billing.open_account``; repeat-safe: opened before with the same amount posts nothing
        (``repeated``). Raises ``UnknownAccount``, ``BadAmount`` (not audited),
        ``IdempotencyConflict`` (opened with another amount), ``AccountClosed`` (audited)."""
        cfg = self.account_config(account_id).config
        what = f"account {account_id}: opening amount"
        a = parse_amount(cfg.opening_balance if amount is None else amount, what, zero_ok=True)
        return await self._post(
            AuditAction.OPEN_ACCOUNT,
            account_id,
            {"amount": str(a), "reference": note},
            lambda: self.ledger.post_opening(account_id, a, user=_name(user), note=note),
            user,
            source,
            offload,
        )

    async def close_account(
        self,
        account_id: str,
        *,
        at: float | None = None,
        readings: dict[str, float] | None = None,
        user: Any = "system",
        source: str | None = None,
        note: str = "",
        offload: Offload | None = None,
    ) -> Closing:
        """Close an account: final readings, final charge, settlement to 0.00 (``billing.lifecycle``).

        A meter missing from ``readings`` is read live (the tag database, good quality only).
        Audited as ``billing.close_account`` (``after``: readings, charges, settlement,
        amount, entry; refusals ``failed``); closing again answers the first closing
        (``repeated``, not audited). Raises ``UnknownAccount`` (not audited), ``AccountNotOpen``,
        ``MissingReading``, ``Implausible``, ``ChargeHeld`` (audited).
        """
        acct = self.account_config(account_id)
        audit = self._audit()
        final = dict(readings or {})
        db = self.prepaid.db
        for m in acct.meters:
            if m.energy not in final and db is not None and m.energy in db:
                tv = db.read(m.energy)
                if tv.quality is Quality.GOOD and isinstance(tv.value, int | float):
                    final[m.energy] = float(tv.value)
        detail = {"readings": final, "at": at, "reason": note}
        try:
            closing = await _run(
                lambda: close_account(
                    self.site, self.ledger, acct, at=at, readings=final, user=_name(user), note=note
                ),
                offload,
            )
        except BillingError as exc:
            balance = await _run(lambda: self.ledger.balance(account_id), offload)
            audit.record(
                AuditAction.CLOSE_ACCOUNT.value,
                user=user,
                source=source,
                target=account_id,
                result="failed",
                before={"balance": str(balance)},
                after=detail,
                detail=str(exc),
            )
            raise
        if not closing.repeated:
            audit.record(
                AuditAction.CLOSE_ACCOUNT.value,
                user=user,
                source=source,
                target=account_id,
                before={"balance": str(closing.balance)},
                after={
                    "readings": closing.readings,
                    "charges": [e.seq for e in closing.charges],
                    "settlement": closing.settlement,
                    "amount": str(closing.amount),
                    "entry": closing.entry.seq,
                    "balance": "0.00",
                    "reason": note,
                },
            )
        return closing

    async def topup(
        self,
        account_id: str,
        amount: Decimal | str,
        *,
        user: Any = "system",
        source: str | None = None,
        note: str = "",
        key: str | None = None,
        offload: Offload | None = None,
    ) -> MoneyResult:
        """Credit a top-up; closes the relays billing tripped once the balance is above zero.

        ``user`` is who asked (a user object or a name), ``source`` from where (audit),
        ``note`` the receipt or payment reference, ``key`` an idempotency key (a retry posts
        nothing: ``repeated``). Raises ``BadAmount``, ``UnknownAccount`` (not audited),
        ``AccountNotOpen``, ``IdempotencyConflict`` (audited).
        """
        return await self._cash(
            AuditAction.TOPUP, EntryKind.TOPUP, account_id, amount, user, source, note, key, offload
        )

    async def refund(
        self,
        account_id: str,
        amount: Decimal | str,
        *,
        user: Any = "system",
        source: str | None = None,
        note: str = "",
        key: str | None = None,
        offload: Offload | None = None,
    ) -> MoneyResult:
        """Pay money back (at most the balance: ``InsufficientBalance``); as ``topup``."""
        return await self._cash(
            AuditAction.REFUND,
            EntryKind.REFUND,
            account_id,
            amount,
            user,
            source,
            note,
            key,
            offload,
        )

    async def post_topup(
        self,
        account_id: str,
        write: Callable[[], Posted],
        detail: dict[str, Any],
        *,
        user: Any = "system",
        source: str | None = None,
        offload: Offload | None = None,
    ) -> MoneyResult:
        """Post a top-up through ``write`` and evaluate and audit it as ``topup`` does.

        ``write`` is a ledger write returning its ``Posted`` (a provider's payment, posted once
        per transaction: ``billing.payments``); ``detail`` the audit entry's request fields.
        Raises ``UnknownAccount`` (not audited) and what ``write`` raises (audited).
        """
        self.require_account(account_id)
        return await self._post(AuditAction.TOPUP, account_id, detail, write, user, source, offload)

    async def _cash(
        self,
        action: AuditAction,
        kind: EntryKind,
        account_id: str,
        amount: Decimal | str,
        user: Any,
        source: str | None,
        note: str,
        key: str | None,
        offload: Offload | None,
    ) -> MoneyResult:
        a = parse_amount(amount)
        self.require_account(account_id)
        return await self._post(
            action,
            account_id,
            {"amount": str(a), "reference": note},
            lambda: self.ledger.post_cash(
                kind, account_id, a, user=_name(user), note=note, key=key
            ),
            user,
            source,
            offload,
        )

    async def reverse(
        self,
        account_id: str,
        seq: int,
        *,
        user: Any = "system",
        source: str | None = None,
        note: str = "",
        offload: Offload | None = None,
    ) -> MoneyResult:
        """Reverse one entry of the account (top-up, refund, opening, shared loss); ``note`` is
        the reason. Raises ``UnknownEntry``, ``NotReversible``, ``AlreadyReversed`` (audited)."""
        self.require_account(account_id)
        return await self._post(
            AuditAction.REVERSE,
            account_id,
            {"seq": seq, "reason": note},
            lambda: self.ledger.post_reversal(account_id, seq, user=_name(user), note=note),
            user,
            source,
            offload,
        )

    async def replace_meter(
        self,
        account_id: str,
        meter: str,
        old_final: float,
        new_initial: float,
        *,
        ts: float | None = None,
        user: Any = "system",
        source: str | None = None,
        note: str = "",
        offload: Offload | None = None,
    ) -> MoneyResult:
        """Record a meter swap in the ledger and the historian (``delta`` then spans it).

        ``meter`` is the account meter's energy tag (``UnknownMeter``, audited, if not); an
        implausible reading is refused (``Implausible``, audited: ``billing.plausibility``).
        """
        acct = self.account_config(account_id)

        def write() -> Posted:
            m = next((m for m in acct.meters if m.energy == meter), None)
            if m is None:
                raise UnknownMeter(f"account {account_id!r} has no meter {meter!r}")
            at = time.time() if ts is None else ts
            with self.ledger.transaction():  # the check and the swap: one transaction
                check_replacement(self.ledger, meter, m.max_kw, at, old_final, new_initial)
                posted = self.ledger.post_replacement(
                    account_id, meter, at, old_final, new_initial, user=_name(user), note=note
                )
            if self.historian is not None:
                self.historian.record_replacement(meter, at, old_final, new_initial)
            return posted

        detail = {"meter": meter, "old_final_kwh": old_final, "new_initial_kwh": new_initial}
        return await self._post(
            AuditAction.REPLACE_METER,
            account_id,
            {**detail, "at": ts},
            write,
            user,
            source,
            offload,
        )

    def holds(self, account_id: str | None = None, state: str | None = None) -> list[Hold]:
        """Return the held consumption charges (newest first), of one account and/or state."""
        if account_id is not None:
            self.account_config(account_id)
        return HeldCharges(self.ledger).holds(
            account_id, None if state is None else HoldState(state)
        )

    async def review_hold(
        self,
        account_id: str,
        hold_id: int,
        release: bool,
        *,
        user: Any = "system",
        source: str | None = None,
        note: str = "",
        offload: Offload | None = None,
    ) -> tuple[Hold, list[Entry]]:
        """Release (charge it now) or discard (charge nothing; the next reading re-checks) a
        held consumption charge; audited as ``billing.release_hold`` / ``billing.discard_hold``.

        Returns the hold and the consumption entries the release posted. ``UnknownEntry`` when
        the account has no such hold, ``LedgerError`` when it was reviewed before.
        """
        self.account_config(account_id)
        action = AuditAction.RELEASE_HOLD if release else AuditAction.DISCARD_HOLD
        state = HoldState.RELEASED if release else HoldState.DISCARDED
        audit = self._audit()

        def write() -> tuple[Hold, list[Entry], Decimal, Decimal]:
            before = self.ledger.balance(account_id)
            hold = HeldCharges(self.ledger).review(account_id, hold_id, state, _name(user), note)
            posted: list[Entry] = []
            if release:
                from billing.charging import charge_consumption

                posted = charge_consumption(self.site, self.ledger, hold.updated, [account_id])
            return hold, posted, before, self.ledger.balance(account_id)

        try:
            hold, posted, before, after = await _run(write, offload)
        except BillingError as exc:
            audit.record(
                action.value,
                user=user,
                source=source,
                target=account_id,
                result="failed",
                after={"hold": hold_id, "reason": note},
                detail=str(exc),
            )
            raise
        status = await self.prepaid.evaluate(account_id)
        audit.record(
            action.value,
            user=user,
            source=source,
            target=account_id,
            before={"balance": str(before), "hold": hold.to_json()},
            after={
                "balance": str(after),
                "reason": note,
                "entries": [e.seq for e in posted],
                "relay_actions": [] if status is None else status.actions,
            },
        )
        return hold, posted

    async def set_keep_power(
        self,
        account_id: str,
        keep: bool,
        *,
        user: Any = "system",
        source: str | None = None,
        note: str = "",
        offload: Offload | None = None,
    ) -> MoneyResult:
        """Switch keep-power on or off (overrides the config); ``note`` is the reason.

        An account in arrears with keep-power gets the relays billing tripped closed again, one
        without it is tripped (through the commander).
        """
        cfg = self.account_config(account_id).config
        return await self._set_keep(
            AuditAction.KEEP_POWER, account_id, keep, cfg.keep_power, user, source, note, offload
        )

    async def set_keep_heat(
        self,
        account_id: str,
        keep: bool,
        *,
        user: Any = "system",
        source: str | None = None,
        note: str = "",
        offload: Offload | None = None,
    ) -> MoneyResult:
        """Switch keep-heat of a heat account (or household id) on or off; audited as
        ``billing.keep_heat`` (``before``/``after`` ``{"keep_heat"}``); as ``set_keep_power``.

        An overdue account with keep-heat gets the valve billing locked opened again, one
        without it locked. The result's ``keep_power`` fields carry the keep-heat setting.
        """
        acct = self.heat_account(account_id)
        default = self.heat.accounts[acct].household.keep_heat
        return await self._set_keep(
            AuditAction.KEEP_HEAT, acct, keep, default, user, source, note, offload
        )

    async def _set_keep(
        self,
        action: AuditAction,
        account_id: str,
        keep: bool,
        default: bool,
        user: Any,
        source: str | None,
        note: str,
        offload: Offload | None,
    ) -> MoneyResult:
        """Set keep-power or keep-heat (one setting per account id), evaluate, audit."""
        audit = self._audit()
        field = "keep_heat" if action is AuditAction.KEEP_HEAT else "keep_power"

        def write() -> tuple[bool, Decimal]:
            before = self.ledger.set_keep_power(
                account_id, keep, default=default, user=_name(user), note=note
            )
            return before, self.ledger.balance(account_id)

        previous, balance = await _run(write, offload)
        status = await self.evaluate(account_id)
        result = self._result(account_id, status, balance, balance, None, previous, keep)
        audit.record(
            action.value,
            user=user,
            source=source,
            target=account_id,
            before={field: previous},
            after={field: keep, "reason": note, "relay_actions": result.relay_actions},
            detail="; ".join(result.relay_failures) or None,
        )
        return result

    async def restore_prepaid(
        self,
        account_id: str,
        *,
        user: Any = "system",
        source: str | None = None,
        offload: Offload | None = None,
    ) -> MoneyResult:
        """Put the account's relays under prepaid control now: evaluate its level and trip or
        close what billing switches (as the scheduled check does, at once and audited)."""
        cfg = self.account_config(account_id).config
        audit = self._audit()

        def read() -> tuple[Decimal, bool]:
            return self.ledger.balance(account_id), self.ledger.keep_power(
                account_id, cfg.keep_power
            )

        balance, keep = await _run(read, offload)
        status = await self.prepaid.evaluate(account_id)
        result = self._result(account_id, status, balance, balance, None, keep, keep)
        audit.record(
            AuditAction.RESTORE_PREPAID.value,
            user=user,
            source=source,
            target=account_id,
            before={"balance": str(balance)},
            after={
                "level": None if result.level is None else int(result.level),
                "relay_actions": result.relay_actions,
                "relay_failures": result.relay_failures,
            },
            detail="; ".join(result.relay_failures) or None,
        )
        return result

    def _audit(self) -> AuditSink:
        if self.audit is None:
            raise RuntimeError("this Billing has no audit log: money operations need one")
        return self.audit

    def _result(
        self,
        account_id: str,
        status: AccountStatus | None,
        before: Decimal,
        after: Decimal,
        entry: Entry | None,
        keep_before: bool,
        keep: bool,
    ) -> MoneyResult:
        return MoneyResult(
            account_id,
            before,
            after,
            entry=entry,
            level=None if status is None else status.level,
            relay_actions=[] if status is None else list(status.actions),
            relay_failures=[] if status is None else list(status.failures),
            relays=self.switches(account_id),
            keep_power_before=keep_before,
            keep_power=keep,
        )

    async def _post(
        self,
        action: AuditAction,
        account_id: str,
        detail: dict[str, Any],
        write: Callable[[], Posted],
        user: Any,
        source: str | None,
        offload: Offload | None,
    ) -> MoneyResult:
        """Run one ledger write for a known account, evaluate, audit (module docstring)."""
        audit = self._audit()
        who = {"user": user, "source": source, "target": account_id}
        try:
            posted = await _run(write, offload)
        except BillingError as exc:
            balance = await _run(lambda: self.ledger.balance(account_id), offload)
            audit.record(
                action.value,
                **who,
                result="failed",
                before={"balance": str(balance)},
                after=detail,
                detail=str(exc),
            )
            raise
        keep = self._keep(account_id)
        if posted.repeated:  # nothing was done now: nothing to evaluate or audit
            return MoneyResult(
                account_id,
                posted.balance_before,
                posted.balance_after,
                entry=posted.entry,
                repeated=True,
                relays=self.switches(account_id),
                keep_power_before=keep,
                keep_power=keep,
            )
        status = await self.evaluate(account_id)
        result = self._result(
            account_id,
            status,
            posted.balance_before,
            posted.balance_after,
            posted.entry,
            keep,
            keep,
        )
        audit.record(
            action.value,
            **who,
            before={"balance": str(posted.balance_before)},
            after={
                **detail,
                "balance": str(posted.balance_after),
                "entry": posted.entry.seq,
                "relay_actions": result.relay_actions,
                "relay_failures": result.relay_failures,
            },
        )
        return result

    # ------------------------------------------------------------------ reports

    def report(self, kind: str, period: str | Period) -> Report:
        """Return the report ``kind`` of ``period`` (see ``billing.reports``)."""
        from billing.reports import build_report

        return build_report(self, kind, period)
