"""Extract the message ids into ``scada.pot`` and keep the ``.po`` catalogs in step.

``python -m i18n.extraction`` (``make i18n``) runs the whole round: extract every
``_("...")``, ``N_("...")`` and ``ngettext("...", "...", n)`` from the packages named in
:data:`PACKAGES` into ``i18n/locale/scada.pot``, merge it into each language's ``.po``
(new ids arrive empty, for a translator; ids gone from the code are dropped) and compile
the ``.mo`` files. The tests call :func:`extract_template` to compare the code against the
catalogs. Run from anywhere: paths are taken from the repository root.
"""

from __future__ import annotations

import argparse
import ast
import io
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from i18n.catalogs import compile_catalog, mo_path, po_path

__all__ = [
    "KEYWORDS",
    "PACKAGES",
    "ROOT",
    "extract_template",
    "main",
    "translated",
    "update_catalogs",
]

ROOT = Path(__file__).resolve().parent.parent
#: The packages whose Python sources hold user-visible texts.
PACKAGES = (
    "alarms",
    "billing",
    "configbase",
    "drivers",
    "historian",
    "hmi",
    "i18n",
    "scada",
    "tags",
)
#: The translation functions and which of their arguments are message ids.
KEYWORDS: dict[str, tuple[int, ...]] = {"_": (1,), "N_": (1,), "ngettext": (1, 2)}
#: Babel's own Python extractor tokenizes and misses calls inside f-strings on Python
#: 3.11 (``f'{_("today")}'``); this one walks the syntax tree, which sees them all.
_METHOD_MAP = [("**.py", "i18n.extraction:extract_python_ast")]


def extract_python_ast(
    fileobj: IO[bytes],
    keywords: Collection[str],
    comment_tags: Collection[str],
    options: Mapping[str, Any],
) -> Iterator[tuple[int, str, str | tuple[str, ...], list[str]]]:
    """Yield Babel's ``(lineno, funcname, message, comments)`` for each translation call.

    A Babel extraction method: every call of a name in ``keywords`` whose message
    arguments are string literals, wherever it sits (f-strings, lambdas, defaults).
    Calls with a variable argument are not ids; the constants they look up are marked
    with ``N_`` where they are defined.
    """
    tree = ast.parse(fileobj.read())
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id not in keywords:
            continue
        positions = KEYWORDS.get(node.func.id, (1,))
        texts = [node.args[p - 1] if p - 1 < len(node.args) else None for p in positions]
        values = tuple(
            t.value for t in texts if isinstance(t, ast.Constant) and isinstance(t.value, str)
        )
        if len(values) == len(texts):
            yield node.lineno, node.func.id, values, []


def extract_template(root: Path = ROOT) -> Catalog:
    """Return a template catalog with every message id used under ``root``'s packages."""
    template = Catalog(project="scada-metering", charset="utf-8", fuzzy=False)
    for package in PACKAGES:
        if not (root / package).is_dir():
            continue
        found = extract_from_dir(
            root / package,
            method_map=_METHOD_MAP,
            keywords=KEYWORDS,
            comment_tags=("TRANSLATORS:",),
            strip_comment_tags=True,
        )
        for filename, lineno, message, comments, context in found:
            location = (f"{package}/{filename}", lineno)
            template.add(message, None, [location], auto_comments=comments, context=context)
    return template


def _write(catalog: Catalog, path: Path) -> None:
    out = io.BytesIO()
    write_po(out, catalog, sort_output=True, width=100, include_lineno=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())


def update_catalogs(root: Path = ROOT) -> dict[str, int]:
    """Write the ``.pot``, merge it into every ``.po`` and compile; return untranslated counts."""
    from i18n import DOMAIN, LANGUAGES, LOCALE_DIR

    locale_dir = LOCALE_DIR if root == ROOT else root / "i18n" / "locale"
    template = extract_template(root)
    _write(template, locale_dir / f"{DOMAIN}.pot")
    missing: dict[str, int] = {}
    for language in LANGUAGES[1:]:
        po = po_path(locale_dir, DOMAIN, language)
        if po.is_file():
            with po.open("rb") as source:
                catalog = read_po(source, locale=language)
        else:
            catalog = Catalog(locale=language, project="scada-metering", fuzzy=False)
        # No fuzzy guesses: a guessed translation is worse than an empty one, which the
        # tests name.
        catalog.update(template, no_fuzzy_matching=True, update_header_comment=False)
        catalog.obsolete.clear()
        _write(catalog, po)
        mo_path(locale_dir, DOMAIN, language).write_bytes(compile_catalog(po))
        missing[language] = sum(1 for m in catalog if m.id and not translated(m.string))
    return missing


def translated(string: str | tuple[str, ...] | list[str] | None) -> bool:
    """Return True when a catalog entry's translation (each plural form) is not empty."""
    if isinstance(string, tuple | list):
        return all(string)
    return bool(string)


def main(argv: list[str] | None = None) -> int:
    """Re-extract and update the catalogs; exit 1 when a language has untranslated ids."""
    parser = argparse.ArgumentParser(prog="python -m i18n.extraction", description=__doc__)
    parser.parse_args(argv)
    missing = update_catalogs()
    for language, count in missing.items():
        print(f"{language}: {count} untranslated")
    return 1 if any(missing.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
