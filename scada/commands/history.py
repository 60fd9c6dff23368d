"""``scada history``: import, export and query tag history.

- ``scada history import CONFIG FILE.csv``: CSV with a header line and columns ``tag,timestamp,value``
  (optional ``quality``, ``reason``); timestamps ISO-8601 with an offset. Every row is checked
  first; unknown tags and bad rows are reported as ``FILE:LINE: message`` and nothing is written
  if any row is bad. Progress goes to stderr on large files. Manual meter readings and legacy
  data come in this way.
- ``scada history export CONFIG --tags GLOB --from T --to T [--csv F]``: raw samples as CSV (the
  import format plus quality and reason) to stdout or ``F``.
- ``scada history query CONFIG TAG --from T --to T [--every 1h --fn mean] [--json]``: raw samples,
  or aggregates per bucket with ``--every``. ``--fn delta`` prints a counter's consumption per
  bucket with the bucket's quality (``uncertain`` and why where samples are missing); its
  ``--every`` is a calendar unit of the site's time zone (``1h``, ``1d``: local midnight to
  midnight, ``1mo``: calendar months) or seconds; ``--rollover`` gives the value the counter
  wraps at. ``scada history agg`` is the same command.

``T`` is ``now``, ``today``, ``yesterday``, ``this-month``, ``last-month``, an offset such as
``-7d`` or ``-24h``, or an ISO date or date-time (local time of the site unless it carries an
offset): ``--from -7d --to now``. When the period lies outside the stored history a line on
stderr says so. The historian is the one the configuration names (``historian:`` section),
under ``--data-dir``.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import math
import re
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from historian.base import AggFn, Sample
from tags.model import Quality, Reason, TagDef, TagType, iso

if TYPE_CHECKING:
    from historian.base import Historian
    from scada.config import SiteConfig

#: ``--fn`` of a counter's consumption per bucket (``historian.counter``).
DELTA = "delta"
IMPORT_BATCH = 50_000
PROGRESS_EVERY = 100_000  # rows; files at least this long show progress
MAX_ERRORS_SHOWN = 100
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)?\s*$")
_UNITS = {
    None: 1.0,
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}


class UsageError(ValueError):
    """Bad command-line input; the message is printed as is."""


def register(sub: argparse._SubParsersAction) -> None:
    from scada.cli import add_data_dir
    from scada.commands.billing_output import add_window

    parser = sub.add_parser(
        "history",
        help="import, export and query tag history",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    p = actions.add_parser("import", help="import tag,timestamp,value rows from a CSV file")
    p.add_argument("config", help="site configuration")
    p.add_argument("file", help="CSV file with header tag,timestamp,value")
    add_data_dir(p)
    p.set_defaults(func=run_import)

    p = actions.add_parser("export", help="export raw samples as CSV")
    p.add_argument("config", help="site configuration")
    p.add_argument("--tags", required=True, help="tag name glob, e.g. 'b1.*.energy'")
    add_window(p)
    p.add_argument("--csv", dest="out", help="output file (default: stdout)")
    add_data_dir(p)
    p.set_defaults(func=run_export)

    p = actions.add_parser(
        "query", aliases=["agg"], help="print raw samples or aggregates of one tag"
    )
    p.add_argument("config", help="site configuration")
    p.add_argument("tag", help="tag name")
    add_window(p)
    p.add_argument(
        "--every",
        help="bucket width, e.g. 15m, 1h, 1d (default: raw samples); with --fn delta calendar "
        "units of the site's time zone: 1h, 1d, 1mo, 1y",
    )
    p.add_argument(
        "--fn",
        default="mean",
        help=f"aggregate with --every: {', '.join([*(f.value for f in AggFn), DELTA])} "
        "(delta: a counter's consumption per bucket)",
    )
    p.add_argument("--rollover", type=float, help="with --fn delta: the value the counter wraps at")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_data_dir(p)
    p.set_defaults(func=run_query)


# -- parsing helpers --------------------------------------------------------------------------


def parse_timestamp(text: str, what: str = "timestamp") -> float:
    """Return a CSV row's ISO-8601 time with an offset as epoch seconds; ``UsageError`` otherwise.

    Stored data names its offset: a row is never read in a guessed zone, nor relative to now
    (command-line times are read by ``scada.commands.times``).
    """
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not an ISO-8601 time") from None
    if dt.tzinfo is None:
        raise UsageError(f"{what}: {text!r} has no UTC offset (add Z or +01:00)")
    return dt.timestamp()


def parse_duration(text: str) -> float:
    """Return ``90s``, ``15m``, ``1h``, ``1d`` or plain seconds as seconds."""
    m = _DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"--every: {text!r} is not a duration like 90s, 15m, 1h, 1d")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_value(d: TagDef, text: str) -> Any:
    """Return CSV text as a value of the tag's type; raise ``ValueError`` naming the problem."""
    if d.type is TagType.STR:
        return text
    t = text.strip()
    if d.type is TagType.BOOL:
        low = t.lower()
        if low in ("1", "true", "on", "yes"):
            return True
        if low in ("0", "false", "off", "no"):
            return False
        raise ValueError(f"value {text!r} is not a bool (0/1/true/false)")
    try:
        f = float(t)
    except ValueError:
        raise ValueError(f"value {text!r} is not a number") from None
    if not math.isfinite(f):
        raise ValueError(f"value {text!r} is not a finite number")
    return d.type.coerce(f)


