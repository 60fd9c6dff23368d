"""Raw alarm conditions of each rule kind, and suppression by design.

Conditions return True (condition present), False (absent) or None (unknown: no value
yet, bad quality, an expression that cannot be evaluated); on None the engine keeps the
previous condition. Hysteresis (deadband) is applied here; delays are the engine's.
Loop-thread only, like the TagDatabase they read through an ``EvalContext``.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import numpy as np

from tags.expr import EvaluationError, Expression
from tags.model import Quality, Reason, Scalar, TagValue

if TYPE_CHECKING:
    from tags.database import TagDatabase

__all__ = [
    "LEVEL_LABELS",
    "CommLossCondition",
    "Condition",
    "DbContext",
    "DeviationCondition",
    "EvalContext",
    "ExprCondition",
    "LimitCondition",
    "RateCondition",
    "RowValue",
    "StaleCondition",
    "StateCondition",
    "Suppressor",
]

log = logging.getLogger(__name__)

_BAD = int(Quality.BAD)
_STALE = int(Reason.STALE)
LEVEL_LABELS = {"hh": "HH", "h": "H", "l": "L", "ll": "LL"}

RowValue: TypeAlias = float | str | None
"""The changed input's value handed to ``Condition.update``: float (NaN: no value; bools and
ints as float), str for str tags, None when a multi-input condition is re-evaluated."""


class EvalContext(Protocol):
    """What conditions read while evaluating (the engine implements it over the database)."""

    def read(self, name: str) -> TagValue: ...
    def read_glob(self, pattern: str) -> list[TagValue]: ...
    def seen(self, name: str) -> float: ...
    def offline(self, names: tuple[str, ...]) -> np.ndarray: ...


class DbContext:
    """The ``EvalContext`` over a TagDatabase (glob matches cached until ``clear``)."""

    def __init__(self, db: TagDatabase) -> None:
        self._db = db
        self._globs: dict[str, list[str]] = {}
        self._ids: dict[tuple[str, ...], np.ndarray] = {}

    def clear(self) -> None:
        """Forget cached glob matches and tag ids (after the tag definitions changed)."""
        self._globs.clear()
        self._ids.clear()

    def offline(self, names: tuple[str, ...]) -> np.ndarray:
        """Return, per name, whether the tag holds a good false value (a device known offline).

        Vectorised over the database's arrays: a flood group of a building counts its few
        hundred ``.online`` tags on each change of one of them.
        """
        ids = self._ids.get(names)
        if ids is None:
            ids = self._ids[names] = self._db.ids_of(names)
        quality, _reason, _ts, valid = self._db.state_of(ids)
        result: np.ndarray = valid & (quality != _BAD) & (self._db.values_of(ids) == 0.0)
        return result

    def read(self, name: str) -> TagValue:
        """Return the current value of ``name``."""
        return self._db.read(name)

    def read_glob(self, pattern: str) -> list[TagValue]:
        """Return the current values of the tags matching ``pattern``."""
        names = self._globs.get(pattern)
        if names is None:
            names = self._globs[pattern] = self._db.match(pattern)
        return [self._db.read(n) for n in names]

    def seen(self, name: str) -> float:
        """Return when ``name`` was last refreshed (changed or not), by the database's clock."""
        return self._db.refreshed_at(name)


class _Unknown(Exception):
    """A value an expression needs is missing or bad."""


def _good(tv: TagValue) -> bool:
    return tv.value is not None and tv.quality != Quality.BAD


def _good_value(tv: TagValue) -> Scalar | None:
    """The value of ``tv`` when it is good (``_good``), else None."""
    return tv.value if tv.quality != Quality.BAD else None


# --------------------------------------------------------------------------- conditions


class Condition:
    """Base of the raw conditions: ``inputs`` are the tags whose changes re-evaluate it.

    ``update`` gets the changed input's row (``value``: see ``RowValue``);
    ``on_tick`` is called periodically when ``TICKS`` is True.
    """

    TICKS = False
    inputs: tuple[str, ...] = ()

    def update(
        self,
        ctx: EvalContext,
        name: str,
        value: RowValue,
        quality: int,
        reason: int,
        valid: bool,
        ts: float,
        now: float,
        raw: bool,
    ) -> bool | None:
        raise NotImplementedError

    def on_tick(self, ctx: EvalContext, now: float, raw: bool) -> bool | None:
        return None

    def fields(self, ctx: EvalContext, now: float) -> dict[str, Any]:
        """Return message fields describing the current situation."""
        return {}


