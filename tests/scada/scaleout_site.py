"""A small two-building site on free loopback ports, for the scale-out tests."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from scada.config import load_site
from tags.model import Quality

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "config" / "templates" / "standard.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_site(directory: Path, site_id: str = "t9") -> Path:
    """Write the site YAML into ``directory`` and return its path."""
    p1, p2 = _free_port(), _free_port()
    text = f"""
site: {{id: {site_id}, name: Scale-out test, timezone: UTC}}
simulate: {{enabled: true, speed: 30, seed: 3}}
historian: {{backend: sqlite, path: history.sqlite}}
include: [{TEMPLATES}]
channels:
  - {{id: b1-bus, protocol: modbus-tcp, host: 127.0.0.1, port: {p1}, poll_s: 0.2, timeout_s: 0.2, retries: 0}}
  - {{id: b2-bus, protocol: modbus-tcp, host: 127.0.0.1, port: {p2}, poll_s: 0.2, timeout_s: 0.2, retries: 0}}
devices:
  - {{id: b1.hm, template: heat-meter, channel: b1-bus, unit: 1, poll_s: 0.2}}
  - {{id: b1.101.valve, template: valve, channel: b1-bus, unit: 11, poll_s: 0.2}}
  - {{id: b1.101.em, template: electricity-meter, channel: b1-bus, unit: 21, poll_s: 0.2}}
  - {{id: b2.hm, template: heat-meter, channel: b2-bus, unit: 1, poll_s: 0.2}}
  - {{id: b2.101.valve, template: valve, channel: b2-bus, unit: 11, poll_s: 0.2}}
tags:
  - {{name: {site_id}.b1_power, type: float, expr: "sum(tags('b1.*.em.power_kw'))"}}
  - {{name: {site_id}.note, type: str, initial: ""}}
buildings:
  - id: b1
    heat: {{energy_tag: b1.hm.energy_kwh, power_tag: b1.hm.power_kw}}
    households:
      - {{id: b1.101, area_m2: 80, valve_tag: b1.101.valve.open, room_tag: b1.101.valve.room_c,
          setpoint_tag: b1.101.valve.setpoint_c, tags: [b1.101.em.energy_kwh]}}
  - id: b2
    heat: {{energy_tag: b2.hm.energy_kwh, power_tag: b2.hm.power_kw}}
    households:
      - {{id: b2.101, area_m2: 70, valve_tag: b2.101.valve.open, room_tag: b2.101.valve.room_c,
          setpoint_tag: b2.101.valve.setpoint_c}}
"""
    path = directory / "site.yaml"
    path.write_text(text)
    return path


def load(directory: Path) -> Any:
    """Write and load the site."""
    return load_site(write_site(directory))


async def wait_for(db: Any, names: list[str], predicate: Any, timeout_s: float = 20.0) -> None:
    """Wait until ``predicate(db)`` holds, re-checking on every change of ``names`` (no polling)."""
    done = asyncio.Event()

    def check(_batch: Any = None) -> None:
        if predicate(db):
            done.set()

    unsubscribe = db.subscribe(names, check)
    try:
        check()
        await asyncio.wait_for(done.wait(), timeout_s)
    finally:
        unsubscribe()


def all_good(names: list[str]) -> Any:
    """Return a predicate: every tag of ``names`` has good quality."""
    return lambda db: all(db.read(n).quality is Quality.GOOD for n in names)
