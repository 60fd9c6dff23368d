"""``scada backup CONFIG DEST`` and ``scada restore CONFIG SRC``: copy the data dir out and back.

``backup`` works while ``scada run`` is running (SQLite online backup; see ``scada.backup``).
``restore`` refuses a data dir held by a running process unless ``--force``, and a backup
of another site unless ``--force``; the previous data dir is kept as
``<data dir>.before-restore-<time>``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from scada.cli import DEFAULT_CONFIG, add_data_dir

if TYPE_CHECKING:
    from scada.config import SiteConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backup",
        help="consistent copy of every store in --data-dir, while running",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help="site config")
    p.add_argument("dest", help="new directory to write the backup into")
    add_data_dir(p)
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=run_backup)

    r = sub.add_parser(
        "restore",
        help="bring a backup back into --data-dir",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help="site config")
    r.add_argument("src", help="backup directory (written by scada backup)")
    add_data_dir(r)
    r.add_argument(
        "--force",
        action="store_true",
        help="restore even into a running data dir or from another site",
    )
    r.add_argument("--json", action="store_true", help="print the manifest as JSON")
    r.set_defaults(func=run_restore)


def _site(path: str) -> SiteConfig | None:
    """Load the site at ``path``; None (the errors printed) if it is invalid."""
    from scada.config import ConfigError, load_site

    try:
        return load_site(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return None


def run_backup(args: argparse.Namespace) -> int:
    from scada.backup import BackupError, backup

    site = _site(args.config)
    if site is None:
        return 1
    try:
        manifest = backup(
            args.data_dir, args.dest, config_files=site.source_files(), site_id=site.site.id
        )
    except BackupError as exc:
        print(f"scada backup: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        size = sum(f["bytes"] for f in manifest["files"])
        print(
            f"backup of {args.data_dir} written to {args.dest}: {len(manifest['files'])} files, "
            f"{size / 1e6:.1f} MB"
        )
    return 0


def run_restore(args: argparse.Namespace) -> int:
    from scada.backup import BackupError, read_manifest, restore

    site = _site(args.config)
    if site is None:
        return 1
    try:
        theirs = read_manifest(args.src).get("site")
        if theirs and theirs != site.site.id and not args.force:
            raise BackupError(
                f"{args.src} is a backup of site {theirs!r}, not {site.site.id!r} "
                "(use --force to restore it anyway)"
            )
        manifest = restore(args.src, args.data_dir, force=args.force)
    except BackupError as exc:
        print(f"scada restore: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        aside = manifest["moved_aside"]
        print(
            f"restored {len(manifest['files'])} files from {args.src} into {args.data_dir}"
            + (f"; previous data kept in {aside}" if aside else "")
        )
    return 0
