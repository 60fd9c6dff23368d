"""An account's monthly statement: the balance on the 1st, every entry of the month, the balance
at its end; what the tenant page lists beside the receipts (printable as PDF).

:func:`account_statement` reads it from the ledger (the balance on the 1st is the sum of the
entries before; each entry with its receipt number where it has one); :func:`statement_pdf`
renders it (A4, fpdf2; fonts as ``billing.statements``). Amounts are the ledger's, never
recomputed; ``closing`` is ``opening`` plus the sum of the lines. Blocking; thread-safe as the
ledger is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from billing.ledger import Entry, EntryKind, Ledger
from billing.receipts import Receipts
from billing.statements import _font
from i18n import _

__all__ = ["AccountStatement", "account_statement", "kind_label", "statement_pdf"]

ZERO = Decimal("0.00")


@dataclass(frozen=True, slots=True)
class AccountStatement:
    """One account's entries of ``[start, end)`` with the balances around them."""

    account: str
    start: float
    end: float
    opening: Decimal
    lines: list[tuple[Entry, int]]  # (entry, receipt number or 0)

    @property
    def closing(self) -> Decimal:
        """The balance at ``end``: the opening plus every line."""
        return self.opening + sum((e.amount for e, _n in self.lines), ZERO)

    @property
    def totals(self) -> dict[EntryKind, Decimal]:
        """Signed sums by entry kind, in the order the kinds first appear."""
        out: dict[EntryKind, Decimal] = {}
        for e, _n in self.lines:
            out[e.kind] = out.get(e.kind, ZERO) + e.amount
        return out


def account_statement(ledger: Ledger, account: str, start: float, end: float) -> AccountStatement:
    """Return the statement of ``account`` for ``[start, end)`` (epoch seconds)."""
    before = ledger.query(
        "SELECT amount FROM entries WHERE account = ? AND ts < ?", (account, start)
    )
    opening = sum((Decimal(r[0]) for r in before), ZERO)
    entries = ledger.entries(account, since=start, until=end)
    numbers = Receipts(ledger).numbers([e.seq for e in entries])
    return AccountStatement(
        account, start, end, opening, [(e, numbers.get(e.seq, 0)) for e in entries]
    )


def kind_label(kind: EntryKind) -> str:
    """Return an entry kind as the statement names it (translated)."""
    labels = {
        EntryKind.OPENING: _("opening balance"),
        EntryKind.TOPUP: _("top-up"),
        EntryKind.REFUND: _("refund"),
        EntryKind.REVERSAL: _("correction"),
        EntryKind.CONSUMPTION: _("electricity"),
        EntryKind.SHARED_LOSS: _("shared losses"),
        EntryKind.REPLACEMENT: _("meter replaced"),
    }
    return labels.get(kind, kind.value)


def statement_pdf(
    s: AccountStatement,
    *,
    title: str,
    period: str,
    tz: str,
    currency: str,
    font: str | Path | None = None,
) -> bytes:
    """Return the statement as a PDF (A4): balances, totals by kind, then every entry."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    path = _font(font)
    family = "Helvetica"
    if path is not None:
        pdf.add_font("statement", "", str(path))
        family = "statement"

    def text(v: str) -> str:
        return v if path is not None else v.encode("latin-1", "replace").decode("latin-1")

    def money(amount: Decimal) -> str:
        return _("{amount} {currency}", amount=f"{amount:,.2f}", currency=currency)

    def pair(label: str, value: str) -> None:
        pdf.cell(70, 6, text(label))
        pdf.cell(40, 6, text(value), align="R", new_x="LMARGIN", new_y="NEXT")

    pdf.add_page()
    pdf.set_font(family, size=13)
    pdf.cell(0, 8, text(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, size=11)
    heading = _("Statement of account {account}: {period}", account=s.account, period=period)
    pdf.cell(0, 7, text(heading), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font(family, size=10)
    pair(_("Balance at the start"), money(s.opening))
    for kind, amount in s.totals.items():
        pair(kind_label(kind), money(amount))
    pair(_("Balance at the end"), money(s.closing))
    pdf.ln(3)
    widths = (38, 18, 34, 30, 20, 50)
    head = [_("Time"), _("Entry"), _("Kind"), _("Amount"), _("Receipt"), _("Note")]
    pdf.set_font(family, size=8)
    for w, h in zip(widths, head, strict=True):
        pdf.cell(w, 5, text(h), border="B")
    pdf.ln()
    zone = ZoneInfo(tz)
    for e, number in s.lines:
        cells = [
            datetime.fromtimestamp(e.ts, zone).strftime("%Y-%m-%d %H:%M"),
            str(e.seq),
            kind_label(e.kind),
            f"{e.amount:,.2f}",
            str(number or ""),
            e.note[:40],
        ]
        for i, (w, c) in enumerate(zip(widths, cells, strict=True)):
            pdf.cell(w, 5, text(c), align="R" if i == 3 else "L")
        pdf.ln()
    return bytes(pdf.output())
