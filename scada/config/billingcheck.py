"""Checks of the billing sections: tariffs, accounts and buildings' electricity (issue 8).

Duplicate tariff and account ids, an account's unknown tariff / household / building, unknown
or non-numeric meter tags, a meter in two accounts, unknown relay / power / master tags.
"""

from __future__ import annotations

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
        meter_owner: dict[str, PathT] = {}
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
                if m.energy in meter_owner:
                    self.report(
                        mpath,
                        f"meter {m.energy!r} already belongs to another account "
                        f"({self.where(meter_owner[m.energy])})",
                    )
                else:
                    meter_owner[m.energy] = mpath
                if m.tariff is not None and m.tariff not in tariff_ids:
                    self.report(
                        (*mpath, "tariff"),
                        f"unknown tariff {m.tariff!r}{did_you_mean(m.tariff, tariff_ids)}",
                    )
                if m.relay is not None:
                    self.tag_ref((*mpath, "relay"), m.relay, types, "bool")
                if m.power is not None:
                    self.tag_ref((*mpath, "power"), m.power, types, "number")

    def _meter_key(self, mpath: PathT, key: str) -> PathT:
        """Return the path of ``key`` in a meter written as a mapping, else of the meter itself."""
        raw: Any = self.data
        for part in mpath:
            try:
                raw = raw[part]
            except (KeyError, IndexError, TypeError):
                return mpath
        return (*mpath, key) if isinstance(raw, dict) else mpath
