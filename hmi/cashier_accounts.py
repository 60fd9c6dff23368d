"""Opening an account from the cashier page: the form, its check, a confirm step, the opening.

:class:`OpenForm` takes the flat (building and flat), the tenant's name, phone and e-mail, the
meter(s) (energy tags or meter devices, ``;`` between them), the tariff and the opening
balance. *Check* writes them as a one-row roster and plans it through
:class:`scada.services.roster.RosterService` (the path of ``POST /api/roster/import``): a bad
value is shown next to the name of its field; a good one shows what would be added or changed
and asks *Confirm*. *Confirm* applies the row (a configuration version: billing opens a new
account with its opening balance, once) and, for an account that is configured but not yet
open, opens it through ``Billing.open`` (the path of ``POST /api/accounts/{id}/open``, audited,
repeat-safe). Submitting the same flat again changes nothing. The opened account is then
chosen on the cashier page (``on_opened``).

A new flat or account changes the configuration: that needs ``roster.import`` and
``config.write`` (engineers, admins); a cashier may open an account that is configured already,
and is refused with the reason otherwise. Loop-thread only; work runs through ``session.spawn``.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bokeh.layouts import column, row
from bokeh.models import InlineStyleSheet
from bokeh.models.widgets import Button, Select, TextInput

from billing.errors import BillingError
from billing.money import parse_amount
from billing.roster import RosterError, household_id
from billing.service import Billing
from hmi.layout import html_div, select_options, sized_inputs
from hmi.roster_page import roster_service, summary_html
from hmi.session import HmiSession
from hmi.theme import AUTO_WIDTH, SELECT_CSS
from i18n import N_, _

__all__ = ["FIELDS", "OpenForm", "Opening", "roster_csv"]

#: The form's fields: roster column -> label (the label names the field in a refusal).
FIELDS: dict[str, str] = {
    "building": N_("Building"),
    "flat": N_("Flat"),
    "area_m2": N_("Area (m²)"),
    "tenant": N_("Tenant name"),
    "phone": N_("Phone"),
    "email": N_("E-mail"),
    "meter": N_("Meter(s)"),
    "tariff": N_("Tariff"),
    "opening_balance": N_("Opening balance"),
}
_WRAP = {"flex-wrap": "wrap", "gap": "4px"}
_PLACEHOLDERS = {"meter": N_("meter; meter"), "opening_balance": "0.00"}


def roster_csv(values: dict[str, str]) -> bytes:
    """Return a one-row roster (CSV) of the filled ``values`` (empty ones are left out)."""
    cols = [c for c in FIELDS if values.get(c, "").strip() or c in ("building", "flat")]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(cols)
    w.writerow([values.get(c, "").strip() for c in cols])
    return out.getvalue().encode("utf-8")


@dataclass(frozen=True, slots=True)
class Opening:
    """What *Confirm* does: apply ``data`` (when it changes the configuration), open ``account``."""

    data: bytes
    changes: bool
    household: str
    meters: tuple[str, ...]
    amount: str | None


class OpenForm:
    """The *Open account* form of the cashier page; ``on_opened(account)`` after an opening."""

    def __init__(
        self, session: HmiSession, billing: Billing, on_opened: Callable[[str], None]
    ) -> None:
        self.session = session
        self.billing = billing
        self.on_opened = on_opened
        self.pending: Opening | None = None
        site = session.services.site
        buildings = [b.id for b in site.buildings]
        tariffs = [t.id for t in billing.site.tariffs]
        self.inputs: dict[str, TextInput | Select] = {}
        for col, label in FIELDS.items():
            name = f"open-{col.replace('_', '-')}"
            if col == "building":
                w: TextInput | Select = Select(
                    title=_(label),
                    options=select_options(buildings),
                    value=buildings[0] if buildings else "",
                    name=name,
                    stylesheets=[InlineStyleSheet(css=SELECT_CSS)],
                )
            elif col == "tariff":
                w = Select(
                    title=_(label),
                    options=select_options(tariffs),
                    value=tariffs[0] if tariffs else "",
                    name=name,
                    styles={"min-width": "clamp(140px, 9vw, 500px)"},
                    stylesheets=[InlineStyleSheet(css=SELECT_CSS)],
                )
            else:
                ph = _PLACEHOLDERS.get(col)
                w = TextInput(title=_(label), name=name, placeholder=_(ph) if ph else "")
            self.inputs[col] = w
        sized_inputs(*self.inputs.values())
        self.btn_check = Button(label=_("Check"), name="open-check", styles=AUTO_WIDTH)
        self.btn_check.on_click(self.check)
        self.btn_confirm = Button(
            label=_("Confirm"), name="open-confirm", styles=AUTO_WIDTH, button_type="primary"
        )
        self.btn_confirm.on_click(self.confirm)
        self.btn_cancel = Button(label=_("Cancel"), name="open-cancel", styles=AUTO_WIDTH)
        self.btn_cancel.on_click(self.cancel)
        self.btn_confirm.visible = self.btn_cancel.visible = False
        self.note = html_div("", name="open-note", sizing_mode="stretch_width")
        i = self.inputs
        self.body = column(
            html_div(f"<h3>{html.escape(_('Open an account'))}</h3>"),
            row(i["building"], i["flat"], i["area_m2"], sizing_mode="stretch_width", styles=_WRAP),
            row(i["tenant"], i["phone"], i["email"], sizing_mode="stretch_width", styles=_WRAP),
            row(
                i["meter"],
                i["tariff"],
                i["opening_balance"],
                sizing_mode="stretch_width",
                styles=_WRAP,
            ),
            row(self.btn_check, sizing_mode="stretch_width", styles=_WRAP),
            self.note,
            row(self.btn_confirm, self.btn_cancel, sizing_mode="stretch_width", styles=_WRAP),
            sizing_mode="stretch_width",
            name="open-form",
        )
        # Mounted on first use: its hidden buttons stay out of the page until then.
        self.layout = column(html_div(""), sizing_mode="stretch_width", name="open-slot")

    def toggle(self) -> None:
        """Show the form (mounted on first use), or hide it."""
        if self.body not in self.layout.children:
            self.layout.children = [self.body]
            self.body.visible = True
            return
        self.body.visible = not self.body.visible

    def values(self) -> dict[str, str]:
        """Return the form's values by roster column."""
        return {c: str(w.value or "") for c, w in self.inputs.items()}

    def say(self, text: str, cls: str = "u", attrs: str = "") -> None:
        """Show one line in the note."""
        self.note.text = f'<p class="{cls}"{attrs}>{html.escape(text)}</p>'

    def _settle(self) -> Opening | None:
        pending, self.pending = self.pending, None
        self.btn_confirm.visible = self.btn_cancel.visible = False
        return pending

    # ------------------------------------------------------------------ check
    def check(self) -> None:
        """Plan the form's row (a dry run); show the bad fields or the confirm box."""
        self._settle()
        v = self.values()
        for col in ("flat", "meter"):
            if not v[col].strip():
                self._bad([(col, _("required"))])
                return
        amount = v["opening_balance"].strip()
        if amount:
            try:
                parse_amount(amount, "opening_balance", zero_ok=True)
            except BillingError as exc:
                self._bad([("opening_balance", str(exc))])
                return
        service = roster_service(self.session)
        if service is None:
            self.say(_("the running configuration was not read from files"), "result-bad")
            return
        data = roster_csv(v)
        s = self.session
        self.say(_("checking…"))
        hid = household_id(v["building"], v["flat"].strip())
        meters = tuple(m.strip() for m in v["meter"].split(";") if m.strip())
        opening = Opening(data, False, hid, meters, amount or None)
        self.session.spawn(
            service.import_roster(
                s.actor, data, "csv", dry_run=True, name="cashier", source=s.source
            ),
            lambda r, e: self._checked(opening, r, e),
        )

    def _bad(self, issues: list[tuple[str | None, str]]) -> None:
        items = []
        for col, message in issues:
            label = _(FIELDS[col]) if col in FIELDS else (col or "")
            text = f"{label}: {message}" if label else message
            items.append(f'<li data-field="{html.escape(col or "")}">{html.escape(text)}</li>')
        self.note.text = (
            f'<div class="result-bad" data-bad="{len(items)}">'
            f"{html.escape(_('Please correct:'))}<ul>{''.join(items)}</ul></div>"
        )

    def _checked(self, opening: Opening, result: Any, err: BaseException | None) -> None:
        if isinstance(err, RosterError):
            self._bad([(i.column, i.message) for i in err.issues])
            return
        if err is not None or result is None:
            self.say(_("refused: {error}", error=str(err)), "result-bad")
            return
        if not result["valid"]:
            self._bad([(None, str(e)) for e in result["errors"][:5]])
            return
        s = result["summary"]
        changes = bool(
            s["households"]["added"]
            or s["households"]["changed"]
            or s["accounts"]["added"]
            or s["accounts"]["changed"]
        )
        self.pending = Opening(
            opening.data, changes, opening.household, opening.meters, opening.amount
        )
        what = _("Open an account for flat {flat}?", flat=opening.household)
        self.note.text = (
            f'<div class="confirm" data-confirm="open" data-household="{html.escape(opening.household)}">'
            f"<b>{html.escape(what)}</b>{summary_html(s)}</div>"
        )
        self.btn_confirm.visible = self.btn_cancel.visible = True

    def cancel(self) -> None:
        """Drop the question."""
        self._settle()
        self.say(_("cancelled"))

    # ------------------------------------------------------------------ confirm
    def confirm(self) -> None:
        """Apply the checked row and open its account, once."""
        p = self._settle()
        if p is None:
            return  # a second click: already on its way
        self.say(_("opening…"))
        self.session.spawn(self._open(p), self._opened)

    def _account_of(self, p: Opening) -> str | None:
        """Return the account of the row: the household's with one of its meters, else its."""
        mine = self.billing.accounts()
        for a in mine:
            cfg = self.billing.account_config(a["id"]).config
            if cfg.household == p.household or a["id"] == p.household:
                return str(a["id"])
        for a in mine:  # a meter given as its energy tag
            if set(p.meters) & set(a["meters"]):
                return str(a["id"])
        return None

    async def _open(self, p: Opening) -> str:
        s = self.session
        if p.changes:
            service = roster_service(s)
            assert service is not None
            result = await service.import_roster(
                s.actor, p.data, "csv", dry_run=False, name="cashier", source=s.source
            )
            if not result["valid"]:
                raise ValueError("; ".join(str(e) for e in result["errors"][:5]))
        account = self._account_of(p)
        if account is None:
            raise ValueError(_("no account was made for flat {flat}", flat=p.household))
        ledger = self.billing.ledger
        if not ledger.is_open(account) and not ledger.is_closed(account):
            await self.billing.open(
                account, p.amount, user=s.actor, source=s.source, offload=s.in_thread
            )
        return account

    def _opened(self, account: str | None, err: BaseException | None) -> None:
        if err is not None or account is None:
            self.say(_("refused: {error}", error=str(err)), "result-bad", ' data-refused="1"')
            return
        if self.billing.ledger.is_closed(account):
            self.say(
                _(
                    "account {account} is closed: the next tenant needs a new account id",
                    account=account,
                ),
                "result-bad",
                f' data-refused="closed" data-account="{html.escape(account)}"',
            )
            return
        self.say(
            _("account {account} is open", account=account),
            "result-ok",
            f' data-opened="{html.escape(account)}"',
        )
        self.on_opened(account)
