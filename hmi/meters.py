"""Meters and accounts for office staff: one tile per electricity meter, batch relay commands.

Each tile names the tenant or shop (household name, account tenant, else "Flat 101"), shows
the account's balance as money and its prepaid level, and the relay as a switch symbol with a
word: *closed* (grey, closed switch), *tripped* (an open switch on a teal band, the only
teal on the screen), *comm lost* (the whole tile magenta). The tile's fill follows the
account state (colour only when abnormal, see ``hmi.theme.ACCOUNT_COLOURS``); the state comes
from tags: the meter's ``online`` tag and billing's ``acct.<id>.balance`` / ``acct.<id>.level``
tags (``billing.tags``). Select tiles (tap, or drag a box on a wide screen) and run a batch:
*trip* / *close* go through the command service (select-before-operate, one confirm for the
batch, a final result per meter: done with the read-back time, refused, failed, expired or
cancelled); *keep power* and *restore prepaid* are billing operations.

Classes: :class:`MeterGrid` (``hmi.meters_grid``: the tiles), :class:`BatchActions` and
:class:`ResultTable` (``hmi.meters_actions``). This module finds the meters and builds a
tile's values (:func:`tile_row`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import InlineStyleSheet
from bokeh.models.widgets import Select

from billing.tags import Level, balance_tag, level_tag, relay_tag
from hmi.layout import denied_body, page_allowed, page_frame, select_options
from hmi.meters_actions import BatchActions, ResultTable
from hmi.meters_grid import RELAY_TRIPPED, MeterGrid, state_label
from hmi.meters_replace import ReplaceMeter
from hmi.model import tag_or_none
from hmi.services import ServiceCommands
from hmi.session import HmiSession
from hmi.tenant_labels import DEFAULT_CURRENCY, household_label, money_text
from hmi.theme import ACCOUNT_COLOURS, COMM_LOST, EQUIPMENT, SELECT_CSS, TEXT, WIDGET_FONT
from i18n import _
from scada.config import SiteConfig
from tags.bus import ChangeBatch
from tags.database import TagDatabase
from tags.model import Quality

__all__ = ["MeterInfo", "make_meters", "meter_state", "site_meters", "state_label", "tile_row"]

log = logging.getLogger(__name__)

#: Below this viewport width the tiles come first and the controls under them (phones).
NARROW_PX = 700


#: The page body: side by side on a wide screen, tiles then controls on a narrow one.
NARROW_CSS = f"""
:host(.meters-side) {{ flex: 0 0 clamp(520px, 27vw, 1100px) !important;
                       --bokeh-font-size: {WIDGET_FONT}; }}
@media (max-width: {NARROW_PX}px) {{
  :host(.meters-body) {{ flex-direction: column !important; overflow-y: auto !important; }}
  :host(.meters-tiles) {{ height: auto !important; max-height: none !important; flex: none !important;
                          overflow: visible !important;
                          width: 100% !important; }}
  :host(.meters-side) {{ width: 100% !important; height: auto !important; flex: none !important; }}
}}
"""


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """An electricity meter with its display name and the tags that draw its tile."""

    device: str
    building: str
    energy_tag: str | None
    relay_tag: str | None
    online_tag: str | None
    account: str | None
    level_tag: str | None
    balance_tag: str | None
    name: str = ""
    currency: str = DEFAULT_CURRENCY

    @property
    def tags(self) -> list[str]:
        """The tags whose changes redraw the tile."""
        return [t for t in (self.online_tag, self.relay_tag, self.level_tag, self.balance_tag) if t]


def _accounts_by_meter(site: SiteConfig) -> dict[str, Any]:
    """Return ``{meter energy tag: resolved account}`` from billing's account resolution."""
    if not site.accounts:
        return {}
    from billing.accounts import resolve_accounts

    out: dict[str, Any] = {}
    try:
        for a in resolve_accounts(site):
            for m in a.meters:
                out[m.energy] = a
    except KeyError:  # a dangling reference the loader let through: show meters without it
        log.exception("cannot resolve the accounts of the site")
    return out


