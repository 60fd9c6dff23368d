"""Meters and accounts: electricity meters per building in a grid coloured by account state.

States (colour only when abnormal): open account (grey), balance alarm 1, balance alarm 2,
arrears, no account, lost contact. The state comes from tags: the meter's ``online`` status
tag and billing's ``acct.<id>.level`` tag (issue 8); the meter-to-account map from the
``accounts`` section. Select meters (click, shift-click or box) and run a batch command:
*trip* / *close* write the relay tags through the command service (select-before-operate
with one confirm for the batch, a result per meter); *keep power* and *restore prepaid* are
billing operations, offered when the billing service (``services.billing``) provides them.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import BoxSelectTool, ColumnDataSource, HoverTool, Range1d, TapTool
from bokeh.models.widgets import Button, DataTable, TableColumn
from bokeh.plotting import figure

from billing.tags import Level, balance_tag, level_tag, relay_tag
from hmi.layout import denied_body, html_div, page_allowed, page_frame
from hmi.model import tag_or_none
from hmi.services import CommandStatus, ServiceCommands
from hmi.session import HmiSession
from hmi.theme import ACCOUNT_COLOURS, ACCOUNT_LABELS, COMM_LOST, EQUIPMENT, TEXT
from scada.config import SiteConfig
from tags.bus import ChangeBatch
from tags.database import TagDatabase
from tags.model import Quality

__all__ = ["MeterInfo", "make_meters", "meter_state", "site_meters"]

log = logging.getLogger(__name__)

PER_ROW = 16


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """An electricity meter with the tags that colour it."""

    device: str
    building: str
    energy_tag: str | None
    relay_tag: str | None
    online_tag: str | None
    account: str | None
    level_tag: str | None
    balance_tag: str | None


def _accounts_by_meter(site: SiteConfig) -> dict[str, str]:
    """Return ``{meter energy tag: account id}`` from billing's account resolution."""
    if not site.accounts:
        return {}
    try:
        from billing.accounts import resolve_accounts
    except ImportError:  # billing not installed: no accounts to show
        return {}
    out: dict[str, str] = {}
    try:
        for a in resolve_accounts(site):
            for m in a.meters:
                out[m.energy] = a.id
    except Exception:
        log.exception("cannot resolve the accounts of the site")
    return out


def site_meters(site: SiteConfig, db: TagDatabase) -> list[MeterInfo]:
    """Return every electricity meter (template role ``electricity_meter``) in config order."""
    by_meter = _accounts_by_meter(site)
    households = {h.id: site.household_building(h.id) for h in site.households()}
    out = []
    for d in site.devices:
        template = site.templates.get(d.template)
        if template is None or template.role != "electricity_meter" or not d.enabled:
            continue
        building = d.building or households.get(d.household or "", "") or "—"
        energy = tag_or_none(db, f"{d.id}.energy_kwh")
        account = by_meter.get(energy or "")
        out.append(
            MeterInfo(
                device=d.id,
                building=building,
                energy_tag=energy,
                relay_tag=tag_or_none(db, relay_tag(d.id)),
                online_tag=tag_or_none(db, f"{d.id}.online"),
                account=account,
                level_tag=tag_or_none(db, level_tag(account)) if account else None,
                balance_tag=tag_or_none(db, balance_tag(account)) if account else None,
            )
        )
    return out


def meter_state(db: TagDatabase, m: MeterInfo) -> str:
    """Return the meter's state key (see ``hmi.theme.ACCOUNT_COLOURS``)."""
    if m.online_tag is not None:
        tv = db.read(m.online_tag)
        if tv.value is not True or tv.quality is Quality.BAD:
            return "lost"
    if m.account is None:
        return "no_account"
    if m.level_tag is None:
        return "open"
    level = Level.of(db.read(m.level_tag).value)
    if level is None:
        return "no_account"  # configured, not opened yet
    return "open" if level is Level.OK else level.key


