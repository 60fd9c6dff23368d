"""The websocket /ws against a running server on the simulator: protocol, flow control, limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from scada.server.ws import MAX_MESSAGE_BYTES, MAX_PATTERNS
from tests.scada.server_fixtures import (
    Served,
    recv,
    recv_until,
    served_fixture,  # noqa: F401
)


async def test_snapshot_then_changes_with_increasing_seq(served: Served) -> None:
    ws = await served.ws("viewer")
    await ws.write_message(json.dumps({"op": "subscribe", "patterns": ["test.*"], "req": 7}))
    snap = await recv(ws)
    assert snap["type"] == "snapshot" and snap["req"] == 7
    assert set(snap["tags"]) == set(served.db.match("test.*"))
    assert snap["tags"]["test.level"] == served.db.read("test.level").to_json()
    assert snap["seq"] == served.db.seq or snap["seq"] <= served.db.seq
    served.db.update("test.level", 42.5)
    msg, _ = await recv_until(ws, lambda m: m["type"] == "changes" and "test.level" in m["tags"])
    assert msg["seq"] > snap["seq"]
    assert msg["tags"]["test.level"] == served.db.read("test.level").to_json()
    assert msg["tags"]["test.level"]["value"] == 42.5
    assert set(msg["tags"]) <= set(served.db.match("test.*"))  # nothing unsubscribed
    served.db.update("test.level", 43.5)
    msg2, _ = await recv_until(ws, lambda m: m["type"] == "changes" and "test.level" in m["tags"])
    assert msg2["seq"] > msg["seq"] and msg2["tags"]["test.level"]["value"] == 43.5
    # a second subscribe sends a snapshot of the added tags only
    await ws.write_message(json.dumps({"op": "subscribe", "patterns": ["test.*", "demo.note"]}))
    snap2, _ = await recv_until(ws, lambda m: m["type"] == "snapshot")
    assert set(snap2["tags"]) == {"demo.note"}
    await ws.write_message(json.dumps({"op": "unsubscribe", "patterns": ["test.*"], "req": "u"}))
    res, _ = await recv_until(ws, lambda m: m.get("req") == "u")
    assert res == {"type": "result", "op": "unsubscribe", "req": "u", "patterns": ["demo.note"]}


async def test_rapid_changes_are_coalesced_to_the_latest_value(served: Served) -> None:
    ws = await served.ws("viewer")
    await ws.write_message(json.dumps({"op": "subscribe", "patterns": ["test.level"]}))
    await recv(ws)
    for i in range(1, 51):  # 50 separate batches, one per loop iteration
        served.db.update("test.level", float(i))
        await asyncio.sleep(0)
    last, before = await recv_until(
        ws, lambda m: m["type"] == "changes" and m["tags"]["test.level"]["value"] == 50.0
    )
    changes = [m for m in before if m["type"] == "changes"] + [last]
    # at most one message per 100 ms: far fewer messages than batches, latest value last
    assert len(changes) <= 5
    seqs = [m["seq"] for m in changes]
    assert seqs == sorted(seqs)


async def test_first_change_after_quiet_goes_out_at_once_then_waits_for_the_interval(
    served: Served,
) -> None:
    hub = served.server.ctx.hub
    hub.min_interval_s = 0.05
    served.db.min_delivery_interval_s = 0.0  # the hub's pacing under test, not the database's
    ws = await served.ws("viewer")
    await ws.write_message(json.dumps({"op": "subscribe", "patterns": ["test.level"]}))
    await recv(ws)
    handler = next(c for c in hub.clients if c.user.name == "viewer")

    def level(value: float) -> Callable[[dict[str, Any]], bool]:
        return lambda m: m["type"] == "changes" and m["tags"]["test.level"]["value"] == value

    served.db.update("test.level", 1.0)
    await recv_until(ws, level(1.0))
    await hub.wait_idle()  # a step found nothing to send: the cadence stopped
    assert hub.idle
    # a change held for the interval would now wait an hour: it must go out at once,
    # ahead of the answer to a ping sent right after it
    hub.min_interval_s = 3600.0
    served.db.update("test.level", 2.0)
    await ws.write_message(json.dumps({"op": "ping", "req": 1}))
    pong, before = await recv_until(ws, lambda m: m["type"] == "pong")
    assert [m["tags"]["test.level"]["value"] for m in before if m["type"] == "changes"] == [2.0]
    assert not hub.idle
    # the next change is held until the next step: the pong of a later ping overtakes it
    served.db.update("test.level", 3.0)
    served.db.update("test.level", 4.0)
    await ws.write_message(json.dumps({"op": "ping", "req": 2}))
    pong = await recv(ws)
    assert pong["type"] == "pong" and pong["req"] == 2
    assert handler.pending == 1  # coalesced: one pending value, the latest
    assert served.db.read("test.level").value == 4.0


async def test_a_client_may_ask_for_a_longer_interval_than_the_step(served: Served) -> None:
    hub = served.server.ctx.hub
    hub.min_interval_s = 0.05
    slow = await served.ws("viewer")
    fast = await served.ws("operator")
    await slow.write_message(
        json.dumps({"op": "subscribe", "patterns": ["test.level"], "interval_ms": 3_600_000})
    )
    err = await recv(slow)
    assert err["type"] == "error" and err["status"] == 422 and "interval_ms" in err["reason"]
    await slow.write_message(
        json.dumps({"op": "subscribe", "patterns": ["test.level"], "interval_ms": 60_000})
    )
    await fast.write_message(json.dumps({"op": "subscribe", "patterns": ["test.level"]}))
    await recv(slow)
    await recv(fast)
    handler = next(c for c in hub.clients if c.user.name == "viewer")
    assert handler.interval_s == 60.0

    def level(value: float) -> Callable[[dict[str, Any]], bool]:
        return lambda m: m["type"] == "changes" and m["tags"]["test.level"]["value"] == value

    served.db.update("test.level", 1.0)  # leading edge: both get it at once
    await recv_until(slow, level(1.0))
    await recv_until(fast, level(1.0))
    for value in (2.0, 3.0):  # the next steps: the fast client gets each value
        served.db.update("test.level", value)
        await recv_until(fast, level(value))
    # the slow client waits for its minute: a pong overtakes the pending change
    await slow.write_message(json.dumps({"op": "ping", "req": 1}))
    pong, before = await recv_until(slow, lambda m: m["type"] == "pong")
    assert pong["req"] == 1 and not [m for m in before if m["type"] == "changes"]
    assert handler.pending == 1  # coalesced: 2.0 and 3.0 are one pending value


async def test_clients_with_the_same_subscription_share_each_step(served: Served) -> None:
    hub = served.server.ctx.hub
    conns = [await served.ws(role) for role in ("viewer", "operator", "engineer")]
    for conn in conns:
        await conn.write_message(json.dumps({"op": "subscribe", "patterns": ["test.*"]}))
        await recv(conn)
    encodings = hub.encodings
    served.db.update("test.level", 55.0)
    got = [(await recv_until(conn, lambda m: m["type"] == "changes"))[0] for conn in conns]
    assert got[0] == got[1] == got[2]
    assert got[0]["tags"]["test.level"]["value"] == 55.0
    assert hub.encodings == encodings + 1  # encoded once, written to all three


async def test_slow_client_gets_coalesced_values_and_never_blocks_others(served: Served) -> None:
    hub = served.server.ctx.hub
    hub.min_interval_s = 0.0  # send as fast as the client reads, to fill the socket
    slow = await served.ws("viewer")
    fast = await served.ws("operator")
    for conn in (slow, fast):
        await conn.write_message(json.dumps({"op": "subscribe", "patterns": ["demo.note"]}))
        await recv(conn)
    handler = next(c for c in hub.clients if c.user.name == "viewer")
    n = 300
    payload = "x" * 200_000
    for i in range(n):  # 60 MB of changes: far more than the socket buffers hold
        served.db.update("demo.note", f"{i}:{payload}")
        await asyncio.sleep(0)
        assert handler.pending <= 1  # one pending value per subscribed tag, never a queue
    last, _ = await recv_until(
        fast,
        lambda m: (
            m["type"] == "changes" and m["tags"]["demo.note"]["value"].startswith(f"{n - 1}:")
        ),
    )
    assert last["tags"]["demo.note"]["value"] == f"{n - 1}:{payload}"
    got: list[str] = []
    final, before = await recv_until(
        slow,
        lambda m: (
            m["type"] == "changes" and m["tags"]["demo.note"]["value"].startswith(f"{n - 1}:")
        ),
        timeout_s=30,
    )
    got = [m["tags"]["demo.note"]["value"].split(":")[0] for m in [*before, final]]
    assert len(got) < n // 2  # coalesced: skipped values, never every one queued
    assert [int(x) for x in got] == sorted(int(x) for x in got)


async def test_handshake_needs_a_valid_token(served: Served) -> None:
    url = served.url.replace("http", "ws", 1) + "/ws"
    with pytest.raises(HTTPClientError) as exc:
        await websocket_connect(HTTPRequest(url))
    assert exc.value.code == 401
    with pytest.raises(HTTPClientError) as exc:
        await websocket_connect(HTTPRequest(url, headers={"Authorization": "Bearer scada_nope"}))
    assert exc.value.code == 401


async def test_origin_check(served: Served) -> None:
    with pytest.raises(HTTPClientError) as exc:
        await served.ws("viewer", headers={"Origin": "http://evil.example"})
    assert exc.value.code == 403
    host = served.url.split("//", 1)[1]
    ws = await served.ws("viewer", headers={"Origin": f"http://{host}"})
    await ws.write_message(json.dumps({"op": "ping"}))
    assert (await recv(ws))["type"] == "pong"


async def test_bad_messages_get_errors_without_closing(served: Served) -> None:
    ws = await served.ws("viewer")
    await ws.write_message("not json")
    assert (await recv(ws)) == {"type": "error", "reason": "invalid JSON"}
    await ws.write_message(json.dumps({"op": "fly", "req": 1}))
    err = await recv(ws)
    assert err["type"] == "error" and "unknown op" in err["reason"] and err["req"] == 1
    await ws.write_message(json.dumps({"op": "ping", "pad": "x" * MAX_MESSAGE_BYTES}))
    err = await recv(ws)
    assert err["type"] == "error" and "too large" in err["reason"]
    patterns = [f"p{i}.*" for i in range(MAX_PATTERNS + 1)]
    await ws.write_message(json.dumps({"op": "subscribe", "patterns": patterns}))
    err = await recv(ws)
    assert err["type"] == "error" and err["status"] == 429
    await ws.write_message(json.dumps({"op": "subscribe", "patterns": []}))
    err = await recv(ws)
    assert err["type"] == "error" and err["status"] == 422
    await ws.write_message(json.dumps({"op": "select", "tag": "test.level", "value": 1}))
    err = await recv(ws)
    assert err["type"] == "error" and err["status"] == 403  # a viewer may not command
    await ws.write_message(json.dumps({"op": "ping", "req": "still-open"}))
    pong = await recv(ws)
    assert pong["type"] == "pong" and pong["req"] == "still-open"


async def test_alarm_and_command_events_and_ops(served: Served) -> None:
    viewer = await served.ws("viewer")
    operator = await served.ws("operator")
    served.db.update("test.flag", True)
    raised, _ = await recv_until(viewer, lambda m: m["type"] == "alarm")
    assert raised["event"] == "raised" and raised["alarm"]["key"] == "flag:test.flag"
    occurrence = raised["alarm"]["occurrence"]
    await operator.write_message(
        json.dumps({"op": "ack", "alarms": [occurrence], "comment": "seen", "req": "a"})
    )
    res, _ = await recv_until(operator, lambda m: m.get("req") == "a")
    assert res["type"] == "result" and res["acked"][0]["state"] == "acknowledged"
    acked, _ = await recv_until(viewer, lambda m: m["type"] == "alarm" and m["event"] == "acked")
    assert acked["user"] == "operator" and acked["comment"] == "seen"
    # a command selected and operated over the websocket, seen by the viewer as events
    await operator.write_message(
        json.dumps({"op": "select", "tag": "test.level", "value": 77, "req": "s"})
    )
    sel, _ = await recv_until(operator, lambda m: m.get("req") == "s")
    cid = sel["command"]["id"]
    assert sel["command"]["state"] == "selected"
    await operator.write_message(json.dumps({"op": "operate", "command": cid, "req": "o"}))
    op, _ = await recv_until(operator, lambda m: m.get("req") == "o")
    assert op["command"]["state"] == "confirmed" and served.db.read("test.level").value == 77.0
    events = []
    while len(events) < 3:
        m, _ = await recv_until(viewer, lambda m: m["type"] == "command")
        events.append(m["event"])
    assert events == ["selected", "operated", "confirmed"]


async def test_a_large_snapshot_is_built_in_chunks_and_changes_meanwhile_follow_it(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    import scada.server.ws as ws_module

    db, hub = served.db, served.server.ctx.hub
    names = db.match("*")
    monkeypatch.setattr(ws_module, "SNAPSHOT_CHUNK", 8)  # the demo's tags: many chunks
    # a float tag of the first chunk (the snapshot goes in id order)
    early = min((n for n in names if isinstance(db.read(n).value, float)), key=db.id_of)
    assert sorted(db.id_of(n) for n in names).index(db.id_of(early)) < 8
    chunks = 0
    encode = hub.snapshot

    def snapshot(ids: Any) -> str:
        nonlocal chunks
        chunks += 1
        if chunks == 2:  # a tag of the first chunk changes while the rest is encoded
            db.update(early, 777.5)
        return encode(ids)

    monkeypatch.setattr(hub, "snapshot", snapshot)
    ws = await served.ws("viewer")
    await ws.write_message(json.dumps({"op": "subscribe", "patterns": ["*"], "req": 1}))
    first = await recv(ws)
    # nothing precedes the snapshot, and it holds every tag the viewer may see
    assert first["type"] == "snapshot" and first["req"] == 1
    assert chunks > len(names) // 8 - 1
    assert set(first["tags"]) == set(names)
    assert first["tags"][early]["value"] != 777.5  # encoded before the change: it follows
    msg, _ = await recv_until(ws, lambda m: m["type"] == "changes" and early in m["tags"])
    assert msg["tags"][early]["value"] == 777.5 and msg["seq"] > first["seq"]
