"""The faster ``query_properties_with_values`` gives exactly Bokeh's answers on the HMI's pages."""

from __future__ import annotations

from typing import Any

import pytest
from bokeh.core.has_props import HasProps
from bokeh.core.property.descriptors import UnsetValueError
from bokeh.core.property.singletons import Undefined
from bokeh.document import Document
from bokeh.models import ColumnDataSource, GlyphRenderer, Plot

from hmi import bokeh_speed
from hmi.app import PAGE_PATHS, HmiServices, _page_builder
from hmi.session import HmiSession
from tests.hmi.conftest import HmiRig

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _documents(rig: HmiRig) -> list[Document]:
    """Build every HMI page (the tenant's as a tenant, the rest as an engineer)."""
    services = rig.runtime.services
    hmi = HmiServices(services)
    docs = []
    for name in PAGE_PATHS:
        doc = Document()
        user = hmi.auth().user_named("tina" if name == "tenant" else "erik")
        assert user is not None
        session = HmiSession(doc, services, user, hmi.auth(), page=name)
        _page_builder(name)(session, doc, hmi)
        docs.append(doc)
        session.close()
    return docs


def _both(model: HasProps, **kw: Any) -> tuple[Any, Any]:
    def serialized(p: Any) -> bool:
        return bool(p.serialized)

    ours = bokeh_speed.query_properties_with_values(model, serialized, **kw)
    theirs = bokeh_speed.ORIGINAL(model, serialized, **kw)
    return ours, theirs


async def test_installed_on_the_pinned_bokeh() -> None:
    assert bokeh_speed.install()
    assert HasProps.query_properties_with_values is bokeh_speed.query_properties_with_values  # type: ignore[comparison-overlap]


async def test_every_model_of_every_page_gives_bokehs_own_answer(rig: HmiRig) -> None:
    docs = _documents(rig)
    models = [m for doc in docs for m in doc.models]
    assert len(models) > 500  # every page was built
    kinds = set()
    for model in models:
        for kw in (
            {"include_defaults": False},
            {"include_defaults": False, "include_undefined": True},
            {"include_defaults": True},
        ):
            ours, theirs = _both(model, **kw)
            assert ours == theirs, (type(model).__name__, kw)
            assert list(ours) == list(theirs)  # same order: the JSON is the same text
        kinds.add(type(model).__name__)
    assert {"GlyphRenderer", "ColumnDataSource", "Div", "CustomJS"} <= kinds


async def test_a_document_serialises_to_the_same_json(rig: HmiRig) -> None:
    doc = _documents(rig)[1]  # the building page
    bokeh_speed.install()
    fast = doc.to_json(deferred=False)  # buffers inline: no random buffer ids
    HasProps.query_properties_with_values = bokeh_speed.ORIGINAL  # type: ignore[method-assign]
    try:
        slow = doc.to_json(deferred=False)
    finally:
        bokeh_speed.install()
    assert fast == slow


async def test_an_unset_required_property_is_reported_as_before() -> None:
    # a GlyphRenderer's glyph and data source are required: unset, Bokeh raises on a read,
    # or reports Undefined when asked to
    renderer = GlyphRenderer.__new__(GlyphRenderer)
    HasProps.__init__(renderer)
    for fn in (bokeh_speed.query_properties_with_values, bokeh_speed.ORIGINAL):
        with pytest.raises(UnsetValueError):
            fn(renderer, lambda p: p.serialized, include_defaults=False)
        got = fn(renderer, lambda p: p.serialized, include_defaults=False, include_undefined=True)
        assert got["glyph"] is Undefined and got["data_source"] is Undefined
    # a set value and a mutable default changed in place both appear
    source = ColumnDataSource({"a": [1]})
    plot = Plot()
    plot.renderers.append(GlyphRenderer(data_source=source))
    for model in (source, plot):
        ours, theirs = _both(model, include_defaults=False)
        assert ours == theirs and ours
