"""TagDatabase: change detection, str tags, quality, staleness, hot reload (no event loop)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tags import ChangeBatch, Quality, Reason, TagDatabase, TagDef, TagType, TagValue


class Clock:
    """A settable clock for the database (epoch seconds)."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_db(*defs: TagDef, clock: Clock | None = None) -> tuple[TagDatabase, list[ChangeBatch]]:
    db = TagDatabase(defs, clock=clock or Clock())
    batches: list[ChangeBatch] = []
    db.subscribe("*", batches.append)
    return db, batches


def test_before_any_update_tag_is_bad_not_connected() -> None:
    db, _ = make_db(TagDef("a"), TagDef("s", TagType.STR))
    assert db.read("a") == TagValue(None, Quality.BAD, Reason.NOT_CONNECTED, 0.0)
    assert db.read("s") == TagValue(None, Quality.BAD, Reason.NOT_CONNECTED, 0.0)


def test_first_value_is_a_change_and_is_published() -> None:
    db, batches = make_db(TagDef("a", deadband=5.0))
    assert db.update_many([db.id_of("a")], [0.0]) == 1
    assert db.flush() == 1
    assert batches[-1]["a"] == TagValue(0.0, Quality.GOOD, Reason.NONE, 1000.0)


def test_deadband_edges() -> None:
    db, batches = make_db(TagDef("a", deadband=0.5))
    ids = db.ids_of(["a"])
    db.update_many(ids, [10.0])
    db.flush()
    batches.clear()
    assert db.update_many(ids, [10.5]) == 0, "exactly at deadband is not a change"
    assert db.update_many(ids, [9.5]) == 0
    assert db.update_many(ids, [10.25]) == 0
    assert db.read("a").value == 10.0, "the stored value is the last published one"
    assert db.flush() == 0
    assert batches == []
    assert db.update_many(ids, [10.5000001]) == 1, "just past deadband"
    assert db.read("a").value == 10.5000001
    # the deadband is measured from the last published value, not the last update
    assert db.update_many(ids, [10.9]) == 0
    assert db.update_many(ids, [11.1]) == 1


def test_zero_deadband_detects_any_move_but_not_equal_values() -> None:
    db, _ = make_db(TagDef("a"))
    ids = db.ids_of(["a"])
    db.update_many(ids, [1.0])
    assert db.update_many(ids, [1.0]) == 0
    assert db.update_many(ids, [1.0 + 1e-12]) == 1


def test_quality_only_change_and_reason_only_change() -> None:
    db, batches = make_db(TagDef("a", deadband=1.0))
    ids = db.ids_of(["a"])
    db.update_many(ids, [3.0], ts=5.0)
    db.flush()
    assert db.update_many(ids, [3.0], Quality.UNCERTAIN, ts=6.0, reason=Reason.MANUAL) == 1
    assert db.update_many(ids, [3.0], Quality.UNCERTAIN, ts=7.0, reason=Reason.OUT_OF_RANGE) == 1
    db.flush()
    assert batches[-1]["a"] == TagValue(3.0, Quality.UNCERTAIN, Reason.OUT_OF_RANGE, 7.0)


def test_non_change_keeps_published_ts() -> None:
    db, _ = make_db(TagDef("a", deadband=1.0))
    ids = db.ids_of(["a"])
    db.update_many(ids, [3.0], ts=5.0)
    db.update_many(ids, [3.5], ts=9.0)
    assert db.read("a").ts == 5.0


def test_update_many_with_per_row_quality_ts_and_bools() -> None:
    db, batches = make_db(TagDef("f"), TagDef("i", TagType.INT), TagDef("b", TagType.BOOL))
    ids = db.ids_of(["f", "i", "b"])
    n = db.update_many(
        ids,
        np.array([1.5, 7.0, 1.0]),
        np.array([Quality.GOOD, Quality.UNCERTAIN, Quality.GOOD]),
        np.array([1.0, 2.0, 3.0]),
        np.array([Reason.NONE, Reason.MANUAL, Reason.NONE]),
    )
    assert n == 3
    db.flush()
    b = batches[-1]
    assert b["f"] == TagValue(1.5, Quality.GOOD, Reason.NONE, 1.0)
    assert b["i"] == TagValue(7, Quality.UNCERTAIN, Reason.MANUAL, 2.0)
    assert type(b["i"].value) is int
    assert b["b"].value is True
    assert db.read("b").value is True


