"""Tenant page (role ``tenant``, phone-first): own home, consumption, balance and ledger only.

The households and accounts shown are exactly those linked to the user (the server's
``links``, checked again with ``may("tags.read" / "billing.read", target)``): nothing of
other tenants is read, sent or subscribed. Everything is named as the tenant knows it: the
building's name and "Flat 101" (or the shop's name), never internal ids on screen.

Panels, top to bottom (side by side where the screen is wide): :class:`HomeTile` (room
temperature, setpoint, area; live), the balance explained (``hmi.tenant_money``: balance now
and level, last top-up, this month's top-ups and charges; reloaded when the balance tag
moves), electricity beside heat (``hmi.tenant_usage``: this and last month, this month's
allocated heat and its cost), the *Pay* action (``hmi.tenant_pay``: the payment provider's
flow), the daily electricity chart with the days without data drawn as gaps, the latest ledger
entries, and the tenant's receipts and statements.
"""

from __future__ import annotations

import html
import logging
import time
from typing import TYPE_CHECKING

from bokeh.document import Document
from bokeh.layouts import column

from hmi.layout import denied_body, html_div, page_frame
from hmi.session import HmiSession
from hmi.tenant_labels import building_label, household_label
from hmi.tenant_money import BalancePanel, LedgerPanel
from hmi.tenant_pay import PayPanel
from hmi.tenant_usage import ConsumptionPanel, day_starts, month_start
from hmi.theme import value_html
from i18n import _
from tags.bus import ChangeBatch

if TYPE_CHECKING:
    from billing.accounts import ResolvedAccount
    from billing.config import HouseholdConfig

__all__ = ["HomeTile", "day_starts", "make_tenant", "tenant_scope"]

log = logging.getLogger(__name__)

#: Tiles side by side while each keeps 18 em; one column on a phone.
GRID_CSS = """
:host > div { width: 100%; }
.tiles { width: 100%; display: grid; grid-template-columns: repeat(auto-fit, minmax(min(18em, 100%), 1fr));
         gap: 0.5em; }
.tile h3 { margin: 0 0 0.2em 0; font-size: 0.95em; font-weight: normal; color: #5C5C5C; }
"""


def tenant_scope(session: HmiSession) -> tuple[list[HouseholdConfig], list[ResolvedAccount]]:
    """Return the (households, accounts) the session's user may see."""
    site = session.services.site
    households = [h for h in site.households() if session.may("tags.read", h.id)]
    accounts: list[ResolvedAccount] = []
    if site.accounts:
        from billing.accounts import resolve_accounts

        for a in resolve_accounts(site):
            hh = a.config.household
            if session.may("billing.read", a.id) or (hh and session.may("billing.read", hh)):
                accounts.append(a)
    return households, accounts


class HomeTile:
    """A household: its name, building, room temperature, setpoint and area (live)."""

    def __init__(self, session: HmiSession, household: HouseholdConfig) -> None:
        self.session = session
        self.household = household
        site = session.services.site
        self.building = site.household_building(household.id)
        self.title = household_label(household.name, household.id, self.building)
        self.building_name = building_label(site.buildings, self.building)
        db = session.services.db
        self.room = household.room_tag if household.room_tag in db else None
        self.setpoint = household.setpoint_tag if household.setpoint_tag in db else None

    @property
    def tags(self) -> list[str]:
        """The live tags of the tile the user may read."""
        return [t for t in (self.room, self.setpoint) if t and self.session.may("tags.read", t)]

    def html(self) -> str:
        """Return the tile's HTML."""
        db = self.session.services.db
        rows = []
        for label, tag in ((_("room"), self.room), (_("setpoint"), self.setpoint)):
            if tag and tag in self.tags:
                value = value_html(db.read(tag), "°C", tag=tag)
                rows.append(f"<tr><td>{html.escape(label)}</td><td>{value}</td></tr>")
        area = _("{area} m²", area=f"{self.household.area_m2:g}")
        rows.append(f"<tr><td>{html.escape(_('area'))}</td><td>{html.escape(area)}</td></tr>")
        return (
            f'<div class="tile" data-household="{html.escape(self.household.id)}">'
            f"<h2>{html.escape(self.title)}</h2><h3>{html.escape(self.building_name)}</h3>"
            f"<table>{''.join(rows)}</table></div>"
        )


