"""Pydantic models of the ``alarms`` section (a list of rules), ``alarm_defaults`` and ``notifications``.

``AlarmDefaults`` (the ``alarm_defaults`` section) gives every device a comm-loss alarm and
sets flood suppression; ``alarms.commloss`` binds it.

Every model forbids unknown keys and is frozen. Structure is checked here; references to
tags, templates, devices and recipients need the whole site and are checked by
``check_references`` and ``check_notifications``, which return ``(path, message)`` pairs
whose paths start at the section name (``("alarms", 3, "tag")``) so the config loader can
locate them in the YAML files.

Rule targets (exactly one form per rule):

* ``tag: name`` one tag; ``tags: glob`` every matching tag;
* ``template: id`` + ``point: name`` the point of every device of that template;
* ``comm_loss`` also takes ``device: id``, ``devices: glob`` or ``template: id`` alone
  (the device's ``<device>.online`` status tag);
* ``expr`` rules need no target (the expression names its tags); with ``template`` the
  expression is instantiated per device.

Text fields that name tags (``setpoint``, ``condition``, ``expr``, ``parent_device``,
``suppress_when``) may use the placeholders ``{device}``, ``{building}``, ``{household}``,
``{tag}`` and ``{point}`` of the rule's binding.
"""

from __future__ import annotations

import difflib
import itertools
import re
import string
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Annotated, ClassVar, Literal

from pydantic import (
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

# the notifications section has its own module; re-exported here for convenience
from alarms.notifications import (
    EmailNotifierConfig,
    NotificationsConfig,
    NotifierConfig,
    RateLimit,
    RecipientConfig,
    RetryPolicy,
    RosterEntry,
    SmsNotifierConfig,
    TimeWindow,
    WebhookNotifierConfig,
    check_notifications,
)
from configbase.model import ConfigModel as _Model
from i18n import MultiText
from tags.expr import ExpressionError, parse_expression

__all__ = [
    "COMM_LOSS_FIELDS",
    "DEFAULT_RULE_IDS",
    "FLOOD_FIELDS",
    "PLACEHOLDERS",
    "AlarmDefaults",
    "AlarmRule",
    "CommLossDefaults",
    "CommLossRule",
    "DeviationRule",
    "EmailNotifierConfig",
    "ExprRule",
    "FloodConfig",
    "LimitRule",
    "Limits",
    "NotificationsConfig",
    "NotifierConfig",
    "RateLimit",
    "RateRule",
    "RecipientConfig",
    "RetryPolicy",
    "RosterEntry",
    "SmsNotifierConfig",
    "StaleRule",
    "StateRule",
    "TimeWindow",
    "WebhookNotifierConfig",
    "check_notifications",
    "check_references",
    "substitute",
    "substitute_expr",
]

PathT = tuple[str | int, ...]
RULE_ID = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
RuleId = Annotated[str, StringConstraints(pattern=RULE_ID)]
Priority = Annotated[int, Field(ge=1, le=4, description="1 critical, 2 high, 3 medium, 4 low")]

#: Placeholders allowed in tag-naming text fields, filled from the rule's binding.
PLACEHOLDERS = ("device", "building", "household", "tag", "point")
_PLACEHOLDER_RE = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
_SAMPLE = {"device": "dev", "building": "bld", "household": "hh", "tag": "dev.pt", "point": "pt"}

#: Fields a message template may use (``"{tag} high: {value:.1f} {unit}"``).
MESSAGE_FIELDS = frozenset(
    {
        "tag",
        "value",
        "unit",
        "device",
        "building",
        "household",
        "area",
        "rule",
        "level",
        "level_text",
        "limit",
        "setpoint",
        "deviation",
        "rate",
        "description",
        "priority",
        "age_s",
    }
)


def substitute(text: str, values: Mapping[str, str | None]) -> str:
    """Replace ``{device}``-style placeholders in ``text``; raise ``KeyError`` if one has no value."""

    def repl(m: re.Match[str]) -> str:
        v = values.get(m.group(1))
        if v is None:
            raise KeyError(f"placeholder {{{m.group(1)}}} has no value here")
        return v

    return _PLACEHOLDER_RE.sub(repl, text)


_EXPR_PLACEHOLDER_RE = re.compile(
    r"(['\"]?)\{(" + "|".join(PLACEHOLDERS) + r")\}((?:\.[A-Za-z0-9_-]+)*)"
)


def substitute_expr(text: str, values: Mapping[str, str | None]) -> str:
    """Fill placeholders in an expression: ``{device}.valve_open`` becomes ``tag('b1.101.th.valve_open')``.

    Tag names with numeric parts are not identifiers, so a placeholder and the dotted
    name after it become one ``tag('...')`` reference; inside a quoted string
    (``tags('{building}.*.power_kw')``) the placeholder is replaced as plain text.
    Raises ``KeyError`` if a placeholder has no value.
    """

    def repl(m: re.Match[str]) -> str:
        quote, name, rest = m.group(1), m.group(2), m.group(3)
        v = values.get(name)
        if v is None:
            raise KeyError(f"placeholder {{{name}}} has no value here")
        if quote:
            return f"{quote}{v}{rest}"
        return f"tag({v + rest!r})"

    return _EXPR_PLACEHOLDER_RE.sub(repl, text)


def _check_expression(text: str) -> str:
    try:
        parse_expression(substitute_expr(text, _SAMPLE))
    except ExpressionError as exc:
        raise ValueError(f"invalid expression {text!r}: {exc}") from None
    return text


def _check_message(text: str, extra: Collection[str] = ()) -> str:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"invalid message template {text!r}: {exc}") from None
    allowed = MESSAGE_FIELDS.union(extra)
    for _, field, _, _ in parsed:
        if field is None:
            continue
        base = re.split(r"[.\[]", field, maxsplit=1)[0]
        if base not in allowed:
            raise ValueError(
                f"unknown field {{{field}}} in message (allowed: {', '.join(sorted(allowed))})"
            )
    return text


