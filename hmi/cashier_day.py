"""The cashier's day on the cashier page: totals by method, the day's entries, the closing report.

:class:`DayView`: *My day* reads today's (site zone) top-ups, refunds and reversals of the
logged-in cashier from the ledger (``billing.receipts.cashier_day``) and shows the totals by
method, the number of entries and the sum, with the closing report as xlsx and as PDF, both
downloads carried in the page. *Desk's day* (admins only) does the same for every cashier of
the desk (and the entries posted elsewhere, e.g. by a payment provider). Loop-thread only; the
ledger is read and the reports are made in a worker thread.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime
from zoneinfo import ZoneInfo

from bokeh.layouts import column, row
from bokeh.models.widgets import Button

from billing.ledger import Ledger
from billing.receipts import CashierDay, cashier_day, day_pdf, day_xlsx, method_label
from hmi.layout import html_div
from hmi.session import HmiSession
from hmi.tenant_labels import money_text
from hmi.theme import AUTO_WIDTH
from hmi.timefmt import site_tz
from i18n import _, ngettext, pick

__all__ = ["DayView", "day_html"]

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def day_html(d: CashierDay, currency: str) -> str:
    """Return the day's totals by method, count and sum as an HTML table."""
    rows = []
    for method, amount in d.totals.items():
        rows.append(
            f'<tr data-method="{html.escape(method)}" data-total="{amount}"><td>'
            f"{html.escape(method_label(method))}</td><td><b>"
            f"{html.escape(money_text(amount, currency))}</b></td></tr>"
        )
    n = len(d.lines)
    title = ngettext("{day}: {n} entry", "{day}: {n} entries", n, day=d.day.isoformat())
    who = d.cashier or _("all cashiers")
    total = money_text(d.total, currency)
    return (
        f'<div class="cashier-day" data-day-total="{d.total}" data-day-count="{len(d.lines)}" '
        f'data-day-cashier="{html.escape(d.cashier or "*")}">'
        f"<b>{html.escape(title)}</b> <span class='u'>{html.escape(who)}</span>"
        f"<table>{''.join(rows)}"
        f"<tr><td>{html.escape(_('Total'))}</td><td><b>{html.escape(total)}</b></td></tr>"
        "</table></div>"
    )


def _link(mime: str, data: bytes, name: str, key: str, label: str) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    return (
        f'<a href="data:{mime};base64,{b64}" download="{html.escape(name)}" '
        f'data-day-report="{key}">{html.escape(label)}</a>'
    )


class DayView:
    """*My day* (and for admins *Desk's day*): totals and the closing report of today."""

    def __init__(self, session: HmiSession, ledger: Ledger, currency: str) -> None:
        self.session = session
        self.ledger = ledger
        self.currency = currency
        self.title = pick(session.services.site.site.name) or "SCADA"
        self.btn = Button(label=_("My day"), name="cashier-day", styles=AUTO_WIDTH)
        self.btn.on_click(lambda: self.show(mine=True))
        self.desk_btn = Button(label=_("Desk's day"), name="cashier-desk-day", styles=AUTO_WIDTH)
        self.desk_btn.on_click(lambda: self.show(mine=False))
        user = session.user
        self.desk_btn.visible = user is not None and user.role == "admin"
        self.div = html_div("", name="cashier-day", sizing_mode="stretch_width")
        self.link = html_div("", name="cashier-day-report")
        wrap = {"gap": "12px", "align-items": "center", "flex-wrap": "wrap"}
        self.layout = column(
            row(self.btn, self.desk_btn, self.link, styles=wrap),
            self.div,
            sizing_mode="stretch_width",
        )

    def show(self, mine: bool = True) -> None:
        """Read today's entries (this cashier's, or the desk's) and show totals and reports."""
        if not mine and not self.desk_btn.visible:
            return  # the desk's day is for admins
        tz = site_tz(self.session)
        today = datetime.now(ZoneInfo(tz)).date()
        cashier = self.session.user_name if mine else None

        def build() -> tuple[CashierDay, bytes, bytes]:
            d = cashier_day(self.ledger, today, tz, cashier)
            pdf = day_pdf(d, tz, title=self.title, currency=self.currency)
            return d, day_xlsx(d, tz), pdf

        self.session.spawn(self.session.in_thread(build), self._shown)

    def _shown(
        self, res: tuple[CashierDay, bytes, bytes] | None, err: BaseException | None
    ) -> None:
        if err is not None or res is None:
            self.div.text = f'<span class="result-bad">{html.escape(str(err))}</span>'
            return
        d, xlsx, pdf = res
        self.div.text = day_html(d, self.currency)
        stem = f"cashier-{d.day.isoformat()}-{d.cashier or 'all'}"
        self.link.text = (
            _link(XLSX, xlsx, f"{stem}.xlsx", "xlsx", _("Closing report (xlsx)"))
            + " "
            + _link("application/pdf", pdf, f"{stem}.pdf", "pdf", _("Closing report (PDF)"))
        )
