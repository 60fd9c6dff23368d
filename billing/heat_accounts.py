"""Heat accounts: each heated household's own balance in the ledger, its season and its arrears.

A household's heat account is ``<household id>.heat`` (:func:`heat_account_id`), beside any
electricity account it has, in the same ledger (``billing.ledger``): top-ups, refunds and
reversals work as for electricity, and the balance is the sum of its entries. Heat accounts
exist for the households with a valve in buildings with a heat tariff
(``billing.heat_fees.tariff_of``): :func:`heat_households`. They are opened with 0.00 by the
scheduler, or by their first scheduled entry.

The season (``HeatTariff.season_start`` .. ``season_end``, local days, the end day included)
is :class:`HeatSeason`, labelled by its years (``2025/26``). Scheduled entries, each once per
key (a re-run posts nothing), all with the season label as ``period``:

- ``heat_advance`` (key ``heat_advance:<account>:<season>``): at season start, the household's
  advance (``HeatFee.advance``, the area fee; with a suspension known in advance, the area fee
  of the active days plus the suspended fee);
- ``heat_charge`` (key ``heat_charge:<account>:<YYYY-MM>``): the statement of a month: the
  season-to-date fee (``billing.heat_fees`` over ``[season start, month end)``) minus what the
  season has charged so far (advance, earlier statements, their reversals), when positive. The
  advance covers the first months; a statement never credits;
- ``heat_settlement`` (key ``heat_settlement:<account>:<season>``): after the season, what the
  season charged minus the season's fee: positive (a credit) is money back to the household,
  negative a shortfall still to pay, 0.00 records that the season is settled. After it, no
  advance or statement of that season is posted.

So the season's entries always add up to minus its fee, however often and in whatever order the
jobs run. Every function posts through ``Ledger.post_keyed`` (money never posted twice).

Arrears (:func:`arrears_state`): payments settle the oldest unpaid charges first (first in,
first out); a heat account is *overdue* when its oldest unpaid charge is older than the grace
period. ``billing.heat_arrears`` locks the valves of overdue accounts.
"""

from __future__ import annotations

import contextlib
import zoneinfo
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypeVar

from billing.heat_fees import household_fee, suspension_days, tariff_of
from billing.ledger import EntryKind, Keyed
from billing.periods import cents, local_midnight

if TYPE_CHECKING:
    from billing.config import HeatArrearsConfig, HeatTariff, HouseholdConfig
    from billing.heat_fees import HeatFee
    from billing.ledger import Entry, Ledger
    from billing.site import BillingSite

__all__ = [
    "HEAT_KINDS",
    "HEAT_SUFFIX",
    "ArrearsState",
    "HeatHousehold",
    "HeatSeason",
    "advance_of",
    "arrears_state",
    "heat_account_id",
    "heat_households",
    "household_of",
    "is_heat_account",
    "last_season",
    "post_month",
    "post_season_advance",
    "post_settlement",
    "season_charged",
    "season_of",
    "settled",
    "suspended_on",
    "unpaid_since",
]

#: The suffix of a heat account id after the household id.
HEAT_SUFFIX = ".heat"
#: The scheduled entry kinds of a heat season.
HEAT_KINDS = (EntryKind.HEAT_ADVANCE, EntryKind.HEAT_CHARGE, EntryKind.HEAT_SETTLEMENT)
#: Grace days when a building configures no ``arrears`` (level and alarm only, no lock).
DEFAULT_GRACE_DAYS = 15


def heat_account_id(household_id: str) -> str:
    """Return the ledger account id of ``household_id``'s heat account (``<id>.heat``)."""
    return f"{household_id}{HEAT_SUFFIX}"


def is_heat_account(account_id: str) -> bool:
    """Return True if ``account_id`` has the form of a heat account id."""
    return account_id.endswith(HEAT_SUFFIX) and len(account_id) > len(HEAT_SUFFIX)


def household_of(account_id: str) -> str:
    """Return the household id of a heat account id (ValueError if it is none)."""
    if not is_heat_account(account_id):
        raise ValueError(f"{account_id!r} is not a heat account id (<household>.heat)")
    return account_id[: -len(HEAT_SUFFIX)]


# ---------------------------------------------------------------------- households


@dataclass(frozen=True, slots=True)
class HeatHousehold:
    """A household with a heat account: its configuration, building, tariff, arrears rules."""

    household: HouseholdConfig
    building: str
    tariff: HeatTariff
    arrears: HeatArrearsConfig | None

    @property
    def account(self) -> str:
        """The heat account id."""
        return heat_account_id(self.household.id)

    @property
    def grace_days(self) -> int:
        return DEFAULT_GRACE_DAYS if self.arrears is None else self.arrears.grace_days


