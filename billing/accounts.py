"""Accounts of a site resolved once: building, area, meters with their tariff, relay and power tags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from billing.config import AccountConfig, MeterConfig, TariffConfig
from billing.tags import relay_tag

if TYPE_CHECKING:
    from billing.site import BillingSite

__all__ = ["Meter", "ResolvedAccount", "resolve_accounts"]


@dataclass(frozen=True, slots=True)
class Meter:
    """A meter of an account with every tag resolved (relay/power None when there is none)."""

    energy: str
    tariff: TariffConfig
    relay: str | None
    power: str | None
    overload_kw: float | None
    max_kw: float


@dataclass(frozen=True, slots=True)
class ResolvedAccount:
    """An account with its building, area, tariff and meters looked up in the site."""

    config: AccountConfig
    building: str | None
    area_m2: float | None
    tariff: TariffConfig
    meters: list[Meter]

    @property
    def id(self) -> str:
        return self.config.id


def _meter(
    site: BillingSite,
    names: set[str],
    account: AccountConfig,
    m: MeterConfig,
    tariffs: dict[str, TariffConfig],
) -> Meter:
    relay = m.relay if m.relay is not None else relay_tag(m.device)
    power = m.power if m.power is not None else f"{m.device}.power_kw"
    return Meter(
        m.energy,
        tariffs[m.tariff or account.tariff],
        relay if relay in names else None,
        power if power in names else None,
        account.overload_of(m),
        account.max_kw_of(m),
    )


def resolve_accounts(site: BillingSite) -> list[ResolvedAccount]:
    """Return every configured account resolved (``KeyError`` for a dangling reference).

    The loader's checks reject dangling references, so a loaded site always resolves.
    """
    if not site.accounts:
        return []  # (an estate without prepaid accounts: no walk over its 300,000 tags)
    defs = {d.name: d for d in site.tag_defs()}
    names = set(defs)
    tariffs = {t.id: t for t in site.tariffs}
    households = {h.id: h for h in site.households()}
    out: list[ResolvedAccount] = []
    for a in site.accounts:
        household = None
        if a.household is not None:
            household = households[a.household]
        building = a.building
        if building is None and a.household is not None:
            building = site.household_building(a.household)
        if building is None:
            for m in a.meters:
                d = defs.get(m.energy)
                if d is not None and d.building is not None:
                    building = d.building
                    break
        area = a.area_m2 if a.area_m2 is not None else (household.area_m2 if household else None)
        meters = [_meter(site, names, a, m, tariffs) for m in a.meters]
        out.append(ResolvedAccount(a, building, area, tariffs[a.tariff], meters))
    return out
