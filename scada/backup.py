"""Backup and restore of the data dir, and the scheduled daily backup.

``backup(data_dir, dest)`` copies every store while the runtime keeps writing: each
SQLite file (detected by its header) through SQLite's online backup API
(``sqlite3.Connection.backup``: a consistent snapshot including the WAL, writers are
not blocked), every other file byte for byte (``-wal``/``-shm``/``-journal`` files and
the runtime lock are skipped: the snapshot contains them). ``dest`` gets a
``manifest.json`` listing each file with its kind, size and SHA-256, plus copies of the
site configuration files under ``config/``, and ``audit``: the audit log's hash-chain check
of the copy with its head (``seq``, ``hash``), logged too, so a head kept outside the
machine can later show that no audit entry was changed or cut off
(``scada audit verify --head SEQ:HASH``).

``restore(src, data_dir)`` checks the manifest and every checksum, refuses to touch a
data dir a running ``scada run`` holds (its ``runtime.lock``) unless ``force``, builds
the restored dir beside the target, moves the old one aside to
``<data dir>.before-restore-<time>`` and renames the restored one into place.

``BackupScheduler`` runs ``backup`` daily at the configured site-local time into
``<dir>/<site>-<YYYYmmddTHHMMSS>`` and deletes backups older than ``keep_days``; it keeps
the outcome (``last_ok``, ``last_backup_ts``, ``last_error``) for the health tags
(``scada.health``). Blocking functions; the scheduler runs them in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import sqlite3
import time
import zoneinfo
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

if TYPE_CHECKING:
    from scada.config.site import BackupConfig

__all__ = [
    "LOCK_FILE",
    "MANIFEST",
    "BackupError",
    "BackupScheduler",
    "DataDirLock",
    "backup",
    "daily_trigger",
    "is_running",
    "newest_backup_ts",
    "next_run",
    "prune",
    "restore",
]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LOCK_FILE = "runtime.lock"
FORMAT = 1
_SQLITE_HEADER = b"SQLite format 3\x00"
_SKIP_SUFFIXES = ("-wal", "-shm", "-journal")
_STAMP = "%Y%m%dT%H%M%S"


class BackupError(RuntimeError):
    """A backup or restore cannot be done; the message names the file or directory."""


# --------------------------------------------------------------------------- locking


class DataDirLock:
    """An exclusive ``flock`` on ``<data dir>/runtime.lock`` held while a runtime runs."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; raise ``BackupError`` if another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BackupError(
                f"data dir {self.path.parent} is in use by another scada process"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def is_running(data_dir: str | Path) -> bool:
    """Return True if a process holds ``data_dir``'s runtime lock."""
    path = Path(data_dir) / LOCK_FILE
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- backup


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(16) == _SQLITE_HEADER


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(data_dir: Path, exclude: Path | None) -> list[Path]:
    result = []
    for path in sorted(data_dir.rglob("*")):
        if not path.is_file() or path.name == LOCK_FILE or path.name.endswith(_SKIP_SUFFIXES):
            continue
        if exclude is not None and path.is_relative_to(exclude):
            continue
        result.append(path)
    return result


def _sqlite_copy(src: Path, dst: Path) -> None:
    source = sqlite3.connect(src, timeout=30)  # read only in effect: backup() only reads
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target)  # one step: a consistent snapshot, writers go on (WAL)
            target.execute("PRAGMA journal_mode=DELETE")  # a self-contained file
        finally:
            target.close()
    finally:
        source.close()


