"""Open the historian a site configuration asks for."""

from __future__ import annotations

from pathlib import Path

from historian.base import Historian
from historian.config import HistorianConfig


def open_historian(config: HistorianConfig, data_dir: str | Path) -> Historian:
    """Return the configured backend: SQLite at ``<data_dir>/<path>``, or InfluxDB behind a spool.

    The InfluxDB backend is wrapped in a ``SpoolingHistorian`` spooling to ``<data_dir>/spool``;
    call its ``start()`` to run the retry thread. Raises ``ValueError`` for missing settings.
    """
    if config.backend == "sqlite":
        from historian.sqlite import SqliteHistorian

        return SqliteHistorian(Path(data_dir) / config.path)
    from historian.influx import InfluxHistorian
    from historian.spool import SpoolingHistorian

    return SpoolingHistorian(
        InfluxHistorian.from_config(config), Path(data_dir) / "spool", config.spool_max_points
    )
