"""One translation function for every user-visible string: ``_("text {x}", x=...)``.

Every string a person reads (HMI pages, alarm and command messages, report headers,
notices, API error reasons, CLI output meant for people) goes through :func:`_` (or
:func:`ngettext` for counts), with its variable parts as named fields, never glued:

    _("next command allowed at {time}", time=hhmmss)

The message id is the English text; the catalogs (gettext ``.po`` files under
``i18n/locale/<lang>/LC_MESSAGES/scada.po``, for ``zh_CN`` and ``ru``, made with Babel)
translate it. The ``.mo`` files are not committed: each is compiled from its ``.po`` on
the first use of the language when missing or older (see :mod:`i18n.catalogs`); ``make
i18n`` re-extracts the ids and updates the catalogs. A language without a catalog (``en``)
shows the English text. The current language is a context variable
(:func:`use_language`), so a request or an HMI session can use its user's language
without touching any other. Config texts given per language (``name: {en: ..., zh: ...}``)
are shown with :func:`pick` (:mod:`i18n.texts`). Keep placeholders named (``{value}``) so a translator may
move them.
"""

from __future__ import annotations

import contextvars
import gettext as _gettext
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from i18n.catalogs import load_translations
from i18n.languages import DEFAULT_LANGUAGE, LANGUAGES, best_language, normalise_language
from i18n.texts import LocalText, MultiText, pick, set_site_language, site_language

__all__ = [
    "DEFAULT_LANGUAGE",
    "DOMAIN",
    "LANGUAGES",
    "LOCALE_DIR",
    "N_",
    "LocalText",
    "MultiText",
    "_",
    "best_language",
    "current_language",
    "ngettext",
    "normalise_language",
    "pick",
    "set_language",
    "set_site_language",
    "site_language",
    "use_language",
]

DOMAIN = "scada"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"

_language: contextvars.ContextVar[str] = contextvars.ContextVar("scada_language", default="en")


def current_language() -> str:
    """Return the language of the current context (``en`` unless set)."""
    return _language.get()


@contextmanager
def use_language(language: str) -> Iterator[None]:
    """Translate into ``language`` (``en``, ``zh_CN``, ``ru``; ``zh-CN`` etc. accepted) inside the block.

    An unknown or empty language means English.
    """
    token = _language.set(normalise_language(language) or DEFAULT_LANGUAGE)
    try:
        yield
    finally:
        _language.reset(token)


def set_language(language: str | None) -> contextvars.Token[str]:
    """Make ``language`` the current one for the rest of the current context; return the token.

    For a context that ends with its work, such as a Tornado request's task (the REST
    handlers set the language of ``Accept-Language`` in ``prepare``); elsewhere prefer
    :func:`use_language`. Unknown or empty means English.
    """
    return _language.set(normalise_language(language) or DEFAULT_LANGUAGE)


@lru_cache(maxsize=16)
def _catalog(language: str) -> _gettext.NullTranslations:
    if language == DEFAULT_LANGUAGE:
        return _gettext.NullTranslations()
    return load_translations(LOCALE_DIR, DOMAIN, language)


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
