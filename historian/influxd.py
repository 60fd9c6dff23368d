"""Run a private InfluxDB 1.x server (Debian's ``influxd``) for the tests and ``scada bench``.

``InfluxdServer(root)`` writes a configuration into ``root`` (reporting disabled, HTTP on a free
loopback port, its own meta, data and WAL directories, no row limit, no monitor store, no
continuous queries), ``start()`` launches ``influxd`` and returns once its log says it listens
on HTTP (the log is copied to ``root/influxd.log``). ``stop()`` (SIGTERM) or ``kill()`` (SIGKILL,
for fault tests) and ``start()`` again keep the port and the data, as a production restart does.

With ``auth=True`` the server requires credentials and ``start()`` creates the admin user
``ADMIN`` (password ``ADMIN_PASSWORD``) the first time; ``query()`` runs statements as that user.
"""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import socket
import subprocess
import threading
import urllib.parse
from pathlib import Path
from types import TracebackType
from typing import IO, Any

READY = "Listening on HTTP"
ADMIN = "admin"
ADMIN_PASSWORD = "admin-secret"


def free_port() -> int:
    """Return a loopback TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class InfluxdServer:
    """One ``influxd`` process in ``root`` (see the module docstring)."""

    def __init__(
        self, root: Path, *, binary: str = "influxd", auth: bool = False, port: int | None = None
    ) -> None:
        exe = shutil.which(binary)
        if exe is None:
            raise FileNotFoundError(f"{binary} not found (apt-get install influxdb)")
        self.exe = exe
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.auth = auth
        self.port = port or free_port()
        self.version = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._admin_created = False
        self.config = self.root / "influxdb.conf"
        self.config.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{free_port()}"
[meta]
  dir = "{self.root}/meta"
[data]
  dir = "{self.root}/data"
  wal-dir = "{self.root}/wal"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = {"true" if auth else "false"}
  log-enabled = false
  max-row-limit = 0
  max-body-size = 0
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
"""
        )

    @property
    def url(self) -> str:
        """The server's base URL (stays the same across restarts)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Start ``influxd`` and return once it listens; ``RuntimeError`` if it does not."""
        if self.proc is not None:
            return
        ready = threading.Event()
        self.proc = subprocess.Popen(
            [self.exe, "-config", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        log = open(self.root / "influxd.log", "ab")  # noqa: SIM115 - closed by the reader
        assert self.proc.stdout is not None
        self._reader = threading.Thread(
            target=_copy_log, args=(self.proc.stdout, log, ready), daemon=True
        )
        self._reader.start()
        if not ready.wait(timeout_s) or self.proc.poll() is not None:
            code = self.proc.poll()
            self.stop()
            tail = (self.root / "influxd.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"influxd did not start (exit code {code}); log {self.root / 'influxd.log'}:\n{tail}"
            )
        status, headers, _ = self._request("GET", "/ping")
        if status != 204:
            raise RuntimeError(f"influxd at {self.url}: /ping answered HTTP {status}")
        self.version = headers.get("x-influxdb-version", "1.x")
        if self.auth and not self._admin_created:
            # the first user may be created without credentials, and must be an admin
            self.query(f"CREATE USER {ADMIN} WITH PASSWORD '{ADMIN_PASSWORD}' WITH ALL PRIVILEGES")
            self._admin_created = True

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def query(self, q: str, *, db: str | None = None) -> Any:
        """Run InfluxQL ``q`` (POST, as the admin when auth is on); ``RuntimeError`` on an error."""
        params = {"q": q}
        if db:
            params["db"] = db
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.auth and self._admin_created:
            pair = base64.b64encode(f"{ADMIN}:{ADMIN_PASSWORD}".encode()).decode()
            headers["Authorization"] = f"Basic {pair}"
        status, _, data = self._request(
            "POST", "/query", urllib.parse.urlencode(params).encode(), headers
        )
        doc = json.loads(data) if data else {}
        errors = [r["error"] for r in doc.get("results", []) if "error" in r]
        if status != 200 or errors or "error" in doc:
            raise RuntimeError(f"InfluxQL {q!r}: HTTP {status} {doc.get('error') or errors}")
        return doc

    def stop(self) -> None:
        """Shut the server down (SIGTERM) and wait for it."""
        self._end(kill=False)

    def kill(self) -> None:
        """Kill the server (SIGKILL): what a crash or a power cut does to the process."""
        self._end(kill=True)

    def _end(self, *, kill: bool) -> None:
        proc = self.proc
        if proc is None:
            return
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._reader is not None:
            self._reader.join(10)
            self._reader = None
        self.proc = None

    def __enter__(self) -> InfluxdServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _copy_log(src: IO[bytes], dst: IO[bytes], ready: threading.Event) -> None:
    """Copy influxd's output to its log file; set ``ready`` at the listening line or at EOF."""
    try:
        for raw in src:
            dst.write(raw)
            if READY.encode() in raw:
                dst.flush()
                ready.set()
    finally:
        ready.set()
        dst.close()
        src.close()
