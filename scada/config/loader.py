"""Load a site configuration: read YAML with includes, validate, expand generators, check references.

``load_site(path)`` and ``load_site_text(text)`` return a ``SiteConfig`` or raise
``ConfigError`` listing every problem as ``file:line:col: path: message``. Sections are
validated item by item, so one bad device does not hide the problems of the others; the
cross-reference checks (``scada.config.checks``) run on every item that is valid itself.
"""

from __future__ import annotations

import logging
import os
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from alarms.config import AlarmRule
from billing.config import AccountConfig, TariffConfig
from configbase.bulk import paused_gc
from configbase.model import ID_PATTERN
from configbase.secrets import find_secrets
from drivers.config import POINT_PATTERN, ChannelConfig, DeviceConfig, TemplateConfig
from scada.config.buildings import BuildingConfig
from scada.config.checks import Checker
from scada.config.errors import ConfigError, ConfigIssue, did_you_mean
from scada.config.site import SiteConfig
from scada.config.source import Document, PathT, SourceMap, read_document
from scada.config.substations import SubstationConfig
from tags.config import TagConfig

log = logging.getLogger(__name__)

#: Sections validated item by item (lists) or key by key (templates).
ITEM_SECTIONS: dict[str, Any] = {
    "channels": ChannelConfig,
    "devices": DeviceConfig,
    "tags": TagConfig,
    "buildings": BuildingConfig,
    "substations": SubstationConfig,
    "alarms": AlarmRule,
    "tariffs": TariffConfig,
    "accounts": AccountConfig,
    "users": dict[str, Any],
}
_ADAPTERS = {name: TypeAdapter(tp) for name, tp in ITEM_SECTIONS.items()}
_TEMPLATE = TypeAdapter(TemplateConfig)
_ID_RE = re.compile(ID_PATTERN)


