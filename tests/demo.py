"""The demo site for tests: a copy of ``config/`` whose Modbus ports are free right now.

The demo's fixed ports (5020, 5021, ... one per building and the substation) may be held by a
running demo or another test run: every ``port: 50NN`` in the copied YAML files is replaced.
"""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: A fixed demo port in a YAML file (``port: 5020`` ... ``port: 5099``).
DEMO_PORT = re.compile(r"\bport: 50\d\d\b")


def free_port() -> int:
    """Return a TCP port that is free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_site_copy(dest: Path) -> Path:
    """Copy the demo config to ``dest`` with free ports; return the main file's path."""
    shutil.copytree(ROOT / "config", dest, dirs_exist_ok=True)
    taken: set[int] = set()

    def fresh(_: re.Match[str]) -> str:
        port = free_port()
        while port in taken:  # the kernel may hand out a port twice in a row
            port = free_port()
        taken.add(port)
        return f"port: {port}"

    for f in sorted(dest.rglob("*.yaml")):
        text = f.read_text(encoding="utf-8")
        new = DEMO_PORT.sub(fresh, text)
        if new != text:
            f.write_text(new, encoding="utf-8")
    return dest / "demo-site.yaml"
