"""The configuration's version history: when (site time, zone named), who, why; roll back.

The table lists ``ConfigManager.versions()`` newest first, times in the site's time zone
with the zone named. *Roll back to selected* asks the page to roll back (the page validates
the version's files first and asks for the confirm, as for an apply).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bokeh.models import ColumnDataSource
from bokeh.models.widgets import Button, DataTable, TableColumn

from hmi.timefmt import localised_time_text
from i18n import _

__all__ = ["VersionHistory", "version_rows"]


def version_rows(versions: list[dict[str, Any]], tz: str) -> dict[str, list[Any]]:
    """Return the table columns of ``versions`` (oldest first in, newest first out)."""
    vs = list(reversed(versions))
    when = []
    for v in vs:
        ts = v.get("ts")
        when.append(localised_time_text(float(ts), tz) if isinstance(ts, int | float) else "—")
    return {
        "version": [v.get("version") for v in vs],
        "when": when,
        "user": [v.get("user", "") for v in vs],
        "comment": [v.get("comment", "") for v in vs],
    }


class VersionHistory:
    """The ``config-versions`` table and its roll-back button."""

    def __init__(self, api: Any, tz: str, on_rollback: Callable[[int | None], None]) -> None:
        self.api = api
        self.tz = tz
        self.source = ColumnDataSource(version_rows([], tz), name="config-versions")
        self.table = DataTable(
            source=self.source,
            columns=[
                TableColumn(field="version", title=_("v"), width=40),
                TableColumn(field="when", title=_("when"), width=170),
                TableColumn(field="user", title=_("user"), width=80),
                TableColumn(field="comment", title=_("comment"), width=200),
            ],
            height=180,
            sizing_mode="stretch_width",
            name="config-version-table",
            index_position=None,
        )
        self.button = Button(label=_("Roll back to selected"), name="config-rollback", width=170)
        self.on_rollback = on_rollback
        self.button.on_click(lambda: self.on_rollback(self.selected()))
        self.refresh()

    def refresh(self) -> None:
        """Read the versions again."""
        self.source.data = version_rows(self.api.versions(), self.tz)

    def selected(self) -> int | None:
        """The selected version number, or None."""
        sel = self.source.selected.indices
        if not sel:
            return None
        return int(self.source.data["version"][sel[0]])
