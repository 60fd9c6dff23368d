"""Alarm page: the alarm list (a table on a desk, cards on a phone), acknowledge, shelve, filters.

Rows are alarm occurrences from the engine (``services.alarms``), newest first, each with its
priority indicator (shape + number + colour, :func:`hmi.banner.priority_icon`), its state in
words ("active, unacknowledged", "shelved until 16:00 CST"), its message and its time in the
site's zone. The page follows the engine's events: every event re-reads the list and patches
the rows that changed, so an acknowledgement or a shelving shows the moment it lands, whoever
made it (this page, another operator, the REST API). Acknowledging names exactly the
occurrences the operator saw.

Why the table needs :func:`hmi.layout.redraw_on_update`: Bokeh's DataTable redraws when its CDSView changes,
and the view changes only when the number of rows does; a patch, or new data of the same
length, updates the browser's data but leaves the old cells on screen. The hook emits the
view's change on every data change and patch.

Phone (viewport up to 600 px wide): CSS hides the table and shows the same rows as cards, with
the message in full; tapping a card selects it (the table's selection, synchronised).

Buttons are disabled for roles that may not ack (``alarms.ack``) or shelve (``alarms.shelve``);
actions go through the alarm operations (``services.alarm_ops``), which audit each alarm with
the user and the source ``hmi <client address>``. Loop-thread only, like the session.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, CustomJS, InlineStyleSheet
from bokeh.models.widgets import (
    Button,
    CheckboxButtonGroup,
    DataTable,
    HTMLTemplateFormatter,
    Select,
    TableColumn,
    TextInput,
    Toggle,
)

from alarms.model import Alarm, AlarmFilter, AlarmState
from hmi.banner import PRIORITY_CSS, priority_icon, priority_name
from hmi.layout import (
    TABLE_TEXT_CSS,
    denied_body,
    html_div,
    page_allowed,
    page_frame,
    redraw_on_update,
    select_options,
    sized_inputs,
    text_sized_table,
)
from hmi.session import HmiSession
from hmi.theme import PAGE_FONT, PANEL, PANEL_EDGE, TEXT_DIM
from hmi.timefmt import localised_time_text, site_tz
from i18n import N_, _, ngettext
from scada.services.alarm_ops import AlarmOpError, AlarmOps

__all__ = ["PHONE_MAX_PX", "alarm_rows", "make_alarms", "state_words"]

log = logging.getLogger(__name__)

#: Viewports up to this width show cards instead of the table.
PHONE_MAX_PX = 600
STATE_FILTERS: dict[str, list[str] | None] = {
    N_("all"): None,
    N_("unacknowledged"): ["unacknowledged", "rtn_unacknowledged"],
    N_("acknowledged"): ["acknowledged"],
    N_("shelved"): ["shelved"],
    N_("out of service"): ["out_of_service"],
}
SHELVE_DURATIONS = {"15 min": 900.0, "1 h": 3600.0, "8 h": 8 * 3600.0, "24 h": 86400.0}
ROW_KEYS = (
    "occurrence",
    "key",
    "priority",
    "picon",
    "pname",
    "time",
    "state",
    "unacked",
    "message",
    "source",
    "area",
)


#: Card selection: a tap on a card toggles its checkbox; the table's selection follows.
PICK_JS = """
if (window.hmiAlarmPick) { return; }
window.hmiAlarmPick = true;
document.addEventListener("click", (ev) => {
  const el = ev.composedPath()[0];
  if (!(el instanceof HTMLInputElement) || !el.dataset.alarmPick) { return; }
  const i = source.data.key.indexOf(el.dataset.alarmPick);
  if (i < 0) { return; }
  const picked = new Set(source.selected.indices);
  if (el.checked) { picked.add(i); } else { picked.delete(i); }
  source.selected.indices = [...picked].sort((a, b) => a - b);
});
"""

TABLE_CSS = (
    PRIORITY_CSS
    + f"""
@media (max-width: {PHONE_MAX_PX}px) {{ :host {{ display: none !important; }} }}
.slick-cell svg.prio {{ vertical-align: -0.25em; }}
.bk-data-table input[type="checkbox"] {{ width: 20px; height: 20px; margin: 0.15em 3px 0 3px; }}
.slick-cell .st-unacked {{ font-weight: 700; }}
"""
)
CARDS_CSS = (
    PRIORITY_CSS
    + f"""
