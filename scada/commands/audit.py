"""``scada audit verify|export``: check and export the audit log under ``--data-dir``.

- ``verify [--head SEQ:HASH]``: recompute the hash chain of ``audit.sqlite`` (every entry
  carries the SHA-256 of the previous entry's hash and its own fields). Exit 0 when intact,
  1 when an entry was changed, inserted or deleted (the first such ``seq`` is printed), or
  when the entry of a head written down earlier (a backup manifest's ``audit.head``, the
  daily backup log line) is gone or different: entries were cut off the end.
- ``export [CONFIG] [--since T] [--until T] [--user U] [--action GLOB] [--format csv|jsonl]``:
  entries oldest first on standard output, for auditors and spreadsheets (CSV has one
  row per entry; ``before`` and ``after`` as JSON text).

Read-only: safe while ``scada run`` writes the log. Times are ``now``, ``today``,
``this-month``, ``last-month``, an offset or age such as ``-30d``, or ISO-8601 (local time of
the site ``CONFIG``, default the demo site, unless an offset is given).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from scada.cli import DEFAULT_CONFIG, add_data_dir
from scada.commands.times import TIME_HELP


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "audit",
        help="verify the audit log's hash chain, export entries (CSV / JSON lines)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_dir(parser)
    acts = parser.add_subparsers(dest="action", metavar="ACTION")
    acts.required = True
    v = acts.add_parser("verify", help="recompute the hash chain; exit 1 if it is broken")
    v.add_argument("--head", default=None, help="SEQ:HASH written down earlier")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.set_defaults(func=verify)
    e = acts.add_parser("export", help="entries oldest first as CSV or JSON lines")
    e.add_argument(
        "config", nargs="?", default=DEFAULT_CONFIG, help="site config (for its time zone)"
    )
    e.add_argument("--since", default=None, help=f"start: {TIME_HELP}")
    e.add_argument("--until", default=None, help="end (default: now)")
    e.add_argument("--user", default=None)
    e.add_argument("--action", dest="action_glob", default=None, help="glob: command.*")
    e.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    e.set_defaults(func=export)


def _path(args: argparse.Namespace) -> Path | None:
    from scada.services.audit import FILE_NAME

    path = Path(args.data_dir) / FILE_NAME
    if not path.exists():
        print(f"scada audit: no audit log at {path} (check --data-dir)", file=sys.stderr)
        return None
    return path


def verify(args: argparse.Namespace) -> int:
    from scada.services.audit import verify_file

    head = None
    if args.head is not None:
        seq, _, digest = args.head.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            print("scada audit verify: --head must be SEQ:HASH (64 hex digits)", file=sys.stderr)
            return 2
        head = (int(seq), digest.lower())
    path = _path(args)
    if path is None:
        return 2
    result = verify_file(path, head=head)
    if args.json:
        print(json.dumps(result, indent=2))
    elif result["ok"]:
        h = result["head"]
        where = f"head {h['seq']}:{h['hash']}" if h else "no chained entries yet"
        extra = f" ({result['unchained']} from before the chain)" if result["unchained"] else ""
        print(f"{path}: intact, {result['entries']} entries{extra}; {where}")
    else:
        print(
            f"{path}: BROKEN at entry {result['broken_at']}: {result['reason']}",
            file=sys.stderr,
        )
    return 0 if result["ok"] else 1


def export(args: argparse.Namespace) -> int:
    from scada.commands.times import parse_time, site_zone
    from scada.services.audit import EXPORT_COLUMNS, MAX_QUERY_ROWS, AuditLog, write_csv

    now = time.time()
    since: float | None = None
    until: float | None = None
    try:
        if args.since is not None or args.until is not None:
            tz = site_zone(args.config)  # read only when a time needs it
            if args.since is not None:
                since = parse_time(args.since, tz, now=now, what="--since")
            if args.until is not None:
                until = parse_time(args.until, tz, now=now, what="--until")
    except ValueError as exc:
        print(f"scada audit export: {exc}", file=sys.stderr)
        return 2
    path = _path(args)
    if path is None:
        return 2
    query = AuditLog.query_file
    after_seq = 0
    out = sys.stdout
    first = True
    while True:  # pages of MAX_QUERY_ROWS, oldest first
        rows = query(
            path,
            since=since,
            until=until,
            user=args.user,
            action=args.action_glob,
            after_seq=after_seq,
            limit=MAX_QUERY_ROWS,
            oldest_first=True,
        )
        if args.format == "csv":
            write_csv(rows, out, header=first)
        else:
            for r in rows:
                line = {k: r.get(k) for k in EXPORT_COLUMNS}
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
        first = False
        if len(rows) < MAX_QUERY_ROWS:
            break
        after_seq = rows[-1]["seq"]
    return 0
