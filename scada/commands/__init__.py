"""Subcommands of the ``scada`` CLI: each module has ``register(subparsers)``.

Add a new subcommand by writing a module here and naming it in ``scada.cli.COMMANDS``.
"""

__all__: list[str] = []
