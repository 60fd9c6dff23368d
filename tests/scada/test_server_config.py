"""Config API: get, validate with locations, apply hot (connections and values kept), roll back."""

from __future__ import annotations

import json

import pytest

from scada.services.auth import Role, User
from tests.scada.server_fixtures import (
    Served,
    recv,
    recv_until,
    served_fixture,  # noqa: F401
)

NEW_TAG = "  - {name: test.extra, type: float, initial: 5, description: added by the API}\n"
NEW_VALVE = "  - {id: b1.103.valve, template: valve, channel: b1-bus, unit: 13}\n"


def _with(text: str, after: str, insert: str) -> str:
    i = text.index(after) + len(after)
    return text[:i] + insert + text[i:]


async def test_get_and_validate_with_locations(served: Served) -> None:
    st, cfg, _ = await served.api("GET", "/api/config", role="engineer")
    assert st == 200 and cfg["version"] == 1 and cfg["main"] == "site.yaml"
    assert cfg["files"]["site.yaml"] == served.config.read_text()
    bad = cfg["files"]["site.yaml"].replace("unit: 12}", "unit: 12, template: nope}")
    bad = bad.replace("{id: b1.102.valve, template: valve,", "{id: b1.102.valve,")
    st, res, _ = await served.api(
        "POST", "/api/config/validate", role="engineer", body={"files": {"site.yaml": bad}}
    )
    assert st == 200 and res["valid"] is False
    (err,) = [e for e in res["errors"] if "nope" in e["message"]]
    line = next(i for i, t in enumerate(bad.splitlines(), 1) if "template: nope" in t)
    assert err["file"] == "site.yaml" and err["line"] == line and err["col"] > 1
    assert err["path"].startswith("devices[2]")
    st, res, _ = await served.api(
        "POST", "/api/config/validate", role="engineer", body={"files": {"site.yaml": "site: [1\n"}}
    )
    assert res["valid"] is False and res["errors"][0]["file"] == "site.yaml"
    st, res, _ = await served.api(
        "POST",
        "/api/config/validate",
        role="engineer",
        body={"files": {"../../etc/x.yaml": "a: 1"}},
    )
    assert st == 422
    assert served.config.read_text() == cfg["files"]["site.yaml"]  # nothing applied
    st, body, _ = await served.api(
        "POST", "/api/config/apply", role="engineer", body={"files": {"site.yaml": bad}}
    )
    assert st == 422 and body["version"] is None
    assert served.server.ctx.config.current_version() == 1


async def test_apply_keeps_connections_and_values_then_rollback(served: Served) -> None:
    db = served.db
    ws = await served.ws("viewer")
    await ws.write_message(json.dumps({"op": "subscribe", "patterns": ["b1.*", "test.*"]}))
    await recv(ws)
    drivers_before = served.runtime.drivers
    energy_before = db.read("b1.hm.energy_kwh")
    db.update("test.level", 33.0)
    text = served.config.read_text()
    # 1. a new memory tag: hot, drivers untouched
    new = _with(text, "tags:\n", NEW_TAG)
    st, res, _ = await served.api(
        "POST",
        "/api/config/apply",
        role="engineer",
        body={"files": {"site.yaml": new}, "comment": "extra tag"},
    )
    assert st == 200 and res["version"] == 2, res
    assert res["plan"]["tags"]["added"] == ["test.extra"]
    assert res["plan"]["restart_drivers"] is False
    assert "+  - {name: test.extra" in res["diff"]["site.yaml"]
    assert served.runtime.drivers is drivers_before
    assert db.read("test.extra").value == 5.0 and db.read("test.level").value == 33.0
    assert served.config.read_text() == new
    # the websocket stayed open and now also gets the new tag (it matches test.*)
    db.update("test.extra", 6.0)

    def extra(m: dict) -> float | None:
        return m["tags"]["test.extra"]["value"] if "test.extra" in m.get("tags", {}) else None

    _, before = await recv_until(ws, lambda m: m["type"] == "changes" and extra(m) == 6.0)
    # a step may have sent the new tag's initial value first (the apply took a while)
    assert {extra(m) for m in before if m["type"] == "changes"} <= {None, 5.0}
    # 2. a new device: drivers (and the simulator) restart, kept values survive
    new2 = _with(new, "devices:\n", NEW_VALVE)
    new2 = new2.replace(
        "      - {id: b1.102, area_m2: 60, valve_tag: b1.102.valve.open}\n",
        "      - {id: b1.102, area_m2: 60, valve_tag: b1.102.valve.open}\n"
        "      - {id: b1.103, area_m2: 50, valve_tag: b1.103.valve.open}\n",
    )
    st, res, _ = await served.api(
        "POST", "/api/config/apply", role="engineer", body={"files": {"site.yaml": new2}}
    )
    assert st == 200 and res["version"] == 3, res
    assert res["plan"]["devices"]["added"] == ["b1.103.valve"] and res["plan"]["restart_drivers"]
    kept = db.read("b1.hm.energy_kwh")
    assert kept.value is not None and kept.value >= energy_before.value
    assert db.read("test.level").value == 33.0
    await served.wait_good(["b1.103.valve.open", "b1.hm.energy_kwh"])
    assert served.runtime.writer is served.runtime.drivers
    st, sel, _ = await served.api(
        "POST", "/api/commands", role="operator", body={"tag": "b1.103.valve.open", "value": False}
    )
    st, done, _ = await served.api("POST", f"/api/commands/{sel['id']}/operate", role="operator")
    assert done["state"] == "confirmed"
    # 3. history and rollback to the first version
    st, hist, _ = await served.api("GET", "/api/config/versions", role="viewer")
    assert st == 403
    st, hist, _ = await served.api("GET", "/api/config/versions", role="engineer")
    assert [v["version"] for v in hist["versions"]] == [3, 2, 1]
    assert (
        hist["versions"][1]["comment"] == "extra tag" and hist["versions"][1]["user"] == "engineer"
    )
    st, v1, _ = await served.api("GET", "/api/config/versions/1", role="engineer")
    assert v1["files"]["site.yaml"] == text
    st, res, _ = await served.api(
        "POST", "/api/config/rollback", role="engineer", body={"version": 1}
    )
    assert st == 200 and res["version"] == 4
    assert "test.extra" not in db and "b1.103.valve.open" not in db
    assert served.config.read_text() == text
    assert db.read("test.level").value == 33.0
    await ws.write_message(json.dumps({"op": "ping", "req": "alive"}))
    pong, _ = await recv_until(ws, lambda m: m.get("req") == "alive")
    assert pong["type"] == "pong"
    entries = served.server.ctx.audit.query(action="config.*")
    assert [e["action"] for e in entries] == ["config.rollback", "config.apply", "config.apply"]
    assert entries[0]["after"]["version"] == 4


async def test_config_manager_checks_the_role_itself(served: Served) -> None:
    """The HMI calls the manager directly: it refuses users without config.write."""
    mgr = served.server.ctx.config
    with pytest.raises(PermissionError):
        await mgr.apply(User("v", Role.VIEWER), {"site.yaml": "x: 1\n"})
    assert mgr.current_version() == 1