def _meter_name(site: SiteConfig, device: Any, account: Any, masters: set[str]) -> str:
    """Return the tile's title: shop or household name, tenant, "Flat 101", master meter."""
    household_id = device.household or (account.config.household if account else None)
    if household_id:
        household = next((h for h in site.households() if h.id == household_id), None)
        if household is not None and household.name:
            return str(household.name)
    if account is not None and account.config.tenant:
        return str(account.config.tenant)
    if household_id:
        return household_label("", household_id, site.household_building(household_id))
    if f"{device.id}.energy_kwh" in masters:
        return _("Master meter")
    if device.building and account is None:
        return _("Building meter")
    return str(device.description or _("Meter {device}", device=device.id))


def site_meters(site: SiteConfig, db: TagDatabase) -> list[MeterInfo]:
    """Return every enabled electricity meter (template role ``electricity_meter``) in config order."""
    by_meter = _accounts_by_meter(site)
    homes = {h.id: site.household_building(h.id) for h in site.households()}
    masters = {b.electricity.master_tag for b in site.buildings if b.electricity}
    out = []
    for d in site.devices:
        template = site.templates.get(d.template)
        if template is None or template.role != "electricity_meter" or not d.enabled:
            continue
        energy = tag_or_none(db, f"{d.id}.energy_kwh")
        account = by_meter.get(energy or "")
        building = d.building or homes.get(d.household or "", "")
        if not building and account is not None:
            building = account.building or ""
        bal = tag_or_none(db, balance_tag(account.id)) if account else None
        currency = (db.definition(bal).unit if bal else "") or DEFAULT_CURRENCY
        out.append(
            MeterInfo(
                device=d.id,
                building=building or "—",
                energy_tag=energy,
                relay_tag=tag_or_none(db, relay_tag(d.id)),
                online_tag=tag_or_none(db, f"{d.id}.online"),
                account=account.id if account else None,
                level_tag=tag_or_none(db, level_tag(account.id)) if account else None,
                balance_tag=bal,
                name=_meter_name(site, d, account, masters),
                currency=currency,
            )
        )
    return out


def meter_state(db: TagDatabase, m: MeterInfo) -> str:
    """Return the meter's state key (see ``hmi.theme.ACCOUNT_COLOURS``)."""
    if m.online_tag is not None:
        tv = db.read(m.online_tag)
        if tv.value is not True or tv.quality is Quality.BAD:
            return "lost"
    if m.account is None:
        return "no_account"
    if m.level_tag is None:
        return "open"
    level = Level.of(db.read(m.level_tag).value)
    if level is None:
        return "no_account"  # configured, not opened yet
    return "open" if level is Level.OK else level.key


def level_text(level: Level | None, has_account: bool) -> str:
    """Return the tile's level line: the prepaid level with its alarm priority."""
    if not has_account:
        return _("no account")
    if level is None:
        return _("account not opened")
    texts = {
        Level.OK: _("level ok"),
        Level.ALARM1: _("alarm 1 (priority 3)"),
        Level.ALARM2: _("alarm 2 (priority 2)"),
        Level.ARREARS: _("arrears (priority 1)"),
    }
    return texts[level]


def relay_state(db: TagDatabase, m: MeterInfo, lost: bool) -> str:
    """Return ``closed``, ``tripped``, ``none`` (no relay) or ``unknown`` (no good value)."""
    if m.relay_tag is None:
        return "none"
    tv = db.read(m.relay_tag)
    if lost or tv.value is None or tv.quality is Quality.BAD:
        return "unknown"
    return "closed" if tv.value else "tripped"


def _relay_text(state: str, lost: bool) -> str:
    if state == "unknown":
        return _("comm lost") if lost else _("relay unknown")
    texts = {"closed": _("closed"), "tripped": _("tripped"), "none": _("no relay")}
    return texts[state]


