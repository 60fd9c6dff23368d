"""Journal: restart restores state, history filters, filtered acks, KPIs on a synthetic history."""

from __future__ import annotations

import sqlite3

import pytest

from alarms.kpi import compute_kpis
from alarms.model import AlarmFilter, AlarmState

RULES = [
    {"id": "hot", "kind": "limit", "tags": "b*.hm.supply_c", "limits": {"h": 85}, "priority": 2},
    {"id": "fault", "kind": "state", "tag": "b1.hm.fault", "equals": True, "priority": 1},
    {"id": "lost", "kind": "comm_loss", "template": "meter", "priority": 3},
]


def raise_all(site) -> None:
    site.set("b1.hm.supply_c", 90)
    site.set("b2.hm.supply_c", 91)
    site.set("b1.hm.fault", True)
    site.set("b1.m1.online", False)


def test_restart_restores_active_unacked_and_overrides(make_site) -> None:
    site = make_site(RULES)
    raise_all(site)
    site.engine.ack("fault:b1.hm.fault", "olga", "electrician called")
    site.set("b2.hm.supply_c", 70)  # -> rtn unacknowledged
    site.engine.shelve("lost:b1.m2", "olga", 3600, "meter removed for calibration")
    site.engine.set_out_of_service("lost:b1.m1", "ivan", True, "rewiring")
    before = {
        a.key: (a.state, a.occurrence, a.message, a.acked_by)
        for a in site.engine.active(include_hidden=True)
    }
    site.clock.advance(5)

    site.restart()  # values are still in the database: conditions unchanged
    after = {
        a.key: (a.state, a.occurrence, a.message, a.acked_by)
        for a in site.engine.active(include_hidden=True)
    }
    assert after == before
    assert site.events == []  # nothing re-raised, nothing lost
    assert site.engine.get("lost:b1.m2").shelve_reason == "meter removed for calibration"
    # the shelve timer survives too
    site.advance(3600)
    assert site.state("lost:b1.m2") == "normal"
    # occurrence ids keep increasing across restarts
    site.set("b2.hm.supply_c", 99)
    new = site.engine.get("hot:b2.hm.supply_c:h").occurrence
    assert new > max(o for _, o, _, _ in before.values() if o is not None)


def test_restart_clears_what_cleared_while_down(make_site) -> None:
    site = make_site(RULES)
    raise_all(site)
    occ = site.engine.get("hot:b1.hm.supply_c:h").occurrence
    site.journal.commit()
    site.db.update("b1.hm.supply_c", 60)  # changed while the engine was not running
    site.restart()
    a = site.engine.get("hot:b1.hm.supply_c:h")
    assert (a.state, a.occurrence) == (AlarmState.RTN_UNACKED, occ)
    assert site.kinds() == ["cleared"]


def test_restart_closes_occurrences_of_removed_rules(make_site, tmp_path) -> None:
    site = make_site(RULES)
    raise_all(site)
    site.rules = site.rules[:1]
    site.restart()
    assert {a.rule_id for a in site.engine.active()} == {"hot"}
    open_keys = {o["key"] for o in site.journal.occurrences(open_only=True)}
    assert open_keys == {"hot:b1.hm.supply_c:h", "hot:b2.hm.supply_c:h"}


def test_ack_filtered_set(make_site) -> None:
    site = make_site(RULES)
    raise_all(site)
    done = site.engine.ack(AlarmFilter(areas="b1", priorities=[2, 3]), "olga", "bulk ack")
    assert sorted(a.key for a in done) == ["hot:b1.hm.supply_c:h", "lost:b1.m1"]
    states = {a.key: a.state.value for a in site.engine.active()}
    assert states == {
        "hot:b1.hm.supply_c:h": "acknowledged",
        "lost:b1.m1": "acknowledged",
        "hot:b2.hm.supply_c:h": "unacknowledged",
        "fault:b1.hm.fault": "unacknowledged",
    }
    assert all(
        e.user == "olga" and e.comment == "bulk ack" for e in site.events if e.kind.value == "acked"
    )
    # by text, and a list of ids
    assert [a.key for a in site.engine.ack(AlarmFilter(text="B2.HM"), "olga")] == [
        "hot:b2.hm.supply_c:h"
    ]
    occ = site.engine.get("fault:b1.hm.fault").occurrence
    assert [a.key for a in site.engine.ack([occ, 999999], "olga")] == ["fault:b1.hm.fault"]
    assert site.engine.ack(AlarmFilter(), "olga") == []


