"""InfluxDB historian over the v1 API: line protocol on ``/write``, InfluxQL on ``/query``.

InfluxDB 1.x, 2.x (its v1 compatibility endpoints, with a DBRP mapping from the database name
to a bucket) and 3.x Core / Enterprise all accept this API; the contract suite runs it against
a real InfluxDB 1.x (``tests/historian``). Layout and timestamps: ``historian.lineproto``
(nanoseconds, so a sample's time reads back bit for bit); queries: ``historian.influxql``.

Start-up (``connect()``, run by ``SpoolingHistorian.start()`` and before the first request):
``GET /ping`` must answer as InfluxDB (else ``HistorianError``: not an InfluxDB server),
``SHOW DATABASES`` checks the credentials (401/403: ``HistorianError`` naming the settings) and
the database; a missing one is created (1.x, with ``retention_days`` as its duration) when the
user may, else ``HistorianError`` says what to do on that version. InfluxDB 3 creates a
database with its first write. A server that does not answer raises ``BackendUnavailable``.

Writes: ``batch_size`` points per request, synchronous, so a failure reaches the spool.
Refused connections, timeouts, 429 and 5xx raise ``BackendUnavailable``; 4xx (bad data,
credentials) raise ``HistorianError``. A point with the same tag and time replaces the stored
one, field by field: a replacement that turns a number into a string (or into no value) keeps
the old field too, and reads prefer the string.

Queries: ``mean, min, max, first, last, sum, count`` run in the server (``GROUP BY time`` with
the offset that aligns windows to ``start``); ``twa``, ``on_time``, ``on_time_many`` and
``delta`` fetch the raw points (plus the point in force at ``start``, searched in the day
before, then without bound) and apply ``historian.compute``, so every backend follows the same
rules: their cost is InfluxDB's raw read speed (no rollups). Reads of a database that does not
exist yet (InfluxDB 3 before its first write) are empty.

Threading: every method may be called from any thread (one HTTP connection per caller).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from historian import compute, counter, influxql
from historian.base import (
    AggFn,
    AggSeries,
    BackendUnavailable,
    HistorianError,
    OnTime,
    Replacement,
    Sample,
    check_range,
)
from historian.buckets import Buckets
from historian.config import HistorianConfig
from historian.counter import CounterData, DeltaBucket
from historian.influx_http import HttpClient, Response, auth_headers
from historian.lineproto import lines_ns, replacement_line_ns, to_ns
from tags.model import Quality, Reason

log = logging.getLogger(__name__)

NS = influxql.NS
DAY_NS = 86400 * NS
LOOKBACKS_NS = (DAY_NS, None)  # a recent point is cheap to find; else search without bound
_QUALITY = {int(q): q for q in Quality}
_REASON = {int(r): r for r in Reason}
_NOT_FOUND = re.compile(
    r"(database|bucket|namespace)\b.*\bnot found|not found.*\b(database|bucket)"
)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What ``connect()`` found: the server's version and whether it created the database."""

    url: str
    version: str
    major: int | None
    database: str
    created: bool


def _major(version: str) -> int | None:
    m = re.search(r"(\d+)\.\d+", version)
    return int(m.group(1)) if m else None


def _ns_to_s(ns: int) -> float:
    return ns / NS  # int / int is correctly rounded: the written float comes back exactly


def _rows(result: dict[str, Any], fields: Sequence[str]) -> list[list[Any]]:
    """Return ``[time, *fields]`` rows of a one-tag statement's result (a missing field: None)."""
    out: list[list[Any]] = []
    for s in result.get("series") or ():
        cols = list(s["columns"])
        ix = [cols.index(f) if f in cols else -1 for f in fields]
        out.extend([r[0], *(r[i] if i >= 0 else None for i in ix)] for r in s.get("values") or ())
    return out


def _number(s: Sample) -> float:
    """Return a sample's value as a float, NaN when it is not a number."""
    x = s.numeric
    return math.nan if x is None else x


def _good(s: Sample) -> bool:
    """Return True when a sample is a reading of the counter rule: not bad, a finite number."""
    return s.quality is not Quality.BAD and math.isfinite(_number(s))


