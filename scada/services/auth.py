"""Users, roles, the permission table, sessions and bearer tokens, login rate limiting.

The one permission table (:data:`PERMISSIONS`, role -> allowed actions) is used by the REST
handlers, the websocket ops and the HMI alike, always through :func:`may`:

========== ====================================================================
role       may
========== ====================================================================
viewer     read tags, history, alarms, commands, metrics, billing, reports
tenant     read tags, history and billing of the households / accounts linked
           to the user (``links``), nothing else (no site-wide reports)
operator   viewer + acknowledge alarms, remote commands, billing money
           operations (``billing.write``: top-up, refund, reversal: the
           cashier's right), meter replacements, payment reconciliation
oncall     viewer + acknowledge, shelve and unshelve alarms
cashier    the cash desk: read accounts and billing, money operations
           (``billing.write``) and the cashier's day report (``billing.report``);
           no tags, alarms, commands or configuration
engineer   viewer + read/validate/apply/roll back configuration, alarms out of
           service, read the audit log, meter replacements (``billing.meter``;
           no money operations), the roster's import and export
admin      everything (users and tokens included)
system     internal callers only (billing's automatic trip): commands and reads;
           never stored in the user database
========== ====================================================================

Billing actions: ``billing.read`` (accounts, ledgers, heat allocation, bills; scoped for
tenants), ``billing.write`` (money: top-up, refund, reversal), ``billing.meter`` (record a
meter replacement), ``billing.report`` (site-wide reports, CSV / Excel downloads).
Roster actions (engineers, admins): ``roster.import`` (households, accounts and tenants from a
roster: a configuration change) and ``roster.export`` (the roster, with tenants' contacts).
``payments.reconcile`` (operators, admins): a provider's statement against the ledger.

Authentication: a request carries either the session cookie :data:`SESSION_COOKIE`
(set by ``POST /api/login``; HttpOnly, SameSite=Lax, Secure behind TLS) or an
``Authorization: Bearer <token>`` header. Both are random tokens stored hashed in the
user database (:mod:`scada.services.users`). Cookie-authenticated writes must echo
:func:`xsrf_for` of the session token in the :data:`XSRF_HEADER` header (the value is
also in the readable :data:`XSRF_COOKIE` cookie): double submit bound to the session.

Threading: :class:`Auth` is used on the event-loop thread; password hashing (scrypt,
deliberately slow) runs in a worker thread via ``Auth.login``.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scada.services.users import UserStore

__all__ = [
    "PERMISSIONS",
    "SCOPED_ACTIONS",
    "SESSION_COOKIE",
    "XSRF_COOKIE",
    "XSRF_HEADER",
    "Action",
    "Auth",
    "LoginRateLimiter",
    "Role",
    "User",
    "login_url",
    "may",
    "system_user",
    "xsrf_for",
]

log = logging.getLogger(__name__)

SESSION_COOKIE = "scada_session"
XSRF_COOKIE = "scada_xsrf"
XSRF_HEADER = "X-XSRF-Token"
login_url = "/login"


class Role(enum.StrEnum):
    """User roles (issue 6 item 3); ``system`` is for in-process callers only."""

    VIEWER = "viewer"
    TENANT = "tenant"
    OPERATOR = "operator"
    ONCALL = "oncall"
    CASHIER = "cashier"
    ENGINEER = "engineer"
    ADMIN = "admin"
    SYSTEM = "system"

    @classmethod
    def parse(cls, text: str | Role) -> Role:
        """Return the role named ``text``; raise ``ValueError`` listing the assignable roles."""
        try:
            role = cls(str(text).lower())
        except ValueError:
            role = None
        if role is None or role is cls.SYSTEM:
            names = ", ".join(r.value for r in ASSIGNABLE_ROLES)
            raise ValueError(f"unknown role {text!r}; expected one of {names}")
        return role


class Action(enum.StrEnum):
    """Everything a user may be allowed to do; REST routes and websocket ops name one each."""

    TAGS_READ = "tags.read"
    HISTORY_READ = "history.read"
    ALARMS_READ = "alarms.read"
    ALARMS_ACK = "alarms.ack"
    ALARMS_SHELVE = "alarms.shelve"
    ALARMS_SERVICE = "alarms.out_of_service"
    COMMANDS_READ = "commands.read"
    COMMANDS_OPERATE = "commands.operate"
    CONFIG_READ = "config.read"
    CONFIG_WRITE = "config.write"
    USERS_READ = "users.read"
    USERS_MANAGE = "users.manage"
    AUDIT_READ = "audit.read"
    METRICS_READ = "metrics.read"
    BILLING_READ = "billing.read"
    BILLING_WRITE = "billing.write"
    BILLING_METER = "billing.meter"
    BILLING_REPORT = "billing.report"
    ROSTER_IMPORT = "roster.import"
    ROSTER_EXPORT = "roster.export"
    PAYMENTS_RECONCILE = "payments.reconcile"


A = Action
_VIEWER = frozenset(
    {
        A.TAGS_READ,
        A.HISTORY_READ,
        A.ALARMS_READ,
        A.COMMANDS_READ,
        A.METRICS_READ,
        A.BILLING_READ,
        A.BILLING_REPORT,
    }
)

#: The permission table: role -> actions it may take. The one place to change rights.
PERMISSIONS: Mapping[Role, frozenset[Action]] = {
    Role.VIEWER: _VIEWER,
    Role.TENANT: frozenset({A.TAGS_READ, A.HISTORY_READ, A.BILLING_READ}),
    Role.OPERATOR: _VIEWER
    | {A.ALARMS_ACK, A.COMMANDS_OPERATE, A.BILLING_WRITE, A.BILLING_METER, A.PAYMENTS_RECONCILE},
    Role.ONCALL: _VIEWER | {A.ALARMS_ACK, A.ALARMS_SHELVE},
    Role.CASHIER: frozenset({A.BILLING_READ, A.BILLING_WRITE, A.BILLING_REPORT}),
    Role.ENGINEER: _VIEWER
    | {
        A.CONFIG_READ,
        A.CONFIG_WRITE,
        A.ALARMS_SERVICE,
        A.AUDIT_READ,
        A.BILLING_METER,
        A.ROSTER_IMPORT,
        A.ROSTER_EXPORT,
    },
    Role.ADMIN: frozenset(Action),
    Role.SYSTEM: frozenset(
        {
            A.TAGS_READ,
            A.HISTORY_READ,
            A.COMMANDS_READ,
            A.COMMANDS_OPERATE,
            A.BILLING_READ,
            A.BILLING_WRITE,
        }
    ),
}

#: Actions a tenant may only take on targets linked to the user.
SCOPED_ACTIONS = frozenset({A.TAGS_READ, A.HISTORY_READ, A.BILLING_READ})
ASSIGNABLE_ROLES = tuple(r for r in Role if r is not Role.SYSTEM)


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated user: name, role and (tenants) the households / accounts linked."""

    name: str
    role: Role
    links: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role.value, "links": list(self.links)}

    def linked(self, target: str) -> bool:
        """Return True if ``target`` (a tag, household or account id) belongs to a link."""
        return any(target == link or target.startswith(link + ".") for link in self.links)