def load_site(path: str | os.PathLike[str]) -> SiteConfig:
    """Load and fully validate the site configuration at ``path`` (with its includes).

    Raises ``ConfigError`` (with ``.issues``) listing every problem; ``FileNotFoundError``
    if ``path`` itself does not exist.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"configuration file not found: {os.fspath(path)}")
    with paused_gc():
        doc, issues = read_document(path)
        return _finish(doc, issues)


def load_site_text(
    text: str, name: str = "<string>", base_dir: str | os.PathLike[str] = "."
) -> SiteConfig:
    """Load a configuration from ``text``; ``name`` appears in errors, includes are relative to ``base_dir``.

    Used to validate a proposed change before it is applied. Raises ``ConfigError``.
    """
    with paused_gc():
        doc, issues = read_document(text=text, name=name, base_dir=os.fspath(base_dir))
        return _finish(doc, issues)


def check_site(path: str | os.PathLike[str]) -> tuple[SiteConfig | None, list[ConfigIssue]]:
    """Return ``(config, [])`` or ``(None, issues)`` for the file at ``path``; never raises ConfigError."""
    try:
        return load_site(path), []
    except ConfigError as exc:
        return None, exc.issues


def _finish(doc: Document | None, issues: list[ConfigIssue]) -> SiteConfig:
    if doc is None:
        raise ConfigError(issues)
    cfg = _Loader(doc, issues).run()
    if cfg is None:
        raise ConfigError(issues)
    cfg._files = list(dict.fromkeys(doc.files))
    cfg._warnings = inline_secrets(cfg, doc.smap)  # shown by `scada check` and `scada run`
    if log.isEnabledFor(logging.DEBUG):  # summary() builds the lookups: only when logged
        log.debug("loaded %s: %s", doc.files[0] if doc.files else "?", cfg.summary())
    return cfg


INLINE_SECRET = (
    "warning: secret written inline; use ${NAME} (environment) or ${file:/path} (docker secret)"
)


def inline_secrets(cfg: SiteConfig, smap: SourceMap) -> list[ConfigIssue]:
    """Return a located warning for every secret field whose value is written in the file."""
    return [smap.issue(path, INLINE_SECRET) for path, value in find_secrets(cfg) if value.inline]


class _Loader:
    def __init__(self, doc: Document, issues: list[ConfigIssue]) -> None:
        self.data = doc.data
        self.smap: SourceMap = doc.smap
        self.issues = issues
        #: Some file could not be read (syntax error, missing include): skip "unknown ..." errors.
        self.incomplete = bool(issues)

    def report(
        self, path: PathT, message: str, *, key: bool = False, offset: int | None = None
    ) -> None:
        self.issues.append(self.smap.issue(path, message, key=key, offset=offset))

    def run(self) -> SiteConfig | None:
        data = self.data
        head = {k: v for k, v in data.items() if k not in ITEM_SECTIONS}
        for name in ITEM_SECTIONS:
            if name in data and not isinstance(data[name], list):
                head[name] = data[name]  # let SiteConfig report the wrong type
        if "templates" in data and not isinstance(data["templates"], dict):
            head["templates"] = data["templates"]
        head_data = {k: v for k, v in head.items() if k != "templates" or not isinstance(v, dict)}
        base = self.validate(TypeAdapter(SiteConfig), head_data, (), SiteConfig)

        items: dict[str, list[tuple[int, Any]]] = {}
        for name, adapter in _ADAPTERS.items():
            value = data.get(name)
            items[name] = []
            if not isinstance(value, list):
                continue
            for i, raw in enumerate(value):
                obj = self.validate(adapter, raw, (name, i), ITEM_SECTIONS[name])
                if obj is not None:
                    items[name].append((i, obj))
        templates: dict[str, TemplateConfig] = {}
        raw_templates = data.get("templates")
        if isinstance(raw_templates, dict):
            for key, raw in raw_templates.items():
                if not isinstance(key, str) or not _ID_RE.match(key):
                    self.report(
                        ("templates", key), f"invalid template id {key!r}: {_ID_HINT}", key=True
                    )
                    continue
                obj = self.validate(_TEMPLATE, raw, ("templates", key), TemplateConfig)
                if obj is not None:
                    templates[key] = obj

        checker = Checker(
            self.smap,
            self.report,
            items,
            templates,
            data,
            self.validate,
            incomplete=self.incomplete,
        )
        result = checker.run()
        if base is None or self.issues:
            return None
        cfg: SiteConfig = base.model_copy(update=result)
        return cfg

    # ------------------------------------------------------------------ pydantic errors

    def validate(self, adapter: TypeAdapter[Any], raw: Any, path: PathT, root: Any) -> Any:
        try:
            return adapter.validate_python(raw)
        except ValidationError as exc:
            self.translate(exc, raw, path, root)
            return None

    def translate(self, exc: ValidationError, raw: Any, path: PathT, root: Any) -> None:
        seen: dict[tuple[PathT, bool], int] = {}
        for err in exc.errors(include_url=False):
            loc = _real_loc(raw, err["loc"], missing=err["type"] == "missing")
            message, key, loc = _message(err, loc, raw, root)
            full = (*path, *loc)
            slot = (full, key)
            if slot in seen:  # several members of a union failed at the same place: one line
                i = seen[slot]
                old = self.issues[i]
                if message not in old.message:
                    self.issues[i] = ConfigIssue(
                        old.file, old.line, old.col, old.path, f"{old.message}, or {message}"
                    )
                continue
            seen[slot] = len(self.issues)
            self.report(full, message, key=key)


_ID_HINT = "use parts of letters, digits, '_' and '-', separated by single dots"


def _real_loc(raw: Any, loc: tuple[int | str, ...], *, missing: bool = False) -> PathT:
    """Drop the union-member / discriminator-tag parts of a pydantic ``loc``, following the data.

    The last part is kept when it is absent from the data only for a ``missing`` error.
    """
    out: list[str | int] = []
    cur = raw
    for n, part in enumerate(loc):
        last = n == len(loc) - 1
        in_dict = isinstance(cur, dict) and part in cur
        in_list = isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur)
        if in_dict or in_list:
            cur = cur[part]
            out.append(part)
        elif last and missing and isinstance(cur, dict):
            out.append(part)  # a missing key
        # else: a union member or tag name (``modbus-tcp``, ``list[float]``): not in the data
    return tuple(out)


def _fields_at(root: Any, loc: PathT, raw: Any) -> list[str]:
    """Return the field names of the model found at ``loc`` (for "did you mean" hints)."""
    tp = root
    cur = raw
    for part in (*loc, None):
        tp = _unwrap(tp, cur)
        if part is None:
            break
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return []
            tp = field.annotation
        elif origin in (list, dict):
            tp = typing.get_args(tp)[-1]
        else:
            return []
        cur = (
            cur.get(part)
            if isinstance(cur, dict)
            else cur[part]
            if isinstance(cur, list) and isinstance(part, int) and part < len(cur)
            else None
        )
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _unwrap(tp: Any, cur: Any) -> Any:
    """Strip Annotated/Optional; pick the union member whose fields best match the data."""
    for _ in range(8):
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [_unwrap(a, cur) for a in typing.get_args(tp) if a is not type(None)]
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            if not models:
                return members[0] if len(members) == 1 else tp
            keys = set(cur) if isinstance(cur, dict) else set()

            def score(m: type[BaseModel], keys: set[Any] = keys) -> tuple[int, int]:
                proto = m.model_fields.get("protocol")
                match = 0
                if proto is not None and isinstance(cur, dict):
                    match = int(cur.get("protocol") in typing.get_args(proto.annotation))
                return match, len(keys & set(m.model_fields))

            return max(models, key=score)
        else:
            return tp
    return tp


def _message(err: Any, loc: PathT, raw: Any, root: Any) -> tuple[str, bool, PathT]:
    """Return (message, locate at the key?, loc) for one pydantic error."""
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        name = loc[-1] if loc else "?"
        fields = _fields_at(root, loc[:-1], raw)
        return f"unknown key {name!r}{did_you_mean(name, fields)}", True, loc
    if kind == "missing":
        return f"missing required key {loc[-1]!r}" if loc else "missing value", False, loc
    if kind == "union_tag_invalid":
        disc = str(ctx.get("discriminator", "")).strip("'")
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        tag = ctx.get("tag")
        hint = did_you_mean(tag, expected)
        return (
            f"unknown {disc} {tag!r}; expected one of {', '.join(expected)}{hint}",
            False,
            (*loc, disc),
        )
    if kind == "union_tag_not_found":
        disc = str(ctx.get("discriminator", "")).strip("'")
        return f"missing required key {disc!r}", False, loc
    if kind in ("literal_error", "enum"):  # Literal fields, and the codec's enums
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        options = ", ".join(expected) if expected else str(ctx.get("expected"))
        return f"{value!r} is not one of {options}{did_you_mean(value, expected)}", False, loc
    if kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern")
        if pattern == ID_PATTERN:
            return f"invalid id {value!r}: {_ID_HINT}", False, loc
        if pattern == POINT_PATTERN:
            return (
                f"invalid point name {value!r}: start with a letter or '_', then letters, digits, '_'",
                False,
                loc,
            )
    msg = str(err["msg"])
    if msg.startswith(("Value error, ", "Assertion failed, ")):
        return msg.split(", ", 1)[1], False, loc
    msg = msg[:1].lower() + msg[1:]
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        msg = "expected a mapping (key: value)"
    elif kind == "list_type":
        msg = "expected a list"
    shown = type(value).__name__ if isinstance(value, dict | list) else repr(value)
    return f"{msg} (got {shown})", False, loc
