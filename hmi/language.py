"""Each HMI session in its user's language: the page build and every later callback.

A Bokeh document's code runs in many places: ``make_document``, session callbacks (next
tick, periodic, timeout; whoever scheduled them, a tag bus listener included) and the
browser's events and property changes (on the session's websocket). Bokeh runs all of
them through one function, ``bokeh.document.callbacks.invoke_with_curdoc(doc, f)``.
:func:`install` wraps it so that ``f`` runs inside ``i18n.use_language`` of the language
:func:`set_document_language` gave ``doc``; a document without one is left as it was.

The language is the user's own choice (``/password`` page or ``PUT /api/me/language``),
else the site's ``site.language``; :func:`session_language` looks it up when a page is
built, so a change applies to the next page load without a restart.

Threading: loop thread only, as Bokeh's callbacks.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import bokeh.document.callbacks as _callbacks
from bokeh.document import Document

from i18n import use_language
from scada.services.bundle import Services

__all__ = ["document_language", "install", "installed", "session_language", "set_document_language"]

#: Bokeh's own function, called inside the document's language.
ORIGINAL = _callbacks.invoke_with_curdoc
_LANGUAGES: weakref.WeakKeyDictionary[Document, str] = weakref.WeakKeyDictionary()


def _invoke_in_language(doc: Document, f: Callable[[], None]) -> None:
    language = _LANGUAGES.get(doc)
    if language is None:
        return ORIGINAL(doc, f)
    with use_language(language):
        return ORIGINAL(doc, f)


def install() -> bool:
    """Wrap Bokeh's ``invoke_with_curdoc`` (once); return whether it is wrapped."""
    _callbacks.invoke_with_curdoc = _invoke_in_language
    return installed()


def installed() -> bool:
    """Return whether documents' callbacks run in their language."""
    return _callbacks.invoke_with_curdoc is _invoke_in_language


def set_document_language(doc: Document, language: str) -> None:
    """Run every later callback of ``doc`` in ``language``."""
    _LANGUAGES[doc] = language


def document_language(doc: Document) -> str | None:
    """Return the language set for ``doc`` (None: none set)."""
    return _LANGUAGES.get(doc)


def session_language(services: Services, user_name: str | None) -> str:
    """Return the language of a new session of ``user_name``: theirs, else the site's."""
    chosen = services.users.language_of(user_name) if user_name else None
    return chosen or services.site.site.language
