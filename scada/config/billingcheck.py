"""Checks of the billing sections: tariffs, accounts and buildings' electricity (issue 8).

Duplicate tariff and account ids, an account's unknown tariff / household / building, unknown
or non-numeric meter tags, a meter in two accounts whose tenancies (``moved_in`` ..
``moved_out``, a tenant change) overlap, unknown relay / power / master tags.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from typing import Any

from scada.config.buildings import BuildingConfig
from scada.config.checkparts import CheckerParts
from scada.config.errors import did_you_mean
from scada.config.source import PathT
from tags.model import TagType


class BillingChecks(CheckerParts):
    """Mixed into ``Checker``: uses its ``items``, ``report``, ``unique``, ``tag_ref``, ``where``."""

    def check_billing(
        self,
        buildings: list[tuple[PathT, BuildingConfig]],
        households: dict[str, tuple[PathT, str]],
        types: dict[str, TagType],
    ) -> None:
        """Report every problem of ``tariffs``, ``accounts`` and ``buildings[*].electricity``."""
        tariffs = [(("tariffs", i), t) for i, t in self.items["tariffs"]]
        accounts = [(("accounts", i), a) for i, a in self.items["accounts"]]
        tariff_ids = set(self.unique(tariffs, "tariff", lambda t: t.id)) | self._raw_ids("tariffs")
        self.unique(accounts, "account", lambda a: a.id)
        building_ids = {b.id for _, b in buildings} | self._raw_ids("buildings")
        for bpath, b in buildings:
            e = b.electricity
            if e is not None:
                self.tag_ref((*bpath, "electricity", "master_tag"), e.master_tag, types, "number")
        meter_owner: dict[str, list[tuple[PathT, Any]]] = {}
        tz = self._site_zone()
        for path, a in accounts:
            if a.tariff not in tariff_ids:
                self.report(
                    (*path, "tariff"),
                    f"unknown tariff {a.tariff!r}{did_you_mean(a.tariff, tariff_ids)}",
                )
            if a.household is not None and a.household not in households:
                self.report(
                    (*path, "household"),
                    f"unknown household {a.household!r}{did_you_mean(a.household, households)}",
                )
            if a.building is not None and a.building not in building_ids:
                self.report(
                    (*path, "building"),
                    f"unknown building {a.building!r}{did_you_mean(a.building, building_ids)}",
                )
            for k, m in enumerate(a.meters):
                mpath = (*path, "meters", k)
                self.tag_ref(self._meter_key(mpath, "energy"), m.energy, types, "number")
                self._check_tenancy(meter_owner.setdefault(m.energy, []), mpath, m.energy, a, tz)
                if m.tariff is not None and m.tariff not in tariff_ids:
                    self.report(
                        (*mpath, "tariff"),
                        f"unknown tariff {m.tariff!r}{did_you_mean(m.tariff, tariff_ids)}",
                    )
                if m.relay is not None:
                    self.tag_ref((*mpath, "relay"), m.relay, types, "bool")
                if m.power is not None:
                    self.tag_ref((*mpath, "power"), m.power, types, "number")

    def _site_zone(self) -> zoneinfo.ZoneInfo:
        """The site's time zone (naive tenancy times are local), UTC when not readable."""
        site = self.data.get("site") if isinstance(self.data, dict) else None
        name = site.get("timezone") if isinstance(site, dict) else None
        try:
            return zoneinfo.ZoneInfo(str(name)) if name else zoneinfo.ZoneInfo("UTC")
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return zoneinfo.ZoneInfo("UTC")

    def _check_tenancy(
        self,
        owners: list[tuple[PathT, Any]],
        mpath: PathT,
        meter: str,
        account: Any,
        tz: zoneinfo.ZoneInfo,
    ) -> None:
        """Report ``meter`` if an earlier account holding it has a tenancy overlapping this one."""
        span = _span(account.moved_in, account.moved_out, tz)
        for other_path, other in owners:
            o = _span(other.moved_in, other.moved_out, tz)
            start, end = max(span[0], o[0]), min(span[1], o[1])
            if start < end:
                self.report(
                    mpath,
                    f"meter {meter!r} already belongs to another account {other.id!r} "
                    f"({self.where(other_path)}) whose tenancy overlaps that of account "
                    f"{account.id!r}: {_show(start)} .. {_show(end)} (moved_in / moved_out "
                    "of a tenant change must not overlap)",
                )
                return
        owners.append((mpath, account))

    def _meter_key(self, mpath: PathT, key: str) -> PathT:
        """Return the path of ``key`` in a meter written as a mapping, else of the meter itself."""
        raw: Any = self.data
        for part in mpath:
            try:
                raw = raw[part]
            except (KeyError, IndexError, TypeError):
                return mpath
        return (*mpath, key) if isinstance(raw, dict) else mpath


_MIN = datetime.min.replace(tzinfo=UTC)
_MAX = datetime.max.replace(tzinfo=UTC)


def _aware(t: datetime | None, tz: zoneinfo.ZoneInfo, default: datetime) -> datetime:
    if t is None:
        return default
    return t if t.tzinfo is not None else t.replace(tzinfo=tz)


def _span(
    a: datetime | None, b: datetime | None, tz: zoneinfo.ZoneInfo
) -> tuple[datetime, datetime]:
    """The tenancy ``[moved_in, moved_out)`` (open ends: all time)."""
    return _aware(a, tz, _MIN), _aware(b, tz, _MAX)


def _show(t: datetime) -> str:
    return "open" if t in (_MIN, _MAX) else t.isoformat()
