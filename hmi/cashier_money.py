"""The cashier's money desk: payment, refund, reversal, each with a confirm step; reprints.

:class:`MoneyDesk` asks first (*Pay* / *Refund* / *Reverse*: a confirm box naming the account,
amount, method and the balance after), then *Confirm* posts once through the ``Billing``
facade, which audits it. A payment or refund carries an idempotency key made when the confirm
box is shown, so a double click (or a retried request) posts one entry; the confirm box is
cleared on the first click anyway. The method and the payment reference (a bank transfer's or
card slip's number, optional) go into the ledger note (``method=card; slip 42``) and the receipt
(``billing.receipts``), which is issued for the entry and shown. *Reprint* shows the
stored receipt of the chosen entry again, with the same number. Loop-thread only; billing calls
run through ``session.spawn``.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from bokeh.layouts import column, row
from bokeh.models import InlineStyleSheet
from bokeh.models.widgets import Button, Select, TextInput

from billing.errors import BillingError
from billing.ledger import REVERSIBLE, Entry
from billing.money import parse_amount
from billing.receipts import (
    MAX_REFERENCE_CHARS,
    METHOD_LABELS,
    Method,
    Receipt,
    Receipts,
    method_note,
)
from billing.service import Billing
from hmi.cashier_search import entry_kind_text
from hmi.layout import html_div, select_options, sized_inputs
from hmi.session import HmiSession
from hmi.tenant_labels import money_text
from hmi.theme import AUTO_WIDTH, SELECT_CSS
from hmi.timefmt import site_time_text
from i18n import _

__all__ = ["MoneyDesk", "Pending"]

_WRAP = {"flex-wrap": "wrap", "gap": "4px"}


@dataclass(frozen=True, slots=True)
class Pending:
    """What *Confirm* will post: ``op`` is ``topup``, ``refund`` or ``reverse``."""

    op: str
    account: str
    amount: Decimal  # signed change of the balance
    method: Method
    key: str  # the idempotency key of this confirm step
    seq: int | None = None  # the entry a reversal reverses
    reference: str = ""  # the transfer's or slip's number (in the note and on the receipt)


class MoneyDesk:
    """Amount, method and the money buttons of the cashier page, with one confirm box."""

    def __init__(
        self,
        session: HmiSession,
        billing: Billing,
        receipts: Receipts,
        currency: str,
        on_receipt: Callable[[Receipt], None],
    ) -> None:
        self.session = session
        self.billing = billing
        self.receipts = receipts
        self.currency = currency
        self.on_receipt = on_receipt
        self.account: str | None = None
        self.entries: dict[int, Entry] = {}
        self.pending: Pending | None = None
        self.amount = TextInput(title=_("Amount"), placeholder="50.00", name="cashier-amount")
        methods = [(m.value, _(label)) for m, label in METHOD_LABELS.items()]
        self.method = Select(
            title=_("Method"),
            value=Method.CASH.value,
            options=select_options(methods),
            name="cashier-method",
            stylesheets=[InlineStyleSheet(css=SELECT_CSS)],
        )
        self.reference = TextInput(
            title=_("Reference (transfer / slip no.)"),
            placeholder=_("optional"),
            name="cashier-reference",
            max_length=MAX_REFERENCE_CHARS,
        )
        self.entry = Select(
            title=_("Entry (reversal, reprint)"),
            options=[],
            name="cashier-entry",
            sizing_mode="stretch_width",  # the longest entry text fits
            stylesheets=[InlineStyleSheet(css=SELECT_CSS)],
        )
        sized_inputs(self.amount, self.method, self.reference, self.entry)
        self.btn_pay = self._button(_("Pay"), "cashier-pay", lambda: self.ask("topup"))
        self.btn_refund = self._button(_("Refund"), "cashier-refund", lambda: self.ask("refund"))
        self.btn_reverse = self._button(_("Reverse entry"), "cashier-reverse", self.ask_reversal)
        self.btn_reprint = self._button(_("Reprint receipt"), "cashier-reprint", self.reprint)
        self.btn_confirm = self._button(_("Confirm"), "cashier-confirm", self.confirm)
        self.btn_confirm.button_type = "primary"
        self.btn_cancel = self._button(_("Cancel"), "cashier-cancel", self.cancel)
        self.btn_confirm.visible = self.btn_cancel.visible = False
        self.note = html_div("", name="cashier-note", sizing_mode="stretch_width")
        self.layout = column(
            row(self.amount, self.method, sizing_mode="stretch_width", styles=_WRAP),
            self.reference,
            row(self.btn_pay, self.btn_refund, sizing_mode="stretch_width", styles=_WRAP),
            self.entry,
            row(self.btn_reverse, self.btn_reprint, sizing_mode="stretch_width", styles=_WRAP),
            self.note,
            row(self.btn_confirm, self.btn_cancel, sizing_mode="stretch_width", styles=_WRAP),
            sizing_mode="stretch_width",
            name="cashier-desk",
        )
        self.set_account(None, [])

    @staticmethod
    def _button(label: str, name: str, click: Callable[[], None]) -> Button:
        b = Button(label=label, name=name, styles=AUTO_WIDTH)
        b.on_click(click)
        return b

    # ------------------------------------------------------------------ state
    def set_account(self, account: str | None, entries: Sequence[Entry]) -> None:
        """Take the chosen account and its listed entries (newest first)."""
        if account != self.account:
            self._settle()
            self.note.text = ""
        self.account = account
        self.entries = {e.seq: e for e in entries}
        numbers = self.receipts.numbers(list(self.entries))
        options = []
        for e in entries:
            text = f"#{e.seq} {site_time_text(self.session, e.ts)} {entry_kind_text(e)} "
            text += money_text(e.amount, self.currency)
            if e.seq in numbers:
                text += " " + _("(receipt {number})", number=numbers[e.seq])
            options.append((str(e.seq), text))
        self.entry.options = select_options(options)
        self.entry.value = options[0][0] if options else ""
        may = account is not None and self.session.may("billing.write", account)
        for b in (self.btn_pay, self.btn_refund, self.btn_reverse):
            b.disabled = not may
        self.btn_reprint.disabled = account is None

    def say(self, text: str, cls: str = "u", attrs: str = "") -> None:
        """Show one line in the note."""
        self.note.text = f'<span class="{cls}"{attrs}>{html.escape(text)}</span>'

    def _settle(self) -> Pending | None:
        pending, self.pending = self.pending, None
        self.btn_confirm.visible = self.btn_cancel.visible = False
        return pending

    # ------------------------------------------------------------------ asking
    def ask(self, op: str) -> None:
        """Show the confirm box of a payment (``topup``) or refund of the typed amount."""
        if self.account is None:
            return
        try:
            amount = parse_amount(self.amount.value.strip())
        except BillingError as exc:
            self.say(_("not an amount: {error}", error=str(exc)), "result-bad")
            return
        signed = amount if op == "topup" else -amount
        method = Method(self.method.value)
        ref = self.reference.value.strip()
        self._ask(Pending(op, self.account, signed, method, uuid.uuid4().hex, None, ref))

    def ask_reversal(self) -> None:
        """Show the confirm box of reversing the chosen entry."""
        entry = self.entries.get(int(self.entry.value)) if self.entry.value else None
        if self.account is None or entry is None:
            self.say(_("choose an entry first"), "result-bad")
            return
        if entry.kind not in REVERSIBLE:
            self.say(_("this entry cannot be reversed"), "result-bad")
            return
        method = Method(self.method.value)
        ref = self.reference.value.strip()
        self._ask(Pending("reverse", self.account, -entry.amount, method, "", entry.seq, ref))

    def _ask(self, p: Pending) -> None:
        before = self.billing.ledger.balance(p.account)
        what = {
            "topup": _("Take a payment"),
            "refund": _("Pay back (refund)"),
            "reverse": _("Reverse entry {seq}", seq=p.seq),
        }[p.op]
        facts = [
            (_("Account"), p.account),
            (_("Amount"), money_text(abs(p.amount), self.currency)),
            (_("Method"), _(METHOD_LABELS[p.method])),
            *([(_("Reference"), p.reference)] if p.reference else []),
            (_("Balance now"), money_text(before, self.currency)),
            (_("Balance after"), money_text(before + p.amount, self.currency)),
        ]
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td><b>{html.escape(v)}</b></td></tr>" for k, v in facts
        )
        self.pending = p
        self.note.text = (
            f'<div class="confirm" data-confirm="{p.op}" data-account="{html.escape(p.account)}" '
            f'data-after="{before + p.amount}"><b>{html.escape(what)}?</b><table>{rows}</table></div>'
        )
        self.btn_confirm.visible = self.btn_cancel.visible = True

    def cancel(self) -> None:
        """Drop the question."""
        self._settle()
        self.say(_("cancelled"))

    # ------------------------------------------------------------------ posting
    def confirm(self) -> None:
        """Post what the confirm box asks, once, then issue and show its receipt."""
        p = self._settle()
        if p is None:  # a second click of the same confirm: already on its way
            return
        self.say(_("posting…"))
        self.session.spawn(self._post(p), self._posted)

    async def _post(self, p: Pending) -> Receipt:
        who = {"user": self.session.actor, "source": self.session.source}
        b = self.billing
        if p.op == "reverse":
            assert p.seq is not None
            note = method_note(p.method, p.reference or "reversal at the cash desk")
            result = await b.reverse(p.account, p.seq, note=note, **who)
        else:
            post = b.topup if p.op == "topup" else b.refund
            note = method_note(p.method, p.reference)
            result = await post(p.account, abs(p.amount), note=note, key=p.key, **who)
        assert result.entry is not None
        seq = result.entry.seq
        return await self.session.in_thread(
            self.receipts.issue, seq, p.method, self.session.user_name, p.reference
        )

    def _posted(self, receipt: Receipt | None, err: BaseException | None) -> None:
        if err is not None or receipt is None:
            self.say(_("refused: {error}", error=str(err)), "result-bad")
            return
        attrs = f' data-posted="{receipt.seq}" data-receipt="{receipt.number}"'
        self.say(_("posted; receipt {number}", number=receipt.number), "result-ok", attrs)
        self.amount.value = self.reference.value = ""
        self.on_receipt(receipt)

    def reprint(self) -> None:
        """Show the stored receipt of the chosen entry again (same number)."""
        seq = int(self.entry.value) if self.entry.value else None
        receipt = self.receipts.by_seq(seq) if seq is not None else None
        if receipt is None:
            self.say(_("this entry has no receipt"), "result-bad")
            return
        attrs = f' data-reprint="{receipt.number}"'
        self.say(_("reprint of receipt {number}", number=receipt.number), "u", attrs)
        self.on_receipt(receipt)
