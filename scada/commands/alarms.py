"""``scada alarms list|history|kpi|deliveries [CONFIG]``: read the alarm journal under ``--data-dir``.

- ``list``: open alarm occurrences (unacknowledged first), as the engine will restore them;
- ``history [--since T] [--until T] [--priority N] [--area GLOB] [--state S] [--text X]``:
  journal events, newest first;
- ``kpi [--since T] [--until T]``: ISA-18.2 KPIs (alarms per 10 min, floods, bad actors,
  chattering, stale alarms) of the period (default: the last 24 h);
- ``deliveries [--status S]``: notification attempts.

``CONFIG`` (default: the demo site) gives the time zone that times are shown and read in.
Times are ``now``, ``today``, ``yesterday``, ``this-month``, an offset or age such as ``-24h``,
``7d``, ``30m``, or ISO-8601 (``2026-11-21T08:00+03:00``; local without an offset).
Every subcommand takes ``--json``. Acknowledging, shelving and out-of-service go through
the running server's API (issue 6): the journal belongs to the running engine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from scada.cli import DEFAULT_CONFIG, add_data_dir
from scada.commands.times import TIME_HELP, parse_time, site_zone


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "alarms",
        help="list open alarms, query the alarm journal, KPIs and deliveries",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    acts = parser.add_subparsers(dest="action", metavar="ACTION")
    acts.required = True
    p_list = acts.add_parser("list", help="open alarm occurrences")
    p_hist = acts.add_parser("history", help="journal events, newest first")
    p_kpi = acts.add_parser("kpi", help="ISA-18.2 KPIs of a period")
    p_del = acts.add_parser("deliveries", help="notification attempts")
    for p in (p_list, p_hist, p_kpi, p_del):
        p.add_argument(
            "config", nargs="?", default=DEFAULT_CONFIG, help="site config (for its time zone)"
        )
        add_data_dir(p)
        p.add_argument("--json", action="store_true", help="machine-readable output")
    p_hist.add_argument("--priority", type=int, action="append", choices=[1, 2, 3, 4])
    p_hist.add_argument("--area", action="append", help="area glob (repeatable)")
    p_hist.add_argument("--state", action="append", help="state after the event (repeatable)")
    p_hist.add_argument("--text", help="substring of message, key, user or comment")
    p_hist.add_argument("--limit", type=int, default=100)
    p_del.add_argument("--status", choices=["pending", "sent", "retry", "failed"])
    p_del.add_argument("--limit", type=int, default=100)
    for p in (p_hist, p_kpi):
        p.add_argument("--since", help=f"start (default: -24h): {TIME_HELP}")
        p.add_argument("--until", help="end (default: now)")
    parser.set_defaults(func=main)


def _local(ts: float | None, tz: ZoneInfo) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from alarms.journal import FILE_NAME, AlarmJournal

    path = Path(args.data_dir) / FILE_NAME
    if not path.exists():
        print(
            f"no alarm journal at {path} (has `scada run` been started with this --data-dir?)",
            file=sys.stderr,
        )
        return 1
    now = time.time()
    since_text = getattr(args, "since", None)
    until_text = getattr(args, "until", None)
    # the site's zone reads the times and shows them; JSON alone needs none (no config read)
    needed = since_text or until_text or not args.json
    tz = site_zone(args.config) if needed else ZoneInfo("UTC")
    try:
        since = parse_time(since_text, tz, now=now, what="--since") if since_text else now - 86400.0
        until = parse_time(until_text, tz, now=now, what="--until") if until_text else now
    except ValueError as exc:
        print(f"scada alarms: {exc}", file=sys.stderr)
        return 2
    with AlarmJournal.open(path) as journal:
        if args.action == "list":
            rows: list[dict[str, Any]] = journal.open_occurrences()
            rows.sort(key=lambda r: (r["acked_ts"] is not None, r["priority"], -r["raised_ts"]))
            if args.json:
                return _dump(rows)
            for r in rows:
                print(
                    f"#{r['id']:<6} P{r['priority']} {r['state']:<19} {_local(r['raised_ts'], tz)} "
                    f"{r['area']:<8} {r['message']}"
                )
            print(f"{len(rows)} open", file=sys.stderr)
        elif args.action == "history":
            rows = journal.history(
                since=since,
                until=until,
                priorities=args.priority,
                areas=args.area,
                states=args.state,
                text=args.text,
                limit=args.limit,
            )
            if args.json:
                return _dump(rows)
            for r in rows:
                who = f" by {r['user']}" if r["user"] else ""
                note = f" ({r['comment']})" if r["comment"] else ""
                print(
                    f"{_local(r['ts'], tz)} {r['kind']:<14} P{r['priority']} {r['area']:<8} "
                    f"{r['message'] or r['key']}{who}{note}"
                )
        elif args.action == "kpi":
            report = journal.kpis(since, until, now=now)
            if args.json:
                return _dump(report.to_json())
            _print_kpi(report, tz)
        else:
            rows = journal.deliveries(status=args.status, limit=args.limit)
            if args.json:
                return _dump(rows)
            for r in rows:
                err = f" - {r['error']}" if r["error"] else ""
                print(
                    f"{_local(r['ts'], tz)} {r['status']:<7} x{r['attempts']} {r['notifier']:<8} "
                    f"{r['recipient']} <{r['address']}> {r['subject']}{err}"
                )
    return 0


def _dump(data: Any) -> int:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=1, default=str)
    sys.stdout.write("\n")
    return 0


def _print_kpi(r: Any, tz: ZoneInfo) -> None:
    print(f"period {_local(r.since, tz)} .. {_local(r.until, tz)}: {r.activations} alarms")
    print(
        f"alarms per 10 min: average {r.average_per_10min:.2f}, max {r.max_per_10min}"
        f" (ISA-18.2: ~1 manageable, > 10 a flood)"
    )
    print(f"floods: {len(r.floods)}, {r.percent_time_in_flood:.1f} % of the time in flood")
    for f in r.floods:
        print(f"  {_local(f['start'], tz)} .. {_local(f['end'], tz)}: {f['count']} alarms")
    print("top bad actors:")
    for b in r.bad_actors:
        print(f"  {b['count']:>6} {b['percent']:>6.2f} %  {b['key']}")
    print(f"chattering (>= 3 per minute): {len(r.chattering)}")
    for c in r.chattering:
        print(f"  {c['key']}: up to {c['max_per_minute']} per minute, {c['count']} in total")
    print(f"stale (active > 24 h): {len(r.stale)}")
    for s in r.stale:
        print(f"  #{s['occurrence']} {s['key']}: {s['age_h']:.1f} h")
