"""A small keep-alive HTTP client for InfluxDB's v1 API (standard library only).

``influxdb-client`` speaks the v2 API only, so the v1 backend talks HTTP itself: a pool of
``http.client`` connections (one per concurrent caller), credentials as InfluxDB 1.x, 2.x and
3.x accept them (``Authorization: Token …`` for a token, HTTP Basic for user and password).

Errors: a refused or dropped connection, a timeout or a name that does not resolve raise
``BackendUnavailable`` (the spool keeps the batch; a dead server and a wrong host look the same
from here); a TLS certificate that does not verify raises ``HistorianError``. An idle pooled
connection the server closed meanwhile (after its restart) is retried once on a fresh one.

Threading: ``request`` may be called from any thread.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from historian.base import BackendUnavailable, HistorianError

_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


@dataclass(frozen=True, slots=True)
class Response:
    """Status, headers (names in lower case) and body of one answered request."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def error_text(self) -> str:
        """Return the server's error message (the JSON ``error`` field) or the body's start."""
        try:
            doc = json.loads(self.body)
        except ValueError:
            return self.body[:200].decode("utf-8", "replace").strip()
        if isinstance(doc, dict) and "error" in doc:
            return str(doc["error"])
        if isinstance(doc, dict) and "message" in doc:  # InfluxDB 2.x / 3.x
            return str(doc["message"])
        return self.body[:200].decode("utf-8", "replace").strip()


def auth_headers(username: str | None, password: str | None, token: str | None) -> dict[str, str]:
    """Return the ``Authorization`` header for a token or a user and password ({} for none)."""
    if token:
        return {"Authorization": f"Token {token}"}
    if password is not None:
        pair = f"{username or ''}:{password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
    return {}


class HttpClient:
    """Keep-alive connections to one base URL (see the module docstring)."""

    def __init__(
        self, url: str, *, timeout_s: float = 10.0, headers: Mapping[str, str] | None = None
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"InfluxDB url {url!r} must be http://host[:port] or https://...")
        self.url = url.rstrip("/")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout_s)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

    def _give(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < 8:
                self._idle.append(conn)
                return
        conn.close()

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        what: str = "",
    ) -> Response:
        """Send one request; return the response whatever its status.

        ``what`` names the operation in error messages (never the query parameters, which may
        be long). Raises ``BackendUnavailable`` when no answer came (see the module docstring).
        """
        target = self.prefix + path
        if params:
            target += "?" + urllib.parse.urlencode(params)
        hdrs = {**self.headers, **(headers or {})}
        label = what or f"{method} {path}"
        for attempt in (0, 1):
            conn, reused = self._take()
            try:
                conn.request(method, target, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
            except _STALE as exc:
                conn.close()
                if reused and attempt == 0:
                    continue  # the server closed an idle keep-alive connection: try a fresh one
                raise BackendUnavailable(f"{label} at {self.url}: {exc!r}") from exc
            except ssl.SSLCertVerificationError as exc:
                conn.close()
                raise HistorianError(f"{label} at {self.url}: TLS: {exc}") from exc
            except TimeoutError as exc:
                conn.close()
                raise BackendUnavailable(
                    f"{label} at {self.url}: no answer within {self.timeout_s:g} s"
                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise BackendUnavailable(f"{label} at {self.url}: {exc}") from exc
            if resp.will_close:
                conn.close()
            else:
                self._give(conn)
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        raise AssertionError("unreachable")  # pragma: no cover

    def json(self, resp: Response, label: str) -> Any:
        """Return the decoded JSON body of ``resp``; ``HistorianError`` if it is not JSON."""
        try:
            return json.loads(resp.body)
        except ValueError as exc:
            raise HistorianError(
                f"{label} at {self.url}: the answer is not JSON "
                f"(HTTP {resp.status}: {resp.body[:120]!r})"
            ) from exc

    def close(self) -> None:
        """Close the idle connections (requests still running close theirs when done)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
