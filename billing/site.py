"""What billing reads of a site: a structural view that ``scada.config.SiteConfig`` satisfies.

Billing never imports the site configuration (``scada`` composes it from the packages'
models, billing's among them); it types the site it is given as :class:`BillingSite`. The
members are read-only and typed with billing's own config models (``billing.config``), so
any object with these attributes will do: the loaded ``SiteConfig``, or a test double.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from billing.config import (
    AccountConfig,
    ElectricityConfig,
    HeatConfig,
    HeatTariff,
    HouseholdConfig,
    TariffConfig,
)
from tags.model import TagDef

__all__ = ["BillingBuilding", "BillingDevice", "BillingSite", "SiteIdentity"]


class SiteIdentity(Protocol):
    """The site's ``id``, display ``name`` and IANA ``timezone`` (billing periods are local)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def timezone(self) -> str: ...


class BillingBuilding(Protocol):
    """A building: its heat metering, electricity (master meter, losses) and households."""

    @property
    def id(self) -> str: ...

    @property
    def heat(self) -> HeatConfig | None: ...

    @property
    def electricity(self) -> ElectricityConfig | None: ...

    @property
    def households(self) -> Sequence[HouseholdConfig]: ...


class BillingDevice(Protocol):
    """A field device, for the lost-contact report (``<id>.online``)."""

    @property
    def id(self) -> str: ...

    @property
    def enabled(self) -> bool: ...


class BillingSite(Protocol):
    """The parts of a site configuration that billing reads."""

    @property
    def site(self) -> SiteIdentity: ...

    @property
    def buildings(self) -> Sequence[BillingBuilding]: ...

    @property
    def devices(self) -> Sequence[BillingDevice]: ...

    @property
    def tariffs(self) -> Sequence[TariffConfig]: ...

    @property
    def accounts(self) -> Sequence[AccountConfig]: ...

    @property
    def heat_tariff(self) -> HeatTariff | None:
        """The site-wide heat tariff (a building's ``heat.tariff`` overrides it)."""
        ...

    def building(self, building_id: str) -> BillingBuilding:
        """Return the building ``building_id``; KeyError if there is none."""
        ...

    def households(self) -> Sequence[HouseholdConfig]:
        """Return every household of every building."""
        ...

    def household_building(self, household_id: str) -> str:
        """Return the id of the building that holds household ``household_id``."""
        ...

    def tag_defs(self) -> Sequence[TagDef]:
        """Return every tag of the site."""
        ...
