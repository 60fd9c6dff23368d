"""The wall case of ``scada bench hmi --wall``: the estate overview of many buildings at 3840x2160.

An estate of ``--buildings`` generated buildings (a heat meter and one floor of
``--units-each`` valves each; tag values written straight into the TagDatabase, no
simulator) is served on a loopback port; headless Chromium opens ``/hmi/overview?wall=1`` at
3840x2160 and the figures are:

* first complete render: navigation until every building's tile is in the page, the
  document is idle and the next frame is painted (median of ``renders`` loads);
* update-to-screen: once a second every building's heat power changes; from just before
  the write until the page's DOM shows the new power of the first and the last building
  (checked on every animation frame, plus one painted frame and the Playwright round trip).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["overview_bench", "overview_yaml"]

#: Resolve once the overview shows heat power ``want`` for the first and last building.
SHOWN_JS = """([first, last, want, limit]) => new Promise((resolve) => {
  const t0 = performance.now();
  const view = Bokeh.index.query_one((v) => v.model.name === 'estate');
  const shows = (tag) => {
    const el = view.shadow_el.querySelector('[data-tag="' + tag + '"]');
    return el !== null && parseFloat(el.textContent.replace(/,/g, '')) >= want;
  };
  const check = () => {
    if (shows(first) && shows(last)) {
      requestAnimationFrame(() => setTimeout(() => resolve(true), 0));
    } else if (performance.now() - t0 > limit) {
      resolve(null);
    } else {
      requestAnimationFrame(check);
    }
  };
  check();
})"""


def overview_yaml(buildings: int, units: int = 4) -> str:
    """Return a site config of ``buildings`` buildings, each a heat meter and ``units`` valves."""
    lines = [
        "site: {id: wall, name: Wall Estate, timezone: UTC}",
        "templates:",
        "  valve: {role: valve, points: {open: {address: 0, kind: coil, type: bool, writable: true},",
        "          room_c: {address: 0, kind: input, type: int16, scale: 0.1, unit: degC}}}",
        "  heat-meter: {role: heat_meter, points: {energy_kwh: {address: 0, kind: holding, type: float32, unit: kWh},",
        "               power_kw: {address: 2, kind: holding, type: float32, unit: kW},",
        "               supply_c: {address: 6, kind: holding, type: float32, unit: degC},",
        "               return_c: {address: 8, kind: holding, type: float32, unit: degC}}}",
        "channels:",
        *(
            f"  - {{id: bus{c}, protocol: modbus-tcp, host: 127.0.0.1, port: 15998}}"
            for c in range((buildings + 199) // 200)
        ),
        "devices:",
    ]
    for b in range(buildings):
        lines.append(
            f"  - {{id: w{b:03d}.hm, template: heat-meter, channel: bus{b // 200}, "
            f"unit: {b % 200 + 1}, building: w{b:03d}}}"
        )
    lines.append("buildings:")
    for b in range(buildings):
        lines += [
            f"  - id: w{b:03d}",
            f"    name: House {b + 1}",
            f"    heat: {{energy_tag: w{b:03d}.hm.energy_kwh, power_tag: w{b:03d}.hm.power_kw,",
            f"           supply_tag: w{b:03d}.hm.supply_c, return_tag: w{b:03d}.hm.return_c}}",
            "    generate:",
            f"      floors: 1\n      units_per_floor: {units}",
            '      household_id: "{building}.{floor}{unit:02d}"',
            "      area_m2: 70",
            '      valve_tag: "{household}.valve.open"',
            '      room_tag: "{household}.valve.room_c"',
            '      devices: [{id: "{household}.valve", template: valve}]',
            f"      channels: {{create: {{id: 'w{b:03d}-bus', protocol: modbus-tcp, host: 127.0.0.1, port: 16001}}}}",
        ]
    return "\n".join(lines) + "\n"


class WallEstate:
    """The generated estate's database and services."""

    def __init__(self, buildings: int, data_dir: Path) -> None:
        from scada.config import load_site_text
        from scada.runtime import system_tag_defs
        from scada.services.bundle import standalone_services
        from scada.services.plant import Plant
        from tags.database import TagDatabase

        self.site = load_site_text(overview_yaml(buildings), name="wall-estate.yaml")
        db = TagDatabase([*self.site.tag_defs(), *system_tag_defs(self.site)])
        self.db = db
        self.services = standalone_services(Plant(self.site, db), data_dir)
        self.ids = [b.id for b in self.site.buildings]
        self.power_ids = db.ids_of([f"{b}.hm.power_kw" for b in self.ids])
        for d in self.site.devices:
            if f"{d.id}.online" in db:
                db.update(f"{d.id}.online", True)
        for b in self.ids:
            for name, v in (("supply_c", 68.0), ("return_c", 44.0), ("energy_kwh", 1000.0)):
                db.update(f"{b}.hm.{name}", v)
        self.power = 100.0
        self.step()

    def step(self) -> int:
        """Give every building's heat power a new value (one more kW than before)."""
        import numpy as np

        self.power += 1.0
        return self.db.update_many(self.power_ids, np.full(len(self.ids), self.power))

    def close(self) -> None:
        self.services.commands.close()
        self.services.audit.close()
        self.services.users.close()


