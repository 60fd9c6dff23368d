"""Users, roles and sessions: login, rate limit, XSRF, bootstrap, tenants, the permission table."""

from __future__ import annotations

import io
import json
import re
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from scada.cli import main as cli_main
from scada.config import load_site_text
from scada.server.app import ROUTES
from scada.server.http import ScadaServer
from scada.server.ws import OP_ACTIONS
from scada.services.auth import PERMISSIONS, XSRF_HEADER, Role, User, may
from scada.services.bundle import Services, standalone_services
from scada.services.plant import Plant
from scada.services.users import UserStore
from tags.database import TagDatabase
from tags.model import TagDef
from tests.scada.server_fixtures import (
    PASSWORD,
    ROLES,
    Served,
    recv,
    recv_until,
    served_fixture,  # noqa: F401
    write_site,
)


def _cookies(resp: Any) -> dict[str, Any]:
    jar: dict[str, Any] = {}
    for header in resp.headers.get_list("Set-Cookie"):
        c = SimpleCookie()
        c.load(header)
        for k, morsel in c.items():
            jar[k] = (morsel.value, header)
    return jar


async def test_login_sets_a_session_cookie_and_returns_a_token(served: Served) -> None:
    st, body, resp = await served.api(
        "POST", "/api/login", role=None, body={"username": "operator", "password": PASSWORD}
    )
    assert st == 200 and body["user"] == {"name": "operator", "role": "operator", "links": []}
    jar = _cookies(resp)
    session, header = jar["scada_session"]
    assert session == body["token"]
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" not in header
    assert jar["scada_xsrf"][0] == body["xsrf"] and "HttpOnly" not in jar["scada_xsrf"][1]
    st, me, _ = await served.api("GET", "/api/me", token=body["token"])
    assert st == 200 and me["via"] == "bearer" and "commands.operate" in me["actions"]
    cookie = {"Cookie": f"scada_session={session}; scada_xsrf={body['xsrf']}"}
    st, me, _ = await served.api("GET", "/api/me", role=None, headers=cookie)
    assert st == 200 and me["via"] == "cookie"
    st, _, _ = await served.api("POST", "/api/logout", token=body["token"])
    assert st == 200
    st, _, _ = await served.api("GET", "/api/me", token=body["token"])
    assert st == 401
    st, _, _ = await served.api(
        "POST", "/api/login", role=None, body={"username": "operator", "password": "wrong password"}
    )
    assert st == 401
    st, _, _ = await served.api(
        "POST", "/api/login", role=None, body={"username": "nobody", "password": PASSWORD}
    )
    assert st == 401
    logins = served.server.ctx.audit.query(action="login")
    assert [e["result"] for e in logins] == ["denied", "denied", "ok"]


async def test_failed_logins_are_rate_limited(served: Served) -> None:
    for _ in range(5):
        st, _, _ = await served.api(
            "POST", "/api/login", role=None, body={"username": "viewer", "password": "guess-guess"}
        )
        assert st == 401
    st, _, resp = await served.api(
        "POST", "/api/login", role=None, body={"username": "viewer", "password": PASSWORD}
    )
    assert st == 429 and int(resp.headers["Retry-After"]) > 0  # even the right password
    st, _, _ = await served.api(
        "POST", "/api/login", role=None, body={"username": "oncall", "password": PASSWORD}
    )
    assert st == 200  # another user from the same address is not locked out


