"""Backup while writers write, restore with checks and locks, the daily schedule."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from scada.backup import (
    MANIFEST,
    BackupError,
    BackupScheduler,
    DataDirLock,
    backup,
    is_running,
    next_run,
    prune,
    restore,
)
from scada.cli import main
from scada.config.site import BackupConfig
from scada.runtime import Runtime
from tests.scada.scaleout_site import load, write_site


class PairWriter(threading.Thread):
    """Insert rows two per transaction into a WAL database until stopped."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.started_writing = threading.Event()
        self.txns = 0
        con = sqlite3.connect(path)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE t (pair INTEGER, side INTEGER, pad TEXT)")
        con.commit()
        con.close()

    def run(self) -> None:
        con = sqlite3.connect(self.path)
        while not self.stop.is_set():
            with con:
                con.executemany(
                    "INSERT INTO t VALUES (?, ?, ?)",
                    [(self.txns, 0, "x" * 200), (self.txns, 1, "y" * 200)],
                )
            self.txns += 1
            if self.txns == 200:
                self.started_writing.set()
        con.close()


def _pairs_complete(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        broken = con.execute(
            "SELECT COUNT(*) FROM (SELECT pair FROM t GROUP BY pair HAVING COUNT(*) != 2)"
        ).fetchone()[0]
        assert broken == 0
        return int(con.execute("SELECT COUNT(*) FROM t").fetchone()[0])
    finally:
        con.close()


def test_backup_is_consistent_while_a_writer_runs(tmp_path: Path) -> None:
    data = tmp_path / "var"
    (data / "sub").mkdir(parents=True)
    writer = PairWriter(data / "history.sqlite")
    (data / "sub" / "state.json").write_text('{"k": 1}')
    writer.start()
    assert writer.started_writing.wait(20)
    try:
        manifest = backup(data, tmp_path / "bk", site_id="t9")
    finally:
        writer.stop.set()
        writer.join()
    files = {f["path"]: f for f in manifest["files"]}
    assert set(files) == {"history.sqlite", "sub/state.json"}  # no -wal/-shm, no lock
    assert files["history.sqlite"]["kind"] == "sqlite" and files["sub/state.json"]["kind"] == "file"
    rows = _pairs_complete(tmp_path / "bk" / "data" / "history.sqlite")
    assert 0 < rows <= 2 * writer.txns  # a snapshot taken while writing went on
    assert json.loads((tmp_path / "bk" / MANIFEST).read_text())["site"] == "t9"
    with pytest.raises(BackupError, match="not empty"):
        backup(data, tmp_path / "bk")
    with pytest.raises(BackupError, match="would contain the data dir"):
        backup(data, tmp_path)


def test_restore_moves_the_old_data_aside_and_checks_everything(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir()
    con = sqlite3.connect(data / "a.sqlite")
    con.execute("CREATE TABLE x (v)")
    con.execute("INSERT INTO x VALUES (42)")
    con.commit()
    con.close()
    backup(data, tmp_path / "bk")
    (data / "a.sqlite").unlink()
    (data / "new.txt").write_text("written after the backup")

    lock = DataDirLock(data)
    lock.acquire()
    try:
        assert is_running(data)
        with pytest.raises(BackupError, match="in use by a running scada process"):
            restore(tmp_path / "bk", data)
    finally:
        lock.release()
    assert not is_running(data)

    result = restore(tmp_path / "bk", data)
    assert sqlite3.connect(data / "a.sqlite").execute("SELECT v FROM x").fetchone() == (42,)
    assert not (data / "new.txt").exists()
    assert (Path(result["moved_aside"]) / "new.txt").read_text() == "written after the backup"

    damaged = tmp_path / "bk" / "data" / "a.sqlite"
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"!")
    with pytest.raises(BackupError, match=r"a\.sqlite is damaged"):
        restore(tmp_path / "bk", data)
    with pytest.raises(BackupError, match="not a backup"):
        restore(tmp_path, data)


def test_cli_backup_and_restore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_site(tmp_path)
    data = tmp_path / "var"
    data.mkdir()
    (data / "notes.txt").write_text("hello")
    assert main(["backup", str(config), str(tmp_path / "bk"), "--data-dir", str(data)]) == 0
    assert "1 files" in capsys.readouterr().out
    assert (tmp_path / "bk" / "config" / "site.yaml").exists()
    (data / "notes.txt").write_text("changed")
    assert (
        main(["restore", str(config), str(tmp_path / "bk"), "--data-dir", str(data), "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["moved_aside"]
    assert (data / "notes.txt").read_text() == "hello"
    assert main(["restore", str(config), str(tmp_path / "nope"), "--data-dir", str(data)]) == 1
    assert "not a backup" in capsys.readouterr().err


async def test_a_running_runtime_holds_its_data_dir(tmp_path: Path) -> None:
    site = load(tmp_path)
    runtime = Runtime(site, tmp_path / "var", simulate=False)
    await runtime.start()
    try:
        assert is_running(tmp_path / "var")
        other = Runtime(site, tmp_path / "var", simulate=False)
        with pytest.raises(BackupError, match="in use by another scada process"):
            await other.start()
        # a backup is fine while it runs (the historian's SQLite is copied online)
        manifest = backup(tmp_path / "var", tmp_path / "bk")
        assert any(f["kind"] == "sqlite" for f in manifest["files"])
    finally:
        await runtime.stop()
    assert not is_running(tmp_path / "var")


def test_next_run_is_daily_at_site_time() -> None:
    now = dt.datetime(2024, 3, 1, 18, 0, tzinfo=dt.UTC)  # 02:00 in Shanghai on March 2nd
    due = next_run("03:30", "Asia/Shanghai", now)
    assert due == dt.datetime(2024, 3, 1, 19, 30, tzinfo=dt.UTC)
    later = next_run("03:30", "Asia/Shanghai", due)
    assert later - due == dt.timedelta(days=1)


def test_scheduled_backup_keeps_only_recent_ones(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir()
    (data / "f.txt").write_text("x")
    now = [dt.datetime(2024, 1, 1, 3, 30, tzinfo=dt.UTC)]
    cfg = BackupConfig(dir=str(tmp_path / "backups"), keep_days=2)
    sched = BackupScheduler(cfg, data, site_id="t9", tz="UTC", clock=lambda: now[0])
    made = []
    for _ in range(4):
        made.append(sched.run_once())
        now[0] += dt.timedelta(days=1)
    # created_ts in the manifest is the real time of the copy; age them as the clock says
    for i, path in enumerate(made):
        manifest = json.loads((path / MANIFEST).read_text())
        manifest["created_ts"] = (
            dt.datetime(2024, 1, 1, 3, 30, tzinfo=dt.UTC) + dt.timedelta(days=i)
        ).timestamp()
        (path / MANIFEST).write_text(json.dumps(manifest))
    removed = prune(cfg.dir, cfg.keep_days, now[0].timestamp())
    assert removed == made[:2]
    assert sorted(p.name for p in Path(cfg.dir).iterdir()) == [p.name for p in made[2:]]
    assert made[0].name == "t9-20240101T033000"
