"""What every handler shares: the runtime's services, the hub, metrics, the worker threads.

Built once by :class:`scada.server.http.ScadaServer` and handed to every route through
Tornado's ``initialize(ctx=...)``. The services (auth, audit, commands, alarm operations,
config versions, billing, ...) are the runtime's typed bundle
(:class:`~scada.services.bundle.Services`); the shortcuts below only name them. Loop-thread
only; ``run_blocking`` hands sync work (historian and journal queries, audit queries) to the
server's worker threads.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from scada.server.proxy import TrustedProxies
from scada.services.alarm_ops import AlarmOps
from scada.services.audit import AuditLog
from scada.services.auth import Auth
from scada.services.bundle import Services
from scada.services.commands import CommandService
from scada.services.users import UserStore

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from alarms.engine import AlarmEngine
    from historian.base import Historian
    from scada.server.hub import Hub
    from scada.services.config_versions import ConfigManager

__all__ = ["ServerContext"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(eq=False)
class ServerContext:
    """Shared state of one server (see the module docstring)."""

    services: Services
    tls: bool = False
    allowed_origins: frozenset[str] = frozenset()
    proxies: TrustedProxies = field(default_factory=TrustedProxies)
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=4, thread_name_prefix="scada-api")
    )
    hub: Hub | None = None
    registry: CollectorRegistry | None = None
    home: str = "/api/openapi.json"
    ws_opened: int = 0
    http_counts: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def data_dir(self) -> Path:
        return self.services.data_dir

    @property
    def users(self) -> UserStore:
        return self.services.users

    @property
    def auth(self) -> Auth:
        return self.services.auth

    @property
    def audit(self) -> AuditLog:
        return self.services.audit

    @property
    def commands(self) -> CommandService:
        return self.services.commands

    @property
    def alarm_ops(self) -> AlarmOps:
        return self.services.alarm_ops

    @property
    def config(self) -> ConfigManager | None:
        return self.services.config

    @property
    def alarms(self) -> AlarmEngine | None:
        """The alarm engine, or None when alarms are not running."""
        return self.services.alarms

    @property
    def historian(self) -> Historian | None:
        return self.services.historian

    def metrics_ws_opened(self) -> None:
        self.ws_opened += 1

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a worker thread and return its result (never blocks the loop)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, fn, *args)

    def close(self) -> None:
        """Stop the worker threads (the services are the runtime's: it closes them)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
