"""Alarm page: the alarm list with priority colours, acknowledge with comment, shelve, filters.

Phone-first: the list and the action bar reflow to one column on a 390-px screen. Rows
are alarm occurrences from the engine (``services.alarms``), newest first; acknowledging
names exactly the occurrences the operator saw. Buttons are disabled for roles that may
not ack (``alarms.ack``) or shelve (``alarms.shelve``); the engine raises for anything else,
and the page shows the message. Actions go through the server's alarm operations
(``services.alarm_ops``), which audit each alarm with the user and the source
``hmi <client address>``.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource
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

from alarms.model import Alarm, AlarmFilter
from hmi.layout import denied_body, html_div, page_allowed, page_frame, select_options
from hmi.session import HmiSession
from hmi.theme import PRIORITY_COLOURS, PRIORITY_TEXT
from scada.services.alarm_ops import AlarmOpError, AlarmOps
from tags.model import iso

__all__ = ["alarm_rows", "make_alarms"]

log = logging.getLogger(__name__)

STATE_FILTERS = {
    "all": None,
    "unacknowledged": ["unacknowledged", "rtn_unacknowledged"],
    "acknowledged": ["acknowledged"],
    "shelved": ["shelved"],
    "out of service": ["out_of_service"],
}
SHELVE_DURATIONS = {"15 min": 900.0, "1 h": 3600.0, "8 h": 8 * 3600.0, "24 h": 86400.0}

PRIORITY_CELL = (
    '<span style="display:inline-block;width:100%;text-align:center;font-weight:700;'
    'background:<%= pcolour %>;color:<%= ptext %>"><%= value %></span>'
)
STATE_CELL = '<span style="<%= (unacked ? "font-weight:700" : "") %>"><%= value %></span>'

ROW_KEYS = (
    "occurrence",
    "key",
    "priority",
    "pcolour",
    "ptext",
    "time",
    "state",
    "unacked",
    "message",
    "source",
    "area",
)


def alarm_rows(alarms: list[Alarm]) -> dict[str, list[Any]]:
    """Return the table columns for ``alarms`` (``occurrence`` is -1 for hidden points)."""
    data: dict[str, list[Any]] = {k: [] for k in ROW_KEYS}
    for a in alarms:
        data["occurrence"].append(a.occurrence if a.occurrence is not None else -1)
        data["key"].append(a.key)
        data["priority"].append(a.priority)
        data["pcolour"].append(PRIORITY_COLOURS.get(a.priority, "#CCC"))
        data["ptext"].append(PRIORITY_TEXT.get(a.priority, "#000"))
        data["time"].append((iso(a.raised_ts) or "").replace("T", " ")[5:19])
        data["state"].append(a.state.value.replace("_", " "))
        data["unacked"].append(bool(a.unacked))
        data["message"].append(a.message or a.key)
        data["source"].append(a.source)
        data["area"].append(a.area)
    return data


def make_alarms(session: HmiSession, doc: Document, ops: AlarmOps | None = None) -> None:
    """Build the alarm page into ``doc``.

    ``ops`` is the :class:`~scada.services.alarm_ops.AlarmOps` that acknowledges and shelves
    (audited); default ``services.alarm_ops``.
    """
    if not page_allowed(session, "alarms"):
        page_frame(session, doc, "alarms", denied_body("not allowed for your role"), "Alarms")
        return
    engine = session.services.alarms
    if engine is None:
        page_frame(session, doc, "alarms", denied_body("no alarm engine is running"), "Alarms")
        return
    if ops is None:
        ops = session.services.alarm_ops
    source = ColumnDataSource(alarm_rows([]), name="alarm-rows")
    columns = [
        TableColumn(
            field="priority",
            title="P",
            width=34,
            formatter=HTMLTemplateFormatter(template=PRIORITY_CELL),
        ),
        TableColumn(field="time", title="time (UTC)", width=150),
        TableColumn(
            field="state",
            title="state",
            width=120,
            formatter=HTMLTemplateFormatter(template=STATE_CELL),
        ),
        TableColumn(field="message", title="message", width=420),
        TableColumn(field="source", title="source", width=160),
    ]
    table = DataTable(
        source=source,
        columns=columns,
        selectable="checkbox",
        index_position=None,
        sizing_mode="stretch_both",
        row_height=32,
        name="alarm-table",
        fit_columns=True,
        min_height=200,
    )
    prio = CheckboxButtonGroup(
        labels=["P1", "P2", "P3", "P4"], active=[0, 1, 2, 3], name="alarm-prio"
    )
    state_sel = Select(
        value="all", options=select_options(STATE_FILTERS), name="alarm-state", width=150
    )
    text = TextInput(placeholder="search", name="alarm-search", width=160)
    comment = TextInput(placeholder="comment (optional)", name="alarm-comment", width=220)
    ack = Button(label="Acknowledge selected", button_type="primary", name="alarm-ack", width=190)
    ack_all = Button(label="Ack all shown", name="alarm-ack-all", width=130)
    duration = Select(
        value="1 h", options=select_options(SHELVE_DURATIONS), name="alarm-shelve-for", width=90
    )
    reason = TextInput(placeholder="shelve reason", name="alarm-shelve-reason", width=180)
    shelve = Button(label="Shelve", name="alarm-shelve", width=90)
    unshelve = Button(label="Unshelve", name="alarm-unshelve", width=100)
    result = html_div("", name="alarm-result", sizing_mode="stretch_width")
    can_ack = session.may("alarms.ack")
    can_shelve = session.may("alarms.shelve")
    ack.disabled = ack_all.disabled = comment.disabled = not can_ack
    shelve.disabled = unshelve.disabled = reason.disabled = duration.disabled = not can_shelve
    show_hidden = Toggle(label="hidden too", active=False, name="alarm-hidden", width=110)

    def current_filter() -> AlarmFilter:
        return AlarmFilter(
            priorities=[i + 1 for i in prio.active],
            states=STATE_FILTERS[state_sel.value],
            text=text.value.strip() or None,
        )

    def refresh() -> None:
        data = source.data
        selected = {data["key"][i] for i in source.selected.indices if i < len(data["key"])}
        hidden = show_hidden.active or state_sel.value in ("shelved", "out of service")
        alarms = engine.active(current_filter(), include_hidden=hidden)
        rows = alarm_rows(alarms)
        source.data = rows
        source.selected.indices = [i for i, k in enumerate(rows["key"]) if k in selected]
        unacked = sum(rows["unacked"])
        count.text = (
            f'<span data-rows="{len(rows["key"])}" data-unacked="{unacked}">'
            f"{len(rows['key'])} alarms, {unacked} unacknowledged</span>"
        )

    def say(message: str, ok: bool = True) -> None:
        cls = "result-ok" if ok else "result-bad"
        result.text = f'<span class="{cls}">{html.escape(message)}</span>'

    def selected_rows() -> list[int]:
        return [i for i in source.selected.indices if i < len(source.data["key"])]

    def do_ack(all_shown: bool = False) -> None:
        if not session.may("alarms.ack"):
            say("your role may not acknowledge alarms", False)
            return
        data = source.data
        rows = range(len(data["key"])) if all_shown else selected_rows()
        refs = [
            int(data["occurrence"][i])
            for i in rows
            if data["occurrence"][i] >= 0 and data["unacked"][i]
        ]
        if not refs:
            say("select unacknowledged alarms first", False)
            return
        try:
            done = ops.ack(
                session.actor, refs, comment.value.strip() or None, source=session.source
            )
        except AlarmOpError as exc:
            say(exc.message, False)
            return
        comment.value = ""
        say(f"acknowledged {len(done)} alarm(s)")
        refresh()

    def do_shelve() -> None:
        if not session.may("alarms.shelve"):
            say("your role may not shelve alarms", False)
            return
        keys = [source.data["key"][i] for i in selected_rows()]
        if not keys:
            say("select alarms to shelve first", False)
            return
        why = reason.value.strip()
        if not why:
            say("shelving needs a reason", False)
            return
        try:
            for key in keys:
                ops.shelve(
                    session.actor, key, SHELVE_DURATIONS[duration.value], why, source=session.source
                )
        except AlarmOpError as exc:
            say(exc.message, False)
            return
        reason.value = ""
        say(f"shelved {len(keys)} alarm(s) for {duration.value}")
        refresh()

    def do_unshelve() -> None:
        if not session.may("alarms.shelve"):
            say("your role may not unshelve alarms", False)
            return
        keys = [source.data["key"][i] for i in selected_rows()]
        try:
            for key in keys:
                ops.unshelve(session.actor, key, source=session.source)
        except AlarmOpError as exc:
            say(exc.message, False)
            return
        say(f"unshelved {len(keys)} alarm(s)")
        refresh()

    ack.on_click(lambda: do_ack(False))
    ack_all.on_click(lambda: do_ack(True))
    shelve.on_click(do_shelve)
    unshelve.on_click(do_unshelve)
    prio.on_change("active", lambda _a, _o, _n: refresh())
    state_sel.on_change("value", lambda _a, _o, _n: refresh())
    text.on_change("value", lambda _a, _o, _n: refresh())
    show_hidden.on_change("active", lambda _a, _o, _n: refresh())
    count = html_div("", name="alarm-count")
    wrap = {"flex-wrap": "wrap", "gap": "4px"}
    filters = row(
        prio, state_sel, text, show_hidden, count, sizing_mode="stretch_width", styles=wrap
    )
    actions = row(
        comment,
        ack,
        ack_all,
        duration,
        reason,
        shelve,
        unshelve,
        sizing_mode="stretch_width",
        styles=wrap,
    )
    body = column(filters, table, actions, result, sizing_mode="stretch_both")
    refresh()
    page_frame(session, doc, "alarms", body, "Alarms")
    session.on_alarm(lambda _events: refresh())
