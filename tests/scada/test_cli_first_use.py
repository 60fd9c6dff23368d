"""A first-time user's trip-wires (issue 18 items 11, 12, 13, 15): a taken port, tenant links to
accounts, bearer tokens in the README, and what the first ``make run`` is doing."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from scada.cli import main
from tests.billing.conftest import free_port, site_text
from tests.scada.server_fixtures import write_site

ROOT = Path(__file__).resolve().parents[2]


def test_run_names_a_taken_port_before_simulating_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = write_site(tmp_path)
    text = site.read_text(encoding="utf-8")
    site.write_text(text.replace("seed: 3}", "seed: 3, backfill_days: 1}"), encoding="utf-8")
    data = tmp_path / "var"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["run", str(site), "--port", str(port), "--data-dir", str(data)]
        assert main(argv) == 1
    out = capsys.readouterr()
    assert out.err.startswith(f"scada run: cannot listen on 127.0.0.1:{port}: ")
    assert "Address already in use" in out.err and "Traceback" not in out.err
    assert "simulating" not in out.out  # checked first: no history was simulated
    assert not (data / "history.sqlite").exists()


def test_user_add_links_a_tenant_to_an_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(site_text(free_port()), encoding="utf-8")
    data = ["--data-dir", str(tmp_path / "var")]

    def add(name: str, *links: str) -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO("a tenant password\n"))
        argv = ["user", "add", str(config), name, "--role", "tenant", "--password-stdin"]
        return main([*argv, *(x for link in links for x in ("--link", link)), *data])

    assert add("shop", "shop-101") == 0  # an account id
    assert add("flat", "home-102", "b1.101") == 0  # an account and a household
    assert add("nobody", "shop-999") == 1
    assert "unknown household/account shop-999" in capsys.readouterr().err
    assert main(["user", "list", str(config), "--json", *data]) == 0
    users = {u["name"]: u["links"] for u in json.loads(capsys.readouterr().out)}
    assert users == {"shop": ["shop-101"], "flat": ["home-102", "b1.101"]}


def test_user_token_says_it_mints_and_the_readme_keeps_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["user", "token", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "Every call mints another token" in help_text
    assert "TOKEN=$(scada user token CONFIG NAME)" in help_text

    config = str(write_site(tmp_path))
    data = ["--data-dir", str(tmp_path / "var")]
    monkeypatch.setattr("sys.stdin", io.StringIO("a long passphrase\n"))
    argv = ["user", "add", config, "admin", "--role", "admin", "--password-stdin", *data]
    assert main(argv) == 0
    capsys.readouterr()
    tokens = []
    for _ in range(2):
        assert main(["user", "token", config, "admin", *data]) == 0
        tokens.append(capsys.readouterr().out.strip())
    assert tokens[0] != tokens[1]  # as the help says

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "$(.venv/bin/scada user token" not in readme.replace("TOKEN=$(", "")
    assert re.search(r"^TOKEN=\$\(\.venv/bin/scada user token ", readme, re.M)
    assert 'curl -H "Authorization: Bearer $TOKEN"' in readme


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_first_make_run_says_what_it_is_doing(tmp_path: Path) -> None:
    """``make run`` on a fresh venv: a line per step before pip works (pip and scada are stubs)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name, script in (
        ("python", 'echo "python $*"'),  # stands for the venv's python: pip answers at once
        ("scada", 'echo "scada $*"'),
    ):
        stub = venv / "bin" / name
        stub.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
        stub.chmod(0o755)
    env = {**os.environ, "MAKEFLAGS": ""}
    argv = ["make", "--no-print-directory", "-C", str(ROOT), f"VENV={venv}", "run"]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()

    def at(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    # the stubs print their command lines: "python -m pip ...", "scada run ..."
    upgrade = lines.index("python -m pip install --quiet --upgrade pip")
    install = lines.index("python -m pip install --quiet -e .[dev]")
    started = lines.index("scada run config/demo-site.yaml")
    assert at("setting up") < at("upgrading pip") < upgrade
    assert upgrade < at("installing scada-metering and its dependencies") < install
    assert install < at("is ready") < at("starting the demo site") < started
    again = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert "setting up" not in again.stdout  # later runs skip the set-up, and say nothing of it
    assert "starting the demo site" in again.stdout
