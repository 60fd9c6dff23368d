"""Configuration versions: get, validate, apply hot with a diff, history, roll back.

A configuration is a *bundle*: ``{relative path: text}`` of every file the running site
was read from (the main file and its includes), relative to the main file's directory.
A proposal gives some files (changed or new); the others are taken from the current
bundle. Validation writes the bundle to a temporary directory and runs the real loader,
so errors carry ``file:line:col`` and the field path, with files named as in the bundle.

Applying a valid proposal: the files are written back to disk (atomically), the runtime
applies the new site (:meth:`scada.runtime.Runtime.apply`, the same code that starts it:
tag definitions, drivers and simulator when channels, devices or templates changed, alarm
and billing rules, billing's accounts and tags), and the bundle is stored as a new version under
``<data-dir>/config-versions/<NNNNNN>/`` (``meta.json`` + ``files.json``). A rollback
applies an earlier version's bundle as a new version.

Threading: loading and disk I/O run in worker threads; the hot swap runs on the loop.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from scada.config import ConfigError, SiteConfig, load_site
from scada.services.audit import AuditLog
from scada.services.auth import Action, may
from scada.services.plant import Plant

__all__ = [
    "ConfigManager",
    "ConfigUnavailable",
    "Plan",
    "ProposalError",
    "SiteApplier",
    "compare_sites",
]

log = logging.getLogger(__name__)

MAX_FILES = 200
MAX_FILE_BYTES = 5 * 1024 * 1024


class ConfigUnavailable(Exception):
    """The running configuration was not read from files (nothing to version)."""


class ProposalError(ValueError):
    """A proposal is malformed (bad file name, too large): not a config error."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What applying a new site changes."""

    tags_added: list[str]
    tags_removed: list[str]
    tags_changed: list[str]
    devices_added: list[str]
    devices_removed: list[str]
    devices_changed: list[str]
    channels_changed: list[str]
    templates_changed: list[str]
    alarms_changed: bool
    substations_changed: bool = False  # the simulator builds its plant from them

    @property
    def restart_drivers(self) -> bool:
        return bool(
            self.devices_added
            or self.devices_removed
            or self.devices_changed
            or self.channels_changed
            or self.templates_changed
            or self.substations_changed
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "tags": {
                "added": self.tags_added,
                "removed": self.tags_removed,
                "changed": self.tags_changed,
            },
            "devices": {
                "added": self.devices_added,
                "removed": self.devices_removed,
                "changed": self.devices_changed,
            },
            "channels_changed": self.channels_changed,
            "templates_changed": self.templates_changed,
            "alarms_changed": self.alarms_changed,
            "substations_changed": self.substations_changed,
            "restart_drivers": self.restart_drivers,
        }


def _by_id(items: Any, key: str = "id") -> dict[str, Any]:
    return {getattr(i, key): i.model_dump(mode="json") for i in items}