def tile_row(db: TagDatabase, m: MeterInfo) -> dict[str, Any]:
    """Return the tile's values (the columns of the ``meter-grid`` source that tags change)."""
    state = meter_state(db, m)
    lost = state == "lost"
    relay = relay_state(db, m, lost)
    balance = db.read(m.balance_tag).value if m.balance_tag else None
    level = Level.of(db.read(m.level_tag).value) if m.level_tag else None
    dark = state in ("lost", "arrears")  # white text on magenta and on red
    tripped = relay == "tripped"
    return {
        "state": state,
        "state_label": state_label(state),
        "fill": ACCOUNT_COLOURS[state],
        "line": COMM_LOST if lost else EQUIPMENT,
        "ink": "#FFFFFF" if dark else TEXT,
        "balance": money_text(balance, m.currency) if m.account else "",
        "level": level_text(level, m.account is not None),
        "relay_state": relay,
        "relay": _relay_text(relay, lost),
        "band_alpha": 1.0 if tripped else 0.0,
        "band_fill": RELAY_TRIPPED,
        "relay_ink": "#FFFFFF" if (tripped or dark) else TEXT,
        "switch_alpha": 1.0 if relay in ("closed", "tripped") else 0.0,
        "plain_alpha": 0.0 if relay in ("closed", "tripped") else 1.0,
        "closed_alpha": 1.0 if relay == "closed" else 0.0,
        "open_alpha": 1.0 if tripped else 0.0,
    }


def _building_select(grid: MeterGrid) -> Select:
    """A choice of the building whose tiles to show (all by default)."""
    buildings = dict.fromkeys(m.building for m in grid.meters)
    names = dict(zip((m.building for m in grid.meters), grid.building_names, strict=True))
    options = [("", _("all buildings")), *((b, names[b]) for b in buildings)]
    select = Select(
        value="",
        options=select_options(options),
        name="meter-building",
        styles={"width": "clamp(200px, 11vw, 440px)", "--bokeh-font-size": WIDGET_FONT},
        stylesheets=[InlineStyleSheet(css=SELECT_CSS)],
    )
    select.on_change("value", lambda _a, _o, new: grid.show(new or None))
    return select


def make_meters(
    session: HmiSession, doc: Document, commands: ServiceCommands | None = None
) -> None:
    """Build the meters and accounts page into ``doc``."""
    if not page_allowed(session, "meters"):
        denied = denied_body(_("not allowed for your role"))
        page_frame(session, doc, "meters", denied, _("Meters"))
        return
    db = session.services.db
    meters = site_meters(session.services.site, db)
    if not meters:
        denied = denied_body(_("no electricity meters configured"))
        page_frame(session, doc, "meters", denied, _("Meters"))
        return
    grid = MeterGrid(session, meters, [tile_row(db, m) for m in meters])
    results = ResultTable(session, meters)
    replace = ReplaceMeter(session, meters, lambda: grid.selected)
    actions = BatchActions(session, commands, meters, grid, results, [replace.open_btn])
    rows_of: dict[str, list[int]] = {}
    for i, m in enumerate(meters):
        for t in m.tags:
            rows_of.setdefault(t, []).append(i)

    def on_changes(batch: ChangeBatch) -> None:
        dirty = sorted({i for name in batch.names for i in rows_of.get(name, ())})
        grid.update({i: tile_row(db, meters[i]) for i in dirty})

    session.subscribe(list(rows_of), on_changes)
    css = [InlineStyleSheet(css=NARROW_CSS)]
    header = row(
        _building_select(grid),
        grid.legend,
        sizing_mode="stretch_width",
        styles={"flex-wrap": "wrap", "gap": "4px"},
    )
    tiles = column(
        grid.figure,
        sizing_mode="stretch_both",
        styles={"overflow-y": "auto", "scrollbar-gutter": "stable"},  # no re-layout on scroll
        css_classes=["meters-tiles"],
        stylesheets=css,
        name="meter-tiles",
    )
    side = column(
        actions.layout,
        replace.layout,
        results.table,
        width=520,
        sizing_mode="stretch_height",
        css_classes=["meters-side"],
        stylesheets=css,
        name="meter-side",
    )
    main = row(
        tiles, side, sizing_mode="stretch_both", css_classes=["meters-body"], stylesheets=css
    )
    body = column(header, main, sizing_mode="stretch_both")
    page_frame(session, doc, "meters", body, _("Meters and accounts"))
