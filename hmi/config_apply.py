"""The confirm step of a configuration apply or roll-back: what will change, then Confirm / Cancel.

Before anything is applied the page validates the proposal (``ConfigManager.validate``) and
shows :func:`plan_summary_html` of its result: the files changed and what
``compare_sites`` reports (tags, devices added / removed / changed, channels and templates
changed, alarm rules changed) and whether the drivers restart (connections re-open) or keep
running. Only *Confirm* applies; *Cancel* (or editing the proposal meanwhile) drops it and
nothing changes. :class:`ConfirmStep` holds the box, its two buttons and the pending action.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

from bokeh.layouts import column, row
from bokeh.models.widgets import Button

from hmi.layout import html_div
from hmi.theme import AUTO_WIDTH
from i18n import _, ngettext

__all__ = ["ConfirmStep", "plan_summary_html"]

#: Buttons as wide as their label (which follows the page's font size).

NAMES_SHOWN = 5


def _names(names: Sequence[str]) -> str:
    """Return the first names, and how many more."""
    shown = ", ".join(names[:NAMES_SHOWN])
    rest = len(names) - NAMES_SHOWN
    if rest > 0:
        shown += " " + ngettext("and {n} more", "and {n} more", rest)
    return shown


def _kind_line(
    label: str, added: Sequence[str], removed: Sequence[str], changed: Sequence[str]
) -> str:
    parts = []
    for words, names in (
        (_("{n} added", n=len(added)), added),
        (_("{n} removed", n=len(removed)), removed),
        (_("{n} changed", n=len(changed)), changed),
    ):
        detail = f" ({html.escape(_names(names))})" if names else ""
        parts.append(f"{html.escape(words)}{detail}")
    return f"<li><b>{html.escape(label)}</b>: {'; '.join(parts)}</li>"


def plan_summary_html(plan: dict[str, Any] | None, files: Sequence[str], question: str) -> str:
    """Return the confirm box's text: ``question``, the files and the plan of the change."""
    plan = plan or {}
    tags = plan.get("tags") or {}
    devices = plan.get("devices") or {}
    lines = [
        f"<li><b>{html.escape(_('files'))}</b>: {html.escape(_names(list(files)) or '—')}</li>",
        _kind_line(
            _("tags"), tags.get("added", []), tags.get("removed", []), tags.get("changed", [])
        ),
        _kind_line(
            _("devices"),
            devices.get("added", []),
            devices.get("removed", []),
            devices.get("changed", []),
        ),
    ]
    for key, label in (
        ("channels_changed", _("channels changed")),
        ("templates_changed", _("templates changed")),
    ):
        names = plan.get(key) or []
        if names:
            lines.append(f"<li><b>{html.escape(label)}</b>: {html.escape(_names(names))}</li>")
    alarms = _("changed") if plan.get("alarms_changed") else _("unchanged")
    lines.append(f"<li><b>{html.escape(_('alarm rules'))}</b>: {html.escape(alarms)}</li>")
    restart = bool(plan.get("restart_drivers"))
    drivers = (
        _("restarted: device connections re-open")
        if restart
        else _("kept running: connections and tag values stay")
    )
    lines.append(f"<li><b>{html.escape(_('drivers'))}</b>: {html.escape(drivers)}</li>")
    counts = {
        "data-tags-added": len(tags.get("added", [])),
        "data-tags-removed": len(tags.get("removed", [])),
        "data-tags-changed": len(tags.get("changed", [])),
        "data-devices-changed": sum(
            len(devices.get(k, [])) for k in ("added", "removed", "changed")
        ),
        "data-restart-drivers": int(restart),
        "data-files": len(files),
    }
    attrs = " ".join(f'{k}="{v}"' for k, v in counts.items())
    return (
        f'<div class="confirm" data-confirm-apply="1" {attrs}><b>{html.escape(question)}</b>'
        f"<ul>{''.join(lines)}</ul></div>"
    )


class ConfirmStep:
    """A confirm box with *Confirm* and *Cancel*; ``ask`` shows it for one pending action."""

    def __init__(self, on_cancel: Callable[[], None]) -> None:
        self.on_cancel = on_cancel
        self.pending: Callable[[], None] | None = None
        self.text = html_div("", name="config-confirm-text", sizing_mode="stretch_width")
        self.btn_confirm = Button(
            label=_("Confirm"), button_type="primary", name="config-confirm", styles=AUTO_WIDTH
        )
        self.btn_cancel = Button(label=_("Cancel"), name="config-cancel", styles=AUTO_WIDTH)
        self.btn_confirm.on_click(self.confirm)
        self.btn_cancel.on_click(self.cancel)
        self.layout = column(
            self.text,
            row(self.btn_confirm, self.btn_cancel),
            visible=False,
            sizing_mode="stretch_width",
            name="config-confirm-box",
        )

    def ask(self, summary_html: str, action: Callable[[], None]) -> None:
        """Show ``summary_html``; *Confirm* runs ``action``."""
        self.pending = action
        self.text.text = summary_html
        self.layout.visible = True

    def _close(self) -> Callable[[], None] | None:
        action, self.pending = self.pending, None
        self.layout.visible = False
        self.text.text = ""
        return action

    def confirm(self) -> None:
        """Run the pending action (once)."""
        action = self._close()
        if action is not None:
            action()

    def cancel(self) -> None:
        """Drop the pending action: nothing is applied."""
        if self._close() is not None:
            self.on_cancel()

    @property
    def open(self) -> bool:
        """True while an action waits for the confirm."""
        return self.pending is not None
