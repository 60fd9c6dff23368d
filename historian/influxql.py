"""InfluxQL text for the v1 backend (pure functions, unit-tested without a server).

Only what InfluxDB 1.x, 2.x (v1 compatibility API) and 3.x (Core / Enterprise) all run is used:
``SELECT`` of fields with ``WHERE`` on the tag, ``quality`` and ``time``; ``mean, min, max, first,
last, sum, count`` with ``GROUP BY time(every, offset), "tag" fill(none)``; ``GROUP BY "tag"
ORDER BY time DESC LIMIT 1`` for the newest point per tag; ``SHOW DATABASES`` and
``SHOW RETENTION POLICIES``. ``CREATE DATABASE`` / ``CREATE RETENTION POLICY`` run on 1.x only.
No subqueries, no ``SLIMIT`` (3.x lacks them). Times are RFC 3339 literals with nanoseconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from historian.base import AggFn
from historian.lineproto import MEASUREMENT, REPLACEMENT_MEASUREMENT

NS = 1_000_000_000
#: fields of a sample, in the order ``sample_columns`` reads them
SAMPLE_FIELDS = ("value", "text", "quality", "reason")
GOOD = '"quality" < 2'  # Quality.BAD == 2
SERVER_FNS = {
    AggFn.MEAN: "mean",
    AggFn.MIN: "min",
    AggFn.MAX: "max",
    AggFn.FIRST: "first",
    AggFn.LAST: "last",
    AggFn.SUM: "sum",
    AggFn.COUNT: "count",
}
#: most characters of tag names per statement (the query travels in a GET URL)
MAX_FILTER_CHARS = 6000


def ident(name: str) -> str:
    """Return ``name`` as a double-quoted InfluxQL identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def string(text: str) -> str:
    """Return ``text`` as a single-quoted InfluxQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def time_literal(ns: int) -> str:
    """Return integer epoch nanoseconds as an exact RFC 3339 UTC string literal."""
    sec, frac = divmod(ns, NS)
    return f"'{datetime.fromtimestamp(sec, UTC):%Y-%m-%dT%H:%M:%S}.{frac:09d}Z'"


def duration(ns: int) -> str:
    """Return a duration literal of ``ns`` nanoseconds (> 0) in the coarsest exact unit."""
    if ns <= 0:
        raise ValueError(f"duration must be > 0 ns, got {ns}")
    if ns % NS == 0:
        return f"{ns // NS}s"
    if ns % 1000 == 0:
        return f"{ns // 1000}u"
    return f"{ns}ns"


def source(retention_policy: str | None, measurement: str = MEASUREMENT) -> str:
    """Return the ``FROM`` target: the measurement, qualified by the retention policy if given."""
    m = ident(measurement)
    return m if not retention_policy else f"{ident(retention_policy)}.{m}"


def tag_filter(tags: Sequence[str]) -> str:
    """Return the predicate selecting the points of ``tags``."""
    if not tags:
        raise ValueError("no tags given")
    if len(tags) == 1:
        return f'"tag" = {string(tags[0])}'
    return "(" + " OR ".join(f'"tag" = {string(t)}' for t in tags) + ")"


def tag_groups(tags: Sequence[str]) -> Iterator[list[str]]:
    """Split ``tags`` into groups small enough for one statement each."""
    group: list[str] = []
    size = 0
    for t in tags:
        if group and size + len(t) + 12 > MAX_FILTER_CHARS:
            yield group
            group, size = [], 0
        group.append(t)
        size += len(t) + 12
    if group:
        yield group


def time_range(start_ns: int | None, stop_ns: int | None, *, stop_inclusive: bool = False) -> str:
    """Return the ``time`` predicate of ``[start, stop)`` (``]`` when inclusive); '' if open."""
    parts = []
    if start_ns is not None:
        parts.append(f"time >= {time_literal(start_ns)}")
    if stop_ns is not None:
        parts.append(f"time {'<=' if stop_inclusive else '<'} {time_literal(stop_ns)}")
    return " AND ".join(parts)


def where(*predicates: str) -> str:
    """Return ``WHERE`` with the non-empty predicates joined by ``AND``."""
    given = [p for p in predicates if p]
    return " WHERE " + " AND ".join(given) if given else ""


def select_points(
    rp: str | None,
    tags: Sequence[str],
    start_ns: int | None,
    stop_ns: int | None,
    *,
    fields: Sequence[str] = SAMPLE_FIELDS,
    good_only: bool = False,
    stop_inclusive: bool = False,
    newest_first: int | None = None,
    oldest_first: int | None = None,
) -> str:
    """Return the raw points of ``tags`` in the range, grouped by tag, oldest first.

    ``newest_first=n`` orders by time descending and keeps ``n`` points per tag;
    ``oldest_first=n`` keeps the first ``n`` points per tag.
    """
    q = (
        f"SELECT {', '.join(ident(f) for f in fields)} FROM {source(rp)}"
        + where(
            tag_filter(tags),
            time_range(start_ns, stop_ns, stop_inclusive=stop_inclusive),
            GOOD if good_only else "",
        )
        + ' GROUP BY "tag"'
    )
    if newest_first is not None:
        q += f" ORDER BY time DESC LIMIT {int(newest_first)}"
    elif oldest_first is not None:
        q += f" LIMIT {int(oldest_first)}"
    return q


def select_agg(
    rp: str | None,
    tags: Sequence[str],
    start_ns: int,
    end_ns: int,
    every_ns: int,
    fn: AggFn,
    include_bad: bool,
) -> str:
    """Return a server-side aggregate (not ``twa``) with windows aligned to ``start``."""
    offset = start_ns % every_ns
    group = f"time({duration(every_ns)}" + (f", {duration(offset)})" if offset else ")")
    return (
        f'SELECT {SERVER_FNS[fn]}("value") FROM {source(rp)}'
        + where(tag_filter(tags), time_range(start_ns, end_ns), "" if include_bad else GOOD)
        + f' GROUP BY {group}, "tag" fill(none)'
    )


def select_replacements(rp: str | None, tag: str, stop_ns: int) -> str:
    """Return the meter replacements of ``tag`` at or before ``stop``."""
    return f'SELECT "old_final", "new_initial" FROM {source(rp, REPLACEMENT_MEASUREMENT)}' + where(
        tag_filter([tag]), f"time <= {time_literal(stop_ns)}"
    )
