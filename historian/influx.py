"""InfluxDB historian over InfluxDB 2's ``/api/v2`` (Flux), selected by ``api: v2``.

Kept for InfluxDB 2.x installations that want Flux; the supported backend is ``api: v1``
(``historian.influx_v1``), which InfluxDB 1.x, 2.x and 3.x all accept. This one has never met a
real server in our tests (no InfluxDB 2 is installed on the build machines): its line protocol,
Flux text, configuration and error mapping are tested without a server (``test_influx_unit``,
``test_spool``), its query answers are not. InfluxDB 3 does not run Flux at all.

Layout as ``historian.lineproto`` describes, with microsecond timestamps; a point with the same
tag and time replaces the stored one.

Writes are synchronous (``write_api(SYNCHRONOUS)``), one HTTP request per ``batch_size`` points:
the recorder already batches, and a failure must reach the caller so the spool can keep the
batch. Connection errors, timeouts, 429 and 5xx raise ``BackendUnavailable``.

Queries: ``mean, min, max, first, last, sum, count`` run in the server (``aggregateWindow``);
``twa``, ``on_time``, ``delta`` and ``delta_buckets`` fetch the raw points (plus the point in force
at ``start``) with Flux and apply ``historian.compute`` / ``historian.counter``, so every
backend follows the same rules.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from historian import compute, counter
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
from historian.lineproto import MEASUREMENT, REPLACEMENT_MEASUREMENT, escape_field_str, to_us
from tags.model import Quality, Reason

log = logging.getLogger(__name__)

__all__ = [
    "MEASUREMENT",
    "REPLACEMENT_MEASUREMENT",
    "InfluxHistorian",
    "escape_field_str",
    "escape_tag",
    "flux_agg",
    "line",
    "to_us",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LOOKBACKS_S = (86400.0, 32 * 86400.0, None)  # widening search for the value in force
_SERVER_FNS = {
    AggFn.MEAN: "mean",
    AggFn.MIN: "min",
    AggFn.MAX: "max",
    AggFn.FIRST: "first",
    AggFn.LAST: "last",
    AggFn.SUM: "sum",
    AggFn.COUNT: "count",
}


# -- line protocol and Flux text (pure functions, unit-tested without a server) ----------------


def rfc3339(us: int) -> str:
    """Return integer epoch microseconds as an RFC 3339 UTC literal (exact)."""
    return (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_datetime(dt: datetime) -> float:
    """Return a timezone-aware datetime as epoch seconds."""
    return (dt - EPOCH) / timedelta(seconds=1)


def escape_tag(text: str) -> str:
    """Escape a line-protocol tag value (commas, equals signs, spaces, backslashes)."""
    if not text:
        raise ValueError("tag name must not be empty")
    if "\n" in text:
        raise ValueError(f"tag name {text!r} contains a newline")
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def line(sample: Sample) -> str:
    """Return the line-protocol line of one sample (microsecond timestamp)."""
    fields = []
    v = sample.value
    if isinstance(v, str):
        fields.append("text=" + escape_field_str(v))
    elif v is not None:
        f = float(v)
        if math.isfinite(f):
            fields.append(f"value={f!r}")
    fields.append(f"quality={int(sample.quality)}i")
    fields.append(f"reason={int(sample.reason)}i")
    return f"{MEASUREMENT},tag={escape_tag(sample.tag)} {','.join(fields)} {to_us(sample.ts)}"


def flux_str(text: str) -> str:
    """Return a Flux string literal for ``text``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def flux_duration(seconds: float) -> str:
    """Return a Flux duration literal (microsecond resolution)."""
    us = to_us(seconds)
    if us % 1_000_000 == 0:
        return f"{us // 1_000_000}s"
    return f"{us}us"


def flux_tag_filter(tags: Sequence[str]) -> str:
    """Return the Flux predicate selecting the measurement and the given tags."""
    if not tags:
        raise ValueError("no tags given")
    names = " or ".join(f"r.tag == {flux_str(t)}" for t in tags)
    return f'r._measurement == "{MEASUREMENT}" and ({names})'


