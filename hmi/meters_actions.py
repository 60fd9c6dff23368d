"""Batch commands of the meters page and their result table, which always ends in a final state.

:class:`BatchActions`: *Trip* / *Close* select the relay writes of the selected tiles as one
batch through the command service (role, limits and interlocks are checked there), then one
*Confirm batch* operates them (write and read-back) or *Cancel* cancels them; *Keep power* /
*Restore prepaid* are billing operations for the selected tiles' accounts, confirmed the
same way (billing audits each).

:class:`ResultTable`: one row per meter of the last batch. A row follows its command in the
command service (its events, and the command record for the read-back): it may pass through
*selected* (waiting for the confirm) and *operating*, and always ends as one of *done: relay
open (read back 15:09:41 CST)*, *refused: ...*, *failed: ...*, *expired: ...* or
*cancelled*; a selection nobody confirms ends as expired when the service expires it.
Loop-thread only: command events are handed to the document with ``add_next_tick_callback``.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource
from bokeh.models.widgets import Button, DataTable, TableColumn

from hmi.layout import html_div, redraw_on_update, text_sized_table
from hmi.services import CommandStatus, ServiceCommands
from hmi.session import HmiSession
from hmi.theme import AUTO_WIDTH
from hmi.timefmt import localised_time_text
from i18n import _, ngettext

if TYPE_CHECKING:
    from hmi.meters import MeterInfo
    from hmi.meters_grid import MeterGrid

__all__ = ["BatchActions", "ResultRow", "ResultTable", "result_text"]

log = logging.getLogger(__name__)


FINAL_STATES = frozenset({"confirmed", "done", "failed", "expired", "cancelled", "rejected"})


@dataclass(slots=True)
class ResultRow:
    """One meter's line of the result table."""

    meter: str  # display name
    target: str  # relay tag, or account for a billing operation
    command_id: str | None
    state: str
    message: str = ""
    refused: bool = False  # refused at selection (never operated)
    read_back: Any = None
    finished_ts: float | None = None
    expires_ts: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def result_text(r: ResultRow, tz: str) -> str:
    """Return the result column's text of a row (final states name the outcome first)."""
    msg = r.message or _("no reason given")
    if r.state == "selected":
        when = localised_time_text(r.expires_ts, tz, date=False, now=time.time())
        return _("selected: confirm before {time}", time=when)
    if r.state == "operated":
        return _("operating…")
    if r.state == "confirmed":
        if isinstance(r.read_back, bool):
            state = _("closed") if r.read_back else _("open")
            when = localised_time_text(r.finished_ts, tz, date=False, now=time.time())
            return _("done: relay {state} (read back {time})", state=state, time=when)
        return _("done: {value} written", value=r.read_back)
    if r.state == "done":
        return _("done: {message}", message=r.message) if r.message else _("done")
    if r.state == "cancelled":
        return _("cancelled")
    if r.state == "expired":
        return _("expired: not confirmed in time")
    if r.refused or r.state == "rejected":
        return _("refused: {message}", message=msg)
    return _("failed: {message}", message=msg)


class ResultTable:
    """The ``meter-results`` table: rows kept in step with the command service."""

    def __init__(self, session: HmiSession, meters: Sequence[MeterInfo]) -> None:
        self.session = session
        self.tz = session.services.site.site.timezone
        self.names = {m.relay_tag: m.name for m in meters if m.relay_tag}
        self.names.update({m.account: m.name for m in meters if m.account})
        self.rows: list[ResultRow] = []
        self._scheduled = False
        self.source = ColumnDataSource(
            {"meter": [], "target": [], "state": [], "result": [], "message": []},
            name="meter-results",
        )
        self.table = DataTable(
            source=self.source,
            height=260,
            sizing_mode="stretch_width",
            index_position=None,
            columns=[
                TableColumn(field="meter", title=_("meter"), width=110),
                TableColumn(field="result", title=_("result"), width=300),
            ],
            name="meter-result-table",
        )
        redraw_on_update(self.table, self.source)
        text_sized_table(self.table, session.doc)
        commands = session.services.commands
        session.add_cleanup(commands.subscribe(self._on_event))

    # ------------------------------------------------------------------ rows
    def show_selection(self, statuses: Sequence[CommandStatus]) -> None:
        """Start the table over with the statuses of a batch selection."""
        self.rows = [
            ResultRow(
                self.names.get(s.tag, s.tag),
                s.tag,
                s.id,
                s.state,
                s.message,
                refused=s.state != "selected",
                expires_ts=s.expires_at,
            )
            for s in statuses
        ]
        self.refresh()

    def show_billing(self, results: Sequence[tuple[str, bool, str]]) -> None:
        """Show billing outcomes ``(account, ok, message)``: final at once."""
        self.rows = [
            ResultRow(self.names.get(a, a), a, None, "done" if ok else "failed", msg)
            for a, ok, msg in results
        ]
        self.refresh()

    def fail_pending(self, message: str) -> None:
        """End every row still under way as failed (the call that drove them failed)."""
        for r in self.rows:
            if r.state not in FINAL_STATES:
                r.state, r.message = "failed", message
        self.refresh()

    def refresh(self) -> None:
        """Read each row's command from the service and redraw the table."""
        service = self.session.services.commands
        for r in self.rows:
            if r.command_id is None or r.refused:
                continue
            try:
                cmd = service.get(r.command_id)
            except Exception:  # gone from the service (restart): keep what we know
                log.debug("command %s no longer known", r.command_id)
                continue
            r.state = cmd.state.value
            r.message = cmd.message or r.message
            r.read_back = cmd.read_back
            r.finished_ts = cmd.finished_ts
            r.expires_ts = cmd.expires_ts
        self.source.data = {
            "meter": [r.meter for r in self.rows],
            "target": [r.target for r in self.rows],
            "state": [r.state for r in self.rows],
            "result": [result_text(r, self.tz) for r in self.rows],
            "message": [r.message for r in self.rows],
        }

    @property
    def pending(self) -> bool:
        """True while a row is not final."""
        return any(r.state not in FINAL_STATES for r in self.rows)

    def _on_event(self, event: dict[str, Any]) -> None:
        """Command service event (loop thread, outside the document lock)."""
        cmd = event.get("command") or {}
        if self._scheduled or self.session.closed:
            return
        if not any(r.command_id == cmd.get("id") for r in self.rows):
            return
        self._scheduled = True
        self.session.doc.add_next_tick_callback(self._on_tick)

    def _on_tick(self) -> None:
        self._scheduled = False
        self.refresh()


