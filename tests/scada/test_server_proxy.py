"""Behind a reverse proxy: client addresses and HTTPS from trusted proxies only."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from tornado.httputil import HTTPHeaders

from scada.server.proxy import TrustedProxies
from tests.scada.server_fixtures import (
    PASSWORD,
    Served,
    recv,
    served_fixture,  # noqa: F401
)

CLIENT = "203.0.113.9"


def _login_entries(served: Served) -> list[dict]:
    return served.server.ctx.audit.query(action="login")


async def _login(served: Served, password: str, headers: dict[str, str]) -> tuple[int, object]:
    st, _, resp = await served.api(
        "POST",
        "/api/login",
        role=None,
        body={"username": "viewer", "password": password},
        headers=headers,
    )
    return st, resp


async def test_forwarding_headers_of_an_untrusted_peer_are_ignored(served: Served) -> None:
    headers = {"X-Forwarded-For": CLIENT, "X-Real-IP": CLIENT, "X-Forwarded-Proto": "https"}
    st, resp = await _login(served, PASSWORD, headers)
    assert st == 200
    assert _login_entries(served)[0]["source"] == "127.0.0.1"  # the client cannot pick it
    cookies = resp.headers.get_list("Set-Cookie")
    assert cookies and not any("Secure" in c for c in cookies)


async def test_a_trusted_proxy_gives_the_client_address_and_https(served: Served) -> None:
    served.runtime.proxies.networks = TrustedProxies(["127.0.0.0/8"]).networks
    headers = {"X-Forwarded-For": f"198.51.100.1, {CLIENT}", "X-Forwarded-Proto": "https"}
    st, resp = await _login(served, PASSWORD, headers)
    assert st == 200
    # the right-most address not of a trusted proxy: what the proxy itself saw
    assert _login_entries(served)[0]["source"] == CLIENT
    cookies = resp.headers.get_list("Set-Cookie")
    assert len(cookies) == 2 and all("Secure" in c for c in cookies)
    # the websocket records the same client address
    ws = await served.ws("viewer", headers={"X-Forwarded-For": CLIENT})
    await ws.write_message(json.dumps({"op": "ack", "alarms": ["x"], "req": 1}))
    err = await recv(ws)
    assert err["status"] == 403
    denied = served.server.ctx.audit.query(action="ws.ack")
    assert [e["source"] for e in denied] == [CLIENT]


async def test_login_rate_limit_is_per_client_behind_the_proxy(served: Served) -> None:
    served.runtime.proxies.networks = TrustedProxies(["127.0.0.1"]).networks
    limiter = served.server.ctx.auth.limiter
    attacker = {"X-Forwarded-For": CLIENT}
    codes = [(await _login(served, "wrong", attacker))[0] for _ in range(limiter.max_failures)]
    assert set(codes) == {401}
    st, _ = await _login(served, PASSWORD, attacker)
    assert st == 429  # this client is blocked ...
    st, _ = await _login(served, PASSWORD, {"X-Forwarded-For": "203.0.113.10"})
    assert st == 200  # ... the other clients behind the same proxy are not


def _request(peer: str, **headers: str) -> SimpleNamespace:
    return SimpleNamespace(remote_ip=peer, headers=HTTPHeaders(headers))


def test_client_address_rules() -> None:
    proxies = TrustedProxies(["10.0.0.5", "10.1.0.0/16"])
    client = proxies.client
    assert client(_request("192.0.2.1", **{"X-Forwarded-For": "1.2.3.4"})) == "192.0.2.1"
    assert client(_request("10.0.0.5")) == "10.0.0.5"
    assert client(_request("10.0.0.5", **{"X-Real-IP": "192.0.2.7"})) == "192.0.2.7"
    assert client(_request("10.0.0.5", **{"X-Real-IP": "nonsense"})) == "10.0.0.5"
    # two proxies in a row: skip both, take the first hop they did not add
    chain = {"X-Forwarded-For": "6.6.6.6, 192.0.2.8, 10.1.2.3"}
    assert client(_request("10.0.0.5", **chain)) == "192.0.2.8"
    # every hop a proxy: the left-most one
    assert client(_request("10.0.0.5", **{"X-Forwarded-For": "10.1.0.9"})) == "10.1.0.9"
    # a malformed chain is not believed
    assert client(_request("10.0.0.5", **{"X-Forwarded-For": "x, y"})) == "10.0.0.5"
    assert client(_request("::ffff:10.0.0.5", **{"X-Forwarded-For": "192.0.2.9"})) == "192.0.2.9"
    assert proxies.https(_request("10.0.0.5", **{"X-Forwarded-Proto": "https"}), False)
    assert not proxies.https(_request("192.0.2.1", **{"X-Forwarded-Proto": "https"}), False)
    assert proxies.https(_request("192.0.2.1"), True)
    assert not TrustedProxies().trusts("127.0.0.1")
    with pytest.raises(ValueError, match="not an IP address"):
        TrustedProxies(["proxy.example"])
