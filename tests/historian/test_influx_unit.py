"""InfluxDB backend parts that need no server: line protocol, Flux text, configuration."""

from __future__ import annotations

import pytest

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


def test_from_config_requires_every_setting(monkeypatch) -> None:
    cfg = HistorianConfig(backend="influxdb", url="http://127.0.0.1:1", org="o", bucket="b")
    with pytest.raises(ValueError, match=r"historian\.token is required"):
        InfluxHistorian.from_config(cfg)
    monkeypatch.setenv("SCADA_TEST_T", "tok")
    cfg = HistorianConfig(
        backend="influxdb", url="http://127.0.0.1:1", org="o", bucket="b", token="${SCADA_TEST_T}"
    )
    h = InfluxHistorian.from_config(cfg)
    assert (h.url, h.org, h.bucket, h.batch_size) == ("http://127.0.0.1:1", "o", "b", 5000)
    h.close()


def test_factory_builds_sqlite_or_spooled_influx(tmp_path, monkeypatch) -> None:
    h = open_historian(HistorianConfig(path="sub/h.sqlite"), tmp_path)
    assert (tmp_path / "sub" / "h.sqlite").exists()
    h.close()
    monkeypatch.setenv("SCADA_TEST_TOKEN_X", "tok")
    cfg = HistorianConfig(
        backend="influxdb",
        url="http://127.0.0.1:1",
        org="o",
        bucket="b",
        token="${SCADA_TEST_TOKEN_X}",
    )
    h = open_historian(cfg, tmp_path)
    assert isinstance(h, SpoolingHistorian)
    assert (tmp_path / "spool" / "spool.sqlite").exists()
    h.close()