@dataclass(slots=True)
class _Pending:
    """What the confirm box will do: operate a batch, or a billing operation on accounts."""

    batch_id: str | None = None
    billing: str | None = None
    accounts: list[str] = field(default_factory=list)


class BatchActions:
    """Trip / Close / Keep power / Restore prepaid for the selected tiles, with one confirm."""

    def __init__(
        self,
        session: HmiSession,
        commands: ServiceCommands | None,
        meters: Sequence[MeterInfo],
        grid: MeterGrid,
        results: ResultTable,
        extra: Sequence[Any] = (),
    ) -> None:
        self.session = session
        self.commands = commands
        self.meters = list(meters)
        self.grid = grid
        self.results = results
        self.pending: _Pending | None = None
        self.note = html_div("", name="meter-note", sizing_mode="stretch_width")
        self.btn_trip = Button(label=_("Trip"), name="meter-trip", styles=AUTO_WIDTH)
        self.btn_close = Button(label=_("Close"), name="meter-close", styles=AUTO_WIDTH)
        self.btn_keep = Button(label=_("Keep power"), name="meter-keep", styles=AUTO_WIDTH)
        self.btn_restore = Button(
            label=_("Restore prepaid"), name="meter-restore", styles=AUTO_WIDTH
        )
        self.btn_confirm = Button(
            label=_("Confirm batch"),
            button_type="primary",
            name="meter-confirm",
            styles=AUTO_WIDTH,
            visible=False,
        )
        self.btn_cancel = Button(
            label=_("Cancel"), name="meter-cancel", styles=AUTO_WIDTH, visible=False
        )
        self._permissions()
        self.btn_trip.on_click(lambda: self.select(False))
        self.btn_close.on_click(lambda: self.select(True))
        self.btn_keep.on_click(lambda: self.ask_billing("keep"))
        self.btn_restore.on_click(lambda: self.ask_billing("restore"))
        self.btn_confirm.on_click(self.confirm)
        self.btn_cancel.on_click(self.cancel)
        buttons = (self.btn_trip, self.btn_close, self.btn_keep, self.btn_restore, *extra)
        wrap = {"flex-wrap": "wrap", "gap": "4px"}
        self.layout = column(
            row(*buttons, sizing_mode="stretch_width", styles=wrap),
            self.note,
            row(self.btn_confirm, self.btn_cancel, sizing_mode="stretch_width", styles=wrap),
            sizing_mode="stretch_width",
            name="meter-actions",
        )

    def _permissions(self) -> None:
        self.can_cmd = self.commands is not None and self.session.may("commands.operate")
        self.billing = self.session.services.billing
        self.can_bill = self.billing is not None and self.session.may("billing.write")
        self.btn_trip.disabled = self.btn_close.disabled = not self.can_cmd
        self.btn_keep.disabled = self.btn_restore.disabled = not self.can_bill
        if not self.can_cmd:
            text = html.escape(_("your role may not send commands"))
            self.note.text = f'<span class="denied" data-denied="1">{text}</span>'

    def say(self, text: str, cls: str = "u", attrs: str = "") -> None:
        """Show one line under the buttons."""
        self.note.text = f'<span class="{cls}"{attrs}>{html.escape(text)}</span>'

    def _ask(self, pending: _Pending, html_text: str) -> None:
        self.pending = pending
        self.note.text = html_text
        self.btn_confirm.visible = self.btn_cancel.visible = True

    def _settle(self) -> _Pending | None:
        pending, self.pending = self.pending, None
        self.btn_confirm.visible = self.btn_cancel.visible = False
        return pending

    # ------------------------------------------------------------------ relay batch
    def select(self, closed: bool) -> None:
        """Select the relay writes of the selected tiles (Trip: open, Close: closed)."""
        user = self.session.user
        if self.commands is None or user is None or not self.can_cmd:
            return
        targets = [(t, closed) for i in self.grid.selected if (t := self.meters[i].relay_tag)]
        if not targets:
            self.say(_("select meters with a relay first"), "result-bad")
            return
        self.say(_("selecting…"))
        self.session.spawn(
            self.commands.select_batch(user, targets), lambda r, e: self._selected(closed, r, e)
        )

    def _selected(self, closed: bool, res: Any, err: BaseException | None) -> None:
        if err is not None:
            self.say(_("selection failed: {error}", error=str(err)), "result-bad")
            return
        batch_id, statuses = res
        self.results.show_selection(statuses)
        ok = sum(s.state == "selected" for s in statuses)
        if batch_id is None or ok == 0:
            self.say(_("nothing could be selected"), "result-bad")
            return
        what = (
            ngettext("close {n} meter relay?", "close {n} meter relays?", ok)
            if closed
            else ngettext("trip {n} meter relay?", "trip {n} meter relays?", ok)
        )
        hint = _("Confirm before the selection expires.")
        self._ask(
            _Pending(batch_id=batch_id),
            f'<div class="confirm" data-batch="{html.escape(batch_id)}"><b>{html.escape(what)}</b> '
            f"{html.escape(hint)}</div>",
        )

    def confirm(self) -> None:
        """Carry out what the confirm box asks."""
        pending = self._settle()
        user = self.session.user
        if pending is None or user is None:
            return
        if pending.billing is not None:
            self._run_billing(pending.billing, pending.accounts)
            return
        if pending.batch_id is None or self.commands is None:
            return
        self.say(_("operating…"))
        self.session.spawn(self.commands.operate_batch(user, pending.batch_id), self._operated)

    def _operated(self, statuses: Any, err: BaseException | None) -> None:
        if err is not None:
            self.results.fail_pending(str(err))
            self.say(_("operate failed: {error}", error=str(err)), "result-bad")
            return
        self.results.refresh()
        good = sum(s.state == "confirmed" for s in statuses)
        text = _("{good} of {total} confirmed", good=good, total=len(statuses))
        self.say(text, "result-ok", f' data-batch-done="{good}"')

    def cancel(self) -> None:
        """Cancel the pending batch (or billing question)."""
        pending = self._settle()
        user = self.session.user
        self.say(_("cancelled"))
        if pending is None or pending.batch_id is None or self.commands is None or user is None:
            return

        def done(_st: Any, err: BaseException | None) -> None:
            if err is not None:
                self.results.fail_pending(str(err))
            else:
                self.results.refresh()

        self.session.spawn(self.commands.cancel_batch(user, pending.batch_id), done)

    # ------------------------------------------------------------------ billing
    def ask_billing(self, name: str) -> None:
        """Ask to keep power on / restore prepaid for the selected tiles' accounts."""
        accounts = sorted({a for i in self.grid.selected if (a := self.meters[i].account)})
        if not accounts or not self.can_bill:
            self.say(_("select meters with an account first"), "result-bad")
            return
        names = ", ".join(self.results.names.get(a, a) for a in accounts)
        what = (
            _("keep power on for {names}?", names=names)
            if name == "keep"
            else _("restore prepaid for {names}?", names=names)
        )
        self._ask(
            _Pending(billing=name, accounts=accounts),
            f'<div class="confirm" data-billing="{name}" data-accounts="{html.escape(" ".join(accounts))}">'
            f"<b>{html.escape(what)}</b></div>",
        )

    def _run_billing(self, name: str, accounts: list[str]) -> None:
        self.say(_("operating…"))
        billing = self.billing

        async def run() -> list[tuple[str, bool, str]]:
            out: list[tuple[str, bool, str]] = []
            if billing is None:
                return out
            who = {"user": self.session.actor, "source": self.session.source}
            for a in accounts:
                try:  # billing audits each operation (who kept which account powered)
                    if name == "keep":
                        r = await billing.set_keep_power(a, True, note="HMI meters page", **who)
                    else:
                        r = await billing.restore_prepaid(a, **who)
                    done = _("keep power on") if name == "keep" else _("prepaid restored")
                    out.append((a, True, "; ".join([done, *r.relay_actions, *r.relay_failures])))
                except Exception as exc:  # shown per account, like a batch result
                    out.append((a, False, str(exc)))
            return out

        def done(res: list[tuple[str, bool, str]] | None, err: BaseException | None) -> None:
            results = res if res is not None else [(a, False, str(err)) for a in accounts]
            self.results.show_billing(results)
            good = sum(ok for _a, ok, _m in results)
            text = _("{good} of {total} done", good=good, total=len(results))
            self.say(text, "result-ok", f' data-billing-done="{good}"')

        self.session.spawn(run(), done)