async def test_cookie_writes_need_the_xsrf_header(served: Served) -> None:
    st, body, _ = await served.api(
        "POST", "/api/login", role=None, body={"username": "operator", "password": PASSWORD}
    )
    cookie = f"scada_session={body['token']}; scada_xsrf={body['xsrf']}"
    cmd = {"tag": "test.level", "value": 3}
    st, err, _ = await served.api(
        "POST", "/api/commands", role=None, body=cmd, headers={"Cookie": cookie}
    )
    assert st == 403 and "XSRF" in err["error"]
    st, _, _ = await served.api(
        "POST",
        "/api/commands",
        role=None,
        body=cmd,
        headers={"Cookie": cookie, XSRF_HEADER: "0" * 32},
    )
    assert st == 403
    st, sel, _ = await served.api(
        "POST",
        "/api/commands",
        role=None,
        body=cmd,
        headers={"Cookie": cookie, XSRF_HEADER: body["xsrf"]},
    )
    assert st == 201 and sel["user"] == "operator"
    # bearer-authenticated writes need no XSRF header (no ambient credentials)
    st, _, _ = await served.api("POST", f"/api/commands/{sel['id']}/cancel", role="operator")
    assert st == 200


def _request(route_path: str, method: str) -> tuple[str, Any]:
    path = re.sub(r"\{\w+\}", "nonexistent", route_path)  # every path parameter
    body = {} if method in ("POST", "PATCH") else None
    return path, body


async def test_permission_table_over_every_role_and_endpoint(served: Served) -> None:
    """Table-driven: each role gets 403 exactly where PERMISSIONS says no, on REST and /ws."""
    checked = 0
    for role in ROLES:
        user = User(role.value, role, ("b1.101",) if role is Role.TENANT else ())
        for route in ROUTES:
            for op in route.ops:
                if op.public or op.action is None or route.path == "/ws":
                    continue
                path, body = _request(route.path, op.method)
                st, answer, _ = await served.api(op.method, path, role=role.value, body=body)
                allowed = may(user, op.action)
                assert (st == 403) is (not allowed), (role, op.method, route.path, st, answer)
                assert st != 401 and st < 500, (role, op.method, route.path, st, answer)
                checked += 1
        ws = await served.ws(role.value)
        for op_name, action in OP_ACTIONS.items():
            await ws.write_message(json.dumps({"op": op_name, "req": op_name}))
            reply, _ = await recv_until(ws, lambda m, o=op_name: m.get("req") == o)
            allowed = action is None or may(user, action)
            denied = reply["type"] == "error" and reply.get("status") == 403
            assert denied is (not allowed), (role, op_name, reply)
            checked += 1
        for path in ("/api/me", "/api/roles"):  # any signed-in user
            st, _, _ = await served.api("GET", path, role=role.value)
            assert st == 200
    assert checked > 200
    denied = served.server.ctx.audit.query(result="denied", limit=10000)
    assert {e["user"] for e in denied} >= {"viewer", "tenant"}


async def test_roles_endpoint_is_the_permission_table(served: Served) -> None:
    st, body, _ = await served.api("GET", "/api/roles", role="viewer")
    assert st == 200
    for role in ROLES:
        assert body["roles"][role.value] == sorted(a.value for a in PERMISSIONS[role])


async def test_tenants_see_only_their_households(served: Served) -> None:
    st, body, _ = await served.api("GET", "/api/tags", role="tenant")
    names = {t["name"] for t in body["tags"]}
    assert names and all(n.startswith("b1.101.") for n in names)
    assert "b1.101.valve.open" in names
    st, _, _ = await served.api("GET", "/api/tags/b1.102.valve.open", role="tenant")
    assert st == 404
    st, _, _ = await served.api("GET", "/api/tags/b1.101.valve.open", role="tenant")
    assert st == 200
    st, _, _ = await served.api("GET", "/api/history/raw?tag=b1.102.valve.open", role="tenant")
    assert st == 404
    ws = await served.ws("tenant")
    await ws.write_message(json.dumps({"op": "subscribe", "patterns": ["*"]}))
    snap = await recv(ws)
    assert snap["tags"] and all(n.startswith("b1.101.") for n in snap["tags"])


