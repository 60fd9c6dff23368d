"""Collectors -> Redis -> central, end to end on the simulator over real Modbus TCP."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from drivers.base import NotWritable, OutOfRange, UnknownTag, WriteState
from scada.runtime import Runtime
from scada.scaleout.central import CurrentValues
from tags.model import Quality, Reason
from tests.scada.redis_fixtures import RedisServer, redis_server  # noqa: F401
from tests.scada.scaleout_site import all_good, load, wait_for

B1 = ["b1.hm.energy_kwh", "b1.101.valve.room_c", "b1.101.em.power_kw", "b1.hm.online"]
B2 = ["b2.hm.energy_kwh", "b2.101.valve.room_c", "b2.hm.online"]


async def test_collectors_feed_the_central_and_run_its_commands(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    site = load(tmp_path)
    central = Runtime(site, tmp_path / "central", role="central", redis_url=redis_server.url)
    c1 = Runtime(
        site,
        tmp_path / "c1",
        role="collector",
        buildings=["b1"],
        redis_url=redis_server.url,
        simulate=True,
    )
    c2 = Runtime(
        site,
        tmp_path / "c2",
        role="collector",
        buildings=["b2"],
        redis_url=redis_server.url,
        simulate=True,
    )
    # a collector holds only its own building's device tags
    assert "b1.hm.energy_kwh" in c1.db and "b2.hm.energy_kwh" not in c1.db
    assert "t9.b1_power" not in c1.db and "t9.b1_power" in central.db
    await central.start()
    await c1.start()
    await c2.start()
    try:
        # values and the central's computed tag, fed only through Redis
        await wait_for(central.db, B1 + B2 + ["t9.b1_power"], all_good(B1 + B2 + ["t9.b1_power"]))
        assert central.drivers is None and central.simulator is None
        assert central.db.read("b1.hm.online").value is True

        # quality: the b2 heat meter goes offline at the simulator
        c2.simulator.set_fault("b2.hm", "offline")
        await wait_for(
            central.db,
            ["b2.hm.*"],
            lambda db: (
                db.read("b2.hm.energy_kwh").quality is Quality.BAD
                and db.read("b2.hm.online").value is False
            ),
        )
        assert central.db.read("b2.hm.energy_kwh").reason is Reason.COMM_LOST
        assert central.db.read("b1.hm.energy_kwh").quality is Quality.GOOD

        # commands go to the right collector, which writes and reads back
        result = await central.writer.write("b1.101.valve.setpoint_c", 22.5)
        assert result.state is WriteState.CONFIRMED, result
        assert result.read_back == pytest.approx(22.5)
        assert c1.simulator.value("b1.101.valve", "setpoint_c") == pytest.approx(22.5)
        result = await central.writer.write("b2.101.valve.open", False)
        assert result.ok and c2.simulator.value("b2.101.valve", "open") is False
        with pytest.raises(NotWritable):
            await central.writer.write("b1.hm.energy_kwh", 1.0)
        with pytest.raises(OutOfRange):
            await central.writer.write("b1.101.valve.setpoint_c", 99)
        with pytest.raises(UnknownTag):
            await central.writer.write("t9.b1_power", 1.0)
        assert c1.scaleout.commands.handled == 3 and c2.scaleout.commands.handled == 1

        # after the collectors stop (everything sent), the central holds exactly their values
        published = {}
        for c in (c1, c2):
            await c.drivers.stop()
            await c.simulator.stop()
            c.db.flush()
            await c.scaleout.publisher.wait_idle()
            published.update(c.db.snapshot("*"))
        consumer = central.scaleout.central
        sent = sum(c.scaleout.bus.entries for c in (c1, c2))
        await asyncio.wait_for(consumer.wait_until(lambda: consumer.applied_entries >= sent), 20)
        assert consumer.applied_entries == sent and consumer.duplicates == 0
        for name, value in published.items():
            # the cause of a comm loss (``detail``) is not sent to the central (yet)
            assert central.db.read(name) == dataclasses.replace(value, detail=None), name
        # a second central replica can serve reads from the committed hash
        replica = CurrentValues(central.scaleout.redis, central.scaleout.keys)
        current = await replica.read(["b1.hm.energy_kwh", "b2.hm.online"])
        assert current["b1.hm.energy_kwh"][0] == published["b1.hm.energy_kwh"].value
        assert current["b2.hm.online"][:2] == (False, Quality.GOOD)
    finally:
        await c1.stop()
        await c2.stop()
        await central.stop()


async def test_a_collector_needs_known_buildings_and_a_redis_url(tmp_path: Path) -> None:
    site = load(tmp_path)
    with pytest.raises(ValueError, match="unknown building"):
        Runtime(site, tmp_path, role="collector", buildings=["b9"], redis_url="redis://x")
    with pytest.raises(ValueError, match="needs a Redis URL"):
        Runtime(site, tmp_path, role="central")
