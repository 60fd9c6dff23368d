"""The cashier page (``/hmi/cashier``): find an account, take a payment, print the receipt.

For the ``cashier`` role, operators and admins (``billing.write``). Search by flat, tenant
name, phone or meter id (``hmi.cashier_search``); the chosen account shows its electricity
balance and level, the household's heat account balance and its last ten ledger entries with
their receipt numbers. The money desk (``hmi.cashier_money``) takes payments, refunds and
reversals, each with a confirm step, through the ``Billing`` facade; each posted entry gets
a numbered receipt (``billing.receipts``) shown as a printable section with its PDF
(``hmi.cashier_receipt``) and its receipt URL, reprintable from the entry list. *My day*
(``hmi.cashier_day``): the cashier's totals by method today and the closing report (xlsx and
PDF); admins also see the whole desk's day. The entry table's columns are as wide as their
text (``FIT_COLUMNS_JS``): on a phone the table scrolls sideways instead of cutting the time.
*Open account…* (``hmi.cashier_accounts``) opens an account, *Close account…*
(``hmi.cashier_close``) closes the chosen one with its final reading and settlement; a closed
account shows why, and its money buttons say so.

Classes: :class:`AccountSearch` (query and matches), :class:`AccountView` (balances and
entries); :func:`make_cashier` puts them together. On a phone (narrow viewport) the two
columns stack.
"""

from __future__ import annotations

import html
from collections.abc import Callable

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, CustomJS, InlineStyleSheet
from bokeh.models.widgets import Button, DataTable, Select, TableColumn, TextInput

from billing.receipts import Receipt, Receipts
from billing.service import Billing
from hmi.cashier_accounts import OpenForm
from hmi.cashier_close import CloseDesk, lock_desk
from hmi.cashier_day import DayView
from hmi.cashier_money import MoneyDesk
from hmi.cashier_receipt import ReceiptView
from hmi.cashier_search import (
    AccountMatch,
    AccountSummary,
    account_summary,
    entry_kind_text,
    find_accounts,
)
from hmi.layout import (
    TABLE_FONT,
    denied_body,
    html_div,
    page_allowed,
    page_frame,
    redraw_on_update,
    select_options,
    sized_inputs,
    text_sized_table,
)
from hmi.meters import level_text
from hmi.session import HmiSession
from hmi.tenant_labels import DEFAULT_CURRENCY, money_text
from hmi.theme import AUTO_WIDTH, SELECT_CSS, WIDGET_FONT
from hmi.timefmt import site_time_text
from i18n import _, ngettext

__all__ = ["AccountSearch", "AccountView", "make_cashier"]

#: Below this viewport width the columns stack (phones).
NARROW_PX = 700

BODY_CSS = f"""
:host(.cashier-body) {{ gap: 12px; overflow-y: auto !important; --bokeh-font-size: {WIDGET_FONT}; }}
:host(.cashier-col) {{ flex: 1 1 0 !important; min-width: 0; }}
@media (max-width: {NARROW_PX}px) {{
  :host(.cashier-body) {{ flex-direction: column !important; }}
  :host(.cashier-col) {{ width: 100% !important; flex: none !important; height: auto !important; }}
}}
"""


#: Columns as wide as their longest text (header or cell); where they fit, the table fills its
#: width; where not (a phone), it keeps those widths and scrolls sideways: no column is cut.
FIT_COLUMNS_JS = f"""
const probe = document.createElement("div");
probe.style.cssText = "position:absolute;visibility:hidden;white-space:nowrap;font-size:{TABLE_FONT}";
document.body.appendChild(probe);
const cols = table.columns.filter((c) => c.visible);
const data = source.data;
const pad = 20;
let total = 0;
const widths = cols.map((c) => {{
  let w = 0;
  for (const text of [c.title, ...Array.from(data[c.field] || [], String)]) {{
    probe.textContent = text;
    w = Math.max(w, probe.getBoundingClientRect().width);
  }}
  w = Math.ceil(w + pad);
  total += w;
  return w;
}});
probe.remove();
const view = Bokeh.index.find_one(table);
const avail = view ? view.el.clientWidth : window.innerWidth;
cols.forEach((c, i) => {{ if (c.width !== widths[i]) c.width = widths[i]; }});
const mode = total <= avail ? "force_fit" : "none";
if (table.autosize_mode !== mode) table.autosize_mode = mode;
"""


