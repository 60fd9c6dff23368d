"""``scada user``: manage the server's users and bearer tokens in ``<data-dir>/users.sqlite``.

* ``scada user add CONFIG NAME --role R --password-stdin [--link HOUSEHOLD ...]``
* ``scada user token CONFIG NAME [--label L] [--ttl-days N]`` mints and prints a new bearer
  token: every call makes another one (each valid until removed or expired), so keep it in
  a variable: ``TOKEN=$(scada user token CONFIG NAME)``
* ``scada user list CONFIG [--json]``, ``scada user remove CONFIG NAME``,
  ``scada user passwd CONFIG NAME --password-stdin``

Passwords are read from standard input only (never from the command line, where other
users could see them). ``CONFIG`` is the site configuration: tenant links are checked
against its households. There is no default user: the first admin is added here or
through the one-time setup token that ``scada run`` prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from scada.cli import DEFAULT_CONFIG, add_data_dir

if TYPE_CHECKING:
    from scada.services.users import UserStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "user",
        help="manage users and bearer tokens of the server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    users = p.add_subparsers(dest="user_command", metavar="ACTION")
    users.required = True

    def common(q: argparse.ArgumentParser, *, name: bool = True) -> None:
        q.add_argument(
            "config",
            nargs="?" if not name else None,
            default=DEFAULT_CONFIG,
            help="site configuration",
        )
        if name:
            q.add_argument("name", help="user name")
        add_data_dir(q)

    q = users.add_parser("add", help="add a user (password from standard input)")
    common(q)
    q.add_argument(
        "--role", required=True, help="viewer, tenant, operator, oncall, engineer or admin"
    )
    q.add_argument(
        "--password-stdin",
        action="store_true",
        required=True,
        help="read the password from standard input (required)",
    )
    q.add_argument(
        "--link",
        action="append",
        default=[],
        metavar="ID",
        help="tenant: household or account id the user may see (repeatable)",
    )
    q.set_defaults(func=_add)

    q = users.add_parser(
        "token",
        help="mint a new bearer token for a user (every call mints another)",
        description="Mint a new API bearer token for NAME and print it. Every call mints "
        "another token (each one valid until its user is removed or it expires), so call it "
        "once and keep the token: TOKEN=$(scada user token CONFIG NAME).",
    )
    common(q)
    q.add_argument("--label", default="", help="what the token is for")
    q.add_argument("--ttl-days", type=float, default=None, help="expire after N days")
    q.set_defaults(func=_token)

    q = users.add_parser("list", help="list users")
    common(q, name=False)
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=_list)

    q = users.add_parser("remove", help="remove a user and its tokens")
    common(q)
    q.set_defaults(func=_remove)

    q = users.add_parser("passwd", help="set a user's password (from standard input)")
    common(q)
    q.add_argument(
        "--password-stdin",
        action="store_true",
        required=True,
        help="read the password from standard input (required)",
    )
    q.set_defaults(func=_passwd)


def _read_password() -> str:
    text = sys.stdin.readline()
    return text.rstrip("\r\n")


def _households(config: str) -> set[str] | None:
    """Return the household ids of the site (None if the config cannot be read)."""
    from scada.config import ConfigError, load_site

    try:
        site = load_site(config)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"scada user: cannot read {config}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return None
    return {h.id for h in site.households()} | {a.id for a in site.accounts}


def _store(args: argparse.Namespace) -> UserStore:
    from scada.services.users import UserStore

    return UserStore.in_data_dir(args.data_dir)


def _add(args: argparse.Namespace) -> int:
    from scada.services.users import UserError

    if args.link:
        known = _households(args.config)
        if known is None:
            return 1
        unknown = [x for x in args.link if x not in known]
        if unknown:
            print(
                f"scada user: unknown household/account {', '.join(unknown)} in {args.config}",
                file=sys.stderr,
            )
            return 1
    password = _read_password()
    try:
        with _store(args) as store:
            user = store.add_user(args.name, args.role, password, args.link)
    except (UserError, ValueError) as exc:
        print(f"scada user: {exc}", file=sys.stderr)
        return 1
    _audit(args, "user.add", user.name, user.to_json())
    print(f"user {user.name} added with role {user.role.value}")
    return 0


def _token(args: argparse.Namespace) -> int:
    from scada.services.users import UserError

    ttl = None if args.ttl_days is None else args.ttl_days * 86400.0
    try:
        with _store(args) as store:
            token = store.create_token(args.name, kind="api", ttl_s=ttl, label=args.label)
    except UserError as exc:
        print(f"scada user: {exc}", file=sys.stderr)
        return 1
    _audit(args, "token.create", args.name, {"label": args.label, "ttl_s": ttl})
    print(token)
    return 0


def _list(args: argparse.Namespace) -> int:
    with _store(args) as store:
        users = store.list()
    if args.json:
        print(json.dumps([u.to_json() for u in users], indent=2))
    else:
        for u in users:
            links = f" ({', '.join(u.links)})" if u.links else ""
            print(f"{u.name:24} {u.role.value}{links}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from scada.services.users import UserError

    try:
        with _store(args) as store:
            store.remove(args.name)
    except UserError as exc:
        print(f"scada user: {exc}", file=sys.stderr)
        return 1
    _audit(args, "user.remove", args.name, None)
    print(f"user {args.name} removed")
    return 0


def _passwd(args: argparse.Namespace) -> int:
    from scada.services.users import UserError

    password = _read_password()
    try:
        with _store(args) as store:
            store.update(args.name, password=password)
    except UserError as exc:
        print(f"scada user: {exc}", file=sys.stderr)
        return 1
    _audit(args, "user.passwd", args.name, None)
    print(f"password of {args.name} changed; its sessions were ended")
    return 0


def _audit(args: argparse.Namespace, action: str, target: str, after: object) -> None:
    import getpass

    from scada.services.audit import AuditLog

    log = AuditLog.in_data_dir(args.data_dir)
    try:
        log.record(
            action, user=f"cli:{getpass.getuser()}", source="cli", target=target, after=after
        )
    finally:
        log.close()
