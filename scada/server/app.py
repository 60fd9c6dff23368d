"""The route table: every URL of the server, its handler and its operations.

Each :class:`Route` has an OpenAPI-style path (``/api/tags/{name}``) and one :class:`Op`
per HTTP method: a summary, the permission it needs (``action``; None = any signed-in
user; ``public`` = no sign-in), query/path parameters, the request body model and the
documented answers. The Tornado URL patterns (:func:`tornado_routes`) and the OpenAPI
document (:mod:`scada.server.openapi`) are both generated from this one table, and a
test checks they agree. Order matters: fixed segments before ``{param}`` siblings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from tornado.web import RequestHandler

from scada.server import schemas
from scada.server.handlers import admin, alarms, billing, commands, config, session, system, tags
from scada.server.ws import WsHandler
from scada.services.auth import Action

if TYPE_CHECKING:
    from bokeh.server.urls import URLRoutes

    from scada.server.context import ServerContext

__all__ = ["ROUTES", "Op", "Param", "Route", "tornado_routes"]

A = Action


@dataclass(frozen=True, slots=True)
class Param:
    """A query, path or header parameter."""

    name: str
    where: str = "query"
    type: str = "string"
    required: bool = False
    description: str = ""
    enum: tuple[str, ...] | None = None

    def schema(self) -> dict[str, Any]:
        s: dict[str, Any] = {"type": self.type}
        if self.enum:
            s["enum"] = list(self.enum)
        return s


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


def _q(
    name: str,
    desc: str = "",
    *,
    type: str = "string",
    required: bool = False,
    enum: tuple[str, ...] | None = None,
) -> Param:
    return Param(name, "query", type, required, desc, enum)


def _p(name: str, desc: str = "") -> Param:
    return Param(name, "path", "string", True, desc)


_TIME = "ISO-8601 time with offset, or epoch seconds"
_AUTH = {401: "not signed in", 403: "not allowed for this role"}
_WRITE = {**_AUTH, 422: "invalid body"}
_CMD = {**_WRITE, 404: "unknown command or tag", 409: "conflicting state"}
_BTIME = "ISO date or date-time (site time unless an offset is given), or epoch seconds"
_MONEY = {
    **_WRITE,
    400: "bad amount",
    404: "unknown account",
    409: "refused by the ledger (not open, exceeds the balance, already reversed)",
    503: "billing not running",
}
_IDEM = Param("Idempotency-Key", "header", description="repeat-safe key (also idempotency_key)")

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
                "GET",
                "End the session and go to the login page",
                public=True,
                responses={302: "redirect to /login"},
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
                    _q("limit", type="integer"),
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
                params=(
                    _q("tag", required=True),
                    _q("start", _TIME),
                    _q("end", _TIME),
                    _q("include_bad", type="boolean"),
                    _q("limit", type="integer"),
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
                "Aggregated buckets of tags",
                A.HISTORY_READ,
                params=(
                    _q("tags", "comma-separated tag names", required=True),
                    _q("start", _TIME),
                    _q("end", _TIME),
                    _q("every", "bucket width in seconds", type="number"),
                    _q("fn", enum=("mean", "twa", "min", "max", "first", "last", "sum", "count")),
                    _q("include_bad", type="boolean"),
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
                    _q("priority", "comma-separated priorities"),
                    _q("area", "glob"),
                    _q("state", "comma-separated states"),
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
                    _q("since", _TIME),
                    _q("until", _TIME),
                    _q("key", "glob"),
                    _q("text"),
                    _q("limit", type="integer"),
                    _q("offset", type="integer"),
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
                params=(_q("since", _TIME), _q("until", _TIME)),
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
                params=(_q("limit", type="integer"), _q("state")),
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
                    _q("from", _BTIME),
                    _q("to", _BTIME),
                    _q("kind", "comma-separated entry kinds (topup, refund, consumption, ...)"),
                    _q("limit", type="integer"),
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
        "/api/billing/heat",
        billing.HeatApi,
        (
            Op(
                "GET",
                "Heat allocation (on-off time area method) of a period",
                A.BILLING_READ,
                params=(
                    _q("from", _BTIME, required=True),
                    _q("to", _BTIME, required=True),
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
        "/api/billing/bills",
        billing.BillsApi,
        (
            Op(
                "GET",
                "Electricity bills of a period (tenants: their own)",
                A.BILLING_READ,
                params=(
                    _q("from", _BTIME, required=True),
                    _q("to", _BTIME, required=True),
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
                "A report (energy, heat, unit, bills, financial, lost-contact, alarms)",
                A.BILLING_REPORT,
                params=(
                    _p("kind", "report kind"),
                    _q("period", "YYYY, YYYY-Qn, YYYY-MM or YYYY-MM-DD (site time)", required=True),
                    _q("format", enum=tuple(billing.REPORT_FORMATS)),
                ),
                responses={
                    200: "the report (JSON) or a download (CSV, Excel)",
                    400: "bad period or format",
                    404: "unknown report kind",
                    503: "billing or historian not running",
                    **_AUTH,
                },
                response=billing.ReportOut,
                produces=("text/csv", billing.XLSX),
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
                responses={200: "OK", 404: "unknown user", **_WRITE},
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
                    _q("since", _TIME),
                    _q("until", _TIME),
                    _q("user"),
                    _q("action", "glob"),
                    _q("target", "glob"),
                    _q("result", enum=("ok", "denied", "failed")),
                    _q("limit", "at most 10000 (default 1000; CSV 10000)", type="integer"),
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
                params=(_q("head", "SEQ:HASH written down earlier: checks nothing was cut off"),),
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
