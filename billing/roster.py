"""The office's roster: households, accounts and tenants read from xlsx or CSV, checked, exported.

A roster is a table, one row per flat (or per account of a flat), with a header row naming its
columns in any order (:data:`COLUMNS`; case, spaces and a unit in brackets do not matter:
``Area [m2]`` is ``area_m2``, ``E-mail`` is ``email``):

``building``, ``flat`` (required)
    The building id and the flat: ``101`` is household ``<building>.101``; a full household id
    (``b1.101``) is taken as it is.
``area_m2``
    The household's area; required for a new household, empty keeps a configured one.
``tenant``, ``phone``, ``email``
    The tenant's name and contact. They go to the row's account (the low-balance notices read
    them there), or to the household when the row has no account. An empty cell clears the
    value; a column left out of the roster changes nothing.
``meter``
    The electricity meter(s) of the row's prepaid account: energy tags, or meter devices (their
    ``energy_kwh`` point), separated by ``;``. With a meter the row has an account.
``tariff``, ``opening_balance``, ``alarm1``, ``alarm2``, ``account``
    The account's tariff (required for a new one), its opening balance (posted once, as the
    ledger's ``opening`` entry, when the account opens), its warning levels and its id (default:
    the household's existing account, else the household id).
``balance``
    Read-only: written by the export, ignored by the import.

:func:`read_roster` parses the bytes into :class:`RosterRow` models (pydantic), naming every
bad cell (``sheet Roster, row 7, column phone: ...``); :func:`billing.roster_plan.plan_roster`
checks the rows against the site and the ledger and returns the plan (what to add and change,
the opening balances to post) or raises :class:`RosterError` with every issue: a roster with one
bad row imports nothing. An import adds and changes households and accounts; it never removes
one. Applying a plan to the configuration files is ``scada.services.roster``'s (a configuration
version, like any other change). :func:`export_rows` and :func:`write_roster` write the roster
back (xlsx or CSV), in the same columns, so an export imported again changes nothing.

This module reads the site through :class:`billing.site.BillingSite` and imports nothing of
``scada``.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from billing.errors import BadAmount
from billing.ledger import EntryKind
from billing.money import parse_amount
from configbase.model import ID_PATTERN

if TYPE_CHECKING:
    from billing.config import AccountConfig
    from billing.ledger import Ledger
    from billing.site import BillingSite

__all__ = [
    "COLUMNS",
    "CONTACT",
    "FORMATS",
    "Roster",
    "RosterError",
    "RosterIssue",
    "RosterRow",
    "export_rows",
    "household_id",
    "opening_entries",
    "read_roster",
    "write_roster",
]

#: The columns, in the order the export writes them.
COLUMNS = (
    "building",
    "flat",
    "area_m2",
    "tenant",
    "phone",
    "email",
    "meter",
    "tariff",
    "opening_balance",
    "account",
    "alarm1",
    "alarm2",
    "balance",
)
REQUIRED = ("building", "flat")
#: Other header texts for a column (after lower-casing, units dropped, spaces as ``_``).
ALIASES = {
    "area": "area_m2",
    "tenant_name": "tenant",
    "name": "tenant",
    "e-mail": "email",
    "e_mail": "email",
    "mail": "email",
    "opening": "opening_balance",
    "meters": "meter",
    "household": "flat",
    "tariff_id": "tariff",
    "account_id": "account",
}
#: Formats read and written: ``xlsx`` (the sheet ``Roster``, else the first) and ``csv``.
FORMATS = ("xlsx", "csv")
SHEET = "Roster"
MAX_ROWS = 100_000
#: The tenant's columns: they go to the row's account, else to the household.
CONTACT = ("tenant", "phone", "email")


# ---------------------------------------------------------------------- issues


@dataclass(frozen=True, slots=True)
class RosterIssue:
    """A bad cell (or row, or the whole file): where and why. ``row`` is the 1-based sheet row."""

    message: str
    row: int | None = None
    column: str | None = None
    sheet: str | None = None

    def __str__(self) -> str:
        where = [
            f"sheet {self.sheet}" if self.sheet else "",
            f"row {self.row}" if self.row else "",
            f"column {self.column}" if self.column else "",
        ]
        place = ", ".join(w for w in where if w)
        return f"{place}: {self.message}" if place else self.message

    def to_json(self) -> dict[str, Any]:
        return {
            "sheet": self.sheet,
            "row": self.row,
            "column": self.column,
            "message": self.message,
            "text": str(self),
        }


class RosterError(ValueError):
    """The roster cannot be imported: ``issues`` names every bad cell; nothing was changed."""

    def __init__(self, issues: list[RosterIssue]) -> None:
        shown = "; ".join(str(i) for i in issues[:5])
        more = f" (and {len(issues) - 5} more)" if len(issues) > 5 else ""
        super().__init__(f"{len(issues)} problem(s) in the roster: {shown}{more}")
        self.issues = issues


# ---------------------------------------------------------------------- the row model

_FLAT = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
_PHONE = re.compile(r"^\+?[0-9][0-9 ()/-]{3,28}[0-9]$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _money(value: str | None, what: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return parse_amount(value, what, zero_ok=True)
    except BadAmount as exc:
        raise ValueError(str(exc).removeprefix(f"{what}: ")) from None


class RosterRow(BaseModel):
    """One row of the roster, its cells checked (text as read; None: the column is absent)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    row: int = Field(ge=1, description="the sheet row (1-based; the header is row 1)")
    building: str = Field(pattern=ID_PATTERN)
    flat: str = Field(pattern=_FLAT)
    area_m2: float | None = Field(None, gt=0, lt=1e6)
    tenant: str | None = Field(None, max_length=200)
    phone: str | None = None
    email: str | None = Field(None, max_length=254)
    meters: tuple[str, ...] = ()
    tariff: str | None = Field(None, pattern=rf"{ID_PATTERN}|^$")
    opening_balance: str | None = None
    account: str | None = Field(None, pattern=rf"{ID_PATTERN}|^$")
    alarm1: str | None = None
    alarm2: str | None = None

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v and not _PHONE.match(v):
            raise ValueError(f"not a phone number: {v!r} (digits, spaces, + - ( ) /)")
        return v

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v and not _EMAIL.match(v):
            raise ValueError(f"not an e-mail address: {v!r}")
        return v

    @field_validator("meters")
    @classmethod
    def _meters(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for m in v:
            if not re.match(ID_PATTERN, m):
                raise ValueError(f"not a tag or device id: {m!r}")
        if len(set(v)) != len(v):
            raise ValueError("a meter is listed twice")
        return v

    @field_validator("opening_balance", "alarm1", "alarm2")
    @classmethod
    def _amount(cls, v: str | None) -> str | None:
        _money(v, "amount")
        return v

    @property
    def household(self) -> str:
        """The household id of the row."""
        return household_id(self.building, self.flat)

    def money(self, name: str) -> Decimal | None:
        """Return the amount in column ``name`` (None: empty or absent)."""
        return _money(getattr(self, name), name)


def household_id(building: str, flat: str) -> str:
    """Return the household id of ``flat`` in ``building`` (a full id is kept as it is)."""
    return flat if flat.startswith(building + ".") else f"{building}.{flat}"


@dataclass(frozen=True, slots=True)
class Roster:
    """The rows of a roster file, the columns it has (others change nothing) and its sheet."""

    rows: list[RosterRow]
    columns: frozenset[str]
    sheet: str | None = None
    #: the bad cells of rows left out of ``rows`` (``read_roster(..., partial=True)``)
    issues: tuple[RosterIssue, ...] = ()

    def issue(self, row: int | None, column: str | None, message: str) -> RosterIssue:
        return RosterIssue(message, row, column, self.sheet)


# ---------------------------------------------------------------------- reading


def _column_name(text: str) -> str:
    name = re.sub(r"\s*[\[(][^\])]*[\])]\s*", "", str(text)).strip().lower()
    name = re.sub(r"[\s]+", "_", name)
    return ALIASES.get(name, name)


def _text(value: Any) -> str:
    """Return a cell as text: ints and whole floats without ``.0``, floats by their shortest form."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, Decimal):
        return str(value)
    return str(value).strip()


def _table_csv(data: bytes) -> Iterator[tuple[int, list[Any]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RosterError([RosterIssue(f"the CSV is not UTF-8 text: {exc}")]) from None
    first = text.split("\n", 1)[0]
    delimiter = "," if "," in first else ";" if ";" in first else "\t" if "\t" in first else ","
    try:
        for n, cells in enumerate(
            csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), 1
        ):
            yield n, list(cells)
    except csv.Error as exc:
        raise RosterError([RosterIssue(f"the CSV cannot be read: {exc}")]) from None


def _open_sheet(data: bytes) -> Any:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
        raise RosterError(
            [RosterIssue(f"not an Excel workbook (.xlsx): {exc or type(exc).__name__}")]
        ) from None
    if not book.sheetnames:
        raise RosterError([RosterIssue("the workbook has no sheet")])
    return book[SHEET] if SHEET in book.sheetnames else book[book.sheetnames[0]]


def read_roster(data: bytes, fmt: str, *, partial: bool = False) -> Roster:
    """Return the roster in ``data`` (``fmt``: ``xlsx`` or ``csv``).

    Raises ``RosterError`` naming every bad cell (``sheet Roster, row 7, column phone: ...``),
    an unknown or missing column, or a file that is no roster at all. With ``partial`` a row
    with bad cells is left out and its issues kept in ``Roster.issues`` instead (so that the
    checks against the site can name the other rows' problems in the same answer).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown roster format {fmt!r}; expected one of {', '.join(FORMATS)}")
    sheet_name: str | None = None
    if fmt == "xlsx":
        sheet = _open_sheet(data)
        sheet_name = str(sheet.title)
        table: Iterable[tuple[int, list[Any]]] = (
            (n, list(cells)) for n, cells in enumerate(sheet.iter_rows(values_only=True), 1)
        )
    else:
        table = _table_csv(data)
    rows: list[RosterRow] = []
    issues: list[RosterIssue] = []
    header: list[str] | None = None
    for n, cells in table:
        texts = [_text(c) for c in cells]
        if not any(texts):
            continue
        if header is None:
            header = [_column_name(t) for t in texts]
            issues += _header_issues(header, sheet_name)
            if issues:
                raise RosterError(issues)
            continue
        if len(rows) >= MAX_ROWS:
            issues.append(RosterIssue(f"more than {MAX_ROWS} rows", n, None, sheet_name))
            break
        row = _row(n, header, texts, sheet_name, issues)
        if row is not None:
            rows.append(row)
    if header is None:
        raise RosterError([RosterIssue("the roster is empty: a header row, then a row per flat")])
    if not rows and not issues:
        issues.append(RosterIssue("the roster has a header but no rows", None, None, sheet_name))
    if issues and not (partial and rows):
        raise RosterError(issues)
    return Roster(rows, frozenset(h for h in header if h), sheet_name, tuple(issues))


def _header_issues(header: list[str], sheet: str | None) -> list[RosterIssue]:
    out = []
    seen: set[str] = set()
    for name in header:
        if not name:
            continue
        if name not in COLUMNS:
            close = difflib.get_close_matches(name, COLUMNS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            out.append(
                RosterIssue(
                    f"unknown column {name!r}{hint}; columns: {', '.join(COLUMNS)}", 1, name, sheet
                )
            )
        elif name in seen:
            out.append(RosterIssue(f"column {name!r} appears twice", 1, name, sheet))
        seen.add(name)
    for name in REQUIRED:
        if name not in seen:
            out.append(RosterIssue(f"the header lacks the column {name!r}", 1, None, sheet))
    return out


def _row(
    n: int, header: list[str], texts: list[str], sheet: str | None, issues: list[RosterIssue]
) -> RosterRow | None:
    cells = {name: (texts[i] if i < len(texts) else "") for i, name in enumerate(header) if name}
    data: dict[str, Any] = {"row": n}
    for name, value in cells.items():
        if name == "balance":
            continue  # read-only: the export's
        if name == "meter":
            data["meters"] = tuple(m.strip() for m in re.split(r"[;,\s]+", value) if m.strip())
        elif name == "area_m2":
            data[name] = value or None
        else:
            data[name] = value
    try:
        return RosterRow.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            column = str(err["loc"][0]) if err["loc"] else None
            column = "meter" if column == "meters" else column
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "string_pattern_mismatch":
                msg = f"not an id (letters, digits, '_', '-' and dots): {err['input']!r}"
            elif err["type"] in ("float_parsing", "float_type"):
                msg = f"not a number: {err['input']!r}"
            issues.append(RosterIssue(msg, n, column, sheet))
        return None


# ---------------------------------------------------------------------- export


def opening_entries(ledger: Ledger | None) -> dict[str, tuple[Decimal, int]]:
    """Return ``{account: (amount, entry)}`` of every opening entry of the ledger."""
    if ledger is None:
        return {}
    out: dict[str, tuple[Decimal, int]] = {}
    for e in ledger.entries(kinds=[EntryKind.OPENING]):
        out.setdefault(e.account, (e.amount, e.seq))
    return out


def export_rows(site: BillingSite, ledger: Ledger | None = None) -> list[dict[str, Any]]:
    """Return the site's roster: a row per account of a household, a row per household without one.

    Money is ``Decimal``; ``opening_balance`` is what the ledger posted for an open account (the
    configured one otherwise); ``balance`` the ledger's balance (None without a ledger).
    """
    balances = ledger.balances() if ledger is not None else {}
    opened = opening_entries(ledger)
    by_household: dict[str, list[AccountConfig]] = {}
    for a in site.accounts:
        if a.household is not None:
            by_household.setdefault(a.household, []).append(a)
    rows: list[dict[str, Any]] = []
    for b in site.buildings:
        for h in b.households:
            flat = h.id[len(b.id) + 1 :] if h.id.startswith(b.id + ".") else h.id
            base = {"building": b.id, "flat": flat, "area_m2": h.area_m2}
            accounts = by_household.get(h.id, [])
            if not accounts:
                rows.append({**base, "tenant": h.tenant, "phone": h.phone, "email": h.email})
            for a in accounts:
                posted = opened.get(a.id)
                rows.append(
                    {
                        **base,
                        "tenant": a.tenant,
                        "phone": a.phone,
                        "email": a.email,
                        "meter": "; ".join(m.energy for m in a.meters),
                        "tariff": a.tariff,
                        "opening_balance": posted[0] if posted else a.opening_balance,
                        "account": a.id,
                        "alarm1": a.alarm1,
                        "alarm2": a.alarm2,
                        "balance": balances.get(a.id) if ledger is not None else None,
                    }
                )
    return rows


_MONEY_COLUMNS = ("opening_balance", "alarm1", "alarm2", "balance")


def _cell_text(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name in _MONEY_COLUMNS:
        return str(Decimal(value).quantize(Decimal("0.01")))
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_roster(rows: list[dict[str, Any]], fmt: str) -> bytes:
    """Return ``rows`` (``export_rows``) as a roster file: ``xlsx`` (sheet ``Roster``) or ``csv``.

    CSV is UTF-8 with a byte-order mark (Excel opens it as UTF-8). In the workbook money and
    areas are numbers (money to the cent), everything else text (phones keep their ``+`` and
    leading zeros).
    """
    if fmt == "csv":
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\r\n")
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([_cell_text(c, r.get(c)) for c in COLUMNS])
        return ("\ufeff" + out.getvalue()).encode("utf-8")
    if fmt != "xlsx":
        raise ValueError(f"unknown roster format {fmt!r}; expected one of {', '.join(FORMATS)}")
    import openpyxl
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = SHEET
    sheet.append(list(COLUMNS))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for r in rows:
        values: list[Any] = []
        for c in COLUMNS:
            v = r.get(c)
            if v is None:
                values.append(None)
            elif c in _MONEY_COLUMNS:
                values.append(float(Decimal(v).quantize(Decimal("0.01"))))
            elif c == "area_m2":
                values.append(float(v))
            else:
                values.append(str(v))
        sheet.append(values)
    for row in sheet.iter_rows(min_row=2):
        for name, cell in zip(COLUMNS, row, strict=False):
            if name in _MONEY_COLUMNS:
                cell.number_format = "0.00"
            elif name != "area_m2":
                cell.number_format = "@"
    for i, c in enumerate(COLUMNS):
        sheet.column_dimensions[get_column_letter(i + 1)].width = max(10, len(c) + 4)
    sheet.freeze_panes = "A2"
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()
