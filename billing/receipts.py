"""Cash-desk receipts: one numbered receipt per money entry, kept beside the ledger.

Table ``receipts`` in the ledger's file (created through ``Ledger.ensure_schema``): the
receipt ``number`` (unique and increasing: SQLite ``AUTOINCREMENT`` never reuses one) keyed by
the ledger entry ``seq`` it prints, with the payment ``method``, the ``cashier`` and the payment
``reference`` (a bank transfer's or card slip's number, a provider's transaction id; also in the
entry's note, ``method_note``; a table made before the column is given it on open). Issuing a
receipt for an entry that has one returns that one: a reprint, or a repeated request (same
idempotency key), always shows the same number. The amounts are never copied from the caller:
amount, balance before and after are read from the ledger (the sum of the account's entries
before the entry's seq), so a receipt always matches the ledger.

The cashier's day (``cashier_day``): the ledger's top-ups, refunds and reversals of one
site-local day (of one cashier, or all), each with its method and receipt number, and the
totals by method; ``day_xlsx`` and ``day_pdf`` are its closing report, whose totals are the sums
of those entries.

``receipt_pdf`` renders one receipt (A6, fpdf2; fonts as ``billing.statements``). Texts go
through ``i18n._``. Thread-safe as the ledger is (its lock).
"""

from __future__ import annotations

import enum
import html
import io
import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from billing.ledger import Entry, EntryKind, Ledger
from billing.statements import CORE_FONT, add_pdf_font, cjk_xlsx_fonts
from i18n import N_, _
from i18n.formats import money_text, number_text

__all__ = [
    "CASH_KINDS",
    "METHOD_LABELS",
    "CashierDay",
    "DayLine",
    "Method",
    "Receipt",
    "Receipts",
    "UnknownReceipt",
    "cashier_day",
    "day_bounds",
    "day_pdf",
    "day_xlsx",
    "method_label",
    "method_note",
    "receipt_html",
    "receipt_lines",
    "receipt_pdf",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    number INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL UNIQUE,
    ts REAL NOT NULL, method TEXT NOT NULL, cashier TEXT NOT NULL,
    reference TEXT NOT NULL DEFAULT '');
