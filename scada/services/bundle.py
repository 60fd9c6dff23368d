"""The typed bundle of services the runtime built: what the web server and the HMI are given.

The runtime (:mod:`scada.runtime`, the composition root) builds every part once, in an order
fixed by construction (each part is built from the parts it needs), and hands this bundle to
the HTTP server (:mod:`scada.server`) and the HMI pages (:mod:`hmi.app`). They read it; they
never set anything on it, and nothing is looked up by name. Parts that a role does not run
are None (a collector has no alarm engine, historian or billing; a central has no drivers).

The parts a configuration apply replaces (site, drivers, writer, simulator) are on
:attr:`Services.plant`, read at call time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scada.services.alarm_ops import AlarmOps
from scada.services.audit import AuditLog
from scada.services.auth import Auth
from scada.services.commands import CommandService
from scada.services.plant import Plant
from scada.services.users import UserStore
from tags.database import TagDatabase

if TYPE_CHECKING:
    from alarms.engine import AlarmEngine
    from alarms.journal import AlarmJournal
    from billing.service import Billing
    from historian.base import Historian
    from historian.recorder import Recorder
    from scada.backup import BackupScheduler
    from scada.config import SiteConfig
    from scada.health import HealthMonitor
    from scada.services.config_versions import ConfigManager

__all__ = ["Services", "standalone_services"]


def _remote_ip(request: Any) -> str:
    return str(getattr(request, "remote_ip", None) or "")


@dataclass(frozen=True, eq=False)
class Services:
    """Everything one runtime serves to its users (module docstring)."""

    plant: Plant
    data_dir: Path
    audit: AuditLog
    users: UserStore
    auth: Auth
    commands: CommandService
    alarm_ops: AlarmOps
    historian: Historian | None = None
    recorder: Recorder | None = None
    alarms: AlarmEngine | None = None
    alarm_journal: AlarmJournal | None = None
    billing: Billing | None = None
    config: ConfigManager | None = None
    health: HealthMonitor | None = None
    backup: BackupScheduler | None = None
    #: the client address of an HTTP request (through the trusted reverse proxies)
    client_address: Callable[[Any], str] = _remote_ip

    @property
    def site(self) -> SiteConfig:
        """The running site configuration (changes when a new one is applied)."""
        return self.plant.site

    @property
    def db(self) -> TagDatabase:
        """The live tag database."""
        return self.plant.db


def standalone_services(plant: Plant, data_dir: str | Path) -> Services:
    """Return services over ``plant`` without a runtime: stores in ``data_dir``, no alarms.

    For tools that show the HMI over a tag database they fill themselves (``scada bench
    hmi``). Close ``users``, ``audit`` and ``commands`` when done.
    """
    data = Path(data_dir)
    audit = AuditLog.in_data_dir(data)
    users = UserStore.in_data_dir(data)
    return Services(
        plant=plant,
        data_dir=data,
        audit=audit,
        users=users,
        auth=Auth(users),
        commands=CommandService(plant, audit),
        alarm_ops=AlarmOps(None, audit),
    )
