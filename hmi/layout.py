"""The frame of every page: navigation, user, the alarm banner, then the page body.

The frame fills the window (``sizing_mode="stretch_both"``); pages give their body a
stretching layout so nothing scrolls on a wall display, only long lists scroll inside
themselves. Which pages a user sees follows the role: a ``tenant`` sees only the tenant
page; the configuration page needs the ``config.read`` permission, the audit page
``audit.read``, the cashier page ``billing.write`` (a ``cashier`` sees only that one and no
alarm banner). At the right of the navigation: the user, a "password" link to the
change-password page (``/password``) and a "log out" button (a form posting to ``/logout``:
signing out is POST only, so no link or prefetch can do it). At the far right:
the server clock and the age of the page's data (:mod:`hmi.liveness`), which also keep the
page's connection watched: a page never looks live when it is not.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import CustomJS, InlineStyleSheet
from bokeh.models.widgets import Div

from hmi.banner import AlarmBanner
from hmi.liveness import LivenessStrip
from hmi.session import HmiSession
from hmi.theme import PAGE_CSS, PAGE_FONT, PAGE_TEMPLATE, TEXT_DIM
from i18n import N_, _, pick

__all__ = [
    "PAGES",
    "denied_body",
    "header_row",
    "html_div",
    "page_allowed",
    "page_frame",
    "redraw_on_update",
    "select_options",
    "sized_inputs",
    "text_sized_table",
]

#: URL name -> navigation label, in menu order.
PAGES: dict[str, str] = {
    "overview": N_("Overview"),
    "building": N_("Building"),
    "alarms": N_("Alarms"),
    "trends": N_("Trends"),
    "meters": N_("Meters"),
    "reports": N_("Reports"),
    "cashier": N_("Cashier"),
    "roster": N_("Roster"),
    "config": N_("Configuration"),
    "audit": N_("Audit log"),
    "tenant": N_("My account"),
}


def page_allowed(session: HmiSession, page: str) -> bool:
    """Return True when the session's user may open ``page``."""
    user = session.user
    if user is None:
        return False
    if user.role == "tenant":
        return page == "tenant"
    if page == "tenant":
        return False
    if page == "cashier":  # the cash desk: cashiers, operators, admins
        return session.may("billing.write")
    if page == "roster":  # the office's roster: cashiers, operators, engineers, admins
        return session.may("billing.write") or session.may("roster.import")
    if page == "config":
        return session.may("config.read")
    if page == "audit":
        return session.may("audit.read")
    if page == "reports":  # the report centre: report readers, not cashiers
        return session.may("billing.report") and session.may("tags.read")
    return session.may("tags.read")


def select_options(values: Iterable[str | tuple[str, str]]) -> list[str | tuple[str, str]]:
    """Return ``values`` (names, or ``(value, label)`` pairs) as a ``Select``/``MultiChoice`` options list."""
    return list(values)


def html_div(text: str = "", *, name: str | None = None, css: str = "", **kwargs: Any) -> Div:
    """Return a Div with the HMI stylesheet (plus ``css``) applied."""
    return Div(text=text, name=name, stylesheets=[InlineStyleSheet(css=PAGE_CSS + css)], **kwargs)


#: The log-out form's button looks like the "password" link next to it.
_LOGOUT_FORM = "display: inline; margin: 0"
_LOGOUT_BUTTON = (
    f"background: none; border: none; padding: 0.15em 0.4em; font: inherit; font-size: 0.9em; "
    f"color: {TEXT_DIM}; text-decoration: underline; cursor: pointer"
)


def _nav(session: HmiSession, current: str) -> str:
    links = []
    for page, label in PAGES.items():
        if not page_allowed(session, page):
            continue
        cls = ' class="current"' if page == current else ""
        links.append(f'<a href="{page}"{cls}>{html.escape(_(label))}</a>')
    who = html.escape(f"{session.user_name} ({session.user.role})") if session.user else ""
    site = session.services.site
    title = html.escape(pick(site.site.name) or "SCADA")
    account = (
        '<a href="/password" class="account" data-link="password" '
        f'title="{html.escape(_("change your password"))}">{html.escape(_("password"))}</a>'
        f'<form method="post" action="/logout" style="{_LOGOUT_FORM}">'
        f'<button type="submit" class="account" data-link="logout" style="{_LOGOUT_BUTTON}">'
        f"{html.escape(_('log out'))}</button></form>"
        if session.user is not None
        else ""
    )
    return (
        f'<nav class="hmi-nav"><b>{title}</b>{"".join(links)}'
        f'<span class="who" data-user="{html.escape(session.user_name)}">{who}</span>'
        f"{account}</nav>"
    )


