"""Device status and comm-loss: failure counting, offline probing, reconnect backoff.

A :class:`DeviceStatus` is pure state (no I/O, no clock of its own): drivers report each
request's outcome with the current time and ask whether an offline device may be probed.
:class:`DeviceTags` writes the consequences into the tag database: values, ``bad/comm_lost``
on every tag of a device that went offline, and the status tags ``<device>.online``,
``.last_ok`` (epoch seconds), ``.errors`` (count) and ``.latency_ms``.

The cause of a comm loss (``DeviceStatus.cause``: a timeout, a Modbus exception code, a
short or malformed answer, a refused connection, a silent CAN node) is the detail of the
tags' ``comm_lost`` reason (``TagValue.detail``), which the API and the HMI tooltip show;
it follows the latest failure while the device stays offline.

Loop-thread only (the tag database is).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from drivers import defaults
from tags.model import Quality, Reason

if TYPE_CHECKING:
    from tags.database import TagDatabase

__all__ = ["Backoff", "DeviceStatus", "DeviceTags", "StatusChange"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Backoff:
    """Capped exponential delay: ``base_s``, 2x, 4x, ... up to ``max_s``; :meth:`reset` on success."""

    base_s: float = 0.5
    max_s: float = defaults.BACKOFF_MAX_S
    attempts: int = 0

    def next_delay(self) -> float:
        """Return the delay before the next attempt and count this attempt."""
        delay = min(self.max_s, self.base_s * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0


class StatusChange:
    """What a reported outcome changed (returned by :meth:`DeviceStatus.ok` / ``failed``)."""

    NONE = 0
    WENT_ONLINE = 1
    WENT_OFFLINE = 2


@dataclass(slots=True)
class DeviceStatus:
    """Comm state of one device.

    ``retries`` consecutive failed requests make the device offline (at least one).
    An offline device is only probed every ``offline_probe_s`` seconds (one request per
    probe), so on a shared half-duplex bus it costs the others at most one timeout per probe.
    ``online`` is None until the first outcome.
    """

    device: str
    retries: int = defaults.RETRIES
    offline_probe_s: float = defaults.OFFLINE_PROBE_S
    online: bool | None = None
    consecutive_failures: int = 0
    errors: int = 0
    last_ok: float | None = None
    latency_ms: float = math.nan
    last_error: str = ""  # the last failure as logged (device, request and cause)
    cause: str = ""  # the last failure's cause, for people (the tags' quality detail)
    next_probe: float = 0.0

    def ok(self, now: float, latency_s: float) -> int:
        """Record a good response at ``now`` (monotonic or epoch; be consistent)."""
        was = self.online
        self.online = True
        self.consecutive_failures = 0
        self.latency_ms = latency_s * 1000.0
        self.last_error = ""
        self.cause = ""
        if was is not True:
            if was is False:
                log.info("device %s back online", self.device)
            return StatusChange.WENT_ONLINE
        return StatusChange.NONE

    def failed(self, now: float, error: str, cause: str = "") -> int:
        """Record a failed request (timeout, exception code, garbage, no connection).

        ``error`` is the message for the log; ``cause`` the short text for people
        (``error`` when empty).
        """
        self.errors += 1
        self.consecutive_failures += 1
        self.last_error = error
        self.cause = cause or error
        if self.online is not False and self.consecutive_failures >= max(1, self.retries):
            self.online = False
            self.next_probe = now + self.offline_probe_s
            log.warning(
                "device %s offline after %d failures: %s",
                self.device,
                self.consecutive_failures,
                error,
            )
            return StatusChange.WENT_OFFLINE
        if self.online is False:
            self.next_probe = now + self.offline_probe_s
        return StatusChange.NONE

    def may_poll(self, now: float) -> bool:
        """Return True if the device may be polled normally (online or not yet known)."""
        return self.online is not False

    def probe_due(self, now: float) -> bool:
        """Return True if an offline device is due for its single probe request."""
        return self.online is False and now >= self.next_probe


@dataclass(slots=True)
class DeviceTags:
    """Tag ids of one device's points and status tags in a ``TagDatabase``.

    ``point_ids`` holds the ids of every point tag (numeric and str), used to mark the whole
    device ``bad/comm_lost``. Status tags that do not exist in the database are skipped.
    """

    db: TagDatabase
    device: str
    point_ids: np.ndarray
    status_ids: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, db: TagDatabase, device: str, point_tags: Sequence[str]) -> DeviceTags:
        """Resolve the ids of ``point_tags`` and of the device's status tags."""
        index = db.catalog.index  # name -> id: tens of thousands of devices are built at start
        try:
            ids = np.array([index[t] for t in point_tags], dtype=np.int64)
        except KeyError as exc:
            raise KeyError(f"unknown tag {exc.args[0]!r}") from None
        status: dict[str, int] = {}
        for suffix in ("online", "last_ok", "errors", "latency_ms"):
            i = index.get(f"{device}.{suffix}")
            if i is not None:
                status[suffix] = i
        return cls(db, device, ids, status)

    def comm_lost(self, ts: float, cause: str = "") -> None:
        """Mark every point tag of the device ``bad/comm_lost`` because of ``cause`` (values kept).

        Called again with another cause while the device is offline, only the detail
        changes (the tags keep the time they were lost).
        """
        if self.point_ids.size:
            self.db.set_quality(
                self.point_ids, Quality.BAD, Reason.COMM_LOST, ts, detail=cause or None
            )

    def publish(self, status: DeviceStatus, ts: float, wall_last_ok: float | None) -> None:
        """Write ``online``, ``last_ok``, ``errors`` and ``latency_ms`` for ``status``."""
        keys, values = self.status_row(status, wall_last_ok)
        if keys:
            self.db.update_many(
                np.asarray(keys, dtype=np.int64),
                np.asarray(values, dtype=np.float64),
                Quality.GOOD,
                ts,
                Reason.NONE,
            )

    def status_row(
        self, status: DeviceStatus, wall_last_ok: float | None
    ) -> tuple[list[int], list[float]]:
        """Return the ids and values :meth:`publish` writes (to join another update)."""
        keys: list[int] = []
        values: list[float] = []
        if "online" in self.status_ids and status.online is not None:
            keys.append(self.status_ids["online"])
            values.append(1.0 if status.online else 0.0)
        if "errors" in self.status_ids:
            keys.append(self.status_ids["errors"])
            values.append(float(status.errors))
        if "latency_ms" in self.status_ids and not math.isnan(status.latency_ms):
            keys.append(self.status_ids["latency_ms"])
            values.append(status.latency_ms)
        if "last_ok" in self.status_ids and wall_last_ok is not None:
            keys.append(self.status_ids["last_ok"])
            values.append(wall_last_ok)
        return keys, values
