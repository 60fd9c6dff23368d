"""Estate: N buildings of 100 flats, `scada simulate` + `scada run` as processes, measured live.

``scada bench estate --buildings 10 50`` measures each size on a fresh estate. Each building
is 10 floors x 10 flats, every flat with a valve and an electricity meter, plus a heat meter
and a master meter. The devices come from the templates in ``config/templates/standard.yaml``
(valve polled every 30 s, heat and master meter every 10 s; the flats' electricity meters
every ``--meter-poll-s``, 60 s by default). Each building has one Modbus TCP channel on
its own loopback port, and the flats come from the config's own ``generate:`` block. For
each size the bench writes the config into a temporary directory and starts two separate
processes, ``scada simulate CONFIG`` and ``scada run CONFIG --no-simulate --data-dir D``
(embedded SQLite historian). It adds an admin user with an API token before the server
starts and then measures over REST, websocket and ``/proc``:

* start-up: from spawning ``scada run`` until ``GET /readyz`` answers 200; also the time
  until ``/metrics`` counts every device online. The window starts then;
* server CPU over the window of ``--seconds`` (utime + stime from ``/proc/PID/stat``, in
  cores) and RSS (``VmRSS``) at the start and end of the window, and ``VmHWM`` at the end;
* poll freshness per device kind (valve, electricity meter, heat meter, master meter):
  the age of ``<device>.last_ok`` (the wall time of the device's last good reply). A tag's
  ``ts`` only moves when its value changes, so it does not show freshness. Ages are read by
  ``GET /api/tags?pattern=*.last_ok`` at the start and end of the window and every 30 s in
  between, and taken against the time the answer arrived, so they err high by the answer's
  transfer time. Shown as p50 / p99 / max beside the poll period;
* online share: devices whose ``.online`` is true (the lowest share seen in the window);
* event-loop lag: ``system.loop_lag_ms`` (the largest loop delay of the last second), read
  once a second; p50 / p99 / max; beside it ``system.gc_pause_ms`` (the longest garbage
  collector pass of the same second, ``gc_pause_ms`` in JSON), which tells a collector pause
  from other work holding the loop;
* historian: points per second flowing in (the change in written + failed + queued, so
  one batch being written at either end shifts it by up to one flush) and written, and the
  recorder queue at the end of the window (``/metrics``). It keeps up while the queue
  holds at most 2 s of inflow;
* Modbus requests per second, errors, and the channels' last request latency (mean, max),
  and the CPU of the simulator process, which shares the machine;
* REST latency under load: p50 / p99 of ``GET /api/tags/system.loop_lag_ms`` (once a
  second), and of one building's tags and ``GET /api/alarms`` (every 5 s);
* after the window: a websocket client subscribes to ``*``. The figures are the time from
  sending the subscribe until the snapshot has arrived, its size and tag count, and the
  loop lag in the two seconds after it;
* ``--browser``: first render of the HMI overview and of a building page in headless
  Chromium (``/usr/bin/chromium`` via Playwright).

Goals (issue 22): loop lag p99 <= 100 ms and max <= 250 ms; server <= 1 core; every
device within one poll period plus 2 s; start-up <= 15 s; RSS <= 1.5 GiB; the historian
keeps up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from scada.bench.city import building_meters

__all__ = ["GOALS", "add_arguments", "estate_yaml", "run"]

FLOORS = 10
FLATS_PER_FLOOR = 10
TEMPLATES = Path(__file__).resolve().parents[2] / "config" / "templates" / "standard.yaml"
#: Device kinds by the last part of the device id.
KINDS = {"valve": "valve", "em": "electricity meter", "hm": "heat meter", "mm": "master meter"}
SWEEP_EVERY_S = 30.0
#: The flats' electricity meters' poll period: a minute, as billing needs and docs/config.md's
#: 1,000-flat example has (the template's 10 s suits a building's few main meters).
METER_POLL_S = 60.0
REST_EVERY_S = 5.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "estate bench password 1"
GOALS: dict[str, float] = {
    "loop_lag_ms_p99": 100.0,
    "loop_lag_ms_max": 250.0,
    "cpu_cores": 1.0,
    "late_s": 2.0,  # age beyond the poll period
    "startup_s": 15.0,
    "rss_mb": 1536.0,
}


def estate_yaml(
    buildings: int,
    base_port: int,
    templates: Path = TEMPLATES,
    meter_poll_s: float | None = METER_POLL_S,
    connections: int = 1,
) -> str:
    """Return the site config of ``buildings`` generated buildings; building i on ``base_port + i``.

    ``meter_poll_s`` is the flats' electricity meters' poll period (None: the template's);
    ``connections`` the TCP connections each building's channel polls over (docs/drivers.md).
    """
    em_poll = f", poll_s: {meter_poll_s:g}" if meter_poll_s else ""
    width = max(3, len(str(buildings)))
    lines = [
        "site: {id: estate, name: Estate bench, timezone: UTC}",
        f"include: [{json.dumps(str(templates))}]",
        "simulate: {enabled: true, seed: 22}",
        "historian: {backend: sqlite, path: history.sqlite}",
        "channels:",
    ]
    ids = [f"b{i + 1:0{width}d}" for i in range(buildings)]
    for i, b in enumerate(ids):
        lines.append(
            f"  - {{id: {b}-bus, protocol: modbus-tcp, host: 127.0.0.1, port: {base_port + i}"
            + (f", connections: {connections}}}" if connections > 1 else "}")
        )
    lines.append("devices:")
    for b in ids:
        lines += building_meters(b, f"{b}-bus")
    lines.append("buildings:")
    for i, b in enumerate(ids):
        lines += [
            f"  - id: {b}",
            f"    name: Building {i + 1}",
            f"    heat: {{energy_tag: {b}.hm.energy_kwh, power_tag: {b}.hm.power_kw,",
            f"           flow_tag: {b}.hm.flow_m3h, supply_tag: {b}.hm.supply_c,",
            f"           return_tag: {b}.hm.return_c}}",
            f"    electricity: {{master_tag: {b}.mm.energy_kwh}}",
            "    generate:",
            f"      floors: {FLOORS}",
            f"      units_per_floor: {FLATS_PER_FLOOR}",
            "      area_m2: 70",
            '      valve_tag: "{household}.valve.open"',
            '      room_tag: "{household}.valve.room_c"',
            '      setpoint_tag: "{household}.valve.setpoint_c"',
            "      devices:",
            '        - {id: "{household}.valve", template: valve}',
            '        - {id: "{household}.em", template: electricity-meter' + em_poll + "}",
            f"      channels: {{use: [{b}-bus]}}",
        ]
    return "\n".join(lines) + "\n"


def free_ports(n: int, host: str = "127.0.0.1") -> int:
    """Return a base port with ``n`` consecutive ports free on ``host`` a moment ago.

    Below Linux's ephemeral range (32768-60999): a port there may be taken by any process's
    outgoing connection between this check and the simulator's bind.
    """
    low, high = 20000, 32768
    span = high - low - (n + 1)
    if span <= 0:
        raise RuntimeError(f"no room for {n + 1} consecutive ports below {high}")
    first = (os.getpid() * 37) % span
    for i in range(0, span, max(n + 1, 97)):
        base = low + (first + i) % span
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + n + 1):  # one more: the server's port
                s = socket.socket()
                socks.append(s)
                s.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n + 1} consecutive free ports on {host}")


# -- /proc --------------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """Return the CPU seconds (utime + stime) process ``pid`` has used so far."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_mb(pid: int, key: str = "VmRSS") -> float:
    """Return the ``key`` line of ``/proc/PID/status`` (``VmRSS``, ``VmHWM``) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return math.nan


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


# -- figures ------------------------------------------------------------------------------


def stats(xs: list[float]) -> dict[str, float | None]:
    """Return p50 / p99 / max of ``xs`` (None for an empty list); inf where a value is inf."""
    if not xs:
        return {"p50": None, "p99": None, "max": None}
    s = sorted(xs)

    def q(p: float) -> float:
        return s[min(len(s) - 1, int(p * len(s)))]

    return {"p50": statistics.median(s), "p99": q(0.99), "max": s[-1]}


def _finite(obj: Any) -> Any:
    """Return ``obj`` with every non-finite float replaced by None (valid JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def parse_metrics(text: str) -> dict[str, float]:
    """Return Prometheus sample name -> value summed over labels.

    ``scada_channel_latency_seconds`` (per channel, ``stat`` mean or max) becomes
    ``channel_latency_s_mean`` (mean over channels) and ``channel_latency_s_max``.
    """
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    means: list[float] = []
    maxes: list[float] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "scada_channel_latency_seconds":
                stat = sample.labels.get("stat")
                (means if stat == "mean" else maxes).append(float(sample.value))
                continue
            out[sample.name] = out.get(sample.name, 0.0) + float(sample.value)
    if means:
        out["channel_latency_s_mean"] = sum(means) / len(means)
    if maxes:
        out["channel_latency_s_max"] = max(maxes)
    return out


def _kind(device: str) -> str:
    return KINDS.get(device.rsplit(".", 1)[-1], "other")


class Freshness:
    """Ages of ``<device>.last_ok`` and the online share, one sweep over REST at a time."""

    def __init__(self) -> None:
        self.ages: dict[str, list[float]] = {k: [] for k in KINDS.values()}
        self.poll_s: dict[str, float] = {}
        self.worst_late_s = -math.inf
        self.online_min = math.inf
        self.online_last = math.nan
        self.devices = 0
        self.sweeps = 0

    def add(self, last_ok: list[dict[str, Any]], online: list[dict[str, Any]], now: float) -> None:
        """Count one sweep: the tag lists of ``*.last_ok`` and ``*.online`` read at ``now``."""
        for t in last_ok:
            kind = _kind(t.get("device") or t["name"].rsplit(".", 1)[0])
            ts = t.get("value")
            age = now - float(ts) if isinstance(ts, int | float) and ts > 0 else math.inf
            poll = float(t.get("poll_s") or 0.0)
            self.ages.setdefault(kind, []).append(age)
            self.poll_s[kind] = max(self.poll_s.get(kind, 0.0), poll)
            self.worst_late_s = max(self.worst_late_s, age - poll)
        share = sum(1 for t in online if t.get("value") is True) / max(1, len(online))
        self.online_min = min(self.online_min, share)
        self.online_last = share
        self.devices = len(online)
        self.sweeps += 1

    def figures(self) -> dict[str, Any]:
        return {
            "devices": self.devices,
            "freshness_sweeps": self.sweeps,
            "online_share": self.online_last,
            "online_share_min": self.online_min,
            "late_s_max": self.worst_late_s,
            "freshness": {
                kind: {**stats(ages), "poll_s": self.poll_s.get(kind), "n": len(ages)}
                for kind, ages in self.ages.items()
                if ages
            },
        }


# -- one estate ---------------------------------------------------------------------------


class Api:
    """REST calls to the server with a bearer token; each returns (seconds, status, body)."""

    def __init__(self, url: str, token: str) -> None:
        from tornado.httpclient import AsyncHTTPClient

        self.url = url
        self.token = token
        self.http = AsyncHTTPClient(force_instance=True, max_body_size=1 << 31)

    async def get(self, path: str, *, auth: bool = True) -> tuple[float, int, Any]:
        from tornado.httpclient import HTTPRequest

        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        req = HTTPRequest(self.url + path, headers=headers, request_timeout=300)
        t0 = time.perf_counter()
        resp = await self.http.fetch(req, raise_error=False)
        dt = time.perf_counter() - t0
        body: Any = resp.body or b""
        if resp.headers.get("Content-Type", "").startswith("application/json"):
            body = json.loads(body)
        return dt, resp.code, body

    async def tags(self, pattern: str) -> list[dict[str, Any]]:
        _, code, body = await self.get(f"/api/tags?pattern={pattern}&limit=1000000")
        if code != 200:
            raise RuntimeError(f"GET /api/tags?pattern={pattern}: HTTP {code}")
        return list(body["tags"])

    async def metrics(self) -> dict[str, float]:
        _, code, body = await self.get("/metrics")
        if code != 200:
            raise RuntimeError(f"GET /metrics: HTTP {code}")
        return parse_metrics(body.decode())

    def close(self) -> None:
        self.http.close()


def scada_command() -> list[str]:
    """Return the command line of ``scada``: the script next to this interpreter."""
    import sys

    script = Path(sys.executable).with_name("scada")
    return [str(script)] if script.exists() else [sys.executable, "-m", "scada.cli"]


async def _spawn(args: list[str], out: IO[bytes], err: IO[bytes]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *args, stdout=out, stderr=err, start_new_session=True
    )


async def _stop(proc: asyncio.subprocess.Process | None, timeout_s: float = 20.0) -> int | None:
    """Stop ``proc``'s process group: SIGTERM, then SIGKILL after ``timeout_s``."""
    if proc is None:
        return None
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    return proc.returncode


async def _until(check: Callable[[], Any], timeout_s: float, what: str, step_s: float = 0.1) -> Any:
    """Await ``check()`` (a coroutine function) until it returns a truthy value."""
    end = time.perf_counter() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.perf_counter() > end:
            raise TimeoutError(f"{what} not within {timeout_s:g} s")
        await asyncio.sleep(step_s)


class Estate:
    """One size: config, the two processes, the measurements (``measure()``)."""

    def __init__(
        self,
        buildings: int,
        seconds: float,
        browser: bool,
        tmp: Path,
        meter_poll_s: float | None = METER_POLL_S,
        connections: int = 1,
    ) -> None:
        self.buildings = buildings
        self.seconds = seconds
        self.browser = browser
        self.tmp = tmp
        self.data_dir = tmp / "var"
        self.base_port = free_ports(buildings)
        self.port = self.base_port + buildings
        self.config = tmp / "estate.yaml"
        self.config.write_text(
            estate_yaml(
                buildings, self.base_port, meter_poll_s=meter_poll_s, connections=connections
            ),
            encoding="utf-8",
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.sim: asyncio.subprocess.Process | None = None
        self.server: asyncio.subprocess.Process | None = None
        self.fig: dict[str, Any] = {
            "buildings": buildings,
            "flats": buildings * 100,
            "connections": connections,
        }

    def _users(self) -> tuple[str, str]:
        """Add the bench's admin; return (API token, HMI session token)."""
        from scada.services.auth import Role
        from scada.services.users import UserStore

        with UserStore.in_data_dir(self.data_dir) as store:
            store.add_user("bench", Role.ADMIN, PASSWORD)
            return (
                store.create_token("bench", label="scada bench estate"),
                store.create_token("bench", kind="session", ttl_s=3600),
            )

    async def measure(self) -> dict[str, Any]:
        """Run the estate and return its figures; the processes are stopped in any case."""
        self.data_dir.mkdir()
        token, session = self._users()
        api = Api(self.url, token)
        try:
            with contextlib.ExitStack() as files:

                def log(name: str) -> IO[bytes]:
                    return files.enter_context(open(self.tmp / name, "wb"))

                await self._start(api, log)
                await self._window(api)
                await self._snapshot(api, token)
                if self.browser:
                    self.fig.update(await self._browser(session))
                assert self.server is not None
                self.fig["rss_mb_peak"] = status_mb(self.server.pid, "VmHWM")
        finally:
            api.close()
            self.fig["server_exit"] = await _stop(self.server)
            self.fig["simulator_exit"] = await _stop(self.sim)
        return self.fig

    async def _start(self, api: Api, log: Callable[[str], IO[bytes]]) -> None:
        """Start ``scada simulate``, then ``scada run``; wait until ready and every device online."""
        t0 = time.perf_counter()
        self.sim = await _spawn(
            [*scada_command(), "simulate", str(self.config), "--json"],
            log("simulate.out"),
            log("simulate.err"),
        )

        async def sim_ready() -> bool:
            if self.sim is not None and self.sim.returncode is not None:
                raise RuntimeError(f"scada simulate exited: {self._tail('simulate.err')}")
            return (self.tmp / "simulate.out").read_bytes().endswith(b"\n")

        await _until(sim_ready, 60 + self.buildings, "scada simulate listening", 0.05)
        self.fig["simulator_startup_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.server = await _spawn(
            [
                *scada_command(),
                "run",
                str(self.config),
                "--no-simulate",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
            ],
            log("run.out"),
            log("run.err"),
        )

        async def ready() -> bool:
            from tornado.httpclient import HTTPClientError

            if self.server is not None and self.server.returncode is not None:
                raise RuntimeError(f"scada run exited: {self._tail('run.err')}")
            try:
                return (await api.get("/readyz", auth=False))[1] == 200
            except (OSError, HTTPClientError):  # not listening yet
                return False

        await _until(ready, 120 + self.buildings, "GET /readyz 200", 0.05)
        self.fig["startup_s"] = time.perf_counter() - t0

        devices = self.buildings * (2 * FLOORS * FLATS_PER_FLOOR + 2)

        async def all_online() -> bool:  # from /metrics: far cheaper than listing the tags
            m = await api.metrics()
            online = m.get("scada_channel_devices_online", 0.0)
            return m.get("scada_channel_devices") == devices and online == devices

        await _until(all_online, 120 + self.buildings, "every device online", 1.0)
        self.fig["all_online_s"] = time.perf_counter() - t0

    def _tail(self, name: str) -> str:
        text = (self.tmp / name).read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-5:])

    async def _window(self, api: Api) -> None:
        """Measure for ``seconds``: CPU, RSS, loop lag, freshness, REST latency, historian."""
        assert self.server is not None
        pid = self.server.pid
        fresh = Freshness()
        lags: list[float] = []
        gc_pauses: list[float] = []  # system.gc_pause_ms: how much of the lag is the collector
        rest: dict[str, list[float]] = {"tag": [], "building": [], "alarms": []}
        ids = [f"b{i + 1:0{max(3, len(str(self.buildings)))}d}" for i in range(self.buildings)]

        async def sweep() -> None:
            last_ok, online = await asyncio.gather(api.tags("*.last_ok"), api.tags("*.online"))
            fresh.add(last_ok, online, time.time())

        assert self.sim is not None
        m0 = await api.metrics()
        sim0, own0 = cpu_s(self.sim.pid), _own_cpu_s()
        cpu0, rss0, w0 = cpu_s(pid), status_mb(pid), time.perf_counter()
        end = w0 + self.seconds

        async def lag_loop() -> None:
            k = 0
            while (due := w0 + k) < end:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                dt, code, body = await api.get("/api/tags/system.loop_lag_ms")
                rest["tag"].append(dt * 1000.0)
                if code == 200 and isinstance(body.get("value"), int | float):
                    lags.append(float(body["value"]))
                _, code, body = await api.get("/api/tags/system.gc_pause_ms")
                if code == 200 and isinstance(body.get("value"), int | float):
                    gc_pauses.append(float(body["value"]))
                k += 1

        async def rest_loop() -> None:
            k = 0
            while (due := w0 + 0.5 + k * REST_EVERY_S) < end:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                dt, _, _ = await api.get(f"/api/tags?building={ids[k % len(ids)]}")
                rest["building"].append(dt * 1000.0)
                dt, _, _ = await api.get("/api/alarms")
                rest["alarms"].append(dt * 1000.0)
                k += 1

        async def sweep_loop() -> None:
            k = 0
            while (due := w0 + k * SWEEP_EVERY_S) < end - 1.0:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                await sweep()
                k += 1

        await asyncio.gather(lag_loop(), rest_loop(), sweep_loop())
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        wall = time.perf_counter() - w0
        cpu1, rss1 = cpu_s(pid), status_mb(pid)
        sim1, own1 = cpu_s(self.sim.pid), _own_cpu_s()
        m1 = await api.metrics()
        await sweep()

        def delta(name: str) -> float:
            return m1.get(name, math.nan) - m0.get(name, math.nan)

        flowed = sum(
            delta(n)
            for n in (
                "scada_historian_points_written_total",
                "scada_historian_points_failed_total",
                "scada_historian_queue",
            )
        )
        inflow, written = flowed / wall, delta("scada_historian_points_written_total") / wall
        queue = m1.get("scada_historian_queue", math.nan)
        self.fig.update(
            {
                "seconds": wall,
                "tags": int(m1.get("scada_tags", 0)),
                "cpu_cores": (cpu1 - cpu0) / wall,
                "rss_mb_start": rss0,
                "rss_mb_end": rss1,
                "loop_lag_ms": stats(lags),
                "loop_lag_samples": len(lags),
                "gc_pause_ms": stats(gc_pauses),
                "historian_in_per_s": inflow,
                "historian_written_per_s": written,
                "historian_queue_start": m0.get("scada_historian_queue"),
                "historian_queue_end": queue,
                "historian_spool_points": m1.get("scada_historian_spool_points"),
                "historian_keeps_up": bool(queue <= max(1000.0, 2.0 * inflow)),
                "tag_changes_per_s": delta("scada_tag_changes_total") / wall,
                "modbus_requests_per_s": delta("scada_channel_requests_total") / wall,
                "modbus_errors": delta("scada_channel_errors_total"),
                "modbus_latency_ms_mean": m1.get("channel_latency_s_mean", math.nan) * 1000.0,
                "modbus_latency_ms_max": m1.get("channel_latency_s_max", math.nan) * 1000.0,
                "simulator_cpu_cores": (sim1 - sim0) / wall,
                "bench_cpu_cores": (own1 - own0) / wall,
                "load_avg_1min": os.getloadavg()[0],
                "rest_ms": {k: stats(v) for k, v in rest.items()},
                **fresh.figures(),
            }
        )

    async def _snapshot(self, api: Api, token: str) -> None:
        """Subscribe to ``*`` over the websocket; time the snapshot, then read the loop lag."""
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        req = HTTPRequest(
            self.url.replace("http", "ws", 1) + "/ws",
            headers={"Authorization": f"Bearer {token}"},
        )
        conn = await websocket_connect(req, max_message_size=1 << 31)
        try:
            t0 = time.perf_counter()
            await conn.write_message(json.dumps({"op": "subscribe", "patterns": ["*"]}))
            size, count, messages = 0, 0, 0
            while True:
                msg = await asyncio.wait_for(conn.read_message(), 300)
                if msg is None:
                    raise RuntimeError("websocket closed before the snapshot")
                data = json.loads(msg)
                if data.get("type") != "snapshot":
                    continue
                size += len(msg)
                count += len(data.get("tags", {}))
                messages += 1
                if not data.get("more"):  # one message today; parts would say "more"
                    break
            self.fig["ws_snapshot_s"] = time.perf_counter() - t0
            self.fig["ws_snapshot_mb"] = size / 2**20
            self.fig["ws_snapshot_tags"] = count
            self.fig["ws_snapshot_messages"] = messages
            after: list[float] = []
            for _ in range(2):  # the lag tag covers the last second: read the next two
                await asyncio.sleep(1.05)
                _, code, body = await api.get("/api/tags/system.loop_lag_ms")
                if code == 200 and isinstance(body.get("value"), int | float):
                    after.append(float(body["value"]))
            self.fig["ws_snapshot_loop_lag_ms"] = max(after) if after else None
        finally:
            conn.close()

    async def _browser(self, session: str) -> dict[str, Any]:
        """Time the first render of the overview and of the first building in Chromium."""
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import async_playwright

        from scada.services.auth import SESSION_COOKIE

        overview_ready = (
            "(n) => { if (!(window.Bokeh && Bokeh.documents.length)) return false;"
            " const d = Bokeh.documents[0]; const g = d.get_model_by_name('estate');"
            ' return d.is_idle && g && (g.text.match(/class="btile/g) || []).length === n; }'
        )
        building_ready = (
            "(n) => { if (!(window.Bokeh && Bokeh.documents.length)) return false;"
            " const d = Bokeh.documents[0]; const m = d.get_model_by_name('mimic-units');"
            " return d.is_idle && m && m.data.household.length === n; }"
        )
        first = f"b{1:0{max(3, len(str(self.buildings)))}d}"
        pages = {
            "hmi_overview_s": (f"{self.url}/hmi/overview", overview_ready, self.buildings),
            "hmi_building_s": (f"{self.url}/hmi/building?building={first}", building_ready, 100),
        }
        out: dict[str, Any] = {}
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context(viewport={"width": 1920, "height": 1080})
                await context.add_cookies(
                    [{"name": SESSION_COOKIE, "value": session, "url": self.url}]
                )
                for key, (url, ready, n) in pages.items():
                    page = await context.new_page()
                    t0 = time.perf_counter()
                    await page.goto(url)
                    try:
                        await page.wait_for_function(ready, arg=n, timeout=120000)
                        await page.evaluate(
                            "() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)))"
                        )
                        out[key] = time.perf_counter() - t0
                    except PlaywrightError as exc:  # a page that never renders is a figure too
                        out[key] = None
                        out[key + "_error"] = str(exc).splitlines()[0]
                    await page.close()
            finally:
                await browser.close()
        return out


def goals_missed(fig: dict[str, Any]) -> list[str]:
    """Return the goals of issue 22 that ``fig`` misses, each as a short text."""
    missed = []
    lag = fig.get("loop_lag_ms") or {}

    def over(value: Any, goal: float) -> bool:
        return value is None or (isinstance(value, float) and math.isnan(value)) or value > goal

    if over(lag.get("p99"), GOALS["loop_lag_ms_p99"]):
        missed.append(f"loop lag p99 {lag.get('p99')} > {GOALS['loop_lag_ms_p99']:g} ms")
    if over(lag.get("max"), GOALS["loop_lag_ms_max"]):
        missed.append(f"loop lag max {lag.get('max')} > {GOALS['loop_lag_ms_max']:g} ms")
    if over(fig.get("cpu_cores"), GOALS["cpu_cores"]):
        missed.append(f"server CPU {fig.get('cpu_cores', 0):.2f} > 1 core")
    if over(fig.get("late_s_max"), GOALS["late_s"]):
        missed.append(f"a device {fig.get('late_s_max', 0):.1f} s past its poll period (> 2 s)")
    if over(fig.get("startup_s"), GOALS["startup_s"]):
        missed.append(f"start-up {fig.get('startup_s', 0):.1f} s > 15 s")
    if over(max(fig.get("rss_mb_end", 0.0), fig.get("rss_mb_peak", 0.0)), GOALS["rss_mb"]):
        missed.append(f"RSS {fig.get('rss_mb_peak', 0):.0f} MiB > 1.5 GiB")
    if not fig.get("historian_keeps_up"):
        missed.append(f"historian queue {fig.get('historian_queue_end')} not bounded")
    if fig.get("online_share_min") != 1.0:
        missed.append(f"online share {fig.get('online_share_min')} < 1")
    return missed


# -- the command --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--buildings",
        type=int,
        nargs="+",
        default=[10],
        metavar="N",
        help="estate sizes in buildings of 100 flats, each a fresh estate (default 10)",
    )
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="measurement window after start-up (default 60)"
    )
    parser.add_argument(
        "--browser",
        action="store_true",
        help=f"also time the HMI overview and a building page in Chromium ({CHROMIUM})",
    )
    parser.add_argument(
        "--meter-poll-s",
        type=float,
        default=METER_POLL_S,
        help=f"poll period of the flats' electricity meters (default {METER_POLL_S:g}; "
        "0: the template's 10 s)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=1,
        help="TCP connections each building's channel polls over (default 1; docs/drivers.md)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


async def measure(
    buildings: int,
    seconds: float,
    browser: bool,
    meter_poll_s: float | None = METER_POLL_S,
    connections: int = 1,
) -> dict[str, Any]:
    """Generate, run and measure one estate of ``buildings`` buildings; return its figures."""
    keep = os.environ.get("SCADA_BENCH_KEEP_DIR")
    if keep:  # for a diagnosis: the config, data and the processes' logs stay there
        where = Path(keep) / f"estate-{buildings}"
        where.mkdir(parents=True, exist_ok=False)
        return await Estate(buildings, seconds, browser, where, meter_poll_s, connections).measure()
    with tempfile.TemporaryDirectory(prefix=f"estate-{buildings}-") as tmp:
        estate = Estate(buildings, seconds, browser, Path(tmp), meter_poll_s, connections)
        return await estate.measure()


def run(args: argparse.Namespace) -> int:
    if any(n < 1 for n in args.buildings) or args.seconds <= 0 or not 1 <= args.connections <= 16:
        print("scada bench estate: --buildings must be >= 1, --seconds > 0, --connections 1 to 16")
        return 2
    if args.browser and not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} not found: install Debian's chromium or leave out --browser")
        return 2
    sizes = []
    for n in args.buildings:
        fig = asyncio.run(
            measure(n, args.seconds, args.browser, args.meter_poll_s or None, args.connections)
        )
        fig["goals_missed"] = goals_missed(fig)
        sizes.append(fig)
        if not args.json:
            if len(sizes) == 1:
                print(_header(args))
            print(_row(fig, args.browser), flush=True)
    if args.json:
        print(json.dumps(_finite({"goals": GOALS, "sizes": sizes}), indent=2))
    else:
        for fig in sizes:
            missed = fig["goals_missed"]
            print(
                f"{fig['buildings']} buildings: "
                + ("every goal met" if not missed else "missed: " + "; ".join(missed))
            )
    return 0