# --------------------------------------------------------------------------- rules


class _RuleBase(_Model):
    """Fields every rule kind shares."""

    #: target forms a kind accepts: names of the fields that may be set
    TARGETS: ClassVar[tuple[str, ...]] = ("tag", "tags", "template")
    TARGET_REQUIRED: ClassVar[bool] = True
    DEFAULT_MESSAGE: ClassVar[str] = "{description}: alarm"

    id: RuleId
    tag: str | None = Field(None, description="one tag")
    tags: str | None = Field(None, description="a glob of tags")
    template: str | None = Field(None, description="every device of this template ...")
    point: str | None = Field(None, description="... at this point")
    priority: Priority = 3
    message: str | None = Field(
        None, description="message template; fields: " + ", ".join(sorted(MESSAGE_FIELDS))
    )
    area: str | None = Field(None, description="routing area; default: the tag's building")
    enabled: bool = True
    description: MultiText = ""
    on_delay_s: float = Field(
        0.0, ge=0, description="condition must hold this long before the alarm is raised"
    )
    off_delay_s: float = Field(
        0.0, ge=0, description="condition must be gone this long before the alarm clears"
    )
    parent_device: str | None = Field(
        None,
        description="suppress this alarm by design while that device is offline (its <id>.online is false)",
    )
    suppress_when: str | None = Field(
        None, description="expression: suppress this alarm by design while true"
    )

    @field_validator("message")
    @classmethod
    def _message(cls, v: str | None) -> str | None:
        return None if v is None else _check_message(v)

    @field_validator("suppress_when")
    @classmethod
    def _suppress_expr(cls, v: str | None) -> str | None:
        return None if v is None else _check_expression(v)

    @model_validator(mode="after")
    def _targets(self) -> _RuleBase:
        given = [
            f
            for f in ("tag", "tags", "template", "device", "devices")
            if self.__dict__.get(f) is not None
        ]
        allowed = self.TARGETS
        for f in given:
            if f not in allowed:
                kind = self.__dict__.get("kind")  # every concrete rule class has one
                raise ValueError(
                    f"a {kind} rule cannot target {f!r} (use one of: {', '.join(allowed)})"
                )
        if len(given) > 1:
            raise ValueError(f"give exactly one target, not {' and '.join(given)}")
        if not given and self.TARGET_REQUIRED:
            raise ValueError(f"no target: give one of {', '.join(allowed)}")
        if self.point is not None and self.template is None:
            raise ValueError("'point' needs 'template'")
        if self.template is not None and self.point is None and not self._template_alone_ok():
            raise ValueError("'template' needs 'point' (the point of each device to watch)")
        return self

    def _template_alone_ok(self) -> bool:
        return False

    @property
    def message_template(self) -> str:
        """The message template: the rule's own or the kind's default."""
        return self.message or self.DEFAULT_MESSAGE


class Limits(_Model):
    """Analog limits; give at least one. They must be ordered ``ll < l < h < hh``."""

    hh: float | None = None
    h: float | None = None
    l: float | None = None  # noqa: E741 - the ISA name of the level
    ll: float | None = None

    @model_validator(mode="after")
    def _order(self) -> Limits:
        given = [
            (n, getattr(self, n)) for n in ("ll", "l", "h", "hh") if getattr(self, n) is not None
        ]
        if not given:
            raise ValueError("give at least one of hh, h, l, ll")
        for (n1, v1), (n2, v2) in itertools.pairwise(given):
            if not v1 < v2:
                raise ValueError(f"limits out of order: {n1}={v1} must be below {n2}={v2}")
        return self


