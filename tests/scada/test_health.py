"""The server watches itself: system.* health tags and the demo's health alarm rules."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scada.config import load_site
from scada.config.site import HealthConfig
from scada.health import HealthMonitor, LoopLagProbe, cert_not_after, health_tag_defs
from scada.runtime import Runtime
from scada.scheduler import make_scheduler
from scada.services.audit import FILE_NAME, AuditLog
from tags.database import TagDatabase
from tests.demo import demo_site_copy

HEALTH_RULES = {
    "system.historian_down",
    "system.spool_full",
    "system.disk_low",
    "system.loop_lag",
    "system.loop_stall",
    "system.backup_failed",
    "system.backup_old",
    "system.audit_chain",
    "system.tls_expiry",
}


async def _until(db: TagDatabase, check: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    """Wait until ``check()`` is truthy, re-checked on each change of a system or alarm tag."""
    done = asyncio.Event()

    def on_change(_batch: Any = None) -> None:
        if check():
            done.set()

    unsubscribe = db.subscribe(["system.*", "alarms.*", "historian.*"], on_change)
    try:
        on_change()
        await asyncio.wait_for(done.wait(), timeout_s)
    finally:
        unsubscribe()
    return check()


def _active(rt: Runtime, rule: str) -> list[Any]:
    return [a for a in rt.alarms.active() if a.rule_id == rule and a.active]


def _demo(tmp_path: Path, extra: str = "", *, backfill: bool = False) -> Path:
    """The demo config on free ports, without the week of backfill unless asked, plus ``extra``."""
    main = demo_site_copy(tmp_path / "config")
    text = main.read_text(encoding="utf-8")
    if not backfill:
        text = text.replace("backfill_days: 7", "backfill_days: 0")
    main.write_text(text + extra, encoding="utf-8")
    return main


def _audit_log(data: Path, n: int = 4) -> None:
    log = AuditLog.in_data_dir(data)
    for i in range(n):
        log.record("alarm.ack", user="op", source="10.0.0.7", target=f"k{i}", after={"i": i})
    log.close()


def _tamper(path: Path, sql: str) -> None:
    """Edit the log the way someone with file access would: triggers dropped first."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;" + sql)
    finally:
        conn.close()


def _make_cert(tmp_path: Path, days: int) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(days),
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert


# --------------------------------------------------------------------------- parts


async def test_a_blocking_call_on_the_loop_shows_in_loop_lag(tmp_path: Path) -> None:
    db = TagDatabase(health_tag_defs())
    monitor = HealthMonitor(db, tmp_path, HealthConfig(), tick_s=0.2)
    scheduler = make_scheduler()
    scheduler.start()
    await monitor.start(scheduler)
    try:
        block_s = 0.6
        time.sleep(block_s)  # deliberately block the event loop
        # A probe due within PROBE_S after the block began ran at least this late.
        bound_ms = (block_s - monitor.probe.interval_s) * 1000.0
        assert await _until(db, lambda: (db.read("system.loop_lag_ms").value or 0.0) >= bound_ms)
        assert db.read("system.uptime_s").value >= 0.0
    finally:
        await monitor.stop()
        scheduler.shutdown(wait=False)


async def test_the_probe_reports_the_max_once() -> None:
    probe = LoopLagProbe(interval_s=0.05)
    probe.start()
    try:
        time.sleep(0.2)
        await asyncio.sleep(0.06)  # let the late probe and its successor run
        assert probe.take_max_ms() >= 150.0
        # take_max_ms starts a new interval: the old stall is not reported twice
        assert probe.take_max_ms() < 150.0
    finally:
        probe.stop()


async def test_tls_days_left_from_a_generated_certificate(tmp_path: Path) -> None:
    cert = _make_cert(tmp_path, days=10)
    not_after = cert_not_after(cert)
    assert 9 * 86400 < not_after - time.time() <= 10 * 86400 + 60
    db = TagDatabase(health_tag_defs())
    monitor = HealthMonitor(db, tmp_path, HealthConfig(), tls_cert=cert)
    scheduler = make_scheduler()
    scheduler.start()
    await monitor.start(scheduler)
    try:
        assert db.read("system.tls_days_left").value == pytest.approx(
            (not_after - time.time()) / 86400.0, abs=0.1
        )
    finally:
        await monitor.stop()
        scheduler.shutdown(wait=False)


def test_an_unreadable_certificate_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(Exception, match=str(bad)):
        cert_not_after(bad)


async def test_entries_cut_off_the_end_break_the_chain_for_the_monitor(tmp_path: Path) -> None:
    _audit_log(tmp_path, 5)
    db = TagDatabase(health_tag_defs())
    monitor = HealthMonitor(db, tmp_path, HealthConfig(), audit_path=tmp_path / FILE_NAME)
    assert await monitor.check_audit() is True
    _tamper(tmp_path / FILE_NAME, "DELETE FROM audit WHERE seq >= 4")  # a valid shorter chain
    assert await monitor.check_audit() is False  # ... but the head seen before is gone
    assert db.read("system.audit_chain_ok").value is False
    assert "cut off" in monitor.audit_result["reason"]


async def test_no_audit_log_no_value(tmp_path: Path) -> None:
    db = TagDatabase(health_tag_defs())
    monitor = HealthMonitor(db, tmp_path, HealthConfig(), audit_path=tmp_path / FILE_NAME)
    assert await monitor.check_audit() is None
    assert db.read("system.audit_chain_ok").value is None


