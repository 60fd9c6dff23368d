"""Times on the command line (issue 18 item 10): one parser of relative and absolute times in
the site's time zone, used by every command, and a note when a period lies outside the history."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from historian.base import Sample
from historian.sqlite import SqliteHistorian
from scada.cli import main
from scada.commands.times import TimeError, history_note, parse_period, parse_time, parse_window
from tests.billing.conftest import NOV1, free_port, site_text

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
#: 2026-03-15 10:30 in Shanghai (UTC+8), a Sunday.
NOW = datetime(2026, 3, 15, 10, 30, tzinfo=SHANGHAI).timestamp()
DAY = 86400.0


def local(*parts: int, tz: ZoneInfo = SHANGHAI) -> float:
    return datetime(*parts, tzinfo=tz).timestamp()  # type: ignore[misc]  # y, m, d[, h, min]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("NOW", NOW),
        ("today", local(2026, 3, 15)),
        ("yesterday", local(2026, 3, 14)),
        ("tomorrow", local(2026, 3, 16)),
        ("this-month", local(2026, 3, 1)),
        ("last-month", local(2026, 2, 1)),
        ("next-month", local(2026, 4, 1)),
        ("this-year", local(2026, 1, 1)),
        ("last-year", local(2025, 1, 1)),
        ("-7d", NOW - 7 * DAY),
        ("7d", NOW - 7 * DAY),  # an age, as `scada alarms --since 7d` always took it
        ("-24h", NOW - DAY),
        ("-1.5h", NOW - 5400),
        ("-30m", NOW - 1800),
        ("-90s", NOW - 90),
        ("-2w", NOW - 14 * DAY),
        ("+1h", NOW + 3600),
        ("2026-03-01", local(2026, 3, 1)),  # an ISO date: local midnight
        ("2026-03-01T08:00", local(2026, 3, 1, 8, 0)),  # local time
        ("2026-03-01T08:00Z", local(2026, 3, 1, 16, 0)),  # as written
        ("2026-03-01T08:00+01:00", local(2026, 3, 1, 15, 0)),
    ],
)
def test_relative_and_absolute_times(text: str, expected: float) -> None:
    assert parse_time(text, "Asia/Shanghai", now=NOW) == expected


def test_calendar_words_follow_the_site_zone_across_new_year_and_dst() -> None:
    jan = datetime(2026, 1, 10, 12, 0, tzinfo=SHANGHAI).timestamp()
    assert parse_time("last-month", SHANGHAI, now=jan) == local(2025, 12, 1)
    # 2026-03-29 is 23 hours long in Berlin: yesterday is still its local midnight
    after_dst = datetime(2026, 3, 30, 9, 0, tzinfo=BERLIN).timestamp()
    assert parse_time("yesterday", BERLIN, now=after_dst) == local(2026, 3, 29, tz=BERLIN)
    assert parse_time("today", BERLIN, now=after_dst) - parse_time(
        "yesterday", BERLIN, now=after_dst
    ) == pytest.approx(23 * 3600)
    # the same instant is another local day in Shanghai
    assert parse_time("today", SHANGHAI, now=after_dst) == local(2026, 3, 30)


@pytest.mark.parametrize("text", ["soon", "-7 days", "7", "2026-13-01", ""])
def test_a_bad_time_names_the_forms(text: str) -> None:
    with pytest.raises(TimeError, match=r"--from: .* is not a time; use now, today, .* -7d"):
        parse_time(text, SHANGHAI, now=NOW, what="--from")


def test_a_window_must_not_be_empty() -> None:
    assert parse_window("-7d", "now", SHANGHAI, now=NOW) == (NOW - 7 * DAY, NOW)
    with pytest.raises(TimeError, match="--to today is not after --from now"):
        parse_window("now", "today", SHANGHAI, now=NOW)


def test_periods() -> None:
    p = parse_period("this-month", SHANGHAI, now=NOW)
    assert (p.kind, p.label, p.start, p.end) == (
        "month",
        "2026-03",
        local(2026, 3, 1),
        local(2026, 4, 1),
    )
    assert parse_period("last-month", SHANGHAI, now=NOW).label == "2026-02"
    assert parse_period("today", SHANGHAI, now=NOW).label == "2026-03-15"
    assert parse_period("yesterday", SHANGHAI, now=NOW).kind == "day"
    assert parse_period("last-year", SHANGHAI, now=NOW).label == "2025"
    assert parse_period("2025-Q4", SHANGHAI, now=NOW).kind == "quarter"
    with pytest.raises(TimeError, match="this-month"):
        parse_period("next-week", SHANGHAI, now=NOW)


# -- the note on periods outside the stored history ---------------------------------------------


@pytest.fixture
def stored(tmp_path: Path) -> SqliteHistorian:
    """History of two tags from NOW - 7 days to NOW - 2 days, hourly."""
    h = SqliteHistorian(tmp_path / "h.sqlite")
    start = NOW - 7 * DAY
    h.write(
        [Sample(tag, start + k * 3600.0, float(k)) for tag in ("a", "b") for k in range(5 * 24 + 1)]
    )
    return h


def test_history_note(stored: SqliteHistorian) -> None:
    def note(a: str, b: str) -> str | None:
        start, end = parse_window(a, b, SHANGHAI, now=NOW)
        return history_note(stored, ["a", "b"], start, end, SHANGHAI, now=NOW)

    assert note("-6d", "-3d") is None  # inside
    assert note("-1d", "now") == (
        "note: 2026-03-14 10:30 CST .. 2026-03-15 10:30 CST lies after the stored history, "
        "which ends 2026-03-13 10:30 CST"
    )
    assert note("-30d", "-20d") == (
        "note: 2026-02-13 10:30 CST .. 2026-02-23 10:30 CST lies before the stored history"
    )
    assert note("-10d", "-5d") == (
        "note: the stored history begins 2026-03-08 10:30 CST, after the start of "
        "2026-03-05 10:30 CST .. 2026-03-10 10:30 CST"
    )
    assert note("-6d", "now") == (
        "note: the newest stored sample is from 2026-03-13 10:30 CST, before the end of "
        "2026-03-09 10:30 CST .. 2026-03-15 10:30 CST"
    )
    assert "no samples of these tags" in str(
        history_note(stored, ["c"], NOW - DAY, NOW, SHANGHAI, now=NOW)
    )
    stored.close()


# -- the commands -------------------------------------------------------------------------------

HISTORY_SITE = """\
site: {id: t, name: Test, timezone: Asia/Shanghai}
historian: {backend: sqlite, path: h.sqlite}
tags:
  - {name: m.energy, type: float, unit: kWh}
