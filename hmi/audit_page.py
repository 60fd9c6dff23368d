"""Audit page: the newest audit log entries, filters, the hash chain's status, a CSV download.

For roles with ``audit.read`` (engineers, admins); others get the usual "not allowed" body.
Entries come from the server's audit log (``services.audit``, :class:`scada.services.audit.AuditLog`)
newest first, at most ``MAX_ROWS`` on screen, times in the site's time zone. Selecting a row
shows its ``before`` and ``after`` state. Queries and the chain check (``AuditLog.verify``,
which reads the whole file) run in worker threads (``HmiSession.in_thread``), so a refresh
never holds up the Bokeh loop; an answer older than the newest request is dropped. A
broken chain is shown in the priority-1 alarm colour. "download CSV" links to
``GET /api/audit?format=csv`` with the filters and the time span of the rows on screen.

The page is a few parts (:class:`AuditFilters`, :class:`AuditTable`, :class:`AuditDetail`,
:class:`ChainStatus`) put together by :class:`AuditPage`. A refresh replaces the rows, often
with as many as before, so the table repaints on every data change
(:func:`hmi.layout.redraw_on_update`). Every text goes through :func:`i18n._`; filter values
(``RANGES``, ``RESULTS``) stay English keys, their labels are translated. Loop-thread only,
like the session.
"""

from __future__ import annotations

import html
import json
import logging
import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, InlineStyleSheet
from bokeh.models.widgets import (
    Button,
    DataTable,
    HTMLTemplateFormatter,
    Select,
    TableColumn,
    TextInput,
)

