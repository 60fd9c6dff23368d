"""Reports: energy, heat, unit consumption, bills, finance, lost-contact devices, alarms,
energy per meter and bucket (``billing.report_energy``), room-temperature compliance
(``billing.report_compliance``), meter readings (``billing.report_readings``), the heat
meter's daily parameters (``billing.report_heat_meter``), buildings by heat per m2 per
degree-day (``billing.report_buildings``).

``build_report(billing, kind, period)`` returns a ``Report`` (sheets of columns with units and
rows); ``write_csv`` / ``write_xlsx`` / ``write_pdf`` write it (Excel: headers, units, a
totals row and a bar chart where one helps; PDF: ``billing.report_pdf``). Periods: ``2025`` / ``2025-Q4`` / ``2025-11`` / ``2025-11-21`` in
the site's time zone. Money cells are Decimal in the report, numbers rounded to the cent in
Excel and plain text in CSV.
"""

from __future__ import annotations

import csv
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from billing.ledger import EntryKind
from billing.periods import Period, local_label, parse_period
from billing.report_buildings import building_heat
from billing.report_compliance import room_compliance
from billing.report_energy import meter_energy
from billing.report_heat_meter import heat_meter_days
from billing.report_household import household_statement
from billing.report_readings import meter_readings
from i18n import _

if TYPE_CHECKING:
    from billing.bills import BillRun
    from billing.heat import BuildingHeat
    from billing.service import Billing

__all__ = [
    "EVERY_KINDS",
    "KINDS",
    "OPTIONS",
    "Column",
    "Report",
    "Sheet",
    "build_report",
    "write_csv",
    "write_pdf",
    "write_xlsx",
]


@dataclass(frozen=True, slots=True)
class Column:
    """A report column: header, unit, and whether the totals row sums it."""

    name: str
    unit: str = ""
    total: bool = False


@dataclass(slots=True)
class Sheet:
    """A table of a report; ``chart`` is (category column, value columns) for a bar chart.

    ``notes`` flags cells by (row index, column index) with a reason (an uncertain bucket):
    CSV writes the value with a trailing ``*``, Excel adds the reason as a cell comment.
    """

    name: str
    columns: list[Column]
    rows: list[list[Any]] = field(default_factory=list)
    chart: tuple[int, list[int]] | None = None
    notes: dict[tuple[int, int], str] = field(default_factory=dict)

    def totals(self) -> list[Any] | None:
        """Return the totals row (None if no column is summed)."""
        if not any(c.total for c in self.columns):
            return None
        out: list[Any] = []
        for i, c in enumerate(self.columns):
            if i == 0:
                out.append("Total")
            elif c.total:
                vals = [r[i] for r in self.rows if isinstance(r[i], int | float | Decimal)]
                if vals and all(isinstance(v, Decimal) for v in vals):
                    out.append(sum(vals, Decimal("0.00")))
                else:
                    out.append(round(sum(float(v) for v in vals), 6))
            else:
                out.append(None)
        return out


@dataclass(slots=True)
class Report:
    """A report of one kind and period."""

    kind: str
    period: Period
    title: str
    sheets: list[Sheet]


def _kwh_per_m2(kwh: float, area: float | None) -> float | None:
    return round(kwh / area, 6) if area else None