class AccountSearch:
    """The search box and the accounts it found; ``on_pick(account or None)`` on a choice."""

    def __init__(self, billing: Billing, on_pick: Callable[[str | None], None]) -> None:
        self.billing = billing
        self.on_pick = on_pick
        self.matches: list[AccountMatch] = []
        self.text = TextInput(
            title=_("Flat, name, phone or meter"),
            placeholder=_("e.g. b1.101, Bakery, 138…"),
            name="cashier-search",
            styles={"width": "clamp(200px, 14vw, 600px)"},
        )
        self.find_btn = Button(label=_("Find"), name="cashier-find", styles=AUTO_WIDTH)
        self.found = Select(
            title=_("Accounts found"),
            options=[],
            name="cashier-match",
            styles={"width": "clamp(240px, 22vw, 900px)"},  # the longest label fits
            stylesheets=[InlineStyleSheet(css=SELECT_CSS)],
        )
        self.count = html_div("", name="cashier-count")
        sized_inputs(self.text, self.found)
        self.text.on_change("value", lambda _a, _o, _n: self.search())
        self.find_btn.on_click(self.search)
        self.found.on_change("value", lambda _a, _o, new: self.on_pick(new or None))
        self.layout = column(
            row(self.text, self.find_btn, styles={"align-items": "flex-end", "gap": "4px"}),
            self.found,
            self.count,
            sizing_mode="stretch_width",
        )

    def search(self) -> None:
        """Find the accounts of the typed query; choose the first."""
        self.matches = find_accounts(self.billing, self.text.value)
        n = len(self.matches)
        found = ngettext("{n} account found", "{n} accounts found", n)
        self.count.text = f'<span class="u" data-found="{n}">{html.escape(found)}</span>'

        self.found.options = select_options((m.account, m.label) for m in self.matches)
        first = self.matches[0].account if self.matches else ""
        if self.found.value == first:
            self.on_pick(first or None)  # same value: no change event, show it afresh
        self.found.value = first


class AccountView:
    """The chosen account: balances, level, heat balance and the last entries."""

    def __init__(self, session: HmiSession, currency: str) -> None:
        self.session = session
        self.currency = currency
        self.head = html_div("", name="cashier-account", sizing_mode="stretch_width")
        self.source = ColumnDataSource(
            {"seq": [], "time": [], "kind": [], "amount": [], "receipt": []},
            name="cashier-entries",
        )
        self.table = DataTable(
            source=self.source,
            height=320,
            sizing_mode="stretch_width",
            index_position=None,
            columns=[
                TableColumn(field="seq", title=_("entry"), width=50),
                TableColumn(field="time", title=_("time"), width=170),
                TableColumn(field="kind", title=_("kind"), width=100),
                TableColumn(field="amount", title=_("amount"), width=110),
                TableColumn(field="receipt", title=_("receipt"), width=60),
            ],
            name="cashier-entry-table",
        )
        redraw_on_update(self.table, self.source)
        text_sized_table(self.table, session.doc)
        fit = CustomJS(args={"table": self.table, "source": self.source}, code=FIT_COLUMNS_JS)
        self.source.js_on_change("data", fit)
        session.doc.js_on_event("document_ready", fit)
        self.layout = column(self.head, self.table, sizing_mode="stretch_width")

    def show(self, s: AccountSummary | None, numbers: dict[int, int]) -> None:
        """Show an account's summary (None: nothing chosen)."""
        if s is None:
            self.head.text = f'<p class="u">{html.escape(_("no account chosen"))}</p>'
            self.source.data = {k: [] for k in self.source.data}
            return
        facts = [
            (_("Account"), s.account),
            (_("Tenant"), s.tenant or "—"),
            (_("Electricity balance"), money_text(s.balance, self.currency)),
            (_("Level"), level_text(s.level, True)),
        ]
        if s.heat_account is not None:
            facts.append((_("Heat balance"), money_text(s.heat_balance, self.currency)))
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td><b>{html.escape(v)}</b></td></tr>" for k, v in facts
        )
        self.head.text = (
            f'<div data-account="{html.escape(s.account)}" data-balance="{s.balance}">'
            f"<table>{rows}</table></div>"
        )
        self.source.data = {
            "seq": [e.seq for e in s.entries],
            "time": [site_time_text(self.session, e.ts) for e in s.entries],
            "kind": [entry_kind_text(e) for e in s.entries],
            "amount": [money_text(e.amount, self.currency) for e in s.entries],
            "receipt": [str(numbers.get(e.seq, "")) for e in s.entries],
        }


