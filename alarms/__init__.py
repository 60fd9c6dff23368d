"""Alarm rules, the ISA-18.2 state machine, the journal, notifiers and escalation.

Data flow: the ``TagDatabase`` bus -> ``AlarmEngine`` (rules bound by ``alarms.rules``,
state per point in ``alarms.points``) -> ``AlarmEvent``s -> the ``AlarmJournal`` (SQLite)
and subscribers such as the notification ``Router`` (``alarms.notify``), the websocket
and the HMI.
"""

from alarms.config import AlarmRule, NotificationsConfig, check_notifications, check_references
from alarms.engine import AlarmEngine
from alarms.journal import AlarmJournal
from alarms.kpi import KpiReport, compute_kpis
from alarms.model import Alarm, AlarmEvent, AlarmFilter, AlarmState, EventKind
from alarms.points import count_tag_defs
from alarms.rules import BindingError

__all__ = [
    "Alarm",
    "AlarmEngine",
    "AlarmEvent",
    "AlarmFilter",
    "AlarmJournal",
    "AlarmRule",
    "AlarmState",
    "BindingError",
    "EventKind",
    "KpiReport",
    "NotificationsConfig",
    "check_notifications",
    "check_references",
    "compute_kpis",
    "count_tag_defs",
]