class LevelPriorities(_Model):
    """Priority per limit level; a level left out uses the rule's ``priority``."""

    hh: Priority | None = None
    h: Priority | None = None
    l: Priority | None = None  # noqa: E741
    ll: Priority | None = None


class LimitRule(_RuleBase):
    """Analog limits HH / H / L / LL with deadband: each level is its own alarm."""

    DEFAULT_MESSAGE: ClassVar[str] = "{description} {level_text}: {value:u} (limit {limit:u})"

    kind: Literal["limit"]
    limits: Limits
    deadband: float = Field(
        0.0, ge=0, description="a high alarm clears below limit - deadband (low: above + deadband)"
    )
    priorities: LevelPriorities = Field(default_factory=LevelPriorities)


class StateRule(_RuleBase):
    """Digital state: alarm while the value equals ``equals`` (or differs from ``not_equals``)."""

    DEFAULT_MESSAGE: ClassVar[str] = "{description}: {value}"

    kind: Literal["state"]
    equals: bool | int | float | str | None = None
    not_equals: bool | int | float | str | None = None

    @model_validator(mode="after")
    def _one(self) -> StateRule:
        given = {"equals", "not_equals"} & self.model_fields_set
        if len(given) != 1:
            raise ValueError("give exactly one of 'equals' and 'not_equals'")
        return self


class RateRule(_RuleBase):
    """Rate of change over a sliding window, in units per minute."""

    DEFAULT_MESSAGE: ClassVar[str] = "{description} changing fast: {rate:+u}"

    kind: Literal["rate"]
    rate_per_min: float = Field(gt=0, description="alarm when |change per minute| reaches this")
    direction: Literal["rising", "falling", "both"] = "both"
    window_s: float = Field(60.0, gt=0, description="the rate is measured over this window")
    deadband: float = Field(0.0, ge=0, description="clears below rate_per_min - deadband")


class DeviationRule(_RuleBase):
    """Deviation of a value from a setpoint tag for longer than ``for_min`` (e.g. a blocked radiator)."""

    DEFAULT_MESSAGE: ClassVar[str] = (
        "{description} away from setpoint: {value:u}, setpoint {setpoint:u} "
        "(deviation {deviation:+u})"
    )

    kind: Literal["deviation"]
    setpoint: str = Field(description="setpoint tag (placeholders allowed)")
    max_deviation: float = Field(gt=0, description="alarm when |value - setpoint| exceeds this")
    direction: Literal["below", "above", "both"] = "both"
    for_min: float = Field(
        0.0, ge=0, description="deviation must last this long (minutes; adds to on_delay_s)"
    )
    condition: str | None = Field(
        None, description="expression that must also be true (e.g. the valve is open)"
    )
    deadband: float = Field(0.0, ge=0)

    @field_validator("condition")
    @classmethod
    def _cond(cls, v: str | None) -> str | None:
        return None if v is None else _check_expression(v)


class CommLossRule(_RuleBase):
    """Communication loss: a device offline (``<device>.online`` false) or a tag's quality bad."""

    TARGETS: ClassVar[tuple[str, ...]] = ("tag", "tags", "template", "device", "devices")
    DEFAULT_MESSAGE: ClassVar[str] = "{device}: communication lost"

    kind: Literal["comm_loss"]
    device: str | None = Field(None, description="one device")
    devices: str | None = Field(None, description="a glob of device ids")

    def _template_alone_ok(self) -> bool:
        return True


class StaleRule(_RuleBase):
    """Stale value: not refreshed for ``max_age_s`` (or marked uncertain/stale by the tag database)."""

    DEFAULT_MESSAGE: ClassVar[str] = "{description}: no update for {age_s:.0f} s"

    kind: Literal["stale"]
    max_age_s: float | None = Field(
        None, gt=0, description="default: when the database marks the tag stale"
    )


class ExprRule(_RuleBase):
    """Expression over several tags: alarm while it is true (see tags/expr.py for the language)."""

    TARGET_REQUIRED: ClassVar[bool] = False
    DEFAULT_MESSAGE: ClassVar[str] = "{description}"

    kind: Literal["expr"]
    expr: str

    @field_validator("expr")
    @classmethod
    def _expr(cls, v: str) -> str:
        return _check_expression(v)

    def _template_alone_ok(self) -> bool:
        return True