def _n(x: Any, fmt: str = ".0f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, fmt)


def _three(d: dict[str, Any] | None, fmt: str = ".0f") -> str:
    d = d or {}
    return "/".join(_n(d.get(k), fmt) for k in ("p50", "p99", "max"))


COLUMNS = (
    ("bldgs", 5), ("tags", 7), ("start s", 7), ("online", 6), ("CPU", 5), ("sim CPU", 7),
    ("RSS MiB", 10), ("lag ms p50/99/max", 17), ("late s", 6),
    ("valve age s", 18), ("elec age s", 18), ("heat age s", 18), ("master age s", 18),
    ("req/s", 6), ("errs", 5), ("Modbus ms avg/max", 17), ("hist in/wr pts/s", 16), ("queue", 7), ("ws snap s/MiB", 13),
    ("REST ms tag bldg alarms p50/99", 30),
)  # fmt: skip


def _header(args: argparse.Namespace) -> str:
    cols = list(COLUMNS) + ([("HMI ov/bldg s", 13)] if args.browser else [])
    head = "  ".join(name.rjust(w) for name, w in cols)
    goal = {
        "start s": "<=15",
        "online": "1",
        "CPU": "<=1",
        "RSS MiB": "<=1536",
        "lag ms p50/99/max": "-/<=100/<=250",
        "late s": "<=2",
        "queue": "bounded",
    }
    goals = "  ".join(goal.get(name, "").rjust(w) for name, w in cols)
    return (
        f"scada bench estate: {FLOORS}x{FLATS_PER_FLOOR} flats per building (valve + electricity "
        f"meter each), heat + master meter, one Modbus TCP channel per building"
        f"{f' over {args.connections} connections' if args.connections > 1 else ''}; "
        f"{args.seconds:g} s window; ages p50/p99/max against the poll period\n{head}\n{goals}"
    )


def _row(fig: dict[str, Any], browser: bool) -> str:
    fresh = fig.get("freshness", {})
    rest = fig.get("rest_ms", {})

    def age(kind: str) -> str:
        f = fresh.get(kind) or {}
        return f"{_three(f, '.1f')}({_n(f.get('poll_s'), 'g')})"

    cells = [
        str(fig["buildings"]),
        str(fig.get("tags", "-")),
        _n(fig.get("startup_s"), ".1f"),
        _n(fig.get("online_share_min"), ".2f"),
        _n(fig.get("cpu_cores"), ".2f"),
        _n(fig.get("simulator_cpu_cores"), ".2f"),
        f"{_n(fig.get('rss_mb_start'))}>{_n(fig.get('rss_mb_end'))}",
        _three(fig.get("loop_lag_ms")),
        _n(fig.get("late_s_max"), "+.1f"),
        age("valve"),
        age("electricity meter"),
        age("heat meter"),
        age("master meter"),
        _n(fig.get("modbus_requests_per_s")),
        _n(fig.get("modbus_errors")),
        f"{_n(fig.get('modbus_latency_ms_mean'), '.1f')}/{_n(fig.get('modbus_latency_ms_max'), '.1f')}",
        f"{_n(fig.get('historian_in_per_s'))}/{_n(fig.get('historian_written_per_s'))}",
        _n(fig.get("historian_queue_end")),
        f"{_n(fig.get('ws_snapshot_s'), '.2f')}/{_n(fig.get('ws_snapshot_mb'), '.1f')}",
        " ".join(
            f"{_n((rest.get(k) or {}).get('p50'))}/{_n((rest.get(k) or {}).get('p99'))}"
            for k in ("tag", "building", "alarms")
        ),
    ]
    if browser:
        cells.append(
            f"{_n(fig.get('hmi_overview_s'), '.1f')}/{_n(fig.get('hmi_building_s'), '.1f')}"
        )
    widths = [w for _, w in COLUMNS] + [13]
    return "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=False))
