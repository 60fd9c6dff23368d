"""The receipt URL: ``GET /receipts/{number}`` a printable receipt page, ``?format=pdf`` its PDF;
and an account's monthly statement, ``GET /api/accounts/{id}/statement?month=YYYY-MM`` (PDF).

A reprint by number for the cash desk (``billing.read``: cashiers, operators, admins) and the
tenant's own receipts (their linked accounts and households only): a receipt of an account the
user may not read answers 404 exactly as a number that does not exist, so a tenant cannot learn
which numbers are others'. The receipt is read from the ledger (``billing.receipts``): the same
number, amounts and balances however often it is printed. The statement
(``billing.account_statement``) is scoped the same way (404 for an account the user may not
read). Loop-thread only; the ledger reads and the PDFs run in a worker thread.
"""

from __future__ import annotations

import contextlib
import html

from alarms.text import local_time_text
from billing.errors import UnknownAccount
from billing.receipts import Receipt, Receipts, UnknownReceipt, receipt_html, receipt_pdf
from billing.statements import CURRENCY
from i18n import _, pick
from scada.server.handlers.base import ApiError, ApiHandler
from scada.services.auth import Action

__all__ = ["MONTH", "RECEIPT_FORMATS", "AccountStatementPdf", "ReceiptPage", "receipt_url"]

#: ``month`` of a statement: ``YYYY-MM``, years 1900 to 2199.
MONTH = r"^(19|20|21)[0-9]{2}-(0[1-9]|1[0-2])$"

#: ``format`` of the receipt URL: the printable page or the PDF.
RECEIPT_FORMATS = ("html", "pdf")

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
td {{ padding: 2px 14px 2px 0; vertical-align: top; }}
.actions {{ margin-top: 1em; display: flex; gap: 1em; flex-wrap: wrap; }}
@media print {{ .actions {{ display: none; }} }}
</style></head><body>
{receipt}
<div class="actions"><button type="button" onclick="window.print()">{print}</button>
<a href="{pdf}" data-receipt-pdf="{number}">{pdf_label}</a></div>
</body></html>
"""


def receipt_url(number: int, fmt: str = "html") -> str:
    """Return the site-relative URL of receipt ``number`` (``fmt``: html or pdf)."""
    return f"/receipts/{number}" + ("?format=pdf" if fmt == "pdf" else "")


class _Scoped(ApiHandler):
    def _visible(self, account: str) -> bool:
        """True if the user may read ``account`` (a tenant: a linked account or household)."""
        billing = self.ctx.services.billing
        scope: tuple[str, ...] = (account,)
        if billing is not None:
            # closed (no longer configured): its own id only
            with contextlib.suppress(KeyError, UnknownAccount):
                scope = tuple(t for t in billing.account_scope(account) if t)
        return self.may(Action.BILLING_READ, scope)


class ReceiptPage(_Scoped):
    """``GET /receipts/{number}``: one receipt, printable or as PDF (module docstring)."""

    async def get(self, number: str) -> None:
        billing = self.ctx.services.billing
        if billing is None:
            raise ApiError(503, "billing is not running")
        if not number.isdigit() or len(number) > 12:
            raise ApiError(404, f"unknown receipt {number!r}")
        fmt = self.arg("format") or "html"
        site = self.ctx.services.plant.site.site
        title = pick(site.name) or "SCADA"

        def read() -> Receipt:
            return Receipts(billing.ledger).get(int(number))

        try:
            receipt = await self.ctx.run_blocking(read)
        except UnknownReceipt:
            raise ApiError(404, f"unknown receipt {number}") from None
        if not self._visible(receipt.account):
            raise ApiError(404, f"unknown receipt {number}")
        when = local_time_text(receipt.ts, site.timezone)
        self.set_header("Cache-Control", "no-store")
        if fmt == "pdf":
            pdf = await self.ctx.run_blocking(
                lambda: receipt_pdf(receipt, title=title, time_text=when, currency=CURRENCY)
            )
            self.set_header("Content-Type", "application/pdf")
            name = f"receipt-{receipt.number}.pdf"
            self.set_header("Content-Disposition", f'inline; filename="{name}"')
            self.finish(pdf)
            return
        page = _PAGE.format(
            title=html.escape(_("Receipt {number}", number=receipt.number)),
            receipt=receipt_html(receipt, title, when, CURRENCY),
            print=html.escape(_("Print")),
            pdf=html.escape(receipt_url(receipt.number, "pdf")),
            number=receipt.number,
            pdf_label=html.escape(_("Download PDF")),
        )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(page)


class AccountStatementPdf(_Scoped):
    """``GET /api/accounts/{account_id}/statement?month=YYYY-MM``: the month's statement (PDF)."""

    async def get(self, account_id: str) -> None:
        from billing.account_statement import account_statement, statement_pdf
        from billing.periods import parse_period

        billing = self.ctx.services.billing
        if billing is None:
            raise ApiError(503, "billing is not running")
        known = billing.ledger.query(
            "SELECT 1 FROM entries WHERE account = ? LIMIT 1", (account_id,)
        )
        if not known or not self._visible(account_id):
            raise ApiError(404, f"unknown account {account_id!r}")
        month = self.arg("month") or ""
        try:  # the route checked the form, YYYY-MM; the calendar checks the rest (year 0)
            period = parse_period(month, billing.tz)
        except ValueError as exc:
            raise ApiError(400, f"month: {exc}") from None
        site = self.ctx.services.plant.site.site
        title = pick(site.name) or "SCADA"

        def build() -> bytes:
            s = account_statement(billing.ledger, account_id, period.start, period.end)
            return statement_pdf(s, title=title, period=month, tz=billing.tz, currency=CURRENCY)

        pdf = await self.ctx.run_blocking(build)
        self.set_header("Content-Type", "application/pdf")
        self.set_header("Cache-Control", "no-store")
        name = f"statement-{account_id}-{month}.pdf"
        self.set_header("Content-Disposition", f'inline; filename="{name}"')
        self.finish(pdf)
