"""Columnar sample batches and their packed form in the SQLite historian's pending log.

``Columns`` holds one write's samples as numpy arrays (tag id, time, value, quality, reason,
plus the sparse string values). A large write is stored as *one* row of the ``pending`` table
(``pack``), which costs one B-tree insert instead of one per sample and per rollup row; the
pending rows are merged into ``samples`` and the rollups later, in big sorted chunks
(``SqliteHistorian.flush``). ``unpack`` and ``concat`` rebuild the arrays for that merge, with the
arrival order kept, so "the last write of a (tag, ts) wins" holds across batches.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter

import numpy as np

from historian.base import Sample

__all__ = ["Columns", "encode"]

_TS, _VALUE, _QUALITY, _REASON = (attrgetter(a) for a in ("ts", "value", "quality", "reason"))

# 24 bytes a sample: the packed layout of one pending row (little-endian, fixed)
_REC = np.dtype([("tid", "<i4"), ("ts", "<f8"), ("v", "<f8"), ("q", "<i2"), ("r", "<i2")])


@dataclass(frozen=True, slots=True)
class Columns:
    """Samples of one or more writes as arrays, in arrival order.

    ``v`` is NaN for strings and missing values; ``texts`` maps an index to its string value
    (None when the batch holds no strings).
    """

    tid: np.ndarray
    ts: np.ndarray
    v: np.ndarray
    q: np.ndarray
    r: np.ndarray
    texts: dict[int, str] | None = None

    def __len__(self) -> int:
        return len(self.ts)

    def pack(self) -> tuple[bytes, str | None]:
        """Return the blob and the JSON text column of a pending row."""
        rec = np.empty(len(self), dtype=_REC)
        rec["tid"] = self.tid
        rec["ts"] = self.ts
        rec["v"] = self.v
        rec["q"] = self.q
        rec["r"] = self.r
        texts = None if not self.texts else json.dumps(sorted(self.texts.items()))
        return rec.tobytes(), texts

    @classmethod
    def unpack(cls, data: bytes, texts: str | None) -> Columns:
        """Rebuild the arrays of a pending row (inverse of ``pack``)."""
        rec = np.frombuffer(data, dtype=_REC)
        return cls(
            rec["tid"].astype(np.int64),
            rec["ts"].astype(np.float64),
            rec["v"].astype(np.float64),
            rec["q"].astype(np.int64),
            rec["r"].astype(np.int64),
            None if texts is None else {int(i): str(t) for i, t in json.loads(texts)},
        )

    @classmethod
    def concat(cls, parts: Sequence[Columns]) -> Columns:
        """Join batches in arrival order (string indexes are shifted)."""
        if len(parts) == 1:
            return parts[0]
        texts: dict[int, str] = {}
        offset = 0
        for p in parts:
            if p.texts:
                texts.update({i + offset: t for i, t in p.texts.items()})
            offset += len(p)
        return cls(
            np.concatenate([p.tid for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.v for p in parts]),
            np.concatenate([p.q for p in parts]),
            np.concatenate([p.r for p in parts]),
            texts or None,
        )


def encode(batch: Sequence[Sample], tag_ids: Sequence[int]) -> Columns:
    """Return ``batch`` as columns; ``tag_ids[i]`` is the id of ``batch[i].tag``.

    Raise ``ValueError`` naming the tag when a timestamp is not finite or a value is neither a
    number nor a string.
    """
    count = len(batch)
    ts = np.fromiter(map(_TS, batch), dtype=np.float64, count=count)
    if not np.isfinite(ts).all():
        bad = next(s for s in batch if not math.isfinite(s.ts))
        raise ValueError(f"tag {bad.tag}: timestamp {bad.ts!r} is not a finite number")
    raw_values = list(map(_VALUE, batch))
    texts: dict[int, str] | None = None
    if str in set(map(type, raw_values)):  # a set of types: far cheaper than a loop over values
        texts = {i: x for i, x in enumerate(raw_values) if isinstance(x, str)}
        raw_values = [None if isinstance(x, str) else x for x in raw_values]
    try:
        v = np.array(raw_values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        bad_s = next(
            (s for s in batch if not isinstance(s.value, int | float | bool | str | None)), None
        )
        where = f"tag {bad_s.tag}: " if bad_s is not None else ""
        raise ValueError(
            f"historian write: {where}a value is neither number nor string: {exc}"
        ) from exc
    return Columns(
        np.asarray(tag_ids, dtype=np.int64),
        ts,
        v,
        _small_ints(batch, _QUALITY),
        _small_ints(batch, _REASON),
        texts,
    )


def _small_ints(batch: Sequence[Sample], get: Callable[[Sample], int]) -> np.ndarray:
    """Return ``get(s)`` (a quality or reason code) of each sample as an int64 array.

    Nearly every batch holds one code for all its samples (good, no reason): counting the first
    one is far cheaper than converting each enum member on its own.
    """
    items = list(map(get, batch))
    if items.count(items[0]) == len(items):  # identity first: no enum hashing or conversion
        return np.full(len(items), int(items[0]), dtype=np.int64)
    return np.fromiter(items, dtype=np.int64, count=len(items))
