"""A Bokeh server with only the HMI pages, for the HMI benchmark and tests.

``scada run`` serves the HMI from the full server (REST, websocket, login page); this module
starts just the Bokeh part with the same auth provider (``BokehAuth``), so a benchmark can
measure the HMI alone. The caller builds the pages (``hmi.app.apps(services)``): the server
package never imports the HMI. Loop-thread only: call from a running asyncio loop.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from bokeh.server.server import Server
from tornado.ioloop import IOLoop

from scada.server.bokeh_auth import BokehAuth
from scada.services.auth import SESSION_COOKIE, Auth

__all__ = ["serve_hmi"]

log = logging.getLogger(__name__)


def serve_hmi(
    apps: dict[str, Any],
    *,
    auth: Auth,
    address: str = "127.0.0.1",
    port: int = 0,
    extra_patterns: list[Any] | None = None,
) -> tuple[Server, int]:
    """Start a Bokeh server with every HMI page on the current loop; return it and its port.

    ``apps`` maps ``/hmi/<page>`` to Bokeh applications; ``auth`` is the ``Auth`` service
    (login required on every page); ``port=0`` picks a free port. Stop it with ``server.stop()``.
    """

    server = Server(
        apps,
        io_loop=IOLoop.current(),
        address=address,
        port=port,
        allow_websocket_origin=[f"{address}:{port}" if port else "*"],
        auth_provider=BokehAuth(auth),
        extra_patterns=extra_patterns or [],
        keep_alive_milliseconds=0,
        secret_key=secrets.token_bytes(32),
        sign_sessions=True,  # the user goes into the session token (see hmi.app)
        exclude_cookies=[SESSION_COOKIE],
        exclude_headers=["Authorization"],
        check_unused_sessions_milliseconds=2000,
        unused_session_lifetime_milliseconds=5000,
    )
    server.start()
    actual = port
    if not actual:
        for sock in server._http._sockets.values():  # the port the OS picked
            actual = sock.getsockname()[1]
            break
    log.info("HMI served on http://%s:%d/hmi/overview", address, actual)
    return server, actual
