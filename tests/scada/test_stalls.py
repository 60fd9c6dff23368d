"""The stall tracer names what held the event loop; the GC probe times collector passes."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import time

import pytest

from scada.health import GcPauseProbe
from scada.stalls import StallTracer, from_env


def _hold_the_loop_for(seconds: float) -> None:
    time.sleep(seconds)  # stands for a long synchronous computation on the loop


async def test_a_stall_is_logged_with_the_function_that_held_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracer = StallTracer(threshold_s=0.05, check_s=0.01)
    tracer.start()
    try:
        await asyncio.sleep(0.05)  # beats, no stall
        assert tracer.stalls == 0
        with caplog.at_level(logging.WARNING, logger="scada.stalls"):
            _hold_the_loop_for(0.3)
            await asyncio.sleep(0.05)
    finally:
        tracer.stop()
    assert tracer.stalls == 1  # once per stall, however long it lasts
    assert "_hold_the_loop_for" in caplog.text
    assert "event loop held" in caplog.text
    assert any("sleep" in where or "_hold_the_loop_for" in where for where in tracer.where)


def test_the_threshold_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCADA_STALL_TRACE_MS", raising=False)
    assert from_env() is None
    monkeypatch.setenv("SCADA_STALL_TRACE_MS", "150")
    tracer = from_env()
    assert tracer is not None and tracer.threshold_s == pytest.approx(0.15)
    monkeypatch.setenv("SCADA_STALL_TRACE_MS", "soon")
    assert from_env() is None


def test_the_gc_probe_times_full_collections() -> None:
    probe = GcPauseProbe()
    probe.start()
    try:
        garbage = [[] for _ in range(50_000)]
        for a, b in itertools.pairwise(garbage):
            a.append(b)  # something for the pass to walk
        before = probe.full_passes
        gc.collect()
        assert probe.full_passes == before + 1
        assert probe.take_max_ms() > 0.0
        assert probe.take_max_ms() == 0.0  # each read starts a new interval
        assert probe.last_full["ms"] >= 0.0
    finally:
        probe.stop()
    gc.collect()
    assert probe.full_passes == before + 1  # stopped: no longer counted
