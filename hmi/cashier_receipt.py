"""The cashier page's receipt: a printable section, a print button and the PDF to download.

:class:`ReceiptView` shows one :class:`~billing.receipts.Receipt` (number, time in the site's
zone, account, operation, method, amount, balance before and after, cashier) as HTML with
``data-receipt-number`` / ``data-before`` / ``data-after`` for tests and tools; *Print* opens
the receipt alone in a window and prints it; the PDF (``billing.receipts.receipt_pdf``) is a
download link carried in the page (a data URL); *Receipt page* opens the receipt URL
(``/receipts/<number>``, ``scada.server.handlers.receipts``), which reprints it any time later.
"""

from __future__ import annotations

import base64
import html

from bokeh.layouts import column, row
from bokeh.models import CustomJS
from bokeh.models.widgets import Button

from billing.receipts import Receipt, receipt_html, receipt_pdf
from hmi.layout import html_div
from hmi.session import HmiSession
from hmi.theme import AUTO_WIDTH
from hmi.timefmt import site_time_text
from i18n import _, pick

__all__ = ["ReceiptView", "receipt_html"]

#: The receipt on its own print page (the window *Print* opens).
_PRINT_JS = """
const w = window.open("", "_blank");
if (w) {
  w.document.write("<!doctype html><html><head><meta charset='utf-8'><title>" + title +
    "</title><style>body{font-family:sans-serif} td{padding:2px 12px 2px 0}</style></head><body>" +
    div.text + "</body></html>");
  w.document.close();
  w.focus();
  w.print();
}
"""


class ReceiptView:
    """The ``cashier-receipt`` section with *Print* and the PDF link (hidden until a receipt)."""

    def __init__(self, session: HmiSession, currency: str) -> None:
        self.session = session
        self.currency = currency
        self.title = pick(session.services.site.site.name) or "SCADA"
        self.div = html_div("", name="cashier-receipt", sizing_mode="stretch_width")
        self.pdf = html_div("", name="cashier-receipt-pdf")
        self.print_btn = Button(
            label=_("Print receipt"), name="cashier-print", styles=AUTO_WIDTH, visible=False
        )
        self.print_btn.js_on_click(
            CustomJS(args={"div": self.div, "title": _("Receipt")}, code=_PRINT_JS)
        )
        self.layout = column(
            self.div,
            row(self.print_btn, self.pdf, styles={"gap": "12px", "align-items": "center"}),
            sizing_mode="stretch_width",
            name="cashier-receipts",
        )

    def show(self, r: Receipt) -> None:
        """Show receipt ``r`` (a new one or a reprint) with its PDF."""
        when = site_time_text(self.session, r.ts)
        self.div.text = receipt_html(r, self.title, when, self.currency)
        pdf = receipt_pdf(r, title=self.title, time_text=when, currency=self.currency)
        data = base64.b64encode(pdf).decode("ascii")
        name = f"receipt-{r.number}.pdf"
        self.pdf.text = (
            f'<a href="data:application/pdf;base64,{data}" download="{name}" '
            f'data-receipt-pdf="{r.number}">{html.escape(_("Download PDF"))}</a> '
            f'<a href="/receipts/{r.number}" target="_blank" data-receipt-url="{r.number}">'
            f"{html.escape(_('Receipt'))}</a>"
        )
        self.print_btn.visible = True

    def clear(self) -> None:
        """Hide the receipt (another account was chosen)."""
        self.div.text = self.pdf.text = ""
        self.print_btn.visible = False
