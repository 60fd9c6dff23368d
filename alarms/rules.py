"""Bind alarm rules to tags and devices; fill alarm messages.

``bind_rules`` turns the configured rules into ``PointSpec``s: one per alarm point (a
rule bound to one tag or device, and for ``limit`` rules one per level). Each spec holds
a ``Condition`` (``alarms.conditions``: the raw, undelayed condition of its kind) and
optionally a ``Suppressor`` (suppression by design). The engine owns delays and the state
machine. Loop-thread only, like the TagDatabase the conditions read.
"""

from __future__ import annotations

import logging
import math
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from alarms.conditions import (
    CommLossCondition,
    Condition,
    DeviationCondition,
    EvalContext,
    ExprCondition,
    LimitCondition,
    RateCondition,
    StaleCondition,
    StateCondition,
    Suppressor,
)
from alarms.config import (
    AlarmRule,
    CommLossRule,
    DeviationRule,
    ExprRule,
    LimitRule,
    RateRule,
    StaleRule,
    StateRule,
    substitute,
    substitute_expr,
)
from alarms.text import Quantity, unit_symbol, value_decimals
from i18n import _, pick
from tags.expr import Expression, ExpressionError, parse_expression
from tags.model import Scalar, TagDef

__all__ = [
    "DEFAULT_AREA",
    "BindingError",
    "PointSpec",
    "TagLookup",
    "bind_rules",
    "bound_devices",
    "format_message",
]

log = logging.getLogger(__name__)

DEFAULT_AREA = "site"


class TagLookup(Protocol):
    """What binding needs from a TagDatabase."""

    def __contains__(self, name: object) -> bool: ...
    def definition(self, name: str) -> TagDef: ...
    def match(self, pattern: str | Iterable[str]) -> list[str]: ...


class BindingError(ValueError):
    """A rule refers to a tag or device that does not exist (message names rule and tag)."""


# --------------------------------------------------------------------------- binding


@dataclass(slots=True)
class PointSpec:
    """One alarm point as configured: identity, routing data, condition and delays."""

    key: str
    rule_id: str
    rule_index: int
    kind: str
    source: str
    level: str | None
    priority: int
    area: str
    message: str
    condition: Condition
    on_delay_s: float
    off_delay_s: float
    tag: str | None = None
    device: str | None = None
    building: str | None = None
    household: str | None = None
    unit: str = ""
    description: str = ""
    suppressor: Suppressor | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    decimals: int | None = None  # of the tag's values in messages (alarms.text.value_decimals)


@dataclass(frozen=True, slots=True)
class _Binding:
    tag: str | None
    device: str | None
    building: str | None
    household: str | None
    point: str | None

    def values(self) -> dict[str, str | None]:
        return {
            "tag": self.tag,
            "device": self.device,
            "building": self.building,
            "household": self.household,
            "point": self.point,
        }


def _bindings(
    rule: AlarmRule, lookup: TagLookup, devices_by_template: Mapping[str, Sequence[str]]
) -> list[_Binding]:
    def from_tag(name: str, point: str | None = None) -> _Binding:
        d = lookup.definition(name)
        return _Binding(name, d.device, d.building, d.household, point or name.rsplit(".", 1)[-1])

    def from_device(dev: str) -> _Binding:
        name = f"{dev}.online"
        if name not in lookup:
            raise BindingError(f"alarm rule {rule.id!r}: unknown device {dev!r} (no tag {name!r})")
        d = lookup.definition(name)
        return _Binding(name, dev, d.building, d.household, "online")

    if rule.tag is not None:
        if rule.tag not in lookup:
            raise BindingError(f"alarm rule {rule.id!r}: unknown tag {rule.tag!r}")
        return [from_tag(rule.tag)]
    if rule.tags is not None:
        return [from_tag(n) for n in lookup.match(rule.tags)]
    if rule.template is not None:
        if rule.template not in devices_by_template:
            raise BindingError(
                f"alarm rule {rule.id!r}: unknown template {rule.template!r} (or it has no devices)"
            )
        devices = devices_by_template[rule.template]
        if rule.point is None:
            return [from_device(d) for d in devices]
        out = []
        for dev in devices:
            name = f"{dev}.{rule.point}"
            if name not in lookup:
                raise BindingError(
                    f"alarm rule {rule.id!r}: device {dev!r} has no point {rule.point!r}"
                )
            out.append(from_tag(name, rule.point))
        return out
    one: str | None = rule.__dict__.get("device")
    if one is not None:
        return [from_device(one)]
    devs = rule.__dict__.get("devices")
    if devs is not None:
        return [from_device(n[: -len(".online")]) for n in lookup.match(f"{devs}.online")]
    return [_Binding(None, None, None, None, None)]  # expr rule without a target


def bound_devices(
    rule: AlarmRule, lookup: TagLookup, devices_by_template: Mapping[str, Sequence[str]]
) -> list[str]:
    """Return the devices ``rule`` binds to (enabled or not); ``BindingError`` if it cannot bind."""
    return [b.device for b in _bindings(rule, lookup, devices_by_template) if b.device is not None]


