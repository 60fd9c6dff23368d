"""Alarms: list, acknowledge, shelve / unshelve, out of service, journal, KPIs.

Operator actions go through the server's :class:`~scada.services.alarm_ops.AlarmOps` (the
engine, on the loop, and one audit entry per alarm); journal and KPI queries open their own journal connection in a worker
thread (``<data-dir>/alarms.sqlite``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from alarms.model import AlarmState
from scada.server.formats import one_or_more_of
from scada.server.handlers.base import ApiError, ApiHandler
from scada.server.schemas import AckBody, ServiceBody, ShelveBody, UnshelveBody
from scada.services.alarm_ops import AlarmOpError
from tags.model import iso

__all__ = [
    "AlarmAckApi",
    "AlarmJournalApi",
    "AlarmKpisApi",
    "AlarmServiceApi",
    "AlarmShelveApi",
    "AlarmUnshelveApi",
    "AlarmsApi",
]


#: ``priority=1,2``: comma-separated priority numbers.
PRIORITIES = r"^[0-9]{1,3}(?:,[0-9]{1,3})*$"
#: ``state=unacknowledged,acknowledged``: comma-separated alarm states.
STATES = one_or_more_of(s.value for s in AlarmState)
MAX_JOURNAL_ROWS = 10000
MAX_JOURNAL_OFFSET = 10**9


def _ref(text: str) -> int | str:
    """Return an occurrence id for digits, else the alarm key."""
    return int(text) if text.isdigit() and len(text) < 18 else text


class _AlarmBase(ApiHandler):
    def engine(self) -> Any:
        alarms = self.ctx.alarms
        if alarms is None:
            raise ApiError(503, "the alarm engine is not running")
        return alarms

    def journal_call(self, fn: Any) -> Any:
        from alarms.journal import AlarmJournal

        data_dir = self.ctx.data_dir

        def run() -> Any:
            journal = AlarmJournal.in_data_dir(data_dir)
            try:
                return fn(journal)
            finally:
                journal.close()

        return self.ctx.run_blocking(run)


class AlarmsApi(_AlarmBase):
    """``GET /api/alarms``: the alarm list (``all=true``: every point, normal ones too)."""

    def get(self) -> None:
        from alarms.model import AlarmFilter

        engine = self.engine()
        prio = self.arg("priority")
        priorities = None
        if prio:
            try:
                priorities = [int(p) for p in prio.split(",")]
            except ValueError:
                raise ApiError(400, f"priority: expected integers, got {prio!r}") from None
        states = None
        if self.arg("state"):
            try:
                states = [AlarmState.parse(s) for s in (self.arg("state") or "").split(",")]
            except ValueError as exc:
                raise ApiError(400, f"state: {exc}") from None
        flt = AlarmFilter(
            priorities=priorities,
            areas=self.arg("area"),
            states=states,
            keys=self.arg("key"),
            text=self.arg("text"),
        )
        if self.arg_bool("all", False):
            alarms = engine.points(flt)
        else:
            alarms = engine.active(flt, include_hidden=self.arg_bool("hidden", False))
        self.reply({"counts": engine.counts(), "alarms": [a.to_json() for a in alarms]})


class AlarmAckApi(_AlarmBase):
    """``POST /api/alarms/ack``: acknowledge by occurrence ids or keys, with a comment."""

    def post(self) -> None:
        body = self.body(AckBody)
        with _op_errors():
            done = self.ctx.alarm_ops.ack(self.user, body.alarms, body.comment, source=self.source)
        self.reply({"acked": [a.to_json() for a in done]})


class AlarmShelveApi(_AlarmBase):
    """``POST /api/alarms/{ref}/shelve``: shelve for ``duration_s`` with a reason."""

    def post(self, ref: str) -> None:
        body = self.body(ShelveBody)
        with _op_errors():
            a = self.ctx.alarm_ops.shelve(
                self.user, _ref(ref), body.duration_s, body.reason, source=self.source
            )
        self.reply({"alarm": a.to_json()})


class AlarmUnshelveApi(_AlarmBase):
    """``POST /api/alarms/{ref}/unshelve``: end shelving now."""

    def post(self, ref: str) -> None:
        body = self.body(UnshelveBody)
        with _op_errors():
            a = self.ctx.alarm_ops.unshelve(self.user, _ref(ref), body.comment, source=self.source)
        self.reply({"alarm": a.to_json()})


class AlarmServiceApi(_AlarmBase):
    """``POST /api/alarms/{ref}/out-of-service``: take out of service (or back)."""

    def post(self, ref: str) -> None:
        body = self.body(ServiceBody)
        with _op_errors():
            a = self.ctx.alarm_ops.set_out_of_service(
                self.user, _ref(ref), body.on, body.reason, source=self.source
            )
        self.reply({"alarm": a.to_json()})


@contextlib.contextmanager
def _op_errors() -> Iterator[None]:
    """Answer an :class:`AlarmOpError` with its status (404, 422, 503)."""
    try:
        yield
    except AlarmOpError as exc:
        raise ApiError(exc.status, exc.message) from None


def _iso_times(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for k, v in row.items():
        if (k == "ts" or k.endswith("_ts")) and isinstance(v, int | float):
            out[k] = iso(v)
    return out


class AlarmJournalApi(_AlarmBase):
    """``GET /api/alarms/journal``: journal events, newest first."""

    async def get(self) -> None:
        now = time.time()
        since = self.arg_time("since", now - 86400.0)
        until = self.arg_time("until", None)
        key, text = self.arg("key"), self.arg("text")
        limit = self.arg_int("limit", 1000, lo=1, hi=MAX_JOURNAL_ROWS)
        offset = self.arg_int("offset", 0, lo=0, hi=MAX_JOURNAL_OFFSET)
        rows = await self.journal_call(
            lambda j: j.history(
                since=since, until=until, key=key, text=text, limit=limit, offset=offset
            )
        )
        self.reply({"events": [_iso_times(r) for r in rows]})


class AlarmKpisApi(_AlarmBase):
    """``GET /api/alarms/kpis?since=&until=``: ISA-18.2 KPIs of the period (default 24 h)."""

    async def get(self) -> None:
        now = time.time()
        until = self.arg_time("until", now)
        assert until is not None
        since = self.arg_time("since", until - 86400.0)
        assert since is not None
        if until <= since:
            raise ApiError(400, "until must be after since")
        report = await self.journal_call(lambda j: j.kpis(since, until, now=min(now, until)))
        self.reply(report.to_json())