class LimitCondition(Condition):
    """One analog limit level with deadband (high levels ``h``/``hh``, low ``l``/``ll``)."""

    __slots__ = ("deadband", "high", "inputs", "level", "limit", "tag")

    def __init__(self, tag: str, level: str, limit: float, deadband: float) -> None:
        self.tag = tag
        self.inputs = (tag,)
        self.level = level
        self.limit = limit
        self.deadband = deadband
        self.high = level in ("h", "hh")

    def update(
        self,
        ctx: EvalContext,
        name: str,
        value: RowValue,
        quality: int,
        reason: int,
        valid: bool,
        ts: float,
        now: float,
        raw: bool,
    ) -> bool | None:
        if not valid or quality == _BAD or not isinstance(value, float) or value != value:
            return None  # no value (NaN), bad, or not a number
        if self.high:
            return value >= (self.limit - self.deadband if raw else self.limit)
        return value <= (self.limit + self.deadband if raw else self.limit)

    def fields(self, ctx: EvalContext, now: float) -> dict[str, Any]:
        return {"level": LEVEL_LABELS[self.level], "limit": self.limit}


class StateCondition(Condition):
    """Digital state equals (or differs from) a configured value."""

    __slots__ = ("inputs", "negate", "tag", "target")

    def __init__(self, tag: str, target: Scalar | None, negate: bool) -> None:
        self.tag = tag
        self.inputs = (tag,)
        self.target = target
        self.negate = negate

    def update(
        self,
        ctx: EvalContext,
        name: str,
        value: RowValue,
        quality: int,
        reason: int,
        valid: bool,
        ts: float,
        now: float,
        raw: bool,
    ) -> bool | None:
        if not valid or quality == _BAD:
            return None
        equal = value == self.target
        if isinstance(self.target, str) and not isinstance(value, str):
            equal = False
        return equal != self.negate


class RateCondition(Condition):
    """Rate of change per minute over a sliding window of source timestamps."""

    TICKS = True
    __slots__ = (
        "deadband",
        "direction",
        "inputs",
        "last_rate",
        "samples",
        "tag",
        "threshold",
        "window_s",
    )

    def __init__(
        self, tag: str, threshold: float, direction: str, window_s: float, deadband: float
    ) -> None:
        self.tag = tag
        self.inputs = (tag,)
        self.threshold = threshold
        self.direction = direction
        self.window_s = window_s
        self.deadband = deadband
        self.samples: collections.deque[tuple[float, float]] = collections.deque()
        self.last_rate = 0.0

    def _judge(self, t: float, v: float, raw: bool) -> bool | None:
        s = self.samples
        while len(s) > 1 and s[1][0] <= t - self.window_s:
            s.popleft()
        t0, v0 = s[0]
        if t - t0 <= 0:
            return None
        rate = (v - v0) / (t - t0) * 60.0
        self.last_rate = rate
        if self.direction == "rising":
            r = rate
        elif self.direction == "falling":
            r = -rate
        else:
            r = abs(rate)
        return r >= (self.threshold - self.deadband if raw else self.threshold)

    def update(
        self,
        ctx: EvalContext,
        name: str,
        value: RowValue,
        quality: int,
        reason: int,
        valid: bool,
        ts: float,
        now: float,
        raw: bool,
    ) -> bool | None:
        if not valid or quality == _BAD or not isinstance(value, float) or value != value:
            return None  # no value (NaN), bad, or not a number
        if self.samples and ts < self.samples[-1][0]:
            self.samples.clear()  # time went backwards: start over
        self.samples.append((ts, value))
        return self._judge(ts, value, raw)

    def on_tick(self, ctx: EvalContext, now: float, raw: bool) -> bool | None:
        # without new changes the value is unchanged up to now (deadband): the rate decays
        if not raw or not self.samples:
            return None
        return self._judge(max(now, self.samples[-1][0]), self.samples[-1][1], raw)

    def fields(self, ctx: EvalContext, now: float) -> dict[str, Any]:
        return {"rate": self.last_rate}


class DeviationCondition(Condition):
    """Value far from a setpoint tag, optionally only while a condition expression holds."""

    __slots__ = ("condition", "deadband", "direction", "inputs", "max_deviation", "setpoint", "tag")

    def __init__(
        self,
        tag: str,
        setpoint: str,
        max_deviation: float,
        direction: str,
        deadband: float,
        condition: Expression | None,
    ) -> None:
        self.tag = tag
        self.setpoint = setpoint
        self.max_deviation = max_deviation
        self.direction = direction
        self.deadband = deadband
        self.condition = condition
        names = [tag, setpoint, *(sorted(condition.names) if condition else [])]
        self.inputs = tuple(dict.fromkeys(names))

    def update(
        self,
        ctx: EvalContext,
        name: str,
        value: RowValue,
        quality: int,
        reason: int,
        valid: bool,
        ts: float,
        now: float,
        raw: bool,
    ) -> bool | None:
        pv = _good_value(ctx.read(self.tag))
        sp = _good_value(ctx.read(self.setpoint))
        if pv is None or sp is None:
            return None
        dev = float(pv) - float(sp)
        if self.direction == "below":
            d = -dev
        elif self.direction == "above":
            d = dev
        else:
            d = abs(dev)
        out = d > (self.max_deviation - self.deadband if raw else self.max_deviation)
        if out and self.condition is not None:
            cond = _evaluate(self.condition, ctx)
            if cond is None:
                return None
            out = bool(cond)
        return out

    def fields(self, ctx: EvalContext, now: float) -> dict[str, Any]:
        sp_tv = ctx.read(self.setpoint)
        out: dict[str, Any] = {"setpoint": sp_tv.value}
        pv, sp = _good_value(ctx.read(self.tag)), _good_value(sp_tv)
        if pv is not None and sp is not None:
            out["deviation"] = float(pv) - float(sp)
        return out