def _energy(b: Billing, p: Period) -> list[Sheet]:
    run = b.bill(p.start, p.end)
    alloc = b.allocate_heat(p.start, p.end)
    heat_by_b = {x.id: x for x in alloc.buildings}
    accounts = Sheet(
        "accounts",
        [
            Column("account"),
            Column("tenant"),
            Column("building"),
            Column("area", "m2"),
            Column("energy", "kWh", True),
            Column("shared", "kWh", True),
            Column("unit", "kWh/m2"),
        ],
        chart=(0, [4]),
    )
    for bill in run.accounts:
        a = b.account_config(bill.id)
        accounts.rows.append(
            [
                bill.id,
                a.config.tenant,
                a.building,
                a.area_m2,
                bill.energy_kwh,
                bill.shared_kwh,
                _kwh_per_m2(bill.energy_kwh, a.area_m2),
            ]
        )
    households = Sheet(
        "households",
        [
            Column("household"),
            Column("building"),
            Column("area", "m2", True),
            Column("heat", "kWh", True),
            Column("heat unit", "kWh/m2"),
            Column("electricity", "kWh", True),
        ],
        chart=(0, [3, 5]),
    )
    hist = b._hist()
    for bld in b.site.buildings:
        heat = {h.id: h for h in heat_by_b[bld.id].households} if bld.id in heat_by_b else {}
        for h in bld.households:
            hh = heat.get(h.id)
            elec = sum(hist.delta(t, p.start, p.end) for t in h.tags if t.endswith("energy_kwh"))
            hk = hh.heat_kwh if hh else 0.0
            households.rows.append([h.id, bld.id, h.area_m2, hk, _kwh_per_m2(hk, h.area_m2), elec])
    return [accounts, households, *_unit(b, p, run, heat_by_b)]


def _unit(
    b: Billing,
    p: Period,
    run: BillRun | None = None,
    heat_by_b: Mapping[str, BuildingHeat] | None = None,
) -> list[Sheet]:
    if run is None:
        run = b.bill(p.start, p.end)
    if heat_by_b is None:
        heat_by_b = {x.id: x for x in b.allocate_heat(p.start, p.end).buildings}
    sheet = Sheet(
        "buildings",
        [
            Column("building"),
            Column("area", "m2", True),
            Column("heat", "kWh", True),
            Column("heat unit", "kWh/m2"),
            Column("electricity", "kWh", True),
            Column("shared", "kWh", True),
            Column("electricity unit", "kWh/m2"),
        ],
        chart=(0, [3, 6]),
    )
    for bld in b.site.buildings:
        area = sum(h.area_m2 for h in bld.households)
        heat = heat_by_b[bld.id].heat_kwh if bld.id in heat_by_b else 0.0
        loss = run.losses.get(bld.id)
        if loss is not None:
            elec, shared = loss.master_kwh, loss.shared_kwh
        else:
            elec = sum(
                x.energy_kwh for x in run.accounts if b.account_config(x.id).building == bld.id
            )
            shared = 0.0
        sheet.rows.append(
            [bld.id, area, heat, _kwh_per_m2(heat, area), elec, shared, _kwh_per_m2(elec, area)]
        )
    return [sheet]


def _heat(b: Billing, p: Period) -> list[Sheet]:
    sheet = Sheet(
        "heat",
        [
            Column("building"),
            Column("household"),
            Column("area", "m2", True),
            Column("open", "h"),
            Column("share"),
            Column("heat", "kWh", True),
            Column("unit", "kWh/m2"),
            Column("cost", "CNY", True),
            Column("estimated"),
        ],
        chart=(1, [5]),
    )
    for bld in b.allocate_heat(p.start, p.end).buildings:
        for h in bld.households:
            sheet.rows.append(
                [
                    bld.id,
                    h.id,
                    h.area_m2,
                    h.on_s / 3600,
                    round(h.share, 6),
                    h.heat_kwh,
                    _kwh_per_m2(h.heat_kwh, h.area_m2),
                    h.cost,
                    "yes" if h.estimated else "",
                ]
            )
    return [sheet]


def _heat_fees(b: Billing, p: Period) -> list[Sheet]:
    sheet = Sheet(
        "heat fees",
        [
            Column("building"),
            Column("household"),
            Column("area", "m2", True),
            Column("heat", "kWh", True),
            Column("advance", "CNY", True),
            Column("basic", "CNY", True),
            Column("metered", "CNY", True),
            Column("suspended fee", "CNY", True),
            Column("total", "CNY", True),
            Column("paid", "CNY", True),
            Column("settlement", "CNY", True),
            Column("held"),
            Column("suspended days"),
        ],
        chart=(1, [8]),
    )
    for f in b.heat_fees(p.start, p.end):
        sheet.rows.append(
            [
                f.building,
                f.household,
                f.area_m2,
                float(f.heat_kwh),
                f.advance,
                f.basic,
                f.metered,
                f.suspended_fee,
                f.total,
                f.paid,
                f.settlement,
                f.limit or "",
                f.suspended_days,
            ]
        )
    return [sheet]


