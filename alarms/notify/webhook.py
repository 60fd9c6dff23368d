"""Webhook notifier: HTTP POST of the message as JSON (tornado's AsyncHTTPClient).

The payload is ``{"subject", "text", "alarms": [...]}`` (see ``Message.to_json``); any
2xx answer counts as delivered. The URL and the header values are secrets (a hook URL often
carries its token): errors and logs name the scheme, host and port only.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from alarms.notifications import WebhookNotifierConfig
from alarms.notify.base import DeliveryError, Message

__all__ = ["WebhookNotifier"]

log = logging.getLogger(__name__)


def shown_url(url: str) -> str:
    """Return ``url`` cut to ``scheme://host:port/...`` (no credentials, path or query)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(invalid URL)"
    return f"{parts.scheme}://{host}{port}/..."


class WebhookNotifier:
    """POSTs messages to the configured URL (the ``address`` argument overrides it if not empty)."""

    kind = "webhook"

    def __init__(self, config: WebhookNotifierConfig) -> None:
        self.name = config.name
        self.config = config

    async def send(self, address: str, message: Message) -> None:
        """POST ``message``; raise ``DeliveryError`` on a connection error or a non-2xx answer."""
        url = address or self.config.url.get_secret_value()
        shown = shown_url(url)
        body = json.dumps(message.to_json(), ensure_ascii=False, default=str).encode()
        headers = {k: v.get_secret_value() for k, v in self.config.headers.items()}
        request = HTTPRequest(
            url,
            method="POST",
            body=body,
            headers={"Content-Type": "application/json; charset=utf-8", **headers},
            request_timeout=self.config.timeout_s,
            connect_timeout=self.config.timeout_s,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as exc:
            raise DeliveryError(f"webhook {self.name}: POST {shown} failed: {exc}") from None
        if not 200 <= response.code < 300:
            reason = response.reason or (str(response.error) if response.error else "")
            raise DeliveryError(
                f"webhook {self.name}: POST {shown} answered {response.code} {reason}".rstrip()
            )
        log.debug("webhook %s: delivered %r to %s", self.name, message.subject, shown)

    async def close(self) -> None:
        """Nothing to release (tornado shares its HTTP client per loop)."""
