"""Scale-out parts: building mapping, wire format, spool, command timeout."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from drivers.base import WriteState
from scada.config import load_site
from scada.scaleout.commands import RemoteWriter
from scada.scaleout.roles import connect, filter_site
from scada.scaleout.spool import Spool
from scada.scaleout.wire import (
    StreamKeys,
    batch_payloads,
    building_code_array,
    decode_entry,
    encode_entry,
    tag_buildings,
)
from tags.database import TagDatabase
from tags.model import Quality, Reason, TagDef, TagType
from tests.scada.redis_fixtures import RedisServer, redis_server  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def test_every_device_tag_has_a_building_and_collectors_split_the_site() -> None:
    site = load_site(ROOT / "config" / "demo-site.yaml")
    mapping = tag_buildings(site)
    assert mapping["b1.hm.energy_kwh"] == "b1"  # no building field: found by id prefix
    assert mapping["b1.hm.online"] == "b1"  # device status tags travel too
    assert mapping["b2.604.valve.open"] == "b2"  # generated household device
    assert "b1.power_total" not in mapping and "demo.note" not in mapping  # central's own
    b1 = filter_site(site, ["b1"])
    assert {d.id.split(".")[0] for d in b1.devices} == {"b1"}
    assert [c.id for c in b1.channels] == ["b1-bus"] and not b1.tags
    assert {t.name for t in b1.tag_defs()} == {t for t, b in mapping.items() if b == "b1"}
    with pytest.raises(ValueError, match=r"unknown building.*b99"):
        filter_site(site, ["b1", "b99"])


def test_batches_travel_with_types_quality_and_missing_values() -> None:
    db = TagDatabase(
        [
            TagDef("a.x", TagType.FLOAT),
            TagDef("a.s", TagType.STR),
            TagDef("b.n", TagType.INT),
            TagDef("b.never", TagType.BOOL),
            TagDef("local", TagType.FLOAT),
        ]
    )
    db.update("a.x", math.nan, ts=5.0)
    db.update("a.s", "hello", Quality.UNCERTAIN, ts=6.0, reason=Reason.MANUAL)
    db.update("b.n", 7, ts=7.0)
    db.set_quality(db.ids_of(["b.never"]), Quality.BAD, Reason.COMM_LOST, ts=8.0)
    db.update("local", 1.0)
    batch = db.snapshot_batch("*")
    buildings = ["a", "b"]
    codes = building_code_array(
        list(db.catalog.names), {"a.x": "a", "a.s": "a", "b.n": "b", "b.never": "b"}, buildings
    )
    parts = dict(batch_payloads(batch, codes, buildings, chunk=1000))
    assert set(parts) == {"a", "b"}  # "local" has no building: not forwarded
    entry = decode_entry(
        encode_entry(
            "data",
            "e1",
            3,
            1.5,
            **{
                "names": parts["b"]["n"],
                "values": parts["b"]["v"],
                "quality": parts["b"]["q"],
                "reason": parts["b"]["r"],
                "ts": parts["b"]["t"],
            },
        )
    )
    assert (entry.epoch, entry.seq, entry.names) == ("e1", 3, ["b.n", "b.never"])
    assert entry.values == [7.0, None] and entry.quality == [int(Quality.GOOD), int(Quality.BAD)]
    assert entry.reason[1] == int(Reason.COMM_LOST) and entry.ts == [7.0, 8.0]
    a = decode_entry(
        encode_entry(
            "data",
            "e1",
            4,
            1.5,
            parts["a"]["n"],
            parts["a"]["v"],
            parts["a"]["q"],
            parts["a"]["r"],
            parts["a"]["t"],
        )
    )
    assert math.isnan(a.values[0]) and a.values[1] == "hello"
    chunks = list(batch_payloads(batch, codes, buildings, chunk=1))
    assert [len(c["n"]) for _, c in chunks] == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="malformed change entry"):
        decode_entry(b'{"k": "data"}')


def test_spool_keeps_order_across_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    spool.open()
    spool.append([("s1", b"1"), ("s2", b"2")])
    spool.append([("s1", b"3")])
    spool.close()
    spool.open()
    assert len(spool) == 3
    rows = spool.head(2)
    assert [(s, p) for _, s, p in rows] == [("s1", b"1"), ("s2", b"2")]
    spool.remove_through(rows[-1][0])
    assert [(s, p) for _, s, p in spool.head(10)] == [("s1", b"3")] and len(spool) == 1
    spool.close()


async def test_a_write_to_a_silent_collector_fails_after_the_timeout(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    redis = connect(redis_server.url)
    writer = RemoteWriter(redis, StreamKeys("t"), {"b1.v.open": "b1"}, timeout_s=0.3)
    await writer.start()
    try:
        result = await writer.write("b1.v.open", True)
        assert result.state is WriteState.FAILED
        assert "building b1" in result.message
        assert await redis.xlen(StreamKeys("t").commands("b1")) == 1
    finally:
        await writer.stop()
        await redis.aclose()
