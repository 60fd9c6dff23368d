"""A started runtime sets its long-lived objects aside from the garbage collector, and gives them back."""

from __future__ import annotations

import gc
from pathlib import Path

from tests.scada.server_fixtures import start_served


async def test_start_freezes_the_heap_and_stop_thaws_it(tmp_path: Path) -> None:
    gc.unfreeze()
    served = await start_served(tmp_path)
    try:
        frozen = gc.get_freeze_count()
        # the site, tag database, drivers ... of start-up: full collections no longer walk them
        assert frozen > 10_000
        assert served.runtime.site.channels and served.runtime.drivers is not None
    finally:
        await served.runtime.stop()
    assert gc.get_freeze_count() == 0  # collectable again once stopped
