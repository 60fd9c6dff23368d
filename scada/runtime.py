"""The runtime: starts every part of a site in one asyncio loop and stops them in order.

Parts start in data-flow order (tag database, computed tags, simulator, drivers, historian)
and stop in reverse, so nothing publishes into a part that is already gone. Loop-thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from scada.config import SiteConfig
from tags.computed import ComputedTags
from tags.database import TagDatabase
from tags.model import Quality, Source, TagDef, TagType

log = logging.getLogger(__name__)

STALE_CHECK_S = 1.0


def system_tag_defs() -> list[TagDef]:
    """Return the runtime's own health tags (alarm-ready, historised like any other)."""
    return [
        TagDef("historian.backend_ok", TagType.BOOL, source=Source.SYSTEM,
               description="historian backend reachable (false while writes are spooled)"),
        TagDef("historian.spool_points", TagType.INT, source=Source.SYSTEM,
               description="points waiting in the store-and-forward spool"),
        TagDef("historian.spool_full", TagType.BOOL, source=Source.SYSTEM,
               description="spool above historian.spool_max_points"),
    ]


class Runtime:
    """Everything ``scada run`` runs for one site configuration.

    ``simulate`` overrides the config's ``simulate.enabled``. Files go under ``data_dir``.
    """

    def __init__(self, site: SiteConfig, data_dir: str | Path, *, simulate: bool | None = None,
                 speed: float | None = None) -> None:
        self.site = site
        self.data_dir = Path(data_dir)
        self.simulate = site.simulate.enabled if simulate is None else simulate
        self.speed = site.simulate.speed if speed is None else speed
        self.db = TagDatabase([*site.tag_defs(), *system_tag_defs()])
        self.computed = ComputedTags(self.db)
        self.simulator: Any = None
        self.drivers: Any = None
        self.historian: Any = None
        self.recorder: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        """Start every part; raise if one cannot start (the parts already started are stopped)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._init_memory_tags()
            self.computed.start()
            if self.simulate:
                from drivers.simulator import Simulator

                self.simulator = Simulator(self.site, speed=self.speed, seed=self.site.simulate.seed)
                await self.simulator.start()
            from drivers.manager import DriverManager

            self.drivers = DriverManager(self.site, self.db, stale_check_s=None)
            await self.drivers.start()
            await self._start_historian()
            self._tasks.append(asyncio.create_task(self._housekeeping(), name="runtime-housekeeping"))
        except BaseException:
            await self.stop()
            raise
        log.info("runtime started: %d tags, %d devices", len(self.db), len(self.site.devices))

    def _init_memory_tags(self) -> None:
        self.db.set_initial(self.site.initial_values())

    async def _start_historian(self) -> None:
        from historian.factory import open_historian
        from historian.recorder import Recorder

        cfg = self.site.historian
        self.historian = open_historian(cfg, self.data_dir)
        start = getattr(self.historian, "start", None)
        if start is not None:  # the spooling wrapper runs a retry thread
            start()
        self.recorder = Recorder(self.db, self.historian, batch_size=cfg.batch_size, flush_s=cfg.flush_s)
        await self.recorder.start()

    async def _housekeeping(self) -> None:
        """Mark stale tags and publish historian health, once a second."""
        while True:
            now = time.time()
            self.db.check_stale(now)
            if self.recorder is not None:
                for name, value in self.recorder.status().items():
                    self.db.update(name, value)
            await asyncio.sleep(STALE_CHECK_S)

    async def stop(self) -> None:
        """Stop every started part in reverse order; safe to call twice."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for part in ("drivers", "simulator", "recorder"):
            obj = getattr(self, part)
            if obj is not None:
                try:
                    await obj.stop()
                except Exception:
                    log.exception("stopping %s failed", part)
                setattr(self, part, None)
        self.computed.stop()
        if self.historian is not None:
            self.historian.close()
            self.historian = None
        self._stopped.set()

    def summary(self) -> dict[str, int]:
        """Return counts for the start-up line."""
        good = sum(1 for v in self.db.snapshot("*").values() if v.quality is Quality.GOOD)
        return {"tags": len(self.db), "good": good, "devices": len(self.site.devices)}