"""
#: Longest payment reference kept (a slip number, a transfer's reference, a transaction id).
MAX_REFERENCE_CHARS = 128
_COLS = "number, seq, method, cashier, reference"


class UnknownReceipt(KeyError):
    """No receipt with that number (or no ledger entry with that seq)."""


class Method(enum.StrEnum):
    """How the tenant paid (or was paid back)."""

    CASH = "cash"
    CARD = "card"
    BANK_TRANSFER = "bank_transfer"
    ONLINE = "online"


#: Display names (translate with ``_`` when shown).
METHOD_LABELS: dict[Method, str] = {
    Method.CASH: N_("cash"),
    Method.CARD: N_("card"),
    Method.BANK_TRANSFER: N_("bank transfer"),
    Method.ONLINE: N_("online"),
}


def method_label(method: str) -> str:
    """Return a method value (or ``other``) as the reader reads it (translated)."""
    known = {m.value: m for m in Method}
    return _(METHOD_LABELS[known[method]]) if method in known else _("other")


def method_note(method: Method, reference: str = "") -> str:
    """Return the ledger note of a cash-desk entry: ``method=cash`` (``; <reference>``)."""
    note = f"method={method.value}"
    return f"{note}; {reference.strip()}" if reference.strip() else note


@dataclass(frozen=True, slots=True)
class Receipt:
    """One printed receipt: its number, the entry it prints and the balances around it."""

    number: int
    seq: int
    account: str
    kind: EntryKind
    amount: Decimal
    balance_before: Decimal
    balance_after: Decimal
    method: Method
    cashier: str
    ts: float  # the entry's time (epoch seconds)
    reverses: int | None = None
    reference: str = ""


def _add_reference_column(ledger: Ledger) -> None:
    """Give a ``receipts`` table made before the ``reference`` column that column."""
    cols = {r[1] for r in ledger.query("PRAGMA table_info(receipts)")}
    if "reference" not in cols:
        with ledger.transaction() as con:
            con.execute("ALTER TABLE receipts ADD COLUMN reference TEXT NOT NULL DEFAULT ''")


class Receipts:
    """Issue and find receipts in the ledger's file (module docstring)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        ledger.ensure_schema("receipts", _SCHEMA)
        _add_reference_column(ledger)  # one PRAGMA read once the column is there

    def issue(self, seq: int, method: Method | str, cashier: str, reference: str = "") -> Receipt:
        """Return the receipt of ledger entry ``seq``, numbering it if it has none yet.

        ``reference``: the payment's reference (stripped; at most ``MAX_REFERENCE_CHARS``,
        ``ValueError`` beyond). A reprint keeps what the first issue stored. Raises
        ``UnknownReceipt`` when the ledger has no entry ``seq``.
        """
        reference = reference.strip()
        if len(reference) > MAX_REFERENCE_CHARS:
            raise ValueError(f"reference: at most {MAX_REFERENCE_CHARS} characters")
        if self.ledger.entry(seq) is None:
            raise UnknownReceipt(f"no ledger entry {seq}")
        with self.ledger.transaction() as con:
            con.execute(
                "INSERT OR IGNORE INTO receipts(seq, ts, method, cashier, reference) "
                "VALUES (?, ?, ?, ?, ?)",
                (seq, time.time(), Method(method).value, cashier, reference),
            )
        found = self.by_seq(seq)
        assert found is not None
        return found

    def by_seq(self, seq: int) -> Receipt | None:
        """Return the receipt of ledger entry ``seq``, or None."""
        rows = self.ledger.query(f"SELECT {_COLS} FROM receipts WHERE seq = ?", (seq,))
        return self._receipt(rows[0]) if rows else None

    def get(self, number: int) -> Receipt:
        """Return receipt ``number`` (a reprint); ``UnknownReceipt`` if there is none."""
        rows = self.ledger.query(f"SELECT {_COLS} FROM receipts WHERE number = ?", (number,))
        if not rows:
            raise UnknownReceipt(f"no receipt number {number}")
        return self._receipt(rows[0])

    def numbers(self, seqs: list[int]) -> dict[int, int]:
        """Return ``{entry seq: receipt number}`` for those of ``seqs`` that have a receipt."""
        if not seqs:
            return {}
        marks = ",".join("?" * len(seqs))
        rows = self.ledger.query(f"SELECT seq, number FROM receipts WHERE seq IN ({marks})", seqs)
        return {int(s): int(n) for s, n in rows}

    def of_accounts(self, accounts: list[str], limit: int = 50) -> list[Receipt]:
        """Return the newest ``limit`` receipts of entries of ``accounts``, newest first."""
        if not accounts:
            return []
        marks = ",".join("?" * len(accounts))
        rows = self.ledger.query(
            f"SELECT r.number, r.seq, r.method, r.cashier, r.reference FROM receipts r "
            f"JOIN entries e ON e.seq = r.seq WHERE e.account IN ({marks}) "
            "ORDER BY r.number DESC LIMIT ?",
            [*accounts, limit],
        )
        return [self._receipt(r) for r in rows]

    def _receipt(self, row: tuple[int, int, str, str, str]) -> Receipt:
        number, seq, method, cashier, reference = row
        entry = self.ledger.entry(seq)
        if entry is None:  # the ledger is append-only: cannot happen
            raise UnknownReceipt(f"receipt {number}: no ledger entry {seq}")
        before = self._balance_before(entry)
        return Receipt(
            number=int(number),
            seq=entry.seq,
            account=entry.account,
            kind=entry.kind,
            amount=entry.amount,
            balance_before=before,
            balance_after=before + entry.amount,
            method=Method(method),
            cashier=cashier,
            ts=entry.ts,
            reverses=entry.reverses,
            reference=reference,
        )

    def _balance_before(self, entry: Entry) -> Decimal:
        rows = self.ledger.query(
            "SELECT amount FROM entries WHERE account = ? AND seq < ?", (entry.account, entry.seq)
        )
        return sum((Decimal(r[0]) for r in rows), Decimal("0.00"))


def receipt_lines(r: Receipt, time_text: str, currency: str) -> list[tuple[str, str]]:
    """Return the receipt's ``(label, value)`` lines, as the page and the PDF show them."""
    kinds = {
        EntryKind.TOPUP: _("payment"),
        EntryKind.REFUND: _("refund"),
        EntryKind.REVERSAL: _("reversal"),
    }

    def money(d: Decimal) -> str:
        return money_text(d, currency) or "—"

    lines = [
        (_("Receipt no."), str(r.number)),
        (_("Time"), time_text),
        (_("Account"), r.account),
        (_("Operation"), kinds.get(r.kind, r.kind.value)),
        (_("Method"), _(METHOD_LABELS[r.method])),
        *([(_("Reference"), r.reference)] if r.reference else []),
        (_("Amount"), money(r.amount)),
        (_("Balance before"), money(r.balance_before)),
        (_("Balance after"), money(r.balance_after)),
        (_("Cashier"), r.cashier),
        (_("Ledger entry"), str(r.seq)),
    ]
    if r.reverses is not None:
        lines.append((_("Reverses entry"), str(r.reverses)))
    return lines