def backup(
    data_dir: str | Path,
    dest: str | Path,
    *,
    config_files: Iterable[str | Path] = (),
    site_id: str = "",
) -> dict[str, Any]:
    """Copy every store of ``data_dir`` into the new directory ``dest``; return the manifest.

    ``dest`` must not exist or be empty, and must not be ``data_dir``. Raises
    ``BackupError`` naming the problem.
    """
    src_dir = Path(data_dir).resolve()
    out = Path(dest).resolve()
    if not src_dir.is_dir():
        raise BackupError(f"data dir {src_dir} does not exist")
    if out == src_dir or src_dir.is_relative_to(out):
        raise BackupError(f"backup destination {out} would contain the data dir {src_dir}")
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"backup destination {out} exists and is not empty")
    started = time.time()
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    entries: list[dict[str, Any]] = []
    try:
        for path in _files(src_dir, out if out.is_relative_to(src_dir) else None):
            rel = path.relative_to(src_dir)
            target = partial / "data" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            kind = "sqlite" if _is_sqlite(path) else "file"
            if kind == "sqlite":
                _sqlite_copy(path, target)
            else:
                shutil.copy2(path, target)
            entries.append(
                {
                    "path": rel.as_posix(),
                    "kind": kind,
                    "bytes": target.stat().st_size,
                    "sha256": _sha256(target),
                }
            )
        configs = []
        for cfg in config_files:
            cpath = Path(cfg)
            target = partial / "config" / cpath.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(cpath, target)
            configs.append({"source": str(cpath.resolve()), "path": f"config/{cpath.name}"})
        audit = _audit_check(partial / "data")
        manifest = {
            "format": FORMAT,
            "site": site_id,
            "created": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
            "created_ts": started,
            "host": socket.gethostname(),
            "data_dir": str(src_dir),
            "files": entries,
            "config": configs,
            "audit": audit,
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            out.rmdir()
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log.info("backup of %s to %s: %d files", src_dir, out, len(entries))
    if audit is not None:
        head = audit["head"] or {"seq": 0, "hash": "-"}
        log.log(
            logging.INFO if audit["ok"] else logging.ERROR,
            "audit log chain %s: %d entries, head %s:%s%s",
            "intact" if audit["ok"] else "BROKEN",
            audit["entries"],
            head["seq"],
            head["hash"],
            "" if audit["ok"] else f" (broken at {audit['broken_at']}: {audit['reason']})",
        )
    return manifest


def _audit_check(data: Path) -> dict[str, Any] | None:
    """Return the hash-chain check of the backed-up audit log, or None without one."""
    from scada.services.audit import FILE_NAME, verify_file

    path = data / FILE_NAME
    if not path.exists():
        return None
    try:
        return verify_file(path)
    except sqlite3.Error as exc:
        return {"ok": False, "entries": 0, "head": None, "broken_at": None, "reason": str(exc)}


def read_manifest(src: str | Path) -> dict[str, Any]:
    """Return the manifest of backup ``src``; raise ``BackupError`` if missing or malformed."""
    path = Path(src) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupError(f"{src} is not a backup: no {MANIFEST}") from None
    except ValueError as exc:
        raise BackupError(f"{path}: malformed manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: unsupported backup format {manifest.get('format')!r}")
    return manifest


def restore(src: str | Path, data_dir: str | Path, *, force: bool = False) -> dict[str, Any]:
    """Bring backup ``src`` back as ``data_dir``; return the manifest plus ``moved_aside``.

    Raises ``BackupError`` if the backup is damaged (names the file) or ``data_dir`` is
    held by a running process and ``force`` is false.
    """
    src_dir = Path(src).resolve()
    target = Path(data_dir).resolve()
    manifest = read_manifest(src_dir)
    for entry in manifest["files"]:
        path = src_dir / "data" / entry["path"]
        if not path.is_file():
            raise BackupError(f"{src_dir}: {entry['path']} listed in the manifest is missing")
        if _sha256(path) != entry["sha256"]:
            raise BackupError(f"{src_dir}: {entry['path']} is damaged (checksum mismatch)")
    if is_running(target) and not force:
        raise BackupError(
            f"data dir {target} is in use by a running scada process; stop it "
            "first (or use --force)"
        )
    staging = target.with_name(f".{target.name}.restore-tmp")
    shutil.rmtree(staging, ignore_errors=True)
    if (src_dir / "data").exists():
        shutil.copytree(src_dir / "data", staging)
    else:
        staging.mkdir()
    moved: Path | None = None
    if target.exists():
        if any(target.iterdir()):
            moved = target.with_name(f"{target.name}.before-restore-{time.strftime(_STAMP)}")
            target.rename(moved)
        else:
            target.rmdir()
    staging.rename(target)
    log.info("restored %s into %s (previous data: %s)", src_dir, target, moved)
    return {**manifest, "moved_aside": str(moved) if moved else None}


# --------------------------------------------------------------------------- schedule


def daily_trigger(at: str, tz: str) -> CronTrigger:
    """Return the scheduler trigger of a daily run at local time ``at`` (``HH:MM``) in ``tz``."""
    hour, minute = (int(x) for x in at.split(":")[:2])
    return CronTrigger(hour=hour, minute=minute, timezone=zoneinfo.ZoneInfo(tz))


def next_run(at: str, tz: str, now: dt.datetime) -> dt.datetime:
    """Return the next time after ``now`` (aware) that :func:`daily_trigger` fires."""
    # the trigger fires at or after the time it is given, on whole seconds: ask from just after
    fire: dt.datetime = daily_trigger(at, tz).get_next_fire_time(
        None, now + dt.timedelta(microseconds=1)
    )
    return fire


def prune(root: str | Path, keep_days: int, now: float | None = None) -> list[Path]:
    """Delete backups under ``root`` created more than ``keep_days`` ago; return them.

    Only directories with a readable manifest count as backups; others are left alone.
    """
    now = time.time() if now is None else now
    removed: list[Path] = []
    base = Path(root)
    if not base.is_dir():
        return removed
    for path in sorted(base.iterdir()):
        if not path.is_dir():
            continue
        try:
            created = float(read_manifest(path)["created_ts"])
        except (BackupError, KeyError, TypeError, ValueError):
            continue
        if now - created > keep_days * 86400:
            shutil.rmtree(path)
            removed.append(path)
    if removed:
        log.info("backup retention: removed %d backups older than %d days", len(removed), keep_days)
    return removed


def newest_backup_ts(root: str | Path) -> float | None:
    """Return the creation time of the newest backup under ``root`` (None: there is none).

    Only directories with a readable manifest count, as in :func:`prune`.
    """
    newest: float | None = None
    base = Path(root)
    if not base.is_dir():
        return None
    for path in base.iterdir():
        if not path.is_dir():
            continue
        try:
            created = float(read_manifest(path)["created_ts"])
        except (BackupError, KeyError, TypeError, ValueError, OSError):
            continue
        newest = created if newest is None else max(newest, created)
    return newest


class BackupScheduler:
    """Run a backup daily at ``config.at`` (site time ``tz``) and apply the retention.

    ``config`` is a ``BackupConfig``; ``config_files`` are copied into each backup.
    ``clock`` returns aware datetimes (tests). Call ``start(scheduler)`` (the runtime's one
    scheduler, :mod:`scada.scheduler`: the backup is a cron job at ``config.at`` site time)
    and ``await stop()``.

    Outcome, read on the loop thread (``scada.health``): ``last_ok`` (None until the first
    run, True/False after each), ``last_error`` (the failure's message), ``last_backup_ts``
    (creation time of the newest good backup, found in ``config.dir`` at start) and ``runs``
    (scheduled or ``run_now`` runs so far). A failed run is logged and recorded, never raised.
    """

    def __init__(
        self,
        config: BackupConfig,
        data_dir: str | Path,
        *,
        site_id: str,
        tz: str,
        config_files: Iterable[str | Path] = (),
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.config = config
        self.data_dir = Path(data_dir)
        self.site_id = site_id
        self.tz = tz
        self.config_files = list(config_files)
        self.clock = clock
        self.last: Path | None = None
        self.last_ok: bool | None = None
        self.last_error: str | None = None
        self.last_backup_ts: float | None = None
        self.runs = 0
        self._job: Job | None = None
        self._task: asyncio.Task[None] | None = None

    def run_once(self) -> Path:
        """Back up now into a new timestamped directory and prune; return its path (blocking)."""
        now = self.clock()
        root = Path(self.config.dir)
        dest = root / f"{self.site_id or 'site'}-{now.astimezone(dt.UTC).strftime(_STAMP)}"
        backup(self.data_dir, dest, config_files=self.config_files, site_id=self.site_id)
        prune(root, self.config.keep_days, now.timestamp())
        self.last = dest
        return dest

    def start(self, scheduler: AsyncIOScheduler) -> None:
        """Add the daily job to ``scheduler`` and find the newest backup kept (on the loop)."""
        self._job = scheduler.add_job(
            self.run_now,
            daily_trigger(self.config.at, self.tz),
            id="system.backup",
            name="backup",
        )
        self._task = asyncio.create_task(self._find_newest(), name="backup-newest")

    async def stop(self) -> None:
        """Remove the job (a backup in progress finishes in its thread)."""
        if self._job is not None:
            with contextlib.suppress(JobLookupError):  # the scheduler was shut down first
                self._job.remove()
            self._job = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_now(self) -> Path | None:
        """Back up now in a worker thread and record the outcome; return the path (None: failed).

        Loop thread only. Never raises for a failed backup: it is logged and recorded in
        ``last_ok``/``last_error``.
        """
        started = time.time()
        try:
            dest = await asyncio.to_thread(self.run_once)
        except Exception as exc:
            log.exception("scheduled backup of %s failed", self.data_dir)
            self.last_ok, self.last_error = False, f"{type(exc).__name__}: {exc}"
            self.runs += 1
            return None
        log.info("scheduled backup written to %s", dest)
        self.last_ok, self.last_error, self.last_backup_ts = True, None, started
        self.runs += 1
        return dest

    async def _find_newest(self) -> None:
        if self.last_backup_ts is None:  # a restart: the age counts from the newest backup kept
            try:
                newest = await asyncio.to_thread(newest_backup_ts, self.config.dir)
            except OSError:
                log.exception("cannot list the backups in %s", self.config.dir)
            else:
                if self.last_backup_ts is None:  # unless a run_now finished meanwhile
                    self.last_backup_ts = newest