def _parse(rule: AlarmRule, text: str, binding: _Binding, what: str) -> Expression:
    try:
        return parse_expression(substitute_expr(text, binding.values()))
    except (KeyError, ExpressionError) as exc:
        raise BindingError(f"alarm rule {rule.id!r}: {what}: {exc}") from None


def _check_names(rule: AlarmRule, names: Iterable[str], lookup: TagLookup, what: str) -> None:
    for n in names:
        if n not in lookup:
            raise BindingError(f"alarm rule {rule.id!r}: {what} names unknown tag {n!r}")


def _conditions(
    rule: AlarmRule, b: _Binding, lookup: TagLookup
) -> list[tuple[str | None, int, Condition]]:
    """Return ``(level, priority, condition)`` for one binding of ``rule``."""
    if isinstance(rule, ExprRule):
        expr = _parse(rule, rule.expr, b, "expr")
        _check_names(rule, expr.names, lookup, "expr")
        inputs = [*sorted(expr.names), *(n for g in expr.globs for n in lookup.match(g))]
        if not inputs:
            raise BindingError(f"alarm rule {rule.id!r}: expression names no tag")
        return [(None, rule.priority, ExprCondition(expr, list(dict.fromkeys(inputs))))]
    tag = b.tag
    if tag is None:  # only expr rules may have no target (the rule model checks that)
        raise BindingError(f"alarm rule {rule.id!r}: no target tag")
    if isinstance(rule, LimitRule):
        out: list[tuple[str | None, int, Condition]] = []
        for level in ("hh", "h", "l", "ll"):
            limit = getattr(rule.limits, level)
            if limit is not None:
                prio = getattr(rule.priorities, level) or rule.priority
                out.append((level, prio, LimitCondition(tag, level, limit, rule.deadband)))
        return out
    if isinstance(rule, StateRule):
        negate = "not_equals" in rule.model_fields_set
        target = rule.not_equals if negate else rule.equals
        return [(None, rule.priority, StateCondition(tag, target, negate))]
    if isinstance(rule, RateRule):
        cond = RateCondition(tag, rule.rate_per_min, rule.direction, rule.window_s, rule.deadband)
        return [(None, rule.priority, cond)]
    if isinstance(rule, DeviationRule):
        sp = substitute(rule.setpoint, b.values())
        _check_names(rule, [sp], lookup, "setpoint")
        cond_expr = _parse(rule, rule.condition, b, "condition") if rule.condition else None
        if cond_expr is not None:
            _check_names(rule, cond_expr.names, lookup, "condition")
        return [
            (
                None,
                rule.priority,
                DeviationCondition(
                    tag, sp, rule.max_deviation, rule.direction, rule.deadband, cond_expr
                ),
            )
        ]
    if isinstance(rule, CommLossRule):
        return [
            (
                None,
                rule.priority,
                CommLossCondition(tag, online=tag.endswith(".online") and b.point == "online"),
            )
        ]
    if isinstance(rule, StaleRule):
        return [(None, rule.priority, StaleCondition(tag, rule.max_age_s))]
    raise TypeError(f"unknown rule type {type(rule).__name__}")


def bind_rules(
    rules: Sequence[AlarmRule],
    lookup: TagLookup,
    devices_by_template: Mapping[str, Sequence[str]] | None = None,
    *,
    on_error: Callable[[BindingError], None] | None = None,
) -> list[PointSpec]:
    """Return the alarm points of the enabled ``rules``, in rule order.

    A rule that cannot be bound raises ``BindingError``, or, with ``on_error``, is
    reported to it and skipped (a hot reload keeps the other rules running).
    Duplicate point keys raise ``BindingError``.
    """
    devices_by_template = devices_by_template or {}
    specs: list[PointSpec] = []
    keys: set[str] = set()
    for index, rule in enumerate(rules):
        if not rule.enabled:
            continue
        try:
            specs.extend(_bind_one(rule, index, lookup, devices_by_template, keys))
        except BindingError as exc:
            if on_error is None:
                raise
            on_error(exc)
    return specs