# --------------------------------------------------------------------------- the runtime


async def test_the_healthy_demo_raises_no_health_alarm(tmp_path: Path) -> None:
    """The demo as ``make run`` starts it (a week of backfill, the server) has no health alarm."""
    site = load_site(_demo(tmp_path, backfill=True))
    assert {r.id for r in site.alarms} >= HEALTH_RULES  # the demo has every health rule
    rt = Runtime(site, tmp_path / "var", serve=True, port=0)
    await rt.start()
    try:
        db = rt.db
        # every tag a health rule reads has its first value
        await _until(
            db,
            lambda: all(
                db.read(n).value is not None
                for n in (
                    "system.loop_lag_ms",
                    "system.disk_low",
                    "system.audit_chain_ok",
                    "historian.backend_ok",
                    "historian.spool_full",
                )
            ),
        )
        # then a few more health ticks
        up = db.read("system.uptime_s").value
        await _until(db, lambda: db.read("system.uptime_s").value >= up + 3)
        rules = HEALTH_RULES
        free = shutil.disk_usage(rt.data_dir)
        cfg = site.health
        if free.free / 2**20 < cfg.disk_min_free_mb or free.free / free.total * 100 < (
            cfg.disk_min_free_pct
        ):  # this machine's disk is really low: that alarm is right
            rules = rules - {"system.disk_low"}
        active = [a.key for a in rt.alarms.active(include_hidden=True) if a.rule_id in rules]
        assert active == []
        assert db.read("system.disk_low").value is False or "system.disk_low" not in rules
        assert db.read("system.audit_chain_ok").value is True  # the server's audit log
        assert db.read("system.backup_ok").value is None  # no backups configured
        assert db.read("system.tls_days_left").value is None  # plain HTTP
    finally:
        await rt.stop()


async def test_a_disk_threshold_above_the_free_space_raises_disk_low(tmp_path: Path) -> None:
    site = load_site(_demo(tmp_path, "\nhealth: {disk_min_free_mb: 1.0e12}\n"))
    rt = Runtime(site, tmp_path / "var")
    await rt.start()
    try:
        assert rt.db.read("system.disk_low").value is True  # published at start
        assert rt.db.read("system.disk_free_mb").value > 0
        alarms = await _until(rt.db, lambda: _active(rt, "system.disk_low"))
        assert alarms[0].priority == 2 and alarms[0].tag == "system.disk_low"
    finally:
        await rt.stop()


async def test_a_failed_backup_sets_backup_ok_false_and_the_runtime_runs_on(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the backup dir should be\n")
    site = load_site(_demo(tmp_path, f"\nbackup: {{dir: '{blocker}/backups', at: '03:30'}}\n"))
    rt = Runtime(site, tmp_path / "var")
    await rt.start()
    try:
        db = rt.db
        assert await rt.backup_scheduler.run_now() is None  # failed, not raised
        assert "not-a-dir" in rt.backup_scheduler.last_error
        alarms = await _until(db, lambda: _active(rt, "system.backup_failed"))
        assert db.read("system.backup_ok").value is False and alarms[0].priority == 2
        # the runtime runs on: the health task keeps ticking, the housekeeping too
        up = db.read("system.uptime_s").value
        await _until(db, lambda: db.read("system.uptime_s").value > up)
        assert rt.scheduler.get_job("runtime.housekeeping") is not None
        # a writable destination again: the next run is good, the age starts from it
        good = tmp_path / "backups"
        rt.backup_scheduler.config = rt.backup_scheduler.config.model_copy(
            update={"dir": str(good)}
        )
        assert await rt.backup_scheduler.run_now() is not None
        await _until(db, lambda: db.read("system.backup_ok").value is True)
        assert 0.0 <= db.read("system.backup_age_h").value < 1.0
        await _until(db, lambda: not _active(rt, "system.backup_failed"))
    finally:
        await rt.stop()


async def test_a_tampered_audit_log_fails_the_next_check(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir()
    _audit_log(data)
    rt = Runtime(load_site(_demo(tmp_path)), data)
    await rt.start()
    try:
        db = rt.db
        await _until(db, lambda: db.read("system.audit_chain_ok").value is True)  # start check
        _tamper(data / FILE_NAME, "UPDATE audit SET user = 'someone else' WHERE seq = 2")
        assert await rt.health.check_audit() is False
        assert rt.health.audit_result["broken_at"] == 2
        alarms = await _until(db, lambda: _active(rt, "system.audit_chain"))
        assert alarms[0].priority == 1
    finally:
        await rt.stop()


async def test_tls_days_left_and_its_alarm_when_the_server_serves_tls(tmp_path: Path) -> None:
    cert = _make_cert(tmp_path, days=10)
    site = load_site(_demo(tmp_path))
    rt = Runtime(
        site, tmp_path / "var", serve=True, port=0, tls_cert=str(cert),
        tls_key=str(tmp_path / "key.pem"),
    )  # fmt: skip
    await rt.start()
    try:
        days = rt.db.read("system.tls_days_left").value
        assert 9.0 < days <= 10.0
        alarms = await _until(rt.db, lambda: _active(rt, "system.tls_expiry"))
        assert [a.level for a in alarms] == ["l"] and alarms[0].priority == 3
    finally:
        await rt.stop()
