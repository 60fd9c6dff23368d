"""Redis key names, the building of each tag, and the change-entry wire format.

One site uses these Redis keys (``P`` = ``scada:<site id>``):

* ``P:changes:<building>``: stream of tag changes, one per building, written by the
  collector of that building, trimmed by it to what the central groups have not
  acknowledged, under a hard cap (``scada.scaleout.backlog``);
* ``P:commands:<building>``: stream of commands to that building's collector (consumer
  group ``collectors``);
* ``P:results:<central id>``: stream of command results for one central (``XREAD``);
* ``P:current``: hash ``tag -> [value, quality, reason, ts]`` of committed current values
  (what a read-only central replica serves);
* ``P:applied:<group>``: hash ``<building> -> last applied entry id`` and
  ``<building>:src -> <epoch>:<seq>`` of the last applied source sequence;
* ``P:stats:<group>``: hash ``<building>:entries`` / ``<building>:records`` counters
  of applied data entries and records;
* ``P:lost``: hash ``<building> -> entries`` dropped unacknowledged at a stream's hard cap.

A change entry has one field ``p``: JSON ``{"k": kind, "e": epoch, "s": seq, "t0":
publish time, "n": names, "v": values, "q": quality codes, "r": reason codes, "t":
source timestamps}``. ``kind`` is ``data`` (changes), ``snap`` (a full snapshot after a
resync request) or ``hb`` (heartbeat, no rows). ``epoch`` identifies one collector run,
``seq`` counts its entries per building from 1: the central skips an entry whose
``(epoch, seq)`` it has already applied, which removes duplicates left by a pipeline
that broke half-way and was replayed from the spool.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tags.bus import ChangeBatch
from tags.catalog import KIND_STR

__all__ = [
    "LUA_STREAM_IDS",
    "NO_BUILDING",
    "Entry",
    "StreamKeys",
    "batch_payloads",
    "building_code_array",
    "decode_entry",
    "device_building",
    "encode_entry",
    "parse_stream_id",
    "tag_buildings",
]

#: Pseudo building of devices that belong to no building (served by an unfiltered collector).
NO_BUILDING = "_site"

KIND_DATA = "data"
KIND_SNAPSHOT = "snap"
KIND_HEARTBEAT = "hb"


@dataclass(frozen=True, slots=True)
class StreamKeys:
    """Redis key names of one site (see the module docstring)."""

    site: str

    @property
    def prefix(self) -> str:
        return f"scada:{self.site}"

    def changes(self, building: str) -> str:
        return f"{self.prefix}:changes:{building}"

    def commands(self, building: str) -> str:
        return f"{self.prefix}:commands:{building}"

    def results(self, central_id: str) -> str:
        return f"{self.prefix}:results:{central_id}"

    @property
    def current(self) -> str:
        return f"{self.prefix}:current"

    def applied(self, group: str) -> str:
        return f"{self.prefix}:applied:{group}"

    def stats(self, group: str) -> str:
        return f"{self.prefix}:stats:{group}"

    @property
    def lost(self) -> str:
        return f"{self.prefix}:lost"


def device_building(site: Any, device: Any) -> str:
    """Return the building of ``device``: its ``building``, its household's, or its id prefix.

    Devices that match none of these belong to ``NO_BUILDING``.
    """
    if device.building:
        return str(device.building)
    if device.household:
        try:
            return str(site.household_building(device.household))
        except KeyError:
            pass
    ids = {b.id for b in site.buildings}
    parts = str(device.id).split(".")
    for n in range(len(parts) - 1, 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in ids:
            return candidate
    return NO_BUILDING


def tag_buildings(site: Any) -> dict[str, str]:
    """Return ``tag -> building`` for every device point and status tag of ``site``.

    Only these tags travel through Redis; memory, computed and system tags are owned by
    the central.
    """
    result: dict[str, str] = {}
    by_device = {d.id: device_building(site, d) for d in site.devices}
    for d in site.tag_defs():
        if d.device is not None and d.device in by_device:
            result[d.name] = by_device[d.device]
    return result


@dataclass(slots=True)
class Entry:
    """One decoded change entry (see the module docstring for the fields)."""

    kind: str
    epoch: str
    seq: int
    t0: float
    names: list[str]
    values: list[Any]
    quality: list[int]
    reason: list[int]
    ts: list[float]


def encode_entry(
    kind: str,
    epoch: str,
    seq: int,
    t0: float,
    names: list[str] | None = None,
    values: list[Any] | None = None,
    quality: list[int] | None = None,
    reason: list[int] | None = None,
    ts: list[float] | None = None,
) -> bytes:
    """Return the JSON bytes of one entry (NaN/inf floats use Python's JSON extension)."""
    body = {
        "k": kind,
        "e": epoch,
        "s": seq,
        "t0": t0,
        "n": names or [],
        "v": values or [],
        "q": quality or [],
        "r": reason or [],
        "t": ts or [],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def decode_entry(raw: bytes | str) -> Entry:
    """Parse entry JSON; raise ``ValueError`` naming the problem if it is malformed."""
    try:
        body = json.loads(raw)
        entry = Entry(
            str(body["k"]),
            str(body["e"]),
            int(body["s"]),
            float(body["t0"]),
            list(body["n"]),
            list(body["v"]),
            [int(x) for x in body["q"]],
            [int(x) for x in body["r"]],
            [float(x) for x in body["t"]],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed change entry: {exc}") from None
    n = len(entry.names)
    if not (len(entry.values) == len(entry.quality) == len(entry.reason) == len(entry.ts) == n):
        raise ValueError("malformed change entry: columns of different lengths")
    return entry


def batch_payloads(
    batch: ChangeBatch, building_codes: np.ndarray, buildings: list[str], chunk: int
) -> Iterable[tuple[str, dict[str, list[Any]]]]:
    """Split ``batch`` by building; yield ``(building, columns)`` of at most ``chunk`` rows.

    ``building_codes`` maps a tag id of the batch's catalog to an index into
    ``buildings`` (-1: not published). ``columns`` has keys n, v, q, r, t.
    """
    ids = batch.ids
    inside = ids < building_codes.size
    codes = np.full(ids.size, -1, dtype=np.int64)
    codes[inside] = building_codes[ids[inside]]
    if not np.any(codes >= 0):
        return
    names_all = batch.catalog.names
    kinds = batch.catalog.kinds
    for code in np.unique(codes[codes >= 0]).tolist():
        rows = np.flatnonzero(codes == code)
        for start in range(0, rows.size, chunk):
            part = rows[start : start + chunk]
            pids = ids[part]
            values: list[Any] = batch.vals[part].tolist()
            valid = batch.valid[part].tolist()
            strs = kinds[pids] == KIND_STR
            if strs.any():
                for j in np.flatnonzero(strs).tolist():
                    values[j] = batch.texts.get(int(pids[j]))
            if not all(valid):
                for j, ok in enumerate(valid):
                    if not ok:
                        values[j] = None
            yield (
                buildings[code],
                {
                    "n": [names_all[i] for i in pids.tolist()],
                    "v": values,
                    "q": batch.quality[part].tolist(),
                    "r": batch.reason[part].tolist(),
                    "t": batch.ts[part].tolist(),
                },
            )


def building_code_array(
    names: list[str | None], tag_building: Mapping[str, str], buildings: list[str]
) -> np.ndarray:
    """Return the id-indexed building code array for a catalog's ``names`` (-1: not published)."""
    pos = {b: i for i, b in enumerate(buildings)}
    return np.fromiter(
        (pos.get(tag_building.get(n, ""), -1) if n is not None else -1 for n in names),
        dtype=np.int64,
        count=len(names),
    )


def parse_stream_id(sid: bytes | str) -> tuple[int, int]:
    """Return ``(ms, seq)`` of a Redis stream id such as ``1700000000000-3``."""
    text = sid.decode() if isinstance(sid, bytes) else sid
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


#: Lua helpers for stream entry ids ("<ms>-<seq>"), compared as numbers (the scripts of
#: :mod:`scada.scaleout.central` and :mod:`scada.scaleout.backlog` start with it).
LUA_STREAM_IDS = """
local function split(id)
  local ms, sq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(sq)
end
local function less(a, b)
  local am, as = split(a)
  local bm, bs = split(b)
  if am ~= bm then return am < bm end
  return as < bs
end
local function ge(a, b)
  return not less(a, b)
end
"""
