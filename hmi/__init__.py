"""Bokeh HMI: overview, building mimics, alarms, trends, meters, configuration and tenant pages.

``hmi.app.apps(services)`` returns the Bokeh applications the runtime mounts under ``/hmi/``
on its server; each page builds its document in a ``make_document(doc)`` closure with an
``hmi.session.HmiSession`` (user, live tag and alarm feeds, clean-up) over the runtime's typed
bundle (``scada.services.bundle.Services``). The HMI holds no business rules: it reads the
TagDatabase, the alarm engine, the historian and billing, and acts only through services
(commands, alarm operations, billing operations, config versions); it never imports the web
server.
"""

from hmi.app import PAGE_PATHS, apps
from hmi.session import HmiSession, HmiUser

__all__ = ["PAGE_PATHS", "HmiSession", "HmiUser", "apps"]