def system_user(name: str) -> User:
    """Return an in-process user with role ``system`` (e.g. ``system_user("billing")``)."""
    return User(name, Role.SYSTEM)


def may(user: User | None, action: Action | str, target: str | Iterable[str] | None = None) -> bool:
    """Return True if ``user`` may take ``action`` (on ``target``).

    ``target`` matters for tenants and scoped actions only: a tag name, a household or
    account id, or several (any linked one suffices). With ``target=None`` the answer is
    "may take this action on something": listings must still filter item by item.
    """
    if user is None:
        return False
    action = Action(action)
    if action not in PERMISSIONS.get(user.role, frozenset()):
        return False
    if user.role is Role.TENANT and action in SCOPED_ACTIONS and target is not None:
        targets = [target] if isinstance(target, str) else [t for t in target if t]
        return any(user.linked(t) for t in targets)
    return True


def xsrf_for(session_token: str) -> str:
    """Return the XSRF value bound to a session token (echoed in ``X-XSRF-Token``)."""
    return hashlib.sha256(b"xsrf:" + session_token.encode()).hexdigest()[:32]


@dataclass(slots=True)
class LoginRateLimiter:
    """Sliding-window limit on failed logins per client IP + username and per client IP.

    ``retry_after(ip, name)`` returns 0 when a login may be tried, else the seconds to wait.
    Successful logins clear the (ip, name) failures.
    """

    max_failures: int = 5
    max_failures_per_ip: int = 20
    window_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _fails: dict[tuple[str, str], collections.deque[float]] = field(default_factory=dict)
    _ip_fails: dict[str, collections.deque[float]] = field(default_factory=dict)

    def _trim(self, q: collections.deque[float], now: float) -> None:
        while q and q[0] <= now - self.window_s:
            q.popleft()

    def retry_after(self, ip: str, name: str) -> float:
        now = self.clock()
        waits = []
        for q, limit in (
            (self._fails.get((ip, name)), self.max_failures),
            (self._ip_fails.get(ip), self.max_failures_per_ip),
        ):
            if q is None:
                continue
            self._trim(q, now)
            if len(q) >= limit:
                waits.append(q[len(q) - limit] + self.window_s - now)
        return max(waits, default=0.0)

    def failed(self, ip: str, name: str) -> None:
        now = self.clock()
        self._fails.setdefault((ip, name), collections.deque()).append(now)
        self._ip_fails.setdefault(ip, collections.deque()).append(now)
        if len(self._fails) > 10000:  # bound memory under a spray of names
            for key in [k for k, q in self._fails.items() if not q or q[-1] <= now - self.window_s]:
                del self._fails[key]

    def succeeded(self, ip: str, name: str) -> None:
        self._fails.pop((ip, name), None)