async def test_revoked_tokens_stop_working(served: Served) -> None:
    st, _, _ = await served.api("GET", "/api/me", role="viewer")
    assert st == 200
    st, body, _ = await served.api("DELETE", "/api/users/viewer/tokens", role="admin")
    assert st == 200 and body["revoked"] >= 1
    st, _, _ = await served.api("GET", "/api/me", role="viewer")
    assert st == 401
    st, tok, _ = await served.api(
        "POST", "/api/users/viewer/tokens", role="admin", body={"label": "new"}
    )
    assert st == 201
    st, _, _ = await served.api("GET", "/api/me", token=tok["token"])
    assert st == 200


async def test_users_api_and_last_admin(served: Served) -> None:
    st, body, _ = await served.api(
        "POST",
        "/api/users",
        role="admin",
        body={
            "name": "flat7",
            "role": "tenant",
            "password": "a good password",
            "links": ["b1.102"],
        },
    )
    assert st == 201 and body["links"] == ["b1.102"]
    st, _, _ = await served.api(
        "POST",
        "/api/users",
        role="admin",
        body={"name": "flat7", "role": "tenant", "password": "a good password"},
    )
    assert st == 409
    st, _, _ = await served.api(
        "POST",
        "/api/users",
        role="admin",
        body={"name": "weak", "role": "viewer", "password": "short"},
    )
    assert st == 422
    st, _, _ = await served.api(
        "POST",
        "/api/users",
        role="admin",
        body={"name": "x", "role": "system", "password": "a good password"},
    )
    assert st == 422  # the internal role cannot be assigned
    st, _, _ = await served.api("PATCH", "/api/users/admin", role="admin", body={"role": "viewer"})
    assert st == 409  # a conflict with the user's state, as for DELETE below
    st, _, _ = await served.api("DELETE", "/api/users/admin", role="admin")
    assert st == 409
    st, _, _ = await served.api("DELETE", "/api/users/flat7", role="admin")
    assert st == 200
    actions = [e["action"] for e in served.server.ctx.audit.query(action="user.*")]
    assert actions == ["user.remove", "user.add"]


def _mini_services(tmp_path: Path) -> Services:
    site = load_site_text("site: {id: t, name: T}\n", name="<mini>")
    return standalone_services(Plant(site, TagDatabase([TagDef("x")])), tmp_path)


async def test_first_run_setup_token_creates_the_first_admin(tmp_path: Path) -> None:
    services = _mini_services(tmp_path)
    server = ScadaServer(services, port=0)
    await server.start()
    http = AsyncHTTPClient()
    try:
        token = server.setup_token
        assert token

        async def post(path: str, body: dict[str, Any]) -> int:
            r = await http.fetch(
                HTTPRequest(server.url + path, method="POST", body=json.dumps(body)),
                raise_error=False,
            )
            return r.code

        page = await http.fetch(server.url + "/setup", raise_error=False)
        assert page.code == 200 and b"Setup token" in page.body
        assert (
            await post(
                "/api/setup", {"token": "wrong", "username": "root", "password": "a good password"}
            )
            == 403
        )
        assert (
            await post(
                "/api/setup", {"token": token, "username": "root", "password": "a good password"}
            )
            == 201
        )
        assert (
            await post(
                "/api/setup", {"token": token, "username": "root2", "password": "a good password"}
            )
            == 403
        )
        assert server.setup_token is None
        assert await post("/api/login", {"username": "root", "password": "a good password"}) == 200
        page = await http.fetch(server.url + "/setup", raise_error=False)
        assert page.code == 404
    finally:
        await server.stop()
        services.commands.close()
        services.audit.close()
        services.users.close()


