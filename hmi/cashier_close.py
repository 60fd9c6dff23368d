"""Closing an account from the cashier page: final reading, preview, confirm, closing statement.

:class:`CloseDesk` (*Close account…*) reads each meter's value now from the tag database (good
quality only) as the final reading; an admin may change it, giving a reason (it goes into the
ledger note and the audit). *Preview* computes the final charge and the settlement (refund to
the tenant, or the tenant's debt) with :func:`billing.lifecycle.preview_close`, the closing's
own code run in a transaction that is rolled back; *Confirm* closes at the previewed time with
the previewed readings through ``Billing.close_account`` (the path of ``POST
/api/accounts/{id}/close``: audited, repeat-safe). The closing statement is then shown as a
printable section (*Print statement*), with the account's statement up to the closing as a PDF
(``billing.account_statement``, a data-URL download).

:func:`lock_desk` keeps the money desk's buttons off for a closed account and says why on them.
Loop-thread only; the ledger work runs through ``session.spawn`` / ``session.in_thread``.
"""

from __future__ import annotations

import base64
import html
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from bokeh.layouts import column, row
from bokeh.models import CustomJS
from bokeh.models.widgets import Button, TextInput

from billing.account_statement import account_statement, statement_pdf
from billing.lifecycle import Closing, preview_close
from billing.service import Billing
from hmi.cashier_money import MoneyDesk
from hmi.cashier_receipt import _PRINT_JS
from hmi.layout import html_div, sized_inputs
from hmi.session import HmiSession
from hmi.tenant_labels import money_text
from hmi.theme import AUTO_WIDTH
from hmi.timefmt import site_time_text
from i18n import _, pick
from tags.model import Quality

__all__ = ["CloseDesk", "PendingClose", "lock_desk", "statement_html"]

_WRAP = {"flex-wrap": "wrap", "gap": "4px"}


@dataclass(frozen=True, slots=True)
class PendingClose:
    """What *Confirm* closes: the account at ``at`` with ``readings`` (kWh by energy tag)."""

    account: str
    at: float
    readings: dict[str, float]
    reason: str


def lock_desk(desk: MoneyDesk, closed: bool) -> None:
    """Turn the money buttons off for a closed account, their labels saying why (else restore)."""
    labels = {
        desk.btn_pay: (_("Pay"), _("Pay: account closed")),
        desk.btn_refund: (_("Refund"), _("Refund: account closed")),
        desk.btn_reverse: (_("Reverse entry"), _("Reverse: account closed")),
    }
    for button, (normal, shut) in labels.items():
        button.label = shut if closed else normal
        if closed:
            button.disabled = True


def statement_html(c: Closing, session: HmiSession, currency: str, tenant: str) -> str:
    """Return the closing statement (or its preview) as a printable HTML section."""
    charge = -sum((e.amount for e in c.charges), Decimal("0.00"))
    if c.settlement == "refund":
        settle = _("refund to the tenant: {amount}", amount=money_text(c.amount, currency))
    elif c.settlement == "debt":
        settle = _("debt of the tenant: {amount}", amount=money_text(c.amount, currency))
    else:
        settle = _("nothing to settle")
    facts = [
        (_("Account"), c.account),
        (_("Tenant"), tenant or "—"),
        (_("Closed at"), site_time_text(session, c.at)),
        *[(_("Final reading {meter}", meter=m), f"{v:g} kWh") for m, v in c.readings.items()],
        (_("Final charge"), money_text(charge, currency)),
        (_("Balance at closing"), money_text(c.balance, currency)),
        (_("Settlement"), settle),
        (_("Balance after"), money_text(Decimal("0.00"), currency)),
    ]
    if c.entry.user:
        facts.append((_("Closed by"), c.entry.user))
    if c.entry.note:
        facts.append((_("Note"), c.entry.note))
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td><b>{html.escape(v)}</b></td></tr>" for k, v in facts
    )
    title = html.escape(_("Closing statement"))
    return (
        f'<div data-closing-statement="{html.escape(c.account)}" data-settlement="{c.settlement}" '
        f'data-amount="{c.amount}" data-charge="{charge}"><h3>{title}</h3><table>{rows}</table></div>'
    )


