"""Recorder: the historize deadband, max interval and batching against a real TagDatabase."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from historian.base import BackendUnavailable, Sample
from historian.recorder import Recorder
from historian.spool import SpoolingHistorian
from historian.sqlite import SqliteHistorian
from tags.database import TagDatabase
from tags.model import Quality, Reason, TagDef, TagType
from tests.historian.conftest import T0


def defs() -> list[TagDef]:
    return [
        TagDef("t.temp", deadband=0.0, history_deadband=0.5),
        TagDef("t.flow", deadband=1.0),  # history deadband defaults to the deadband
        TagDef("t.slow", history_deadband=10.0, history_max_interval_s=60),
        TagDef("t.valve", type=TagType.BOOL),
        TagDef("t.mode", type=TagType.STR),
        TagDef("t.skip", historize=False),
    ]


async def settle() -> None:
    """Let the database deliver its pending change batch (it is scheduled with call_soon)."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_deadband_quality_and_max_interval(tmp_path: Path) -> None:
    db = TagDatabase(defs())
    h = SqliteHistorian(tmp_path / "h.sqlite")
    rec = Recorder(db, h, batch_size=1000, flush_s=60)
    await rec.start()
    steps = [
        ("t.temp", 20.0, 0),
        ("t.temp", 20.3, 1),
        ("t.temp", 20.6, 2),
        ("t.temp", 20.9, 3),
        ("t.flow", 5.0, 0),
        ("t.flow", 5.8, 1),
        ("t.flow", 7.1, 2),
        ("t.slow", 1.0, 0),
        ("t.slow", 2.0, 30),
        ("t.slow", 3.0, 61),
        ("t.slow", 4.0, 70),
        ("t.valve", False, 0),
        ("t.valve", True, 5),
        ("t.valve", False, 9),
        ("t.mode", "auto", 0),
        ("t.mode", "manual", 4),
        ("t.skip", 1.0, 0),
        ("t.skip", 9.0, 1),
    ]
    for name, value, dt in steps:
        db.update(name, value, ts=T0 + dt)
        await settle()
    db.update("t.temp", 20.9, Quality.BAD, ts=T0 + 4, reason=Reason.COMM_LOST)  # quality change
    await settle()
    await rec.stop()

    def stored(tag: str) -> list[tuple[float, object]]:
        return [(s.ts - T0, s.value) for s in h.query_raw(tag, T0 - 1, T0 + 1000)]

    # 20.3 is within 0.5 of the stored 20.0; 20.6 is not; 20.9 is within 0.5 of 20.6
    assert stored("t.temp") == [(0, 20.0), (2, 20.6), (4, 20.9)]
    assert h.last(["t.temp"])["t.temp"].quality == Quality.BAD
    # 5.8 never reached the bus (database deadband 1.0); 7.1 moved > 1.0 from 5.0
    assert stored("t.flow") == [(0, 5.0), (2, 7.1)]
    # 2.0 at 30 s is inside the band and the interval; 3.0 at 61 s: interval elapsed
    assert stored("t.slow") == [(0, 1.0), (61, 3.0)]
    assert stored("t.valve") == [(0, 0.0), (5, 1.0), (9, 0.0)]
    assert stored("t.mode") == [(0, "auto"), (4, "manual")]
    assert stored("t.skip") == []
    assert rec.points_written == 3 + 2 + 2 + 3 + 2
    assert rec.status() == {
        "historian.spool_points": 0,
        "historian.backend_ok": True,
        "historian.spool_full": False,
    }
    h.close()


class GateBackend(SqliteHistorian):
    """A real SQLite backend whose writes block until released, to observe the worker thread."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.release = threading.Event()
        self.threads: set[str] = set()

    def write(self, batch):  # type: ignore[override]
        self.threads.add(threading.current_thread().name)
        self.release.wait(10)
        super().write(batch)


async def test_batches_are_written_off_the_loop_and_flushed_on_stop(tmp_path: Path) -> None:
    db = TagDatabase([TagDef(f"p{i}") for i in range(50)])
    h = GateBackend(tmp_path / "h.sqlite")
    rec = Recorder(db, h, batch_size=20, flush_s=60)
    await rec.start()
    for i in range(50):
        db.update(f"p{i}", float(i), ts=T0 + i)
    await settle()  # one bus batch of 50 -> a kick; the writer blocks in the gate
    for _ in range(5):
        await asyncio.sleep(0)  # the event loop keeps running while the write is blocked
    h.release.set()
    await rec.stop()
    assert all(name.startswith("historian-writer") for name in h.threads)
    assert len(h.last([f"p{i}" for i in range(50)])) == 50
    assert rec.points_written == 50
    h.close()


class DownBackend(SqliteHistorian):
    """A real SQLite backend that refuses writes while ``down`` is set."""

    down = True

    def write(self, batch):  # type: ignore[override]
        if self.down:
            raise BackendUnavailable("backend down for the test")
        super().write(batch)


async def test_status_reports_spool(tmp_path: Path) -> None:
    db = TagDatabase([TagDef("a")])
    backend = DownBackend(tmp_path / "h.sqlite")
    spool = SpoolingHistorian(backend, tmp_path / "spool", max_points=1, retry_initial_s=3600)
    rec = Recorder(db, spool, flush_s=60)
    await rec.start()
    db.update("a", 1.0, ts=T0)
    await settle()
    await rec.flush()
    assert rec.status() == {
        "historian.spool_points": 1,
        "historian.backend_ok": False,
        "historian.spool_full": True,
    }
    backend.down = False
    assert spool.drain()
    assert rec.status()["historian.backend_ok"] is True
    await rec.stop()
    assert spool.query_raw("a", T0, T0 + 1) == [Sample("a", T0, 1.0)]
    spool.close()


async def test_historize_follows_a_reload_of_the_definitions(tmp_path: Path) -> None:
    db = TagDatabase(defs())
    h = SqliteHistorian(tmp_path / "h.sqlite")
    rec = Recorder(db, h, batch_size=1000, flush_s=60)
    await rec.start()
    try:
        db.update("t.skip", 1.0, ts=T0)
        db.update("t.mode", "auto", ts=T0)  # a str tag in the same batch keeps its text
        await settle()
        flipped = [TagDef("t.skip", historize=True) if d.name == "t.skip" else d for d in defs()]
        flipped = [TagDef("t.mode", type=TagType.STR, historize=False) if d.name == "t.mode"
                   else d for d in flipped]  # fmt: skip
        db.replace_defs(flipped)
        db.update("t.skip", 2.0, ts=T0 + 1)
        db.update("t.mode", "manual", ts=T0 + 1)
        await settle()
        await rec.flush()
    finally:
        await rec.stop()
    assert [(s.ts, s.value) for s in h.query_raw("t.skip", T0 - 1, T0 + 10)] == [(T0 + 1, 2.0)]
    assert [(s.ts, s.value) for s in h.query_raw("t.mode", T0 - 1, T0 + 10)] == [(T0, "auto")]
    h.close()
