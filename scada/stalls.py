"""Say where the event loop was when it stalled: a diagnosis aid for large estates.

``system.loop_lag_ms`` says *that* the loop was held up; :class:`StallTracer` says *by
what*. The loop stamps a heartbeat every ``check_s``; a watcher thread that finds the stamp
older than ``threshold_s`` takes the loop thread's Python stack (``sys._current_frames``)
and logs it once per stall, with how long the loop had been held so far. The watcher holds
the GIL only to copy one stack, so it does not add stalls of its own.

``scada run`` starts one when ``SCADA_STALL_TRACE_MS`` is set (e.g. ``100``); the bench's
``SCADA_BENCH_KEEP_DIR`` keeps the server log where the traces land (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sys
import threading
import time
import traceback

__all__ = ["ENV", "StallTracer", "from_env"]

log = logging.getLogger(__name__)

ENV = "SCADA_STALL_TRACE_MS"
STACK_LINES = 14  # innermost frames logged per stall


class StallTracer:
    """Log the loop thread's stack when the loop is held longer than ``threshold_s``."""

    def __init__(self, threshold_s: float, check_s: float = 0.02) -> None:
        if threshold_s <= 0:
            raise ValueError("the stall threshold must be positive")
        self.threshold_s = threshold_s
        self.check_s = check_s
        self.stalls = 0
        self.where: collections.Counter[str] = collections.Counter()  # innermost frame -> stalls
        self._beat = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop_thread = 0

    def start(self) -> None:
        """Start beating on the running loop and watching from a daemon thread."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stop.clear()
        self._tick()
        self._thread = threading.Thread(target=self._watch, name="stall-tracer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (idempotent)."""
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None

    def _tick(self) -> None:
        assert self._loop is not None
        self._beat = time.monotonic()
        self._handle = self._loop.call_later(self.check_s, self._tick)

    def _watch(self) -> None:
        reported = -1.0
        while not self._stop.wait(self.check_s):
            beat = self._beat
            held = time.monotonic() - beat - self.check_s
            if held < self.threshold_s or beat == reported:
                continue
            reported = beat  # once per stall
            frame = sys._current_frames().get(self._loop_thread)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)[-STACK_LINES:]
            self.stalls += 1
            if stack:
                self.where[f"{stack[-1].name} ({stack[-1].filename}:{stack[-1].lineno})"] += 1
            log.warning(
                "event loop held %.0f ms so far, in:\n%s",
                held * 1000.0,
                "".join(traceback.format_list(stack)).rstrip(),
            )


def from_env() -> StallTracer | None:
    """Return a tracer if ``SCADA_STALL_TRACE_MS`` asks for one (None otherwise)."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        return StallTracer(float(raw) / 1000.0)
    except ValueError:
        log.error("%s=%r is not a positive number of milliseconds; no stall tracing", ENV, raw)
        return None