def test_nan_values() -> None:
    db, _ = make_db(TagDef("a", deadband=1.0))
    ids = db.ids_of(["a"])
    assert db.update_many(ids, [np.nan]) == 1, "a first value, even NaN, is a change"
    assert math.isnan(db.read("a").value)
    assert db.update_many(ids, [np.nan]) == 0, "NaN to NaN is no move"
    assert db.update_many(ids, [2.0]) == 1
    assert db.update_many(ids, [np.nan]) == 1


def test_update_coerces_and_names_the_tag_on_error() -> None:
    db, _ = make_db(TagDef("n.i", TagType.INT), TagDef("n.b", TagType.BOOL), TagDef("n.f"))
    assert db.update("n.i", 4.0) is True
    assert db.read("n.i").value == 4
    with pytest.raises(ValueError, match=r"'n\.i'"):
        db.update("n.i", 4.5)
    with pytest.raises(ValueError, match=r"'n\.b'"):
        db.update("n.b", 2)
    with pytest.raises(TypeError, match=r"'n\.f'"):
        db.update("n.f", "12")
    with pytest.raises(KeyError, match="'nope'"):
        db.update("nope", 1)


def test_str_tags() -> None:
    db, batches = make_db(TagDef("note", TagType.STR), TagDef("x"))
    assert db.update("note", "hello", ts=3.0) is True
    assert db.update("note", "hello", ts=4.0) is False
    assert db.update("note", 42) is True, "coerced to str"
    db.flush()
    assert batches[-1]["note"] == TagValue("42", Quality.GOOD, Reason.NONE, 1000.0)
    assert db.update("note", "42", Quality.BAD, reason=Reason.MANUAL) is True
    with pytest.raises(TypeError, match="'note' is a str tag"):
        db.update_many(db.ids_of(["x", "note"]), [1.0, 2.0])
    records = batches[-1].to_records()
    assert records == [("note", "42", Quality.GOOD, Reason.NONE, 1000.0)]


def test_set_quality_keeps_values() -> None:
    db, batches = make_db(TagDef("d.a"), TagDef("d.b"), TagDef("d.s", TagType.STR), TagDef("other"))
    db.update_many(db.ids_of(["d.a", "d.b"]), [1.0, 2.0], ts=10.0)
    db.update("d.s", "x", ts=10.0)
    db.flush()
    batches.clear()
    ids = db.ids_of(db.match("d.*"))
    assert db.set_quality(ids, Quality.BAD, Reason.COMM_LOST, ts=20.0) == 3
    assert db.set_quality(ids, Quality.BAD, Reason.COMM_LOST, ts=21.0) == 0
    db.flush()
    assert dict(batches[-1]) == {
        "d.a": TagValue(1.0, Quality.BAD, Reason.COMM_LOST, 20.0),
        "d.b": TagValue(2.0, Quality.BAD, Reason.COMM_LOST, 20.0),
        "d.s": TagValue("x", Quality.BAD, Reason.COMM_LOST, 20.0),
    }
    # the next good value, even if equal, recovers
    assert db.update_many(db.ids_of(["d.a"]), [1.0]) == 1
    assert db.read("d.a").quality is Quality.GOOD


def test_check_stale_marks_only_good_polled_tags_and_they_recover() -> None:
    clock = Clock(100.0)
    db, batches = make_db(
        TagDef("p.fast", poll_s=1.0),
        TagDef("p.slow", poll_s=1.0, deadband=0.5),
        TagDef("p.none"),
        TagDef("p.bad", poll_s=1.0),
        clock=clock,
    )
    db.update_many(db.ids_of(["p.fast", "p.slow", "p.none"]), [1.0, 2.0, 3.0])
    db.update_many(db.ids_of(["p.bad"]), [4.0], Quality.BAD, reason=Reason.COMM_LOST)
    db.flush()
    clock.now = 103.0
    assert db.check_stale() == 0, "exactly 3 x poll_s is not yet stale"
    # a non-change refreshes the last-update time
    clock.now = 102.5
    db.update_many(db.ids_of(["p.slow"]), [2.1])
    clock.now = 103.5
    assert db.check_stale() == 1
    assert db.read("p.fast") == TagValue(1.0, Quality.UNCERTAIN, Reason.STALE, 103.5)
    assert db.read("p.slow").quality is Quality.GOOD
    assert db.read("p.none").quality is Quality.GOOD
    assert db.read("p.bad").reason is Reason.COMM_LOST
    assert db.check_stale() == 0, "already stale"
    db.flush()
    assert list(batches[-1]) == ["p.fast"]
    assert db.update_many(db.ids_of(["p.fast"]), [1.0]) == 1
    assert db.read("p.fast").quality is Quality.GOOD
    assert db.check_stale(now=200.0) == 2


