"""The ``scada`` command line: ``scada --help`` lists the subcommands.

Each subcommand lives in ``scada/commands/<name>.py`` with a ``register(subparsers)`` that
adds its parser and sets ``func`` (``func(args) -> int`` exit code). Imports are lazy so
``scada --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = [
    "scada.commands.run",
    "scada.commands.check",
    "scada.commands.poll",
    "scada.commands.simulate",
    "scada.commands.history",
    "scada.commands.alarms",
    "scada.commands.backup",
    "scada.commands.audit",
    "scada.commands.user",
    "scada.commands.allocate",
    "scada.commands.bill",
    "scada.commands.account",
    "scada.commands.report",
    "scada.commands.bench",
]

DEFAULT_CONFIG = "config/demo-site.yaml"


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="scada",
        description="Metering SCADA for buildings' heat and electricity.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    _inherit_data_dir(parser)
    return parser


def _inherit_data_dir(parser: argparse.ArgumentParser, inherited: bool = False) -> None:
    """Accept ``--data-dir`` after a nested action too (``scada account CONFIG show X --data-dir D``).

    argparse reads a parent's options only before the subcommand; the copy on the child has
    no default of its own (``SUPPRESS``), so the parent's value or default stands otherwise.
    """
    has = any("--data-dir" in a.option_strings for a in parser._actions)
    if inherited and not has:
        parser.add_argument("--data-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _inherit_data_dir(child, inherited or has)


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """Add the shared ``--data-dir`` option (every file the runtime writes lives there)."""
    parser.add_argument(
        "--data-dir",
        default="var",
        help="directory for every file the runtime writes (default: ./var)",
    )


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
