"""Billing over REST: accounts, ledgers, money operations, heat allocation, bills, reports.

Thin handlers over the runtime's :class:`billing.Billing` (``runtime.billing``; 503 while it
is not running). Permissions (:data:`scada.services.auth.PERMISSIONS`): reads need
``billing.read`` and tenants see only the accounts / households linked to them (others are
404, as if they did not exist); top-up, refund and reversal need ``billing.write`` (the
cashier's right); a meter replacement ``billing.meter``; site-wide reports ``billing.report``.

Money is a string in and out (``"50.00"``), parsed by ``billing.money.parse_amount``: a bad
amount is 400. Times (``from`` / ``to``) are ISO dates or date-times, local to the site unless
they carry an offset (as on the CLI), or epoch seconds. The money and meter operations are
``Billing``'s (each one audited operation, refused ones too; the relay commands it causes go
through the command service): the handlers parse, check the permission, call it and show the
``MoneyResult``; its refusals map to statuses by class (``_STATUS``: 400, 404, else 409).
A household's heat account (``<household>.heat``) takes the ledger, top-up, refund and reverse
endpoints like an account, and ``keep-heat`` instead of ``keep-power``; ``GET
/api/heat-accounts`` lists them with their arrears.
An account is opened (``open``, repeat-safe) and closed (``close``: final readings, final
charge, settlement to 0.00; ``billing.lifecycle``) with ``billing.write``; a closed account
refuses every money operation with 409 and the reason.
Historian and ledger work runs in the server's worker threads (``ServerContext.run_blocking``).
"""

from __future__ import annotations

import io
import math
import tempfile
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from billing.errors import BadAmount, BillingError, UnknownAccount, UnknownEntry, UnknownMeter
from billing.ledger import EntryKind
from billing.money import MoneyResult, parse_amount
from billing.reports import KINDS
from billing.tags import Level
from i18n import _
from scada.server import formats
from scada.server.billing_schemas import (
    AccountOut,
    AccountsOut,
    BillsOut,
    CloseBody,
    CloseOut,
    HeatAccountsOut,
    HeatAllocationOut,
    HoldReviewBody,
    HoldReviewOut,
    HoldsOut,
    KeepHeatBody,
    KeepHeatOut,
    KeepPowerBody,
    KeepPowerOut,
    LedgerOut,
    MoneyBody,
    MoneyOut,
    OpenBody,
    ReplaceMeterBody,
    ReportOut,
    ReverseBody,
)
from scada.server.handlers.base import ApiError, ApiHandler
from scada.services.auth import Action, Role

__all__ = [
    "ENTRY_KINDS",
    "MAX_LEDGER_ROWS",
    "REPORT_FORMATS",
    "REPORT_KINDS",
    "STATEMENT_FORMATS",
    "AccountApi",
    "AccountCloseApi",
    "AccountLedgerApi",
    "AccountOpenApi",
    "AccountOut",
    "AccountRefundApi",
    "AccountReplaceMeterApi",
    "AccountReverseApi",
    "AccountTopupApi",
    "AccountsApi",
    "AccountsOut",
    "BillsApi",
    "BillsOut",
    "CloseBody",
    "CloseOut",
    "HeatAccountsApi",
    "HeatAccountsOut",
    "HeatAllocationOut",
    "HeatApi",
    "HeatStatementApi",
    "HoldDiscardApi",
    "HoldReleaseApi",
    "HoldReviewOut",
    "HoldsApi",
    "HoldsOut",
    "KeepHeatApi",
    "KeepHeatBody",
    "KeepHeatOut",
    "KeepPowerApi",
    "KeepPowerBody",
    "KeepPowerOut",
    "LedgerOut",
    "MoneyBody",
    "MoneyOut",
    "OpenBody",
    "ReplaceMeterBody",
    "ReportApi",
    "ReportOut",
    "ReverseBody",
    "report_json",
    "site_time",
]

