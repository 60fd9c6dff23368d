"""The user database: users with scrypt password hashes, roles, links and tokens (SQLite).

One file, ``<data-dir>/users.sqlite`` (WAL). Tables:

* ``users``: name, role, links (JSON list of household / account ids, for tenants),
  password hash ``scrypt$n$r$p$salt$hash`` (base64), timestamps, the user's language
  (``en``, ``zh_CN``, ``ru``; NULL: the site's default);
* ``tokens``: session and API tokens, stored as SHA-256 of the random token (the token
  itself is shown once), with expiry, last use and revocation.

No default users and no default passwords: the first admin comes from
``scada user add CONFIG NAME --role admin --password-stdin`` or the one-time setup token
printed by ``scada run`` (see ``scada.services.auth.Auth.bootstrap``).

Threading: a store's connection belongs to the thread that opened it (the loop thread in
the server); ``verify_password_threadsafe`` opens its own connection so the slow hash
can run in a worker thread.
"""

from __future__ import annotations

import base64
import builtins
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from i18n import LANGUAGES
from scada.services.auth import Role, User, xsrf_for

__all__ = ["FILE_NAME", "UserError", "UserStore", "hash_password", "verify_password"]

log = logging.getLogger(__name__)

FILE_NAME = "users.sqlite"
NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
TOKEN_PREFIX = "scada_"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users(
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    links TEXT NOT NULL DEFAULT '[]',
    pw_hash TEXT,
    created_ts REAL NOT NULL,
    updated_ts REAL NOT NULL,
    language TEXT
);
CREATE TABLE IF NOT EXISTS tokens(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    xsrf TEXT,
    label TEXT NOT NULL DEFAULT '',
    created_ts REAL NOT NULL,
    expires_ts REAL,
    last_used_ts REAL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tokens_name ON tokens(name);
CREATE INDEX IF NOT EXISTS tokens_xsrf ON tokens(xsrf);
"""


class UserError(ValueError):
    """A user operation was refused (unknown user, bad name, weak password, ...)."""


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """Return the storable scrypt hash of ``password`` (random 16-byte salt)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=128 * 1024 * 1024)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    """Return True if ``password`` matches ``stored`` (constant-time comparison)."""
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=128 * 1024 * 1024,
            dklen=len(want),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid user name; raise :class:`UserError` otherwise."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UserError(f"invalid user name {name!r}: 1-64 of letters, digits, _ . @ -")
    return name


