"""The security headers of every answer: CSP, nosniff, referrer policy, framing, HSTS under TLS.

One Tornado output transform (:func:`security_headers`) adds them to whatever the server
answers: REST, login pages, the Bokeh HMI and its static files, errors. A handler that sets
one of them itself keeps its own.

The HMI pages are Bokeh's: inline scripts (the document and its loader), ``eval`` (``CustomJS``
callbacks are compiled in the browser with ``new Function``), inline styles and the session's
websocket back to this host. Their policy allows exactly that, and nothing from another origin;
``frame-ancestors 'none'`` keeps every page out of other sites' frames (clickjacking). Answers
that are not HTML (JSON, CSV, scripts) get a policy that allows nothing at all.

``Strict-Transport-Security`` only goes out when the client's connection is HTTPS (TLS here, or
at a trusted proxy: :meth:`~scada.server.proxy.TrustedProxies.https`): sent over plain HTTP it
would be ignored, and a site that is HTTP only must not be told otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tornado.httputil import HTTPHeaders, HTTPServerRequest
from tornado.web import OutputTransform

if TYPE_CHECKING:
    from scada.server.context import ServerContext

__all__ = ["API_POLICY", "HSTS", "page_policy", "security_headers"]

#: Content-Security-Policy of answers that are not HTML documents.
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
#: Strict-Transport-Security under TLS: one year.
HSTS = "max-age=31536000"


def page_policy(host: str) -> str:
    """Return the Content-Security-Policy of an HTML page served to ``host`` (``name:port``)."""
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self' 'unsafe-inline' 'unsafe-eval'",  # Bokeh (module docstring)
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            f"connect-src 'self' ws://{host} wss://{host}",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def security_headers(ctx: ServerContext) -> type[OutputTransform]:
    """Return the output transform adding the security headers for the server of ``ctx``."""

    class SecurityHeaders(OutputTransform):
        def __init__(self, request: HTTPServerRequest) -> None:
            self.request = request

        def transform_first_chunk(
            self, status_code: int, headers: HTTPHeaders, chunk: bytes, finishing: bool
        ) -> tuple[int, HTTPHeaders, bytes]:
            html = headers.get("Content-Type", "").startswith("text/html")
            wanted = {
                "Content-Security-Policy": page_policy(self.request.host) if html else API_POLICY,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin",
                "X-Frame-Options": "DENY",
            }
            if ctx.proxies.https(self.request, ctx.tls):
                wanted["Strict-Transport-Security"] = HSTS
            for name, value in wanted.items():
                if name not in headers:
                    headers[name] = value
            return status_code, headers, chunk

    return SecurityHeaders
