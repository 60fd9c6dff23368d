"""Start the one HTTP server: REST, websocket, metrics, login pages and the Bokeh HMI.

Everything listens on one port in the runtime's loop: a ``BokehTornado`` application
(the HMI apps from ``hmi.app.apps(runtime)`` under ``/hmi/...`` when that module exists,
guarded by :class:`~scada.services.auth.BokehAuth`) whose ``extra_patterns`` are the
server's routes (:mod:`scada.server.app`), served by one ``HTTPServer`` (TLS when a
certificate is given) and run by Bokeh's ``BaseServer``. The sockets are bound first, so
``port=0`` picks a free port and the Bokeh websocket origin list knows it.

Files: ``<data-dir>/users.sqlite``, ``audit.sqlite``, ``config-versions/``.

First-run bootstrap: while no admin exists, :attr:`ScadaServer.setup_token` holds a
one-time token (``scada run`` prints it); ``/setup`` exchanges it for the first admin.
``scada user add CONFIG NAME --role admin --password-stdin`` works as well. No default
password exists anywhere.

Threading: start and stop on the runtime's loop.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import secrets
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tornado import netutil
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop

from scada.server.bokeh_auth import BokehAuth
from scada.server.context import ServerContext
from scada.server.hub import MIN_INTERVAL_S
from scada.server.proxy import TrustedProxies
from scada.services.audit import AuditLog
from scada.services.auth import SESSION_COOKIE, Auth
from scada.services.command_store import CommandStore
from scada.services.commands import CommandService
from scada.services.users import UserStore

__all__ = ["ScadaServer"]

log = logging.getLogger(__name__)


def _hmi_apps(runtime: Any, auth: Auth, commands: CommandService) -> dict[str, Any]:
    """Return the HMI's Bokeh applications, or ``{}`` when ``hmi.app`` is not installed."""
    if importlib.util.find_spec("hmi") is None or importlib.util.find_spec("hmi.app") is None:
        return {}
    from hmi.app import apps

    try:
        return dict(apps(runtime, auth=auth, commands=commands))
    except TypeError:  # an older apps(runtime) signature
        return dict(apps(runtime))


class ScadaServer:
    """The server of one runtime. Construct, ``await start()``, ``await stop()``.

    ``runtime`` supplies ``db``, ``site``, ``drivers``, ``historian``, ``recorder`` and
    ``alarms`` (any may be None). ``port=0`` picks a free port (see :attr:`port`).
    ``allowed_origins`` are extra websocket origins (``host:port`` or full origins).
    """

    def __init__(
        self,
        runtime: Any,
        data_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        select_timeout_s: float = 30.0,
        allowed_origins: Iterable[str] = (),
        ws_min_interval_s: float = MIN_INTERVAL_S,
        trusted_proxies: Iterable[str] = (),
        hmi: bool = True,
    ) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("give both --tls-cert and --tls-key, or neither")
        self.runtime = runtime
        self.data_dir = Path(data_dir)
        self.host = host
        self.requested_port = port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.select_timeout_s = select_timeout_s
        self.allowed_origins = frozenset(allowed_origins)
        self.ws_min_interval_s = ws_min_interval_s
        self.proxies = TrustedProxies(trusted_proxies)
        self.hmi = hmi
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
        """Open the stores, build the services and start listening; raise if the port is taken."""
        from bokeh.server.server import BaseServer
        from bokeh.server.tornado import BokehTornado

        from scada.server.app import tornado_routes
        from scada.server.metrics import make_registry
        from scada.server.ws import Hub
        from scada.services.config_versions import ConfigManager

        self.data_dir.mkdir(parents=True, exist_ok=True)
        ssl_ctx = None
        if self.tls_cert:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(self.tls_cert, self.tls_key)
        users = UserStore.in_data_dir(self.data_dir)
        audit = AuditLog.in_data_dir(self.data_dir)
        auth = Auth(users)
        commands = CommandService(
            self.runtime,
            audit,
            select_timeout_s=self.select_timeout_s,
            store=CommandStore.in_data_dir(self.data_dir),
        )
        sockets = netutil.bind_sockets(self.requested_port, self.host or None)
        self.port = int(sockets[0].getsockname()[1])
        origins = {
            f"localhost:{self.port}",
            f"127.0.0.1:{self.port}",
            f"{self.host}:{self.port}",
            *self.allowed_origins,
        }
        ctx = ServerContext(
            self.runtime,
            self.data_dir,
            users,
            auth,
            audit,
            commands,
            tls=ssl_ctx is not None,
            allowed_origins=frozenset(origins),
            proxies=self.proxies,
        )
        self.ctx = ctx
        try:
            ctx.hub = Hub(ctx, min_interval_s=self.ws_min_interval_s)
            ctx.hub.start()
            if getattr(self.runtime, "site", None) is not None:
                ctx.config = ConfigManager(self.runtime, audit, self.data_dir)
                await ctx.run_blocking(ctx.config.ensure_baseline)
            ctx.registry = make_registry(ctx)
            self._expose()
            apps = _hmi_apps(self.runtime, auth, commands) if self.hmi else {}
            if apps:
                ctx.home = sorted(apps)[0]
            app = BokehTornado(
                apps,
                extra_patterns=tornado_routes(ctx),
                extra_websocket_origins=sorted(o for o in origins if "://" not in o),
                auth_provider=BokehAuth(auth),
                secret_key=secrets.token_bytes(32),
                sign_sessions=True,
                exclude_cookies=[SESSION_COOKIE],
                exclude_headers=["Authorization"],
                use_index=False,
                redirect_root=False,
            )
            self._http = HTTPServer(app, ssl_options=ssl_ctx, xheaders=False)
            self._http.add_sockets(sockets)
            self._base = BaseServer(IOLoop.current(), app, self._http)
            self._base.start()
        except BaseException:
            for s in sockets:
                s.close()
            await self.stop()
            raise
        if auth.bootstrap():
            log.warning(
                "no admin user yet: open %s/setup with the setup token, or run "
                "'scada user add CONFIG NAME --role admin --password-stdin'",
                self.url,
            )
        log.info("server listening on %s (%d HMI apps)", self.url, len(apps))

    def _expose(self) -> None:
        """Give the runtime the services other parts call (HMI, billing).

        ``alarm_ops`` is the audited alarm operations the HMI uses; ``server.ctx.proxies``
        gives the HMI the client address of the request that opens a session.
        """
        assert self.ctx is not None
        rt = self.runtime
        for name, value in (
            ("server", self),
            ("auth", self.ctx.auth),
            ("audit", self.ctx.audit),
            ("commands", self.ctx.commands),
            ("alarm_ops", self.ctx.alarm_ops),
            ("config_api", self.ctx.config),
        ):
            try:
                setattr(rt, name, value)
            except AttributeError:  # a runtime with slots: the server still works
                log.debug("runtime has no attribute %s", name)

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
