"""Tags (list with filters, one tag with metadata and value) and history queries.

Tenants see only the tags of their linked households (filtered item by item with
``may``). History queries run in the server's worker threads (the historian is sync);
``fn=delta`` answers counter consumption per bucket, calendar buckets in the site's time zone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from historian.buckets import Every, parse_every
from scada.server.formats import matches
from scada.server.handlers.base import ApiError, ApiHandler
from scada.services.auth import Action
from tags.model import Quality, TagDef, iso

__all__ = ["HistoryAggApi", "HistoryRawApi", "TagApi", "TagsApi", "tag_json"]

MAX_TAGS_PER_QUERY = 100
MAX_BUCKETS = 100000
MAX_SAMPLES = 200000
#: Most tags ``GET /api/tags`` lists (``limit``).
MAX_TAGS_LISTED = 1_000_000
#: Tags looked at per loop turn while a listing is built.
LISTING_CHUNK = 500
#: Widest bucket of a history aggregation (a leap year).
MAX_EVERY_S = 366 * 86400.0
#: ``fn`` of the counter consumption per bucket (not an ``AggFn``: its buckets carry a quality).
DELTA = "delta"
#: ``tags=a,b,c``: 1 to MAX_TAGS_PER_QUERY names, each non-empty (exactly as written, no spaces
#: trimmed: a name with a space is an unknown tag).
TAG_LIST = rf"^[^,]+(?:,[^,]+){{0,{MAX_TAGS_PER_QUERY - 1}}}$"


def tag_json(d: TagDef, value: Any = None) -> dict[str, Any]:
    """Return a tag's metadata (and current value) as the API shows it."""
    out: dict[str, Any] = {
        "name": d.name,
        "type": d.type.value,
        "unit": d.unit,
        "description": d.description,
        "source": d.source.value,
        "writable": d.writable,
        "min": d.min,
        "max": d.max,
        "min_interval_s": d.min_interval_s,
        "max_step": d.max_step,
        "device": d.device,
        "building": d.building,
        "household": d.household,
        "poll_s": d.poll_s,
        "historize": d.historize,
    }
    if value is not None:
        out.update(value.to_json())
    return out


class _TagBase(ApiHandler):
    def visible(self, d: TagDef, action: Action = Action.TAGS_READ) -> bool:
        return self.may(action, (d.name, d.household or ""))

    def tag_def(self, name: str, action: Action = Action.TAGS_READ) -> TagDef:
        db = self.ctx.services.db
        if name not in db:
            raise ApiError(404, f"unknown tag {name!r}")
        d = db.definition(name)
        if not self.visible(d, action):
            raise ApiError(404, f"unknown tag {name!r}")  # tenants do not learn others' names
        return d


#: The tag names per building and per device of the current catalogue (one catalogue kept).
_scopes: tuple[Any, dict[str | None, list[str]], dict[str | None, list[str]]] | None = None


async def _scope_names(db: Any, building: str | None, device: str | None) -> list[str]:
    """Return the names (in id order) of ``building``'s tags, or ``device``'s, or both's."""
    global _scopes
    catalog = db.catalog
    if _scopes is None or _scopes[0] is not catalog:

        def build() -> tuple[dict[str | None, list[str]], dict[str | None, list[str]]]:
            by_building: dict[str | None, list[str]] = {}
            by_device: dict[str | None, list[str]] = {}
            for d in db.definitions():
                by_building.setdefault(d.building, []).append(d.name)
                by_device.setdefault(d.device, []).append(d.name)
            return by_building, by_device

        by_building, by_device = await asyncio.to_thread(build)  # once per catalogue
        _scopes = (catalog, by_building, by_device)
    names = _scopes[2].get(device, []) if device is not None else _scopes[1].get(building, [])
    if building is not None and device is not None:
        names = [n for n in names if db.definition(n).building == building]
    return names


