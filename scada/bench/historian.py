"""Historian benchmark: write rate, 1-year trend query, on-time of 10,000 valves; vs InfluxDB 1.x.

``scada bench historian`` writes a 1-year, 1-minute series (525,600 points) and a month of valve
events into the embedded SQLite historian and, when Debian's ``influxd`` (1.x) is installed,
into a private InfluxDB started for the run (``historian.influxd``) twice: with a bare client
(line protocol over HTTP ``/write``, InfluxQL ``GROUP BY time()``: InfluxDB's own figures) and
through our v1 backend (``historian.influx_v1``, which answers every query by the historian's
rules), then prints the three side by side. Timings are wall clock on this machine.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import math
import shutil
import statistics
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from historian import compute
from historian.base import Sample
from historian.influx_v1 import Influx1Historian
from historian.influxd import InfluxdServer
from historian.sqlite import SqliteHistorian

T0 = 1_704_067_200.0  # 2024-01-01T00:00:00Z
YEAR_S = 365 * 86400
MONTH_S = 30 * 86400


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--points", type=int, default=525_600, help="points of the 1-minute series")
    parser.add_argument("--buckets", type=int, default=1000, help="trend buckets")
    parser.add_argument("--valves", type=int, default=10_000, help="valves for the on-time test")
    parser.add_argument("--events-per-day", type=int, default=4, help="valve switchings per day")
    parser.add_argument("--batch", type=int, default=10_000, help="points per write")
    parser.add_argument("--no-influx", action="store_true", help="skip the InfluxDB 1.x comparison")
    parser.add_argument("--influxd", default="influxd", help="influxd binary (default: from PATH)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def _timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Return (median seconds, last result) of ``repeat`` runs."""
    times = []
    result = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def series(points: int, seed: int = 1) -> list[Sample]:
    """Return a 1-minute temperature-like series starting at ``T0``."""
    rng = np.random.default_rng(seed)
    i = np.arange(points)
    v = 60 + 15 * np.sin(2 * np.pi * i / 1440) + rng.normal(0, 0.5, points)
    ts = (T0 + 60.0 * i).tolist()
    return [Sample("b1.supply_temp", t, x) for t, x in zip(ts, v.tolist(), strict=True)]


def valve_events(valves: int, per_day: int, seed: int = 2) -> list[Sample]:
    """Return a month of on/off events of ``valves`` valves, in time order across valves."""
    rng = np.random.default_rng(seed)
    n = 30 * per_day
    ts = T0 + np.sort(rng.uniform(0, MONTH_S, (valves, n)), axis=1).round(3)
    state = (rng.integers(0, 2, valves)[:, None] + np.arange(n)[None, :]) % 2
    vid = np.repeat(np.arange(valves), n)
    order = np.argsort(ts.ravel(), kind="stable")
    names = [f"b{v // 100}.h{v % 100}.valve" for v in range(valves)]
    t_list = ts.ravel()[order].tolist()
    s_list = state.ravel()[order].astype(float).tolist()
    v_list = vid[order].tolist()
    return [Sample(names[v], t, s) for v, t, s in zip(v_list, t_list, s_list, strict=True)]


def write_all(write: Callable[[Sequence[Sample]], None], samples: list[Sample], batch: int) -> None:
    for i in range(0, len(samples), batch):
        write(samples[i : i + batch])


# -- our side -----------------------------------------------------------------------------------