def test_set_initial_only_fills_tags_without_value() -> None:
    db, _ = make_db(TagDef("m.a"), TagDef("m.b", TagType.STR), TagDef("m.c"))
    db.update("m.c", 5.0)
    assert db.set_initial({"m.a": 1.5, "m.b": "x", "m.c": 9.0}) == 2
    assert db.read("m.a").value == 1.5
    assert db.read("m.b").value == "x"
    assert db.read("m.c").value == 5.0


def test_lookup_helpers_and_glob_spanning_dots() -> None:
    db, _ = make_db(
        TagDef("b1.hm.power_kw"),
        TagDef("b1.101.valve.open", TagType.BOOL),
        TagDef("b2.hm.power_kw"),
        TagDef("b10.hm.power_kw"),
    )
    assert len(db) == 4 and "b1.hm.power_kw" in db and "x" not in db
    assert db.match("b1.*") == ["b1.hm.power_kw", "b1.101.valve.open"]
    assert db.match("*.power_kw") == ["b1.hm.power_kw", "b2.hm.power_kw", "b10.hm.power_kw"]
    assert db.match("b?.hm.*") == ["b1.hm.power_kw", "b2.hm.power_kw"]
    assert db.match("b[!1]*") == ["b2.hm.power_kw"]
    assert db.match("b1.hm.power_kw") == ["b1.hm.power_kw"]
    assert db.match("B1.*") == [], "matching is case-sensitive"
    assert db.ids_of(["b2.hm.power_kw", "b1.hm.power_kw"]).tolist() == [2, 0]
    with pytest.raises(KeyError, match="'zz'"):
        db.ids_of(["b1.hm.power_kw", "zz"])
    assert db.definition("b1.101.valve.open").type is TagType.BOOL
    assert list(db.snapshot("*.power_kw")) == db.match("*.power_kw")


def test_bad_definitions_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate tag name 'a'"):
        TagDatabase([TagDef("a"), TagDef("a")])
    with pytest.raises(ValueError, match="whitespace"):
        TagDatabase([TagDef("a b")])
    with pytest.raises(ValueError, match="deadband"):
        TagDatabase([TagDef("a", deadband=-1.0)])


def test_update_many_rejects_misaligned_and_negative_ids() -> None:
    db, _ = make_db(TagDef("a"), TagDef("b"))
    with pytest.raises(ValueError, match="aligned"):
        db.update_many([0, 1], [1.0])
    with pytest.raises(IndexError):
        db.update_many([-1], [1.0])
    assert db.update_many([], []) == 0


def test_replace_defs_keeps_values_and_ids() -> None:
    db, batches = make_db(
        TagDef("k.a"), TagDef("k.b", TagType.STR), TagDef("gone"), TagDef("retyped")
    )
    a_id = db.id_of("k.a")
    db.update("k.a", 1.0, ts=1.0)
    db.update("k.b", "s", ts=1.0)
    db.update("gone", 3.0)
    db.update("retyped", 4.0)
    db.flush()
    summary = db.replace_defs(
        [
            TagDef("k.a", deadband=2.0),
            TagDef("k.b", TagType.STR),
            TagDef("k.new"),
            TagDef("retyped", TagType.STR),
        ]
    )
    assert set(summary.added) == {"k.new", "retyped"}
    assert set(summary.removed) == {"gone", "retyped"}
    assert set(summary.kept) == {"k.a", "k.b"}
    assert db.id_of("k.a") == a_id
    assert db.read("k.a") == TagValue(1.0, Quality.GOOD, Reason.NONE, 1.0)
    assert db.read("k.b").value == "s"
    assert db.read("k.new").quality is Quality.BAD
    assert db.read("retyped").value is None
    assert "gone" not in db and db.names == ["k.a", "k.b", "k.new", "retyped"]
    # the new deadband applies to the kept tag
    assert db.update("k.a", 2.5) is False
    # ids of removed tags are ignored by update_many
    assert db.update_many(np.array([a_id, 2]), [5.0, 9.0]) == 1
    db.update("k.new", 7.0)
    batches.clear()
    db.flush()
    assert set(batches[-1]) == {"k.a", "k.new"}
