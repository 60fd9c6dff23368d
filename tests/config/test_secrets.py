"""Secrets in the site configuration: ``${NAME}``, ``${file:...}``, ``$${``, located errors, hidden values."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from configbase.secrets import expand, find_secrets, has_reference
from historian.config import HistorianConfig
from scada.cli import main
from scada.config import ConfigError, load_site, load_site_text

SECRET = "s3cr3t-Value-42"

SITE = """\
site: {{id: sec}}
historian: {{backend: sqlite, token: "{token}"}}
notifications:
  notifiers:
    - name: mail
      type: email
      host: 127.0.0.1
      sender: scada@heat.example
      username: scada
      password: "{password}"
    - {{name: hook, type: webhook, url: "{url}", headers: {{Authorization: "Bearer {bearer}"}}}}
"""


def site_text(
    *,
    token: str = "${SCADA_T_TOKEN}",
    password: str = "${SCADA_T_PASSWORD}",
    url: str = "${SCADA_T_URL}",
    bearer: str = "${SCADA_T_TOKEN}",
) -> str:
    return SITE.format(token=token, password=password, url=url, bearer=bearer)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Set the test variables; return a docker-style secret file holding SECRET."""
    monkeypatch.setenv("SCADA_T_TOKEN", SECRET)
    monkeypatch.setenv("SCADA_T_PASSWORD", SECRET)
    monkeypatch.setenv("SCADA_T_URL", f"https://hooks.example.org/{SECRET}")
    monkeypatch.delenv("SCADA_T_UNSET", raising=False)
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    return path


# ----------------------------------------------------------------------------- expansion


