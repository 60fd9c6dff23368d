"""The web server: REST (``/api``), the websocket (``/ws``), metrics, login pages, the HMI mount.

Only HTTP and websocket handlers live here. ``ScadaServer(services, apps=..., port=...)``
serves everything on one port in the runtime's loop (see ``scada.server.http``); the
services it calls (auth, audit, commands, alarm operations, config versions, billing) are
the runtime's typed bundle, :class:`scada.services.bundle.Services`.
"""

from scada.server.http import ScadaServer

__all__ = ["ScadaServer"]
