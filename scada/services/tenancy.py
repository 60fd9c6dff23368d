"""Tenant changes and vacant flats: the ledger's part and the configuration's, audited once.

A **tenant change** (:meth:`TenancyService.change_tenant`) closes the old tenant's account and
opens the new tenant's at ``T`` in the ledger (:func:`billing.tenancy.change_tenant`), and
writes the configuration: the old account gets ``moved_out: T`` where it is defined, the new
account (a copy of the old one's tariff, meters, household and thresholds with the new tenant's
name, phone and e-mail, ``moved_in: T``) goes to ``roster.yaml`` beside the main file, as a
roster import's new accounts do (:mod:`scada.services.roster`). The edited files are loaded with
the real loader *before* the ledger is written (an overlap or any other error refuses the
change, nothing written), then applied as a configuration version. A repeat with the same
idempotency key answers the first change (``repeated``), applying the configuration if a crash
came between the two. Audited as ``billing.tenant_change`` (refusals ``failed``).

A **vacant flat** (:meth:`TenancyService.set_vacant`, :meth:`TenancyService.set_let`) is a
household's ``vacant: {from, until, heat_basic_ratio, owner}`` written where the household is
defined; a household with an open tenant account cannot be made vacant (close it or change the
tenant first). Audited as ``billing.vacant`` / ``billing.let``.

The configuration versions are recorded under the acting user's name; the edit itself is made
here, never taken from the caller, so a cashier (``billing.write``) may make it. Threading: the
loop; file work and the ledger on worker threads.
"""

from __future__ import annotations

import asyncio
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from billing.errors import BillingError, MissingReading
from billing.tenancy import (
    TenancyRefused,
    TenantChange,
    change_tenant,
    changes,
    find_change,
    reading_at,
)
from i18n import _
from scada.services.auth import Role, User
from scada.services.roster import ROSTER_FILE
from scada.services.yaml_edit import YamlEdit

if TYPE_CHECKING:
    from billing.money import AuditSink
    from billing.service import Billing
    from scada.services.config_versions import ConfigManager

__all__ = ["TenancyService", "TenantInfo", "new_account_id"]

_ROSTER_HEADER = (
    "# Prepaid accounts added by roster imports and tenant changes.\n"
    "# Edit them here or through the next import; docs/billing.md.\n"
)
#: Keys of the old account the new tenant's account takes over.
_KEPT = (
    "tariff",
    "household",
    "building",
    "area_m2",
    "alarm1",
    "alarm2",
    "keep_power",
    "overload_kw",
    "max_kw",
    "hold_multiple",
)


@dataclass(frozen=True, slots=True)
class TenantInfo:
    """The new tenant: name (required), phone, e-mail."""

    name: str
    phone: str | None = None
    email: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"tenant": self.name, "phone": self.phone, "email": self.email}


def new_account_id(old: str, at: float, tz: str) -> str:
    """Return the default id of the new tenant's account: ``<old>-<YYYYMMDD of T>``."""
    base = re.sub(r"-\d{8}$", "", old)
    return f"{base}-{datetime.fromtimestamp(at, zoneinfo.ZoneInfo(tz)):%Y%m%d}"


def _iso_local(at: float, tz: str) -> str:
    return datetime.fromtimestamp(at, zoneinfo.ZoneInfo(tz)).isoformat()


def _epoch(t: datetime, tz: str) -> float:
    """Epoch seconds of a configured time (naive: site time)."""
    return (t if t.tzinfo is not None else t.replace(tzinfo=zoneinfo.ZoneInfo(tz))).timestamp()


def _issue_text(issue: dict[str, Any]) -> str:
    """``file:line: path: message`` of a configuration issue."""
    return f"{issue.get('file')}:{issue.get('line')}: {issue.get('path')}: {issue.get('message')}"


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return value


