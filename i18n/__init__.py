"""One translation function for every user-visible string: ``_("text {x}", x=...)``.

Every string a person reads (HMI pages, alarm and command messages, report headers,
notices, API error reasons, CLI output meant for people) goes through :func:`_` (or
:func:`ngettext` for counts), with its variable parts as named fields, never glued:

    _("next command allowed at {time}", time=hhmmss)

The message id is the English text; the catalogs (gettext ``.mo`` files under
``i18n/locale/<lang>/LC_MESSAGES/scada.mo``, made with Babel) translate it. Until a catalog
for the current language exists the English text is used. The current language is a
context variable (:func:`use_language`), so a request or an HMI session can use its user's
language without touching any other. Keep placeholders named (``{value}``) so a translator
may move them.
"""

from __future__ import annotations

import contextvars
import gettext as _gettext
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

__all__ = ["DOMAIN", "LOCALE_DIR", "N_", "_", "current_language", "ngettext", "use_language"]

DOMAIN = "scada"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"

_language: contextvars.ContextVar[str] = contextvars.ContextVar("scada_language", default="en")


def current_language() -> str:
    """Return the language of the current context (``en`` unless set)."""
    return _language.get()


@contextmanager
def use_language(language: str) -> Iterator[None]:
    """Translate into ``language`` (``en``, ``zh_CN``, ``ru``...) inside the ``with`` block."""
    token = _language.set(language or "en")
    try:
        yield
    finally:
        _language.reset(token)


@lru_cache(maxsize=16)
def _catalog(language: str) -> _gettext.NullTranslations:
    return _gettext.translation(DOMAIN, LOCALE_DIR, languages=[language], fallback=True)


def _fill(text: str, fields: dict[str, object]) -> str:
    if not fields:
        return text
    try:
        return text.format(**fields)
    except (KeyError, IndexError, ValueError):
        return text


def _(message: str, /, **fields: object) -> str:
    """Return ``message`` in the current language with ``{name}`` fields filled from ``fields``."""
    return _fill(_catalog(_language.get()).gettext(message), fields)


def N_(message: str, /) -> str:
    """Mark ``message`` for the catalog without translating it (a constant translated where shown).

    For tables of texts built at import time (menu labels, range names): keep the English
    text as the key and call :func:`_` on it where it is shown, in the reader's language.
    """
    return message


def ngettext(singular: str, plural: str, n: int, /, **fields: object) -> str:
    """Return the singular or plural form for ``n`` (``{n}`` is filled too)."""
    return _fill(_catalog(_language.get()).ngettext(singular, plural, n), {"n": n, **fields})