def heat_households(site: BillingSite) -> list[HeatHousehold]:
    """Return the households that have a heat account (configuration order).

    Those with a ``valve_tag`` (the allocated ones) in buildings with ``heat`` and a heat
    tariff (the building's, else the site's).
    """
    out: list[HeatHousehold] = []
    for b in site.buildings:
        if b.heat is None:
            continue
        tariff = tariff_of(site, b.id)
        if tariff is None:
            continue
        out.extend(
            HeatHousehold(h, b.id, tariff, b.heat.arrears)
            for h in b.households
            if h.valve_tag is not None
        )
    return out


def suspended_on(household: HouseholdConfig, day: date) -> bool:
    """Return True if the household's heating is suspended on local ``day``."""
    return suspension_days(household, day, day) > 0


# ---------------------------------------------------------------------- seasons


@dataclass(frozen=True, slots=True)
class HeatSeason:
    """One heating season: ``[start, end)`` epoch seconds, ``first_day`` .. ``last_day`` local.

    ``label`` names it by its years (``2025/26``; ``2025`` when it ends in its start year):
    the ``period`` of its ledger entries and part of their keys, so moving a season's dates
    in the configuration does not post its advance again.
    """

    label: str
    first_day: date
    last_day: date
    start: float
    end: float

    def months(self) -> list[str]:
        """Return ``YYYY-MM`` of every calendar month the season touches."""
        out = []
        y, m = self.first_day.year, self.first_day.month
        while (y, m) <= (self.last_day.year, self.last_day.month):
            out.append(f"{y:04d}-{m:02d}")
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return out


def _day(year: int, month_day: str) -> date:
    month, day = (int(x) for x in month_day.split("-"))
    try:
        return date(year, month, day)
    except ValueError:  # 02-29 outside a leap year
        return date(year, month, 28)


def season_of(tariff: HeatTariff, year: int, tz: str) -> HeatSeason:
    """Return the season of ``tariff`` that starts in ``year``."""
    first = _day(year, tariff.season_start)
    last = _day(year, tariff.season_end)
    if last < first:
        last = _day(year + 1, tariff.season_end)
    label = str(year) if last.year == year else f"{year}/{last.year % 100:02d}"
    return HeatSeason(
        label,
        first,
        last,
        local_midnight(first, tz),
        local_midnight(last + timedelta(days=1), tz),
    )


def last_season(tariff: HeatTariff, ts: float, tz: str) -> HeatSeason:
    """Return the latest season of ``tariff`` that started at or before ``ts`` (may be over)."""
    year = datetime.fromtimestamp(ts, zoneinfo.ZoneInfo(tz)).year
    season = season_of(tariff, year, tz)
    return season if season.start <= ts else season_of(tariff, year - 1, tz)


# ---------------------------------------------------------------------- postings


def _advance_key(account: str, season: HeatSeason) -> str:
    return f"{EntryKind.HEAT_ADVANCE.value}:{account}:{season.label}"


def _settlement_key(account: str, season: HeatSeason) -> str:
    return f"{EntryKind.HEAT_SETTLEMENT.value}:{account}:{season.label}"


def season_charged(ledger: Ledger, account: str, season: HeatSeason) -> Decimal:
    """Return what the season has charged ``account`` (positive), reversals included."""
    kinds = [k.value for k in HEAT_KINDS] + [EntryKind.REVERSAL.value]
    rows = ledger.query(
        f"SELECT amount FROM entries WHERE account = ? AND period = ?"
        f" AND kind IN ({','.join('?' * len(kinds))})",
        [account, season.label, *kinds],
    )
    return -sum((Decimal(r[0]) for r in rows), Decimal("0.00"))


def _settled_among(ledger: Ledger, accounts: Sequence[str], season: HeatSeason) -> set[str]:
    """Return those of ``accounts`` whose season is settled (``settled``, for many at once)."""
    keys = {_settlement_key(a, season): a for a in accounts}
    return {keys[k] for k in ledger.posted_keys(list(keys))}


def _season_state(
    ledger: Ledger, accounts: Sequence[str], season: HeatSeason
) -> tuple[set[str], dict[str, Decimal]]:
    """Return, for ``accounts`` at once: the settled ones and what the season charged each
    (``season_charged``). Call inside the run's transaction."""
    done = _settled_among(ledger, accounts, season)
    kinds = [k.value for k in HEAT_KINDS] + [EntryKind.REVERSAL.value]
    charged = dict.fromkeys(accounts, Decimal("0.00"))
    for lo in range(0, len(accounts), 500):
        part = list(accounts[lo : lo + 500])
        rows = ledger.query(
            f"SELECT account, amount FROM entries WHERE period = ?"
            f" AND kind IN ({','.join('?' * len(kinds))})"
            f" AND account IN ({','.join('?' * len(part))})",
            [season.label, *kinds, *part],
        )
        for account, amount in rows:
            charged[account] -= Decimal(amount)
    return done, charged


