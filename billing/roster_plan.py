"""Check a roster against the site and the ledger: what importing it adds and changes.

:func:`plan_roster` goes over the rows of a :class:`billing.roster.Roster` once and returns the
:class:`RosterPlan`: households to add or change (area; the tenant's contact when the row has
no account), accounts to add or change (tariff, warning levels, contact, opening balance) and
the opening balances (posted once, when an account opens: a roster may not change one after).
Every problem is collected (``RosterError`` names each row and column); nothing is planned for
a roster with one bad row. Rules (docs/billing.md, "Roster import and export"):

* the building must exist; a new household needs its area; ``flat`` names a household once,
  unless each of its rows has its own account;
* a meter is an existing numeric tag (or a device with ``energy_kwh``), on one row, of no
  other account; the roster never changes an existing account's meters;
* the row's account: the ``account`` column, else the household's only account (or the one
  with the row's meter), else, with a meter, a new account named as the household; a new
  account needs its tariff.

The plan holds plain values (money as strings) for ``scada.services.roster`` to write into
the configuration files.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from billing.roster import CONTACT, Roster, RosterError, RosterIssue, RosterRow, opening_entries
from tags.model import TagType

if TYPE_CHECKING:
    from billing.config import AccountConfig, HouseholdConfig
    from billing.ledger import Ledger
    from billing.site import BillingSite

__all__ = ["AccountChange", "HouseholdChange", "Opening", "RosterPlan", "plan_roster"]


@dataclass(frozen=True, slots=True)
class HouseholdChange:
    """A household to add (``new``) or change: ``values`` are the fields to set (None clears)."""

    row: int
    building: str
    id: str
    new: bool
    values: dict[str, Any]
    before: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "building": self.building,
            "id": self.id,
            "set": self.values,
            "before": self.before,
        }


@dataclass(frozen=True, slots=True)
class AccountChange:
    """An account to add (``new``) or change; ``values`` as for households (money as strings)."""

    row: int
    id: str
    new: bool
    values: dict[str, Any]
    before: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"row": self.row, "id": self.id, "set": self.values, "before": self.before}


@dataclass(frozen=True, slots=True)
class Opening:
    """An opening balance the import posts (the ledger's ``opening`` entry, when it opens)."""

    account: str
    amount: Decimal
    row: int
    entry: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "amount": str(self.amount),
            "row": self.row,
            "entry": self.entry,
            "state": "posted" if self.entry is not None else "to post",
        }


@dataclass(slots=True)
class RosterPlan:
    """What importing a roster changes (nothing removed) and the opening balances it posts."""

    households: list[HouseholdChange] = field(default_factory=list)
    accounts: list[AccountChange] = field(default_factory=list)
    openings: list[Opening] = field(default_factory=list)
    unchanged_households: int = 0
    unchanged_accounts: int = 0
    rows: int = 0

    @property
    def empty(self) -> bool:
        """True when the configuration does not change."""
        return not (self.households or self.accounts)

    def summary(self) -> dict[str, Any]:
        """Return the diff summary: added / changed / unchanged households and accounts."""

        def part(items: list[Any], unchanged: int) -> dict[str, Any]:
            return {
                "added": [c.to_json() for c in items if c.new],
                "changed": [c.to_json() for c in items if not c.new],
                "unchanged": unchanged,
            }

        return {
            "rows": self.rows,
            "households": part(self.households, self.unchanged_households),
            "accounts": part(self.accounts, self.unchanged_accounts),
            "openings": [o.to_json() for o in self.openings],
        }


