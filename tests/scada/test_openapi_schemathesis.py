"""Schemathesis, a tool nobody here wrote, against the running server: no finding (issue 18 item 6).

The server runs the test site with prepaid accounts (so the billing handlers answer rather
than 503) on a free port; Schemathesis (its CLI, in a subprocess) reads the served OpenAPI
document and runs every phase with every check (``--checks all``: no 5xx, only documented
statuses, content types and headers, answers matching their schemas, schema-valid requests
accepted, schema-violating ones refused, 405 with ``Allow`` for undeclared methods, 401
without credentials, ...), a bounded number of examples per operation and a fixed seed, as
admin (bearer token). Any finding fails the test with Schemathesis' report.

Two things are configured, each from what the document itself says:

* an operation with ``x-rules`` (a rule JSON Schema cannot state: ``to`` after ``from``, a
  proposal must make a valid site) may refuse schema-valid data with the status it names;
* ``POST /api/logout`` is sent with another user's token: it revokes the token it gets.

``/ws`` is left out: a websocket upgrade is not a request-response exchange an HTTP fuzzer can
judge (tests/scada/test_server_ws.py tests it).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from scada.server.openapi import document
from tests.scada.server_fixtures import Served, start_served
from tests.scada.test_server_billing import BILLING_YAML

#: Examples per operation and phase: enough to reach every handler, small enough for CI.
MAX_EXAMPLES = 4
SEED = 18
#: Undeclared methods tried on every path: one Tornado refuses before the handler (TRACE),
#: one it hands to it (PUT), and OPTIONS, whose ``Allow`` must list the documented methods.
UNEXPECTED_METHODS = ["TRACE", "PUT", "OPTIONS"]
#: What positive_data_acceptance accepts by default (Schemathesis' own list).
POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path) -> AsyncIterator[Served]:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "billing.yaml").write_text(BILLING_YAML, encoding="utf-8")
    s = await start_served(tmp_path, extra_yaml="include: [billing.yaml]\n")
    try:
        await s.wait_good(["b1.101.em.relay", "b1.102.em.relay", "b1.hm.energy_kwh"])
        await s.runtime.billing_scheduler.catch_up_task
        yield s
    finally:
        await s.runtime.stop()


def _toml(value: Any) -> str:
    """Return ``value`` as TOML (JSON's strings, numbers, lists and inline tables)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def schemathesis_config(site: Served) -> str:
    """Return the schemathesis.toml of the run (module docstring)."""
    lines = [
        f"headers = {_toml({'Authorization': 'Bearer ' + site.tokens['admin']})}",
        "[phases.coverage]",
        f"unexpected-methods = {_toml(UNEXPECTED_METHODS)}",
        "[[operations]]",
        'include-path = "/api/logout"',
        f"headers = {_toml({'Authorization': 'Bearer ' + site.tokens['operator2']})}",
    ]
    for item in document()["paths"].values():
        for op in item.values():
            if "x-rules" not in op:
                continue
            statuses = [*POSITIVE_STATUSES, str(op["x-rules"]["status"])]
            lines += [
                "[[operations]]",
                f"include-operation-id = {_toml(op['operationId'])}",
                f"checks.positive_data_acceptance.expected-statuses = {_toml(statuses)}",
            ]
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(300)
async def test_schemathesis_with_every_check_finds_nothing(site: Served, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(schemathesis_config(site), encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{site.url}/api/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--exclude-path",
        "/ws",
        "--workers",
        "1",
        "--request-timeout",
        "30",
    ]
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *command,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()  # the server keeps answering on this loop meanwhile
    report = out.decode(errors="replace")
    took_s = time.monotonic() - started
    assert proc.returncode == 0, f"Schemathesis found something ({took_s:.0f} s):\n{report}"
    # every operation but /ws was tried (warnings, such as ids it could not guess, are not
    # findings)
    selected = re.search(r"Selected: (\d+)/(\d+)", report)
    tested = re.search(r"Tested: (\d+)", report)
    assert selected and tested, report
    assert int(tested[1]) == int(selected[1]) == int(selected[2]) - 1, report
