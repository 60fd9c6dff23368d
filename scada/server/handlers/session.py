"""Login, logout, first-run setup and the current user (REST and two small HTML pages).

``GET /login`` is the page Bokeh's auth redirects to (``?next=/hmi/...``): a form that
posts JSON to ``/api/login`` and then goes to ``next`` (same-site paths only).
``GET /setup`` takes the one-time setup token printed by ``scada run`` while no admin
exists, and creates the first admin through ``POST /api/setup``. ``GET /password`` lets
a signed-in user change their own password (``POST /api/me/password``) and choose their
language (``PUT /api/me/language``, :mod:`scada.server.handlers.profile`); that page is in
the user's language.
"""

from __future__ import annotations

import html
import json

from i18n import _, use_language
from scada.server.handlers.base import ApiError, ApiHandler
from scada.server.handlers.profile import language_form
from scada.server.schemas import LoginBody, PasswordBody, SetupBody
from scada.services.auth import (
    SESSION_COOKIE,
    XSRF_COOKIE,
    XSRF_HEADER,
    LoginRefused,
    Role,
    xsrf_for,
)
from scada.services.users import UserError
from tags.model import iso

__all__ = [
    "LoginApi",
    "LoginPage",
    "LogoutApi",
    "LogoutPage",
    "MeApi",
    "PasswordApi",
    "PasswordPage",
    "RootPage",
    "SessionApi",
    "SessionsApi",
    "SetupApi",
    "SetupPage",
]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
 body {{ font-family: system-ui, sans-serif; background: #e6e6e6; color: #222; margin: 0; }}
 form {{ max-width: 22rem; margin: 12vh auto; background: #f4f4f4; padding: 1.5rem;
        border: 1px solid #bbb; border-radius: 4px; }}
 label {{ display: block; margin-top: .8rem; font-size: .9rem; }}
 input {{ width: 100%; box-sizing: border-box; padding: .5rem; font-size: 1rem; }}
 button {{ margin-top: 1.2rem; width: 100%; padding: .6rem; font-size: 1rem; }}
 #msg {{ color: #a00; min-height: 1.2rem; margin-top: .8rem; }}
</style></head>
<body><form id="f" method="post" autocomplete="on">
<h1 style="font-size:1.2rem">{title}</h1>
{fields}
<button type="submit">{button}</button><div id="msg" role="alert"></div>
</form>
<script>
const NEXT = {next_json};
document.getElementById("f").addEventListener("submit", async (ev) => {{
  ev.preventDefault();
  const data = Object.fromEntries(new FormData(ev.target).entries());
  const xsrf = (document.cookie.match(/(?:^|; ){xsrf_cookie}=([^;]*)/) || [])[1] || "";
  const r = await fetch("{action}", {{method: "POST",
                                      headers: {{"Content-Type": "application/json", "{xsrf_header}": xsrf}},
                                      body: JSON.stringify(data), credentials: "same-origin"}});
  if (r.ok) {{ window.location.assign(NEXT); return; }}
  let text = r.statusText;
  try {{ text = (await r.json()).error; }} catch (e) {{}}
  document.getElementById("msg").textContent = text;
}});
</script></body></html>
"""

_FIELD = '<label for="{n}">{label}</label><input id="{n}" name="{n}" type="{t}" required{extra}>'


def _page(title: str, fields: str, button: str, action: str, next_path: str) -> str:
    """Return a form page that posts its fields as JSON to ``action``, then goes to ``next_path``."""
    return _PAGE.format(
        title=html.escape(title),
        fields=fields,
        button=html.escape(button),
        action=action,
        next_json=json.dumps(next_path),
        xsrf_cookie=XSRF_COOKIE,
        xsrf_header=XSRF_HEADER,
    )


def _safe_next(target: str | None) -> str:
    """Return ``target`` if it is a same-site absolute path, else ``/``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class LoginPage(ApiHandler):
    """``GET /login``: the login form."""

    def get(self) -> None:
        target = _safe_next(self.get_query_argument("next", None))
        # in the language of the browser's Accept-Language (else the site's): nobody is known yet
        fields = _FIELD.format(
            n="username", label=html.escape(_("User")), t="text", extra=' autocomplete="username"'
        ) + _FIELD.format(
            n="password",
            label=html.escape(_("Password")),
            t="password",
            extra=' autocomplete="current-password"',
        )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(_page(_("Sign in"), fields, _("Sign in"), "/api/login", target))


class SetupPage(ApiHandler):
    """``GET /setup``: create the first admin with the one-time setup token."""

    def get(self) -> None:
        if self.ctx.users.has_admin():
            raise ApiError(404, "setup is done: an admin exists")
        fields = (
            _FIELD.format(n="token", label="Setup token (printed by scada run)", t="text", extra="")
            + _FIELD.format(n="username", label="Admin user", t="text", extra="")
            + _FIELD.format(
                n="password",
                label="Password (8+ characters)",
                t="password",
                extra=' autocomplete="new-password" minlength="8"',
            )
        )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(_page("First-run setup", fields, "Create admin", "/api/setup", "/login"))


class LoginApi(ApiHandler):
    """``POST /api/login``: check the password, open a session, set the cookies."""

    async def post(self) -> None:
        body = self.body(LoginBody)
        try:
            user, token = await self.ctx.auth.login(
                body.username, body.password, self.source, _session_label(self)
            )
        except LoginRefused as exc:
            self.ctx.audit.record(
                "login", user=body.username, source=self.source, result="denied", detail=str(exc)
            )
            headers = {}
            if exc.retry_after_s:
                headers["Retry-After"] = str(max(1, int(exc.retry_after_s + 0.999)))
            raise ApiError(exc.status, str(exc), headers=headers) from None
        self.ctx.audit.record("login", user=user, source=self.source)
        xsrf = _set_session_cookies(self, token)
        self.reply(
            {
                "token": token,
                "xsrf": xsrf,
                "user": user.to_json(),
                "expires_in_s": self.ctx.auth.session_ttl_s,
            }
        )


def _session_label(handler: ApiHandler) -> str:
    """Describe a new session for its user's session list: client address and browser."""
    agent = " ".join(handler.request.headers.get("User-Agent", "").split())[:150]
    return f"{handler.source} {agent}".strip()


def _request_token(handler: ApiHandler) -> str | None:
    """The token the request authenticated with (bearer header, else the session cookie)."""
    auth = handler.request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return handler.get_cookie(SESSION_COOKIE)


class SessionsApi(ApiHandler):
    """``GET /api/me/sessions``: the caller's live sessions (browsers signed in)."""

    def get(self) -> None:
        assert self.user is not None
        token = _request_token(self)
        mine = self.ctx.users.token_hash(token) if token else None
        rows = self.ctx.users.sessions(self.user.name)
        self.reply(
            {
                "sessions": [
                    {
                        "id": r["id"],
                        "label": r["label"],
                        "created_at": iso(r["created_ts"]),
                        "last_used_at": iso(r["last_used_ts"]),
                        "expires_at": iso(r["expires_ts"]),
                        "current": r["hash"] == mine,
                    }
                    for r in rows
                ]
            }
        )


class SessionApi(ApiHandler):
    """``DELETE /api/me/sessions/{id}``: end one of the caller's sessions (e.g. a lost laptop)."""

    def delete(self, session_id: str) -> None:
        assert self.user is not None
        # ASCII digits that fit SQLite's 64-bit integer (isdigit() also takes "²"; a longer id
        # overflows the query): anything else names no session
        if not (
            session_id.isascii()
            and session_id.isdigit()
            and len(session_id) <= 18
            and self.ctx.users.revoke_session(self.user.name, int(session_id))
        ):
            raise ApiError(404, f"no live session {session_id} of user {self.user.name}")
        self.ctx.audit.record(
            "session.revoke", user=self.user, source=self.source, target=f"session {session_id}"
        )
        self.reply({"revoked": int(session_id)})


def _set_session_cookies(handler: ApiHandler, token: str) -> str:
    """Set the session and XSRF cookies of ``token``; return the XSRF value."""
    secure = handler.ctx.proxies.https(handler.request, handler.ctx.tls)
    handler.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="Lax",
        secure=secure,
        path="/",
        expires_days=None,
    )
    xsrf = xsrf_for(token)
    handler.set_cookie(XSRF_COOKIE, xsrf, samesite="Lax", secure=secure, path="/")
    return xsrf


class PasswordApi(ApiHandler):
    """``POST /api/me/password``: change one's own password (any role).

    Checked like a login (wrong current password: 401, rate limited: 429). Every session
    of the user ends; the caller gets a new one (token in the answer; new cookies when
    it came with the session cookie). API tokens stay valid. Audited ``user.password``.
    """

    async def post(self) -> None:
        body = self.body(PasswordBody)
        assert self.user is not None
        try:
            token = await self.ctx.auth.change_password(
                self.user.name,
                body.current_password,
                body.new_password,
                self.source,
                _session_label(self),
            )
        except LoginRefused as exc:
            self.ctx.audit.record(
                "user.password",
                user=self.user,
                source=self.source,
                target=self.user.name,
                result="denied",
                detail=str(exc),
            )
            headers = {}
            if exc.retry_after_s:
                headers["Retry-After"] = str(max(1, int(exc.retry_after_s + 0.999)))
            raise ApiError(exc.status, str(exc), headers=headers) from None
        except UserError as exc:
            raise ApiError(422, str(exc)) from None
        self.ctx.audit.record(
            "user.password", user=self.user, source=self.source, target=self.user.name
        )
        xsrf = _set_session_cookies(self, token) if self.auth_via == "cookie" else xsrf_for(token)
        self.reply({"token": token, "xsrf": xsrf, "expires_in_s": self.ctx.auth.session_ttl_s})


class PasswordPage(ApiHandler):
    """``GET /password``: the form to change one's own password (signed-in users)."""

    def get(self) -> None:
        if self.user is None:
            self.redirect("/login?next=/password")
            return
        chosen = self.ctx.users.language_of(self.user.name)
        with use_language(chosen or self.language):
            fields = _FIELD.format(
                n="current_password",
                label=html.escape(_("Current password of {name}", name=self.user.name)),
                t="password",
                extra=' autocomplete="current-password"',
            ) + _FIELD.format(
                n="new_password",
                label=html.escape(_("New password (8+ characters)")),
                t="password",
                extra=' autocomplete="new-password" minlength="8"',
            )
            title = _("Change password")
            page = _page(title, fields, title, "/api/me/password", "/")
            page = page.replace("</body>", language_form(chosen, self.site_language) + "</body>")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(page)


class LogoutApi(ApiHandler):
    """``POST /api/logout``: end the session (or revoke the bearer token used)."""

    def post(self) -> None:
        token = _request_token(self)
        if token:
            self.ctx.auth.logout(token)
        self.ctx.audit.record("logout", user=self.user, source=self.source)
        self.clear_cookie(SESSION_COOKIE, path="/")
        self.clear_cookie(XSRF_COOKIE, path="/")
        self.reply({"ok": True})


class LogoutPage(ApiHandler):
    """``POST /logout`` (the HMI's log-out form): end the session, back to the login page.

    POST only: a link, a prefetch or an image cannot sign anybody out (``GET`` is 405). It
    needs no XSRF header (a plain form posts it): the session cookie is ``SameSite=Lax``, so
    another site's form arrives without it and ends nothing.
    """

    def post(self) -> None:
        token = self.get_cookie(SESSION_COOKIE)
        if token:
            self.ctx.auth.logout(token)
            self.ctx.audit.record("logout", user=self.user, source=self.source)
        self.clear_cookie(SESSION_COOKIE, path="/")
        self.clear_cookie(XSRF_COOKIE, path="/")
        self.redirect("/login", status=303)


class SetupApi(ApiHandler):
    """``POST /api/setup``: create the first admin (one-time setup token)."""

    def post(self) -> None:
        body = self.body(SetupBody)
        if not self.ctx.auth.use_setup_token(body.token):
            self.ctx.audit.record("setup", user=body.username, source=self.source, result="denied")
            raise ApiError(403, "wrong or used setup token (or an admin exists already)")
        try:
            user = self.ctx.users.add_user(body.username, Role.ADMIN, body.password)
        except UserError as exc:
            self.ctx.auth.setup_token = body.token  # not used up: the input was wrong
            raise ApiError(422, str(exc)) from None
        self.ctx.audit.record("setup", user=user, source=self.source, after=user.to_json())
        self.reply({"user": user.to_json()}, 201)


class MeApi(ApiHandler):
    """``GET /api/me``: the current user and what the role may do."""

    def get(self) -> None:
        from scada.services.auth import PERMISSIONS

        assert self.user is not None
        self.reply(
            {
                "user": self.user.to_json(),
                "actions": sorted(a.value for a in PERMISSIONS[self.user.role]),
                "via": self.auth_via,
            }
        )


class RootPage(ApiHandler):
    """``GET /``: to the HMI when it is installed, else to the API document."""

    def get(self) -> None:
        self.redirect(self.ctx.home)
