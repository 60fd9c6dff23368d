"""Wire models of the billing REST API: request bodies and the documented answers.

The handlers (:mod:`scada.server.handlers.billing`) validate bodies with the ``*Body`` models
(422 with the field path on error); :mod:`scada.server.openapi` publishes every model's JSON
schema. Money is always a string (``"50.00"``); the answers allow extra keys so they can grow.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from scada.server import formats
from scada.server.schemas import JsonInt

__all__ = [
    "AccountBillOut",
    "AccountOut",
    "AccountsOut",
    "BillLineOut",
    "BillsOut",
    "BuildingHeatOut",
    "CloseBody",
    "CloseOut",
    "EntryOut",
    "HeatAccountOut",
    "HeatAccountsOut",
    "HeatAllocationOut",
    "HeatFeeOut",
    "HoldOut",
    "HoldReviewBody",
    "HoldReviewOut",
    "HoldsOut",
    "HouseholdHeatOut",
    "KeepHeatBody",
    "KeepHeatOut",
    "LedgerOut",
    "MoneyBody",
    "MoneyOut",
    "OpenBody",
    "ReplaceMeterBody",
    "ReportOut",
    "ReportSheetOut",
    "ReverseBody",
]


class _Body(BaseModel):
    # strict: a JSON value of another type is refused, not converted (false is not alarm 0)
    model_config = ConfigDict(extra="forbid", strict=True)


class MoneyBody(_Body):
    """A top-up or refund: ``amount`` as a decimal string (> 0, at most two decimals)."""

    # the pattern is documented, and checked by the handler (400 like every bad amount)
    amount: str = Field(
        min_length=1,
        max_length=32,
        description='money as a string, e.g. "50.00": digits, at most two decimals, above zero',
        json_schema_extra={"pattern": formats.AMOUNT},
    )
    reference: str = Field("", max_length=200, description="receipt or payment reference")
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="repeat-safe key (or the Idempotency-Key header): a retry posts nothing new",
    )


class KeepPowerBody(_Body):
    """Keep the supply on in arrears (``keep: true``) or let billing trip it again."""

    keep: bool
    reason: str = Field(min_length=1, max_length=2000, description="why (audited)")


class KeepHeatBody(_Body):
    """Never lock the household's valve for arrears (``keep: true``) or let billing lock it."""

    keep: bool
    reason: str = Field(min_length=1, max_length=2000, description="why (audited)")


class ReverseBody(_Body):
    """Reverse one entry of the account (top-up, refund, opening, shared-loss charge)."""

    seq: JsonInt = Field(ge=1, le=2**62, description="sequence number of the entry to reverse")
    reason: str = Field(min_length=1, max_length=2000)


class ReplaceMeterBody(_Body):
    """A meter swap: the old meter's final reading and the new meter's first (kWh)."""

    meter: str = Field(min_length=1, max_length=300, description="the account meter's energy tag")
    # below 1e9 kWh: beyond any register (billing.plausibility.MAX_REGISTER_KWH)
    old_final_kwh: float = Field(ge=0, lt=1e9)
    new_initial_kwh: float = Field(ge=0, lt=1e9)
    at: str | None = Field(
        None,
        max_length=64,
        pattern=formats.SITE_TIME,
        description="when (default: now): epoch seconds, or an ISO date or date-time (site time "
        "unless an offset is given)",
    )
    note: str = Field("", max_length=2000)


class OpenBody(_Body):
    """Open a configured account; repeat-safe (the same amount again posts nothing)."""

    amount: str | None = Field(
        None,
        min_length=1,
        max_length=32,
        pattern=r"^[0-9]{1,12}(?:\.[0-9]{1,2})?$",
        description='opening balance as a string, e.g. "100.00" or "0.00" (default: the '
        "configured opening_balance)",
    )
    reference: str = Field("", max_length=200, description="contract or receipt reference")


class CloseBody(_Body):
    """Close an account: final readings, final charge, settlement to 0.00; then no entry."""

    at: str | None = Field(
        None,
        max_length=64,
        pattern=formats.SITE_TIME,
        description="when (default: now): epoch seconds, or an ISO date or date-time (site time "
        "unless an offset is given); not before the account's last entry",
    )
    # below 1e9 kWh: beyond any register (billing.plausibility.MAX_REGISTER_KWH)
    readings: dict[
        Annotated[str, Field(min_length=1, max_length=300)], Annotated[float, Field(ge=0, lt=1e9)]
    ] = Field(
        default_factory=dict,
        max_length=100,
        description="final reading (kWh) by meter energy tag; a meter left out is read live "
        "(good quality only, else 409)",
    )
    reason: str = Field("", max_length=2000, description="why (audited), e.g. moved out")


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class AccountOut(_Out):
    """An account: balance (string), warning level (0 ok .. 3 arrears; None if not open)."""

    id: str
    tenant: str
    tariff: str
    building: str | None
    household: str | None
    meters: list[str]
    open: bool
    balance: str
    level: int | None
    level_name: str | None
    keep_power: bool
    alarm1: str
    alarm2: str
    area_m2: float | None
    relays: dict[str, bool] = Field(description="relay tag -> tripped by billing")


class AccountsOut(_Out):
    accounts: list[AccountOut]


class HoldReviewBody(_Body):
    """Why a held consumption charge is released or discarded (audited)."""

    note: str = Field("", max_length=2000)


