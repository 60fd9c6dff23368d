"""The audit log's hash chain: verify, tampering found, cut-off tails, export, API, backup."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from scada.backup import backup
from scada.cli import main
from scada.services.audit import FILE_NAME, AuditLog, verify_file
from tests.scada.server_fixtures import Served, served_fixture  # noqa: F401


def _log(tmp_path: Path, n: int = 5) -> AuditLog:
    log = AuditLog.in_data_dir(tmp_path)
    for i in range(n):
        log.record(
            "command.select" if i % 2 else "alarm.ack",
            user=f"user{i % 2}",
            source="10.0.0.7",
            target=f"b1.{100 + i}.valve.open",
            before={"state": "normal"},
            after={"i": i, "text": "Ünïcode"},
            detail=None if i % 2 else f"comment {i}",
        )
    return log


def _tamper(path: Path, sql: str) -> None:
    """Edit the file the way someone with file access would: triggers dropped first."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;" + sql)
    finally:
        conn.close()


def test_an_untouched_log_verifies_and_its_head_is_the_last_entry(tmp_path: Path) -> None:
    log = _log(tmp_path)
    result = log.verify()
    assert result["ok"] and result["entries"] == 5 and result["unchained"] == 0
    newest = log.query(limit=1)[0]
    assert result["head"] == {"seq": newest["seq"], "hash": newest["hash"]} and newest["seq"] == 5
    assert verify_file(tmp_path / FILE_NAME, head=(5, newest["hash"]))["ok"]
    log.close()


@pytest.mark.parametrize(
    ("sql", "broken_at"),
    [
        ("UPDATE audit SET user = 'someone else' WHERE seq = 3", 3),
        ("UPDATE audit SET after = '{\"i\": 99}' WHERE seq = 4", 4),
        ("DELETE FROM audit WHERE seq = 2", 3),  # the next entry no longer follows
        ("UPDATE audit SET ts = ts + 1 WHERE seq = 1", 1),
    ],
)
def test_changed_or_deleted_entries_break_the_chain(
    tmp_path: Path, sql: str, broken_at: int, capsys: pytest.CaptureFixture[str]
) -> None:
    _log(tmp_path).close()
    _tamper(tmp_path / FILE_NAME, sql)
    result = verify_file(tmp_path / FILE_NAME)
    assert not result["ok"] and result["broken_at"] == broken_at
    assert main(["audit", "verify", "--data-dir", str(tmp_path)]) == 1
    assert f"BROKEN at entry {broken_at}" in capsys.readouterr().err


def test_a_cut_off_tail_is_found_with_a_head_written_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = _log(tmp_path)
    head = log.verify()["head"]
    log.close()
    _tamper(tmp_path / FILE_NAME, "DELETE FROM audit WHERE seq >= 4")
    assert verify_file(tmp_path / FILE_NAME)["ok"]  # a shorter chain is still a chain ...
    kept = f"{head['seq']}:{head['hash']}"
    assert main(["audit", "verify", "--data-dir", str(tmp_path), "--head", kept]) == 1
    assert "cut off the end" in capsys.readouterr().err  # ... the head written down shows it
    assert main(["audit", "verify", "--data-dir", str(tmp_path), "--head", "5:xyz"]) == 2


def test_a_log_from_before_the_chain_keeps_its_entries_and_chains_new_ones(
    tmp_path: Path,
) -> None:
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    conn.executescript(
        "CREATE TABLE audit(seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, user TEXT,"
        " role TEXT, source TEXT, action TEXT NOT NULL, target TEXT, result TEXT NOT NULL,"
        " before TEXT, after TEXT, detail TEXT);"
        "INSERT INTO audit(ts, user, action, result) VALUES (1.5, 'old', 'login', 'ok');"
        "INSERT INTO audit(ts, user, action, result) VALUES (2.5, 'old', 'logout', 'ok');"
    )
    conn.close()
    assert verify_file(tmp_path / FILE_NAME)["unchained"] == 2
    log = AuditLog.in_data_dir(tmp_path)
    log.record("login", user="new")
    log.record("logout", user="new")
    result = log.verify()
    assert result["ok"] and result["entries"] == 4 and result["unchained"] == 2
    assert [e["seq"] for e in log.query()] == [4, 3, 2, 1]
    log.close()


def test_a_second_process_appends_to_the_same_chain(tmp_path: Path) -> None:
    server = _log(tmp_path, 2)
    cli = AuditLog.in_data_dir(tmp_path)  # e.g. `scada user add` while the server runs
    cli.record("user.add", user="cli", target="olga")
    server.record("login", user="olga")
    cli.close()
    result = server.verify()
    assert result["ok"] and result["entries"] == 4
    server.close()


def test_export_csv_and_json_lines_oldest_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _log(tmp_path).close()
    assert main(["audit", "export", "--data-dir", str(tmp_path), "--action", "command.*"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["seq"] for r in rows] == ["2", "4"]
    assert rows[0]["user"] == "user1" and json.loads(rows[0]["after"]) == {
        "i": 1,
        "text": "Ünïcode",
    }
    assert main(["audit", "export", "--data-dir", str(tmp_path), "--format", "jsonl"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["seq"] for x in lines] == [1, 2, 3, 4, 5] and lines[0]["detail"] == "comment 0"
    assert len({x["hash"] for x in lines}) == 5


def test_the_backup_manifest_keeps_the_head(tmp_path: Path) -> None:
    log = _log(tmp_path / "data")
    head = log.verify()["head"]
    log.close()
    manifest = backup(tmp_path / "data", tmp_path / "bk")
    assert manifest["audit"]["ok"] and manifest["audit"]["head"] == head


async def test_verify_over_the_api(served: Served) -> None:
    served.server.ctx.audit.record("test.entry", user="someone")
    st, result, _ = await served.api("GET", "/api/audit/verify", role="admin")
    assert st == 200 and result["ok"] and result["head"]["seq"] == result["entries"]
    head = f"{result['head']['seq']}:{result['head']['hash']}"
    st, again, _ = await served.api("GET", f"/api/audit/verify?head={head}", role="admin")
    assert st == 200 and again["ok"]
    st, err, _ = await served.api("GET", "/api/audit/verify?head=nonsense", role="admin")
    assert st == 400 and "SEQ:HASH" in err["error"]
    st, _, _ = await served.api("GET", "/api/audit/verify", role="viewer")
    assert st == 403
