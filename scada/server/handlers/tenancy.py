"""Tenant changes and vacant flats over REST (:mod:`scada.services.tenancy`).

``POST /api/accounts/{id}/tenant-change`` closes the account at ``at`` (final reading, final
charge, settlement) and opens the new tenant's account there, idempotent by the body's
``idempotency_key`` (required: a repeat answers the first change with ``repeated``). ``GET /api/accounts/{id}/tenancies`` lists an account's tenant
changes. ``POST /api/households/{id}/vacant`` marks a flat vacant from a day (the owner pays
the reduced heat basic fee), ``POST /api/households/{id}/let`` lets it again from a day.
Admins and cashiers only (``billing.write`` and the role); refusals are 409 with the reason,
bad input 400/422 naming the field. Loop-thread only; the work runs in worker threads.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from billing.errors import BillingError
from i18n import _
from scada.server import formats
from scada.server.handlers.base import ApiError
from scada.server.handlers.billing import _BillingBase, _status
from scada.services.auth import Role
from scada.services.tenancy import TenancyService, TenantInfo

__all__ = [
    "LetApi",
    "LetBody",
    "TenancyListApi",
    "TenantChangeApi",
    "TenantChangeBody",
    "VacantApi",
    "VacantBody",
]

_ROLES = (Role.ADMIN, Role.CASHIER)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TenantChangeBody(_Body):
    """A tenant change at ``at``: the new tenant, optional readings, an idempotency key."""

    at: str = Field(
        max_length=64,
        pattern=formats.SITE_TIME,
        description="the change time: epoch seconds, or an ISO date or date-time (site time "
        "unless an offset is given); not before the last billed period end",
    )
    tenant: str = Field(min_length=1, max_length=200, description="the new tenant's name")
    phone: str | None = Field(None, max_length=50)
    email: str | None = Field(None, max_length=200, pattern=r"^[^@\s]+@[^@\s]+$")
    new_account: str | None = Field(
        None,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
        description="the new tenant's account id (default: <account>-<YYYYMMDD of at>)",
    )
    readings: dict[
        Annotated[str, Field(min_length=1, max_length=300)], Annotated[float, Field(ge=0, lt=1e9)]
    ] = Field(
        default_factory=dict,
        max_length=100,
        description="reading (kWh) at ``at`` by meter energy tag; a meter left out is read "
        "from the history at ``at``",
    )
    idempotency_key: str = Field(
        min_length=1,
        max_length=200,
        pattern=formats.IDEMPOTENCY_KEY,
        description="repeat-safe key: the same key again answers the first change",
    )
    reason: str = Field("", max_length=500)


class VacantBody(_Body):
    """A flat vacant from a day: the owner pays area fee x ``heat_basic_ratio``."""

    from_: str = Field(alias="from", pattern=r"^\d{4}-\d{2}-\d{2}$", description="first day")
    until: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="last day")
    heat_basic_ratio: str = Field(pattern=r"^(?:0(?:\.\d{1,4})?|1(?:\.0{1,4})?)$")
    owner: str = Field("owner", min_length=1, max_length=100)


class LetBody(_Body):
    """The flat is let again from ``from`` (its vacancy ends the day before)."""

    from_: str = Field(alias="from", pattern=r"^\d{4}-\d{2}-\d{2}$", description="first let day")


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ApiError(400, _("{name}: not a date: {error}", name=name, error=exc)) from None


class _TenancyBase(_BillingBase):
    def service(self) -> TenancyService:
        user = self.user
        if user is None or user.role not in _ROLES:
            raise ApiError(403, _("tenant changes and vacancies are for admins and cashiers"))
        config = self.ctx.config
        if config is None or config.main is None:
            raise ApiError(409, _("the running configuration was not read from files"))
        self.billing()  # 503 when billing is not running
        return TenancyService(config, lambda: self.ctx.services.billing, self.ctx.audit)

    def household(self, household: str) -> None:
        """Raise 404 unless ``household`` is a household of the site."""
        if all(h.id != household for h in self.billing().site.households()):
            raise ApiError(404, _("unknown household {household}", household=household))


class TenantChangeApi(_TenancyBase):
    """``POST /api/accounts/{id}/tenant-change`` (module docstring)."""

    async def post(self, account_id: str) -> None:
        body = self.body(TenantChangeBody)
        service = self.service()
        self.account(account_id)
        key = body.idempotency_key
        at = self.parse_when(body.at, "at")
        try:
            change = await service.change_tenant(
                self.user,
                account_id,
                at=at,
                tenant=TenantInfo(body.tenant, body.phone, body.email),
                key=key,
                new_account=body.new_account,
                readings=dict(body.readings),
                source=self.source,
                note=body.reason,
            )
        except BillingError as exc:
            raise ApiError(_status(exc), str(exc)) from None
        self.reply(change.to_json())


class TenancyListApi(_TenancyBase):
    """``GET /api/accounts/{id}/tenancies[?from=&to=]``: the account's tenant changes.

    With ``from`` and ``to`` each change inside the window carries ``split``: each tenant's
    share of it (electricity by reading, heat basic by days, metered by valve time;
    ``billing.tenancy_split``).
    """

    async def get(self, account_id: str) -> None:
        self.account(account_id)
        billing = self.billing()
        start = self.time_arg("from", required=False)
        end = self.time_arg("to", required=False)
        if (start is None) != (end is None):
            raise ApiError(400, _("from and to: give both or neither"))
        if start is not None and end is not None and end <= start:
            raise ApiError(400, _("to: must be after from"))
        if start is not None and billing.historian is None:
            raise ApiError(503, _("the historian is not running"))

        def work() -> list[dict[str, Any]]:
            from billing.tenancy import changes
            from billing.tenancy_split import split_tenancy

            out = []
            for c in changes(billing.ledger, account_id):
                doc = c.to_json()
                if start is not None and end is not None and start < c.at < end:
                    known = {a.id for a in billing.site.accounts}
                    if {c.account, c.new_account} <= known:
                        household = billing.account_config(c.account).config.household
                        doc["split"] = split_tenancy(
                            billing.site,
                            billing.readings(),
                            billing.historian,
                            c.account,
                            c.new_account,
                            start=start,
                            at=c.at,
                            end=end,
                            household=household,
                        ).to_json()
                out.append(doc)
            return out

        found: Any = await self.ctx.run_blocking(work)
        self.reply({"account": account_id, "changes": found})


class VacantApi(_TenancyBase):
    """``POST /api/households/{id}/vacant``: the flat is vacant from a day (module docstring)."""

    async def post(self, household: str) -> None:
        body = self.body(VacantBody)
        service = self.service()
        self.household(household)
        try:
            value = await service.set_vacant(
                self.user,
                household,
                since=_day(body.from_, "from"),
                until=None if body.until is None else _day(body.until, "until"),
                heat_basic_ratio=Decimal(body.heat_basic_ratio),
                owner=body.owner,
                source=self.source,
            )
        except BillingError as exc:
            raise ApiError(_status(exc), str(exc)) from None
        self.reply({"household": household, "vacant": value})


class LetApi(_TenancyBase):
    """``POST /api/households/{id}/let``: the flat is let again from a day."""

    async def post(self, household: str) -> None:
        body = self.body(LetBody)
        service = self.service()
        self.household(household)
        try:
            value = await service.set_let(
                self.user, household, since=_day(body.from_, "from"), source=self.source
            )
        except BillingError as exc:
            raise ApiError(_status(exc), str(exc)) from None
        self.reply({"household": household, "vacant": value})
