"""E-mail notifier: SMTP through smtplib in a worker thread (plain, STARTTLS or SSL).

The password is a secret (``configbase.secrets``): it reaches only ``SMTP.login``.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from alarms.notifications import EmailNotifierConfig
from alarms.notify.base import DeliveryError, Message

__all__ = ["EmailNotifier"]

log = logging.getLogger(__name__)


class EmailNotifier:
    """Sends each message as one plain-text UTF-8 e-mail to the recipient's address."""

    kind = "email"

    def __init__(self, config: EmailNotifierConfig) -> None:
        self.name = config.name
        self.config = config

    def _build(self, address: str, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.config.sender
        mail["To"] = address
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(domain=self.config.sender.rpartition("@")[2] or None)
        mail.set_content(message.body)
        return mail

    def _send_blocking(self, address: str, message: Message) -> None:
        c = self.config
        mail = self._build(address, message)
        smtp: smtplib.SMTP
        if c.ssl:
            smtp = smtplib.SMTP_SSL(
                c.host, c.port, timeout=c.timeout_s, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout_s)
        with smtp:
            if c.starttls and not c.ssl:
                smtp.starttls(context=ssl.create_default_context())
            if c.username:
                smtp.login(c.username, c.password.get_secret_value() if c.password else "")
            refused = smtp.send_message(mail)
        if refused:
            raise smtplib.SMTPRecipientsRefused(refused)

    async def send(self, address: str, message: Message) -> None:
        """Send ``message`` to ``address``; raise ``DeliveryError`` if the server does not accept it."""
        try:
            await asyncio.to_thread(self._send_blocking, address, message)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"email {self.name}: sending to {address} via {self.config.host}:{self.config.port} failed: {exc}"
            ) from exc
        log.debug("email %s: delivered %r to %s", self.name, message.subject, address)

    async def close(self) -> None:
        """Nothing to release (one SMTP session per message)."""