def _energy_tags(
    session: HmiSession, households: list[HouseholdConfig], accounts: list[ResolvedAccount]
) -> list[str]:
    """The user's electricity meter energy tags (readable ones, each once)."""
    db = session.services.db
    tags = [t for h in households for t in h.tags if t.endswith("energy_kwh") and t in db]
    tags += [m.energy for a in accounts for m in a.meters if m.energy in db]
    return list(dict.fromkeys(t for t in tags if session.may("tags.read", t)))


class TenantPage:
    """The page: tiles of homes and balances, consumption, chart, ledger; live where it can."""

    def __init__(
        self,
        session: HmiSession,
        households: list[HouseholdConfig],
        accounts: list[ResolvedAccount],
    ) -> None:
        self.session = session
        site = session.services.site
        tz = site.site.timezone
        self.homes = [HomeTile(session, h) for h in households]
        titles = {h.household.id: h.title for h in self.homes}
        start = month_start(time.time(), tz)
        self.balances = [
            BalancePanel(session, a, start, self._account_title(a, titles), self.render)
            for a in accounts
        ]
        currency = self.balances[0].currency if self.balances else None
        heated = [(h.id, site.household_building(h.id)) for h in households if h.valve_tag]
        energy = _energy_tags(session, households, accounts)
        self.usage = ConsumptionPanel(session, energy, heated, currency, self.render)
        self.ledger = LedgerPanel(session, accounts, currency)
        account_titles = {b.account.id: b.title for b in self.balances}
        heated_hh = [h for h in households if h.valve_tag]
        self.payments = PayPanel(session, accounts, heated_hh, account_titles, currency)
        self.tiles = html_div("", name="tenant-status", css=GRID_CSS, sizing_mode="stretch_width")
        self.layout = column(
            self.tiles,
            self.usage.layout,
            self.ledger.div,
            self.payments.div,
            sizing_mode="stretch_both",
            styles={"overflow-y": "auto"},
            name="tenant-body",
        )

    @staticmethod
    def _account_title(account: ResolvedAccount, titles: dict[str, str]) -> str:
        home = titles.get(account.config.household or "")
        if home:
            return _("Account of {home}", home=home)
        return _("Account of {tenant}", tenant=account.config.tenant or account.id)

    def render(self) -> None:
        """Lay the homes, balances, electricity and heat tiles out in the grid."""
        parts = [h.html() for h in self.homes]
        parts += [b.html for b in self.balances]
        parts.append(self.payments.pay.text)
        parts += [self.usage.electricity, self.usage.heat]
        self.tiles.text = f'<div class="tiles">{"".join(parts)}</div>'

    def start(self) -> None:
        """Subscribe to the live tags and start the slow reads (ledger, history, heat)."""
        live = [t for h in self.homes for t in h.tags]
        money = {t: b for b in self.balances for t in b.tags}
        for b in self.balances:
            b.render()
        self.render()

        def on_changes(batch: ChangeBatch) -> None:
            moved = {money[t] for t in batch.names if t in money}
            for b in moved:
                b.render()
                b.load()  # a top-up or a charge: the story changed
            if moved:
                self.ledger.load()
                self.payments.load()
            self.render()

        # the user's own accounts' tags: readable even without ``tags.read``
        self.session.subscribe(live + list(money), on_changes)
        self.session.doc.add_next_tick_callback(self._load)

    def _load(self) -> None:
        for b in self.balances:
            b.load()
        self.ledger.load()
        self.payments.load()
        self.usage.load()


def make_tenant(session: HmiSession, doc: Document) -> None:
    """Build the tenant page into ``doc``."""
    user = session.user
    title = _("My account")
    if user is None or user.role != "tenant":
        denied = denied_body(_("this page is for tenant accounts"))
        page_frame(session, doc, "tenant", denied, title)
        return
    households, accounts = tenant_scope(session)
    if not households and not accounts:
        denied = denied_body(_("no household is linked to your login"))
        page_frame(session, doc, "tenant", denied, title)
        return
    page = TenantPage(session, households, accounts)
    page.start()
    page_frame(session, doc, "tenant", page.layout, title)
