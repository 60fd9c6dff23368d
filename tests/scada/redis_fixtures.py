"""A real ``redis-server`` on a free loopback port in a temp dir, for the scale-out tests.

``redis_server`` yields a ``RedisServer`` with AOF on (``appendfsync always``) so that
``stop()`` then ``start()`` (same port, same dir) brings back every stream, group and
hash, as a production restart does. Skipped when ``redis-server`` is not installed,
unless ``CI=true`` (then it fails: CI must have it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

READY_LINE = "Ready to accept connections"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process; ``url`` stays the same across ``stop()``/``start()``."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise FileNotFoundError("redis-server")
        self.exe = exe
        self.dir = directory
        self.port = port or _free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 20.0) -> None:
        """Start the server and return once its log says it accepts connections."""
        self.proc = subprocess.Popen(
            [
                self.exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "notice",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        lines: list[str] = []
        for line in self.proc.stdout:  # blocks per line: event-driven, no polling sleep
            lines.append(line)
            if READY_LINE in line:
                return
            if time.monotonic() > deadline:
                break
        self.stop()
        raise RuntimeError("redis-server did not start:\n" + "".join(lines[-20:]))

    def stop(self) -> None:
        """Shut the server down cleanly (SIGTERM: the AOF is flushed) and wait for it."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """Yield a started ``RedisServer`` (see the module docstring)."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed (apt-get install -y redis-server)")
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