"""


def test_history_query_takes_relative_times_and_says_when_they_miss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(HISTORY_SITE)
    now = time.time()
    h = SqliteHistorian(tmp_path / "h.sqlite")
    h.write([Sample("m.energy", now - 60 - k * 3600.0, 1000.0 - k) for k in range(8 * 24)])
    h.close()
    common = [str(site), "m.energy", "--data-dir", str(tmp_path)]

    assert main(["history", "query", *common, "--from", "-7d", "--to", "now", "--json"]) == 0
    out = capsys.readouterr()
    assert len(json.loads(out.out)["rows"]) == 7 * 24 and "note:" not in out.err

    argv = ["history", "query", *common, "--from", "-30d", "--to", "-20d", "--every", "1d"]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert out.out.count(" -\n") == 10  # ten empty buckets, as before
    assert "lies before the stored history" in out.err

    assert main(["history", "query", *common, "--from", "tomorrow", "--to", "+2d"]) == 0
    assert "lies after the stored history" in capsys.readouterr().err

    assert main(["history", "query", *common, "--from", "soon", "--to", "now"]) == 2
    assert "--from: 'soon' is not a time" in capsys.readouterr().err

    out_csv = tmp_path / "out.csv"
    argv = ["history", "export", str(site), "--tags", "m.*", "--from", "yesterday", "--to", "now"]
    assert main([*argv, "--csv", str(out_csv), "--data-dir", str(tmp_path)]) == 0
    assert len(out_csv.read_text().splitlines()) > 1


def _billing_site(tmp_path: Path) -> tuple[Path, Path]:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(site_text(free_port()), encoding="utf-8")
    data = tmp_path / "var"
    h = SqliteHistorian(data / "history.sqlite")
    ends = (NOV1 - 100, NOV1 + DAY)  # 2025-11-01 (local) and a little before
    for tag, first, last in [
        ("b1.101.valve.open", True, False),
        ("b1.102.valve.open", True, False),
        ("b1.201.valve.open", True, False),
        ("b1.hm.energy_kwh", 5000.0, 5600.0),
        ("e.101.energy_kwh", 1.0, 9.0),
    ]:
        h.write([Sample(tag, ends[0], first), Sample(tag, ends[1], last)])
    h.close()
    return cfg, data


def test_allocate_bill_and_report_take_relative_times_and_say_when_they_miss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, data = _billing_site(tmp_path)
    common = [str(cfg), "--data-dir", str(data)]
    # the stored history is November 2025: the last 7 days lie after it
    assert main(["allocate", "heat", *common, "--from", "-7d", "--to", "now", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["buildings"][0]["heat_kwh"] == 0.0
    assert "lies after the stored history, which ends 2025-11-02 00:00 CST" in out.err

    assert main(["allocate", "heat", *common, "--from", "2025-11-01", "--to", "2025-11-02"]) == 0
    assert "note:" not in capsys.readouterr().err  # the history covers it: no note

    assert main(["bill", *common, "--from", "last-month", "--to", "this-month", "--json"]) == 0
    assert "lies after the stored history" in capsys.readouterr().err

    assert main(["report", "energy", *common, "--period", "this-month"]) == 0
    assert "lies after the stored history" in capsys.readouterr().err
    assert main(["report", "energy", *common, "--period", "next-week"]) == 2
    assert "use today, yesterday, this-month" in capsys.readouterr().err


def test_alarms_and_audit_take_relative_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from alarms.journal import AlarmJournal
    from scada.services.audit import AuditLog

    AlarmJournal.in_data_dir(tmp_path).close()
    log = AuditLog.in_data_dir(tmp_path)
    log.record("user.add", user="cli:test", source="cli", target="ann", after=None)
    log.close()
    data = ["--data-dir", str(tmp_path)]
    site = tmp_path / "site.yaml"
    site.write_text(HISTORY_SITE)
    argv = ["alarms", "kpi", str(site), "--since", "this-month", "--until", "now", "--json"]
    assert main([*argv, *data]) == 0
    assert json.loads(capsys.readouterr().out)["activations"] == 0
    assert main(["audit", "export", str(site), "--since", "today", "--format", "jsonl", *data]) == 0
    assert [json.loads(r)["target"] for r in capsys.readouterr().out.splitlines()] == ["ann"]
    assert main(["audit", "export", str(site), "--until", "yesterday", *data]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == []  # the header only
    assert main(["audit", "export", str(site), "--since", "soon", *data]) == 2


def test_allocate_says_when_every_household_is_estimated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tags.model import Quality

    cfg, data = _billing_site(tmp_path)
    h = SqliteHistorian(data / "history.sqlite")
    for tag in ("b1.101.valve.open", "b1.102.valve.open", "b1.201.valve.open"):  # comm lost
        h.write([Sample(tag, t, False, Quality.BAD) for t in (NOV1 - 100, NOV1 + DAY)])
    h.close()
    argv = ["allocate", "heat", str(cfg), "--from", "2025-11-01", "--to", "2025-11-02"]
    assert main([*argv, "--data-dir", str(data)]) == 0
    out = capsys.readouterr()
    assert "estimated" in out.out
    assert out.err == "note: every household is estimated: no valve data in the period\n"