def bench_sqlite(
    args: argparse.Namespace, trend: list[Sample], valves: list[Sample], tmp: Path
) -> dict[str, Any]:
    h = SqliteHistorian(tmp / "history.sqlite")
    out: dict[str, Any] = {}
    for key, data in (("series", trend), ("valves", valves)):
        sec, _ = _timed(functools.partial(write_all, h.write, data, args.batch))
        merge_s, _ = _timed(h.flush)  # what the next query (or the merge threshold) would pay
        out[f"write_{key}_pts_s"] = len(data) / sec
        out[f"merge_{key}_s"] = merge_s
        out[f"sustained_{key}_pts_s"] = len(data) / (sec + merge_s)
    span = len(trend) * 60.0
    every = math.ceil(span / args.buckets / 3600) * 3600  # whole hours
    tag = trend[0].tag
    raw_every = span / args.buckets  # not a whole hour, and an unaligned start below
    odd_start = T0 + 1234.5
    for fn in ("mean", "twa"):
        sec, res = _timed(functools.partial(h.query_agg, [tag], T0, T0 + span, every, fn), repeat=5)
        out[f"trend_{fn}_ms"] = sec * 1000
        out["trend_buckets"] = len(res[tag])
        sec, _ = _timed(
            functools.partial(h.query_agg, [tag], odd_start, odd_start + span, raw_every, fn),
            repeat=5,
        )
        out[f"trend_{fn}_unaligned_ms"] = sec * 1000
        sec, _ = _timed(
            functools.partial(h.query_agg_raw, tag, odd_start, odd_start + span, raw_every, fn)
        )
        out[f"trend_{fn}_raw_ms"] = sec * 1000
    out["trend_every_s"] = every
    names = sorted({s.tag for s in valves})
    sec, res = _timed(lambda: [h.on_time_detail(n, T0, T0 + MONTH_S) for n in names])
    out["on_time_s"] = sec
    out["on_time_total_h"] = sum(r.on_s for r in res) / 3600
    sec, many = _timed(lambda: h.on_time_many(names, T0, T0 + MONTH_S))
    out["on_time_many_s"] = sec
    out["on_time_many_total_h"] = sum(r.on_s for r in many.values()) / 3600
    start, end = T0 + 4321.5, T0 + MONTH_S - 777.25  # unaligned: raw edges + rollups
    sec, _ = _timed(lambda: [h.on_time_detail(n, start, end) for n in names])
    out["on_time_unaligned_s"] = sec
    h.close()
    out["file_mb"] = (tmp / "history.sqlite").stat().st_size / 1e6
    return out


# -- InfluxDB 1.x side ----------------------------------------------------------------------------


