"""Prometheus metrics at ``/metrics`` (prometheus-client exposition format).

Every figure is read from the running parts at scrape time (a custom collector on a
registry of its own, so several servers in one process do not collide):

* per channel: requests sent, request errors, devices online / total, the mean and max
  of the devices' last request latency (the poll cycle time of one request);
* tag changes published (a counter: ``rate()`` gives tag updates/s) and the tag count;
* websocket clients and messages sent;
* alarms by state (active, unacked, shelved, suppressed, out of service);
* historian samples queued in the recorder, spool points, backend health;
* command results by state;
* the runtime's own health (``scada.health``): every numeric or boolean ``system.*`` tag
  with a value, as ``scada_system_<name>`` in Prometheus' base units (:func:`health_metric`:
  ``system.loop_lag_ms`` -> ``scada_system_loop_lag_seconds``, ``system.disk_free_mb`` ->
  ``scada_system_disk_free_bytes``, ``system.uptime_s`` -> ``scada_system_uptime_seconds``;
  booleans as 1/0), so that ``promtool check metrics`` accepts the exposition.

Threading: the collector runs on the loop thread (``/metrics`` handler).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from scada.server.context import ServerContext

__all__ = [
    "BASE_UNITS",
    "CONTENT_TYPE",
    "ScadaCollector",
    "health_metric",
    "make_registry",
    "render",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

BASE_UNITS: dict[str, tuple[str, float, frozenset[str]]] = {
    # tag unit: (Prometheus base unit, factor to it, the unit's words in a tag name)
    "s": ("seconds", 1.0, frozenset({"s", "sec", "seconds"})),
    "ms": ("seconds", 1e-3, frozenset({"ms"})),
    "h": ("seconds", 3600.0, frozenset({"h", "hours"})),
    "d": ("seconds", 86400.0, frozenset({"d", "days"})),
    "MB": ("bytes", float(2**20), frozenset({"mb"})),  # scada.health counts MiB
}
"""Units of health tags converted to Prometheus base units (promtool's naming rules)."""


def health_metric(name: str, unit: str, value: float) -> tuple[str, str, float]:
    """Return ``(metric name, base unit or "", value in it)`` for the health tag ``name``.

    A tag whose ``unit`` is in :data:`BASE_UNITS` loses the unit's words from its name and
    gets the base unit as suffix (``system.tls_days_left``, unit ``d`` ->
    ``scada_system_tls_left_seconds``); other tags keep name and value.
    """
    metric = "scada_" + name.replace(".", "_")
    base = BASE_UNITS.get(unit)
    if base is None:
        return metric, "", value
    base_unit, factor, words = base
    kept = [w for w in metric.split("_") if w.lower() not in words]
    value *= factor
    if base_unit == "bytes":
        value = float(round(value))
    return "_".join([*kept, base_unit]), base_unit, value


class ScadaCollector(Collector):
    """Collect the figures of one server context (module docstring)."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        yield from self._channels()
        db = self.ctx.services.db
        hub = self.ctx.hub
        assert hub is not None
        c = CounterMetricFamily("scada_tag_changes", "Tag changes published on the bus")
        c.add_metric([], float(hub.changes_seen))
        yield c
        g = GaugeMetricFamily("scada_tags", "Tags in the tag database")
        g.add_metric([], float(len(db)))
        yield g
        g = GaugeMetricFamily("scada_websocket_clients", "Connected websocket clients")
        g.add_metric([], float(len(hub.clients)))
        yield g
        c = CounterMetricFamily("scada_websocket_messages", "Websocket messages sent")
        c.add_metric([], float(hub.messages_sent))
        yield c
        c = CounterMetricFamily("scada_websocket_connections", "Websocket connections opened")
        c.add_metric([], float(self.ctx.ws_opened))
        yield c
        yield from self._alarms()
        yield from self._historian()
        yield from self._health()
        c = CounterMetricFamily(
            "scada_commands", "Command steps by resulting state", labels=["state"]
        )
        for state, n in sorted(self.ctx.commands.counts.items()):
            c.add_metric([state], float(n))
        yield c
        c = CounterMetricFamily(
            "scada_http_requests", "REST requests by status class", labels=["status"]
        )
        for status, n in sorted(self.ctx.http_counts.items()):
            c.add_metric([status], float(n))
        yield c

    def _channels(self) -> Iterator[Metric]:
        drivers = self.ctx.services.plant.drivers
        req = CounterMetricFamily(
            "scada_channel_requests", "Requests sent per channel", labels=["channel"]
        )
        err = CounterMetricFamily(
            "scada_channel_errors", "Failed requests per channel", labels=["channel"]
        )
        online = GaugeMetricFamily(
            "scada_channel_devices_online", "Devices online per channel", labels=["channel"]
        )
        total = GaugeMetricFamily(
            "scada_channel_devices", "Devices per channel", labels=["channel"]
        )
        lat = GaugeMetricFamily(
            "scada_channel_latency_seconds",
            "Last request latency per channel (mean and max over devices)",
            labels=["channel", "stat"],
        )
        for cid, driver in (getattr(drivers, "drivers", {}) or {}).items():
            status: dict[str, Any] = getattr(driver, "status", {}) or {}
            req.add_metric([cid], float(getattr(driver, "requests_sent", 0)))
            err.add_metric([cid], float(sum(s.errors for s in status.values())))
            online.add_metric([cid], float(sum(1 for s in status.values() if s.online)))
            total.add_metric([cid], float(len(getattr(driver, "devices", {}))))
            lats = [
                s.latency_ms / 1000.0
                for s in status.values()
                if s.online and not math.isnan(s.latency_ms)
            ]
            if lats:
                lat.add_metric([cid, "mean"], sum(lats) / len(lats))
                lat.add_metric([cid, "max"], max(lats))
        yield from (req, err, online, total, lat)

    def _alarms(self) -> Iterator[Metric]:
        alarms = self.ctx.alarms
        g = GaugeMetricFamily(
            "scada_alarms", "Alarm points by state and area (all: totals)", labels=["state", "area"]
        )
        if alarms is not None:
            for key, n in sorted(alarms.counts().items()):
                area, _, state = key.rpartition(".")
                g.add_metric([state, area or "all"], float(n))
        yield g

    def _historian(self) -> Iterator[Metric]:
        recorder = self.ctx.services.recorder
        historian = self.ctx.services.historian
        q = GaugeMetricFamily("scada_historian_queue", "Samples waiting in the recorder")
        q.add_metric([], float(len(getattr(recorder, "_pending", ()) or ())))
        yield q
        s = GaugeMetricFamily(
            "scada_historian_spool_points", "Points in the store-and-forward spool"
        )
        s.add_metric([], float(getattr(historian, "spool_points", 0) or 0))
        yield s
        ok = GaugeMetricFamily("scada_historian_backend_ok", "Historian backend reachable (1/0)")
        status = recorder.status() if recorder is not None else {}
        ok.add_metric([], 1.0 if status.get("historian.backend_ok", historian is not None) else 0.0)
        yield ok
        for attr, name in (
            ("points_written", "scada_historian_points_written"),
            ("points_failed", "scada_historian_points_failed"),
        ):
            c = CounterMetricFamily(name, f"Historian {attr.replace('_', ' ')}")
            c.add_metric([], float(getattr(recorder, attr, 0) or 0))
            yield c

    def _health(self) -> Iterator[Metric]:
        db = self.ctx.services.db
        for name in db.match("system.*"):
            tv = db.read(name)
            value = tv.value
            if isinstance(value, bool):
                value = 1.0 if value else 0.0
            if not isinstance(value, int | float) or not math.isfinite(value):
                continue  # no value yet (no TLS, no backups) or text
            d = db.definition(name)
            metric, unit, base_value = health_metric(name, d.unit, float(value))
            text = d.description or name
            if unit:
                text += f" (tag {name} in {d.unit}, here in {unit})"
            g = GaugeMetricFamily(metric, text, unit=unit)
            g.add_metric([], base_value)
            yield g


def make_registry(ctx: ServerContext) -> CollectorRegistry:
    """Return a registry holding the collector of ``ctx``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScadaCollector(ctx))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """Return the exposition text of ``registry``."""
    return generate_latest(registry)