def _bills(b: Billing, p: Period) -> list[Sheet]:
    sheet = Sheet(
        "bills",
        [
            Column("account"),
            Column("line"),
            Column("energy", "kWh"),
            Column("price", "CNY/kWh"),
            Column("amount", "CNY", True),
        ],
    )
    for bill in b.bill(p.start, p.end).accounts:
        for ln in bill.lines:
            sheet.rows.append([bill.id, ln.name, ln.kwh, ln.price, ln.amount])
    return [sheet]


_FIN_KINDS = [k for k in EntryKind if k is not EntryKind.REPLACEMENT]


def _financial(b: Billing, p: Period) -> list[Sheet]:
    fmt = {"day": "%Y-%m-%d %H:00", "month": "%Y-%m-%d"}.get(p.kind, "%Y-%m")
    cols = (
        [Column("period")]
        + [Column(k.value, "CNY", True) for k in _FIN_KINDS]
        + [Column("net", "CNY", True)]
    )
    by_time = Sheet(
        "by time",
        list(cols),
        chart=(
            0,
            [1 + _FIN_KINDS.index(EntryKind.TOPUP), 1 + _FIN_KINDS.index(EntryKind.CONSUMPTION)],
        ),
    )
    by_acct = Sheet("by account", [Column("account"), *cols[1:]])
    rows_t: dict[str, list[Decimal]] = {}
    rows_a: dict[str, list[Decimal]] = {}
    for e in b.ledger.entries(since=p.start, until=p.end):
        if e.kind is EntryKind.REPLACEMENT:
            continue
        i = _FIN_KINDS.index(e.kind)
        for key, rows in ((local_label(e.ts, b.tz, fmt), rows_t), (e.account, rows_a)):
            r = rows.setdefault(key, [Decimal("0.00")] * (len(_FIN_KINDS) + 1))
            r[i] += e.amount
            r[-1] += e.amount
    by_time.rows = [[k, *v] for k, v in sorted(rows_t.items())]
    by_acct.rows = [[k, *v] for k, v in sorted(rows_a.items())]
    return [by_time, by_acct]


def _lost_contact(b: Billing, p: Period) -> list[Sheet]:
    sheet = Sheet(
        "lost contact",
        [
            Column("device"),
            Column("building"),
            Column("offline", "h", True),
            Column("unknown", "h"),
            Column("online at end"),
        ],
        chart=(0, [2]),
    )
    defs = {d.name: d for d in b.site.tag_defs()}
    tags = [f"{d.id}.online" for d in b.site.devices if d.enabled]
    from historian.base import on_time_many

    hist = b._hist()
    ot = on_time_many(hist, tags, p.start, p.end)
    for t in tags:
        o = ot[t]
        offline = o.known_s - o.on_s
        last = hist.value_at(t, p.end)
        online_end = None if last is None else bool(last.numeric)
        if offline > 0 or o.unknown_s > 0 or online_end is False:
            d = defs.get(t)
            sheet.rows.append(
                [
                    t.rsplit(".", 1)[0],
                    d.building if d else None,
                    offline / 3600,
                    o.unknown_s / 3600,
                    "" if online_end is None else str(online_end).lower(),
                ]
            )
    return [sheet]


def _alarms(b: Billing, p: Period) -> list[Sheet]:
    sheet = Sheet(
        "alarms",
        [
            Column("raised"),
            Column("priority"),
            Column("area"),
            Column("key"),
            Column("message"),
            Column("state"),
            Column("acked by"),
            Column("cleared"),
        ],
    )
    path = None if b.data_dir is None else b.data_dir / "alarms.sqlite"
    if path is None or not path.exists():
        return [sheet]
    from alarms.journal import AlarmJournal

    with AlarmJournal.open(path) as journal:
        occ = journal.occurrences(since=p.start, until=p.end, limit=100_000)
    for o in sorted(occ, key=lambda x: x["raised_ts"]):
        cleared = o.get("cleared_ts")
        sheet.rows.append(
            [
                local_label(o["raised_ts"], b.tz),
                o["priority"],
                o["area"],
                o["key"],
                o["message"],
                o["state"],
                o.get("acked_by") or "",
                "" if cleared is None else local_label(cleared, b.tz),
            ]
        )
    return [sheet]