#: One item of the ``alarms`` section, discriminated by ``kind``.
AlarmRule = Annotated[
    LimitRule | StateRule | RateRule | DeviationRule | CommLossRule | StaleRule | ExprRule,
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------- site defaults

#: Message fields of the default device comm-loss alarms, besides ``MESSAGE_FIELDS``:
#: ``kind`` (the device kind in words) and ``place`` (its household or building in words).
COMM_LOSS_FIELDS = frozenset({"kind", "place"})
#: Message fields of the flood (group) alarms, besides ``MESSAGE_FIELDS``: ``group`` (the
#: building or channel in words), ``lost`` and ``total`` devices, ``channels`` (in words).
FLOOD_FIELDS = frozenset({"group", "lost", "total", "channels"})
#: Rule ids of the points the defaults make; a configured rule may not use them.
DEFAULT_RULE_IDS = ("comm_loss", "comm_loss.building", "comm_loss.channel")


def _enabled_from_bool(v: object) -> object:
    """``false`` / ``true`` is short for ``{enabled: false}`` / ``{enabled: true}``."""
    return {"enabled": v} if isinstance(v, bool) else v


class FloodConfig(_Model):
    """Flood suppression: one alarm for a building or a channel that loses most of its devices.

    A building is *lost* while at least ``min_devices`` and at least ``min_share_pct`` percent
    of its enabled devices are offline; a channel while all of its enabled devices are (and it
    has at least ``min_devices``). Devices of a lost channel do not count for their building.
    While a group is lost, the comm-loss alarms of its devices are suppressed by design.
    """

    enabled: bool = True
    min_share_pct: float = Field(
        50.0, gt=0, le=100, description="a building is lost from this share of its devices"
    )
    min_devices: int = Field(3, ge=1, description="... and from this many devices")
    channels: bool = Field(True, description="one alarm per channel whose devices are all lost")
    priority: Priority | None = Field(
        None, description="default: one more urgent than the device alarms (comm_loss.priority)"
    )
    on_delay_s: float | None = Field(None, ge=0, description="default: comm_loss.on_delay_s")
    off_delay_s: float = Field(0.0, ge=0)
    message: str | None = Field(
        None,
        description="message template; fields as for rules plus " + ", ".join(sorted(FLOOD_FIELDS)),
    )

    @field_validator("message")
    @classmethod
    def _message(cls, v: str | None) -> str | None:
        return None if v is None else _check_message(v, FLOOD_FIELDS)


class CommLossDefaults(_Model):
    """A comm-loss alarm for every enabled device that no ``comm_loss`` rule covers.

    A device is covered by any ``comm_loss`` rule bound to it, enabled or not: a disabled
    rule for a template switches the default off for that template. ``comm_loss: false``
    switches the defaults and flood suppression off.
    """

    enabled: bool = True
    priority: Priority = 3
    on_delay_s: float = Field(60.0, ge=0, description="device offline this long before it alarms")
    off_delay_s: float = Field(0.0, ge=0)
    message: str | None = Field(
        None,
        description="message template; fields as for rules plus "
        + ", ".join(sorted(COMM_LOSS_FIELDS)),
    )
    flood: FloodConfig = Field(default_factory=FloodConfig)

    @field_validator("message")
    @classmethod
    def _message(cls, v: str | None) -> str | None:
        return None if v is None else _check_message(v, COMM_LOSS_FIELDS)

    @field_validator("flood", mode="before")
    @classmethod
    def _flood_bool(cls, v: object) -> object:
        return _enabled_from_bool(v)

    @property
    def flood_priority(self) -> int:
        """The priority of the group alarms: configured, else one above the device alarms."""
        return self.flood.priority or max(1, self.priority - 1)

    @property
    def flood_on_delay_s(self) -> float:
        """The on-delay of the group alarms: configured, else the device alarms'."""
        return self.on_delay_s if self.flood.on_delay_s is None else self.flood.on_delay_s


class AlarmDefaults(_Model):
    """Site-wide alarm defaults (the ``alarm_defaults`` section; docs/alarms.md)."""

    comm_loss: CommLossDefaults = Field(
        default_factory=CommLossDefaults,
        description="a comm-loss alarm for every device, and flood suppression",
    )

    @field_validator("comm_loss", mode="before")
    @classmethod
    def _comm_loss_bool(cls, v: object) -> object:
        if v is False:
            return {"enabled": False, "flood": {"enabled": False}}
        return _enabled_from_bool(v)


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def _device_of(tag: str, tag_device: Mapping[str, str | None] | None) -> str | None:
    if tag_device is not None:
        return tag_device.get(tag)
    return tag.rsplit(".", 1)[0] if "." in tag else None


def check_references(
    rules: Sequence[AlarmRule],
    tag_names: Collection[str],
    template_ids: Collection[str],
    devices_by_template: Mapping[str, Sequence[str]],
) -> list[tuple[PathT, str]]:
    """Return ``(path, message)`` for every unknown tag, template, device or duplicate rule id.

    ``rules`` are validated rule models; paths start with ``"alarms"``. Device existence
    is checked through its ``<device>.online`` status tag. Globs that match nothing are
    reported too (almost always a typo).
    """
    from tags.catalog import compile_glob, has_wildcards

    issues: list[tuple[PathT, str]] = []
    names = tag_names if isinstance(tag_names, set | frozenset | dict) else set(tag_names)
    devices = {n[: -len(".online")] for n in names if n.endswith(".online")}
    seen: dict[str, int] = {}

    def missing_tag(path: PathT, name: str, what: str = "tag") -> None:
        issues.append((path, f"unknown {what} {name!r}{_did_you_mean(name, names)}"))

    for i, rule in enumerate(rules):
        base: PathT = ("alarms", i)
        if rule.id in DEFAULT_RULE_IDS:
            issues.append(
                ((*base, "id"), f"rule id {rule.id!r} is reserved for the comm-loss defaults")
            )
        if rule.id in seen:
            issues.append(
                ((*base, "id"), f"duplicate rule id {rule.id!r} (first at alarms[{seen[rule.id]}])")
            )
        else:
            seen[rule.id] = i
        bound_devices: list[str] = []
        if rule.tag is not None:
            if rule.tag not in names:
                missing_tag((*base, "tag"), rule.tag)
            own = _device_of(rule.tag, None)
            bound_devices = [own] if own is not None and own in devices else []
        if rule.tags is not None:
            rx = compile_glob(rule.tags)
            hits = [n for n in names if rx.fullmatch(n)]
            if not hits:
                issues.append(((*base, "tags"), f"pattern {rule.tags!r} matches no tag"))
        if rule.template is not None:
            if rule.template not in template_ids:
                issues.append(
                    (
                        (*base, "template"),
                        f"unknown template {rule.template!r}{_did_you_mean(rule.template, template_ids)}",
                    )
                )
            else:
                bound_devices = list(devices_by_template.get(rule.template, ()))
                if rule.point is not None:
                    for dev in bound_devices:
                        if f"{dev}.{rule.point}" not in names:
                            issues.append(
                                (
                                    (*base, "point"),
                                    f"template {rule.template!r} has no point {rule.point!r} (device {dev!r})",
                                )
                            )
                            break
        one: str | None = rule.__dict__.get("device")
        if one is not None:
            if one not in devices:
                issues.append(
                    ((*base, "device"), f"unknown device {one!r}{_did_you_mean(one, devices)}")
                )
            bound_devices = [one]
        devs = rule.__dict__.get("devices")
        if devs is not None:
            rx = compile_glob(devs)
            bound_devices = [d for d in devices if rx.fullmatch(d)]
            if not bound_devices:
                issues.append(((*base, "devices"), f"pattern {devs!r} matches no device"))
        # tag-naming fields: check each binding that fills {device}; others once with no binding
        for field in ("setpoint", "condition", "expr", "suppress_when", "parent_device"):
            text = rule.__dict__.get(field)
            if text is None:
                continue
            samples: Sequence[str | None] = bound_devices or [None]
            for d in samples:
                values = {"device": d, "tag": rule.tag, "point": rule.point}
                try:
                    filled = substitute(text, values)
                except KeyError as exc:
                    if "{building}" in text or "{household}" in text:
                        break  # known only from tag definitions; checked when the engine binds
                    issues.append(((*base, field), str(exc.args[0])))
                    break
                if field == "parent_device":
                    if filled not in devices:
                        issues.append(((*base, field), f"unknown device {filled!r}"))
                        break
                    continue
                if field == "setpoint":
                    refs: Iterable[str] = [filled]
                    globs: Iterable[str] = []
                else:
                    expr = parse_expression(substitute_expr(text, values))
                    refs, globs = expr.names, expr.globs
                bad = sorted(r for r in refs if r not in names)
                if bad:
                    missing_tag((*base, field), bad[0])
                    break
                for g in globs:
                    if has_wildcards(g):
                        rx = compile_glob(g)
                        if not any(rx.fullmatch(n) for n in names):
                            issues.append(((*base, field), f"pattern {g!r} matches no tag"))
                    elif g not in names:
                        missing_tag((*base, field), g)
    return issues
