"""Simulated history: run the simulator over the past days and store what the recorder would have.

A fresh demo has an empty historian, so trends, "energy today", heat allocation and bills show
nothing for hours. :func:`backfill` runs a :class:`~drivers.simulator.Simulator` built with
``start_ts`` in the past forward to now in simulated time (its own ``step()``, no waiting; the
same seed gives the same history) and writes what a poll every ``sample_s`` seconds would
have stored:

- every historised device point, as a driver reads it: the model's value put through the
  point's wire type and scaling (:func:`quantize`, the same arithmetic as ``drivers.codec``
  encoding into and decoding from registers); points no model variable drives keep their
  value, so they are stored once;
- ``<device>.online`` (true, once);
- computed tags, evaluated with ``tags.expr`` over those values (left out, with a log line,
  when an input is not simulated or the expression fails);

each filtered like ``historian.recorder.Recorder`` does (stored when the value moved more than
the tag's history deadband from the last stored value, any change of a bool, and at least every
``max_interval_s`` while the value moves), written through ``write`` (``Historian.write``) in
batches of ``batch_size``. Sampling is vectorised with numpy per chunk of steps: points whose
binding names a model array (``Binding.source``) are gathered with one index per array.

A large estate stays quick (issue 14): a span of more than ``max_steps`` samples is sampled
coarser (a multiple of ``sample_s``, the physics then stepping in that quantum), and the
numeric points of households (room temperatures, flat meters: the part that grows with the
estate) are stored on a coarser grid still when they would exceed ``bulk_cells`` values;
building-level points, bools and computed tags keep the finer grid.

The simulator is left at (about) the end time, so the live run continues from the backfilled
state: counters never go backwards across the boundary.

Threading: call it before ``Simulator.start()`` from any single thread (``scada run`` uses a
worker thread); it blocks for the whole run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np

from drivers.codec import PointSpec, PointType
from historian.base import Historian, Sample
from tags.catalog import compile_glob, has_wildcards
from tags.expr import EvaluationError, Expression, ExpressionError, parse_expression
from tags.model import Source, TagDef, TagType

if TYPE_CHECKING:
    from drivers.simulator.model import ModelParams
    from drivers.simulator.simulator import Simulator

__all__ = ["BackfillResult", "backfill", "newest_sample_ts", "quantize"]

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_S = 60.0
DEFAULT_MAX_INTERVAL_S = 900.0
DEFAULT_BATCH = 20_000
DEFAULT_SUBSTEP_S = 60.0
DEFAULT_MAX_STEPS = 2016  # a week at 5-minute samples
DEFAULT_BULK_CELLS = 400_000  # household analog values (columns x samples) at most
_CHUNK_CELLS = 2_000_000  # values held per chunk (steps x columns): about 16 MB

_INT_RANGE: dict[PointType, tuple[int, int]] = {
    PointType.INT16: (-(2**15), 2**15 - 1),
    PointType.UINT16: (0, 2**16 - 1),
    PointType.INT32: (-(2**31), 2**31 - 1),
    PointType.UINT32: (0, 2**32 - 1),
    PointType.INT64: (-(2**63), 2**63 - 1),
    PointType.UINT64: (0, 2**64 - 1),
}
_F32_MAX = 3.0e38
_CONVERT: dict[TagType, Callable[[Any], Any]] = {
    TagType.BOOL: bool,
    TagType.INT: int,
    TagType.FLOAT: float,
    TagType.STR: str,
}


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What :func:`backfill` wrote: the simulated span, sample and tag counts, run time."""

    start_ts: float
    end_ts: float
    samples: int
    tags: int
    steps: int
    elapsed_s: float
    sample_s: float = DEFAULT_SAMPLE_S  # the grid of building points, bools, computed tags
    bulk_sample_s: float = DEFAULT_SAMPLE_S  # the grid of households' numeric points


