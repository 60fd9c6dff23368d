"""What every handler shares: the runtime, auth, audit, commands, alarm ops, hub, config.

Built once by :func:`scada.server.http.start_server` and handed to every route through
Tornado's ``initialize(ctx=...)``. Loop-thread only; ``run_blocking`` hands sync work
(historian and journal queries, audit queries) to the server's worker threads.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from scada.server.proxy import TrustedProxies
from scada.services.alarm_ops import AlarmOps
from scada.services.audit import AuditLog
from scada.services.auth import Auth
from scada.services.commands import CommandService
from scada.services.users import UserStore

__all__ = ["ServerContext"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(eq=False)
class ServerContext:
    """Shared state of one server (see the module docstring)."""

    runtime: Any
    data_dir: Path
    users: UserStore
    auth: Auth
    audit: AuditLog
    commands: CommandService
    tls: bool = False
    allowed_origins: frozenset[str] = frozenset()
    proxies: TrustedProxies = field(default_factory=TrustedProxies)
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=4, thread_name_prefix="scada-api")
    )
    hub: Any = None
    config: Any = None
    registry: Any = None
    home: str = "/api/openapi.json"
    ws_opened: int = 0
    http_counts: collections.Counter[str] = field(default_factory=collections.Counter)
    alarm_ops: AlarmOps = field(init=False)

    def __post_init__(self) -> None:
        self.alarm_ops = AlarmOps(self.runtime, self.audit)

    @property
    def alarms(self) -> Any:
        """The runtime's alarm engine, or None when alarms are not running."""
        return getattr(self.runtime, "alarms", None)

    @property
    def historian(self) -> Any:
        return getattr(self.runtime, "historian", None)

    def metrics_ws_opened(self) -> None:
        self.ws_opened += 1

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a worker thread and return its result (never blocks the loop)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, fn, *args)

    def close(self) -> None:
        self.commands.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.audit.close()
        self.users.close()