class Influx1:
    """A bare client of a private influxd: InfluxDB's own write and query cost, no rules."""

    def __init__(self, server: InfluxdServer) -> None:
        self.server = server
        self.version = server.version
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
        self.query("CREATE DATABASE bench")

    def _request(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        self.conn.request(method, path, body=body)
        r = self.conn.getresponse()
        data = r.read()
        return r.status, dict(r.getheaders()), data

    def query(self, q: str) -> Any:
        status, _, data = self._request(
            "POST", "/query?" + urllib.parse.urlencode({"db": "bench", "q": q, "epoch": "ms"})
        )
        if status != 200:
            raise RuntimeError(f"InfluxQL {q!r}: HTTP {status} {data[:200]!r}")
        return json.loads(data)

    def write(self, batch: Sequence[Sample]) -> None:
        body = "\n".join(
            f"tag_value,tag={s.tag} value={float(s.value)!r},quality={int(s.quality)}i {round(s.ts * 1000)}"  # type: ignore[arg-type]  # the bench writes numeric samples only
            for s in batch
        ).encode()
        status, _, data = self._request("POST", "/write?db=bench&precision=ms", body)
        if status != 204:
            raise RuntimeError(f"/write: HTTP {status} {data[:200]!r}")

    def close(self) -> None:
        self.conn.close()


def bench_influx(
    server: InfluxdServer,
    args: argparse.Namespace,
    trend: list[Sample],
    valves: list[Sample],
    every: int,
) -> dict[str, Any]:
    db = Influx1(server)
    out: dict[str, Any] = {"version": db.version}
    try:
        sec, _ = _timed(lambda: write_all(db.write, trend, args.batch))
        out["write_series_pts_s"] = len(trend) / sec
        sec, _ = _timed(lambda: write_all(db.write, valves, args.batch))
        out["write_valves_pts_s"] = len(valves) / sec
        span = len(trend) * 60
        start_ms, end_ms = int(T0 * 1000), int((T0 + span) * 1000)
        offset = int(T0 % every)
        where = f"\"tag\" = '{trend[0].tag}' AND time >= {start_ms}ms AND time < {end_ms}ms"
        for fn, sel in (("mean", 'mean("value")'), ("integral", 'integral("value", 1s)')):
            q = f"SELECT {sel} FROM tag_value WHERE {where} GROUP BY time({every}s, {offset}s) fill(none)"
            sec, res = _timed(functools.partial(db.query, q), repeat=5)
            out[f"trend_{fn}_ms"] = sec * 1000
            out["trend_buckets"] = len(res["results"][0]["series"][0]["values"])

        def on_time_all() -> float:
            m_start, m_end = int(T0 * 1000), int((T0 + MONTH_S) * 1000)
            before = db.query(
                f'SELECT last("value") FROM tag_value WHERE time < {m_start}ms GROUP BY "tag"'
            )
            carry = {
                s["tags"]["tag"]: s["values"][0][1] for s in before["results"][0].get("series", [])
            }
            res = db.query(
                f'SELECT "value" FROM tag_value WHERE "tag" =~ /valve$/ AND time >= {m_start}ms '
                f'AND time < {m_end}ms GROUP BY "tag"'
            )
            total = 0.0
            for s in res["results"][0]["series"]:
                vals = np.array(s["values"], dtype=np.float64).reshape(-1, 2)
                cv = carry.get(s["tags"]["tag"])
                ser = compute.Series(
                    vals[:, 0] / 1000,
                    vals[:, 1],
                    np.zeros(len(vals), np.int64),
                    math.nan if cv is None else float(cv),
                    0,
                )
                total += compute.on_time(ser, T0, T0 + MONTH_S)[0]
            return total / 3600

        sec, total_h = _timed(on_time_all)
        out["on_time_s"] = sec
        out["on_time_total_h"] = total_h
    finally:
        db.close()
    return out


def bench_influx_v1(
    server: InfluxdServer,
    args: argparse.Namespace,
    trend: list[Sample],
    valves: list[Sample],
    every: int,
) -> dict[str, Any]:
    """Time our v1 backend against the same server (its own database, the historian's rules)."""
    h = Influx1Historian(server.url, "scada", batch_size=args.batch, timeout_s=600)
    out: dict[str, Any] = {"version": h.connect().version}
    try:
        for key, data in (("series", trend), ("valves", valves)):
            sec, _ = _timed(functools.partial(write_all, h.write, data, args.batch))
            out[f"write_{key}_pts_s"] = len(data) / sec
        span = len(trend) * 60.0
        tag = trend[0].tag
        raw_every = span / args.buckets
        odd_start = T0 + 1234.5
        for fn in ("mean", "twa"):
            sec, res = _timed(
                functools.partial(h.query_agg, [tag], T0, T0 + span, every, fn), repeat=3
            )
            out[f"trend_{fn}_ms"] = sec * 1000
            out["trend_buckets"] = len(res[tag])
            sec, _ = _timed(
                functools.partial(h.query_agg, [tag], odd_start, odd_start + span, raw_every, fn),
                repeat=3,
            )
            out[f"trend_{fn}_unaligned_ms"] = sec * 1000
        names = sorted({s.tag for s in valves})
        sec, many = _timed(lambda: h.on_time_many(names, T0, T0 + MONTH_S))
        out["on_time_many_s"] = sec
        out["on_time_many_total_h"] = sum(r.on_s for r in many.values()) / 3600
    finally:
        h.close()
    return out


def run(args: argparse.Namespace) -> int:
    print(
        f"building data: {args.points:,} trend points, {args.valves:,} valves x 30 days x {args.events_per_day}/day"
    )
    trend = series(args.points)
    valves = valve_events(args.valves, args.events_per_day)
    with tempfile.TemporaryDirectory(prefix="scada-bench-historian-") as d:
        tmp = Path(d)
        ours = bench_sqlite(args, trend, valves, tmp)
        theirs: dict[str, Any] | None = None
        v1: dict[str, Any] | None = None
        note = ""
        if args.no_influx:
            note = "InfluxDB comparison skipped (--no-influx)"
        elif shutil.which(args.influxd) is None:
            note = f"{args.influxd} not installed (apt-get install influxdb): our side only"
        else:
            every = int(ours["trend_every_s"])
            with InfluxdServer(tmp / "influxdb", binary=args.influxd) as server:
                theirs = bench_influx(server, args, trend, valves, every)
                v1 = bench_influx_v1(server, args, trend, valves, every)
    if args.json:
        doc = {"sqlite": ours, "influx_v1_backend": v1, "influxdb1": theirs, "note": note}
        print(json.dumps(doc, indent=2))
        return 0
    _print(args, ours, v1, theirs, note, len(trend), len(valves))
    return 0


def _print(
    args: argparse.Namespace,
    ours: dict[str, Any],
    v1: dict[str, Any] | None,
    theirs: dict[str, Any] | None,
    note: str,
    n_trend: int,
    n_valves: int,
) -> None:
    def fmt(d: dict[str, Any] | None, key: str, spec: str) -> str:
        if d is None or key not in d:
            return "-"
        return format(d[key], spec)

    label = f"InfluxDB {theirs['version']}" if theirs else "InfluxDB 1.x"
    buckets = ours["trend_buckets"]
    every_h = ours["trend_every_s"] / 3600
    # (title, SQLite key, v1 backend key, bare InfluxDB key, format)
    rows = [
        (
            f"write {n_trend:,}-pt 1-min series (pts/s)",
            "write_series_pts_s",
            "write_series_pts_s",
            "write_series_pts_s",
            ",.0f",
        ),
        ("  incl. rollup merge (pts/s)", "sustained_series_pts_s", "-", "-", ",.0f"),
        (
            f"write {n_valves:,} valve events (pts/s)",
            "write_valves_pts_s",
            "write_valves_pts_s",
            "write_valves_pts_s",
            ",.0f",
        ),
        ("  incl. rollup merge (pts/s)", "sustained_valves_pts_s", "-", "-", ",.0f"),
        (
            f"trend 1 y -> {buckets} x {every_h:g} h, mean (ms)",
            "trend_mean_ms",
            "trend_mean_ms",
            "trend_mean_ms",
            ".1f",
        ),
        (
            "trend twa (ms) [influx: integral]",
            "trend_twa_ms",
            "trend_twa_ms",
            "trend_integral_ms",
            ".1f",
        ),
        (
            "trend, unaligned start and width, mean (ms)",
            "trend_mean_unaligned_ms",
            "trend_mean_unaligned_ms",
            "-",
            ".1f",
        ),
        (
            "trend, unaligned start and width, twa (ms)",
            "trend_twa_unaligned_ms",
            "trend_twa_unaligned_ms",
            "-",
            ".1f",
        ),
        (f"on_time {args.valves:,} valves, month (s)", "on_time_s", "-", "on_time_s", ".2f"),
        ("  check: total on-time (h)", "on_time_total_h", "-", "on_time_total_h", ",.1f"),
        (
            "  on_time_many, all valves at once (s)",
            "on_time_many_s",
            "on_time_many_s",
            "on_time_s",
            ".2f",
        ),
        (
            "  check: total on-time (h)",
            "on_time_many_total_h",
            "on_time_many_total_h",
            "on_time_total_h",
            ",.1f",
        ),
    ]
    print(f"{'':46} {'scada SQLite':>14} {'v1 backend':>14} {label:>16}")
    for title, k1, kv, k2, spec in rows:
        print(
            f"{title:46} {fmt(ours, k1, spec):>14} {fmt(v1, kv, spec):>14} {fmt(theirs, k2, spec):>16}"
        )
    print(
        f"{'same unaligned trend, all raw, mean/twa (ms)':46} "
        f"{ours['trend_mean_raw_ms']:.0f}/{ours['trend_twa_raw_ms']:.0f}"
    )
    print(f"{'on_time, unaligned month (raw edges) (s)':46} {ours['on_time_unaligned_s']:>14.2f}")
    print(f"{'SQLite file (MB)':46} {ours['file_mb']:>14.1f}")
    if note:
        print(note)
    worst_write = min(ours["sustained_series_pts_s"], ours["sustained_valves_pts_s"])
    worst_trend = max(
        ours[f"trend_{fn}{kind}_ms"] for fn in ("mean", "twa") for kind in ("", "_unaligned")
    )
    goals = [
        (
            "write >= 300k pts/s",
            min(ours["write_series_pts_s"], ours["write_valves_pts_s"]) >= 300_000,
        ),
        ("incl. merge", worst_write >= 300_000),
        ("trend <= 50 ms", worst_trend <= 50),
    ]
    if theirs:
        for key in ("series", "valves"):
            goals.append(
                (
                    f"{key} write ahead of InfluxDB",
                    ours[f"write_{key}_pts_s"] > theirs[f"write_{key}_pts_s"],
                )
            )
            goals.append(
                ("incl. merge", ours[f"sustained_{key}_pts_s"] > theirs[f"write_{key}_pts_s"])
            )
        goals.append(("trend ahead of InfluxDB", worst_trend < theirs["trend_mean_ms"]))
    print("goals: " + ", ".join(f"{g}: {'yes' if ok else 'NO'}" for g, ok in goals))