def _load(config: str) -> Any:
    """Return the site configuration, or None after printing why it cannot be loaded."""
    from scada.config import ConfigError, load_site

    try:
        return load_site(config)
    except (ConfigError, FileNotFoundError) as exc:
        print(exc, file=sys.stderr)
        return None


def _open(site: SiteConfig, data_dir: str) -> Historian:
    from historian.factory import open_historian

    return open_historian(site.historian, data_dir)


# -- import -----------------------------------------------------------------------------------


def read_rows(path: str, defs: dict[str, TagDef]) -> Iterator[tuple[int, Sample | str]]:
    """Yield ``(line, Sample)`` for good rows and ``(line, error message)`` for bad ones."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            yield 1, "empty file (expected a header line tag,timestamp,value)"
            return
        cols = [h.strip().lower() for h in header]
        missing = [c for c in ("tag", "timestamp", "value") if c not in cols]
        if missing:
            yield 1, f"header {header!r} lacks column(s) {', '.join(missing)}"
            return
        ix = {
            c: cols.index(c)
            for c in ("tag", "timestamp", "value", "quality", "reason")
            if c in cols
        }
        width = len(cols)
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != width:
                yield line, f"expected {width} columns, got {len(row)}"
                continue
            name = row[ix["tag"]].strip()
            d = defs.get(name)
            if d is None:
                from scada.config.errors import did_you_mean

                yield line, f"unknown tag {name!r}{did_you_mean(name, defs)}"
                continue
            try:
                ts = parse_timestamp(row[ix["timestamp"]])
                value = parse_value(d, row[ix["value"]])
                quality = (
                    Quality.parse(row[ix["quality"]].strip() or "good")
                    if "quality" in ix
                    else Quality.GOOD
                )
                reason = Reason.parse(row[ix["reason"]].strip()) if "reason" in ix else Reason.NONE
            except ValueError as exc:  # UsageError is a ValueError
                yield line, f"tag {name}: {exc}"
                continue
            yield line, Sample(name, ts, value, quality, reason)


def run_import(args: argparse.Namespace) -> int:
    site = _load(args.config)
    if site is None:
        return 1
    defs = {d.name: d for d in site.tag_defs()}
    if not Path(args.file).is_file():
        print(f"{args.file}: file not found", file=sys.stderr)
        return 1
    errors = 0
    rows = 0
    for line, item in read_rows(args.file, defs):
        rows += 1
        if isinstance(item, str):
            errors += 1
            if errors <= MAX_ERRORS_SHOWN:
                print(f"{args.file}:{line}: {item}", file=sys.stderr)
    if errors:
        more = f" ({errors - MAX_ERRORS_SHOWN} more not shown)" if errors > MAX_ERRORS_SHOWN else ""
        print(f"{args.file}: {errors} bad row(s){more}; nothing imported", file=sys.stderr)
        return 1
    progress = _Progress(rows, sys.stderr) if rows >= PROGRESS_EVERY else None
    h = _open(site, args.data_dir)
    written = 0
    try:
        batch: list[Sample] = []
        for _, item in read_rows(args.file, defs):
            batch.append(item)  # type: ignore[arg-type]  # a Sample: the first pass found no bad row
            if len(batch) >= IMPORT_BATCH:
                h.write(batch)
                written += len(batch)
                batch = []
                if progress:
                    progress.show(written)
        if batch:
            h.write(batch)
            written += len(batch)
        if progress:
            progress.show(written, done=True)
    finally:
        h.close()
    print(f"{args.file}: imported {written} samples")
    return 0


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total = total
        self.out = out

    def show(self, done_rows: int, done: bool = False) -> None:
        frac = done_rows / self.total if self.total else 1.0
        bar = "#" * int(frac * 30)
        self.out.write(f"\rimport [{bar:<30}] {frac:6.1%} {done_rows}/{self.total}")
        if done:
            self.out.write("\n")
        self.out.flush()


# -- export and query -------------------------------------------------------------------------


def _range(args: argparse.Namespace, site: SiteConfig) -> tuple[float, float]:
    """Return ``--from`` / ``--to`` as epoch seconds, read in the site's time zone."""
    from scada.commands.times import parse_window

    return parse_window(args.start, args.end, site.site.timezone)


def _note_outside(
    h: Historian, site: SiteConfig, tags: list[str], start: float, end: float, found: bool
) -> None:
    """Say on stderr when the period lies outside the stored history of ``tags``."""
    from scada.commands.times import history_note, local_label

    tz = site.site.timezone
    note = history_note(h, tags, start, end, tz)
    if note is None and not found:
        period = f"{local_label(start, tz)} .. {local_label(end, tz)}"
        note = f"note: no samples in {period}"
    if note is not None:
        print(note, file=sys.stderr)


