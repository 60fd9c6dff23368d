"""Store-and-forward against a backend that really fails: a closed port, then HTTP 500s."""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from historian.base import BackendUnavailable, HistorianError, Sample
from historian.influx import InfluxHistorian
from historian.spool import SpoolingHistorian
from historian.sqlite import SqliteHistorian
from tests.historian.conftest import T0


class WriteEndpoint:
    """A loopback HTTP server speaking InfluxDB's ``POST /api/v2/write``; records the lines."""

    def __init__(self, port: int = 0) -> None:
        self.lines: list[str] = []
        self.status = 204
        self.requests = 0
        self.got_request = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                endpoint.requests += 1
                assert self.path.startswith("/api/v2/write?")
                assert "precision=us" in self.path
                assert self.headers["Authorization"] == "Token secret"
                if endpoint.status == 204:
                    endpoint.lines.extend(body.decode().splitlines())
                self.send_response(endpoint.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                endpoint.got_request.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (bound once, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def influx(port: int) -> InfluxHistorian:
    return InfluxHistorian(f"http://127.0.0.1:{port}", "org", "bucket", "secret", timeout_s=5)


def batch(first: int, n: int) -> list[Sample]:
    return [Sample("m.energy", T0 + i, float(i)) for i in range(first, first + n)]


def received_values(endpoint: WriteEndpoint) -> list[float]:
    return [
        float(line.split(" ")[1].split(",")[0].removeprefix("value=")) for line in endpoint.lines
    ]


def test_closed_port_is_backend_unavailable(closed_port: int) -> None:
    h = influx(closed_port)
    with pytest.raises(BackendUnavailable, match=r"write to http://127\.0\.0\.1"):
        h.write(batch(0, 3))
    h.close()


def test_spool_on_closed_port_then_replay_in_order_after_restart(
    tmp_path: Path, closed_port: int
) -> None:
    spool = SpoolingHistorian(influx(closed_port), tmp_path, max_points=5)
    for k in range(3):
        spool.write(batch(3 * k, 3))
    assert spool.spool_points == 9
    assert not spool.backend_ok
    assert spool.spool_full  # past the alarm threshold, still nothing dropped
    spool.close()  # process restart: the spool file stays

    endpoint = WriteEndpoint(closed_port)  # the backend comes up on that port
    try:
        spool = SpoolingHistorian(influx(closed_port), tmp_path, max_points=5)
        assert spool.spool_points == 9
        assert spool.drain()
        assert spool.spool_points == 0 and spool.backend_ok and not spool.spool_full
        spool.write(batch(9, 2))  # direct write once recovered
        assert received_values(endpoint) == [float(i) for i in range(11)]
        spool.close()
    finally:
        endpoint.close()


def test_http_500_spools_and_retry_thread_replays(tmp_path: Path) -> None:
    endpoint = WriteEndpoint()
    endpoint.status = 500
    try:
        spool = SpoolingHistorian(
            influx(endpoint.port), tmp_path, retry_initial_s=0.05, retry_max_s=0.05
        )
        spool.write(batch(0, 4))
        spool.write(batch(4, 4))  # queued behind the first, not sent out of order
        assert spool.spool_points == 8 and not spool.backend_ok
        endpoint.status = 204
        endpoint.got_request.clear()
        spool.start()
        assert endpoint.got_request.wait(10)
        spool.close()  # joins the retry thread, so the replay has finished
        assert received_values(endpoint) == [float(i) for i in range(8)]
    finally:
        endpoint.close()
    reopened = SpoolingHistorian(SqliteHistorian(tmp_path / "x.sqlite"), tmp_path)
    assert reopened.spool_points == 0
    reopened.close()


def test_client_errors_are_not_spooled(tmp_path: Path) -> None:
    endpoint = WriteEndpoint()
    endpoint.status = 400  # bad data: retrying would never succeed
    try:
        spool = SpoolingHistorian(influx(endpoint.port), tmp_path)
        with pytest.raises(HistorianError, match="HTTP 400"):
            spool.write(batch(0, 1))
        assert spool.spool_points == 0
        spool.close()
    finally:
        endpoint.close()


def test_spool_over_sqlite_keeps_every_point(tmp_path: Path) -> None:
    backend = SqliteHistorian(tmp_path / "h.sqlite")
    spool = SpoolingHistorian(backend, tmp_path / "spool")
    spool.write(batch(0, 5))
    assert [s.value for s in spool.query_raw("m.energy", T0, T0 + 10)] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert spool.delta("m.energy", T0, T0 + 10) == 4.0
    spool.close()


@pytest.fixture
def endpoint() -> Iterator[WriteEndpoint]:
    e = WriteEndpoint()
    yield e
    e.close()


def test_influx_write_sends_line_protocol(endpoint: WriteEndpoint) -> None:
    h = influx(endpoint.port)
    h.write([Sample("b1 meter,x=1", T0 + 0.5, 3), Sample("s", T0, 'say "hi"')])
    h.record_replacement("m", T0, 10.0, 0.0)
    h.close()
    assert endpoint.lines == [
        f"tag_value,tag=b1\\ meter\\,x\\=1 value=3.0,quality=0i,reason=0i {int(T0) * 1_000_000 + 500_000}",
        f'tag_value,tag=s text="say \\"hi\\"",quality=0i,reason=0i {int(T0) * 1_000_000}',
        f"meter_replacement,tag=m old_final=10.0,new_initial=0.0 {int(T0) * 1_000_000}",
    ]
