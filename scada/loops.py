"""Which event loop ``scada run`` and ``scada simulate`` run on: uvloop when installed.

A large estate's server is one event loop doing thousands of socket round trips a second;
at 200 buildings the loop itself (selector, transports, handles, timers) was about a third of
the server's CPU on the standard asyncio loop. uvloop (libuv, a kept library) does the same
work in C. ``--loop asyncio`` keeps the standard loop (the tests' fixtures run on it too, so
both are exercised).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["CHOICES", "add_argument", "available", "run"]

T = TypeVar("T")
CHOICES = ("auto", "uvloop", "asyncio")


def available() -> bool:
    """Return whether uvloop can be imported."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def add_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--loop`` to a command's parser."""
    parser.add_argument(
        "--loop",
        choices=CHOICES,
        default="auto",
        help="event loop: uvloop (auto: when installed) or the standard asyncio loop",
    )


def run(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """Run ``main`` to completion on the chosen loop (``auto``: uvloop if available)."""
    if choice not in CHOICES:
        raise ValueError(f"unknown event loop {choice!r}; expected one of {', '.join(CHOICES)}")
    if choice == "uvloop" or (choice == "auto" and available()):
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
