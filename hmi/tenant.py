"""Tenant page (role ``tenant``, phone-first): own consumption, balance, bills and top-ups only.

The households and accounts shown are exactly those linked to the user (the server's
``links``, checked again with ``may("tags.read" / "billing.read", target)``): nothing of
other tenants is read, sent or subscribed. Daily consumption bars come from the historian
(``delta`` of the meters' energy tags per local day, last 30 days) with this month against
last month; the balance and warning level from billing's ``acct.<id>.balance`` /
``acct.<id>.level`` tags; bills and top-ups from the billing ledger when the billing
service runs (``services.billing``).
"""

from __future__ import annotations

import html
import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bokeh.document import Document
from bokeh.layouts import column
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure

from billing.tags import Level, balance_tag, level_tag
from hmi.layout import denied_body, html_div, page_frame
from hmi.model import tag_or_none
from hmi.session import HmiSession
from hmi.theme import EQUIPMENT_DARK, local_ms, time_formatter, value_html

if TYPE_CHECKING:
    from billing.accounts import ResolvedAccount
    from billing.config import HouseholdConfig

__all__ = ["day_starts", "make_tenant", "tenant_scope"]

log = logging.getLogger(__name__)

DAYS = 30


def tenant_scope(session: HmiSession) -> tuple[list[HouseholdConfig], list[ResolvedAccount]]:
    """Return the (households, accounts) the session's user may see."""
    site = session.services.site
    households = [h for h in site.households() if session.may("tags.read", h.id)]
    accounts: list[ResolvedAccount] = []
    if site.accounts:
        try:
            from billing.accounts import resolve_accounts

            for a in resolve_accounts(site):
                hh = a.config.household
                if session.may("billing.read", a.id) or (hh and session.may("billing.read", hh)):
                    accounts.append(a)
        except ImportError:
            pass
    return households, accounts


def day_starts(now: float, tz: str, days: int) -> list[float]:
    """Return the epoch starts of the last ``days`` local days (today last) plus tomorrow's."""
    zone = ZoneInfo(tz)
    today = datetime.fromtimestamp(now, zone).replace(hour=0, minute=0, second=0, microsecond=0)
    return [(today - timedelta(days=days - 1 - i)).timestamp() for i in range(days + 1)]


def _month_start(now: float, tz: str, back: int = 0) -> float:
    zone = ZoneInfo(tz)
    d = datetime.fromtimestamp(now, zone).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for _ in range(back):
        d = (d - timedelta(days=1)).replace(day=1)
    return d.timestamp()


