"""Low-balance notices to tenants: SMS / e-mail when an account's warning level rises.

The seed systems text the tenant at alarm 1, alarm 2 and arrears, and again when the power
is restored. The notices are driven by the account level tags (``acct.<id>.level``, written
by ``billing.prepaid``) and sent with the site's notifiers (``notifications.notifiers``): the
account's ``phone`` through the first ``sms`` notifier, its ``email`` through the first
``email`` notifier. A failed delivery is retried with backoff (at most ``retries`` times)
and logged; it never blocks billing. Event loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from alarms.notify.base import DeliveryError, Message, Notifier
from billing.tags import RESTORED_NOTICE, Level, balance_tag, level_tag

if TYPE_CHECKING:
    from billing.config import AccountConfig
    from billing.site import BillingSite
    from tags.database import TagDatabase
    from tags.model import TagValue

log = logging.getLogger(__name__)


def notice_for(
    account: AccountConfig, level: Level, previous: Level | None, balance: float | None
) -> Message | None:
    """Return the notice for a level change of ``account`` (an AccountConfig), or None.

    A notice goes out when the level rises to alarm 1, alarm 2 or arrears, and when an
    account comes back from arrears; other changes (e.g. alarm 2 -> alarm 1) stay silent.
    """
    money = "" if balance is None else f" Balance: {balance:.2f}."
    who = account.tenant or account.id
    notice = level.info.notice
    if previous is not None and level > previous and notice is not None:
        text = notice
    elif previous is Level.ARREARS and level < Level.ARREARS:
        text = RESTORED_NOTICE
    else:
        return None
    return Message(subject=f"{who}: {text}", body=f"Account {account.id} ({who}): {text}.{money}")


class TenantNotices:
    """Send tenants their low-balance notices; ``start()`` subscribes, ``await stop()`` ends."""

    def __init__(
        self,
        site: BillingSite,
        db: TagDatabase,
        notifiers: Mapping[str, Notifier],
        *,
        retries: int = 3,
        backoff_s: float = 30.0,
    ) -> None:
        self.db = db
        self.retries = retries
        self.backoff_s = backoff_s
        self.accounts = {a.id: a for a in site.accounts}
        self._by_tag = {level_tag(a.id): a for a in site.accounts if a.phone or a.email}
        self._sms = next((n for n in notifiers.values() if n.kind == "sms"), None)
        self._email = next((n for n in notifiers.values() if n.kind == "email"), None)
        self._levels: dict[str, Level] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsubscribe: Callable[[], None] | None = None
        #: (account, address, subject) of every delivered notice, for tests and the log
        self.sent: list[tuple[str, str, str]] = []

    def start(self) -> None:
        """Subscribe to the level tags of accounts that have a phone number or e-mail address."""
        if not self._by_tag or (self._sms is None and self._email is None):
            return
        for tag in self._by_tag:  # the level in force now is the baseline: no notice at start-up
            level = Level.of(self.db.read(tag).value)
            if level is not None:
                self._levels[tag] = level
        self._unsubscribe = self.db.subscribe(
            list(self._by_tag), self._on_changes, name="tenant-notices"
        )

    async def stop(self) -> None:
        """Unsubscribe and cancel deliveries still waiting for a retry."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_changes(self, batch: Mapping[str, TagValue]) -> None:
        for tag, tv in batch.items():
            account = self._by_tag.get(tag)
            level = Level.of(tv.value)
            if account is None or level is None:
                continue
            previous = self._levels.get(tag)
            self._levels[tag] = level
            value = self.db.read(balance_tag(account.id)).value  # a float tag: number or None
            balance = value if isinstance(value, (int, float)) else None
            message = notice_for(account, level, previous, balance)
            if message is None:
                continue
            for notifier, address in ((self._sms, account.phone), (self._email, account.email)):
                if notifier is not None and address:
                    task = asyncio.ensure_future(
                        self._deliver(account.id, notifier, address, message)
                    )
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self, account: str, notifier: Notifier, address: str, message: Message
    ) -> None:
        for attempt in range(self.retries + 1):
            try:
                await notifier.send(address, message)
            except DeliveryError as exc:
                log.warning(
                    "notice to %s (account %s) failed, try %d: %s",
                    address,
                    account,
                    attempt + 1,
                    exc,
                )
                if attempt == self.retries:
                    return
                await asyncio.sleep(self.backoff_s * 2**attempt)
            else:
                self.sent.append((account, address, message.subject))
                log.info("notice to %s (account %s): %s", address, account, message.subject)
                return
