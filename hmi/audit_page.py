"""Audit page: the newest audit log entries, filters, the hash chain's status, a CSV download.

For roles with ``audit.read`` (engineers, admins); others get the usual "not allowed" body.
Entries come from the server's audit log (``services.audit``, :class:`scada.services.audit.AuditLog`)
newest first, at most ``MAX_ROWS`` on screen, times in the site's time zone. Selecting a row
shows its ``before`` and ``after`` state. Queries and the chain check (``AuditLog.verify``,
which reads the whole file) run in worker threads (``HmiSession.in_thread``), so a refresh
never holds up the Bokeh loop; an answer older than the newest request is dropped. A
broken chain is shown in the priority-1 alarm colour. "download CSV" links to
``GET /api/audit?format=csv`` with the filters and the time span of the rows on screen.
"""

from __future__ import annotations

import html
import json
import logging
import math
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource
from bokeh.models.widgets import (
    Button,
    DataTable,
    HTMLTemplateFormatter,
    Select,
    TableColumn,
    TextInput,
)

from hmi.layout import denied_body, html_div, page_allowed, page_frame, select_options
from hmi.session import HmiSession

__all__ = [
    "MAX_ROWS",
    "RANGES",
    "RESULTS",
    "audit_rows",
    "chain_html",
    "csv_link",
    "make_audit",
]

log = logging.getLogger(__name__)

#: Time range label -> seconds back from now.
RANGES: dict[str, float] = {"last hour": 3600.0, "last day": 86400.0, "last week": 7 * 86400.0}
#: Result filter options (``any``: no filter).
RESULTS = ("any", "ok", "denied", "failed", "repeated")
#: Rows on screen (the newest); the CSV download has up to 10,000.
MAX_ROWS = 500

#: A refused or failed entry stands out by weight only: it is a record, not an alarm.
RESULT_CELL = '<span style="<%= (value !== "ok" ? "font-weight:700" : "") %>"><%= value %></span>'

#: The before/after panel: two columns side by side, each half the width.
DETAIL_CSS = """
.ba { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; width: calc(100vw - 40px); }
.ba > div { min-width: 0; }
pre { margin: 0.2em 0; white-space: pre-wrap; word-break: break-word; font-size: 0.9em; }
"""
#: Links are text-coloured: blue means "command in progress" on these pages (hmi.theme).
LINK_CSS = "a { color: inherit; } a:hover { text-decoration-thickness: 2px; }"

ROW_KEYS = (
    "seq",
    "time",
    "user",
    "role",
    "source",
    "action",
    "target",
    "result",
    "detail",
    "before",
    "after",
)