def _keyed_diff(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(k for k in set(old) & set(new) if old[k] != new[k])
    return added, removed, changed


def compare_sites(old: SiteConfig, new: SiteConfig) -> Plan:
    """Return what changes from ``old`` to ``new`` (tags, devices, channels, templates, alarms)."""
    old_tags = {d.name: d for d in old.tag_defs()}
    new_tags = {d.name: d for d in new.tag_defs()}
    ta, tr, tc = _keyed_diff(old_tags, new_tags)
    da, dr, dc = _keyed_diff(_by_id(old.devices), _by_id(new.devices))
    ca, cr, cc = _keyed_diff(_by_id(old.channels), _by_id(new.channels))
    old_t = {k: v.model_dump(mode="json") for k, v in old.templates.items()}
    new_t = {k: v.model_dump(mode="json") for k, v in new.templates.items()}
    xa, xr, xc = _keyed_diff(old_t, new_t)
    return Plan(
        ta,
        tr,
        tc,
        da,
        dr,
        dc,
        sorted({*ca, *cr, *cc}),
        sorted({*xa, *xr, *xc}),
        old.alarms != new.alarms,
        _by_id(old.substations) != _by_id(new.substations),
    )


class SiteApplier(Protocol):
    """What applies a new site configuration to the running parts (the runtime)."""

    async def apply(self, site: SiteConfig) -> Plan:
        """Reconfigure every part for ``site``; return the plan carried out."""
        ...


def _check_rel(rel: str) -> str:
    if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
        raise ProposalError(f"invalid file name {rel!r}")
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or p.suffix not in (".yaml", ".yml"):
        raise ProposalError(
            f"invalid file name {rel!r}: a relative .yaml path inside the config folder"
        )
    return str(p)


class ConfigManager:
    """Versions of the running site configuration (module docstring)."""

    def __init__(
        self, plant: Plant, applier: SiteApplier, audit: AuditLog, data_dir: str | Path
    ) -> None:
        self.plant = plant
        self.applier = applier
        self.audit = audit
        self.dir = Path(data_dir) / "config-versions"
        self._lock = asyncio.Lock()
        files = [f for f in plant.site.source_files() if not f.startswith("<")]
        self.main: Path | None = Path(files[0]).resolve() if files else None
        self.root = self.main.parent if self.main else None
        self._rels = [self._rel_of(f) for f in files]

    def _rel_of(self, path: str) -> str:
        assert self.root is not None
        return os.path.relpath(Path(path).resolve(), self.root).replace(os.sep, "/")

    def _require(self) -> tuple[Path, Path]:
        if self.main is None or self.root is None:
            raise ConfigUnavailable("the running configuration was not read from files")
        return self.main, self.root

    # ------------------------------------------------------------------ reading
    def current_files(self) -> dict[str, str]:
        """Return the running bundle ``{relative path: text}`` (main file first)."""
        _, root = self._require()
        rels = [self._rel_of(f) for f in self.plant.site.source_files() if not f.startswith("<")]
        return {rel: (root / rel).read_text(encoding="utf-8") for rel in rels}

    def main_name(self) -> str:
        main, _ = self._require()
        return self._rel_of(str(main))

    def _version_dirs(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.iterdir() if p.is_dir() and p.name.isdigit())

    def versions(self) -> list[dict[str, Any]]:
        """Return the metadata of every stored version, oldest first."""
        return [
            json.loads((p / "meta.json").read_text())
            for p in self._version_dirs()
            if (p / "meta.json").exists()
        ]

    def version(self, number: int) -> dict[str, Any]:
        """Return a version's metadata with its ``files``; ``KeyError`` if there is none."""
        p = self.dir / f"{int(number):06d}"
        if not (p / "meta.json").exists():
            raise KeyError(f"no configuration version {number}")
        meta = json.loads((p / "meta.json").read_text())
        meta["files"] = json.loads((p / "files.json").read_text())
        return meta

    def current_version(self) -> int:
        dirs = self._version_dirs()
        return int(dirs[-1].name) if dirs else 0

    def ensure_baseline(self) -> None:
        """Store the running bundle as a version if it differs from the newest one."""
        if self.main is None:
            return
        files = self.current_files()
        dirs = self._version_dirs()
        if dirs and json.loads((dirs[-1] / "files.json").read_text()) == files:
            return
        self._save(
            files, user="system", comment="configuration at server start", diff={}, plan=None
        )

    def _save(
        self,
        files: dict[str, str],
        *,
        user: str,
        comment: str,
        diff: dict[str, str],
        plan: dict[str, Any] | None,
        rollback_of: int | None = None,
    ) -> dict[str, Any]:
        number = self.current_version() + 1
        p = self.dir / f"{number:06d}"
        p.mkdir(parents=True, exist_ok=False)
        meta = {
            "version": number,
            "ts": time.time(),
            "user": user,
            "comment": comment,
            "main": self.main_name(),
            "files_changed": sorted(diff),
            "plan": plan,
            "rollback_of": rollback_of,
        }
        (p / "files.json").write_text(json.dumps(files, ensure_ascii=False))
        (p / "meta.json").write_text(json.dumps(meta, ensure_ascii=False))
        return meta

    # ------------------------------------------------------------------ proposals
    def bundle(self, proposal: dict[str, str]) -> dict[str, str]:
        """Return the current bundle with ``proposal``'s files replacing/adding files."""
        current = self.current_files()
        if not isinstance(proposal, dict) or not proposal:
            raise ProposalError('give at least one file: {"files": {"name.yaml": "..."}}')
        if len(proposal) > MAX_FILES:
            raise ProposalError(f"too many files (limit {MAX_FILES})")
        out = dict(current)
        for rel, text in proposal.items():
            if rel not in current:
                rel = _check_rel(rel)
            if not isinstance(text, str):
                raise ProposalError(f"file {rel}: the content must be a string")
            if len(text.encode()) > MAX_FILE_BYTES:
                raise ProposalError(f"file {rel}: larger than {MAX_FILE_BYTES} bytes")
            out[rel] = text
        return out

    def load_bundle(self, files: dict[str, str]) -> tuple[SiteConfig | None, list[dict[str, Any]]]:
        """Load a bundle with the real loader; return ``(site, [])`` or ``(None, issues)``.

        Runs anywhere (no loop needed): call it in a worker thread. Issue files are named
        as in the bundle.
        """
        main_rel = self.main_name()
        with tempfile.TemporaryDirectory(prefix="scada-config-") as tmp:
            base = Path(tmp) / "root"
            for rel, text in files.items():
                # files outside the folder (../x.yaml) land in "up" folders of the temp tree
                target = (base / "a" / "b" / "c" / rel).resolve()
                if not str(target).startswith(str(Path(tmp).resolve())):
                    return None, [
                        {
                            "file": rel,
                            "line": 0,
                            "col": 0,
                            "path": "(root)",
                            "message": "file outside the configuration tree",
                        }
                    ]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            main = base / "a" / "b" / "c" / main_rel
            prefix = str((base / "a" / "b" / "c").resolve()) + os.sep
            try:
                site = load_site(main)
            except ConfigError as exc:
                return None, [self._issue(i.to_json(), prefix) for i in exc.issues]
            except OSError as exc:
                return None, [
                    {"file": main_rel, "line": 0, "col": 0, "path": "(root)", "message": str(exc)}
                ]
        return site, []

    @staticmethod
    def _issue(issue: dict[str, Any], prefix: str) -> dict[str, Any]:
        f = str(issue.get("file", ""))
        try:
            resolved = str(Path(f).resolve())
        except OSError:
            resolved = f
        if resolved.startswith(prefix):
            issue["file"] = resolved[len(prefix) :].replace(os.sep, "/")
        return issue

    def diff(self, old: dict[str, str], new: dict[str, str]) -> dict[str, str]:
        """Return a unified diff per changed file."""
        out = {}
        for rel in sorted(set(old) | set(new)):
            a, b = old.get(rel, ""), new.get(rel, "")
            if a != b:
                out[rel] = "".join(
                    difflib.unified_diff(
                        a.splitlines(keepends=True),
                        b.splitlines(keepends=True),
                        fromfile=f"a/{rel}",
                        tofile=f"b/{rel}",
                    )
                )
        return out

    async def validate(self, proposal: dict[str, str]) -> dict[str, Any]:
        """Return ``{"valid", "errors", "diff", "plan"}`` for a proposal (nothing applied)."""
        files = self.bundle(proposal)
        loop = asyncio.get_running_loop()
        site, issues = await loop.run_in_executor(None, self.load_bundle, files)
        result: dict[str, Any] = {
            "valid": site is not None,
            "errors": issues,
            "diff": self.diff(self.current_files(), files),
        }
        result["plan"] = compare_sites(self.plant.site, site).to_json() if site else None
        return result

    async def apply(
        self,
        user: Any,
        proposal: dict[str, str],
        *,
        comment: str = "",
        source: str | None = None,
        rollback_of: int | None = None,
    ) -> dict[str, Any]:
        """Validate and apply a proposal; return ``{"valid", "errors", "version", "diff", "plan"}``.

        An invalid proposal changes nothing (``valid`` false, ``version`` None). Raises
        ``PermissionError`` if ``user`` may not ``config.write`` (callers such as the HMI
        should ask ``may`` first).
        """
        if not may(user, Action.CONFIG_WRITE):
            self.audit.record("config.apply", user=user, source=source, result="denied")
            raise PermissionError(
                f"user {getattr(user, 'name', user)} may not change the configuration"
            )
        async with self._lock:
            files = self.bundle(proposal)
            old_files = self.current_files()
            loop = asyncio.get_running_loop()
            site, issues = await loop.run_in_executor(None, self.load_bundle, files)
            diff = self.diff(old_files, files)
            name = getattr(user, "name", str(user))
            action = "config.rollback" if rollback_of is not None else "config.apply"
            if site is None:
                self.audit.record(
                    action,
                    user=user,
                    source=source,
                    target=self.main_name(),
                    result="failed",
                    after={"errors": issues[:20]},
                    detail=comment,
                )
                return {
                    "valid": False,
                    "errors": issues,
                    "version": None,
                    "diff": diff,
                    "plan": None,
                }
            if not diff:
                return {
                    "valid": True,
                    "errors": [],
                    "version": self.current_version(),
                    "diff": {},
                    "plan": compare_sites(self.plant.site, site).to_json(),
                }
            site = await loop.run_in_executor(None, self._write_and_load, files, old_files)
            plan = await self.applier.apply(site)
            meta = await loop.run_in_executor(
                None,
                lambda: self._save(
                    files,
                    user=name,
                    comment=comment,
                    diff=diff,
                    plan=plan.to_json(),
                    rollback_of=rollback_of,
                ),
            )
            self.audit.record(
                action,
                user=user,
                source=source,
                target=self.main_name(),
                before={"version": meta["version"] - 1},
                after={"version": meta["version"], "files": sorted(diff), "plan": plan.to_json()},
                detail=comment or None,
            )
            return {
                "valid": True,
                "errors": [],
                "version": meta["version"],
                "diff": diff,
                "plan": plan.to_json(),
            }

    async def rollback(
        self, user: Any, number: int, *, source: str | None = None
    ) -> dict[str, Any]:
        """Apply version ``number``'s bundle as a new version (``KeyError`` if unknown)."""
        files = self.version(number)["files"]
        return await self.apply(
            user,
            dict(files),
            comment=f"rollback to version {number}",
            source=source,
            rollback_of=number,
        )

    def _write_and_load(self, files: dict[str, str], old_files: dict[str, str]) -> SiteConfig:
        """Write the bundle to the real files and load it from there (paths stay real).

        Restores the old files if the real load fails (it was validated in a copy).
        """
        main, _ = self._require()
        self._write_files(files)
        try:
            return load_site(main)
        except Exception:
            self._write_files(old_files)
            raise

    def _write_files(self, files: dict[str, str]) -> None:
        _, root = self._require()
        for rel, text in files.items():
            target = root / rel
            if target.exists() and target.read_text(encoding="utf-8") == text:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
