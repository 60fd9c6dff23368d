"""The InfluxDB v1 backend's start-up checks and faults: a real influxd, and a scripted one.

The real server (``influxd``, auth on) shows wrong credentials, a database that cannot be created,
retention, an outage at start-up that drains when the server comes, and a kill -9 in the middle of
a write burst. A scripted HTTP server plays what Debian's InfluxDB 1.6 cannot: 5xx answers,
timeouts, something that is not InfluxDB, and InfluxDB 3's habit of creating databases on write.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from historian.base import BackendUnavailable, HistorianError, Sample
from historian.config import HistorianConfig
from historian.factory import open_historian
from historian.influx_v1 import Influx1Historian
from historian.influxd import ADMIN, ADMIN_PASSWORD, InfluxdServer, free_port
from historian.spool import SpoolingHistorian
from scada.cli import main
from tests.historian.conftest import T0, influx_v1, require_influxd


def batch(first: int, n: int, tag: str = "m.energy") -> list[Sample]:
    return [Sample(tag, T0 + i, float(i)) for i in range(first, first + n)]


# -- start-up against the real server ------------------------------------------------------------


def test_wrong_credentials_are_named_at_start_up(influxd: InfluxdServer, tmp_path: Path) -> None:
    h = Influx1Historian(influxd.url, "contract", username=ADMIN, password="wrong")
    with pytest.raises(HistorianError, match=r"HTTP 401 .*refused historian\.username / "):
        h.connect()
    h.close()
    h = Influx1Historian(influxd.url, "contract")
    with pytest.raises(HistorianError, match="refused no credentials"):
        h.connect()
    h.close()
    # the runtime's path: open_historian() then start() raises, nothing is spooled
    cfg = HistorianConfig(
        backend="influxdb", url=influxd.url, database="contract", token="not-a-1x-token"
    )
    spool = open_historian(cfg, tmp_path)
    assert isinstance(spool, SpoolingHistorian)
    with pytest.raises(HistorianError, match=r"refused historian\.token"):
        spool.start()
    spool.close()


def test_missing_database_that_cannot_be_created_is_named(influxd: InfluxdServer) -> None:
    influxd.query("CREATE USER writer WITH PASSWORD 'pw'")  # no admin: cannot create databases
    h = Influx1Historian(influxd.url, "nope", username="writer", password="pw")
    with pytest.raises(
        HistorianError,
        match=r"database 'nope' does not exist and cannot be created .*requires admin privilege"
        r".*create it \(CREATE DATABASE \"nope\"\) as an admin",
    ):
        h.connect()
    h.close()


def test_missing_database_and_retention_policy_are_created(influxd: InfluxdServer) -> None:
    h = influx_v1(influxd, "made_here", retention_days=30)
    assert h.connect().created is False  # the fixture's connect() created it
    policies = influxd.query('SHOW RETENTION POLICIES ON "made_here"')
    assert policies["results"][0]["series"][0]["values"][0][:2] == ["autogen", "720h0m0s"]
    h.close()
    h = influx_v1(influxd, "made_here", retention_policy="raw", retention_days=2)
    now = float(int(time.time()))  # a 2-day policy refuses older points
    h.write([Sample("m.energy", now - 10 + i, float(i)) for i in range(3)])
    assert [s.value for s in h.query_raw("m.energy", now - 10, now)] == [0.0, 1.0, 2.0]
    with pytest.raises(HistorianError, match="HTTP 400 partial write: points beyond retention"):
        h.write(batch(0, 1))  # bad data for this policy: raised, not spooled
    raw = influxd.query('SELECT count("value") FROM "raw"."tag_value"', db="made_here")
    assert raw["results"][0]["series"][0]["values"][0][1] == 3
    auto = influxd.query('SELECT count("value") FROM "autogen"."tag_value"', db="made_here")
    assert "series" not in auto["results"][0]  # nothing went to the default policy
    policies = influxd.query('SHOW RETENTION POLICIES ON "made_here"')
    assert ["raw", "48h0m0s"] in [row[:2] for row in policies["results"][0]["series"][0]["values"]]
    h.close()


def test_bad_tag_name_is_refused_before_anything_is_sent(influxd: InfluxdServer) -> None:
    h = influx_v1(influxd)
    with pytest.raises(ValueError, match="backslash"):
        h.write([*batch(0, 2, "t.ok_before_bad"), Sample("a\\b", T0, 1.0)])
    assert h.last(["t.ok_before_bad"]) == {}
    h.close()


# -- outages against the real server -------------------------------------------------------------


def test_server_down_at_start_up_spools_then_drains(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    require_influxd()
    port = free_port()
    cfg = HistorianConfig(
        backend="influxdb",
        url=f"http://127.0.0.1:{port}",
        database="late",
        timeout_s=5,
        retention_days=None,
    )
    spool = open_historian(cfg, tmp_path / "data")
    assert isinstance(spool, SpoolingHistorian)
    spool.retry_initial_s = spool.retry_max_s = 0.05
    with caplog.at_level(logging.ERROR, logger="historian.spool"):
        spool.start()  # not fatal: the server may come later (compose start order, outage)
    assert f"not reachable, spooling until it answers: ping at http://127.0.0.1:{port}" in (
        caplog.text
    )
    assert not spool.backend_ok
    spool.write(batch(0, 5))
    assert spool.spool_points == 5 and not spool.backend_ok
    server = InfluxdServer(tmp_path / "influxd", port=port)
    server.start()
    try:
        spool.write(batch(5, 5))  # behind the spooled ones; replayed once the backoff expired
        assert spool.drain()
        assert spool.backend_ok and spool.spool_points == 0
        got = spool.query_raw("m.energy", T0, T0 + 100)
        assert [s.value for s in got] == [float(i) for i in range(10)]  # created, in order
    finally:
        spool.close()
        server.stop()


def test_influxd_killed_and_restarted_during_a_write_burst_loses_no_point(tmp_path: Path) -> None:
    require_influxd()
    server = InfluxdServer(tmp_path / "influxd")
    server.start()
    backend = Influx1Historian(server.url, "burst", timeout_s=5)
    spool = SpoolingHistorian(backend, tmp_path / "spool", retry_initial_s=0.02, retry_max_s=0.1)
    spool.start()
    n_batches, size = 150, 200
    at_kill, killed, at_restart = threading.Event(), threading.Event(), threading.Event()
    seen_down = threading.Event()
    errors: list[BaseException] = []

    def burst() -> None:
        try:
            for k in range(n_batches):
                spool.write(batch(k * size, size, "b.flow"))
                if not spool.backend_ok:
                    seen_down.set()
                if k == 30:
                    at_kill.set()  # the kill lands while the next batches are being sent
                if k == 70:
                    assert killed.wait(30)  # from here on at least these batches meet a dead server
                if k == 90:
                    at_restart.set()  # the restart happens while batches 91.. are being written
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    writer = threading.Thread(target=burst)
    writer.start()
    try:
        assert at_kill.wait(60)
        server.kill()
        killed.set()
        assert at_restart.wait(60)
        assert seen_down.is_set() and spool.spool_points > 0
        server.start()
        writer.join(120)
        assert not writer.is_alive() and not errors
        assert spool.drain()
        assert spool.backend_ok and spool.spool_points == 0
        got = spool.query_raw("b.flow", T0, T0 + n_batches * size)
        assert len(got) == n_batches * size
        assert [s.value for s in got] == [float(i) for i in range(n_batches * size)]
        counts = spool.query_agg(["b.flow"], T0, T0 + n_batches * size, size * 10, "count")
        assert [v for _, v in counts["b.flow"]] == [size * 10.0] * (n_batches // 10)
    finally:
        spool.close()
        server.stop()


def test_scada_history_cli_against_influxdb(
    influxd: InfluxdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("SCADA_TEST_INFLUX_PASSWORD", ADMIN_PASSWORD)
    site = tmp_path / "site.yaml"
    site.write_text(
        f"""\