#: Longest window of a heat allocation or a bill run (a heating season, a year of bills).
MAX_WINDOW_S = 400 * 86400.0
_MIN_TS, _MAX_TS = 0.0, 4_102_444_800.0  # 1970 .. 2100
MAX_LEDGER_ROWS = 10000

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV = "text/csv; charset=utf-8"
PDF = "application/pdf"
#: Statement formats and their content types.
STATEMENT_FORMATS = {"pdf": PDF, "xlsx": XLSX}
#: Report formats and their content types.
REPORT_FORMATS = {"json": "application/json", "csv": CSV, "xlsx": XLSX, "pdf": "application/pdf"}
#: Report kinds (``GET /api/reports/{kind}``).
REPORT_KINDS = tuple(KINDS)
#: ``kind=topup,refund``: comma-separated ledger entry kinds.
ENTRY_KINDS = formats.one_or_more_of(k.value for k in EntryKind)


# ---------------------------------------------------------------------- helpers


def site_time(text: str, name: str, tz: Any) -> float:
    """Return epoch seconds of ``text`` (``formats.SITE_TIME``, time zone ``tz``); 400 if not."""
    from billing.periods import parse_time

    try:
        value = float(text)
    except ValueError:
        try:
            value = parse_time(text, tz)
        except (ValueError, OverflowError) as exc:
            raise ApiError(400, f"{name}: {exc}") from None
    if not (math.isfinite(value) and _MIN_TS <= value <= _MAX_TS):
        raise ApiError(400, f"{name}: time out of range (1970 .. 2100): {text!r}")
    return value


#: HTTP status of a refused billing operation, by class (the nearest listed base wins; else 409).
_STATUS: dict[type[BillingError], int] = {
    BadAmount: 400,
    UnknownAccount: 404,
    UnknownMeter: 404,
    UnknownEntry: 404,
}


def _status(exc: BillingError) -> int:
    return next((_STATUS[c] for c in type(exc).__mro__ if c in _STATUS), 409)


def _level_name(level: int | None) -> str | None:
    return None if level is None else Level(level).key


