"""The server (issue 6): REST and websocket API, users and roles, audit, safe remote commands.

``ScadaServer(runtime, data_dir, host=..., port=...)`` serves everything on one port in the
runtime's loop (see ``scada.server.http``); ``CommandService`` is the only path for remote
writes; ``may(user, action, target)`` answers every permission question from the one table
``PERMISSIONS`` in ``scada.services.auth``.
"""

from scada.server.http import ScadaServer
from scada.services.audit import AuditLog
from scada.services.auth import PERMISSIONS, Action, Auth, Role, User, may, system_user
from scada.services.commands import Command, CommandError, CommandService, CommandState
from scada.services.users import UserError, UserStore

__all__ = [
    "PERMISSIONS",
    "Action",
    "AuditLog",
    "Auth",
    "Command",
    "CommandError",
    "CommandService",
    "CommandState",
    "Role",
    "ScadaServer",
    "User",
    "UserError",
    "UserStore",
    "may",
    "system_user",
]