def quantize(spec: PointSpec | None, values: np.ndarray) -> np.ndarray:
    """Return engineering ``values`` as a poll of a point with wire layout ``spec`` reads them.

    Integers are rounded half to even after inverse scaling and clamped to the type's range
    (as the simulator's register image does), floats narrowed to float32 when the wire type
    is; bool points give 0/1. ``spec`` None (a CAN point) returns the values unchanged.
    """
    v = np.asarray(values, dtype=np.float64)
    if spec is None:
        return v
    if spec.is_bool:
        return (np.nan_to_num(v) != 0).astype(np.float64)
    raw = (np.nan_to_num(v) - spec.offset) / spec.scale
    if spec.type in _INT_RANGE:
        lo, hi = _INT_RANGE[spec.type]
        raw = np.clip(np.round(raw), lo, hi)
    elif spec.type is PointType.FLOAT32:
        raw = np.clip(raw, -_F32_MAX, _F32_MAX).astype(np.float32).astype(np.float64)
    if spec.scale == 1.0 and spec.offset == 0.0:
        return raw
    return raw * spec.scale + spec.offset


class _Column:
    """One historised tag: where its values come from and the recorder's filter state."""

    __slots__ = ("band", "bulk", "convert", "last", "last_ts", "max_interval_s", "name", "spec")

    def __init__(self, d: TagDef, spec: PointSpec | None, max_interval_s: float | None) -> None:
        self.name = d.name
        self.spec = spec
        t = TagType(d.type)
        self.convert: Callable[[Any], Any] = _CONVERT[t]
        self.band = float(d.history_deadband if d.history_deadband is not None else d.deadband)
        self.max_interval_s = (
            d.history_max_interval_s if d.history_max_interval_s is not None else max_interval_s
        )
        self.last: float | None = None
        self.last_ts = -math.inf
        #: a household's numeric point: may be stored on the coarser bulk grid
        self.bulk = d.household is not None and t in (TagType.INT, TagType.FLOAT)

    @property
    def banded(self) -> bool:
        """True if the deadband / max-interval filter applies (not every change is stored)."""
        return self.band > 0 and self.convert is not bool

    def select(self, col: np.ndarray, ts: np.ndarray) -> list[int]:
        """Return the rows of ``col`` the recorder would store; update the filter state."""
        if self.band <= 0 or self.convert is bool:  # every change is stored
            prev = np.empty_like(col)
            prev[0] = np.nan if self.last is None else self.last
            prev[1:] = col[:-1]
            rows = np.flatnonzero(col != prev).tolist()
        else:
            rows = []
            last, last_ts = self.last, self.last_ts
            band = self.band
            gap = math.inf if self.max_interval_s is None else self.max_interval_s
            for i, x in enumerate(col.tolist()):
                if last is not None:
                    d = abs(x - last)
                    if d <= band and (d == 0 or ts[i] - last_ts < gap):
                        continue
                rows.append(i)
                last, last_ts = x, float(ts[i])
        if rows:
            self.last = float(col[rows[-1]])
            self.last_ts = float(ts[rows[-1]])
        return rows


