"""``scada history import/export/query`` on a real configuration and SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from historian.sqlite import SqliteHistorian
from scada.cli import main

SITE = """\
site: {id: t, name: Test}
historian: {backend: sqlite, path: hist/h.sqlite}
tags:
  - {name: m.energy, type: float, unit: kWh}
  - {name: v.open, type: bool}
  - {name: note, type: str}
"""

GOOD_CSV = """\
tag,timestamp,value
m.energy,2026-01-01T00:00:00+00:00,100
m.energy,2026-01-01T01:00:00+01:00,105.5
m.energy,2026-01-01T01:00:00Z,112
v.open,2026-01-01T00:30:00Z,true
note,2026-01-01T00:10:00Z,"read by hand, cellar"
"""

T = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture
def site(tmp_path: Path) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(SITE)
    return p


def run(*argv: str) -> int:
    return main(list(argv))


def test_import_then_query_and_export(site: Path, tmp_path: Path, capsys) -> None:
    csv_file = tmp_path / "in.csv"
    csv_file.write_text(GOOD_CSV)
    data = str(tmp_path / "var")
    assert run("history", "import", str(site), str(csv_file), "--data-dir", data) == 0
    assert "imported 5 samples" in capsys.readouterr().out
    h = SqliteHistorian(tmp_path / "var" / "hist" / "h.sqlite")
    # 01:00+01:00 is midnight UTC: it replaces the first row
    assert [(s.ts - T, s.value) for s in h.query_raw("m.energy", T, T + 7200)] == [
        (0, 105.5),
        (3600, 112.0),
    ]
    assert h.query_raw("note", T, T + 3600)[0].value == "read by hand, cellar"
    h.close()

    rng = ["--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T02:00:00Z", "--data-dir", data]
    assert (
        run(
            "history",
            "query",
            str(site),
            "m.energy",
            *rng,
            "--every",
            "1h",
            "--fn",
            "max",
            "--json",
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["fn"] == "max" and out["every_s"] == 3600
    assert [r["value"] for r in out["rows"]] == [105.5, 112.0]
    assert out["rows"][0]["ts"] == "2026-01-01T00:00:00.000+00:00"

    assert run("history", "query", str(site), "v.open", *rng) == 0
    assert capsys.readouterr().out == "2026-01-01T00:30:00.000+00:00 1.0 good\n"

    out_csv = tmp_path / "out.csv"
    assert run("history", "export", str(site), "--tags", "m.*", *rng, "--csv", str(out_csv)) == 0
    assert out_csv.read_text().splitlines() == [
        "tag,timestamp,value,quality,reason",
        "m.energy,2026-01-01T00:00:00.000+00:00,105.5,good,",
        "m.energy,2026-01-01T01:00:00.000+00:00,112,good,",
    ]
    # the export format imports again
    assert run("history", "import", str(site), str(out_csv), "--data-dir", data) == 0


def test_import_rejects_bad_rows_with_line_numbers_and_writes_nothing(
    site: Path, tmp_path: Path, capsys
) -> None:
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text(
        "tag,timestamp,value\n"
        "m.energy,2026-01-01T00:00:00Z,1\n"
        "m.enrgy,2026-01-01T00:00:00Z,1\n"
        "m.energy,2026-01-01T00:00:00,1\n"
        "m.energy,yesterday,1\n"
        "m.energy,2026-01-01T00:00:00Z,abc\n"
        "v.open,2026-01-01T00:00:00Z,maybe\n"
        "m.energy,2026-01-01T00:00:00Z\n"
    )
    data = tmp_path / "var"
    assert run("history", "import", str(site), str(csv_file), "--data-dir", str(data)) == 1
    err = capsys.readouterr().err.splitlines()
    f = str(csv_file)
    assert err == [
        f"{f}:3: unknown tag 'm.enrgy' (did you mean 'm.energy'?)",
        f"{f}:4: tag m.energy: timestamp: '2026-01-01T00:00:00' has no UTC offset (add Z or +01:00)",
        f"{f}:5: tag m.energy: timestamp: 'yesterday' is not an ISO-8601 time",
        f"{f}:6: tag m.energy: value 'abc' is not a number",
        f"{f}:7: tag v.open: value 'maybe' is not a bool (0/1/true/false)",
        f"{f}:8: expected 3 columns, got 2",
        f"{f}: 6 bad row(s); nothing imported",
    ]
    assert not (data / "hist" / "h.sqlite").exists()


def test_import_header_and_argument_errors(site: Path, tmp_path: Path, capsys) -> None:
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("name,time,value\n")
    assert run("history", "import", str(site), str(csv_file), "--data-dir", str(tmp_path)) == 1
    assert (
        "bad.csv:1: header ['name', 'time', 'value'] lacks column(s) tag, timestamp"
        in capsys.readouterr().err
    )
    rng = [
        "--from",
        "2026-01-01T00:00:00Z",
        "--to",
        "2026-01-01T02:00:00Z",
        "--data-dir",
        str(tmp_path),
    ]
    assert run("history", "query", str(site), "nope", *rng) == 1
    assert "unknown tag 'nope'" in capsys.readouterr().err
    assert run("history", "query", str(site), "m.energy", *rng, "--every", "soon") == 2
    assert "--every: 'soon' is not a duration" in capsys.readouterr().err
    assert (
        run("history", "query", str(site), "m.energy", *rng, "--every", "1h", "--fn", "median") == 2
    )
    assert "unknown aggregate 'median'" in capsys.readouterr().err


def test_large_import_shows_progress(site: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import scada.commands.history as history

    monkeypatch.setattr(history, "PROGRESS_EVERY", 10)
    monkeypatch.setattr(history, "IMPORT_BATCH", 7)
    rows = [f"m.energy,2026-01-01T00:{i:02d}:00Z,{i}" for i in range(30)]
    csv_file = tmp_path / "big.csv"
    csv_file.write_text("tag,timestamp,value\n" + "\n".join(rows) + "\n")
    assert run("history", "import", str(site), str(csv_file), "--data-dir", str(tmp_path)) == 0
    err = capsys.readouterr().err
    assert "7/30" in err and "100.0% 30/30" in err
    h = SqliteHistorian(tmp_path / "hist" / "h.sqlite")
    assert h.delta("m.energy", T, T + 3600) == 29.0
    h.close()
