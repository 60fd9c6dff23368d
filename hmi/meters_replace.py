"""Replace meter: record a meter swap from the meters page, checked, then confirmed.

Select one meter tile with an account, press *Replace meter…*: a form asks for the old
meter's final reading, the new meter's first reading, when the swap happened (blank: now;
else local ``YYYY-MM-DD HH:MM``) and a note. *Check* runs the plausibility rules of
``billing.plausibility`` without writing anything and shows either the reason it would be
refused or a confirm box that names the meter, the account, both readings and the last
reading the system holds; *Confirm replacement* records it through ``Billing.replace_meter``
(which checks again in its own transaction and audits it), *Cancel* drops it.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bokeh.layouts import column, row
from bokeh.models.widgets import Button, TextInput

from billing.errors import BillingError
from billing.periods import parse_time
from billing.plausibility import check_replacement
from hmi.layout import html_div
from hmi.session import HmiSession
from hmi.theme import AUTO_WIDTH
from hmi.timefmt import site_time_text
from i18n import _

if TYPE_CHECKING:
    from hmi.meters import MeterInfo

__all__ = ["ReplaceMeter", "SwapRequest"]


@dataclass(frozen=True, slots=True)
class SwapRequest:
    """A checked meter swap waiting for its confirm."""

    account: str
    meter: str  # energy tag
    name: str
    old_final: float
    new_initial: float
    ts: float | None  # None: now
    note: str


def _number(text: str, what: str) -> float:
    try:
        x = float(text.strip())
    except ValueError:
        raise ValueError(_("{what}: not a number", what=what)) from None
    if not math.isfinite(x):
        raise ValueError(_("{what}: not a finite number", what=what))
    return x


class ReplaceMeter:
    """The replace-meter form, check and confirm of the meters page (module docstring)."""

    def __init__(
        self,
        session: HmiSession,
        meters: Sequence[MeterInfo],
        selected: Callable[[], list[int]],
    ) -> None:
        self.session = session
        self.meters = list(meters)
        self.selected = selected
        self.billing = session.services.billing
        self.allowed = self.billing is not None and session.may("billing.meter")
        self.pending: SwapRequest | None = None
        self.open_btn = Button(
            label=_("Replace meter…"),
            name="replace-open",
            styles=AUTO_WIDTH,
            disabled=not self.allowed,
        )
        self.old = TextInput(title=_("Old meter's final reading (kWh)"), name="replace-old")
        self.new = TextInput(
            title=_("New meter's first reading (kWh)"), value="0", name="replace-new"
        )
        self.when = TextInput(
            title=_("Swapped at (blank: now; YYYY-MM-DD HH:MM)"), name="replace-when"
        )
        self.note = TextInput(title=_("Note"), name="replace-note")
        self.check_btn = Button(
            label=_("Check"), button_type="primary", name="replace-check", styles=AUTO_WIDTH
        )
        self.confirm_btn = Button(
            label=_("Confirm replacement"),
            button_type="danger",
            name="replace-confirm",
            styles=AUTO_WIDTH,
            visible=False,
        )
        self.cancel_btn = Button(label=_("Cancel"), name="replace-cancel", styles=AUTO_WIDTH)
        self.message = html_div("", name="replace-message", sizing_mode="stretch_width")
        wrap = {"flex-wrap": "wrap", "gap": "4px"}
        self.form = column(
            self.old,
            self.new,
            self.when,
            self.note,
            row(self.check_btn, self.confirm_btn, self.cancel_btn, styles=wrap),
            sizing_mode="stretch_width",
            visible=False,
            name="replace-form",
        )
        # the open button sits in the page's row of action buttons (see hmi.meters)
        self.layout = column(self.form, self.message, sizing_mode="stretch_width")
        self.open_btn.on_click(self.open)
        self.check_btn.on_click(self.check)
        self.confirm_btn.on_click(self.confirm)
        self.cancel_btn.on_click(self.cancel)
        for w in (self.old, self.new, self.when, self.note):
            w.on_change("value", lambda _a, _o, _n: self._invalidate())

    def say(self, text: str, cls: str = "u", attrs: str = "") -> None:
        """Show one line (escaped) under the form."""
        self.message.text = f'<span class="{cls}"{attrs}>{html.escape(text)}</span>'

    def _target(self) -> MeterInfo | None:
        chosen = [self.meters[i] for i in self.selected()]
        if len(chosen) != 1 or chosen[0].account is None or chosen[0].energy_tag is None:
            return None
        return chosen[0]

    def _invalidate(self) -> None:
        if self.pending is not None:
            self.pending = None
            self.confirm_btn.visible = False
            self.say(_("changed: check again"))

    def open(self) -> None:
        """Show the form for the one selected meter."""
        if not self.allowed:
            return
        m = self._target()
        if m is None:
            self.say(_("select exactly one meter with an account first"), "result-bad")
            return
        self.form.visible = True
        self.pending = None
        self.confirm_btn.visible = False
        self.say(_("replace {name}: enter the readings, then Check", name=m.name or m.device))

    def _request(self, m: MeterInfo) -> SwapRequest:
        assert m.account is not None and m.energy_tag is not None
        old = _number(self.old.value, _("final reading"))
        new = _number(self.new.value or "0", _("first reading"))
        text = (self.when.value or "").strip()
        tz = self.session.services.site.site.timezone
        try:
            ts = parse_time(text, tz) if text else None
        except ValueError as exc:
            raise ValueError(_("swap time: {error}", error=str(exc))) from None
        return SwapRequest(
            m.account, m.energy_tag, m.name or m.device, old, new, ts, self.note.value.strip()
        )

    def check(self) -> None:
        """Check the form against the plausibility rules; on success ask for the confirm."""
        m = self._target()
        billing = self.billing
        if m is None or billing is None or not self.allowed:
            self.say(_("select exactly one meter with an account first"), "result-bad")
            return
        try:
            req = self._request(m)
            acct = billing.account_config(req.account)
            meter = next(x for x in acct.meters if x.energy == req.meter)
            at = time.time() if req.ts is None else req.ts
            check_replacement(
                billing.ledger, req.meter, meter.max_kw, at, req.old_final, req.new_initial
            )
        except (ValueError, BillingError) as exc:
            self.pending = None
            self.confirm_btn.visible = False
            self.say(_("refused: {reason}", reason=str(exc)), "result-bad", ' data-refused="1"')
            return
        self.pending = req
        self.confirm_btn.visible = True
        when = _("now") if req.ts is None else site_time_text(self.session, req.ts)
        ts, vs = billing.ledger.readings_around(req.meter, at, at)
        last = ""
        if len(ts) and ts[0] <= at:
            last = _(
                "last reading {value} kWh at {time}",
                value=f"{float(vs[0]):g}",
                time=site_time_text(self.session, float(ts[0])),
            )
        text = _(
            "Replace {name} (account {account}) {when}: the old meter ends at {old} kWh, the"
            " new one starts at {new} kWh. The balance is carried over.",
            name=req.name,
            account=req.account,
            when=when,
            old=f"{req.old_final:g}",
            new=f"{req.new_initial:g}",
        )
        self.message.text = (
            f'<div class="confirm" data-replace="{html.escape(req.meter)}"><b>'
            f"{html.escape(text)}</b> {html.escape(last)}</div>"
        )

    def confirm(self) -> None:
        """Record the checked swap (billing checks again and audits it)."""
        req, self.pending = self.pending, None
        self.confirm_btn.visible = False
        billing = self.billing
        if req is None or billing is None:
            return
        self.say(_("recording…"))

        async def run() -> Any:
            assert billing is not None
            return await billing.replace_meter(
                req.account,
                req.meter,
                req.old_final,
                req.new_initial,
                ts=req.ts,
                user=self.session.actor,
                source=self.session.source,
                note=req.note or "HMI meters page",
            )

        def done(res: Any, err: BaseException | None) -> None:
            if err is not None:
                reason = _("refused: {reason}", reason=str(err))
                self.say(reason, "result-bad", ' data-refused="1"')
                return
            self.form.visible = False
            self.old.value = ""
            text = _(
                "{name}: replacement recorded (ledger entry {seq})",
                name=req.name,
                seq=res.entry.seq if res.entry is not None else "-",
            )
            self.say(text, "result-ok", ' data-replaced="1"')

        self.session.spawn(run(), done)

    def cancel(self) -> None:
        """Close the form without recording anything."""
        self.pending = None
        self.confirm_btn.visible = False
        self.form.visible = False
        self.say(_("cancelled"))
