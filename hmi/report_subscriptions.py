"""The report centre's subscriptions: a report e-mailed on a schedule, listed, edited, deleted.

:class:`SubscriptionPanel` has its own :class:`~hmi.report_form.ReportForm` (report, preset,
scope, options: no custom period, a subscription's period moves with time), the file format,
the schedule (daily / weekly / monthly at a site time) and the recipients, and the list of the
user's subscriptions (an admin sees everyone's) with the next run, the last run and its
result. Picking a row loads it into the form; "save changes" and "delete" act on it. The
store is ``scada.services.subscriptions`` (``<data-dir>/subscriptions.sqlite``); the server's
scheduler runs them (``scada.services.report_delivery``). Bad fields are a message naming
the field. Loop-thread only (the store is a local SQLite file: quick calls).
"""

from __future__ import annotations

import html
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, InlineStyleSheet
from bokeh.models.widgets import Button, DataTable, Select, TableColumn, TextInput

from hmi.layout import html_div, redraw_on_update, sized_inputs, text_sized_table
from hmi.report_form import ReportForm
from hmi.session import HmiSession
from hmi.theme import AUTO_WIDTH, SELECT_CSS
from i18n import N_, _
from scada.services.subscriptions import EVERY, FORMATS, Subscription, SubscriptionStore, validate

__all__ = ["SubscriptionPanel"]

WEEKDAYS = [
    N_("Monday"),
    N_("Tuesday"),
    N_("Wednesday"),
    N_("Thursday"),
    N_("Friday"),
    N_("Saturday"),
    N_("Sunday"),
]
EVERY_LABELS = {"daily": N_("daily"), "weekly": N_("weekly"), "monthly": N_("monthly")}
_COLS = ("id", "report", "scope", "period", "schedule", "to", "next", "last", "result")


def _select(title: str, options: list[Any], value: str, name: str) -> Select:
    s = Select(title=title, options=options, value=value, name=name)
    s.stylesheets = [InlineStyleSheet(css=SELECT_CSS)]
    return s