def test_user_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_site(tmp_path))
    data = str(tmp_path / "var")

    def run(*argv: str, stdin: str = "") -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        return cli_main(["user", *argv])

    assert (
        run(
            "add",
            config,
            "alice",
            "--role",
            "admin",
            "--password-stdin",
            "--data-dir",
            data,
            stdin="alice password\n",
        )
        == 0
    )
    assert (
        run(
            "add",
            config,
            "t1",
            "--role",
            "tenant",
            "--link",
            "b1.101",
            "--password-stdin",
            "--data-dir",
            data,
            stdin="tenant password\n",
        )
        == 0
    )
    assert (
        run(
            "add",
            config,
            "t2",
            "--role",
            "tenant",
            "--link",
            "b9.999",
            "--password-stdin",
            "--data-dir",
            data,
            stdin="tenant password\n",
        )
        == 1
    )
    assert (
        run(
            "add",
            config,
            "bob",
            "--role",
            "boss",
            "--password-stdin",
            "--data-dir",
            data,
            stdin="bob password\n",
        )
        == 1
    )
    assert (
        run(
            "add",
            config,
            "bob",
            "--role",
            "viewer",
            "--password-stdin",
            "--data-dir",
            data,
            stdin="short\n",
        )
        == 1
    )
    capsys.readouterr()
    assert run("token", config, "alice", "--data-dir", data) == 0
    token = capsys.readouterr().out.strip()
    assert run("list", config, "--json", "--data-dir", data) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [
        {"name": "alice", "role": "admin", "links": []},
        {"name": "t1", "role": "tenant", "links": ["b1.101"]},
    ]
    with UserStore.in_data_dir(data) as store:
        assert store.resolve_token(token).name == "alice"
        assert store.verify_password_threadsafe("alice", "alice password") is not None
    assert (
        run(
            "passwd",
            config,
            "alice",
            "--password-stdin",
            "--data-dir",
            data,
            stdin="new alice password\n",
        )
        == 0
    )
    assert run("remove", config, "alice", "--data-dir", data) == 1  # the last admin
    assert run("remove", config, "t1", "--data-dir", data) == 0
    with UserStore.in_data_dir(data) as store:
        assert store.verify_password_threadsafe("alice", "new alice password") is not None
        assert store.get("t1") is None


async def test_users_change_their_own_password(served: Served) -> None:
    async def login(password: str) -> tuple[int, Any]:
        st, body, _ = await served.api(
            "POST", "/api/login", role=None, body={"username": "viewer", "password": password}
        )
        return st, body

    _, first = await login(PASSWORD)
    _, other = await login(PASSWORD)  # the same user on another screen
    cookie = {
        "Cookie": f"scada_session={first['token']}; scada_xsrf={first['xsrf']}",
        XSRF_HEADER: first["xsrf"],
    }
    new = "a brand new passphrase"

    async def change(current: str, wanted: str) -> tuple[int, Any, Any]:
        body = {"current_password": current, "new_password": wanted}
        return await served.api("POST", "/api/me/password", role=None, body=body, headers=cookie)

    st, err, _ = await change("not my password", new)
    assert st == 401 and "wrong current password" in err["error"]
    st, err, _ = await change(PASSWORD, "short")
    assert st == 422 and "too short" in err["error"]
    st, err, _ = await change(PASSWORD, PASSWORD)
    assert st == 422 and "differ" in err["error"]
    st, done, resp = await change(PASSWORD, new)
    assert st == 200
    jar = _cookies(resp)
    assert jar["scada_session"][0] == done["token"] and jar["scada_xsrf"][0] == done["xsrf"]
    # every earlier session ended; the new one works; API tokens stay
    for token in (first["token"], other["token"]):
        st, _, _ = await served.api("GET", "/api/me", token=token)
        assert st == 401
    st, me, _ = await served.api("GET", "/api/me", token=done["token"])
    assert st == 200 and me["user"]["name"] == "viewer"
    st, _, _ = await served.api("GET", "/api/me", role="viewer")
    assert st == 200
    assert (await login(PASSWORD))[0] == 401
    assert (await login(new))[0] == 200
    entries = served.server.ctx.audit.query(action="user.password")
    assert [(e["result"], e["user"]) for e in entries] == [("ok", "viewer"), ("denied", "viewer")]
    # a bearer client may change it too (no XSRF needed), and guessing is rate limited
    limiter = served.server.ctx.auth.limiter
    codes = []
    for _ in range(limiter.max_failures + 1):
        st, _, _ = await served.api(
            "POST",
            "/api/me/password",
            role="operator",
            body={"current_password": "guess", "new_password": "another passphrase"},
        )
        codes.append(st)
    assert codes[:-1] == [401] * limiter.max_failures and codes[-1] == 429