class _Files:
    """The configuration's files, composed on first use, edited in place."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = dict(files)
        self.editors: dict[str, YamlEdit] = {}

    def editor(self, rel: str) -> YamlEdit:
        if rel not in self.editors:
            self.editors[rel] = YamlEdit(self.files[rel], rel)
        return self.editors[rel]

    def find(self, section: str, item_id: str) -> tuple[YamlEdit, Any] | None:
        for rel, text in self.files.items():
            if section not in text or item_id not in text:
                continue
            ed = self.editor(rel)
            node = ed.find(ed.get(ed.root, section), "id", item_id)
            if node is not None:
                return ed, node
        return None

    def household(self, building: str, household: str) -> tuple[YamlEdit, Any] | None:
        found = self.find("buildings", building)
        if found is None:
            return None
        ed, b = found
        node = ed.find(ed.get(b, "households"), "id", household)
        return None if node is None else (ed, node)

    def changed(self) -> dict[str, str]:
        return {rel: ed.text() for rel, ed in self.editors.items() if ed.changed}


class TenancyService:
    """Tenant changes and vacancies over the ledger and the configuration manager.

    ``billing`` returns the running billing facade (None: billing is not running: refused).
    """

    def __init__(
        self,
        config: ConfigManager,
        billing: Callable[[], Billing | None],
        audit: AuditSink,
    ) -> None:
        self.config = config
        self.billing = billing
        self.audit = audit

    def _billing(self) -> Billing:
        b = self.billing()
        if b is None:
            raise TenancyRefused(_("billing is not running"))
        return b

    # ------------------------------------------------------------------ the configuration

    def _proposal_change(
        self, account: str, new_item: dict[str, Any], moved_out: str
    ) -> dict[str, str]:
        """Return the changed files of a tenant change (blocking)."""
        bundle = _Files(self.config.current_files())
        found = bundle.find("accounts", account)
        if found is None:
            raise TenancyRefused(
                _(
                    "account {account} is made by no file of the configuration (a generated "
                    "account): change its tenant there",
                    account=account,
                )
            )
        found[0].set_values(found[1], {"moved_out": moved_out})
        if ROSTER_FILE not in bundle.files:
            bundle.files[ROSTER_FILE] = _ROSTER_HEADER
            main = bundle.editor(self.config.main_name())
            include = main.get(main.root, "include")
            if ROSTER_FILE not in set(main.scalars(include)):
                main.append_to_key(None, "include", [ROSTER_FILE])
        bundle.editor(ROSTER_FILE).append_to_key(None, "accounts", [new_item])
        return bundle.changed()

    def _check(self, proposal: dict[str, str]) -> None:
        """Load the proposal with the real loader; ``TenancyRefused`` with its errors (blocking)."""
        site, issues = self.config.load_bundle(self.config.bundle(proposal))
        if site is None:
            text = "; ".join(_issue_text(i) for i in issues[:5])
            raise TenancyRefused(_("the configuration would be invalid: {errors}", errors=text))

    async def _apply(
        self, user: Any, proposal: dict[str, str], comment: str, source: str | None
    ) -> None:
        name = str(getattr(user, "name", user) or "system")
        applied = await self.config.apply(
            User(name, Role.ADMIN), proposal, comment=comment, source=source
        )
        if not applied["valid"]:
            raise TenancyRefused(
                _(
                    "the configuration was not applied: {errors}",
                    errors="; ".join(_issue_text(i) for i in applied["errors"][:5]),
                )
            )

    # ------------------------------------------------------------------ tenant change

    async def change_tenant(
        self,
        user: Any,
        account_id: str,
        *,
        at: float,
        tenant: TenantInfo,
        key: str,
        new_account: str | None = None,
        readings: dict[str, float] | None = None,
        source: str | None = None,
        note: str = "",
    ) -> TenantChange:
        """Change the tenant of ``account_id`` at ``at`` (the module docstring).

        Raises ``UnknownAccount`` (not audited), ``TenancyRefused``, ``MissingReading``,
        ``Implausible``, ``ChargeHeld``, ``IdempotencyConflict`` (audited ``failed``).
        """
        billing = self._billing()
        acct = billing.account_config(account_id)
        loop = asyncio.get_running_loop()
        tz = billing.tz
        new_id = new_account or new_account_id(account_id, at, tz)
        detail = {"at": _iso_local(at, tz), "new_account": new_id, **tenant.to_json(), "key": key}
        try:
            done = await loop.run_in_executor(None, self._done, billing, key)
            if done is not None:
                return await self._repeat(user, billing, done, source)
            given = dict(readings or {})
            for m in acct.meters:
                if m.energy not in given and billing.historian is not None:
                    hist = billing.historian
                    value = await loop.run_in_executor(None, reading_at, hist, m.energy, at)
                    if value is not None:
                        given[m.energy] = value
            missing = [m.energy for m in acct.meters if m.energy not in given]
            if missing:
                raise MissingReading(
                    _(
                        "meter {meter}: no reading at {at} given and none in the history",
                        meter=missing[0],
                        at=detail["at"],
                    )
                )
            if new_id in billing.account_ids():
                raise TenancyRefused(
                    _(
                        "account {account} exists already: give the new tenant a new account id",
                        account=new_id,
                    )
                )
            began = acct.config.moved_in
            if began is not None and at <= _epoch(began, tz):
                raise TenancyRefused(
                    _(
                        "account {account}: the tenant change at {at} is not after its tenancy "
                        "began ({began})",
                        account=account_id,
                        at=detail["at"],
                        began=began.isoformat(),
                    )
                )
            item = self._new_item(acct.config, new_id, tenant, _iso_local(at, tz))
            proposal = await loop.run_in_executor(
                None, self._proposal_change, account_id, item, _iso_local(at, tz)
            )
            await loop.run_in_executor(None, self._check, proposal)
            change = await loop.run_in_executor(
                None,
                lambda: change_tenant(
                    billing.site,
                    billing.ledger,
                    acct,
                    new_id,
                    at=at,
                    key=key,
                    readings=given,
                    tenant=tenant.to_json(),
                    user=str(getattr(user, "name", user) or ""),
                    note=note,
                ),
            )
            if change.repeated:  # a racing request with the same key
                return change
            await self._apply(user, proposal, f"tenant change of {account_id} to {new_id}", source)
        except BillingError as exc:
            # a racing request with the same key may have made the change meanwhile
            raced = await loop.run_in_executor(None, self._done, billing, key)
            if raced is not None and (raced.account, raced.new_account) == (account_id, new_id):
                return raced
            self.audit.record(
                "billing.tenant_change",
                user=user,
                source=source,
                target=account_id,
                result="failed",
                after=detail,
                detail=str(exc),
            )
            raise
        self.audit.record(
            "billing.tenant_change",
            user=user,
            source=source,
            target=account_id,
            before={"balance": str(change.closing.balance)},
            after={
                **detail,
                "readings": change.closing.readings,
                "settlement": change.closing.settlement,
                "amount": str(change.closing.amount),
                "closing": change.closing.entry.seq,
                "opening": change.opening.seq,
            },
            detail=note or None,
        )
        if new_id in billing.account_ids():  # (offline, the CLI's billing keeps its site)
            await billing.evaluate(new_id)
        return change

    @staticmethod
    def _new_item(cfg: Any, new_id: str, tenant: TenantInfo, moved_in: str) -> dict[str, Any]:
        item: dict[str, Any] = {"id": new_id, "tenant": tenant.name}
        if tenant.phone:
            item["phone"] = tenant.phone
        if tenant.email:
            item["email"] = tenant.email
        fields = cfg.model_dump(exclude_defaults=True)
        item.update({k: _plain(fields[k]) for k in _KEPT if k in fields})
        item["meters"] = [
            m["energy"] if set(m) == {"energy"} else {k: _plain(v) for k, v in m.items()}
            for m in cfg.model_dump(exclude_defaults=True)["meters"]
        ]
        item["moved_in"] = moved_in
        return item

    @staticmethod
    def _done(billing: Billing, key: str) -> TenantChange | None:
        return find_change(billing.ledger, key)

    async def _repeat(
        self, user: Any, billing: Billing, done: TenantChange, source: str | None
    ) -> TenantChange:
        """The first change with the key; its configuration applied if it is missing."""
        if done.new_account not in billing.account_ids():
            acct = billing.account_config(done.account)
            info = TenantInfo(
                str(done.tenant.get("tenant", "")),
                done.tenant.get("phone"),
                done.tenant.get("email"),
            )
            item = self._new_item(
                acct.config, done.new_account, info, _iso_local(done.at, billing.tz)
            )
            loop = asyncio.get_running_loop()
            proposal = await loop.run_in_executor(
                None, self._proposal_change, done.account, item, _iso_local(done.at, billing.tz)
            )
            await self._apply(
                user, proposal, f"tenant change of {done.account} to {done.new_account}", source
            )
        return done

    def history(self, account_id: str) -> list[TenantChange]:
        """Return the tenant changes of an account (old or new side), oldest first (blocking)."""
        return changes(self._billing().ledger, account_id)

    # ------------------------------------------------------------------ vacant flats

    async def set_vacant(
        self,
        user: Any,
        household: str,
        *,
        since: date,
        heat_basic_ratio: Decimal,
        owner: str,
        until: date | None = None,
        source: str | None = None,
    ) -> dict[str, Any]:
        """Mark ``household`` vacant from ``since``; return the household's ``vacant``."""
        billing = self._billing()
        value: dict[str, Any] = {
            "from": since.isoformat(),
            "heat_basic_ratio": str(heat_basic_ratio),
            "owner": owner,
        }
        if until is not None:
            value["until"] = until.isoformat()
        tenants = [
            a.id
            for a in billing.site.accounts
            if a.household == household and billing.ledger.is_open(a.id)
        ]
        refusal = None
        if tenants:
            refusal = _(
                "household {household} has the open account {account}: close it or change "
                "its tenant before the flat is vacant",
                household=household,
                account=tenants[0],
            )
        return await self._set_household(user, household, value, "billing.vacant", source, refusal)

    async def set_let(
        self, user: Any, household: str, *, since: date, source: str | None = None
    ) -> dict[str, Any]:
        """End the vacancy of ``household`` the day before ``since`` (let again)."""
        billing = self._billing()
        cfg = next((h for h in billing.site.households() if h.id == household), None)
        value: dict[str, Any] = {"until": (since - timedelta(days=1)).isoformat()}
        refusal = None
        if cfg is None or cfg.vacant is None:
            refusal = _("household {household} is not vacant", household=household)
        elif since <= cfg.vacant.from_:
            refusal = _(
                "household {household} is vacant from {start}: let it from a later day",
                household=household,
                start=cfg.vacant.from_.isoformat(),
            )
        else:
            value = {
                **cfg.vacant.model_dump(by_alias=True, mode="json", exclude_none=True),
                **value,
            }
        return await self._set_household(user, household, value, "billing.let", source, refusal)

    async def _set_household(
        self,
        user: Any,
        household: str,
        value: dict[str, Any],
        action: str,
        source: str | None,
        refusal: str | None = None,
    ) -> dict[str, Any]:
        """Write ``vacant: value`` where the household is defined (``refusal``: refuse, audited)."""
        billing = self._billing()
        known = any(h.id == household for h in billing.site.households())
        building = billing.site.household_building(household) if known else None
        loop = asyncio.get_running_loop()
        try:
            if refusal is not None:
                raise TenancyRefused(refusal)
            if building is None:
                raise TenancyRefused(_("unknown household {household}", household=household))

            def propose() -> dict[str, str]:
                bundle = _Files(self.config.current_files())
                found = bundle.household(building, household)
                if found is None:
                    raise TenancyRefused(
                        _(
                            "household {household} is made by building {building}'s generate: "
                            "block: set its vacancy there",
                            household=household,
                            building=building,
                        )
                    )
                found[0].set_values(found[1], {"vacant": value})
                proposal = bundle.changed()
                self._check(proposal)
                return proposal

            proposal = await loop.run_in_executor(None, propose)
            await self._apply(user, proposal, f"{action} {household}", source)
        except BillingError as exc:
            self.audit.record(
                action,
                user=user,
                source=source,
                target=household,
                result="failed",
                after={"vacant": value},
                detail=str(exc),
            )
            raise
        self.audit.record(
            action, user=user, source=source, target=household, after={"vacant": value}
        )
        return value
