"""The docker stack is consistent with the code: commands parse, configs load, files exist.

No Docker engine runs here: the files are checked as the image would see them (the image's
``/app`` holds the repository's ``config/`` and ``docker/site.yaml``).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from scada.cli import build_parser
from scada.config import load_site
from scada.scaleout.roles import filter_site

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _scada_services() -> dict[str, dict[str, Any]]:
    return {
        name: s
        for name, s in _compose()["services"].items()
        if str(s.get("image", "")).startswith("scada-metering")
    }


def _entrypoint() -> list[str]:
    text = (DOCKER / "Dockerfile").read_text()
    match = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.M)
    assert match, "Dockerfile has no exec-form ENTRYPOINT"
    return yaml.safe_load(match.group(1))


def test_dockerfile_is_slim_non_root_and_enters_scada() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\s*$", text, re.M)
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert "pip install" in text and " ." in text
    assert _entrypoint() == ["scada"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["scada"] == "scada.cli:main"
    for src in re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)\s+\S+\s*$", text, re.M):
        if not src.startswith("/"):
            assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"


def test_compose_has_the_whole_stack() -> None:
    services = _compose()["services"]
    assert services["redis"]["image"].startswith("redis:")
    influx = services["influxdb"]
    assert re.fullmatch(r"influxdb:3\.\d+\.\d+-core", influx["image"]), "pin a full version"
    command = influx["command"]
    assert command[:2] == ["influxdb3", "serve"]
    token_file = command[command.index("--admin-token-file") + 1]
    (config,) = [c for c in influx["configs"] if c["target"] == token_file]
    token = _compose()["configs"][config["source"]]["content"]
    assert '"token": "${INFLUX_TOKEN:-apiv3_' in token  # the token the scada services use
    roles = [
        s["command"][s["command"].index("--role") + 1]
        for s in _scada_services().values()
        if "--role" in s["command"]
    ]
    assert sorted(roles) == ["central", "collector", "collector"]
    assert any(s["command"][0] == "simulate" for s in _scada_services().values())


@pytest.mark.parametrize("service", sorted(_scada_services()))
def test_every_service_command_is_a_real_scada_command(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _scada_services()[service]
    env = {**_compose()["x-scada"]["environment"], **spec.get("environment", {})}
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    command = spec["command"]
    assert isinstance(command, list), "use the exec form so arguments are not re-split"
    try:
        args = build_parser().parse_args(command)
    except SystemExit as exc:  # argparse rejects unknown commands/options this way
        pytest.fail(f"service {service}: `scada {' '.join(command)}` does not parse ({exc})")
    # the config it names loads, as the image lays files out (/app = repository root)
    site = load_site(ROOT / args.config)
    if getattr(args, "role", "all") != "all":
        assert args.redis == "redis://redis:6379/0"
    if getattr(args, "role", None) == "collector":
        assert filter_site(site, args.buildings).devices
    if getattr(args, "role", None) == "central":
        h = site.historian
        assert (h.backend, h.api, h.url, h.database) == (
            "influxdb",
            "v1",
            "http://influxdb:8181",
            "scada",
        )
        assert h.token is not None and h.token.get_secret_value() == env["INFLUX_TOKEN"]
        assert "8181:8181" in _compose()["services"]["influxdb"]["ports"]
        assert args.host == "0.0.0.0"


def test_collectors_cover_every_building_once(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in _compose()["x-scada"]["environment"].items():
        monkeypatch.setenv(key, str(value))  # ${INFLUX_TOKEN} must be set to load the site
    site = load_site(DOCKER / "site.yaml")
    served: list[str] = []
    for spec in _scada_services().values():
        cmd = spec["command"]
        if "--role" in cmd and cmd[cmd.index("--role") + 1] == "collector":
            served += cmd[cmd.index("--buildings") + 1].split(",")
            assert spec["network_mode"] == "service:simulator"
    assert sorted(served) == sorted(b.id for b in site.buildings)