async def test_users_see_and_end_their_own_sessions(served: Served) -> None:
    async def login(agent: str) -> Any:
        st, body, _ = await served.api(
            "POST",
            "/api/login",
            role=None,
            body={"username": "oncall", "password": PASSWORD},
            headers={"User-Agent": agent},
        )
        assert st == 200
        return body

    desk = await login("Firefox/140 control-room desk")
    phone = await login("Mobile Safari on-call phone")
    st, listed, _ = await served.api("GET", "/api/me/sessions", token=desk["token"])
    assert st == 200
    sessions = listed["sessions"]
    assert [s["label"] for s in sessions] == [
        "127.0.0.1 Mobile Safari on-call phone",
        "127.0.0.1 Firefox/140 control-room desk",
    ]
    assert [s["current"] for s in sessions] == [False, True]  # seen from the desk
    assert all(s["expires_at"] and s["created_at"] for s in sessions)
    # the phone is lost: end its session from the desk
    phone_id = sessions[0]["id"]
    st, done, _ = await served.api("DELETE", f"/api/me/sessions/{phone_id}", token=desk["token"])
    assert st == 200 and done == {"revoked": phone_id}
    st, _, _ = await served.api("GET", "/api/me", token=phone["token"])
    assert st == 401
    st, _, _ = await served.api("GET", "/api/me", token=desk["token"])
    assert st == 200
    # only one's own, live sessions: another user's id or an ended one is 404
    st, _, _ = await served.api("DELETE", f"/api/me/sessions/{phone_id}", token=desk["token"])
    assert st == 404
    st, other, _ = await served.api(
        "POST", "/api/login", role=None, body={"username": "viewer", "password": PASSWORD}
    )
    viewer_id = (await served.api("GET", "/api/me/sessions", token=other["token"]))[1]["sessions"][
        0
    ]["id"]
    st, _, _ = await served.api("DELETE", f"/api/me/sessions/{viewer_id}", token=desk["token"])
    assert st == 404
    st, _, _ = await served.api("GET", "/api/me", token=other["token"])
    assert st == 200
    st, _, _ = await served.api("DELETE", "/api/me/sessions/abc", token=desk["token"])
    assert st == 404
    entries = served.server.ctx.audit.query(action="session.revoke")
    assert [(e["user"], e["target"]) for e in entries] == [("oncall", f"session {phone_id}")]


async def test_deeply_nested_json_is_400_not_500(served: Served) -> None:
    # ~1,000 deep makes the parser itself recurse too far; 100 deep parses but no API needs it
    bodies = [
        b"[" * 1000 + b"]" * 1000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b'{"username": ' + b"[" * 100 + b"]" * 100 + b', "password": "x"}',
    ]
    for raw in bodies:
        for path, role in (("/api/login", None), ("/api/commands", "operator")):
            st, answer, _ = await served.api("POST", path, role=role, raw=raw)
            assert st == 400 and "nested deeper" in answer["error"], (path, raw[:20], answer)
    # a sane body still works, and nothing answered 500
    st, _, _ = await served.api(
        "POST", "/api/login", role=None, body={"username": "viewer", "password": PASSWORD}
    )
    assert st == 200
    assert served.server.ctx.http_counts["5xx"] == 0


async def test_ending_a_session_id_out_of_range_is_404(served: Served) -> None:
    for sid in ("99999999999999999999", "9" * 400, "%C2%B2", "%D9%A5", "-1"):
        st, answer, _ = await served.api("DELETE", f"/api/me/sessions/{sid}", role="viewer")
        assert st == 404, (sid, answer)
    assert served.server.ctx.http_counts["5xx"] == 0