class CommLossCondition(Condition):
    """A device offline (its ``.online`` tag false) or, for a tag target, the tag's quality bad."""

    __slots__ = ("inputs", "online")

    def __init__(self, tag: str, online: bool) -> None:
        self.inputs = (tag,)
        self.online = online

    def update(
        self,
        ctx: EvalContext,
        name: str,
        value: RowValue,
        quality: int,
        reason: int,
        valid: bool,
        ts: float,
        now: float,
        raw: bool,
    ) -> bool | None:
        if self.online:
            if not valid or quality == _BAD:
                return None
            return not value
        if not valid:
            return None  # never had a value: not connected yet, not lost
        return quality == _BAD


class StaleCondition(Condition):
    """No update for ``max_age_s`` (database refresh time), or the database marked the tag stale."""

    TICKS = True
    __slots__ = ("inputs", "max_age_s", "tag")

    def __init__(self, tag: str, max_age_s: float | None) -> None:
        self.tag = tag
        self.inputs = (tag,)
        self.max_age_s = max_age_s

    def _judge(self, ctx: EvalContext, now: float, reason: int, valid: bool) -> bool | None:
        if not valid:
            return None
        if reason == _STALE:
            return True
        if self.max_age_s is None:
            return False
        return now - ctx.seen(self.tag) >= self.max_age_s

    def update(
        self,
        ctx: EvalContext,
        name: str,
        value: RowValue,
        quality: int,
        reason: int,
        valid: bool,
        ts: float,
        now: float,
        raw: bool,
    ) -> bool | None:
        return self._judge(ctx, now, reason, valid)

    def on_tick(self, ctx: EvalContext, now: float, raw: bool) -> bool | None:
        tv = ctx.read(self.tag)
        return self._judge(ctx, now, int(tv.reason), tv.value is not None)

    def fields(self, ctx: EvalContext, now: float) -> dict[str, Any]:
        return {"age_s": max(0.0, now - ctx.seen(self.tag))}


class ExprCondition(Condition):
    """A boolean expression over several tags."""

    __slots__ = ("expr", "inputs")

    def __init__(self, expr: Expression, inputs: Sequence[str]) -> None:
        self.expr = expr
        self.inputs = tuple(inputs)

    def update(
        self,
        ctx: EvalContext,
        name: str,
        value: RowValue,
        quality: int,
        reason: int,
        valid: bool,
        ts: float,
        now: float,
        raw: bool,
    ) -> bool | None:
        result = _evaluate(self.expr, ctx)
        return None if result is None else bool(result)


def _evaluate(expr: Expression, ctx: EvalContext) -> Any:
    def name(n: str) -> Any:
        tv = ctx.read(n)
        if not _good(tv):
            raise _Unknown(n)
        return tv.value

    def glob(p: str) -> list[Any]:
        return [tv.value for tv in ctx.read_glob(p) if _good(tv)]

    try:
        return expr.evaluate(name, glob)
    except _Unknown:
        return None
    except EvaluationError as exc:
        log.debug("alarm expression not evaluated: %s", exc)
        return None


class Suppressor:
    """Suppression by design: a parent device offline and/or an expression true."""

    __slots__ = ("expr", "inputs", "parent_online")

    def __init__(self, parent_online: str | None, expr: Expression | None) -> None:
        self.parent_online = parent_online
        self.expr = expr
        names = ([parent_online] if parent_online else []) + (sorted(expr.names) if expr else [])
        self.inputs = tuple(dict.fromkeys(names))

    def evaluate(self, ctx: EvalContext, current: bool) -> bool:
        """Return whether the point is suppressed now (unknown parts keep ``current``)."""
        parent: bool | None = None
        if self.parent_online is not None:
            tv = ctx.read(self.parent_online)
            parent = None if not _good(tv) else not tv.value
        expr: bool | None = None
        if self.expr is not None:
            r = _evaluate(self.expr, ctx)
            expr = None if r is None else bool(r)
        if parent or expr:
            return True
        if parent is None and self.parent_online is not None:
            return current
        if expr is None and self.expr is not None:
            return current
        return False
