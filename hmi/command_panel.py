"""Command buttons with select-before-operate and a confirm step, for one target at a time.

Flow: a button *selects* the command through the command service (role, limits and
interlocks are checked there); the panel then shows a confirm box naming the tag, the
value and the selection's expiry; *Confirm* operates it (write and read-back), *Cancel*
cancels it. The final state (confirmed, failed, expired, ...) is shown under the buttons.
While a command is under way ``on_busy(target, True)`` lets the mimic draw the unit as
commanded. Buttons are disabled, with a note, for users who may not command.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bokeh.layouts import column, row
from bokeh.models.widgets import Button, Spinner

from hmi.layout import html_div
from hmi.services import CommandClient, CommandStatus
from hmi.session import HmiSession
from hmi.timefmt import site_time_text
from i18n import _

__all__ = ["CommandAction", "CommandPanel"]

log = logging.getLogger(__name__)

FINAL_OK = frozenset({"confirmed", "operated"})


def _state_words(state: str) -> str:
    """Return a command state in words (the ``data-state`` attribute keeps the state name)."""
    words = {
        "selected": _("selected"),
        "operated": _("sent, waiting for the device"),
        "confirmed": _("done, confirmed by the device"),
        "failed": _("failed"),
        "expired": _("expired"),
        "cancelled": _("cancelled"),
        "rejected": _("refused"),
    }
    return words.get(state, state)


@dataclass(frozen=True, slots=True)
class CommandAction:
    """One button: label, the tag it writes and the value (None: taken from the spinner)."""

    key: str
    label: str
    tag: str
    value: Any = None
    #: the spinner's title and range for a value taken from it (None: the room setpoint's)
    spinner: tuple[str, float, float] | None = None


class CommandPanel:
    """Buttons, confirm box and result line for the current target (``set_target``)."""

    def __init__(
        self,
        session: HmiSession,
        commands: CommandClient | None,
        *,
        on_busy: Callable[[str, bool], None] | None = None,
        name: str = "cmd",
    ) -> None:
        self.session = session
        self.commands = commands
        self.on_busy = on_busy or (lambda _t, _b: None)
        self.target: str | None = None
        self.actions: dict[str, CommandAction] = {}
        self.pending: CommandStatus | None = None
        self.pending_target: str | None = None
        self.btn_open = Button(label=_("Open valve"), name=f"{name}-open", width=100, align="end")
        self.btn_close = Button(
            label=_("Close valve"), name=f"{name}-close", width=100, align="end"
        )
        self.spinner = Spinner(
            title=_("setpoint °C"),
            low=5,
            high=30,
            step=0.5,
            value=20.0,
            width=80,
            name=f"{name}-sp",
        )
        self.btn_sp = Button(label=_("Set setpoint"), name=f"{name}-set-sp", width=100, align="end")
        self.btn_open.on_click(lambda: self._select("open"))
        self.btn_close.on_click(lambda: self._select("close"))
        self.btn_sp.on_click(lambda: self._select("setpoint"))
        self.confirm_text = html_div("", name=f"{name}-confirm-text", sizing_mode="stretch_width")
        self.btn_confirm = Button(
            label=_("Confirm"), button_type="primary", name=f"{name}-confirm", width=110
        )
        self.btn_cancel = Button(label=_("Cancel"), name=f"{name}-cancel", width=110)
        self.btn_confirm.on_click(self._operate)
        self.btn_cancel.on_click(self._cancel)
        self.confirm = column(
            self.confirm_text,
            row(self.btn_confirm, self.btn_cancel),
            visible=False,
            name=f"{name}-confirm-box",
            sizing_mode="stretch_width",
        )
        self.result = html_div("", name=f"{name}-result", sizing_mode="stretch_width")
        self.note = html_div("", name=f"{name}-note", sizing_mode="stretch_width")
        self.layout = column(
            row(self.btn_open, self.btn_close, self.spinner, self.btn_sp),
            self.note,
            self.confirm,
            self.result,
            sizing_mode="stretch_width",
        )
        self.set_target(None, {})

    # ------------------------------------------------------------------ target
    def set_target(
        self, target: str | None, actions: dict[str, CommandAction], setpoint: Any = None
    ) -> None:
        """Point the panel at ``target`` (a household) with its available ``actions``."""
        if self.pending is not None and target != self.pending_target:
            self._cancel()
        self.target = target
        self.actions = actions
        if isinstance(setpoint, int | float):
            self.spinner.value = float(setpoint)
        allowed = [self.session.may("commands.operate", a.tag) for a in actions.values()]
        can = self.commands is not None and any(allowed)
        for key, button in (
            ("open", self.btn_open),
            ("close", self.btn_close),
            ("setpoint", self.btn_sp),
        ):
            a = actions.get(key)
            button.disabled = (
                not can or a is None or not self.session.may("commands.operate", a.tag)
            )
            # a target shows only its own commands, labelled for what they do (valve, relay, pump)
            button.visible = a is not None or not actions
            if a is not None:
                button.label = a.label
        sp = actions.get("setpoint")
        title, low, high = (
            sp.spinner if sp is not None and sp.spinner else (_("setpoint °C"), 5, 30)
        )
        self.spinner.update(title=title, low=low, high=high)
        self.spinner.visible = self.btn_sp.visible
        self.spinner.disabled = self.btn_sp.disabled
        if target is None:
            self.note.text = ""
        elif self.commands is None:
            self.note.text = f'<span class="denied">{html.escape(_("no command service"))}</span>'
        elif not can:
            self.note.text = (
                '<span class="denied" data-denied="1">'
                f"{html.escape(_('your role may not send commands'))}</span>"
            )
        else:
            self.note.text = ""

    # ------------------------------------------------------------------ flow
    def _select(self, key: str) -> None:
        a = self.actions.get(key)
        if a is None or self.commands is None or self.session.user is None:
            return
        if a.value is not None:
            value = a.value
        elif self.spinner.value is not None:
            value = float(self.spinner.value)
        else:
            return  # the setpoint box was emptied: nothing to send
        if not self.session.may("commands.operate", a.tag):
            denied = _("your role may not operate {tag}", tag=a.tag)
            self._show_result(CommandStatus(None, "rejected", a.tag, value, None, denied))
            return
        selecting = _("selecting {action}…", action=a.label)
        self.result.text = f'<span class="u">{html.escape(selecting)}</span>'
        target = self.target
        self.session.spawn(
            self.commands.select(self.session.user, a.tag, value),
            lambda st, err: self._selected(target, a, value, st, err),
        )

    def _selected(
        self,
        target: str | None,
        a: CommandAction,
        value: Any,
        status: CommandStatus | None,
        error: BaseException | None,
    ) -> None:
        if error is not None or status is None:
            self._show_result(CommandStatus(None, "rejected", a.tag, value, None, str(error)))
            return
        if status.state != "selected":
            self._show_result(status)
            return
        self.pending = status
        self.pending_target = target
        expires = site_time_text(self.session, status.expires_at, date=False)
        self.confirm_text.text = (
            f'<div class="confirm" data-command="{html.escape(str(status.id))}">'
            + _(
                "{action} for {target}",
                action=f"<b>{html.escape(a.label)}</b>",
                target=f"<b>{html.escape(str(target))}</b>",
            )
            + f'<br><span data-tag="{html.escape(a.tag)}">{html.escape(a.tag)} = '
            f"{html.escape(repr(value))}</span><br>"
            f'<span class="u" data-expires="1">'
            f"{html.escape(_('selected; confirm before {time}', time=expires))}</span></div>"
        )
        self.confirm.visible = True
        self.result.text = ""

    def _operate(self) -> None:
        status, target = self.pending, self.pending_target
        if status is None or self.commands is None or self.session.user is None:
            return
        self.pending = None
        self.confirm.visible = False
        self.result.text = f'<span class="u">{html.escape(_("operating…"))}</span>'
        if target is not None:
            self.on_busy(target, True)

        def done(st: CommandStatus | None, err: BaseException | None) -> None:
            if target is not None:
                self.on_busy(target, False)
            if err is not None or st is None:
                self._show_result(
                    CommandStatus(status.id, "failed", status.tag, status.value, None, str(err))
                )
            else:
                self._show_result(st)

        self.session.spawn(self.commands.operate(self.session.user, str(status.id)), done)

    def _cancel(self) -> None:
        status = self.pending
        self.pending = None
        self.confirm.visible = False
        if status is None or self.commands is None or self.session.user is None:
            return
        self.session.spawn(
            self.commands.cancel(self.session.user, str(status.id)),
            lambda st, err: self._show_result(
                st
                or CommandStatus(
                    status.id, "cancelled", status.tag, status.value, None, str(err or "")
                )
            ),
        )

    def _show_result(self, status: CommandStatus) -> None:
        # a cancel is the operator's own choice: plain text, not the colour of a failure
        if status.state in FINAL_OK:
            cls = "result-ok"
        else:
            cls = "u" if status.state == "cancelled" else "result-bad"
        text = _(
            "{tag} = {value}: {state}",
            tag=status.tag,
            value=repr(status.value),
            state=_state_words(status.state),
        )
        if status.message and not status.message.startswith(status.state):
            text = _("{result}. {reason}", result=text, reason=status.message)
        self.result.text = f'<span class="{cls}" data-state="{html.escape(status.state)}">{html.escape(text)}</span>'