def _bind_one(
    rule: AlarmRule,
    index: int,
    lookup: TagLookup,
    devices_by_template: Mapping[str, Sequence[str]],
    keys: set[str],
) -> list[PointSpec]:
    out: list[PointSpec] = []
    for b in _bindings(rule, lookup, devices_by_template):
        device_level = b.device is not None and b.tag == f"{b.device}.online"
        source = b.device if b.device is not None and device_level else (b.tag or rule.id)
        suppressor = None
        if rule.parent_device or rule.suppress_when:
            parent = None
            if rule.parent_device:
                try:
                    parent = substitute(rule.parent_device, b.values()) + ".online"
                except KeyError as exc:
                    raise BindingError(
                        f"alarm rule {rule.id!r}: parent_device: {exc.args[0]}"
                    ) from None
                _check_names(rule, [parent], lookup, "parent_device")
            sexpr = (
                _parse(rule, rule.suppress_when, b, "suppress_when") if rule.suppress_when else None
            )
            if sexpr is not None:
                _check_names(rule, sexpr.names, lookup, "suppress_when")
            suppressor = Suppressor(parent, sexpr)
        d = lookup.definition(b.tag) if b.tag is not None else None
        on_delay = rule.on_delay_s + (
            rule.for_min * 60.0 if isinstance(rule, DeviationRule) else 0.0
        )
        for level, prio, cond in _conditions(rule, b, lookup):
            key = f"{rule.id}:{source}" if source != rule.id else rule.id
            if level is not None:
                key += f":{level}"
            if key in keys:
                raise BindingError(f"alarm rule {rule.id!r}: duplicate alarm point {key!r}")
            keys.add(key)
            out.append(
                PointSpec(
                    key=key,
                    rule_id=rule.id,
                    rule_index=index,
                    kind=rule.kind,
                    source=source,
                    level=level,
                    priority=prio,
                    area=rule.area or b.building or DEFAULT_AREA,
                    message=rule.message_template,
                    condition=cond,
                    on_delay_s=on_delay,
                    off_delay_s=rule.off_delay_s,
                    tag=b.tag,
                    device=b.device,
                    building=b.building,
                    household=b.household,
                    unit=d.unit if d is not None and not device_level else "",
                    description=rule.description or (d.description if d is not None else ""),
                    suppressor=suppressor,
                    decimals=value_decimals(d) if d is not None else None,
                )
            )
    return out


# --------------------------------------------------------------------------- messages


class _SafeFormatter(string.Formatter):
    """Format a message; a field whose spec does not fit its value is shown plainly."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        if value is None:
            return "?"
        try:
            return super().format_field(value, format_spec)
        except (TypeError, ValueError):
            return str(value)

    def get_value(self, key: int | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        if isinstance(key, str):
            return kwargs.get(key)
        return super().get_value(key, args, kwargs)


_FORMATTER = _SafeFormatter()


def _plain(v: Scalar | None) -> Scalar | None:
    if isinstance(v, float):
        if math.isnan(v):
            return None
        return round(v, 6)
    return v


def _level_text(level: str | None) -> str:
    """Return the words of a limit level (``{level_text}``); ``{level}`` stays the ISA letters."""
    words = {"hh": _("very high"), "h": _("high"), "l": _("low"), "ll": _("very low")}
    return words.get(level or "", "")


#: Condition fields measured in the tag's unit (``rate`` is per minute, one decimal more).
_QUANTITIES = ("limit", "setpoint", "deviation")


def _what(spec: PointSpec) -> str:
    """What the alarm is about: the rule's description, the tag's, the tag name, or the rule."""
    if spec.description:
        return pick(spec.description)  # per language when given so (i18n.texts)
    if spec.tag is not None:
        return spec.tag
    return _("{rule}: condition true", rule=spec.rule_id)


def _quantities(spec: PointSpec, fields: dict[str, Any]) -> None:
    """Wrap the numbers of ``fields`` in ``Quantity`` so they print with decimals and unit."""
    decimals = spec.decimals
    fields["value"] = Quantity(fields["value"], decimals, spec.unit)
    for name in _QUANTITIES:
        v = fields.get(name)
        if isinstance(v, int | float) and not isinstance(v, bool):
            fields[name] = Quantity(v, decimals, spec.unit)
    rate = fields.get("rate")
    if isinstance(rate, int | float) and not isinstance(rate, bool):
        per_min = f"{spec.unit}/min" if spec.unit else "/min"
        fields["rate"] = Quantity(rate, None if decimals is None else decimals + 1, per_min)


def format_message(spec: PointSpec, ctx: EvalContext, now: float) -> tuple[str, Scalar | None]:
    """Return ``(message, value)`` for ``spec`` now: the template filled with current values.

    The template (the rule's ``message`` or its kind's default) goes through the translation
    function first. Numbers print with the tag's decimals (:func:`alarms.text.value_decimals`)
    unless the template gives a format spec; ``{value:u}`` adds the unit symbol (``°C``), and
    ``{unit}`` is the symbol too. ``{description}`` falls back to the tag name.
    """
    value: Scalar | None = None
    if spec.tag is not None:
        value = ctx.read(spec.tag).value
    fields: dict[str, Any] = {
        "tag": spec.tag or "",
        "value": _plain(value),
        "unit": unit_symbol(spec.unit),
        "device": spec.device or spec.source,
        "building": spec.building or "",
        "household": spec.household or "",
        "area": spec.area,
        "rule": spec.rule_id,
        "priority": spec.priority,
        "description": _what(spec),
        "level_text": _level_text(spec.level),
    }
    fields.update(spec.condition.fields(ctx, now))
    _quantities(spec, fields)
    template = _(spec.message)
    try:
        text = _FORMATTER.vformat(template, (), fields)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        text = f"{spec.key}: {template} ({exc})"
    return text, _plain(value)