def test_history_filters(make_site) -> None:
    site = make_site(RULES)
    raise_all(site)
    site.clock.advance(60)
    mid = site.clock.t
    site.engine.ack("fault:b1.hm.fault", "olga", "relay reset")
    site.set("b1.hm.supply_c", 70)
    j = site.journal
    assert len(j.history()) == 6
    assert [h["kind"] for h in j.history(since=mid, newest_first=False)] == ["acked", "cleared"]
    assert {h["key"] for h in j.history(priorities=[1])} == {"fault:b1.hm.fault"}
    assert {h["area"] for h in j.history(areas="b2")} == {"b2"}
    assert [h["kind"] for h in j.history(states=["rtn_unacknowledged"])] == ["cleared"]
    assert [h["comment"] for h in j.history(text="relay")] == ["relay reset"]
    assert j.history(until=mid - 1, kinds=["acked"]) == []
    raised = j.history(kinds=["raised"], key="hot:*", newest_first=False)
    assert [h["value"] for h in raised] == [90.0, 91.0]


def test_journal_is_wal_sqlite_in_data_dir(make_site, tmp_path) -> None:
    site = make_site(RULES)
    raise_all(site)
    conn = sqlite3.connect(tmp_path / "alarms.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (
        conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 4
    )  # committed, visible to others
    assert (
        conn.execute("SELECT COUNT(*) FROM occurrences WHERE closed_ts IS NULL").fetchone()[0] == 4
    )


def test_count_tags(make_site) -> None:
    from alarms.points import count_tag_defs

    site = make_site(RULES, extra_defs=count_tag_defs(["b1", "b2"]))
    raise_all(site)
    site.engine.ack("fault:b1.hm.fault", "olga")
    site.db.flush()
    assert site.db.read("alarms.active").value == 4
    assert site.db.read("alarms.unacked").value == 3
    assert site.db.read("alarms.b1.active").value == 3
    assert site.db.read("alarms.b2.unacked").value == 1
    site.engine.shelve("hot:b2.hm.supply_c:h", "olga", 60, "test")
    site.db.flush()
    assert site.db.read("alarms.b2.active").value == 0
    assert site.db.read("alarms.shelved").value == 1


# ----------------------------------------------------------------------------- KPIs

H = 3600.0
DAY = 24 * H


def test_kpis_on_synthetic_history() -> None:
    t0 = 1_780_000_200.0 - (1_780_000_200.0 % 600)  # a bucket boundary
    acts: list[tuple[float, str]] = []
    # a flood: 25 alarms in the first 10 minutes, 12 in the next, from 5 points
    acts += [(t0 + i * 20, f"p{i % 5}") for i in range(25)]
    acts += [(t0 + 600 + i * 45, f"p{i % 3}") for i in range(12)]
    # a chattering point: 3 activations within 50 s, later 2 within a minute (not chattering)
    acts += [(t0 + 2 * H, "chat"), (t0 + 2 * H + 20, "chat"), (t0 + 2 * H + 50, "chat")]
    acts += [(t0 + 3 * H, "slow"), (t0 + 3 * H + 59, "slow"), (t0 + 3 * H + 121, "slow")]
    # quiet otherwise; one activation outside the period
    acts.append((t0 - 10, "before"))
    open_occ = [(1, "old", t0 - 2 * DAY), (2, "young", t0 + 5 * H)]
    r = compute_kpis(acts, open_occ, t0, t0 + 6 * H)
    assert r.activations == 43
    assert r.average_per_10min == pytest.approx(43 / 36, abs=1e-3)
    assert r.max_per_10min == 25
    assert r.floods == [{"start": t0, "end": t0 + 1200, "count": 37, "peak_per_10min": 25}]
    assert r.percent_time_in_flood == pytest.approx(100 * 2 / 36, abs=0.01)
    assert [b["key"] for b in r.bad_actors][:3] == ["p0", "p1", "p2"]
    assert r.bad_actors[0]["count"] == 9 and len(r.bad_actors) <= 10
    assert [c["key"] for c in r.chattering] == ["chat"]
    assert [s["key"] for s in r.stale] == ["old"]
    assert r.to_json()["floods"][0]["start"].endswith("+00:00")


def test_kpis_from_the_journal(make_site) -> None:
    site = make_site([{"id": "f", "kind": "state", "tag": "flag", "equals": True}])
    for _ in range(4):  # chattering: four activations in 40 s
        site.set("flag", True)
        site.clock.advance(5)
        site.set("flag", False)
        site.clock.advance(5)
    site.set("flag", True)
    site.clock.advance(25 * H)
    r = site.journal.kpis(site.clock.t - 26 * H, site.clock.t)
    assert r.activations == 5
    assert r.chattering == [{"key": "f:flag", "max_per_minute": 5, "count": 5}]
    assert [s["key"] for s in r.stale] == ["f:flag"]
