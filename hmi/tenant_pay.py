"""The tenant's payments: the *Pay* action, their receipts and their statements.

:class:`PayPanel` shows, per account of the tenant, a *Pay* link that starts the payment
provider's flow: on a demo site (a provider with ``demo: true``) the simulated provider page
``/demo-pay/<provider>?account=<id>`` (``scada.server.handlers.demo_pay``), where the tenant
confirms an amount and which calls the site's real, signed payment callback; the top-up then
shows on this page (the balance tag moves). Without such a provider the panel says that
payments are taken at the cash desk. Below: the tenant's receipts, newest first (cash desk and
online), each with its printable page and PDF (``/receipts/<number>``, which refuses other
accounts' receipts), and their statements of last month and this month so far: each account's
(``/api/accounts/<id>/statement``, PDF) and, for households whose building has a heat tariff,
the heat statement (``/api/billing/heat/statement/<household>.pdf``); the endpoints check the
account and household again. Receipts are read in a worker thread. Loop-thread only.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from billing.receipts import Receipt, Receipts, method_label
from hmi.layout import html_div
from hmi.session import HmiSession
from hmi.tenant_labels import money_text
from hmi.tenant_usage import month_start
from hmi.timefmt import localised_time_text
from i18n import _

if TYPE_CHECKING:
    from billing.accounts import ResolvedAccount
    from billing.config import HouseholdConfig

__all__ = ["PayPanel", "demo_provider", "pay_url", "statement_links"]

log = logging.getLogger(__name__)

#: Receipts listed (the newest).
RECEIPT_ROWS = 20


def demo_provider(session: HmiSession) -> str | None:
    """Return the id of the site's demo payment provider, or None."""
    for p in session.services.site.payments.providers:
        if p.demo:
            return str(p.id)
    return None


def pay_url(provider: str, account: str) -> str:
    """Return the URL of the provider flow of ``account`` (the demo provider's page)."""
    return f"/demo-pay/{provider}?" + urlencode({"account": account})


def statement_links(
    accounts: Sequence[tuple[str, str]], heat_households: Sequence[str], tz: str, now: float
) -> list[tuple[str, str]]:
    """Return ``(label, url)`` of the statements of last month and this month.

    ``accounts``: ``(id, title)`` of the tenant's accounts; ``heat_households``: their
    households that have a heat fee.
    """
    zone = ZoneInfo(tz)
    starts = [month_start(now, tz, back) for back in (1, 0)]
    ends = [starts[1], month_start(now + 32 * 86400, tz)]
    out = []
    for start, end in zip(starts, ends, strict=True):
        first = datetime.fromtimestamp(start, zone)
        month = first.strftime("%Y-%m")
        for account, title in accounts:
            out.append(
                (
                    _("{account}: statement {month}", account=title, month=month),
                    f"/api/accounts/{account}/statement?" + urlencode({"month": month}),
                )
            )
        query = urlencode(
            {
                "from": first.date().isoformat(),
                "to": datetime.fromtimestamp(end, zone).date().isoformat(),
            }
        )
        out += [
            (
                _("Heat statement {month}", month=month),
                f"/api/billing/heat/statement/{household}.pdf?{query}",
            )
            for household in heat_households
        ]
    return out


class PayPanel:
    """*Pay* per account, the tenant's receipts and statements (module docstring)."""

    def __init__(
        self,
        session: HmiSession,
        accounts: Sequence[ResolvedAccount],
        heated: Sequence[HouseholdConfig],
        titles: dict[str, str],
        currency: str | None,
    ) -> None:
        self.session = session
        self.accounts = list(accounts)
        self.heated = list(heated)
        self.titles = titles
        self.currency = currency
        self.provider = demo_provider(session)
        self.receipts: list[Receipt] = []
        self.error = ""
        self.pay = html_div("", name="tenant-pay", sizing_mode="stretch_width")
        self.div = html_div("", name="tenant-receipts", sizing_mode="stretch_width")
        self.render_pay()
        self.render()

    def render_pay(self) -> None:
        """The *Pay* tile: a link per account, or where to pay."""
        title = html.escape(_("Pay"))
        if not self.accounts:
            self.pay.text = ""
            return
        if self.provider is None:
            note = html.escape(_("pay at the cash desk or by bank transfer"))
            self.pay.text = f'<div class="tile"><h2>{title}</h2><p class="u">{note}</p></div>'
            return
        links = "".join(
            f'<p><a class="pay" href="{html.escape(pay_url(self.provider, a.id))}" '
            f'data-pay="{html.escape(a.id)}">'
            f"{html.escape(_('Pay into {account}', account=self.titles.get(a.id, a.id)))}</a></p>"
            for a in self.accounts
        )
        note = html.escape(_("online payment: the top-up shows here once the provider confirms"))
        self.pay.text = f'<div class="tile"><h2>{title}</h2>{links}<p class="u">{note}</p></div>'

    def load(self) -> None:
        """Read the tenant's receipts in a worker thread, then redraw."""
        billing = self.session.services.billing
        if billing is None or not self.accounts:
            return
        ids = [a.id for a in self.accounts]

        def read() -> list[Receipt]:
            return Receipts(billing.ledger).of_accounts(ids, RECEIPT_ROWS)

        self.session.spawn(self.session.in_thread(read), self._loaded)

    def _loaded(self, receipts: Any, err: BaseException | None) -> None:
        if err is not None:
            log.warning("tenant receipts: %s", err)
            self.error = _("the receipts cannot be read now")
        else:
            self.error = ""
            self.receipts = list(receipts)
        self.render()

    def render(self) -> None:
        """Draw the receipts and statements tile."""
        tz = self.session.services.site.site.timezone
        rows = []
        for r in self.receipts:
            page = f"/receipts/{r.number}"
            rows.append(
                f'<tr data-receipt="{r.number}"><td>{r.number}</td>'
                f"<td>{html.escape(localised_time_text(r.ts, tz))}</td>"
                f"<td>{html.escape(money_text(r.amount, self.currency))}</td>"
                f"<td>{html.escape(method_label(r.method.value))}</td>"
                f'<td><a href="{page}" target="_blank">{html.escape(_("print"))}</a> '
                f'<a href="{page}?format=pdf" target="_blank">{html.escape(_("Download PDF"))}</a></td></tr>'
            )
        title = html.escape(_("Receipts"))
        if self.error:
            body = f'<p class="u">{html.escape(self.error)}</p>'
        elif rows:
            body = f"<table>{''.join(rows)}</table>"
        else:
            body = f'<p class="u">{html.escape(_("no receipts yet"))}</p>'
        billing = self.session.services.billing
        priced = (
            set() if billing is None else {h.household.id for h in billing.heat.accounts.values()}
        )
        statements = statement_links(
            [(a.id, self.titles.get(a.id, a.id)) for a in self.accounts],
            [h.id for h in self.heated if h.id in priced],
            tz,
            time.time(),
        )
        links = "".join(
            f'<li><a href="{html.escape(url)}" data-statement="1">{html.escape(label)}</a></li>'
            for label, url in statements
        )
        st_title = html.escape(_("Statements"))
        st = f"<h2>{st_title}</h2><ul>{links}</ul>" if links else ""
        self.div.text = f'<div class="tile"><h2>{title}</h2>{body}{st}</div>'
