"""Users, tokens, roles and the audit log over REST (admins manage users; audit readers read)."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime

from scada.server.handlers.base import ApiError, ApiHandler
from scada.server.schemas import TokenBody, UserCreateBody, UserUpdateBody
from scada.services.audit import MAX_QUERY_ROWS, verify_file, write_csv
from scada.services.auth import ASSIGNABLE_ROLES, PERMISSIONS, SCOPED_ACTIONS, Role, User
from scada.services.users import UserError

__all__ = [
    "AUDIT_FORMATS",
    "AuditApi",
    "AuditVerifyApi",
    "RolesApi",
    "UserApi",
    "UserTokensApi",
    "UsersApi",
]


class UsersApi(ApiHandler):
    """``GET /api/users`` and ``POST /api/users``."""

    def get(self) -> None:
        self.reply({"users": [u.to_json() for u in self.ctx.users.list()]})

    async def post(self) -> None:
        body = self.body(UserCreateBody)
        try:
            # scrypt is slow by design: hash in a worker thread
            user = await self.ctx.run_blocking(self._add, body)
        except UserError as exc:
            status = 409 if "already exists" in str(exc) else 422
            raise ApiError(status, str(exc)) from None
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        self.ctx.audit.record(
            "user.add", user=self.user, source=self.source, target=user.name, after=user.to_json()
        )
        self.reply(user.to_json(), 201)

    def _add(self, body: UserCreateBody) -> User:
        from scada.services.users import UserStore

        store = UserStore(self.ctx.users.path)  # own connection for the worker thread
        try:
            return store.add_user(body.name, body.role, body.password, body.links)
        finally:
            store.close()


class UserApi(ApiHandler):
    """``GET``, ``PATCH`` and ``DELETE /api/users/{name}``."""

    def _get(self, name: str) -> User:
        user = self.ctx.users.get(name)
        if user is None:
            raise ApiError(404, f"no user {name!r}")
        return user

    def get(self, name: str) -> None:
        user = self._get(name)
        self.reply({**user.to_json(), "tokens": self.ctx.users.tokens(name)})

    async def patch(self, name: str) -> None:
        body = self.body(UserUpdateBody)
        before = self._get(name)

        def update() -> User:
            from scada.services.users import UserStore

            store = UserStore(self.ctx.users.path)
            try:
                return store.update(name, role=body.role, links=body.links, password=body.password)
            finally:
                store.close()

        try:
            user = await self.ctx.run_blocking(update)
        except UserError as exc:
            # the body is valid (schemas.UserUpdateBody): what the store refuses is the change
            # to this user's state (the last admin; links on a user who stays a non-tenant),
            # a conflict like removing the last admin
            raise ApiError(409, str(exc)) from None
        self.ctx.audit.record(
            "user.update",
            user=self.user,
            source=self.source,
            target=name,
            before=before.to_json(),
            after={**user.to_json(), "password_changed": body.password is not None},
        )
        self.reply(user.to_json())

    def delete(self, name: str) -> None:
        before = self._get(name)
        try:
            self.ctx.users.remove(name)
        except UserError as exc:
            raise ApiError(409, str(exc)) from None
        self.ctx.audit.record(
            "user.remove", user=self.user, source=self.source, target=name, before=before.to_json()
        )
        self.reply({"removed": name})


class UserTokensApi(ApiHandler):
    """``POST /api/users/{name}/tokens`` (new bearer token) and ``DELETE`` (revoke all)."""

    def post(self, name: str) -> None:
        body = self.body(TokenBody)
        if self.ctx.users.get(name) is None:
            raise ApiError(404, f"no user {name!r}")
        token = self.ctx.users.create_token(name, kind="api", ttl_s=body.ttl_s, label=body.label)
        self.ctx.audit.record(
            "token.create",
            user=self.user,
            source=self.source,
            target=name,
            after={"label": body.label, "ttl_s": body.ttl_s},
        )
        self.reply({"token": token, "user": name}, 201)

    def delete(self, name: str) -> None:
        if self.ctx.users.get(name) is None:
            raise ApiError(404, f"no user {name!r}")
        n = self.ctx.users.revoke_tokens(name)
        self.ctx.audit.record(
            "token.revoke", user=self.user, source=self.source, target=name, after={"revoked": n}
        )
        self.reply({"revoked": n})


class RolesApi(ApiHandler):
    """``GET /api/roles``: the permission table."""

    def get(self) -> None:
        self.reply(
            {
                "roles": {
                    r.value: sorted(a.value for a in PERMISSIONS[r]) for r in ASSIGNABLE_ROLES
                },
                "scoped_for_tenant": sorted(a.value for a in SCOPED_ACTIONS),
                "tenant": Role.TENANT.value,
            }
        )


class AuditVerifyApi(ApiHandler):
    """``GET /api/audit/verify``: recompute the audit log's hash chain."""

    async def get(self) -> None:
        text = self.arg("head")
        head = None
        if text is not None:
            seq, _, digest = text.partition(":")
            if not seq.isdigit() or len(digest) != 64:
                raise ApiError(400, "head must be SEQ:HASH as written down (64 hex digits)")
            head = (int(seq), digest.lower())
        result = await self.ctx.run_blocking(lambda: verify_file(self.ctx.audit.path, head=head))
        self.reply(result)


class AuditApi(ApiHandler):
    """``GET /api/audit``: audit entries, newest first, as JSON or a CSV download.

    ``format=csv`` answers the same entries as ``text/csv`` with a header row
    (:func:`~scada.services.audit.write_csv`, as ``scada audit export``) and a file name
    ``audit-<from>-<to>.csv`` (UTC; ``from`` is ``since`` or the oldest entry sent, ``to``
    is ``until`` or the time of the request). A CSV's default ``limit`` is the most a
    query returns (10,000) rather than 1,000.
    """

    async def get(self) -> None:
        fmt = (self.arg("format") or "json").lower()
        if fmt not in AUDIT_FORMATS:
            raise ApiError(400, f"format: expected one of {', '.join(AUDIT_FORMATS)}")
        default_limit = MAX_QUERY_ROWS if fmt == "csv" else 1000
        since, until = self.arg_time("since"), self.arg_time("until")
        kw = {
            "since": since,
            "until": until,
            "user": self.arg("user"),
            "action": self.arg("action"),
            "target": self.arg("target"),
            "result": self.arg("result"),
            "limit": self.arg_int("limit", default_limit, lo=1, hi=MAX_QUERY_ROWS),
        }
        if fmt == "json":
            rows = await self.ctx.run_blocking(lambda: self.ctx.audit.query(**kw))
            self.reply({"entries": rows})
            return
        now = time.time()

        def build() -> tuple[bytes, float | None]:
            rows = self.ctx.audit.query(**kw)
            buf = io.StringIO(newline="")
            write_csv(rows, buf)
            return buf.getvalue().encode("utf-8"), (rows[-1]["ts"] if rows else None)

        body, oldest = await self.ctx.run_blocking(build)
        start = since if since is not None else oldest
        end = until if until is not None else now
        name = f"audit-{_file_time(start)}-{_file_time(end)}.csv"
        self.set_header("Content-Type", AUDIT_FORMATS["csv"])
        self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


#: ``GET /api/audit?format=`` -> content type of the answer.
AUDIT_FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8"}


def _file_time(ts: float | None) -> str:
    """Return ``ts`` as a compact UTC time for a file name (``start`` for no time)."""
    if ts is None:
        return "start"
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H%M%SZ")
    except (OverflowError, ValueError, OSError):  # before year 1: epoch seconds will do
        return f"{ts:.0f}"