def denied_body(message: str) -> Div:
    """Return the body shown instead of a page the user may not open."""
    return html_div(f'<p class="denied" data-denied="1">{html.escape(message)}</p>', name="denied")


def page_frame(session: HmiSession, doc: Document, current: str, body: Any, title: str) -> Any:
    """Add the framed page (nav, banner, ``body``) as the document's root and set its title."""
    nav = html_div(_nav(session, current), name="nav", sizing_mode="stretch_width")
    live = LivenessStrip(session, doc)
    parts: list[Any] = [row(nav, live.div, sizing_mode="stretch_width")]
    if session.user is not None and session.may("alarms.read"):  # not tenants, cashiers
        banner = AlarmBanner(session)
        parts.append(banner.layout)
    header = column(*parts, sizing_mode="stretch_width", styles={"padding": "4px 8px 0 8px"})
    root = column(
        header,
        body,
        sizing_mode="stretch_both",
        styles={"padding": "0 8px 8px 8px", "box-sizing": "border-box"},
        name="page",
    )
    doc.template = PAGE_TEMPLATE
    doc.title = title
    doc.add_root(root)
    return root


def redraw_on_update(table: Any, source: Any) -> None:
    """Make a DataTable repaint whenever its ``source`` changes.

    Bokeh 3.9's DataTable (SlickGrid) repaints only when the row count changes: a same-length
    update or a ``patch`` reaches the browser but the old cells stay on screen (an acknowledged
    alarm kept saying "unacknowledged"). Every table whose rows change in place needs this.
    """
    redraw = CustomJS(args={"table": table}, code="table.view.change.emit()")
    source.js_on_change("data", redraw)
    source.js_on_change("patching", redraw)


#: DataTable text: the page's size (``hmi.theme.PAGE_FONT``).
TABLE_FONT = PAGE_FONT

#: DataTable cells and headers in the page's text size (SlickGrid fixes 12 px).
TABLE_TEXT_CSS = f"""
.slick-cell, .slick-header-column {{ font-size: {TABLE_FONT}; }}
.slick-cell {{ padding-top: 0.35em; }}
.slick-header-column.ui-state-default {{ height: 1.5em !important; line-height: 1.5em !important; }}
"""

#: Rows as tall as the text needs: SlickGrid takes a row height in px, so measure the font.
ROW_HEIGHT_JS = f"""
const probe = document.createElement("div");
probe.style.cssText = "position:absolute;visibility:hidden;font-size:{TABLE_FONT}";
document.body.appendChild(probe);
const px = parseFloat(getComputedStyle(probe).fontSize) || 13;
probe.remove();
table.row_height = Math.round(px * 1.9);
"""


def text_sized_table(table: Any, doc: Document) -> None:
    """Give a DataTable the page's text size, on a wall the wall's: cells, headers and rows.

    Add ``TABLE_TEXT_CSS`` to the table's ``stylesheets`` (done here unless it is there);
    the row height is measured in the browser once the document is ready.
    """
    sheets = list(table.stylesheets)
    if not any(getattr(x, "css", None) == TABLE_TEXT_CSS for x in sheets):
        table.stylesheets = [*sheets, InlineStyleSheet(css=TABLE_TEXT_CSS)]
    doc.js_on_event("document_ready", CustomJS(args={"table": table}, code=ROW_HEIGHT_JS))


#: Text inputs and selects: their text follows the page font too (Bokeh fixes it otherwise).
INPUT_CSS = ".bk-input { font-size: var(--font-size); }"


def sized_inputs(*widgets: Any) -> None:
    """Give text inputs, text areas and selects the page's font size (:data:`INPUT_CSS`)."""
    for w in widgets:
        w.stylesheets = [*w.stylesheets, InlineStyleSheet(css=INPUT_CSS)]


def header_row(*items: Any) -> Any:
    """Return a toolbar row that stretches to the page width."""
    return row(*items, sizing_mode="stretch_width")