def receipt_pdf(
    r: Receipt,
    *,
    title: str,
    time_text: str,
    currency: str,
    font: str | Path | None = None,
) -> bytes:
    """Return one receipt as a PDF (A6 page); ``title`` the site's name; fonts as statements."""
    from fpdf import FPDF

    pdf = FPDF(format=(105, 148))  # A6 in mm (fpdf2 names no A6)
    pdf.set_auto_page_break(auto=True, margin=8)
    lines = receipt_lines(r, time_text, currency)
    texts = [title, _("Receipt"), *(t for line in lines for t in line)]
    added = add_pdf_font(pdf, "receipt", font, texts)  # a CJK font when the texts need one
    family = added or CORE_FONT

    def text(s: str) -> str:
        return s if added is not None else s.encode("latin-1", "replace").decode("latin-1")

    pdf.add_page()
    pdf.set_font(family, size=12)
    pdf.cell(0, 7, text(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, size=10)
    pdf.cell(0, 6, text(_("Receipt")), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    for label, value in lines:
        pdf.cell(35, 6, text(label))
        pdf.cell(0, 6, text(value), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


#: Entries the cash desk posts (what a cashier's day adds up).
CASH_KINDS = (EntryKind.TOPUP, EntryKind.REFUND, EntryKind.REVERSAL)


@dataclass(frozen=True, slots=True)
class DayLine:
    """One entry of a cashier's day: the entry, its method and receipt number (0: none)."""

    entry: Entry
    method: str  # a Method value, or "other" (posted elsewhere without a method)
    receipt: int


@dataclass(frozen=True, slots=True)
class CashierDay:
    """A site-local day of the cash desk: its entries and the totals by method."""

    day: date
    cashier: str | None
    lines: list[DayLine]

    @property
    def totals(self) -> dict[str, Decimal]:
        """Signed sums by method (payments in, refunds and reversals out), methods in order."""
        out: dict[str, Decimal] = {}
        for ln in self.lines:
            out[ln.method] = out.get(ln.method, Decimal("0.00")) + ln.entry.amount
        order = [m.value for m in Method] + ["other"]
        return {m: out[m] for m in order if m in out}

    @property
    def total(self) -> Decimal:
        """The sum of every line: what the ledger's cash-desk entries of the day add up to."""
        return sum((ln.entry.amount for ln in self.lines), Decimal("0.00"))


def _method_of(entry: Entry, stored: str | None) -> str:
    if stored:
        return stored
    m = re.match(r"method=([a-z_]+)", entry.note)
    return m.group(1) if m and m.group(1) in {x.value for x in Method} else "other"


def day_bounds(day: date, tz: str) -> tuple[float, float]:
    """Return ``[start, end)`` of a local ``day`` in ``tz`` as epoch seconds."""
    zone = ZoneInfo(tz)
    start = datetime.combine(day, dt_time(), zone)
    end = datetime.combine(day + timedelta(days=1), dt_time(), zone)
    return start.timestamp(), end.timestamp()


def cashier_day(ledger: Ledger, day: date, tz: str, cashier: str | None = None) -> CashierDay:
    """Return the cash-desk entries of ``day`` (site zone ``tz``), of one ``cashier`` or all.

    Read from the ledger (top-ups, refunds, reversals in the day), each with the method of its
    receipt (else of its note) and its receipt number.
    """
    start, end = day_bounds(day, tz)
    entries = ledger.entries(since=start, until=end, kinds=CASH_KINDS)
    if cashier is not None:
        entries = [e for e in entries if e.user == cashier]
    Receipts(ledger)  # the table exists
    seqs = [e.seq for e in entries]
    stored: dict[int, tuple[int, str]] = {}
    for i in range(0, len(seqs), 500):
        chunk = seqs[i : i + 500]
        marks = ",".join("?" * len(chunk))
        rows = ledger.query(
            f"SELECT seq, number, method FROM receipts WHERE seq IN ({marks})", chunk
        )
        stored.update({int(s): (int(n), str(m)) for s, n, m in rows})
    lines = [
        DayLine(e, _method_of(e, stored.get(e.seq, (0, ""))[1]), stored.get(e.seq, (0, ""))[0])
        for e in entries
    ]
    return CashierDay(day, cashier, lines)


def day_xlsx(d: CashierDay, tz: str) -> bytes:
    """Return the closing report of a cashier's day as an Excel workbook (entries, totals)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = _("Day")
    who = d.cashier or _("all cashiers")
    ws.append([_("Cashier's day {day}: {cashier}", day=d.day.isoformat(), cashier=who)])
    ws["A1"].font = Font(bold=True, size=12)
    ws.append([])
    head = [_("Entry"), _("Time"), _("Account"), _("Kind"), _("Method"), _("Amount"), _("Receipt")]
    ws.append(head)
    zone = ZoneInfo(tz)
    for ln in d.lines:
        e = ln.entry
        when = datetime.fromtimestamp(e.ts, zone).strftime("%Y-%m-%d %H:%M:%S")
        method = method_label(ln.method)
        ws.append([e.seq, when, e.account, e.kind.value, method, e.amount, ln.receipt or None])
    ws.append([])
    for method, amount in d.totals.items():
        label = method_label(method)
        ws.append([_("Total {method}", method=label), None, None, None, None, amount])
    ws.append([_("Total"), None, None, None, None, d.total])
    ws.cell(ws.max_row, 1).font = Font(bold=True)
    for row in ws.iter_rows(min_row=4, min_col=6, max_col=6):
        for cell in row:
            cell.number_format = "#,##0.00"
    cjk_xlsx_fonts(ws)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def day_pdf(
    d: CashierDay,
    tz: str,
    *,
    title: str,
    currency: str,
    font: str | Path | None = None,
) -> bytes:
    """Return the closing report of a cashier's day as a PDF (A4): totals by method, entries.

    The same lines and totals as ``day_xlsx`` (the sums of the ledger's entries of the day).
    """
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    head = [_("Entry"), _("Time"), _("Account"), _("Kind"), _("Method"), _("Amount"), _("Receipt")]
    texts = [title, d.cashier or "", *head, *(ln.entry.account for ln in d.lines)]
    added = add_pdf_font(pdf, "report", font, texts)
    family = added or CORE_FONT

    def text(s: str) -> str:
        return s if added is not None else s.encode("latin-1", "replace").decode("latin-1")

    def money(amount: Decimal) -> str:
        return money_text(amount, currency) or "—"

    pdf.add_page()
    pdf.set_font(family, size=13)
    pdf.cell(0, 8, text(title), new_x="LMARGIN", new_y="NEXT")
    who = d.cashier or _("all cashiers")
    pdf.set_font(family, size=11)
    heading = _("Cashier's day {day}: {cashier}", day=d.day.isoformat(), cashier=who)
    pdf.cell(0, 7, text(heading), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font(family, size=10)
    for method, amount in d.totals.items():
        pdf.cell(60, 6, text(_("Total {method}", method=method_label(method))))
        pdf.cell(40, 6, text(money(amount)), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.cell(60, 6, text(_("Total")))
    pdf.cell(40, 6, text(money(d.total)), align="R", new_x="LMARGIN", new_y="NEXT")
    n = len(d.lines)
    pdf.cell(0, 6, text(_("Entries: {n}", n=n)), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    widths = (18, 38, 38, 22, 28, 28, 18)
    pdf.set_font(family, size=8)
    for w, h in zip(widths, head, strict=True):
        pdf.cell(w, 5, text(h), border="B")
    pdf.ln()
    zone = ZoneInfo(tz)
    for ln in d.lines:
        e = ln.entry
        when = datetime.fromtimestamp(e.ts, zone).strftime("%Y-%m-%d %H:%M:%S")
        cells = [
            str(e.seq),
            when,
            e.account,
            e.kind.value,
            method_label(ln.method),
            number_text(e.amount, 2),
            str(ln.receipt or ""),
        ]
        for i, (w, c) in enumerate(zip(widths, cells, strict=True)):
            pdf.cell(w, 5, text(c), align="R" if i == 5 else "L")
        pdf.ln()
    return bytes(pdf.output())


def receipt_html(r: Receipt, title: str, time_text: str, currency: str) -> str:
    """Return the receipt as an HTML section (a table of label and value).

    Shown on the cashier's page and served as the printable receipt page (``/receipts/N``).
    """
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td><b>{html.escape(value)}</b></td></tr>"
        for label, value in receipt_lines(r, time_text, currency)
    )
    return (
        f'<section class="receipt" data-receipt-number="{r.number}" data-seq="{r.seq}" '
        f'data-amount="{r.amount}" data-before="{r.balance_before}" data-after="{r.balance_after}">'
        f"<h3>{html.escape(title)}: {html.escape(_('Receipt'))}</h3>"
        f"<table>{rows}</table></section>"
    )