def _row(db: TagDatabase, m: MeterInfo) -> dict[str, Any]:
    state = meter_state(db, m)
    relay = db.read(m.relay_tag).value if m.relay_tag else None
    balance = db.read(m.balance_tag).value if m.balance_tag else None
    return {
        "state": state,
        "state_label": ACCOUNT_LABELS[state],
        "fill": ACCOUNT_COLOURS[state],
        "line": COMM_LOST if state == "lost" else EQUIPMENT,
        "relay": "—" if relay is None else ("closed" if relay else "TRIPPED"),
        "balance": "" if balance is None else f"{balance:,.2f}",
    }


def make_meters(
    session: HmiSession, doc: Document, commands: ServiceCommands | None = None
) -> None:
    """Build the meters and accounts page into ``doc``."""
    if not page_allowed(session, "meters"):
        page_frame(session, doc, "meters", denied_body("not allowed for your role"), "Meters")
        return
    db = session.services.db
    meters = site_meters(session.services.site, db)
    if not meters:
        page_frame(
            session, doc, "meters", denied_body("no electricity meters configured"), "Meters"
        )
        return
    xs, ys, ylabels = [], [], {}
    y = 0
    current = None
    col = 0
    for m in meters:
        if m.building != current:
            if current is not None:
                y -= 2
            current, col = m.building, 0
            ylabels[y] = m.building
        elif col == PER_ROW:
            col, y = 0, y - 1
        xs.append(col)
        ys.append(y)
        col += 1
    data: dict[str, list[Any]] = {
        "x": xs,
        "y": ys,
        "device": [m.device for m in meters],
        "label": [
            m.device.rsplit(".", 1)[0] if m.device.endswith(".em") else m.device for m in meters
        ],
        "account": [m.account or "" for m in meters],
        "building": [m.building for m in meters],
    }
    rows = [_row(db, m) for m in meters]
    for key in rows[0]:
        data[key] = [r[key] for r in rows]
    source = ColumnDataSource(data, name="meter-grid")
    fig = figure(
        name="meters",
        sizing_mode="stretch_both",
        tools="",
        toolbar_location=None,
        x_range=Range1d(start=-0.6, end=PER_ROW - 0.4),
        # at least 8 rows: cells stay wider than tall
        y_range=Range1d(start=min(min(ys), -7) - 0.6, end=0.8),
        background_fill_color="#DADADA",
        border_fill_color=None,
        outline_line_color=None,
    )
    fig.axis.visible = False
    fig.grid.visible = False
    cells = fig.rect(
        "x", "y", 0.92, 0.86, source=source, fill_color="fill", line_color="line", line_width=2
    )
    cells.nonselection_glyph = cells.glyph
    cells.selection_glyph = cells.glyph.clone(line_color="#1E78C8", line_width=5)
    labels = fig.text(
        "x",
        "y",
        text="label",
        source=source,
        text_align="center",
        text_baseline="bottom",
        text_font_size="13px",
        text_color=TEXT,
    )
    relays = fig.text(
        "x",
        "y",
        text="relay",
        source=source,
        text_align="center",
        text_baseline="top",
        text_font_size="11px",
        text_color=TEXT,
        y_offset=2,
    )
    for r in (labels, relays):  # texts never fade with the selection
        r.selection_glyph = r.nonselection_glyph = r.glyph
    for yy, name in ylabels.items():
        fig.text(
            [-0.55],
            [yy + 0.62],
            text=[name],
            text_font_size="15px",
            text_font_style="bold",
            text_color=TEXT,
        )
    fig.add_tools(TapTool(renderers=[cells], mode="xor"), BoxSelectTool(renderers=[cells]))
    fig.add_tools(
        HoverTool(
            renderers=[cells],
            tooltips=[
                ("meter", "@device"),
                ("account", "@account"),
                ("state", "@state_label"),
                ("relay", "@relay"),
                ("balance", "@balance"),
            ],
        )
    )
    legend = html_div(
        "".join(
            f'<span class="pill" style="background:{ACCOUNT_COLOURS[k]};color:#000" data-state-key="{k}">'
            f'{html.escape(v)} <b data-count-of="{k}">{data["state"].count(k)}</b></span>'
            for k, v in ACCOUNT_LABELS.items()
        ),
        name="meter-legend",
        sizing_mode="stretch_width",
    )
    results = ColumnDataSource({"meter": [], "state": [], "message": []}, name="meter-results")
    result_table = DataTable(
        source=results,
        height=160,
        sizing_mode="stretch_width",
        index_position=None,
        columns=[
            TableColumn(field="meter", title="meter"),
            TableColumn(field="state", title="result"),
            TableColumn(field="message", title="message"),
        ],
        name="meter-result-table",
    )
    note = html_div("", name="meter-note", sizing_mode="stretch_width")
    btn_trip = Button(label="Trip", name="meter-trip", width=90)
    btn_close = Button(label="Close", name="meter-close", width=90)
    btn_keep = Button(label="Keep power", name="meter-keep", width=110)
    btn_restore = Button(label="Restore prepaid", name="meter-restore", width=130)
    btn_confirm = Button(
        label="Confirm batch", button_type="primary", name="meter-confirm", width=130, visible=False
    )
    btn_cancel = Button(label="Cancel", name="meter-cancel", width=90, visible=False)
    can_cmd = (
        commands is not None
        and hasattr(commands, "select_batch")
        and session.may("commands.operate")
    )
    billing = session.services.billing
    can_bill = billing is not None and session.may("billing.write")
    btn_trip.disabled = btn_close.disabled = not can_cmd
    btn_keep.disabled = btn_restore.disabled = not can_bill
    if not can_cmd:
        note.text = '<span class="denied" data-denied="1">your role may not send commands</span>'
    pending: dict[str, Any] = {"batch": None}

    def selected() -> list[int]:
        return list(source.selected.indices)

    def show(statuses: list[CommandStatus]) -> None:
        results.data = {
            "meter": [s.tag for s in statuses],
            "state": [s.state for s in statuses],
            "message": [s.message for s in statuses],
        }

    def batch(closed: bool) -> None:
        user = session.user
        if commands is None or user is None:  # the buttons are disabled then
            return
        targets = [(tag, closed) for i in selected() if (tag := meters[i].relay_tag)]
        if not targets:
            note.text = '<span class="result-bad">select meters with a relay first</span>'
            return
        note.text = '<span class="u">selecting…</span>'

        def selected_done(res: Any, err: BaseException | None) -> None:
            if err is not None:
                note.text = f'<span class="result-bad">{html.escape(str(err))}</span>'
                return
            batch_id, statuses = res
            show(statuses)
            ok = sum(s.state == "selected" for s in statuses)
            if batch_id is None or ok == 0:
                note.text = '<span class="result-bad">nothing could be selected</span>'
                return
            pending["batch"] = batch_id
            pending["billing"] = None
            what = "close" if closed else "trip"
            note.text = (
                f'<div class="confirm" data-batch="{html.escape(batch_id)}"><b>{what}</b> '
                f"{ok} meter relay(s)? Confirm before the selection expires.</div>"
            )
            btn_confirm.visible = btn_cancel.visible = True

        session.spawn(commands.select_batch(user, targets), selected_done)

    def confirm() -> None:
        batch_id, pending["batch"] = pending["batch"], None
        op, pending["billing"] = pending.get("billing"), None
        btn_confirm.visible = btn_cancel.visible = False
        if op is not None:
            run_billing(*op)
            return
        user = session.user
        if batch_id is None or commands is None or user is None:
            return
        note.text = '<span class="u">operating…</span>'

        def done(statuses: Any, err: BaseException | None) -> None:
            if err is not None:
                note.text = f'<span class="result-bad">{html.escape(str(err))}</span>'
                return
            show(statuses)
            good = sum(s.state == "confirmed" for s in statuses)
            note.text = f'<span class="result-ok" data-batch-done="{good}">{good} of {len(statuses)} confirmed</span>'

        session.spawn(commands.operate_batch(user, batch_id), done)

    def cancel() -> None:
        batch_id, pending["batch"] = pending["batch"], None
        pending["billing"] = None
        btn_confirm.visible = btn_cancel.visible = False
        user = session.user
        if batch_id is not None and commands is not None and user is not None:
            session.spawn(commands.cancel_batch(user, batch_id), lambda st, err: show(st or []))
        note.text = '<span class="u">cancelled</span>'

    def billing_op(name: str) -> None:
        accounts = sorted({a for i in selected() if (a := meters[i].account)})
        if not accounts or billing is None:
            note.text = '<span class="result-bad">select meters with an account first</span>'
            return
        pending["batch"] = None
        pending["billing"] = (name, accounts)
        what = "keep power on for" if name == "keep" else "restore prepaid for"
        note.text = (
            f'<div class="confirm" data-billing="{name}"><b>{what}</b> '
            f"{html.escape(', '.join(accounts))}?</div>"
        )
        btn_confirm.visible = btn_cancel.visible = True

    def run_billing(name: str, accounts: list[str]) -> None:
        note.text = '<span class="u">operating…</span>'

        async def run() -> list[CommandStatus]:
            out = []
            if billing is None:  # billing_op offers nothing without it
                return []
            who = {"user": session.actor, "source": session.source}
            for a in accounts:
                try:  # billing audits each operation (who kept which account powered)
                    if name == "keep":
                        r = await billing.set_keep_power(a, True, note="HMI meters page", **who)
                    else:
                        r = await billing.restore_prepaid(a, **who)
                    message = "; ".join([*r.relay_actions, *r.relay_failures])
                    out.append(CommandStatus(None, "done", a, None, None, message))
                except Exception as exc:  # shown per account, like a batch result
                    out.append(CommandStatus(None, "failed", a, None, None, str(exc)))
            return out

        def done(st: list[CommandStatus] | None, err: BaseException | None) -> None:
            statuses = st or [CommandStatus(None, "failed", "", None, None, str(err))]
            show(statuses)
            good = sum(s.state == "done" for s in statuses)
            note.text = (
                f'<span class="result-ok" data-billing-done="{good}">'
                f"{good} of {len(statuses)} done</span>"
            )

        session.spawn(run(), done)

    btn_trip.on_click(lambda: batch(False))
    btn_close.on_click(lambda: batch(True))
    btn_confirm.on_click(confirm)
    btn_cancel.on_click(cancel)
    btn_keep.on_click(lambda: billing_op("keep"))
    btn_restore.on_click(lambda: billing_op("restore"))

    watched = [
        t for m in meters for t in (m.online_tag, m.relay_tag, m.level_tag, m.balance_tag) if t
    ]
    rows_of: dict[str, list[int]] = {}
    for i, m in enumerate(meters):
        for t in (m.online_tag, m.relay_tag, m.level_tag, m.balance_tag):
            if t:
                rows_of.setdefault(t, []).append(i)

    def on_changes(batch_: ChangeBatch) -> None:
        dirty = sorted({i for name in batch_.names for i in rows_of.get(name, ())})
        patches: dict[str, list[tuple[int, Any]]] = {}
        for i in dirty:
            for key, value in _row(db, meters[i]).items():
                if source.data[key][i] != value:
                    patches.setdefault(key, []).append((i, value))
        if patches:
            source.patch(patches)
            states = list(source.data["state"])
            legend.text = "".join(
                f'<span class="pill" style="background:{ACCOUNT_COLOURS[k]};color:#000" data-state-key="{k}">'
                f'{html.escape(v)} <b data-count-of="{k}">{states.count(k)}</b></span>'
                for k, v in ACCOUNT_LABELS.items()
            )

    session.subscribe(watched, on_changes)
    actions = row(
        btn_trip,
        btn_close,
        btn_keep,
        btn_restore,
        btn_confirm,
        btn_cancel,
        sizing_mode="stretch_width",
        styles={"flex-wrap": "wrap"},
    )
    side = column(actions, note, result_table, width=520, sizing_mode="stretch_height")
    body = column(legend, row(fig, side, sizing_mode="stretch_both"), sizing_mode="stretch_both")
    page_frame(session, doc, "meters", body, "Meters and accounts")