class HoldOut(_Out):
    """A consumption charge held for review (``billing.plausibility``): the latest figures."""

    id: int
    account: str
    period: str
    ts: str
    updated: str
    month_kwh: float
    step_kwh: float
    amount: str
    reason: str
    state: str = Field(description="held, released or discarded")
    reviewed_by: str
    reviewed_ts: str | None
    note: str


class HoldsOut(_Out):
    holds: list[HoldOut]


class EntryOut(_Out):
    seq: int
    account: str
    ts: str
    kind: str
    amount: str
    energy_kwh: float | None
    meter: str | None
    period: str | None
    reverses: int | None
    user: str
    note: str


class LedgerOut(_Out):
    account: str
    balance: str
    count: int
    truncated: bool
    entries: list[EntryOut]


class HoldReviewOut(_Out):
    """The reviewed hold and the consumption entries a release posted."""

    hold: HoldOut
    entries: list[EntryOut]
    balance: str


class MoneyOut(_Out):
    """The entry written, the balance before and after and the relay actions it caused."""

    account: str
    entry: EntryOut
    balance_before: str
    balance: str
    level: int | None
    relay_actions: list[str]
    relay_failures: list[str]
    relays: dict[str, bool] = Field(
        default_factory=dict,
        description="each relay of the account: tripped by billing (true) or not, after this "
        "request (another evaluation may have made the change: relay_actions lists this one's)",
    )
    repeated: bool = Field(
        False,
        description="the idempotency key was posted before: `entry` is that entry and nothing "
        "was done now (no evaluation, no audit entry)",
    )


class CloseOut(_Out):
    """What the closing did (or, with ``repeated``, what the first closing did)."""

    account: str
    closed_at: str
    entry: EntryOut = Field(
        description="the closing entry: minus the balance at close (negative: paid back)"
    )
    charges: list[EntryOut] = Field(description="the final consumption charges up to closed_at")
    readings: dict[str, float]
    balance_at_close: str = Field(description="the balance after the final charges")
    settlement: str = Field(description="refund (paid back), debt (owed by the tenant) or none")
    settlement_amount: str
    balance: str
    repeated: bool = Field(description="closed before: nothing was done now")


class KeepPowerOut(_Out):
    """The account's keep-power setting and the relay commands it caused."""

    account: str
    keep_power: bool
    previous: bool
    relay_actions: list[str]
    relay_failures: list[str]


class KeepHeatOut(_Out):
    """The heat account's keep-heat setting and the valve commands it caused."""

    account: str
    keep_heat: bool
    previous: bool
    relay_actions: list[str]
    relay_failures: list[str]


class HeatAccountOut(_Out):
    """A household's heat account: balance, arrears (level 3: overdue), keep-heat, its valve."""

    account: str
    household: str
    building: str
    open: bool
    balance: str
    level: int = Field(description="0 ok, 3 arrears (an unpaid charge older than the grace)")
    unpaid_since: str | None = Field(
        description="the oldest unpaid charge (payments: oldest first)"
    )
    due: str | None = Field(description="when it is (was) overdue: unpaid_since + grace days")
    overdue: bool
    keep_heat: bool
    suspended: bool
    valves: dict[str, bool] = Field(description="valve tag -> locked by billing")


class HeatAccountsOut(_Out):
    accounts: list[HeatAccountOut]


class HouseholdHeatOut(_Out):
    id: str
    area_m2: float
    on_hours: float
    share: float
    heat_kwh: float
    cost: str | None
    estimated: bool


class BuildingHeatOut(_Out):
    id: str
    heat_kwh: float
    basic_kwh: float
    households: list[HouseholdHeatOut]


class HeatFeeOut(_Out):
    """One household's heat fee (``scada bill heat --json``), money as strings."""

    household: str
    building: str
    area_m2: float
    heat_kwh: float
    area_fee: str
    advance: str = Field(description="the area fee due in advance (area x price)")
    basic: str
    metered: str
    floor: str | None
    cap: str | None
    suspended_fee: str
    total: str
    limit: str | None = Field(description="floor or cap when the total was held there")
    settlement: str = Field(description="advance - total (positive: refund)")
    suspended: bool
    suspended_days: int
    window_days: int
    paid: str | None = Field(description="net cash of the heat account (null: no account)")


class HeatAllocationOut(_Out):
    """The heat allocation of ``scada allocate heat --json`` (issue 8 item 7) and the heat fees
    of ``scada bill heat --json`` (``households``: buildings with a heat tariff only)."""

    start: str
    end: str
    buildings: list[BuildingHeatOut]
    households: list[HeatFeeOut]


class BillLineOut(_Out):
    name: str
    kwh: float
    price: str
    amount: str


class AccountBillOut(_Out):
    id: str
    energy_kwh: float
    lines: list[BillLineOut]
    shared_kwh: float
    total: str


class BillsOut(_Out):
    """The bills of ``scada bill --json`` (issue 8 item 7), money as strings."""

    start: str
    end: str
    accounts: list[AccountBillOut]


class ReportSheetOut(_Out):
    name: str
    columns: list[dict[str, str]]
    rows: list[list[Any]]
    totals: list[Any] | None


class ReportOut(_Out):
    """A report as JSON (``format=json``); CSV and Excel are downloads."""

    kind: str
    period: str
    start: str
    end: str
    title: str
    sheets: list[ReportSheetOut]
