"""Open the historian a site configuration asks for."""

from __future__ import annotations

from pathlib import Path

from historian.base import Historian
from historian.config import HistorianConfig


def open_historian(config: HistorianConfig, data_dir: str | Path) -> Historian:
    """Return the configured backend: SQLite at ``<data_dir>/<path>``, or InfluxDB behind a spool.

    An InfluxDB backend (``api: v1``, or the Flux one with ``api: v2``) is wrapped in a
    ``SpoolingHistorian`` spooling to ``<data_dir>/spool``; call its ``start()`` to check the
    server (credentials, database) and run the retry thread. Nothing here touches the network.
    Raises ``ValueError`` for missing settings.
    """
    if config.backend == "sqlite":
        from historian.sqlite import SqliteHistorian

        return SqliteHistorian(Path(data_dir) / config.path)
    from historian.spool import SpoolingHistorian

    backend: Historian
    if config.api == "v1":
        from historian.influx_v1 import Influx1Historian

        backend = Influx1Historian.from_config(config)
    else:
        from historian.influx import InfluxHistorian

        backend = InfluxHistorian.from_config(config)
    return SpoolingHistorian(backend, Path(data_dir) / "spool", config.spool_max_points)