def check_password(password: str) -> str:
    """Return ``password`` if acceptable; raise :class:`UserError` saying why not."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise UserError(f"password too short: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"password too long: at most {MAX_PASSWORD} characters")
    return password


class UserStore:
    """Users and tokens in one SQLite file; open with :meth:`open` or :meth:`in_data_dir`."""

    def __init__(self, path: str | Path, *, clock: Any = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._conn = self._connect()
        with self._conn:
            self._conn.executescript(_SCHEMA)
            columns = {r["name"] for r in self._conn.execute("PRAGMA table_info(users)")}
            if "language" not in columns:  # a file made before users chose a language
                self._conn.execute("ALTER TABLE users ADD COLUMN language TEXT")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @classmethod
    def in_data_dir(cls, data_dir: str | Path) -> UserStore:
        """Open ``<data_dir>/users.sqlite`` (created if missing)."""
        return cls(Path(data_dir) / FILE_NAME)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> UserStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ users
    @staticmethod
    def _user(row: sqlite3.Row) -> User:
        return User(row["name"], Role(row["role"]), tuple(json.loads(row["links"] or "[]")))

    def add_user(
        self, name: str, role: Role | str, password: str, links: Iterable[str] = ()
    ) -> User:
        """Create a user; raise :class:`UserError` if it exists or the input is invalid."""
        check_name(name)
        role = Role.parse(role)
        check_password(password)
        links = tuple(str(x) for x in links)
        if role is not Role.TENANT and links:
            raise UserError(f"user {name}: only tenant users have links")
        now = self._clock()
        try:
            with self._conn:
                self._conn.execute(
                    "INSERT INTO users(name, role, links, pw_hash, created_ts, updated_ts) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (name, role.value, json.dumps(list(links)), hash_password(password), now, now),
                )
        except sqlite3.IntegrityError:
            raise UserError(f"user {name!r} already exists") from None
        log.info("user %s added with role %s", name, role.value)
        return User(name, role, links)

    def get(self, name: str) -> User | None:
        """Return the user ``name`` or None."""
        row = self._conn.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else self._user(row)

    def require(self, name: str) -> User:
        """Return the user ``name``; raise :class:`UserError` naming it if unknown."""
        user = self.get(name)
        if user is None:
            raise UserError(f"no user {name!r}")
        return user

    def list(self) -> list[User]:
        """Return every user, by name."""
        return [self._user(r) for r in self._conn.execute("SELECT * FROM users ORDER BY name")]

    def has_admin(self) -> bool:
        row = self._conn.execute("SELECT 1 FROM users WHERE role = 'admin' LIMIT 1").fetchone()
        return row is not None

    def update(
        self,
        name: str,
        *,
        role: Role | str | None = None,
        links: Iterable[str] | None = None,
        password: str | None = None,
    ) -> User:
        """Change a user's role, links and/or password; changing the password revokes its sessions."""
        user = self.require(name)
        new_role = user.role if role is None else Role.parse(role)
        new_links = user.links if links is None else tuple(str(x) for x in links)
        if new_role is not Role.TENANT:
            if links is not None and new_links:
                raise UserError(f"user {name}: only tenant users have links")
            new_links = ()
        if user.role is Role.ADMIN and new_role is not Role.ADMIN and self._admins() <= 1:
            raise UserError(f"user {name} is the last admin")
        sets = ["role = ?", "links = ?", "updated_ts = ?"]
        args: list[Any] = [new_role.value, json.dumps(list(new_links)), self._clock()]
        if password is not None:
            check_password(password)
            sets.append("pw_hash = ?")
            args.append(hash_password(password))
        with self._conn:
            self._conn.execute(f"UPDATE users SET {', '.join(sets)} WHERE name = ?", (*args, name))
            if password is not None or new_role is not user.role:
                self._conn.execute(
                    "UPDATE tokens SET revoked = 1 WHERE name = ? AND kind = 'session'", (name,)
                )
        return User(name, new_role, new_links)

    def language_of(self, name: str) -> str | None:
        """Return the language ``name`` chose (``en``, ``zh_CN``, ``ru``), None for the site's."""
        row = self._conn.execute("SELECT language FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else row["language"]

    def set_language(self, name: str, language: str | None) -> None:
        """Set the language of ``name`` (None: follow the site's default).

        Raises :class:`UserError` for an unknown user or a language not in ``i18n.LANGUAGES``.
        """
        if language is not None and language not in LANGUAGES:
            raise UserError(f"unknown language {language!r}: use one of {', '.join(LANGUAGES)}")
        self.require(name)
        with self._conn:
            self._conn.execute(
                "UPDATE users SET language = ?, updated_ts = ? WHERE name = ?",
                (language, self._clock(), name),
            )

    def _admins(self) -> int:
        return int(
            self._conn.execute("SELECT count(*) FROM users WHERE role = 'admin'").fetchone()[0]
        )

    def remove(self, name: str) -> None:
        """Delete a user and its tokens; the last admin cannot be removed."""
        user = self.require(name)
        if user.role is Role.ADMIN and self._admins() <= 1:
            raise UserError(f"user {name} is the last admin")
        with self._conn:
            self._conn.execute("DELETE FROM users WHERE name = ?", (name,))

    def verify_password_threadsafe(self, name: str, password: str) -> User | None:
        """Return the user if ``password`` is right (own connection: callable from any thread).

        Takes as long for an unknown user as for a wrong password.
        """
        conn = self._connect()
        try:
            row = conn.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        finally:
            conn.close()
        stored = row["pw_hash"] if row is not None else _dummy_hash()
        ok = verify_password(str(password), stored)
        return self._user(row) if ok and row is not None else None

    # ------------------------------------------------------------------ tokens
    def create_token(
        self, name: str, *, kind: str = "api", ttl_s: float | None = None, label: str = ""
    ) -> str:
        """Return a new random token for ``name`` (shown once; only its hash is stored)."""
        if kind not in ("api", "session"):
            raise ValueError(f"unknown token kind {kind!r}")
        self.require(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        xsrf = xsrf_for(token) if kind == "session" else None
        with self._conn:
            self._conn.execute(
                "INSERT INTO tokens(name, kind, hash, xsrf, label, created_ts, expires_ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    kind,
                    _token_hash(token),
                    xsrf,
                    label,
                    now,
                    None if ttl_s is None else now + ttl_s,
                ),
            )
        return token

    def resolve_xsrf(self, xsrf: str) -> User | None:
        """Return the user of the live session whose XSRF value is ``xsrf`` (Bokeh sessions)."""
        if not xsrf or len(xsrf) != 32:
            return None
        row = self._conn.execute(
            "SELECT t.expires_ts, u.* FROM tokens t JOIN users u ON u.name = t.name "
            "WHERE t.xsrf = ? AND t.kind = 'session' AND t.revoked = 0",
            (xsrf,),
        ).fetchone()
        if row is None:
            return None
        if row["expires_ts"] is not None and self._clock() >= row["expires_ts"]:
            return None
        return self._user(row)

    def resolve_token(
        self, token: str, *, kinds: tuple[str, ...] = ("api", "session")
    ) -> User | None:
        """Return the user of a valid (known, unexpired, unrevoked) token, else None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        row = self._conn.execute(
            "SELECT t.id, t.kind, t.expires_ts, t.revoked, t.last_used_ts, u.* FROM tokens t "
            "JOIN users u ON u.name = t.name WHERE t.hash = ?",
            (_token_hash(token),),
        ).fetchone()
        if row is None or row["revoked"] or row["kind"] not in kinds:
            return None
        now = self._clock()
        if row["expires_ts"] is not None and now >= row["expires_ts"]:
            return None
        if row["last_used_ts"] is None or now - row["last_used_ts"] > 60.0:
            with self._conn:  # coarse: at most one write per token per minute
                self._conn.execute(
                    "UPDATE tokens SET last_used_ts = ? WHERE id = ?", (now, row["id"])
                )
        return self._user(row)

    def revoke_token(self, token: str) -> bool:
        """Revoke one token; return True if it existed."""
        with self._conn:
            cur = self._conn.execute(
                "UPDATE tokens SET revoked = 1 WHERE hash = ?", (_token_hash(token),)
            )
        return cur.rowcount > 0

    def revoke_tokens(self, name: str, *, kind: str | None = None) -> int:
        """Revoke every token of ``name`` (of one ``kind``); return how many."""
        sql = "UPDATE tokens SET revoked = 1 WHERE name = ? AND revoked = 0"
        args: list[Any] = [name]
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        with self._conn:
            return self._conn.execute(sql, args).rowcount

    def sessions(self, name: str) -> builtins.list[dict[str, Any]]:
        """Return the live sessions of ``name`` (not revoked, not expired), newest first."""
        rows = self._conn.execute(
            "SELECT id, hash, label, created_ts, expires_ts, last_used_ts FROM tokens "
            "WHERE name = ? AND kind = 'session' AND revoked = 0 "
            "AND (expires_ts IS NULL OR expires_ts > ?) ORDER BY created_ts DESC, id DESC",
            (name, self._clock()),
        )
        return [dict(r) for r in rows]

    def revoke_session(self, name: str, session_id: int) -> bool:
        """Revoke one live session of ``name`` by id; return False if it has no such session."""
        with self._conn:
            cur = self._conn.execute(
                "UPDATE tokens SET revoked = 1 WHERE id = ? AND name = ? AND kind = 'session' "
                "AND revoked = 0",
                (session_id, name),
            )
        return cur.rowcount > 0

    @staticmethod
    def token_hash(token: str) -> str:
        """The stored form of a token (to recognise the caller's own session)."""
        return _token_hash(token)

    def tokens(self, name: str) -> builtins.list[dict[str, Any]]:
        """Return the token records of ``name`` (no secrets)."""
        rows = self._conn.execute(
            "SELECT id, kind, label, created_ts, expires_ts, last_used_ts, revoked FROM tokens "
            "WHERE name = ? ORDER BY id",
            (name,),
        )
        return [dict(r) for r in rows]


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against for unknown users (same cost as a real check)."""
    return hash_password(secrets.token_hex(8))
