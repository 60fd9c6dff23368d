"""The languages the product ships and how a wish (a setting, ``Accept-Language``) maps to one.

``en`` is the language of the message ids; ``zh_CN`` and ``ru`` have catalogs under
``i18n/locale``. Tags are matched loosely: ``zh``, ``zh-CN``, ``zh_Hans_CN`` all mean
``zh_CN``; ``ru-RU`` means ``ru``; ``en-GB`` means ``en``.
"""

from __future__ import annotations

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "best_language", "normalise_language"]

DEFAULT_LANGUAGE = "en"
#: The supported languages, in the spelling used for catalogs and settings.
LANGUAGES: tuple[str, ...] = ("en", "zh_CN", "ru")

_BY_PRIMARY = {"en": "en", "zh": "zh_CN", "ru": "ru"}


def normalise_language(tag: str | None) -> str | None:
    """Return the supported language ``tag`` names (``zh-cn`` -> ``zh_CN``), or None."""
    if not tag:
        return None
    parts = tag.strip().replace("-", "_").split("_")
    primary = parts[0].lower()
    if primary == "zh":
        # Traditional Chinese (zh-TW, zh-Hant) is not simplified Chinese: no match.
        rest = {p.lower() for p in parts[1:]}
        if rest & {"tw", "hk", "mo", "hant"}:
            return None
    return _BY_PRIMARY.get(primary)


def best_language(accept_language: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """Return the best supported match for an ``Accept-Language`` header, else ``default``.

    Follows RFC 9110 quality values (``ru;q=0.8, en;q=0.5``); ``q=0`` means "not this
    one"; ``*`` and unknown tags are skipped. Ties keep the header's order.
    """
    wishes: list[tuple[float, int, str]] = []
    for index, item in enumerate((accept_language or "").split(",")):
        tag, _sep, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _eq, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        language = normalise_language(tag)
        if language is not None and quality > 0:
            wishes.append((-quality, index, language))
    return min(wishes)[2] if wishes else default
