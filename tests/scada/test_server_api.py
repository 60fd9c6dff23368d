"""REST endpoints against the running server: the OpenAPI document, tags, history, alarms,
audit, metrics and health."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.web import RequestHandler

from scada.server.app import ROUTES
from scada.server.openapi import document
from scada.services.auth import Role
from scada.services.users import UserStore
from tests.scada.server_fixtures import (
    Served,
    served_fixture,  # noqa: F401
    write_site,
)

METHODS = ("get", "post", "patch", "delete", "put")
ROOT = Path(__file__).resolve().parents[2]


def test_openapi_document_matches_the_route_table() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.")
    table = {(r.path, op.method.lower()) for r in ROUTES for op in r.ops}
    documented = {(p, m) for p, item in doc["paths"].items() for m in item if m in METHODS}
    assert documented == table
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for r in ROUTES:  # every documented method is implemented, and nothing else
        implemented = {
            m for m in METHODS if getattr(r.handler, m) is not getattr(RequestHandler, m)
        }
        assert implemented == {op.method.lower() for op in r.ops}, r.path
    for item in doc["paths"].values():  # every $ref resolves
        for op in item.values():
            body = op.get("requestBody")
            if body:  # a JSON body by its model; an upload (roster import) by its media types
                assert body["content"], op["operationId"]
                for media, spec in body["content"].items():
                    ref = spec.get("schema", {}).get("$ref")
                    if media == "application/json":
                        assert ref is not None, op["operationId"]
                    if ref is not None:
                        assert ref.split("/")[-1] in doc["components"]["schemas"]


async def test_served_routes_are_the_documented_ones(served: Served) -> None:
    st, doc, _ = await served.api("GET", "/api/openapi.json", role=None)
    assert st == 200 and doc == document()
    app = served.server._http.request_callback  # the BokehTornado application
    served_patterns = {rule.matcher.regex.pattern for rule in app.wildcard_router.rules}
    assert {r.pattern() for r in ROUTES} <= served_patterns


async def test_a_long_tag_listing_is_built_in_slices_and_keeps_order_filters_and_limit(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    import scada.server.handlers.tags as tags_api

    _, whole, _ = await served.api("GET", "/api/tags?values=false", role="viewer")
    monkeypatch.setattr(tags_api, "LISTING_CHUNK", 7)  # many slices, one loop turn each
    st, sliced, _ = await served.api("GET", "/api/tags?values=false", role="viewer")
    # metadata only (values=false): the same answer but for seq, which moves with every poll
    assert st == 200 and sliced["tags"] == whole["tags"]
    assert sliced["count"] == whole["count"] == len(sliced["tags"]) > 7
    st, b1, _ = await served.api("GET", "/api/tags?building=b1&limit=10", role="viewer")
    assert b1["count"] == len(b1["tags"]) == 10 and {t["building"] for t in b1["tags"]} == {"b1"}
    names = [t["name"] for t in whole["tags"] if t.get("building") == "b1"][:10]
    assert [t["name"] for t in b1["tags"]] == names
    # a building's or a device's tags come from their own lists, pattern and all
    st, flat, _ = await served.api(
        "GET", "/api/tags?building=b1&pattern=b1.101.*&values=false", role="viewer"
    )
    expected = [
        t["name"]
        for t in whole["tags"]
        if t.get("building") == "b1" and t["name"].startswith("b1.101.")
    ]
    assert st == 200 and [t["name"] for t in flat["tags"]] == expected and expected
    st, dev, _ = await served.api("GET", "/api/tags?device=b1.101.valve&building=b2", role="viewer")
    assert st == 200 and dev["tags"] == []  # that device is not in b2


async def test_tags_list_filters_and_one_tag(served: Served) -> None:
    st, body, _ = await served.api("GET", "/api/tags?device=b1.101.valve", role="viewer")
    assert st == 200
    names = {t["name"] for t in body["tags"]}
    assert "b1.101.valve.open" in names and all(n.startswith("b1.101.valve.") for n in names)
    st, body, _ = await served.api("GET", "/api/tags?pattern=test.*&values=false", role="viewer")
    assert {t["name"] for t in body["tags"]} == set(served.db.match("test.*"))
    assert "value" not in body["tags"][0]
    st, body, _ = await served.api("GET", "/api/tags?building=b1&quality=good", role="viewer")
    assert body["tags"] and all(
        t["building"] == "b1" and t["quality"] == "good" for t in body["tags"]
    )
    st, _, _ = await served.api("GET", "/api/tags?quality=shiny", role="viewer")
    assert st == 400
    st, one, _ = await served.api("GET", "/api/tags/b1.101.valve.setpoint_c", role="viewer")
    assert st == 200 and one["writable"] is True and one["max"] == 30
    assert one["value"] == served.db.read("b1.101.valve.setpoint_c").value
    st, _, _ = await served.api("GET", "/api/tags/nope", role="viewer")
    assert st == 404
    st, _, _ = await served.api("GET", "/api/tags", role=None)
    assert st == 401


async def test_history_queries(served: Served) -> None:
    served.db.update("test.level", 20.0)
    served.db.flush()
    await served.runtime.recorder.flush()
    st, body, _ = await served.api("GET", "/api/history/raw?tag=test.level&start=0", role="viewer")
    assert st == 200
    assert [s["value"] for s in body["samples"]][-1] == 20.0
    now = time.time()
    st, body, _ = await served.api(
        "GET",
        f"/api/history/agg?tags=test.level&start={now - 60}&end={now + 1}&every=61&fn=max",
        role="viewer",
    )
    assert st == 200 and body["series"]["test.level"][0][1] == 20.0
    for bad in (
        "/api/history/raw",
        "/api/history/raw?tag=test.level&start=yesterday",
        "/api/history/agg?tags=test.level&fn=median",
        "/api/history/agg?tags=test.level&start=10&end=5",
        "/api/history/raw?tag=test.level&start=2026-01-01T00:00:00",
    ):
        st, err, _ = await served.api("GET", bad, role="viewer")
        assert st == 400, (bad, err)


async def test_alarm_actions_journal_kpis_and_audit(served: Served) -> None:
    served.db.update("test.flag", True)
    await served.wait_for(lambda: bool(served.runtime.alarms.active()), "test.flag")
    st, body, _ = await served.api("GET", "/api/alarms", role="viewer")
    (alarm,) = body["alarms"]
    assert alarm["key"] == "flag:test.flag" and alarm["state"] == "unacknowledged"
    key = alarm["key"]
    st, body, _ = await served.api(
        "POST", "/api/alarms/ack", role="oncall", body={"alarms": [key], "comment": "on my way"}
    )
    assert st == 200 and body["acked"][0]["acked_by"] == "oncall"
    st, body, _ = await served.api(
        "POST",
        f"/api/alarms/{key}/shelve",
        role="oncall",
        body={"duration_s": 600, "reason": "sensor swap"},
    )
    assert st == 200 and body["alarm"]["state"] == "shelved"
    st, body, _ = await served.api("POST", f"/api/alarms/{key}/unshelve", role="oncall", body={})
    assert st == 200 and body["alarm"]["state"] != "shelved"
    st, body, _ = await served.api(
        "POST",
        f"/api/alarms/{key}/out-of-service",
        role="engineer",
        body={"on": True, "reason": "maintenance"},
    )
    assert st == 200 and body["alarm"]["state"] == "out_of_service"
    st, body, _ = await served.api(
        "POST", f"/api/alarms/{key}/out-of-service", role="engineer", body={"on": True}
    )
    assert st == 422  # a reason is required
    st, _, _ = await served.api(
        "POST", "/api/alarms/nope/shelve", role="oncall", body={"duration_s": 60, "reason": "x"}
    )
    assert st == 404
    st, body, _ = await served.api("GET", "/api/alarms/journal?key=flag*", role="viewer")
    kinds = [e["event"] if "event" in e else e["kind"] for e in body["events"]]
    assert {"raised", "acked", "shelved"} <= set(kinds)
    st, kpis, _ = await served.api("GET", "/api/alarms/kpis", role="viewer")
    assert st == 200 and kpis["activations"] >= 1
    st, audit, _ = await served.api("GET", "/api/audit?action=alarm.*", role="engineer")
    actions = [e["action"] for e in audit["entries"]]
    assert actions == ["alarm.out_of_service", "alarm.unshelve", "alarm.shelve", "alarm.ack"]
    ack = audit["entries"][-1]
    assert ack["user"] == "oncall" and ack["detail"] == "on my way" and ack["target"] == key
    st, _, _ = await served.api("GET", "/api/audit", role="operator")
    assert st == 403


async def test_audit_log_is_append_only(served: Served) -> None:
    served.server.ctx.audit.record("test.entry", user="someone")
    conn = sqlite3.connect(served.data_dir / "audit.sqlite")
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit SET user = 'x'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit")
    finally:
        conn.close()


async def test_metrics_exposition(served: Served) -> None:
    ws = await served.ws("viewer")
    st, sel, _ = await served.api(
        "POST", "/api/commands", role="operator", body={"tag": "test.level", "value": 1}
    )
    await served.api("POST", f"/api/commands/{sel['id']}/operate", role="operator")
    await served.wait_for(
        lambda: served.db.read("system.disk_free_mb").value is not None, "system.*"
    )
    st, text, resp = await served.api("GET", "/metrics", role="viewer")
    assert st == 200 and resp.headers["Content-Type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    assert samples[("scada_channel_requests_total", (("channel", "b1-bus"),))] > 0
    assert samples[("scada_channel_devices", (("channel", "b1-bus"),))] == 3
    assert samples[("scada_channel_devices_online", (("channel", "b1-bus"),))] == 3
    assert samples[("scada_websocket_clients", ())] == 1
    assert samples[("scada_tag_changes_total", ())] > 0
    assert samples[("scada_commands_total", (("state", "confirmed"),))] == 1
    assert samples[("scada_alarms", (("area", "all"), ("state", "active")))] == 0
    assert ("scada_historian_queue", ()) in samples
    assert samples[("scada_historian_backend_ok", ())] == 1
    # the runtime's health tags (scada.health): in base units (MiB -> bytes), booleans as 1/0
    free = served.db.read("system.disk_free_mb").value
    assert free > 0 and samples[("scada_system_disk_free_bytes", ())] >= (free - 1024) * 2**20
    assert samples[("scada_system_disk_low", ())] == float(served.db.read("system.disk_low").value)
    assert ("scada_system_uptime_seconds", ()) in samples
    assert not [k for k in samples if k[0] == "scada_system_tls_left_seconds"]  # no TLS: no value
    st, _, _ = await served.api("GET", "/metrics", role=None)
    assert st == 401
    ws.close()


async def test_health_and_login_pages(served: Served) -> None:
    assert (await served.api("GET", "/healthz", role=None))[0] == 200
    st, body, _ = await served.api("GET", "/readyz", role=None)
    assert st == 200 and body["status"] == "ready"
    st, page, _ = await served.api("GET", "/login?next=/hmi/overview", role=None)
    assert st == 200 and '"/hmi/overview"' in page and 'name="password"' in page
    st, page, _ = await served.api("GET", "/login?next=//evil.example/x", role=None)
    assert "evil" not in page


async def test_hmi_pages_need_a_session(served: Served) -> None:
    hmi = sorted(
        p for p in served.server._http.request_callback.applications if p.startswith("/hmi")
    )
    if not hmi:
        pytest.skip("the HMI (hmi.app) is not installed")
    st, _, resp = await served.api("GET", hmi[0], role=None)
    assert st == 302 and resp.headers["Location"].startswith("/login?next=")
    st, login, _ = await served.api(
        "POST",
        "/api/login",
        role=None,
        body={"username": "viewer", "password": "correct horse battery"},
    )
    cookie = f"scada_session={login['token']}; scada_xsrf={login['xsrf']}"
    st, page, _ = await served.api("GET", hmi[0], role=None, headers={"Cookie": cookie})
    assert st == 200 and login["token"] not in page  # the HttpOnly session never reaches the page


def test_scada_run_serves_https_and_prints_the_setup_token(tmp_path: Path) -> None:
    """``scada run --port 0 --tls-cert/--tls-key`` serves HTTPS with Secure session cookies."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    config = write_site(tmp_path)
    data = tmp_path / "var"
    with UserStore.in_data_dir(data) as store:
        store.add_user("viewer", Role.VIEWER, "viewer password")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scada.cli",
            "run",
            str(config),
            "--data-dir",
            str(data),
            "--port",
            "0",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            "--for-seconds",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        serving = next(x for x in lines if x.startswith("serving "))
        url = serving.split()[1]
        assert url.startswith("https://127.0.0.1:")
        assert any("setup token" in x for x in lines)  # no admin yet
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        req = urllib.request.Request(
            url + "/api/login",
            method="POST",
            data=json.dumps({"username": "viewer", "password": "viewer password"}).encode(),
        )
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            assert resp.status == 200
            cookies = resp.headers.get_all("Set-Cookie")
        session = next(c for c in cookies if c.startswith("scada_session="))
        assert "Secure" in session and "HttpOnly" in session
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped cleanly" in out
