"""Configuration page for engineers: browse, edit YAML, validate, diff, apply hot, roll back, import CSV.

Everything goes through the server's config API (``services.config``, issue 6's
``ConfigManager``): a proposal is a set of changed files (``hmi.config_editor``);
*Validate* shows every error with ``file:line:col``, the field path and the offending line;
*Diff* shows the unified diff against the running configuration. *Apply* first validates
and shows what the change does (files, tags and devices added / removed / changed, channels
and templates, alarm rules, whether the drivers restart: ``hmi.config_apply``) and applies
hot, as a new version, only on *Confirm*; *Cancel* leaves everything as it is. *Roll back
to selected* (``hmi.config_history``, times in the site's zone) asks the same way before it
applies an earlier version. If another apply lands between the question and the confirm,
the confirm is refused and the page asks to review again. *Import CSV* turns rows of
``id,template,channel,unit[,building,household]`` into a new included file of devices.
Viewing needs ``config.read``; changing needs ``config.write`` (the service audits both).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
from typing import Any

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, InlineStyleSheet
from bokeh.models.widgets import Button, DataTable, FileInput, TableColumn, TextInput

from hmi.config_apply import ConfirmStep, plan_summary_html
from hmi.config_editor import ProposalEditor
from hmi.config_history import VersionHistory
from hmi.layout import (
    denied_body,
    html_div,
    page_allowed,
    page_frame,
    sized_inputs,
    text_sized_table,
)
from hmi.session import HmiSession
from hmi.theme import AUTO_WIDTH, WIDGET_FONT
from i18n import _, ngettext
from scada.config import ComputedTagConfig, SiteConfig

__all__ = ["ConfigPage", "config_items", "csv_devices_yaml", "errors_html", "make_config"]

log = logging.getLogger(__name__)

IMPORT_FILE = "imported-devices.yaml"

#: Wide screens: items and versions left, editor right. Phones: one column that scrolls.
LAYOUT_CSS = f"""
:host(.config-left) {{ flex: 0 0 clamp(620px, 32vw, 1300px) !important; }}
:host-context(html.wall):host(.config-left) {{ flex-basis: 50vw !important; }}
:host(.config-right) {{ --bokeh-font-size: {WIDGET_FONT}; }}
@media (max-width: 700px) {{
  :host(.config-body) {{ flex-direction: column !important; overflow-y: auto !important; }}
  :host(.config-left) {{ flex: none !important; width: 100% !important; height: 70vh !important; }}
  :host(.config-right) {{ flex: none !important; width: 100% !important; height: 95vh !important; }}
}}
"""
CSV_FIELDS = ("id", "template", "channel", "unit")


def config_items(site: SiteConfig, files: dict[str, str]) -> dict[str, list[Any]]:
    """Return table rows of channels, templates, devices and tags with the file/line defining them."""
    rows: dict[str, list[Any]] = {"kind": [], "id": [], "detail": [], "file": [], "line": []}

    def where(ident: str) -> tuple[str, int]:
        for rel, text in files.items():
            for n, line in enumerate(text.splitlines(), 1):
                if (
                    f"id: {ident}" in line
                    or f"name: {ident}" in line
                    or line.strip() == f"{ident}:"
                ):
                    return rel, n
        return "", 0

    def add(kind: str, ident: str, detail: str) -> None:
        rel, n = where(ident)
        rows["kind"].append(kind)
        rows["id"].append(ident)
        rows["detail"].append(detail)
        rows["file"].append(rel)
        rows["line"].append(n)

    for c in site.channels:
        add(_("channel"), c.id, str(getattr(c.protocol, "value", c.protocol)))
    for tid, tpl in site.templates.items():
        add(_("template"), tid, ngettext("{n} point", "{n} points", len(tpl.points)))
    for d in site.devices:
        add(_("device"), d.id, f"{d.template} @ {d.channel}/{d.unit}")
    for t in site.tags:
        add(_("tag"), t.name, t.expr if isinstance(t, ComputedTagConfig) else t.type)
    return rows


def errors_html(errors: list[dict[str, Any]], files: dict[str, str]) -> str:
    """Return the validation errors as HTML: location, field path, message and the source line."""
    if not errors:
        return f'<span class="result-ok" data-valid="1">{html.escape(_("valid"))}</span>'
    count = ngettext("{n} error", "{n} errors", len(errors))
    out = [f'<div data-valid="0"><b>{html.escape(count)}</b><ul>']
    for e in errors[:50]:
        f, line, col = e.get("file", ""), int(e.get("line") or 0), int(e.get("col") or 0)
        src = ""
        text = files.get(f)
        if text and line > 0:
            lines = text.splitlines()
            if line <= len(lines):
                caret = " " * max(0, col - 1) + "^"
                src = f"<pre>{html.escape(lines[line - 1])}\n{caret}</pre>"
        out.append(
            f'<li data-error-file="{html.escape(f)}" data-error-line="{line}">'
            f"<code>{html.escape(f)}:{line}:{col}</code> <b>{html.escape(str(e.get('path', '')))}</b>: "
            f"{html.escape(str(e.get('message', '')))}{src}</li>"
        )
    out.append("</ul></div>")
    return "".join(out)


def csv_devices_yaml(text: str) -> str:
    """Return a YAML ``devices:`` section for CSV rows; raise ``ValueError`` naming the row."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [f for f in CSV_FIELDS if f not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(
            _(
                "CSV header lacks {missing} (need {fields})",
                missing=", ".join(missing),
                fields=", ".join(CSV_FIELDS),
            )
        )
    lines = ["# devices imported from CSV on the HMI configuration page", "devices:"]
    for n, r in enumerate(reader, 2):
        try:
            unit = int(str(r["unit"]).strip())
        except ValueError:
            msg = _("CSV line {n}: unit {unit} is not a number", n=n, unit=repr(r["unit"]))
            raise ValueError(msg) from None
        parts = [
            f"id: {r['id'].strip()}",
            f"template: {r['template'].strip()}",
            f"channel: {r['channel'].strip()}",
            f"unit: {unit}",
        ]
        for opt in ("building", "household"):
            if (r.get(opt) or "").strip():
                parts.append(f"{opt}: {r[opt].strip()}")
        lines.append("  - {" + ", ".join(parts) + "}")
    if len(lines) == 2:
        raise ValueError(_("the CSV has no rows"))
    return "\n".join(lines) + "\n"


