"""Low-balance notices reach the tenant by e-mail (a real SMTP server: aiosmtpd on loopback)."""

from __future__ import annotations

import asyncio
import threading
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from alarms.notifications import EmailNotifierConfig
from alarms.notify.email import EmailNotifier
from billing.ledger import Ledger
from billing.notices import TenantNotices
from billing.prepaid import PrepaidController
from billing.tags import account_tag_defs
from scada.config import load_site_text
from tags.database import TagDatabase
from tests.billing.conftest import free_port, site_text


class _Inbox:
    def __init__(self) -> None:
        self.mails: list[tuple[list[str], str]] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = message_from_bytes(envelope.content)
        self.mails.append((list(envelope.rcpt_tos), str(mail["Subject"])))
        self.arrived.set()
        return "250 OK"

    async def next(self, count: int) -> None:
        """Wait (in a thread, without blocking the loop) until ``count`` mails have arrived."""
        while len(self.mails) < count:
            self.arrived.clear()
            if len(self.mails) >= count:
                break
            assert await asyncio.to_thread(self.arrived.wait, 10.0), f"only {self.mails}"


@pytest.fixture
def inbox() -> Any:
    box = _Inbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


async def test_tenant_gets_low_balance_arrears_and_restored_notices(
    inbox: Any, tmp_path: Path
) -> None:
    box, port = inbox
    text = site_text(free_port()).replace(
        'alarm1: "20.00", alarm2: "10.00"}',
        'alarm1: "20.00", alarm2: "10.00", email: flat102@tenant.example}',
    )
    site = load_site_text(text)
    db = TagDatabase(account_tag_defs(site))
    ledger = Ledger.in_data_dir(tmp_path)
    prepaid = PrepaidController(site, ledger, commander=None, db=db)
    mail = EmailNotifier(
        EmailNotifierConfig(
            name="mail", type="email", host="127.0.0.1", port=port, sender="billing@heat.example"
        )
    )
    notices = TenantNotices(site, db, {"mail": mail}, backoff_s=0.0)
    try:
        ledger.open_account("home-102", "100.00")
        await prepaid.evaluate("home-102")  # level 0 (ok): the baseline, no notice
        db.flush()
        notices.start()
        ledger.refund("home-102", "85.00")  # 15.00 <= alarm1 20.00
        await prepaid.evaluate("home-102")
        await box.next(1)
        ledger.refund("home-102", "10.00")  # 5.00 <= alarm2 10.00
        await prepaid.evaluate("home-102")
        await box.next(2)
        ledger.refund("home-102", "5.00")  # 0.00: arrears
        await prepaid.evaluate("home-102")
        await box.next(3)
        ledger.topup("home-102", "15.00")  # 15.00: back to alarm 1, out of arrears
        await prepaid.evaluate("home-102")
        await box.next(4)
    finally:
        await notices.stop()
        ledger.close()
    assert all(rcpt == ["flat102@tenant.example"] for rcpt, _ in box.mails)
    subjects = [s for _, s in box.mails]
    assert "balance low" in subjects[0]
    assert "very low" in subjects[1]
    assert "arrears" in subjects[2]
    assert "restored" in subjects[3]
    assert len(box.mails) == 4  # one notice per level change that warrants one
