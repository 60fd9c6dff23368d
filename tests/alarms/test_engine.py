"""Engine behaviour beyond single rules: suppression release, reload, the tick task, subscribers."""

from __future__ import annotations

import asyncio
import json

from alarms.model import AlarmState, EventKind
from scada.cli import main as cli

GATEWAY = [
    {"id": "gw_lost", "kind": "comm_loss", "device": "b1.gw", "priority": 2},
    {
        "id": "meter_lost",
        "kind": "comm_loss",
        "template": "meter",
        "parent_device": "b1.gw",
        "on_delay_s": 20,
    },
]


def test_devices_returning_after_their_gateway_raise_nothing(make_site) -> None:
    site = make_site(GATEWAY)
    for dev in ("b1.gw", "b1.m1", "b1.m2"):
        site.set(f"{dev}.online", True)
    site.set("b1.gw.online", False)
    site.advance(5)
    site.set("b1.m1.online", False)  # the next poll finds the meters dead too
    site.set("b1.m2.online", False)
    site.advance(60)
    assert [a.key for a in site.engine.active()] == ["gw_lost:b1.gw"]
    site.set("b1.gw.online", True)  # the gateway is back; the meters answer at their next poll
    site.advance(10)
    site.set("b1.m1.online", True)
    site.set("b1.m2.online", True)
    site.advance(60)
    assert {e.alarm.rule_id for e in site.events if e.kind is EventKind.RAISED} == {"gw_lost"}
    assert site.state("meter_lost:b1.m1") == "normal"


def test_device_still_dead_after_gateway_returns_is_raised_after_its_delay(make_site) -> None:
    site = make_site(GATEWAY)
    for dev in ("b1.gw", "b1.m1", "b1.m2"):
        site.set(f"{dev}.online", True)
    site.db.update("b1.gw.online", False)
    site.db.update("b1.m1.online", False)
    site.db.flush()
    site.advance(60)
    site.set("b1.gw.online", True)
    site.advance(19)
    assert site.state("meter_lost:b1.m1") == "normal"
    site.advance(2)
    assert site.state("meter_lost:b1.m1") == "unacknowledged"


def test_reload_keeps_state_of_unchanged_points(make_site) -> None:
    from .conftest import parse_rules

    rules = [
        {"id": "hot", "kind": "limit", "tags": "b*.hm.supply_c", "limits": {"h": 85}},
        {"id": "fault", "kind": "state", "tag": "b1.hm.fault", "equals": True},
    ]
    site = make_site(rules)
    site.set("b1.hm.supply_c", 90)
    site.set("b1.hm.fault", True)
    occ = site.engine.get("hot:b1.hm.supply_c:h").occurrence
    site.events.clear()
    # the limit changes and the fault rule goes away
    site.engine.reload(parse_rules([{**rules[0], "limits": {"h": 95}, "priority": 1}]))
    a = site.engine.get("hot:b1.hm.supply_c:h")
    assert a.occurrence == occ and a.priority == 1
    assert a.state is AlarmState.RTN_UNACKED  # 90 < 95 now: cleared, same occurrence
    assert [e.kind for e in site.events] == [EventKind.CLEARED]
    assert site.journal.occurrences(key="fault:*")[0]["close_reason"] == "removed"


def test_failing_subscriber_does_not_break_others(make_site, caplog) -> None:
    site = make_site([{"id": "f", "kind": "state", "tag": "flag", "equals": True}])
    seen = []

    def broken(event):
        raise RuntimeError("websocket gone")

    site.engine.subscribe(broken)
    unsubscribe = site.engine.subscribe(seen.append)
    site.set("flag", True)
    assert len(seen) == 1 and "websocket gone" in caplog.text
    unsubscribe()
    site.set("flag", False)
    assert len(seen) == 1 and site.kinds() == ["raised", "cleared"]


def test_message_template_tolerates_missing_values(make_site) -> None:
    site = make_site(
        [
            {
                "id": "f",
                "kind": "state",
                "tag": "b1.hm.mode",
                "equals": "manual",
                "message": "{tag}: {value:.1f} in {building} ({limit})",
            }
        ]
    )
    site.set("b1.hm.mode", "manual")
    assert site.engine.get("f:b1.hm.mode").message == "b1.hm.mode: manual in b1 (?)"