KINDS: dict[str, tuple[str, Callable[[Billing, Period], list[Sheet]]]] = {
    "energy": ("Energy per account, household and building", _energy),
    "heat": ("Heat allocation", _heat),
    "unit": ("Unit consumption per m2", lambda b, p: _unit(b, p)),
    "bills": ("Electricity bills", _bills),
    "heat_fees": ("Heat fees (area fee, basic + metered, settlement)", _heat_fees),
    "financial": ("Top-ups, refunds, reversals and charges", _financial),
    "lost-contact": ("Devices that lost contact", _lost_contact),
    "alarms": ("Alarms", _alarms),
    "meter_energy": ("Energy per meter and bucket", lambda b, p: meter_energy(b, p)),
    "room_compliance": ("Room-temperature compliance", room_compliance),
    "meter_readings": ("Meter readings", meter_readings),
    "heat_meter_days": ("Heat meter daily parameters", lambda b, p: heat_meter_days(b, p)),
    "building_heat": (
        "Buildings by heat per m2 per degree-day and return temperature",
        lambda b, p: building_heat(b, p),
    ),
    "household_statement": (
        "Household statement",
        lambda b, p: household_statement(b, p),
    ),
}

#: The options of ``build_report`` and the kinds that take each.
OPTIONS: dict[str, tuple[str, ...]] = {
    "base_c": ("building_heat",),
    "outdoor": ("building_heat",),
    "household": ("household_statement",),
}

#: Report kinds that take ``every`` (the bucket width: 1h, 1d, 1mo), with their builder.
EVERY_KINDS: dict[str, Callable[[Billing, Period, str], list[Sheet]]] = {
    "meter_energy": meter_energy,
}