def run_export(args: argparse.Namespace) -> int:
    site = _load(args.config)
    if site is None:
        return 1
    try:
        start, end = _range(args, site)
    except ValueError as exc:
        print(f"scada history export: {exc}", file=sys.stderr)
        return 2
    names = sorted(d.name for d in site.tag_defs() if fnmatch.fnmatchcase(d.name, args.tags))
    if not names:
        print(f"scada history export: no tag matches {args.tags!r}", file=sys.stderr)
        return 1
    h = _open(site, args.data_dir)
    out = open(args.out, "w", newline="", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    try:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["tag", "timestamp", "value", "quality", "reason"])
        count = 0
        for name in names:
            for s in h.query_raw(name, start, end):
                w.writerow(
                    [s.tag, iso(s.ts), _csv_value(s.value), s.quality.label, s.reason.label or ""]
                )
                count += 1
        _note_outside(h, site, names, start, end, count > 0)
    finally:
        h.close()
        if args.out:
            out.close()
    if args.out:
        print(f"{args.out}: exported {count} samples of {len(names)} tag(s)", file=sys.stderr)
    return 0


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def run_query(args: argparse.Namespace) -> int:
    site = _load(args.config)
    if site is None:
        return 1
    delta = args.fn.strip().lower() == DELTA
    try:
        start, end = _range(args, site)
        if delta:
            return _run_delta(args, site, start, end)
        if args.rollover is not None:
            raise UsageError("--rollover: only with --fn delta")
        every = parse_duration(args.every) if args.every else None
        fn = AggFn.parse(args.fn)
    except ValueError as exc:
        print(f"scada history query: {exc}", file=sys.stderr)
        return 2
    if _tag_def(site, args.tag) is None:
        return 1
    h = _open(site, args.data_dir)
    try:
        if every is None:
            rows: list[dict[str, Any]] = [
                {
                    "ts": iso(s.ts),
                    "value": s.value,
                    "quality": s.quality.label,
                    "reason": s.reason.label,
                }
                for s in h.query_raw(args.tag, start, end)
            ]
        else:
            series = h.query_agg([args.tag], start, end, every, fn)[args.tag]
            rows = [{"ts": iso(b), "value": v} for b, v in series]
        empty = 0 if fn is AggFn.COUNT else None  # the value of an empty bucket
        found = bool(rows) if every is None else any(r["value"] != empty for r in rows)
        _note_outside(h, site, [args.tag], start, end, found)
    finally:
        h.close()
    if args.json:
        print(
            json.dumps(
                {"tag": args.tag, "fn": fn.value if every else None, "every_s": every, "rows": rows}
            )
        )
    else:
        for r in rows:
            extra = f" {r['quality']}" if "quality" in r else ""
            value = "-" if r["value"] is None else r["value"]
            print(f"{r['ts']} {value}{extra}")
    return 0


def _tag_def(site: SiteConfig, name: str) -> TagDef | None:
    """Return the definition of tag ``name``, or None after saying it is unknown."""
    defs = {d.name: d for d in site.tag_defs()}
    d = defs.get(name)
    if d is None:
        from scada.config.errors import did_you_mean

        print(
            f"scada history query: unknown tag {name!r}{did_you_mean(name, defs)}",
            file=sys.stderr,
        )
    return d


def _run_delta(args: argparse.Namespace, site: SiteConfig, start: float, end: float) -> int:
    """Print the consumption of counter ``args.tag`` per bucket with each bucket's quality.

    Raises ``ValueError`` (``UsageError``) for a bad ``--every`` or ``--rollover``.
    """
    from historian.buckets import Buckets, parse_every
    from historian.counter import consumption

    if not args.every:
        raise UsageError("--fn delta needs --every (1h, 1d, 1mo or seconds)")
    every = parse_every(args.every)
    if args.rollover is not None and not (math.isfinite(args.rollover) and args.rollover > 0):
        raise UsageError(f"--rollover: must be a number above 0, got {args.rollover}")
    d = _tag_def(site, args.tag)
    if d is None:
        return 1
    buckets = Buckets.of(start, end, every, site.site.timezone)
    h = _open(site, args.data_dir)
    try:
        found = consumption(h, [d], buckets, rollover=args.rollover)[d.name]
        rows = [
            {
                "ts": iso(b.start),
                "end": iso(b.end),
                "value": b.value,
                "quality": b.quality.label,
                "reason": b.reason,
            }
            for b in found
        ]
        _note_outside(h, site, [d.name], start, end, any(b.value is not None for b in found))
    finally:
        h.close()
    if args.json:
        print(json.dumps({"tag": d.name, "fn": DELTA, "every": str(every), "rows": rows}))
    else:
        for b in found:
            value = "-" if b.value is None else repr(round(b.value, 6))
            why = f" ({b.reason})" if b.reason else ""
            print(f"{iso(b.start)} {value} {b.quality.label}{why}")
    return 0
