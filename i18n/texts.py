"""Config texts in several languages: ``name: {en: Boiler house, zh: 锅炉房, ru: Котельная}``.

Names and descriptions in the site config (buildings, substations, alarm rules, tags) may
be a plain string or a mapping of language to text. :data:`MultiText` is the pydantic field
type of such a text: a plain string stays a plain ``str``; a mapping becomes a
:class:`LocalText`, a ``str`` whose own value is the English text (else the first given),
so every code that treats the name as a string keeps working. :func:`pick` returns the
text in the reader's language: the current one (:func:`i18n.use_language`), else the site's
(:func:`set_site_language`), else English, else the first given.

Keys: ``en``, ``zh`` or ``zh_CN`` (also ``zh-CN``), ``ru``; an unknown key or an empty text
is a validation error naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

from i18n.languages import DEFAULT_LANGUAGE, LANGUAGES, normalise_language

__all__ = [
    "LocalText",
    "MultiText",
    "local_text",
    "pick",
    "set_site_language",
    "site_language",
]

_site_language = DEFAULT_LANGUAGE


def set_site_language(language: str | None) -> None:
    """Make ``language`` the site's: the fallback of :func:`pick` (the running config's ``site.language``)."""
    global _site_language
    _site_language = normalise_language(language) or DEFAULT_LANGUAGE


def site_language() -> str:
    """Return the site's language set by :func:`set_site_language` (``en`` unless set)."""
    return _site_language


class LocalText(str):
    """A text in several languages; as a ``str``, its English text (else the first given).

    ``texts`` maps a supported language (``en``, ``zh_CN``, ``ru``) to its text, in the
    order given.
    """

    texts: dict[str, str]

    def __new__(cls, texts: Mapping[str, str]) -> LocalText:
        if not texts:
            raise ValueError("a text in several languages needs at least one language")
        default = texts.get(DEFAULT_LANGUAGE) or next(iter(texts.values()))
        obj = super().__new__(cls, default)
        obj.texts = dict(texts)
        return obj

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LocalText):
            return self.texts == other.texts  # a change of one language is a change
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = str.__hash__

    def __reduce__(self) -> tuple[Any, ...]:
        return (LocalText, (self.texts,))

    def __repr__(self) -> str:
        return f"LocalText({self.texts!r})"

    def get(self, language: str | None) -> str | None:
        """Return the text in ``language``, or None when not given."""
        key = normalise_language(language)
        return self.texts.get(key) if key else None


def local_text(value: object) -> str:
    """Validate a config text: a string as it is, a mapping as a :class:`LocalText`.

    Raises ValueError naming the bad key (``zz``) or the language of an empty text.
    """
    if isinstance(value, LocalText):
        return value
    if isinstance(value, str):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(
            "give a text, or a text per language such as {en: Boiler house, zh: 锅炉房, ru: Котельная}"
        )
    texts: dict[str, str] = {}
    for key, text in value.items():
        language = normalise_language(str(key)) if isinstance(key, str) else None
        if language is None or not _exact(str(key), language):
            raise ValueError(f"unknown language {key!r} (use en, zh, zh_CN or ru)")
        if language in texts:
            raise ValueError(f"language {key!r} given twice")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"the text for {key!r} must be a non-empty string")
        texts[language] = text
    if not texts:
        raise ValueError("give at least one language (en, zh_CN or ru)")
    return LocalText(texts)


def _exact(key: str, language: str) -> bool:
    """Accept ``en``, ``ru``, ``zh``, ``zh_CN``/``zh-CN`` only, not ``en_GB`` or ``ru_XX``."""
    k = key.replace("-", "_").lower()
    return k in {lang.lower() for lang in LANGUAGES} or k == "zh"


def _dump(value: str) -> str | dict[str, str]:
    return dict(value.texts) if isinstance(value, LocalText) else str(value)


#: A pydantic field type: a plain string, or a mapping of language to text (see module doc).
MultiText = Annotated[
    str,
    PlainValidator(local_text),
    PlainSerializer(_dump),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "propertyNames": {"enum": ["en", "zh", "zh_CN", "zh-CN", "ru"]},
                    "additionalProperties": {"type": "string", "minLength": 1},
                    "minProperties": 1,
                },
            ],
            "description": "a text, or a text per language: {en: ..., zh: ..., ru: ...}",
        }
    ),
]


def pick(text: object, language: str | None = None) -> str:
    """Return ``text`` in ``language`` (default: the current one); a plain string as it is.

    For a :class:`LocalText`: the requested language, else the site's, else English, else
    the first given. ``None`` gives ``""``.
    """
    if text is None:
        return ""
    if not isinstance(text, LocalText):
        return str(text)
    from i18n import current_language  # the package imports this module

    for wish in (language or current_language(), _site_language, DEFAULT_LANGUAGE):
        found = text.get(wish)
        if found:
            return found
    return next(iter(text.texts.values()))