class CloseDesk:
    """*Close account…*: final readings, the preview and the closing; ``on_closed()`` after it."""

    def __init__(
        self,
        session: HmiSession,
        billing: Billing,
        currency: str,
        on_closed: Callable[[], None],
    ) -> None:
        self.session = session
        self.billing = billing
        self.currency = currency
        self.on_closed = on_closed
        self.account: str | None = None
        self.live: dict[str, float] = {}
        self.pending: PendingClose | None = None
        self.admin = session.may("users.manage")
        self.btn_start = Button(label=_("Close account…"), name="close-start", styles=AUTO_WIDTH)
        self.btn_start.on_click(self.start)
        self.readings = column(html_div(""), sizing_mode="stretch_width", name="close-readings")
        self.inputs: dict[str, TextInput] = {}
        self.reason = TextInput(
            title=_("Reason (a changed reading needs one)"), name="close-reason", visible=self.admin
        )
        sized_inputs(self.reason)
        self.btn_preview = Button(label=_("Preview"), name="close-preview", styles=AUTO_WIDTH)
        self.btn_preview.on_click(self.preview)
        self.btn_confirm = Button(
            label=_("Confirm closing"),
            name="close-confirm",
            styles=AUTO_WIDTH,
            button_type="danger",
        )
        self.btn_confirm.on_click(self.confirm)
        self.btn_cancel = Button(label=_("Cancel"), name="close-cancel", styles=AUTO_WIDTH)
        self.btn_cancel.on_click(self.cancel)
        self.note = html_div("", name="close-note", sizing_mode="stretch_width")
        self.statement = html_div("", name="close-statement", sizing_mode="stretch_width")
        self.btn_print = Button(
            label=_("Print statement"), name="close-print", styles=AUTO_WIDTH, visible=False
        )
        self.pdf = html_div("", name="close-pdf")
        self.btn_print.js_on_click(
            CustomJS(args={"div": self.statement, "title": _("Closing statement")}, code=_PRINT_JS)
        )
        self.panel = column(
            self.readings,
            self.reason,
            row(self.btn_preview, sizing_mode="stretch_width", styles=_WRAP),
            self.note,
            row(self.btn_confirm, self.btn_cancel, sizing_mode="stretch_width", styles=_WRAP),
            sizing_mode="stretch_width",
            visible=False,
            name="close-panel",
        )
        self.body = column(
            self.panel,
            self.statement,
            row(self.btn_print, self.pdf, styles={"gap": "12px", "align-items": "center"}),
            sizing_mode="stretch_width",
            name="close-desk",
        )
        # Mounted on first use: its hidden buttons stay out of the page until then.
        self.layout = column(
            html_div(""), sizing_mode="stretch_width", name="close-slot", visible=False
        )
        self._confirming(False)

    def _confirming(self, on: bool) -> None:
        self.btn_confirm.visible = self.btn_cancel.visible = on

    def say(self, text: str, cls: str = "u", attrs: str = "") -> None:
        """Show one line in the note."""
        self.note.text = f'<p class="{cls}"{attrs}>{html.escape(text)}</p>'

    # ------------------------------------------------------------------ state
    def set_account(self, account: str | None) -> None:
        """Take the chosen account (None: nothing); a new one hides the panel and statement."""
        if account != self.account:
            self.pending = None
            self.panel.visible = False
            self.statement.text = self.note.text = ""
            self.btn_print.visible = self.layout.visible = False
            self.pdf.text = ""
        self.account = account
        ledger = self.billing.ledger
        opened = account is not None and ledger.is_open(account)
        self.btn_start.disabled = not (opened and self.session.may("billing.write", account))

    def _live(self, account: str) -> dict[str, float]:
        """Return each meter's value now (good quality only): the final reading to propose."""
        db = self.session.services.db
        out: dict[str, float] = {}
        for m in self.billing.account_config(account).meters:
            if m.energy in db:
                tv = db.read(m.energy)
                if tv.quality is Quality.GOOD and isinstance(tv.value, int | float):
                    out[m.energy] = float(tv.value)
        return out

    def start(self) -> None:
        """Show the panel with the meters' values now, then the preview."""
        if self.account is None:
            return
        self.live = self._live(self.account)
        self.inputs = {}
        for m in self.billing.account_config(self.account).meters:
            value = self.live.get(m.energy)
            box = TextInput(
                title=_("Final reading {meter} (kWh)", meter=m.energy),
                value="" if value is None else f"{value:g}",
                placeholder=_("no live value: type the reading"),
                disabled=not self.admin and value is not None,
                name=f"close-reading-{m.energy}",
            )
            sized_inputs(box)
            self.inputs[m.energy] = box
        self.readings.children = list(self.inputs.values())
        if self.body not in self.layout.children:
            self.layout.children = [self.body]
        self.panel.visible = self.layout.visible = True
        self.statement.text = ""
        self.btn_print.visible = False
        self.preview()

    # ------------------------------------------------------------------ preview
    def _given(self) -> tuple[dict[str, float], bool] | None:
        """Return the typed readings and whether one differs from the meter's value now."""
        out: dict[str, float] = {}
        changed = False
        for tag, box in self.inputs.items():
            text = box.value.strip()
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or value < 0:
                self.say(
                    _("{field}: not a meter reading", field=box.title),
                    "result-bad",
                    f' data-field="{html.escape(tag)}"',
                )
                return None
            out[tag] = value
            changed |= tag not in self.live or abs(self.live[tag] - value) > 1e-9
        return out, changed

    def preview(self) -> None:
        """Compute the final charge and the settlement (nothing written)."""
        self.pending = None
        self._confirming(False)
        given = self._given()
        if given is None or self.account is None:
            return
        readings, changed = given
        reason = self.reason.value.strip()
        if changed and self.admin and not reason:
            self.say(
                _("Reason: give one for a changed reading"), "result-bad", ' data-field="reason"'
            )
            return
        acct = self.billing.account_config(self.account)
        at = time.time()
        b = self.billing
        pending = PendingClose(self.account, at, readings, reason)
        self.say(_("computing…"))
        self.session.spawn(
            self.session.in_thread(
                lambda: preview_close(b.site, b.ledger, acct, at=at, readings=readings)
            ),
            lambda c, e: self._previewed(pending, c, e),
        )

    def _tenant(self) -> str:
        return self.billing.account_config(self.account).config.tenant if self.account else ""

    def _previewed(self, p: PendingClose, c: Closing | None, err: BaseException | None) -> None:
        if err is not None or c is None:
            self.say(_("refused: {error}", error=str(err)), "result-bad", ' data-refused="1"')
            return
        if p.account != self.account:
            return  # another account was chosen meanwhile
        self.pending = p
        ask = html.escape(
            _("Close account {account}? Then no payment can be taken.", account=p.account)
        )
        self.note.text = (
            f'<div class="confirm" data-confirm="close" data-account="{html.escape(p.account)}">'
            f"<b>{ask}</b>{statement_html(c, self.session, self.currency, self._tenant())}</div>"
        )
        self._confirming(True)

    def cancel(self) -> None:
        """Drop the question and the panel."""
        self.pending = None
        self._confirming(False)
        self.panel.visible = self.layout.visible = False
        self.note.text = ""

    # ------------------------------------------------------------------ closing
    def confirm(self) -> None:
        """Close the account as previewed, once."""
        p, self.pending = self.pending, None
        self._confirming(False)
        if p is None:
            return  # a second click: already on its way
        s = self.session
        self.say(_("closing…"))
        self.session.spawn(
            self.billing.close_account(
                p.account,
                at=p.at,
                readings=p.readings,
                user=s.actor,
                source=s.source,
                note=p.reason,
                offload=s.in_thread,
            ),
            self._closed,
        )

    def _closed(self, c: Closing | None, err: BaseException | None) -> None:
        if err is not None or c is None:
            self.say(_("refused: {error}", error=str(err)), "result-bad", ' data-refused="1"')
            return
        self.panel.visible = False
        self.note.text = ""
        self.statement.text = statement_html(c, self.session, self.currency, self._tenant())
        self.btn_print.visible = True
        self.pdf.text = ""
        self.on_closed()
        self.session.spawn(self.session.in_thread(self._pdf, c), self._pdf_made)

    def _pdf(self, c: Closing) -> tuple[str, bytes]:
        """Return the account's statement up to its closing as a PDF (blocking)."""
        first = min(e.ts for e in self.billing.ledger.entries(c.account))
        s = account_statement(self.billing.ledger, c.account, first, c.at + 1.0)
        period = f"{site_time_text(self.session, first)} – {site_time_text(self.session, c.at)}"
        title = pick(self.session.services.site.site.name) or "SCADA"
        title = f"{title}: {_('Closing statement')} {c.account}"
        pdf = statement_pdf(
            s, title=title, period=period, tz=self.billing.tz, currency=self.currency
        )
        return c.account, pdf

    def _pdf_made(self, made: tuple[str, bytes] | None, err: BaseException | None) -> None:
        if err is not None or made is None:
            self.pdf.text = html.escape(_("refused: {error}", error=str(err)))
            return
        account, pdf = made
        data = base64.b64encode(pdf).decode("ascii")
        self.pdf.text = (
            f'<a href="data:application/pdf;base64,{data}" download="closing-{account}.pdf" '
            f'data-closing-pdf="{html.escape(account)}">{html.escape(_("Download PDF"))}</a>'
        )
