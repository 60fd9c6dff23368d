"""Select-before-operate against the simulator: the happy path and every failure state."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from scada.config import load_site, load_site_text
from scada.runtime import Runtime
from scada.services.audit import AuditLog
from scada.services.auth import system_user
from scada.services.command_model import Command, CommandState
from scada.services.command_store import CommandStore
from scada.services.commands import CommandError, CommandService
from scada.services.plant import Plant
from tags.database import TagDatabase
from tests.scada.server_fixtures import (
    Served,
    served_fixture,  # noqa: F401
    start_served,
)


def _audit(served: Served, action: str) -> list[dict[str, Any]]:
    return served.server.ctx.audit.query(action=action)


async def _wait_event(served: Served, command_id: str, state: str, timeout_s: float = 10) -> None:
    done = asyncio.Event()

    def on(event: dict[str, Any]) -> None:
        if event["command"]["id"] == command_id and event["event"] == state:
            done.set()

    unsub = served.server.ctx.commands.subscribe(on)
    try:
        if served.server.ctx.commands.get(command_id).state.value != state:
            await asyncio.wait_for(done.wait(), timeout_s)
    finally:
        unsub()


async def test_select_operate_confirms_and_the_valve_follows(served: Served) -> None:
    sim = served.runtime.simulator
    assert sim.value("b1.101.valve", "open") is True
    events: list[str] = []
    served.server.ctx.commands.subscribe(lambda e: events.append(e["event"]))
    st, sel, _ = await served.api(
        "POST",
        "/api/commands",
        role="operator",
        body={"tag": "b1.101.valve.open", "value": False, "reason": "maintenance"},
    )
    assert st == 201
    assert sel["state"] == "selected" and sel["expires_at"] and sel["id"]
    assert sim.value("b1.101.valve", "open") is True  # nothing written on select
    st, done, _ = await served.api("POST", f"/api/commands/{sel['id']}/operate", role="operator")
    assert st == 200
    assert done["state"] == "confirmed" and done["read_back"] is False
    assert sim.value("b1.101.valve", "open") is False
    assert events == ["selected", "operated", "confirmed"]
    st, got, _ = await served.api("GET", f"/api/commands/{sel['id']}", role="viewer")
    assert st == 200 and got["state"] == "confirmed"
    for action in ("command.select", "command.operate", "command.confirmed"):
        (entry,) = _audit(served, action)
        assert entry["user"] == "operator" and entry["target"] == "b1.101.valve.open"
        assert entry["source"] == "127.0.0.1"
    assert _audit(served, "command.select")[0]["before"]["value"] is True
    assert _audit(served, "command.confirmed")[0]["after"]["read_back"] is False


async def test_unoperated_selection_expires(served: Served) -> None:
    served.server.ctx.commands.select_timeout_s = 0.2
    st, sel, _ = await served.api(
        "POST", "/api/commands", role="operator", body={"tag": "test.level", "value": 5}
    )
    assert st == 201
    await _wait_event(served, sel["id"], "expired")
    st, body, _ = await served.api("POST", f"/api/commands/{sel['id']}/operate", role="operator")
    assert st == 409 and body["command"]["state"] == "expired"
    assert served.db.read("test.level").value == 10.0
    assert _audit(served, "command.expired")[0]["target"] == "test.level"


async def test_cancelled_selection_cannot_be_operated(served: Served) -> None:
    st, sel, _ = await served.api(
        "POST", "/api/commands", role="operator", body={"tag": "test.level", "value": 5}
    )
    st, body, _ = await served.api("POST", f"/api/commands/{sel['id']}/cancel", role="operator")
    assert st == 200 and body["state"] == "cancelled"
    st, body, _ = await served.api("POST", f"/api/commands/{sel['id']}/operate", role="operator")
    assert st == 409 and body["command"]["state"] == "cancelled"
    assert served.db.read("test.level").value == 10.0
    # the tag is free again for a new selection
    st, _, _ = await served.api(
        "POST", "/api/commands", role="operator", body={"tag": "test.level", "value": 6}
    )
    assert st == 201


async def test_only_the_selecting_user_may_operate_or_cancel(served: Served) -> None:
    st, sel, _ = await served.api(
        "POST", "/api/commands", role="operator", body={"tag": "test.level", "value": 5}
    )
    for path in ("operate", "cancel"):
        st, body, _ = await served.api(
            "POST", f"/api/commands/{sel['id']}/{path}", role="operator2"
        )
        assert st == 403, body
    assert served.server.ctx.commands.get(sel["id"]).state.value == "selected"
    # a second selection of the same tag is refused while the first is live
    st, body, _ = await served.api(
        "POST", "/api/commands", role="operator2", body={"tag": "test.level", "value": 9}
    )
    assert st == 409 and body["command"]["state"] == "failed"
    denied = served.server.ctx.audit.query(action="command.*", result="denied")
    assert {e["user"] for e in denied} == {"operator2"}


async def test_rejected_selections_fail_with_reasons(served: Served) -> None:
    cases = [
        ({"tag": "b1.101.valve.setpoint_c", "value": 99}, 422, "above max"),
        ({"tag": "b1.101.valve.setpoint_c", "value": "warm"}, 422, "b1.101.valve.setpoint_c"),
        ({"tag": "b1.hm.energy_kwh", "value": 1}, 422, "not writable"),
        ({"tag": "b1.101.valve.room_c", "value": 20}, 422, "not writable"),
        ({"tag": "test.fixed", "value": 2}, 422, "not writable"),
        ({"tag": "test.level", "value": 101}, 422, "above max"),
        ({"tag": "no.such.tag", "value": 1}, 404, "unknown tag"),
    ]
    for body, status, text in cases:
        st, answer, _ = await served.api("POST", "/api/commands", role="operator", body=body)
        assert st == status, (body, answer)
        assert text in answer["error"]
        assert answer["command"]["state"] == "failed"
    st, answer, _ = await served.api(
        "POST", "/api/commands", role="viewer", body={"tag": "test.level", "value": 1}
    )
    assert st == 403
    failed = _audit(served, "command.select")
    assert sum(1 for e in failed if e["result"] == "failed") == len(cases)


async def test_non_finite_values_are_refused_at_select(served: Served) -> None:
    # JSON from a client may carry NaN/Infinity literals (Python's json reads them)
    for tag in ("b1.101.valve.setpoint_c", "test.level"):
        for literal in ("NaN", "Infinity", "-Infinity"):
            raw = f'{{"tag": "{tag}", "value": {literal}}}'.encode()
            st, answer, _ = await served.api("POST", "/api/commands", role="operator", raw=raw)
            assert st == 422, (tag, literal, answer)
            assert "finite" in answer["error"]
            assert answer["command"]["state"] == "failed"
    # and in-process callers of the service
    commands = served.server.ctx.commands
    for value in (float("nan"), float("inf"), float("-inf")):
        try:
            commands.select(system_user("billing"), "b1.101.valve.setpoint_c", value)
        except CommandError as exc:
            assert exc.status == 422 and "finite" in str(exc)
        else:
            raise AssertionError(f"{value} was selected")
    assert not commands.list(state="selected")


async def test_offline_device_fails_at_operate_and_at_select(served: Served) -> None:
    sim = served.runtime.simulator
    st, sel, _ = await served.api(
        "POST", "/api/commands", role="operator", body={"tag": "b1.102.valve.open", "value": False}
    )
    assert st == 201
    sim.set_fault("b1.102.valve", "offline")
    st, done, _ = await served.api("POST", f"/api/commands/{sel['id']}/operate", role="operator")
    assert st == 200 and done["state"] == "failed" and done["message"]
    assert sim.value("b1.102.valve", "open") is True
    await served.wait_for(
        lambda: served.db.read("b1.102.valve.online").value is False, "b1.102.valve.online"
    )
    st, body, _ = await served.api(
        "POST", "/api/commands", role="operator", body={"tag": "b1.102.valve.open", "value": False}
    )
    assert st == 409 and "offline" in body["error"] and body["command"]["state"] == "failed"


async def test_idempotency_keys_and_repeated_operate(served: Served) -> None:
    body = {"tag": "test.level", "value": 12}
    hdr = {"Idempotency-Key": "k-1"}
    st1, a, _ = await served.api("POST", "/api/commands", role="operator", body=body, headers=hdr)
    st2, b, _ = await served.api("POST", "/api/commands", role="operator", body=body, headers=hdr)
    assert (st1, st2) == (201, 200) and a["id"] == b["id"]
    st, _, _ = await served.api(
        "POST",
        "/api/commands",
        role="operator",
        body={"tag": "test.level", "value": 13},
        headers=hdr,
    )
    assert st == 409
    r1 = await served.api("POST", f"/api/commands/{a['id']}/operate", role="operator")
    r2 = await served.api("POST", f"/api/commands/{a['id']}/operate", role="operator")
    assert r1[0] == r2[0] == 200 and r1[1]["state"] == r2[1]["state"] == "confirmed"
    assert len(_audit(served, "command.operate")) == 1  # written once


async def test_batch_selects_and_operates_with_a_result_per_target(served: Served) -> None:
    sim = served.runtime.simulator
    st, batch, _ = await served.api(
        "POST",
        "/api/commands/batch",
        role="operator",
        body={"pattern": "b1.*.valve.open", "value": False},
    )
    assert st == 201
    assert [r["tag"] for r in batch["results"]] == ["b1.101.valve.open", "b1.102.valve.open"]
    assert {r["state"] for r in batch["results"]} == {"selected"}
    st, done, _ = await served.api(
        "POST", f"/api/commands/batch/{batch['id']}/operate", role="operator"
    )
    assert st == 200 and [r["state"] for r in done["results"]] == ["confirmed", "confirmed"]
    assert sim.value("b1.101.valve", "open") is False and sim.value("b1.102.valve", "open") is False
    st, mixed, _ = await served.api(
        "POST",
        "/api/commands/batch",
        role="operator",
        body={
            "targets": [
                {"tag": "b1.101.valve.setpoint_c", "value": 21.5},
                {"tag": "b1.102.valve.setpoint_c", "value": 99},
            ]
        },
    )
    assert st == 201
    ok, bad = mixed["results"]
    assert ok["state"] == "selected" and bad["state"] == "failed" and "above max" in bad["error"]
    st, done, _ = await served.api(
        "POST", f"/api/commands/batch/{mixed['id']}/operate", role="operator"
    )
    assert [r["state"] for r in done["results"]] == ["confirmed", "failed"]
    assert sim.value("b1.101.valve", "setpoint_c") == 21.5
    st, _, _ = await served.api(
        "POST", f"/api/commands/batch/{mixed['id']}/operate", role="operator2"
    )
    assert st == 403


async def test_execute_for_system_users_is_audited(served: Served) -> None:
    commands = served.server.ctx.commands
    cmd = await commands.execute(system_user("billing"), "b1.102.valve.open", False, "arrears")
    assert cmd.state.value == "confirmed" and cmd.user == "billing"
    assert served.runtime.simulator.value("b1.102.valve", "open") is False
    entry = _audit(served, "command.confirmed")[0]
    assert (
        entry["user"] == "billing" and entry["role"] == "system" and entry["source"] == "internal"
    )
    try:
        await commands.execute(system_user("billing"), "b1.hm.energy_kwh", 1, "x")
    except CommandError as exc:
        assert exc.status == 422 and exc.command is not None
    else:
        raise AssertionError("a read-only point was written")


async def test_commands_batches_and_keys_survive_a_restart(tmp_path: Path) -> None:
    served = await start_served(tmp_path)
    try:
        await served.wait_good(["b1.101.valve.open", "b1.102.valve.open"])
        body = {"tag": "b1.101.valve.setpoint_c", "value": 20.5}
        hdr = {"Idempotency-Key": "retry-me"}
        st, done, _ = await served.api(
            "POST", "/api/commands", role="operator", body=body, headers=hdr
        )
        assert st == 201
        st, done, _ = await served.api(
            "POST", f"/api/commands/{done['id']}/operate", role="operator"
        )
        assert done["state"] == "confirmed"
        st, pending, _ = await served.api(
            "POST", "/api/commands", role="operator", body={"tag": "test.level", "value": 7}
        )
        assert pending["state"] == "selected"
        batch_body = {"pattern": "b1.*.valve.open", "value": True}
        st, batch, _ = await served.api(
            "POST",
            "/api/commands/batch",
            role="operator",
            body=batch_body,
            headers={"Idempotency-Key": "batch-1"},
        )
        assert st == 201
    finally:
        await served.runtime.stop()

    again = Runtime(load_site(served.config), served.data_dir, serve=True, port=0)
    await again.start()
    served = Served(again, served.data_dir, served.config, served.tokens)
    try:
        st, old, _ = await served.api("GET", f"/api/commands/{done['id']}", role="viewer")
        assert st == 200 and old["state"] == "confirmed" and old["read_back"] == 20.5
        # the client retries its select after the restart: the same command, no new write
        st, same, _ = await served.api(
            "POST", "/api/commands", role="operator", body=body, headers=hdr
        )
        assert st == 200 and same["id"] == done["id"] and same["state"] == "confirmed"
        st, _, _ = await served.api(
            "POST",
            "/api/commands",
            role="operator",
            body={"tag": "b1.101.valve.setpoint_c", "value": 22},
            headers=hdr,
        )
        assert st == 409
        # the selection the restart interrupted ended expired, audited as the system's doing
        st, ended, _ = await served.api("GET", f"/api/commands/{pending['id']}", role="viewer")
        assert ended["state"] == "expired" and "restarted" in ended["message"]
        audit = again.server.ctx.audit.query(action="command.expired")
        assert {(a["user"], a["target"]) for a in audit} == {
            ("system", "test.level"),
            ("system", "b1.101.valve.open"),
            ("system", "b1.102.valve.open"),
        }
        st, _, _ = await served.api(
            "POST", f"/api/commands/{pending['id']}/operate", role="operator"
        )
        assert st == 409
        # the batch key too; its selections expired with the restart
        st, same_batch, _ = await served.api(
            "POST",
            "/api/commands/batch",
            role="operator",
            body=batch_body,
            headers={"Idempotency-Key": "batch-1"},
        )
        assert same_batch["id"] == batch["id"]
        assert {r["state"] for r in same_batch["results"]} == {"expired"}
        # the tag is free again: a new selection works
        st, fresh, _ = await served.api(
            "POST", "/api/commands", role="operator", body={"tag": "test.level", "value": 8}
        )
        assert st == 201 and fresh["state"] == "selected"
    finally:
        await again.stop()


def test_a_write_interrupted_by_a_crash_ends_failed_with_outcome_unknown(tmp_path: Path) -> None:
    store = CommandStore.in_data_dir(tmp_path)
    now = time.time()
    cmd = Command(
        id="c1",
        tag="b1.101.valve.open",
        value=False,
        user="olga",
        reason="maintenance",
        state=CommandState.OPERATED,
        created_ts=now - 5,
        expires_ts=now + 25,
        source="10.0.0.7",
        device="b1.101.valve",
        operated_ts=now - 1,
    )
    store.save(cmd)
    store.close()  # the process dies before the read-back
    audit = AuditLog.in_data_dir(tmp_path)
    site = load_site_text("site: {id: t, name: T}\n", name="<test>")
    plant = Plant(site, TagDatabase([]))
    service = CommandService(plant, audit, store=CommandStore.in_data_dir(tmp_path))
    try:
        got = service.get("c1")
        assert got.state is CommandState.FAILED and "outcome unknown" in got.message
        assert got.finished_ts is not None and got.operated_ts == cmd.operated_ts
        entries = audit.query(action="command.failed")
        assert len(entries) == 1 and entries[0]["before"]["state"] == "operated"
    finally:
        service.close()
    reopened = CommandStore.in_data_dir(tmp_path)
    try:
        assert reopened.get("c1").state is CommandState.FAILED  # saved, not only in memory
        assert reopened.unfinished() == []
    finally:
        reopened.close()
    audit.close()
