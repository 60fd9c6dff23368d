"""The zh_CN and ru catalogs: complete, in step with the code, placeholders kept, loaded.

The scan extracts every message id from the code (``i18n.extraction``, the same run as
``make i18n``) into a temporary ``.pot`` and compares it with each ``.po``: an id used in
the code and missing from a catalog fails here, naming it.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po, write_po

import i18n
from i18n import DOMAIN, LOCALE_DIR, _, ngettext, use_language
from i18n.catalogs import load_translations, mo_path, po_path
from i18n.extraction import extract_python_ast, extract_template, translated

TRANSLATED = ("zh_CN", "ru")
PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def _catalog(language: str) -> Catalog:
    with po_path(LOCALE_DIR, DOMAIN, language).open("rb") as f:
        return read_po(f, locale=language)


def _messages(catalog: Catalog) -> list[Message]:
    return [m for m in catalog if m.id]


@pytest.fixture(scope="module")
def code_template(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """Every id in the code, written to a temporary .pot and read back (as a translator gets it)."""
    pot = tmp_path_factory.mktemp("i18n") / "scada.pot"
    out = io.BytesIO()
    write_po(out, extract_template())
    pot.write_bytes(out.getvalue())
    with pot.open("rb") as f:
        return read_po(f)


def test_the_scan_finds_a_known_number_of_ids(code_template: Catalog) -> None:
    ids = {m.id if isinstance(m.id, str) else m.id[0] for m in _messages(code_template)}
    # a sanity floor: the packages hold hundreds of texts, plurals among them
    assert len(ids) > 400
    assert "Close valve" in ids and "{n} error" in ids
    assert "today" in ids  # a call inside an f-string (Babel's own extractor misses it)


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_id_in_the_code_is_in_the_catalog(code_template: Catalog, language: str) -> None:
    catalog = _catalog(language)
    missing = [m.id for m in _messages(code_template) if m.id not in catalog]
    assert not missing, f"not in the {language} catalog (run `make i18n` and translate): {missing}"
    plural_kind = [
        m.id for m in _messages(code_template) if isinstance(m.id, tuple) != m.pluralizable
    ]
    assert not plural_kind


@pytest.mark.parametrize("language", TRANSLATED)
def test_no_empty_or_fuzzy_translations(language: str) -> None:
    catalog = _catalog(language)
    assert not catalog.fuzzy
    empty = [m.id for m in _messages(catalog) if not translated(m.string)]
    fuzzy = [m.id for m in _messages(catalog) if m.fuzzy]
    assert not empty, f"untranslated in {language}: {empty}"
    assert not fuzzy, f"fuzzy in {language}: {fuzzy}"
    if language == "ru":  # one, few, many
        assert catalog.num_plurals == 3
    plural = [m for m in _messages(catalog) if m.pluralizable]
    assert plural and all(len(m.string) == catalog.num_plurals for m in plural)


@pytest.mark.parametrize("language", TRANSLATED)
def test_placeholders_in_each_translation_equal_the_ids(language: str) -> None:
    wrong = []
    for m in _messages(_catalog(language)):
        ids = m.id if isinstance(m.id, tuple) else (m.id,)
        forms = m.string if isinstance(m.string, tuple) else (m.string,)
        wanted = {frozenset(PLACEHOLDER.findall(text)) for text in ids}
        for form in filter(None, forms):  # empty ones: test_no_empty_or_fuzzy_translations
            # a plural form may leave out {n} only where the singular id does too
            if frozenset(PLACEHOLDER.findall(form)) not in wanted:
                wrong.append((m.id, form))
    assert not wrong, f"placeholders changed in {language}: {wrong}"


def test_use_language_translates_and_restores() -> None:
    assert _("Close valve") == "Close valve"
    with use_language("zh_CN"):
        assert _("Close valve") == "关阀"
        assert _("Heat meter {device}", device="HM-7") == "热量表 HM-7"
        assert ngettext("{n} error", "{n} errors", 5) == "5 个错误"
        with use_language("ru"):
            assert _("Close valve") == "Закрыть клапан"
            forms = [ngettext("{n} error", "{n} errors", n) for n in (1, 3, 5, 21, 11)]
            assert forms == ["1 ошибка", "3 ошибки", "5 ошибок", "21 ошибка", "11 ошибок"]
        assert i18n.current_language() == "zh_CN"
    assert i18n.current_language() == "en"
    with use_language("zh-CN"):  # an Accept-Language spelling
        assert _("Alarms") == "告警"
    with use_language("fr"):  # no catalog: the English text
        assert _("Alarms") == "Alarms"


def test_ids_not_in_the_catalog_stay_english() -> None:
    with use_language("ru"):
        assert _("a text nobody translated {x}", x=1) == "a text nobody translated 1"


def _locale_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "locale"
    for language in TRANSLATED:
        po = po_path(LOCALE_DIR, DOMAIN, language)
        target = po_path(dest, DOMAIN, language)
        target.parent.mkdir(parents=True)
        shutil.copy(po, target)
    return dest


def test_a_missing_or_older_mo_is_compiled_from_its_po(tmp_path: Path) -> None:
    locale = _locale_copy(tmp_path)
    mo = mo_path(locale, DOMAIN, "ru")
    assert not mo.exists()
    assert load_translations(locale, DOMAIN, "ru").gettext("Open valve") == "Открыть клапан"
    assert mo.is_file()  # written beside the .po for the next start
    # an edited .po (newer than its .mo) is compiled again
    po = po_path(locale, DOMAIN, "ru")
    po.write_text(
        po.read_text(encoding="utf-8").replace("Открыть клапан", "Открыть кран"), encoding="utf-8"
    )
    os.utime(mo, (1, 1))
    assert load_translations(locale, DOMAIN, "ru").gettext("Open valve") == "Открыть кран"
    assert mo.stat().st_mtime > 1
    # a language with no catalog: the ids themselves
    assert load_translations(locale, DOMAIN, "de").gettext("Open valve") == "Open valve"


def test_an_unwritable_mo_path_compiles_in_memory(tmp_path: Path) -> None:
    """A read-only install (here: the .mo path taken by a directory) still gets its catalog."""
    locale = _locale_copy(tmp_path)
    mo = mo_path(locale, DOMAIN, "zh_CN")
    mo.mkdir()
    assert load_translations(locale, DOMAIN, "zh_CN").gettext("Open valve") == "开阀"
    assert mo.is_dir() and not list(mo.parent.glob(".scada-*"))  # no temporary file left


def test_the_extractor_sees_calls_in_f_strings_and_skips_variables() -> None:
    source = (
        b"x = f'<b>{_(\"today\")}</b>'\n"
        b"y = _(label)\n"
        b'z = ngettext("{n} cat", "{n} cats", n)\n'
        b'w = N_("marked")\n'
    )
    found = list(extract_python_ast(io.BytesIO(source), ["_", "N_", "ngettext"], (), {}))
    assert sorted((line, name, msg) for line, name, msg, _c in found) == [
        (1, "_", ("today",)),
        (3, "ngettext", ("{n} cat", "{n} cats")),
        (4, "N_", ("marked",)),
    ]


def test_make_i18n_merges_new_ids_and_keeps_translations(tmp_path: Path) -> None:
    """``make i18n`` on a small tree: new ids arrive empty, translations stay, old ids go."""
    from i18n.extraction import update_catalogs

    (tmp_path / "hmi").mkdir()
    code = tmp_path / "hmi" / "page.py"
    code.write_text('a = _("Open valve")\nb = _("Gone soon")\n', encoding="utf-8")
    assert update_catalogs(tmp_path) == {"zh_CN": 2, "ru": 2}
    locale = tmp_path / "i18n" / "locale"
    assert (locale / "scada.pot").is_file()
    po = po_path(locale, DOMAIN, "zh_CN")
    po.write_text(
        po.read_text(encoding="utf-8").replace(
            'msgid "Open valve"\nmsgstr ""', 'msgid "Open valve"\nmsgstr "开阀"'
        ),
        encoding="utf-8",
    )
    code.write_text('a = _("Open valve")\nc = f\'{_("New text {n}", n=1)}\'\n', encoding="utf-8")
    assert update_catalogs(tmp_path) == {"zh_CN": 1, "ru": 2}
    with po.open("rb") as f:
        catalog = read_po(f, locale="zh_CN")
    assert {m.id: m.string for m in _messages(catalog)} == {
        "Open valve": "开阀",
        "New text {n}": "",
    }
    assert load_translations(locale, DOMAIN, "zh_CN").gettext("Open valve") == "开阀"
