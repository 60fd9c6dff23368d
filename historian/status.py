"""The historian's own status tags (alarm-ready), published by the runtime from ``Recorder.status()``."""

from __future__ import annotations

from tags.model import Source, TagDef, TagType


def status_tag_defs() -> list[TagDef]:
    """Return the definitions of ``historian.backend_ok``, ``historian.spool_points``, ``historian.spool_full``."""
    return [
        TagDef(
            "historian.backend_ok",
            TagType.BOOL,
            source=Source.SYSTEM,
            description="historian backend reachable (false while writes are spooled)",
        ),
        TagDef(
            "historian.spool_points",
            TagType.INT,
            source=Source.SYSTEM,
            description="points waiting in the store-and-forward spool",
        ),
        TagDef(
            "historian.spool_full",
            TagType.BOOL,
            source=Source.SYSTEM,
            description="spool above historian.spool_max_points",
        ),
    ]