def _local(ts: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S")


def _state_text(value: Any) -> str:
    return "" if value is None else json.dumps(value, indent=1, ensure_ascii=False, default=str)


def audit_rows(entries: list[dict[str, Any]], tz: str) -> dict[str, list[Any]]:
    """Return the table columns for queried ``entries`` (times in the zone ``tz``)."""
    zone = ZoneInfo(tz)
    data: dict[str, list[Any]] = {k: [] for k in ROW_KEYS}
    for e in entries:
        data["seq"].append(int(e["seq"]))
        data["time"].append(_local(float(e["ts"]), zone))
        for k in ("user", "role", "source", "action", "target", "result", "detail"):
            data[k].append("" if e.get(k) is None else str(e[k]))
        data["before"].append(_state_text(e.get("before")))
        data["after"].append(_state_text(e.get("after")))
    return data


def chain_html(result: dict[str, Any] | None, error: BaseException | None = None) -> str:
    """Return the chain status: intact with its head, or BROKEN at an entry (alarm colour)."""
    if error is not None:
        return (
            f'<span class="result-bad" data-chain="error">chain check failed: '
            f"{html.escape(str(error))}</span>"
        )
    if result is None:
        return '<span class="u" data-chain="checking">checking the chain…</span>'
    if not result.get("ok"):
        at = result.get("broken_at")
        reason = html.escape(str(result.get("reason") or ""))
        return (
            f'<span class="result-bad" data-chain="broken" data-broken-at="{at}">'
            f"audit chain BROKEN at seq {at}: {reason}</span>"
        )
    head = result.get("head")
    n = int(result.get("entries") or 0)
    if not head:
        return (
            f'<span class="result-ok" data-chain="intact" data-entries="{n}">'
            "chain intact, no chained entries yet</span>"
        )
    seq, digest = head["seq"], html.escape(str(head["hash"]))
    return (
        f'<span class="result-ok" data-chain="intact" data-entries="{n}" data-head="{seq}" '
        f'title="head {seq}:{digest}">chain intact: {n} entries, head {seq}:{digest[:12]}…</span>'
    )


def csv_link(filters: dict[str, Any]) -> str:
    """Return the ``GET /api/audit?format=csv`` URL of the query ``filters`` (None left out).

    ``since`` and ``until`` are epoch seconds (whole seconds, ``until`` rounded up).
    """
    params: dict[str, str] = {"format": "csv"}
    for key in ("since", "until", "user", "action", "result"):
        value = filters.get(key)
        if value is None:
            continue
        if key == "since":
            value = str(math.floor(value))
        elif key == "until":
            value = str(math.ceil(value))
        params[key] = str(value)
    return "/api/audit?" + urlencode(params)


def make_audit(session: HmiSession, doc: Document) -> None:
    """Build the audit page into ``doc``."""
    if not page_allowed(session, "audit"):
        page_frame(session, doc, "audit", denied_body("not allowed for your role"), "Audit log")
        return
    audit = session.services.audit
    if audit is None:
        body = denied_body("no audit log: the server is not running")
        page_frame(session, doc, "audit", body, "Audit log")
        return
    tz = session.services.site.site.timezone
    source = ColumnDataSource(audit_rows([], tz), name="audit-rows")
    columns = [
        TableColumn(field="seq", title="seq", width=60),
        TableColumn(field="time", title=f"time ({tz})", width=150),
        TableColumn(field="user", title="user", width=90),
        TableColumn(field="role", title="role", width=80),
        TableColumn(field="source", title="source", width=140),
        TableColumn(field="action", title="action", width=150),
        TableColumn(field="target", title="target", width=180),
        TableColumn(
            field="result",
            title="result",
            width=70,
            formatter=HTMLTemplateFormatter(template=RESULT_CELL),
        ),
        TableColumn(field="detail", title="detail", width=260),
    ]
    table = DataTable(
        source=source,
        columns=columns,
        selectable=True,
        index_position=None,
        sizing_mode="stretch_both",
        row_height=28,
        name="audit-table",
        fit_columns=True,
        min_height=200,
    )
    user_in = TextInput(placeholder="user", name="audit-user", width=130)
    action_in = TextInput(placeholder="action glob: alarm.*", name="audit-action", width=190)
    result_sel = Select(
        value="any", options=select_options(RESULTS), name="audit-result", width=110
    )
    span = Select(value="last day", options=select_options(RANGES), name="audit-range", width=120)
    refresh_btn = Button(label="Refresh", name="audit-refresh", width=90)
    count = html_div("", name="audit-count")
    chain = html_div(chain_html(None), name="audit-chain")
    download = html_div("", name="audit-csv", css=LINK_CSS)
    selected = html_div(
        '<span class="u">select a row to see the state before and after</span>',
        name="audit-selected",
        sizing_mode="stretch_width",
        height=170,
        styles={"overflow": "auto"},
        css=DETAIL_CSS,
    )
    state: dict[str, int] = {"token": 0, "chain": 0}

    def current_filters() -> dict[str, Any]:
        now = time.time()
        return {
            "since": now - RANGES[span.value],
            "until": now,
            "user": user_in.value.strip() or None,
            "action": action_in.value.strip() or None,
            "result": None if result_sel.value == "any" else result_sel.value,
        }

    def refresh() -> None:
        filters = current_filters()
        state["token"] += 1
        token = state["token"]
        count.text = '<span class="u">loading…</span>'
        download.text = (
            f'<a href="{html.escape(csv_link(filters))}" download data-csv="1">download CSV</a>'
        )

        def query() -> list[dict[str, Any]]:
            return audit.query(**filters, limit=MAX_ROWS)

        def done(entries: Any, error: BaseException | None) -> None:
            if token != state["token"]:
                return  # a newer refresh is on its way
            if error is not None:
                log.warning("audit query failed: %s", error)
                count.text = (
                    f'<span class="result-bad">audit query failed: {html.escape(str(error))}</span>'
                )
                return
            keep = source.data["seq"]
            picked = {keep[i] for i in source.selected.indices if i < len(keep)}
            rows = audit_rows(entries, tz)
            source.data = rows
            source.selected.indices = [i for i, s in enumerate(rows["seq"]) if s in picked]
            n = len(rows["seq"])
            more = f" (the newest {MAX_ROWS}; the CSV has more)" if n >= MAX_ROWS else ""
            count.text = f'<span data-rows="{n}">{n} entries, {span.value}{more}</span>'
            show_selected()

        session.spawn(session.in_thread(query), done)
        check_chain()

    def check_chain() -> None:
        state["chain"] += 1
        token = state["chain"]

        def done(result: Any, error: BaseException | None) -> None:
            if token == state["chain"]:
                chain.text = chain_html(result, error)

        session.spawn(session.in_thread(audit.verify), done)

    def show_selected() -> None:
        data = source.data
        idx = [i for i in source.selected.indices if i < len(data["seq"])]
        if not idx:
            selected.text = '<span class="u">select a row to see the state before and after</span>'
            return
        i = idx[0]
        parts = []
        for key in ("before", "after"):
            text = data[key][i] or "—"
            parts.append(f'<div><b>{key}</b><pre data-{key}="1">{html.escape(text)}</pre></div>')
        head = html.escape(f"#{data['seq'][i]} {data['action'][i]} {data['target'][i]}")
        seq = data["seq"][i]
        selected.text = f'<div data-seq="{seq}">{head}<div class="ba">{"".join(parts)}</div></div>'

    source.selected.on_change("indices", lambda _a, _o, _n: show_selected())
    refresh_btn.on_click(refresh)
    for widget in (user_in, action_in):
        widget.on_change("value", lambda _a, _o, _n: refresh())
    for select in (result_sel, span):
        select.on_change("value", lambda _a, _o, _n: refresh())
    wrap = {"flex-wrap": "wrap", "gap": "4px", "align-items": "center"}
    filters = row(
        user_in,
        action_in,
        result_sel,
        span,
        refresh_btn,
        download,
        sizing_mode="stretch_width",
        styles=wrap,
    )
    status = row(count, chain, sizing_mode="stretch_width", styles=wrap)
    body = column(filters, status, table, selected, sizing_mode="stretch_both")
    page_frame(session, doc, "audit", body, "Audit log")
    refresh()