def flux_range(bucket: str, start_us: int | None, stop_us: int, tags: Sequence[str]) -> str:
    """Return ``from |> range |> filter |> pivot`` for the points of ``tags`` in [start, stop)."""
    start = "1970-01-01T00:00:00Z" if start_us is None else rfc3339(start_us)
    return (
        f"from(bucket: {flux_str(bucket)})\n"
        f"  |> range(start: {start}, stop: {rfc3339(stop_us)})\n"
        f"  |> filter(fn: (r) => {flux_tag_filter(tags)})\n"
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
    )


def flux_agg(
    bucket: str,
    tags: Sequence[str],
    start: float,
    end: float,
    every_s: float,
    fn: AggFn,
    include_bad: bool,
) -> str:
    """Return the Flux query of a server-side aggregate (not ``twa``), windows aligned to start."""
    every_us = to_us(every_s)
    offset_us = to_us(start) % every_us
    q = flux_range(bucket, to_us(start), to_us(end), tags)
    if not include_bad:
        q += "  |> filter(fn: (r) => r.quality < 2)\n"
    q += (
        "  |> filter(fn: (r) => exists r.value)\n"
        '  |> keep(columns: ["_start", "_stop", "_time", "tag", "value"])\n'
        f"  |> aggregateWindow(every: {flux_duration(every_us / 1e6)}, "
        f"offset: {flux_duration(offset_us / 1e6)}, fn: {_SERVER_FNS[fn]}, "
        'column: "value", createEmpty: true, timeSrc: "_start")\n'
    )
    return q


# -- the backend ------------------------------------------------------------------------------


def _number(s: Sample) -> float:
    """Return a sample's value as a float, NaN when it is not a number."""
    x = s.numeric
    return math.nan if x is None else x


def _point(s: Sample | None) -> tuple[float, float, bool] | None:
    """Return a sample as the counter rule's ``(ts, value, good)``."""
    if s is None:
        return None
    v = _number(s)
    return s.ts, v, s.quality != Quality.BAD and math.isfinite(v)