def _point(rows: list[list[Any]]) -> tuple[float, float, bool] | None:
    """Return the first ``[time_ns, value, quality]`` row as ``(ts, value, good)`` (counter rule)."""
    if not rows:
        return None
    t_ns, value, quality = rows[0][:3]
    v = math.nan if value is None else float(value)
    return _ns_to_s(int(t_ns)), v, int(quality or 0) < int(Quality.BAD) and math.isfinite(v)


class Influx1Historian:
    """Historian on InfluxDB's v1 API (see the module docstring)."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        retention_policy: str | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        batch_size: int = 5000,
        timeout_s: float = 10.0,
        retention_days: float | None = None,
    ) -> None:
        if not database:
            raise ValueError("database must not be empty")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.database = database
        self.retention_policy = retention_policy or None
        self.batch_size = batch_size
        self.retention_days = retention_days
        self._credentials = (
            "historian.token"
            if token
            else "historian.username / historian.password"
            if password is not None
            else "no credentials (historian.username / password or token not set)"
        )
        self._http = HttpClient(
            url, timeout_s=timeout_s, headers=auth_headers(username, password, token)
        )
        self.url = self._http.url
        self._keys: dict[str, str] = {}
        self._info: ServerInfo | None = None
        self._connect_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: HistorianConfig) -> Influx1Historian:
        """Build from the ``historian`` section (``api: v1``); ``ValueError`` if url/database lack."""
        if not config.url or not config.database:
            raise ValueError("historian.url and historian.database are required for api v1")
        return cls(
            config.url,
            config.database,
            retention_policy=config.retention_policy,
            username=config.username,
            password=None if config.password is None else config.password.get_secret_value(),
            token=None if config.token is None else config.token.get_secret_value(),
            batch_size=config.batch_size,
            timeout_s=config.timeout_s,
            retention_days=config.retention_days,
        )

    # -- HTTP ------------------------------------------------------------------------------------

    def _check(self, resp: Response, what: str) -> None:
        """Raise for a non-2xx answer: ``BackendUnavailable`` for 429/5xx, else ``HistorianError``."""
        status = resp.status
        if 200 <= status < 300:
            return
        text = resp.error_text()
        if status in (401, 403):
            raise HistorianError(
                f"{what} at {self.url}: HTTP {status} {text}: the server refused "
                f"{self._credentials}"
            )
        if status == 429 or status >= 500:
            raise BackendUnavailable(f"{what} at {self.url}: HTTP {status} {text}")
        raise HistorianError(f"{what} at {self.url}: HTTP {status} {text}")

    def _results(self, q: str, *, post: bool = False, db: bool = True) -> list[dict[str, Any]]:
        """Run InfluxQL ``q``; return one result dict per statement (empty if the db is missing)."""
        params = {"q": q, "epoch": "ns"}
        if db:
            params["db"] = self.database
        what = f"query of database {self.database!r}" if db else "query"
        if post:
            resp = self._http.request(
                "POST",
                "/query",
                body=urllib.parse.urlencode(params).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                what=what,
            )
        else:
            resp = self._http.request("GET", "/query", params, what=what)
        if resp.status == 404 and _NOT_FOUND.search(resp.error_text().lower()):
            return []
        self._check(resp, what)
        doc = self._http.json(resp, what)
        results = doc.get("results") if isinstance(doc, dict) else None
        if not isinstance(results, list):
            raise HistorianError(f"{what} at {self.url}: no 'results' in the answer")
        out: list[dict[str, Any]] = []
        for r in results:
            err = r.get("error")
            if err is not None:
                if _NOT_FOUND.search(str(err).lower()):
                    out.append({})
                    continue
                raise HistorianError(f"{what} at {self.url}: {err} (InfluxQL: {q[:300]})")
            if r.get("partial"):
                raise HistorianError(
                    f"{what} at {self.url}: the server cut the answer short (its max-row-limit); "
                    "set [http] max-row-limit = 0 on InfluxDB 1.x"
                )
            out.append(r)
        return out

    def _series(self, q: str) -> Iterator[tuple[str, list[str], list[list[Any]]]]:
        """Yield ``(tag, columns, rows)`` of each series of a one-statement query."""
        for result in self._results(q):
            for s in result.get("series") or ():
                tag = (s.get("tags") or {}).get("tag", "")
                yield str(tag), list(s["columns"]), s.get("values") or []

    # -- start-up --------------------------------------------------------------------------------

    def connect(self) -> ServerInfo:
        """Check server, credentials and database; create a missing database when allowed.

        Raises ``BackendUnavailable`` when the server does not answer, ``HistorianError`` when it
        is not InfluxDB, refuses the credentials, or the database is missing and cannot be made.
        """
        with self._connect_lock:
            info = self._connect()
            self._info = info
            return info

    def _connect(self) -> ServerInfo:
        resp = self._http.request("GET", "/ping", what="ping")
        version = resp.headers.get("x-influxdb-version", "")
        if not version and 200 <= resp.status < 300:
            try:
                doc = self._http.json(resp, "ping")  # InfluxDB 3 also answers with JSON
                version = str(doc.get("version", "")) if isinstance(doc, dict) else ""
            except HistorianError:
                version = ""
        if resp.status in (401, 403):
            self._check(resp, "ping")
        if not (200 <= resp.status < 300) or not version:
            raise HistorianError(
                f"{self.url} is not an InfluxDB server: GET /ping answered HTTP {resp.status}"
                + ("" if version else " without an X-Influxdb-Version header")
                + " (check historian.url: host, port and path)"
            )
        major = _major(version)
        names = {
            str(row[0])
            for result in self._results("SHOW DATABASES", db=False)
            for s in result.get("series") or ()
            for row in s.get("values") or ()
        }
        created = False
        if self.database not in names:
            if major is not None and major >= 3:
                log.info(
                    "InfluxDB %s at %s: database %r does not exist yet; the first write creates it",
                    version,
                    self.url,
                    self.database,
                )
            else:
                self._create_database(version, major)
                created = True
        if self.retention_policy and major == 1:
            self._ensure_retention_policy(version)
        info = ServerInfo(self.url, version, major, self.database, created)
        log.info(
            "historian: InfluxDB %s at %s, database %r%s",
            version,
            self.url,
            self.database,
            " (created)" if created else "",
        )
        return info

    def _duration(self) -> str:
        if self.retention_days is None:
            return "INF"
        return f"{max(1, round(self.retention_days * 24))}h"

    def _create_database(self, version: str, major: int | None) -> None:
        q = f"CREATE DATABASE {influxql.ident(self.database)}"
        if self.retention_days is not None and not self.retention_policy:
            q += f" WITH DURATION {self._duration()}"
        try:
            self._results(q, post=True, db=False)
        except HistorianError as exc:
            if major == 2:
                hint = (
                    "on InfluxDB 2.x create a bucket and map the database to it: "
                    f"influx v1 dbrp create --db {self.database} "
                    f"--rp {self.retention_policy or 'autogen'} --bucket-id <bucket id> --default"
                )
            else:
                hint = (
                    f"create it (CREATE DATABASE {influxql.ident(self.database)}) as an admin, "
                    "or let the backend use an admin account"
                )
            raise HistorianError(
                f"InfluxDB {version} at {self.url}: database {self.database!r} does not exist "
                f"and cannot be created ({exc}); {hint}"
            ) from exc

    def _ensure_retention_policy(self, version: str) -> None:
        rp = self.retention_policy
        assert rp is not None
        found = {
            str(row[0])
            for result in self._results(
                f"SHOW RETENTION POLICIES ON {influxql.ident(self.database)}", db=False
            )
            for s in result.get("series") or ()
            for row in s.get("values") or ()
        }
        if rp in found:
            return
        q = (
            f"CREATE RETENTION POLICY {influxql.ident(rp)} ON {influxql.ident(self.database)} "
            f"DURATION {self._duration()} REPLICATION 1"
        )
        try:
            self._results(q, post=True, db=False)
        except HistorianError as exc:
            raise HistorianError(
                f"InfluxDB {version} at {self.url}: retention policy {rp!r} of database "
                f"{self.database!r} does not exist and cannot be created ({exc})"
            ) from exc

    def _ready(self) -> ServerInfo:
        info = self._info
        if info is None:
            info = self.connect()
        return info

    # -- write -----------------------------------------------------------------------------------

    def _post(self, lines: list[str]) -> None:
        params = {"db": self.database, "precision": "ns"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        what = f"write to database {self.database!r}"
        body = "\n".join(lines).encode()
        for attempt in (0, 1):
            resp = self._http.request(
                "POST",
                "/write",
                params,
                body=body,
                headers={"Content-Type": "text/plain; charset=utf-8"},
                what=what,
            )
            if attempt == 0 and resp.status == 404 and _NOT_FOUND.search(resp.error_text().lower()):
                log.warning("%s at %s: database gone, creating it again", what, self.url)
                self.connect()  # dropped while we ran: create it again (or say why not)
                continue
            self._check(resp, what)
            return

    def write(self, batch: Sequence[Sample]) -> None:
        """Send ``batch`` in requests of ``batch_size`` points.

        Raises ``ValueError`` for a tag name line protocol cannot carry (nothing sent),
        ``BackendUnavailable`` when the server is down, ``HistorianError`` when it refuses.
        """
        if not batch:
            return
        lines = lines_ns(batch, self._keys)
        self._ready()
        for i in range(0, len(lines), self.batch_size):
            self._post(lines[i : i + self.batch_size])

    def record_replacement(self, tag: str, ts: float, old_final: float, new_initial: float) -> None:
        """Record a meter replacement as a ``meter_replacement`` point."""
        line = replacement_line_ns(tag, ts, old_final, new_initial)
        self._ready()
        self._post([line])

    # -- read helpers ----------------------------------------------------------------------------

    def _samples(self, q: str) -> dict[str, list[Sample]]:
        out: dict[str, list[Sample]] = {}
        for tag, cols, rows in self._series(q):
            iv, it, iq, ir = (cols.index(f) if f in cols else -1 for f in influxql.SAMPLE_FIELDS)
            samples = out.setdefault(tag, [])
            for row in rows:
                text = row[it] if it >= 0 else None
                value = row[iv] if iv >= 0 else None
                quality = row[iq] if iq >= 0 else None
                reason = row[ir] if ir >= 0 else None
                samples.append(
                    Sample(
                        tag,
                        _ns_to_s(int(row[0])),
                        text if text is not None else None if value is None else float(value),
                        _QUALITY.get(int(quality or 0), Quality.GOOD),
                        _REASON.get(int(reason or 0), Reason.NONE),
                    )
                )
        return out

    def _newest(
        self,
        tags: Sequence[str],
        stop_ns: int | None,
        *,
        inclusive: bool,
        good_only: bool = False,
        fields: Sequence[str] = influxql.SAMPLE_FIELDS,
    ) -> dict[str, Sample]:
        """Return the newest point of each tag before ``stop`` (any time if None), searched back."""
        names = list(dict.fromkeys(tags))
        found: dict[str, Sample] = {}
        anchor = to_ns(time.time()) if stop_ns is None else stop_ns
        for lookback in LOOKBACKS_NS:
            missing = [n for n in names if n not in found]
            if not missing:
                break
            start = None if lookback is None else anchor - lookback
            for group in influxql.tag_groups(missing):
                q = influxql.select_points(
                    self.retention_policy,
                    group,
                    start,
                    stop_ns,
                    fields=fields,
                    good_only=good_only,
                    stop_inclusive=inclusive,
                    newest_first=1,
                )
                for tag, samples in self._samples(q).items():
                    if samples and tag in names:
                        found[tag] = samples[0]
        return found

    def _series_many(
        self, tags: Sequence[str], start: float, end: float
    ) -> dict[str, compute.Series]:
        """Return the raw points of ``tags`` in ``[start, end)`` with the point in force before."""
        names = list(dict.fromkeys(tags))
        start_ns, end_ns = to_ns(start), to_ns(end)
        carry = self._newest(names, start_ns, inclusive=False, fields=("value", "quality"))
        rows: dict[str, list[list[Any]]] = {}
        for group in influxql.tag_groups(names):
            stmt = influxql.select_points(
                self.retention_policy, group, start_ns, end_ns, fields=("value", "quality")
            )
            for tag, cols, values in self._series(stmt):
                if cols == ["time", "value", "quality"]:
                    rows.setdefault(tag, []).extend(values)
                else:
                    iv, iq = cols.index("value"), cols.index("quality")
                    rows.setdefault(tag, []).extend([r[0], r[iv], r[iq]] for r in values)
        out: dict[str, compute.Series] = {}
        for n in names:
            data = rows.get(n, [])
            t_ns = np.array([r[0] for r in data], dtype=np.int64)
            ts = (t_ns // NS).astype(np.float64) + (t_ns % NS) / 1e9
            v = np.array([r[1] for r in data], dtype=np.float64)  # None -> NaN
            q = np.array([r[2] or 0 for r in data], dtype=np.int64)
            c = carry.get(n)
            cv = math.nan if c is None or c.numeric is None else float(c.numeric)
            cq = int(Quality.BAD) if c is None else int(c.quality)
            out[n] = compute.Series(ts, v, q, cv, cq)
        return out

    # -- read ------------------------------------------------------------------------------------

    def last(self, tags: Iterable[str]) -> dict[str, Sample]:
        """Return the newest point of each tag (tags with no history are left out)."""
        names = list(tags)
        if not names:
            return {}
        self._ready()
        return self._newest(names, None, inclusive=True)

    def value_at(self, tag: str, t: float, *, include_bad: bool = True) -> Sample | None:
        """Return the last point at or before ``t`` (optionally the last not-bad one)."""
        self._ready()
        return self._newest([tag], to_ns(t), inclusive=True, good_only=not include_bad).get(tag)

    def query_raw(
        self, tag: str, start: float, end: float, *, include_bad: bool = True
    ) -> list[Sample]:
        """Return the points with ``start <= ts < end`` in time order."""
        check_range(start, end)
        self._ready()
        q = influxql.select_points(
            self.retention_policy, [tag], to_ns(start), to_ns(end), good_only=not include_bad
        )
        return self._samples(q).get(tag, [])

    def query_agg(
        self,
        tags: Iterable[str],
        start: float,
        end: float,
        every_s: float,
        fn: AggFn | str,
        *,
        include_bad: bool = False,
    ) -> dict[str, AggSeries]:
        """Return ``{tag: [(bucket_start, value or None)]}`` (twa computed from raw points)."""
        check_range(start, end, every_s)
        agg = AggFn.parse(fn)
        names = list(dict.fromkeys(tags))
        self._ready()
        every_ns = round(every_s * 1e9)
        if agg is AggFn.TWA or every_ns < 1:
            series = self._series_many(names, start, end) if names else {}
            return {
                n: compute.aggregate(series[n], start, end, every_s, agg, include_bad)
                for n in names
            }
        starts = compute.bucket_edges(start, end, every_s).tolist()
        empty = 0.0 if agg is AggFn.COUNT else None
        out: dict[str, list[float | None]] = {n: [empty] * len(starts) for n in names}
        if names and starts:
            start_ns, end_ns = to_ns(start), to_ns(end)
            for group in influxql.tag_groups(names):
                q = influxql.select_agg(
                    self.retention_policy, group, start_ns, end_ns, every_ns, agg, include_bad
                )
                for tag, _cols, rows in self._series(q):
                    vals = out.get(tag)
                    if vals is None:
                        continue
                    for t, v in rows:
                        k = (int(t) - start_ns) // every_ns
                        if v is not None and 0 <= k < len(vals):
                            vals[k] = float(v)
        return {n: list(zip(starts, vals, strict=True)) for n, vals in out.items()}

    def on_time(self, tag: str, start: float, end: float) -> float:
        """Return the seconds ``tag`` was true in ``[start, end)``."""
        return self.on_time_detail(tag, start, end).on_s

    def on_time_detail(self, tag: str, start: float, end: float) -> OnTime:
        """Return on and known seconds of ``tag`` in ``[start, end)`` (bad points: unknown)."""
        return self.on_time_many([tag], start, end)[tag]

    def on_time_many(self, tags: Iterable[str], start: float, end: float) -> dict[str, OnTime]:
        """Return ``on_time_detail`` of every tag with a few queries (tag filters in groups)."""
        check_range(start, end)
        names = list(dict.fromkeys(tags))
        if not names:
            return {}
        self._ready()
        series = self._series_many(names, start, end)
        out = {}
        for n in names:
            on, known = compute.on_time(series[n], start, end)
            out[n] = OnTime(on, known, end - start)
        return out

    def _counter_data(self, tag: str, start: float, end: float) -> CounterData:
        """Return what the counter rule reads of ``tag`` for ``[start, end]``.

        A few statements whatever the bucket count, one per request (several in one request
        are not sure to run on InfluxDB 3): the newest point at or before ``start`` (and the
        newest good one, if that one is not), the points of ``(start, end]``, the first point
        after ``end``, the replacements.
        """
        s_ns, e_ns = to_ns(start), to_ns(end)
        rp = self.retention_policy
        fields = ("value", "quality")
        prior = self._newest([tag], s_ns, inclusive=True, fields=fields).get(tag)
        base = prior
        if base is not None and not _good(base):
            base = self._newest([tag], s_ns, inclusive=True, good_only=True, fields=("value",)).get(
                tag
            )
        rows = _rows(
            self._one(
                influxql.select_points(
                    rp, [tag], s_ns + 1, e_ns, fields=fields, stop_inclusive=True
                )
            ),
            fields,
        )
        after = _rows(
            self._one(
                influxql.select_points(rp, [tag], e_ns + 1, None, fields=fields, oldest_first=1)
            ),
            fields,
        )
        reps = [
            Replacement(tag, _ns_to_s(int(r[0])), float(r[1]), float(r[2]))
            for r in _rows(
                self._one(influxql.select_replacements(rp, tag, e_ns)),
                ("old_final", "new_initial"),
            )
            if None not in r[1:3]
        ]
        t_ns = np.array([r[0] for r in rows], dtype=np.int64)
        ts = (t_ns // NS).astype(np.float64) + (t_ns % NS) / 1e9
        v = np.array([r[1] for r in rows], dtype=np.float64)  # None -> NaN
        q = np.array([r[2] or 0 for r in rows], dtype=np.int64)
        good = (q < int(Quality.BAD)) & np.isfinite(v)
        return CounterData(
            start,
            end,
            None if prior is None else (prior.ts, _number(prior), _good(prior)),
            None if base is None or not _good(base) else (base.ts, _number(base)),
            ts,
            v,
            good,
            _point(after),
            reps,
        )

    def _one(self, q: str) -> dict[str, Any]:
        """Return the result of the one-statement query ``q`` (empty if the database is missing)."""
        results = self._results(q)
        return results[0] if results else {}

    def delta_buckets(
        self,
        tag: str,
        buckets: Buckets,
        *,
        rollover: float | None = None,
        max_gap_s: float | None = None,
    ) -> list[DeltaBucket]:
        """Return the increase of counter ``tag`` per bucket with its quality (``historian.counter``).

        One request reads the points of the whole span (not one per bucket).
        """
        edges = buckets.edges
        start, end = float(edges[0]), float(edges[-1])
        check_range(start, end)
        self._ready()
        data = self._counter_data(tag, start, end)
        return counter.delta_buckets(data, buckets, rollover=rollover, max_gap_s=max_gap_s)

    def delta(self, tag: str, start: float, end: float, *, rollover: float | None = None) -> float:
        """Return the increase of counter ``tag`` over ``[start, end]`` (``historian.counter``)."""
        check_range(start, end)
        (b,) = self.delta_buckets(tag, Buckets.span(start, end), rollover=rollover)
        return b.value or 0.0

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()
