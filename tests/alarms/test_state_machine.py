"""The ISA-18.2 state machine, driven through a real engine by a table of event sequences."""

from __future__ import annotations

import pytest

from alarms.model import CORE_TRANSITIONS, AlarmState, EventKind, Trigger, core_transition

KEY = "f:flag"
RULES = [
    {
        "id": "f",
        "kind": "state",
        "tag": "flag",
        "equals": True,
        "priority": 2,
        "suppress_when": "inhibit",
    }
]

# each step: "operation expected_state occurrence" where occurrence is
# new (a new occurrence id), same (unchanged) or - (none open)
TABLE = {
    "raise": ["on unacknowledged new"],
    "ack then clear": ["on unacknowledged new", "ack acknowledged same", "off normal -"],
    "clear then ack": ["on unacknowledged new", "off rtn_unacknowledged same", "ack normal -"],
    "returns before ack is a new occurrence": [
        "on unacknowledged new",
        "off rtn_unacknowledged same",
        "on unacknowledged new",
    ],
    "acked, cleared, back again": [
        "on unacknowledged new",
        "ack acknowledged same",
        "off normal -",
        "on unacknowledged new",
    ],
    "ack of a normal alarm does nothing": ["ack normal -"],
    "second ack does nothing": [
        "on unacknowledged new",
        "ack acknowledged same",
        "ack acknowledged same",
    ],
    "shelve active, clears while shelved": [
        "on unacknowledged new",
        "shelve shelved -",
        "off shelved -",
        "unshelve normal -",
    ],
    "unshelve while still active re-annunciates": [
        "on unacknowledged new",
        "ack acknowledged same",
        "shelve shelved -",
        "unshelve unacknowledged new",
    ],
    "shelve expires while active": [
        "on unacknowledged new",
        "shelve shelved -",
        "expire unacknowledged new",
    ],
    "shelve expires while normal": ["shelve shelved -", "expire normal -"],
    "raised while shelved shows at expiry": [
        "shelve shelved -",
        "on shelved -",
        "expire unacknowledged new",
    ],
    "suppressed by design before activation": [
        "suppress suppressed -",
        "on suppressed -",
        "unsuppress unacknowledged new",
    ],
    "suppression ends an occurrence": [
        "on unacknowledged new",
        "suppress suppressed -",
        "off suppressed -",
        "unsuppress normal -",
    ],
    "out of service and back": [
        "on unacknowledged new",
        "oos out_of_service -",
        "off out_of_service -",
        "on out_of_service -",
        "ios unacknowledged new",
    ],
    "out of service wins over shelved": [
        "shelve shelved -",
        "oos out_of_service -",
        "unshelve out_of_service -",
        "ios normal -",
    ],
    "shelved wins over suppressed": [
        "suppress suppressed -",
        "shelve shelved -",
        "on shelved -",
        "unshelve suppressed -",
        "unsuppress unacknowledged new",
    ],
}


def run(site, op: str) -> None:
    e = site.engine
    if op == "on":
        site.set("flag", True)
    elif op == "off":
        site.set("flag", False)
    elif op == "ack":
        e.ack(KEY, "olga", "seen")
    elif op == "shelve":
        e.shelve(KEY, "olga", 600, "valve being replaced")
    elif op == "unshelve":
        e.unshelve(KEY, "olga")
    elif op == "expire":
        site.advance(601)
    elif op == "suppress":
        site.set("inhibit", True)
    elif op == "unsuppress":
        site.set("inhibit", False)
    elif op == "oos":
        e.set_out_of_service(KEY, "olga", True, "sensor repair")
    elif op == "ios":
        e.set_out_of_service(KEY, "olga", False)
    else:
        raise AssertionError(op)


@pytest.mark.parametrize("name", list(TABLE))
def test_sequence(make_site, name: str) -> None:
    site = make_site(RULES)
    site.set("flag", False)
    site.set("inhibit", False)
    seen: set[int] = set()
    last = None
    for step in TABLE[name]:
        op, expected, occ = step.split()
        site.clock.advance(1)
        run(site, op)
        alarm = site.engine.get(KEY)
        assert alarm.state.value == expected, f"{name}: after {op}"
        if occ == "new":
            assert alarm.occurrence is not None and alarm.occurrence not in seen, (
                f"{name}: after {op}"
            )
        elif occ == "same":
            assert alarm.occurrence == last, f"{name}: after {op}"
        else:
            assert alarm.occurrence is None, f"{name}: after {op}"
        if alarm.occurrence is not None:
            seen.add(alarm.occurrence)
        last = alarm.occurrence


def test_core_table_is_complete_and_closed() -> None:
    core = [AlarmState.NORMAL, AlarmState.UNACKED, AlarmState.ACKED, AlarmState.RTN_UNACKED]
    for (state, _trigger), (new, _) in CORE_TRANSITIONS.items():
        assert state in core and new in core
    # every core state can be left, and every trigger that does not apply is a no-op
    for state in core:
        assert any(core_transition(state, t) for t in Trigger)
    assert core_transition(AlarmState.ACKED, Trigger.ACK) is None
    assert core_transition(AlarmState.NORMAL, Trigger.CLEAR) is None


def test_events_carry_user_comment_and_occurrence(make_site) -> None:
    site = make_site(RULES)
    site.set("flag", False)
    site.set("flag", True)
    occ = site.engine.get(KEY).occurrence
    site.engine.ack(occ, "olga", "checked on site")
    site.set("flag", False)
    assert site.kinds() == ["raised", "acked", "cleared"]
    acked = site.events[1]
    assert (acked.user, acked.comment, acked.occurrence) == ("olga", "checked on site", occ)
    assert acked.previous is AlarmState.UNACKED and acked.alarm.state is AlarmState.ACKED
    assert site.events[2].alarm.state is AlarmState.NORMAL and site.events[2].occurrence == occ


def test_superseded_occurrence_is_closed_unacknowledged(make_site) -> None:
    site = make_site(RULES)
    site.set("flag", False)
    site.set("flag", True)
    first = site.engine.get(KEY).occurrence
    site.set("flag", False)
    site.set("flag", True)
    second = site.engine.get(KEY).occurrence
    assert second != first
    closed = [e for e in site.events if e.kind is EventKind.CLOSED]
    assert [e.occurrence for e in closed] == [first]
    # an ack naming the old occurrence does not acknowledge the new one
    assert site.engine.ack(first, "olga") == []
    assert site.state(KEY) == "unacknowledged"
    rows = {r["id"]: r for r in site.journal.occurrences()}
    assert rows[first]["closed_ts"] is not None and rows[first]["acked_ts"] is None
    assert rows[second]["closed_ts"] is None


def test_operator_actions_validate_input(make_site) -> None:
    site = make_site(RULES)
    with pytest.raises(ValueError, match="user"):
        site.engine.ack(KEY, "")
    with pytest.raises(ValueError, match="reason"):
        site.engine.shelve(KEY, "olga", 60, "")
    with pytest.raises(ValueError, match="duration"):
        site.engine.shelve(KEY, "olga", -5, "x")
    with pytest.raises(ValueError, match="reason"):
        site.engine.set_out_of_service(KEY, "olga", True)
    with pytest.raises(KeyError, match="nope"):
        site.engine.shelve("nope", "olga", 60, "x")
