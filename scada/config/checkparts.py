"""What the check mixins (billing, substations) use of ``Checker`` (``scada.config.checks``).

The mixins are typed against this base so each need not repeat the checker's interface.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scada.config.source import PathT
from tags.model import TagType


class CheckerParts:
    """The attributes and methods of ``Checker`` the check mixins call."""

    items: dict[str, list[tuple[int, Any]]]
    data: dict[str, Any]
    report: Callable[..., None]
    incomplete: bool

    def unique(self, pairs: Any, what: str, key: Callable[[Any], str]) -> dict[str, Any]:
        raise NotImplementedError

    def tag_ref(
        self, path: PathT, name: str, types: dict[str, TagType], expect: str | None = None
    ) -> None:
        raise NotImplementedError

    def where(self, path: PathT) -> str:
        raise NotImplementedError

    def _raw_ids(self, section: str, key: str = "id") -> set[str]:
        raise NotImplementedError
