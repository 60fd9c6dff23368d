"""The report centre (``/hmi/reports``): pick a report, period, scope; preview; download; subscribe.

:class:`ReportsPage` puts together :class:`~hmi.report_form.ReportForm` (report, period with
site-time presets or from / to, scope, options), a "show" button, the status line, the
downloads (xlsx, CSV, PDF: ``hmi.report_view.report_files``) and
:class:`~hmi.report_view.ReportPreview` (table and chart), and below them
:class:`~hmi.report_subscriptions.SubscriptionPanel`. The report is built and rendered in a
worker thread (``HmiSession.spawn``), as the REST handler does, so a long report (a month of
10,000 meters) never blocks the event loop; an answer older than the newest request is
dropped. Bad input and reports that cannot be made (a period outside the stored history, a
household with no data, an unknown scope) are a message naming the field, never an empty
file. The page needs ``billing.report``; without a running billing (no historian) it says so.
Loop-thread only.
"""

from __future__ import annotations

import html
import logging
import time
from typing import Any

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import TabPanel, Tabs
from bokeh.models.widgets import Button

from hmi.layout import denied_body, html_div, page_allowed, page_frame
from hmi.report_form import ReportForm, ReportRequest
from hmi.report_subscriptions import SubscriptionPanel
from hmi.report_view import ReportPreview, download_links, report_files
from hmi.session import HmiSession
from hmi.theme import AUTO_WIDTH
from i18n import _

__all__ = ["ReportsPage", "make_reports"]

log = logging.getLogger(__name__)

LINK_CSS = "a { margin-right: 0.8em; color: inherit; font-weight: 600; }"


class ReportsPage:
    """The report centre of one session (module docstring)."""

    def __init__(self, session: HmiSession, billing: Any, store: Any) -> None:
        self.session = session
        self.billing = billing
        self.form = ReportForm(session.services.site)
        self.show_btn = Button(
            label=_("Show report"), name="report-show", button_type="primary", styles=AUTO_WIDTH
        )
        self.show_btn.on_click(self.show)
        self.status = html_div("", name="report-status", sizing_mode="stretch_width")
        self.links = html_div("", name="report-downloads", css=LINK_CSS)
        wall = (session.arg("wall") or "").lower() in ("1", "true", "yes", "on")
        self.preview = ReportPreview(session.doc, wall)
        self.subscriptions = SubscriptionPanel(session, store) if store is not None else None
        self._token = 0
        wrap = {"flex-wrap": "wrap", "gap": "4px", "align-items": "end"}
        report = column(
            row(*self.form.widgets, self.show_btn, sizing_mode="stretch_width", styles=wrap),
            row(self.status, self.links, sizing_mode="stretch_width", styles=wrap),
            self.preview.layout,
            sizing_mode="stretch_both",
        )
        tabs = [TabPanel(child=report, title=_("Report"))]
        if self.subscriptions is not None:
            tabs.append(TabPanel(child=self.subscriptions.layout, title=_("E-mail subscriptions")))
        self.layout = Tabs(tabs=tabs, sizing_mode="stretch_both", name="report-tabs")

    def _say(self, text: str, cls: str, state: str) -> None:
        self.status.text = (
            f'<span class="{cls}" data-report-state="{state}">{html.escape(text)}</span>'
        )

    def show(self) -> None:
        """Build the form's report in a worker thread; show it with its downloads."""
        try:
            req = self.form.request(time.time())
        except ValueError as exc:
            self._fail(exc)
            return
        self._token += 1
        token = self._token
        self.links.text = ""
        self.preview.clear()
        self._say(_("making the report of {period}…", period=req.period.label), "u", "busy")
        tz = self.billing.tz

        def build() -> tuple[Any, dict[str, bytes]]:
            report = req.build(self.billing)
            return report, report_files(report, tz)

        self.session.spawn(
            self.session.in_thread(build), lambda res, err: self._shown(token, req, res, err)
        )

    def _fail(self, exc: BaseException) -> None:
        text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        self._say(text, "result-bad", "error")
        self.links.text = ""
        self.preview.clear()

    def _shown(self, token: int, req: ReportRequest, res: Any, err: BaseException | None) -> None:
        if token != self._token:
            return  # a newer request is on its way
        if err is not None or res is None:
            if not isinstance(err, ValueError | KeyError):
                log.exception("report %s failed", req.kind, exc_info=err)
            self._fail(err or ValueError(_("no report")))
            return
        report, files = res
        self.preview.show(report)
        self.links.text = download_links(report, files)
        self._say(report.title, "result-ok", "shown")


def make_reports(session: HmiSession, doc: Document) -> None:
    """Build the report centre into ``doc``."""
    title = _("Reports")
    if not page_allowed(session, "reports"):
        page_frame(session, doc, "reports", denied_body(_("not allowed for your role")), title)
        return
    services = session.services
    billing = services.billing
    if billing is None or getattr(billing, "historian", None) is None:
        body = denied_body(_("no reports: billing and the historian are not running"))
        page_frame(session, doc, "reports", body, title)
        return
    from scada.services.subscriptions import SubscriptionStore

    store = SubscriptionStore.in_data_dir(services.data_dir, services.site.site.timezone)
    session.add_cleanup(store.close)
    page = ReportsPage(session, billing, store)
    page_frame(session, doc, "reports", page.layout, title)
