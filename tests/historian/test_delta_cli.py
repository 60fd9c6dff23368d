"""``scada history agg|query ... --fn delta --every 1d``: consumption per local day on a real file."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from historian.base import Sample
from historian.sqlite import SqliteHistorian
from scada.cli import main
from tags.model import Quality

SITE = """\
site: {id: t, name: Test, timezone: Europe/Berlin}
historian: {backend: sqlite, path: hist/h.sqlite}
tags:
  - {name: m.energy, type: float, unit: kWh}
"""
BERLIN = ZoneInfo("Europe/Berlin")


def local(*args: int) -> float:
    return datetime(*args, tzinfo=BERLIN).timestamp()  # type: ignore[misc]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(SITE)
    h = SqliteHistorian(tmp_path / "var" / "hist" / "h.sqlite")
    first = local(2025, 10, 25)
    # 1 kWh an hour from the 25th; comm lost for two hours on the 27th
    samples = [Sample("m.energy", first + 3600 * i, float(i)) for i in range(24 * 3 + 2)]
    samples[50] = Sample("m.energy", samples[50].ts, 50.0, Quality.BAD)
    samples[51] = Sample("m.energy", samples[51].ts, 51.0, Quality.BAD)
    h.write(samples)
    h.close()
    return p


def test_consumption_per_local_day_with_quality(site: Path, capsys) -> None:
    data = str(site.parent / "var")
    argv = ["m.energy", "--from", "2025-10-25", "--to", "2025-10-28", "--every", "1d"]
    assert (
        main(["history", "agg", str(site), *argv, "--fn", "delta", "--json", "--data-dir", data])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["fn"] == "delta" and out["every"] == "1d"
    rows = out["rows"]
    assert [r["ts"] for r in rows] == [
        "2025-10-24T22:00:00.000+00:00",
        "2025-10-25T22:00:00.000+00:00",  # the day clocks go back: 25 hours
        "2025-10-26T23:00:00.000+00:00",
    ]
    assert [r["value"] for r in rows] == [24, 25, 24]
    assert [(r["quality"], r["reason"]) for r in rows] == [
        ("good", None),
        ("good", None),
        ("uncertain", "comm_lost"),
    ]
    # the same as text, through the query command
    assert main(["history", "query", str(site), *argv, "--fn", "delta", "--data-dir", data]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "2025-10-25T22:00:00.000+00:00 25.0 good"
    assert lines[2].endswith(" 24.0 uncertain (comm_lost)")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--every", "7h"], "divide the day"),
        (["--every", "1w"], "neither seconds"),
        ([], "needs --every"),
        (["--every", "1d", "--rollover", "-5"], "--rollover"),
    ],
)
def test_bad_delta_options_are_usage_errors(
    site: Path, capsys, extra: list[str], message: str
) -> None:
    argv = ["history", "query", str(site), "m.energy", "--from", "-1d", "--to", "now"]
    assert main([*argv, "--fn", "delta", *extra, "--data-dir", str(site.parent / "var")]) == 2
    assert message in capsys.readouterr().err