class InfluxHistorian:
    """Historian on InfluxDB (see the module docstring); needs url, org, bucket and token."""

    def __init__(
        self,
        url: str,
        org: str,
        bucket: str,
        token: str,
        *,
        batch_size: int = 5000,
        timeout_s: float = 10.0,
    ) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.url, self.org, self.bucket = url, org, bucket
        self.batch_size = batch_size
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000))
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._query_api = self._client.query_api()
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: HistorianConfig) -> InfluxHistorian:
        """Build from the ``historian`` config section.

        ``${NAME}`` / ``${file:...}`` references were expanded when the section was validated
        (``configbase.secrets``). Raises ``ValueError`` naming the first missing setting.
        """
        token = config.token.get_secret_value() if config.token is not None else None
        values = {"url": config.url, "org": config.org, "bucket": config.bucket, "token": token}
        given: dict[str, str] = {}
        for field, value in values.items():
            if not value:
                raise ValueError(f"historian.{field} is required for backend influxdb")
            given[field] = value
        return cls(
            given["url"],
            given["org"],
            given["bucket"],
            given["token"],
            batch_size=config.batch_size,
        )

    # -- write ----------------------------------------------------------------------------------

    def _post(self, lines: list[str]) -> None:
        from influxdb_client import WritePrecision

        try:
            self._write_api.write(
                self.bucket,
                self.org,
                record=lines,
                # influxdb_client annotates write_precision as WritePrecision, but the
                # values it documents (WritePrecision.US, ...) are plain str constants
                write_precision=WritePrecision.US,  # type: ignore[arg-type]
            )
        except Exception as exc:
            raise _classify(exc, f"write to {self.url}") from exc

    def write(self, batch: Sequence[Sample]) -> None:
        """Send ``batch`` in requests of ``batch_size`` points; ``BackendUnavailable`` if down."""
        lines = [line(s) for s in batch]
        for i in range(0, len(lines), self.batch_size):
            self._post(lines[i : i + self.batch_size])

    def record_replacement(self, tag: str, ts: float, old_final: float, new_initial: float) -> None:
        """Record a meter replacement as a ``meter_replacement`` point."""
        self._post(
            [
                f"{REPLACEMENT_MEASUREMENT},tag={escape_tag(tag)} "
                f"old_final={float(old_final)!r},new_initial={float(new_initial)!r} {to_us(ts)}"
            ]
        )

    # -- read -----------------------------------------------------------------------------------

    def _query(self, flux: str) -> list[dict[str, Any]]:
        try:
            tables = self._query_api.query(flux, org=self.org)
        except Exception as exc:
            raise _classify(exc, f"query {self.url}") from exc
        return [rec.values for table in tables for rec in table.records]

    @staticmethod
    def _sample(rec: Mapping[str, Any]) -> Sample:
        text = rec.get("text")
        value = text if text is not None else rec.get("value")
        return Sample(
            str(rec["tag"]),
            from_datetime(rec["_time"]),
            float(value) if isinstance(value, int | float) else value,
            Quality(int(rec.get("quality") or 0)),
            Reason(int(rec.get("reason") or 0)),
        )

    def _points(
        self, tags: Sequence[str], start_us: int | None, stop_us: int, extra: str = ""
    ) -> list[Sample]:
        q = (
            flux_range(self.bucket, start_us, stop_us, tags)
            + extra
            + '  |> sort(columns: ["_time"])\n'
        )
        return [self._sample(r) for r in self._query(q)]

    def last(self, tags: Iterable[str]) -> dict[str, Sample]:
        """Return the newest point of each tag (fields of the newest timestamp only)."""
        names = list(tags)
        if not names:
            return {}
        stop = to_us(datetime.now(UTC).timestamp() + 10 * 365 * 86400)
        q = (
            f"from(bucket: {flux_str(self.bucket)})\n"
            f"  |> range(start: 1970-01-01T00:00:00Z, stop: {rfc3339(stop)})\n"
            f"  |> filter(fn: (r) => {flux_tag_filter(names)})\n"
            "  |> last()\n"
            '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        )
        newest: dict[str, dict[str, Any]] = {}
        for rec in self._query(q):
            name = str(rec["tag"])
            if name not in newest or rec["_time"] > newest[name]["_time"]:
                newest[name] = rec
        return {name: self._sample(rec) for name, rec in newest.items()}

    def _last_before(
        self, tag: str, t_us: int, include_bad: bool, inclusive: bool
    ) -> Sample | None:
        stop = t_us + 1 if inclusive else t_us
        extra = "" if include_bad else "  |> filter(fn: (r) => r.quality < 2 and exists r.value)\n"
        for lookback in _LOOKBACKS_S:
            start = None if lookback is None else stop - to_us(lookback)
            q = (
                flux_range(self.bucket, start, stop, [tag])
                + extra
                + '  |> sort(columns: ["_time"])\n  |> tail(n: 1)\n'
            )
            rows = self._query(q)
            if rows:
                return self._sample(rows[-1])
        return None

    def value_at(self, tag: str, t: float, *, include_bad: bool = True) -> Sample | None:
        """Return the last point at or before ``t``."""
        return self._last_before(tag, to_us(t), include_bad, inclusive=True)

    def query_raw(
        self, tag: str, start: float, end: float, *, include_bad: bool = True
    ) -> list[Sample]:
        """Return the points with ``start <= ts < end`` in time order."""
        check_range(start, end)
        extra = "" if include_bad else "  |> filter(fn: (r) => r.quality < 2)\n"
        return self._points([tag], to_us(start), to_us(end), extra)

    def _series(self, tag: str, start: float, end: float) -> compute.Series:
        carry = self._last_before(tag, to_us(start), include_bad=True, inclusive=False)
        return compute.Series.from_samples(self.query_raw(tag, start, end), carry)

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
        names = list(tags)
        if agg is AggFn.TWA:
            return {
                n: compute.aggregate(
                    self._series(n, start, end), start, end, every_s, agg, include_bad
                )
                for n in names
            }
        starts = compute.bucket_edges(start, end, every_s).tolist()
        empty = 0.0 if agg is AggFn.COUNT else None
        out: dict[str, list[float | None]] = {n: [empty] * len(starts) for n in names}
        if names and starts:
            for rec in self._query(
                flux_agg(self.bucket, names, start, end, every_s, agg, include_bad)
            ):
                series = out.get(str(rec["tag"]))
                k = round((from_datetime(rec["_time"]) - start) / every_s)
                if series is not None and 0 <= k < len(starts) and rec.get("value") is not None:
                    series[k] = float(rec["value"])
        return {n: list(zip(starts, vals, strict=True)) for n, vals in out.items()}

    def on_time(self, tag: str, start: float, end: float) -> float:
        """Return the seconds ``tag`` was true in ``[start, end)``."""
        return self.on_time_detail(tag, start, end).on_s

    def on_time_detail(self, tag: str, start: float, end: float) -> OnTime:
        """Return on and known seconds of ``tag`` in ``[start, end)`` (bad points: unknown)."""
        check_range(start, end)
        on, known = compute.on_time(self._series(tag, start, end), start, end)
        return OnTime(on, known, end - start)

    def _counter_data(self, tag: str, start: float, end: float) -> CounterData:
        """Return what the counter rule reads of ``tag`` for ``[start, end]`` (``historian.counter``)."""
        s_us, e_us = to_us(start), to_us(end)
        prior = self._last_before(tag, s_us, include_bad=True, inclusive=True)
        base = self._last_before(tag, s_us, include_bad=False, inclusive=True)
        pts = self._points([tag], s_us + 1, e_us + 1)
        far = to_us(datetime.now(UTC).timestamp() + 10 * 365 * 86400)
        after = self._points([tag], e_us + 1, max(far, e_us + 2), "  |> limit(n: 1)\n")[:1]
        q = (
            f"from(bucket: {flux_str(self.bucket)})\n"
            f"  |> range(start: 1970-01-01T00:00:00Z, stop: {rfc3339(e_us + 1)})\n"
            f'  |> filter(fn: (r) => r._measurement == "{REPLACEMENT_MEASUREMENT}" and r.tag == {flux_str(tag)})\n'
            '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        )
        reps = [
            Replacement(
                tag, from_datetime(r["_time"]), float(r["old_final"]), float(r["new_initial"])
            )
            for r in self._query(q)
        ]
        ts = np.array([p.ts for p in pts], dtype=np.float64)
        v = np.array([_number(p) for p in pts], dtype=np.float64)
        good = np.array([p.quality != Quality.BAD for p in pts], dtype=bool) & np.isfinite(v)
        bv = math.nan if base is None else _number(base)
        return CounterData(
            start,
            end,
            _point(prior),
            None if base is None or not math.isfinite(bv) else (base.ts, bv),
            ts,
            v,
            good,
            _point(after[0] if after else None),
            reps,
        )

    def delta_buckets(
        self,
        tag: str,
        buckets: Buckets,
        *,
        rollover: float | None = None,
        max_gap_s: float | None = None,
    ) -> list[DeltaBucket]:
        """Return the increase of counter ``tag`` per bucket with its quality (``historian.counter``)."""
        edges = buckets.edges
        start, end = float(edges[0]), float(edges[-1])
        check_range(start, end)
        data = self._counter_data(tag, start, end)
        return counter.delta_buckets(data, buckets, rollover=rollover, max_gap_s=max_gap_s)

    def delta(self, tag: str, start: float, end: float, *, rollover: float | None = None) -> float:
        """Return the increase of counter ``tag`` over ``[start, end]`` (``historian.counter``)."""
        check_range(start, end)
        (b,) = self.delta_buckets(tag, Buckets.span(start, end), rollover=rollover)
        return b.value or 0.0

    def close(self) -> None:
        """Close the HTTP client."""
        with self._lock:
            self._write_api.close()
            self._client.close()


def _classify(exc: Exception, what: str) -> HistorianError:
    """Map a client exception to ``BackendUnavailable`` (retry later) or ``HistorianError``."""
    from influxdb_client.rest import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        status = exc.status or 0
        if status >= 500 or status == 429:
            return BackendUnavailable(f"{what}: HTTP {status} {exc.reason}")
        return HistorianError(f"{what}: HTTP {status} {exc.reason}: {getattr(exc, 'message', '')}")
    if isinstance(exc, HTTPError | OSError | TimeoutError):
        return BackendUnavailable(f"{what}: {exc}")
    return HistorianError(f"{what}: {exc}")