class SubscriptionPanel:
    """The subscriptions of one session (module docstring)."""

    def __init__(self, session: HmiSession, store: SubscriptionStore) -> None:
        self.session = session
        self.store = store
        site = session.services.site
        self.tz = site.site.timezone
        self.form = ReportForm(site, custom=False, prefix="sub")
        self.format = _select(_("File"), list(FORMATS), "pdf", "sub-format")
        self.every = _select(
            _("Schedule"), [(e, _(EVERY_LABELS[e])) for e in EVERY], "daily", "sub-every"
        )
        self.at = TextInput(title=_("at (HH:MM)"), value="07:00", name="sub-at", width=120)
        self.weekday = _select(
            _("Weekday"), [(str(i), _(d)) for i, d in enumerate(WEEKDAYS)], "0", "sub-weekday"
        )
        self.day = _select(_("Day of month"), [str(d) for d in range(1, 29)], "1", "sub-day")
        self.recipients = TextInput(
            title=_("e-mail recipients (comma separated)"), name="sub-recipients", width=300
        )
        sized_inputs(self.at, self.recipients)
        self.every.on_change("value", lambda _a, _o, _n: self._follow_every())
        self.add_btn = Button(label=_("Subscribe"), name="sub-add", styles=AUTO_WIDTH)
        self.save_btn = Button(label=_("Save changes"), name="sub-save", styles=AUTO_WIDTH)
        self.del_btn = Button(label=_("Delete"), name="sub-delete", styles=AUTO_WIDTH)
        self.add_btn.on_click(self.add)
        self.save_btn.on_click(self.save)
        self.del_btn.on_click(self.delete)
        self.message = html_div("", name="sub-message")
        self.source = ColumnDataSource({k: [] for k in _COLS}, name="subscriptions")
        titles = {
            "id": "#",
            "report": _("Report"),
            "scope": _("Scope"),
            "period": _("Period"),
            "schedule": _("Schedule"),
            "to": _("Recipients"),
            "next": _("Next run"),
            "last": _("Last run"),
            "result": _("Result"),
        }
        self.table = DataTable(
            source=self.source,
            columns=[TableColumn(field=k, title=titles[k]) for k in _COLS],
            name="subscription-table",
            sizing_mode="stretch_both",
            min_height=180,
            index_position=None,
        )
        redraw_on_update(self.table, self.source)
        text_sized_table(self.table, session.doc)
        self.source.selected.on_change("indices", lambda _a, _o, _n: self.load_selected())
        self._follow_every()
        wrap = {"flex-wrap": "wrap", "gap": "4px", "align-items": "end"}
        self.layout = column(
            html_div(
                html.escape(
                    _(
                        "The server e-mails the report as a file on the schedule (site time, {tz}).",
                        tz=self.tz,
                    )
                ),
                sizing_mode="stretch_width",
            ),
            row(*self.form.widgets, sizing_mode="stretch_width", styles=wrap),
            row(
                self.format,
                self.every,
                self.at,
                self.weekday,
                self.day,
                self.recipients,
                self.add_btn,
                self.save_btn,
                self.del_btn,
                sizing_mode="stretch_width",
                styles=wrap,
            ),
            self.message,
            self.table,
            sizing_mode="stretch_both",
        )
        self.refresh()

    def _follow_every(self) -> None:
        self.weekday.visible = self.every.value == "weekly"
        self.day.visible = self.every.value == "monthly"

    def _mine(self) -> list[Subscription]:
        user = self.session.user
        admin = user is not None and user.role == "admin"
        return self.store.all(None if admin else self.session.user_name)

    def _when(self, ts: float | None) -> str:
        if ts is None:
            return ""
        return datetime.fromtimestamp(ts, ZoneInfo(self.tz)).strftime("%Y-%m-%d %H:%M")

    def refresh(self) -> None:
        """List the subscriptions again."""
        subs = self._mine()
        data: dict[str, list[Any]] = {k: [] for k in _COLS}
        for s in subs:
            sched = _(EVERY_LABELS[s.every])
            if s.every == "weekly":
                sched += " " + _(WEEKDAYS[s.weekday])
            elif s.every == "monthly":
                sched += " " + _("day {day}", day=s.day)
            state = "" if s.last_ok is None else ("✓ " if s.last_ok else "✕ ")
            data["id"].append(s.id)
            data["report"].append(f"{s.kind} ({s.format})")
            data["scope"].append(s.scope)
            data["period"].append(s.preset)
            data["schedule"].append(f"{sched} {s.at}")
            data["to"].append(", ".join(s.recipients))
            data["next"].append(self._when(s.next_ts))
            data["last"].append(self._when(s.last_ts))
            data["result"].append(state + s.last_result)
        self.source.data = data
        self.source.selected.indices = []

    def _say(self, text: str, bad: bool = False, key: str = "") -> None:
        cls = "result-bad" if bad else "result-ok"
        self.message.text = (
            f'<span class="{cls}" data-sub-message="{key or ("error" if bad else "ok")}">'
            f"{html.escape(text)}</span>"
        )

    def fields(self) -> dict[str, Any]:
        """Return the form as validated subscription fields; ``ValueError`` naming the field."""
        site = self.session.services.site
        raw = {
            "kind": self.form.kind.value,
            "scope": self.form.scope.value,
            "options": self.form.options(),
            "preset": self.form.preset.value,
            "format": self.format.value,
            "every": self.every.value,
            "at": self.at.value.strip(),
            "weekday": int(self.weekday.value),
            "day": int(self.day.value),
            "recipients": self.recipients.value,
        }
        return validate(raw, {b.id for b in site.buildings}, {h.id for h in site.households()})

    def selected(self) -> Subscription | None:
        """Return the picked subscription (a row of the table), or None."""
        idx = self.source.selected.indices
        ids = self.source.data["id"]
        if not idx or idx[0] >= len(ids):
            return None
        try:
            return self.store.get(int(ids[idx[0]]))
        except KeyError:
            return None

    def add(self) -> None:
        """Store the form as a new subscription of the user."""
        try:
            sub = self.store.add(self.session.user_name, self.fields(), now=time.time())
        except ValueError as exc:
            self._say(str(exc), bad=True)
            return
        self.refresh()
        self._say(
            _("subscribed: {kind}, next run {when}", kind=sub.kind, when=self._when(sub.next_ts)),
            key="added",
        )

    def save(self) -> None:
        """Save the form into the picked subscription."""
        sub = self.selected()
        if sub is None:
            self._say(_("pick a subscription in the list first"), bad=True)
            return
        try:
            self.store.update(sub.id, self.fields(), now=time.time())
        except ValueError as exc:
            self._say(str(exc), bad=True)
            return
        self.refresh()
        self._say(_("subscription {id} saved", id=sub.id), key="saved")

    def delete(self) -> None:
        """Delete the picked subscription."""
        sub = self.selected()
        if sub is None:
            self._say(_("pick a subscription in the list first"), bad=True)
            return
        self.store.delete(sub.id)
        self.refresh()
        self._say(_("subscription {id} deleted", id=sub.id), key="deleted")

    def load_selected(self) -> None:
        """Put the picked subscription into the form."""
        sub = self.selected()
        if sub is None:
            return
        f = self.form
        f.kind.value = sub.kind
        f.follow_kind()
        f.scope.value = sub.scope
        f.preset.value = sub.preset
        f.every.value = str(sub.options.get("every", "1d"))
        f.base_c.value = str(sub.options.get("base_c", "18"))
        f.outdoor.value = str(sub.options.get("outdoor", ""))
        self.format.value = sub.format
        self.every.value = sub.every
        self.at.value = sub.at
        self.weekday.value = str(sub.weekday)
        self.day.value = str(sub.day)
        self.recipients.value = ", ".join(sub.recipients)
