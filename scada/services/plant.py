"""The live plant: the parts a configuration apply replaces, in one typed place.

:class:`Plant` holds the running site configuration, the tag database, the drivers (or a
central's remote writer) and the simulator. The runtime (:mod:`scada.runtime`) is its only
writer: it fills it at start and swaps its parts in :meth:`scada.runtime.Runtime.apply`.
Every service that needs "the current site" or "the current write path" holds the plant and
reads the attribute at call time, so an apply that restarts the drivers is seen at once.

Threading: loop-thread only; the runtime swaps parts on the loop, between awaits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tags.database import TagDatabase

if TYPE_CHECKING:
    from drivers.base import WriteResult
    from drivers.manager import DriverManager
    from drivers.simulator import Simulator
    from scada.config import SiteConfig

__all__ = ["Plant", "Writer"]


class Writer(Protocol):
    """The write entry point of a role: the drivers, or (at a central) the collectors."""

    async def write(self, tag: str, value: Any) -> WriteResult:
        """Write ``value`` to the device point ``tag`` and read it back."""
        ...


@dataclass(eq=False)
class Plant:
    """The running site and what talks to its devices (module docstring)."""

    site: SiteConfig
    db: TagDatabase
    role: str = "all"
    #: the drivers of this process (roles ``all`` and ``collector``), None at a central
    drivers: DriverManager | None = None
    #: where writes go: the drivers, or a central's remote writer; None before start
    writer: Writer | None = None
    simulator: Simulator | None = None
    #: the simulator's speed (a restarted simulator keeps it)
    speed: float = 1.0
