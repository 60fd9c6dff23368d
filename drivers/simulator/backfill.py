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
batches of ``batch_size``. Sampling is vectorised with numpy per chunk of steps.

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

    __slots__ = ("band", "convert", "last", "last_ts", "max_interval_s", "name", "spec")

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
        self.n_bound = len(self.columns)
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
) -> BackfillResult:
    """Run ``simulator`` from its simulated time to ``end_ts`` and write the history it shows.

    ``defs`` are the site's tag definitions (see the module docstring for what is written).
    ``end_ts`` None means "now": ``clock()`` is read again as the run goes, so the simulator
    ends within one model quantum of the wall clock however long the run took. Samples are
    stamped with simulated time and written through ``write`` in chunks of ``batch_size``; an
    exception from ``write`` propagates (what was written stays). ``substep_s`` is the physics
    quantum while backfilling (None: the model's own, 15 s by default): a coarser one makes a
    long backfill several times faster and is still far below the rooms' thermal time
    constants; the model's quantum is restored for the live run. Raise ``ValueError`` for a
    bad ``sample_s`` or ``substep_s``.
    """
    if not (math.isfinite(sample_s) and sample_s > 0):
        raise ValueError(f"backfill: sample_s must be > 0 seconds, got {sample_s!r}")
    if substep_s is not None and not (math.isfinite(substep_s) and substep_s > 0):
        raise ValueError(f"backfill: substep_s must be > 0 seconds, got {substep_s!r}")
    model = simulator.model
    params = model.params
    if substep_s is not None and substep_s != params.substep_s:
        model.params = dataclasses.replace(params, substep_s=min(substep_s, sample_s))
    try:
        return _run(
            simulator,
            list(defs),
            write,
            end_ts,
            sample_s,
            max_interval_s,
            batch_size,
            clock,
            params,
        )
    finally:
        model.params = params


def _run(
    simulator: Simulator,
    defs: list[TagDef],
    write: Callable[[Sequence[Sample]], None],
    end_ts: float | None,
    sample_s: float,
    max_interval_s: float | None,
    batch_size: int,
    clock: Callable[[], float],
    live_params: ModelParams,
) -> BackfillResult:
    """Do the work of :func:`backfill` (arguments checked there)."""
    t_run = time.perf_counter()
    plan = _Plan(simulator, defs, max_interval_s)
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
    width = max(1, len(plan.columns))
    chunk_steps = max(16, _CHUNK_CELLS // width)
    steps = 0
    failed: set[str] = set()
    gap = 0.0
    done = False
    while not done:
        ts_list: list[float] = []
        rows: list[list[Any]] = []
        getters = plan.getters
        while len(ts_list) < chunk_steps:
            ts = simulator.now
            ts_list.append(ts)
            rows.append([g() for g in getters])
            end = clock() if end_ts is None else end_ts
            if ts + sample_s > end:
                gap = max(0.0, end - ts)
                done = True
                break
            simulator.step(sample_s)
            steps += 1
        ts_arr = np.asarray(ts_list, dtype=np.float64)
        matrix = np.empty((len(ts_list), len(plan.columns)), dtype=np.float64)
        if plan.n_bound:
            raw = np.asarray(rows, dtype=np.float64).reshape(len(ts_list), plan.n_bound)
            for j in range(plan.n_bound):
                matrix[:, j] = quantize(plan.columns[j].spec, raw[:, j])
        _evaluate_computed(plan, matrix, failed)
        samples: list[Sample] = []
        for j, col in enumerate(plan.columns):
            if col.name in failed:
                continue
            convert = col.convert
            values = matrix[:, j]
            samples.extend(
                Sample(col.name, ts_list[i], convert(values[i].item()))
                for i in col.select(values, ts_arr)
            )
        emit(samples)
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
    )
    log.info(
        "backfill: %d samples of %d tags over %.2f simulated days written in %.1f s",
        result.samples,
        result.tags,
        (result.end_ts - result.start_ts) / 86400.0,
        result.elapsed_s,
    )
    return result


def _evaluate_computed(plan: _Plan, matrix: np.ndarray, failed: set[str]) -> None:
    """Fill the computed tags' columns of ``matrix`` row by row (a failing tag is marked failed)."""
    if not plan.computed:
        return
    env: dict[str, Any] = dict(plan.statics)
    globs = plan.globs

    def resolve_glob(pattern: str) -> list[Any]:
        return [env[n] for n in globs.get(pattern, ())]

    first = plan.n_bound
    inputs = plan.inputs
    for i, row in enumerate(matrix.tolist()):
        for name, j, convert in inputs:
            if j < first:
                env[name] = convert(row[j])
        for k, (d, expr) in enumerate(plan.computed):
            j = first + k
            if d.name in failed:
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