def make_tenant(session: HmiSession, doc: Document) -> None:
    """Build the tenant page into ``doc``."""
    user = session.user
    if user is None or user.role != "tenant":
        page_frame(
            session, doc, "tenant", denied_body("this page is for tenant accounts"), "My account"
        )
        return
    services = session.services
    db = services.db
    tz = services.site.site.timezone
    households, accounts = tenant_scope(session)
    if not households and not accounts:
        page_frame(
            session,
            doc,
            "tenant",
            denied_body("no household is linked to your login"),
            "My account",
        )
        return
    energy_tags = []
    for h in households:
        energy_tags += [t for t in h.tags if t.endswith("energy_kwh") and t in db]
    for a in accounts:
        energy_tags += [m.energy for m in a.meters if m.energy in db]
    energy_tags = list(dict.fromkeys(t for t in energy_tags if session.may("tags.read", t)))
    live = [
        t for h in households for t in (h.room_tag, h.setpoint_tag, h.valve_tag) if t and t in db
    ]
    account_tags = [
        t
        for a in accounts
        for t in (tag_or_none(db, balance_tag(a.id)), tag_or_none(db, level_tag(a.id)))
        if t
    ]  # the user's own accounts (``tenant_scope``): readable even without ``tags.read``
    live = [t for t in live if session.may("tags.read", t)] + account_tags

    status = html_div("", name="tenant-status", sizing_mode="stretch_width")
    month = html_div(
        '<span class="u">loading consumption…</span>',
        name="tenant-month",
        sizing_mode="stretch_width",
    )
    ledger = html_div("", name="tenant-ledger", sizing_mode="stretch_width")
    bars = ColumnDataSource({"day": [], "kwh": []}, name="tenant-daily")
    fig = figure(
        name="tenant-daily-plot",
        x_axis_type="datetime",
        height=240,
        sizing_mode="stretch_width",
        toolbar_location=None,
        tools="",
        background_fill_color="#F2F2F2",
        border_fill_color=None,
    )
    fig.vbar(x="day", top="kwh", width=0.8 * 86400000, source=bars, color=EQUIPMENT_DARK)
    fig.yaxis.axis_label = "kWh per day"
    fig.xaxis.formatter = time_formatter()

    def render_status() -> None:
        parts = []
        for h in households:
            rows = [f"<h2>{html.escape(h.name or h.id)}</h2><table>"]
            if h.room_tag and h.room_tag in db:
                rows.append(
                    f"<tr><td>room</td><td>{value_html(db.read(h.room_tag), '°C', tag=h.room_tag)}</td></tr>"
                )
            if h.setpoint_tag and h.setpoint_tag in db:
                rows.append(
                    f"<tr><td>setpoint</td><td>{value_html(db.read(h.setpoint_tag), '°C', tag=h.setpoint_tag)}</td></tr>"
                )
            rows.append(f"<tr><td>area</td><td>{h.area_m2:g} m²</td></tr></table>")
            parts.append(
                f'<div class="tile" data-household="{html.escape(h.id)}">{"".join(rows)}</div>'
            )
        for a in accounts:
            bal_tag, lvl_tag = balance_tag(a.id), level_tag(a.id)
            bal = (
                value_html(db.read(bal_tag), "CNY", 2, tag=bal_tag)
                if bal_tag in db
                else '<span class="u">n/a</span>'
            )
            level = Level.of(db.read(lvl_tag).value) if lvl_tag in db else None
            text = "not opened" if level is None else level.info.status
            priority = None if level is None else level.info.priority
            cls = "" if priority is None else f"p{priority}"
            parts.append(
                f'<div class="tile" data-account="{html.escape(a.id)}"><h2>Account {html.escape(a.id)}</h2>'
                f"<table><tr><td>balance</td><td>{bal}</td></tr>"
                f'<tr><td>status</td><td><span class="pill {cls}" data-level="{level}">{html.escape(text)}</span></td></tr>'
                "</table></div>"
            )
        status.text = "".join(parts)

    def load_history() -> None:
        historian = services.historian
        if historian is None or not energy_tags:
            month.text = '<span class="u">no consumption history</span>'
            return
        now = time.time()
        starts = day_starts(now, tz, DAYS)
        this_m, last_m = _month_start(now, tz), _month_start(now, tz, 1)

        def query() -> tuple[list[float], float, float]:
            daily = [0.0] * DAYS
            this_month = last_month = 0.0
            for tag in energy_tags:
                for i in range(DAYS):
                    daily[i] += historian.delta(tag, starts[i], min(starts[i + 1], now))
                this_month += historian.delta(tag, this_m, now)
                last_month += historian.delta(tag, last_m, this_m)
            return daily, this_month, last_month

        def done(res: Any, err: BaseException | None) -> None:
            if err is not None:
                month.text = (
                    f'<span class="result-bad">history unavailable: {html.escape(str(err))}</span>'
                )
                return
            daily, this_month, last_month = res
            # bars centred on local noon of each day
            bars.data = {"day": [local_ms(s, tz) + 43200000 for s in starts[:-1]], "kwh": daily}
            month.text = (
                f'<div class="tile"><table><tr><td>this month</td><td><span class="v" data-this-month="{this_month:.1f}">'
                f'{this_month:,.1f}</span><span class="u">kWh</span></td></tr>'
                f'<tr><td>last month</td><td><span class="v" data-last-month="{last_month:.1f}">'
                f'{last_month:,.1f}</span><span class="u">kWh</span></td></tr></table></div>'
            )

        session.spawn(session.in_thread(query), done)

    def render_ledger() -> None:
        billing = services.billing
        if billing is None or not accounts:
            ledger.text = '<span class="u">bills and top-ups appear here once billing runs</span>'
            return
        rows = []
        for a in accounts:
            try:
                entries = billing.entries(a.id)
            except Exception as exc:
                rows.append(f"<tr><td colspan=3>{html.escape(str(exc))}</td></tr>")
                continue
            for e in list(entries)[-20:][::-1]:
                j = e.to_json()
                rows.append(
                    f"<tr><td>{html.escape(str(j.get('ts', ''))[:10])}</td>"
                    f"<td>{html.escape(str(j.get('kind', '')))}</td>"
                    f"<td>{html.escape(str(j.get('amount', '')))}</td></tr>"
                )
        ledger.text = (
            '<div class="tile"><h2>Bills and top-ups</h2><table>' + "".join(rows) + "</table></div>"
        )

    render_status()
    render_ledger()
    session.subscribe(live, lambda _b: render_status())
    doc.add_next_tick_callback(load_history)
    body = column(
        status, month, fig, ledger, sizing_mode="stretch_width", styles={"overflow-y": "auto"}
    )
    page_frame(session, doc, "tenant", body, "My account")