async def test_tick_task_expires_shelving_on_the_loop(make_site) -> None:
    site = make_site([{"id": "f", "kind": "state", "tag": "flag", "equals": True}], start=False)
    site.engine._tick_s = 0.01  # the production loop task, ticking fast on a fake clock
    unshelved = asyncio.Event()

    async def on_event(event):  # async subscribers are awaited on the loop
        if event.kind is EventKind.UNSHELVED:
            unshelved.set()

    site.engine.subscribe(on_event)
    site.engine.start()
    try:
        site.set("flag", True)
        site.engine.shelve("f:flag", "olga", 300, "noisy")
        site.clock.advance(301)
        await asyncio.wait_for(unshelved.wait(), 5)
        assert site.state("f:flag") == "unacknowledged"
    finally:
        await site.engine.stop()


def test_cli_reads_the_journal(make_site, tmp_path, capsys) -> None:
    site = make_site([{"id": "f", "kind": "state", "tag": "flag", "equals": True, "priority": 1}])
    site.clock.t = __import__("time").time() - 3600
    site.set("flag", True)
    site.engine.ack("f:flag", "olga", "on it")
    assert cli(["alarms", "--data-dir", str(tmp_path), "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["key"], r["state"], r["acked_by"]) for r in rows] == [
        ("f:flag", "acknowledged", "olga")
    ]
    assert cli(["alarms", "--data-dir", str(tmp_path), "history", "--json", "--text", "on it"]) == 0
    assert [r["kind"] for r in json.loads(capsys.readouterr().out)] == ["acked"]
    assert cli(["alarms", "--data-dir", str(tmp_path), "kpi", "--since", "2h", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["activations"] == 1
    assert cli(["alarms", "--data-dir", str(tmp_path), "history", "--since", "soon"]) == 2
    assert cli(["alarms", "history", "--since", "yesterday", "--data-dir", str(tmp_path)]) == 0
    assert cli(["alarms", "--data-dir", str(tmp_path / "none"), "list"]) == 1


def test_tag_reload_rebinds_globs_and_keeps_state(make_site) -> None:
    from tags.model import Source, TagDef, TagType

    from .conftest import site_defs

    site = make_site(
        [
            {"id": "hot", "kind": "limit", "tags": "b*.hm.supply_c", "limits": {"h": 85}},
            {
                "id": "sp",
                "kind": "deviation",
                "tag": "b1.101.th.room_c",
                "setpoint": "b1.101.th.setpoint_c",
                "max_deviation": 3,
            },
        ]
    )
    site.set("b1.hm.supply_c", 90)
    occ = site.engine.get("hot:b1.hm.supply_c:h").occurrence
    site.engine.shelve("hot:b1.hm.supply_c:h", "olga", 600, "known")
    # a new building appears, and the setpoint tag is removed
    defs = [d for d in site_defs() if d.name != "b1.101.th.setpoint_c"]
    defs.append(
        TagDef("b3.hm.supply_c", TagType.FLOAT, building="b3", device="b3.hm", source=Source.DEVICE)
    )
    site.db.replace_defs(defs)
    assert site.engine.get("hot:b1.hm.supply_c:h").state is AlarmState.SHELVED
    assert any("b1.101.th.setpoint_c" in e for e in site.engine.binding_errors)
    site.set("b3.hm.supply_c", 99)
    assert site.state("hot:b3.hm.supply_c:h") == "unacknowledged"
    site.advance(601)  # the shelve timer survived the rebind
    assert site.engine.get("hot:b1.hm.supply_c:h").occurrence not in (None, occ)


def test_strict_reload_failure_keeps_old_rules(make_site) -> None:
    import pytest

    from alarms.rules import BindingError

    from .conftest import parse_rules

    site = make_site([{"id": "f", "kind": "state", "tag": "flag", "equals": True}])
    with pytest.raises(BindingError, match="nope"):
        site.engine.reload(
            parse_rules([{"id": "g", "kind": "state", "tag": "nope", "equals": True}])
        )
    site.set("flag", True)
    assert site.state("f:flag") == "unacknowledged"