class LoginRefused(Exception):
    """A login failed: ``status`` 401 (bad credentials) or 429 (rate limited)."""

    def __init__(self, status: int, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class Auth:
    """Authenticate requests against a :class:`~scada.services.users.UserStore`.

    ``session_ttl_s`` is how long a login session lives. Loop-thread only.
    """

    def __init__(
        self,
        users: UserStore,
        *,
        session_ttl_s: float = 12 * 3600.0,
        limiter: LoginRateLimiter | None = None,
    ) -> None:
        self.users = users
        self.session_ttl_s = session_ttl_s
        self.limiter = limiter or LoginRateLimiter()
        self.setup_token: str | None = None

    # ------------------------------------------------------------------ login
    async def login(self, name: str, password: str, ip: str, label: str = "") -> tuple[User, str]:
        """Check a password (in a worker thread) and open a session; return (user, token).

        ``label`` describes the session in the user's session list (address, browser).
        Raises :class:`LoginRefused` (401 for wrong credentials, 429 when rate limited).
        """
        user = await self._check_password(name, password, ip, "wrong username or password")
        token = self.users.create_token(
            user.name, kind="session", ttl_s=self.session_ttl_s, label=label[:200]
        )
        return user, token

    async def change_password(
        self, name: str, current: str, new: str, ip: str, label: str = ""
    ) -> str:
        """Change ``name``'s own password; return a new session token.

        The current password is checked like a login (rate limited per client and name:
        :class:`LoginRefused` 401 / 429). Every session of the user ends (``UserStore.update``)
        and a new one is opened for the caller; API tokens stay. Raises ``UserError`` for
        a new password the policy refuses or equal to the current one.
        """
        from scada.services.users import UserError, UserStore, check_password

        check_password(new)
        if new == current:
            raise UserError("the new password must differ from the current one")
        await self._check_password(name, current, ip, "wrong current password")
        loop = asyncio.get_running_loop()

        def update() -> None:  # scrypt is slow: a worker thread with its own connection
            store = UserStore(self.users.path)
            try:
                store.update(name, password=new)
            finally:
                store.close()

        await loop.run_in_executor(None, update)
        return self.users.create_token(
            name, kind="session", ttl_s=self.session_ttl_s, label=label[:200]
        )

    async def _check_password(self, name: str, password: str, ip: str, wrong: str) -> User:
        """Return the user if ``password`` is right; rate limited per (ip, name) and ip.

        Raises :class:`LoginRefused` 429 while limited, 401 with ``wrong`` otherwise.
        """
        wait = self.limiter.retry_after(ip, name)
        if wait > 0:
            raise LoginRefused(429, "too many failed attempts; try again later", wait)
        loop = asyncio.get_running_loop()
        user = await loop.run_in_executor(
            None, self.users.verify_password_threadsafe, name, password
        )
        if user is None:
            self.limiter.failed(ip, name)
            raise LoginRefused(401, wrong)
        self.limiter.succeeded(ip, name)
        return user

    def logout(self, token: str) -> None:
        """Revoke a session or bearer token."""
        self.users.revoke_token(token)

    # ------------------------------------------------------------------ bootstrap
    def bootstrap(self) -> str | None:
        """Make a one-time setup token if no admin exists yet; return it (else None)."""
        if self.users.has_admin():
            self.setup_token = None
        elif self.setup_token is None:
            self.setup_token = secrets.token_urlsafe(18)
        return self.setup_token

    def use_setup_token(self, token: str) -> bool:
        """Return True (and burn the token) if ``token`` is the current setup token."""
        current = self.setup_token
        if current is None or self.users.has_admin():
            return False
        if not hmac.compare_digest(current.encode(), str(token).encode()):
            return False
        self.setup_token = None
        return True

    # ------------------------------------------------------------------ requests
    def resolve(
        self, cookies: Mapping[str, str], headers: Mapping[str, str]
    ) -> tuple[User | None, str]:
        """Return ``(user, how)``: how is ``"bearer"``, ``"cookie"`` or ``""`` (anonymous).

        A present but invalid bearer token gives ``(None, "bearer")``.
        """
        auth = headers.get("Authorization") or headers.get("authorization") or ""
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return self.users.resolve_token(value.strip()), "bearer"
            return None, "bearer"
        token = cookies.get(SESSION_COOKIE)
        if token:
            return self.users.resolve_token(token, kinds=("session",)), "cookie"
        return None, ""

    def user_for(self, cookies: Mapping[str, str], headers: Mapping[str, str]) -> User | None:
        """Return the user of a Bokeh session's request (``doc.session_context.request``).

        Bokeh sessions are created only for authenticated requests and their tokens are
        signed; the session cookie is kept out of them (it is HttpOnly), so the session is
        found by the XSRF cookie bound to it. Not for REST or websocket requests: they use
        :meth:`resolve`.
        """
        user, how = self.resolve(cookies, headers)
        if user is None and not how and cookies.get(XSRF_COOKIE):
            user = self.users.resolve_xsrf(cookies[XSRF_COOKIE])
        return user

    def get_user(self, handler: Any) -> User | None:
        """Bokeh/Tornado hook: the user of ``handler``'s request (session cookie or bearer)."""
        request = handler.request
        cookies = {k: v.value for k, v in request.cookies.items()}
        return self.resolve(cookies, request.headers)[0]

    def check_xsrf(self, cookies: Mapping[str, str], header_value: str | None) -> bool:
        """Return True if ``header_value`` is the XSRF value of the session cookie."""
        token = cookies.get(SESSION_COOKIE)
        if not token or not header_value:
            return False
        return hmac.compare_digest(xsrf_for(token), header_value)
