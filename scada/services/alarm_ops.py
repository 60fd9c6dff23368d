"""Operator actions on alarms: acknowledge, shelve, unshelve, out of service; each audited once.

Every path that acts on an alarm (REST, the websocket, the Bokeh HMI) calls
:class:`AlarmOps`, which calls the runtime's :class:`~alarms.engine.AlarmEngine` and
writes one audit entry per alarm affected, always of the same shape:

* ``action``: ``alarm.ack``, ``alarm.shelve``, ``alarm.unshelve``, ``alarm.out_of_service``
  or ``alarm.in_service``; ``target``: the alarm key; ``detail``: the comment or reason;
* ``before`` and ``after``: ``{"state", "occurrence", "shelved_until"}`` of the alarm
  (ISO time or None); a shelve's ``after`` adds ``duration_s``.

Permission checks stay with the callers (the one table, :func:`scada.services.auth.may`).
Errors are :class:`AlarmOpError` with the status a caller answers: 404 unknown alarm,
422 invalid request (no reason, bad duration), 503 no alarm engine.

Threading: loop-thread only (the engine's contract).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tags.model import iso

if TYPE_CHECKING:
    from alarms.engine import AlarmEngine
    from scada.services.audit import AuditLog

__all__ = ["AlarmOpError", "AlarmOps", "alarm_state"]


class AlarmOpError(Exception):
    """An alarm operation refused; ``status`` is 404, 422 or 503."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def alarm_state(alarm: Any) -> dict[str, Any]:
    """Return the audited state of an alarm snapshot: state, occurrence, shelved until."""
    return {
        "state": alarm.state.value,
        "occurrence": alarm.occurrence,
        "shelved_until": iso(alarm.shelved_until),
    }


def _ref(ref: Any) -> int | str:
    if isinstance(ref, bool) or not isinstance(ref, int | str):
        raise AlarmOpError(f"an alarm is an occurrence id or a key, got {ref!r}", 422)
    return ref


class AlarmOps:
    """The alarm operations over one alarm engine (module docstring).

    ``engine`` is None where no alarms run (a collector): every operation is then 503.
    ``audit`` is the :class:`~scada.services.audit.AuditLog`; None only for tools that run
    pages without one (nothing is recorded then).
    """

    def __init__(self, engine: AlarmEngine | None, audit: AuditLog | None = None) -> None:
        self._engine = engine
        self.audit = audit

    def engine(self) -> AlarmEngine:
        """Return the alarm engine; :class:`AlarmOpError` 503 when none is running."""
        engine = self._engine
        if engine is None:
            raise AlarmOpError("the alarm engine is not running", 503)
        return engine

    def _record(
        self,
        action: str,
        user: Any,
        source: str,
        before: Any,
        after: Any,
        detail: str | None,
        **extra: Any,
    ) -> None:
        if self.audit is None:
            return
        self.audit.record(
            action,
            user=user,
            source=source,
            target=after.key,
            before=alarm_state(before),
            after={**alarm_state(after), **extra},
            detail=detail,
        )

    def ack(
        self, user: Any, refs: Iterable[int | str], comment: str | None = None, *, source: str
    ) -> list[Any]:
        """Acknowledge occurrence ids or keys; return the alarms acknowledged by this call.

        An occurrence id that is gone or already acknowledged is skipped (the operator saw
        an older state); an unknown key raises 404.
        """
        engine = self.engine()
        wanted = [_ref(r) for r in refs]
        if not wanted:
            raise AlarmOpError("name at least one alarm to acknowledge", 422)
        if comment is not None and not isinstance(comment, str):
            raise AlarmOpError("the comment must be text", 422)
        before: dict[str, Any] = {}
        for ref in wanted:
            try:
                a = engine.get(ref)
            except KeyError as exc:
                if isinstance(ref, int):
                    continue  # the engine skips a closed occurrence too
                raise AlarmOpError(str(exc.args[0]), 404) from None
            before.setdefault(a.key, a)
        done = self._call(engine.ack, wanted, _name(user), comment)
        for a in done:
            self._record("alarm.ack", user, source, before.get(a.key, a), a, comment)
        return list(done)

    def shelve(
        self,
        user: Any,
        ref: int | str,
        duration_s: float | None,
        reason: str | None,
        *,
        source: str,
    ) -> Any:
        """Shelve an alarm for ``duration_s`` seconds with a reason; return it.

        A missing (None) or invalid duration or reason is refused (422).
        """
        engine = self.engine()
        before = self._get(engine, ref)
        after = self._call(engine.shelve, ref, _name(user), duration_s, reason)
        self._record("alarm.shelve", user, source, before, after, reason, duration_s=duration_s)
        return after

    def unshelve(
        self, user: Any, ref: int | str, comment: str | None = None, *, source: str
    ) -> Any:
        """End the shelving of an alarm now; return it."""
        engine = self.engine()
        before = self._get(engine, ref)
        after = self._call(engine.unshelve, ref, _name(user), comment)
        self._record("alarm.unshelve", user, source, before, after, comment)
        return after

    def set_out_of_service(
        self, user: Any, ref: int | str, on: bool, reason: str | None = None, *, source: str
    ) -> Any:
        """Take an alarm out of service (``on``, needs a reason) or back in; return it."""
        engine = self.engine()
        before = self._get(engine, ref)
        after = self._call(engine.set_out_of_service, ref, _name(user), bool(on), reason)
        action = "alarm.out_of_service" if on else "alarm.in_service"
        self._record(action, user, source, before, after, reason)
        return after

    @staticmethod
    def _get(engine: Any, ref: Any) -> Any:
        try:
            return engine.get(_ref(ref))
        except KeyError as exc:
            raise AlarmOpError(str(exc.args[0]), 404) from None

    @staticmethod
    def _call(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except KeyError as exc:
            raise AlarmOpError(str(exc.args[0]), 404) from None
        except (ValueError, TypeError) as exc:
            raise AlarmOpError(str(exc), 422) from None


def _name(user: Any) -> str:
    return str(getattr(user, "name", user) or "")
