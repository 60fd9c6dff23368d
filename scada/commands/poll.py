"""``scada poll CONFIG``: poll the site's devices, like mbpoll but at tag level (commissioning).

``--once`` polls every enabled device once and prints every device and status tag; with
``--json`` one JSON object ``{"<tag>": {"value", "quality", "reason", "ts"}}``, otherwise a
table. Without ``--once`` it keeps polling and prints each change until Ctrl-C.
``--tags GLOB`` (repeatable) limits the tags shown. Exit 0 when every device answered,
2 when some did not (their tags show ``bad/comm_lost``), 1 on a configuration error.

``--time-sync CHANNEL`` broadcasts the site's local time to the DL/T 645 meters of
``CHANNEL`` (control code 08, no answer; a channel's ``time_sync: "HH:MM"`` does it daily in
``scada run``) and exits: 0 when sent, 2 when the channel cannot be reached, 1 when it is no
DL/T 645 channel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scada.config import SiteConfig
    from tags.database import TagDatabase

#: Seconds between two stale checks while following (``scada run`` does it in housekeeping).
STALE_CHECK_S = 1.0


def register(sub: argparse._SubParsersAction) -> None:
    from scada.cli import DEFAULT_CONFIG, add_data_dir

    parser = sub.add_parser(
        "poll",
        help="poll the devices of a site once (or continuously) and print tag values",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "config",
        nargs="?",
        default=DEFAULT_CONFIG,
        help=f"site configuration (default: {DEFAULT_CONFIG})",
    )
    parser.add_argument("--once", action="store_true", help="poll every device once, print, exit")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--tags", action="append", metavar="GLOB", help="only tags matching GLOB (repeatable)"
    )
    parser.add_argument(
        "--time-sync",
        metavar="CHANNEL",
        help="broadcast the time to the DL/T 645 meters of CHANNEL, then exit",
    )
    add_data_dir(parser)
    parser.set_defaults(func=run)


def _load(path: str) -> Any:
    from scada.config import ConfigError, load_site

    try:
        return load_site(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return None
    except OSError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return None


def _device_tags(db: TagDatabase, patterns: list[str] | None) -> list[str]:
    from tags.model import Source

    names = db.match(patterns) if patterns else db.names
    return [n for n in names if db.definition(n).source in (Source.DEVICE, Source.STATUS)]


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _table(rows: dict[str, dict[str, Any]]) -> str:
    header = ("tag", "value", "quality", "reason", "ts")
    lines = [header] + [
        (tag, _format_value(v["value"]), v["quality"], v["reason"] or "", v["ts"] or "")
        for tag, v in rows.items()
    ]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


async def poll_once(
    site: SiteConfig, patterns: list[str] | None = None
) -> tuple[dict[str, dict[str, Any]], bool]:
    """Poll every device of ``site`` once; return ``({tag: TagValue.to_json()}, all_online)``."""
    from drivers.manager import DriverManager
    from tags.database import TagDatabase

    db = TagDatabase(site.tag_defs())
    manager = DriverManager(site, db)
    try:
        await manager.poll_once()
    finally:
        await manager.stop()
    rows = {name: db.read(name).to_json() for name in _device_tags(db, patterns)}
    online = all(
        st.online is True
        for driver in manager.drivers.values()
        for st in driver.status.values()  # type: ignore[attr-defined]  # every driver has it; the Driver protocol does not name it
    )
    return rows, online


async def _follow(site: SiteConfig, patterns: list[str] | None, as_json: bool) -> int:
    from drivers.manager import DriverManager
    from tags.database import TagDatabase

    db = TagDatabase(site.tag_defs())
    wanted = set(_device_tags(db, patterns))

    def on_change(batch: Any) -> None:
        rows = {name: tv.to_json() for name, tv in batch.items() if name in wanted}
        if not rows:
            return
        if as_json:
            print(json.dumps(rows), flush=True)
        else:
            for tag, v in rows.items():
                print(
                    f"{v['ts']}  {tag} = {_format_value(v['value'])}  {v['quality']}"
                    f"{'/' + v['reason'] if v['reason'] else ''}",
                    flush=True,
                )

    db.subscribe(patterns or "*", on_change, name="scada-poll")
    async with DriverManager(site, db):
        while True:
            await asyncio.sleep(STALE_CHECK_S)
            db.check_stale()
    return 0  # pragma: no cover - ends with Ctrl-C


async def time_sync(site: SiteConfig, channel_id: str) -> tuple[int, str]:
    """Broadcast the time on DL/T 645 channel ``channel_id``; return (exit code, message)."""
    from drivers.dlt645_driver import Dlt645Driver
    from drivers.manager import DriverManager
    from drivers.meterbus import RequestFailed
    from i18n import _
    from tags.database import TagDatabase

    manager = DriverManager(site, TagDatabase(site.tag_defs()))
    driver = manager.drivers.get(channel_id)
    if not isinstance(driver, Dlt645Driver):
        known = ", ".join(k for k, d in manager.drivers.items() if isinstance(d, Dlt645Driver))
        return 1, _(
            "time-sync: {channel} is no DL/T 645 channel with devices (those: {known})",
            channel=channel_id,
            known=known or "-",
        )
    try:
        at = await driver.time_sync()
    except RequestFailed as exc:
        return 2, _("time-sync: channel {channel}: {cause}", channel=channel_id, cause=str(exc))
    finally:
        await manager.stop()
    return 0, _(
        "time-sync: channel {channel} set to {time}",
        channel=channel_id,
        time=at.isoformat(" ", "seconds"),
    )


def run(args: argparse.Namespace) -> int:
    site = _load(args.config)
    if site is None:
        return 1
    if args.time_sync:
        code, message = asyncio.run(time_sync(site, args.time_sync))
        print(message, file=sys.stderr if code else sys.stdout)
        return code
    if not args.once:
        return asyncio.run(_follow(site, args.tags, args.json))
    rows, online = asyncio.run(poll_once(site, args.tags))
    if args.json:
        print(json.dumps(rows, indent=None))
    else:
        print(_table(rows))
    return 0 if online else 2
