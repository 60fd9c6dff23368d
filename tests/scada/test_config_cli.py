"""``scada check``: summary and exit 0, located errors and exit 1, ``--json``, ``--schema``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scada.cli import main
from scada.config import load_site

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo-site.yaml"
BAD = """\
site: {id: bad}
channels:
  - {id: bus, protocol: modbus-tcp, host: 127.0.0.1, port: 5020}
templates:
  valve: {points: {open: {address: 0, kind: coil, type: bool}}}
devices:
  - {id: v1, template: valv, channel: bus, unit: 1}
  - {id: v2, template: valve, channel: bus, unit: 1, colour: red}
"""


@pytest.fixture
def bad_config(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    return path


def expected_errors(path: Path) -> list[str]:
    return [
        f"{path}:7:24: devices[0].template: unknown template 'valv' (did you mean 'valve'?)",
        f"{path}:8:54: devices[1].colour: unknown key 'colour'",
    ]


def test_check_valid_config_prints_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(DEMO)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    [line] = out.splitlines()
    site = load_site(DEMO)
    counts = " ".join(f"{k}={v}" for k, v in site.summary().items())
    assert line == f"{DEMO}: ok: {counts}"
    assert f"buildings={len(site.buildings)} " in line and "households=" in line


def test_check_default_config_is_the_demo(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["check"]) == 0
    assert capsys.readouterr().out.startswith("config/demo-site.yaml: ok: ")


def test_check_invalid_config_prints_every_error(
    bad_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(bad_config)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [*expected_errors(bad_config), f"{bad_config}: 2 errors"]


def test_check_json(bad_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", str(bad_config)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["summary"] == {}
    assert doc["errors"][0] == {
        "file": str(bad_config),
        "line": 7,
        "col": 24,
        "path": "devices[0].template",
        "message": "unknown template 'valv' (did you mean 'valve'?)",
    }
    assert len(doc["errors"]) == 2

    assert main(["check", "--json", str(DEMO)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["errors"] == []
    assert doc["summary"] == load_site(DEMO).summary()
    assert set(doc["summary"]) >= {
        "channels",
        "templates",
        "devices",
        "tags",
        "buildings",
        "households",
    }


def test_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["check", str(missing)]) == 1
    assert capsys.readouterr().err.splitlines()[0] == f"{missing}:1:1: (root): file not found"


def test_check_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "site.schema.json"
    assert main(["check", "--schema", "--output", str(out)]) == 0
    schema = json.loads(out.read_text())
    assert schema["title"] == "SCADA site configuration"
    assert "devices" in schema["properties"] and "ModbusTcpChannel" in schema["$defs"]
    assert main(["check", "--schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema


def test_check_as_a_subprocess(bad_config: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "scada.cli", "check", "config/demo-site.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("config/demo-site.yaml: ok: ")
    bad = subprocess.run(
        [sys.executable, "-m", "scada.cli", "check", str(bad_config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[:2] == expected_errors(bad_config)
