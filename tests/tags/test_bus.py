"""Change delivery: loop scheduling, coalescing, isolation, unsubscribe, batches."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from tags import ChangeBatch, LocalBus, Quality, Reason, TagDatabase, TagDef, TagType, TagValue


def values_of(batch: ChangeBatch) -> dict[str, object]:
    return {name: tv.value for name, tv in batch.items()}


async def test_one_delivery_per_loop_iteration() -> None:
    db = TagDatabase([TagDef("a"), TagDef("b"), TagDef("c")])
    got: list[ChangeBatch] = []
    arrived = asyncio.Event()

    def on_batch(batch: ChangeBatch) -> None:
        got.append(batch)
        arrived.set()

    db.subscribe(["a", "b"], on_batch)
    db.update("a", 1.0)
    db.update("b", 2.0)
    db.update("a", 3.0)
    db.update("c", 4.0)
    assert got == [], "delivery is asynchronous"
    await arrived.wait()
    assert len(got) == 1
    assert values_of(got[0]) == {"a": 3.0, "b": 2.0}
    assert got[0].seq == db.seq == 1
    arrived.clear()
    db.update("b", 5.0)
    await arrived.wait()
    assert [b.seq for b in got] == [1, 2]
    assert values_of(got[1]) == {"b": 5.0}


async def test_slow_async_subscriber_gets_coalesced_latest_values() -> None:
    db = TagDatabase([TagDef("a"), TagDef("b"), TagDef("c")])
    calls: list[dict[str, object]] = []
    first_started = asyncio.Event()
    release = asyncio.Event()
    second_done = asyncio.Event()

    async def slow(batch: ChangeBatch) -> None:
        calls.append(values_of(batch))
        if len(calls) == 1:
            first_started.set()
            await release.wait()
        else:
            second_done.set()

    fast: list[ChangeBatch] = []
    db.subscribe("*", slow)
    db.subscribe("*", fast.append)
    db.update("a", 0.0)
    await first_started.wait()
    for v in range(1, 50):
        db.update("a", float(v))
        db.update("b", float(v))
        if v == 25:
            db.update("c", 25.0)
        db.flush()
    assert len(fast) == 50, "a fast subscriber sees every batch"
    assert len(calls) == 1, "the slow one is still in its first call"
    release.set()
    await second_done.wait()
    await db.bus.idle()
    assert calls == [{"a": 0.0}, {"a": 49.0, "b": 49.0, "c": 25.0}]


async def test_failing_subscribers_are_isolated(caplog: pytest.LogCaptureFixture) -> None:
    db = TagDatabase([TagDef("a")])
    sync_calls: list[int] = []
    async_calls: list[int] = []
    good: list[ChangeBatch] = []
    arrived = asyncio.Event()

    def bad_sync(batch: ChangeBatch) -> None:
        sync_calls.append(batch.seq)
        raise RuntimeError("boom sync")

    async def bad_async(batch: ChangeBatch) -> None:
        async_calls.append(batch.seq)
        raise RuntimeError("boom async")

    def ok(batch: ChangeBatch) -> None:
        good.append(batch)
        arrived.set()

    db.subscribe("*", bad_sync, name="bad-sync")
    db.subscribe("*", bad_async, name="bad-async")
    db.subscribe("*", ok)
    with caplog.at_level(logging.ERROR, logger="tags.bus"):
        for v in (1.0, 2.0):
            arrived.clear()
            db.update("a", v)
            await arrived.wait()
            await db.bus.idle()
    assert [b.seq for b in good] == [1, 2]
    assert sync_calls == [1, 2]
    assert async_calls == [1, 2]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("bad-sync" in m for m in messages) == 2
    assert sum("bad-async" in m for m in messages) == 2
    assert any(r.exc_info and "boom async" in str(r.exc_info[1]) for r in caplog.records)


async def test_unsubscribe_stops_delivery_and_drops_pending() -> None:
    db = TagDatabase([TagDef("a")])
    plain: list[ChangeBatch] = []
    slow_calls: list[ChangeBatch] = []
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(batch: ChangeBatch) -> None:
        slow_calls.append(batch)
        started.set()
        await release.wait()

    unsub_plain = db.subscribe("*", plain.append)
    unsub_slow = db.subscribe("*", slow)
    db.update("a", 1.0)
    await started.wait()
    db.update("a", 2.0)
    db.flush()  # pending for the slow subscriber
    assert len(plain) == 2
    unsub_plain()
    unsub_slow()
    unsub_slow()  # idempotent
    release.set()
    await db.bus.idle()
    db.update("a", 3.0)
    db.flush()
    assert len(plain) == 2
    assert len(slow_calls) == 1
    assert db.bus.subscriber_count == 0  # type: ignore[attr-defined]


def test_flush_without_loop_and_subscription_patterns() -> None:
    db = TagDatabase(
        [TagDef("b1.hm.power_kw"), TagDef("b2.hm.power_kw"), TagDef("b1.note", TagType.STR)]
    )
    power: list[ChangeBatch] = []
    b1: list[ChangeBatch] = []
    db.subscribe("*.power_kw", power.append)
    db.subscribe(["b1.*", "nothing.*"], b1.append)
    db.update_many(db.ids_of(["b1.hm.power_kw", "b2.hm.power_kw"]), [1.0, 2.0])
    db.update("b1.note", "hi")
    assert db.flush() == 3
    assert values_of(power[0]) == {"b1.hm.power_kw": 1.0, "b2.hm.power_kw": 2.0}
    assert values_of(b1[0]) == {"b1.hm.power_kw": 1.0, "b1.note": "hi"}
    db.update("b2.hm.power_kw", 3.0)
    db.flush()
    assert len(b1) == 1, "never an empty batch"
    with pytest.raises(ValueError):
        db.subscribe([], power.append)


def test_pattern_subscriptions_pick_up_new_tags_after_reload() -> None:
    db = TagDatabase([TagDef("b1.a")])
    got: list[ChangeBatch] = []
    db.subscribe("b1.*", got.append)
    db.replace_defs([TagDef("b1.a"), TagDef("b1.new"), TagDef("b2.x")])
    db.update("b1.new", 1.0)
    db.update("b2.x", 1.0)
    db.flush()
    assert list(got[0]) == ["b1.new"]


def test_batch_mapping_arrays_and_records() -> None:
    db = TagDatabase([TagDef("f"), TagDef("i", TagType.INT), TagDef("s", TagType.STR), TagDef("n")])
    db.update("f", 1.5, ts=10.0)
    db.update("i", 3, Quality.UNCERTAIN, ts=11.0, reason=Reason.MANUAL)
    db.update("s", "text", ts=12.0)
    db.set_quality(db.ids_of(["n"]), Quality.BAD, Reason.COMM_LOST, ts=13.0)
    batch = db.snapshot_batch()
    assert len(batch) == 4 and "f" in batch and "zz" not in batch
    assert batch.ids.tolist() == [0, 1, 2, 3]
    assert batch.quality.tolist() == [0, 1, 0, 2]
    assert batch.reason.tolist() == [0, 4, 0, 1]
    assert batch.valid.tolist() == [True, True, True, False]
    assert batch["n"] == TagValue(None, Quality.BAD, Reason.COMM_LOST, 13.0)
    records = batch.to_records()
    assert records[1] == ("i", 3, Quality.UNCERTAIN, Reason.MANUAL, 11.0)
    # a remote process rebuilds it against its own catalog; unknown names are dropped
    other = TagDatabase([TagDef("s", TagType.STR), TagDef("i", TagType.INT), TagDef("f")])
    labelled = [(n, v, q.label, r.label, t) for n, v, q, r, t in records] + [
        ("zz", 1.0, "good", None, 1.0)
    ]
    rebuilt = ChangeBatch.from_records(7, other.catalog, labelled)
    assert rebuilt.seq == 7
    assert dict(rebuilt) == {k: v for k, v in batch.items() if k != "n"}
    assert rebuilt.ids.tolist() == sorted(rebuilt.ids.tolist())


def test_batch_values_and_items_are_mapping_views() -> None:
    # the float64 column is ``vals``: ``values()`` is the Mapping method, not an array
    db = TagDatabase([TagDef("f"), TagDef("i", TagType.INT), TagDef("s", TagType.STR), TagDef("n")])
    db.update("f", 1.5, ts=10.0)
    db.update("i", 3, ts=11.0)
    db.update("s", "text", ts=12.0)
    batch = db.snapshot_batch()
    expected = [batch[name] for name in batch]
    assert list(batch.values()) == expected
    assert dict(zip(batch.keys(), batch.values(), strict=True)) == dict(batch)
    assert list(batch.items()) == list(zip(batch, expected, strict=True))
    assert dict(batch.items()) == {name: batch[name] for name in batch}
    assert len(batch.values()) == len(batch.items()) == 4
    assert TagValue(1.5, Quality.GOOD, Reason.NONE, 10.0) in batch.values()
    assert ("s", batch["s"]) in batch.items()
    assert batch.vals.dtype == np.float64 and batch.vals.tolist()[:2] == [1.5, 3.0]
    assert np.isnan(batch.vals[2:]).all()


def test_merge_keeps_latest_row_per_tag() -> None:
    db = TagDatabase([TagDef("a"), TagDef("b"), TagDef("c")])
    db.update("a", 1.0)
    db.update("b", 1.0)
    older = db.snapshot_batch(["a", "b"])
    db.update("b", 2.0)
    db.update("c", 2.0)
    newer = db.snapshot_batch(["b", "c"])
    merged = older.merge(newer)
    assert values_of(merged) == {"a": 1.0, "b": 2.0, "c": 2.0}
    mask = np.array([False, True, True])
    sel = merged.select(mask)
    assert sel is not None and list(sel) == ["b", "c"]
    assert merged.select(np.zeros(3, dtype=bool)) is None
    assert merged.select(np.ones(3, dtype=bool)) is merged


def test_async_subscriber_without_loop_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = LocalBus()
    db = TagDatabase([TagDef("a")], bus=bus)
    plain: list[ChangeBatch] = []

    async def needs_loop(batch: ChangeBatch) -> None:  # pragma: no cover - never awaited
        pass

    db.subscribe("*", needs_loop, name="needs-loop")
    db.subscribe("*", plain.append)
    db.update("a", 1.0)
    with caplog.at_level(logging.ERROR, logger="tags.bus"):
        db.flush()
    assert len(plain) == 1
    assert any("needs-loop" in r.getMessage() for r in caplog.records)


async def test_a_busy_stream_is_paced_and_a_quiet_one_is_not() -> None:
    db = TagDatabase([TagDef("a"), TagDef("b")])
    db.min_delivery_interval_s = 0.2
    got: list[tuple[float, dict[str, object]]] = []
    arrived = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_batch(batch: ChangeBatch) -> None:
        got.append((loop.time(), values_of(batch)))
        arrived.set()

    db.subscribe("*", on_batch)
    db.update("a", 1.0)
    await arrived.wait()  # after a quiet spell: the next loop turn
    first = got[0][0]
    arrived.clear()
    db.update("a", 2.0)
    db.update("b", 3.0)
    for _ in range(5):
        await asyncio.sleep(0)  # turns pass, the delivery waits for its interval
    assert len(got) == 1
    await arrived.wait()
    assert got[1][1] == {"a": 2.0, "b": 3.0}  # both changes in one batch
    assert got[1][0] - first >= 0.2


async def test_a_tag_removed_before_delivery_is_not_delivered() -> None:
    db = TagDatabase([TagDef("a"), TagDef("b")])
    got: list[dict[str, object]] = []
    arrived = asyncio.Event()

    def on_batch(batch: ChangeBatch) -> None:
        got.append(values_of(batch))
        arrived.set()

    db.subscribe("*", on_batch)
    db.update("a", 1.0)
    db.update("b", 2.0)
    db.replace_defs([TagDef("b")])
    await arrived.wait()
    assert got == [{"b": 2.0}]
