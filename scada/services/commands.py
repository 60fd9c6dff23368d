"""The command service: the only path for remote writes (valves, meter relays, setpoints).

Select-before-operate:

1. ``select(user, tag, value)`` checks the role (``commands.operate`` through
   :func:`~scada.services.auth.may`), the tag (a writable device point or memory tag), the
   value (type and ``min``/``max``, the driver's own checks) and the device (not offline),
   and reserves the tag for this user until ``expires_ts`` (``select_timeout_s``, default
   30 s). A refused select still creates a command in state ``failed`` (audited) and
   raises :class:`CommandError` carrying it.
2. ``operate(user, id)`` by the same user before expiry sends the write (state
   ``operated``), then the driver reads back: ``confirmed`` or ``failed``.
3. ``cancel(user, id)`` ends a selection (``cancelled``); an unused selection ends
   ``expired``.

Idempotency: a ``key`` given with a select is remembered per user for
``IDEMPOTENCY_TTL_S``; the same key with the same tag and value returns the same command
(``CommandError`` 409 for another request).

Durability: with a :class:`~scada.services.command_store.CommandStore` every state change is
saved, so commands, batches and idempotency keys survive a restart; on start the commands
a stop or crash interrupted end ``expired`` (a selection) or ``failed`` (a write whose
read-back never came: outcome unknown), audited as done by ``system``.
Operating a finished command returns it unchanged (never writes twice). Batches select
many targets at once and report a result per target. Every step is written to the
audit log and published to ``subscribe`` callbacks as ``{"type": "command", ...}``.

``execute(user, tag, value, reason)`` is select + operate in one call, for in-process
system users (billing's automatic trip), still audited.

Limits that protect equipment (per point in the configuration, a :class:`~tags.model.TagDef`
field; checked at select, for every user including ``billing``):

* ``min_interval_s``: a select within this time after the tag's last *operate* is refused
  (409, with ``retry_ts``; the message says "next command allowed at 13:09:41 CST" in the
  site's time zone). The interval counts from any operate, not only a confirmed one: a
  write whose read-back failed, mismatched or never came (restart: "outcome unknown") may
  still have switched the contactor, and billing retries a failed trip at every evaluation,
  so counting confirmed writes only would let a relay with a flaky read-back switch every
  minute, the very wear the limit is for. An
  operate the device never saw (it went offline after the select) counts too: rare, and the
  safe side. The operate times come from the command store on start, so a restart does not
  reset the interval.
* ``max_step``: for numeric tags, the largest change from the current value at select (422
  naming the current value and the step; 409 while the tag has no value to step from).

Threading: loop-thread only (timers use the running loop).
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from alarms.text import local_time_text, unit_symbol
from i18n import _
from scada.services.audit import AuditLog
from scada.services.auth import Action, User, may
from scada.services.command_model import Batch, Command, CommandError, CommandState
from scada.services.command_store import CommandStore
from scada.services.plant import Plant, Writer
from tags.model import Quality, Source, TagType

__all__ = [
    "Batch",
    "Command",
    "CommandError",
    "CommandRelayCommander",
    "CommandService",
    "CommandState",
    "RelayOutcome",
]

log = logging.getLogger(__name__)

MAX_BATCH = 1000
IDEMPOTENCY_TTL_S = 24 * 3600.0


class CommandService:
    """Select-before-operate over the plant's drivers and tag database (module docstring).

    ``plant`` supplies ``db``, ``drivers`` and ``writer`` (read at call time, so a config
    apply that replaces the drivers is seen); ``audit`` is the
    :class:`~scada.services.audit.AuditLog`.
    ``clock`` (epoch seconds) times selections, expiry and the limits; tests may replace it.
    """

    def __init__(
        self,
        plant: Plant,
        audit: AuditLog,
        *,
        select_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        keep: int = 1000,
        store: CommandStore | None = None,
    ) -> None:
        if not select_timeout_s > 0:
            raise ValueError(f"select_timeout_s must be > 0, got {select_timeout_s!r}")
        self.plant = plant
        self.audit = audit
        self.select_timeout_s = float(select_timeout_s)
        self.clock = clock
        self._keep = keep
        self._last_operated: dict[str, float] = {}  # tag -> time of its last operate
        self._commands: collections.OrderedDict[str, Command] = collections.OrderedDict()
        self._batches: collections.OrderedDict[str, Batch] = collections.OrderedDict()
        self._selected: dict[str, str] = {}  # tag -> id of its live selection
        self._keys: dict[tuple[str, str], tuple[str, float]] = {}  # (user, key) -> (id, ts)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._inflight: dict[str, asyncio.Future[Command]] = {}
        self._subscribers: list[Callable[[dict[str, Any]], Any]] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.store = store
        if store is not None:
            self._recover(store)

    def _recover(self, store: CommandStore) -> None:
        """Load the recent commands and operate times; end the interrupted ones (audited)."""
        self._last_operated.update(store.last_operated())
        for cmd in store.recent(self._keep):
            self._commands[cmd.id] = cmd
            if cmd.key is not None:
                self._keys[(cmd.user, cmd.key)] = (cmd.id, cmd.created_ts)
        for old in store.unfinished():
            cmd = self._commands.get(old.id, old)
            if cmd.state is CommandState.SELECTED:
                state, message = CommandState.EXPIRED, "the server restarted before operate"
            else:
                state = CommandState.FAILED
                message = (
                    "the server restarted before the read-back: outcome unknown, "
                    "check the tag's value"
                )
            before = {"id": cmd.id, "state": cmd.state.value}
            cmd.state, cmd.message, cmd.finished_ts = state, message, self.clock()
            store.save(cmd)
            self.counts[state.value] += 1
            self._audit(
                f"command.{state.value}",
                "system",
                cmd,
                result="failed",
                before=before,
                detail=message,
                source="internal",
            )

    # ------------------------------------------------------------------ events
    def subscribe(self, callback: Callable[[dict[str, Any]], Any]) -> Callable[[], None]:
        """Call ``callback(event)`` for every step; return the unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _publish(self, cmd: Command) -> None:
        if self.store is not None:
            self.store.save(cmd)
        self.counts[cmd.state.value] += 1
        event = {"type": "command", "event": cmd.state.value, "command": cmd.to_json()}
        for cb in tuple(self._subscribers):
            try:
                cb(event)
            except Exception:
                log.exception("command subscriber %r failed", cb)

    def _audit(
        self,
        action: str,
        user: User | str,
        cmd: Command | None,
        *,
        tag: str | None = None,
        result: str = "ok",
        before: Any = None,
        after: Any = None,
        detail: str | None = None,
        source: str | None = None,
    ) -> None:
        if cmd is not None:
            after = (
                after
                if after is not None
                else {"id": cmd.id, "value": cmd.value, "state": cmd.state.value}
            )
        self.audit.record(
            action,
            user=user,
            source=source or (cmd.source if cmd else None),
            target=tag or (cmd.tag if cmd else None),
            result=result,
            before=before,
            after=after,
            detail=detail,
        )

    # ------------------------------------------------------------------ lookups
    def get(self, command_id: str) -> Command:
        """Return the command ``command_id``; raise :class:`CommandError` 404."""
        cmd = self._commands.get(command_id)
        if cmd is None and self.store is not None:
            cmd = self.store.get(command_id)  # older than the working set: final
        if cmd is None:
            raise CommandError(404, f"no command {command_id!r}")
        return cmd

    def list(self, *, limit: int = 100, state: str | None = None) -> list[Command]:
        """Return recent commands, newest first."""
        out = [c for c in reversed(self._commands.values()) if state is None or c.state == state]
        return out[:limit]

    def get_batch(self, batch_id: str) -> Batch:
        batch = self._batches.get(batch_id)
        if batch is None and self.store is not None:
            batch = self.store.get_batch(batch_id)
            if batch is not None:
                self._remember_batch(batch)
        if batch is None:
            raise CommandError(404, f"no batch {batch_id!r}")
        return batch

    def _remember_batch(self, batch: Batch) -> None:
        self._batches[batch.id] = batch
        while len(self._batches) > self._keep:
            self._batches.popitem(last=False)

    # ------------------------------------------------------------------ checks
    def _check_target(self, tag: str, value: Any) -> tuple[Any, str | None]:
        """Return (checked value, device) or raise CommandError 404/422/409."""
        db = self.plant.db
        if tag not in db:
            raise CommandError(
                404, _("unknown tag {tag}: it is not in the running configuration", tag=tag)
            )
        d = db.definition(tag)
        if d.source is Source.DEVICE:
            if self._writer() is None:
                raise CommandError(
                    409, _("{tag} cannot be written now: no device drivers are running", tag=tag)
                )
            drivers = self.plant.drivers
            if drivers is not None:
                from drivers.base import WriteRejected, check_write

                try:
                    checked = check_write(drivers.binding(tag), value)
                except WriteRejected as exc:
                    raise CommandError(422, str(exc)) from None
            else:  # a central: the collector checks again against its device config
                checked = self._check_def(d, value)
            self._check_online(d.device)
            return checked, d.device
        if d.source is Source.MEMORY:
            return self._check_def(d, value), None
        raise CommandError(
            422,
            _("{tag} is not writable: it is a {source} value", tag=tag, source=d.source.value),
        )

    @staticmethod
    def _check_def(d: Any, value: Any) -> Any:
        """Check ``value`` against a TagDef (``drivers.base.check_write``): writable, type, min/max."""
        from drivers.base import WriteRejected, check_write

        try:
            return check_write(d, value)
        except WriteRejected as exc:
            raise CommandError(422, str(exc)) from None

    def _check_limits(self, tag: str, value: Any, now: float) -> None:
        """Refuse a select inside ``min_interval_s`` (409) or beyond ``max_step`` (422)."""
        db = self.plant.db
        d = db.definition(tag)
        last = self._last_operated.get(tag)
        if d.min_interval_s is not None and last is not None and now < last + d.min_interval_s:
            retry = last + d.min_interval_s
            raise CommandError(
                409,
                _(
                    "{tag} was operated {ago} s ago and may be operated once every {interval} s "
                    "(min_interval_s): next command allowed at {time}",
                    tag=tag,
                    ago=f"{now - last:.0f}",
                    interval=f"{d.min_interval_s:g}",
                    time=self._local_time(retry, now),
                ),
                retry_ts=retry,
            )
        if d.max_step is None or d.type not in (TagType.INT, TagType.FLOAT):
            return
        current = db.read(tag).value
        if isinstance(current, bool) or not isinstance(current, int | float):
            current = None
        unit = f" {unit_symbol(d.unit)}" if d.unit else ""
        if current is None or not math.isfinite(current):
            raise CommandError(
                409,
                _(
                    "{tag} has no current value yet, so the step to {value} cannot be checked "
                    "against max_step ({step}{unit}): try again when it has a value",
                    tag=tag,
                    value=f"{value:g}",
                    step=f"{d.max_step:g}",
                    unit=unit,
                ),
            )
        step = abs(float(value) - float(current))
        # scaled registers read back as 20.000000000000004: a step of exactly max_step passes
        if step > d.max_step * (1 + 1e-9) + 1e-9:
            raise CommandError(
                422,
                _(
                    "{tag}: {value} is {step}{unit} from the current value {current}{unit}, "
                    "more than one command may change it (max_step {max_step}{unit}): "
                    "change it in smaller steps",
                    tag=tag,
                    value=f"{value:g}",
                    step=f"{step:g}",
                    current=f"{current:g}",
                    max_step=f"{d.max_step:g}",
                    unit=unit,
                ),
            )

    def _local_time(self, ts: float, now: float) -> str:
        """Return ``ts`` as the site's wall-clock time with its zone (the date if not today)."""
        return local_time_text(ts, self.plant.site.site.timezone, date=False, now=now)

    def _writer(self) -> Writer | None:
        """The plant's write entry point: its ``writer`` (drivers or collectors) or drivers."""
        return self.plant.writer if self.plant.writer is not None else self.plant.drivers

    def _check_online(self, device: str | None) -> None:
        if device is None:
            return
        db = self.plant.db
        name = f"{device}.online"
        if name in db:
            v = db.read(name)
            if v.value is False and v.quality is Quality.GOOD:
                raise CommandError(
                    409,
                    _(
                        "device {device} is offline: it takes no commands until it answers again",
                        device=device,
                    ),
                )

    # ------------------------------------------------------------------ select
    def select(
        self,
        user: User,
        tag: str,
        value: Any,
        *,
        reason: str = "",
        source: str | None = None,
        key: str | None = None,
        batch: str | None = None,
    ) -> Command:
        """Select ``tag`` for writing ``value``; return the command in state ``selected``.

        Raises :class:`CommandError`: 403 (role), 404 (unknown tag), 409 (tag selected by
        another command, device offline, idempotency key reused, inside ``min_interval_s``
        with ``retry_ts``), 422 (not writable, wrong type, out of range, beyond
        ``max_step``). From 404 on a ``failed`` command is recorded and attached.
        """
        if not may(user, Action.COMMANDS_OPERATE, tag):
            self._audit(
                "command.select",
                user,
                None,
                tag=tag,
                result="denied",
                source=source,
                after={"value": value},
                detail="role may not operate",
            )
            raise CommandError(
                403,
                _(
                    "user {user} ({role}) may not operate {tag}",
                    user=user.name,
                    role=user.role.value,
                    tag=tag,
                ),
            )
        if key is not None:
            existing = self.by_key(user, key)
            if existing is not None:
                if existing.tag == tag and existing.value == value and existing.batch == batch:
                    return existing
                raise CommandError(
                    409,
                    _("the idempotency key {key} was already used for another request", key=key),
                    existing,
                )
        now = self.clock()
        cmd = Command(
            id=secrets.token_hex(8),
            tag=tag,
            value=value,
            user=user.name,
            reason=str(reason or ""),
            state=CommandState.SELECTED,
            created_ts=now,
            expires_ts=now + self.select_timeout_s,
            source=source or "internal",
            batch=batch,
            key=key,
        )
        try:
            checked, cmd.device = self._check_target(tag, value)
            cmd.value = checked
            other = self._selected.get(tag)
            if other is not None:
                raise CommandError(
                    409,
                    _(
                        "{tag} is already selected by another command ({other}): try again "
                        "when that one is operated, cancelled or expired",
                        tag=tag,
                        other=other,
                    ),
                )
            self._check_limits(tag, checked, now)
        except CommandError as exc:
            cmd.state = CommandState.FAILED
            cmd.message = exc.message
            cmd.finished_ts = now
            self._store(cmd)
            self._audit("command.select", user, cmd, result="failed", detail=exc.message)
            self._publish(cmd)
            exc.command = cmd
            raise
        self._store(cmd)
        self._selected[tag] = cmd.id
        self._arm_timer(cmd)
        before = self.plant.db.read(tag).to_json()
        self._audit("command.select", user, cmd, before=before, detail=cmd.reason or None)
        self._publish(cmd)
        return cmd

    def by_key(self, user: User, key: str) -> Command | None:
        hit = self._keys.get((user.name, key))
        horizon = self.clock() - IDEMPOTENCY_TTL_S
        if hit is not None and hit[1] >= horizon:
            return self.get(hit[0])
        if self.store is not None:
            return self.store.by_key(user.name, key, horizon)
        return None

    def _store(self, cmd: Command) -> None:
        self._commands[cmd.id] = cmd
        if cmd.key is not None:
            self._keys[(cmd.user, cmd.key)] = (cmd.id, cmd.created_ts)
        while len(self._commands) > self._keep:
            oldest_id, oldest = next(iter(self._commands.items()))
            if not oldest.state.final:
                break
            del self._commands[oldest_id]
        if len(self._keys) > 4 * self._keep:
            horizon = self.clock() - IDEMPOTENCY_TTL_S
            for k in [k for k, (_, ts) in self._keys.items() if ts < horizon]:
                del self._keys[k]

    def _arm_timer(self, cmd: Command) -> None:
        loop = asyncio.get_running_loop()
        delay = max(0.0, cmd.expires_ts - self.clock())
        self._timers[cmd.id] = loop.call_later(delay, self._expire, cmd.id)

    def _release(self, cmd: Command) -> None:
        if self._selected.get(cmd.tag) == cmd.id:
            del self._selected[cmd.tag]
        timer = self._timers.pop(cmd.id, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, command_id: str) -> None:
        self._timers.pop(command_id, None)
        cmd = self._commands.get(command_id)
        if cmd is None or cmd.state is not CommandState.SELECTED:
            return
        self._finish(cmd, CommandState.EXPIRED, "not operated before the select timeout")
        self._audit("command.expired", cmd.user, cmd, result="failed")

    def _finish(self, cmd: Command, state: CommandState, message: str = "") -> None:
        cmd.state = state
        cmd.message = message
        cmd.finished_ts = self.clock()
        self._release(cmd)
        self._publish(cmd)

    # ------------------------------------------------------------------ operate
    async def operate(self, user: User, command_id: str, *, source: str | None = None) -> Command:
        """Carry out a selected command and return it in its final state.

        Raises :class:`CommandError` 404 (unknown), 403 (another user or role), 409
        (expired, cancelled or failed before). A finished command is returned as is.
        """
        cmd = self.get(command_id)
        if cmd.user != user.name or not may(user, Action.COMMANDS_OPERATE, cmd.tag):
            self._audit(
                "command.operate",
                user,
                cmd,
                result="denied",
                source=source,
                detail=f"selected by {cmd.user}",
            )
            raise CommandError(
                403,
                _(
                    "command {id} was selected by another user: only they may operate it",
                    id=command_id,
                ),
            )
        inflight = self._inflight.get(command_id)
        if inflight is not None:
            return await asyncio.shield(inflight)
        if cmd.state is CommandState.CONFIRMED:
            return cmd
        if cmd.state is CommandState.SELECTED and self.clock() >= cmd.expires_ts:
            self._expire(cmd.id)
        if cmd.state is not CommandState.SELECTED:
            raise CommandError(
                409,
                _(
                    "command {id} is {state}: it can no longer be operated",
                    id=command_id,
                    state=cmd.state.value,
                ),
                cmd,
            )
        fut: asyncio.Future[Command] = asyncio.get_running_loop().create_future()
        self._inflight[command_id] = fut
        try:
            await self._write(user, cmd, source)
        finally:
            self._inflight.pop(command_id, None)
            fut.set_result(cmd)
        return cmd

    async def _write(self, user: User, cmd: Command, source: str | None) -> None:
        timer = self._timers.pop(cmd.id, None)
        if timer is not None:
            timer.cancel()
        db = self.plant.db
        before = db.read(cmd.tag).to_json() if cmd.tag in db else None
        cmd.state = CommandState.OPERATED
        cmd.operated_ts = self.clock()
        self._last_operated[cmd.tag] = cmd.operated_ts  # min_interval_s counts from here
        self._audit("command.operate", user, cmd, before=before, source=source)
        self._publish(cmd)
        try:
            self._check_online(cmd.device)
            state, read_back, message = await self._send(cmd)
        except CommandError as exc:
            state, read_back, message = CommandState.FAILED, None, exc.message
        except Exception as exc:  # a driver bug must still end the command
            log.exception("command %s: write %s failed", cmd.id, cmd.tag)
            state, read_back, message = CommandState.FAILED, None, f"{type(exc).__name__}: {exc}"
        cmd.read_back = read_back
        self._finish(cmd, state, message)
        self._audit(
            f"command.{state.value}",
            user,
            cmd,
            source=source,
            result="ok" if state is CommandState.CONFIRMED else "failed",
            after={"id": cmd.id, "value": cmd.value, "read_back": read_back, "state": state.value},
            detail=message or None,
        )

    async def _send(self, cmd: Command) -> tuple[CommandState, Any, str]:
        db = self.plant.db
        if cmd.tag not in db:
            return CommandState.FAILED, None, f"tag {cmd.tag} no longer exists"
        d = db.definition(cmd.tag)
        if d.source is Source.MEMORY:
            db.update(cmd.tag, cmd.value)
            return CommandState.CONFIRMED, db.read(cmd.tag).value, ""
        writer = self._writer()
        if writer is None:
            return CommandState.FAILED, None, "no drivers running"
        from drivers.base import WriteRejected

        try:
            result = await writer.write(cmd.tag, cmd.value)
        except WriteRejected as exc:
            return CommandState.FAILED, None, str(exc)
        if result.ok:
            return CommandState.CONFIRMED, result.read_back, result.message
        msg = result.message or f"write {result.state.value}"
        return CommandState.FAILED, result.read_back, msg

    # ------------------------------------------------------------------ cancel
    def cancel(self, user: User, command_id: str, *, source: str | None = None) -> Command:
        """Cancel a selected command (by the user who selected it)."""
        cmd = self.get(command_id)
        if cmd.user != user.name or not may(user, Action.COMMANDS_OPERATE, cmd.tag):
            self._audit(
                "command.cancel",
                user,
                cmd,
                result="denied",
                source=source,
                detail=f"selected by {cmd.user}",
            )
            raise CommandError(
                403,
                _(
                    "command {id} was selected by another user: only they may cancel it",
                    id=command_id,
                ),
            )
        if cmd.state is CommandState.CANCELLED:
            return cmd
        if cmd.state is not CommandState.SELECTED:
            raise CommandError(
                409,
                _(
                    "command {id} is {state}: it can no longer be cancelled",
                    id=command_id,
                    state=cmd.state.value,
                ),
                cmd,
            )
        self._finish(cmd, CommandState.CANCELLED, "cancelled by the user")
        self._audit("command.cancel", user, cmd, source=source)
        return cmd

    # ------------------------------------------------------------------ one call
    async def execute(
        self,
        user: User,
        tag: str,
        value: Any,
        reason: str,
        *,
        source: str | None = None,
        key: str | None = None,
    ) -> Command:
        """Select and operate at once (in-process system users); return the final command.

        Raises :class:`CommandError` like :meth:`select`.
        """
        cmd = self.select(user, tag, value, reason=reason, source=source, key=key)
        if cmd.state.final:
            return cmd
        return await self.operate(user, cmd.id, source=source)

    # ------------------------------------------------------------------ batches
    def select_batch(
        self,
        user: User,
        targets: Sequence[tuple[str, Any]],
        *,
        reason: str = "",
        source: str | None = None,
        key: str | None = None,
    ) -> Batch:
        """Select every ``(tag, value)``; the batch reports a result per target."""
        if not targets:
            raise CommandError(422, _("a batch needs at least one target"))
        if len(targets) > MAX_BATCH:
            raise CommandError(
                422,
                _(
                    "a batch has at most {most} targets, not {n}: split it",
                    most=MAX_BATCH,
                    n=len(targets),
                ),
            )
        if not may(user, Action.COMMANDS_OPERATE):
            self._audit(
                "command.batch",
                user,
                None,
                result="denied",
                source=source,
                after={"targets": len(targets)},
            )
            raise CommandError(
                403,
                _("user {user} ({role}) may not operate", user=user.name, role=user.role.value),
            )
        if key is not None:
            batch = self._batch_by_key(user, key)
            if batch is not None:
                if batch.targets == [tuple(t) for t in targets]:
                    return batch
                raise CommandError(
                    409,
                    _("the idempotency key {key} was already used for another request", key=key),
                )
        now = self.clock()
        batch = Batch(
            secrets.token_hex(8),
            user.name,
            now,
            now + self.select_timeout_s,
            [tuple(t) for t in targets],
        )
        self._remember_batch(batch)
        if key is not None:
            self._keys[(user.name, "batch:" + key)] = (batch.id, now)
        self._audit(
            "command.batch",
            user,
            None,
            source=source,
            tag=f"batch {batch.id}",
            after={"targets": [t for t, _ in targets]},
            detail=reason or None,
        )
        for tag, value in targets:
            try:
                cmd = self.select(user, tag, value, reason=reason, source=source, batch=batch.id)
                batch.commands.append(cmd)
                batch.errors.append(None)
            except CommandError as exc:
                batch.commands.append(exc.command)
                batch.errors.append(exc.message)
        if self.store is not None:
            self.store.save_batch(batch, key)
        return batch

    def _batch_by_key(self, user: User, key: str) -> Batch | None:
        horizon = self.clock() - IDEMPOTENCY_TTL_S
        hit = self._keys.get((user.name, "batch:" + key))
        if hit is not None and hit[1] >= horizon:
            return self.get_batch(hit[0])
        if self.store is None:
            return None
        batch = self.store.batch_by_key(user.name, key, horizon)
        if batch is not None:
            self._remember_batch(batch)
        return batch

    async def operate_batch(self, user: User, batch_id: str, *, source: str | None = None) -> Batch:
        """Operate every selected command of a batch concurrently; return the batch."""
        batch = self.get_batch(batch_id)
        if batch.user != user.name:
            self._audit(
                "command.batch.operate",
                user,
                None,
                tag=f"batch {batch.id}",
                result="denied",
                source=source,
            )
            raise CommandError(
                403,
                _("batch {id} was selected by another user: only they may operate it", id=batch_id),
            )

        async def one(i: int, cmd: Command | None) -> None:
            if cmd is None or cmd.state is not CommandState.SELECTED:
                return
            try:
                await self.operate(user, cmd.id, source=source)
            except CommandError as exc:
                batch.errors[i] = exc.message

        await asyncio.gather(*(one(i, c) for i, c in enumerate(batch.commands)))
        if self.store is not None:
            self.store.save_batch(batch)
        return batch

    def cancel_batch(self, user: User, batch_id: str, *, source: str | None = None) -> Batch:
        """Cancel every still-selected command of a batch."""
        batch = self.get_batch(batch_id)
        if batch.user != user.name:
            raise CommandError(
                403,
                _("batch {id} was selected by another user: only they may cancel it", id=batch_id),
            )
        for cmd in batch.commands:
            if cmd is not None and cmd.state is CommandState.SELECTED:
                self.cancel(user, cmd.id, source=source)
        return batch

    def expand(self, pattern: str, value: Any) -> builtins.list[tuple[str, Any]]:
        """Return ``(tag, value)`` for every tag matching ``pattern`` (batch by pattern)."""
        return [(t, value) for t in self.plant.db.match(pattern)]

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Cancel the expiry timers and close the store (server shutdown).

        Selections stay as they are in the store; the next start ends them (``_recover``).
        """
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self.store is not None:
            self.store.close()
            self.store = None

    def states(self) -> Iterable[CommandState]:
        return (c.state for c in self._commands.values())


class RelayOutcome:
    """What billing's ``RelayCommander`` answers: ``ok`` and a message."""

    __slots__ = ("message", "ok")

    def __init__(self, ok: bool, message: str) -> None:
        self.ok = ok
        self.message = message


class CommandRelayCommander:
    """Billing's ``RelayCommander`` over the command service: automatic trips are audited commands.

    Billing is built with one of these (by the runtime), never with a direct path to the
    drivers: every trip and close passes the role check, the limits and the audit.
    """

    def __init__(self, commands: CommandService) -> None:
        self.commands = commands

    async def set_relay(self, meter: str, closed: bool, reason: str) -> RelayOutcome:
        """Select and operate ``meter`` (the relay tag) as the system user ``billing``."""
        from scada.services.auth import system_user

        try:
            cmd = await self.commands.execute(
                system_user("billing"), meter, bool(closed), reason, source="billing"
            )
        except CommandError as exc:
            return RelayOutcome(False, str(exc))
        return RelayOutcome(cmd.state is CommandState.CONFIRMED, cmd.message or cmd.state.value)