class CashierPage:
    """The parts of the page and how a choice or a receipt refreshes them."""

    def __init__(self, session: HmiSession, billing: Billing) -> None:
        self.session = session
        self.billing = billing
        self.receipts = Receipts(billing.ledger)
        self.account: str | None = None
        currency = DEFAULT_CURRENCY
        self.search = AccountSearch(billing, self.pick)
        self.view = AccountView(session, currency)
        self.receipt = ReceiptView(session, currency)
        self.desk = MoneyDesk(session, billing, self.receipts, currency, self.printed)
        self.day = DayView(session, billing.ledger, currency)
        self.opener = OpenForm(session, billing, self.opened)
        self.closer = CloseDesk(session, billing, currency, self.refresh)
        self.btn_open = Button(label=_("Open account…"), name="open-start", styles=AUTO_WIDTH)
        self.btn_open.on_click(self.toggle_open)
        self.view.show(None, {})
        css = [InlineStyleSheet(css=BODY_CSS)]
        left = column(
            self.search.layout,
            row(self.btn_open, self.closer.btn_start, styles={"flex-wrap": "wrap", "gap": "4px"}),
            self.opener.layout,
            self.view.layout,
            sizing_mode="stretch_width",
            css_classes=["cashier-col"],
            stylesheets=css,
        )
        right = column(
            self.desk.layout,
            self.closer.layout,
            self.receipt.layout,
            self.day.layout,
            sizing_mode="stretch_width",
            css_classes=["cashier-col"],
            stylesheets=css,
        )
        self.layout = row(
            left,
            right,
            sizing_mode="stretch_both",
            css_classes=["cashier-body"],
            stylesheets=css,
            name="cashier-body",
        )

    def pick(self, account: str | None) -> None:
        """Show ``account`` (None: nothing) and hand it to the money desk."""
        if account != self.account:
            self.receipt.clear()
        self.account = account
        self.refresh()

    def refresh(self) -> None:
        """Read the chosen account again (after a posting)."""
        self.closer.set_account(self.account)
        if self.account is None:
            self.view.show(None, {})
            self.desk.set_account(None, [])
            lock_desk(self.desk, False)
            return
        s = account_summary(self.billing, self.account)
        numbers = self.receipts.numbers([e.seq for e in s.entries])
        self.view.show(s, numbers)
        self.desk.set_account(self.account, s.entries)
        closed = self.billing.ledger.closed_entry(self.account)
        lock_desk(self.desk, closed is not None)
        if closed is not None:
            why = _(
                "closed on {time}: no payment can be taken",
                time=site_time_text(self.session, closed.ts),
            )
            self.view.head.text = (
                f'<p class="result-bad" data-closed="{html.escape(self.account)}">'
                f"{html.escape(why)}</p>{self.view.head.text}"
            )

    def toggle_open(self) -> None:
        """Show or hide the *Open an account* form."""
        self.opener.toggle()

    def opened(self, account: str) -> None:
        """Choose the account just opened."""
        self.opener.body.visible = False
        self.search.text.value = account  # (searches, and chooses the first match)
        if account in [m.account for m in self.search.matches]:
            self.search.found.value = account
        self.pick(account)
        attrs = f' data-opened="{html.escape(account)}"'
        self.desk.say(_("account {account} is open", account=account), "result-ok", attrs)

    def printed(self, receipt: Receipt) -> None:
        """Show a new or reprinted receipt and the account as it is now."""
        self.receipt.show(receipt)
        self.refresh()


def make_cashier(session: HmiSession, doc: Document) -> None:
    """Build the cashier page into ``doc``."""
    billing = session.services.billing
    if not page_allowed(session, "cashier"):
        page_frame(
            session, doc, "cashier", denied_body(_("not allowed for your role")), _("Cashier")
        )
        return
    if billing is None:
        page_frame(session, doc, "cashier", denied_body(_("billing is not running")), _("Cashier"))
        return
    page = CashierPage(session, billing)
    page_frame(session, doc, "cashier", page.layout, _("Cashier"))
