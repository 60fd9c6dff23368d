"""The report centre's form: report, period (site-time presets or from / to), scope, options.

:class:`ReportForm` holds the widgets; ``request(now)`` reads them into a :class:`ReportRequest`
or raises ``ValueError`` naming the field (``from: ...``). Which scopes and options are shown
follows the picked report (``billing.report_scope.scopes_of``, ``billing.reports.OPTIONS``).
The subscription panel reuses the form (without the custom period). Loop-thread only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from bokeh.models import InlineStyleSheet
from bokeh.models.widgets import Select, TextInput

from billing.periods import Period, local_midnight
from billing.report_scope import PRESETS, build_scoped, preset_period, scopes_of
from billing.reports import EVERY_KINDS, KINDS, OPTIONS
from hmi.layout import sized_inputs
from hmi.theme import SELECT_CSS
from i18n import N_, _

__all__ = ["CUSTOM", "EVERY_OPTIONS", "ReportForm", "ReportRequest"]

#: The preset value of a custom from / to period.
CUSTOM = "custom"
#: ``meter_energy``'s bucket widths (value, label).
EVERY_OPTIONS = [("1d", N_("per day")), ("1h", N_("per hour")), ("1mo", N_("per month"))]


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """What to build: report kind, period, scope and options (``build_scoped``'s)."""

    kind: str
    period: Period
    scope: str
    options: dict[str, Any] = field(default_factory=dict)

    def build(self, billing: Any) -> Any:
        """Return the report (blocking: run in a worker thread)."""
        return build_scoped(billing, self.kind, self.period, self.scope, **self.options)


def _select(title: str, options: list[Any], value: str, name: str) -> Select:
    s = Select(title=title, options=options, value=value, name=name)
    s.stylesheets = [InlineStyleSheet(css=SELECT_CSS)]
    return s


class ReportForm:
    """The form's widgets over one site (module docstring)."""

    def __init__(self, site: Any, *, custom: bool = True, prefix: str = "report") -> None:
        self.site = site
        self.tz: str = site.site.timezone
        self.kind = _select(
            _("Report"),
            [(k, _(title)) for k, (title, _fn) in KINDS.items()],
            "meter_energy",
            f"{prefix}-kind",
        )
        presets = [(k, _(v)) for k, v in PRESETS.items()]
        if custom:
            presets.append((CUSTOM, _("from / to")))
        self.preset = _select(_("Period"), presets, "this-month", f"{prefix}-preset")
        self.start = TextInput(
            title=_("from (YYYY-MM-DD)"), name=f"{prefix}-from", visible=False, width=140
        )
        self.end = TextInput(
            title=_("to, last day (YYYY-MM-DD)"), name=f"{prefix}-to", visible=False, width=140
        )
        self.scope = _select(_("Scope"), [], "estate", f"{prefix}-scope")
        self.every = _select(
            _("Columns"), [(v, _(lb)) for v, lb in EVERY_OPTIONS], "1d", f"{prefix}-every"
        )
        self.base_c = TextInput(
            title=_("base temperature [degC]"), value="18", name=f"{prefix}-base-c", width=120
        )
        self.outdoor = TextInput(
            title=_("outdoor temperature tag"), name=f"{prefix}-outdoor", width=180
        )
        sized_inputs(self.start, self.end, self.base_c, self.outdoor)
        self.kind.on_change("value", lambda _a, _o, _n: self.follow_kind())
        self.preset.on_change("value", lambda _a, _o, _n: self.follow_preset())
        self.follow_kind()

    @property
    def widgets(self) -> list[Any]:
        """The widgets in their order on the page."""
        return [
            self.kind,
            self.preset,
            self.start,
            self.end,
            self.scope,
            self.every,
            self.base_c,
            self.outdoor,
        ]

    def scope_options(self, kind: str) -> list[tuple[str, str]]:
        """Return the scopes report ``kind`` takes, as (value, label)."""
        out: list[tuple[str, str]] = []
        allowed = scopes_of(kind)
        if "estate" in allowed:
            out.append(("estate", _("whole estate")))
        if "building" in allowed:
            for b in self.site.buildings:
                name = getattr(b, "name", None)
                label = f"{name} ({b.id})" if isinstance(name, str) and name else b.id
                out.append((f"building:{b.id}", _("building {name}", name=label)))
        if "household" in allowed:
            for h in self.site.households():
                out.append((f"household:{h.id}", _("household {id}", id=h.id)))
        return out

    def follow_kind(self) -> None:
        """Show the scopes and options of the picked report."""
        kind = self.kind.value
        opts = self.scope_options(kind)
        self.scope.options = opts  # type: ignore[assignment]
        if self.scope.value not in {v for v, _lb in opts}:
            self.scope.value = opts[0][0] if opts else "estate"
        self.every.visible = kind in EVERY_KINDS
        self.base_c.visible = kind in OPTIONS["base_c"]
        self.outdoor.visible = kind in OPTIONS["outdoor"]

    def follow_preset(self) -> None:
        """Show from / to for a custom period."""
        custom = self.preset.value == CUSTOM
        self.start.visible = self.end.visible = custom

    def options(self) -> dict[str, Any]:
        """Return the picked report's options; ``ValueError`` naming a bad one."""
        kind = self.kind.value
        out: dict[str, Any] = {}
        if kind in EVERY_KINDS and self.every.value != "1d":
            out["every"] = self.every.value
        if kind in OPTIONS["base_c"] and self.base_c.value.strip():
            try:
                base = float(self.base_c.value.strip().replace(",", "."))
            except ValueError:
                raise ValueError(
                    _("base_c: expected a temperature in degC, got {v}", v=self.base_c.value)
                ) from None
            if not -50.0 <= base <= 50.0:
                raise ValueError(_("base_c: expected -50 .. 50 degC"))
            out["base_c"] = base
        if kind in OPTIONS["outdoor"] and self.outdoor.value.strip():
            out["outdoor"] = self.outdoor.value.strip()
        return out

    def period(self, now: float) -> Period:
        """Return the picked period; ``ValueError`` naming the field."""
        if self.preset.value != CUSTOM:
            return preset_period(self.preset.value, self.site, now)
        days = []
        for name, w in (("from", self.start), ("to", self.end)):
            try:
                days.append(date.fromisoformat(w.value.strip()))
            except ValueError:
                raise ValueError(
                    _("{field}: expected a date YYYY-MM-DD, got {v}", field=name, v=repr(w.value))
                ) from None
        a, b = days
        if b < a:
            raise ValueError(_("to: the last day is before the first"))
        if (b - a).days > 3 * 366:
            raise ValueError(_("to: at most three years"))
        label = f"{a.isoformat()} .. {b.isoformat()}"
        end = local_midnight(b + timedelta(days=1), self.tz)
        return Period("window", label, local_midnight(a, self.tz), end)

    def request(self, now: float) -> ReportRequest:
        """Return the form as a request; ``ValueError`` naming the first bad field."""
        return ReportRequest(self.kind.value, self.period(now), self.scope.value, self.options())