class TagsApi(_TagBase):
    """``GET /api/tags``: tags with metadata and current values, filtered."""

    async def get(self) -> None:
        db = self.ctx.services.db
        pattern = self.arg("pattern", "*") or "*"
        building, device = self.arg("building"), self.arg("device")
        household = self.arg("household")
        quality_text = self.arg("quality")
        quality = None
        if quality_text is not None:
            try:
                quality = Quality.parse(quality_text)
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None
        values = self.arg_bool("values", True)
        limit = self.arg_int("limit", 10000, lo=1, hi=MAX_TAGS_LISTED)
        seq = db.seq
        if building is not None or device is not None:
            # the few hundred tags of one building or device, not a walk over the estate
            scope = await _scope_names(db, building, device)
            if pattern != "*":
                wanted = set(db.match(pattern))
                scope = [n for n in scope if n in wanted]
            names = scope
        else:
            names = db.match(pattern)
        count = 0

        async def rows() -> AsyncIterator[list[dict[str, Any]]]:
            # a slice of names per loop turn: an estate has hundreds of thousands
            nonlocal count
            for start in range(0, len(names), LISTING_CHUNK):
                if start:
                    await asyncio.sleep(0)
                out = []
                for name in names[start : start + LISTING_CHUNK]:
                    d = db.definition(name)
                    if building is not None and d.building != building:
                        continue
                    if device is not None and d.device != device:
                        continue
                    if household is not None and d.household != household:
                        continue
                    if not self.visible(d):
                        continue
                    v = db.read(name)
                    if quality is not None and v.quality is not quality:
                        continue
                    out.append(tag_json(d, v if values else None))
                    if count + len(out) >= limit:
                        break
                count += len(out)
                yield out
                if count >= limit:
                    return

        await self.reply_listing("tags", rows(), lambda: {"seq": seq, "count": count})


class TagApi(_TagBase):
    """``GET /api/tags/{name}``: one tag's metadata and current value."""

    def get(self, name: str) -> None:
        d = self.tag_def(name)
        self.reply(tag_json(d, self.ctx.services.db.read(name)))


def _sample_json(s: Any) -> dict[str, Any]:
    v = s.value
    if isinstance(v, float) and v != v:
        v = None
    return {"ts": iso(s.ts), "value": v, "quality": s.quality.label, "reason": s.reason.label}


class _HistoryBase(_TagBase):
    def historian(self) -> Any:
        h = self.ctx.historian
        if h is None:
            raise ApiError(503, "the historian is not running")
        return h

    def window(self) -> tuple[float, float]:
        now = time.time()
        end = self.arg_time("end", now)
        start = self.arg_time("start", None)
        assert end is not None
        if start is None:
            start = end - 3600.0
        if end < start:
            raise ApiError(400, f"end ({iso(end)}) is before start ({iso(start)})")
        return start, end


class HistoryRawApi(_HistoryBase):
    """``GET /api/history/raw?tag=&start=&end=``: stored samples in ``[start, end)``."""

    async def get(self) -> None:
        tag = self.arg("tag")
        if not tag:
            raise ApiError(400, "tag: required")
        self.tag_def(tag, Action.HISTORY_READ)
        start, end = self.window()
        include_bad = self.arg_bool("include_bad", True)
        limit = self.arg_int("limit", MAX_SAMPLES, lo=1, hi=MAX_SAMPLES)
        h = self.historian()
        samples = await self.ctx.run_blocking(
            lambda: h.query_raw(tag, start, end, include_bad=include_bad)
        )
        self.reply(
            {
                "tag": tag,
                "start": iso(start),
                "end": iso(end),
                "truncated": len(samples) > limit,
                "samples": [_sample_json(s) for s in samples[:limit]],
            }
        )


