"""The HMI's Bokeh applications: ``apps(services)`` maps ``/hmi/<page>`` to one Application each.

The runtime mounts them on its server (with the auth provider, so no page opens without a
login). Each session resolves its user again from the request's session cookie or bearer
token (the auth service, ``services.auth``) and builds its document in a
``make_document(doc)`` closure over the runtime's typed bundle
(:class:`~scada.services.bundle.Services`): no module globals, no ``curdoc()``. Pages call
services (commands, audited alarm operations, billing, config versions), never the web
server.

The client address of a session is taken on the request that creates it (through the
trusted reverse proxies, ``services.client_address``) and travels in the signed token with
the user, so every HMI action is audited with the source ``hmi <address>``.
"""

from __future__ import annotations

import dataclasses
import html
import logging
from collections.abc import Callable
from typing import Any

from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.document import Document
from bokeh.server.contexts import BokehSessionContext

from hmi import bokeh_speed, language
from hmi.language import session_language, set_document_language
from hmi.layout import PAGES, html_div
from hmi.services import ServerAuth, ServiceCommands
from hmi.session import HmiAuth, HmiSession, HmiUser
from hmi.theme import PAGE_TEMPLATE
from i18n import _, use_language
from scada.services.bundle import Services

__all__ = ["PAGE_PATHS", "HmiServices", "apps"]

log = logging.getLogger(__name__)

#: URL path of every page.
PAGE_PATHS: dict[str, str] = {name: f"/hmi/{name}" for name in PAGES}


class HmiServices:
    """The services of the pages: the runtime's bundle and the HMI's adapters over it."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._auth: HmiAuth = ServerAuth(services.auth)
        self._commands = ServiceCommands(services.commands)

    def auth(self) -> HmiAuth:
        """Return the authentication adapter."""
        return self._auth

    def commands(self) -> ServiceCommands:
        """Return the command client (select-before-operate over the command service)."""
        return self._commands

    def client_address(self, request: Any) -> str:
        """Return the client address of an HTTP request (via the trusted proxies)."""
        return str(self.services.client_address(request))


def _page_builder(name: str) -> Callable[[HmiSession, Document, HmiServices], None]:
    if name == "overview":
        from hmi.overview import make_overview

        return lambda s, d, _svc: make_overview(s, d)
    if name == "building":
        from hmi.building import make_building

        return lambda s, d, svc: make_building(s, d, svc.commands())
    if name == "alarms":
        from hmi.alarm_list import make_alarms

        return lambda s, d, _svc: make_alarms(s, d)
    if name == "trends":
        from hmi.trends import make_trends

        return lambda s, d, _svc: make_trends(s, d)
    if name == "meters":
        from hmi.meters import make_meters

        return lambda s, d, svc: make_meters(s, d, svc.commands())
    if name == "reports":
        from hmi.reports_page import make_reports

        return lambda s, d, _svc: make_reports(s, d)
    if name == "cashier":
        from hmi.cashier import make_cashier

        return lambda s, d, _svc: make_cashier(s, d)
    if name == "roster":
        from hmi.roster_page import make_roster

        return lambda s, d, _svc: make_roster(s, d)
    if name == "config":
        from hmi.config_page import make_config

        return lambda s, d, _svc: make_config(s, d)
    if name == "audit":
        from hmi.audit_page import make_audit

        return lambda s, d, _svc: make_audit(s, d)
    if name == "tenant":
        from hmi.tenant import make_tenant

        return lambda s, d, _svc: make_tenant(s, d)
    raise KeyError(f"unknown HMI page {name!r}")


def _login_required(doc: Document) -> None:
    doc.template = PAGE_TEMPLATE
    doc.title = _("Login required")
    doc.add_root(
        html_div(
            '<p class="denied" data-denied="login">'
            f'{html.escape(_("Not logged in."))} <a href="/login">{html.escape(_("Log in"))}</a></p>',
            name="login-required",
        )
    )


class _HmiHandler(FunctionHandler):
    """A FunctionHandler that records the logged-in user and its address in the session token.

    ``process_request`` runs on the HTTP request that creates the session, where the
    session cookie or bearer token is still present (the server keeps them out of the
    Bokeh session token); the resolved user and the client address go into the token
    payload, which the server signs (``sign_sessions=True``), so a browser cannot forge
    either.
    """

    def __init__(self, func: Callable[[Document], None], services: HmiServices) -> None:
        super().__init__(func)
        self._services = services

    def process_request(self, request: Any) -> dict[str, Any]:
        auth = self._services.auth()
        cookies = {k: v.value for k, v in request.cookies.items()}
        user = auth.user_of(cookies, dict(request.headers))
        if user is None:
            return {}
        return {
            "hmi_user": {
                "name": user.name,
                "role": user.role,
                "links": list(user.households),
                "address": self._services.client_address(request),
            }
        }


def _session_user(doc: Document, auth: HmiAuth | None, services: HmiServices) -> HmiUser | None:
    """Return the user of a session: from the signed token payload, else from its cookies."""
    ctx = doc.session_context
    if not isinstance(ctx, BokehSessionContext) or auth is None:
        return None
    payload = ctx.token_payload or {}
    info = payload.get("hmi_user") if isinstance(payload, dict) else None
    if isinstance(info, dict) and info.get("name"):
        address = str(info.get("address") or "")
        fresh = getattr(auth, "user_named", None)
        user = fresh(str(info["name"])) if fresh is not None else None
        if user is not None:  # the current role, should it have changed since login
            return dataclasses.replace(user, address=address)
        links = tuple(str(x) for x in info.get("links") or ())
        return HmiUser(str(info["name"]), str(info.get("role", "")), None, links, links, address)
    request = ctx.request
    if request is None:
        return None
    user = auth.user_of(dict(request.cookies), dict(request.headers))
    if user is None:
        return None
    return dataclasses.replace(user, address=services.client_address(request))


def apps(services: Services) -> dict[str, Application]:
    """Return ``{"/hmi/<page>": Application}`` for every HMI page, over ``services``.

    Serve them with signed sessions (the user goes into the session token).
    """
    bokeh_speed.install()  # a page's document serialises in a fifth of the time
    language.install()  # each session's callbacks run in its user's language
    hmi = HmiServices(services)
    out: dict[str, Application] = {}
    for name, path in PAGE_PATHS.items():
        build = _page_builder(name)

        def make_document(doc: Document, name: str = name, build: Any = build) -> None:
            hmi_auth = hmi.auth()
            user = _session_user(doc, hmi_auth, hmi)
            language = session_language(services, user.name if user is not None else None)
            set_document_language(doc, language)  # its later callbacks (hmi.language)
            with use_language(language):
                if user is None:
                    _login_required(doc)
                    return
                session = HmiSession(doc, services, user, hmi_auth, page=name)
                build(session, doc, hmi)

        out[path] = Application(_HmiHandler(make_document, hmi))
    return out