def _select_banded(cols: list[_Column], block: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Return the rows x columns mask of what the recorder stores, for banded columns at once.

    The filter of ``_Column.select`` (stored when the value moved more than the band, or moved
    at all and the last stored sample is ``max_interval_s`` old), stepping through the rows
    with numpy over the columns; updates each column's filter state.
    """
    last = np.array([np.nan if c.last is None else c.last for c in cols], dtype=np.float64)
    last_ts = np.array([c.last_ts for c in cols], dtype=np.float64)
    band = np.array([c.band for c in cols], dtype=np.float64)
    gap = np.array(
        [math.inf if c.max_interval_s is None else c.max_interval_s for c in cols],
        dtype=np.float64,
    )
    mask = np.zeros(block.shape, dtype=bool)
    for i in range(block.shape[0]):
        x = block[i]
        d = np.abs(x - last)
        store = np.isnan(last) | (d > band) | ((d != 0) & (ts[i] - last_ts >= gap))
        mask[i] = store
        last = np.where(store, x, last)
        last_ts = np.where(store, ts[i], last_ts)
    for j, c in enumerate(cols):
        if not math.isnan(last[j]):
            c.last = float(last[j])
            c.last_ts = float(last_ts[j])
    return mask


def newest_sample_ts(historian: Historian, tags: Iterable[str]) -> float | None:
    """Return the time of the newest stored sample of any of ``tags``, or None if there is none."""
    last = historian.last(list(tags))
    return max((s.ts for s in last.values()), default=None)


def _computed(defs: Sequence[TagDef], known: Iterable[str]) -> list[tuple[TagDef, Expression]]:
    """Return the historised computed tags whose inputs are all known, in evaluation order."""
    pending: list[tuple[TagDef, Expression]] = []
    for d in defs:
        if d.source != Source.COMPUTED or not d.expr or not d.historize:
            continue
        try:
            pending.append((d, parse_expression(d.expr)))
        except ExpressionError as exc:
            log.warning("backfill: computed tag %s left out: %s", d.name, exc)
    available = set(known)
    ordered: list[tuple[TagDef, Expression]] = []
    while pending:
        ready = [
            (d, e)
            for d, e in pending
            if e.names <= available
            and not any(
                compile_glob(g).fullmatch(o.name) for g in e.globs for o, _ in pending if o is not d
            )
        ]
        if not ready:
            left = ", ".join(sorted(d.name for d, _ in pending))
            log.info("backfill: computed tags without simulated inputs left out: %s", left)
            break
        ordered.extend(ready)
        available.update(d.name for d, _ in ready)
        done = {d.name for d, _ in ready}
        pending = [(d, e) for d, e in pending if d.name not in done]
    return ordered


def _wire_spec(simulator: Simulator, device_id: str, point: str) -> PointSpec | None:
    """Return the register layout of a point, or None for a device without registers (CAN)."""
    try:
        image = simulator.image(device_id)
    except KeyError:
        return None
    spec: PointSpec | None = image.points.get(point)
    return spec


class _Plan:
    """What to sample: bound points (per step), static values (once), computed tags."""

    def __init__(
        self, simulator: Simulator, defs: list[TagDef], max_interval_s: float | None
    ) -> None:
        devices = simulator.device_ids()
        bindings: dict[str, dict[str, Any]] = simulator.model.bindings
        self.columns: list[_Column] = []  # bound points, then computed tags
        self.getters: list[Callable[[], Any]] = []
        self.static: list[tuple[_Column, Any]] = []
        sources: list[tuple[object, str, int] | None] = []
        for d in defs:
            if not d.historize or d.device is None or d.device not in devices:
                continue
            col = _Column(d, None, max_interval_s)
            if d.source == Source.STATUS and d.name == f"{d.device}.online":
                self.static.append((col, True))
                continue
            if d.source != Source.DEVICE:
                continue
            point = d.name[len(d.device) + 1 :]
            binding = bindings.get(d.device, {}).get(point)
            if binding is None or col.convert is str:  # nothing drives it: its value now
                self.static.append((col, col.convert(simulator.value(d.device, point))))
                continue
            col.spec = _wire_spec(simulator, d.device, point)
            self.columns.append(col)
            self.getters.append(binding.get)
            sources.append(getattr(binding, "source", None))
        self.n_bound = len(self.columns)
        self._group_sources(sources)
        index = {c.name: i for i, c in enumerate(self.columns)}
        statics = {c.name: v for c, v in self.static if not isinstance(v, str)}
        self.computed = _computed(defs, [*index, *statics])
        for d, _ in self.computed:
            index[d.name] = len(self.columns)
            self.columns.append(_Column(d, None, max_interval_s))
        # inputs of the expressions: name -> column (or static value)
        names: set[str] = set()
        self.globs: dict[str, list[str]] = {}
        for d, e in self.computed:
            names.update(e.names)
            for g in e.globs:
                if has_wildcards(g):
                    rx = compile_glob(g)
                    matched = [n for n in [*index, *statics] if n != d.name and rx.fullmatch(n)]
                else:
                    matched = [g] if g in index or g in statics else []
                self.globs[g] = matched
                names.update(matched)
        self.inputs = [
            (n, index[n], self.columns[index[n]].convert) for n in sorted(names) if n in index
        ]
        self.statics = statics
        self._bulk_computed(index)
        groups: dict[tuple[Any, ...], tuple[PointSpec | None, list[int]]] = {}
        for j, c in enumerate(self.columns[: self.n_bound]):
            spec = c.spec
            key = () if spec is None else (spec.is_bool, spec.type, spec.scale, spec.offset)
            groups.setdefault(key, (spec, []))[1].append(j)
        #: bound columns with the same wire arithmetic, quantized together
        self.quantize_groups = [
            (spec, np.asarray(js, dtype=np.int64)) for spec, js in groups.values()
        ]

    def _bulk_computed(self, index: dict[str, int]) -> None:
        """Mark computed tags over households' numeric values only as bulk (the coarser grid).

        A computed tag is bulk when every input column is bulk and no finer computed tag needs
        it; ``fine_inputs`` / ``fine`` are what the rows between bulk rows evaluate.
        """
        first = self.n_bound
        deps: list[set[str]] = []
        for _, e in self.computed:
            needed = set(e.names)
            for g in e.globs:
                needed.update(self.globs.get(g, ()))
            deps.append({n for n in needed if n in index})
        position = {d.name: k for k, (d, _) in enumerate(self.computed)}
        bulk: list[bool] = []
        for needed in deps:
            bulk.append(
                bool(needed)
                and all(
                    self.columns[index[n]].bulk if index[n] < first else bulk[position[n]]
                    for n in needed
                )
            )
        for k in reversed(range(len(deps))):  # what a fine tag needs is evaluated finely too
            if not bulk[k]:
                for n in deps[k]:
                    if n in position:
                        bulk[position[n]] = False
        for k, is_bulk in enumerate(bulk):
            self.columns[first + k].bulk = is_bulk
        fine_names = set().union(*(deps[k] for k in range(len(deps)) if not bulk[k]))
        self.fine_inputs = [x for x in self.inputs if x[0] in fine_names]
        self.fine = [not b for b in bulk]

    def _group_sources(self, sources: list[tuple[object, str, int] | None]) -> None:
        """Group the bound columns by the model array they read (``Binding.source``)."""
        groups: dict[tuple[int, str], tuple[object, str, list[int], list[int]]] = {}
        self.scalar: list[tuple[int, Callable[[], Any]]] = []
        for j, (get, source) in enumerate(zip(self.getters, sources, strict=True)):
            if source is None:
                self.scalar.append((j, get))
                continue
            obj, attr, i = source
            group = groups.setdefault((id(obj), attr), (obj, attr, [], []))
            group[2].append(j)
            group[3].append(i)
        self.groups = [
            (obj, attr, np.asarray(cols, dtype=np.int64), np.asarray(idx, dtype=np.int64))
            for obj, attr, cols, idx in groups.values()
        ]

    def gather(self, row: np.ndarray) -> None:
        """Fill ``row`` (one value per bound column) from the model as it is now."""
        for obj, attr, cols, idx in self.groups:
            row[cols] = getattr(obj, attr)[idx]
        for j, get in self.scalar:
            row[j] = get()


def backfill(
    simulator: Simulator,
    defs: Iterable[TagDef],
    write: Callable[[Sequence[Sample]], None],
    *,
    end_ts: float | None = None,
    sample_s: float = DEFAULT_SAMPLE_S,
    max_interval_s: float | None = DEFAULT_MAX_INTERVAL_S,
    batch_size: int = DEFAULT_BATCH,
    substep_s: float | None = DEFAULT_SUBSTEP_S,
    clock: Callable[[], float] = time.time,
    max_steps: int | None = DEFAULT_MAX_STEPS,
    bulk_cells: int | None = DEFAULT_BULK_CELLS,
) -> BackfillResult:
    """Run ``simulator`` from its simulated time to ``end_ts`` and write the history it shows.

    ``defs`` are the site's tag definitions (see the module docstring for what is written).
    ``end_ts`` None means "now": ``clock()`` is read again as the run goes, so the simulator
    ends within one model quantum of the wall clock however long the run took. Samples are
    stamped with simulated time and written through ``write`` in chunks of ``batch_size``; an
    exception from ``write`` propagates (what was written stays). ``substep_s`` is the physics
    quantum while backfilling (None: the model's own, 15 s by default): a coarser one makes a
    long backfill several times faster and is still far below the rooms' thermal time
    constants; the model's quantum is restored for the live run.

    ``max_steps`` (None: no limit): a span of more than this many ``sample_s`` steps is sampled
    every ``k * sample_s`` instead (the smallest k that fits), the physics then stepping in
    that quantum. ``bulk_cells`` (None: no limit): households' numeric points are stored only
    every m-th sample when (their number x the samples) would exceed it. The grids used are in
    the result. Raise ``ValueError`` for a bad ``sample_s``, ``substep_s`` or limit.
    """
    if not (math.isfinite(sample_s) and sample_s > 0):
        raise ValueError(f"backfill: sample_s must be > 0 seconds, got {sample_s!r}")
    if substep_s is not None and not (math.isfinite(substep_s) and substep_s > 0):
        raise ValueError(f"backfill: substep_s must be > 0 seconds, got {substep_s!r}")
    for name, limit in (("max_steps", max_steps), ("bulk_cells", bulk_cells)):
        if limit is not None and limit < 1:
            raise ValueError(f"backfill: {name} must be >= 1 or None, got {limit!r}")
    model = simulator.model
    params = model.params
    span = (clock() if end_ts is None else end_ts) - simulator.now
    grid = sample_s
    if max_steps is not None and span / sample_s > max_steps * 1.01:  # 1 %: the clock moved
        grid = sample_s * math.ceil(span / sample_s / max_steps - 0.01)
    if substep_s is not None:
        quantum = grid if grid > sample_s else min(substep_s, sample_s)
        if quantum != params.substep_s:
            model.params = dataclasses.replace(params, substep_s=quantum)
    try:
        return _run(
            simulator,
            list(defs),
            write,
            _Grid(end_ts, grid, span, bulk_cells),
            max_interval_s,
            batch_size,
            clock,
            params,
        )
    finally:
        model.params = params


@dataclass(frozen=True, slots=True)
class _Grid:
    """Where the run ends and how often it samples (``step_s``); sizes the bulk grid."""

    end_ts: float | None
    step_s: float
    span_s: float
    bulk_cells: int | None

    def bulk_every(self, n_bulk: int) -> int:
        """Return m: households' numeric points are stored at every m-th sample."""
        if self.bulk_cells is None or n_bulk == 0:
            return 1
        steps = max(1.0, self.span_s / self.step_s)
        return max(1, math.ceil(n_bulk * steps / self.bulk_cells))


def _run(
    simulator: Simulator,
    defs: list[TagDef],
    write: Callable[[Sequence[Sample]], None],
    grid: _Grid,
    max_interval_s: float | None,
    batch_size: int,
    clock: Callable[[], float],
    live_params: ModelParams,
) -> BackfillResult:
    """Do the work of :func:`backfill` (arguments checked there)."""
    t_run = time.perf_counter()
    plan = _Plan(simulator, defs, max_interval_s)
    every = grid.bulk_every(sum(1 for c in plan.columns[: plan.n_bound] if c.bulk))
    start = simulator.now
    pending: list[Sample] = []
    written = 0

    def emit(samples: list[Sample]) -> None:
        nonlocal pending, written
        pending.extend(samples)
        while len(pending) >= batch_size:
            write(pending[:batch_size])
            written += batch_size
            pending = pending[batch_size:]

    emit([Sample(c.name, start, v) for c, v in plan.static])
    chunk_steps = max(16, _CHUNK_CELLS // max(1, len(plan.columns)))
    steps = 0
    failed: set[str] = set()
    gap: float | None = None
    while gap is None:
        first_step = steps
        ts_list, raw, gap = _sample_chunk(simulator, plan, grid, chunk_steps, clock)
        steps += len(ts_list) - (1 if gap is not None else 0)
        matrix = np.full((len(ts_list), len(plan.columns)), np.nan, dtype=np.float64)
        for spec, cols in plan.quantize_groups:
            matrix[:, cols] = quantize(spec, raw[:, cols])
        bulk_row = (np.arange(len(ts_list)) + first_step) % every == 0
        _evaluate_computed(plan, matrix, failed, bulk_row)
        emit(_chunk_samples(plan, matrix, ts_list, np.flatnonzero(bulk_row), failed))
    if pending:
        write(pending)
        written += len(pending)
    simulator.model.params = live_params
    simulator.step(gap)  # close the gap to the end in the live quanta; the live run goes on
    result = BackfillResult(
        start_ts=start,
        end_ts=simulator.now,
        samples=written,
        tags=len(plan.static) + len(plan.columns) - len(failed),
        steps=steps,
        elapsed_s=time.perf_counter() - t_run,
        sample_s=grid.step_s,
        bulk_sample_s=grid.step_s * every,
    )
    log.info(
        "backfill: %d samples of %d tags over %.2f simulated days (every %g s, households' "
        "values every %g s) written in %.1f s",
        result.samples,
        result.tags,
        (result.end_ts - result.start_ts) / 86400.0,
        result.sample_s,
        result.bulk_sample_s,
        result.elapsed_s,
    )
    return result


def _sample_chunk(
    simulator: Simulator,
    plan: _Plan,
    grid: _Grid,
    chunk_steps: int,
    clock: Callable[[], float],
) -> tuple[list[float], np.ndarray, float | None]:
    """Step the simulator through up to ``chunk_steps`` samples; return times, values, gap.

    The gap (the time left to the end, less than one sample) is None while the run goes on.
    """
    ts_list: list[float] = []
    raw = np.empty((chunk_steps, plan.n_bound), dtype=np.float64)
    step_s = grid.step_s
    while len(ts_list) < chunk_steps:
        ts = simulator.now
        plan.gather(raw[len(ts_list)])
        ts_list.append(ts)
        end = clock() if grid.end_ts is None else grid.end_ts
        if ts + step_s > end:
            return ts_list, raw[: len(ts_list)], max(0.0, end - ts)
        simulator.step(step_s)
    return ts_list, raw, None


def _chunk_samples(
    plan: _Plan,
    matrix: np.ndarray,
    ts_list: list[float],
    bulk_rows: np.ndarray,
    failed: set[str],
) -> list[Sample]:
    """Return the samples the recorder would store from one chunk (rows x columns)."""
    ts_all = np.asarray(ts_list, dtype=np.float64)
    samples: list[Sample] = []
    live = [(j, c) for j, c in enumerate(plan.columns) if c.name not in failed]
    for bulk in (False, True):
        rows = bulk_rows if bulk else np.arange(len(ts_list))
        if not len(rows):
            continue
        ts = ts_all[rows]
        cols = [(j, c) for j, c in live if c.bulk == bulk]
        banded = [(j, c) for j, c in cols if c.banded]
        chosen: list[tuple[_Column, np.ndarray, np.ndarray]] = []
        if banded:
            block = matrix[np.ix_(rows, np.asarray([j for j, _ in banded], dtype=np.int64))]
            mask = _select_banded([c for _, c in banded], block, ts)
            chosen.extend(
                (c, rows[mask[:, k]], block[mask[:, k], k]) for k, (_, c) in enumerate(banded)
            )
        for j, c in cols:
            if not c.banded:
                values = matrix[rows, j]
                picked = np.asarray(c.select(values, ts), dtype=np.int64)
                chosen.append((c, rows[picked], values[picked]))
        for c, at, values in chosen:
            vals = values.tolist()
            if c.convert is not float:
                vals = [c.convert(v) for v in vals]
            samples.extend(map(Sample, repeat(c.name), ts_all[at].tolist(), vals))
    return samples


def _evaluate_computed(
    plan: _Plan, matrix: np.ndarray, failed: set[str], bulk_row: np.ndarray
) -> None:
    """Fill the computed tags' columns of ``matrix`` row by row (a failing tag is marked failed).

    Bulk computed tags are evaluated on the rows where ``bulk_row`` is true only.
    """
    if not plan.computed:
        return
    env: dict[str, Any] = dict(plan.statics)
    globs = plan.globs

    def resolve_glob(pattern: str) -> list[Any]:
        return [env[n] for n in globs.get(pattern, ())]

    first = plan.n_bound
    fine = plan.fine
    for i, row in enumerate(matrix.tolist()):
        every = bool(bulk_row[i])
        for name, j, convert in plan.inputs if every else plan.fine_inputs:
            if j < first:
                env[name] = convert(row[j])
        for k, (d, expr) in enumerate(plan.computed):
            j = first + k
            if d.name in failed or not (every or fine[k]):
                continue
            try:
                value = TagType(d.type).coerce(expr.evaluate(env.__getitem__, resolve_glob))
                if isinstance(value, str):
                    raise TypeError("string result")
            except (EvaluationError, KeyError, TypeError, ValueError) as exc:
                failed.add(d.name)
                log.warning("backfill: computed tag %s left out: %s", d.name, exc)
                continue
            env[d.name] = value
            matrix[i, j] = float(value)
