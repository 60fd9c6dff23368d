"""Report periods by preset and report scopes: what the report centre and subscriptions ask for.

**Presets** (site time): ``yesterday``, ``this-month`` (to the end of today), ``last-month``,
``this-season`` (the heating season that began last, to the end of today or its end),
``last-season`` (the last heating season that is over). The season dates come from the heat
tariff (``heat_tariff.season_start`` / ``season_end``: the site's, else the first building's).

**Scopes**: ``estate`` (every kind), ``building:<id>`` (the kinds whose sheets have a
``building`` column: only that building's rows are kept and the totals are those of the kept
rows), ``household:<id>`` (``household_statement``, which needs one). ``build_scoped``
raises ``ValueError`` naming the field (``scope:``, ``period:``) for a scope the kind does not
take, an unknown building or household, or a building without a row in the report.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from billing.periods import Period, local_midnight
from i18n import N_, _

if TYPE_CHECKING:
    from billing.config import HeatTariff
    from billing.reports import Report
    from billing.service import Billing
    from billing.site import BillingSite

__all__ = [
    "BUILDING_KINDS",
    "PRESETS",
    "build_scoped",
    "heat_tariff",
    "preset_period",
    "scopes_of",
]

#: Period presets (value -> label; labels translated where shown).
PRESETS: dict[str, str] = {
    "yesterday": N_("yesterday"),
    "this-month": N_("this month"),
    "last-month": N_("last month"),
    "this-season": N_("this heating season"),
    "last-season": N_("last heating season"),
}

#: Kinds whose sheets name each row's building: they take a ``building:`` scope.
BUILDING_KINDS = frozenset(
    {
        "energy",
        "heat",
        "heat_fees",
        "unit",
        "lost-contact",
        "meter_energy",
        "room_compliance",
        "meter_readings",
        "heat_meter_days",
        "building_heat",
    }
)


def scopes_of(kind: str) -> tuple[str, ...]:
    """Return the scope kinds report ``kind`` takes (``estate``, ``building``, ``household``)."""
    if kind == "household_statement":
        return ("household",)
    if kind in BUILDING_KINDS:
        return ("estate", "building")
    return ("estate",)


def heat_tariff(site: BillingSite) -> HeatTariff | None:
    """Return the heat tariff whose season dates the presets use (site's, else a building's)."""
    if site.heat_tariff is not None:
        return site.heat_tariff
    for b in site.buildings:
        if b.heat is not None and b.heat.tariff is not None:
            return b.heat.tariff
    return None


def _month(d: date, delta: int) -> date:
    m = d.month - 1 + delta
    return date(d.year + m // 12, m % 12 + 1, 1)


def preset_period(preset: str, site: BillingSite, now_ts: float) -> Period:
    """Return the ``Period`` of ``preset`` at ``now_ts``; ``ValueError`` naming ``period``."""
    tz = site.site.timezone
    today = datetime.fromtimestamp(now_ts, zoneinfo.ZoneInfo(tz)).date()
    tomorrow = today + timedelta(days=1)
    if preset == "yesterday":
        a, b = today - timedelta(days=1), today
    elif preset == "this-month":
        a, b = today.replace(day=1), tomorrow
    elif preset == "last-month":
        a, b = _month(today, -1), today.replace(day=1)
    elif preset in ("this-season", "last-season"):
        from billing.heat_accounts import last_season, season_of

        tariff = heat_tariff(site)
        if tariff is None:
            raise ValueError(
                _("period: no heat tariff is configured, so there are no heating season dates")
            )
        s = last_season(tariff, now_ts, tz)
        if preset == "last-season" and s.end > now_ts:
            s = season_of(tariff, s.first_day.year - 1, tz)
        a = s.first_day
        b = (
            min(s.last_day + timedelta(days=1), tomorrow)
            if preset == "this-season"
            else (s.last_day + timedelta(days=1))
        )
        label = f"{_(PRESETS[preset])} {s.label} ({a.isoformat()} .. {b.isoformat()})"
        return Period("window", label, local_midnight(a, tz), local_midnight(b, tz))
    else:
        raise ValueError(
            _(
                "period: unknown preset {preset}; expected one of {presets}",
                preset=repr(preset),
                presets=", ".join(PRESETS),
            )
        )
    label = a.isoformat() if b - a == timedelta(days=1) else f"{a.isoformat()} .. {b.isoformat()}"
    if preset in ("this-month", "last-month"):
        label = a.isoformat()[:7] + ("" if preset == "last-month" else f" .. {today.isoformat()}")
    return Period(
        "day" if preset == "yesterday" else "window",
        label,
        local_midnight(a, tz),
        local_midnight(b, tz),
    )


def _parse_scope(scope: str) -> tuple[str, str]:
    kind, _sep, target = (scope or "estate").partition(":")
    return kind.strip(), target.strip()


def build_scoped(
    b: Billing, kind: str, period: Period, scope: str = "estate", **options: Any
) -> Report:
    """Return report ``kind`` of ``period`` limited to ``scope`` (module docstring).

    ``options`` are ``build_report``'s (``base_c``, ``outdoor``, ``every``). Blocking.
    """
    from billing.reports import KINDS, build_report

    if kind not in KINDS:
        raise ValueError(_("report: unknown report {kind}", kind=repr(kind)))
    what, target = _parse_scope(scope)
    allowed = scopes_of(kind)
    if what not in allowed:
        raise ValueError(
            _(
                "scope: report {kind} takes a scope of {allowed}, not {scope}",
                kind=kind,
                allowed=" / ".join(allowed),
                scope=what,
            )
        )
    opts = {k: v for k, v in options.items() if v is not None}
    if what == "household":
        known = {h.id for h in b.site.households()}
        if target not in known:
            raise ValueError(_("scope: unknown household {id}", id=repr(target)))
        return build_report(b, kind, period, household=target, **opts)
    if what == "building" and target not in {x.id for x in b.site.buildings}:
        raise ValueError(_("scope: unknown building {id}", id=repr(target)))
    report = build_report(b, kind, period, **opts) if opts else b.report(kind, period)
    if what != "building":
        return report
    return _only_building(report, target)


def _only_building(report: Report, building: str) -> Report:
    from billing.reports import Sheet

    sheets = []
    kept_any = False
    for s in report.sheets:
        col = next((i for i, c in enumerate(s.columns) if c.name == "building"), None)
        if col is None:
            sheets.append(s)
            continue
        keep = [i for i, r in enumerate(s.rows) if r[col] == building]
        kept_any = kept_any or bool(keep)
        new_index = {old: new for new, old in enumerate(keep)}
        notes = {(new_index[i], j): v for (i, j), v in s.notes.items() if i in new_index}
        sheets.append(Sheet(s.name, s.columns, [s.rows[i] for i in keep], s.chart, notes))
    if not kept_any:
        raise ValueError(_("scope: building {id} has no rows in this report", id=repr(building)))
    return replace(report, title=f"{report.title} ({building})", sheets=sheets)
