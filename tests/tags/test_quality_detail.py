"""The detail of a quality reason (why a tag is ``comm_lost``): stored, read, dropped, shown."""

from __future__ import annotations

from tags import ChangeBatch, Quality, Reason, TagDatabase, TagDef, TagType, TagValue


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_db(clock: Clock) -> tuple[TagDatabase, list[ChangeBatch]]:
    db = TagDatabase(
        [TagDef("a", poll_s=1.0), TagDef("b", poll_s=1.0), TagDef("s", TagType.STR)], clock=clock
    )
    batches: list[ChangeBatch] = []
    db.subscribe("*", batches.append)
    return db, batches


def test_set_quality_keeps_a_detail_until_the_next_change() -> None:
    clock = Clock()
    db, batches = make_db(clock)
    ids = db.ids_of(["a", "b", "s"])
    db.update_many(ids[:2], [1.0, 2.0], ts=900.0)
    db.update("s", "x", ts=900.0)
    assert db.set_quality(ids, Quality.BAD, Reason.COMM_LOST, 950.0, detail="timeout") == 3
    db.flush()
    tv = db.read("a")
    assert tv == TagValue(1.0, Quality.BAD, Reason.COMM_LOST, 950.0, "timeout")
    assert tv.to_json()["detail"] == "timeout" and db.read("s").detail == "timeout"
    assert db.snapshot("*")["b"].detail == "timeout"
    # the same state again is no change; another cause is one, and keeps the time of the loss
    batches.clear()
    assert db.set_quality(ids, Quality.BAD, Reason.COMM_LOST, 960.0, detail="timeout") == 0
    assert db.set_quality(ids, Quality.BAD, Reason.COMM_LOST, 970.0, detail="refused") == 3
    assert db.flush() == 3 and len(batches) == 1
    assert db.read("a") == TagValue(1.0, Quality.BAD, Reason.COMM_LOST, 950.0, "refused")
    # good values drop it (vectorised and scalar path); so does a quality without one
    db.update_many(ids[:1], [1.0], Quality.GOOD, 980.0)
    db.update("s", "x", Quality.GOOD, 980.0)
    assert db.read("a").detail is None and db.read("s").detail is None
    assert "detail" not in db.read("a").to_json()
    assert db.read("b").detail == "refused"
    assert db.set_quality(ids[1:2], Quality.BAD, Reason.COMM_LOST) == 1  # detail dropped
    assert db.read("b") == TagValue(2.0, Quality.BAD, Reason.COMM_LOST, 950.0)


def test_stale_and_reload_drop_the_detail() -> None:
    clock = Clock()
    db, _ = make_db(clock)
    ids = db.ids_of(["a", "b"])
    db.update_many(ids, [1.0, 2.0])
    db.set_quality(ids[:1], Quality.UNCERTAIN, Reason.OUT_OF_RANGE, detail="3 % above max")
    db.set_quality(ids[1:], Quality.GOOD, Reason.NONE, detail="checked by hand")
    clock.now += 10.0
    assert db.check_stale() == 1  # b: good, not refreshed
    assert db.read("b").reason is Reason.STALE and db.read("b").detail is None
    assert db.read("a").detail == "3 % above max"
    db.replace_defs([TagDef("b", poll_s=1.0), TagDef("s", TagType.STR), TagDef("a", TagType.INT)])
    assert db.read("a") == TagValue(None, Quality.BAD, Reason.NOT_CONNECTED, 0.0)  # a new tag