def settled(ledger: Ledger, account: str, season: HeatSeason) -> bool:
    """Return True once the season's settlement of ``account`` is posted."""
    return ledger.by_key(_settlement_key(account, season)) is not None


def advance_of(hh: HeatHousehold, season: HeatSeason) -> Decimal:
    """Return the household's advance for ``season``.

    The area fee (``HeatFee.advance``); for the days of a suspension configured in advance,
    the suspended fee instead of the area fee's share of them.
    """
    days = suspension_days(hh.household, season.first_day, season.last_day)
    n = (season.last_day - season.first_day).days + 1
    share = Fraction(days, n)
    parts = household_fee(hh.tariff, hh.household.area_m2, Decimal(0), suspended_share=share)
    if not days:
        return parts.advance
    active = 1 - share
    return cents(parts.area_fee * active.numerator / active.denominator) + parts.suspended_fee


#: Households whose entries share one ledger transaction in a season's run (each household's
#: entries are keyed, so a run cut short is completed by the next; one commit per household
#: made the settlement of 10,000 households take 4 s).
BATCH = 500

_T = TypeVar("_T")


def _batched(
    ledger: Ledger, items: Sequence[_T]
) -> Iterator[tuple[_T, contextlib.AbstractContextManager[Any]]]:
    """Yield each item with the context to post it in: one ledger transaction per ``BATCH``."""
    for lo in range(0, len(items), BATCH):
        with ledger.transaction():
            for item in items[lo : lo + BATCH]:
                yield item, contextlib.nullcontext()


def _post_advance(
    ledger: Ledger, account: str, amount: Decimal, season: HeatSeason, ts: float | None
) -> Entry | None:
    """Post the season's advance of ``account`` unless posted or the season is settled."""
    with ledger.transaction():
        if settled(ledger, account, season):
            return None
        return _advance_entry(ledger, account, amount, season, ts)


def _advance_entry(
    ledger: Ledger, account: str, amount: Decimal, season: HeatSeason, ts: float | None
) -> Entry | None:
    """Post the advance entry itself (keyed: None when it was posted before)."""
    posted = ledger.post_keyed_many([_advance_row(account, amount, season, ts)])
    return posted[0] if posted else None


def _advance_row(account: str, amount: Decimal, season: HeatSeason, ts: float | None) -> Keyed:
    """The season's advance of ``account`` as a keyed entry (a charge of ``amount``)."""
    return Keyed(
        account,
        EntryKind.HEAT_ADVANCE,
        -amount,
        _advance_key(account, season),
        period=season.label,
        ts=ts,
        note=f"heating season {season.label} advance",
        data={"advance": str(amount)},
    )


def post_season_advance(
    ledger: Ledger,
    households: Iterable[HeatHousehold],
    season: HeatSeason,
    *,
    ts: float | None = None,
) -> list[Entry]:
    """Post the season's advance of each household (once; opens the account); return the new ones.

    ``households`` share ``season`` (one building, or one tariff). ``ts`` is the time of the
    entries (the scheduler's clock: the grace period counts from it).
    """
    out = []
    items = list(households)
    for lo in range(0, len(items), BATCH):
        part = items[lo : lo + BATCH]
        with ledger.transaction():
            done = _settled_among(ledger, [hh.account for hh in part], season)
            rows = [
                _advance_row(hh.account, advance_of(hh, season), season, ts)
                for hh in part
                if hh.account not in done
            ]
            out += ledger.post_keyed_many(rows)  # a key posted before posts nothing
    return out


