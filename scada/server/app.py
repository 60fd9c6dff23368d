"""The route table: every URL of the server, its handler and its operations.

Each :class:`Route` has an OpenAPI-style path (``/api/tags/{name}``) and one :class:`Op`
per HTTP method: a summary, the permission it needs (``action``; None = any signed-in
user; ``public`` = no sign-in), query/path parameters, the request body model and the
documented answers. The Tornado URL patterns (:func:`tornado_routes`) and the OpenAPI
document (:mod:`scada.server.openapi`) are both generated from this one table, and a
test checks they agree. Order matters: fixed segments before ``{param}`` siblings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from tornado.web import RequestHandler

from scada.server import formats, schemas
from scada.server.formats import matches
from scada.server.handlers import (
    admin,
    alarms,
    billing,
    commands,
    config,
    demo_pay,
    payments,
    profile,
    receipts,
    roster,
    session,
    system,
    tags,
    tenancy,
)
from scada.server.handlers.base import MAX_BODY_BYTES
from scada.server.roster_schemas import PaymentOut, ReconcileOut, RosterImportOut
from scada.server.ws import WsHandler
from scada.services.audit import MAX_QUERY_ROWS
from scada.services.auth import Action

if TYPE_CHECKING:
    from bokeh.server.urls import URLRoutes

    from scada.server.context import ServerContext

__all__ = ["ROUTES", "Op", "Param", "Route", "tornado_routes"]

A = Action


@dataclass(frozen=True, slots=True)
class Param:
    """A query, path or header parameter, with the constraints the server enforces on it.

    :meth:`check` is what the handlers' ``prepare`` applies to every query and header
    parameter before the handler runs (400 naming the parameter), and :meth:`schema` what
    the OpenAPI document says: the two read the same fields. ``pattern`` must match all
    of the value (see :mod:`scada.server.formats`).
    """

    name: str
    where: str = "query"
    type: str = "string"
    required: bool = False
    description: str = ""
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None

    def schema(self) -> dict[str, Any]:
        s: dict[str, Any] = {"type": self.type}
        if self.enum:
            s["enum"] = list(self.enum)
        for key, value in (
            ("minimum", self.minimum),
            ("maximum", self.maximum),
            ("pattern", self.pattern),
            ("minLength", self.min_length),
            ("maxLength", self.max_length),
        ):
            if value is not None:
                s[key] = value
        return s

    def check(self, text: str | None) -> str | None:
        """Return why ``text`` (None: absent) is not a value of this parameter, or None if it is."""
        if text is None:
            return f"{self.name}: required" if self.required else None
        syntax = _SYNTAX.get(self.type)
        if syntax is not None and not matches(syntax, text):
            return f"{self.name}: expected {_NOUN[self.type]}, got {text!r}"
        if self.type in ("integer", "number"):
            value = float(text)
            if not math.isfinite(value):
                return f"{self.name}: expected a finite number, got {text!r}"
            if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum
            ):
                return f"{self.name}: must be between {self.minimum} and {self.maximum}, got {text}"
        if self.enum is not None and text not in self.enum:
            return f"{self.name}: expected one of {', '.join(self.enum)}, got {text!r}"
        if self.min_length is not None and len(text) < self.min_length:
            return f"{self.name}: at least {self.min_length} characters"
        if self.max_length is not None and len(text) > self.max_length:
            return f"{self.name}: at most {self.max_length} characters"
        if self.pattern is not None and not matches(self.pattern, text):
            return f"{self.name}: {self.description or 'not in the expected format'}, got {text!r}"
        return None


#: How a query or header value of each type is written (as JSON writes it).
_SYNTAX = {
    "integer": r"-?[0-9]+",
    "number": r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?",
    "boolean": r"true|false",
}
_NOUN = {"integer": "an integer", "number": "a number", "boolean": "true or false"}


@dataclass(frozen=True, slots=True)
class Op:
    """One operation (method) of a route."""

    method: str
    summary: str
    action: Action | None = None
    public: bool = False
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    responses: dict[int, str] = field(default_factory=lambda: {200: "OK"})
    content: str = "application/json"
    #: the success answer's model (documented in OpenAPI; None: any JSON object)
    response: type[BaseModel] | None = None
    #: other content types of the success answer (downloads chosen by a ``format`` parameter)
    produces: tuple[str, ...] = ()
    #: a rule JSON Schema cannot state (between parameters, or on what the files describe) and
    #: the status that refuses a request breaking it: ``x-rules`` in the OpenAPI document
    rules: tuple[int, str] | None = None
    #: a file upload instead of a JSON body: its content types, sent raw or as the one file
    #: of a ``multipart/form-data`` form (``handlers.roster.read_upload``)
    consumes: tuple[str, ...] = ()

    def answers(self) -> dict[int, str]:
        """Return every status this operation may answer: ``responses`` plus the pipeline's.

        ``ApiHandler.prepare`` and ``ApiHandler.body`` answer the same way for every
        operation: 401 without a sign-in, 403 for a missing permission or XSRF header, 400 for
        a parameter off its declaration or a body that is not JSON, 413 and 422 for bodies.
        """
        implied: dict[int, str] = {}
        if not self.public:
            implied[401] = "not signed in"
            if self.action is not None or self.method not in ("GET", "HEAD", "OPTIONS"):
                implied[403] = "not allowed for this role (or the XSRF header is missing)"
        if any(p.where in ("query", "header") for p in self.params):
            implied[400] = "a parameter is missing or not of its documented form"
        if self.body is not None:
            implied[400] = "the body is not JSON (or nests deeper than 64)"
            implied[413] = f"the body is larger than {MAX_BODY_BYTES} bytes"
            implied[422] = "the body does not match its schema"
        if self.consumes:
            implied[413] = f"the upload is larger than {MAX_BODY_BYTES} bytes"
            implied[415] = f"the upload is not {' or '.join(self.consumes)}"
            implied[422] = "the upload is empty or cannot be read"
        return {**implied, **self.responses}


@dataclass(frozen=True, slots=True)
class Route:
    """A URL with its handler class and operations; ``group`` is the OpenAPI tag."""

    path: str
    handler: type[RequestHandler]
    ops: tuple[Op, ...]
    group: str

    def pattern(self) -> str:
        """Return the Tornado regex of ``path`` (``{x}`` -> a named group without ``/``)."""
        return (
            re.sub(
                r"\{(\w+)\}",
                r"(?P<\1>[^/]+)",
                re.escape(self.path).replace(r"\{", "{").replace(r"\}", "}"),
            )
            + "$"
        )


def _q(name: str, desc: str = "", **constraints: Any) -> Param:
    return Param(name, "query", description=desc, **constraints)


def _p(name: str, desc: str = "") -> Param:
    return Param(name, "path", "string", True, desc)


def _int(name: str, lo: int, hi: int, desc: str = "") -> Param:
    return _q(name, desc, type="integer", minimum=lo, maximum=hi)


def _utc(name: str) -> Param:
    """A time query parameter read by ``handlers.base.parse_time``."""
    return _q(name, "ISO-8601 time with offset, or epoch seconds", pattern=formats.UTC_TIME)


def _site(name: str, *, required: bool = False) -> Param:
    """A time query parameter read by the billing handlers (site time unless an offset)."""
    desc = "ISO date or date-time (site time unless an offset is given), or epoch seconds"
    return _q(name, desc, required=required, pattern=formats.SITE_TIME)


_WINDOW = (
    f"to must be after from, at most {billing.MAX_WINDOW_S / 86400:.0f} days later; a heat "
    "allocation's from must not be in the future"
)
_AUTH = {401: "not signed in", 403: "not allowed for this role"}
_WRITE = {**_AUTH, 422: "invalid body"}
_CMD = {**_WRITE, 404: "unknown command or tag", 409: "conflicting state"}
_MONEY = {
    **_WRITE,
    200: "done (or repeated: the idempotency key was posted before)",
    400: "bad amount",
    404: "unknown account",
    409: "refused by the ledger (not open, exceeds the balance, already reversed)",
    503: "billing not running",
}
_IDEM = Param(
    "Idempotency-Key",
    "header",
    description="repeat-safe key (or idempotency_key in the body): 1 to 200 visible ASCII "
    "characters",
    pattern=formats.IDEMPOTENCY_KEY,
)
#: ``tag=`` of a history query: any non-empty name (an unknown one is 404).
_TAG = Param("tag", "query", required=True, min_length=1, description="tag name")

ROUTES: tuple[Route, ...] = (
    Route(
        "/",
        session.RootPage,
        (
            Op(
                "GET",
                "Home: redirect to the HMI (or to this document)",
                public=True,
                responses={302: "redirect"},
                content="text/html",
            ),
        ),
        "session",
    ),
    Route(
        "/login",
        session.LoginPage,
        (
            Op(
                "GET",
                "Login page (HTML form posting to /api/login)",
                public=True,
                params=(_q("next", "same-site path to go to after signing in"),),
                content="text/html",
            ),
        ),
        "session",
    ),
    Route(
        "/logout",
        session.LogoutPage,
        (
            Op(
                "POST",
                "End the browser's session and go to the login page (the HMI's log-out form)",
                public=True,
                responses={303: "to /login"},
                content="text/html",
            ),
        ),
        "session",
    ),
    Route(
        "/password",
        session.PasswordPage,
        (
            Op(
                "GET",
                "Change-password page (signed-in users; else to the login page)",
                public=True,
                responses={200: "OK", 302: "redirect to /login"},
                content="text/html",
            ),
        ),
        "session",
    ),
    Route(
        "/setup",
        session.SetupPage,
        (
            Op(
                "GET",
                "First-run setup page (one-time setup token)",
                public=True,
                responses={200: "OK", 404: "an admin exists"},
                content="text/html",
            ),
        ),
        "session",
    ),
    Route("/healthz", system.HealthApi, (Op("GET", "Liveness", public=True),), "system"),
    Route(
        "/readyz",
        system.ReadyApi,
        (
            Op(
                "GET",
                "Readiness of the runtime's parts",
                public=True,
                responses={200: "ready", 503: "not ready"},
            ),
        ),
        "system",
    ),
    Route(
        "/metrics",
        system.MetricsApi,
        (
            Op(
                "GET",
                "Prometheus metrics",
                A.METRICS_READ,
                responses={200: "OK", **_AUTH},
                content="text/plain",
            ),
        ),
        "system",
    ),
    Route(
        "/ws",
        WsHandler,
        (
            Op(
                "GET",
                "Websocket (upgrade): live values, alarm and command events, ops",
                responses={
                    101: "switching protocols",
                    400: "not a websocket request",
                    401: "not signed in",
                    403: "origin not allowed",
                },
            ),
        ),
        "live",
    ),
    Route(
        "/api/openapi.json",
        system.OpenApiApi,
        (Op("GET", "This API document", public=True),),
        "system",
    ),
    Route(
        "/api/login",
        session.LoginApi,
        (
            Op(
                "POST",
                "Sign in: a session cookie and a token",
                public=True,
                body=schemas.LoginBody,
                responses={
                    200: "signed in",
                    401: "wrong credentials",
                    422: "invalid body",
                    429: "too many failed logins",
                },
            ),
        ),
        "session",
    ),
    Route(
        "/api/logout",
        session.LogoutApi,
        (
            Op(
                "POST",
                "End the session (or revoke the bearer token used)",
                responses={200: "OK", **_AUTH},
            ),
        ),
        "session",
    ),
    Route(
        "/api/setup",
        session.SetupApi,
        (
            Op(
                "POST",
                "Create the first admin with the one-time setup token",
                public=True,
                body=schemas.SetupBody,
                responses={201: "created", 403: "wrong token", 422: "invalid body"},
            ),
        ),
        "session",
    ),
    Route(
        "/api/me",
        session.MeApi,
        (Op("GET", "The signed-in user and its permissions", responses={200: "OK", **_AUTH}),),
        "session",
    ),
    Route(
        "/api/me/password",
        session.PasswordApi,
        (
            Op(
                "POST",
                "Change one's own password: every session ends, a new one is returned",
                body=schemas.PasswordBody,
                responses={
                    **_AUTH,
                    200: "changed",
                    401: "not signed in, or wrong current password",
                    422: "password refused by the policy",
                    429: "too many failed attempts",
                },
            ),
        ),
        "session",
    ),
    Route(
        "/api/me/language",
        profile.LanguageApi,
        (
            Op(
                "GET",
                "The caller's language (null: the site's default), the site's and the choices",
                responses={200: "OK", **_AUTH},
            ),
            Op(
                "PUT",
                "Set the caller's language (en, zh_CN, ru; null: the site's default)",
                body=profile.LanguageBody,
                responses={**_AUTH, 200: "set", 422: "unknown language"},
            ),
        ),
        "session",
    ),
    Route(
        "/api/me/sessions",
        session.SessionsApi,
        (
            Op(
                "GET",
                "The caller's live sessions (address, browser, times; which one is this)",
                responses={200: "OK", **_AUTH},
            ),
        ),
        "session",
    ),
    Route(
        "/api/me/sessions/{session_id}",
        session.SessionApi,
        (
            Op(
                "DELETE",
                "End one of the caller's sessions",
                params=(_p("session_id"),),
                responses={200: "revoked", 404: "no such live session of the caller", **_AUTH},
            ),
        ),
        "session",
    ),
    Route(
        "/api/tags",
        tags.TagsApi,
        (
            Op(
                "GET",
                "Tags with metadata and current values",
                A.TAGS_READ,
                params=(
                    _q("pattern", "tag glob (default *)"),
                    _q("building"),
                    _q("device"),
                    _q("household"),
                    _q("quality", enum=("good", "uncertain", "bad")),
                    _q("values", "include current values (default true)", type="boolean"),
                    _int("limit", 1, tags.MAX_TAGS_LISTED),
                ),
                responses={200: "OK", 400: "bad filter", **_AUTH},
            ),
        ),
        "tags",
    ),
    Route(
        "/api/tags/{name}",
        tags.TagApi,
        (
            Op(
                "GET",
                "One tag: metadata and current value",
                A.TAGS_READ,
                params=(_p("name"),),
                responses={200: "OK", 404: "unknown tag", **_AUTH},
            ),
        ),
        "tags",
    ),
    Route(
        "/api/history/raw",
        tags.HistoryRawApi,
        (
            Op(
                "GET",
                "Stored samples of one tag in [start, end)",
                A.HISTORY_READ,
                rules=(400, "end must not be before start"),
                params=(
                    _TAG,
                    _utc("start"),
                    _utc("end"),
                    _q("include_bad", type="boolean"),
                    _int("limit", 1, tags.MAX_SAMPLES),
                ),
                responses={
                    200: "OK",
                    400: "bad query",
                    404: "unknown tag",
                    503: "historian not running",
                    **_AUTH,
                },
            ),
        ),
        "history",
    ),
    Route(
        "/api/history/agg",
        tags.HistoryAggApi,
        (
            Op(
                "GET",
                "Aggregated buckets of tags; fn=delta: counter consumption per bucket",
                A.HISTORY_READ,
                rules=(
                    400,
                    f"end must not be before start, with at most {tags.MAX_BUCKETS} buckets "
                    f"between them; every in seconds is 1 to {tags.MAX_EVERY_S:.0f}; a calendar "
                    "every (15m, 1h, 1d, 1mo, 1y: site time, below a day a divisor of it, at "
                    "most a year) and rollover only with fn=delta, include_bad=true not with it",
                ),
                params=(
                    _q(
                        "tags",
                        f"1 to {tags.MAX_TAGS_PER_QUERY} comma-separated tag names",
                        required=True,
                        pattern=tags.TAG_LIST,
                    ),
                    _utc("start"),
                    _utc("end"),
                    _q(
                        "every",
                        "bucket width: seconds, or for fn=delta a count and a calendar unit of "
                        "the site's time zone (15m, 1h, 1d, 1mo, 1y)",
                        pattern=formats.EVERY,
                    ),
                    _q(
                        "fn",
                        enum=(
                            "mean",
                            "twa",
                            "min",
                            "max",
                            "first",
                            "last",
                            "sum",
                            "count",
                            tags.DELTA,
                        ),
                    ),
                    _q("include_bad", type="boolean"),
                    _q(
                        "rollover",
                        "fn=delta: the value the counter wraps at (a decrease then adds "
                        "rollover - previous + new instead of new)",
                        type="number",
                        minimum=1,
                    ),
                ),
                responses={
                    200: "OK",
                    400: "bad query",
                    404: "unknown tag",
                    503: "historian not running",
                    **_AUTH,
                },
            ),
        ),
        "history",
    ),
    Route(
        "/api/alarms",
        alarms.AlarmsApi,
        (
            Op(
                "GET",
                "The alarm list",
                A.ALARMS_READ,
                params=(
                    _q("priority", "comma-separated priorities", pattern=alarms.PRIORITIES),
                    _q("area", "glob"),
                    _q("state", "comma-separated states", pattern=alarms.STATES),
                    _q("key", "glob"),
                    _q("text"),
                    _q("all", "every point, normal ones too", type="boolean"),
                    _q("hidden", "also shelved, suppressed, out of service", type="boolean"),
                ),
                responses={200: "OK", 400: "bad filter", 503: "alarms not running", **_AUTH},
            ),
        ),
        "alarms",
    ),
    Route(
        "/api/alarms/ack",
        alarms.AlarmAckApi,
        (
            Op(
                "POST",
                "Acknowledge alarms (with a comment)",
                A.ALARMS_ACK,
                body=schemas.AckBody,
                responses={200: "OK", 404: "unknown alarm", 503: "alarms not running", **_WRITE},
            ),
        ),
        "alarms",
    ),
    Route(
        "/api/alarms/journal",
        alarms.AlarmJournalApi,
        (
            Op(
                "GET",
                "Alarm journal events, newest first",
                A.ALARMS_READ,
                params=(
                    _utc("since"),
                    _utc("until"),
                    _q("key", "glob"),
                    _q("text"),
                    _int("limit", 1, alarms.MAX_JOURNAL_ROWS),
                    _int("offset", 0, alarms.MAX_JOURNAL_OFFSET),
                ),
                responses={200: "OK", 400: "bad query", 503: "alarms not running", **_AUTH},
            ),
        ),
        "alarms",
    ),
    Route(
        "/api/alarms/kpis",
        alarms.AlarmKpisApi,
        (
            Op(
                "GET",
                "ISA-18.2 alarm KPIs of a period",
                A.ALARMS_READ,
                rules=(400, "until must be after since"),
                params=(_utc("since"), _utc("until")),
                responses={200: "OK", 400: "bad query", 503: "alarms not running", **_AUTH},
            ),
        ),
        "alarms",
    ),
    Route(
        "/api/alarms/{ref}/shelve",
        alarms.AlarmShelveApi,
        (
            Op(
                "POST",
                "Shelve an alarm point",
                A.ALARMS_SHELVE,
                params=(_p("ref", "key or occurrence"),),
                body=schemas.ShelveBody,
                responses={200: "OK", 404: "unknown alarm", 503: "alarms not running", **_WRITE},
            ),
        ),
        "alarms",
    ),
    Route(
        "/api/alarms/{ref}/unshelve",
        alarms.AlarmUnshelveApi,
        (
            Op(
                "POST",
                "Unshelve an alarm point",
                A.ALARMS_SHELVE,
                params=(_p("ref"),),
                body=schemas.UnshelveBody,
                responses={200: "OK", 404: "unknown alarm", 503: "alarms not running", **_WRITE},
            ),
        ),
        "alarms",
    ),
    Route(
        "/api/alarms/{ref}/out-of-service",
        alarms.AlarmServiceApi,
        (
            Op(
                "POST",
                "Take an alarm point out of service, or back",
                A.ALARMS_SERVICE,
                params=(_p("ref"),),
                body=schemas.ServiceBody,
                responses={200: "OK", 404: "unknown alarm", 503: "alarms not running", **_WRITE},
            ),
        ),
        "alarms",
    ),
    Route(
        "/api/commands",
        commands.CommandsApi,
        (
            Op(
                "GET",
                "Recent commands, newest first",
                A.COMMANDS_READ,
                params=(_int("limit", 1, commands.MAX_LISTED), _q("state")),
                responses={200: "OK", 400: "bad query", **_AUTH},
            ),
            Op(
                "POST",
                "Select a tag for a write (select-before-operate)",
                A.COMMANDS_OPERATE,
                params=(_IDEM,),
                body=schemas.CommandBody,
                responses={201: "selected", 200: "repeated (idempotency key)", **_CMD},
            ),
        ),
        "commands",
    ),
    Route(
        "/api/commands/batch",
        commands.BatchApi,
        (
            Op(
                "POST",
                "Select many targets (a result per target)",
                A.COMMANDS_OPERATE,
                params=(_IDEM,),
                body=schemas.BatchBody,
                responses={201: "selected", **_CMD},
            ),
        ),
        "commands",
    ),
    Route(
        "/api/commands/batch/{batch_id}",
        commands.BatchOneApi,
        (
            Op(
                "GET",
                "One batch with a result per target",
                A.COMMANDS_READ,
                params=(_p("batch_id"),),
                responses={200: "OK", 404: "unknown batch", **_AUTH},
            ),
        ),
        "commands",
    ),
    Route(
        "/api/commands/batch/{batch_id}/operate",
        commands.BatchOperateApi,
        (
            Op(
                "POST",
                "Operate every selected target of a batch",
                A.COMMANDS_OPERATE,
                params=(_p("batch_id"),),
                responses={200: "OK", **_CMD},
            ),
        ),
        "commands",
    ),
    Route(
        "/api/commands/batch/{batch_id}/cancel",
        commands.BatchCancelApi,
        (
            Op(
                "POST",
                "Cancel a batch's selections",
                A.COMMANDS_OPERATE,
                params=(_p("batch_id"),),
                responses={200: "OK", **_CMD},
            ),
        ),
        "commands",
    ),
    Route(
        "/api/commands/{command_id}",
        commands.CommandApi,
        (
            Op(
                "GET",
                "One command",
                A.COMMANDS_READ,
                params=(_p("command_id"),),
                responses={200: "OK", 404: "unknown command", **_AUTH},
            ),
        ),
        "commands",
    ),
    Route(
        "/api/commands/{command_id}/operate",
        commands.CommandOperateApi,
        (
            Op(
                "POST",
                "Operate a selected command (same user, before expiry)",
                A.COMMANDS_OPERATE,
                params=(_p("command_id"),),
                responses={200: "final state", **_CMD},
            ),
        ),
        "commands",
    ),
    Route(
        "/api/commands/{command_id}/cancel",
        commands.CommandCancelApi,
        (
            Op(
                "POST",
                "Cancel a selected command",
                A.COMMANDS_OPERATE,
                params=(_p("command_id"),),
                responses={200: "cancelled", **_CMD},
            ),
        ),
        "commands",
    ),
    Route(
        "/api/config",
        config.ConfigApi,
        (
            Op(
                "GET",
                "The running configuration files",
                A.CONFIG_READ,
                responses={200: "OK", 409: "not from files", **_AUTH},
            ),
        ),
        "config",
    ),
    Route(
        "/api/config/validate",
        config.ConfigValidateApi,
        (
            Op(
                "POST",
                "Validate a proposed change: errors with locations, diff, plan",
                A.CONFIG_WRITE,
                body=schemas.ConfigProposal,
                responses={200: "validated (see valid)", 409: "not from files", **_WRITE},
            ),
        ),
        "config",
    ),
    Route(
        "/api/config/apply",
        config.ConfigApplyApi,
        (
            Op(
                "POST",
                "Apply a change hot and store a version",
                A.CONFIG_WRITE,
                rules=(
                    422,
                    "the files must make a valid site configuration (errors in the answer)",
                ),
                body=schemas.ConfigProposal,
                responses={200: "applied", 409: "not from files", **_WRITE},
            ),
        ),
        "config",
    ),
    Route(
        "/api/config/versions",
        config.ConfigVersionsApi,
        (
            Op(
                "GET",
                "Stored configuration versions",
                A.CONFIG_READ,
                responses={200: "OK", 409: "not from files", **_AUTH},
            ),
        ),
        "config",
    ),
    Route(
        "/api/config/versions/{number}",
        config.ConfigVersionApi,
        (
            Op(
                "GET",
                "One configuration version with its files",
                A.CONFIG_READ,
                params=(_p("number"),),
                responses={200: "OK", 404: "unknown version", 409: "not from files", **_AUTH},
            ),
        ),
        "config",
    ),
    Route(
        "/api/config/rollback",
        config.ConfigRollbackApi,
        (
            Op(
                "POST",
                "Roll back to an earlier version (as a new version)",
                A.CONFIG_WRITE,
                rules=(422, "the version must still make a valid site configuration"),
                body=schemas.RollbackBody,
                responses={200: "applied", 404: "unknown version", 409: "not from files", **_WRITE},
            ),
        ),
        "config",
    ),
    Route(
        "/api/accounts",
        billing.AccountsApi,
        (
            Op(
                "GET",
                "Prepaid accounts with balance and level (tenants: their own)",
                A.BILLING_READ,
                params=(_q("building"),),
                responses={200: "OK", 503: "billing not running", **_AUTH},
                response=billing.AccountsOut,
            ),
        ),
        "billing",
    ),
    Route(
        "/api/heat-accounts",
        billing.HeatAccountsApi,
        (
            Op(
                "GET",
                "Heat accounts with balance, arrears, keep-heat and valve (tenants: their own)",
                A.BILLING_READ,
                params=(_q("building"),),
                responses={200: "OK", 503: "billing not running", **_AUTH},
                response=billing.HeatAccountsOut,
            ),
        ),
        "billing",
    ),
    Route(
        "/api/accounts/{account_id}",
        billing.AccountApi,
        (
            Op(
                "GET",
                "One account: balance, level, meters, relays",
                A.BILLING_READ,
                params=(_p("account_id"),),
                responses={200: "OK", 404: "unknown account", 503: "billing not running", **_AUTH},
                response=billing.AccountOut,
            ),
        ),
        "billing",
    ),
    Route(
        "/api/accounts/{account_id}/ledger",
        billing.AccountLedgerApi,
        (
            Op(
                "GET",
                "Ledger entries of an account, oldest first (the last `limit`)",
                A.BILLING_READ,
                params=(
                    _p("account_id"),
                    _site("from"),
                    _site("to"),
                    _q(
                        "kind",
                        "comma-separated entry kinds (topup, refund, consumption, ...)",
                        pattern=billing.ENTRY_KINDS,
                    ),
                    _int("limit", 1, billing.MAX_LEDGER_ROWS),
                ),
                responses={
                    200: "OK",
                    400: "bad query",
                    404: "unknown account",
                    503: "billing not running",
                    **_AUTH,
                },
                response=billing.LedgerOut,
            ),
        ),
        "billing",
    ),
    Route(
        "/api/accounts/{account_id}/topup",
        billing.AccountTopupApi,
        (
            Op(
                "POST",
                "Top up an account (closes relays tripped for arrears once above zero)",
                A.BILLING_WRITE,
                params=(_p("account_id"), _IDEM),
                body=billing.MoneyBody,
                responses=_MONEY,
                response=billing.MoneyOut,
            ),
        ),
        "billing",
    ),
    Route(
        "/api/accounts/{account_id}/refund",
        billing.AccountRefundApi,
        (
            Op(
                "POST",
                "Refund money (at most the balance)",
                A.BILLING_WRITE,
                params=(_p("account_id"), _IDEM),
                body=billing.MoneyBody,
                responses=_MONEY,
                response=billing.MoneyOut,
            ),
        ),
        "billing",
    ),
    Route(
        "/api/accounts/{account_id}/open",
        billing.AccountOpenApi,
        (
            Op(
                "POST",
                "Open a configured account with its opening balance (repeat-safe); audited",
                A.BILLING_WRITE,
                params=(_p("account_id"),),
                body=billing.OpenBody,
                responses={
                    **_MONEY,
                    200: "opened (or repeated: opened before with this amount)",
                    409: "opened before with another amount, or closed",
                },
                response=billing.MoneyOut,
            ),
        ),
        "billing",
    ),
    Route(
        "/api/accounts/{account_id}/close",
        billing.AccountCloseApi,
        (
            Op(
                "POST",
                "Close an account: final readings, final charge, settlement to 0.00; audited",
                A.BILLING_WRITE,
                params=(_p("account_id"),),
                body=billing.CloseBody,
                responses={
                    **_WRITE,
                    200: "closed (or repeated: closed before; the first closing)",
                    400: "bad time or reading",
                    404: "unknown account",
                    409: "not open, no or an implausible final reading, a charge held",
                    503: "billing not running",
                },
                response=billing.CloseOut,
            ),
        ),
        "billing",
    ),
    # ---- issue 16 item 2: tenant change mid-period and the vacant flat (admins, cashiers)
    Route(
        "/api/accounts/{account_id}/tenant-change",
        tenancy.TenantChangeApi,
        (
            Op(
                "POST",
                "Change the tenant at a time: close the account (final reading, charge, "
                "settlement) and open the new tenant's on the same meters; idempotent; audited",
                A.BILLING_WRITE,
                params=(_p("account_id"),),
                body=tenancy.TenantChangeBody,
                responses={
                    **_WRITE,
                    200: "changed (or repeated: the idempotency key was used before)",
                    400: "bad time",
                    403: "not an admin or cashier",
                    404: "unknown account",
                    409: "refused: before the last billed period end, closed, no reading at "
                    "the time, overlapping tenancy, a charge held",
                    503: "billing not running",
                },
            ),
        ),
        "billing",
    ),
    Route(
        "/api/accounts/{account_id}/tenancies",
        tenancy.TenancyListApi,
        (
            Op(
                "GET",
                "The tenant changes of an account (as the old or the new tenant's); with "
                "from and to, each tenant's share of the window (electricity by reading, heat "
                "basic by days, metered by valve time)",
                A.BILLING_WRITE,
                params=(
                    _p("account_id"),
                    _q("from", "window start (site time)", pattern=formats.SITE_TIME),
                    _q("to", "window end, exclusive (site time)", pattern=formats.SITE_TIME),
                ),
                responses={
                    200: "the changes",
                    400: "bad window",
                    404: "unknown account",
                    503: "billing or historian not running",
                    **_AUTH,
                },
            ),
        ),
        "billing",
    ),
    Route(
        "/api/households/{household}/vacant",
        tenancy.VacantApi,
        (
            Op(
                "POST",
                "Mark a flat vacant from a day: no tenant account, the owner pays a reduced "
                "heat basic fee; a configuration change, audited",
                A.BILLING_WRITE,
                params=(_p("household"),),
                body=tenancy.VacantBody,
                responses={
                    **_WRITE,
                    200: "the household's vacancy",
                    403: "not an admin or cashier",
                    404: "unknown household",
                    409: "an open tenant account, or a generated household",
                },
            ),
        ),
        "billing",
    ),
    Route(
        "/api/households/{household}/let",
        tenancy.LetApi,
        (
            Op(
                "POST",
                "Let a vacant flat again from a day (its vacancy ends the day before); audited",
                A.BILLING_WRITE,
                params=(_p("household"),),
                body=tenancy.LetBody,
                responses={
                    **_WRITE,
                    200: "the household's vacancy, ended",
                    403: "not an admin or cashier",
                    404: "unknown household",
                    409: "not vacant",
                },
            ),
        ),
        "billing",
    ),
    Route(
        "/api/accounts/{account_id}/keep-power",
        billing.KeepPowerApi,
        (
            Op(
                "POST",
                "Keep the supply on in arrears (or let billing trip it again); audited",
                A.BILLING_WRITE,
                params=(_p("account_id"),),
                body=billing.KeepPowerBody,
                responses=_MONEY,
                response=billing.KeepPowerOut,
            ),
        ),
        "billing",
    ),
    Route(
        "/api/accounts/{account_id}/keep-heat",
        billing.KeepHeatApi,
        (
            Op(
                "POST",
                "Never lock a heat account's valve for arrears (or let billing lock it); audited",
                A.BILLING_WRITE,
                params=(_p("account_id"),),
                body=billing.KeepHeatBody,
                responses=_MONEY,
                response=billing.KeepHeatOut,
            ),
        ),
        "billing",
    ),
    Route(
        "/api/accounts/{account_id}/reverse",
        billing.AccountReverseApi,
        (
            Op(
                "POST",
                "Reverse one ledger entry (once)",
                A.BILLING_WRITE,
                params=(_p("account_id"),),
                body=billing.ReverseBody,
                responses={**_MONEY, 404: "unknown account or entry"},
                response=billing.MoneyOut,
            ),
        ),
        "billing",
    ),
    Route(
        "/api/accounts/{account_id}/replace-meter",
        billing.AccountReplaceMeterApi,
        (
            Op(
                "POST",
                "Record a meter replacement (final and first readings; balance carried over)",
                A.BILLING_METER,
                params=(_p("account_id"),),
                body=billing.ReplaceMeterBody,
                responses={**_MONEY, 404: "unknown account or meter"},
                response=billing.MoneyOut,
            ),
        ),
        "billing",
    ),
    Route(
        "/api/billing/holds",
        billing.HoldsApi,
        (
            Op(
                "GET",
                "Consumption charges held for review as implausible (tenants: their own)",
                A.BILLING_READ,
                params=(
                    _q("account"),
                    _q(
                        "state",
                        "held (default), released, discarded or all",
                        enum=("held", "released", "discarded", "all"),
                    ),
                ),
                responses={
                    200: "OK",
                    404: "unknown account",
                    503: "billing not running",
                    **_AUTH,
                },
                response=billing.HoldsOut,
            ),
        ),
        "billing",
    ),
    *(
        Route(
            f"/api/accounts/{{account_id}}/holds/{{hold_id}}/{verb}",
            handler,
            (
                Op(
                    "POST",
                    summary,
                    A.BILLING_WRITE,
                    params=(_p("account_id"), _p("hold_id")),
                    body=billing.HoldReviewBody,
                    responses={
                        **_WRITE,
                        200: "done",
                        404: "unknown account or held charge",
                        409: "the held charge was reviewed before",
                        503: "billing not running",
                    },
                    response=billing.HoldReviewOut,
                ),
            ),
            "billing",
        )
        for verb, handler, summary in (
            (
                "release",
                billing.HoldReleaseApi,
                "Release a held consumption charge: it is charged now (audited)",
            ),
            (
                "discard",
                billing.HoldDiscardApi,
                "Discard a held consumption charge: nothing is charged; the next reading "
                "checks again (audited)",
            ),
        )
    ),
    Route(
        "/api/billing/heat",
        billing.HeatApi,
        (
            Op(
                "GET",
                "Heat allocation (on-off time area method) and heat fees of a period",
                A.BILLING_READ,
                rules=(400, _WINDOW),
                params=(
                    _site("from", required=True),
                    _site("to", required=True),
                    _q("building"),
                ),
                responses={
                    200: "OK",
                    400: "bad period",
                    404: "unknown building",
                    503: "billing or historian not running",
                    **_AUTH,
                },
                response=billing.HeatAllocationOut,
            ),
        ),
        "billing",
    ),
    Route(
        "/api/billing/heat/statement/{household}.{format}",
        billing.HeatStatementApi,
        (
            Op(
                "GET",
                "A household's heat statement of a period (PDF or Excel; tenants: their own)",
                A.BILLING_READ,
                rules=(400, _WINDOW),
                params=(
                    _p("household"),
                    Param(
                        "format",
                        "path",
                        required=True,
                        description="pdf or xlsx",
                        enum=tuple(billing.STATEMENT_FORMATS),
                    ),
                    _site("from", required=True),
                    _site("to", required=True),
                ),
                responses={
                    200: "the statement (a download)",
                    400: "bad period",
                    404: "unknown household or format, or no heat fee (no tariff, no valve)",
                    503: "billing or historian not running",
                    **_AUTH,
                },
                content=billing.PDF,
                produces=(billing.XLSX,),
            ),
        ),
        "billing",
    ),
    Route(
        "/api/billing/bills",
        billing.BillsApi,
        (
            Op(
                "GET",
                "Electricity bills of a period (tenants: their own)",
                A.BILLING_READ,
                rules=(400, _WINDOW),
                params=(
                    _site("from", required=True),
                    _site("to", required=True),
                    _q("account"),
                ),
                responses={
                    200: "OK",
                    400: "bad period",
                    404: "unknown account",
                    503: "billing or historian not running",
                    **_AUTH,
                },
                response=billing.BillsOut,
            ),
        ),
        "billing",
    ),
    Route(
        "/api/reports/{kind}",
        billing.ReportApi,
        (
            Op(
                "GET",
                "A report (energy, heat, heat_fees, unit, bills, financial, lost-contact, alarms)",
                A.BILLING_REPORT,
                rules=(
                    400,
                    "a report with a heat allocation (energy, heat, heat_fees, unit) needs a "
                    "period that has begun",
                ),
                params=(
                    Param("kind", "path", required=True, enum=billing.REPORT_KINDS),
                    _q(
                        "period",
                        "YYYY, YYYY-Qn, YYYY-MM or YYYY-MM-DD (site time)",
                        required=True,
                        pattern=formats.PERIOD,
                    ),
                    _q("format", enum=tuple(billing.REPORT_FORMATS)),
                    _q("base_c", "building_heat: degree-day base temperature, degC (default 18)"),
                    _q("outdoor", "building_heat: outdoor temperature tag (default: substation's)"),
                    _q("household", "household_statement: the household"),
                ),
                responses={
                    200: "the report (JSON) or a download (CSV, Excel, PDF)",
                    400: "bad period or format",
                    404: "unknown report kind",
                    503: "billing or historian not running",
                    **_AUTH,
                },
                response=billing.ReportOut,
                produces=("text/csv", billing.XLSX, "application/pdf"),
            ),
        ),
        "billing",
    ),
    # ---- issue 16 items 3 and 4: the office's roster, payments from a provider
    Route(
        "/api/roster/import",
        roster.RosterImportApi,
        (
            Op(
                "POST",
                "Import households, accounts and tenants from a roster (CSV or xlsx): with "
                "dry_run the diff summary, else applied as a new configuration version",
                A.ROSTER_IMPORT,
                params=(
                    _q(
                        "dry_run",
                        "true or 1: answer what would change, apply nothing",
                        enum=("true", "false", "1", "0"),
                    ),
                ),
                consumes=tuple(roster.CONTENT_TYPES.values()),
                rules=(
                    422,
                    "the roster must be a readable table whose every row is valid against the "
                    "site (issues: each bad row and column; nothing is imported), and the result "
                    "a valid configuration (errors)",
                ),
                responses={
                    200: "the summary: dry run, or applied (version)",
                    409: "the running configuration was not read from files",
                    **_AUTH,
                },
                response=RosterImportOut,
            ),
        ),
        "roster",
    ),
    Route(
        "/api/roster/export",
        roster.RosterExportApi,
        (
            Op(
                "GET",
                "The roster of the running site: households, accounts, tenants (a download)",
                A.ROSTER_EXPORT,
                params=(_q("format", "xlsx or csv", required=True, enum=roster.FORMATS),),
                responses={
                    200: "the roster (a download)",
                    400: "bad format",
                    409: "the running configuration was not read from files",
                    **_AUTH,
                },
                content=roster.XLSX,
                produces=(roster.CONTENT_TYPES["csv"],),
            ),
        ),
        "roster",
    ),
    Route(
        "/api/payments/callback/{provider}",
        payments.PaymentCallbackApi,
        (
            Op(
                "POST",
                "A payment provider's callback: a signed notice posts a top-up once per "
                "transaction id (a repeat answers the entry posted first); refusals are audited",
                public=True,
                params=(
                    _p("provider", "the provider's id (payments.providers)"),
                    Param(
                        payments.SIGNATURE_HEADER,
                        "header",
                        required=True,
                        description="sha256=<hex HMAC-SHA256 of the raw body with the "
                        "provider's secret>",
                        pattern=payments.SIGNATURE,
                    ),
                ),
                body=payments.PaymentNotice,
                responses={
                    200: "posted, or repeated (the transaction was posted before)",
                    400: "the body is not JSON",
                    401: "no signature, or not the body's (audited)",
                    404: "unknown provider or account (audited)",
                    409: "the account is closed or not open, or the transaction was posted "
                    "with another account or amount (audited)",
                    413: f"the body is larger than {payments.MAX_CALLBACK_BYTES} bytes",
                    422: "not a payment notice, or another currency (audited)",
                    429: "too many refused callbacks from this address (audited; Retry-After)",
                    503: "billing not running",
                },
                response=PaymentOut,
            ),
        ),
        "payments",
    ),
    Route(
        "/api/payments/reconcile/{provider}",
        payments.PaymentReconcileApi,
        (
            Op(
                "POST",
                "Reconcile a provider's statement (CSV) of a day with the ledger: missing, "
                "extra and mismatched payments",
                A.PAYMENTS_RECONCILE,
                params=(
                    _p("provider", "the provider's id (payments.providers)"),
                    _q(
                        "date",
                        "the statement's day YYYY-MM-DD (site time; a month or year also works)",
                        required=True,
                        pattern=formats.PERIOD,
                    ),
                ),
                consumes=("text/csv",),
                rules=(
                    422,
                    "the statement must be CSV with a header naming transaction_id, account, "
                    "amount (and paid_at, currency) and valid rows (issues name each)",
                ),
                responses={
                    200: "the reconciliation",
                    404: "unknown provider",
                    503: "billing not running",
                    **_AUTH,
                },
                response=ReconcileOut,
            ),
        ),
        "payments",
    ),
    Route(
        "/demo-pay/{provider}",
        demo_pay.DemoPayPage,
        (
            Op(
                "GET",
                "The demo payment provider's page (only for a provider with demo: true): make an "
                "order for an account the user may read and ask for the amount",
                A.BILLING_READ,
                params=(
                    _p("provider", "a demo provider's id (payments.providers)"),
                    _q("account", "the account to pay into", required=True),
                ),
                responses={200: "the page", 404: "no such demo provider or account", **_AUTH},
                content="text/html",
            ),
            Op(
                "POST",
                "Pay a demo order (the page's form): sends the signed notice to this server's "
                "payment callback and shows its answer (a repeat posts nothing more)",
                public=True,
                params=(_p("provider", "a demo provider's id (payments.providers)"),),
                consumes=("application/x-www-form-urlencoded",),
                responses={
                    200: "the callback's answer (posted, repeated or refused)",
                    400: "a bad order, token or amount (the field is named)",
                    404: "no such demo provider",
                },
                content="text/html",
            ),
        ),
        "payments",
    ),
    Route(
        "/receipts/{number}",
        receipts.ReceiptPage,
        (
            Op(
                "GET",
                "A receipt by number: a printable page, or its PDF (a reprint; tenants: their "
                "own accounts' receipts only)",
                A.BILLING_READ,
                params=(
                    _p("number", "the receipt number"),
                    _q("format", "html (the printable page) or pdf", enum=receipts.RECEIPT_FORMATS),
                ),
                responses={
                    200: "the receipt",
                    404: "no such receipt, or one of an account the user may not read",
                    503: "billing not running",
                    **_AUTH,
                },
                content="text/html",
                produces=("application/pdf",),
            ),
        ),
        "payments",
    ),
    Route(
        "/api/accounts/{account_id}/statement",
        receipts.AccountStatementPdf,
        (
            Op(
                "GET",
                "An account's statement of a month as PDF: the balance on the 1st, every entry "
                "with its receipt number, the balance at the end (tenants: their own)",
                A.BILLING_READ,
                params=(
                    _p("account_id"),
                    _q(
                        "month",
                        "the month, YYYY-MM (site time; years 1900 to 2199)",
                        required=True,
                        pattern=receipts.MONTH,
                    ),
                ),
                responses={
                    200: "the statement (PDF)",
                    404: "unknown account, or one the user may not read",
                    503: "billing not running",
                    **_AUTH,
                },
                content="application/pdf",
            ),
        ),
        "billing",
    ),
    Route(
        "/api/users",
        admin.UsersApi,
        (
            Op("GET", "Users", A.USERS_READ, responses={200: "OK", **_AUTH}),
            Op(
                "POST",
                "Add a user",
                A.USERS_MANAGE,
                body=schemas.UserCreateBody,
                responses={201: "created", 409: "exists", **_WRITE},
            ),
        ),
        "users",
    ),
    Route(
        "/api/users/{name}",
        admin.UserApi,
        (
            Op(
                "GET",
                "One user with its tokens (no secrets)",
                A.USERS_READ,
                params=(_p("name"),),
                responses={200: "OK", 404: "unknown user", **_AUTH},
            ),
            Op(
                "PATCH",
                "Change role, links or password",
                A.USERS_MANAGE,
                params=(_p("name"),),
                body=schemas.UserUpdateBody,
                responses={
                    200: "OK",
                    404: "unknown user",
                    409: "the last admin, or links for a user who is not a tenant",
                    **_WRITE,
                },
            ),
            Op(
                "DELETE",
                "Remove a user",
                A.USERS_MANAGE,
                params=(_p("name"),),
                responses={200: "OK", 404: "unknown user", 409: "last admin", **_AUTH},
            ),
        ),
        "users",
    ),
    Route(
        "/api/users/{name}/tokens",
        admin.UserTokensApi,
        (
            Op(
                "POST",
                "Create a bearer token (shown once)",
                A.USERS_MANAGE,
                params=(_p("name"),),
                body=schemas.TokenBody,
                responses={201: "created", 404: "unknown user", **_WRITE},
            ),
            Op(
                "DELETE",
                "Revoke every token of a user",
                A.USERS_MANAGE,
                params=(_p("name"),),
                responses={200: "OK", 404: "unknown user", **_AUTH},
            ),
        ),
        "users",
    ),
    Route(
        "/api/roles",
        admin.RolesApi,
        (Op("GET", "The permission table (role -> actions)", responses={200: "OK", **_AUTH}),),
        "users",
    ),
    Route(
        "/api/audit",
        admin.AuditApi,
        (
            Op(
                "GET",
                "Audit log entries, newest first (JSON, or a CSV download)",
                A.AUDIT_READ,
                params=(
                    _utc("since"),
                    _utc("until"),
                    _q("user"),
                    _q("action", "glob"),
                    _q("target", "glob"),
                    _q("result", enum=("ok", "denied", "failed")),
                    _int("limit", 1, MAX_QUERY_ROWS, "default 1000; CSV: the most"),
                    _q(
                        "format",
                        "json (default) or csv: a download with a header row, "
                        "before/after as JSON text",
                        enum=tuple(admin.AUDIT_FORMATS),
                    ),
                ),
                responses={200: "the entries (JSON) or a CSV download", 400: "bad query", **_AUTH},
                produces=("text/csv",),
            ),
        ),
        "audit",
    ),
    Route(
        "/api/audit/verify",
        admin.AuditVerifyApi,
        (
            Op(
                "GET",
                "Recompute the audit log's hash chain (tamper evidence)",
                A.AUDIT_READ,
                params=(
                    _q(
                        "head",
                        "SEQ:HASH written down earlier: checks nothing was cut off",
                        pattern=formats.AUDIT_HEAD,
                    ),
                ),
                responses={
                    200: "the result (ok or where the chain breaks)",
                    400: "bad head",
                    **_AUTH,
                },
            ),
        ),
        "audit",
    ),
)


def tornado_routes(ctx: ServerContext) -> URLRoutes:
    """Return the Tornado URL specs of :data:`ROUTES` bound to ``ctx``."""
    return [
        (r.pattern(), r.handler, {"ctx": ctx, "ops": {op.method: op for op in r.ops}})
        for r in ROUTES
    ]