site: {{id: t, name: Test}}
historian: {{backend: influxdb, api: v1, url: "{influxd.url}", database: cli,
            username: {ADMIN}, password: "${{SCADA_TEST_INFLUX_PASSWORD}}"}}
tags:
  - {{name: m.energy, type: float, unit: kWh}}
"""
    )
    rows = tmp_path / "in.csv"
    rows.write_text(
        "tag,timestamp,value\n"
        "m.energy,2026-01-01T00:00:00Z,100\n"
        "m.energy,2026-01-01T00:30:00Z,104\n"
        "m.energy,2026-01-01T01:00:00Z,112\n"
    )
    data = str(tmp_path / "var")
    assert main(["history", "import", str(site), str(rows), "--data-dir", data]) == 0
    assert "imported 3 samples" in capsys.readouterr().out
    argv = ["history", "query", str(site), "m.energy", "--from", "2026-01-01T00:00:00Z"]
    argv += ["--to", "2026-01-01T02:00:00Z", "--every", "1h", "--fn", "max", "--json"]
    assert main([*argv, "--data-dir", data]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["value"] for r in out["rows"]] == [104.0, 112.0]


# -- a scripted server: 5xx, timeouts, not InfluxDB, InfluxDB 3 ------------------------------------


class ScriptedInflux:
    """A loopback HTTP server answering ``/ping``, ``/query`` and ``/write`` as told."""

    def __init__(self, *, version: str | None = "1.8.10", databases: tuple[str, ...] = ("d",)):
        self.version = version
        self.databases = list(databases)
        self.write_status = 204
        self.write_delay_s = 0.0
        self.lines: list[str] = []
        self.statements: list[str] = []
        self.writes = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status: int, body: bytes = b"", ctype: str = "application/json"):
                self.send_response(status)
                if outer.version is not None:
                    self.send_header("X-Influxdb-Version", outer.version)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/ping":
                    self._reply(204 if outer.version else 404)
                    return
                q = urllib.parse.parse_qs(url.query).get("q", [""])[0]
                outer.statements.append(q)
                if q == "SHOW DATABASES":
                    values = [[d] for d in outer.databases]
                    series = [{"name": "databases", "columns": ["name"], "values": values}]
                    result = {"statement_id": 0, "series": series}
                else:  # InfluxDB 3 before the first write: the database is not there yet
                    result = {"statement_id": 0, "error": "database not found: d"}
                self._reply(200, json.dumps({"results": [result]}).encode())

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not self.path.startswith("/write?"):
                    outer.statements.append(body.decode())
                    self._reply(400, b'{"error": "not expected"}')
                    return
                outer.writes += 1
                if outer.write_delay_s:
                    time.sleep(outer.write_delay_s)
                if outer.write_status == 204:
                    outer.lines.extend(body.decode().splitlines())
                    self._reply(204)
                else:
                    self._reply(outer.write_status, b'{"error": "overloaded"}')

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[ScriptedInflux]:
    s = ScriptedInflux()
    yield s
    s.close()


def test_5xx_and_timeouts_fill_the_spool_and_drain(scripted: ScriptedInflux, tmp_path) -> None:
    backend = Influx1Historian(scripted.url, "d", timeout_s=0.5)
    spool = SpoolingHistorian(backend, tmp_path, retry_initial_s=0.01, retry_max_s=0.01)
    spool.start()
    assert spool.backend_ok
    scripted.write_status = 503
    with pytest.raises(BackendUnavailable, match=r"HTTP 503 overloaded"):
        backend.write(batch(0, 1))
    spool.write(batch(0, 3))
    assert spool.spool_points == 3 and not spool.backend_ok
    scripted.write_status, scripted.write_delay_s = 204, 2.0  # answers too late: a timeout
    with pytest.raises(BackendUnavailable, match=r"no answer within 0\.5 s"):
        backend.write(batch(0, 1))
    time.sleep(0.02)  # past the backoff, so this write tries to drain (and times out)
    spool.write(batch(3, 3))
    assert spool.spool_points == 6 and not spool.backend_ok
    scripted.write_delay_s = 0.0
    scripted.lines.clear()  # the late answers were stored by the server: replays replace them
    assert spool.drain()
    assert spool.backend_ok and spool.spool_points == 0
    stamps = [int(line.rsplit(" ", 1)[1]) for line in scripted.lines]
    assert stamps == [int(T0 + i) * 10**9 for i in range(6)]  # in order, nothing lost
    spool.close()


def test_not_influxdb_is_named(tmp_path: Path) -> None:
    s = ScriptedInflux(version=None)  # e.g. the URL of our own web server
    try:
        h = Influx1Historian(s.url + "/prefix", "d")
        with pytest.raises(HistorianError, match=r"is not an InfluxDB server: GET /ping answered"):
            h.connect()
        h.close()
    finally:
        s.close()


def test_influxdb_3_creates_the_database_on_write(caplog: pytest.LogCaptureFixture) -> None:
    s = ScriptedInflux(version="3.8.0", databases=("_internal",))
    try:
        h = Influx1Historian(s.url, "d", token="apiv3_x")
        with caplog.at_level(logging.INFO, logger="historian.influx_v1"):
            info = h.connect()
        assert (info.major, info.created) == (3, False)
        assert "the first write creates it" in caplog.text
        assert s.statements == ["SHOW DATABASES"]  # no CREATE DATABASE on 3.x
        assert h.last(["a"]) == {} and h.query_raw("a", T0, T0 + 1) == []  # not there yet: empty
        h.write(batch(0, 2, "a"))
        assert s.lines[0] == f"tag_value,tag=a value=0.0,quality=0i,reason=0i {int(T0) * 10**9}"
        h.close()
    finally:
        s.close()