class ConfigPage:
    """The page: items table and versions on the left; editor, actions and results on the right."""

    def __init__(self, session: HmiSession, api: Any) -> None:
        self.session = session
        self.api = api
        self.can_write = session.may("config.write")
        self.editor = ProposalEditor(api)
        self.items = ColumnDataSource(
            config_items(session.services.site, self.editor.files), name="config-items"
        )
        self.result = html_div(
            "",
            name="config-result",
            sizing_mode="stretch_width",
            css="pre { margin: 0.2em 0; font-size: 0.85em; } ul { padding-left: 1.2em; }",
        )
        self.confirm = ConfirmStep(on_cancel=self._cancelled)
        self.editor.on_edit = self._edited
        tz = session.services.site.site.timezone
        self.history = VersionHistory(api, tz, self.ask_rollback)
        self.comment = TextInput(
            placeholder=_("comment for the version history"),
            name="config-comment",
            styles={"width": "clamp(260px, 14vw, 900px)"},
        )
        self.csv_in = FileInput(
            accept=".csv", name="config-csv", styles={"width": "clamp(220px, 16vw, 900px)"}
        )
        sized_inputs(self.comment, self.editor.editor, self.csv_in)
        self.buttons = self._buttons()
        self.items.selected.on_change("indices", self._on_item)
        self.csv_in.on_change("value", self._on_csv)

    def _buttons(self) -> dict[str, Button]:
        buttons = {
            "validate": Button(label=_("Validate"), name="config-validate", styles=AUTO_WIDTH),
            "diff": Button(label=_("Diff"), name="config-diff", styles=AUTO_WIDTH),
            "apply": Button(
                label=_("Apply"), button_type="primary", name="config-apply", styles=AUTO_WIDTH
            ),
        }
        buttons["validate"].on_click(lambda: self.validate("validate"))
        buttons["diff"].on_click(lambda: self.validate("diff"))
        buttons["apply"].on_click(self.ask_apply)
        for w in (buttons["validate"], buttons["apply"], self.history.button, self.csv_in):
            w.disabled = not self.can_write
        self.comment.disabled = not self.can_write
        return buttons

    def say(self, text: str, cls: str = "u", attrs: str = "") -> None:
        """Show one line of result text."""
        self.result.text = f'<span class="{cls}"{attrs}>{html.escape(text)}</span>'

    def _fail(self, err: BaseException) -> None:
        self.say(str(err), "result-bad")

    # ------------------------------------------------------------------ validate / diff
    def show_validation(self, res: dict[str, Any], what: str) -> None:
        """Show a validation result: errors, or valid (with the diff when asked)."""
        text = errors_html(res.get("errors", []), self.editor.bundle())
        if res.get("valid") and res.get("diff") is not None and what == "diff":
            diffs = "".join(f"<pre>{html.escape(d)}</pre>" for d in res["diff"].values())
            text += diffs or f"<p>{html.escape(_('no changes'))}</p>"
        self.result.text = text

    def validate(self, what: str) -> None:
        """Validate the proposal (``what``: ``validate`` or ``diff``)."""
        changes = self.editor.stage()
        self.say(_("validating…"))

        def done(res: Any, err: BaseException | None) -> None:
            if err is not None:
                self._fail(err)
            else:
                self.show_validation(res, what)

        self.session.spawn(self.api.validate(changes), done)

    # ------------------------------------------------------------------ apply
    def _writer(self) -> Any:
        """The user object of a session that may change the configuration, else None."""
        user = self.session.user
        if user is None or not self.session.may("config.write"):
            self.say(_("your role may not change the configuration"), "result-bad")
            return None
        return user.raw

    def ask_apply(self) -> None:
        """Validate the proposal and ask for the confirm with what it changes."""
        if self._writer() is None:
            return
        changes = self.editor.stage()
        if not changes:
            self.say(_("nothing to apply"))
            return
        base = self.api.current_version()
        self.say(_("checking what the change does…"))
        question = _("Apply these changes as a new version?")

        def checked(res: Any, err: BaseException | None) -> None:
            if err is not None:
                self._fail(err)
            elif not res.get("valid"):
                self.show_validation(res, "apply")
            elif not res.get("diff"):
                self.say(_("nothing to apply"))
            else:
                summary = plan_summary_html(res.get("plan"), sorted(res["diff"]), question)
                self.confirm.ask(summary, lambda: self._apply(changes, base))
                self.say(_("review the change, then confirm or cancel"))

        self.session.spawn(self.api.validate(changes), checked)

    def _unchanged_since(self, base: int) -> bool:
        now = self.api.current_version()
        if now == base:
            return True
        self.say(
            _(
                "the running configuration changed meanwhile (now version {v}): review again",
                v=now,
            ),
            "result-bad",
        )
        return False

    def _apply(self, changes: dict[str, str], base: int) -> None:
        raw = self._writer()
        if raw is None or not self._unchanged_since(base):
            return
        self.say(_("applying…"))

        def done(res: Any, err: BaseException | None) -> None:
            if err is not None:
                self._fail(err)
            elif not res.get("valid"):
                self.show_validation(res, "apply")
            else:
                self.reload()
                v, n = res.get("version"), len(res.get("diff", {}))
                text = _("applied as version {v} ({n} file(s))", v=v, n=n)
                self.say(text, "result-ok", f' data-applied="{v}"')

        apply = self.api.apply(raw, changes, comment=self.comment.value, source=self.session.source)
        self.session.spawn(apply, done)

    def _cancelled(self) -> None:
        self.say(_("cancelled: nothing was applied"), "u", ' data-cancelled="1"')

    def _edited(self) -> None:
        if self.confirm.open:  # the question was about other text
            self.confirm.cancel()

    # ------------------------------------------------------------------ roll back
    def ask_rollback(self, number: int | None) -> None:
        """Validate version ``number``'s files and ask for the confirm of the roll-back."""
        if self._writer() is None:
            return
        if number is None:
            self.say(_("select a version first"), "result-bad")
            return
        try:
            files = self.api.version(number)["files"]
        except KeyError as exc:
            self._fail(exc)
            return
        base = self.api.current_version()
        question = _("Roll back to version {v} (applied as a new version)?", v=number)

        def checked(res: Any, err: BaseException | None) -> None:
            if err is not None:
                self._fail(err)
            elif not res.get("valid"):
                self.show_validation(res, "rollback")
            else:
                summary = plan_summary_html(
                    res.get("plan"), sorted(res.get("diff") or {}), question
                )
                self.confirm.ask(summary, lambda: self._rollback(number, base))

        self.session.spawn(self.api.validate(dict(files)), checked)

    def _rollback(self, number: int, base: int) -> None:
        raw = self._writer()
        if raw is None or not self._unchanged_since(base):
            return

        def done(res: Any, err: BaseException | None) -> None:
            if err is not None:
                self._fail(err)
                return
            self.reload()
            v = res.get("version")
            text = _("rolled back to version {n} as version {v}", n=number, v=v)
            self.say(text, "result-ok", f' data-rolled-back="{v}"')

        self.session.spawn(self.api.rollback(raw, number, source=self.session.source), done)

    # ------------------------------------------------------------------ the rest
    def reload(self) -> None:
        """Show the running configuration again after an apply or a roll-back."""
        self.editor.reload()
        self.items.data = config_items(self.session.services.site, self.editor.files)
        self.history.refresh()

    def _on_item(self, _a: str, _o: list[int], new: list[int]) -> None:
        if not new:
            return
        i = new[0]
        rel = self.items.data["file"][i]
        self.editor.show_file(rel)
        kind, ident, line = (
            self.items.data["kind"][i],
            self.items.data["id"][i],
            self.items.data["line"][i],
        )
        self.say(_("{kind} {id}: {file} line {line}", kind=kind, id=ident, file=rel, line=line))

    def _on_csv(self, _a: str, _o: Any, new: str) -> None:
        try:
            text = base64.b64decode(new).decode("utf-8-sig")
            devices = csv_devices_yaml(text)
        except (ValueError, UnicodeDecodeError) as exc:
            self._fail(exc)
            return
        self.editor.add_import(IMPORT_FILE, devices)
        self.validate("diff")

    def build_layout(self) -> Any:
        """Return the page body (call once)."""
        table = DataTable(
            source=self.items,
            columns=[
                TableColumn(field="kind", title=_("kind"), width=70),
                TableColumn(field="id", title=_("id"), width=160),
                TableColumn(field="detail", title=_("detail"), width=170),
                TableColumn(field="file", title=_("file"), width=150),
                TableColumn(field="line", title=_("line"), width=40),
            ],
            sizing_mode="stretch_both",
            name="config-table",
            index_position=None,
        )
        text_sized_table(table, self.session.doc)
        text_sized_table(self.history.table, self.session.doc)
        css = [InlineStyleSheet(css=LAYOUT_CSS)]
        left = column(
            table,
            self.history.table,
            self.history.button,
            sizing_mode="stretch_both",
            width=620,
            css_classes=["config-left"],
            stylesheets=css,
        )
        b, wrap = self.buttons, {"flex-wrap": "wrap", "gap": "4px"}
        actions = row(
            self.editor.select,
            b["validate"],
            b["diff"],
            self.comment,
            b["apply"],
            sizing_mode="stretch_width",
            styles=wrap,
        )
        csv_label = html_div(f'<span class="u">{html.escape(_("import devices from CSV:"))}</span>')
        right = column(
            actions,
            self.confirm.layout,
            row(csv_label, self.csv_in, styles=wrap),
            self.editor.editor,
            self.result,
            sizing_mode="stretch_both",
            css_classes=["config-right"],
            stylesheets=css,
        )
        return row(
            left, right, sizing_mode="stretch_both", css_classes=["config-body"], stylesheets=css
        )


def make_config(session: HmiSession, doc: Document) -> None:
    """Build the configuration page into ``doc``."""
    title = _("Configuration")
    if not page_allowed(session, "config"):
        denied = denied_body(_("configuration needs the engineer role"))
        page_frame(session, doc, "config", denied, title)
        return
    api = session.services.config
    if api is None:
        denied = denied_body(_("no config API (start the server)"))
        page_frame(session, doc, "config", denied, title)
        return
    page_frame(session, doc, "config", ConfigPage(session, api).build_layout(), title)
