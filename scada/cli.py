"""The ``scada`` command line: ``scada --help`` lists the subcommands.

Each subcommand lives in ``scada/commands/<name>.py`` with a ``register(subparsers)`` that
adds its parser and sets ``func`` (``func(args) -> int`` exit code). Imports are lazy so
``scada --help`` stays fast.

One argument order everywhere: ``scada GROUP [ACTION] CONFIG [ARGS] [OPTIONS]``
(``scada alarms list CONFIG``, ``scada history query CONFIG TAG``, ``scada bill CONFIG``).
``--data-dir`` is accepted in any position, before or after the subcommand. Times are read
by ``scada.commands.times`` (``--from -7d``, ``--to now``, ``today``, ISO dates).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from typing import Any

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
    "scada.commands.roster",
    "scada.commands.payments",
    "scada.commands.report",
    "scada.commands.bench",
]

DEFAULT_CONFIG = "config/demo-site.yaml"
DEFAULT_DATA_DIR = "var"


class ScadaArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that reads ``-7d`` as a value (``--from -7d``), not as an option.

    argparse takes any word starting with ``-`` for an option unless it looks like a negative
    number; a relative time is one here. Subparsers are built of the same class.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d+(?:\.\d+)?[a-z]+$")


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every registered subcommand."""
    parser = ScadaArgumentParser(
        prog="scada",
        description="Metering SCADA for buildings' heat and electricity.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    parser.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help=f"directory for every file the runtime writes (default: ./{DEFAULT_DATA_DIR}); "
        "accepted before or after the subcommand",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    _inherit_data_dir(parser)
    return parser


def _inherit_data_dir(parser: argparse.ArgumentParser) -> None:
    """Accept ``--data-dir`` in every subcommand and action, before or after it.

    argparse reads a parent's options only before the subcommand, and a subcommand's default
    would overwrite the parent's value: every copy below the top has no default of its own
    (``SUPPRESS``), so the value given anywhere, or the top's default, stands.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                if not any("--data-dir" in a.option_strings for a in child._actions):
                    child.add_argument(
                        "--data-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS
                    )
                _inherit_data_dir(child)


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """Show the shared ``--data-dir`` option in a command's help (every file the runtime writes)."""
    parser.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        help=f"directory for every file the runtime writes (default: ./{DEFAULT_DATA_DIR})",
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
