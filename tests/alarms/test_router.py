"""Routing, escalation, rate limit, consolidation and retries with an injected clock."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from alarms.notifications import NotificationsConfig, RosterEntry, WebhookNotifierConfig
from alarms.notify.base import DeliveryError, Message
from alarms.notify.router import Router, in_window

from .conftest import Clock

MSK = ZoneInfo("Europe/Moscow")
MONDAY_10 = datetime(2026, 6, 1, 10, 0, tzinfo=MSK).timestamp()  # a Monday
MONDAY_22 = datetime(2026, 6, 1, 22, 0, tzinfo=MSK).timestamp()

RULES = [
    {"id": "hot", "kind": "limit", "tags": "b*.hm.supply_c", "limits": {"h": 85}, "priority": 2},
    {"id": "fault", "kind": "state", "tag": "b1.hm.fault", "equals": True, "priority": 1},
    {"id": "flag", "kind": "state", "tag": "flag", "equals": True, "priority": 3, "area": "b1"},
]


class Recorder:
    """A notifier that records messages; ``fail`` makes the next sends raise DeliveryError."""

    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.kind = kind
        self.sent: list[tuple[str, Message]] = []
        self.fail = 0

    async def send(self, address: str, message: Message) -> None:
        if self.fail:
            self.fail -= 1
            raise DeliveryError(f"{self.name}: {address} unreachable")
        self.sent.append((address, message))

    async def close(self) -> None:
        pass

    def to(self, address: str) -> list[Message]:
        return [m for a, m in self.sent if a == address]


def config(**over) -> NotificationsConfig:
    base = {
        "timezone": "Europe/Moscow",
        "notifiers": [
            {"name": "mail", "type": "email", "host": "localhost", "sender": "scada@x"},
            {"name": "gsm", "type": "sms", "port": "/dev/null"},
        ],
        "recipients": [
            {"name": "ivan", "email": "ivan@x", "phone": "+79990000001"},
            {"name": "olga", "email": "olga@x"},
            {"name": "duty", "email": "duty@x"},
            {"name": "chief", "email": "chief@x"},
        ],
        "roster": [
            {
                "name": "b1-day",
                "areas": ["b1"],
                "priorities": [1, 2, 3],
                "windows": [
                    {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"}
                ],
                "levels": [["ivan"], ["olga"], ["chief"]],
            },
            {
                "name": "night",
                "windows": [{"start": "18:00", "end": "08:00"}],
                "levels": [["duty"]],
            },
            {"name": "critical", "priorities": [1], "levels": [["chief"]]},
        ],
        "escalation_min": 15,
        "consolidate_s": 60,
        "rate_limit": {"max_messages": 10, "per_s": 3600},
        "retry": {"attempts": 3, "backoff_s": 30, "max_backoff_s": 600},
    }
    base.update(over)
    return NotificationsConfig.model_validate(base)


@pytest.fixture
def routed(make_site):
    def make(t0: float = MONDAY_10, **over):
        site = make_site(RULES, clock=Clock(t0))
        mail, gsm = Recorder("mail", "email"), Recorder("gsm", "sms")
        router = Router(
            config(**over), {"mail": mail, "gsm": gsm}, journal=site.journal, clock=site.clock
        )
        site.engine.subscribe(router.handle)
        site.set("b1.hm.supply_c", 70)
        site.set("b2.hm.supply_c", 70)
        site.set("b1.hm.fault", False)
        site.set("flag", False)
        return site, router, mail, gsm

    return make


async def test_routing_by_priority_area_and_window(routed) -> None:
    site, router, mail, gsm = routed()
    site.set("b1.hm.supply_c", 90)  # P2 in b1, Monday 10:00: the day roster
    site.set("b2.hm.supply_c", 90)  # P2 in b2: nobody on duty by day for b2
    site.set("b1.hm.fault", True)  # P1 in b1: day roster and the critical roster
    await router.run_due()
    # one consolidated message per recipient and address
    assert len(mail.to("ivan@x")) == 1 and len(gsm.to("+79990000001")) == 1
    assert mail.to("ivan@x")[0].subject == "2 alarms, highest P1 critical (b1)"
    assert "b1.hm.supply_c" in mail.to("ivan@x")[0].body
    assert [m.subject.startswith("[P1] b1") for m in mail.to("chief@x")] == [True]
    assert mail.to("duty@x") == []
    assert not any("b2" in m.body for _, m in mail.sent)


async def test_night_window_past_midnight(routed) -> None:
    site, router, mail, _ = routed(t0=MONDAY_22)
    site.set("b2.hm.supply_c", 90)
    await router.run_due()
    assert len(mail.to("duty@x")) == 1 and mail.to("ivan@x") == []
    entry = RosterEntry.model_validate(
        {
            "name": "n",
            "windows": [{"days": ["fri"], "start": "22:00", "end": "06:00"}],
            "levels": [["x"]],
        }
    )
    assert in_window(
        entry, datetime(2026, 6, 6, 3, 0, tzinfo=MSK)
    )  # Saturday 03:00 belongs to Friday night
    assert not in_window(entry, datetime(2026, 6, 7, 3, 0, tzinfo=MSK))  # Sunday 03:00 does not
    assert not in_window(entry, datetime(2026, 6, 5, 21, 59, tzinfo=MSK))


async def test_escalation_until_acknowledged(routed) -> None:
    site, router, mail, _ = routed()
    site.set("b1.hm.supply_c", 90)
    await router.run_due()
    assert [len(mail.to(a)) for a in ("ivan@x", "olga@x", "chief@x")] == [1, 0, 0]
    site.clock.advance(14 * 60)
    await router.run_due()
    assert mail.to("olga@x") == []
    site.clock.advance(60)
    await router.run_due()
    (esc,) = mail.to("olga@x")
    assert esc.subject.startswith("ESCALATED [P2] b1") and "unacknowledged" in esc.body
    escalations = site.journal.history(kinds=["escalated"])
    assert len(escalations) == 1 and "olga" in escalations[0]["comment"]
    site.engine.ack("hot:b1.hm.supply_c:h", "olga", "on my way")
    site.clock.advance(3600)
    await router.run_due()
    assert mail.to("chief@x") == []


async def test_ack_before_sending_drops_the_notice(routed) -> None:
    site, router, mail, _ = routed(consolidate_s=300)
    site.set("b1.hm.supply_c", 90)
    await router.run_due()
    site.set("b1.hm.fault", True)  # held: within consolidate_s of the first message to ivan
    site.engine.ack("fault:b1.hm.fault", "ivan", "seen on the HMI")
    site.clock.advance(301)
    await router.run_due()
    assert len(mail.to("ivan@x")) == 1


async def test_consolidation_one_message_for_a_burst(routed) -> None:
    site, router, mail, _ = routed()
    site.set("b1.hm.supply_c", 90)
    await router.run_due()
    for _ in range(3):
        site.clock.advance(5)
        site.set("flag", True)
        site.set("flag", False)  # chattering: each activation is a new occurrence
        await router.run_due()
    site.set("b1.hm.fault", True)
    await router.run_due()
    assert len(mail.to("ivan@x")) == 1  # held
    site.clock.advance(60)
    await router.run_due()
    first, burst = mail.to("ivan@x")
    assert "supply_c" in first.subject
    # one message for the burst; a chattering alarm appears once (its superseded occurrences
    # were closed by the newer one)
    assert burst.subject == "2 alarms, highest P1 critical (b1)"
    lines = burst.body.splitlines()
    assert lines[0].startswith("01.06 10:00 P1 b1 b1.hm.fault: on")  # sorted by priority
    assert lines[1].startswith("01.06 10:00 P3 b1 flag: on")
    assert burst.occurrences == (site.engine.get("fault:b1.hm.fault").occurrence, 4)


async def test_rate_limit_merges_the_rest(routed) -> None:
    site, router, mail, _ = routed(consolidate_s=0, rate_limit={"max_messages": 1, "per_s": 3600})
    t0 = site.clock.t
    for tag, value in (("b1.hm.supply_c", 90), ("b1.hm.fault", True), ("flag", True)):
        site.set(tag, value)
        await router.run_due()
        site.clock.advance(60)
    assert len(mail.to("ivan@x")) == 1
    site.clock.t = t0 + 3599
    await router.run_due()
    assert len(mail.to("ivan@x")) == 1
    site.clock.t = t0 + 3600
    await router.run_due()
    msgs = mail.to("ivan@x")
    assert len(msgs) == 2 and msgs[1].subject == "2 alarms, highest P1 critical (b1)"


async def test_failed_delivery_retried_with_backoff_and_journaled(routed) -> None:
    site, router, mail, gsm = routed()
    mail.fail = 2
    t0 = site.clock.t
    site.set("b1.hm.supply_c", 90)
    assert await router.run_due() == 2  # e-mail and SMS to ivan
    assert mail.sent == [] and len(gsm.sent) == 1
    site.clock.t = t0 + 29
    assert await router.run_due() == 0
    site.clock.t = t0 + 30
    assert await router.run_due() == 1  # second attempt fails too, next after 60 s
    site.clock.t = t0 + 89
    assert await router.run_due() == 0
    site.clock.t = t0 + 90
    assert await router.run_due() == 1
    assert len(mail.to("ivan@x")) == 1
    rows = {r["notifier"]: r for r in site.journal.deliveries()}
    assert rows["mail"]["status"] == "sent" and rows["mail"]["attempts"] == 3
    assert "unreachable" in rows["mail"]["error"]  # the last error is kept
    assert rows["gsm"]["status"] == "sent" and rows["gsm"]["attempts"] == 1


async def test_delivery_gives_up_after_max_attempts(routed) -> None:
    site, router, mail, _ = routed()
    mail.fail = 99
    site.set("b1.hm.supply_c", 90)
    for _ in range(5):
        await router.run_due()
        site.clock.advance(600)
    row = next(r for r in site.journal.deliveries() if r["address"] == "ivan@x")
    assert (row["status"], row["attempts"]) == ("failed", 3) and "unreachable" in row["error"]
    assert router.failed >= 1


async def test_retry_against_a_real_webhook(routed, tmp_path) -> None:
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port
    from tornado.web import Application

    from alarms.notify.webhook import WebhookNotifier

    from .test_notifiers import _Hook  # the same tornado handler

    received: list = []
    codes = [503]
    sock, port = bind_unused_port()
    server = HTTPServer(Application([(r"/hook", _Hook, {"received": received, "codes": codes})]))
    server.add_sockets([sock])
    try:
        cfg = config(
            notifiers=[{"name": "ops", "type": "webhook", "url": f"http://127.0.0.1:{port}/hook"}],
            recipients=[{"name": "ops", "webhook": "ops"}],
            roster=[{"name": "all", "levels": [["ops"]]}],
        )
        site, _, _, _ = routed()
        hook = WebhookNotifier(
            WebhookNotifierConfig(name="ops", type="webhook", url=f"http://127.0.0.1:{port}/hook")
        )
        router = Router(cfg, {"ops": hook}, journal=site.journal, clock=site.clock)
        site.engine.subscribe(router.handle)
        site.set("b1.hm.fault", True)
        await router.run_due()
        site.clock.advance(30)
        await router.run_due()
        assert len(received) == 2  # 503, then accepted
        assert received[1][2]["alarms"][0]["key"] == "fault:b1.hm.fault"
        row = site.journal.deliveries()[0]
        assert (row["status"], row["attempts"]) == ("sent", 2)
    finally:
        server.stop()
        await server.close_all_connections()


async def test_router_task_sends_on_events(routed) -> None:
    import asyncio

    site, router, mail, _ = routed()
    sent = asyncio.Event()
    orig = mail.send

    async def send(address, message):
        await orig(address, message)
        sent.set()

    mail.send = send
    await router.start()
    try:
        site.set("b1.hm.supply_c", 90)
        await asyncio.wait_for(sent.wait(), 5)
    finally:
        await router.stop()
    assert mail.to("ivan@x")


async def test_restarted_router_resumes_escalation_without_resending(routed) -> None:
    site, router, mail, _ = routed()
    site.set("b1.hm.supply_c", 90)
    await router.run_due()
    assert len(mail.to("ivan@x")) == 1
    site.clock.advance(10 * 60)
    # restart: a new engine restores the alarm, a new router adopts it
    site.restart()
    fresh = Router(config(), {"mail": mail}, journal=site.journal, clock=site.clock)
    site.engine.subscribe(fresh.handle)
    assert fresh.adopt(site.engine.active()) == 1
    await fresh.run_due()
    assert len(mail.to("ivan@x")) == 1 and mail.to("olga@x") == []
    site.clock.advance(5 * 60)  # 15 minutes after it was raised
    await fresh.run_due()
    assert len(mail.to("olga@x")) == 1
