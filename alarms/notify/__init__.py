"""Notifications: pluggable notifiers (webhook, e-mail, SMS) and the on-call router."""

from alarms.notify.base import NOTIFIER_TYPES, DeliveryError, Message, Notifier, build_notifiers
from alarms.notify.router import Router, in_window

__all__ = [
    "NOTIFIER_TYPES",
    "DeliveryError",
    "Message",
    "Notifier",
    "Router",
    "build_notifiers",
    "in_window",
]
