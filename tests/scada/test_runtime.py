"""The demo site end to end: simulator, drivers over real Modbus TCP, tag runtime, historian."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from historian.sqlite import SqliteHistorian
from scada.config import load_site
from scada.runtime import Runtime
from scada.services.auth import system_user
from scada.services.command_model import CommandState
from tags.model import Quality
from tests.demo import demo_site_copy

ROOT = Path(__file__).resolve().parents[2]


async def _wait_good(db, names: list[str], timeout_s: float = 20.0) -> None:
    """Wait until every tag in ``names`` has good quality (event-driven, no polling sleeps)."""
    done = asyncio.Event()
    pending = set(names)

    def check(_batch=None) -> None:
        for n in list(pending):
            if db.read(n).quality is Quality.GOOD:
                pending.discard(n)
        if not pending:
            done.set()

    unsubscribe = db.subscribe(names, check)
    try:
        check()
        await asyncio.wait_for(done.wait(), timeout_s)
    finally:
        unsubscribe()


async def test_demo_site_polls_simulator_and_historises(tmp_path: Path) -> None:
    site = load_site(demo_site_copy(tmp_path / "config"))
    runtime = Runtime(site, tmp_path / "var")
    await runtime.start()
    try:
        watched = [
            "b1.hm.energy_kwh",
            "b1.101.valve.room_c",
            "b2.604.valve.open",
            "b1.power_total",
            "b1.hm.online",
            "historian.backend_ok",
            # building 10: DL/T 645, CJ/T 188 and M-Bus meters behind simulated serial servers
            "b10.101.em.energy_kwh",
            "b10.202.em.relay",
            "b10.hm.energy_kwh",
            "b10.wing.energy_kwh",
            "b10.202.em.energy_kwh",
        ]
        await _wait_good(runtime.db, watched)
        # The driver read the simulator over Modbus: the heat meter's energy matches the model's
        # register value within one simulation step of drift.
        polled = runtime.db.read("b1.hm.energy_kwh").value
        assert polled == pytest.approx(runtime.simulator.value("b1.hm", "energy_kwh"), rel=1e-3)
        assert runtime.db.read("b1.hm.online").value is True
        # The computed tag is the sum of its inputs.
        parts = [runtime.db.read(n).value for n in runtime.db.match("b1.*.em.power_kw")]
        assert runtime.db.read("b1.power_total").value == pytest.approx(sum(parts))
        assert runtime.db.read("historian.backend_ok").value is True
        # Billing runs inside the runtime: the configured accounts are opened with their opening
        # balance, and their balance tags (which the alarm engine watches) carry it.
        accounts = {a["id"]: a for a in runtime.billing.accounts()}
        assert set(accounts) == {a.id for a in site.accounts}
        assert accounts["b1-101"]["balance"] == "200.00"
        assert runtime.db.read("acct.b1-101.balance").value == pytest.approx(200.0)
        assert runtime.alarms is not None and runtime.alarms.counts() is not None
        for dev in ("b10.101.em", "b10.202.em", "b10.hm", "b10.wing"):
            assert runtime.db.read(f"{dev}.online").value is True, dev
        # prepaid trip on a DL/T 645 meter through the normal command path (select, operate,
        # read-back), as billing does on arrears
        assert runtime.commands is not None
        relay = runtime.simulator.model.meter("b10.101.em", "relay")
        cmd = await runtime.commands.execute(
            system_user("billing"), "b10.101.em.relay", False, "prepaid test"
        )
        assert cmd.state is CommandState.CONFIRMED, cmd
        assert relay.get() is False
        assert runtime.db.read("b10.101.em.relay").value is False
        assert runtime.simulator.model.meter("b10.102.em", "relay").get() is True
    finally:
        await runtime.stop()
    history = SqliteHistorian(tmp_path / "var" / "history.sqlite")
    try:
        last = history.last(["b1.hm.energy_kwh", "b1.hm.online"])
        assert set(last) == {"b1.hm.energy_kwh", "b1.hm.online"}
    finally:
        history.close()


def test_scada_run_stops_cleanly(tmp_path: Path) -> None:
    """``scada run`` starts the demo site and stops cleanly (the hidden --for-seconds stands for Ctrl-C)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "scada.cli",
            "run",
            str(demo_site_copy(tmp_path / "config")),
            "--data-dir",
            str(tmp_path / "var"),
            "--for-seconds",
            "2",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert "running with" in out.stdout and "stopped cleanly" in out.stdout
    assert (tmp_path / "var" / "history.sqlite").exists()


def test_scada_run_rejects_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: {id: x, name: X, timezone: UTC}\nchannels: 3\n")
    out = subprocess.run(
        [sys.executable, "-m", "scada.cli", "run", str(bad), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert f"{bad}:2:11: channels:" in out.stderr
