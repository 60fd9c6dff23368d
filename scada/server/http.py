"""Start the one HTTP server: REST, websocket, metrics, login pages and the Bokeh HMI.

Everything listens on one port in the runtime's loop: a ``BokehTornado`` application (the
HMI pages the runtime mounts, ``apps``, under ``/hmi/...``, guarded by
:class:`~scada.server.bokeh_auth.BokehAuth`) whose ``extra_patterns`` are the server's
routes (:mod:`scada.server.app`), served by one ``HTTPServer`` (TLS when a certificate is
given) and run by Bokeh's ``BaseServer``. The sockets are bound first, so ``port=0`` picks a
free port and the Bokeh websocket origin list knows it. Every answer carries the security
headers of :mod:`scada.server.headers`.

Slow clients: a connection that has not sent its whole request head within
``header_timeout_s`` is closed (a client trickling its headers a byte at a time must not hold
a connection for ever); so is one idle that long between requests. A request body must arrive
within ``body_timeout_s``. Websockets, once open, are not HTTP requests: neither applies.

The server builds no service: it is given the runtime's typed bundle
(:class:`~scada.services.bundle.Services`: auth, audit, commands, alarm operations, config
versions, billing, ...) and only adds what is HTTP: routes, the websocket hub, metrics.

First-run bootstrap: while no admin exists, :attr:`ScadaServer.setup_token` holds a
one-time token (``scada run`` prints it); ``/setup`` exchanges it for the first admin.
``scada user add CONFIG NAME --role admin --password-stdin`` works as well. No default
password exists anywhere.

Threading: start and stop on the runtime's loop.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import ssl
from collections.abc import Iterable, Mapping
from typing import Any

from bokeh.application import Application
from tornado import netutil
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop

from scada.server.bokeh_auth import BokehAuth
from scada.server.context import ServerContext
from scada.server.headers import security_headers
from scada.server.hub import MIN_INTERVAL_S
from scada.server.proxy import TrustedProxies
from scada.services.auth import SESSION_COOKIE
from scada.services.bundle import Services

__all__ = ["BODY_TIMEOUT_S", "HEADER_TIMEOUT_S", "ScadaServer"]

log = logging.getLogger(__name__)

#: Longest time for a request's head (request line and headers), or between two requests.
HEADER_TIMEOUT_S = 20.0
#: Longest time for a request's body.
BODY_TIMEOUT_S = 60.0


class ScadaServer:
    """The server of one runtime. Construct, ``await start()``, ``await stop()``.

    ``services`` is the runtime's bundle; ``apps`` the HMI pages to mount (``{}``: none).
    ``port=0`` picks a free port (see :attr:`port`). ``allowed_origins`` are extra
    websocket origins (``host:port`` or full origins); ``proxies`` the trusted reverse
    proxies (client addresses, Secure cookies). ``header_timeout_s`` and ``body_timeout_s``:
    see the module docstring.
    """

    def __init__(
        self,
        services: Services,
        *,
        apps: Mapping[str, Application] | None = None,
        host: str = "127.0.0.1",
        port: int = 8080,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        allowed_origins: Iterable[str] = (),
        ws_min_interval_s: float = MIN_INTERVAL_S,
        proxies: TrustedProxies | None = None,
        header_timeout_s: float = HEADER_TIMEOUT_S,
        body_timeout_s: float = BODY_TIMEOUT_S,
    ) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("give both --tls-cert and --tls-key, or neither")
        self.services = services
        self.apps = dict(apps or {})
        self.host = host
        self.requested_port = port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.allowed_origins = frozenset(allowed_origins)
        self.ws_min_interval_s = ws_min_interval_s
        self.proxies = proxies if proxies is not None else TrustedProxies()
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.ctx: ServerContext | None = None
        self.port: int | None = None
        self._base: Any = None
        self._http: HTTPServer | None = None

    @property
    def url(self) -> str:
        """Base URL (``http://127.0.0.1:PORT``) once started."""
        scheme = "https" if self.tls_cert else "http"
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    @property
    def setup_token(self) -> str | None:
        """The one-time first-run token while no admin exists, else None."""
        return None if self.ctx is None else self.ctx.auth.setup_token

    async def start(self) -> None:
        """Build the routes and the hub and start listening; raise if the port is taken."""
        from bokeh.server.server import BaseServer
        from bokeh.server.tornado import BokehTornado

        from scada.server.app import tornado_routes
        from scada.server.metrics import make_registry
        from scada.server.ws import Hub

        ssl_ctx = None
        if self.tls_cert:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(self.tls_cert, self.tls_key)
        services = self.services
        sockets = netutil.bind_sockets(self.requested_port, self.host or None)
        self.port = int(sockets[0].getsockname()[1])
        origins = {
            f"localhost:{self.port}",
            f"127.0.0.1:{self.port}",
            f"{self.host}:{self.port}",
            *self.allowed_origins,
        }
        ctx = ServerContext(
            services,
            tls=ssl_ctx is not None,
            allowed_origins=frozenset(origins),
            proxies=self.proxies,
        )
        self.ctx = ctx
        try:
            ctx.hub = Hub(ctx, min_interval_s=self.ws_min_interval_s)
            ctx.hub.start()
            ctx.registry = make_registry(ctx)
            apps = self.apps
            if apps:
                ctx.home = sorted(apps)[0]
            app = BokehTornado(
                apps,
                extra_patterns=tornado_routes(ctx),
                extra_websocket_origins=sorted(o for o in origins if "://" not in o),
                auth_provider=BokehAuth(services.auth),
                secret_key=secrets.token_bytes(32),
                sign_sessions=True,
                exclude_cookies=[SESSION_COOKIE],
                exclude_headers=["Authorization"],
                use_index=False,
                redirect_root=False,
            )
            app.add_transform(security_headers(ctx))
            self._http = HTTPServer(
                app,
                ssl_options=ssl_ctx,
                xheaders=False,
                # Tornado's header timeout is its idle timeout: the time from the end of
                # one request (or the connection) to the end of the next request's head
                idle_connection_timeout=self.header_timeout_s,
                body_timeout=self.body_timeout_s,
            )
            self._http.add_sockets(sockets)
            self._base = BaseServer(IOLoop.current(), app, self._http)
            self._base.start()
        except BaseException:
            for s in sockets:
                s.close()
            await self.stop()
            raise
        if services.auth.bootstrap():
            log.warning(
                "no admin user yet: open %s/setup with the setup token, or run "
                "'scada user add CONFIG NAME --role admin --password-stdin'",
                self.url,
            )
        log.info("server listening on %s (%d HMI apps)", self.url, len(apps))

    async def stop(self) -> None:
        """Stop listening, close websocket clients and the stores; safe to call twice."""
        if self._base is not None:
            with contextlib.suppress(AssertionError):  # already stopped
                self._base.stop(wait=False)
            self._base = None
        elif self._http is not None:
            self._http.stop()
        if self._http is not None:
            await self._http.close_all_connections()
            self._http = None
        if self.ctx is not None:
            if self.ctx.hub is not None:
                self.ctx.hub.stop()
            self.ctx.close()
            self.ctx = None
