"""The roster page (``/hmi/roster``): upload the office's roster, see the dry run, apply, export.

For cashiers, operators, engineers and admins. *Upload* takes an xlsx or CSV file; *Dry run*
plans it through :class:`scada.services.roster.RosterService`, the REST import's path
(``POST /api/roster/import?dry_run=1``), and shows what would be added, changed and left
unchanged, or every bad row named by sheet, row and column (``data-issue``). *Apply* asks
first, then imports the same bytes as a new configuration version: nothing is imported when a
row is bad. Applying changes the configuration, so it needs ``roster.import`` and
``config.write`` (engineers, admins); the service refuses others with the reason. *Export*
downloads the running site's roster (xlsx or CSV, ``roster.export``) as a link carried in the
page (a data URL). Loop-thread only; the service's work runs in worker threads.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any

from bokeh.core.property.descriptors import UnsetValueError
from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models.widgets import Button, FileInput

from billing.roster import FORMATS, RosterError, RosterIssue
from hmi.layout import denied_body, html_div, page_allowed, page_frame
from hmi.session import HmiSession
from hmi.theme import AUTO_WIDTH, WIDGET_FONT
from i18n import _, ngettext
from scada.services.roster import RosterService

__all__ = ["RosterPage", "issues_html", "make_roster", "roster_service", "summary_html"]

_MIME = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_WRAP = {"flex-wrap": "wrap", "gap": "6px", "align-items": "center"}


def roster_service(session: HmiSession) -> RosterService | None:
    """Return the roster service of the running site (None: not read from files, no billing)."""
    config = session.services.config
    billing = session.services.billing
    if config is None or config.main is None:
        return None
    return RosterService(config, lambda: None if billing is None else billing.ledger)


def issues_html(issues: Iterable[RosterIssue]) -> str:
    """Return the bad rows as an HTML list, each naming its sheet, row and column."""
    items = []
    for i in issues:
        where = [
            _("sheet {sheet}", sheet=i.sheet) if i.sheet else "",
            _("row {row}", row=i.row) if i.row else "",
            _("column {column}", column=i.column) if i.column else "",
        ]
        place = ", ".join(w for w in where if w)
        text = f"{place}: {i.message}" if place else i.message
        items.append(
            f'<li data-issue="{html.escape(str(i))}" data-row="{i.row or ""}" '
            f'data-column="{html.escape(i.column or "")}">{html.escape(text)}</li>'
        )
    return f'<ul class="issues">{"".join(items)}</ul>'


def _ids(items: list[dict[str, Any]]) -> str:
    return ", ".join(str(x.get("id", "")) for x in items) or "—"


def summary_html(summary: dict[str, Any]) -> str:
    """Return the dry run's summary (added / changed / unchanged) as an HTML table."""
    rows = []
    counts = {}
    for part, title in (("households", _("Households")), ("accounts", _("Accounts"))):
        s = summary[part]
        counts[part] = (len(s["added"]), len(s["changed"]), s["unchanged"])
        rows.append(
            f'<tr data-part="{part}" data-added="{len(s["added"])}" '
            f'data-changed="{len(s["changed"])}" data-unchanged="{s["unchanged"]}">'
            f"<td><b>{html.escape(title)}</b></td>"
            f"<td>{html.escape(_('added: {ids}', ids=_ids(s['added'])))}</td>"
            f"<td>{html.escape(_('changed: {ids}', ids=_ids(s['changed'])))}</td>"
            f"<td>{html.escape(_('unchanged: {n}', n=s['unchanged']))}</td></tr>"
        )
    openings = "".join(
        f"<li>{html.escape(_('{account}: opening balance {amount}', account=o['account'], amount=o['amount']))}</li>"
        for o in summary.get("openings", [])
    )
    n = int(summary.get("rows", 0))
    head = html.escape(ngettext("{n} row read", "{n} rows read", n))
    more = f"<p>{html.escape(_('Opening balances'))}</p><ul>{openings}</ul>" if openings else ""
    return f'<p>{head}</p><table class="roster-summary" style="border-spacing: 1em 2px">{"".join(rows)}</table>{more}'