def post_month(
    ledger: Ledger,
    fees: Sequence[HeatFee],
    season: HeatSeason,
    month: str,
    *,
    ts: float | None = None,
) -> list[Entry]:
    """Post month ``month``'s statements (``YYYY-MM``); return the entries posted now.

    ``fees`` are the season-to-date fees (``heat_fees`` over ``[season.start, month end)``).
    Each household is charged its to-date ``total`` minus what the season charged before, when
    positive, once per month (a re-run posts nothing); its advance is posted first if it was
    not (so the advance is never charged on top). Nothing after the season's settlement.
    """
    out = []
    for fee, batch in _batched(ledger, fees):
        account = heat_account_id(fee.household)
        with batch:
            if settled(ledger, account, season):
                continue
            _post_advance(ledger, account, fee.advance, season, ts)
            before = season_charged(ledger, account, season)
            due = fee.total - before
            if due <= 0:
                continue
            e = ledger.post_keyed(
                account,
                EntryKind.HEAT_CHARGE,
                -due,
                key=f"{EntryKind.HEAT_CHARGE.value}:{account}:{month}",
                period=season.label,
                ts=ts,
                note=f"heat statement {month}",
                data={
                    "month": month,
                    "to_date": str(fee.total),
                    "charged_before": str(before),
                    "heat_kwh": str(fee.heat_kwh),
                    "metered": str(fee.metered),
                },
            )
        if e is not None:
            out.append(e)
    return out


def post_settlement(
    ledger: Ledger,
    fees: Sequence[HeatFee],
    season: HeatSeason,
    *,
    ts: float | None = None,
) -> list[Entry]:
    """Post the season's settlement of each household (once); return the entries posted now.

    ``fees`` are the fees of the whole season (``heat_fees`` over ``[season.start,
    season.end)``). The amount is what the season charged minus the fee's ``total`` (credit
    positive: money back; negative: a shortfall; 0.00 is posted too, so the season is closed).
    """
    out = []
    for lo in range(0, len(fees), BATCH):
        part = fees[lo : lo + BATCH]
        with ledger.transaction():  # one commit per batch; the state of the batch read at once
            accounts = [heat_account_id(fee.household) for fee in part]
            done, charged_of = _season_state(ledger, accounts, season)
            rows = []
            for fee, account in zip(part, accounts, strict=True):
                if account in done:
                    continue
                charged = charged_of[account]
                amount = charged - fee.total
                rows.append(
                    Keyed(
                        account,
                        EntryKind.HEAT_SETTLEMENT,
                        amount,
                        _settlement_key(account, season),
                        period=season.label,
                        ts=ts,
                        note=f"heating season {season.label} settlement"
                        + (" (refund)" if amount > 0 else " (shortfall)" if amount < 0 else ""),
                        data=_fee_data(fee, charged),
                    )
                )
            out += ledger.post_keyed_many(rows)
    return out


def _fee_data(fee: HeatFee, charged: Decimal) -> dict[str, Any]:
    def money(d: Decimal | None) -> str | None:
        return None if d is None else str(d)

    return {
        "charged": str(charged),
        "total": str(fee.total),
        "advance": str(fee.advance),
        "basic": str(fee.basic),
        "metered": str(fee.metered),
        "floor": money(fee.floor),
        "cap": money(fee.cap),
        "heat_kwh": str(fee.heat_kwh),
        "suspended_days": fee.suspended_days,
    }


# ---------------------------------------------------------------------- arrears


def unpaid_since(entries: Iterable[Entry]) -> float | None:
    """Return the time of the oldest debit not yet paid, or None when nothing is owed.

    Credits pay the oldest debits first (first in, first out); a credit left over pays later
    debits as they come. A debit's age counts from its entry's time.
    """
    debts: deque[list[Any]] = deque()  # [ts, still owed]
    credit = Decimal(0)
    for e in entries:
        if e.amount > 0:
            credit += e.amount
        elif e.amount < 0:
            debts.append([e.ts, -e.amount])
        while debts and credit > 0:
            pay = min(credit, debts[0][1])
            credit -= pay
            debts[0][1] -= pay
            if debts[0][1] == 0:
                debts.popleft()
    return float(debts[0][0]) if debts else None


@dataclass(frozen=True, slots=True)
class ArrearsState:
    """A heat account's arrears: balance, oldest unpaid debit, when it is (was) overdue."""

    account: str
    balance: Decimal
    unpaid_since: float | None
    due_ts: float | None
    overdue: bool

    def to_json(self) -> dict[str, Any]:
        from tags.model import iso

        return {
            "account": self.account,
            "balance": str(self.balance),
            "unpaid_since": None if self.unpaid_since is None else iso(self.unpaid_since),
            "due": None if self.due_ts is None else iso(self.due_ts),
            "overdue": self.overdue,
        }


def arrears_state(ledger: Ledger, account: str, grace_days: float, now: float) -> ArrearsState:
    """Return the arrears of ``account`` at ``now``: overdue past ``grace_days`` of its oldest
    unpaid debit (balances and ages from the ledger alone)."""
    entries = ledger.entries(account)
    balance = sum((e.amount for e in entries), Decimal("0.00"))
    since = unpaid_since(entries)
    due = None if since is None else since + grace_days * 86400.0
    return ArrearsState(account, balance, since, due, due is not None and now >= due)
