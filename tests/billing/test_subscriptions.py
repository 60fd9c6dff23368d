"""Report subscriptions: the store, the schedule, a run e-mailing the file through a real SMTP
server (aiosmtpd), report scopes and presets, and the nightly counter-days job."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pytest
from aiosmtpd.controller import Controller
from tornado.testing import bind_unused_port

from alarms.notifications import EmailNotifierConfig
from alarms.notify.email import EmailNotifier
from billing.ledger import Ledger
from billing.periods import parse_period
from billing.report_scope import build_scoped, preset_period
from billing.service import Billing
from historian.sqlite import SqliteHistorian
from scada.services.audit import AuditLog
from scada.services.report_delivery import ReportDelivery
from scada.services.subscriptions import SubscriptionStore, next_run, validate
from tests.billing.conftest import HOUR, NOV1, write

TZ = "Asia/Shanghai"
NOV3 = NOV1 + 2 * 86400


class _Collect:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[_Collect, int]]:
    handler = _Collect()
    sock, port = bind_unused_port()
    sock.close()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def _fill(h: SqliteHistorian, end: float) -> None:
    ts = np.arange(NOV1 - HOUR, end + 1, HOUR)
    x = (ts - NOV1) / HOUR
    write(h, "e.101.energy_kwh", [(float(t), 100.0 + v) for t, v in zip(ts, x, strict=True)])
    write(h, "e.main.energy_kwh", [(float(t), 2.0 * v) for t, v in zip(ts, x, strict=True)])
    write(h, "b1.hm.energy_kwh", [(float(t), 5000.0 + 25 * v) for t, v in zip(ts, x, strict=True)])


def _fields(**kw: Any) -> dict[str, Any]:
    base = {
        "kind": "meter_energy",
        "scope": "estate",
        "preset": "yesterday",
        "format": "pdf",
        "every": "daily",
        "at": "07:30",
        "recipients": "office@heat.example, boss@heat.example",
    }
    return {**base, **kw}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SubscriptionStore]:
    s = SubscriptionStore.in_data_dir(tmp_path, TZ)
    yield s
    s.close()


def test_fields_are_checked_naming_the_field(site: Any) -> None:
    blds = {b.id for b in site.buildings}
    hhs = {h.id for h in site.households()}
    ok = validate(_fields(), blds, hhs)
    assert ok["recipients"] == ["office@heat.example", "boss@heat.example"]
    bad = {
        "kind": _fields(kind="weather"),
        "scope": _fields(scope="building:b9"),
        "preset": _fields(preset="next-year"),
        "format": _fields(format="doc"),
        "every": _fields(every="hourly"),
        "at": _fields(at="25:00"),
        "recipients": _fields(recipients="nobody"),
        "options": _fields(options={"household": "b1.101"}),
        "base_c": _fields(kind="building_heat", options={"base_c": "warm"}),
    }
    for field, fields in bad.items():
        with pytest.raises(ValueError, match=f"^{field}:"):
            validate(fields, blds, hhs)
    with pytest.raises(ValueError, match=r"^scope:"):  # a statement is of one household
        validate(_fields(kind="household_statement"), blds, hhs)
    assert validate(_fields(kind="household_statement", scope="household:b1.102"), blds, hhs)


def test_schedule_and_store(store: SubscriptionStore) -> None:
    f = validate(_fields(every="weekly", weekday=0, at="07:30"), {"b1"}, set())
    # 2025-11-01 is a Saturday: the next Monday 07:30 local is 2025-11-03 07:30 (UTC+8)
    assert next_run(f, NOV1, TZ) == NOV3 + 7.5 * HOUR
    monthly = {**f, "every": "monthly", "day": 1}
    assert next_run(monthly, NOV1, TZ) == NOV1 + 7.5 * HOUR
    assert next_run(monthly, NOV1 + 8 * HOUR, TZ) == NOV1 + 30 * 86400 + 7.5 * HOUR
    sub = store.add("office", f, now=NOV1)
    assert store.due(NOV3 + 7 * HOUR) == []
    assert [s.id for s in store.due(NOV3 + 8 * HOUR)] == [sub.id]
    changed = store.update(sub.id, {**f, "every": "daily"}, now=NOV1)
    assert changed.next_ts == NOV1 + 7.5 * HOUR and changed.every == "daily"
    store.record(sub.id, NOV1 + 7.5 * HOUR, False, "report failed: x", NOV1 + 31.5 * HOUR)
    got = store.get(sub.id)
    assert (got.last_ok, got.last_result, got.next_ts) == (
        False,
        "report failed: x",
        NOV1 + 31.5 * HOUR,
    )
    assert [s.id for s in store.all("office")] == [sub.id] and store.all("other") == []
    assert store.delete(sub.id) and not store.delete(sub.id)


def test_scopes_and_presets(
    site: Any, ledger: Ledger, historian: SqliteHistorian, audit: AuditLog, tmp_path: Path
) -> None:
    _fill(historian, NOV3 + HOUR)
    b = Billing(site, ledger, historian, commander=None, audit=audit, data_dir=tmp_path)
    p = parse_period("2025-11-01", TZ)
    whole = build_scoped(b, "heat_meter_days", p)
    only = build_scoped(b, "heat_meter_days", p, "building:b1")
    assert [r[0] for r in only.sheets[0].rows] == ["b1"] and "(b1)" in only.title
    assert only.sheets[0].totals() == whole.sheets[0].totals()
    for scope, reason in {
        "building:b9": "scope: unknown building",
        "household:b1.101": "scope: report heat_meter_days takes",
    }.items():
        with pytest.raises(ValueError, match=reason):
            build_scoped(b, "heat_meter_days", p, scope)
    with pytest.raises(ValueError, match="outside the stored history"):
        build_scoped(b, "meter_energy", parse_period("2020-01", TZ))
    y = preset_period("yesterday", site, NOV3 + HOUR)
    assert (y.start, y.end, y.label) == (NOV1 + 86400, NOV3, "2025-11-02")
    m = preset_period("last-month", site, NOV3)
    assert m.end == NOV1 and m.label == "2025-10"
    t = preset_period("this-month", site, NOV3 + HOUR)
    assert (t.start, t.end) == (NOV1, NOV3 + 86400)


async def test_run_emails_the_report_as_attachment(
    site: Any,
    ledger: Ledger,
    historian: SqliteHistorian,
    audit: AuditLog,
    tmp_path: Path,
    store: SubscriptionStore,
    smtp: tuple[_Collect, int],
) -> None:
    handler, port = smtp
    _fill(historian, NOV3 + HOUR)
    now = NOV3 + 7.5 * HOUR  # Nov 3 07:30: yesterday is Nov 2
    b = Billing(site, ledger, historian, commander=None, audit=audit, data_dir=tmp_path)
    mail = EmailNotifier(
        EmailNotifierConfig(
            name="mail", type="email", host="127.0.0.1", port=port, sender="scada@heat.example"
        )
    )
    delivery = ReportDelivery(store, b, {"mail": mail}, clock=lambda: now)
    pdf_sub = store.add("office", validate(_fields(), {"b1"}, set()), now=now - 60)
    xlsx_sub = store.add(
        "office",
        validate(_fields(format="xlsx", recipients="a@heat.example"), {"b1"}, set()),
        now=now - 60,
    )
    assert await delivery.run_due() == 2
    assert len(handler.envelopes) == 3  # two recipients of the PDF, one of the workbook
    files = {}
    for env in handler.envelopes:
        msg = message_from_bytes(env.original_content)
        assert "Energy per meter and bucket, 2025-11-02" in str(msg["Subject"])
        (part,) = [p for p in msg.walk() if p.get_filename()]
        files[part.get_filename()] = part.get_payload(decode=True)
    assert files["meter_energy-2025-11-02.pdf"].startswith(b"%PDF")
    wb = openpyxl.load_workbook(io.BytesIO(files["meter_energy-2025-11-02.xlsx"]))
    assert wb["heat"]["A3"].value == "b1.hm.energy_kwh" and wb["heat"]["D3"].value == 600.0
    got = store.get(pdf_sub.id)
    assert got.last_ok and got.last_result == "sent meter_energy-2025-11-02.pdf to 2 recipient(s)"
    assert got.last_ts == now and got.next_ts == now + 86400
    assert store.due(now) == []
    # a report that cannot be made is a failed run with the reason, and no mail
    store.update(xlsx_sub.id, validate(_fields(preset="last-season"), {"b1"}, set()), now=now - 60)
    ok, text = await delivery.run(store.get(xlsx_sub.id), now)
    assert not ok and "period:" in text and store.get(xlsx_sub.id).last_ok is False
    assert len(handler.envelopes) == 3
    # without an e-mail notifier: failed, saying so
    ok, text = await ReportDelivery(store, b, {}, clock=lambda: now).run(got, now)
    assert not ok and "no e-mail notifier" in text


async def test_nightly_job_stores_yesterdays_counter_days(
    site: Any,
    ledger: Ledger,
    historian: SqliteHistorian,
    audit: AuditLog,
    tmp_path: Path,
    store: SubscriptionStore,
) -> None:
    _fill(historian, NOV3 + HOUR)
    b = Billing(site, ledger, historian, commander=None, audit=audit, data_dir=tmp_path)
    delivery = ReportDelivery(store, b, {}, clock=lambda: NOV3 + 40 * 60)

    def stored_days() -> set[float]:
        con = sqlite3.connect(tmp_path / "history.sqlite")
        try:
            return {r[0] for r in con.execute("SELECT DISTINCT start FROM counter_bucket")}
        finally:
            con.close()

    assert stored_days() == set()
    assert await delivery.counter_days() == 3  # the three meters with readings
    assert stored_days() == {NOV1 + 86400}  # Nov 2, local
    assert await delivery.counter_days("2025-11-01") == 3
    assert stored_days() == {NOV1, NOV1 + 86400}
    # the report reads the stored day: the same figures
    report = build_scoped(b, "meter_energy", parse_period("2025-11-02", TZ))
    heat = next(s for s in report.sheets if s.name == "heat")
    assert heat.rows[0][3] == 600.0
