"""Alarm operations are audited once, in one shape, whatever the path (REST, websocket, HMI)."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

import pytest
from bokeh.util.token import get_token_payload

from scada.server.proxy import TrustedProxies
from scada.services.alarm_ops import AlarmOpError, AlarmOps
from tests.scada.server_fixtures import (
    Served,
    recv_until,
    served_fixture,  # noqa: F401
)

KEY = "flag:test.flag"
CLIENT = "203.0.113.9"
STATE_KEYS = {"state", "occurrence", "shelved_until"}


async def _rest(served: Served, role: str, op: str, **fields: Any) -> tuple[int, Any]:
    if op == "ack":
        path, body = "/api/alarms/ack", {"alarms": fields["alarms"], "comment": fields["comment"]}
    else:
        path = f"/api/alarms/{fields['alarm']}/{op}"
        body = {k: v for k, v in fields.items() if k != "alarm"}
    st, reply, _ = await served.api("POST", path, role=role, body=body)
    return st, reply


class _Ws:
    def __init__(self, served: Served) -> None:
        self.served = served
        self.conns: dict[str, Any] = {}
        self.req = 0

    async def __call__(self, served: Served, role: str, op: str, **fields: Any) -> tuple[int, Any]:
        if role not in self.conns:
            self.conns[role] = await served.ws(role)
        self.req += 1
        await self.conns[role].write_message(json.dumps({"op": op, "req": self.req, **fields}))
        reply, _ = await recv_until(self.conns[role], lambda m: m.get("req") == self.req)
        return (reply.get("status", 400) if reply["type"] == "error" else 200), reply


def _entries(served: Served) -> list[dict[str, Any]]:
    return list(reversed(served.server.ctx.audit.query(action="alarm.*")))


@pytest.mark.parametrize("path", ["rest", "ws"])
async def test_each_alarm_operation_is_audited_once_in_one_shape(served: Served, path: str) -> None:
    call = _rest if path == "rest" else _Ws(served)
    engine = served.runtime.alarms
    served.db.update("test.flag", True)
    await served.wait_for(lambda: bool(engine.active()), "test.flag")
    occurrence = engine.get(KEY).occurrence
    assert occurrence is not None

    st, _ = await call(served, "oncall", "ack", alarms=[occurrence], comment="on my way")
    assert st == 200
    st, _ = await call(served, "oncall", "shelve", alarm=KEY, duration_s=600, reason="sensor swap")
    assert st == 200
    st, _ = await call(served, "oncall", "unshelve", alarm=KEY, comment="swapped")
    assert st == 200
    # refused operations write nothing (the engine's answer is the error)
    st, _ = await call(served, "oncall", "shelve", alarm="nope", duration_s=60, reason="x")
    assert st == 404
    st, _ = await call(served, "oncall", "shelve", alarm=KEY, duration_s=60, reason="")
    assert st == 422
    st, _ = await call(served, "oncall", "ack", alarms=["nope"], comment=None)
    assert st == 404

    ack, shelve, unshelve = _entries(served)
    for e in (ack, shelve, unshelve):
        assert e["user"] == "oncall" and e["role"] == "oncall"
        assert e["source"] == "127.0.0.1" and e["target"] == KEY and e["result"] == "ok"
        assert set(e["before"]) == STATE_KEYS and set(e["after"]) >= STATE_KEYS
    assert ack["action"] == "alarm.ack" and ack["detail"] == "on my way"
    assert ack["before"] == {
        "state": "unacknowledged",
        "occurrence": occurrence,
        "shelved_until": None,
    }
    assert ack["after"]["state"] == "acknowledged"
    assert shelve["action"] == "alarm.shelve" and shelve["detail"] == "sensor swap"
    assert shelve["before"]["state"] == "acknowledged"
    assert shelve["after"]["state"] == "shelved" and shelve["after"]["duration_s"] == 600
    assert shelve["after"]["shelved_until"] is not None
    assert unshelve["action"] == "alarm.unshelve" and unshelve["detail"] == "swapped"
    assert unshelve["before"]["state"] == "shelved" and unshelve["after"]["state"] != "shelved"

    if path == "rest":  # out of service has no websocket op
        st, _ = await call(served, "engineer", "out-of-service", alarm=KEY, on=True, reason="maint")
        assert st == 200
        st, _ = await call(served, "engineer", "out-of-service", alarm=KEY, on=False)
        assert st == 200
        out, back = _entries(served)[3:]
        assert out["action"] == "alarm.out_of_service" and out["detail"] == "maint"
        assert out["after"]["state"] == "out_of_service" and out["user"] == "engineer"
        assert back["action"] == "alarm.in_service"
        assert back["before"]["state"] == "out_of_service"
        assert back["after"]["state"] != "out_of_service"
    assert len(_entries(served)) == (5 if path == "rest" else 3)


async def test_hmi_session_carries_the_client_address_from_a_trusted_proxy(
    served: Served,
) -> None:
    async def hmi_address(headers: dict[str, str]) -> str:
        st, page, _ = await served.api("GET", "/hmi/alarms", role="operator", headers=headers)
        assert st == 200, page
        token = re.search(r'"token":\s*"([^"]+)"', page)
        assert token is not None, "no session token in the HMI page"
        return get_token_payload(token.group(1))["hmi_user"]["address"]

    # from an untrusted peer the forwarding header is ignored
    assert await hmi_address({"X-Forwarded-For": CLIENT}) == "127.0.0.1"
    served.runtime.proxies.networks = TrustedProxies(["127.0.0.1"]).networks
    assert await hmi_address({"X-Forwarded-For": CLIENT}) == CLIENT


def test_without_an_engine_every_operation_answers_503() -> None:
    ops = AlarmOps(None)
    user = SimpleNamespace(name="olga")
    calls = (
        lambda: ops.ack(user, [1], source="x"),
        lambda: ops.shelve(user, KEY, 60, "why", source="x"),
        lambda: ops.unshelve(user, KEY, source="x"),
        lambda: ops.set_out_of_service(user, KEY, True, "why", source="x"),
    )
    for call in calls:
        with pytest.raises(AlarmOpError, match="not running") as exc:
            call()
        assert exc.value.status == 503
