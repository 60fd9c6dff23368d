"""The base REST handler: authentication, permission check, XSRF, JSON in and out, errors.

Handlers are thin (Tornado style): the route table gives each handler class its
operations (:class:`~scada.server.app.Op`, with the permission each method needs), and
``initialize(ctx=...)`` the shared :class:`~scada.server.context.ServerContext`.
``prepare`` answers a method the route does not have with 405 and an ``Allow`` header,
authenticates (bearer token or session cookie), checks the permission with
:func:`~scada.services.auth.may`, for cookie-authenticated writes the XSRF header, and
every query and header parameter against its declaration (``Param.check``: 400), so the
OpenAPI document's constraints are the ones enforced. Errors are JSON ``{"error": message,
...}``, in the language of the request's ``Accept-Language`` (the best of ``en``, ``zh_CN``,
``ru``; else the site's ``site.language``): ``prepare`` sets it first for the request's
task, so every ``_()`` the handler and the services it calls run is in that language.
Loop-thread only.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import tornado.web
from pydantic import BaseModel, ValidationError

from i18n import DEFAULT_LANGUAGE, _, best_language, set_language
from scada.services.auth import XSRF_HEADER, Action, User, may

if TYPE_CHECKING:
    from scada.server.app import Op
    from scada.server.context import ServerContext

__all__ = ["ApiError", "ApiHandler", "parse_time"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
MAX_BODY_BYTES = 8 * 1024 * 1024
#: Deepest nesting of arrays/objects a JSON body may have (no API needs more than a few).
MAX_JSON_DEPTH = 64
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiError(tornado.web.HTTPError):
    """Answer ``status`` with ``{"error": message, **extra}``."""

    def __init__(
        self, status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(status, reason=None)
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def _too_deep(data: Any, limit: int) -> bool:
    """True if ``data`` (parsed JSON) nests lists/dicts deeper than ``limit`` (no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def parse_time(text: str, name: str) -> float:
    """Return epoch seconds from ISO-8601 (offset required) or a number; ApiError 400 otherwise."""
    try:
        value = float(text)
    except ValueError:
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(
                400, f"{name}: expected ISO-8601 time or epoch seconds, got {text!r}"
            ) from None
        if dt.tzinfo is None:
            raise ApiError(
                400, f"{name}: the time needs a UTC offset (e.g. +00:00): {text!r}"
            ) from None
        value = dt.timestamp()
    if not math.isfinite(value) or abs(value) > 1e11:
        raise ApiError(400, f"{name}: time out of range: {text!r}")
    return value


def _finite(obj: Any) -> Any:
    """Return ``obj`` with non-finite floats replaced by None (recursively)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _dumps(obj: Any) -> str:
    try:
        return json.dumps(obj, default=str, allow_nan=False)
    except ValueError:  # a NaN/inf somewhere: JSON has no such numbers
        return json.dumps(_finite(obj), default=str, allow_nan=False)


class ApiHandler(tornado.web.RequestHandler):
    """Base of every REST handler (module docstring)."""

    ctx: ServerContext
    ops: dict[str, Op]
    user: User | None

    def initialize(self, ctx: ServerContext, ops: dict[str, Op] | None = None, **_: Any) -> None:
        self.ctx = ctx
        self.ops = ops or {}
        self.user = None
        self.auth_via = ""
        self.language = DEFAULT_LANGUAGE

    @property
    def site_language(self) -> str:
        """The site's default language (``site.language`` of the running configuration)."""
        return self.ctx.services.site.site.language

    def set_request_language(self) -> str:
        """Use the best language of ``Accept-Language`` (else the site's) for this request."""
        wish = self.request.headers.get("Accept-Language")
        self.language = best_language(wish, self.site_language)
        set_language(self.language)  # the request's own task: ends with the request
        return self.language

    # ------------------------------------------------------------------ pipeline
    def prepare(self) -> None:
        self.set_request_language()
        op = self.ops.get(self.request.method or "")
        if op is None:
            raise ApiError(
                405,
                _(
                    "{method} is not a method of {path}",
                    method=self.request.method,
                    path=self.request.path,
                ),
            )
        cookies = {k: v.value for k, v in self.request.cookies.items()}
        self.user, self.auth_via = self.ctx.auth.resolve(cookies, self.request.headers)
        if op.public:
            return
        if self.user is None:
            raise ApiError(
                401,
                _("authentication required (session cookie or bearer token)"),
                headers={"WWW-Authenticate": 'Bearer realm="scada"'},
            )
        if op.action is not None and not may(self.user, op.action):
            if self.request.method not in _SAFE:
                self.ctx.audit.record(
                    f"http.{op.action}",
                    user=self.user,
                    source=self.source,
                    target=self.request.path,
                    result="denied",
                )
            raise ApiError(
                403,
                _(
                    "user {user} ({role}) may not {action}",
                    user=self.user.name,
                    role=self.user.role.value,
                    action=op.action.value,
                ),
            )
        if (
            self.auth_via == "cookie"
            and self.request.method not in _SAFE
            and not self.ctx.auth.check_xsrf(cookies, self.request.headers.get(XSRF_HEADER))
        ):
            raise ApiError(
                403, _("XSRF check failed: send the {header} header", header=XSRF_HEADER)
            )
        self.check_params(op)

    def check_params(self, op: Op) -> None:
        """Refuse (400) a query or header parameter that does not match its declaration."""
        for param in op.params:
            if param.where == "query":
                text = self.get_query_argument(param.name, None, strip=False)
            elif param.where == "header":
                text = self.request.headers.get(param.name)
            else:
                continue  # path parameters: the handler answers 404 for what names nothing
            problem = param.check(text)
            if problem is not None:
                raise ApiError(400, problem)

    def may(self, action: Action, target: str | tuple[str, ...] | None = None) -> bool:
        return may(self.user, action, target)

    @property
    def source(self) -> str:
        """The client's address (from a trusted proxy's headers: scada.server.proxy)."""
        return self.ctx.proxies.client(self.request)

    def on_finish(self) -> None:
        self.ctx.http_counts[f"{self.get_status() // 100}xx"] += 1

    # ------------------------------------------------------------------ input
    def body(self, model: type[M]) -> M:
        """Return the JSON body validated by ``model``; ApiError 400/413/422 otherwise."""
        raw = self.request.body or b""
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, _("body larger than {n} bytes", n=MAX_BODY_BYTES))
        try:
            data = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, _("invalid JSON body: {error}", error=exc)) from None
        except RecursionError:  # the parser's own recursion: arrays/objects ~1,000 deep
            raise ApiError(400, f"invalid JSON body: nested deeper than {MAX_JSON_DEPTH}") from None
        if _too_deep(data, MAX_JSON_DEPTH):  # shallower than the parser's limit, still absurd
            raise ApiError(400, f"invalid JSON body: nested deeper than {MAX_JSON_DEPTH}")
        if not isinstance(data, dict):
            raise ApiError(422, _("the body must be a JSON object"))
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            errors = [
                {"loc": ".".join(str(x) for x in e["loc"]), "message": e["msg"]}
                for e in exc.errors(include_url=False)
            ]
            first = errors[0] if errors else {"loc": "", "message": "invalid"}
            raise ApiError(
                422, f"{first['loc'] or 'body'}: {first['message']}", details=errors
            ) from None

    def arg(self, name: str, default: str | None = None) -> str | None:
        return self.get_query_argument(name, default)

    def arg_float(
        self,
        name: str,
        default: float | None = None,
        *,
        lo: float | None = None,
        hi: float | None = None,
    ) -> float | None:
        text = self.get_query_argument(name, None)
        if text is None:
            return default
        try:
            v = float(text)
        except ValueError:
            raise ApiError(
                400, _("{name}: expected a number, got {text!r}", name=name, text=text)
            ) from None
        if not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ApiError(400, _("{name}: out of range: {text!r}", name=name, text=text))
        return v

    def arg_int(self, name: str, default: int, *, lo: int = 0, hi: int = 100000) -> int:
        text = self.get_query_argument(name, None)
        if text is None:
            return default
        try:
            v = int(text)
        except ValueError:
            raise ApiError(
                400, _("{name}: expected an integer, got {text!r}", name=name, text=text)
            ) from None
        if not lo <= v <= hi:
            raise ApiError(
                400,
                _("{name}: must be between {lo} and {hi}, got {v}", name=name, lo=lo, hi=hi, v=v),
            )
        return v

    def arg_bool(self, name: str, default: bool = False) -> bool:
        text = self.get_query_argument(name, None)
        if text is None:
            return default
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ApiError(400, _("{name}: expected true or false, got {text!r}", name=name, text=text))

    def arg_time(self, name: str, default: float | None = None) -> float | None:
        text = self.get_query_argument(name, None)
        return default if text is None else parse_time(text, name)

    # ------------------------------------------------------------------ output
    def reply(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(_dumps(obj))

    async def reply_listing(
        self, key: str, items: AsyncIterator[list[Any]], head: Callable[[], dict[str, Any]]
    ) -> None:
        """Answer ``{**head(), key: [...]}`` from ``items`` (lists of rows), list by list.

        A whole estate's listing is tens of megabytes: each list is encoded in its own loop
        turn (``items`` yields between them), so the loop serves others in between. ``head``
        is called once every row is in (it may count them).
        """
        parts: list[str] = []
        async for rows in items:
            if rows:
                parts.append(_dumps(rows)[1:-1])
        text = _dumps(head())
        body = f'"{key}":[{",".join(parts)}]'
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(f"{text[:-1]}, {body}}}" if len(text) > 2 else f"{{{body}}}")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if status_code == 405:  # also for methods Tornado refuses before prepare (TRACE, ...)
            self.set_header("Allow", ", ".join(self.ops))
        body: dict[str, Any]
        if isinstance(exc, ApiError):
            body = {"error": exc.message, **exc.extra}
            for k, v in exc.headers.items():
                self.set_header(k, v)
        elif isinstance(exc, tornado.web.HTTPError):
            body = {"error": exc.log_message or self._reason}
        else:
            body = {"error": self._reason}
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(body, default=str))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, ApiError):
            return  # an answered client error, not a server fault
        super().log_exception(typ, value, tb)
