"""Choosing the language: the site's default, a user's own, a request's Accept-Language.

Against a real server (``tests.scada.server_fixtures``): REST error reasons follow
``Accept-Language`` (else ``site.language``), a user sets their language over REST, and
the user store keeps it (also in a file made before users had one).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import tests.scada.server_fixtures as fixtures
from i18n import best_language, normalise_language
from scada.config import load_site_text
from scada.config.errors import ConfigError
from scada.services.auth import Role
from scada.services.users import UserError, UserStore
from tests.scada.server_fixtures import (
    PASSWORD,
    Served,
    served_fixture,  # noqa: F401
    start_served,
)

UNKNOWN_TAG = {"tag": "no.such.tag", "value": 1}


@pytest.mark.parametrize(
    ("header", "default", "wanted"),
    [
        ("ru-RU,ru;q=0.9,en;q=0.8", "en", "ru"),
        ("zh-CN,zh;q=0.9", "en", "zh_CN"),
        ("zh", "en", "zh_CN"),
        ("fr-FR, de;q=0.5", "ru", "ru"),  # nothing we have: the site's
        ("en;q=0.2, ru;q=0.7", "zh_CN", "ru"),  # the highest quality wins, not the first
        ("ru;q=0, en", "zh_CN", "en"),  # q=0: not this one
        ("zh-TW", "en", "en"),  # traditional Chinese is not zh_CN
        ("", "zh_CN", "zh_CN"),
        (None, "ru", "ru"),
        ("*;q=0.5, ru;q=bad", "en", "en"),
    ],
)
def test_accept_language_best_match(header: str | None, default: str, wanted: str) -> None:
    assert best_language(header, default) == wanted


def test_language_names_are_normalised() -> None:
    assert normalise_language("zh_cn") == "zh_CN"
    assert normalise_language("zh-Hans-CN") == "zh_CN"
    assert normalise_language("RU") == "ru"
    assert normalise_language("en-GB") == "en"
    assert normalise_language("fr") is None
    assert normalise_language("") is None


SITE = "site: {{id: langtest, timezone: UTC{extra}}}\n"


def test_site_language_defaults_to_english_and_is_validated() -> None:
    assert load_site_text(SITE.format(extra="")).site.language == "en"
    assert load_site_text(SITE.format(extra=", language: zh_CN")).site.language == "zh_CN"
    with pytest.raises(ConfigError) as err:
        load_site_text(SITE.format(extra=", language: zh-TW"))
    text = str(err.value)
    assert "site.language" in text and "en, zh_CN, ru" in text and "zh-TW" in text


def test_the_user_store_keeps_each_users_language(tmp_path: Path) -> None:
    with UserStore.in_data_dir(tmp_path) as store:
        store.add_user("ivan", Role.OPERATOR, PASSWORD)
        assert store.language_of("ivan") is None  # the site's
        store.set_language("ivan", "ru")
        assert store.language_of("ivan") == "ru"
        with pytest.raises(UserError, match="unknown language 'de'"):
            store.set_language("ivan", "de")
        with pytest.raises(UserError, match="no user 'nobody'"):
            store.set_language("nobody", "ru")
        assert store.language_of("nobody") is None
    with UserStore.in_data_dir(tmp_path) as store:  # kept in the file
        assert store.language_of("ivan") == "ru"
        store.set_language("ivan", None)
        assert store.language_of("ivan") is None


def test_a_users_file_from_before_languages_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "users.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE users(name TEXT PRIMARY KEY, role TEXT NOT NULL, "
            "links TEXT NOT NULL DEFAULT '[]', pw_hash TEXT, created_ts REAL NOT NULL, "
            "updated_ts REAL NOT NULL)"
        )
        conn.execute("INSERT INTO users VALUES ('old', 'viewer', '[]', NULL, 0, 0)")
    conn.close()
    with UserStore(path) as store:
        assert store.require("old").role is Role.VIEWER
        assert store.language_of("old") is None
        store.set_language("old", "zh_CN")
        assert store.language_of("old") == "zh_CN"


async def test_error_reasons_follow_accept_language(served: Served) -> None:
    async def reason(language: str | None, **kw: Any) -> tuple[int, str]:
        headers = {"Accept-Language": language} if language else {}
        st, body, _ = await served.api(**{"headers": headers, **kw})
        return st, body["error"]

    # from the handler base: no credentials
    assert await reason(None, method="GET", path="/api/me", role=None) == (
        401,
        "authentication required (session cookie or bearer token)",
    )
    st, text = await reason("ru-RU,ru;q=0.9,en;q=0.5", method="GET", path="/api/me", role=None)
    assert (st, text) == (401, "требуется аутентификация (cookie сеанса или токен Bearer)")
    st, text = await reason("zh-CN", method="GET", path="/api/me", role=None)
    assert (st, text) == (401, "需要身份认证（会话 Cookie 或 Bearer 令牌）")
    # from a service the handler calls (the command service), placeholders filled
    post: dict[str, Any] = {
        "method": "POST",
        "path": "/api/commands",
        "role": "operator",
        "body": UNKNOWN_TAG,
    }
    st, text = await reason("zh-CN,en;q=0.5", **post)
    assert (st, text) == (404, "未知点位 no.such.tag：不在运行配置中")
    st, text = await reason("ru", **post)
    assert (st, text) == (404, "неизвестный тег no.such.tag: его нет в рабочей конфигурации")
    st, text = await reason("fr, de", **post)  # nothing we have: the site's default (en)
    assert text == "unknown tag no.such.tag: it is not in the running configuration"


async def test_error_reasons_default_to_the_sites_language(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = fixtures.SITE_YAML.replace("timezone: UTC}}", "timezone: UTC, language: ru}}")
    assert site != fixtures.SITE_YAML
    monkeypatch.setattr(fixtures, "SITE_YAML", site)
    served = await start_served(tmp_path)
    try:
        post: dict[str, Any] = {
            "method": "POST",
            "path": "/api/commands",
            "role": "operator",
            "body": UNKNOWN_TAG,
        }
        for header in ({}, {"Accept-Language": "fr"}):
            st, body, _ = await served.api(**post, headers=header)
            assert (st, body["error"]) == (
                404,
                "неизвестный тег no.such.tag: его нет в рабочей конфигурации",
            )
        st, body, _ = await served.api(**post, headers={"Accept-Language": "en-US"})
        assert body["error"] == "unknown tag no.such.tag: it is not in the running configuration"
        st, body, _ = await served.api("GET", "/api/me/language", role="viewer")
        assert body == {
            "language": None,
            "effective": "ru",
            "site": "ru",
            "available": ["en", "zh_CN", "ru"],
        }
    finally:
        await served.runtime.stop()


async def test_users_set_their_language_over_rest(served: Served) -> None:
    st, body, _ = await served.api("GET", "/api/me/language", role="viewer")
    assert st == 200
    assert body == {
        "language": None,
        "effective": "en",
        "site": "en",
        "available": ["en", "zh_CN", "ru"],
    }
    st, body, _ = await served.api(
        "PUT", "/api/me/language", role="viewer", body={"language": "zh_CN"}
    )
    assert (st, body["language"], body["effective"]) == (200, "zh_CN", "zh_CN")
    assert served.server.ctx.users.language_of("viewer") == "zh_CN"
    assert served.server.ctx.users.language_of("operator") is None  # one user's choice only
    # bad input: 422 naming the field, nothing changed
    for bad in ({"language": "fr"}, {"language": 7}, {"lang": "ru"}, {}):
        st, body, _ = await served.api("PUT", "/api/me/language", role="viewer", body=bad)
        assert st == 422, (bad, st, body)
        assert "lang" in body["error"], body
    st, body, _ = await served.api(
        "PUT",
        "/api/me/language",
        role="viewer",
        body={"language": "fr"},
        headers={"Accept-Language": "zh-CN"},
    )
    assert body["error"] == "language：未知语言 'fr'：请使用 en, zh_CN, ru 之一"
    assert served.server.ctx.users.language_of("viewer") == "zh_CN"
    st, body, _ = await served.api(
        "PUT", "/api/me/language", role="viewer", body={"language": None}
    )
    assert (st, body["language"], body["effective"]) == (200, None, "en")
    st, _body, _ = await served.api("PUT", "/api/me/language", role=None, body={"language": "ru"})
    assert st == 401
    entries = served.server.ctx.audit.query(action="user.language")
    assert [e["user"] for e in entries] == ["viewer", "viewer"]


async def test_the_login_page_follows_accept_language(served: Served) -> None:
    for header, words in (
        ("ru-RU,ru;q=0.9", ("<title>Войти</title>", "Пользователь", "Пароль")),
        ("zh-CN,zh;q=0.9", ("<title>登录</title>", "用户名", "密码")),
        ("de", ("<title>Sign in</title>", ">User<", ">Password<")),
    ):
        st, page, _ = await served.api(
            "GET", "/login", role=None, headers={"Accept-Language": header}
        )
        assert st == 200
        assert all(w in page for w in words), (header, page[:600])
