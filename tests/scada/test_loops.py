"""`scada run` / `scada simulate` pick their event loop: uvloop when installed, or asyncio."""

from __future__ import annotations

import asyncio

import pytest

from scada import loops


async def _loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_each_choice_runs_on_its_loop() -> None:
    pytest.importorskip("uvloop", reason="uvloop is not installed (pip install uvloop)")
    assert loops.available()
    assert loops.run(_loop_module(), "uvloop").startswith("uvloop")
    assert loops.run(_loop_module(), "auto").startswith("uvloop")
    assert loops.run(_loop_module(), "asyncio").startswith("asyncio")


def test_an_unknown_loop_is_refused() -> None:
    coro = _loop_module()
    with pytest.raises(ValueError, match="unknown event loop 'twisted'"):
        loops.run(coro, "twisted")
    coro.close()
