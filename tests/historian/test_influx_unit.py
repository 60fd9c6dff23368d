"""InfluxDB backend parts that need no server: line protocol, Flux and InfluxQL text, configuration."""

from __future__ import annotations

import re

import pytest

from historian import influxql
from historian.base import AggFn, Sample
from historian.config import HistorianConfig
from historian.factory import open_historian
from historian.influx import (
    InfluxHistorian,
    flux_agg,
    flux_duration,
    flux_str,
    line,
    rfc3339,
    to_us,
)
from historian.influx_http import auth_headers
from historian.influx_v1 import Influx1Historian
from historian.lineproto import lines_ns, replacement_line_ns, to_ns
from historian.spool import SpoolingHistorian
from tags.model import Quality, Reason


def test_line_protocol_fields_and_escaping() -> None:
    assert line(Sample("a", 1.25, True, Quality.BAD, Reason.COMM_LOST)) == (
        "tag_value,tag=a value=1.0,quality=2i,reason=1i 1250000"
    )
    assert line(Sample("a b,c=d\\e", 1.0, 2)) == (
        "tag_value,tag=a\\ b\\,c\\=d\\\\e value=2.0,quality=0i,reason=0i 1000000"
    )
    # NaN and None carry no value field; the point still records quality
    assert (
        line(Sample("a", 1.0, float("nan"), Quality.BAD))
        == "tag_value,tag=a quality=2i,reason=0i 1000000"
    )
    assert line(Sample("a", 1.0, None)) == "tag_value,tag=a quality=0i,reason=0i 1000000"
    assert line(Sample("a", 1.0, 'x"y\\z\n')) == (
        'tag_value,tag=a text="x\\"y\\\\z\\n",quality=0i,reason=0i 1000000'
    )
    with pytest.raises(ValueError, match="must not be empty"):
        line(Sample("", 1.0, 1.0))


def test_time_literals_are_exact() -> None:
    assert to_us(1_700_006_400.123456) == 1_700_006_400_123_456
    assert rfc3339(1_700_006_400_123_456) == "2023-11-15T00:00:00.123456Z"
    assert rfc3339(0) == "1970-01-01T00:00:00.000000Z"
    assert flux_duration(3600) == "3600s"
    assert flux_duration(0.25) == "250000us"


def test_flux_string_escaping() -> None:
    assert flux_str('a"b\\c${x}') == '"a\\"b\\\\c\\${x}"'


def test_flux_aggregate_query_text() -> None:
    q = flux_agg("bkt", ["a", 'b"'], 1_700_006_400 + 600, 1_700_010_000, 3600, AggFn.MEAN, False)
    assert 'from(bucket: "bkt")' in q
    assert "range(start: 2023-11-15T00:10:00.000000Z, stop: 2023-11-15T01:00:00.000000Z)" in q
    assert 'r._measurement == "tag_value" and (r.tag == "a" or r.tag == "b\\"")' in q
    assert 'pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")' in q
    assert "filter(fn: (r) => r.quality < 2)" in q
    # windows aligned to the query start (00:10), not to the epoch hour
    assert (
        'aggregateWindow(every: 3600s, offset: 600s, fn: mean, column: "value", '
        'createEmpty: true, timeSrc: "_start")'
    ) in q
    with_bad = flux_agg("bkt", ["a"], 0, 60, 10, AggFn.COUNT, True)
    assert "r.quality < 2" not in with_bad and "fn: count" in with_bad


def test_env_expansion_names_field_and_variable(monkeypatch) -> None:
    monkeypatch.setenv("SCADA_TEST_A", "x")
    monkeypatch.setenv("SCADA_TEST_B", "y")
    monkeypatch.delenv("SCADA_TEST_NOPE", raising=False)
    cfg = HistorianConfig(org="${SCADA_TEST_A}", token="Token ${SCADA_TEST_A}-${SCADA_TEST_B}")
    assert cfg.org == "x" and cfg.token is not None
    assert cfg.token.get_secret_value() == "Token x-y" and "x-y" not in repr(cfg)
    assert HistorianConfig().token is None
    with pytest.raises(
        ValueError, match=r"token\n.*environment variable SCADA_TEST_NOPE is not set"
    ):
        HistorianConfig(token="${SCADA_TEST_NOPE}")


