"""Load the compiled message catalogs, building a ``.mo`` from its ``.po`` when needed.

The ``.po`` files under ``i18n/locale/<lang>/LC_MESSAGES/scada.po`` are the source and
are committed; the ``.mo`` files are not (``i18n/locale/.gitignore``). On the first use of
a language in a process the ``.mo`` is compiled with Babel if it is missing or older than
its ``.po`` and written beside it; when the package directory is read-only the catalog
is compiled in memory instead, so a fresh checkout or install never needs a build step.
``make i18n`` re-extracts the ids, updates the ``.po`` files and compiles them as well.
"""

from __future__ import annotations

import gettext
import io
import logging
import os
import tempfile
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

__all__ = ["compile_catalog", "load_translations", "mo_path", "po_path"]

log = logging.getLogger(__name__)


def po_path(locale_dir: Path, domain: str, language: str) -> Path:
    """Return where the ``.po`` source of ``language`` lives."""
    return locale_dir / language / "LC_MESSAGES" / f"{domain}.po"


def mo_path(locale_dir: Path, domain: str, language: str) -> Path:
    """Return where the compiled ``.mo`` of ``language`` lives."""
    return po_path(locale_dir, domain, language).with_suffix(".mo")


def compile_catalog(po: Path) -> bytes:
    """Return the ``.mo`` bytes of ``po`` (fuzzy entries left out, as gettext does)."""
    with po.open("rb") as source:
        catalog = read_po(source)
    out = io.BytesIO()
    write_mo(out, catalog, use_fuzzy=False)
    return out.getvalue()


def _write_atomically(path: Path, data: bytes) -> bool:
    try:
        fd, tmp = tempfile.mkstemp(prefix=".scada-", suffix=".mo", dir=path.parent)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
        return True
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        return False


def load_translations(locale_dir: Path, domain: str, language: str) -> gettext.NullTranslations:
    """Return the translations of ``language``; the message ids themselves when none exist."""
    po = po_path(locale_dir, domain, language)
    mo = mo_path(locale_dir, domain, language)
    if not po.is_file():
        if mo.is_file():
            with mo.open("rb") as compiled:
                return gettext.GNUTranslations(compiled)
        return gettext.NullTranslations()
    if mo.is_file() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as compiled:
            return gettext.GNUTranslations(compiled)
    data = compile_catalog(po)
    if not _write_atomically(mo, data):
        log.info("cannot write %s: using the %s catalog compiled in memory", mo, language)
    return gettext.GNUTranslations(io.BytesIO(data))
