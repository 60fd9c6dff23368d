"""Config texts in several languages (issue 20, item 3): validation, fallbacks, where shown."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import pytest

import i18n
from alarms.rules import PointSpec
from hmi.tenant_labels import building_label
from i18n import LocalText, pick, set_site_language, use_language
from scada.config.errors import ConfigError
from scada.config.loader import load_site, load_site_text

ROOT = Path(__file__).resolve().parents[2]

SITE = """site: {id: s, name: {en: Estate, zh: 小区, ru: Квартал}, timezone: Asia/Shanghai}
tags:
  - {name: s.note, type: str, description: {en: Note, zh_CN: 备注}}
  - {name: s.t, type: float}
buildings:
  - {id: b1, name: {en: Building 1, zh: 1号楼, ru: Дом 1}, description: plain text}
  - {id: b2, name: {zh: 锅炉房}}
  - {id: b3, name: Plain name}
alarms:
  - {id: hot, kind: limit, tag: s.t, limits: {hh: 90}, description: {en: Boiler hot, ru: Котёл горячий}}
"""


@pytest.fixture(autouse=True)
def _site_language_reset() -> object:
    yield
    set_site_language(None)


def _site() -> Any:
    return load_site_text(SITE, "site.yaml")


def test_names_per_language_are_shown_in_the_readers_language() -> None:
    site = _site()
    b1, b2, b3 = site.buildings
    assert isinstance(b1.name, LocalText) and b1.name == "Building 1"  # a str: English
    assert isinstance(b3.name, str) and not isinstance(b3.name, LocalText)
    for language, want in (("en", "Building 1"), ("zh_CN", "1号楼"), ("ru", "Дом 1")):
        with use_language(language):
            assert pick(b1.name) == want
            assert pick(b3.name) == "Plain name"  # a plain string is shown as it is
            assert building_label(site.buildings, "b1") == want
            assert (
                pick(site.site.name) == {"en": "Estate", "zh_CN": "小区", "ru": "Квартал"}[language]
            )
    with use_language("ru"):
        assert pick(b2.name) == "锅炉房"  # neither ru nor en given: the first given
    assert pick(b1.name, "zh-CN") == "1号楼"
    assert pick(None) == ""


def test_fallback_is_the_site_language_then_english() -> None:
    text = LocalText({"zh_CN": "锅炉房", "ru": "Котельная", "en": "Boiler house"})
    only = LocalText({"zh_CN": "锅炉房", "ru": "Котельная"})
    set_site_language("ru")
    with use_language("en"):
        assert pick(text) == "Boiler house"
        assert pick(only) == "Котельная"  # no English: the site's language
    set_site_language("zh_CN")
    with use_language("en"):
        assert pick(only) == "锅炉房"
    assert i18n.site_language() == "zh_CN"


def test_tag_and_alarm_rule_descriptions_per_language() -> None:
    site = _site()
    tag = next(t for t in site.tags if t.name == "s.note")
    with use_language("zh_CN"):
        assert pick(tag.description) == "备注"
    rule = site.alarms[0]
    with use_language("ru"):
        assert pick(rule.description) == "Котёл горячий"
    defs = {d.name: d for d in site.tag_defs()}
    with use_language("zh_CN"):
        assert pick(defs["s.note"].description) == "备注"  # carried into the tag definition


def test_an_alarm_message_names_the_rule_in_the_current_language() -> None:
    from alarms.rules import _what

    spec = PointSpec.__new__(PointSpec)
    object.__setattr__(spec, "description", LocalText({"en": "Boiler hot", "ru": "Котёл горячий"}))
    with use_language("ru"):
        assert _what(spec) == "Котёл горячий"
    assert _what(spec) == "Boiler hot"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{en: One, fr: Un}", "buildings[0].name: unknown language 'fr' (use en, zh, zh_CN or ru)"),
        ("{en_GB: One}", "buildings[0].name: unknown language 'en_GB'"),
        ('{zh: ""}', "buildings[0].name: the text for 'zh' must be a non-empty string"),
        ("{zh: 甲, zh_CN: 乙}", "buildings[0].name: language 'zh_CN' given twice"),
        ("{}", "buildings[0].name: give at least one language"),
        ("[x]", "buildings[0].name: give a text, or a text per language"),
    ],
)
def test_a_bad_text_names_file_line_and_field(value: str, message: str) -> None:
    text = f"site: {{id: s}}\nbuildings:\n  - id: b1\n    name: {value}\n"
    with pytest.raises(ConfigError) as err:
        load_site_text(text, "bad.yaml")
    issues = [str(i) for i in err.value.issues]
    assert len(issues) == 1 and issues[0].startswith("bad.yaml:4:"), issues
    assert message in issues[0]


def test_texts_survive_dump_copy_pickle_and_compare_by_every_language() -> None:
    site = _site()
    b1 = site.buildings[0]
    assert b1.model_dump()["name"] == {"en": "Building 1", "zh_CN": "1号楼", "ru": "Дом 1"}
    assert b1.model_dump()["description"] == "plain text"
    assert type(b1).model_validate(b1.model_dump()) == b1
    assert copy.deepcopy(b1).name.texts == b1.name.texts
    assert pickle.loads(pickle.dumps(b1.name)).texts == b1.name.texts
    changed = b1.model_copy(update={"name": LocalText({"en": "Building 1", "zh_CN": "一号楼"})})
    assert changed != b1  # only the Chinese name differs: still a change
    schema = type(b1).model_json_schema()["properties"]["name"]
    assert {"type": "string"} in schema["anyOf"]


def test_the_chinese_demo_loads_with_chinese_names() -> None:
    site = load_site(ROOT / "config" / "demo-site-zh.yaml")
    assert site.site.language == "zh_CN" and site.site.energy_unit == "GJ"
    with use_language(site.site.language):
        assert pick(site.site.name) == "示范供热小区"
        names = [pick(b.name) for b in site.buildings]
    assert "1号楼" in names and "商业楼" in names
    plain = load_site(ROOT / "config" / "demo-site.yaml")
    assert plain.site.language == "en" and plain.buildings[0].name == "Building 1"
