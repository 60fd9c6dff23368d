"""The demo site for tests: a copy of ``config/`` whose Modbus ports are free right now.

The demo's fixed ports (5020, 5021) may be held by a running demo or another test run.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_PORTS = ("port: 5020", "port: 5021")


def free_port() -> int:
    """Return a TCP port that is free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_site_copy(dest: Path) -> Path:
    """Copy the demo config to ``dest`` with free ports; return the main file's path."""
    shutil.copytree(ROOT / "config", dest, dirs_exist_ok=True)
    for f in (dest / "buildings").glob("*.yaml"):
        text = f.read_text(encoding="utf-8")
        for fixed in DEMO_PORTS:
            text = text.replace(fixed, f"port: {free_port()}")
        f.write_text(text, encoding="utf-8")
    return dest / "demo-site.yaml"
