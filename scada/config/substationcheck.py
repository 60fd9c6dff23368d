"""Checks of the ``substations`` section: ids, buildings and the tags a substation names.

Duplicate substation ids, unknown buildings, a building fed by two substations, tags that do
not exist or have the wrong type (the pump is a bool, every other tag a number).
"""

from __future__ import annotations

from scada.config.buildings import BuildingConfig
from scada.config.checkparts import CheckerParts
from scada.config.errors import did_you_mean
from scada.config.source import PathT
from scada.config.substations import BOOL_TAGS, SubstationConfig
from tags.model import TagType


class SubstationChecks(CheckerParts):
    """Mixed into ``Checker``: uses its ``items``, ``report``, ``unique``, ``tag_ref``, ``where``."""

    def check_substations(
        self, buildings: list[tuple[PathT, BuildingConfig]], types: dict[str, TagType]
    ) -> None:
        """Report every problem of the ``substations`` section."""
        subs: list[tuple[PathT, SubstationConfig]] = [
            (("substations", i), s) for i, s in self.items["substations"]
        ]
        self.unique(subs, "substation", lambda s: s.id)
        building_ids = {b.id for _, b in buildings}
        known = building_ids | self._raw_ids("buildings")
        fed_by: dict[str, tuple[PathT, str]] = {}
        for path, s in subs:
            for k, b in enumerate(s.buildings):
                where = (*path, "buildings", k)
                if b not in known:
                    if not self.incomplete:
                        self.report(where, f"unknown building {b!r}{did_you_mean(b, building_ids)}")
                elif b in fed_by:
                    first, other = fed_by[b]
                    self.report(
                        where,
                        f"building {b!r} is already fed by substation {other!r} "
                        f"({self.where(first)}); a building belongs to one substation at most",
                    )
                else:
                    fed_by[b] = (where, s.id)
            for key, tag in s.tags().items():
                expect = "bool" if key in BOOL_TAGS else "number"
                self.tag_ref((*path, key), tag, types, expect)
