"""The client behind a reverse proxy: its address and scheme, from trusted proxies only.

Behind nginx or HAProxy every request comes from the proxy's address, so the audit log's
"from where", the login rate limit (per client address) and the cookies' ``Secure`` flag
(TLS ended at the proxy) would all be wrong. ``scada run --trusted-proxy 10.0.0.5``
(repeatable; addresses or networks) names the proxies whose headers are believed:

* the client address is the right-most address of ``X-Forwarded-For`` that is not itself
  a trusted proxy (each proxy appends the address it got the request from, so the
  left part is whatever the client wrote and is not believed); ``X-Real-IP`` when there
  is no ``X-Forwarded-For``;
* the request counts as HTTPS when ``X-Forwarded-Proto`` (or ``X-Scheme``) says ``https``.

A request from any other peer is taken as it is and its forwarding headers are ignored,
so a client cannot pick its audit address or dodge the rate limit by writing them.
Tornado's own ``xheaders`` trusts the headers of every peer; this is why it is off.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

__all__ = ["TrustedProxies"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The proxies whose forwarding headers are believed (module docstring)."""

    def __init__(self, proxies: Iterable[str] = ()) -> None:
        nets: list[_Network] = []
        for text in proxies:
            try:
                nets.append(ipaddress.ip_network(text.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"trusted proxy {text!r} is not an IP address or network (10.0.0.5, 10.0.0.0/24)"
                ) from None
        self.networks = tuple(nets)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str | None) -> bool:
        if not address or not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)

    def client(self, request: Any) -> str:
        """Return the client address of a Tornado ``request`` (the peer's unless trusted)."""
        peer = request.remote_ip or ""
        if not self.trusts(peer):
            return peer
        headers = request.headers
        hops = [h.strip() for h in headers.get("X-Forwarded-For", "").split(",") if h.strip()]
        if not hops:
            real = headers.get("X-Real-IP", "").strip()
            return real if _is_ip(real) else peer
        for hop in reversed(hops):
            if not _is_ip(hop):
                return peer  # a malformed chain: believe only the proxy itself
            if not self.trusts(hop):
                return hop
        return hops[0]

    def https(self, request: Any, tls: bool) -> bool:
        """True when the client's connection is TLS: ours, or a trusted proxy's."""
        if tls:
            return True
        if not self.trusts(request.remote_ip):
            return False
        headers = request.headers
        proto = headers.get("X-Forwarded-Proto") or headers.get("X-Scheme") or ""
        return proto.split(",")[0].strip().lower() == "https"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