def _close(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Planner:
    """One pass over the rows against the site (see ``plan_roster``)."""

    def __init__(self, roster: Roster, site: BillingSite, ledger: Ledger | None) -> None:
        self.roster = roster
        self.site = site
        self.ledger = ledger
        self.issues: list[RosterIssue] = []
        self.buildings = {b.id for b in site.buildings}
        self.households = {h.id: h for h in site.households()}
        self.accounts = {a.id: a for a in site.accounts}
        self.by_household: dict[str, list[AccountConfig]] = {}
        for a in site.accounts:
            if a.household is not None:
                self.by_household.setdefault(a.household, []).append(a)
        self.meter_owner = {m.energy: a.id for a in site.accounts for m in a.meters}
        self.tags = {d.name: d for d in site.tag_defs()}
        self.tariffs = {t.id for t in site.tariffs}
        self.opened = opening_entries(ledger)
        self.plan = RosterPlan(rows=len(roster.rows))
        #: household -> (first row, that row, whether it was a row without an account)
        self.seen_household: dict[str, tuple[int, RosterRow, bool]] = {}
        self.seen_account: dict[str, int] = {}
        self.seen_meter: dict[str, int] = {}

    def bad(self, row: RosterRow, column: str | None, message: str) -> None:
        self.issues.append(self.roster.issue(row.row, column, message))

    def run(self) -> RosterPlan:
        for row in self.roster.rows:
            before = len(self.issues)
            if row.building not in self.buildings:
                hint = _close(row.building, self.buildings)
                self.bad(row, "building", f"unknown building {row.building!r}{hint}")
                continue
            meters = self.meters(row)
            account = self.account_of(row, meters)
            if len(self.issues) > before:
                continue  # (the household and account checks would repeat the problem)
            self.household(row, with_contact=account is None)
            if account is not None:
                self.account(row, account, meters)
        if self.issues or self.roster.issues:
            issues = [*self.roster.issues, *self.issues]
            raise RosterError(sorted(issues, key=lambda i: i.row or 0))  # (stable: by column)
        return self.plan

    # -------------------------------------------------------------- meters and the account

    def meters(self, row: RosterRow) -> list[str]:
        out = []
        for m in row.meters:
            tag = m if m in self.tags else f"{m}.energy_kwh"
            d = self.tags.get(tag)
            if d is None:
                self.bad(row, "meter", f"unknown meter {m!r}: no such tag, and no {m}.energy_kwh")
                continue
            if d.type not in (TagType.FLOAT, TagType.INT):
                self.bad(row, "meter", f"tag {tag} is {d.type.value}; a meter's energy is numeric")
                continue
            if tag in self.seen_meter:
                self.bad(row, "meter", f"meter {tag} is on row {self.seen_meter[tag]} too")
                continue
            self.seen_meter[tag] = row.row
            out.append(tag)
        return out

    def account_of(self, row: RosterRow, meters: list[str]) -> str | None:
        """Return the row's account id (existing or new), or None for a household-only row."""
        hh = row.household
        own = self.by_household.get(hh, [])
        if row.account:
            acct = self.accounts.get(row.account)
            if acct is not None and acct.household not in (None, hh):
                self.bad(
                    row, "account", f"account {row.account} belongs to household {acct.household}"
                )
            return row.account
        if len(own) == 1:
            return own[0].id
        if len(own) > 1:
            match = [a.id for a in own if set(meters) & {m.energy for m in a.meters}]
            if len(match) == 1:
                return match[0]
            if meters or any(getattr(row, c) is not None for c in ("tariff", "opening_balance")):
                names = ", ".join(a.id for a in own)
                self.bad(row, "account", f"household {hh} has accounts {names}: name one")
            return None
        if not meters:  # (a meter named but not found is reported already)
            for col in ("tariff", "opening_balance", "alarm1", "alarm2"):
                if not row.meters and getattr(row, col):
                    self.bad(row, "meter", f"an account needs its meter (column {col} is given)")
                    break
            return None
        if hh in self.accounts and self.accounts[hh].household not in (None, hh):
            self.bad(row, "account", f"account {hh} belongs to another household: name one")
        return hh

    # -------------------------------------------------------------- households

    def household(self, row: RosterRow, *, with_contact: bool) -> None:
        hh = row.household
        first = self.seen_household.get(hh)
        if first is not None:
            n, other, other_alone = first
            if row.area_m2 is not None and other.area_m2 not in (None, row.area_m2):
                self.bad(row, "area_m2", f"household {hh} has area {other.area_m2} on row {n}")
            if with_contact or other_alone:  # its contact (or the household) twice
                self.bad(row, "flat", f"household {hh} is on row {n} too")
            return
        self.seen_household[hh] = (row.row, row, with_contact)
        cfg = self.households.get(hh)
        if cfg is not None and self.site.household_building(hh) != row.building:
            self.bad(
                row, "flat", f"household {hh} is in building {self.site.household_building(hh)}"
            )
            return
        values: dict[str, Any] = {}
        if cfg is None:
            if row.area_m2 is None:
                self.bad(row, "area_m2", f"{hh} is a new household: give its area")
                return
            values["area_m2"] = row.area_m2
        elif row.area_m2 is not None and row.area_m2 != cfg.area_m2:
            values["area_m2"] = row.area_m2
        if with_contact:
            values.update(self.contact(row, cfg))
        if cfg is None or values:
            before = {} if cfg is None else {k: getattr(cfg, k) for k in values}
            self.plan.households.append(
                HouseholdChange(row.row, row.building, hh, cfg is None, values, before)
            )
        else:
            self.plan.unchanged_households += 1

    def contact(
        self, row: RosterRow, cfg: HouseholdConfig | AccountConfig | None
    ) -> dict[str, Any]:
        """Return the contact fields the row sets (columns present and different)."""
        out: dict[str, Any] = {}
        for col in CONTACT:
            value = getattr(row, col)
            if value is None or col not in self.roster.columns:
                continue
            new: str | None = value
            if col != "tenant" and not value:
                new = None
            old = getattr(cfg, col) if cfg is not None else ("" if col == "tenant" else None)
            if new != old and not (cfg is None and not new):
                out[col] = new
        return out

    # -------------------------------------------------------------- accounts

    def account(self, row: RosterRow, acct_id: str, meters: list[str]) -> None:
        if acct_id in self.seen_account:
            self.bad(
                row, "account", f"account {acct_id} is on row {self.seen_account[acct_id]} too"
            )
            return
        self.seen_account[acct_id] = row.row
        cfg = self.accounts.get(acct_id)
        if cfg is None and not meters:
            self.bad(row, "meter", f"{acct_id} is a new account: give its meter")
        for tag in meters:
            owner = self.meter_owner.get(tag)
            if owner is not None and owner != acct_id:
                self.bad(row, "meter", f"meter {tag} belongs to account {owner}")
        values: dict[str, Any] = {}
        if row.tariff:
            if row.tariff not in self.tariffs:
                hint = _close(row.tariff, self.tariffs)
                self.bad(row, "tariff", f"unknown tariff {row.tariff!r}{hint}")
            elif cfg is None or cfg.tariff != row.tariff:
                values["tariff"] = row.tariff
        elif cfg is None:
            self.bad(row, "tariff", f"{acct_id} is a new account: give its tariff")
        if cfg is not None and meters and set(meters) != {m.energy for m in cfg.meters}:
            have = ", ".join(m.energy for m in cfg.meters)
            self.bad(
                row,
                "meter",
                f"account {acct_id} has the meter(s) {have}: the roster does not change an "
                "account's meters (record a swap with replace-meter, or edit the configuration)",
            )
        levels = {c: row.money(c) for c in ("alarm1", "alarm2")}
        a1 = levels["alarm1"] if levels["alarm1"] is not None else (cfg.alarm1 if cfg else None)
        a2 = levels["alarm2"] if levels["alarm2"] is not None else (cfg.alarm2 if cfg else None)
        if a1 is not None and a2 is not None and a2 > a1:
            self.bad(row, "alarm2", f"alarm2 ({a2}) must not be above alarm1 ({a1})")
        for c, v in levels.items():
            if v is not None and (cfg is None or getattr(cfg, c) != v):
                values[c] = str(v)
        values.update(self.contact(row, cfg))
        self.opening(row, acct_id, cfg, values)
        if cfg is None:
            values = {"household": row.household, "meters": meters, **values}
            self.plan.accounts.append(AccountChange(row.row, acct_id, True, values))
        elif values:
            before = {k: _plain(getattr(cfg, k)) for k in values}
            self.plan.accounts.append(AccountChange(row.row, acct_id, False, values, before))
        else:
            self.plan.unchanged_accounts += 1

    def opening(
        self, row: RosterRow, acct_id: str, cfg: AccountConfig | None, values: dict[str, Any]
    ) -> None:
        """Plan the opening balance: posted once when the account opens, never changed after."""
        wanted = row.money("opening_balance")
        posted = self.opened.get(acct_id)
        if posted is not None:
            amount, seq = posted
            if wanted is not None and wanted != amount:
                self.bad(
                    row,
                    "opening_balance",
                    f"account {acct_id} was opened with {amount} (ledger entry {seq}): an opening "
                    f"balance cannot change; post the difference as a top-up or refund and write "
                    f"{amount} here",
                )
            return  # posted before: nothing to post
        configured = cfg.opening_balance if cfg is not None else None
        amount = wanted if wanted is not None else (configured or Decimal("0.00"))
        if wanted is not None and (cfg is None or configured != wanted):
            values["opening_balance"] = str(wanted)
        self.plan.openings.append(Opening(acct_id, amount.quantize(Decimal("0.01")), row.row))


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def plan_roster(roster: Roster, site: BillingSite, ledger: Ledger | None = None) -> RosterPlan:
    """Return what importing ``roster`` into ``site`` changes; ``RosterError`` with every issue
    (those of ``roster.issues``, bad cells of rows read partially, too).

    ``ledger`` (when given) tells which accounts are open and with what opening balance: an
    account's opening balance is posted once (when it opens) and a roster may not change it
    afterwards.
    """
    return _Planner(roster, site, ledger).run()