async def overview_bench(
    buildings: int, renders: int, seconds: float, chromium: str, args: list[str]
) -> dict[str, Any]:
    """Return the wall overview's figures (see the module docstring)."""
    from playwright.async_api import async_playwright

    from hmi.app import apps
    from scada.server.hmi_only import serve_hmi
    from scada.services.auth import SESSION_COOKIE

    times: list[float] = []
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hmi-wall-") as tmp:
        estate = WallEstate(buildings, Path(tmp))
        users = estate.services.users
        users.add_user("wall", "viewer", "wall bench password 1")
        token = users.create_token("wall", kind="session", ttl_s=3600)
        server, port = serve_hmi(apps(estate.services), auth=estate.services.auth)
        url = f"http://127.0.0.1:{port}/hmi/overview?wall=1"
        ready = (
            "(n) => { if (!(window.Bokeh && Bokeh.documents.length)) return false;"
            " const d = Bokeh.documents[0]; const g = d.get_model_by_name('estate');"
            ' return d.is_idle && g && (g.text.match(/class="btile/g) || []).length === n; }'
        )
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=chromium, args=args)
                context = await browser.new_context(viewport={"width": 3840, "height": 2160})
                await context.add_cookies([{"name": SESSION_COOKIE, "value": token, "url": url}])
                for _ in range(renders):
                    page = await context.new_page()
                    t0 = time.perf_counter()
                    await page.goto(url)
                    await page.wait_for_function(ready, arg=buildings, timeout=120000)
                    await page.evaluate(
                        "() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)))"
                    )
                    times.append(time.perf_counter() - t0)
                    await page.close()
                page = await context.new_page()
                await page.goto(url)
                await page.wait_for_function(ready, arg=buildings, timeout=120000)
                first, last = f"{estate.ids[0]}.hm.power_kw", f"{estate.ids[-1]}.hm.power_kw"
                t_end = time.perf_counter() + seconds
                while time.perf_counter() < t_end:
                    tick = time.perf_counter()
                    estate.step()
                    ok = await page.evaluate(SHOWN_JS, [first, last, estate.power, 10000])
                    latencies.append((time.perf_counter() - tick) * 1000.0 if ok else float("nan"))
                    await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - tick)))
                await browser.close()
        finally:
            server.stop()
            estate.close()
    good = sorted(x for x in latencies if x == x)
    return {
        "overview_buildings": buildings,
        "overview_render_s_median": statistics.median(times),
        "overview_render_s_max": max(times),
        "overview_ticks": len(latencies),
        "overview_missed": len(latencies) - len(good),
        "overview_latency_ms_p50": statistics.median(good) if good else float("nan"),
        "overview_latency_ms_p90": good[min(len(good) - 1, int(0.9 * len(good)))]
        if good
        else float("nan"),
    }
