"""``/metrics`` of a running server passes Prometheus' own linter (issue 18, item 17).

``promtool check metrics`` (Debian's ``prometheus`` package, see scripts/system-deps.sh)
reads a real scrape; it objects to non-base units such as ``_ms``, ``_mb`` or ``_h``.
Skipped without promtool, except in CI (``CI=true``), where it must be installed.
"""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scada.server.metrics import health_metric
from tags.model import TagType
from tests.scada.server_fixtures import (
    Served,
    served_fixture,  # noqa: F401
)


def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is required in CI (scripts/system-deps.sh installs prometheus)")
        pytest.skip("promtool not installed (apt-get install -y prometheus)")
    return exe


async def test_metrics_pass_promtool_check(served: Served) -> None:
    exe = promtool()
    await served.wait_for(
        lambda: all(
            served.db.read(f"system.{n}").value is not None
            for n in ("uptime_s", "loop_lag_ms", "disk_free_mb")
        ),
        "system.*",
    )
    db = served.db
    for name in db.match("system.*"):  # no TLS, no backups here: give those tags a value too
        if db.read(name).value is None:
            db.update(name, True if db.definition(name).type is TagType.BOOL else 2.5)
    st, text, _ = await served.api("GET", "/metrics", role="viewer")
    assert st == 200
    proc = await asyncio.create_subprocess_exec(
        exe,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate(text.encode())
    assert proc.returncode == 0, f"promtool check metrics:\n{out.decode()}"
    # the health tags in base units: seconds and bytes
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    free_mb = db.read("system.disk_free_mb").value
    assert samples["scada_system_disk_free_bytes"] == pytest.approx(free_mb * 2**20, abs=11 * 2**20)
    assert samples["scada_system_loop_lag_seconds"] >= 0.0  # moves: its conversion below
    assert samples["scada_system_uptime_seconds"] >= 0.0
    assert samples["scada_system_backup_age_seconds"] == 2.5 * 3600
    assert samples["scada_system_tls_left_seconds"] == 2.5 * 86400
    assert not [n for n in samples if n.endswith(("_ms", "_mb", "_s", "_h"))]


@pytest.mark.parametrize(
    ("tag", "unit", "value", "expected"),
    [
        ("system.loop_lag_ms", "ms", 250.0, ("scada_system_loop_lag_seconds", "seconds", 0.25)),
        ("system.uptime_s", "s", 12.5, ("scada_system_uptime_seconds", "seconds", 12.5)),
        ("system.disk_free_mb", "MB", 1.5, ("scada_system_disk_free_bytes", "bytes", 1572864.0)),
        ("system.backup_age_h", "h", 2.0, ("scada_system_backup_age_seconds", "seconds", 7200.0)),
        ("system.tls_days_left", "d", 1.0, ("scada_system_tls_left_seconds", "seconds", 86400.0)),
        ("system.disk_low", "", 1.0, ("scada_system_disk_low", "", 1.0)),
    ],
)
def test_health_tags_become_base_units(
    tag: str, unit: str, value: float, expected: tuple[str, str, float]
) -> None:
    assert health_metric(tag, unit, value) == expected
