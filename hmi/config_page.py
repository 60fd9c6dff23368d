"""Configuration page for engineers: browse, edit YAML, validate, diff, apply hot, roll back, import CSV.

Everything goes through the server's config API (``services.config``, issue 6's
``ConfigManager``): a proposal is a set of changed files; *Validate* shows every error with
``file:line:col``, the field path and the offending line; *Diff* shows the unified diff
against the running configuration; *Apply* applies it hot (connections and tag values are
kept) as a new version; *Roll back* applies an earlier version. *Import CSV* turns rows of
``id,template,channel,unit[,building,household]`` into a new included file of devices.
Viewing needs ``config.read``; changing needs ``config.write``.
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
from bokeh.models import ColumnDataSource
from bokeh.models.widgets import (
    Button,
    DataTable,
    FileInput,
    Select,
    TableColumn,
    TextAreaInput,
    TextInput,
)

from hmi.layout import denied_body, html_div, page_allowed, page_frame
from hmi.session import HmiSession
from scada.config import ComputedTagConfig, SiteConfig
from tags.model import iso

__all__ = ["config_items", "csv_devices_yaml", "errors_html", "make_config"]

log = logging.getLogger(__name__)

IMPORT_FILE = "imported-devices.yaml"
MAX_FILE_CHARS = 5_000_000  # the editor truncates at 500 characters by default
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
        add("channel", c.id, str(getattr(c.protocol, "value", c.protocol)))
    for tid, tpl in site.templates.items():
        add("template", tid, f"{len(tpl.points)} points")
    for d in site.devices:
        add("device", d.id, f"{d.template} @ {d.channel}/{d.unit}")
    for t in site.tags:
        add("tag", t.name, t.expr if isinstance(t, ComputedTagConfig) else t.type)
    return rows


def errors_html(errors: list[dict[str, Any]], files: dict[str, str]) -> str:
    """Return the validation errors as HTML: location, field path, message and the source line."""
    if not errors:
        return '<span class="result-ok" data-valid="1">valid</span>'
    out = [f'<div data-valid="0"><b>{len(errors)} error(s)</b><ul>']
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
        raise ValueError(f"CSV header lacks {', '.join(missing)} (need {', '.join(CSV_FIELDS)})")
    lines = ["# devices imported from CSV on the HMI configuration page", "devices:"]
    for n, r in enumerate(reader, 2):
        try:
            unit = int(str(r["unit"]).strip())
        except ValueError:
            raise ValueError(f"CSV line {n}: unit {r['unit']!r} is not a number") from None
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
        raise ValueError("the CSV has no rows")
    return "\n".join(lines) + "\n"


def _with_include(main_text: str, rel: str) -> str:
    """Return the main file's text with ``rel`` added to its ``include:`` list."""
    if rel in main_text:
        return main_text
    if "include:\n" in main_text:
        return main_text.replace("include:\n", f"include:\n  - {rel}\n", 1)
    return f"include: [{rel}]\n" + main_text