def test_v2_settings_are_checked_when_validated(monkeypatch) -> None:
    with pytest.raises(ValueError, match=r"token is required for api v2"):
        HistorianConfig(backend="influxdb", api="v2", url="http://127.0.0.1:1", org="o", bucket="b")
    monkeypatch.setenv("SCADA_TEST_T", "tok")
    cfg = HistorianConfig(
        backend="influxdb",
        api="v2",
        url="http://127.0.0.1:1",
        org="o",
        bucket="b",
        token="${SCADA_TEST_T}",
    )
    h = InfluxHistorian.from_config(cfg)
    assert (h.url, h.org, h.bucket, h.batch_size) == ("http://127.0.0.1:1", "o", "b", 5000)
    h.close()
    with pytest.raises(ValueError, match=r"database is an api v1 setting"):
        HistorianConfig(
            backend="influxdb",
            api="v2",
            url="http://x:1",
            org="o",
            bucket="b",
            token="t",
            database="d",
        )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {},
            "url is required for backend influxdb (e.g. http://influxdb:8181); database is required",
        ),
        ({"url": "influxdb:8086", "database": "d"}, "must be http://host"),
        ({"url": "http://u:p@h:1", "database": "d"}, "url must not hold credentials"),
        (
            {"url": "http://h:1", "org": "o", "bucket": "b"},
            "org and bucket belong to api v2 (Flux): set api: v2, or give database",
        ),
        ({"url": "http://h:1", "database": "d", "token": "t", "password": "p"}, "not both"),
        ({"url": "http://h:1", "database": "d", "username": "u"}, "username needs password"),
    ],
)
def test_v1_settings_are_checked_when_validated(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        HistorianConfig(backend="influxdb", **settings)
    HistorianConfig(backend="sqlite", **settings)  # other backends ignore them


def test_factory_builds_sqlite_or_spooled_influx(tmp_path, monkeypatch) -> None:
    h = open_historian(HistorianConfig(path="sub/h.sqlite"), tmp_path)
    assert (tmp_path / "sub" / "h.sqlite").exists()
    h.close()
    monkeypatch.setenv("SCADA_TEST_TOKEN_X", "tok")
    v2 = HistorianConfig(
        backend="influxdb",
        api="v2",
        url="http://127.0.0.1:1",
        org="o",
        bucket="b",
        token="${SCADA_TEST_TOKEN_X}",
    )
    v1 = HistorianConfig(
        backend="influxdb",
        url="http://127.0.0.1:1/influx/",
        database="scada",
        retention_policy="raw",
        username="scada",
        password="${SCADA_TEST_TOKEN_X}",
        timeout_s=2.5,
    )
    for cfg, cls in ((v2, InfluxHistorian), (v1, Influx1Historian)):
        h = open_historian(cfg, tmp_path)  # no network: the check runs in start()
        assert isinstance(h, SpoolingHistorian) and isinstance(h.backend, cls)
        assert (tmp_path / "spool" / "spool.sqlite").exists()
        h.close()
    b = Influx1Historian.from_config(v1)
    assert (b.url, b.database, b.retention_policy, b.retention_days) == (
        "http://127.0.0.1:1/influx",
        "scada",
        "raw",
        400,
    )
    b.close()


# -- the v1 backend's pure parts ---------------------------------------------------------------


def test_v1_lines_have_exact_nanosecond_times() -> None:
    keys: dict[str, str] = {}
    ts = 1_700_006_400.123456789
    got = lines_ns(
        [
            Sample("b1 meter,x=1", ts, 3),
            Sample("s", 1.0, 'say "hi"', Quality.UNCERTAIN, Reason.MANUAL),
            Sample("a", 2.0, float("inf"), Quality.BAD),
            Sample("a", 2.5, True),
        ],
        keys,
    )
    assert got == [
        f"tag_value,tag=b1\\ meter\\,x\\=1 value=3.0,quality=0i,reason=0i {to_ns(ts)}",
        f'tag_value,tag=s text="say \\"hi\\"",quality=1i,reason={int(Reason.MANUAL)}i 1000000000',
        "tag_value,tag=a quality=2i,reason=0i 2000000000",
        "tag_value,tag=a value=1.0,quality=0i,reason=0i 2500000000",
    ]
    assert set(keys) == {"b1 meter,x=1", "s", "a"}
    for t in (ts, 1_765_123_456.1234567, 1_700_006_400 + 1 / 3, 946_684_800 + 2.5e-7):
        assert to_ns(t) / 1_000_000_000 == t
    for bad in ("", "a\\b", "a\nb"):
        with pytest.raises(ValueError, match="tag name"):
            lines_ns([Sample(bad, 1.0, 1.0)], {})
    assert replacement_line_ns("m", 1.5, 10, 0) == (
        "meter_replacement,tag=m old_final=10.0,new_initial=0.0 1500000000"
    )


def test_influxql_literals() -> None:
    assert influxql.string("o'clock \\ x") == "'o\\'clock \\\\ x'"
    assert influxql.ident('my "db"') == '"my \\"db\\""'
    assert influxql.time_literal(1_700_006_400_123_456_789) == "'2023-11-15T00:00:00.123456789Z'"
    assert influxql.time_literal(0) == "'1970-01-01T00:00:00.000000000Z'"
    assert [influxql.duration(n) for n in (3_600_000_000_000, 250_000, 7)] == [
        "3600s",
        "250u",
        "7ns",
    ]
    with pytest.raises(ValueError):
        influxql.duration(0)
    groups = list(influxql.tag_groups([f"tag{i:05d}" for i in range(2000)]))
    assert sum(map(len, groups)) == 2000 and len(groups) > 1
    assert all(len(influxql.tag_filter(g)) < 2 * influxql.MAX_FILTER_CHARS for g in groups)


def test_influxql_statements() -> None:
    start = 1_700_006_400 * 10**9 + 600 * 10**9
    q = influxql.select_agg(
        "raw", ["a", "b'"], start, start + 7200 * 10**9, 3600 * 10**9, AggFn.MEAN, False
    )
    assert q == (
        'SELECT mean("value") FROM "raw"."tag_value" WHERE ("tag" = \'a\' OR "tag" = \'b\\\'\') '
        "AND time >= '2023-11-15T00:10:00.000000000Z' AND time < '2023-11-15T02:10:00.000000000Z' "
        'AND "quality" < 2 GROUP BY time(3600s, 600s), "tag" fill(none)'
    )
    aligned = influxql.select_agg(None, ["a"], 0, 60 * 10**9, 20 * 10**9, AggFn.COUNT, True)
    assert 'FROM "tag_value"' in aligned and "GROUP BY time(20s)," in aligned
    assert "quality" not in aligned
    newest = influxql.select_points(
        None, ["a"], None, 5, good_only=True, stop_inclusive=True, newest_first=1
    )
    assert newest == (
        'SELECT "value", "text", "quality", "reason" FROM "tag_value" WHERE "tag" = \'a\' '
        "AND time <= '1970-01-01T00:00:00.000000005Z' AND \"quality\" < 2 "
        'GROUP BY "tag" ORDER BY time DESC LIMIT 1'
    )


def test_auth_headers() -> None:
    assert auth_headers(None, None, None) == {}
    assert auth_headers("u", "p", None) == {"Authorization": "Basic dTpw"}
    assert auth_headers(None, "tok", None) == {"Authorization": "Basic OnRvaw=="}
    assert auth_headers("u", "p", "tok") == {"Authorization": "Token tok"}
