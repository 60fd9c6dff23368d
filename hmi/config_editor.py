"""The configuration proposal being edited: file choice, the YAML editor and the changed files.

A proposal is ``{relative path: text}`` of the files changed against the running bundle
(``ConfigManager.current_files()``). Switching files keeps what was typed; :meth:`stage`
returns the files that differ; :meth:`add_import` adds an imported file and its include.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bokeh.models import InlineStyleSheet
from bokeh.models.widgets import Select, TextAreaInput

from hmi.theme import SELECT_CSS

__all__ = ["ProposalEditor", "with_include"]

MAX_FILE_CHARS = 5_000_000  # the editor truncates at 500 characters by default


def with_include(main_text: str, rel: str) -> str:
    """Return the main file's text with ``rel`` added to its ``include:`` list."""
    if rel in main_text:
        return main_text
    if "include:\n" in main_text:
        return main_text.replace("include:\n", f"include:\n  - {rel}\n", 1)
    return f"include: [{rel}]\n" + main_text


class ProposalEditor:
    """The file select, the editor and the proposal they build."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.files: dict[str, str] = api.current_files()
        self.proposal: dict[str, str] = {}
        self.on_edit: Callable[[], None] = lambda: None
        self.select = Select(
            value=api.main_name(),
            options=sorted(self.files),
            name="config-file",
            styles={"width": "clamp(260px, 14vw, 900px)"},
            stylesheets=[InlineStyleSheet(css=SELECT_CSS)],
        )
        self.editor = TextAreaInput(
            value=self.files.get(self.select.value, ""),
            rows=28,
            name="config-editor",
            max_length=MAX_FILE_CHARS,
            sizing_mode="stretch_both",
            styles={"font-family": "monospace"},
        )
        self.select.on_change("value", self._on_file)
        self.editor.on_change("value", lambda _a, _o, _n: self.on_edit())

    def _on_file(self, _attr: str, old: str, new: str) -> None:
        self.proposal[old] = self.editor.value
        self.editor.value = self.proposal.get(new, self.files.get(new, ""))

    def show_file(self, rel: str) -> None:
        """Open ``rel`` in the editor (keeping what was typed in the current file)."""
        if rel and rel != self.select.value:
            self.select.value = rel

    def stage(self) -> dict[str, str]:
        """Return the files of the proposal that differ from the running ones."""
        self.proposal[self.select.value] = self.editor.value
        return {k: v for k, v in self.proposal.items() if self.files.get(k) != v}

    def bundle(self) -> dict[str, str]:
        """Return the running files with the proposal's on top."""
        return {**self.files, **self.proposal}

    def add_import(self, rel: str, text: str) -> None:
        """Append ``text`` to file ``rel`` (new or not), include it from the main file, show it."""
        main = self.api.main_name()
        self.proposal[rel] = self.proposal.get(rel, self.files.get(rel, "")) + text
        self.proposal[main] = with_include(self.proposal.get(main, self.files.get(main, "")), rel)
        self.select.options = sorted({*self.files, *self.proposal})
        self.select.value = rel
        self.editor.value = self.proposal[rel]

    def reload(self) -> None:
        """Show the running configuration again (after an apply or a roll-back)."""
        self.files = self.api.current_files()
        self.proposal.clear()
        self.select.options = sorted(self.files)
        if self.select.value not in self.files:
            self.select.value = self.api.main_name()
        self.editor.value = self.files.get(self.select.value, "")
