"""Property tests: update_many against a per-tag reference model; globs against fnmatch."""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tags import ChangeBatch, Quality, Reason, TagDatabase, TagDef, TagValue, database
from tags.catalog import KIND_DEAD, TagCatalog

DEADBANDS = (0.0, 0.5, 1.0)
VALUES = (0.0, 0.5, 1.0, 1.25, 1.5, 2.0, -1.0, math.nan)
QR = (
    (Quality.GOOD, Reason.NONE),
    (Quality.UNCERTAIN, Reason.MANUAL),
    (Quality.BAD, Reason.COMM_LOST),
)
N_TAGS = 6


@dataclass
class Ref:
    """The reference model of one tag: plain Python, one comparison at a time."""

    deadband: float
    value: float | None = None
    quality: Quality = Quality.BAD
    reason: Reason = Reason.NOT_CONNECTED
    ts: float = 0.0

    def update(self, v: float, q: Quality, r: Reason, ts: float) -> bool:
        if self.value is None:
            moved = True
        elif math.isnan(v) or math.isnan(self.value):
            moved = math.isnan(v) != math.isnan(self.value)
        else:
            moved = abs(v - self.value) > self.deadband
        if not moved and (q, r) == (self.quality, self.reason):
            return False
        self.value, self.quality, self.reason, self.ts = v, q, r, ts
        return True

    def set_quality(self, q: Quality, r: Reason, ts: float) -> bool:
        if (q, r) == (self.quality, self.reason):
            return False
        self.quality, self.reason, self.ts = q, r, ts
        return True


def same(tv: TagValue, ref: Ref) -> bool:
    if (tv.quality, tv.reason, tv.ts) != (ref.quality, ref.reason, ref.ts):
        return False
    if ref.value is None or tv.value is None:
        return ref.value is tv.value
    return tv.value == ref.value or (math.isnan(tv.value) and math.isnan(ref.value))


update_op = st.tuples(
    st.just("update"),
    st.lists(st.integers(0, N_TAGS - 1), min_size=1, max_size=N_TAGS, unique=True),
    st.lists(st.sampled_from(VALUES), min_size=N_TAGS, max_size=N_TAGS),
    st.one_of(
        st.sampled_from(range(len(QR))),
        st.lists(st.sampled_from(range(len(QR))), min_size=N_TAGS, max_size=N_TAGS),
    ),
    st.booleans(),  # flush afterwards
)
quality_op = st.tuples(
    st.just("quality"),
    st.lists(st.integers(0, N_TAGS - 1), min_size=1, max_size=N_TAGS, unique=True),
    st.sampled_from(range(len(QR))),
    st.booleans(),
)

single_op = st.tuples(
    st.just("single"),
    st.integers(0, N_TAGS - 1),
    st.sampled_from(VALUES),
    st.sampled_from(range(len(QR))),
    st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(
    deadbands=st.lists(st.sampled_from(DEADBANDS), min_size=N_TAGS, max_size=N_TAGS),
    ops=st.lists(st.one_of(update_op, quality_op, single_op), max_size=12),
)
def test_update_many_matches_reference_model(deadbands: list[float], ops: list[tuple]) -> None:
    check_against_reference(deadbands, ops)


@settings(max_examples=100, deadline=None)
@given(
    deadbands=st.lists(st.sampled_from(DEADBANDS), min_size=N_TAGS, max_size=N_TAGS),
    ops=st.lists(st.one_of(update_op, quality_op, single_op), max_size=12),
)
def test_the_array_path_matches_the_reference_model_too(
    deadbands: list[float], ops: list[tuple]
) -> None:
    small = database.SMALL_UPDATE
    database.SMALL_UPDATE = 0  # every update_many through the numpy path
    try:
        check_against_reference(deadbands, ops)
    finally:
        database.SMALL_UPDATE = small


def check_against_reference(deadbands: list[float], ops: list[tuple]) -> None:
    names = [f"t{i}" for i in range(N_TAGS)]
    db = TagDatabase([TagDef(n, deadband=d) for n, d in zip(names, deadbands, strict=True)])
    refs = [Ref(d) for d in deadbands]
    batches: list[ChangeBatch] = []
    db.subscribe("*", batches.append)
    changed_since_flush: set[int] = set()
    for step, op in enumerate(ops, start=1):
        ts = float(step)
        if op[0] == "update":
            _, ids, values, qr, flush = op
            vals = [values[i] for i in range(len(ids))]
            if isinstance(qr, int):
                q, r = QR[qr]
                got = db.update_many(np.array(ids), np.array(vals), q, ts, r)
                expected = [refs[t].update(v, q, r, ts) for t, v in zip(ids, vals, strict=True)]
            else:
                rows = [QR[qr[i]] for i in range(len(ids))]
                got = db.update_many(
                    np.array(ids),
                    np.array(vals),
                    np.array([q for q, _ in rows]),
                    ts,
                    np.array([r for _, r in rows]),
                )
                expected = [
                    refs[t].update(v, q, r, ts)
                    for t, v, (q, r) in zip(ids, vals, rows, strict=True)
                ]
        elif op[0] == "single":
            _, tid, value, qr, flush = op
            q, r = QR[qr]
            ids = [tid]
            got = int(db.update(names[tid], value, q, ts, r))
            expected = [refs[tid].update(value, q, r, ts)]
        else:
            _, ids, qr, flush = op
            q, r = QR[qr]
            got = db.set_quality(np.array(ids), q, r, ts)
            expected = [refs[t].set_quality(q, r, ts) for t in ids]
        assert got == sum(expected)
        changed_since_flush.update(t for t, e in zip(ids, expected, strict=True) if e)
        for i, n in enumerate(names):
            assert same(db.read(n), refs[i]), (n, db.read(n), refs[i])
        if flush:
            batches.clear()
            db.flush()
            if changed_since_flush:
                assert len(batches) == 1
                assert batches[0].ids.tolist() == sorted(changed_since_flush)
                for name, tv in batches[0].items():
                    assert same(tv, refs[names.index(name)])
            else:
                assert batches == []
            changed_since_flush.clear()


NAME = st.text(alphabet="ab.1", min_size=1, max_size=6)
PATTERN = st.text(alphabet="ab.1*?", min_size=1, max_size=5) | st.sampled_from(
    ["[ab]*", "[!a]*", "*.[1]", "a[.]b"]
)


@settings(max_examples=300, deadline=None)
@given(names=st.lists(NAME, max_size=12, unique=True), pattern=PATTERN)
def test_glob_mask_matches_fnmatchcase(names: list[str], pattern: str) -> None:
    catalog = TagCatalog(names, [0] * len(names))
    expected = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    assert catalog.match(pattern) == expected


@settings(max_examples=200, deadline=None)
@given(
    names=st.lists(NAME | st.none(), max_size=12),
    patterns=st.lists(PATTERN, min_size=1, max_size=3),
)
def test_mask_with_dead_slots_and_kept_masks_matches_fnmatchcase(
    names: list[str | None], patterns: list[str]
) -> None:
    live = [n for n in names if n is not None]
    assume(len(set(live)) == len(live))  # a catalogue's live names are unique
    catalog = TagCatalog(names, [KIND_DEAD if n is None else 0 for n in names])
    expected = [n is not None and any(fnmatch.fnmatchcase(n, p) for p in patterns) for n in names]
    first = catalog.mask(patterns)
    assert first.tolist() == expected
    first[:] = True  # the caller's copy: the mask kept for the next call is untouched
    assert catalog.mask(patterns).tolist() == expected
    assert catalog.mask(tuple(patterns)).tolist() == expected