:host {{ overflow-y: auto; }}
@media (min-width: {PHONE_MAX_PX + 1}px) {{ :host {{ display: none !important; }} }}
.cards {{ display: flex; flex-direction: column; gap: 0.5em; width: 100%; }}
.card {{ display: grid; grid-template-columns: auto 1fr; gap: 0.15em 0.6em; align-items: start;
         background: {PANEL}; border: 1px solid {PANEL_EDGE}; border-radius: 4px; padding: 0.5em 0.6em;
         box-sizing: border-box; width: 100%; min-width: 0; overflow-wrap: anywhere; cursor: pointer; }}
.card.picked {{ outline: 3px solid #1A1A1A; }}
.card input {{ width: 1.3em; height: 1.3em; margin: 0.1em 0 0 0; grid-row: span 3; }}
.card .head {{ display: flex; flex-wrap: wrap; gap: 0.2em 0.5em; align-items: center; }}
.card .state.unacked {{ font-weight: 700; }}
.card .msg {{ font-size: 1.1em; white-space: normal; }}
.card .meta {{ color: {TEXT_DIM}; font-size: 0.9em; }}
.empty {{ color: {TEXT_DIM}; font-style: italic; }}
"""
)


def _em(px: int) -> dict[str, str | None]:
    """Return the ``styles`` giving a widget the width of ``px`` at Bokeh's 13 px, in em.

    The page sets the widgets' font size from the viewport (``PAGE_FONT``), so a width in em
    grows with it: readable on a 4K wall, still fitting a phone.
    """
    return {"width": f"{px / 13:.1f}em"}


def state_words(alarm: Alarm, tz: str, now: float | None = None) -> str:
    """Return the state of ``alarm`` in words: ``active, unacknowledged``, ``shelved until 16:00 CST``."""
    if alarm.state is AlarmState.SHELVED and alarm.shelved_until is not None:
        until = localised_time_text(alarm.shelved_until, tz, date=False, now=now or time.time())
        return _("shelved until {time}", time=until)
    words = {
        AlarmState.UNACKED: _("active, unacknowledged"),
        AlarmState.ACKED: _("active, acknowledged"),
        AlarmState.RTN_UNACKED: _("cleared, unacknowledged"),
        AlarmState.SHELVED: _("shelved"),
        AlarmState.SUPPRESSED: _("suppressed by design"),
        AlarmState.OUT_OF_SERVICE: _("out of service"),
        AlarmState.NORMAL: _("normal"),
    }
    return words[alarm.state]


def alarm_rows(
    alarms: Sequence[Alarm], tz: str = "UTC", known: dict[str, str] | None = None
) -> dict[str, list[Any]]:
    """Return the list's columns for ``alarms`` (``occurrence`` is -1 for hidden points).

    A hidden point has no occurrence and so no message: it shows the message it had when it
    was last seen in ``known`` (key -> message; updated here), else its key.
    """
    data: dict[str, list[Any]] = {k: [] for k in ROW_KEYS}
    known = {} if known is None else known
    now = time.time()
    for a in alarms:
        if a.message:
            known[a.key] = a.message
        data["occurrence"].append(a.occurrence if a.occurrence is not None else -1)
        data["key"].append(a.key)
        data["priority"].append(a.priority)
        data["picon"].append(priority_icon(a.priority, a.unacked))
        data["pname"].append(priority_name(a.priority))
        data["time"].append(localised_time_text(a.raised_ts, tz) if a.raised_ts else "—")
        data["state"].append(state_words(a, tz, now))
        data["unacked"].append(bool(a.unacked))
        data["message"].append(a.message or known.get(a.key, a.key))
        data["source"].append(a.source)
        data["area"].append(a.area)
    return data


# --------------------------------------------------------------------------- parts


class AlarmFilters:
    """The filter widgets and the engine query they make."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.prio = CheckboxButtonGroup(
            labels=[_("P{n}", n=p) for p in (1, 2, 3, 4)], active=[0, 1, 2, 3], name="alarm-prio"
        )
        states = [(k, _(k)) for k in STATE_FILTERS]
        self.state = Select(
            value="all", options=select_options(states), name="alarm-state", styles=_em(150)
        )
        self.text = TextInput(placeholder=_("search"), name="alarm-search", styles=_em(160))
        sized_inputs(self.state, self.text)
        self.hidden = Toggle(
            label=_("hidden too"), active=False, name="alarm-hidden", styles=_em(110)
        )
        for widget, attr in (
            (self.prio, "active"),
            (self.state, "value"),
            (self.text, "value"),
            (self.hidden, "active"),
        ):
            widget.on_change(attr, lambda _a, _o, _n: on_change())

    def query(self, engine: Any) -> list[Alarm]:
        """Return the alarms the filters select, newest first."""
        flt = AlarmFilter(
            priorities=[i + 1 for i in self.prio.active],
            states=STATE_FILTERS[self.state.value],
            text=self.text.value.strip() or None,
        )
        hidden = self.hidden.active or self.state.value in ("shelved", "out of service")
        return list(engine.active(flt, include_hidden=hidden))


class AlarmTable:
    """The desktop table over the page's row source; patches what changed, redraws for sure."""

    def __init__(self, doc: Document, source: ColumnDataSource) -> None:
        self.source = source
        columns = [
            TableColumn(
                field="priority",
                title=_("P"),
                width=40,
                formatter=HTMLTemplateFormatter(
                    template='<span title="<%- pname %>"><%= picon %></span>'
                ),
            ),
            TableColumn(field="time", title=_("time"), width=170),
            TableColumn(
                field="state",
                title=_("state"),
                width=170,
                formatter=HTMLTemplateFormatter(
                    template='<span class="<%= unacked ? "st-unacked" : "" %>"><%- value %></span>'
                ),
            ),
            TableColumn(
                field="message",
                title=_("message"),
                width=560,
                formatter=HTMLTemplateFormatter(
                    template='<span title="<%- value %>"><%- value %></span>'
                ),
            ),
            TableColumn(field="source", title=_("source"), width=140),
        ]
        self.table = DataTable(
            source=source,
            columns=columns,
            selectable="checkbox",
            index_position=None,
            sizing_mode="stretch_both",
            row_height=34,
            name="alarm-table",
            fit_columns=True,
            min_height=200,
            stylesheets=[InlineStyleSheet(css=TABLE_TEXT_CSS), InlineStyleSheet(css=TABLE_CSS)],
        )
        redraw_on_update(self.table, source)
        text_sized_table(self.table, doc)


class AlarmCards:
    """The phone view: one card per row, the message in full; a tap selects."""

    def __init__(self, doc: Document, source: ColumnDataSource) -> None:
        self.div = html_div("", name="alarm-cards", css=CARDS_CSS, sizing_mode="stretch_both")
        doc.js_on_event("document_ready", CustomJS(args={"source": source}, code=PICK_JS))

    def show(self, rows: dict[str, list[Any]], picked: set[str]) -> None:
        """Draw ``rows``; cards whose key is in ``picked`` are checked."""
        cards = [self._card(rows, i, rows["key"][i] in picked) for i in range(len(rows["key"]))]
        if not cards:
            cards = [f'<p class="empty">{html.escape(_("no alarms to show"))}</p>']
        self.div.text = f'<div class="cards" data-rows="{len(rows["key"])}">{"".join(cards)}</div>'

    @staticmethod
    def _card(rows: dict[str, list[Any]], i: int, picked: bool) -> str:
        key = html.escape(rows["key"][i])
        unacked = " unacked" if rows["unacked"][i] else ""
        label = _("P{n} {name}", n=rows["priority"][i], name=rows["pname"][i])
        return (
            f'<label class="card{" picked" if picked else ""}" data-key="{key}">'
            f'<input type="checkbox" data-alarm-pick="{key}"{" checked" if picked else ""}>'
            f'<div class="head">{rows["picon"][i]}<b>{html.escape(label)}</b>'
            f'<span class="state{unacked}">{html.escape(rows["state"][i])}</span></div>'
            f'<div class="msg">{html.escape(rows["message"][i])}</div>'
            f'<div class="meta"><span class="time">{html.escape(rows["time"][i])}</span> · '
            f"{html.escape(rows['source'][i])}</div></label>"
        )


class AlarmActions:
    """Acknowledge (with a comment), shelve (with a reason and a duration) and unshelve."""

    def __init__(self, session: HmiSession, ops: AlarmOps, page: AlarmPage) -> None:
        self.session, self.ops, self.page = session, ops, page
        self.comment = TextInput(
            placeholder=_("comment (optional)"), name="alarm-comment", styles=_em(220)
        )
        self.ack = Button(
            label=_("Acknowledge selected"),
            button_type="primary",
            name="alarm-ack",
            styles=_em(190),
        )
        self.ack_all = Button(label=_("Ack all shown"), name="alarm-ack-all", styles=_em(130))
        self.duration = Select(
            value="1 h",
            options=select_options(SHELVE_DURATIONS),
            name="alarm-shelve-for",
            styles=_em(90),
        )
        self.reason = TextInput(
            placeholder=_("shelve reason"), name="alarm-shelve-reason", styles=_em(180)
        )
        sized_inputs(self.comment, self.duration, self.reason)
        self.shelve = Button(label=_("Shelve"), name="alarm-shelve", styles=_em(90))
        self.unshelve = Button(label=_("Unshelve"), name="alarm-unshelve", styles=_em(100))
        self.result = html_div("", name="alarm-result", sizing_mode="stretch_width")
        can_ack, can_shelve = session.may("alarms.ack"), session.may("alarms.shelve")
        self.ack.disabled = self.ack_all.disabled = self.comment.disabled = not can_ack
        for w in (self.shelve, self.unshelve, self.reason, self.duration):
            w.disabled = not can_shelve
        self.ack.on_click(lambda: self.do_ack(all_shown=False))
        self.ack_all.on_click(lambda: self.do_ack(all_shown=True))
        self.shelve.on_click(self.do_shelve)
        self.unshelve.on_click(self.do_unshelve)
        wrap = {"flex-wrap": "wrap", "gap": "4px"}
        self.layout = row(
            self.comment,
            self.ack,
            self.ack_all,
            self.duration,
            self.reason,
            self.shelve,
            self.unshelve,
            sizing_mode="stretch_width",
            styles=wrap,
        )

    def say(self, message: str, ok: bool = True) -> None:
        """Show the outcome of the last action under the list."""
        cls = "result-ok" if ok else "result-bad"
        self.result.text = f'<span class="{cls}">{html.escape(message)}</span>'

    def do_ack(self, *, all_shown: bool) -> None:
        """Acknowledge the selected (or every shown) unacknowledged occurrence."""
        if not self.session.may("alarms.ack"):
            self.say(_("your role may not acknowledge alarms"), False)
            return
        data = self.page.rows
        rows = range(len(data["key"])) if all_shown else self.page.picked_rows()
        refs = [int(data["occurrence"][i]) for i in rows if data["unacked"][i]]
        refs = [r for r in refs if r >= 0]
        if not refs:
            self.say(_("select unacknowledged alarms first"), False)
            return
        comment = self.comment.value.strip() or None
        try:
            done = self.ops.ack(self.session.actor, refs, comment, source=self.session.source)
        except AlarmOpError as exc:
            self.say(exc.message, False)
            return
        self.comment.value = ""
        n = len(done)
        self.say(ngettext("acknowledged {n} alarm", "acknowledged {n} alarms", n))

    def do_shelve(self) -> None:
        """Shelve the selected alarms for the chosen time, with the reason given."""
        if not self.session.may("alarms.shelve"):
            self.say(_("your role may not shelve alarms"), False)
            return
        keys = self.page.picked_keys()
        why = self.reason.value.strip()
        if not keys:
            self.say(_("select alarms to shelve first"), False)
            return
        if not why:
            self.say(_("shelving needs a reason"), False)
            return
        seconds = SHELVE_DURATIONS[self.duration.value]
        try:
            for key in keys:
                self.ops.shelve(self.session.actor, key, seconds, why, source=self.session.source)
        except AlarmOpError as exc:
            self.say(exc.message, False)
            return
        self.reason.value = ""
        n = len(keys)
        self.say(
            ngettext(
                "shelved {n} alarm for {duration}",
                "shelved {n} alarms for {duration}",
                n,
                duration=self.duration.value,
            )
        )

    def do_unshelve(self) -> None:
        """End the shelving of the selected alarms now."""
        if not self.session.may("alarms.shelve"):
            self.say(_("your role may not unshelve alarms"), False)
            return
        keys = self.page.picked_keys()
        try:
            for key in keys:
                self.ops.unshelve(self.session.actor, key, source=self.session.source)
        except AlarmOpError as exc:
            self.say(exc.message, False)
            return
        n = len(keys)
        self.say(ngettext("unshelved {n} alarm", "unshelved {n} alarms", n))


class AlarmPage:
    """The alarm page of one session: rows from the engine, kept current by its events."""

    def __init__(self, session: HmiSession, doc: Document, engine: Any, ops: AlarmOps) -> None:
        self.session, self.engine = session, engine
        self.tz = site_tz(session)
        self.messages: dict[str, str] = {}  # key -> last message seen (hidden points have none)
        self.rows = alarm_rows([])
        self.source = ColumnDataSource(dict(self.rows), name="alarm-rows")
        self.picked: set[str] = set()
        self.filters = AlarmFilters(self.update)
        self.table = AlarmTable(doc, self.source)
        self.cards = AlarmCards(doc, self.source)
        self.actions = AlarmActions(session, ops, self)
        self.count = html_div("", name="alarm-count")
        self.source.selected.on_change("indices", lambda _a, _o, new: self._on_pick(new))
        wrap = {"flex-wrap": "wrap", "gap": "4px"}
        f = self.filters
        filters = row(
            f.prio, f.state, f.text, f.hidden, self.count, sizing_mode="stretch_width", styles=wrap
        )
        self.layout = column(
            filters,
            self.table.table,
            self.cards.div,
            self.actions.layout,
            self.actions.result,
            sizing_mode="stretch_both",
            stylesheets=[InlineStyleSheet(css=f":host {{ --bokeh-font-size: {PAGE_FONT}; }}")],
        )
        self.update()
        session.on_alarm(lambda _events: self.update())

    # ------------------------------------------------------------------ selection
    def picked_rows(self) -> list[int]:
        """Return the indices of the selected rows."""
        return [i for i, k in enumerate(self.rows["key"]) if k in self.picked]

    def picked_keys(self) -> list[str]:
        """Return the keys of the selected rows, in list order."""
        return [k for k in self.rows["key"] if k in self.picked]

    def _on_pick(self, indices: list[int]) -> None:
        keys = self.rows["key"]
        self.picked = {keys[i] for i in indices if 0 <= i < len(keys)}
        self.cards.show(self.rows, self.picked)

    # ------------------------------------------------------------------ rows
    def update(self) -> None:
        """Re-read the engine's list; patch the rows that changed (or replace them all)."""
        rows = alarm_rows(self.filters.query(self.engine), self.tz, self.messages)
        old, self.rows = self.rows, rows
        if old["key"] == rows["key"]:
            patches = _changes(old, rows)
            if patches:
                self.source.patch(patches)
        else:
            self.source.data = rows
            self.picked &= set(rows["key"])
            self.source.selected.indices = [
                i for i, k in enumerate(rows["key"]) if k in self.picked
            ]
        self.cards.show(rows, self.picked)
        unacked = sum(bool(u) for u in rows["unacked"])
        n = len(rows["key"])
        text = _("{n} alarms, {unacked} unacknowledged", n=n, unacked=unacked)
        self.count.text = (
            f'<span data-rows="{n}" data-unacked="{unacked}">{html.escape(text)}</span>'
        )


def _changes(
    old: dict[str, list[Any]], new: dict[str, list[Any]]
) -> dict[str, list[tuple[int, Any]]]:
    """Return the ``ColumnDataSource.patch`` that turns ``old`` into ``new`` (same rows)."""
    out: dict[str, list[tuple[int, Any]]] = {}
    for col in ROW_KEYS:
        changed = [
            (i, v) for i, (o, v) in enumerate(zip(old[col], new[col], strict=True)) if o != v
        ]
        if changed:
            out[col] = changed
    return out


def make_alarms(session: HmiSession, doc: Document, ops: AlarmOps | None = None) -> None:
    """Build the alarm page into ``doc``.

    ``ops`` is the :class:`~scada.services.alarm_ops.AlarmOps` that acknowledges and shelves
    (audited); default ``services.alarm_ops``.
    """
    title = _("Alarms")
    if not page_allowed(session, "alarms"):
        body = denied_body(_("not allowed for your role"))
        page_frame(session, doc, "alarms", body, title)
        return
    engine = session.services.alarms
    if engine is None:
        page_frame(session, doc, "alarms", denied_body(_("no alarm engine is running")), title)
        return
    page = AlarmPage(session, doc, engine, ops or session.services.alarm_ops)
    page_frame(session, doc, "alarms", page.layout, title)
