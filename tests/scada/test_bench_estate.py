"""``scada bench estate``: the generated estate and the figures of a short run (no timings asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter

import pytest

from scada.bench.estate import KINDS, METER_POLL_S, estate_yaml, free_ports, parse_metrics
from scada.config import load_site_text
from scada.runtime import system_tag_defs

CLI = [sys.executable, "-m", "scada.cli"]


def _expected_tags(buildings: int) -> int:
    site = load_site_text(estate_yaml(buildings, 30000), name="estate.yaml")
    return len(site.tag_defs()) + len(system_tag_defs(site))


def test_generated_estate_has_100_flats_per_building_on_one_channel_each() -> None:
    site = load_site_text(estate_yaml(3, 30000), name="estate.yaml")
    assert [b.id for b in site.buildings] == ["b001", "b002", "b003"]
    assert [len(b.households) for b in site.buildings] == [100, 100, 100]
    assert [(c.id, c.port) for c in site.channels] == [
        ("b001-bus", 30000),
        ("b002-bus", 30001),
        ("b003-bus", 30002),
    ]
    kinds = Counter(KINDS[d.id.rsplit(".", 1)[-1]] for d in site.devices)
    assert kinds == {"valve": 300, "electricity meter": 300, "heat meter": 3, "master meter": 3}
    for channel in site.channels:
        units = [d.unit for d in site.devices if d.channel == channel.id]
        assert len(units) == 202 and len(set(units)) == 202 and max(units) <= 247
    valve = next(d for d in site.devices if d.id == "b001.101.valve")
    assert {"open", "room_c", "setpoint_c", "fault"} <= set(site.templates[valve.template].points)


def test_metrics_parser_sums_labels() -> None:
    text = (
        "# TYPE scada_channel_requests counter\n"
        'scada_channel_requests_total{channel="a"} 3.0\n'
        'scada_channel_requests_total{channel="b"} 4.0\n'
        "# TYPE scada_tags gauge\nscada_tags 12.0\n"
    )
    assert parse_metrics(text) == {"scada_channel_requests_total": 7.0, "scada_tags": 12.0}


def test_free_ports_gives_a_bindable_range() -> None:
    import socket

    base = free_ports(5)
    assert base >= 20000 and base + 5 < 32768  # below the ephemeral ports other sockets take
    with socket.socket() as s:
        s.bind(("127.0.0.1", base + 5))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_buildings_for_five_seconds_report_sane_figures() -> None:
    proc = subprocess.run(
        [*CLI, "bench", "estate", "--buildings", "2", "--seconds", "5", "--json"],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["goals"]["loop_lag_ms_p99"] == 100.0
    (fig,) = report["sizes"]
    assert (fig["buildings"], fig["flats"], fig["devices"]) == (2, 200, 404)
    # both processes were started, answered and stopped cleanly
    assert fig["server_exit"] == 0 and fig["simulator_exit"] == 0
    assert fig["startup_s"] > 0 and fig["all_online_s"] >= fig["startup_s"]
    assert fig["online_share"] == 1.0 and fig["online_share_min"] == 1.0
    assert fig["cpu_cores"] > 0
    assert fig["rss_mb_start"] > 0 and 0 < fig["rss_mb_end"] <= fig["rss_mb_peak"]
    assert fig["loop_lag_samples"] >= 3
    assert all(fig["loop_lag_ms"][k] is not None for k in ("p50", "p99", "max"))
    polls = {
        "valve": 30.0,
        "electricity meter": METER_POLL_S,
        "heat meter": 10.0,
        "master meter": 10.0,
    }
    for kind, poll_s in polls.items():
        fresh = fig["freshness"][kind]
        assert fresh["poll_s"] == poll_s
        assert fresh["max"] is not None and math.isfinite(fresh["max"]), kind
        assert 0 <= fresh["p50"] <= fresh["p99"] <= fresh["max"]
    assert fig["freshness_sweeps"] >= 2
    assert fig["late_s_max"] is not None
    expected = _expected_tags(2)
    assert fig["tags"] == expected
    assert fig["ws_snapshot_tags"] == expected and fig["ws_snapshot_mb"] > 0
    assert fig["historian_queue_end"] is not None and fig["historian_written_per_s"] >= 0
    for kind in ("tag", "building", "alarms"):
        assert fig["rest_ms"][kind]["p50"] > 0
    assert isinstance(fig["goals_missed"], list)
