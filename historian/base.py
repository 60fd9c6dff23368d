"""The historian interface every backend implements, and its small value objects.

Times are UTC epoch seconds (float). Values are numbers (bool is stored as 0/1 and, like int,
read back as float) or strings. Every sample carries its quality and reason
(``tags.model.Quality`` / ``Reason``).

Query rules shared by every backend (``historian.compute`` holds the one implementation):

- ``query_raw`` returns samples with ``start <= ts < end``; ``value_at(tag, t)`` the last sample
  with ``ts <= t``.
- Aggregates (``query_agg``) use buckets ``[start + k*every_s, start + (k+1)*every_s)`` clipped to
  ``end``. ``mean, min, max, first, last, sum, count`` look at the numeric samples inside the
  bucket (``count`` of an empty bucket is 0, the others are ``None``). ``twa`` is the
  time-weighted mean with step interpolation: each value holds until the next sample, and the
  value in force at the bucket start counts. With ``include_bad=False`` (the default for
  aggregates) bad samples are left out and a bad sample ends the known interval: the time it
  covers counts neither in the numerator nor the denominator.
- ``on_time``: seconds a boolean tag was true (value != 0) in ``[start, end)``, same step rule;
  ``on_time_detail`` also returns the seconds whose state is known (billing estimates the rest).
- ``delta``: the increase of a cumulative counter over ``[start, end]``: the sequence is the good
  value in force at ``start`` (or, if none, the first good sample after it) followed by every good
  sample in ``(start, end]``; each step adds ``new - prev`` when the counter went up; a decrease is a
  counter reset (the counter restarted from 0, so the step adds ``new``) unless ``rollover`` is
  given (the step adds ``rollover - prev + new``); a meter replacement recorded with
  ``record_replacement(tag, ts, old_final, new_initial)`` counts the old meter up to ``old_final``
  at ``ts`` and the new one from ``new_initial`` (``historian.counter`` states it exactly).
- ``delta_buckets``: the same increase per bucket (``historian.buckets``: fixed widths, or
  calendar hours, days, months in the site's time zone), each with its quality: ``uncertain``
  where samples are missing. ``historian.counter`` holds the rule (also that of ``delta``) and
  states it exactly; backends only fetch the samples.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tags.model import Quality, Reason

if TYPE_CHECKING:
    from historian.buckets import Buckets
    from historian.counter import DeltaBucket

SampleValue = float | int | bool | str | None


class HistorianError(Exception):
    """Base class for historian errors."""


class BackendUnavailable(HistorianError):
    """The backend cannot take the write now (connection refused, timeout, 5xx); retry later.

    The spool catches exactly this (and ``OSError``); anything else means the data is wrong.
    """


class AggFn(enum.StrEnum):
    """Aggregate functions of ``query_agg``."""

    MEAN = "mean"
    TWA = "twa"  # time-weighted mean, step interpolation
    MIN = "min"
    MAX = "max"
    FIRST = "first"
    LAST = "last"
    SUM = "sum"
    COUNT = "count"

    @classmethod
    def parse(cls, text: str | AggFn) -> AggFn:
        """Return the function named ``text``; raise ``ValueError`` listing the valid names."""
        if isinstance(text, AggFn):
            return text
        try:
            return cls(str(text).lower())
        except ValueError:
            names = ", ".join(f.value for f in cls)
            raise ValueError(f"unknown aggregate {text!r}; expected one of {names}") from None


@dataclass(frozen=True, slots=True)
class Sample:
    """One stored value of one tag."""

    tag: str
    ts: float
    value: SampleValue
    quality: Quality = Quality.GOOD
    reason: Reason = Reason.NONE

    @property
    def numeric(self) -> float | None:
        """Return the value as float (bool as 0/1), or None for strings and missing values."""
        return as_float(self.value)

    @property
    def known(self) -> bool:
        """True when the value is not bad and numeric and finite (it counts in twa/on_time)."""
        v = self.numeric
        return self.quality != Quality.BAD and v is not None and math.isfinite(v)


@dataclass(frozen=True, slots=True)
class OnTime:
    """Result of ``on_time_detail``: seconds true and seconds whose state was known."""

    on_s: float
    known_s: float
    span_s: float

    @property
    def unknown_s(self) -> float:
        """Seconds of the interval with no good value (comm lost, before the first sample)."""
        return max(0.0, self.span_s - self.known_s)


@dataclass(frozen=True, slots=True)
class Replacement:
    """A meter replacement: the old meter's final reading and the new one's initial reading."""

    tag: str
    ts: float
    old_final: float
    new_initial: float


AggSeries = list[tuple[float, float | None]]


@runtime_checkable
class Historian(Protocol):
    """Stores samples and answers the queries of trends, reports and billing.

    The interface is synchronous (SQLite is); callers on the event loop use a worker thread.
    Implementations are safe to call from several threads.
    """

    def write(self, batch: Sequence[Sample]) -> None:
        """Store ``batch``; a sample with the same tag and ts as a stored one replaces it.

        Raise ``BackendUnavailable`` when the backend is down (nothing of the batch is stored).
        """
        ...

    def last(self, tags: Iterable[str]) -> dict[str, Sample]:
        """Return the newest sample of each tag (tags with no history are left out)."""
        ...

    def value_at(self, tag: str, t: float, *, include_bad: bool = True) -> Sample | None:
        """Return the last sample at or before ``t``, or None."""
        ...

    def query_raw(
        self, tag: str, start: float, end: float, *, include_bad: bool = True
    ) -> list[Sample]:
        """Return the samples with ``start <= ts < end`` in time order."""
        ...

    def query_agg(
        self,
        tags: Iterable[str],
        start: float,
        end: float,
        every_s: float,
        fn: AggFn | str,
        *,
        include_bad: bool = False,
    ) -> dict[str, AggSeries]:
        """Return ``{tag: [(bucket_start, value or None), ...]}`` (see the module docstring)."""
        ...

    def on_time(self, tag: str, start: float, end: float) -> float:
        """Return the seconds ``tag`` was true in ``[start, end)`` (unknown time counts as off)."""
        ...

    def on_time_detail(self, tag: str, start: float, end: float) -> OnTime:
        """Return on seconds and known seconds of ``tag`` in ``[start, end)``."""
        ...

    def delta(self, tag: str, start: float, end: float, *, rollover: float | None = None) -> float:
        """Return the increase of counter ``tag`` over ``[start, end]`` (module docstring rule)."""
        ...

    def delta_buckets(
        self,
        tag: str,
        buckets: Buckets,
        *,
        rollover: float | None = None,
        max_gap_s: float | None = None,
    ) -> list[DeltaBucket]:
        """Return the increase of counter ``tag`` in every bucket, with its quality.

        The rule is ``historian.counter``'s; ``max_gap_s`` is the tag's expected interval
        between samples while it moves (``historian.counter.gap_limit_s``), None if unknown.
        """
        ...

    def record_replacement(self, tag: str, ts: float, old_final: float, new_initial: float) -> None:
        """Record that the meter behind ``tag`` was replaced at ``ts``."""
        ...

    def close(self) -> None:
        """Flush and release the backend's resources."""
        ...


def on_time_many(
    historian: Historian, tags: Iterable[str], start: float, end: float
) -> dict[str, OnTime]:
    """Return ``on_time_detail`` of many tags: the backend's ``on_time_many`` when it has one.

    The SQLite backend answers thousands of tags with a few queries; other backends are asked
    tag by tag. Every backend gives the same figures (the contract tests check it).
    """
    many = getattr(historian, "on_time_many", None)
    if many is not None:
        return dict(many(tags, start, end))
    return {t: historian.on_time_detail(t, start, end) for t in dict.fromkeys(tags)}


def as_float(value: SampleValue) -> float | None:
    """Return a numeric sample value as float (bool as 0/1); None for str/None."""
    if value is None or isinstance(value, str):
        return None
    return float(value)


def check_range(start: float, end: float, every_s: float | None = None) -> None:
    """Raise ``ValueError`` unless ``start <= end`` (and ``every_s > 0`` when given)."""
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        raise ValueError(f"bad time range: start={start!r} end={end!r}")
    if every_s is not None and not (math.isfinite(every_s) and every_s > 0):
        raise ValueError(f"bucket width must be > 0 seconds, got {every_s!r}")
