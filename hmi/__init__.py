"""Bokeh HMI: overview, building mimics, alarms, trends, meters, configuration and tenant pages.

``hmi.app.apps(runtime, auth=..., commands=...)`` returns the Bokeh applications the server
mounts under ``/hmi/``; each page builds its document in a ``make_document(doc)`` closure with
an ``hmi.session.HmiSession`` (user, live tag and alarm feeds, clean-up). The HMI holds no
business rules: it reads the TagDatabase, the alarm engine, the historian and billing, and
writes only through the server's command service and config API.
"""

from hmi.app import PAGE_PATHS, apps
from hmi.session import HmiSession, HmiUser

__all__ = ["PAGE_PATHS", "HmiSession", "HmiUser", "apps"]
