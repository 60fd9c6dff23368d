"""The Notifier interface, the message it sends, and the registry of notifier types."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["NOTIFIER_TYPES", "DeliveryError", "Message", "Notifier", "build_notifiers"]


class DeliveryError(Exception):
    """A message could not be delivered; the text names the notifier and the address."""


@dataclass(frozen=True, slots=True)
class Message:
    """One notification: a short ``subject``, a plain-text ``body`` and the alarms it covers.

    ``alarms`` are ``Alarm.to_json()`` dicts plus ``"reason"`` (``raised``, ``escalated``,
    ``cleared``); ``occurrences`` their occurrence ids (journaled with each delivery).
    """

    subject: str
    body: str
    alarms: tuple[dict[str, Any], ...] = ()
    occurrences: tuple[int, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """Return the webhook payload."""
        return {"subject": self.subject, "text": self.body, "alarms": list(self.alarms)}


@runtime_checkable
class Notifier(Protocol):
    """Delivers messages to addresses of one kind (e-mail, phone number, URL).

    ``send`` runs on the event loop and raises ``DeliveryError`` when the message was not
    accepted; blocking work (SMTP, serial I/O) happens in a worker thread.
    """

    name: str
    kind: str  # "email", "sms" or "webhook": which recipient field holds the address

    async def send(self, address: str, message: Message) -> None: ...

    async def close(self) -> None: ...


def _email(cfg: Any) -> Notifier:
    from alarms.notify.email import EmailNotifier

    return EmailNotifier(cfg)


def _sms(cfg: Any) -> Notifier:
    from alarms.notify.sms import SmsNotifier

    return SmsNotifier(cfg)


def _webhook(cfg: Any) -> Notifier:
    from alarms.notify.webhook import WebhookNotifier

    return WebhookNotifier(cfg)


#: ``type`` of a notifier config -> factory (imports stay lazy: pyserial only when needed).
NOTIFIER_TYPES: dict[str, Callable[[Any], Notifier]] = {
    "email": _email,
    "sms": _sms,
    "webhook": _webhook,
}


def build_notifiers(configs: Iterable[Any]) -> dict[str, Notifier]:
    """Return ``name -> Notifier`` for the configured notifiers (no connection is opened)."""
    return {c.name: NOTIFIER_TYPES[c.type](c) for c in configs}
