"""The building page keeps the mimics of the buildings it showed (kiosk rotation), within a bound."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bokeh.document import Document

import hmi.building as building
from hmi.app import HmiServices
from hmi.building import BuildingPage
from hmi.session import HmiSession, HmiUser
from scada.bench.hmi_wall import WallEstate


@pytest.fixture
def estate(tmp_path: Path) -> Iterator[WallEstate]:
    estate = WallEstate(4, tmp_path)
    estate.services.users.add_user("kiosk", "viewer", "kiosk password 1")
    yield estate
    estate.close()


def _page(estate: WallEstate) -> BuildingPage:
    doc = Document()
    user = HmiUser("kiosk", "viewer", None, (), (), "127.0.0.1")
    auth = HmiServices(estate.services).auth()
    session = HmiSession(doc, estate.services, user, auth, page="building")
    page = BuildingPage(session, doc, None)
    page.build(estate.ids[0])
    return page


def test_a_building_shown_again_reuses_its_mimic_and_shows_what_changed_meanwhile(
    estate: WallEstate,
) -> None:
    page = _page(estate)
    first, second = estate.ids[0], estate.ids[1]
    assert page.view is not None
    mimic = page.view.mimic
    room_tag = mimic.cells[0].room_tag
    assert room_tag is not None
    page.show(second)
    assert page.view.mimic is not mimic
    # while the first building is hidden its feed is off: the change reaches it on return
    estate.db.update(room_tag, 17.3)
    estate.db.update(f"{first}.hm.supply_c", 71.5)
    estate.db.flush()
    assert mimic.source.data["room"][0] != "17.3"
    page.show(first)
    assert page.view.mimic is mimic
    assert mimic.source.data["room"][0] == "17.3"
    entry = mimic.entry.source.data
    assert entry["text"][entry["tag"].index(f"{first}.hm.supply_c")] == "supply 71.5 °C"
    assert list(page.views) == [second, first]  # the one shown last is newest


def test_the_kept_mimics_are_bounded_by_their_units(
    estate: WallEstate, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = _page(estate)
    units = len(page.views[estate.ids[0]].cells)
    monkeypatch.setattr(building, "VIEW_CACHE_UNITS", 2 * units)
    for b in estate.ids[1:]:
        page.show(b)
    assert list(page.views) == estate.ids[-2:]
    monkeypatch.setattr(building, "VIEW_CACHE_UNITS", 0)
    page.show(estate.ids[0])
    assert list(page.views) == [estate.ids[0]]  # the shown building is always kept
