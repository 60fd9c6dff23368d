"""Pydantic models of the top-level ``notifications`` section: notifiers, recipients, roster.

``check_notifications`` reports duplicate names and unknown recipients/notifiers as
``(path, message)`` pairs whose paths start with ``"notifications"``.

Secret fields (``password``, ``pin``, webhook ``url`` and ``headers``) take ``${NAME}``
(environment) and ``${file:/path}`` references (``configbase.secrets``); their values never print.

Example::

    notifications:
      timezone: Europe/Moscow          # default: the site's
      notifiers:
        - {name: mail, type: email, host: smtp.example.org, port: 587, starttls: true, sender: scada@example.org,
           username: scada, password: "${file:/run/secrets/smtp_password}"}
        - {name: gsm, type: sms, port: /dev/ttyUSB0}
        - {name: ops, type: webhook, url: "https://ops.example.org/hooks/scada",
           headers: {Authorization: "Bearer ${OPS_HOOK_TOKEN}"}}
      recipients:
        - {name: ivan, email: ivan@example.org, phone: "+79161234567"}
        - {name: ops-channel, webhook: ops}
      roster:
        - name: heat-day
          areas: [b1, b2]
          priorities: [1, 2, 3]
          windows: [{days: [mon, tue, wed, thu, fri], start: "08:00", end: "18:00"}]
          levels: [[ivan], [olga], [chief]]     # escalation levels
        - {name: night, windows: [{start: "18:00", end: "08:00"}], levels: [[duty]]}
      escalation_min: 15
      rate_limit: {max_messages: 6, per_s: 3600}
      consolidate_s: 60
      retry: {attempts: 5, backoff_s: 30, max_backoff_s: 900}
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator

from configbase.model import ConfigModel as _Model
from configbase.secrets import Secret, SecretValue, has_reference

__all__ = [
    "DAYS",
    "EmailNotifierConfig",
    "NotificationsConfig",
    "NotifierConfig",
    "RateLimit",
    "RecipientConfig",
    "RetryPolicy",
    "RosterEntry",
    "SmsNotifierConfig",
    "TimeWindow",
    "WebhookNotifierConfig",
    "check_notifications",
]

PathT = tuple[str | int, ...]
Priority = Annotated[int, Field(ge=1, le=4, description="1 critical, 2 high, 3 medium, 4 low")]


Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+$")]


class WebhookNotifierConfig(_Model):
    """HTTP POST of a JSON document to ``url`` (chat bots, ticketing, another SCADA).

    ``url`` and the ``headers`` values are secrets (a hook URL often carries its token).
    """

    name: Name
    type: Literal["webhook"]
    url: Secret = Field(description="http(s) URL; a secret: ${NAME} or ${file:/path}")
    headers: dict[str, Secret] = Field(
        default_factory=dict, description="extra HTTP headers; values are secrets"
    )
    timeout_s: float = Field(10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http(cls, v: SecretValue) -> SecretValue:
        if not v.get_secret_value().startswith(("http://", "https://")):
            where = " (after expanding references)" if has_reference(v.written) else ""
            raise ValueError(f"the URL must start with http:// or https://{where}")
        return v


class EmailNotifierConfig(_Model):
    """E-mail over SMTP (``starttls`` or ``ssl`` for encrypted submission)."""

    name: Name
    type: Literal["email"]
    host: str
    port: int = Field(25, ge=1, le=65535)
    sender: str
    username: str | None = None
    password: Secret | None = Field(None, description="a secret: ${NAME} or ${file:/path}")
    starttls: bool = False
    ssl: bool = False
    timeout_s: float = Field(10.0, gt=0)


class SmsNotifierConfig(_Model):
    """SMS through a GSM modem on a serial port (AT commands, text mode)."""

    name: Name
    type: Literal["sms"]
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0")
    baudrate: int = Field(115200, gt=0)
    timeout_s: float = Field(15.0, gt=0, description="longest wait for one modem reply")
    max_chars: int = Field(160, ge=20, le=1600, description="longer texts are cut")
    pin: Secret | None = Field(
        None, description="SIM PIN, entered when the modem asks for it (a secret: ${NAME})"
    )

    @field_validator("pin")
    @classmethod
    def _pin(cls, v: SecretValue | None) -> SecretValue | None:
        if v is not None and not re.fullmatch(r"[0-9]{4,8}", v.get_secret_value()):
            raise ValueError("the SIM PIN must be 4 to 8 digits")
        return v


NotifierConfig = Annotated[
    WebhookNotifierConfig | EmailNotifierConfig | SmsNotifierConfig, Field(discriminator="type")
]


class RecipientConfig(_Model):
    """A person (or a system) that can be notified: by e-mail, SMS and/or a named webhook."""

    name: Name
    email: str | None = None
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{3,20}$")] | None = None
    webhook: str | None = Field(None, description="name of a webhook notifier")


_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$"
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class TimeWindow(_Model):
    """Days and a local time window; ``end`` before ``start`` runs past midnight."""

    days: list[Day] = Field(default_factory=lambda: list(DAYS))
    start: Annotated[str, StringConstraints(pattern=_HHMM)] = "00:00"
    end: Annotated[str, StringConstraints(pattern=_HHMM)] = "24:00"

    @staticmethod
    def minutes(text: str) -> int:
        """Return minutes since midnight of ``HH:MM``."""
        h, m = text.split(":")
        return int(h) * 60 + int(m)


class RosterEntry(_Model):
    """One on-call duty: which alarms (priority, area) at which times go to whom.

    ``levels[0]`` is notified first; ``levels[n+1]`` when an alarm stays unacknowledged
    ``escalation_min`` minutes after ``levels[n]`` was notified.
    """

    name: Name
    priorities: list[Priority] = Field(default_factory=lambda: [1, 2, 3, 4])
    areas: list[str] = Field(default_factory=lambda: ["*"], description="area globs")
    windows: list[TimeWindow] = Field(default_factory=list, description="empty: always on duty")
    levels: list[list[str]] = Field(
        min_length=1, description="recipient names per escalation level"
    )
    escalation_min: float | None = Field(None, gt=0)


class RateLimit(_Model):
    """At most ``max_messages`` per recipient within ``per_s``; the rest are merged into the next one."""

    max_messages: int = Field(6, ge=1)
    per_s: float = Field(3600.0, gt=0)


class RetryPolicy(_Model):
    """Failed deliveries are retried after ``backoff_s``, doubling up to ``max_backoff_s``."""

    attempts: int = Field(5, ge=1)
    backoff_s: float = Field(30.0, gt=0)
    max_backoff_s: float = Field(900.0, gt=0)


class NotificationsConfig(_Model):
    """The top-level ``notifications`` section: notifiers, recipients, the on-call roster."""

    timezone: str | None = Field(None, description="for roster windows; default: the site's")
    notifiers: list[NotifierConfig] = Field(default_factory=list)
    recipients: list[RecipientConfig] = Field(default_factory=list)
    roster: list[RosterEntry] = Field(default_factory=list)
    escalation_min: float = Field(15.0, gt=0)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    consolidate_s: float = Field(
        60.0, ge=0, description="alarms within this time after a message share the next one"
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    notify_cleared: bool = Field(False, description="also send a message when an alarm clears")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r} (use an IANA name like Europe/Moscow)"
            ) from None
        return v


def check_notifications(cfg: NotificationsConfig) -> list[tuple[PathT, str]]:
    """Return ``(path, message)`` for duplicate names and unknown recipients/notifiers."""
    issues: list[tuple[PathT, str]] = []
    base: PathT = ("notifications",)
    by_name: dict[str, int] = {}
    for i, n in enumerate(cfg.notifiers):
        if n.name in by_name:
            issues.append(((*base, "notifiers", i, "name"), f"duplicate notifier name {n.name!r}"))
        by_name.setdefault(n.name, i)
    types = {n.type for n in cfg.notifiers}
    webhooks = {n.name for n in cfg.notifiers if n.type == "webhook"}
    people: dict[str, int] = {}
    for i, r in enumerate(cfg.recipients):
        p = (*base, "recipients", i)
        if r.name in people:
            issues.append(((*p, "name"), f"duplicate recipient name {r.name!r}"))
        people.setdefault(r.name, i)
        if r.email is not None and "email" not in types:
            issues.append(((*p, "email"), "no notifier of type email is configured"))
        if r.phone is not None and "sms" not in types:
            issues.append(((*p, "phone"), "no notifier of type sms is configured"))
        if r.webhook is not None and r.webhook not in webhooks:
            issues.append(((*p, "webhook"), f"unknown webhook notifier {r.webhook!r}"))
        if r.email is None and r.phone is None and r.webhook is None:
            issues.append((p, f"recipient {r.name!r} has no email, phone or webhook"))
    for i, entry in enumerate(cfg.roster):
        for lvl, names in enumerate(entry.levels):
            if not names:
                issues.append(((*base, "roster", i, "levels", lvl), "empty escalation level"))
            for j, name in enumerate(names):
                if name not in people:
                    issues.append(
                        ((*base, "roster", i, "levels", lvl, j), f"unknown recipient {name!r}")
                    )
    return issues
