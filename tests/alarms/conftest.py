"""Fixtures for alarm tests: a real TagDatabase and journal driven by a controllable clock."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from alarms.config import AlarmRule
from alarms.engine import AlarmEngine
from alarms.journal import AlarmJournal
from alarms.model import AlarmEvent
from tags.database import TagDatabase
from tags.model import Quality, Reason, Source, TagDef, TagType

RULES = TypeAdapter(list[AlarmRule])

T0 = 1_780_000_000.0


class Clock:
    """A clock tests move by hand."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t


def parse_rules(items: Sequence[dict[str, Any]]) -> list[Any]:
    return RULES.validate_python(list(items))


def site_defs() -> list[TagDef]:
    """A small building: a heat meter, two rooms with valves, a gateway and meters behind it."""
    defs = [
        TagDef(
            "b1.hm.supply_c",
            TagType.FLOAT,
            unit="°C",
            device="b1.hm",
            building="b1",
            source=Source.DEVICE,
        ),
        TagDef(
            "b1.hm.power_kw",
            TagType.FLOAT,
            unit="kW",
            device="b1.hm",
            building="b1",
            source=Source.DEVICE,
        ),
        TagDef("b1.hm.fault", TagType.BOOL, device="b1.hm", building="b1", source=Source.DEVICE),
        TagDef("b1.hm.mode", TagType.STR, device="b1.hm", building="b1", source=Source.DEVICE),
        TagDef(
            "b2.hm.supply_c",
            TagType.FLOAT,
            unit="°C",
            device="b2.hm",
            building="b2",
            source=Source.DEVICE,
        ),
        TagDef("flag", TagType.BOOL, source=Source.MEMORY),
        TagDef("inhibit", TagType.BOOL, source=Source.MEMORY),
    ]
    for room in ("101", "102"):
        dev = f"b1.{room}.th"
        for point, typ, unit in (
            ("room_c", TagType.FLOAT, "°C"),
            ("setpoint_c", TagType.FLOAT, "°C"),
            ("valve_open", TagType.BOOL, ""),
        ):
            defs.append(
                TagDef(
                    f"{dev}.{point}",
                    typ,
                    unit=unit,
                    device=dev,
                    building="b1",
                    household=f"b1.{room}",
                    source=Source.DEVICE,
                )
            )
    for dev in ("b1.hm", "b1.gw", "b1.m1", "b1.m2", "b1.101.th", "b1.102.th", "b2.hm"):
        building = dev.split(".")[0]
        defs.append(
            TagDef(
                f"{dev}.online", TagType.BOOL, device=dev, building=building, source=Source.STATUS
            )
        )
    for dev in ("b1.m1", "b1.m2"):
        defs.append(
            TagDef(
                f"{dev}.energy_kwh",
                TagType.FLOAT,
                unit="kWh",
                device=dev,
                building="b1",
                source=Source.DEVICE,
                poll_s=10.0,
            )
        )
    return defs


TEMPLATES = {
    "thermostat": ["b1.101.th", "b1.102.th"],
    "meter": ["b1.m1", "b1.m2"],
    "gateway": ["b1.gw"],
}


class Site:
    """An engine over a real TagDatabase and journal; ``set`` writes a tag and delivers."""

    def __init__(
        self,
        tmp: Path,
        rules: Sequence[dict[str, Any]],
        *,
        extra_defs: Sequence[TagDef] = (),
        clock: Clock | None = None,
        start: bool = True,
    ) -> None:
        self.tmp = tmp
        self.clock = clock or Clock()
        self.rules = parse_rules(rules)
        self.db = TagDatabase([*site_defs(), *extra_defs], clock=self.clock)
        self.events: list[AlarmEvent] = []
        self.journal = AlarmJournal.open(tmp / "alarms.sqlite")
        self.engine = self._engine()
        if start:
            self.engine.start()

    def _engine(self) -> AlarmEngine:
        engine = AlarmEngine(
            self.db,
            self.rules,
            self.journal,
            devices_by_template=TEMPLATES,
            clock=self.clock,
            tick_s=None,
        )
        engine.subscribe(self.events.append)
        return engine

    def restart(self) -> None:
        """Simulate a process restart: a new journal connection and a new engine, same database file."""
        self.journal.close()
        self.journal = AlarmJournal.open(self.tmp / "alarms.sqlite")
        self.events.clear()
        self.engine = self._engine()
        self.engine.start()

    def set(
        self,
        name: str,
        value: Any,
        quality: Quality = Quality.GOOD,
        reason: Reason = Reason.NONE,
        ts: float | None = None,
    ) -> None:
        self.db.update(name, value, quality, ts=ts, reason=reason)
        self.db.flush()

    def bad(self, name: str, reason: Reason = Reason.COMM_LOST) -> None:
        self.db.set_quality([self.db.id_of(name)], Quality.BAD, reason)
        self.db.flush()

    def advance(self, seconds: float) -> int:
        self.clock.advance(seconds)
        return self.engine.tick()

    def state(self, key: str) -> str:
        return self.engine.get(key).state.value

    def kinds(self) -> list[str]:
        return [e.kind.value for e in self.events]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_site(tmp_path: Path) -> Iterator[Any]:
    sites: list[Site] = []

    def make(rules: Sequence[dict[str, Any]], **kw: Any) -> Site:
        s = Site(tmp_path, rules, **kw)
        sites.append(s)
        return s

    yield make
    for s in sites:
        s.journal.close()


@pytest.fixture
def comm_sites(tmp_path: Path) -> Iterator[Any]:
    """Return ``build(extra_yaml="")`` -> a running comm-loss test site (tests/alarms/comm_site.py)."""
    from tests.alarms.comm_site import CommSite, load

    sites: list[CommSite] = []

    def build(extra: str = "") -> CommSite:
        where = tmp_path / f"s{len(sites)}"
        where.mkdir()
        s = CommSite(where, load(where, extra))
        sites.append(s)
        s.all_online()
        return s

    yield build
    for s in sites:
        s.close()