def test_expand_env_file_escape_and_mixed_text(env: Path, tmp_path: Path) -> None:
    assert expand("${SCADA_T_TOKEN}") == SECRET
    assert expand(f"${{file:{env}}}") == SECRET  # the trailing newline is stripped
    crlf = tmp_path / "crlf"
    crlf.write_bytes(b"line1\nline2\r\n\n")
    assert expand(f"${{file:{crlf}}}") == "line1\nline2\r\n"  # one newline only
    assert expand("Bearer ${A}-${B}", {"A": "x", "B": "y"}) == "Bearer x-y"
    assert expand("$${A} and $$ and $5 and ${A}", {"A": "x"}) == "${A} and $$ and $5 and x"
    assert expand("no references") == "no references"
    assert expand("${EMPTY}", {"EMPTY": ""}) == ""
    assert has_reference("x ${A}") and has_reference("${file:/x}")
    assert not has_reference("$${A}") and not has_reference("plain")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${SCADA_T_UNSET}", "environment variable SCADA_T_UNSET is not set"),
        (
            "${file:/nonexistent/secret}",
            "cannot read secret file /nonexistent/secret: No such file",
        ),
        ("${file:}", "needs a path"),
        ("${1BAD}", "invalid reference '${1BAD}'"),
        ("${A B}", "invalid reference '${A B}'"),
        ("abc ${UNCLOSED", "without a closing '}'"),
    ],
)
def test_expand_errors_name_the_reference(env: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        expand(text)


def test_secret_file_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "bin"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        expand(f"${{file:{path}}}")


# ----------------------------------------------------------------------------- models


def test_secret_fields_hold_the_value_but_never_show_it(env: Path) -> None:
    cfg = load_site_text(site_text(password=f"${{file:{env}}}"), name="site.yaml")
    mail, hook = cfg.notifications.notifiers
    assert mail.password is not None and mail.password.get_secret_value() == SECRET
    assert hook.url.get_secret_value() == f"https://hooks.example.org/{SECRET}"
    assert hook.headers["Authorization"].get_secret_value() == f"Bearer {SECRET}"
    assert cfg.historian.token is not None and cfg.historian.token.get_secret_value() == SECRET
    for shown in (
        repr(cfg),
        str(cfg),
        cfg.model_dump_json(),
        json.dumps(cfg.model_dump(mode="json")),
    ):
        assert SECRET not in shown
    assert "**********" in repr(mail)
    assert cfg.warnings() == []
    paths = sorted(".".join(map(str, p)) for p, _ in find_secrets(cfg))
    assert paths == [
        "historian.token",
        "notifications.notifiers.0.password",
        "notifications.notifiers.1.headers.Authorization",
        "notifications.notifiers.1.url",
    ]


def test_unset_variable_is_a_located_config_error(env: Path) -> None:
    text = site_text(password="${SCADA_T_UNSET}", url="ftp://${SCADA_T_TOKEN}")
    with pytest.raises(ConfigError) as info:
        load_site_text(text, name="site.yaml")
    assert [str(i) for i in info.value.issues] == [
        "site.yaml:10:17: notifications.notifiers[0].password: "
        "environment variable SCADA_T_UNSET is not set",
        "site.yaml:11:40: notifications.notifiers[1].url: "
        "the URL must start with http:// or https:// (after expanding references)",
    ]
    assert SECRET not in str(info.value)


def test_unreadable_file_is_a_located_config_error(env: Path, tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(site_text(token="${file:/nonexistent/influx_token}"))
    with pytest.raises(ConfigError) as info:
        load_site(path)
    (issue,) = info.value.issues
    assert (issue.file, issue.line, issue.path) == (str(path), 2, "historian.token")
    assert issue.message.startswith("cannot read secret file /nonexistent/influx_token")


def test_inline_secrets_are_warnings_with_locations(env: Path) -> None:
    cfg = load_site_text(site_text(password="hunter2", bearer="$${NOT_A_REF}"), name="site.yaml")
    assert cfg.notifications.notifiers[1].headers["Authorization"].get_secret_value() == (
        "Bearer ${NOT_A_REF}"
    )
    assert [(w.line, w.path) for w in cfg.warnings()] == [
        (10, "notifications.notifiers[0].password"),
        (11, "notifications.notifiers[1].headers.Authorization"),
    ]
    assert all("secret written inline" in w.message for w in cfg.warnings())
    assert "hunter2" not in "".join(str(w) for w in cfg.warnings())


def test_models_built_in_code_take_secrets_too(env: Path) -> None:
    h = HistorianConfig(url="${SCADA_T_URL}", token=f"${{file:{env}}}")
    assert h.url == f"https://hooks.example.org/{SECRET}"  # not secret: a plain expanded str
    assert h.token is not None and h.token.get_secret_value() == SECRET
    assert HistorianConfig(token=h.token).token == h.token  # a validated secret passes as is
    with pytest.raises(ValueError, match="valid string"):
        HistorianConfig(token=1234)


# ----------------------------------------------------------------------------- scada check


def test_check_never_prints_an_expanded_secret(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(site_text(password="hunter2"))
    assert main(["check", str(path)]) == 0  # an inline secret warns, it does not fail
    out, err = capsys.readouterr()
    assert out.startswith(f"{path}: ok: ")
    assert err.splitlines() == [
        f"{path}:10:17: notifications.notifiers[0].password: warning: secret written inline; "
        "use ${NAME} (environment) or ${file:/path} (docker secret)"
    ]
    assert SECRET not in out + err and "hunter2" not in out + err
    assert main(["check", "--json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and [w["path"] for w in doc["warnings"]] == [
        "notifications.notifiers[0].password"
    ]
    path.write_text(site_text(token="${SCADA_T_UNSET}"))
    assert main(["check", "--json", str(path)]) == 1
    raw = capsys.readouterr().out
    doc = json.loads(raw)
    assert doc["errors"][0]["path"] == "historian.token" and SECRET not in raw


def test_schema_marks_secrets_as_passwords() -> None:
    from scada.commands.check import schema

    defs = schema()["$defs"]
    password = defs["EmailNotifierConfig"]["properties"]["password"]
    assert {"type": "string", "format": "password", "writeOnly": True}.items() <= (
        password["anyOf"][0].items()
    )


# ----------------------------------------------------------------------------- config API


NOTIFY_YAML = """\
notifications:
  notifiers:
    - {name: hook, type: webhook, url: "${SCADA_T_URL}",
       headers: {Authorization: "Bearer ${SCADA_T_TOKEN}"}}
"""


async def test_config_api_and_audit_never_show_an_expanded_secret(
    env: Path, tmp_path: Path
) -> None:
    from tests.scada.server_fixtures import start_served

    served = await start_served(tmp_path, extra_yaml=NOTIFY_YAML)
    try:
        hook = served.runtime.site.notifications.notifiers[0]
        assert hook.url.get_secret_value().endswith(SECRET)  # the running site has the value
        bodies: list[str] = []

        async def call(method: str, path: str, body: object = None) -> dict:
            st, res, resp = await served.api(method, path, role="engineer", body=body)
            assert st in (200, 422), (st, res)
            bodies.append(resp.body.decode())
            return res

        cfg = await call("GET", "/api/config")
        text = cfg["files"]["site.yaml"]
        assert "${SCADA_T_URL}" in text  # the YAML as written: references, no secret
        broken = text.replace("${SCADA_T_URL}", "${SCADA_T_UNSET}")
        res = await call("POST", "/api/config/validate", {"files": {"site.yaml": broken}})
        (err,) = res["errors"]
        assert err["path"] == "notifications.notifiers[0].url"
        assert err["message"] == "environment variable SCADA_T_UNSET is not set"
        res = await call("POST", "/api/config/apply", {"files": {"site.yaml": broken}})
        assert res["valid"] is False
        changed = text.replace("Bearer ${SCADA_T_TOKEN}", "Token ${SCADA_T_TOKEN}")
        res = await call("POST", "/api/config/apply", {"files": {"site.yaml": changed}})
        assert res["valid"] is True and res["version"] == 2
        await call("GET", "/api/config/versions")
        await call("GET", "/api/config/versions/2")
        st, _, resp = await served.api("GET", "/api/audit", role="admin")
        assert st == 200 and "config.apply" in resp.body.decode()
        bodies.append(resp.body.decode())
        assert {e["action"] for e in served.server.ctx.audit.query(action="config.*")} == {
            "config.apply"
        }
        for body in bodies:
            assert SECRET not in body
        versions = served.data_dir / "config-versions"
        stored = "".join(p.read_text() for p in versions.rglob("*.json"))
        assert "${SCADA_T_TOKEN}" in stored and SECRET not in stored
        for path in served.data_dir.rglob("*"):  # audit, journal, history: nowhere on disk
            assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path
    finally:
        await served.runtime.stop()
