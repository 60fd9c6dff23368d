"""The ``historian`` section of a site configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from configbase.secrets import Expanded, Secret


class HistorianConfig(BaseModel):
    """Where and how tag history is stored.

    ``backend: sqlite`` (default) keeps everything in ``<data-dir>/<path>``; ``influxdb`` needs
    ``url``, ``org``, ``bucket`` and ``token`` (InfluxDB 2.x, or 1.8+ with its v2 API). All four
    expand ``${NAME}`` and ``${file:/path}`` when validated (``configbase.secrets``); ``token`` is a
    secret and never prints.
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["sqlite", "influxdb"] = "sqlite"
    path: str = Field("history.sqlite", description="SQLite file, relative to --data-dir")
    url: Expanded | None = Field(
        None, description="InfluxDB URL, e.g. http://influxdb:8086; ${NAME} is expanded"
    )
    org: Expanded | None = None
    bucket: Expanded | None = None
    token: Secret | None = Field(
        None, description="InfluxDB API token; a secret: ${NAME} or ${file:/path}"
    )
    retention_days: float | None = Field(
        400, gt=0, description="raw data kept this long; rollups forever"
    )
    batch_size: int = Field(5000, gt=0, description="points per backend write")
    flush_s: float = Field(1.0, gt=0, description="longest a change waits before it is written")
    spool_max_points: int = Field(
        5_000_000, gt=0, description="spool size that raises historian.spool_full"
    )
