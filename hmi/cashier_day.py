"""The cashier's day on the cashier page: totals by method, the day's entries, the closing report.

:class:`DayView`: *My day* reads today's (site zone) top-ups, refunds and reversals of the
logged-in cashier from the ledger (``billing.receipts.cashier_day``) and shows the totals by
method, the number of entries and the sum, with the closing report (xlsx) as a download
carried in the page. Loop-thread only; the ledger is read in a worker thread.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime
from zoneinfo import ZoneInfo

from bokeh.layouts import column, row
from bokeh.models.widgets import Button

from billing.ledger import Ledger
from billing.receipts import METHOD_LABELS, CashierDay, Method, cashier_day, day_xlsx
from hmi.layout import html_div
from hmi.session import HmiSession
from hmi.tenant_labels import money_text
from hmi.theme import AUTO_WIDTH
from hmi.timefmt import site_tz
from i18n import _, ngettext

__all__ = ["DayView", "day_html"]

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def day_html(d: CashierDay, currency: str) -> str:
    """Return the day's totals by method, count and sum as an HTML table."""
    rows = []
    for method, amount in d.totals.items():
        label = _(METHOD_LABELS[Method(method)]) if method != "other" else _("other")
        rows.append(
            f'<tr data-method="{html.escape(method)}" data-total="{amount}"><td>'
            f"{html.escape(label)}</td><td><b>{html.escape(money_text(amount, currency))}</b>"
            "</td></tr>"
        )
    n = len(d.lines)
    title = ngettext("{day}: {n} entry", "{day}: {n} entries", n, day=d.day.isoformat())
    total = money_text(d.total, currency)
    return (
        f'<div class="cashier-day" data-day-total="{d.total}" data-day-count="{len(d.lines)}">'
        f"<b>{html.escape(title)}</b><table>{''.join(rows)}"
        f"<tr><td>{html.escape(_('Total'))}</td><td><b>{html.escape(total)}</b></td></tr>"
        "</table></div>"
    )


class DayView:
    """*My day*: the cashier's totals and the closing report of today."""

    def __init__(self, session: HmiSession, ledger: Ledger, currency: str) -> None:
        self.session = session
        self.ledger = ledger
        self.currency = currency
        self.btn = Button(label=_("My day"), name="cashier-day", styles=AUTO_WIDTH)
        self.btn.on_click(self.show)
        self.div = html_div("", name="cashier-day", sizing_mode="stretch_width")
        self.link = html_div("", name="cashier-day-report")
        self.layout = column(
            row(self.btn, self.link, styles={"gap": "12px", "align-items": "center"}),
            self.div,
            sizing_mode="stretch_width",
        )

    def show(self) -> None:
        """Read today's entries of this cashier and show the totals and the report link."""
        tz = site_tz(self.session)
        today = datetime.now(ZoneInfo(tz)).date()
        cashier = self.session.user_name

        def build() -> tuple[CashierDay, bytes]:
            d = cashier_day(self.ledger, today, tz, cashier)
            return d, day_xlsx(d, tz)

        self.session.spawn(self.session.in_thread(build), self._shown)

    def _shown(self, res: tuple[CashierDay, bytes] | None, err: BaseException | None) -> None:
        if err is not None or res is None:
            self.div.text = f'<span class="result-bad">{html.escape(str(err))}</span>'
            return
        d, xlsx = res
        self.div.text = day_html(d, self.currency)
        data = base64.b64encode(xlsx).decode("ascii")
        name = f"cashier-{d.day.isoformat()}-{d.cashier or 'all'}.xlsx"
        self.link.text = (
            f'<a href="data:{XLSX};base64,{data}" download="{html.escape(name)}" '
            f'data-day-report="1">{html.escape(_("Closing report (xlsx)"))}</a>'
        )
