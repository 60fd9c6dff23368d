"""Computed tags: recompute on change, quality propagation, failures, reload."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tags import (
    ChangeBatch,
    ComputedTags,
    Quality,
    Reason,
    Source,
    TagDatabase,
    TagDef,
    TagType,
    TagValue,
)


def computed(name: str, expr: str, type_: TagType = TagType.FLOAT) -> TagDef:
    return TagDef(name, type_, source=Source.COMPUTED, expr=expr)


def start(*defs: TagDef) -> tuple[TagDatabase, ComputedTags]:
    db = TagDatabase(defs)
    ct = ComputedTags(db)
    ct.start()
    db.flush()
    return db, ct


def test_arithmetic_and_once_per_batch() -> None:
    db, ct = start(TagDef("a"), TagDef("b"), computed("c", "a * 2 + b"))
    assert db.read("c") == TagValue(None, Quality.BAD, Reason.NOT_CONNECTED, 0.0)
    db.update("a", 1.0, ts=10.0)
    db.flush()
    assert db.read("c").quality is Quality.BAD, "b has no value yet"
    before = ct.evaluations
    db.update("a", 2.0, ts=11.0)
    db.update("b", 3.0, ts=12.0)
    db.flush()
    assert db.read("c") == TagValue(7.0, Quality.GOOD, Reason.NONE, 12.0)
    assert ct.evaluations - before == 1, "two inputs changed in one batch: one evaluation"


def test_sum_over_glob_and_reload_reresolves() -> None:
    db, _ = start(
        TagDef("b1.hm.power_kw"),
        TagDef("b1.sub.power_kw"),
        TagDef("b2.hm.power_kw"),
        computed("b1.power_total", "sum(tags('b1.*power_kw'))"),
    )
    db.update("b1.hm.power_kw", 10.0)
    db.update("b1.sub.power_kw", 5.0)
    db.update("b2.hm.power_kw", 100.0)
    db.flush()
    assert db.read("b1.power_total").value == 15.0
    db.replace_defs(
        [
            TagDef("b1.hm.power_kw"),
            TagDef("b1.sub.power_kw"),
            TagDef("b1.new.power_kw"),
            computed("b1.power_total", "sum(tags('b1.*power_kw'))"),
        ]
    )
    db.flush()
    assert db.read("b1.power_total").quality is Quality.BAD, "the new input has no value yet"
    assert db.read("b1.power_total").value == 15.0, "inputs without value are left out"
    db.update("b1.new.power_kw", 1.0)
    db.flush()
    assert db.read("b1.power_total").value == 16.0
    assert db.read("b1.power_total").quality is Quality.GOOD


def test_glob_never_includes_the_computed_tag_itself() -> None:
    db, _ = start(TagDef("b1.a"), computed("b1.total", "sum(tags('b1.*'))"))
    db.update("b1.a", 2.0)
    db.flush()
    db.flush()
    assert db.read("b1.total").value == 2.0


def test_quality_is_worst_input_with_its_reason_and_ts_newest() -> None:
    db, _ = start(TagDef("a"), TagDef("b"), TagDef("c"), computed("s", "a + b + c"))
    db.update("a", 1.0, Quality.GOOD, ts=5.0)
    db.update("b", 2.0, Quality.UNCERTAIN, ts=9.0, reason=Reason.MANUAL)
    db.update("c", 3.0, Quality.GOOD, ts=7.0)
    db.flush()
    assert db.read("s") == TagValue(6.0, Quality.UNCERTAIN, Reason.MANUAL, 9.0)
    db.set_quality(db.ids_of(["c"]), Quality.BAD, Reason.COMM_LOST, ts=11.0)
    db.flush()
    assert db.read("s") == TagValue(6.0, Quality.BAD, Reason.COMM_LOST, 11.0)


def test_division_by_zero_gives_config_error_logged_once_then_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db, _ = start(TagDef("a"), TagDef("b"), computed("r", "a / b"))
    with caplog.at_level(logging.WARNING, logger="tags.computed"):
        db.update("a", 1.0)
        db.update("b", 0.0)
        db.flush()
        db.update("a", 2.0)
        db.flush()
    assert db.read("r").quality is Quality.BAD
    assert db.read("r").reason is Reason.CONFIG_ERROR
    failures = [
        r for r in caplog.records if "r:" in r.getMessage() and "division by zero" in r.getMessage()
    ]
    assert len(failures) == 1
    db.update("b", 4.0)
    db.flush()
    assert db.read("r").value == 0.5
    assert db.read("r").quality is Quality.GOOD


def test_results_are_coerced_to_the_tag_type() -> None:
    db, _ = start(
        TagDef("a"),
        computed("hot", "a > 50", TagType.BOOL),
        computed("n", "round(a)", TagType.INT),
        computed("label", "if_(a > 50, 'hot', 'cold')", TagType.STR),
        computed("bad_int", "a / 7", TagType.INT),
    )
    db.update("a", 60.0)
    db.flush()
    assert db.read("hot").value is True
    assert db.read("n").value == 60
    assert db.read("label").value == "hot"
    assert (db.read("bad_int").quality, db.read("bad_int").reason) == (
        Quality.BAD,
        Reason.CONFIG_ERROR,
    )


def test_chained_cycles_and_unknown_inputs() -> None:
    db, ct = start(
        computed("z", "y + 1"),
        computed("y", "x * 2"),
        TagDef("x"),
        computed("p", "q + 1"),
        computed("q", "p + 1"),
        computed("u", "nope + 1"),
        computed("const", "2 * 21"),
    )
    assert ct.tags.index("y") < ct.tags.index("z")
    db.update("x", 1.0)
    db.flush()
    assert db.read("z").value == 3.0
    for name in ("p", "q", "u"):
        assert db.read(name).reason is Reason.CONFIG_ERROR, name
    assert db.read("const").value == 42.0
    assert db.read("const").quality is Quality.GOOD


def test_stop_unsubscribes() -> None:
    db, ct = start(TagDef("a"), computed("c", "a + 1"))
    db.update("a", 1.0)
    db.flush()
    ct.stop()
    assert not ct.running
    db.update("a", 5.0)
    db.flush()
    assert db.read("c").value == 2.0
    assert db.bus.subscriber_count == 0  # type: ignore[attr-defined]


async def test_runs_on_the_event_loop() -> None:
    db = TagDatabase([TagDef("a"), computed("b", "a * 10"), computed("c", "b + 1")])
    ComputedTags(db).start()
    done = asyncio.Event()

    def on_c(batch: ChangeBatch) -> None:
        if batch["c"].value == 21.0:
            done.set()

    db.subscribe("c", on_c)
    db.update("a", 2.0)
    await done.wait()
    assert db.read("b").value == 20.0