def make_config(session: HmiSession, doc: Document) -> None:
    """Build the configuration page into ``doc``."""
    if not page_allowed(session, "config"):
        page_frame(
            session,
            doc,
            "config",
            denied_body("configuration needs the engineer role"),
            "Configuration",
        )
        return
    api = session.services.config
    if api is None:
        page_frame(
            session, doc, "config", denied_body("no config API (start the server)"), "Configuration"
        )
        return
    can_write = session.may("config.write")
    files = api.current_files()
    proposal: dict[str, str] = {}
    items = ColumnDataSource(config_items(session.services.site, files), name="config-items")
    table = DataTable(
        source=items,
        columns=[
            TableColumn(field="kind", title="kind", width=70),
            TableColumn(field="id", title="id", width=160),
            TableColumn(field="detail", title="detail", width=170),
            TableColumn(field="file", title="file", width=150),
            TableColumn(field="line", title="line", width=40),
        ],
        sizing_mode="stretch_both",
        name="config-table",
        index_position=None,
    )
    file_sel = Select(value=api.main_name(), options=sorted(files), name="config-file", width=260)
    editor = TextAreaInput(
        value=files.get(file_sel.value, ""),
        rows=28,
        name="config-editor",
        max_length=MAX_FILE_CHARS,
        sizing_mode="stretch_both",
        styles={"font-family": "monospace"},
    )
    comment = TextInput(
        placeholder="comment for the version history", name="config-comment", width=260
    )
    validate_btn = Button(label="Validate", name="config-validate", width=90)
    diff_btn = Button(label="Diff", name="config-diff", width=70)
    apply_btn = Button(label="Apply", button_type="primary", name="config-apply", width=80)
    csv_in = FileInput(accept=".csv", name="config-csv", width=220)
    result = html_div(
        "",
        name="config-result",
        sizing_mode="stretch_width",
        css="pre { margin: 0.2em 0; font-size: 0.85em; } ul { padding-left: 1.2em; }",
    )
    versions_src = ColumnDataSource(
        {"version": [], "when": [], "user": [], "comment": []}, name="config-versions"
    )
    versions = DataTable(
        source=versions_src,
        columns=[
            TableColumn(field="version", title="v", width=40),
            TableColumn(field="when", title="when (UTC)", width=150),
            TableColumn(field="user", title="user", width=80),
            TableColumn(field="comment", title="comment", width=200),
        ],
        height=180,
        sizing_mode="stretch_width",
        name="config-version-table",
        index_position=None,
    )
    rollback_btn = Button(label="Roll back to selected", name="config-rollback", width=170)
    for w in (validate_btn, apply_btn, rollback_btn, csv_in, comment):
        w.disabled = not can_write

    def say(text: str) -> None:
        result.text = text

    def refresh_versions() -> None:
        vs = list(reversed(api.versions()))
        versions_src.data = {
            "version": [v.get("version") for v in vs],
            "when": [
                (iso(v.get("ts")) or str(v.get("created_at", "")))[:19].replace("T", " ")
                for v in vs
            ],
            "user": [v.get("user", "") for v in vs],
            "comment": [v.get("comment", "") for v in vs],
        }

    def stage() -> dict[str, str]:
        proposal[file_sel.value] = editor.value
        return {k: v for k, v in proposal.items() if files.get(k) != v}

    def on_file(_a: str, old: str, new: str) -> None:
        proposal[old] = editor.value
        editor.value = proposal.get(new, files.get(new, ""))

    def on_item(_a: str, _o: list[int], new: list[int]) -> None:
        if new:
            rel = items.data["file"][new[0]]
            if rel and rel != file_sel.value:
                file_sel.value = rel
            say(
                f'<span class="u">{html.escape(items.data["kind"][new[0]])} '
                f"{html.escape(items.data['id'][new[0]])}: {html.escape(rel)} line {items.data['line'][new[0]]}</span>"
            )

    def show_validation(res: dict[str, Any], what: str) -> None:
        bundle = {**files, **proposal}
        text = errors_html(res.get("errors", []), bundle)
        if res.get("valid") and res.get("diff") is not None and what == "diff":
            text += (
                "".join(f"<pre>{html.escape(d)}</pre>" for d in res["diff"].values())
                or "<p>no changes</p>"
            )
        say(text)

    def run_validate(what: str) -> None:
        changes = stage()
        say('<span class="u">validating…</span>')
        session.spawn(
            api.validate(changes),
            lambda res, err: (
                say(f'<span class="result-bad">{html.escape(str(err))}</span>')
                if err
                else show_validation(res, what)
            ),
        )

    def run_apply() -> None:
        user = session.user
        if user is None or not session.may("config.write"):
            say('<span class="result-bad">your role may not change the configuration</span>')
            return
        changes = stage()
        if not changes:
            say('<span class="u">nothing to apply</span>')
            return
        say('<span class="u">applying…</span>')

        def done(res: Any, err: BaseException | None) -> None:
            if err is not None:
                say(f'<span class="result-bad">{html.escape(str(err))}</span>')
                return
            if not res.get("valid"):
                show_validation(res, "apply")
                return
            reload_from_runtime()
            say(
                f'<span class="result-ok" data-applied="{res.get("version")}">applied as version '
                f"{res.get('version')} ({len(res.get('diff', {}))} file(s))</span>"
            )

        session.spawn(
            api.apply(user.raw, changes, comment=comment.value, source=session.source), done
        )

    def reload_from_runtime() -> None:
        """Show the running configuration again after an apply or a rollback."""
        files.clear()
        files.update(api.current_files())
        proposal.clear()
        file_sel.options = sorted(files)
        editor.value = files.get(file_sel.value, "")
        items.data = config_items(session.services.site, files)
        refresh_versions()

    def run_rollback() -> None:
        sel = versions_src.selected.indices
        user = session.user
        if not sel or user is None or not session.may("config.write"):
            say('<span class="result-bad">select a version first</span>')
            return
        number = versions_src.data["version"][sel[0]]

        def done(res: Any, err: BaseException | None) -> None:
            if err is not None:
                say(f'<span class="result-bad">{html.escape(str(err))}</span>')
                return
            reload_from_runtime()
            say(
                f'<span class="result-ok" data-rolled-back="{res.get("version")}">rolled back to '
                f"version {number} as version {res.get('version')}</span>"
            )

        session.spawn(api.rollback(user.raw, int(number), source=session.source), done)

    def on_csv(_a: str, _o: Any, new: str) -> None:
        try:
            text = base64.b64decode(new).decode("utf-8-sig")
            devices = csv_devices_yaml(text)
        except (ValueError, UnicodeDecodeError) as exc:
            say(f'<span class="result-bad">{html.escape(str(exc))}</span>')
            return
        main = api.main_name()
        proposal[IMPORT_FILE] = proposal.get(IMPORT_FILE, files.get(IMPORT_FILE, "")) + devices
        proposal[main] = _with_include(proposal.get(main, files.get(main, "")), IMPORT_FILE)
        file_sel.options = sorted({*files, *proposal})
        file_sel.value = IMPORT_FILE
        editor.value = proposal[IMPORT_FILE]
        run_validate("diff")

    file_sel.on_change("value", on_file)
    items.selected.on_change("indices", on_item)
    validate_btn.on_click(lambda: run_validate("validate"))
    diff_btn.on_click(lambda: run_validate("diff"))
    apply_btn.on_click(run_apply)
    rollback_btn.on_click(run_rollback)
    csv_in.on_change("value", on_csv)
    refresh_versions()
    left = column(table, versions, rollback_btn, sizing_mode="stretch_both", width=620)
    right = column(
        row(file_sel, validate_btn, diff_btn, comment, apply_btn, sizing_mode="stretch_width"),
        row(html_div('<span class="u">import devices from CSV:</span>'), csv_in),
        editor,
        result,
        sizing_mode="stretch_both",
    )
    page_frame(
        session, doc, "config", row(left, right, sizing_mode="stretch_both"), "Configuration"
    )