class HistoryAggApi(_HistoryBase):
    """``GET /api/history/agg?tags=a,b&start=&end=&every=&fn=``: aggregated buckets.

    ``fn=delta`` answers the consumption of counters per bucket (``historian.counter``), each
    bucket ``{start, end, value, quality, reason}``; its ``every`` may be a calendar unit of
    the site's time zone (``1h``, ``1d``, ``1mo``). The other functions answer
    ``[start, value]`` pairs of buckets of ``every`` seconds.
    """

    async def get(self) -> None:
        from historian.base import AggFn

        text = self.arg("tags") or ""
        if not matches(TAG_LIST, text):
            raise ApiError(400, f"tags: give 1 to {MAX_TAGS_PER_QUERY} comma-separated tag names")
        tags = list(dict.fromkeys(text.split(",")))
        defs = [self.tag_def(t, Action.HISTORY_READ) for t in tags]
        start, end = self.window()
        fn_text = self.arg("fn", "twa") or "twa"
        if fn_text == DELTA:
            await self._delta(defs, start, end)
            return
        try:
            fn = AggFn.parse(fn_text)
        except ValueError as exc:
            raise ApiError(400, f"fn: {exc}") from None
        if self.arg("rollover") is not None:
            raise ApiError(400, "rollover: only with fn=delta")
        every = self._every("3600")
        if not isinstance(every, float):
            raise ApiError(
                400,
                f"every: {every} is a calendar unit, for fn=delta; "
                f"give seconds for fn={fn.value} (every=3600)",
            )
        if (end - start) / every > MAX_BUCKETS:
            raise ApiError(400, f"too many buckets: at most {MAX_BUCKETS} (widen 'every')")
        include_bad = self.arg_bool("include_bad", False)
        h = self.historian()
        series = await self.ctx.run_blocking(
            lambda: h.query_agg(tags, start, end, every, fn, include_bad=include_bad)
        )
        self.reply(
            {
                "start": iso(start),
                "end": iso(end),
                "every_s": every,
                "fn": fn.value,
                "series": {t: [[iso(ts), v] for ts, v in series.get(t, [])] for t in tags},
            }
        )

    def _every(self, default: str) -> float | Every:
        """Return ``every`` as seconds (1 .. MAX_EVERY_S) or calendar units; 400 if neither."""
        try:
            every = parse_every(self.arg("every", default) or default)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        if isinstance(every, float) and not 1.0 <= every <= MAX_EVERY_S:
            raise ApiError(400, f"every: must be between 1 and {MAX_EVERY_S:.0f} seconds")
        if isinstance(every, Every) and every.min_s > MAX_EVERY_S:
            raise ApiError(400, f"every: {every} is wider than a year")
        return every

    async def _delta(self, defs: list[TagDef], start: float, end: float) -> None:
        """Answer the consumption of counters ``defs`` per bucket, with each bucket's quality."""
        from historian.buckets import Buckets
        from historian.counter import DeltaBucket, consumption

        if self.arg_bool("include_bad", False):
            raise ApiError(
                400, "include_bad: not with fn=delta (bad samples make a bucket uncertain)"
            )
        every = self._every("1h")
        rollover = self.arg_float("rollover", None, lo=1.0)
        width = every if isinstance(every, float) else every.min_s
        if (end - start) / width > MAX_BUCKETS:
            raise ApiError(400, f"too many buckets: at most {MAX_BUCKETS} (widen 'every')")
        tz = self.ctx.services.site.site.timezone
        h = self.historian()

        def query() -> dict[str, list[DeltaBucket]]:
            return consumption(h, defs, Buckets.of(start, end, every, tz), rollover=rollover)

        series = await self.ctx.run_blocking(query)
        self.reply(
            {
                "start": iso(start),
                "end": iso(end),
                "every": str(every) if not isinstance(every, float) else every,
                "every_s": every if isinstance(every, float) else None,
                "timezone": tz,
                "fn": DELTA,
                "series": {
                    name: [
                        {
                            "start": iso(b.start),
                            "end": iso(b.end),
                            "value": b.value,
                            "quality": b.quality.label,
                            "reason": b.reason,
                        }
                        for b in found
                    ]
                    for name, found in series.items()
                },
            }
        )