class RosterPage:
    """Upload, dry run, apply (with a confirm step) and export of the roster."""

    def __init__(self, session: HmiSession, service: RosterService) -> None:
        self.session = session
        self.service = service
        self.data: bytes | None = None
        self.fmt = "csv"
        self.name = "roster"
        self.checked = False  # the uploaded bytes passed a dry run
        self.upload = FileInput(
            accept=".csv,.xlsx", name="roster-file", styles={"width": "clamp(220px, 18vw, 900px)"}
        )
        self.upload.on_change("filename", self._on_file)
        self.upload.on_change("value", self._on_file)
        self.btn_dry = self._button(_("Dry run"), "roster-dry-run", self.dry_run)
        self.btn_apply = self._button(_("Apply"), "roster-apply", self.ask)
        self.btn_confirm = self._button(_("Confirm"), "roster-confirm", self.apply)
        self.btn_confirm.button_type = "primary"
        self.btn_cancel = self._button(_("Cancel"), "roster-cancel", self.cancel)
        self.btn_xlsx = self._button(
            _("Export xlsx"), "roster-export-xlsx", lambda: self.export("xlsx")
        )
        self.btn_csv = self._button(
            _("Export CSV"), "roster-export-csv", lambda: self.export("csv")
        )
        self.btn_dry.disabled = self.btn_apply.disabled = True
        may_import = session.may("roster.import") and session.may("config.write")
        may_export = session.may("roster.export")
        self.btn_xlsx.disabled = self.btn_csv.disabled = not may_export
        self.rights = html_div("", name="roster-rights", sizing_mode="stretch_width")
        why = []
        if not may_import:
            why.append(
                _("Applying a roster changes the configuration: it needs an engineer or admin.")
            )
        if not may_export:
            why.append(_("The export holds tenants' contacts: it needs an engineer or admin."))
        self.may_import = may_import
        self.rights.text = "".join(f'<p class="u" data-why="1">{html.escape(w)}</p>' for w in why)
        self.note = html_div("", name="roster-note", sizing_mode="stretch_width")
        self.confirm_row = row(self.btn_confirm, self.btn_cancel, styles=_WRAP, visible=False)
        self.result = html_div("", name="roster-result", sizing_mode="stretch_width")
        self.download = html_div("", name="roster-download")
        intro = html_div(
            f"<p>{html.escape(_('Upload the roster (xlsx or CSV: building, flat, area, tenant, phone, e-mail, meter, tariff, opening balance), check it with a dry run, then apply it.'))}</p>",
            sizing_mode="stretch_width",
        )
        self.layout = column(
            intro,
            row(self.upload, self.btn_dry, self.btn_apply, styles=_WRAP),
            self.rights,
            self.note,
            self.confirm_row,
            self.result,
            row(self.btn_xlsx, self.btn_csv, self.download, styles=_WRAP),
            sizing_mode="stretch_width",
            styles={"padding": "8px", "--bokeh-font-size": WIDGET_FONT, "overflow-y": "auto"},
            name="roster-body",
        )

    @staticmethod
    def _button(label: str, name: str, click: Any) -> Button:
        b = Button(label=label, name=name, styles=AUTO_WIDTH)
        b.on_click(click)
        return b

    def say(self, text: str, cls: str = "u", attrs: str = "") -> None:
        """Show one line in the note."""
        self.note.text = f'<p class="{cls}"{attrs}>{html.escape(text)}</p>'

    def _on_file(self, _a: str, _o: Any, _n: Any) -> None:
        try:  # (the browser sends the value and the file name one after the other)
            value, filename = self.upload.value, self.upload.filename
        except UnsetValueError:
            return
        if not value or not filename:
            return
        name = PurePosixPath(str(filename)).name
        fmt = PurePosixPath(name).suffix.lower().lstrip(".")
        self._settle()
        self.checked = False
        self.btn_apply.disabled = True
        self.result.text = ""
        if fmt not in FORMATS:
            self.data = None
            self.btn_dry.disabled = True
            self.say(_("{name}: send an xlsx or CSV file", name=name), "result-bad")
            return
        self.data = base64.b64decode(str(value))
        self.fmt, self.name = fmt, name
        self.btn_dry.disabled = False
        self.say(_("{name} read: run the dry run", name=name))

    def _settle(self) -> None:
        self.confirm_row.visible = False

    # ------------------------------------------------------------------ dry run and apply
    def dry_run(self) -> None:
        """Plan the uploaded roster (nothing applied) and show the summary or the bad rows."""
        if self.data is None:
            return
        self._settle()
        self.say(_("checking…"))
        self.session.spawn(self._import(True), self._checked)

    async def _import(self, dry_run: bool) -> dict[str, Any]:
        assert self.data is not None
        s = self.session
        return await self.service.import_roster(
            s.actor, self.data, self.fmt, dry_run=dry_run, name=self.name, source=s.source
        )

    def _failed(self, err: BaseException) -> None:
        self.checked = False
        self.btn_apply.disabled = True
        if isinstance(err, RosterError):
            n = len(err.issues)
            self.say(
                _("{n} problem(s) in the roster: nothing is imported", n=n),
                "result-bad",
                f' data-issues="{n}"',
            )
            self.result.text = issues_html(err.issues)
            return
        self.say(_("refused: {error}", error=str(err)), "result-bad", ' data-refused="1"')

    def _checked(self, result: dict[str, Any] | None, err: BaseException | None) -> None:
        if err is not None or result is None:
            self._failed(err or RuntimeError("no result"))
            return
        if not result["valid"]:
            errors = "; ".join(str(e) for e in result["errors"][:5])
            self.say(_("the configuration would not load: {errors}", errors=errors), "result-bad")
            self.result.text = ""
            return
        self.checked = True
        self.btn_apply.disabled = not self.may_import
        self.say(_("dry run: nothing applied yet"), "u", ' data-dry-run="ok"')
        self.result.text = summary_html(result["summary"])

    def ask(self) -> None:
        """Ask before applying the checked roster."""
        if not self.checked:
            return
        self.say(
            _("Apply {name} as a new configuration version?", name=self.name),
            "u",
            ' data-confirm="roster"',
        )
        self.confirm_row.visible = True

    def cancel(self) -> None:
        """Drop the question."""
        self._settle()
        self.say(_("cancelled"))

    def apply(self) -> None:
        """Import the checked roster (a new configuration version)."""
        if not self.confirm_row.visible:
            return  # a second click: already on its way
        self._settle()
        self.btn_apply.disabled = True
        self.say(_("applying…"))
        self.session.spawn(self._import(False), self._applied)

    def _applied(self, result: dict[str, Any] | None, err: BaseException | None) -> None:
        if err is not None or result is None:
            self._failed(err or RuntimeError("no result"))
            return
        self.checked = False
        if not result["valid"]:
            errors = "; ".join(str(e) for e in result["errors"][:5])
            self.say(_("refused: {error}", error=errors), "result-bad")
            return
        version = result["version"]
        attrs = f' data-applied="{version}"'
        if version is None:
            self.say(
                _("the configuration holds this roster already: nothing changed"),
                "result-ok",
                attrs,
            )
        else:
            self.say(
                _("applied as configuration version {version}", version=version), "result-ok", attrs
            )
        self.result.text = summary_html(result["summary"])

    # ------------------------------------------------------------------ export
    def export(self, fmt: str) -> None:
        """Make the running roster's file and offer it as a download link."""
        if not self.session.may("roster.export"):
            return
        self.download.text = html.escape(_("preparing…"))
        self.session.spawn(
            self.session.in_thread(self.service.export, fmt), lambda d, e: self._exported(fmt, d, e)
        )

    def _exported(self, fmt: str, data: bytes | None, err: BaseException | None) -> None:
        if err is not None or data is None:
            self.download.text = html.escape(_("refused: {error}", error=str(err)))
            return
        site = self.session.services.site.site.id
        name = f"roster-{site}.{fmt}"
        b64 = base64.b64encode(data).decode("ascii")
        self.download.text = (
            f'<a href="data:{_MIME[fmt]};base64,{b64}" download="{name}" '
            f'data-roster-export="{fmt}">{html.escape(_("Download {name}", name=name))}</a>'
        )


def make_roster(session: HmiSession, doc: Document) -> None:
    """Build the roster page into ``doc``."""
    title = _("Roster")
    if not page_allowed(session, "roster"):
        page_frame(session, doc, "roster", denied_body(_("not allowed for your role")), title)
        return
    service = roster_service(session)
    if service is None:
        body = denied_body(_("the running configuration was not read from files"))
        page_frame(session, doc, "roster", body, title)
        return
    page_frame(session, doc, "roster", RosterPage(session, service).layout, title)
