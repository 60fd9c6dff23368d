"""The ``historian`` section of a site configuration."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from configbase.secrets import Expanded, Secret


class HistorianConfig(BaseModel):
    """Where and how tag history is stored.

    ``backend: sqlite`` (default) keeps everything in ``<data-dir>/<path>``. ``backend: influxdb``
    with ``api: v1`` (default) speaks InfluxDB's v1 API (``/write``, InfluxQL on ``/query``), which
    InfluxDB 1.x, 2.x (with a DBRP mapping) and 3.x accept: it needs ``url`` and ``database``, and
    takes ``username`` / ``password`` (1.x users; on 2.x and 3.x a token as the password) or
    ``token``, and ``retention_policy``. ``api: v2`` is the Flux backend for InfluxDB 2.x only
    (``url``, ``org``, ``bucket``, ``token``). Text fields expand ``${NAME}`` and
    ``${file:/path}`` when validated (``configbase.secrets``); ``token`` and ``password`` are
    secrets and never print.
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["sqlite", "influxdb"] = "sqlite"
    api: Literal["v1", "v2"] = Field(
        "v1",
        description="InfluxDB API: v1 (/write + InfluxQL; InfluxDB 1.x, 2.x, 3.x) or v2 (Flux, 2.x)",
    )
    path: str = Field("history.sqlite", description="SQLite file, relative to --data-dir")
    url: Expanded | None = Field(
        None, description="InfluxDB URL, e.g. http://influxdb:8181; ${NAME} is expanded"
    )
    database: Expanded | None = Field(
        None, description="api v1: the database (on InfluxDB 2.x: mapped to a bucket by DBRP)"
    )
    retention_policy: Expanded | None = Field(
        None, description="api v1: retention policy to write to and read from (default: the db's)"
    )
    username: Expanded | None = Field(None, description="api v1: user name (InfluxDB 1.x auth)")
    password: Secret | None = Field(
        None, description="api v1: password, or a 2.x/3.x token; a secret: ${NAME} or ${file:/path}"
    )
    org: Expanded | None = Field(None, description="api v2: organisation")
    bucket: Expanded | None = Field(None, description="api v2: bucket")
    token: Secret | None = Field(
        None, description="InfluxDB API token; a secret: ${NAME} or ${file:/path}"
    )
    timeout_s: float = Field(10.0, gt=0, description="InfluxDB: seconds one HTTP request may take")
    retention_days: float | None = Field(
        400,
        gt=0,
        description="raw data kept this long; rollups forever (InfluxDB v1: the duration of a "
        "database or retention policy the backend creates)",
    )
    batch_size: int = Field(5000, gt=0, description="points per backend write")
    flush_s: float = Field(1.0, gt=0, description="longest a change waits before it is written")
    spool_max_points: int = Field(
        5_000_000, gt=0, description="spool size that raises historian.spool_full"
    )

    @model_validator(mode="after")
    def _influx_settings(self) -> HistorianConfig:
        if self.backend != "influxdb":
            return self
        problems: list[str] = []
        if not self.url:
            problems.append("url is required for backend influxdb (e.g. http://influxdb:8181)")
        else:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems.append(
                    f"url {self.url!r} must be http://host[:port] or https://host[:port]"
                )
            elif parts.username is not None or parts.password is not None:
                problems.append("url must not hold credentials: use username / password or token")
        if self.api == "v1":
            v2_only = [n for n in ("org", "bucket") if getattr(self, n) is not None]
            if v2_only:
                problems.append(
                    f"{' and '.join(v2_only)} belong to api v2 (Flux): set api: v2, or give "
                    "database (on InfluxDB 2.x, a database a DBRP mapping points at the bucket)"
                )
            if not self.database:
                problems.append("database is required for api v1")
            if self.token is not None and (self.username or self.password is not None):
                problems.append("give token or username/password, not both")
            if self.username and self.password is None:
                problems.append("username needs password")
        else:
            for name in ("org", "bucket", "token"):
                if not getattr(self, name):
                    problems.append(f"{name} is required for api v2")
            for name in ("database", "retention_policy", "username", "password"):
                if getattr(self, name) is not None:
                    problems.append(f"{name} is an api v1 setting; api v2 uses org and bucket")
        if problems:
            raise ValueError("; ".join(problems))
        return self