from hmi.layout import (
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
from hmi.theme import AUTO_WIDTH, SELECT_CSS, WIDGET_FONT
from i18n import N_, _, ngettext
from scada.services.audit import AuditLog

__all__ = [
    "MAX_ROWS",
    "RANGES",
    "RESULTS",
    "AuditDetail",
    "AuditFilters",
    "AuditPage",
    "AuditTable",
    "ChainStatus",
    "audit_rows",
    "chain_html",
    "csv_link",
    "make_audit",
]

log = logging.getLogger(__name__)

#: Time range label -> seconds back from now.
RANGES: dict[str, float] = {
    N_("last hour"): 3600.0,
    N_("last day"): 86400.0,
    N_("last week"): 7 * 86400.0,
}
#: Result filter options (``any``: no filter).
RESULTS = (N_("any"), N_("ok"), N_("denied"), N_("failed"), N_("repeated"))
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


def _span(cls: str, text: str, attrs: str = "") -> str:
    """Return ``text`` escaped in a ``<span>`` of the class ``cls`` (none if empty) and ``attrs``."""
    klass = f' class="{cls}"' if cls else ""
    return f"<span{klass}{attrs}>{html.escape(text)}</span>"


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
        text = _("chain check failed: {error}", error=error)
        return _span("result-bad", text, ' data-chain="error"')
    if result is None:
        return _span("u", _("checking the chain…"), ' data-chain="checking"')
    if not result.get("ok"):
        at = result.get("broken_at")
        reason = str(result.get("reason") or "")
        text = _("audit chain BROKEN at seq {seq}: {reason}", seq=at, reason=reason)
        return _span("result-bad", text, f' data-chain="broken" data-broken-at="{at}"')
    head = result.get("head")
    n = int(result.get("entries") or 0)
    if not head:
        text = _("chain intact, no chained entries yet")
        return _span("result-ok", text, f' data-chain="intact" data-entries="{n}"')
    seq, digest = head["seq"], str(head["hash"])
    title = html.escape(_("head {seq}:{hash}", seq=seq, hash=digest))
    text = ngettext(
        "chain intact: {n} entry, head {seq}:{hash}…",
        "chain intact: {n} entries, head {seq}:{hash}…",
        n,
        seq=seq,
        hash=digest[:12],
    )
    attrs = f' data-chain="intact" data-entries="{n}" data-head="{seq}" title="{title}"'
    return _span("result-ok", text, attrs)


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


# --------------------------------------------------------------------------- parts


class AuditFilters:
    """The filter widgets (user, action glob, result, time range) and the query they make."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        def sized(em: float) -> dict[str, Any]:
            # widths in em of the widget font: they grow with the text on a wall
            return {"styles": {"width": f"{em}em", "--bokeh-font-size": WIDGET_FONT}}

        select_css: list[Any] = [InlineStyleSheet(css=SELECT_CSS)]
        self.user = TextInput(placeholder=_("user"), name="audit-user", **sized(9))
        self.action = TextInput(
            placeholder=_("action glob: alarm.*"), name="audit-action", **sized(13)
        )
        self.result = Select(
            value="any",
            options=select_options((r, _(r)) for r in RESULTS),
            name="audit-result",
            stylesheets=select_css,
            **sized(8),
        )
        self.span = Select(
            value="last day",
            options=select_options((r, _(r)) for r in RANGES),
            name="audit-range",
            stylesheets=select_css,
            **sized(8.5),
        )
        sized_inputs(self.user, self.action)
        self.refresh = Button(
            label=_("Refresh"),
            name="audit-refresh",
            styles={**AUTO_WIDTH, "--bokeh-font-size": WIDGET_FONT},
        )
        self.refresh.on_click(on_change)
        for widget in (self.user, self.action, self.result, self.span):
            widget.on_change("value", lambda _a, _o, _n: on_change())

    @property
    def span_label(self) -> str:
        """The chosen time range in words (translated)."""
        return _(self.span.value)

    def query(self) -> dict[str, Any]:
        """Return the ``AuditLog.query`` filters: the chosen range back from now and the rest."""
        now = time.time()
        return {
            "since": now - RANGES[self.span.value],
            "until": now,
            "user": self.user.value.strip() or None,
            "action": self.action.value.strip() or None,
            "result": None if self.result.value == "any" else self.result.value,
        }


class AuditTable:
    """The entries table; a new set of rows keeps the selected entries selected."""

    def __init__(self, tz: str) -> None:
        self.tz = tz
        self.source = ColumnDataSource(audit_rows([], tz), name="audit-rows")
        result_cell = HTMLTemplateFormatter(template=RESULT_CELL)
        columns = [
            TableColumn(field="seq", title=_("seq"), width=60),
            TableColumn(field="time", title=_("time ({tz})", tz=tz), width=150),
            TableColumn(field="user", title=_("user"), width=90),
            TableColumn(field="role", title=_("role"), width=80),
            TableColumn(field="source", title=_("source"), width=140),
            TableColumn(field="action", title=_("action"), width=150),
            TableColumn(field="target", title=_("target"), width=180),
            TableColumn(field="result", title=_("result"), width=70, formatter=result_cell),
            TableColumn(field="detail", title=_("detail"), width=260),
        ]
        self.table = DataTable(
            source=self.source,
            columns=columns,
            selectable=True,
            index_position=None,
            sizing_mode="stretch_both",
            row_height=28,
            name="audit-table",
            fit_columns=True,
            min_height=200,
        )
        # a refresh with as many rows as before would otherwise leave the old cells on screen
        redraw_on_update(self.table, self.source)

    def show(self, entries: list[dict[str, Any]]) -> int:
        """Replace the rows with ``entries``; return how many there are."""
        source = self.source
        keep = source.data["seq"]
        picked = {keep[i] for i in source.selected.indices if i < len(keep)}
        rows = audit_rows(entries, self.tz)
        source.data = rows
        source.selected.indices = [i for i, s in enumerate(rows["seq"]) if s in picked]
        return len(rows["seq"])

    def selected_row(self) -> dict[str, Any] | None:
        """Return the first selected row (column -> value), or None."""
        data = self.source.data
        idx = [i for i in self.source.selected.indices if i < len(data["seq"])]
        if not idx:
            return None
        return {k: data[k][idx[0]] for k in ROW_KEYS}


class AuditDetail:
    """The selected entry's state before and after, side by side."""

    def __init__(self) -> None:
        self.div = html_div(
            self._hint(),
            name="audit-selected",
            sizing_mode="stretch_width",
            height=170,
            styles={"overflow": "auto"},
            css=DETAIL_CSS,
        )

    @staticmethod
    def _hint() -> str:
        return _span("u", _("select a row to see the state before and after"))

    def show(self, entry: dict[str, Any] | None) -> None:
        """Show ``entry`` (a table row; None: the hint)."""
        if entry is None:
            self.div.text = self._hint()
            return
        labels = {"before": _("before"), "after": _("after")}
        parts = []
        for key, label in labels.items():
            text = html.escape(entry[key] or "—")
            parts.append(f'<div><b>{html.escape(label)}</b><pre data-{key}="1">{text}</pre></div>')
        head = html.escape(f"#{entry['seq']} {entry['action']} {entry['target']}")
        self.div.text = (
            f'<div data-seq="{entry["seq"]}">{head}<div class="ba">{"".join(parts)}</div></div>'
        )


class ChainStatus:
    """The hash chain's status, checked (``AuditLog.verify``) in a worker thread."""

    def __init__(self, session: HmiSession, audit: AuditLog) -> None:
        self.session, self.audit = session, audit
        self.div = html_div(chain_html(None), name="audit-chain")
        self._token = 0

    def check(self) -> None:
        """Verify the chain again; an answer older than the newest check is dropped."""
        self._token += 1
        token = self._token
        self.session.spawn(
            self.session.in_thread(self.audit.verify),
            lambda result, error: self._checked(token, result, error),
        )

    def _checked(self, token: int, result: Any, error: BaseException | None) -> None:
        if token == self._token:
            self.div.text = chain_html(result, error)


# --------------------------------------------------------------------------- the page


class AuditPage:
    """The audit page of one session: filters, entries, the selected entry and the chain."""

    def __init__(self, session: HmiSession, audit: AuditLog) -> None:
        self.session, self.audit = session, audit
        self.filters = AuditFilters(self.refresh)
        self.table = AuditTable(session.services.site.site.timezone)
        text_sized_table(self.table.table, session.doc)
        self.detail = AuditDetail()
        self.chain = ChainStatus(session, audit)
        self.count = html_div("", name="audit-count")
        self.download = html_div("", name="audit-csv", css=LINK_CSS)
        self._token = 0
        self.table.source.selected.on_change("indices", lambda _a, _o, _n: self.show_selected())
        f = self.filters
        wrap = {"flex-wrap": "wrap", "gap": "4px", "align-items": "center"}
        controls = (f.user, f.action, f.result, f.span, f.refresh, self.download)
        self.layout = column(
            row(*controls, sizing_mode="stretch_width", styles=wrap),
            row(self.count, self.chain.div, sizing_mode="stretch_width", styles=wrap),
            self.table.table,
            self.detail.div,
            sizing_mode="stretch_both",
        )

    def refresh(self) -> None:
        """Query the entries the filters select (worker thread) and check the chain again."""
        filters = self.filters.query()
        self._token += 1
        token = self._token
        self.count.text = _span("u", _("loading…"))
        href = html.escape(csv_link(filters))
        label = html.escape(_("download CSV"))
        self.download.text = f'<a href="{href}" download data-csv="1">{label}</a>'
        self.session.spawn(
            self.session.in_thread(lambda: self.audit.query(**filters, limit=MAX_ROWS)),
            lambda entries, error: self._loaded(token, entries, error),
        )
        self.chain.check()

    def _loaded(self, token: int, entries: Any, error: BaseException | None) -> None:
        if token != self._token:
            return  # a newer refresh is on its way
        if error is not None:
            log.warning("audit query failed: %s", error)
            self.count.text = _span("result-bad", _("audit query failed: {error}", error=error))
            return
        n = self.table.show(entries)
        span = self.filters.span_label
        if n >= MAX_ROWS:
            text = _(
                "{n} entries, {span} (the newest {max}; the CSV has more)",
                n=n,
                span=span,
                max=MAX_ROWS,
            )
        else:
            text = ngettext("{n} entry, {span}", "{n} entries, {span}", n, span=span)
        self.count.text = _span("", text, f' data-rows="{n}"')
        self.show_selected()

    def show_selected(self) -> None:
        """Show the selected entry's state before and after."""
        self.detail.show(self.table.selected_row())


def make_audit(session: HmiSession, doc: Document) -> None:
    """Build the audit page into ``doc``."""
    title = _("Audit log")
    if not page_allowed(session, "audit"):
        page_frame(session, doc, "audit", denied_body(_("not allowed for your role")), title)
        return
    audit = session.services.audit
    if audit is None:
        body = denied_body(_("no audit log: the server is not running"))
        page_frame(session, doc, "audit", body, title)
        return
    page = AuditPage(session, audit)
    page_frame(session, doc, "audit", page.layout, title)
    page.refresh()