def _cell(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def report_json(report: Any) -> dict[str, Any]:
    """Return a ``billing.reports.Report`` as JSON (money as strings)."""
    from tags.model import iso

    return {
        "kind": report.kind,
        "period": report.period.label,
        "start": iso(report.period.start),
        "end": iso(report.period.end),
        "title": report.title,
        "sheets": [
            {
                "name": s.name,
                "columns": [{"name": c.name, "unit": c.unit} for c in s.columns],
                "rows": [[_cell(v) for v in r] for r in s.rows],
                "totals": None if (t := s.totals()) is None else [_cell(v) for v in t],
            }
            for s in report.sheets
        ],
    }


class _BillingBase(ApiHandler):
    """Shared parts: the Billing service, account look-up with tenant scoping, times, money."""

    def billing(self) -> Any:
        b = self.ctx.services.billing
        if b is None:
            raise ApiError(503, "billing is not running")
        return b

    def account_visible(self, billing: Any, account_id: str) -> bool:
        """Return True if the user may read ``account_id`` (tenants: linked account/household);
        a heat account is its household's."""
        try:
            scope = billing.account_scope(account_id)
        except KeyError:
            return False
        return self.may(Action.BILLING_READ, scope)

    def account(self, account_id: str, *, heat: bool = False) -> None:
        """Raise 404 unless ``account_id`` is an account the user may read (with ``heat``, a
        heat account too: the ledger and money endpoints)."""
        billing = self.billing()
        is_heat = account_id in billing.heat.accounts
        if (heat or not is_heat) and self.account_visible(billing, account_id):
            return
        raise ApiError(404, f"unknown account {account_id!r}")

    def time_arg(self, name: str, *, required: bool = True) -> float | None:
        text = self.arg(name)
        if text is None or not text.strip():
            if required:
                raise ApiError(400, f"{name}: required (ISO date or date-time, or epoch seconds)")
            return None
        return self.parse_when(text, name)

    def parse_when(self, text: str, name: str) -> float:
        return site_time(text, name, self.billing().tz)

    def window(self) -> tuple[float, float]:
        start = self.time_arg("from")
        end = self.time_arg("to")
        assert start is not None and end is not None
        if end <= start:
            raise ApiError(400, "to: must be after from")
        if end - start > MAX_WINDOW_S:
            raise ApiError(400, f"the window is longer than {MAX_WINDOW_S / 86400:.0f} days")
        return start, end

    def account_json(self, billing: Any, item: dict[str, Any]) -> dict[str, Any]:
        acct = billing.account_config(item["id"])
        cfg = acct.config
        relays = billing.relays(item["id"])
        return {
            **item,
            "household": cfg.household,
            "level_name": _level_name(item["level"]),
            "alarm1": str(cfg.alarm1),
            "alarm2": str(cfg.alarm2),
            "area_m2": acct.area_m2,
            "relays": relays,
        }

    def amount(self, text: str) -> Decimal:
        """Return the money in ``text``; 400 unless it matches ``formats.AMOUNT`` (documented)."""
        try:
            value = parse_amount(text)
        except BadAmount as exc:
            raise ApiError(400, str(exc)) from None
        if not formats.matches(formats.AMOUNT, text):  # parse_amount's rule, as one pattern
            raise ApiError(400, f"amount: not an amount of the documented form: {text!r}")
        return value


# ---------------------------------------------------------------------- accounts


class AccountsApi(_BillingBase):
    """``GET /api/accounts``: accounts with balance and level (tenants: their own)."""

    async def get(self) -> None:
        billing = self.billing()
        building = self.arg("building")

        def load() -> list[dict[str, Any]]:
            out = []
            for item in billing.accounts():
                if building is not None and item["building"] != building:
                    continue
                if self.account_visible(billing, item["id"]):
                    out.append(self.account_json(billing, item))
            return out

        self.reply({"accounts": await self.ctx.run_blocking(load)})


class AccountApi(_BillingBase):
    """``GET /api/accounts/{id}``: one account (balance, level, meters, relays)."""

    async def get(self, account_id: str) -> None:
        self.account(account_id)
        billing = self.billing()

        def load() -> dict[str, Any]:
            item = next(a for a in billing.accounts() if a["id"] == account_id)
            return self.account_json(billing, item)

        self.reply(await self.ctx.run_blocking(load))


class AccountLedgerApi(_BillingBase):
    """``GET /api/accounts/{id}/ledger?from=&to=&kind=``: entries, oldest first (last ``limit``)."""

    async def get(self, account_id: str) -> None:
        self.account(account_id, heat=True)
        billing = self.billing()
        since = self.time_arg("from", required=False)
        until = self.time_arg("to", required=False)
        kinds = None
        text = self.arg("kind")
        if text:
            try:
                kinds = [EntryKind(k.strip()) for k in text.split(",") if k.strip()]
            except ValueError:
                names = ", ".join(k.value for k in EntryKind)
                raise ApiError(400, f"kind: expected some of {names}, got {text!r}") from None
        limit = self.arg_int("limit", 1000, lo=1, hi=MAX_LEDGER_ROWS)

        def load() -> tuple[list[Any], Decimal]:
            entries = billing.entries(account_id, since=since, until=until, kinds=kinds)
            return entries, billing.ledger.balance(account_id)

        entries, balance = await self.ctx.run_blocking(load)
        self.reply(
            {
                "account": account_id,
                "balance": str(balance),
                "count": len(entries),
                "truncated": len(entries) > limit,
                "entries": [e.to_json() for e in entries[-limit:]],
            }
        )


def money_json(r: MoneyResult) -> dict[str, Any]:
    """Return a money operation's result as ``MoneyOut`` (money as strings)."""
    return {
        "account": r.account,
        "entry": None if r.entry is None else r.entry.to_json(),
        "balance_before": str(r.balance_before),
        "balance": str(r.balance),
        "level": None if r.level is None else int(r.level),
        "relay_actions": r.relay_actions,
        "relay_failures": r.relay_failures,
        "relays": r.relays,
        "repeated": r.repeated,
    }


class _MoneyOp(_BillingBase):
    """A money operation of ``Billing``: its refusals become 400 / 404 / 409 (``_STATUS``)."""

    async def run(
        self, account_id: str, call: Callable[[Any], Awaitable[MoneyResult]]
    ) -> MoneyResult:
        """Check the account is visible (404), call the operation, map its refusals."""
        self.account(account_id, heat=True)
        try:
            return await call(self.billing())
        except BillingError as exc:
            raise ApiError(_status(exc), str(exc)) from None

    def key_of(self, body: Any) -> str | None:
        """Return the client's idempotency key (body field, else the ``Idempotency-Key`` header)."""
        key = getattr(body, "idempotency_key", None) or self.request.headers.get("Idempotency-Key")
        if key is not None and not 1 <= len(key) <= 200:
            raise ApiError(400, "Idempotency-Key must have 1 to 200 characters")
        return key


class _CashOp(_MoneyOp):
    """A top-up or refund (same body, same rules); ``operation`` picks the ``Billing`` method."""

    def operation(self, billing: Any) -> Any:
        raise NotImplementedError

    async def post(self, account_id: str) -> None:
        body = self.body(MoneyBody)
        amount = self.amount(body.amount)
        key = self.key_of(body)
        result = await self.run(
            account_id,
            lambda b: self.operation(b)(
                account_id,
                amount,
                user=self.user,
                source=self.source,
                note=body.reference,
                key=key,
                offload=self.ctx.run_blocking,
            ),
        )
        self.reply(money_json(result))


class AccountTopupApi(_CashOp):
    """``POST /api/accounts/{id}/topup``: credit money; closes relays billing tripped."""

    def operation(self, billing: Any) -> Any:
        return billing.topup


class AccountRefundApi(_CashOp):
    """``POST /api/accounts/{id}/refund``: pay money back (at most the balance)."""

    def operation(self, billing: Any) -> Any:
        return billing.refund


class _KeepOp(_MoneyOp):
    """Set an exemption (keep-power, keep-heat): one body, one audited ``Billing`` call."""

    #: the body model and the answer's field of the setting
    body_model: type[KeepPowerBody] | type[KeepHeatBody] = KeepPowerBody
    field = "keep_power"

    def operation(self, billing: Any) -> Any:
        """The ``Billing`` method that sets it."""
        return billing.set_keep_power

    async def post(self, account_id: str) -> None:
        body = self.body(self.body_model)
        r = await self.run(
            account_id,
            lambda b: self.operation(b)(
                account_id,
                body.keep,
                user=self.user,
                source=self.source,
                note=body.reason,
                offload=self.ctx.run_blocking,
            ),
        )
        self.reply(
            {
                "account": r.account,
                self.field: r.keep_power,
                "previous": r.keep_power_before,
                "relay_actions": r.relay_actions,
                "relay_failures": r.relay_failures,
            }
        )


class KeepPowerApi(_KeepOp):
    """``POST /api/accounts/{id}/keep-power``: keep the supply on in arrears, or stop doing so."""


class KeepHeatApi(_KeepOp):
    """``POST /api/accounts/{id}/keep-heat``: never lock the valve of a heat account (or a
    household id) for arrears, or let billing lock it again."""

    body_model = KeepHeatBody
    field = "keep_heat"

    def operation(self, billing: Any) -> Any:
        return billing.set_keep_heat


class HeatAccountsApi(_BillingBase):
    """``GET /api/heat-accounts?building=``: heat accounts with arrears (tenants: their own)."""

    async def get(self) -> None:
        billing = self.billing()
        building = self.arg("building")

        def load() -> list[dict[str, Any]]:
            return [
                a
                for a in billing.heat_accounts()
                if (building is None or a["building"] == building)
                and self.account_visible(billing, a["account"])
            ]

        self.reply({"accounts": await self.ctx.run_blocking(load)})


class AccountReverseApi(_MoneyOp):
    """``POST /api/accounts/{id}/reverse``: cancel one entry with an opposite entry (once)."""

    async def post(self, account_id: str) -> None:
        body = self.body(ReverseBody)
        result = await self.run(
            account_id,
            lambda b: b.reverse(
                account_id,
                body.seq,
                user=self.user,
                source=self.source,
                note=body.reason,
                offload=self.ctx.run_blocking,
            ),
        )
        self.reply(money_json(result))


class AccountReplaceMeterApi(_MoneyOp):
    """``POST /api/accounts/{id}/replace-meter``: record a meter swap; balance carried over."""

    async def post(self, account_id: str) -> None:
        body = self.body(ReplaceMeterBody)
        for name in ("old_final_kwh", "new_initial_kwh"):
            if not math.isfinite(getattr(body, name)):
                raise ApiError(400, f"{name}: must be a finite number")
        at = None if body.at is None else self.parse_when(body.at, "at")
        result = await self.run(
            account_id,
            lambda b: b.replace_meter(
                account_id,
                body.meter,
                body.old_final_kwh,
                body.new_initial_kwh,
                ts=at,
                user=self.user,
                source=self.source,
                note=body.note,
                offload=self.ctx.run_blocking,
            ),
        )
        self.reply(money_json(result))


class HoldsApi(_BillingBase):
    """``GET /api/billing/holds``: consumption charges held for review (tenants: their own)."""

    async def get(self) -> None:
        billing = self.billing()
        account = self.arg("account")
        if account is not None:
            self.account(account)  # 404 unless visible
        state = self.arg("state") or "held"

        def load() -> list[Any]:
            holds = billing.holds(account, None if state == "all" else state)
            return [h for h in holds if self.account_visible(billing, h.account)]

        holds = await self.ctx.run_blocking(load)
        self.reply({"holds": [h.to_json() for h in holds]})


class _HoldReviewApi(_BillingBase):
    """Review a held consumption charge: ``release`` charges it, discard drops it (audited)."""

    release = True

    async def post(self, account_id: str, hold_id: str) -> None:
        self.account(account_id)
        if not hold_id.isdigit() or len(hold_id) > 18:
            raise ApiError(404, f"account {account_id} has no held charge {hold_id!r}")
        body = self.body(HoldReviewBody)
        billing = self.billing()
        try:
            hold, posted = await billing.review_hold(
                account_id,
                int(hold_id),
                self.release,
                user=self.user,
                source=self.source,
                note=body.note,
                offload=self.ctx.run_blocking,
            )
        except BillingError as exc:
            raise ApiError(_status(exc), str(exc)) from None
        balance = await self.ctx.run_blocking(lambda: billing.ledger.balance(account_id))
        self.reply(
            {
                "hold": hold.to_json(),
                "entries": [e.to_json() for e in posted],
                "balance": str(balance),
            }
        )


class HoldReleaseApi(_HoldReviewApi):
    """``POST /api/accounts/{id}/holds/{hold}/release``: the consumption is real, charge it."""

    release = True


class HoldDiscardApi(_HoldReviewApi):
    """``POST /api/accounts/{id}/holds/{hold}/discard``: charge nothing (correct the readings)."""

    release = False


# ---------------------------------------------------------------------- computations


class HeatApi(_BillingBase):
    """``GET /api/billing/heat?from=&to=[&building=]``: the heat allocation and the heat fees.

    ``buildings`` is the allocation, ``households`` the fees of the households of buildings
    with a heat tariff (``scada bill heat --json``); tenants see their own rows only.
    """

    async def get(self) -> None:
        billing = self.billing()
        start, end = self.window()
        building = self.arg("building")
        buildings = None
        if building is not None:
            if building not in {b.id for b in billing.site.buildings}:
                raise ApiError(404, f"unknown building {building!r}")
            buildings = [building]
        if billing.historian is None:
            raise ApiError(503, "the historian is not running")

        def load() -> tuple[Any, list[Any]]:
            alloc = billing.allocate_heat(start, end, buildings)
            return alloc, billing.heat_fees(start, end, buildings, allocation=alloc)

        try:
            alloc, fees = await self.ctx.run_blocking(load)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        doc = {**alloc.to_json(), "households": [f.to_json() for f in fees]}
        if self.user is not None and self.user.role is Role.TENANT:
            for b in doc["buildings"]:
                b["households"] = [
                    h for h in b["households"] if self.may(Action.BILLING_READ, h["id"])
                ]
            doc["buildings"] = [b for b in doc["buildings"] if b["households"]]
            doc["households"] = [
                h for h in doc["households"] if self.may(Action.BILLING_READ, h["household"])
            ]
        from tags.model import iso

        self.reply({"start": iso(start), "end": iso(end), **doc})


class BillsApi(_BillingBase):
    """``GET /api/billing/bills?from=&to=[&account=]``: electricity bills (tenants: their own)."""

    async def get(self) -> None:
        from tags.model import iso

        billing = self.billing()
        start, end = self.window()
        account = self.arg("account")
        if account is not None:
            self.account(account)
            wanted = [account]
        else:
            wanted = [a for a in billing.account_ids() if self.account_visible(billing, a)]
        if billing.historian is None:
            raise ApiError(503, "the historian is not running")
        if not wanted:
            self.reply({"start": iso(start), "end": iso(end), "accounts": []})
            return
        scoped = account is not None or (self.user is not None and self.user.role is Role.TENANT)
        try:
            run = await self.ctx.run_blocking(
                lambda: billing.bill(start, end, wanted if scoped else None)
            )
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        self.reply({"start": iso(start), "end": iso(end), **run.to_json()})


#: Report kinds whose errors say what is wrong themselves (no ``period:`` prefix).
_NAMED_ERRORS = frozenset(
    {"meter_readings", "heat_meter_days", "building_heat", "household_statement"}
)


def _report_options(
    kind: str, base_c: str | None, outdoor: str | None, household: str | None
) -> dict[str, Any]:
    """Return the options of a report query (``billing.reports.OPTIONS``); 400 naming a bad one."""
    from billing.reports import OPTIONS

    out: dict[str, Any] = {}
    for name, value in (("base_c", base_c), ("outdoor", outdoor), ("household", household)):
        if value and kind not in OPTIONS[name]:
            only = ", ".join(OPTIONS[name])
            msg = _(
                "report {kind} takes no {name} (only {kinds})",
                kind=repr(kind),
                name=name,
                kinds=only,
            )
            raise ApiError(400, f"{name}: {msg}")
    if household:
        out["household"] = household
    if base_c:
        try:
            out["base_c"] = float(base_c)
        except ValueError:
            raise ApiError(
                400, _("base_c: expected a temperature in degC, got {value}", value=repr(base_c))
            ) from None
    if outdoor:
        out["outdoor"] = outdoor
    return out


class ReportApi(_BillingBase):
    """``GET /api/reports/{kind}?period=&format=json|csv|xlsx|pdf``: a report, or its download."""

    async def get(self, kind: str) -> None:
        from billing.reports import write_csv, write_xlsx

        billing = self.billing()
        if kind not in KINDS:
            raise ApiError(404, f"unknown report {kind!r}; expected one of {', '.join(KINDS)}")
        fmt = (self.arg("format") or "json").lower()
        if fmt not in REPORT_FORMATS:
            raise ApiError(400, f"format: expected one of {', '.join(REPORT_FORMATS)}")
        period = self.arg("period")
        if not period:
            raise ApiError(400, "period: required (YYYY, YYYY-Qn, YYYY-MM or YYYY-MM-DD)")
        from billing.periods import parse_period

        try:
            p = parse_period(period, billing.tz)
        except (ValueError, OverflowError) as exc:
            raise ApiError(400, f"period: {exc}") from None
        if not (p.start >= _MIN_TS and p.end <= _MAX_TS):
            raise ApiError(400, "period: out of range (1970 .. 2100)")
        if billing.historian is None:
            raise ApiError(503, "the historian is not running")
        options = _report_options(
            kind, self.arg("base_c"), self.arg("outdoor"), self.arg("household")
        )

        def build() -> Any:
            from billing.reports import build_report

            report = (
                build_report(billing, kind, p, **options) if options else billing.report(kind, p)
            )
            if fmt == "json":
                return report_json(report)
            if fmt == "csv":
                buf = io.StringIO(newline="")
                write_csv(report, buf)
                return buf.getvalue().encode("utf-8")
            if fmt == "pdf":
                from billing.report_pdf import report_pdf

                return report_pdf(report, billing.tz)
            with tempfile.TemporaryDirectory(prefix="scada-report-") as tmp:
                path = Path(tmp) / "report.xlsx"
                write_xlsx(report, path)
                return path.read_bytes()

        try:
            out = await self.ctx.run_blocking(build)
        except ValueError as exc:  # e.g. a heat allocation of a period that has not begun
            # the option reports' messages name their field (household, base_c) or the period
            raise ApiError(400, str(exc) if kind in _NAMED_ERRORS else f"period: {exc}") from None
        if fmt == "json":
            self.reply(out)
            return
        name = f"{kind}-{p.label}.{fmt}"
        self.set_header("Content-Type", REPORT_FORMATS[fmt])
        self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        self.set_header("Cache-Control", "no-store")
        self.finish(out)


class HeatStatementApi(_BillingBase):
    """``GET /api/billing/heat/statement/{household}.{format}?from=&to=``: a season statement.

    ``format`` is ``pdf`` or ``xlsx`` (``billing.statements``); tenants get their own
    households only (others are 404). 404 too for a household without a heat fee (no tariff
    for its building, or no valve).
    """

    async def get(self, household: str, format: str) -> None:
        from billing.statements import statement_pdf, statement_xlsx

        billing = self.billing()
        if format not in STATEMENT_FORMATS:
            raise ApiError(404, f"unknown statement format {format!r}; expected pdf or xlsx")
        known = {h.id for h in billing.site.households()}
        if household not in known or not self.may(Action.BILLING_READ, household):
            raise ApiError(404, f"unknown household {household!r}")
        start, end = self.window()
        if billing.historian is None:
            raise ApiError(503, "the historian is not running")
        render = statement_pdf if format == "pdf" else statement_xlsx

        def build() -> tuple[str, bytes]:
            (statement,) = billing.heat_statements(start, end, [household])
            return statement.file_name(format), render(statement)

        try:
            name, body = await self.ctx.run_blocking(build)
        except KeyError as exc:
            raise ApiError(404, str(exc.args[0]) if exc.args else "no heat fee") from None
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        self.set_header("Content-Type", STATEMENT_FORMATS[format])
        self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


# ---------------------------------------------------------------------- lifecycle


class AccountOpenApi(_MoneyOp):
    """``POST /api/accounts/{id}/open``: open a configured account with its opening balance.

    Repeat-safe: the same amount again answers the opening (``repeated``); another amount is
    409, as is a closed account (its flat's next tenant gets a new account id).
    """

    async def post(self, account_id: str) -> None:
        body = self.body(OpenBody)
        self.account(account_id)  # an electricity account (heat accounts open with the season)
        amount = None
        if body.amount is not None:
            try:
                amount = parse_amount(body.amount, "amount", zero_ok=True)
            except BadAmount as exc:
                raise ApiError(400, str(exc)) from None
        result = await self.run(
            account_id,
            lambda b: b.open(
                account_id,
                amount,
                user=self.user,
                source=self.source,
                note=body.reference,
                offload=self.ctx.run_blocking,
            ),
        )
        self.reply(money_json(result))


class AccountCloseApi(_BillingBase):
    """``POST /api/accounts/{id}/close``: final readings, final charge, settlement, closed.

    Closing again answers the first closing (``repeated``). Refusals (not open, no or an
    implausible final reading, a charge held for review) are 409 and audited.
    """

    async def post(self, account_id: str) -> None:
        body = self.body(CloseBody)
        self.account(account_id)
        for tag, value in body.readings.items():
            if not (math.isfinite(value) and 0 <= value < 1e9):
                raise ApiError(400, f"readings.{tag}: must be a finite number 0 .. 1e9 kWh")
        at = None if body.at is None else self.parse_when(body.at, "at")
        billing = self.billing()
        try:
            closing = await billing.close_account(
                account_id,
                at=at,
                readings=dict(body.readings),
                user=self.user,
                source=self.source,
                note=body.reason,
                offload=self.ctx.run_blocking,
            )
        except BillingError as exc:
            raise ApiError(_status(exc), str(exc)) from None
        self.reply(closing.to_json())
