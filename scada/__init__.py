"""Wiring: configuration loading, the runtime that starts every part, the server, the scheduler and the CLI."""

__all__: list[str] = []
