"""Alarms: list, acknowledge, shelve / unshelve, out of service, journal, KPIs.

Operator actions go to the runtime's :class:`~alarms.engine.AlarmEngine` on the loop and
are audited; journal and KPI queries open their own journal connection in a worker
thread (``<data-dir>/alarms.sqlite``).
"""

from __future__ import annotations

import time
from typing import Any

from scada.server.handlers.base import ApiError, ApiHandler
from scada.server.schemas import AckBody, ServiceBody, ShelveBody, UnshelveBody
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


def _ref(text: str) -> int | str:
    """Return an occurrence id for digits, else the alarm key."""
    return int(text) if text.isdigit() and len(text) < 18 else text


class _AlarmBase(ApiHandler):
    def engine(self) -> Any:
        alarms = self.ctx.alarms
        if alarms is None:
            raise ApiError(503, "the alarm engine is not running")
        return alarms

    def point(self, ref: str) -> Any:
        try:
            return self.engine().get(_ref(ref))
        except KeyError as exc:
            raise ApiError(404, str(exc.args[0])) from None

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
        from alarms.model import AlarmFilter, AlarmState

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
        assert self.user is not None
        try:
            done = self.engine().ack(body.alarms, self.user.name, body.comment)
        except KeyError as exc:
            raise ApiError(404, str(exc.args[0])) from None
        for a in done:
            self.ctx.audit.record(
                "alarm.ack",
                user=self.user,
                source=self.source,
                target=a.key,
                before={"state": "unacked", "occurrence": a.occurrence},
                after={"state": a.state.value},
                detail=body.comment,
            )
        self.reply({"acked": [a.to_json() for a in done]})


class AlarmShelveApi(_AlarmBase):
    """``POST /api/alarms/{ref}/shelve``: shelve for ``duration_s`` with a reason."""

    def post(self, ref: str) -> None:
        body = self.body(ShelveBody)
        before = self.point(ref)
        assert self.user is not None
        try:
            a = self.engine().shelve(_ref(ref), self.user.name, body.duration_s, body.reason)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        self.ctx.audit.record(
            "alarm.shelve",
            user=self.user,
            source=self.source,
            target=a.key,
            before={"state": before.state.value},
            after={"state": a.state.value, "until": iso(a.shelved_until)},
            detail=body.reason,
        )
        self.reply({"alarm": a.to_json()})


class AlarmUnshelveApi(_AlarmBase):
    """``POST /api/alarms/{ref}/unshelve``: end shelving now."""

    def post(self, ref: str) -> None:
        body = self.body(UnshelveBody)
        before = self.point(ref)
        assert self.user is not None
        a = self.engine().unshelve(_ref(ref), self.user.name, body.comment)
        self.ctx.audit.record(
            "alarm.unshelve",
            user=self.user,
            source=self.source,
            target=a.key,
            before={"state": before.state.value},
            after={"state": a.state.value},
            detail=body.comment,
        )
        self.reply({"alarm": a.to_json()})


class AlarmServiceApi(_AlarmBase):
    """``POST /api/alarms/{ref}/out-of-service``: take out of service (or back)."""

    def post(self, ref: str) -> None:
        body = self.body(ServiceBody)
        before = self.point(ref)
        assert self.user is not None
        try:
            a = self.engine().set_out_of_service(_ref(ref), self.user.name, body.on, body.reason)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        self.ctx.audit.record(
            "alarm.out_of_service" if body.on else "alarm.in_service",
            user=self.user,
            source=self.source,
            target=a.key,
            before={"state": before.state.value},
            after={"state": a.state.value},
            detail=body.reason,
        )
        self.reply({"alarm": a.to_json()})


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
        limit = self.arg_int("limit", 1000, lo=1, hi=10000)
        offset = self.arg_int("offset", 0, lo=0, hi=10**9)
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
        if until < since:
            raise ApiError(400, "until is before since")
        report = await self.journal_call(lambda j: j.kpis(since, until, now=min(now, until)))
        self.reply(report.to_json())