def build_report(
    b: Billing,
    kind: str,
    period: str | Period,
    *,
    every: str | None = None,
    base_c: float | None = None,
    outdoor: str | None = None,
    household: str | None = None,
) -> Report:
    """Return report ``kind`` (a key of ``KINDS``) for ``period``; ``ValueError`` if unknown.

    ``period`` is a period text (module docstring) or a ``Period`` (any window). ``every``
    (``1h``, ``1d``, ``1mo``) is the bucket width of the kinds in ``EVERY_KINDS``; ``base_c``
    (degree-day base, degC) and ``outdoor`` (outdoor temperature tag) are ``building_heat``'s,
    ``household`` is ``household_statement``'s (``OPTIONS``).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown report {kind!r}; expected one of {', '.join(KINDS)}")
    if every is not None and kind not in EVERY_KINDS:
        raise ValueError(f"report {kind!r} takes no every (only {', '.join(EVERY_KINDS)})")
    given = {"base_c": base_c, "outdoor": outdoor, "household": household}
    for name, value in given.items():
        if value is not None and kind not in OPTIONS[name]:
            only = ", ".join(OPTIONS[name])
            raise ValueError(
                _(
                    "report {kind} takes no {name} (only {kinds})",
                    kind=repr(kind),
                    name=name,
                    kinds=only,
                )
            )
    p = period if isinstance(period, Period) else parse_period(period, b.tz)
    title, fn = KINDS[kind]
    if kind == "building_heat":
        sheets = building_heat(b, p, base_c=base_c, outdoor=outdoor)
    elif kind == "household_statement":
        sheets = household_statement(b, p, household)
        title = f"{title} {household}"
    elif every is None:
        sheets = fn(b, p)
    else:
        sheets = EVERY_KINDS[kind](b, p, every)
        title = f"{title} ({every})"
    return Report(kind, p, f"{b.site.site.name or b.site.site.id}: {title}, {p.label}", sheets)


def _cell(v: Any) -> Any:
    if isinstance(v, Decimal):
        return float(v)
    return v


def _header(c: Column) -> str:
    return f"{c.name} [{c.unit}]" if c.unit else c.name


def write_csv(report: Report, path: str | Path | TextIO) -> None:
    """Write every sheet as a section: sheet name, header row (with units), rows, totals.

    ``path`` is a file name or an open text stream (``sys.stdout``).
    """
    if not isinstance(path, str | Path):
        _write_csv(report, path)
        return
    with open(path, "w", newline="", encoding="utf-8") as fh:
        _write_csv(report, fh)


def _write_csv(report: Report, fh: TextIO) -> None:
    w = csv.writer(fh)
    w.writerow([report.title])
    for sheet in report.sheets:
        w.writerow([])
        w.writerow([f"# {sheet.name}"])
        w.writerow([_header(c) for c in sheet.columns])
        for i, r in enumerate(sheet.rows):
            w.writerow([_csv_cell(v, (i, j) in sheet.notes) for j, v in enumerate(r)])
        t = sheet.totals()
        if t is not None:
            w.writerow(["" if v is None else v for v in t])


def _csv_cell(v: Any, flagged: bool) -> Any:
    if v is None:
        return "*" if flagged else ""
    return f"{v}*" if flagged else v


def write_xlsx(report: Report, path: str | Path) -> None:
    """Write one worksheet per sheet: title, headers with units, rows, totals, a bar chart.

    Row 1 is the title, row 2 the headers (``energy [kWh]``), data from row 3, then the
    totals row (values, not formulas, so every reader shows them).
    """
    from openpyxl import Workbook
    from openpyxl.chart import BarChart, Reference
    from openpyxl.comments import Comment
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    default = wb.active  # the empty sheet a new workbook starts with
    if default is not None:
        wb.remove(default)
    for sheet in report.sheets:
        ws = wb.create_sheet(sheet.name[:31])
        ws.append([report.title])
        ws["A1"].font = Font(bold=True, size=12)
        ws.append([_header(c) for c in sheet.columns])
        for cell in ws[2]:
            cell.font = Font(bold=True)
        first = 3
        for r in sheet.rows:
            ws.append([_cell(v) for v in r])
        for (i, j), note in sheet.notes.items():
            ws.cell(row=first + i, column=j + 1).comment = Comment(f"uncertain: {note}", "scada")
        last = first + len(sheet.rows) - 1
        t = sheet.totals()
        if t is not None:
            ws.append([_cell(v) for v in t])
            for cell in ws[ws.max_row]:
                cell.font = Font(bold=True)
        for i, c in enumerate(sheet.columns, start=1):
            fmt = {"CNY": "0.00", "kWh": "0.000", "h": "0.00", "m2": "0.0", "kWh/m2": "0.000"}.get(
                c.unit
            )
            if fmt is not None:
                for row in ws.iter_rows(min_row=first, min_col=i, max_col=i):
                    row[0].number_format = fmt
            ws.column_dimensions[get_column_letter(i)].width = max(10, len(_header(c)) + 2)
        if sheet.chart is not None and sheet.rows:
            cat, vals = sheet.chart
            chart = BarChart()
            chart.title = f"{sheet.name}: {', '.join(sheet.columns[v].name for v in vals)}"
            chart.y_axis.title = sheet.columns[vals[0]].unit
            for v in vals:
                data = Reference(ws, min_col=v + 1, min_row=2, max_row=last)
                chart.add_data(data, titles_from_data=True)
            chart.set_categories(Reference(ws, min_col=cat + 1, min_row=first, max_row=last))
            chart.width, chart.height = 24, 10
            ws.add_chart(chart, f"{get_column_letter(len(sheet.columns) + 2)}2")
    wb.save(str(path))


def write_pdf(report: Report, path: str | Path, tz: str, **kwargs: Any) -> None:
    """Write ``report`` as a PDF (``billing.report_pdf.report_pdf``; ``tz`` the site's zone)."""
    from billing.report_pdf import report_pdf

    Path(path).write_bytes(report_pdf(report, tz, **kwargs))


def local_date(ts: float, tz: str) -> str:
    """Return the local date of ``ts`` as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(ts, zoneinfo.ZoneInfo(tz)).strftime("%Y-%m-%d")
